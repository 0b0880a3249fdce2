//! The signing-key lifecycle on a running server: `signing-key rotate` (through the inbox) makes
//! a new key sign the next batch and GAEN export at once, with the next GAEN version, while the
//! old key stays listed; a phone that fetches the keys afresh verifies batches of both keys until
//! `signing-key retire` removes the old one from GetSigningKeys, `v1/signing-keys` and the
//! bucket, after which its batches fail verification. The current key cannot be retired, and a
//! restart keeps all of it. A rotation with an overlap (`--overlap`, DESIGN §15) lists the next
//! key at once and has it sign every GAEN export beside the current key (checked by the Python
//! `cryptography` verifier against the listed public keys) until the switch time on the server's
//! clock, survives a restart, refuses a second rotation, and is called off by retiring the next
//! key.

use std::path::Path;
use std::time::Duration;

use exposure_matcher::BatchFile;
use exposure_matcher::gaen::GaenExport;
use exposure_proto::v1::{GetSigningKeysResponse, SigningKey};
use exposure_server::admin::{AdminError, DataDir, SigningKeyCommand};
use exposure_server::{Clock, ServerConfig, ServerError};
use exposure_tests::fixtures::{self, download, gaen, key16};
use exposure_tests::gaen_python::PythonDecoder;
use exposure_tests::http_client::HttpClient;
use exposure_tests::{TEST_NOW, TestServer, test_config};
use prost::Message as _;

const TODAY: u64 = TEST_NOW / 86_400;

/// Runs a `signing-key` command of the library on a blocking thread (it waits for the inbox).
async fn signing_key(command: SigningKeyCommand) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::signing_key(command, &mut out)
            .map(|()| String::from_utf8(out).expect("utf-8"))
    })
    .await
    .expect("admin task")
}

fn data(path: &Path) -> DataDir {
    DataDir {
        data_dir: path.to_owned(),
    }
}

/// The key list a phone fetches over gRPC.
async fn grpc_keys(server: &TestServer) -> Vec<SigningKey> {
    fixtures::signing_keys(&mut server.distribution_client().await).await
}

/// The key list a phone fetches from the HTTP mirror.
async fn http_keys(server: &TestServer) -> Vec<SigningKey> {
    let answer = HttpClient::new(&server.http_url)
        .get("/v1/signing-keys")
        .await;
    assert_eq!(answer.status, 200);
    GetSigningKeysResponse::decode(answer.body)
        .expect("GetSigningKeysResponse")
        .keys
}

/// Verifies a batch file as a phone does: by the key id the file names, among `keys`.
fn verify_as_phone(keys: &[SigningKey], file: &[u8]) -> Result<(), String> {
    let batch = BatchFile::parse(file).map_err(|error| error.to_string())?;
    let key = keys
        .iter()
        .find(|key| key.key_id == batch.key_id())
        .ok_or_else(|| format!("key {} is not listed", batch.key_id()))?;
    batch
        .verify(&key.public_key_der)
        .map_err(|error| error.to_string())
}

/// Uploads one GAEN key of yesterday and waits for the batch (and GAEN file) it makes.
async fn publish_one(server: &TestServer, byte: u8, batches: usize) -> Vec<u8> {
    server
        .upload(fixtures::upload(
            &format!("upload-{byte}"),
            vec![gaen(key16(byte), ((TODAY - 1) * 144) as u32, 144)],
        ))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == batches)
        .await;
    let batch = listing.batches.last().expect("the new batch");
    download(&mut server.distribution_client().await, &batch.batch_id).await
}

/// Returns the newest GAEN export file once the index names `count` files.
async fn newest_export(server: &TestServer, count: usize) -> GaenExport {
    let lines = server.wait_for_gaen_index(count).await;
    let zip = HttpClient::new(&server.http_url)
        .get(&format!("/{}", lines[count - 1]))
        .await;
    GaenExport::parse(&zip.body).expect("an export zip")
}

fn gaen_version(export: &GaenExport) -> String {
    export.export().signature_infos[0]
        .verification_key_version
        .clone()
        .expect("a version")
}

/// Waits until the bucket's `v1/signing-keys` lists exactly `expected` key ids.
async fn wait_for_bucket_keys(bucket: &Path, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed: Vec<String> = std::fs::read(bucket.join("v1/signing-keys"))
            .ok()
            .and_then(|bytes| GetSigningKeysResponse::decode(bytes.as_slice()).ok())
            .map(|answer| answer.keys.into_iter().map(|key| key.key_id).collect())
            .unwrap_or_default();
        if listed == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bucket lists {listed:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_retirement_on_a_running_server() {
    let bucket = tempfile::tempdir().expect("bucket");
    let bucket_url = format!("file://{}", bucket.path().display());
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.publish_to = Some(bucket_url.clone());
    })
    .await;
    let dir = server.data_dir().to_owned();

    let first_file = publish_one(&server, 1, 1).await;
    let first_keys = grpc_keys(&server).await;
    assert_eq!(first_keys.len(), 1);
    let old = first_keys[0].clone();
    assert_eq!(gaen_version(&newest_export(&server, 1).await), "v1");
    wait_for_bucket_keys(bucket.path(), &[&old.key_id]).await;

    // Rotation on the running server: the new key is current at once.
    let rotated = signing_key(SigningKeyCommand::Rotate {
        data: data(&dir),
        gaen_key_version: None,
        key_file: None,
        overlap: None,
    })
    .await
    .expect("rotate");
    assert!(
        rotated.contains("from now on") && rotated.contains("GAEN version v2"),
        "{rotated}"
    );
    let keys = grpc_keys(&server).await;
    assert_eq!(keys.len(), 2, "both keys are listed");
    let new = keys
        .iter()
        .find(|key| key.current)
        .expect("current")
        .clone();
    assert_ne!(new.key_id, old.key_id);
    assert!(
        keys.iter()
            .any(|key| key.key_id == old.key_id && !key.current)
    );
    assert_eq!(http_keys(&server).await, keys, "the HTTP mirror agrees");
    wait_for_bucket_keys(bucket.path(), &[&new.key_id, &old.key_id]).await;

    // The next batch and GAEN export are signed with the new key and carry its version.
    let second_file = publish_one(&server, 2, 2).await;
    assert_eq!(
        BatchFile::parse(&second_file).expect("parses").key_id(),
        new.key_id
    );
    let export = newest_export(&server, 2).await;
    assert_eq!(gaen_version(&export), "v2");
    export
        .verify(&new.public_key_der)
        .expect("the export verifies with the new key");
    assert!(export.verify(&old.public_key_der).is_err());
    for phone_keys in [grpc_keys(&server).await, http_keys(&server).await] {
        verify_as_phone(&phone_keys, &first_file).expect("the old key's batch verifies");
        verify_as_phone(&phone_keys, &second_file).expect("the new key's batch verifies");
    }

    // The current key cannot be retired.
    let refused = signing_key(SigningKeyCommand::Retire {
        data: data(&dir),
        key_id: new.key_id.clone(),
    })
    .await
    .expect_err("the current key is refused");
    assert!(matches!(refused, AdminError::Usage(_)), "{refused}");
    assert!(refused.to_string().contains("rotate first"), "{refused}");
    let unknown = signing_key(SigningKeyCommand::Retire {
        data: data(&dir),
        key_id: "0123456789abcdef".into(),
    })
    .await
    .expect_err("an unknown key is refused");
    assert!(unknown.to_string().contains("KEY_ID"), "{unknown}");

    // Retirement: the old key is listed nowhere, and what it signed no longer verifies.
    let old_pem = dir.join("signing").join(format!("{}.pem", old.key_id));
    assert!(old_pem.exists());
    let retired = signing_key(SigningKeyCommand::Retire {
        data: data(&dir),
        key_id: old.key_id.clone(),
    })
    .await
    .expect("retire");
    assert!(retired.contains("no longer list it"), "{retired}");
    assert!(!old_pem.exists(), "the retired private key is deleted");
    let keys = grpc_keys(&server).await;
    assert_eq!(keys, vec![new.clone()], "only the new key is listed");
    assert_eq!(http_keys(&server).await, keys);
    wait_for_bucket_keys(bucket.path(), &[&new.key_id]).await;
    for phone_keys in [grpc_keys(&server).await, http_keys(&server).await] {
        assert!(
            verify_as_phone(&phone_keys, &first_file).is_err(),
            "a batch of the retired key fails for a fresh client"
        );
        verify_as_phone(&phone_keys, &second_file).expect("the new key's batch verifies");
    }
    let listed = signing_key(SigningKeyCommand::List { data: data(&dir) })
        .await
        .expect("list");
    assert!(
        listed.contains(&format!("{}\t", old.key_id)) && listed.contains("retired at"),
        "{listed}"
    );

    // A restart keeps the new key current, its version, and the retirement.
    let config = server.config.clone();
    let token = server.token.clone();
    let dir_handle = server.stop().await;
    let server = TestServer::restart(&dir_handle, token, clock, config).await;
    assert_eq!(grpc_keys(&server).await, vec![new.clone()]);
    let third_file = publish_one(&server, 3, 3).await;
    verify_as_phone(&grpc_keys(&server).await, &third_file).expect("signed by the new key");
    assert_eq!(gaen_version(&newest_export(&server, 3).await), "v2");
    server.stop_kept().await;
}

/// A server stopped after publishing one batch, with what a restart of it needs.
struct Stopped {
    clock: Clock,
    /// The key that signed the batch.
    old: SigningKey,
    config: ServerConfig,
    token: String,
    dir: tempfile::TempDir,
}

/// Starts a server on a manual clock, publishes one batch and stops it.
async fn stopped_after_one_publish() -> Stopped {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    publish_one(&server, 1, 1).await;
    let old = grpc_keys(&server).await[0].clone();
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;
    Stopped {
        clock,
        old,
        config,
        token,
        dir,
    }
}

/// Starts a server with `config`, which must refuse to start; returns why.
async fn refused_start(config: ServerConfig, clock: &Clock) -> ServerError {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    exposure_server::run_with_clock(listener, config, clock.clone(), std::future::pending())
        .await
        .expect_err("the server refuses to start")
}

#[tokio::test]
async fn a_key_file_replaced_by_a_rotation_or_retired_is_refused_at_start() {
    let Stopped {
        clock,
        old,
        config,
        token,
        dir,
    } = stopped_after_one_publish().await;
    let outside = tempfile::tempdir().expect("outside");
    let old_file = outside.path().join("old.pem");
    std::fs::copy(
        dir.path()
            .join("signing")
            .join(format!("{}.pem", old.key_id)),
        &old_file,
    )
    .expect("copy the old key out");

    // Offline rotation, with a version of the operator's choosing.
    let rotated = signing_key(SigningKeyCommand::Rotate {
        data: data(dir.path()),
        gaen_key_version: Some("2026_b".into()),
        key_file: None,
        overlap: None,
    })
    .await
    .expect("rotate");
    assert!(rotated.contains("from its next start"), "{rotated}");
    let taken = signing_key(SigningKeyCommand::Rotate {
        data: data(dir.path()),
        gaen_key_version: Some("v1".into()),
        key_file: None,
        overlap: None,
    })
    .await
    .expect_err("a version in use is refused");
    assert!(
        taken.to_string().contains("--gaen-key-version v1"),
        "{taken}"
    );

    let mut stale = test_config(dir.path());
    stale.signing_key = Some(old_file.clone());
    let refused = refused_start(stale, &clock).await;
    assert!(refused.is_usage(), "{refused}");
    assert!(
        refused.to_string().contains("replaced by a rotation"),
        "{refused}"
    );

    signing_key(SigningKeyCommand::Retire {
        data: data(dir.path()),
        key_id: old.key_id.clone(),
    })
    .await
    .expect("retire offline");
    let mut retired = test_config(dir.path());
    retired.signing_key = Some(old_file);
    let refused = refused_start(retired, &clock).await;
    assert!(
        refused.is_usage() && refused.to_string().contains("retired"),
        "a retired key never signs again: {refused}"
    );

    let server = TestServer::restart(&dir, token, clock, config).await;
    let keys = grpc_keys(&server).await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current && keys[0].key_id != old.key_id);
    server.stop_kept().await;
}

const OVERLAP: u64 = 7 * 86_400;

/// Writes the DER public keys the public API lists into files, for the Python verifier.
fn key_files(dir: &Path, keys: &[&SigningKey]) -> Vec<std::path::PathBuf> {
    keys.iter()
        .map(|key| {
            let path = dir.join(format!("{}.der", key.key_id));
            std::fs::write(&path, &key.public_key_der).expect("write key");
            path
        })
        .collect()
}

/// Checks the newest GAEN zip (the index names `count`) with the independent Python decoder
/// and the `cryptography` verifier: returns, per `TEKSignature` in file order, the index of
/// the key in `keys` that verifies it, with its (key id, version); `None` when python3 or its
/// protobuf package is missing (reported loudly, a failure under CI).
async fn python_signatures(
    server: &TestServer,
    count: usize,
    keys: &[&SigningKey],
) -> Option<Vec<(i64, String, String)>> {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let decoder = PythonDecoder::find(&protoc)?;
    let lines = server.wait_for_gaen_index(count).await;
    let zip = HttpClient::new(&server.http_url)
        .get(&format!("/{}", lines[count - 1]))
        .await;
    assert_eq!(zip.status, 200);
    let dir = tempfile::tempdir().expect("temporary dir");
    let zip_path = dir.path().join("export.zip");
    std::fs::write(&zip_path, &zip.body).expect("write zip");
    let decoded = decoder.decode(&zip_path, &key_files(dir.path(), keys));
    let signatures = decoded["signatures"]["signatures"]
        .as_array()
        .expect("signatures")
        .clone();
    let infos = decoded["export"]["signature_infos"]
        .as_array()
        .expect("export.bin's signature infos")
        .clone();
    assert_eq!(infos.len(), signatures.len(), "{decoded}");
    let checks: Vec<i64> = match decoded["signature_checks"].as_array() {
        Some(checks) => checks
            .iter()
            .map(|check| check.as_i64().expect("index"))
            .collect(),
        // The cryptography package is missing (reported by the decoder): every check unknown.
        None => vec![-2; signatures.len()],
    };
    Some(
        signatures
            .iter()
            .zip(checks)
            .zip(infos)
            .map(|((signature, check), info)| {
                let signed = &signature["signature_info"];
                assert_eq!(signed, &info, "TEKSignature and export.bin agree");
                assert_eq!(signed["signature_algorithm"], "1.2.840.10045.4.3.2");
                assert_eq!(
                    (
                        signature["batch_num"].as_i64(),
                        signature["batch_size"].as_i64()
                    ),
                    (Some(1), Some(1))
                );
                (
                    check,
                    signed["verification_key_id"]
                        .as_str()
                        .expect("id")
                        .to_owned(),
                    signed["verification_key_version"]
                        .as_str()
                        .expect("version")
                        .to_owned(),
                )
            })
            .collect(),
    )
}

/// Checks the decoded signatures, in file order, against (index of the verifying key, GAEN
/// version); an index of -2 (the cryptography package missing, reported loudly) is accepted.
fn assert_signed_by(signatures: &[(i64, String, String)], expected: &[(i64, &str)]) {
    let matches = signatures.len() == expected.len()
        && signatures
            .iter()
            .zip(expected)
            .all(|((index, id, version), (want, want_version))| {
                (index == want || *index == -2) && id == "452" && version == want_version
            });
    assert!(matches, "signatures {signatures:?}, expected {expected:?}");
}

fn pem_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("signing"))
        .expect("signing folder")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "pem"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_with_an_overlap_signs_gaen_exports_with_both_keys_until_the_switch() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let dir = server.data_dir().to_owned();
    publish_one(&server, 1, 1).await;
    let old = grpc_keys(&server).await[0].clone();

    // Rotation with a 7-day overlap on the running server, counted by the server's clock.
    let switch_at = TEST_NOW + OVERLAP;
    let rotated = signing_key(SigningKeyCommand::Rotate {
        data: data(&dir),
        gaen_key_version: None,
        key_file: None,
        overlap: Some(Duration::from_secs(OVERLAP)),
    })
    .await
    .expect("rotate with an overlap");
    assert!(
        rotated.contains("GAEN version v2) is the next key")
            && rotated.contains("becomes current at 2026-01-17T12:00:00Z (Unix 1768651200)"),
        "{rotated}"
    );

    // Listed at once, not current, with its switch time and version, so it can be registered.
    let keys = grpc_keys(&server).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0].key_id, old.key_id, "the current key first");
    assert!(keys[0].current);
    assert_eq!(
        (keys[0].current_from, keys[0].gaen_key_version.as_str()),
        (0, "v1")
    );
    let new = keys[1].clone();
    assert!(!new.current);
    assert_eq!(new.current_from, switch_at);
    assert_eq!(new.gaen_key_version, "v2");
    assert_eq!(http_keys(&server).await, keys, "the HTTP mirror agrees");
    let listed = signing_key(SigningKeyCommand::List { data: data(&dir) })
        .await
        .expect("list");
    assert!(
        listed.contains(&format!(
            "{}\t{}\tv2\tnext, current from 2026-01-17T12:00:00Z (Unix {switch_at})",
            new.key_id, new.created_at
        )),
        "{listed}"
    );

    // A second rotation, with or without an overlap, is refused; no key file is left behind.
    for overlap in [Some(Duration::from_secs(86_400)), None] {
        let refused = signing_key(SigningKeyCommand::Rotate {
            data: data(&dir),
            gaen_key_version: None,
            key_file: None,
            overlap,
        })
        .await
        .expect_err("one overlap at a time");
        assert!(matches!(refused, AdminError::Usage(_)), "{refused}");
        assert!(
            refused.to_string().contains(&format!(
                "a rotation is in its overlap: key {} becomes current at 2026-01-17T12:00:00Z",
                new.key_id
            )),
            "{refused}"
        );
    }
    assert_eq!(pem_count(&dir), 2);

    // During the overlap: the batch is signed by the current key only, the GAEN export by both,
    // current first, each verified by the independent verifier with the listed public key.
    let second_file = publish_one(&server, 2, 2).await;
    assert_eq!(
        BatchFile::parse(&second_file).expect("batch").key_id(),
        old.key_id
    );
    verify_as_phone(&keys, &second_file).expect("verifies with the current key");
    assert!(
        BatchFile::parse(&second_file)
            .expect("batch")
            .verify(&new.public_key_der)
            .is_err(),
        "the next key never signs a batch"
    );
    let export = newest_export(&server, 2).await;
    assert_eq!(export.signatures().signatures.len(), 2);
    let both = [&old, &new];
    if let Some(signatures) = python_signatures(&server, 2, &both).await {
        assert_signed_by(&signatures, &[(0, "v1"), (1, "v2")]);
    }

    // A restart in the middle keeps the overlap.
    let config = server.config.clone();
    let token = server.token.clone();
    let dir_handle = server.stop().await;
    let server = TestServer::restart(&dir_handle, token, clock.clone(), config).await;
    assert_eq!(
        grpc_keys(&server).await,
        keys,
        "the overlap survives the restart"
    );
    let third_file = publish_one(&server, 3, 3).await;
    assert_eq!(
        BatchFile::parse(&third_file).expect("batch").key_id(),
        old.key_id
    );
    let export = newest_export(&server, 3).await;
    let versions: Vec<_> = export
        .signatures()
        .signatures
        .iter()
        .map(|signature| {
            signature
                .signature_info
                .as_ref()
                .and_then(|info| info.verification_key_version.clone())
                .expect("a version")
        })
        .collect();
    assert_eq!(versions, ["v1", "v2"]);
    if let Some(signatures) = python_signatures(&server, 3, &both).await {
        assert_signed_by(&signatures, &[(0, "v1"), (1, "v2")]);
    }

    // The switch: the publisher's first run at the switch time makes the next key current.
    let batches_before = server.list_batches().await.batches.len();
    clock.set(switch_at);
    let today = switch_at / 86_400;
    server
        .upload(fixtures::upload(
            "after-the-switch",
            vec![gaen(key16(4), ((today - 1) * 144) as u32, 144)],
        ))
        .await;
    let export = newest_export(&server, 4).await;
    assert_eq!(export.signatures().signatures.len(), 1, "one signature");
    assert_eq!(gaen_version(&export), "v2");
    if let Some(signatures) = python_signatures(&server, 4, &both).await {
        assert_signed_by(&signatures, &[(1, "v2")]);
    }
    let keys = grpc_keys(&server).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (
            keys[0].key_id.as_str(),
            keys[0].current,
            keys[0].current_from
        ),
        (new.key_id.as_str(), true, 0)
    );
    assert_eq!(
        (keys[1].key_id.as_str(), keys[1].current),
        (old.key_id.as_str(), false)
    );
    // Every batch since the switch (the hourly one and any roll-up) verifies with the new key
    // only; the old key's batches still verify, as after any rotation.
    let listing = server.list_batches().await;
    assert!(listing.batches.len() > batches_before);
    let mut distribution = server.distribution_client().await;
    for batch in &listing.batches[batches_before..] {
        let file = download(&mut distribution, &batch.batch_id).await;
        let parsed = BatchFile::parse(&file).expect("batch");
        assert_eq!(parsed.key_id(), new.key_id);
        parsed
            .verify(&new.public_key_der)
            .expect("the new key verifies");
        assert!(parsed.verify(&old.public_key_der).is_err());
    }
    verify_as_phone(&keys, &second_file).expect("the old key's batch still verifies");
    let listed = signing_key(SigningKeyCommand::List { data: data(&dir) })
        .await
        .expect("list");
    assert!(
        listed.contains(&format!("{}\t{}\tv2\tcurrent", new.key_id, new.created_at))
            && listed.contains(&format!("{}\t", old.key_id))
            && listed.contains("verifying"),
        "{listed}"
    );

    // After the overlap a new rotation is accepted again.
    signing_key(SigningKeyCommand::Rotate {
        data: data(&dir),
        gaen_key_version: None,
        key_file: None,
        overlap: Some(Duration::from_secs(OVERLAP)),
    })
    .await
    .expect("a rotation after the switch");
    server.stop_kept().await;
    drop(dir_handle);
}

#[tokio::test]
async fn an_overlap_begun_on_a_stopped_server_and_called_off() {
    let Stopped {
        clock,
        old,
        config,
        token,
        dir,
    } = stopped_after_one_publish().await;

    // A next key lives in the data directory: a key file outside it is refused with --overlap.
    let outside = tempfile::tempdir().expect("outside");
    let key_file = outside.path().join("new.pem");
    std::fs::write(
        &key_file,
        exposure_matcher::BatchSigner::generate().to_pkcs8_pem(),
    )
    .expect("write key");
    let refused = signing_key(SigningKeyCommand::Rotate {
        data: data(dir.path()),
        gaen_key_version: None,
        key_file: Some(key_file),
        overlap: Some(Duration::from_secs(OVERLAP)),
    })
    .await
    .expect_err("--overlap with --key-file");
    assert!(matches!(refused, AdminError::Usage(_)), "{refused}");
    assert!(
        refused.to_string().contains("--overlap with --key-file"),
        "{refused}"
    );

    // Offline: the switch time counts from the system clock, far after the test clock's now.
    let rotated = signing_key(SigningKeyCommand::Rotate {
        data: data(dir.path()),
        gaen_key_version: None,
        key_file: None,
        overlap: Some(Duration::from_secs(OVERLAP)),
    })
    .await
    .expect("offline rotation with an overlap");
    assert!(rotated.contains("is the next key"), "{rotated}");
    let server = TestServer::restart(&dir, token.clone(), clock.clone(), config.clone()).await;
    let keys = grpc_keys(&server).await;
    assert_eq!(keys.len(), 2);
    let new = keys[1].clone();
    assert!(keys[0].current && keys[0].key_id == old.key_id && !new.current);
    assert!(
        new.current_from >= Clock::System.now() + OVERLAP - 60,
        "{new:?}"
    );
    publish_one(&server, 2, 2).await;
    let export = newest_export(&server, 2).await;
    assert_eq!(export.signatures().signatures.len(), 2);
    export
        .verify(&old.public_key_der)
        .expect("the current key signs");
    export
        .verify(&new.public_key_der)
        .expect("the next key signs");
    server.stop_kept().await;

    // Without the next key's private key the server refuses to start, saying what to do.
    let new_pem = dir
        .path()
        .join("signing")
        .join(format!("{}.pem", new.key_id));
    let moved = outside.path().join("next.pem");
    std::fs::rename(&new_pem, &moved).expect("move the next key away");
    let refused = refused_start(config.clone(), &clock).await;
    assert!(
        refused.is_usage()
            && refused
                .to_string()
                .contains(&format!("signing-key retire {}", new.key_id)),
        "{refused}"
    );
    std::fs::rename(&moved, &new_pem).expect("put it back");

    // Retiring the next key calls the rotation off: the old key signs alone again.
    signing_key(SigningKeyCommand::Retire {
        data: data(dir.path()),
        key_id: new.key_id.clone(),
    })
    .await
    .expect("retire the next key");
    let server = TestServer::restart(&dir, token, clock, config).await;
    assert_eq!(grpc_keys(&server).await, vec![old.clone()]);
    publish_one(&server, 3, 3).await;
    let export = newest_export(&server, 3).await;
    assert_eq!(export.signatures().signatures.len(), 1);
    assert_eq!(gaen_version(&export), "v1");
    export
        .verify(&old.public_key_der)
        .expect("the old key signs");
    server.stop_kept().await;
}

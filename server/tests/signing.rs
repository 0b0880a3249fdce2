//! Batch signing keys through the binary, as an operator handles them: `--signing-key FILE`
//! signs every batch with the operator's key, and `signing-key rotate` on a stopped server makes
//! a new key sign from the next start while the old one stays listed (a running server's
//! rotation and retirement: `signing_keys.rs`). Signatures are checked with the p256 crate
//! directly against public keys that `openssl` derived, not with the server's own verifier.

mod common;

use std::path::Path;

use exposure_matcher::BatchFile;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::{GetBatchRequest, GetSigningKeysRequest, SigningKey};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use common::{admin, start};

/// A P-256 key made with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
const OPERATOR_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1ZXd/U/1/9kSIM4f
izAZtoQ9L3kEpL3ycnuS3p6Ob7qhRANCAASicNJLpr6MoYw1YqePrbda9WqEFxNn
zxO0u5WGCGeVHivqx7eyZkHSc094w/BZh2nVn8YxmKh9HMXe8TsqPMWA
-----END PRIVATE KEY-----
";
/// Its public key, `openssl pkey -pubout -outform DER`, in hex.
const OPERATOR_PUBLIC_DER: &str = "3059301306072a8648ce3d020106082a8648ce3d03010703420004a270d24ba6be8ca18c3562a78fadb75af56a84171367cf13b4bb95860867951e2beac7b7b26641d2734f78c3f0598769d59fc63198a87d1cc5def13b2a3cc580";
/// Its key id: the first 16 hex digits of `openssl pkey -pubout -outform DER | sha256sum`.
const OPERATOR_KEY_ID: &str = "25e6481b22adf41f";

/// Flags that publish a batch within a second of an upload.
const FAST_PUBLISHING: [&str; 8] = [
    "--metrics-addr",
    "127.0.0.1:0",
    "--publish-interval",
    "200ms",
    "--release-delay",
    "0s",
    "--pad-min-keys",
    "0",
];

async fn distribution(url: &str) -> DistributionClient<tonic::transport::Channel> {
    DistributionClient::connect(url.to_owned())
        .await
        .expect("connect")
}

async fn download(url: &str, batch_id: &str) -> Vec<u8> {
    let mut stream = distribution(url)
        .await
        .get_batch(GetBatchRequest {
            batch_id: batch_id.into(),
        })
        .await
        .expect("get batch")
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        file.extend_from_slice(&chunk.data);
    }
    file
}

async fn signing_keys(url: &str) -> Vec<SigningKey> {
    distribution(url)
        .await
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .expect("signing keys")
        .into_inner()
        .keys
}

/// Checks, with p256 directly, that `file` names `key_id` and is signed by `public_key_der`.
fn assert_signed_by(file: &[u8], key_id: &str, public_key_der: &[u8]) {
    let batch = BatchFile::parse(file).expect("batch parses");
    assert_eq!(batch.key_id(), key_id);
    let key = VerifyingKey::from_public_key_der(public_key_der).expect("SPKI DER");
    let signature = Signature::from_der(batch.signature()).expect("DER signature");
    key.verify(batch.body(), &signature)
        .expect("ECDSA P-256 / SHA-256 over the body");
}

fn upload(url: &str, token: &str, byte: u8, runtime: &tokio::runtime::Runtime) {
    assert_eq!(
        runtime.block_on(common::upload_one(url, token, byte)),
        tonic::Code::Ok
    );
}

fn current(keys: &[SigningKey]) -> &SigningKey {
    keys.iter().find(|key| key.current).expect("a current key")
}

#[test]
fn a_signing_key_file_given_on_the_command_line_signs_every_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key_file = dir.path().join("operator-key.pem");
    std::fs::write(&key_file, OPERATOR_KEY_PEM).expect("write key file");
    let mut flags = vec!["--signing-key", key_file.to_str().expect("utf-8 path")];
    flags.extend(FAST_PUBLISHING);
    let server = start(&data, &flags);
    assert!(
        server
            .log()
            .contains(&format!("\"key_id\":\"{OPERATOR_KEY_ID}\"")),
        "startup names the operator's key: {}",
        server.log()
    );
    let token = common::add_authority(&data, "VN-TB");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    upload(&server.url, &token, 1, &runtime);

    let public_der = hex::decode(OPERATOR_PUBLIC_DER).expect("hex");
    let (batches, file, keys) = runtime.block_on(async {
        let batches = common::wait_for_batches(&server.url, 1).await;
        let file = download(&server.url, &batches[0].batch_id).await;
        (batches, file, signing_keys(&server.url).await)
    });
    assert_eq!(batches[0].key_id, OPERATOR_KEY_ID);
    assert_signed_by(&file, OPERATOR_KEY_ID, &public_der);
    let served = current(&keys);
    assert_eq!(served.key_id, OPERATOR_KEY_ID);
    assert_eq!(
        served.public_key_der, public_der,
        "GetSigningKeys serves it"
    );
    assert!(server.terminate());
    assert!(
        !data
            .join("signing")
            .join(format!("{OPERATOR_KEY_ID}.pem"))
            .exists(),
        "the operator's private key is not copied into the data directory"
    );
}

#[test]
fn signing_key_rotate_on_a_stopped_server_signs_from_the_next_start_and_keeps_the_old_key_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = start(data, &FAST_PUBLISHING);
    let token = common::add_authority(data, "VN-TB");
    upload(&server.url, &token, 1, &runtime);
    let (first_batch, old_key) = runtime.block_on(async {
        let batches = common::wait_for_batches(&server.url, 1).await;
        let keys = signing_keys(&server.url).await;
        assert_eq!(keys.len(), 1);
        (batches[0].clone(), current(&keys).clone())
    });

    assert!(server.terminate());

    let rotated = admin(data, &["signing-key", "rotate"]);
    let report = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_key_id = report
        .strip_prefix("signing key ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the new key id in {report:?}"))
        .to_owned();
    assert_ne!(new_key_id, old_key.key_id);
    assert_private_key_file(data, &new_key_id);

    let server = start(data, &FAST_PUBLISHING);
    upload(&server.url, &token, 2, &runtime);
    let (batches, old_file, new_file, keys) = runtime.block_on(async {
        let batches = common::wait_for_batches(&server.url, 2).await;
        let old_file = download(&server.url, &first_batch.batch_id).await;
        let new_file = download(&server.url, &batches[1].batch_id).await;
        (batches, old_file, new_file, signing_keys(&server.url).await)
    });
    assert!(server.terminate());

    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].current && keys[0].key_id == new_key_id,
        "the new key is current and listed first: {keys:?}"
    );
    let old = keys
        .iter()
        .find(|key| key.key_id == old_key.key_id)
        .expect("the old key stays listed");
    assert!(!old.current);
    assert_eq!(old.public_key_der, old_key.public_key_der);
    assert_eq!(batches[0].key_id, old_key.key_id);
    assert_eq!(batches[1].key_id, new_key_id);
    assert_signed_by(&old_file, &old_key.key_id, &old_key.public_key_der);
    assert_signed_by(&new_file, &new_key_id, &keys[0].public_key_der);
}

/// Checks that the rotated key's PEM is in the data directory, readable by its owner only.
fn assert_private_key_file(data: &Path, key_id: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = data.join("signing").join(format!("{key_id}.pem"));
    let metadata = std::fs::metadata(&path).expect("the rotated key's file");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
}

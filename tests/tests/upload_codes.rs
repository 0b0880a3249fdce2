//! The patient's phone uploads with a one-time code (DESIGN.md section 12): codes issued by an
//! authority, consumed in the write that stores the keys, refused alike when unknown, used or
//! expired, rate-limited per client address, and decoy uploads that store nothing.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    DiagnosisKey, IssueUploadCodesRequest, ReportType, UploadDiagnosisKeysRequest,
    UploadDiagnosisKeysResponse,
};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_tests::fixtures::{self, confirmed, gaen, key16};
use exposure_tests::reference;
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::transport::Channel;
use tonic::{Code, Status};

const DAY: u64 = 86_400;

fn yesterday_key(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

/// Issues `count` codes for the harness region with the harness token.
async fn issue(
    server: &TestServer,
    count: u32,
    report_type: ReportType,
    valid_for: u64,
) -> Vec<String> {
    let request = server.authorized(IssueUploadCodesRequest {
        region: REGION.into(),
        count,
        report_type: report_type as i32,
        valid_for,
        ..Default::default()
    });
    let codes = server
        .upload_client()
        .await
        .issue_upload_codes(request)
        .await
        .expect("codes issued")
        .into_inner()
        .codes;
    assert_eq!(codes.len(), count as usize);
    codes.into_iter().map(|code| code.code).collect()
}

/// Waits for the server's first batch, checks that `key`'s first tag confirms in it, stops the
/// server and returns its store, reopened (with the folder that holds it).
async fn published_then_stopped(
    server: TestServer,
    key: &DiagnosisKey,
) -> (tempfile::TempDir, Store) {
    server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let mut distribution = server.distribution_client().await;
    assert!(
        confirmed(&mut distribution, &reference::tags(key)[0], 16).await,
        "the key uploaded with a code confirms like any other"
    );
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    (dir, store)
}

/// Returns an upload client whose connections leave from `local` (127.0.0.x).
async fn client_from(server: &TestServer, local: [u8; 4]) -> KeyUploadClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("url")
        .local_address(Some(IpAddr::from(local)))
        .connect()
        .await
        .expect("connect");
    KeyUploadClient::new(channel)
}

/// Uploads `request` with `authorization: UploadCode <code>`.
async fn upload_with_code(
    client: &mut KeyUploadClient<Channel>,
    code: &str,
    request: UploadDiagnosisKeysRequest,
) -> Result<UploadDiagnosisKeysResponse, Status> {
    client
        .upload_diagnosis_keys(fixtures::with_code(request, code))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_code_uploads_once_with_its_region_and_report_type_and_the_keys_publish() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.fingerprint_bits = 32;
    })
    .await;
    let codes = issue(&server, 2, ReportType::SelfReport, 0).await;
    assert!(
        codes
            .iter()
            .all(|code| code.len() == 11 && code.as_bytes()[5] == b'-'),
        "codes are shown as XXXXX-XXXXX: {codes:?}"
    );
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    // The request says CONFIRMED_TEST; the code says SELF_REPORT, and the code wins.
    let request = fixtures::upload("phone-1", vec![yesterday_key(1), yesterday_key(2)]);
    let first = upload_with_code(&mut phone, &codes[0], request.clone())
        .await
        .expect("the code uploads");
    assert_eq!((first.keys_accepted, first.replay), (2, false));

    // A retry of the same upload gets the first answer, although the code is consumed; the
    // code read in lower case without its hyphen is the same code.
    let retry_code = codes[0].replace('-', "").to_lowercase();
    let retry = upload_with_code(&mut phone, &retry_code, request)
        .await
        .expect("the retry is answered");
    assert_eq!((retry.keys_accepted, retry.replay), (2, true));

    // Anything else with the used code is refused like an unknown code.
    let reuse = upload_with_code(
        &mut phone,
        &codes[0],
        fixtures::upload("phone-1b", vec![yesterday_key(3)]),
    )
    .await
    .expect_err("a used code");
    let unknown = upload_with_code(
        &mut phone,
        "00000-00000",
        fixtures::upload("phone-x", vec![yesterday_key(4)]),
    )
    .await
    .expect_err("an unknown code");
    assert_eq!(reuse.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(
        reuse.message(),
        unknown.message(),
        "no oracle between the two"
    );

    // A code for VN-TB cannot upload for another region.
    let mut elsewhere = fixtures::upload("phone-2", vec![yesterday_key(5)]);
    elsewhere.region = "VN-HN".into();
    let denied = upload_with_code(&mut phone, &codes[1], elsewhere)
        .await
        .expect_err("another region");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // The keys are published and confirm like any others.
    let (_dir, store) = published_then_stopped(server, &yesterday_key(1)).await;
    assert_eq!(store.count_keys().expect("count"), 2);
    let issuer = store.list_authorities().expect("authorities")[0].id.clone();
    let through_issuer = store.key_sequences_of_authority(&issuer).expect("scan");
    assert_eq!(
        through_issuer.len(),
        2,
        "the keys came through the issuing authority"
    );
    for (_, key) in store.keys(&through_issuer).expect("keys") {
        assert_eq!(key.report_type, ReportType::SelfReport as i32);
    }
}

#[tokio::test]
async fn an_expired_code_is_refused_and_retention_deletes_it() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let codes = issue(&server, 1, ReportType::ConfirmedTest, 3600).await;
    clock.advance(3601);
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    let expired = upload_with_code(
        &mut phone,
        &codes[0],
        fixtures::upload(
            "late",
            vec![gaen(key16(1), ((TEST_NOW / DAY) * 144) as u32, 144)],
        ),
    )
    .await
    .expect_err("expired");
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert_eq!(expired.message(), "unknown, used or expired upload code");
    // Retention runs with every publish run and deletes a code once it expired before the
    // retention window (14 days; until then the console lists it as expired): wait until the
    // running server has deleted it, looking through a read-only view of its store.
    clock.advance(14 * DAY + 1);
    let code = exposure_server::ingest::code::UploadCode::parse(&codes[0]).expect("code");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let data_dir = server.data_dir().to_owned();
        let hash = code.hash();
        let stored = tokio::task::spawn_blocking(move || {
            let view = Store::open_read_only(&data_dir).expect("read-only store");
            view.code(&hash).expect("lookup").is_some()
        })
        .await
        .expect("lookup task");
        if !stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired code is still stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert!(
        store.code(&code.hash()).expect("lookup").is_none(),
        "the deletion is durable"
    );
}

#[tokio::test]
async fn issuing_checks_its_fields_and_the_authoritys_region() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let mut client = server.upload_client().await;
    let cases = [
        (REGION, 0, ReportType::ConfirmedTest, 0, "count"),
        (REGION, 101, ReportType::ConfirmedTest, 0, "count"),
        (REGION, 1, ReportType::Revoked, 0, "report_type"),
        (REGION, 1, ReportType::ConfirmedTest, 8 * DAY, "valid_for"),
        ("vn-tb", 1, ReportType::ConfirmedTest, 0, "region"),
    ];
    for (region, count, report_type, valid_for, field) in cases {
        let request = server.authorized(IssueUploadCodesRequest {
            region: region.into(),
            count,
            report_type: report_type as i32,
            valid_for,
            ..Default::default()
        });
        let status = client
            .issue_upload_codes(request)
            .await
            .expect_err("invalid request");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    let other_region = server.authorized(IssueUploadCodesRequest {
        region: "VN-HN".into(),
        count: 1,
        ..Default::default()
    });
    let status = client
        .issue_upload_codes(other_region)
        .await
        .expect_err("region not allowed");
    assert_eq!(status.code(), Code::PermissionDenied);
    let anonymous = client
        .issue_upload_codes(IssueUploadCodesRequest {
            region: REGION.into(),
            count: 1,
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_wrong_codes_is_cut_off_while_other_clients_still_upload() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.code_failures_per_client_per_hour = 5;
    })
    .await;
    let codes = issue(&server, 2, ReportType::ConfirmedTest, 0).await;
    let mut guesser = client_from(&server, [127, 0, 0, 3]).await;
    let mut outcomes = Vec::new();
    for attempt in 0..10u8 {
        let guess = format!("ZZZZZ-ZZZ{:02}", attempt % 100)
            .replace('0', "A")
            .replace('1', "B");
        let result = upload_with_code(
            &mut guesser,
            &guess,
            fixtures::upload(&format!("guess-{attempt}"), vec![yesterday_key(9)]),
        )
        .await;
        outcomes.push(result.expect_err("a guess").code());
    }
    let first_exhausted = outcomes
        .iter()
        .position(|code| *code == Code::ResourceExhausted)
        .expect("the burst is cut off");
    assert!(
        outcomes[..first_exhausted]
            .iter()
            .all(|code| *code == Code::Unauthenticated)
            && outcomes[first_exhausted..]
                .iter()
                .all(|code| *code == Code::ResourceExhausted),
        "{outcomes:?}"
    );
    // The guesser's address is refused even with a valid code; another phone's is not.
    let blocked = upload_with_code(
        &mut guesser,
        &codes[0],
        fixtures::upload("guesser-valid", vec![yesterday_key(10)]),
    )
    .await
    .expect_err("still cut off");
    assert_eq!(blocked.code(), Code::ResourceExhausted);
    let mut phone = client_from(&server, [127, 0, 0, 4]).await;
    let accepted = upload_with_code(
        &mut phone,
        &codes[1],
        fixtures::upload("honest", vec![yesterday_key(11)]),
    )
    .await
    .expect("another client's valid code works");
    assert_eq!(accepted.keys_accepted, 1);

    // Client addresses are kept in memory only: nothing in the store names them.
    let dir = server.stop().await;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        for address in ["127.0.0.3", "127.0.0.4"] {
            assert!(
                !bytes
                    .windows(address.len())
                    .any(|window| window == address.as_bytes()),
                "{} names {address}",
                entry.display()
            );
        }
    }
}

/// Returns every file under `root`.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test]
async fn decoys_store_nothing_and_take_as_long_as_real_uploads() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.release_delay = Duration::from_secs(30 * DAY);
    })
    .await;
    // An authority's uploads are another population: decoys do not learn from them, so none
    // is saved although there are more than a save's worth.
    for byte in 1..=20u8 {
        server
            .upload(fixtures::upload(
                &format!("authority-{byte}"),
                vec![yesterday_key(byte)],
            ))
            .await;
    }
    let (config, token) = (server.config.clone(), server.token.clone());
    let dir = server.stop().await;
    assert_eq!(
        Store::open(dir.path())
            .expect("open")
            .decoy_latencies()
            .expect("read"),
        Vec::<Duration>::new(),
        "no authority upload is a decoy's model"
    );

    // What decoys imitate: phones' code uploads.
    let server = TestServer::restart(&dir, token, Clock::manual(TEST_NOW), config).await;
    let codes = issue(&server, 20, ReportType::ConfirmedTest, 0).await;
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    let mut real_latencies = Vec::new();
    for (index, code) in codes.iter().enumerate() {
        let byte = 40 + index as u8;
        let started = Instant::now();
        upload_with_code(
            &mut phone,
            code,
            fixtures::upload(&format!("real-{byte}"), vec![yesterday_key(byte)]),
        )
        .await
        .expect("a code upload");
        real_latencies.push(started.elapsed());
    }
    real_latencies.sort();
    let fastest = real_latencies[0];
    let slowest = real_latencies[real_latencies.len() - 1];
    let real_median = real_latencies[real_latencies.len() / 2];
    // A decoy sleeps one of the server's recorded real latencies (each at most the client's
    // view of it), then answers without a write: on the wire it should take what a real upload
    // takes. The bounds allow twice the real figures plus a few milliseconds of scheduling
    // noise on a busy machine, and nothing near a fixed delay of its own (the server's 20 ms
    // default before any real upload, its 2 s cap) unless real uploads took as long.
    let one_decoy_bound = slowest * 2 + Duration::from_millis(25);
    let mut decoy_latencies = Vec::new();

    let mut client = server.upload_client().await;
    for index in 0..10u8 {
        // A decoy looks like a code upload on the wire; the code need not exist.
        let request = fixtures::decoy(
            fixtures::upload(
                &format!("decoy-{index}"),
                vec![yesterday_key(100 + index), yesterday_key(200 + index / 2)],
            ),
            Some(fixtures::DECOY_CODE),
        );
        let started = Instant::now();
        let answer = client
            .upload_diagnosis_keys(request)
            .await
            .expect("a decoy is answered")
            .into_inner();
        let latency = started.elapsed();
        assert_eq!(
            answer,
            UploadDiagnosisKeysResponse {
                keys_accepted: 2,
                ..Default::default()
            },
            "the answer has the shape of a first upload"
        );
        assert!(
            latency >= fastest / 4 && latency <= one_decoy_bound,
            "decoy {latency:?} outside {:?}..{one_decoy_bound:?} (real uploads took \
             {fastest:?}..{slowest:?})",
            fastest / 4
        );
        decoy_latencies.push(latency);
    }
    decoy_latencies.sort();
    let decoy_median = decoy_latencies[decoy_latencies.len() / 2];
    assert!(
        decoy_median <= real_median * 2 + Duration::from_millis(5),
        "decoys' median {decoy_median:?} vs real uploads' {real_median:?}: \
         {decoy_latencies:?} vs {real_latencies:?}"
    );
    // A malformed decoy is refused like a malformed upload.
    let bad = fixtures::decoy(fixtures::upload("decoy-bad", vec![]), None);
    let status = client
        .upload_diagnosis_keys(bad)
        .await
        .expect_err("no keys");
    assert_eq!(status.code(), Code::InvalidArgument);

    server.stop_kept().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        40,
        "decoys store nothing"
    );
    // The model survives a restart: a save's worth of the code uploads' own latencies (as
    // the server measured them, within what the phone saw), not one fixed delay.
    let saved = store.decoy_latencies().expect("read");
    assert_eq!(saved.len(), 16, "{saved:?}");
    assert!(
        saved
            .iter()
            .all(|latency| *latency > Duration::ZERO && *latency <= slowest),
        "{saved:?} within 0..{slowest:?}"
    );
}

#[tokio::test]
async fn revoking_the_issuing_authority_voids_its_unused_codes_at_once() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let codes = issue(&server, 3, ReportType::ConfirmedTest, 0).await;
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    let used = fixtures::upload("before-revocation", vec![yesterday_key(1)]);
    upload_with_code(&mut phone, &codes[0], used.clone())
        .await
        .expect("a code uploads while its authority is active");

    // Revoke the authority on the running server, as `exposure-server authority revoke` does.
    let data_dir = server.data_dir().to_owned();
    let revoked = tokio::task::spawn_blocking(move || {
        let id = Store::open_read_only(&data_dir)
            .and_then(|store| store.list_authorities())
            .expect("authorities")[0]
            .id
            .clone();
        let mut out = Vec::new();
        exposure_server::admin::authority(
            exposure_server::admin::AuthorityCommand::Revoke {
                data: exposure_server::admin::DataDir { data_dir },
                id,
                withdraw_keys: false,
            },
            &mut out,
        )
        .map(|()| String::from_utf8(out).expect("utf-8"))
    })
    .await
    .expect("admin task")
    .expect("authority revoke");
    assert!(revoked.contains("revoked authority"), "{revoked}");

    let unknown = upload_with_code(
        &mut phone,
        "00000-00000",
        fixtures::upload("unknown", vec![yesterday_key(2)]),
    )
    .await
    .expect_err("an unknown code");
    for (index, code) in codes[1..].iter().enumerate() {
        let refused = upload_with_code(
            &mut phone,
            code,
            fixtures::upload(&format!("after-revocation-{index}"), vec![yesterday_key(3)]),
        )
        .await
        .expect_err("a code of a revoked authority");
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(
            refused.message(),
            unknown.message(),
            "refused exactly like an unknown code"
        );
    }
    // The upload made before the revocation keeps its answer.
    let retry = upload_with_code(&mut phone, &codes[0], used)
        .await
        .expect("the earlier upload's retry is answered");
    assert!(retry.replay);

    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        1,
        "only the first upload's key"
    );
    for code in &codes[1..] {
        let hash = exposure_server::ingest::code::UploadCode::parse(code)
            .expect("code")
            .hash();
        assert!(
            store.code(&hash).expect("lookup").is_none(),
            "the revocation deleted the unused code"
        );
    }
}

#[tokio::test]
async fn a_code_whose_issuer_was_revoked_without_voiding_is_still_refused() {
    // A store written before revocation voided codes: the authority is revoked, its code
    // stays. The issuer check refuses it all the same.
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let (config, token) = (server.config.clone(), server.token.clone());
    let dir = server.stop().await;
    let mut issuer = exposure_server::storage::authorities::new_authority(
        "issuer",
        &[REGION.to_owned()],
        TEST_NOW,
    );
    Store::open(dir.path())
        .expect("open")
        .put_authority(&issuer.token_hash, &issuer.authority)
        .expect("add the issuer");
    let server = TestServer::restart(
        &dir,
        issuer.token.clone(),
        Clock::manual(TEST_NOW),
        config.clone(),
    )
    .await;
    let codes = issue(&server, 1, ReportType::ConfirmedTest, 0).await;
    server.stop_kept().await;
    issuer.authority.revoked_at = TEST_NOW;
    Store::open(dir.path())
        .expect("open")
        .put_authority(&issuer.token_hash, &issuer.authority)
        .expect("mark revoked, its code kept");

    let server = TestServer::restart(&dir, token, Clock::manual(TEST_NOW), config).await;
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    let refused = upload_with_code(
        &mut phone,
        &codes[0],
        fixtures::upload("stale-code", vec![yesterday_key(1)]),
    )
    .await
    .expect_err("the issuer is revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.message(), "unknown, used or expired upload code");
    server.stop_kept().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 0);
}

#[tokio::test]
async fn a_code_upload_and_a_decoy_may_leave_the_region_to_the_code() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.fingerprint_bits = 32;
    })
    .await;
    let codes = issue(&server, 2, ReportType::ConfirmedTest, 0).await;
    let mut phone = client_from(&server, [127, 0, 0, 1]).await;
    let mut no_region = fixtures::upload("no-region", vec![yesterday_key(1)]);
    no_region.region = String::new();
    let answer = upload_with_code(&mut phone, &codes[0], no_region.clone())
        .await
        .expect("an empty region takes the code's");
    assert_eq!(answer.keys_accepted, 1);
    let retry = upload_with_code(&mut phone, &codes[0], no_region)
        .await
        .expect("its retry");
    assert!(retry.replay, "the retry is the same upload");
    // Naming the code's own region is as good; another region is still refused.
    let named = upload_with_code(
        &mut phone,
        &codes[1],
        fixtures::upload("named", vec![yesterday_key(2)]),
    )
    .await
    .expect("the code's region");
    assert_eq!(named.keys_accepted, 1);

    let decoy = fixtures::decoy(
        UploadDiagnosisKeysRequest {
            region: String::new(),
            ..fixtures::upload("decoy", vec![yesterday_key(3), yesterday_key(4)])
        },
        Some(fixtures::DECOY_CODE),
    );
    let decoy_answer = phone
        .upload_diagnosis_keys(decoy)
        .await
        .expect("a decoy without a region is answered")
        .into_inner();
    assert_eq!(decoy_answer.keys_accepted, 2);
    // A malformed region is still malformed, decoy or not.
    let malformed = fixtures::decoy(
        UploadDiagnosisKeysRequest {
            region: "vn-tb".into(),
            ..fixtures::upload("decoy-2", vec![yesterday_key(5)])
        },
        None,
    );
    let status = phone
        .upload_diagnosis_keys(malformed)
        .await
        .expect_err("malformed region");
    assert_eq!(status.code(), Code::InvalidArgument);

    // The key uploaded without a region is published in the code's region.
    let (_dir, store) = published_then_stopped(server, &yesterday_key(1)).await;
    assert_eq!(
        store.count_keys().expect("count"),
        2,
        "the decoy stored nothing"
    );
    let issuer = store.list_authorities().expect("authorities")[0].id.clone();
    for (_, key) in store
        .keys(&store.key_sequences_of_authority(&issuer).expect("scan"))
        .expect("keys")
    {
        assert_eq!(key.region, REGION);
    }
}

//! Upload semantics: idempotent replays, reused upload ids, dedup across uploads, revocation,
//! the embargo, authentication and region permission.

use exposure_proto::v1::{ReportType, UploadDiagnosisKeysRequest};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, confirmed, gaen, key16};
use exposure_tests::reference::{self, filter_key};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;

const DAY: u64 = 86_400;

fn yesterday_start_interval() -> u32 {
    ((TEST_NOW / DAY - 1) * 144) as u32
}

#[tokio::test]
async fn replay_returns_the_first_answer_and_a_changed_replay_is_refused() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let mut client = server.upload_client().await;
    let keys = vec![
        gaen(key16(1), yesterday_start_interval(), 144),
        gaen(key16(2), yesterday_start_interval(), 144),
    ];
    let first = server.upload(fixtures::upload("u-1", keys.clone())).await;
    assert_eq!((first.keys_accepted, first.replay), (2, false));

    // The same content again, even with other padding, is a replay with the same counts.
    let mut again = fixtures::upload("u-1", keys.clone());
    again.padding = vec![9; 300];
    let replay = client
        .upload_diagnosis_keys(server.authorized(again))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(
        (
            replay.keys_accepted,
            replay.keys_already_known,
            replay.replay
        ),
        (2, 0, true)
    );

    // The same id with other content is refused and changes nothing.
    let changed = fixtures::upload("u-1", vec![gaen(key16(3), yesterday_start_interval(), 144)]);
    let error = client
        .upload_diagnosis_keys(server.authorized(changed))
        .await
        .expect_err("changed replay");
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("u-1"),
        "message names the upload id: {}",
        error.message()
    );

    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        2,
        "only the first upload's keys are stored"
    );
}

#[tokio::test]
async fn keys_already_known_are_not_stored_twice() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let start = yesterday_start_interval();
    server
        .upload(fixtures::upload("a", vec![gaen(key16(1), start, 144)]))
        .await;
    let second = server
        .upload(fixtures::upload(
            "b",
            vec![gaen(key16(1), start, 144), gaen(key16(2), start, 144)],
        ))
        .await;
    assert_eq!((second.keys_accepted, second.keys_already_known), (1, 1));
    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 2);
}

#[tokio::test]
async fn revocation_stops_confirmation_at_once_and_the_roll_up_leaves_the_key_out() {
    let clock = Clock::manual(TEST_NOW);
    // 32-bit fingerprints make a false filter hit on the revoked key's tags practically impossible.
    let server = TestServer::start_with(clock.clone(), |config| config.fingerprint_bits = 32).await;
    let mut client = server.upload_client().await;
    let wrong = gaen(key16(1), yesterday_start_interval(), 144);
    let right = gaen(key16(2), yesterday_start_interval(), 144);
    server
        .upload(fixtures::upload("case", vec![wrong.clone(), right.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let mut distribution = server.distribution_client().await;
    let wrong_tags = reference::tags(&wrong);
    assert!(confirmed(&mut distribution, &wrong_tags[0], 16).await);

    // The revocation also names a key the server never held: it is counted nowhere.
    let never_held = gaen(key16(9), yesterday_start_interval(), 144);
    let mut revocation = fixtures::upload("case-revoked", vec![wrong.clone(), never_held]);
    revocation.report_type = ReportType::Revoked as i32;
    let answer = client
        .upload_diagnosis_keys(server.authorized(revocation))
        .await
        .expect("revocation")
        .into_inner();
    assert_eq!(
        (
            answer.keys_accepted,
            answer.keys_already_known,
            answer.keys_revoked,
            answer.replay
        ),
        (0, 0, 1, false),
        "{answer:?}"
    );
    for tag in &wrong_tags {
        assert!(
            !confirmed(&mut distribution, tag, 16).await,
            "a revoked key is no longer confirmed"
        );
    }
    assert!(
        confirmed(&mut distribution, &reference::tags(&right)[0], 16).await,
        "the other key still is"
    );

    // The next day closes: its roll-up holds the right key and not the revoked one.
    clock.advance(DAY);
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    let daily = &listing.batches[1];
    assert_eq!(daily.supersedes, vec![1]);
    let file = fixtures::download(&mut distribution, &daily.batch_id).await;
    let batch = exposure_matcher::BatchFile::parse(&file).expect("parses");
    assert!(
        reference::tags(&right)
            .iter()
            .all(|tag| batch.contains_key(filter_key(tag)))
    );
    assert!(
        wrong_tags
            .iter()
            .all(|tag| !batch.contains_key(filter_key(tag))),
        "the roll-up leaves the revoked key out"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_still_broadcasting_waits_for_its_embargo() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.release_delay = std::time::Duration::from_secs(2 * 3600)
    })
    .await;
    let today_start = ((TEST_NOW / DAY) * 144) as u32;
    // Yesterday's key ended more than 2 h ago; today's key is still valid until midnight.
    let old = gaen(key16(1), yesterday_start_interval(), 144);
    let current = gaen(key16(2), today_start, 144);
    server
        .upload(fixtures::upload("case", vec![old.clone(), current.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let mut distribution = server.distribution_client().await;
    assert!(confirmed(&mut distribution, &reference::tags(&old)[0], 16).await);
    assert!(
        !confirmed(&mut distribution, &reference::tags(&current)[0], 16).await,
        "still embargoed"
    );

    // Midnight plus the 2 h delay: today's key is released.
    clock.set((TEST_NOW / DAY + 1) * DAY + 2 * 3600);
    let listing = server
        .wait_for_batches(|listing| {
            listing
                .batches
                .iter()
                .any(|b| b.sequence >= 2 && b.supersedes.is_empty())
        })
        .await;
    assert!(listing.batches.len() >= 2);
    assert!(
        confirmed(&mut distribution, &reference::tags(&current)[0], 16).await,
        "released after the embargo"
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_unauthenticated_and_a_foreign_region_is_denied() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let mut client = server.upload_client().await;
    let request = || fixtures::upload("x", vec![gaen(key16(1), yesterday_start_interval(), 144)]);

    let missing = client
        .upload_diagnosis_keys(request())
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);

    let mut wrong = tonic::Request::new(request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer exps_0000".parse().expect("ascii"));
    assert_eq!(
        client
            .upload_diagnosis_keys(wrong)
            .await
            .expect_err("wrong token")
            .code(),
        Code::Unauthenticated
    );

    let mut malformed = tonic::Request::new(request());
    malformed
        .metadata_mut()
        .insert("authorization", server.token.parse().expect("ascii"));
    assert_eq!(
        client
            .upload_diagnosis_keys(malformed)
            .await
            .expect_err("no Bearer")
            .code(),
        Code::Unauthenticated
    );

    let foreign = UploadDiagnosisKeysRequest {
        region: "VN-HN".into(),
        ..request()
    };
    let denied = client
        .upload_diagnosis_keys(server.authorized(foreign))
        .await
        .expect_err("foreign region");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("VN-HN"));
    assert_eq!(REGION, "VN-TB");

    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 0);
}

/// Returns a GAEN key valid for the whole UTC day `day`.
fn key_of_day(byte: u8, day: u64) -> exposure_proto::v1::DiagnosisKey {
    gaen(key16(byte), (day * 144) as u32, 144)
}

#[tokio::test]
async fn no_key_is_acknowledged_that_retention_would_delete_when_it_is_published() {
    let today = TEST_NOW / DAY;
    // Defaults: --max-key-age-days 15, --retention-days 14. A key of the day 15 days back
    // ended 14.5 days before TEST_NOW (noon): it would be acknowledged, then published and
    // deleted by retention in one run. The accepted age is the smaller of the two.
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.fingerprint_bits = 32;
    })
    .await;
    assert_eq!(
        (server.config.max_key_age_days, server.config.retention_days),
        (15, 14)
    );
    let mut client = server.upload_client().await;
    let status = client
        .upload_diagnosis_keys(
            server.authorized(fixtures::upload("too-old", vec![key_of_day(1, today - 15)])),
        )
        .await
        .expect_err("older than retention");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains(
            "keys[0].gaen.rolling_start_interval_number: key expired more than 14 days ago"
        ),
        "{}",
        status.message()
    );
    let old_bluezone = fixtures::bluezone(
        [1; 32],
        (today - 15) as u32,
        (today - 15) * DAY,
        (today - 14) * DAY,
    );
    let status = client
        .upload_diagnosis_keys(
            server.authorized(fixtures::upload("too-old-bz", vec![old_bluezone])),
        )
        .await
        .expect_err("a Bluezone day older than retention");
    assert!(
        status.message().contains("keys[0].bluezone.day_number"),
        "{}",
        status.message()
    );

    // A key that ended 13.5 days ago is acknowledged, published, and still confirms after
    // the runs that follow (each applies retention).
    let oldest_kept = key_of_day(2, today - 14);
    server
        .upload(fixtures::upload("oldest-kept", vec![oldest_kept.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    // Runs do not overlap: once a later upload's batch is out, the retention of the run that
    // published the old key has run too.
    server
        .upload(fixtures::upload("later", vec![key_of_day(3, today - 1)]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    let mut distribution = server.distribution_client().await;
    assert!(confirmed(&mut distribution, &reference::tags(&oldest_kept)[0], 16).await);
    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 2, "retention kept both");
}

#[tokio::test]
async fn a_longer_retention_lets_the_configured_key_age_apply() {
    let today = TEST_NOW / DAY;
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.retention_days = 20;
    })
    .await;
    let answer = server
        .upload(fixtures::upload("fifteen", vec![key_of_day(1, today - 15)]))
        .await;
    assert_eq!(
        answer.keys_accepted, 1,
        "15 days of key age under 20 of retention"
    );
    let refused = server
        .upload_client()
        .await
        .upload_diagnosis_keys(
            server.authorized(fixtures::upload("sixteen", vec![key_of_day(2, today - 16)])),
        )
        .await
        .expect_err("past --max-key-age-days");
    assert!(
        refused.message().contains("15 days"),
        "{}",
        refused.message()
    );
    server.stop().await;
}

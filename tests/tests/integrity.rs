//! The correctness holes a review found, closed: sequences are never reused after a restart,
//! a digest shared by two keys survives the revocation of one, a revocation never waits for a
//! whole publish run, an authority withdraws only its own keys, and a large day is rolled up in
//! bounded parts.

use std::time::{Duration, Instant};

use exposure_matcher::BatchFile;
use exposure_proto::v1::{BatchKind, DiagnosisKey, ReportType};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_server::storage::authorities::new_authority;
use exposure_tests::fixtures::{self, confirmed, download, gaen, key16, static_id};
use exposure_tests::reference::{self, filter_key};
use exposure_tests::{REGION, TEST_NOW, TestServer};

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;

/// A GAEN key valid all of yesterday.
fn yesterday_key(key_data: [u8; 16]) -> DiagnosisKey {
    gaen(key_data, ((TODAY - 1) * 144) as u32, 144)
}

/// Returns 16 key bytes made from a number, for tests that need many distinct keys.
fn numbered_key(number: u32) -> [u8; 16] {
    let mut key = [0x5a; 16];
    key[..4].copy_from_slice(&number.to_be_bytes());
    key
}

/// Returns a REVOKED upload of `keys`.
fn revocation(
    upload_id: &str,
    keys: Vec<DiagnosisKey>,
) -> exposure_proto::v1::UploadDiagnosisKeysRequest {
    let mut request = fixtures::upload(upload_id, keys);
    request.report_type = ReportType::Revoked as i32;
    request
}

#[tokio::test]
async fn sequences_of_revoked_keys_are_not_reused_after_a_restart() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| config.fingerprint_bits = 32).await;
    let (first, second, newest) = (
        yesterday_key(key16(1)),
        yesterday_key(key16(2)),
        yesterday_key(key16(3)),
    );
    server
        .upload(fixtures::upload("a", vec![first.clone(), second.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    server
        .upload(fixtures::upload("b", vec![newest.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    // The newest key is withdrawn: the highest stored sequence is now below its number.
    let answer = server
        .upload(revocation("b-revoked", vec![newest.clone()]))
        .await;
    assert_eq!(answer.keys_revoked, 1);
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;

    // After a restart, a new key is still under embargo when today's batches are rolled up.
    let mut restarted_config = config.clone();
    restarted_config.release_delay = Duration::from_secs(30 * DAY);
    let server = TestServer::restart(&dir, token.clone(), clock.clone(), restarted_config).await;
    let embargoed = yesterday_key(key16(4));
    server
        .upload(fixtures::upload("c", vec![embargoed.clone()]))
        .await;
    clock.advance(DAY);
    let listing = server
        .wait_for_batches(|listing| {
            listing
                .batches
                .iter()
                .any(|batch| batch.kind == BatchKind::Daily as i32)
        })
        .await;
    let daily = listing
        .batches
        .iter()
        .find(|batch| batch.kind == BatchKind::Daily as i32)
        .expect("a roll-up");
    assert_eq!(daily.supersedes, vec![1, 2]);
    let file = download(&mut server.distribution_client().await, &daily.batch_id).await;
    let batch = BatchFile::parse(&file).expect("parses");
    for (key, expected) in [
        (&first, true),
        (&second, true),
        (&newest, false),
        (&embargoed, false),
    ] {
        let tags = reference::tags(key);
        let held = tags
            .iter()
            .filter(|tag| batch.contains_key(filter_key(tag)))
            .count();
        assert_eq!(
            held,
            if expected { tags.len() } else { 0 },
            "the roll-up holds exactly the day's published keys"
        );
    }
    server.stop_kept().await;

    let store = Store::open(dir.path()).expect("reopen");
    let published: Vec<u64> = store
        .all_batches()
        .expect("batches")
        .into_iter()
        .flat_map(|record| record.key_sequences)
        .collect();
    // The embargoed key is the only one still waiting for release.
    let pending = store.releasable(u64::MAX).expect("pending keys");
    assert_eq!(pending.len(), 1);
    let embargoed_sequence = pending[0];
    assert!(
        published
            .iter()
            .all(|sequence| *sequence < embargoed_sequence),
        "the new key got a sequence no batch record names ({embargoed_sequence} vs {published:?})"
    );
}

#[tokio::test]
async fn revoking_one_of_two_overlapping_keys_keeps_the_others_tags_confirmable() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.fingerprint_bits = 32
    })
    .await;
    // A corrected re-upload: the same TEK with the right validity period, then the wrong one
    // is revoked. The two share the digests of their first 100 intervals.
    let wrong = gaen(key16(7), ((TODAY - 1) * 144) as u32, 144);
    let right = gaen(key16(7), ((TODAY - 1) * 144) as u32, 100);
    server
        .upload(fixtures::upload("wrong", vec![wrong.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    server
        .upload(fixtures::upload("right", vec![right.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    let answer = server
        .upload(revocation("wrong-revoked", vec![wrong.clone()]))
        .await;
    assert_eq!(answer.keys_revoked, 1);

    let mut distribution = server.distribution_client().await;
    let right_tags = reference::tags(&right);
    for tag in &right_tags {
        assert!(
            confirmed(&mut distribution, tag, 16).await,
            "every tag of the remaining key still confirms"
        );
    }
    for tag in reference::tags(&wrong).iter().skip(right_tags.len()) {
        assert!(
            !confirmed(&mut distribution, tag, 16).await,
            "tags only the revoked key produced no longer confirm"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_revocation_during_a_long_publish_run_does_not_wait_for_the_run() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        // Every key waits for the clock to move; then the backlog goes out as many large
        // batches in one run (300 keys of 1,152 elements: 345,600 elements a batch).
        config.release_delay = Duration::from_secs(DAY);
        config.max_keys_per_batch = 300;
        config.fingerprint_bits = 32;
        config.authority_uploads_per_minute = 0;
    })
    .await;
    // Static identifiers heard over the 12 days before today: 1,152 slots of 900 s each.
    let keys: Vec<DiagnosisKey> = (0..2400)
        .map(|number| static_id(&numbered_key(number), (TODAY - 12) * DAY, TODAY * DAY))
        .collect();
    for (index, chunk) in keys.chunks(30).enumerate() {
        server
            .upload(fixtures::upload(
                &format!("backlog-{index}"),
                chunk.to_vec(),
            ))
            .await;
    }
    let expected_batches = keys.len() / 300;
    clock.advance(DAY);
    server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;

    // While the run is in progress: withdraw a key of the last batch, and keep uploading.
    let withdrawn = keys.last().expect("keys").clone();
    let started = Instant::now();
    let answer = server
        .upload(revocation("withdraw-last", vec![withdrawn.clone()]))
        .await;
    assert_eq!(answer.keys_revoked, 1);
    let mut latencies = vec![started.elapsed()];
    for index in 0..5u32 {
        let started = Instant::now();
        let answer = server
            .upload(fixtures::upload(
                &format!("during-{index}"),
                vec![yesterday_key(numbered_key(100_000 + index))],
            ))
            .await;
        assert_eq!(answer.keys_accepted, 1);
        latencies.push(started.elapsed());
    }
    // What shows the uploads did not wait for the run: the run was still publishing when the
    // last of them was answered (the latencies are printed for the record only; any bound on
    // them would be a wall-clock assertion that a loaded machine breaks or the 10 s request
    // timeout makes vacuous).
    let published_meanwhile = server.wait_for_batches(|_| true).await.batches.len();
    assert!(
        published_meanwhile < expected_batches,
        "the uploads were answered while the run was still publishing \
         ({published_meanwhile} of {expected_batches} batches out; latencies {latencies:?})"
    );

    // The backlog, the withdrawn key's batch without it, and the uploads made meanwhile; a
    // machine busy with other tests may need a while for that many large batches.
    let listing = wait_long_for_batches(&server, expected_batches + 1).await;
    let mut distribution = server.distribution_client().await;
    let withdrawn_tags = reference::tags(&withdrawn);
    for info in &listing.batches {
        let file = download(&mut distribution, &info.batch_id).await;
        let batch = BatchFile::parse(&file).expect("parses");
        assert!(
            withdrawn_tags
                .iter()
                .all(|tag| !batch.contains_key(filter_key(tag))),
            "no batch holds the withdrawn key (batch {})",
            info.sequence
        );
    }
    assert!(!confirmed(&mut distribution, &withdrawn_tags[0], 16).await);
    server.stop().await;
}

/// Polls ListBatches until `count` batches are listed; panics after two minutes.
async fn wait_long_for_batches(
    server: &TestServer,
    count: usize,
) -> exposure_proto::v1::ListBatchesResponse {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listing = server.wait_for_batches(|_| true).await;
        if listing.batches.len() >= count {
            return listing;
        }
        assert!(
            Instant::now() < deadline,
            "{count} batches not published in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_authority_withdraws_only_its_own_keys_unless_it_is_an_admin() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;
    let (other_token, admin_token) = {
        let store = Store::open(dir.path()).expect("open");
        let mut tokens = Vec::new();
        for admin in [false, true] {
            let mut new = new_authority("second authority", &[REGION.to_owned()], TEST_NOW);
            new.authority.admin = admin;
            store
                .put_authority(&new.token_hash, &new.authority)
                .expect("add authority");
            tokens.push(new.token);
        }
        (tokens[0].clone(), tokens[1].clone())
    };
    let server = TestServer::restart(&dir, token, clock, config).await;
    let key = yesterday_key(key16(9));
    server
        .upload(fixtures::upload("mine", vec![key.clone()]))
        .await;

    let mut client = server.upload_client().await;
    let with_token = |token: &str, request| {
        let mut request = tonic::Request::new(request);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        request
    };
    let foreign = client
        .upload_diagnosis_keys(with_token(
            &other_token,
            revocation("not-mine", vec![key.clone()]),
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(foreign.keys_revoked, 0, "another authority's key stays");
    let by_admin = client
        .upload_diagnosis_keys(with_token(
            &admin_token,
            revocation("admin", vec![key.clone()]),
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(
        by_admin.keys_revoked, 1,
        "an admin withdraws any key of its region"
    );
    server.stop_kept().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 0);
}

#[tokio::test]
async fn a_day_with_more_keys_than_one_batch_is_rolled_up_in_parts() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.max_keys_per_batch = 2;
        config.fingerprint_bits = 32;
    })
    .await;
    let keys: Vec<DiagnosisKey> = (1..=3).map(|byte| yesterday_key(key16(byte))).collect();
    for (index, key) in keys.iter().enumerate() {
        server
            .upload(fixtures::upload(
                &format!("hour-{index}"),
                vec![key.clone()],
            ))
            .await;
        server
            .wait_for_batches(|listing| listing.batches.len() == index + 1)
            .await;
    }
    clock.advance(DAY);
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 5)
        .await;
    let daily: Vec<_> = listing
        .batches
        .iter()
        .filter(|batch| batch.kind == BatchKind::Daily as i32)
        .collect();
    assert_eq!(
        daily
            .iter()
            .map(|batch| batch.supersedes.clone())
            .collect::<Vec<_>>(),
        vec![vec![1, 2], vec![3]],
        "each part supersedes exactly the hourly batches it holds"
    );
    let mut distribution = server.distribution_client().await;
    for (part, holds) in daily.iter().zip([&keys[0..2], &keys[2..3]]) {
        let file = download(&mut distribution, &part.batch_id).await;
        let batch = BatchFile::parse(&file).expect("parses");
        for key in &keys {
            let inside = reference::tags(key)
                .iter()
                .all(|tag| batch.contains_key(filter_key(tag)));
            assert_eq!(
                inside,
                holds.contains(key),
                "part {} and key {key:?}",
                part.sequence
            );
        }
    }
    server.stop().await;
}

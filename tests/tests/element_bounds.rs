//! Element bounds (issue 18, hole 1): a batch holds at most `--max-elements-per-batch` elements,
//! a larger release goes out as several batches of the same run (and a larger day as several
//! roll-ups), every key in exactly one hourly batch; and Bluezone keys use only the
//! `--bluezone-sub-keys-per-day` values the server allows.

use std::collections::BTreeSet;

use exposure_matcher::BatchFile;
use exposure_proto::v1::{BatchKind, DiagnosisKey};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_tests::fixtures::{self, bluezone, download, gaen, key16, static_id};
use exposure_tests::reference::{self, Tag, filter_key};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;
/// The cap the test server runs with: above the 1,441 elements of the largest key, far below
/// the release.
const CAP: u32 = 2_000;

/// Returns the release: 8 GAEN keys of 144 elements, 2 static keys of 960 (10 days of 900 s
/// slots, aligned) and 6 full-day Bluezone keys of 96: 3,648 elements, so at least two batches.
fn release() -> Vec<DiagnosisKey> {
    let mut keys: Vec<DiagnosisKey> = (1..=8u8)
        .map(|byte| gaen(key16(byte), ((TODAY - 2) * 144) as u32, 144))
        .collect();
    for (index, identifier) in [b"AB12CD", b"EF34GH"].into_iter().enumerate() {
        let until = (TODAY - 1 - index as u64) * DAY;
        keys.push(static_id(identifier, until - 10 * DAY, until));
    }
    for byte in 1..=6u8 {
        let day = TODAY - 1 - u64::from(byte % 3);
        keys.push(bluezone([byte; 32], day as u32, day * DAY, (day + 1) * DAY));
    }
    keys
}

#[tokio::test]
async fn a_release_larger_than_the_element_cap_goes_out_as_several_batches_each_key_once() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        // Keys wait until the clock moves, then one run releases them all.
        config.release_delay = std::time::Duration::from_secs(3 * DAY);
        config.max_elements_per_batch = u64::from(CAP);
        config.fingerprint_bits = 32;
    })
    .await;
    let keys = release();
    let expected: [u64; 16] = [
        144, 144, 144, 144, 144, 144, 144, 144, 960, 960, 96, 96, 96, 96, 96, 96,
    ];
    for (key, elements) in keys.iter().zip(expected) {
        assert_eq!(reference::tags(key).len() as u64, elements, "{key:?}");
    }
    let total: u64 = expected.iter().sum();
    assert_eq!(total, 3_648);
    let answer = server
        .upload(fixtures::upload("release", keys.clone()))
        .await;
    assert_eq!(answer.keys_accepted, 16);

    clock.advance(3 * DAY);
    let listing = server
        .wait_for_batches(|listing| {
            let tags_published: usize = listing
                .batches
                .iter()
                .map(|batch| batch.element_count as usize)
                .sum();
            tags_published >= total as usize
        })
        .await;
    let hourly = listing.batches.clone();
    assert!(
        hourly.len() >= 2,
        "3,648 elements under a cap of {CAP} need two batches at least: {hourly:?}"
    );
    assert!(
        hourly
            .iter()
            .all(|batch| batch.kind == BatchKind::Hourly as i32
                && batch.created_at == hourly[0].created_at),
        "every batch is hourly and of the same run: {hourly:?}"
    );
    let mut distribution = server.distribution_client().await;
    let mut files = Vec::new();
    for info in &hourly {
        assert!(
            info.element_count <= CAP,
            "batch {} over the cap",
            info.sequence
        );
        files.push(download(&mut distribution, &info.batch_id).await);
    }
    let batches: Vec<BatchFile<'_>> = files
        .iter()
        .map(|file| BatchFile::parse(file).expect("batch parses"))
        .collect();
    for batch in &batches {
        assert!(batch.header().element_count <= CAP);
    }
    // With 32-bit fingerprints a foreign tag is a member with probability 2^-32: a key whose
    // tags all lie in one batch and none in another was published there and only there.
    for key in &keys {
        let tags: Vec<Tag> = reference::tags(key);
        let holding: Vec<usize> = batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| tags.iter().any(|tag| batch.contains_key(filter_key(tag))))
            .map(|(index, _)| index)
            .collect();
        assert_eq!(holding.len(), 1, "{key:?} is in batches {holding:?}");
        assert!(
            tags.iter()
                .all(|tag| batches[holding[0]].contains_key(filter_key(tag))),
            "every tag of {key:?} is in its batch"
        );
    }

    // The next day, the roll-up of those batches is split by the same cap.
    clock.advance(DAY);
    let listing = server
        .wait_for_batches(|listing| {
            let superseded: BTreeSet<u64> = listing
                .batches
                .iter()
                .flat_map(|batch| batch.supersedes.iter().copied())
                .collect();
            hourly
                .iter()
                .all(|batch| superseded.contains(&batch.sequence))
        })
        .await;
    let daily: Vec<_> = listing
        .batches
        .iter()
        .filter(|batch| batch.kind == BatchKind::Daily as i32)
        .collect();
    assert!(daily.len() >= 2, "{daily:?}");
    assert!(daily.iter().all(|batch| batch.element_count <= CAP));

    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    let mut published = Vec::new();
    for info in &hourly {
        let record = store
            .batch(REGION, info.sequence)
            .expect("read")
            .expect("batch record");
        published.extend(record.key_sequences);
    }
    let distinct: BTreeSet<u64> = published.iter().copied().collect();
    assert_eq!(published.len(), 16, "16 keys published: {published:?}");
    assert_eq!(distinct.len(), 16, "no key published twice: {published:?}");
    assert_eq!(
        store.pending_keys(TEST_NOW + 4 * DAY).expect("pending"),
        exposure_server::storage::keys::PendingKeys::default(),
        "no key left behind"
    );
}

#[tokio::test]
async fn only_the_configured_sub_keys_per_day_are_accepted() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.bluezone_sub_keys_per_day = vec![96, 1440];
    })
    .await;
    let day = TODAY - 1;
    let with_sub_keys = |byte: u8, sub_keys_per_day: u32| {
        let mut key = bluezone([byte; 32], day as u32, day * DAY, (day + 1) * DAY);
        if let Some(exposure_proto::v1::diagnosis_key::Key::Bluezone(bluezone)) = key.key.as_mut() {
            bluezone.sub_keys_per_day = sub_keys_per_day;
        }
        key
    };
    let accepted = server
        .upload(fixtures::upload(
            "minute",
            vec![with_sub_keys(1, 1440), with_sub_keys(2, 96)],
        ))
        .await;
    assert_eq!(accepted.keys_accepted, 2);
    let refused = server
        .upload_client()
        .await
        .upload_diagnosis_keys(
            server.authorized(fixtures::upload("half-hour", vec![with_sub_keys(3, 48)])),
        )
        .await
        .expect_err("48 is not allowed");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("keys[0].bluezone.sub_keys_per_day: must be one of [96, 1440]"),
        "the message lists the allowed values: {}",
        refused.message()
    );
    server.stop().await;
}

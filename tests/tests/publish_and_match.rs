//! The whole path for each identifier scheme: upload → publish → list → download → verify the
//! signature with the key from GetSigningKeys → every tag of the uploaded keys hits the filter →
//! the confirm bucket confirms each → an unrelated tag is not confirmed.

use exposure_matcher::BatchFile;
use exposure_proto::v1::{BatchKind, DiagnosisKey};
use exposure_server::Clock;
use exposure_tests::fixtures::{
    self, bluezone, confirmed, current_signing_key, download, gaen, key16, static_id,
};
use exposure_tests::reference::{self, SCHEME_GAEN, filter_key};
use exposure_tests::{TEST_NOW, TestServer};

const DAY: u64 = 86_400;

fn yesterday() -> u32 {
    (TEST_NOW / DAY - 1) as u32
}

async fn round_trip(key: DiagnosisKey, expected_elements: usize) {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let response = server
        .upload(fixtures::upload("case-1", vec![key.clone()]))
        .await;
    assert_eq!(
        (
            response.keys_accepted,
            response.keys_already_known,
            response.replay
        ),
        (1, 0, false)
    );

    let listing = server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    assert_eq!(listing.batches.len(), 1);
    assert_eq!(listing.confirm_prefix_bits, 16);
    let info = &listing.batches[0];
    assert_eq!(info.kind, BatchKind::Hourly as i32);
    assert_eq!(info.sequence, 1);
    assert_eq!(info.fingerprint_bits, 16);
    assert_eq!(
        info.element_count as usize, expected_elements,
        "the key's elements, unpadded (the tests of padding: tests/padding.rs)"
    );

    let mut distribution = server.distribution_client().await;
    let file = download(&mut distribution, &info.batch_id).await;
    assert_eq!(file.len() as u64, info.size_bytes);
    let (key_id, public_key) = current_signing_key(&mut distribution).await;
    assert_eq!(info.key_id, key_id);
    let batch = BatchFile::parse(&file).expect("batch parses");
    batch
        .verify(&public_key)
        .expect("signature verifies with the published key");
    assert_eq!(
        batch.batch_id(),
        info.batch_id,
        "batch id is the SHA-256 of the body"
    );
    assert_eq!(batch.header().sequence, 1);

    // Expected from the tests crate's own implementation of DESIGN §2–§3, not the server's.
    let elements = reference::elements(&key);
    assert_eq!(elements.len(), expected_elements);
    assert_eq!(
        info.slot_min,
        elements.iter().map(|e| e.slot_start).min().unwrap_or(0)
    );
    assert_eq!(
        info.slot_max,
        elements.iter().map(|e| e.slot_start).max().unwrap_or(0)
    );
    for element in &elements {
        assert!(
            batch.contains_key(filter_key(&element.tag)),
            "published tag {} is in the filter",
            hex::encode(element.tag)
        );
        assert!(
            confirmed(&mut distribution, &element.tag, 16).await,
            "published tag is confirmed"
        );
    }
    let unrelated = reference::tag(SCHEME_GAEN, elements[0].slot_start, &[0x5a; 16]);
    assert!(
        !confirmed(&mut distribution, &unrelated, 16).await,
        "an unrelated tag is not confirmed"
    );
    server.stop().await;
}

#[tokio::test]
async fn gaen_key_round_trip() {
    round_trip(gaen(key16(1), yesterday() * 144, 144), 144).await;
}

#[tokio::test]
async fn bluezone_key_round_trip() {
    let day = u64::from(yesterday()) * DAY;
    round_trip(bluezone([7; 32], yesterday(), day, day + DAY), 96).await;
}

#[tokio::test]
async fn bluezone_window_publishes_only_overlapping_slots() {
    let day = u64::from(yesterday()) * DAY;
    // 10:07 to 12:00 overlaps the 900-second slots starting 10:00 … 11:45: eight slots.
    round_trip(
        bluezone([8; 32], yesterday(), day + 10 * 3600 + 420, day + 12 * 3600),
        8,
    )
    .await;
}

#[tokio::test]
async fn static_identifier_round_trip() {
    // Three hours to one hour ago, aligned to 900 s: eight slots.
    round_trip(
        static_id(b"AB12CD", TEST_NOW - 3 * 3600, TEST_NOW - 3600),
        8,
    )
    .await;
}

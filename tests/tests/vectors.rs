//! DESIGN §3's vector keys end to end: each is uploaded over gRPC to the real server, and the
//! published batch and the confirm buckets are checked against the literal tags of DESIGN §3 and
//! `tests/vectors/gaen-rpi.tsv`. No code under test computes an expected value: the filter key,
//! the confirm digest and its prefix are cut from the literal tag bytes by the tests crate's
//! reference implementation (`exposure_tests::reference`), so a wrong mapping from the upload
//! to the tags (window bounds, day number, interval) fails here even though the server's own
//! derivation would agree with itself.

use exposure_matcher::BatchFile;
use exposure_proto::v1::{BatchInfo, DiagnosisKey};
use exposure_server::Clock;
use exposure_tests::TestServer;
use exposure_tests::fixtures::{
    self, bluezone, confirm_bucket, current_signing_key, download, gaen, static_id,
};
use exposure_tests::reference::{bucket, confirm_digest, filter_key};
use exposure_tests::vectors::{GAEN_RSIN, GAEN_TEK, gaen_rows, tag_bytes};

/// DESIGN §3, GAEN: j = 0 (slot 1585785600) and j = 1 (slot 1585786200).
const GAEN_TAGS: [&str; 2] = [
    "04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b",
    "f234c1c92bf858efbae7f2e2b84f377c68f4dc3f3e003af5c7f6d4a858e47419",
];
/// DESIGN §3, Bluezone: daily key 00 01 … 1f, day 20454, N 96, k = 0 (slot 1767225600).
const BLUEZONE_TAG: &str = "23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8";
/// DESIGN §3, static identifier `AB12CD` in slot 1767225600.
const STATIC_TAG: &str = "063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b";

/// Starts a server whose clock reads `now`, publishing without padding (one decoy at most),
/// so a batch's element count is the number of distinct tags it holds.
async fn server_at(now: u64) -> TestServer {
    TestServer::start_with(Clock::manual(now), |config| {
        config.pad_min_keys = 0;
        config.gaen_export = false;
    })
    .await
}

/// Uploads `keys`, waits for the one batch they make, downloads it and verifies its signature
/// with the key GetSigningKeys serves; returns its listing entry, its bytes and the
/// deployment's confirm prefix bits.
async fn publish(server: &TestServer, keys: Vec<DiagnosisKey>) -> (BatchInfo, Vec<u8>, u32) {
    let count = keys.len() as u32;
    let answer = server.upload(fixtures::upload("vectors", keys)).await;
    assert_eq!(answer.keys_accepted, count);
    let listing = server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    assert_eq!(listing.batches.len(), 1, "{listing:?}");
    let info = listing.batches[0].clone();
    let mut distribution = server.distribution_client().await;
    let file = download(&mut distribution, &info.batch_id).await;
    let (key_id, public_key) = current_signing_key(&mut distribution).await;
    let batch = BatchFile::parse(&file).expect("batch parses");
    assert_eq!(batch.key_id(), key_id);
    batch
        .verify(&public_key)
        .expect("signed by the current key");
    (info, file, listing.confirm_prefix_bits)
}

/// Checks that the batch's filter holds each literal tag's filter key and that the confirm
/// bucket of each tag's prefix holds its literal digest.
async fn assert_published(server: &TestServer, file: &[u8], prefix_bits: u32, tags: &[&str]) {
    let batch = BatchFile::parse(file).expect("batch parses");
    let mut distribution = server.distribution_client().await;
    for tag_hex in tags {
        let tag = tag_bytes(tag_hex);
        assert!(
            batch.contains_key(filter_key(&tag)),
            "filter key of {tag_hex} in the batch"
        );
        let digest = confirm_digest(&tag);
        let bucket =
            confirm_bucket(&mut distribution, bucket(&digest, prefix_bits), prefix_bits).await;
        assert!(
            bucket.iter().any(|other| other.as_slice() == digest),
            "confirm digest {} of {tag_hex} in its bucket of {} digests",
            hex::encode(digest),
            bucket.len()
        );
    }
}

#[tokio::test]
async fn the_gaen_vector_key_publishes_the_official_tags() {
    // The key covers 2 April 2020 (ENIN 2642976 + 0..144); an hour after its last interval
    // ends, it is within the upload window and past the embargo.
    let server = server_at(1_585_872_000 + 3_600).await;
    let mut tek = [0u8; 16];
    hex::decode_to_slice(GAEN_TEK, &mut tek).expect("TEK hex");
    let (info, file, prefix_bits) = publish(&server, vec![gaen(tek, GAEN_RSIN, 144)]).await;
    assert_eq!(info.element_count, 144, "one tag per interval");
    assert_eq!(info.slot_min, 1_585_785_600, "ENIN 2642976 × 600");
    assert_eq!(info.slot_max, 1_585_871_400, "ENIN 2643119 × 600");

    let rows = gaen_rows();
    assert_eq!(rows.len(), 16, "the first 16 Google/Apple vectors");
    assert!(
        rows.iter()
            .enumerate()
            .all(|(index, row)| row.j as usize == index && row.interval == GAEN_RSIN + row.j)
    );
    assert_eq!(rows[0].tag, GAEN_TAGS[0], "the file agrees with DESIGN §3");
    assert_eq!(rows[1].tag, GAEN_TAGS[1], "the file agrees with DESIGN §3");
    let tags: Vec<&str> = rows.iter().map(|row| row.tag.as_str()).collect();
    assert_published(&server, &file, prefix_bits, &tags).await;
    server.stop().await;
}

#[tokio::test]
async fn the_bluezone_and_static_vector_keys_publish_the_design_tags() {
    // Day 20454 is 1 January 2026; an hour after it ends.
    let day_start = 1_767_225_600;
    let server = server_at(day_start + 86_400 + 3_600).await;
    let daily_key: [u8; 32] = std::array::from_fn(|index| index as u8);
    let (info, file, prefix_bits) = publish(
        &server,
        vec![
            bluezone(daily_key, 20_454, day_start, day_start + 86_400),
            // Inside the day's first 900-second slot only.
            static_id(b"AB12CD", day_start + 100, day_start + 200),
        ],
    )
    .await;
    assert_eq!(
        info.element_count,
        96 + 1,
        "96 rolling ids and one static slot"
    );
    assert_eq!(info.slot_min, day_start);
    assert_eq!(
        info.slot_max,
        day_start + 95 * 900,
        "the day's last rolling id"
    );
    assert_published(&server, &file, prefix_bits, &[BLUEZONE_TAG, STATIC_TAG]).await;
    server.stop().await;
}

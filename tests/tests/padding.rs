//! Padding that hides (DESIGN §14), attacked the way issue 20 did it: with nothing but the
//! public objects the HTTP listener serves, an outsider expands every exported GAEN key with the
//! tests' reference code (DESIGN §2–3), looks its tags up in the filter batches (DESIGN §4, read
//! independently by `public_view`) and in the confirm buckets. Every exported key hits and
//! confirms, synthetic or real, so the keys recovered are the padded total, never the real
//! count; counting every confirm bucket's digests finds the padded element count too. A phone
//! that heard nothing gets no alert over a day of padded batches, the daily roll-up holds the
//! synthetic keys, and retention expires them, while the store counts only uploaded keys.

use std::collections::BTreeSet;

use exposure_proto::v1::{BatchKind, DiagnosisKey};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_tests::fixtures::{self, gaen, static_id};
use exposure_tests::gaen_python::{PythonDecoder, key_bytes};
use exposure_tests::public_view::{PublicView, filter_keys, gaen_key_tags};
use exposure_tests::reference::{self, SCHEME_GAEN, filter_key, tag};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use rand::{Rng, RngCore, SeedableRng};

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;
/// Padding of these tests: 10 keys plus 0..=5.
const PAD_MIN_KEYS: usize = 10;
const PAD_JITTER: usize = 5;

/// Starts a server that pads runs to 10..=15 keys, with 8-bit confirm prefixes so that an
/// outsider can fetch every bucket (256 requests).
async fn padded_server(clock: Clock) -> TestServer {
    TestServer::start_with(clock, |config| {
        config.pad_min_keys = PAD_MIN_KEYS as u32;
        config.pad_jitter = PAD_JITTER as u32;
        config.confirm_prefix_bits = 8;
    })
    .await
}

/// Returns a GAEN key valid all of the day before `day`, with key data made from `number`.
fn key_of_day_before(day: u64, number: u32) -> DiagnosisKey {
    let mut key_data = [0xa5; 16];
    key_data[..4].copy_from_slice(&number.to_be_bytes());
    gaen(key_data, ((day - 1) * 144) as u32, 144)
}

/// An exported key as the outsider reads it: key data, first interval, period.
type ExportedKey = (Vec<u8>, u32, u32);

/// Returns every key of every GAEN file of the view.
fn exported_keys(view: &PublicView) -> Vec<ExportedKey> {
    view.gaen_files
        .iter()
        .flat_map(|file| file.export().keys.iter())
        .map(|key| {
            (
                key.key_data.clone().expect("key_data"),
                u32::try_from(key.rolling_start_interval_number.expect("interval")).expect("u32"),
                u32::try_from(key.rolling_period.expect("period")).expect("u32"),
            )
        })
        .collect()
}

/// The cross-check attack: classifies each exported key as real when every one of its tags is
/// in one batch's filter and confirms in its bucket. Returns how many keys it calls real, and
/// fails if it can call any key padding, because then it could tell them apart.
async fn cross_check(view: &mut PublicView) -> usize {
    let mut recovered = 0;
    for (index, (key_data, interval, period)) in exported_keys(view).into_iter().enumerate() {
        let tags = gaen_key_tags(&key_data, interval, period);
        let keys = filter_keys(&tags);
        let in_a_batch = view
            .batches
            .iter()
            .any(|(_, filter)| keys.iter().all(|key| filter.contains(*key)));
        assert!(
            in_a_batch,
            "exported key {index} is missing from every filter: the outsider would call it padding"
        );
        for tag in &tags {
            assert!(
                view.confirms(tag).await,
                "a tag of exported key {index} does not confirm: the outsider would call it padding"
            );
        }
        recovered += 1;
    }
    recovered
}

/// Checks one GAEN file the way a phone's framework reads it: keys sorted by key data, batch 1
/// of 1.
fn check_sorted(view: &PublicView) {
    for file in &view.gaen_files {
        let export = file.export();
        assert_eq!((export.batch_num, export.batch_size), (Some(1), Some(1)));
        assert!(
            export
                .keys
                .windows(2)
                .all(|pair| pair[0].key_data < pair[1].key_data),
            "keys sorted by key data"
        );
    }
}

/// Decodes every GAEN zip of the view with the independent Python decoder: the keys sorted by
/// key data, `expected_keys` of them in all, and the signature verifying with the listed key.
fn python_cross_check(view: &PublicView, expected_keys: usize) {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let Some(decoder) = PythonDecoder::find(&protoc) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary dir");
    let key_path = dir.path().join("signing-key.der");
    std::fs::write(&key_path, &view.signing_keys[0]).expect("write key");
    let mut total = 0;
    for (index, zip) in view.gaen_zips.iter().enumerate() {
        let zip_path = dir.path().join(format!("{index}.zip"));
        std::fs::write(&zip_path, zip).expect("write zip");
        let decoded = decoder.decode(&zip_path, &[&key_path]);
        let keys = key_bytes(&decoded);
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
        if decoded["signature_checks"] != "skipped" {
            assert_eq!(decoded["signature_checks"], serde_json::json!([0]));
        }
        total += keys.len();
    }
    assert_eq!(total, expected_keys);
}

/// What a run of `real` uploaded keys must look like from outside.
enum Expected {
    /// Padded: between the minimum and the minimum plus the jitter.
    Padded,
    /// Not padded: exactly this many.
    Exactly(usize),
}

/// Uploads `keys` as one case to a fresh padded server, lets one run publish them, and plays
/// the outsider; returns the number of exported keys it recovered.
async fn attack_one_run(keys: Vec<DiagnosisKey>, expected: Expected) -> usize {
    let server = padded_server(Clock::manual(TEST_NOW)).await;
    let real = keys.len();
    let real_gaen = keys
        .iter()
        .filter(|key| reference::elements(key).len() == 144)
        .count();
    let other_elements: usize = keys
        .iter()
        .filter(|key| reference::elements(key).len() != 144)
        .map(|key| reference::elements(key).len())
        .sum();
    server.upload(fixtures::upload("case", keys)).await;
    server.wait_for_gaen_index(1).await;
    let mut view = PublicView::fetch(&server.http_url, REGION).await;
    assert_eq!(view.batches.len(), 1, "one run, one batch");
    assert!(!view.gaen_index.ends_with('\n'), "{:?}", view.gaen_index);
    check_sorted(&view);

    let exported = exported_keys(&view).len();
    python_cross_check(&view, exported);
    // Every key of the run counts toward the padding target; only GAEN keys are exported.
    let padded_total = exported + (real - real_gaen);
    match expected {
        Expected::Padded => assert!(
            (PAD_MIN_KEYS..=PAD_MIN_KEYS + PAD_JITTER).contains(&padded_total),
            "{real} keys padded to {padded_total}"
        ),
        Expected::Exactly(count) => assert_eq!(padded_total, count, "a large run is not padded"),
    }
    let recovered = cross_check(&mut view).await;
    assert_eq!(recovered, exported, "every exported key passes as real");

    // The filter holds the exported keys' elements and the other schemes' ones, nothing else,
    // and the confirm buckets hold exactly one digest per element.
    let element_count = view.batches[0].1.element_count as usize;
    assert_eq!(element_count, exported * 144 + other_elements);
    assert_eq!(view.batches[0].0.element_count as usize, element_count);
    assert_eq!(view.count_digests().await, element_count);

    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        real,
        "only uploads are keys"
    );
    assert_eq!(
        store.count_synthetic_keys().expect("count"),
        padded_total - real
    );
    recovered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_check_recovers_the_padded_total_never_the_real_count() {
    let day = TODAY;
    // No GAEN key at all: the run's one key is a static identifier, and the export holds only
    // synthetic keys, with the defaults' fields.
    let from = (day - 1) * DAY;
    let recovered = attack_one_run(
        vec![static_id(b"no-gaen-key", from, from + 3_600)],
        Expected::Padded,
    )
    .await;
    assert!(recovered >= PAD_MIN_KEYS - 1, "{recovered}");
    for real in [1u32, 7] {
        let keys = (0..real).map(|n| key_of_day_before(day, n)).collect();
        let recovered = attack_one_run(keys, Expected::Padded).await;
        assert!(
            recovered >= PAD_MIN_KEYS && recovered != real as usize,
            "{real} real keys, {recovered} recovered"
        );
    }
    let many = PAD_MIN_KEYS + PAD_JITTER + 3;
    let keys = (0..many as u32)
        .map(|n| key_of_day_before(day, n))
        .collect();
    assert_eq!(attack_one_run(keys, Expected::Exactly(many)).await, many);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_heard_nothing_gets_no_alert_over_a_day_of_padded_batches() {
    // A day of hourly runs, one case each, from 00:30; then the day closes and rolls up.
    let clock = Clock::manual(TODAY * DAY + 1_800);
    let server = padded_server(clock.clone()).await;
    for hour in 0..24u32 {
        server
            .upload(fixtures::upload(
                &format!("hour-{hour}"),
                vec![key_of_day_before(TODAY, hour)],
            ))
            .await;
        server
            .wait_for_batches(|listing| listing.batches.len() == hour as usize + 1)
            .await;
        clock.advance(3_600);
    }
    server
        .wait_for_batches(|listing| listing.batches.len() == 25)
        .await;
    let mut view = PublicView::fetch(&server.http_url, REGION).await;
    assert_eq!(view.gaen_files.len(), 24, "one file a run");
    for file in &view.gaen_files {
        let count = file.export().keys.len();
        assert!(
            (PAD_MIN_KEYS..=PAD_MIN_KEYS + PAD_JITTER).contains(&count),
            "one case padded to {count}"
        );
    }
    let exported = exported_keys(&view);
    let distinct: BTreeSet<&Vec<u8>> = exported.iter().map(|(data, ..)| data).collect();
    assert_eq!(
        distinct.len(),
        exported.len(),
        "random key data never repeats"
    );

    // The roll-up holds every exported key, synthetic ones included.
    let (daily_info, daily) = view
        .batches
        .iter()
        .find(|(info, _)| info.kind == BatchKind::Daily as i32)
        .expect("the day's roll-up")
        .clone();
    let hourly_elements: u32 = view
        .batches
        .iter()
        .filter(|(info, _)| info.kind == BatchKind::Hourly as i32)
        .map(|(info, _)| info.element_count)
        .sum();
    assert_eq!(daily_info.element_count, hourly_elements);
    for (key_data, interval, period) in &exported {
        let keys = filter_keys(&gaen_key_tags(key_data, *interval, *period));
        assert!(keys.iter().all(|key| daily.contains(*key)));
    }
    assert_eq!(view.count_digests().await, exported.len() * 144);

    // A phone that heard 10,000 strangers yesterday, each looked up at its slot and the two
    // neighbours: some filter hits (2^-16 each), none confirmed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut lookups = 0;
    let mut filter_hits = 0;
    for _ in 0..10_000 {
        let mut identifier = [0u8; 16];
        rng.fill_bytes(&mut identifier);
        let interval = (TODAY - 1) * 144 + rng.gen_range(1..143);
        for slot in [interval - 1, interval, interval + 1] {
            let observed = tag(SCHEME_GAEN, slot * 600, &identifier);
            let hits = view
                .batches
                .iter()
                .filter(|(_, filter)| filter.contains(filter_key(&observed)))
                .count();
            lookups += view.batches.len();
            if hits > 0 {
                filter_hits += hits;
                assert!(!view.confirms(&observed).await, "a false alert");
            }
        }
    }
    println!("{lookups} lookups, {filter_hits} filter hits, 0 alerts");

    // Retention expires the synthetic keys with the real ones.
    clock.advance(15 * DAY);
    server
        .wait_for_batches(|listing| listing.batches.is_empty())
        .await;
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 0);
    assert_eq!(store.count_synthetic_keys().expect("count"), 0);
}

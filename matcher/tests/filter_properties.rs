//! Property tests of the filter in a batch file: no false negatives at any width (tiny,
//! duplicate-heavy and ordinary sets), round trips, and a false-positive rate within a sound
//! statistical bound of 2^-w.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{WIDTHS, params, rng, signer};
use exposure_matcher::batch::build_batch_from_filter_keys;
use exposure_matcher::{BatchFile, BatchSigner, FingerprintWidth};
use proptest::prelude::*;
use rand::RngCore;

fn width_strategy() -> impl Strategy<Value = FingerprintWidth> {
    prop_oneof![
        Just(FingerprintWidth::Bits8),
        Just(FingerprintWidth::Bits16),
        Just(FingerprintWidth::Bits32)
    ]
}

/// Key sets of every shape the publisher may meet: tiny, duplicate-heavy, ordinary.
fn key_set_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        prop::collection::vec(any::<u64>(), 0..8),
        prop::collection::vec(0u64..40, 0..400),
        prop::collection::vec(any::<u64>(), 0..3_000),
        prop::collection::vec(any::<u64>(), 0..50).prop_map(|keys| keys.repeat(5)),
    ]
}

fn build(
    keys: &[u64],
    width: FingerprintWidth,
    min_elements: usize,
    signer: &BatchSigner,
    seed: u64,
) -> Vec<u8> {
    build_batch_from_filter_keys(
        &params(width, min_elements),
        keys.to_vec(),
        Some((1, 2)),
        signer,
        &mut rng(seed),
    )
    .unwrap()
    .bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_false_negatives(keys in key_set_strategy(), width in width_strategy(), pad in 0usize..600, seed: u64) {
        let signer = signer();
        let bytes = build(&keys, width, pad, &signer, seed);
        let batch = BatchFile::parse(&bytes).unwrap();
        let distinct: HashSet<u64> = keys.iter().copied().collect();
        prop_assert_eq!(batch.header().element_count as usize, distinct.len().max(pad));
        for key in &keys {
            prop_assert!(batch.contains_key(*key));
        }
        batch.verify(&signer.public_key_der()).unwrap();
    }

    #[test]
    fn parse_of_build_round_trips(keys in key_set_strategy(), width in width_strategy(), sequence: u64, created_at: u64) {
        let signer = signer();
        let mut params = params(width, 0);
        params.sequence = sequence;
        params.created_at = created_at;
        let built = build_batch_from_filter_keys(&params, keys.clone(), Some((5, 9)), &signer, &mut rng(0)).unwrap();
        let batch = BatchFile::parse(&built.bytes).unwrap();
        let header = batch.header();
        prop_assert_eq!(header.sequence, sequence);
        prop_assert_eq!(header.created_at, created_at);
        prop_assert_eq!(header.filter_kind, width);
        prop_assert_eq!((header.slot_min, header.slot_max), (5, 9));
        prop_assert_eq!(header.element_count, built.element_count);
        prop_assert_eq!(batch.batch_id(), built.batch_id);
        let fingerprint_bytes = header.fingerprint_count as usize * width.bytes();
        prop_assert_eq!(built.bytes.len(), batch.body().len() + 1 + batch.key_id().len() + 2 + batch.signature().len());
        prop_assert!(batch.body().len() > fingerprint_bytes);
    }
}

/// Counts filter hits among `probes` random keys that are not in the set.
fn false_positives(width: FingerprintWidth, set_size: usize, probes: u64, seed: u64) -> u64 {
    let mut random = rng(seed);
    let keys: Vec<u64> = (0..set_size).map(|_| random.next_u64()).collect();
    let members: HashSet<u64> = keys.iter().copied().collect();
    let bytes = build(&keys, width, 0, &signer(), seed);
    let batch = BatchFile::parse(&bytes).unwrap();
    let mut hits = 0;
    let mut tried = 0;
    while tried < probes {
        let probe = random.next_u64();
        if members.contains(&probe) {
            continue;
        }
        tried += 1;
        hits += u64::from(batch.contains_key(probe));
    }
    hits
}

/// Asserts `hits` is within 6 standard deviations of Binomial(probes, 2^-bits).
fn assert_within_six_sigma(hits: u64, probes: u64, bits: u32) {
    let rate = 2f64.powi(-(bits as i32));
    let mean = probes as f64 * rate;
    let sigma = (probes as f64 * rate * (1.0 - rate)).sqrt();
    let (low, high) = (mean - 6.0 * sigma, mean + 6.0 * sigma);
    assert!(
        (low..=high).contains(&(hits as f64)),
        "{hits} false positives in {probes} probes at {bits} bits; expected {mean:.1} ± {:.1}",
        6.0 * sigma
    );
}

#[test]
fn false_positive_rate_8_bits_within_six_sigma() {
    let probes = 2_000_000;
    assert_within_six_sigma(
        false_positives(FingerprintWidth::Bits8, 20_000, probes, 11),
        probes,
        8,
    );
}

#[test]
fn false_positive_rate_16_bits_within_six_sigma() {
    // Expected 305 hits, σ ≈ 17.5: the bound [200, 410] is a ±35 % band.
    let probes = 20_000_000;
    assert_within_six_sigma(
        false_positives(FingerprintWidth::Bits16, 20_000, probes, 12),
        probes,
        16,
    );
}

#[test]
fn false_positive_rate_32_bits_has_a_tight_upper_bound() {
    // Expected 0.0047 hits in 2·10^7 probes; P(X ≥ 3) < 2·10^-8 for a correct filter.
    let hits = false_positives(FingerprintWidth::Bits32, 20_000, 20_000_000, 13);
    assert!(hits <= 2, "{hits} false positives at 32 bits");
}

#[test]
fn all_widths_accept_a_set_built_from_one_seed() {
    for width in WIDTHS {
        let keys: Vec<u64> = (0..1_000u64).map(|key| key * key).collect();
        let bytes = build(&keys, width, 0, &signer(), 0);
        let batch = BatchFile::parse(&bytes).unwrap();
        assert!(keys.iter().all(|key| batch.contains_key(*key)));
    }
}

//! Lookups scheduled for the cache give the plain loop's answer, hit for hit: the scheduled
//! schedule, the probe of precomputed hashes in any order (sorted included), and an observation
//! store's match, ordered ahead or not, on random and adversarial inputs at every width.

#![allow(clippy::unwrap_used)]

mod common;

use common::{WIDTHS, params, rng, signer};
use exposure_matcher::batch::{SCHEDULE_BLOCK, build_batch_from_filter_keys};
use exposure_matcher::{BatchFile, BatchSigner, FingerprintWidth, ObservationStore, Scheme};
use proptest::prelude::*;
use rand::RngCore;

fn build(keys: &[u64], width: FingerprintWidth, signer: &BatchSigner) -> Vec<u8> {
    build_batch_from_filter_keys(&params(width, 0), keys.to_vec(), None, signer, &mut rng(1))
        .unwrap()
        .bytes
}

/// The plain loop's hits: one `contains_key` per probe, in probe order.
fn plain_hits(batch: &BatchFile<'_>, probes: &[u64]) -> Vec<usize> {
    (0..probes.len())
        .filter(|&index| batch.contains_key(probes[index]))
        .collect()
}

/// Checks every ordered path against the plain loop for one batch and one probe list.
fn assert_same_hits(batch: &BatchFile<'_>, probes: &[u64], context: &str) {
    let expected = plain_hits(batch, probes);
    let filter = batch.filter();
    let mut hits = Vec::new();
    filter.for_each_hit_scheduled(probes, |index| hits.push(index));
    assert_eq!(hits, expected, "scheduled, {context}");
    let hashes: Vec<u64> = probes.iter().map(|&probe| filter.hash(probe)).collect();
    hits.clear();
    filter.for_each_hit_of_hashes(&hashes, |index| hits.push(index));
    assert_eq!(hits, expected, "precomputed hashes, {context}");
    // Sorted hashes, as an ordered store keeps them: the hits are the sorted positions of the
    // hashes of the plain loop's hits.
    let mut sorted = hashes.clone();
    sorted.sort_unstable();
    let mut expected_sorted: Vec<u64> = expected.iter().map(|&index| hashes[index]).collect();
    expected_sorted.sort_unstable();
    let mut sorted_hits = Vec::new();
    filter.for_each_hit_of_hashes(&sorted, |index| sorted_hits.push(sorted[index]));
    assert_eq!(sorted_hits, expected_sorted, "sorted hashes, {context}");
    let by_hash: Vec<usize> = (0..probes.len())
        .filter(|&index| filter.contains_hash(hashes[index]))
        .collect();
    assert_eq!(by_hash, expected, "contains_hash, {context}");
}

/// Probes whose hashes under `batch`'s seed all share their top 12 bits (all 1s): every lookup
/// reads the last segments, at the end of the fingerprint array.
fn probes_at_the_end(batch: &BatchFile<'_>, count: usize, seed: u64) -> Vec<u64> {
    let mut random = rng(seed);
    let mut probes = Vec::with_capacity(count);
    while probes.len() < count {
        let probe = random.next_u64();
        if batch.filter().hash(probe) >> 52 == 0xfff {
            probes.push(probe);
        }
    }
    probes
}

#[test]
fn edge_cases_match_the_plain_loop_at_every_width() {
    let signer = signer();
    let mut random = rng(7);
    let keys: Vec<u64> = (0..20_000).map(|_| random.next_u64()).collect();
    for width in WIDTHS {
        let bytes = build(&keys, width, &signer);
        let batch = BatchFile::parse(&bytes).unwrap();
        let members_and_strangers: Vec<u64> = keys
            .iter()
            .step_by(3)
            .copied()
            .chain((0..30_000).map(|_| random.next_u64()))
            .collect();
        let cases: Vec<(&str, Vec<u64>)> = vec![
            ("empty", Vec::new()),
            ("one member", vec![keys[5]]),
            ("one stranger", vec![random.next_u64()]),
            ("one member 5,000 times", vec![keys[9]; 5_000]),
            ("members and strangers", members_and_strangers.clone()),
            ("duplicated", members_and_strangers.repeat(2)),
            ("every member", keys.clone()),
            ("at the end", probes_at_the_end(&batch, 600, 3)),
            (
                "two blocks and one",
                members_and_strangers[..2 * SCHEDULE_BLOCK + 1].to_vec(),
            ),
            (
                "one short of a block",
                members_and_strangers[..SCHEDULE_BLOCK - 1].to_vec(),
            ),
            ("zeros and ones", vec![0, u64::MAX, 0, 1, u64::MAX - 1]),
        ];
        for (name, probes) in cases {
            assert_same_hits(&batch, &probes, &format!("{name} at {width:?}"));
        }
        // Sanity of the reference: every member is found.
        assert_eq!(plain_hits(&batch, &keys).len(), keys.len());
    }
}

#[test]
fn a_filter_out_of_the_l2_cache_matches_the_plain_loop() {
    // 300,000 elements at 32 bits: 1.35 MB of fingerprints, past the L2 cache.
    let signer = signer();
    let mut random = rng(11);
    let keys: Vec<u64> = (0..300_000).map(|_| random.next_u64()).collect();
    let bytes = build(&keys, FingerprintWidth::Bits32, &signer);
    let batch = BatchFile::parse(&bytes).unwrap();
    let probes: Vec<u64> = keys
        .iter()
        .step_by(7)
        .copied()
        .chain((0..100_000).map(|_| random.next_u64()))
        .collect();
    assert_same_hits(&batch, &probes, "300 k elements, 32-bit");
}

fn width_strategy() -> impl Strategy<Value = FingerprintWidth> {
    prop_oneof![
        Just(FingerprintWidth::Bits8),
        Just(FingerprintWidth::Bits16),
        Just(FingerprintWidth::Bits32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_probes_match_the_plain_loop(
        width in width_strategy(),
        keys in prop::collection::vec(any::<u64>(), 1..3_000),
        strangers in prop::collection::vec(any::<u64>(), 0..3_000),
        member_every in 1usize..10,
        repeats in 1usize..3,
    ) {
        let signer = signer();
        let bytes = build(&keys, width, &signer);
        let batch = BatchFile::parse(&bytes).unwrap();
        let probes: Vec<u64> = keys
            .iter()
            .step_by(member_every)
            .chain(&strangers)
            .copied()
            .collect::<Vec<u64>>()
            .repeat(repeats);
        assert_same_hits(&batch, &probes, &format!("{width:?}"));
    }

    #[test]
    fn a_store_matches_like_the_plain_loop_ordered_or_not(
        width in width_strategy(),
        identifiers in prop::collection::vec(any::<[u8; 16]>(), 1..200),
        published_every in 1usize..5,
        ordered_before in 0usize..200,
    ) {
        let slot = |index: usize| 1_767_225_600 + 600 * index as u64;
        let published: Vec<u64> = identifiers
            .iter()
            .enumerate()
            .step_by(published_every)
            .map(|(index, identifier)| {
                exposure_matcher::Tag::compute(Scheme::Gaen, slot(index), identifier).filter_key()
            })
            .collect();
        let signer = signer();
        let bytes = build(&published, width, &signer);
        let batch = BatchFile::parse(&bytes).unwrap();
        let seed = batch.filter().descriptor().seed;
        let mut store = ObservationStore::new();
        let order_at = ordered_before.min(identifiers.len());
        for (index, identifier) in identifiers.iter().enumerate() {
            if index == order_at {
                // Ordered part way: the tags stored since are merged in on the next call.
                store.order_lookups(seed);
            }
            store.observe(Scheme::Gaen, identifier, slot(index) + 7, 600).unwrap();
        }
        let expected = store.match_batch_plain(&batch);
        prop_assert!(expected.len() >= published.len());
        // Ordered at match time (the order is stale).
        prop_assert_eq!(&store.match_batch(&batch), &expected);
        // Ordered ahead for the batch's seed: the later tags merged into the earlier order.
        store.order_lookups(seed);
        prop_assert_eq!(&store.match_batch(&batch), &expected);
        // Ordered for another seed: ordered at match time again.
        store.order_lookups(seed ^ 1);
        prop_assert_eq!(&store.match_batch(&batch), &expected);
        // And back, from scratch.
        store.order_lookups(seed);
        prop_assert_eq!(&store.match_batch(&batch), &expected);
    }
}

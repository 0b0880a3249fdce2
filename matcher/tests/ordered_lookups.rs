//! Lookups scheduled for the cache give the plain loop's answer, hit for hit: the scheduled
//! schedule, the probe of precomputed hashes in any order (sorted included), and an observation
//! store's match, ordered ahead or not, on random and adversarial inputs at every width.

#![allow(clippy::unwrap_used)]

mod common;

use common::{WIDTHS, params, rng, signer};
use exposure_matcher::batch::{
    FilterDescriptor, FuseView, PARTITION_BYTES, SCHEDULE_BLOCK, build_batch_from_filter_keys,
};
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
    hits.clear();
    filter.for_each_hit_of_cached_hashes(&hashes, |index| hits.push(index));
    assert_eq!(hits, expected, "cached hashes, {context}");
    // Partitioned, as a partitioned store probes them: each partition's run on its own.
    for budget in [4 * 1024, 64 * 1024] {
        let bits = filter.partition_bits(budget);
        let mut runs = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        for &hash in &hashes {
            runs.entry(hash.checked_shr(64 - bits).unwrap_or(0))
                .or_default()
                .push(hash);
        }
        let mut partitioned_hits = Vec::new();
        for run in runs.values() {
            filter.for_each_hit_of_cached_hashes(run, |index| partitioned_hits.push(run[index]));
        }
        partitioned_hits.sort_unstable();
        assert_eq!(
            partitioned_hits, expected_sorted,
            "partitioned by {bits} bits, {context}"
        );
    }
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

/// The peak day's 16-bit filter as xorf built it (2,479,680 tags): 169 segments of 16,384.
const PEAK_DAY: FilterDescriptor = FilterDescriptor {
    seed: 1,
    segment_length: 16_384,
    segment_length_mask: 16_383,
    segment_count_length: 2_768_896,
};

#[test]
fn the_peak_days_filter_splits_into_partitions_of_at_most_256_kib() {
    let fingerprints = vec![0u8; 2 * (2_768_896 + 2 * 16_384)];
    let filter = FuseView::new(PEAK_DAY, FingerprintWidth::Bits16, &fingerprints).unwrap();
    // A partition reads its share of the 2,768,896 first positions and up to three segments
    // of 16,384 more, 2 bytes each. 2^6 partitions: (43,264 + 49,152) × 2 = 184,832 bytes;
    // 2^5 would be (86,528 + 49,152) × 2 = 271,360, over 262,144.
    assert_eq!(PARTITION_BYTES, 262_144);
    assert_eq!(filter.partition_bits(PARTITION_BYTES), 6);
    // A whole filter that fits needs no partition; a tiny budget stops at one segment each
    // (169 segments: 2^8 partitions).
    assert_eq!(filter.partition_bits(8 << 20), 0);
    assert_eq!(filter.partition_bits(1), 8);
    let wide = vec![0u8; 4 * (2_768_896 + 2 * 16_384)];
    let wide = FuseView::new(PEAK_DAY, FingerprintWidth::Bits32, &wide).unwrap();
    // 32 bits: 2^7 gives (21,632 + 49,152) × 4 = 283,136 bytes; 2^8, (10,816 + 49,152) × 4 =
    // 239,872.
    assert_eq!(wide.partition_bits(PARTITION_BYTES), 8);
}

#[test]
fn a_partitions_lookups_read_only_its_slice() {
    // DESIGN §4's positions, computed here: h0 = (h × segment_count_length) >> 64, then h1 and
    // h2 in the next two segments. Hashes of one partition (top 6 bits) must read only from
    // that partition's share of the first positions and up to three segments after it, the
    // slice `partition_bits` sizes.
    let d = PEAK_DAY;
    let segment = u64::from(d.segment_length);
    let share = u64::from(d.segment_count_length) / 64;
    let mut random = rng(5);
    for _ in 0..100_000 {
        let hash = random.next_u64();
        let h0 = ((u128::from(hash) * u128::from(d.segment_count_length)) >> 64) as u64;
        let h1 = (h0 + segment) ^ ((hash >> 18) & u64::from(d.segment_length_mask));
        let h2 = (h0 + 2 * segment) ^ (hash & u64::from(d.segment_length_mask));
        let start = (hash >> 58) * share;
        let range = start..start + share + 3 * segment;
        for position in [h0, h1, h2] {
            assert!(
                range.contains(&position),
                "{hash:#x}: {position} outside {range:?}"
            );
        }
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

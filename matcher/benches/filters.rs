//! Filter build cost and size at 10 k, 100 k, 1 M and 2.48 M elements for 8/16/32-bit
//! fingerprints, and lookups per second in cache and out of it (DESIGN §9): the plain loop, the
//! blocked loop, the scheduled schedule, sorted hashes and partitioned hashes side by side.
//!
//! "Build" is the whole batch: sort and dedup the keys, build the binary fuse filter, write the
//! body, hash it and sign it. Bits per element are printed once per size and width.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use exposure_matcher::batch::{PARTITION_BYTES, build_batch_from_filter_keys, murmur64_finalizer};
use exposure_matcher::{BatchFile, BatchKind, BatchParams, BatchSigner, FingerprintWidth};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WIDTHS: [FingerprintWidth; 3] = [
    FingerprintWidth::Bits8,
    FingerprintWidth::Bits16,
    FingerprintWidth::Bits32,
];

fn params(width: FingerprintWidth) -> BatchParams {
    BatchParams {
        region: "VN-TB".to_owned(),
        sequence: 1,
        kind: BatchKind::Daily,
        created_at: 0,
        width,
        min_elements: 0,
    }
}

fn random_keys(count: usize, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| rng.next_u64()).collect()
}

fn build(keys: &[u64], width: FingerprintWidth, signer: &BatchSigner) -> Vec<u8> {
    build_batch_from_filter_keys(
        &params(width),
        keys.to_vec(),
        Some((0, 0)),
        signer,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap()
    .bytes
}

fn bench_build(criterion: &mut Criterion) {
    let signer = BatchSigner::generate();
    let mut group = criterion.benchmark_group("filter_build");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for count in [10_000usize, 100_000, 1_000_000, 2_480_000] {
        let keys = random_keys(count, count as u64);
        for width in WIDTHS {
            let bytes = build(&keys, width, &signer);
            let batch = BatchFile::parse(&bytes).unwrap();
            let header = batch.header();
            eprintln!(
                "size: elements={count} width={} bits_per_element={:.4} ratio_to_width={:.4} file_bytes={}",
                width.bits(),
                header.bits_per_element(),
                header.bits_per_element() / f64::from(width.bits()),
                bytes.len()
            );
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{}bit", width.bits()), count),
                &keys,
                |bencher, keys| bencher.iter(|| build(keys, width, &signer)),
            );
        }
    }
    group.finish();
}

fn bench_lookups(criterion: &mut Criterion) {
    let signer = BatchSigner::generate();
    let probes = random_keys(1 << 20, 99);
    let mut group = criterion.benchmark_group("filter_lookup");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(probes.len() as u64));
    // 10 k elements stay in L1/L2; 2.48 M (3–11 MB) sit in this machine's 32 MB L3; 16 M at
    // 32 bits (72 MB) must come from DRAM.
    for (label, count, widths) in [
        ("10k", 10_000usize, &WIDTHS[..]),
        ("2.48M", 2_480_000, &WIDTHS[..]),
        ("16M", 16_000_000, &WIDTHS[2..]),
    ] {
        let keys = random_keys(count, 7);
        for &width in widths {
            let bytes = build(&keys, width, &signer);
            let batch = BatchFile::parse(&bytes).unwrap();
            group.bench_function(
                BenchmarkId::new(format!("{}bit", width.bits()), label),
                |bencher| {
                    bencher.iter(|| {
                        probes
                            .iter()
                            .filter(|probe| batch.contains_key(**probe))
                            .count()
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("{}bit_blocked", width.bits()), label),
                |bencher| {
                    bencher.iter(|| {
                        let mut hits = 0usize;
                        batch.filter().for_each_hit(&probes, |_| hits += 1);
                        hits
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("{}bit_scheduled", width.bits()), label),
                |bencher| {
                    bencher.iter(|| {
                        let mut hits = 0usize;
                        batch
                            .filter()
                            .for_each_hit_scheduled(&probes, |_| hits += 1);
                        hits
                    })
                },
            );
            // Hashes computed and sorted ahead, as an ordered observation store keeps them.
            let mut sorted_hashes: Vec<u64> = probes
                .iter()
                .map(|&probe| batch.filter().hash(probe))
                .collect();
            sorted_hashes.sort_unstable();
            group.bench_function(
                BenchmarkId::new(format!("{}bit_sorted_hashes", width.bits()), label),
                |bencher| {
                    bencher.iter(|| {
                        let mut hits = 0usize;
                        batch
                            .filter()
                            .for_each_hit_of_hashes(&sorted_hashes, |_| hits += 1);
                        hits
                    })
                },
            );
            // Hashes grouped ahead by the top bits that name their partition (issue 12), as a
            // partitioned store keeps them, and probed partition by partition, one after the
            // other: each partition's slice of the filter stays in L2 while its lookups run.
            let bits = batch.filter().partition_bits(PARTITION_BYTES);
            let mut partitions = vec![Vec::new(); 1 << bits];
            for &hash in &sorted_hashes {
                partitions[hash.checked_shr(64 - bits).unwrap_or(0) as usize].push(hash);
            }
            // Within a partition the order is the probes' own, not sorted.
            for partition in &mut partitions {
                partition.sort_unstable_by_key(|&hash| murmur64_finalizer(hash));
            }
            group.bench_function(
                BenchmarkId::new(format!("{}bit_partitioned", width.bits()), label),
                |bencher| {
                    bencher.iter(|| {
                        let mut hits = 0usize;
                        for run in &partitions {
                            batch
                                .filter()
                                .for_each_hit_of_cached_hashes(run, |_| hits += 1);
                        }
                        hits
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_build, bench_lookups);
criterion_main!(benches);

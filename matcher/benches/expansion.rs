//! Expansion throughput: GAEN keys → tagged elements on one thread and with rayon (DESIGN §9).
//! Throughput is reported in tags per second; keys per second is that divided by 144.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exposure_matcher::expand::expand_keys_sequential;
use exposure_matcher::{BluezoneKey, DiagnosisKey, GaenKey, expand_keys};

/// Returns `count` GAEN keys of 144 intervals with distinct TEKs.
fn gaen_keys(count: usize) -> Vec<DiagnosisKey> {
    (0..count as u64)
        .map(|index| {
            let mut key_data = [0u8; 16];
            key_data[..8].copy_from_slice(&index.to_le_bytes());
            DiagnosisKey::Gaen(GaenKey {
                key_data,
                rolling_start_interval_number: 2_642_976,
                rolling_period: 144,
            })
        })
        .collect()
}

fn bench_expansion(criterion: &mut Criterion) {
    let keys = gaen_keys(2_000);
    let mut group = criterion.benchmark_group("expansion");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(keys.len() as u64 * 144));
    group.bench_function("gaen_2000_keys/one_thread", |bencher| {
        bencher.iter(|| expand_keys_sequential(&keys).unwrap())
    });
    group.bench_function("gaen_2000_keys/rayon", |bencher| {
        bencher.iter(|| expand_keys(&keys).unwrap())
    });
    let bluezone: Vec<DiagnosisKey> = (0..2_000u32)
        .map(|index| {
            let mut daily_key = [0u8; 32];
            daily_key[..4].copy_from_slice(&index.to_le_bytes());
            DiagnosisKey::Bluezone(BluezoneKey {
                daily_key,
                day_number: 20_454,
                sub_keys_per_day: 96,
                contagious_from: 20_454 * 86_400,
                contagious_until: 20_455 * 86_400,
            })
        })
        .collect();
    group.throughput(Throughput::Elements(bluezone.len() as u64 * 96));
    group.bench_function("bluezone_2000_keys/one_thread", |bencher| {
        bencher.iter(|| expand_keys_sequential(&bluezone).unwrap())
    });
    group.bench_function("bluezone_2000_keys/rayon", |bencher| {
        bencher.iter(|| expand_keys(&bluezone).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_expansion);
criterion_main!(benches);

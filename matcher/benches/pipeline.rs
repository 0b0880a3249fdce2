//! The province scenario of DESIGN §9 end to end:
//! - the peak day: 17,220 GAEN keys of 144 intervals → 2.48 M tags → 16-bit filter → signed;
//! - the phone's daily match, side by side: the GAEN-style baseline (derive every RPI of the
//!   day's TEKs with HKDF + AES and probe a hash set of 10,000 observations) against filter
//!   lookups of the same 10,000 observations × 3 slot tags, by the plain loop, from a store not
//!   ordered for the batch, and from a store ordered ahead, at 8, 16 and 32 bits, with the cost
//!   of ordering a day's tags once;
//! - many phones matched with rayon (lookups per second, for the 751,416-phone extrapolation).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exposure_matcher::matching::{
    BenchmarkPhoneDay, DEFAULT_SLOT_TOLERANCE, match_generated_phones,
};
use exposure_matcher::scheme::rolling_proximity_identifier;
use exposure_matcher::{
    BatchFile, BatchKind, BatchParams, BatchSigner, DiagnosisKey, FingerprintWidth, GaenKey,
    ObservationStore, Scheme, build_batch, expand_keys,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Keys published on the peak day: 1,230 uploads × 14 keys.
const PEAK_DAY_KEYS: usize = 17_220;
/// Observations a phone stores in a day.
const OBSERVATIONS: usize = 10_000;
/// First interval of the benchmark day.
const DAY_START_INTERVAL: u32 = 2_642_976;

fn peak_day_keys() -> Vec<GaenKey> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..PEAK_DAY_KEYS)
        .map(|_| {
            let mut key_data = [0u8; 16];
            rng.fill_bytes(&mut key_data);
            GaenKey {
                key_data,
                rolling_start_interval_number: DAY_START_INTERVAL,
                rolling_period: 144,
            }
        })
        .collect()
}

fn day_params() -> BatchParams {
    BatchParams {
        region: "VN-TB".to_owned(),
        sequence: 1,
        kind: BatchKind::Daily,
        created_at: u64::from(DAY_START_INTERVAL) * 600 + 86_400,
        width: FingerprintWidth::Bits16,
        min_elements: 10_000,
    }
}

fn bench_peak_day(criterion: &mut Criterion) {
    let keys: Vec<DiagnosisKey> = peak_day_keys()
        .into_iter()
        .map(DiagnosisKey::Gaen)
        .collect();
    let signer = BatchSigner::generate();
    let elements = expand_keys(&keys).unwrap();
    let mut group = criterion.benchmark_group("peak_day");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(elements.len() as u64));
    group.bench_function("expand_filter_sign_17220_keys", |bencher| {
        bencher.iter(|| {
            let elements = expand_keys(&keys).unwrap();
            build_batch(
                &day_params(),
                &elements,
                &signer,
                &mut ChaCha8Rng::seed_from_u64(2),
            )
            .unwrap()
        })
    });
    group.bench_function("expand_only", |bencher| {
        bencher.iter(|| expand_keys(&keys).unwrap())
    });
    group.bench_function("filter_sign_only", |bencher| {
        bencher.iter(|| {
            build_batch(
                &day_params(),
                &elements,
                &signer,
                &mut ChaCha8Rng::seed_from_u64(2),
            )
            .unwrap()
        })
    });
    group.finish();
    let built = build_batch(
        &day_params(),
        &elements,
        &signer,
        &mut ChaCha8Rng::seed_from_u64(2),
    )
    .unwrap();
    let header = BatchFile::parse(&built.bytes).unwrap().header().clone();
    eprintln!(
        "peak day: {} tags, element_count {}, {} bytes, {:.4} bits/element ({:.4} x w)",
        elements.len(),
        header.element_count,
        built.bytes.len(),
        header.bits_per_element(),
        header.bits_per_element() / 16.0
    );
}

fn day_batch(elements: &[exposure_matcher::TaggedElement], width: FingerprintWidth) -> Vec<u8> {
    build_batch(
        &BatchParams {
            width,
            ..day_params()
        },
        elements,
        &BatchSigner::generate(),
        &mut ChaCha8Rng::seed_from_u64(2),
    )
    .unwrap()
    .bytes
}

fn bench_phone_match(criterion: &mut Criterion) {
    let gaen_keys = peak_day_keys();
    let keys: Vec<DiagnosisKey> = gaen_keys.iter().cloned().map(DiagnosisKey::Gaen).collect();
    let elements = expand_keys(&keys).unwrap();
    let built = day_batch(&elements, FingerprintWidth::Bits16);
    let batch = BatchFile::parse(&built).unwrap();
    // A phone's day: 10,000 RPIs heard, 20 of them from published keys, at their broadcast
    // time; `bench-province` calibrates its baseline with the same day and the same loop.
    let day =
        BenchmarkPhoneDay::generate(&gaen_keys, OBSERVATIONS, DEFAULT_SLOT_TOLERANCE, 3).unwrap();
    let heard = day.heard();
    let heard_set: HashSet<[u8; 16]> = heard.iter().map(|(rpi, _)| *rpi).collect();
    let store = day.store();

    let mut group = criterion.benchmark_group("phone_daily_match");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("gaen_baseline_hkdf_aes_hashset_17220_teks", |bencher| {
        bencher.iter(|| {
            let mut matches = 0usize;
            for key in &gaen_keys {
                let rpik = key.rpik();
                for offset in 0..key.rolling_period {
                    let rpi = rolling_proximity_identifier(
                        &rpik,
                        key.rolling_start_interval_number + offset,
                    );
                    matches += usize::from(heard_set.contains(&rpi));
                }
            }
            matches
        })
    });
    // The plain loop, a store not ordered for the seed (hashed first at match time, then
    // probed in store order), and a store ordered ahead, at each width.
    for width in [
        FingerprintWidth::Bits8,
        FingerprintWidth::Bits16,
        FingerprintWidth::Bits32,
    ] {
        let bytes = day_batch(&elements, width);
        let batch = BatchFile::parse(&bytes).unwrap();
        let bits = width.bits();
        group.bench_function(format!("plain_loop_10000x3_tags_{bits}bit"), |bencher| {
            bencher.iter(|| day.plain_loop(&batch))
        });
        group.bench_function(
            format!("unordered_store_10000x3_tags_{bits}bit"),
            |bencher| bencher.iter(|| store.match_batch(&batch).len()),
        );
        let mut ordered = store.clone();
        ordered.order_lookups(batch.filter().descriptor().seed);
        group.bench_function(format!("ordered_store_10000x3_tags_{bits}bit"), |bencher| {
            bencher.iter(|| ordered.match_batch(&batch).len())
        });
        assert_eq!(ordered.match_batch(&batch), store.match_batch_plain(&batch));
    }
    let seed = batch.filter().descriptor().seed;
    group.bench_function("order_lookups_30000_tags_once", |bencher| {
        bencher.iter_batched(
            || store.clone(),
            |mut store| {
                store.order_lookups(seed);
                store
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("observe_10000_tags_once", |bencher| {
        bencher.iter(|| {
            let mut store = ObservationStore::new();
            for (rpi, heard_at) in heard {
                store.observe(Scheme::Gaen, rpi, *heard_at, 600).unwrap();
            }
            store.tags().len()
        })
    });
    group.finish();
    let baseline_matches = {
        let mut matches = 0usize;
        for key in &gaen_keys {
            let rpik = key.rpik();
            for offset in 0..key.rolling_period {
                let rpi =
                    rolling_proximity_identifier(&rpik, key.rolling_start_interval_number + offset);
                matches += usize::from(heard_set.contains(&rpi));
            }
        }
        matches
    };
    let candidates = store.match_batch(&batch);
    eprintln!(
        "phone match: baseline found {baseline_matches}, filter gave {} candidates",
        candidates.len()
    );

    // Many phones, with observation filter keys generated on the fly (splitmix64).
    let phones = 200usize;
    let per_phone = OBSERVATIONS * 3;
    let mut group = criterion.benchmark_group("province_matching");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements((phones * per_phone) as u64));
    group.bench_function("200_phones_x_30000_lookups_rayon", |bencher| {
        bencher.iter(|| {
            match_generated_phones(phones, &batch, |phone, buffer| {
                let mut state = phone as u64;
                buffer.extend((0..per_phone).map(|_| splitmix64(&mut state)));
            })
            .hits
            .len()
        })
    });
    group.finish();
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut value = *state;
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

criterion_group!(benches, bench_peak_day, bench_phone_match);
criterion_main!(benches);

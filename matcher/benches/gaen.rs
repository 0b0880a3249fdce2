//! The peak day of DESIGN §9 (17,220 GAEN keys) as a Google/Apple export file (DESIGN §11):
//! sort, encode, sign and zip, against the filter batch of the same keys in the same run
//! (expand to 2.48 M tags, 16-bit binary fuse filter, sign). Prints both file sizes per key.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exposure_matcher::gaen::{
    GaenExportKey, GaenExportParams, GaenReportType, GaenSigner, MAX_RECORDS_PER_FILE,
    build_gaen_exports,
};
use exposure_matcher::{
    BatchKind, BatchParams, BatchSigner, DiagnosisKey, FingerprintWidth, GaenKey, build_batch,
    expand_keys,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Keys published on the peak day: 1,230 uploads × 14 keys.
const PEAK_DAY_KEYS: usize = 17_220;
/// First interval of the benchmark day.
const DAY_START_INTERVAL: u32 = 2_642_976;

fn peak_day_keys() -> Vec<GaenExportKey> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..PEAK_DAY_KEYS)
        .map(|index| {
            let mut key_data = [0u8; 16];
            rng.fill_bytes(&mut key_data);
            GaenExportKey {
                key_data,
                transmission_risk_level: (index % 9) as i32,
                rolling_start_interval_number: DAY_START_INTERVAL,
                rolling_period: 144,
                report_type: GaenReportType::ConfirmedTest,
                days_since_onset_of_symptoms: Some((index % 29) as i32 - 14),
            }
        })
        .collect()
}

fn export_params() -> GaenExportParams {
    GaenExportParams {
        region: "VN-TB".to_owned(),
        start_timestamp: u64::from(DAY_START_INTERVAL) * 600,
        end_timestamp: u64::from(DAY_START_INTERVAL) * 600 + 86_400,
        verification_key_id: "452".to_owned(),
        min_records: 1_000,
        max_records_per_file: MAX_RECORDS_PER_FILE,
    }
}

fn bench_gaen_export(criterion: &mut Criterion) {
    let keys = peak_day_keys();
    let signer = BatchSigner::generate();
    let params = export_params();
    let build = || {
        build_gaen_exports(
            &params,
            &keys,
            &[],
            &[GaenSigner {
                signer: &signer,
                verification_key_version: "v1",
            }],
            &mut ChaCha8Rng::seed_from_u64(2),
        )
        .unwrap()
    };
    let export_bytes: usize = build().iter().map(|file| file.zip.len()).sum();

    let diagnosis_keys: Vec<DiagnosisKey> = keys
        .iter()
        .map(|key| {
            DiagnosisKey::Gaen(GaenKey {
                key_data: key.key_data,
                rolling_start_interval_number: key.rolling_start_interval_number,
                rolling_period: key.rolling_period,
            })
        })
        .collect();
    let batch_params = BatchParams {
        region: "VN-TB".to_owned(),
        sequence: 1,
        kind: BatchKind::Daily,
        created_at: params.end_timestamp,
        width: FingerprintWidth::Bits16,
        min_elements: 10_000,
    };
    let filter_batch = || {
        let elements = expand_keys(&diagnosis_keys).unwrap();
        build_batch(
            &batch_params,
            &elements,
            &signer,
            &mut ChaCha8Rng::seed_from_u64(3),
        )
        .unwrap()
    };
    let batch_bytes = filter_batch().bytes.len();
    println!(
        "peak day, {PEAK_DAY_KEYS} keys: gaen export {export_bytes} bytes ({:.2} bytes/key); \
         filter batch {batch_bytes} bytes ({:.2} bytes/key)",
        export_bytes as f64 / PEAK_DAY_KEYS as f64,
        batch_bytes as f64 / PEAK_DAY_KEYS as f64,
    );

    let mut group = criterion.benchmark_group("gaen_peak_day");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("gaen_export_sort_sign_zip_17220_keys", |bencher| {
        bencher.iter(build)
    });
    group.bench_function("filter_batch_expand_filter_sign_17220_keys", |bencher| {
        bencher.iter(filter_batch)
    });
    group.finish();
}

criterion_group!(benches, bench_gaen_export);
criterion_main!(benches);

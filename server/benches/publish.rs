#![allow(missing_docs)] // criterion's macros generate undocumented items
//! The server's whole publish pipeline at Thái Bình's peak (DESIGN.md section 9): 1,230 cases of
//! 14 GAEN keys (17,220 keys, 2.48 M tags) are read from RocksDB, expanded, deduplicated, built
//! into a 16-bit binary fuse filter, signed, their 2.48 M confirm digests bulk-loaded (a sorted
//! file ingested into RocksDB), and then committed with the keys' "published" marks in one synced
//! write. This is `Publisher::publish_once` on a real on-disk store.
//!
//! `cargo bench -p exposure-server --bench publish` (`RUST_LOG=info` for each phase's time)

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use exposure_matcher::{BatchSigner, FingerprintWidth};
use exposure_proto::v1::{DiagnosisKey, GaenKey, ReportType, diagnosis_key};
use exposure_server::catalog::Catalog;
use exposure_server::clock::Clock;
use exposure_server::config::ServerConfig;
use exposure_server::ingest::writer::{IngestWriter, UploadJob};
use exposure_server::publisher::{PublishSettings, Publisher};
use exposure_server::signing::{ActiveKey, KeyRing};
use exposure_server::storage::Store;
use exposure_server::storage::keys::dedup_key;
use exposure_server::storage::records::StoredKey;
use rand::{Rng, SeedableRng};

const CASES: usize = 1_230;
const KEYS_PER_CASE: usize = 14;
const NOW: u64 = 1_768_046_400;
const REGION: &str = "VN-TB";

/// A store holding the peak day's keys, all releasable at `NOW`.
fn peak_day_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (writer, thread) = IngestWriter::start(store.clone()).expect("writer");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    runtime.block_on(async {
        let mut uploads = Vec::new();
        for case in 0..CASES {
            let keys = (0..KEYS_PER_CASE)
                .map(|day_back| {
                    let day = NOW / 86_400 - 1 - (day_back as u64 % 13);
                    let key = DiagnosisKey {
                        key: Some(diagnosis_key::Key::Gaen(GaenKey {
                            key_data: rng.r#gen::<[u8; 16]>().to_vec(),
                            rolling_start_interval_number: (day * 144) as u32,
                            rolling_period: 144,
                            days_since_onset_of_symptoms: None,
                        })),
                        transmission_risk_level: 0,
                    };
                    let mut stored = StoredKey {
                        region: REGION.into(),
                        key: Some(key),
                        received_at: NOW,
                        report_type: ReportType::ConfirmedTest as i32,
                        ..Default::default()
                    };
                    let matcher_key = stored.matcher_key().expect("converts");
                    stored.last_slot_end = matcher_key.last_slot_end();
                    stored.release_at = stored.last_slot_end;
                    stored.dedup_key = dedup_key(REGION, &matcher_key.dedup_material());
                    stored
                })
                .collect();
            let job = UploadJob {
                authority_id: "bench".into(),
                idempotency_scope: "bench".into(),
                code_hash: None,
                upload_id: format!("case-{case}"),
                request_digest: [case as u8; 32],
                revoke: false,
                admin: false,
                // The benchmark stores a whole peak day through one authority.
                keys_per_day: 0,
                keys,
                now: NOW,
            };
            let writer = writer.clone();
            uploads.push(tokio::spawn(async move { writer.submit(job).await }));
        }
        for upload in uploads {
            upload.await.expect("task").expect("stored");
        }
    });
    drop(writer);
    thread.join().expect("writer thread");
    (dir, store)
}

fn publish_peak_day(criterion: &mut Criterion) {
    // `RUST_LOG=info` shows each batch's phases (expand, filter, stage, write).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let mut group = criterion.benchmark_group("publish");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    // The server's defaults (`ServerConfig`'s: publisher threads = cores - 1, 5,000 keys a
    // batch, GAEN exports on), and two fixed settings: all 17,220 keys in one batch, with 1 and
    // 2 threads and no GAEN export.
    let defaults = ServerConfig::with_data_dir("unused");
    let mut cases = vec![(
        format!(
            "peak_day_17220_keys_defaults_{}_threads_{}_keys_a_batch_gaen",
            defaults.publish_threads, defaults.max_keys_per_batch
        ),
        PublishSettings::from_config(&defaults, FingerprintWidth::Bits16),
    )];
    for threads in [1usize, 2] {
        cases.push((
            format!("peak_day_17220_keys_{threads}_threads"),
            PublishSettings {
                threads,
                max_keys_per_batch: 20_000,
                gaen: None,
                ..PublishSettings::from_config(&defaults, FingerprintWidth::Bits16)
            },
        ));
    }
    for (name, settings) in cases {
        group.bench_function(name, |bench| {
            bench.iter_batched(
                peak_day_store,
                |(dir, store)| {
                    let publisher = Publisher::new(
                        store,
                        Catalog::default(),
                        KeyRing::new(ActiveKey {
                            signer: BatchSigner::generate(),
                            gaen_key_version: "v1".to_owned(),
                        }),
                        Clock::manual(NOW),
                        settings.clone(),
                    )
                    .expect("publisher");
                    let report = publisher.publish_once().expect("published");
                    assert_eq!(report.keys_published, CASES * KEYS_PER_CASE);
                    dir
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, publish_peak_day);
criterion_main!(benches);

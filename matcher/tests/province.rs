//! The province matching benchmark at a small scale, through the library and through the
//! `bench-province` subcommand: every planted exposure is found, no false alert is raised, and
//! the report's figures hold together.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use exposure_matcher::FingerprintWidth;
use exposure_matcher::province::{
    ObservationTags, ProvinceConfig, ProvinceError, ProvinceProgress, run_province_benchmark,
};

/// 2,000 phones × 1,000 observations against 20 cases' keys, 20 phones planted.
fn small_config() -> ProvinceConfig {
    ProvinceConfig {
        phones: 2_000,
        observations_per_phone: 1_000,
        cases: 20,
        plant_one_in: 100,
        threads: Some(2),
        ..ProvinceConfig::default()
    }
}

#[test]
fn the_small_province_finds_every_planted_exposure_and_raises_no_false_alert() {
    let config = small_config();
    let report = run_province_benchmark(&config, &|_| {}).unwrap();
    assert!(report.passed());
    assert_eq!(report.planted_phones, 20);
    assert!((20..=60).contains(&report.planted_exposures));
    assert_eq!(report.planted_found, report.planted_exposures as u64);
    assert_eq!(report.false_alerts, 0);
    assert_eq!(report.lookups, 2_000 * 1_000 * 3);
    assert_eq!(report.keys, 20 * 14);
    assert_eq!(report.tags, 20 * 14 * 144);
    assert_eq!(report.true_filter_hits, report.planted_found);
    assert_eq!(report.confirm_fetches(), report.filter_hits);
    // 6 M lookups at 2^-16: about 92 false hits; far outside these bounds means a broken
    // filter or generator.
    assert!(
        (40..=160).contains(&report.false_filter_hits()),
        "{} false hits",
        report.false_filter_hits()
    );
    assert!(report.bytes_per_phone_per_day() >= report.batch_bytes as f64);
    assert_eq!(report.gaen_export_bytes(), 280 * 28);
    assert_eq!(report.dp3t_cuckoo_bytes(), 40_320 * 6);
}

#[test]
fn the_same_seed_gives_the_same_counts() {
    let config = ProvinceConfig {
        phones: 500,
        ..small_config()
    };
    let first = run_province_benchmark(&config, &|_| {}).unwrap();
    let second = run_province_benchmark(
        &ProvinceConfig {
            threads: Some(1),
            ..config.clone()
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(first.filter_hits, second.filter_hits);
    assert_eq!(first.planted_exposures, second.planted_exposures);
    assert_eq!(first.digests_fetched, second.digests_fetched);
}

#[test]
fn computed_tags_and_8_bit_filters_confirm_every_hit_exactly() {
    let config = ProvinceConfig {
        phones: 500,
        observations_per_phone: 500,
        width: FingerprintWidth::Bits8,
        tolerance: 2,
        observation_tags: ObservationTags::Computed,
        ..small_config()
    };
    let report = run_province_benchmark(&config, &|_| {}).unwrap();
    assert!(report.passed());
    assert_eq!(report.lookups, 500 * 500 * 5);
    // 1.25 M lookups at 2^-8: about 4,900 false hits, every one cleared by confirmation.
    assert_eq!(report.false_hits_within_20_percent(), Some(true));
    assert_eq!(report.false_alerts, 0);
}

#[test]
fn progress_reaches_every_phone() {
    let config = ProvinceConfig {
        phones: 5_000,
        observations_per_phone: 10,
        ..small_config()
    };
    let last = std::sync::Mutex::new(None);
    run_province_benchmark(&config, &|event| {
        if let ProvinceProgress::Matching { phones_done, .. } = event {
            let mut last = last.lock().unwrap();
            *last = Some(last.unwrap_or(0).max(phones_done));
        }
    })
    .unwrap();
    // The plain-loop baseline matched the first 5,000 phones too: 10,000 phone days in all.
    assert_eq!(*last.lock().unwrap(), Some(10_000));
}

#[test]
fn the_plain_baseline_finds_the_same_hits_as_the_partitioned_stores() {
    // 250 cases: 504,000 tags, a 1.1 MB 16-bit filter, past the 256 KiB partition budget, so
    // the stores split into partitions; 8-bit fingerprints give many false hits to agree
    // on, 16-bit the default width.
    for width in [FingerprintWidth::Bits8, FingerprintWidth::Bits16] {
        let config = ProvinceConfig {
            phones: 300,
            observations_per_phone: 2_000,
            cases: 250,
            width,
            plant_one_in: 10,
            baseline_phones: 200,
            ..small_config()
        };
        the_baseline_agrees(&config);
    }
}

fn the_baseline_agrees(config: &ProvinceConfig) {
    let config = config.clone();
    let report = run_province_benchmark(&config, &|_| {}).unwrap();
    assert!(report.passed());
    assert!(
        report.partition_bits > 0,
        "the filter fits the budget: no partitions to test"
    );
    let baseline = report.baseline.as_ref().unwrap();
    assert!(baseline.agrees);
    assert_eq!(baseline.phones, 200);
    assert_eq!(baseline.lookups, 200 * 2_000 * 3);
    // Criterion's plain loop ran in-process on both threads at once, 100 timed matches each,
    // of a phone day as large as the province's.
    let calibration = &baseline.calibration;
    assert_eq!(calibration.threads, 2);
    assert_eq!(calibration.matches, 200);
    assert_eq!(calibration.lookups_per_match, 2_000 * 3);
    assert!(calibration.ns_per_lookup > 0.0 && calibration.ns_per_lookup < 10_000.0);
    // 1.8 M lookups: about 7,000 false hits to agree on at 2^-8, 27 at 2^-16.
    assert!(report.false_filter_hits() > (1_800_000 >> config.width.bits()) / 2);
    let without = run_province_benchmark(
        &ProvinceConfig {
            baseline_phones: 0,
            ..config.clone()
        },
        &|_| {},
    )
    .unwrap();
    assert!(without.baseline.is_none());
    let counts = |report: &exposure_matcher::province::ProvinceReport| {
        (
            report.lookups,
            report.filter_hits,
            report.true_filter_hits,
            report.max_fetches_of_a_phone,
            report.digests_fetched,
            report.planted_found,
        )
    };
    assert_eq!(counts(&without), counts(&report));
}

#[test]
fn invalid_configurations_name_their_field() {
    let error = run_province_benchmark(
        &ProvinceConfig {
            phones: 0,
            ..small_config()
        },
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(
        error,
        ProvinceError::InvalidConfig {
            field: "phones",
            ..
        }
    ));
}

fn bench_province(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_exposure-matcher"))
        .arg("bench-province")
        .args(args)
        .output()
        .unwrap()
}

/// Returns the number after `"name": ` in the JSON text (the first such field).
fn json_number(json: &str, name: &str) -> f64 {
    let needle = format!("\"{name}\": ");
    let start = json.find(&needle).unwrap_or_else(|| panic!("no {name}")) + needle.len();
    let value: String = json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    value.parse().unwrap()
}

#[test]
fn the_subcommand_prints_a_json_report_and_exits_zero() {
    let output = bench_province(&[
        "--phones",
        "2000",
        "--observations",
        "1000",
        "--cases",
        "20",
        "--plant-one-in",
        "100",
        "--threads",
        "2",
        "--baseline-phones",
        "500",
        "--format",
        "json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = String::from_utf8(output.stdout).unwrap();
    for field in [
        "\"passed\": true",
        "\"match_seconds\"",
        "\"build_seconds\"",
        "\"lookups_per_second\"",
        "\"expected_false\"",
        "\"false_ratio\"",
        "\"within_20_percent\"",
        "\"fetches_per_phone\"",
        "\"bytes_per_phone_per_day\"",
        "\"gaen_export_bytes\"",
        "\"dp3t_cuckoo_bytes\"",
        "\"false_alerts\": 0",
        "\"lookup_ns\"",
        "\"lookup_speedup\"",
        "\"wall_speedup\"",
        "\"agrees\": true",
        "\"hardware_counters\"",
        "\"partitions\"",
        "\"fetches_per_phone_day\"",
        "\"plain_loop_calibration\"",
        "\"ratio_valid\"",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    assert_eq!(json_number(&json, "lookups"), 6_000_000.0);
    assert_eq!(json_number(&json, "exposures"), json_number(&json, "found"));
    assert!(json_number(&json, "exposures") >= 20.0);
    // Progress goes to stderr, never into the report.
    assert_eq!(json_number(&json, "baseline_phones"), 500.0);
    // Progress goes to stderr, never into the report: 2,000 phones and the 500 of the baseline.
    assert!(String::from_utf8_lossy(&output.stderr).contains("matched 2500 of 2500 phone days"));
}

#[test]
fn the_subcommand_prints_text_by_default() {
    let output = bench_province(&["--phones", "300", "--observations", "100", "--cases", "5"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("planted found"));
    assert!(text.contains("verdict                   PASS"));
    assert!(text.contains("same hits"));
    // Beside the ratios: the plain loop's time per lookup in this process, and a verdict.
    assert!(text.contains("criterion's plain loop in this process: "));
    assert!(text.contains("ratio valid: baseline ") || text.contains("ratio not valid: baseline "));
    // Counts per lookup where perf and a PMU exist; otherwise the reason, never a silent gap.
    assert!(text.contains("hardware counters "));
}

#[test]
fn bad_flags_exit_64() {
    for args in [
        &["--fingerprint", "12"][..],
        &["--phones", "0"],
        &["--tolerance", "40"],
        &["--format", "xml"],
    ] {
        let output = bench_province(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
    }
}

//! The result of a run, as `--format json` writes it and as the summary, the plot and the SLO
//! verdict read it.
//!
//! Latencies are in milliseconds. At a fixed rate they are measured from each request's due time
//! (coordinated omission corrected, see `schedule`) and `service_time_ms` holds the uncorrected
//! send-to-answer times; in a closed loop both are the same and only `latency_ms` is written.
//! `count` includes failed requests; `errors` counts those whose status was not `OK`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Buckets of the text and JSON latency histogram (ghz prints ten).
pub const HISTOGRAM_BUCKETS: usize = 10;

/// Everything a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario (`upload`, `poll`, `download`, `confirm`, `noop`, `province`).
    pub scenario: String,
    /// The target URL.
    pub target: String,
    /// Measured requests (warmup excluded), failed ones included.
    pub count: u64,
    /// Measured requests whose status was not `OK`.
    pub errors: u64,
    /// Seconds from the first measured request's start to the last one's answer.
    pub duration_s: f64,
    /// `count / duration_s`.
    pub rps: f64,
    /// Latency distribution of the measured requests.
    pub latency_ms: LatencySummary,
    /// Uncorrected send-to-answer times, written only at a fixed rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_time_ms: Option<LatencySummary>,
    /// Measured requests by gRPC status code name (`OK`, `UNAUTHENTICATED`, ...).
    pub status_codes: BTreeMap<String, u64>,
    /// Failed requests by `CODE: message` (at most a few dozen distinct entries).
    pub error_distribution: BTreeMap<String, u64>,
    /// Latency histogram in [`HISTOGRAM_BUCKETS`] equal-width buckets from fastest to slowest.
    pub histogram: Vec<HistogramBucket>,
    /// Per-RPC breakdown, written only for mixed scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_rpc: Option<BTreeMap<String, RpcReport>>,
    /// Payload bytes received by measured requests (batch files, digests, listings).
    pub bytes_received: u64,
    /// `bytes_received / duration_s`, in MB/s (10^6 bytes).
    pub throughput_mb_s: f64,
    /// Tickets that sent nothing (a province download before any batch is published).
    pub skipped: u64,
    /// Throughput and latency over time, for `--plot`.
    pub timeline: Vec<TimelinePoint>,
    /// How the run was configured.
    pub settings: Settings,
    /// The SLO verdict, when SLO flags were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloReport>,
}

/// Percentiles and extremes of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Fastest.
    pub min: f64,
    /// Average.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds; all zero when it is empty.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let at = |quantile: f64| micros_to_ms(histogram.value_at_quantile(quantile) as f64);
        LatencySummary {
            p50: at(0.50),
            p75: at(0.75),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: micros_to_ms(histogram.max() as f64),
            min: micros_to_ms(histogram.min() as f64),
            mean: micros_to_ms(histogram.mean()),
        }
    }
}

/// One bar of the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistogramBucket {
    /// Upper edge of the bucket, in milliseconds.
    pub mark_ms: f64,
    /// Requests whose latency fell in the bucket.
    pub count: u64,
    /// `count` over all requests.
    pub frequency: f64,
}

/// Builds [`HISTOGRAM_BUCKETS`] equal-width buckets between the fastest and the slowest request.
pub fn histogram_buckets(histogram: &Histogram<u64>) -> Vec<HistogramBucket> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let low = histogram.min() as f64;
    let high = histogram.max() as f64;
    let width = (high - low) / HISTOGRAM_BUCKETS as f64;
    let mut counts = [0_u64; HISTOGRAM_BUCKETS];
    for value in histogram.iter_recorded() {
        // The histogram's equivalent value may stray past max by its precision: clamp.
        let micros = histogram
            .highest_equivalent(value.value_iterated_to())
            .min(histogram.max()) as f64;
        let index = if width > 0.0 {
            ((micros - low) / width).floor() as usize
        } else {
            0
        };
        counts[index.min(HISTOGRAM_BUCKETS - 1)] += value.count_at_value();
    }
    let total = histogram.len() as f64;
    counts
        .iter()
        .enumerate()
        .map(|(index, count)| HistogramBucket {
            mark_ms: micros_to_ms(low + width * (index + 1) as f64),
            count: *count,
            frequency: round(*count as f64 / total, 4),
        })
        .collect()
}

/// The measurements of one RPC of a mixed scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcReport {
    /// Measured requests of this RPC.
    pub count: u64,
    /// Those whose status was not `OK`.
    pub errors: u64,
    /// `count` over the run's `duration_s`.
    pub rps: f64,
    /// Latency distribution of this RPC.
    pub latency_ms: LatencySummary,
    /// Requests of this RPC by status code name.
    pub status_codes: BTreeMap<String, u64>,
    /// Payload bytes received by this RPC.
    pub bytes_received: u64,
    /// Tickets of this RPC that sent nothing.
    pub skipped: u64,
}

/// Throughput and latency in one interval of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the interval, seconds after the run started.
    pub t_s: f64,
    /// Answers per second in the interval.
    pub rps: f64,
    /// Failed answers in the interval.
    pub errors: u64,
    /// Median latency of the interval's answers.
    pub p50_ms: f64,
    /// 99th percentile latency of the interval's answers.
    pub p99_ms: f64,
}

/// What an attack run measured (`exposure-loadtest attack`, issue 18): the legitimate `mix`
/// alone (`quiet`), the same mix beside the attack (`attacked`), what the attack did, the
/// server's memory and descriptors in each phase, and the verdict against the goals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// The attack (`zero-window`, `connection-flood`, ...).
    pub attack: String,
    /// The target URL (loopback).
    pub target: String,
    /// Seconds the attack ran before the attacked phase started measuring.
    pub settle_s: f64,
    /// The legitimate mix without the attack.
    pub quiet: Phase,
    /// The legitimate mix beside the attack.
    pub attacked: Phase,
    /// What the attack did (counted until the attacked phase ended).
    pub attack_stats: crate::scenario::attack::AttackStats,
    /// The server's figures a second after the attack stopped: whether it let go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<crate::server_usage::Reading>,
    /// Whether the uploads the server acknowledged were kept (`--check-acknowledged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<crate::scenario::readback::Readback>,
    /// The comparison with the goals.
    pub verdict: AttackVerdict,
}

/// One phase of an attack run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Measured legitimate requests that were answered `OK`, over those sent (skipped ones
    /// excluded); 0 when none was sent.
    pub success_rate: f64,
    /// The legitimate mix's report.
    pub legit: Report,
    /// The server's memory and descriptors during the phase (`--server-pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::server_usage::ServerUsage>,
}

impl Phase {
    /// Wraps a phase's report and server figures.
    pub fn new(legit: Report, server: Option<crate::server_usage::ServerUsage>) -> Self {
        let ok = legit.status_codes.get("OK").copied().unwrap_or(0);
        let success_rate = if legit.count == 0 {
            0.0
        } else {
            round(ok as f64 / legit.count as f64, 6)
        };
        Phase {
            success_rate,
            legit,
            server,
        }
    }
}

/// The goals of issue 18, as an attack run judges them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttackGoals {
    /// The legitimate mix's success rate beside the attack, at least.
    pub min_success_rate: f64,
    /// The attacked p99 over the quiet p99, at most.
    pub max_p99_ratio: f64,
    /// The server's resident memory during the attack, at most, MiB.
    pub max_rss_mib: u64,
    /// The server's open descriptors during the attack, at most.
    pub max_fds: u64,
}

/// Issue 18's goals: 99.9 % of legitimate requests succeed, p99 at most 3 times the quiet run's;
/// the memory and descriptor bounds are docs/RELIABILITY.md's.
pub const ATTACK_GOALS: AttackGoals = AttackGoals {
    min_success_rate: 0.999,
    max_p99_ratio: 3.0,
    max_rss_mib: 1024,
    max_fds: 4096,
};

/// An attack run against its goals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackVerdict {
    /// The goals judged.
    pub goals: AttackGoals,
    /// Attacked p99 over quiet p99 (0 when the quiet phase measured nothing).
    pub p99_ratio: f64,
    /// Legitimate success rate beside the attack met its goal.
    pub success_met: bool,
    /// p99 ratio met its goal.
    pub p99_met: bool,
    /// Memory bound met (`None` without `--server-pid`).
    pub rss_met: Option<bool>,
    /// Descriptor bound met (`None` without `--server-pid`).
    pub fds_met: Option<bool>,
    /// Every acknowledged upload's keys found published (`None` without
    /// `--check-acknowledged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nothing_lost_met: Option<bool>,
    /// Every goal judged was met.
    pub passed: bool,
    /// One line: `ATTACK PASS: ...` or `ATTACK MISS: ...` with the goals missed.
    pub line: String,
}

impl AttackVerdict {
    /// Judges the phases of an attack run against `goals`.
    pub fn judge(
        goals: AttackGoals,
        quiet: &Phase,
        attacked: &Phase,
        acknowledged: Option<&crate::scenario::readback::Readback>,
    ) -> Self {
        let quiet_p99 = quiet.legit.latency_ms.p99;
        let attacked_p99 = attacked.legit.latency_ms.p99;
        let p99_ratio = if quiet_p99 > 0.0 {
            round(attacked_p99 / quiet_p99, 3)
        } else {
            0.0
        };
        let measured = quiet.legit.count > 0 && attacked.legit.count > 0;
        let success_met = measured && attacked.success_rate >= goals.min_success_rate;
        let p99_met = measured && quiet_p99 > 0.0 && p99_ratio <= goals.max_p99_ratio;
        let rss_met = attacked
            .server
            .map(|usage| usage.rss_kib.max <= goals.max_rss_mib * 1024);
        let fds_met = attacked.server.map(|usage| usage.fds.max <= goals.max_fds);
        let mut missed = Vec::new();
        if !success_met {
            missed.push(format!(
                "success {:.4} % < {} %",
                attacked.success_rate * 100.0,
                goals.min_success_rate * 100.0
            ));
        }
        if !p99_met {
            missed.push(format!(
                "p99 {attacked_p99:.3} ms = {p99_ratio} x quiet {quiet_p99:.3} ms > {} x",
                goals.max_p99_ratio
            ));
        }
        if let (Some(false), Some(usage)) = (rss_met, attacked.server) {
            missed.push(format!(
                "RSS {} MiB > {} MiB",
                usage.rss_kib.max / 1024,
                goals.max_rss_mib
            ));
        }
        if let (Some(false), Some(usage)) = (fds_met, attacked.server) {
            missed.push(format!("{} descriptors > {}", usage.fds.max, goals.max_fds));
        }
        let nothing_lost_met = acknowledged.map(|readback| readback.nothing_lost());
        if let (Some(false), Some(readback)) = (nothing_lost_met, acknowledged) {
            missed.push(format!(
                "{} of {} acknowledged keys not found",
                readback.keys_checked - readback.keys_found,
                readback.keys_checked
            ));
        }
        let passed = missed.is_empty();
        let line = if passed {
            format!(
                "ATTACK PASS: success {:.4} %, p99 {p99_ratio} x quiet",
                attacked.success_rate * 100.0
            )
        } else {
            format!("ATTACK MISS: {}", missed.join("; "))
        };
        AttackVerdict {
            goals,
            p99_ratio,
            success_met,
            p99_met,
            rss_met,
            fds_met,
            nothing_lost_met,
            passed,
            line,
        }
    }
}

/// The configuration of a run (never the token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Region the requests name.
    pub region: String,
    /// Workers, that is requests in flight at most.
    pub concurrency: usize,
    /// HTTP/2 channels the workers share.
    pub connections: usize,
    /// Target requests per second, `None` for a closed loop.
    pub rate_rps: Option<f64>,
    /// Province load multiplier (province only).
    pub speedup: Option<f64>,
    /// Measured requests asked for, at most.
    pub requests: u64,
    /// Wall time asked for, at most, in seconds.
    pub max_duration_s: f64,
    /// Requests left out of the statistics at the start.
    pub warmup: u64,
    /// Per-request timeout, in seconds.
    pub timeout_s: f64,
}

/// What the SLO flags concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SloReport {
    /// True when no objective was breached.
    pub passed: bool,
    /// The one-line verdict printed on stderr.
    pub verdict: String,
}

/// Converts microseconds to milliseconds, rounded to the microsecond.
pub fn micros_to_ms(micros: f64) -> f64 {
    round(micros / 1_000.0, 3)
}

/// Rounds to `decimals` decimal places (keeps the JSON readable).
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: &[u64]) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for value in values {
            histogram.record(*value).expect("in range");
        }
        histogram
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let values: Vec<u64> = (1..=10_000).collect();
        let summary = LatencySummary::from_micros(&histogram_of(&values));
        assert!((summary.p50 - 5.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p90 - 9.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99 - 9.9).abs() < 0.01, "{summary:?}");
        assert!((summary.p999 - 9.99).abs() < 0.01, "{summary:?}");
        assert!(
            (summary.max - 10.0).abs() < 0.01 && summary.min == 0.001,
            "{summary:?}"
        );
        assert!((summary.mean - 5.0).abs() < 0.01, "{summary:?}");
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        let empty = histogram_of(&[]);
        assert_eq!(
            LatencySummary::from_micros(&empty),
            LatencySummary::default()
        );
        assert!(histogram_buckets(&empty).is_empty());
    }

    #[test]
    fn buckets_hold_every_request() {
        let values: Vec<u64> = (0..1000).map(|index| 100 + index * 7).collect();
        let buckets = histogram_buckets(&histogram_of(&values));
        assert_eq!(buckets.len(), HISTOGRAM_BUCKETS);
        assert_eq!(buckets.iter().map(|bucket| bucket.count).sum::<u64>(), 1000);
        assert!(
            buckets
                .windows(2)
                .all(|pair| pair[0].mark_ms < pair[1].mark_ms)
        );
        assert!((buckets[HISTOGRAM_BUCKETS - 1].mark_ms - 7.093).abs() < 0.01);
        let single = histogram_buckets(&histogram_of(&[500, 500, 500]));
        assert_eq!(single[0].count, 3);
    }
}

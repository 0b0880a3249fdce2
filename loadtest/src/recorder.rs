//! Collects the outcome of every request of a run into HDR histograms (Gil Tene's
//! HdrHistogram: constant-time recording, 3 significant digits) and counters, and turns them into
//! a [`Report`].
//!
//! All workers share one recorder behind a mutex: recording takes well under a microsecond, so the
//! lock is never the bottleneck at the rates a 2-core machine can generate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::{self, LatencySummary, Report, RpcReport, Settings, TimelinePoint};
use crate::scenario::{CallResult, Outcome, RpcKind};
use exposure_proto::status::code_name;

/// Highest latency recorded exactly, in microseconds (one hour); slower answers are clamped.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Distinct `CODE: message` entries kept in the error distribution; the rest are grouped.
const MAX_DISTINCT_ERRORS: usize = 32;

/// Longest status message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 160;

/// Points of the timeline, about (the interval is the run's duration over this).
const TIMELINE_POINTS: u32 = 60;

/// Timeline intervals kept at most, bounding memory if answers trail far past the deadline.
const MAX_TIMELINE_INTERVALS: usize = 4 * TIMELINE_POINTS as usize;

/// One answered (or skipped) ticket.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The RPC.
    pub kind: RpcKind,
    /// False for warmup requests, which are not recorded.
    pub measured: bool,
    /// Where latency is counted from: the due time of a fixed-rate request that was sent late,
    /// otherwise the moment it was sent.
    pub latency_from: Instant,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer (or failure) arrived.
    pub answered: Instant,
    /// What happened.
    pub outcome: &'a Outcome,
}

/// The statistics of one RPC, or of the whole run.
#[derive(Debug, Clone)]
struct Stats {
    latency: Histogram<u64>,
    service_time: Histogram<u64>,
    status_codes: BTreeMap<&'static str, u64>,
    errors: u64,
    bytes_received: u64,
    skipped: u64,
}

impl Stats {
    fn new() -> Self {
        Stats {
            latency: micros_histogram(3),
            service_time: micros_histogram(3),
            status_codes: BTreeMap::new(),
            errors: 0,
            bytes_received: 0,
            skipped: 0,
        }
    }

    fn record(&mut self, latency: Duration, service_time: Duration, result: &CallResult) {
        self.latency.saturating_record(micros(latency));
        self.service_time.saturating_record(micros(service_time));
        *self.status_codes.entry(code_name(result.code)).or_default() += 1;
        self.errors += u64::from(result.is_error());
        self.bytes_received += result.bytes_received;
    }

    fn count(&self) -> u64 {
        self.latency.len()
    }
}

/// Throughput and latency of one interval of the run.
#[derive(Debug, Clone)]
struct Interval {
    latency: Histogram<u64>,
    errors: u64,
}

/// The recorder of one run.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    interval: Duration,
    overall: Stats,
    per_rpc: BTreeMap<RpcKind, Stats>,
    error_distribution: BTreeMap<String, u64>,
    timeline: Vec<Interval>,
    first_measured: Option<Instant>,
    last_answered: Option<Instant>,
}

impl Recorder {
    /// Starts recording a run that began at `started` and lasts at most `max_duration`.
    pub fn new(started: Instant, max_duration: Duration) -> Self {
        let interval = (max_duration / TIMELINE_POINTS).max(Duration::from_millis(100));
        Recorder {
            started,
            interval,
            overall: Stats::new(),
            per_rpc: BTreeMap::new(),
            error_distribution: BTreeMap::new(),
            timeline: Vec::new(),
            first_measured: None,
            last_answered: None,
        }
    }

    /// Records one ticket; warmup tickets are ignored.
    pub fn record(&mut self, sample: Sample<'_>) {
        if !sample.measured {
            return;
        }
        let per_rpc = self.per_rpc.entry(sample.kind).or_insert_with(Stats::new);
        let result = match sample.outcome {
            Outcome::Skipped => {
                per_rpc.skipped += 1;
                self.overall.skipped += 1;
                return;
            }
            Outcome::Called(result) => result,
        };
        let latency = sample
            .answered
            .saturating_duration_since(sample.latency_from);
        let service_time = sample.answered.saturating_duration_since(sample.sent);
        per_rpc.record(latency, service_time, result);
        self.overall.record(latency, service_time, result);
        if result.is_error() {
            self.count_error(result);
        }
        self.first_measured = Some(
            self.first_measured
                .map_or(sample.latency_from, |first| first.min(sample.latency_from)),
        );
        self.last_answered = Some(
            self.last_answered
                .map_or(sample.answered, |last| last.max(sample.answered)),
        );
        self.record_interval(sample.answered, latency, result.is_error());
    }

    fn count_error(&mut self, result: &CallResult) {
        let message: String = result.message.chars().take(MAX_MESSAGE_CHARS).collect();
        let key = format!("{}: {}", code_name(result.code), message);
        if self.error_distribution.len() < MAX_DISTINCT_ERRORS
            || self.error_distribution.contains_key(&key)
        {
            *self.error_distribution.entry(key).or_default() += 1;
        } else {
            *self
                .error_distribution
                .entry("(other errors)".to_owned())
                .or_default() += 1;
        }
    }

    fn record_interval(&mut self, answered: Instant, latency: Duration, is_error: bool) {
        let offset = answered.saturating_duration_since(self.started);
        let index = (offset.as_nanos() / self.interval.as_nanos().max(1)) as usize;
        if index >= MAX_TIMELINE_INTERVALS {
            return;
        }
        while self.timeline.len() <= index {
            self.timeline.push(Interval {
                latency: micros_histogram(2),
                errors: 0,
            });
        }
        let interval = &mut self.timeline[index];
        interval.latency.saturating_record(micros(latency));
        interval.errors += u64::from(is_error);
    }

    /// Turns the recording into a report. `mixed` adds the per-RPC breakdown; a fixed rate in
    /// `settings` adds the uncorrected service times.
    pub fn report(&self, scenario: &str, target: &str, settings: Settings, mixed: bool) -> Report {
        let duration = match (self.first_measured, self.last_answered) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let duration_s = duration.as_secs_f64();
        let per_second = |value: u64| {
            if duration_s > 0.0 {
                value as f64 / duration_s
            } else {
                0.0
            }
        };
        let fixed_rate = settings.rate_rps.is_some();
        let per_rpc = mixed.then(|| {
            self.per_rpc
                .iter()
                .map(|(kind, stats)| {
                    (
                        kind.method_name().to_owned(),
                        rpc_report(stats, per_second(stats.count())),
                    )
                })
                .collect()
        });
        Report {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            count: self.overall.count(),
            errors: self.overall.errors,
            duration_s: report::round(duration_s, 6),
            rps: report::round(per_second(self.overall.count()), 2),
            latency_ms: LatencySummary::from_micros(&self.overall.latency),
            service_time_ms: fixed_rate
                .then(|| LatencySummary::from_micros(&self.overall.service_time)),
            status_codes: owned_codes(&self.overall.status_codes),
            error_distribution: self.error_distribution.clone(),
            histogram: report::histogram_buckets(&self.overall.latency),
            per_rpc,
            bytes_received: self.overall.bytes_received,
            throughput_mb_s: report::round(per_second(self.overall.bytes_received) / 1e6, 3),
            skipped: self.overall.skipped,
            timeline: self.timeline_points(),
            settings,
            slo: None,
        }
    }

    fn timeline_points(&self) -> Vec<TimelinePoint> {
        let seconds = self.interval.as_secs_f64();
        self.timeline
            .iter()
            .enumerate()
            .map(|(index, interval)| {
                let summary = LatencySummary::from_micros(&interval.latency);
                TimelinePoint {
                    t_s: report::round(index as f64 * seconds, 3),
                    rps: report::round(interval.latency.len() as f64 / seconds, 2),
                    errors: interval.errors,
                    p50_ms: summary.p50,
                    p99_ms: summary.p99,
                }
            })
            .collect()
    }
}

fn rpc_report(stats: &Stats, rps: f64) -> RpcReport {
    RpcReport {
        count: stats.count(),
        errors: stats.errors,
        rps: report::round(rps, 2),
        latency_ms: LatencySummary::from_micros(&stats.latency),
        status_codes: owned_codes(&stats.status_codes),
        bytes_received: stats.bytes_received,
        skipped: stats.skipped,
    }
}

fn owned_codes(codes: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    codes
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

fn micros_histogram(significant_digits: u8) -> Histogram<u64> {
    // Only called with constant bounds that hdrhistogram accepts (1 <= low, high >= 2 * low,
    // at most 5 significant digits), so construction cannot fail.
    Histogram::new_with_bounds(1, HIGHEST_MICROS, significant_digits)
        .expect("constant histogram bounds are valid")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn settings(rate_rps: Option<f64>) -> Settings {
        Settings {
            region: "VN-TB".to_owned(),
            concurrency: 1,
            connections: 1,
            rate_rps,
            speedup: None,
            requests: 100,
            max_duration_s: 10.0,
            warmup: 0,
            timeout_s: 20.0,
        }
    }

    fn ok() -> Outcome {
        Outcome::Called(CallResult::ok(10))
    }

    fn failed(code: Code, message: &str) -> Outcome {
        Outcome::Called(CallResult {
            code,
            message: message.to_owned(),
            bytes_received: 0,
        })
    }

    #[test]
    fn counts_add_up_and_warmup_is_left_out() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(10));
        let outcomes = [
            ok(),
            ok(),
            failed(Code::Unauthenticated, "bad token"),
            Outcome::Skipped,
        ];
        for (index, outcome) in outcomes.iter().enumerate() {
            let sent = start + Duration::from_millis(index as u64 * 100);
            let kind = if index % 2 == 0 {
                RpcKind::ListBatches
            } else {
                RpcKind::GetBatch
            };
            recorder.record(Sample {
                kind,
                measured: true,
                latency_from: sent,
                sent,
                answered: sent + Duration::from_millis(5),
                outcome,
            });
        }
        let warm = ok();
        recorder.record(Sample {
            kind: RpcKind::ListBatches,
            measured: false,
            latency_from: start,
            sent: start,
            answered: start + Duration::from_secs(9),
            outcome: &warm,
        });
        let report = recorder.report("province", "http://127.0.0.1:1", settings(None), true);
        assert_eq!(report.count, 3);
        assert_eq!(report.errors, 1);
        assert_eq!(report.skipped, 1);
        assert_eq!(report.status_codes.get("OK"), Some(&2));
        assert_eq!(report.status_codes.get("UNAUTHENTICATED"), Some(&1));
        assert_eq!(
            report.error_distribution.get("UNAUTHENTICATED: bad token"),
            Some(&1)
        );
        assert_eq!(report.bytes_received, 20);
        assert!(
            (report.duration_s - 0.205).abs() < 1e-6,
            "first sent to last answered: {}",
            report.duration_s
        );
        let per_rpc = report.per_rpc.expect("mixed report");
        assert_eq!(
            per_rpc.values().map(|rpc| rpc.count).sum::<u64>(),
            report.count
        );
        assert_eq!(per_rpc["GetBatch"].skipped, 1);
        assert!(report.service_time_ms.is_none());
        assert_eq!(
            report
                .timeline
                .iter()
                .map(|point| point.errors)
                .sum::<u64>(),
            1
        );
    }

    #[test]
    fn late_fixed_rate_requests_count_from_their_due_time() {
        // A server stall of 1 s at 100 requests/s: one request is in flight during the stall and
        // the 99 due after it wait for the worker. Measured from the due time, the stall appears in
        // every delayed request, not just the first (coordinated omission).
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(10));
        let outcome = ok();
        let stall_end = start + Duration::from_secs(1);
        for index in 0..100_u64 {
            let due = start + Duration::from_millis(index * 10);
            let sent = due.max(if index == 0 { start } else { stall_end });
            let answered = if index == 0 {
                stall_end
            } else {
                sent + Duration::from_micros(100)
            };
            recorder.record(Sample {
                kind: RpcKind::HealthCheck,
                measured: true,
                latency_from: due,
                sent,
                answered,
                outcome: &outcome,
            });
        }
        let report = recorder.report("noop", "http://127.0.0.1:1", settings(Some(100.0)), false);
        let corrected = report.latency_ms;
        let service = report.service_time_ms.expect("fixed rate");
        assert!(
            corrected.p50 > 400.0,
            "median waits about half the stall: {corrected:?}"
        );
        assert!(corrected.max >= 999.0, "{corrected:?}");
        assert!(
            service.p50 < 1.0,
            "uncorrected median hides the stall: {service:?}"
        );
    }

    #[test]
    fn distinct_errors_are_bounded() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(1));
        for index in 0..100 {
            let outcome = failed(Code::Internal, &format!("failure {index}"));
            recorder.record(Sample {
                kind: RpcKind::Upload,
                measured: true,
                latency_from: start,
                sent: start,
                answered: start,
                outcome: &outcome,
            });
        }
        let report = recorder.report("upload", "t", settings(None), false);
        assert_eq!(report.error_distribution.len(), MAX_DISTINCT_ERRORS + 1);
        assert_eq!(report.error_distribution.values().sum::<u64>(), 100);
        assert!(report.per_rpc.is_none());
    }
}

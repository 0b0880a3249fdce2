//! The plain loop measured in-process, next to the baseline: criterion's
//! `phone_daily_match/plain_loop_*` (one phone's day, [`BenchmarkPhoneDay::plain_loop`]) run
//! against the benchmark's own batch on every thread of the pool at once, as the baseline runs.
//! A baseline whose lookups cost much more than this loop's is slowed by something the plain
//! loop does not do (the benchmark's own set-up, say), and a ratio against it overstates the
//! gain: [`ratio_validity`] says when.

use std::fmt;
use std::time::Instant;

use crate::batch::BatchFile;
use crate::matching::BenchmarkPhoneDay;

/// Matches of the phone's day each thread runs before timing, to warm its caches.
const WARM_UP_MATCHES: usize = 5;

/// Matches each thread times: 100 × 30,000 lookups at the peak day's defaults, a few tens of
/// milliseconds.
const TIMED_MATCHES: usize = 100;

/// Largest difference, as a fraction of the plain loop's time per lookup, between the
/// baseline's and the plain loop's for a ratio against the baseline to be called valid.
pub const MAX_BASELINE_DEVIATION: f64 = 0.25;

/// The plain loop's speed in this process, on this batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlainLoopCalibration {
    /// Threads that ran it at once (the pool's).
    pub threads: usize,
    /// Lookups of one match: one per tag of the phone's day.
    pub lookups_per_match: usize,
    /// Matches timed, all threads together.
    pub matches: usize,
    /// Nanoseconds per lookup: the median over every timed match of every thread.
    pub ns_per_lookup: f64,
}

/// Runs the plain loop of `day` against `batch` on every thread of the current rayon pool at
/// once and returns its median time per lookup.
pub(super) fn calibrate_plain_loop(
    day: &BenchmarkPhoneDay,
    batch: &BatchFile<'_>,
) -> PlainLoopCalibration {
    let lookups = day.lookups().max(1) as f64;
    let per_thread: Vec<Vec<f64>> = rayon::broadcast(|_| {
        for _ in 0..WARM_UP_MATCHES {
            std::hint::black_box(day.plain_loop(batch));
        }
        (0..TIMED_MATCHES)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(day.plain_loop(batch));
                started.elapsed().as_secs_f64() * 1e9 / lookups
            })
            .collect()
    });
    let threads = per_thread.len();
    let mut times: Vec<f64> = per_thread.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    PlainLoopCalibration {
        threads,
        lookups_per_match: day.lookups(),
        matches: times.len(),
        ns_per_lookup: median(&times),
    }
}

/// Returns the median of sorted values (0 for none).
pub(super) fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// Whether a ratio against the baseline means what it says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RatioValidity {
    /// The baseline's lookups cost within [`MAX_BASELINE_DEVIATION`] of the plain loop's.
    Valid {
        /// The baseline's nanoseconds per lookup, in its loop.
        baseline_ns: f64,
        /// The calibrated plain loop's.
        plain_loop_ns: f64,
    },
    /// They are further apart: the baseline is not running at the plain loop's speed.
    NotValid {
        /// The baseline's nanoseconds per lookup, in its loop.
        baseline_ns: f64,
        /// The calibrated plain loop's.
        plain_loop_ns: f64,
    },
}

impl RatioValidity {
    /// Returns whether the ratio is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, RatioValidity::Valid { .. })
    }
}

impl fmt::Display for RatioValidity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = MAX_BASELINE_DEVIATION * 100.0;
        match *self {
            RatioValidity::Valid {
                baseline_ns,
                plain_loop_ns,
            } => write!(
                formatter,
                "ratio valid: baseline {baseline_ns:.2} ns vs plain loop {plain_loop_ns:.2} ns, within {percent:.0}%"
            ),
            RatioValidity::NotValid {
                baseline_ns,
                plain_loop_ns,
            } => write!(
                formatter,
                "ratio not valid: baseline {baseline_ns:.2} ns vs plain loop {plain_loop_ns:.2} ns, >{percent:.0}% apart"
            ),
        }
    }
}

/// Returns whether a ratio against a baseline at `baseline_ns` per lookup is valid, given the
/// plain loop at `plain_loop_ns`: the two may differ by at most [`MAX_BASELINE_DEVIATION`] of
/// the plain loop's time, either way. A time that is not a positive number is never valid.
pub fn ratio_validity(baseline_ns: f64, plain_loop_ns: f64) -> RatioValidity {
    let measured = |ns: f64| ns.is_finite() && ns > 0.0;
    let close = measured(baseline_ns)
        && measured(plain_loop_ns)
        && (baseline_ns - plain_loop_ns).abs() <= MAX_BASELINE_DEVIATION * plain_loop_ns;
    if close {
        RatioValidity::Valid {
            baseline_ns,
            plain_loop_ns,
        }
    } else {
        RatioValidity::NotValid {
            baseline_ns,
            plain_loop_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_within_a_quarter_of_the_plain_loop_is_valid() {
        // 9.4 ns measured by criterion: a quarter of it is 2.35 ns either way.
        assert!(ratio_validity(9.4, 9.4).is_valid());
        assert!(ratio_validity(11.7, 9.4).is_valid());
        assert!(ratio_validity(7.1, 9.4).is_valid());
        // Exactly 25 % apart, on numbers exact in binary: 10 vs 8.
        assert!(ratio_validity(10.0, 8.0).is_valid());
        assert!(ratio_validity(6.0, 8.0).is_valid());
    }

    #[test]
    fn a_baseline_further_than_a_quarter_is_not_valid() {
        // The recorded run of 3 December: 19.84 ns in bench-province's baseline against 9.4 ns.
        let validity = ratio_validity(19.84, 9.4);
        assert!(!validity.is_valid());
        assert_eq!(
            validity.to_string(),
            "ratio not valid: baseline 19.84 ns vs plain loop 9.40 ns, >25% apart"
        );
        assert!(!ratio_validity(10.01, 8.0).is_valid());
        assert!(!ratio_validity(5.99, 8.0).is_valid());
        // A baseline faster than the plain loop by more than a quarter is as suspect.
        assert!(!ratio_validity(4.0, 9.4).is_valid());
        assert_eq!(
            ratio_validity(10.0, 8.0).to_string(),
            "ratio valid: baseline 10.00 ns vs plain loop 8.00 ns, within 25%"
        );
    }

    #[test]
    fn unmeasured_times_are_never_valid() {
        for (baseline, plain) in [
            (0.0, 0.0),
            (9.4, 0.0),
            (0.0, 9.4),
            (f64::NAN, 9.4),
            (9.4, f64::INFINITY),
            (-9.4, -9.4),
        ] {
            assert!(
                !ratio_validity(baseline, plain).is_valid(),
                "{baseline} {plain}"
            );
        }
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}

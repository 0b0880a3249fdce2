//! Service-level objectives a run must meet: `--p99-max-ms`, `--min-rps`, `--max-error-rate`.
//!
//! A breach makes `exposure-loadtest run` exit with status 2 (see `cli::ExitStatus`) after a
//! one-line verdict on stderr, so a CI job or a capacity check can gate on the tool directly. A run
//! that measured no request breaches every objective it was given: it proved nothing.

use crate::report::Report;

/// The objectives of a run; `None` means not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slo {
    /// The 99th-percentile latency must not exceed this, in milliseconds.
    pub p99_max_ms: Option<f64>,
    /// The measured requests per second must be at least this.
    pub min_rps: Option<f64>,
    /// The fraction of failed requests (0.0 to 1.0) must not exceed this.
    pub max_error_rate: Option<f64>,
}

/// The judgement of a report against an [`Slo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True when every objective holds.
    pub passed: bool,
    /// One line for a human: `SLO PASS: ...` or `SLO BREACH: ...`.
    pub line: String,
}

impl Slo {
    /// Returns true when at least one objective is set.
    pub fn is_set(&self) -> bool {
        self.p99_max_ms.is_some() || self.min_rps.is_some() || self.max_error_rate.is_some()
    }

    /// Judges `report`; `None` when no objective is set.
    pub fn judge(&self, report: &Report) -> Option<Verdict> {
        if !self.is_set() {
            return None;
        }
        let mut checks: Vec<(bool, String)> = Vec::new();
        if report.count == 0 {
            checks.push((false, "no request was measured".to_owned()));
        }
        if let Some(limit) = self.p99_max_ms {
            let p99 = report.latency_ms.p99;
            let holds = p99 <= limit;
            checks.push((
                holds,
                format!(
                    "p99 {p99:.3} ms {} {limit} ms",
                    if holds { "<=" } else { ">" }
                ),
            ));
        }
        if let Some(limit) = self.min_rps {
            let rps = report.rps;
            let holds = rps >= limit;
            checks.push((
                holds,
                format!(
                    "{rps:.1} rps {} {limit} rps",
                    if holds { ">=" } else { "<" }
                ),
            ));
        }
        if let Some(limit) = self.max_error_rate {
            let rate = if report.count == 0 {
                0.0
            } else {
                report.errors as f64 / report.count as f64
            };
            let holds = rate <= limit;
            checks.push((
                holds,
                format!(
                    "error rate {:.4}% {} {}%",
                    rate * 100.0,
                    if holds { "<=" } else { ">" },
                    limit * 100.0
                ),
            ));
        }
        let passed = checks.iter().all(|(holds, _)| *holds);
        let shown: Vec<&str> = checks
            .iter()
            .filter(|(holds, _)| !passed || *holds)
            .filter(|(holds, _)| passed || !*holds)
            .map(|(_, text)| text.as_str())
            .collect();
        let line = format!(
            "SLO {}: {}",
            if passed { "PASS" } else { "BREACH" },
            shown.join("; ")
        );
        Some(Verdict { passed, line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencySummary;

    fn report(count: u64, errors: u64, rps: f64, p99: f64) -> Report {
        Report {
            scenario: "poll".to_owned(),
            count,
            errors,
            duration_s: 1.0,
            rps,
            latency_ms: LatencySummary {
                p99,
                ..LatencySummary::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn no_flags_no_verdict() {
        assert_eq!(Slo::default().judge(&report(10, 0, 10.0, 1.0)), None);
    }

    #[test]
    fn met_objectives_pass() {
        let slo = Slo {
            p99_max_ms: Some(10.0),
            min_rps: Some(100.0),
            max_error_rate: Some(0.01),
        };
        let verdict = slo.judge(&report(1_000, 5, 500.0, 3.0)).expect("verdict");
        assert!(verdict.passed, "{}", verdict.line);
        assert!(
            verdict.line.starts_with("SLO PASS: p99 3.000 ms <= 10 ms"),
            "{}",
            verdict.line
        );
    }

    #[test]
    fn each_objective_can_breach_and_the_verdict_names_only_the_breaches() {
        let slo = Slo {
            p99_max_ms: Some(10.0),
            min_rps: Some(100.0),
            max_error_rate: Some(0.01),
        };
        let slow = slo.judge(&report(1_000, 0, 500.0, 12.0)).expect("verdict");
        assert!(!slow.passed);
        assert_eq!(slow.line, "SLO BREACH: p99 12.000 ms > 10 ms");
        let thin = slo.judge(&report(1_000, 0, 50.0, 1.0)).expect("verdict");
        assert_eq!(thin.line, "SLO BREACH: 50.0 rps < 100 rps");
        let failing = slo.judge(&report(1_000, 20, 500.0, 1.0)).expect("verdict");
        assert_eq!(failing.line, "SLO BREACH: error rate 2.0000% > 1%");
        assert!(
            !slo.judge(&report(0, 0, 0.0, 0.0)).expect("verdict").passed,
            "an empty run proves nothing"
        );
        assert!(!failing.line.contains('\n'));
    }
}

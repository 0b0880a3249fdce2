//! The human-readable report (`--format summary`, the default), laid out like ghz's so that
//! operators who know ghz read it at a glance: summary, response-time histogram, latency
//! distribution, status codes, errors, and a per-RPC table for mixed scenarios.

use std::fmt::Write as _;

use crate::report::{AttackReport, LatencySummary, Phase, Report};

/// Width of the longest histogram bar, in characters.
const BAR_WIDTH: f64 = 40.0;

/// Renders `report` as text.
pub fn render(report: &Report) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_summary(&mut text, report);
    text
}

/// Renders an attack run as text: both phases side by side, what the attack did, the verdict.
pub fn render_attack(report: &AttackReport) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_attack(&mut text, report);
    text
}

fn write_attack(out: &mut String, report: &AttackReport) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "Attack:	{} on {}", report.attack, report.target)?;
    writeln!(
        out,
        "  {:<10} {:>8} {:>10} {:>10} {:>10} {:>12} {:>8}",
        "phase", "count", "success %", "p50 ms", "p99 ms", "RSS max MiB", "fds max"
    )?;
    for (name, phase) in [("quiet", &report.quiet), ("attacked", &report.attacked)] {
        write_phase(out, name, phase)?;
    }
    let stats = &report.attack_stats;
    writeln!(
        out,
        "  attack: {} connections opened ({} failed, {} closed by the server, peak {} held), {} calls ({} ended by the server, peak {} held)",
        stats.connections_opened,
        stats.connect_failures,
        stats.connections_closed_by_server,
        stats.connections_held_peak,
        stats.calls_started,
        stats.calls_ended_by_server,
        stats.streams_held_peak
    )?;
    for (outcome, count) in &stats.outcomes {
        writeln!(out, "    {outcome}: {count}")?;
    }
    if let Some(answers) = &stats.answers {
        writeln!(
            out,
            "  answers: {} ({:.1}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            answers.count, answers.per_second, answers.p50_ms, answers.p99_ms, answers.max_ms
        )?;
    }
    if let Some(after) = &report.after {
        writeln!(
            out,
            "  a second after the attack: RSS {} MiB, {} descriptors",
            after.rss_kib / 1024,
            after.fds
        )?;
    }
    for (name, phase) in [("quiet", &report.quiet), ("attacked", &report.attacked)] {
        for (error, count) in &phase.legit.error_distribution {
            writeln!(out, "  {name} error: [{count}] {error}")?;
        }
    }
    writeln!(out, "  {}", report.verdict.line)
}

fn write_phase(out: &mut String, name: &str, phase: &Phase) -> std::fmt::Result {
    let (rss, fds) = match &phase.server {
        Some(usage) => (
            format!("{}", usage.rss_kib.max / 1024),
            format!("{}", usage.fds.max),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    writeln!(
        out,
        "  {:<10} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>12} {:>8}",
        name,
        phase.legit.count,
        phase.success_rate * 100.0,
        phase.legit.latency_ms.p50,
        phase.legit.latency_ms.p99,
        rss,
        fds
    )
}

fn write_summary(out: &mut String, report: &Report) -> std::fmt::Result {
    let latency = &report.latency_ms;
    writeln!(out)?;
    writeln!(out, "Summary:")?;
    writeln!(out, "  Scenario:\t{}", report.scenario)?;
    writeln!(out, "  Target:\t{}", report.target)?;
    writeln!(out, "  Count:\t{}", report.count)?;
    writeln!(out, "  Total:\t{:.2} s", report.duration_s)?;
    writeln!(out, "  Slowest:\t{:.3} ms", latency.max)?;
    writeln!(out, "  Fastest:\t{:.3} ms", latency.min)?;
    writeln!(out, "  Average:\t{:.3} ms", latency.mean)?;
    writeln!(out, "  Requests/sec:\t{:.2}", report.rps)?;
    if report.bytes_received > 0 {
        writeln!(
            out,
            "  Received:\t{} bytes ({:.3} MB/s)",
            report.bytes_received, report.throughput_mb_s
        )?;
    }
    if report.skipped > 0 {
        writeln!(
            out,
            "  Skipped:\t{} (downloads with no batch published yet)",
            report.skipped
        )?;
    }
    let settings = &report.settings;
    let pace = match settings.rate_rps {
        Some(rate) => {
            format!("fixed rate {rate:.2} rps, latency corrected for coordinated omission")
        }
        None => "closed loop".to_owned(),
    };
    writeln!(
        out,
        "  Load:\t\t{pace}; concurrency {}, connections {}, warmup {}",
        settings.concurrency, settings.connections, settings.warmup
    )?;

    if !report.histogram.is_empty() {
        writeln!(out)?;
        writeln!(out, "Response time histogram:")?;
        let largest = report
            .histogram
            .iter()
            .map(|bucket| bucket.count)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        for bucket in &report.histogram {
            let bar = "∎".repeat((bucket.count as f64 / largest * BAR_WIDTH).round() as usize);
            writeln!(
                out,
                "  {:>10.3} [{}]\t|{}",
                bucket.mark_ms, bucket.count, bar
            )?;
        }
    }

    writeln!(out)?;
    writeln!(out, "Latency distribution:")?;
    write_percentiles(out, latency)?;
    if let Some(service) = &report.service_time_ms {
        writeln!(out)?;
        writeln!(
            out,
            "Service time distribution (uncorrected, send to answer):"
        )?;
        write_percentiles(out, service)?;
    }

    writeln!(out)?;
    writeln!(out, "Status code distribution:")?;
    for (code, count) in &report.status_codes {
        writeln!(out, "  [{code}]\t{count} responses")?;
    }
    if !report.error_distribution.is_empty() {
        writeln!(out)?;
        writeln!(out, "Error distribution:")?;
        for (error, count) in &report.error_distribution {
            writeln!(out, "  [{count}]\t{error}")?;
        }
    }

    if let Some(per_rpc) = &report.per_rpc {
        writeln!(out)?;
        writeln!(out, "Per RPC:")?;
        writeln!(
            out,
            "  {:<22} {:>9} {:>7} {:>10} {:>10} {:>10} {:>12}",
            "rpc", "count", "errors", "rps", "p50 ms", "p99 ms", "bytes"
        )?;
        for (name, rpc) in per_rpc {
            writeln!(
                out,
                "  {:<22} {:>9} {:>7} {:>10.2} {:>10.3} {:>10.3} {:>12}",
                name,
                rpc.count,
                rpc.errors,
                rpc.rps,
                rpc.latency_ms.p50,
                rpc.latency_ms.p99,
                rpc.bytes_received
            )?;
        }
    }
    if let Some(slo) = &report.slo {
        writeln!(out)?;
        writeln!(out, "{}", slo.verdict)?;
    }
    Ok(())
}

fn write_percentiles(out: &mut String, latency: &LatencySummary) -> std::fmt::Result {
    for (label, value) in [
        ("50", latency.p50),
        ("75", latency.p75),
        ("90", latency.p90),
        ("95", latency.p95),
        ("99", latency.p99),
        ("99.9", latency.p999),
    ] {
        writeln!(out, "  {label} % in {value:.3} ms")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HistogramBucket, RpcReport, Settings};

    #[test]
    fn summary_has_the_ghz_sections() {
        let mut status_codes = std::collections::BTreeMap::new();
        status_codes.insert("OK".to_owned(), 9);
        status_codes.insert("UNAUTHENTICATED".to_owned(), 1);
        let mut per_rpc = std::collections::BTreeMap::new();
        per_rpc.insert(
            "ListBatches".to_owned(),
            RpcReport {
                count: 10,
                errors: 1,
                rps: 5.0,
                latency_ms: LatencySummary::default(),
                status_codes: status_codes.clone(),
                bytes_received: 0,
                skipped: 0,
            },
        );
        let report = Report {
            scenario: "province".to_owned(),
            target: "http://127.0.0.1:50051".to_owned(),
            count: 10,
            errors: 1,
            duration_s: 2.0,
            rps: 5.0,
            latency_ms: LatencySummary {
                p50: 1.0,
                p99: 2.0,
                max: 2.5,
                min: 0.5,
                mean: 1.1,
                ..LatencySummary::default()
            },
            service_time_ms: None,
            status_codes,
            error_distribution: [("UNAUTHENTICATED: bad token".to_owned(), 1)]
                .into_iter()
                .collect(),
            histogram: vec![
                HistogramBucket {
                    mark_ms: 1.0,
                    count: 4,
                    frequency: 0.4,
                },
                HistogramBucket {
                    mark_ms: 2.5,
                    count: 6,
                    frequency: 0.6,
                },
            ],
            per_rpc: Some(per_rpc),
            bytes_received: 0,
            throughput_mb_s: 0.0,
            skipped: 0,
            timeline: Vec::new(),
            settings: Settings {
                region: "VN-TB".to_owned(),
                concurrency: 4,
                connections: 1,
                rate_rps: None,
                speedup: Some(1.0),
                requests: 10,
                max_duration_s: 10.0,
                warmup: 0,
                timeout_s: 20.0,
            },
            slo: None,
        };
        let text = render(&report);
        for expected in [
            "Summary:",
            "Count:\t10",
            "Requests/sec:\t5.00",
            "Response time histogram:",
            "99 % in 2.000 ms",
            "[UNAUTHENTICATED]\t1 responses",
            "Error distribution:",
            "Per RPC:",
            "ListBatches",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            text.contains(&"∎".repeat(40)),
            "the largest bucket has the full bar"
        );
    }

    /// A phase of `count` requests of which `ok` succeeded, p99 `p99` ms, and the server's
    /// highest memory and descriptors.
    fn phase(count: u64, ok: u64, p99: f64, rss_kib: u64, fds: u64) -> Phase {
        let mut legit = Report {
            count,
            errors: count - ok,
            ..Report::default()
        };
        legit.status_codes.insert("OK".to_owned(), ok);
        legit.latency_ms.p99 = p99;
        let usage = crate::server_usage::ServerUsage {
            pid: 1,
            samples: 10,
            rss_kib: crate::server_usage::Span {
                start: rss_kib / 2,
                max: rss_kib,
                end: rss_kib,
            },
            fds: crate::server_usage::Span {
                start: 12,
                max: fds,
                end: 12,
            },
        };
        Phase::new(legit, Some(usage))
    }

    #[test]
    fn attack_summary_puts_the_phases_side_by_side_with_the_verdict() {
        use crate::report::{ATTACK_GOALS, AttackReport, AttackVerdict};
        let quiet = phase(760, 760, 4.0, 102_400, 40);
        // 2 of 760 failed (99.74 %), p99 5 x quiet, 5,000 descriptors.
        let attacked = phase(760, 758, 20.0, 204_800, 5_000);
        let verdict = AttackVerdict::judge(ATTACK_GOALS, &quiet, &attacked, None);
        assert!(!verdict.passed);
        assert_eq!(verdict.p99_ratio, 5.0);
        assert_eq!(
            (
                verdict.success_met,
                verdict.p99_met,
                verdict.rss_met,
                verdict.fds_met
            ),
            (false, false, Some(true), Some(false))
        );
        let report = AttackReport {
            attack: "zero-window".to_owned(),
            target: "http://127.0.0.1:50051".to_owned(),
            settle_s: 2.0,
            quiet,
            attacked,
            attack_stats: crate::scenario::attack::AttackStats {
                attack: "zero-window".to_owned(),
                connections_opened: 64,
                calls_started: 4096,
                ..Default::default()
            },
            after: None,
            acknowledged: None,
            verdict,
        };
        let text = render_attack(&report);
        assert!(
            text.contains("Attack:\tzero-window on http://127.0.0.1:50051"),
            "{text}"
        );
        let quiet_line = text
            .lines()
            .find(|line| line.trim_start().starts_with("quiet"))
            .expect("quiet");
        assert!(
            quiet_line.contains("760")
                && quiet_line.contains("100.000")
                && quiet_line.contains("4.000"),
            "{quiet_line}"
        );
        let attacked_line = text
            .lines()
            .find(|line| line.trim_start().starts_with("attacked"))
            .expect("attacked");
        assert!(
            attacked_line.contains("99.737")
                && attacked_line.contains("20.000")
                && attacked_line.contains("200")
                && attacked_line.contains("5000"),
            "{attacked_line}"
        );
        assert!(text.contains("64 connections opened"), "{text}");
        assert!(
            text.contains("ATTACK MISS: success 99.7368 % < 99.9 %; p99 20.000 ms = 5 x quiet 4.000 ms > 3 x; 5000 descriptors > 4096"),
            "{text}"
        );
    }
}

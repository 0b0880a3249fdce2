//! The province scenario as the load generator really paces it: the tickets its schedule hands
//! out over one simulated hour, counted per RPC and compared with DESIGN.md section 9's
//! population figures (not with the model's own formulas), and the rates `run --help` prints
//! compared with the rates the schedule runs at.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::CommandFactory as _;
use exposure_loadtest::cli::Command;
use exposure_loadtest::runner::RunOptions;
use exposure_loadtest::schedule::{Bounds, Pace, Schedule};
use exposure_loadtest::{Cli, RpcKind};

/// DESIGN §9: 1,878,540 people × 40 % adoption, each phone polling hourly.
const PHONES: u64 = 751_416;
/// DESIGN §9: 1,230 uploading cases a day; over one hour 51.25, so 52 tickets (the first at 0).
const UPLOADS_IN_AN_HOUR: u64 = 52;
/// False filter hits: each hourly batch (§6) is checked once against every tag a phone holds,
/// 14 days (§6 retention) × 10,000 observations a day (§9) × 3 slot candidates (§3) = 420,000,
/// at 2^-16 per lookup (§5): 6.4087 per batch, one batch an hour, so 751,416 × 420,000 / 65,536
/// = 4,815,593.26 in an hour: 4,815,594 tickets (the first at 0).
const CONFIRMS_IN_AN_HOUR: u64 = 4_815_594;

fn province(speedup: &str) -> RunOptions {
    let cli = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--scenario",
        "province",
        "--token",
        "T",
        "--speedup",
        speedup,
    ])
    .expect("valid command line");
    match cli.command {
        Command::Run(args) => args.to_options().expect("valid options"),
        _ => panic!("parsed as another command"),
    }
}

/// Returns the tickets the run's schedule hands out within `duration`, per RPC.
fn tickets(options: &RunOptions, duration: Duration) -> HashMap<RpcKind, u64> {
    let start = Instant::now();
    let bounds = Bounds {
        warmup: 0,
        requests: u64::MAX,
        duration,
    };
    let schedule = Schedule::new(options.pace(), bounds, start);
    let mut counts = HashMap::new();
    // Due times are computed, not waited for: the whole hour is handed out at once.
    while let Some(ticket) = schedule.next(start) {
        *counts.entry(ticket.kind).or_insert(0) += 1;
    }
    counts
}

fn assert_one_hour_of_the_province(counts: &HashMap<RpcKind, u64>) {
    let count = |kind| counts.get(&kind).copied().unwrap_or(0);
    // A stream's last request falls exactly on the hour's end: one more or less is rounding.
    for kind in [RpcKind::ListBatches, RpcKind::GetBatch] {
        assert!(
            count(kind).abs_diff(PHONES) <= 1,
            "{kind:?}: {} in an hour, DESIGN §9 has {PHONES} phones polling hourly",
            count(kind)
        );
    }
    assert_eq!(count(RpcKind::Upload), UPLOADS_IN_AN_HOUR);
    assert_eq!(count(RpcKind::GetConfirmBucket), CONFIRMS_IN_AN_HOUR);
    assert_eq!(
        counts.len(),
        4,
        "uploads, polls, downloads and confirms only: {counts:?}"
    );
}

#[test]
fn an_hour_of_the_province_sends_design_section_9s_requests() {
    assert_one_hour_of_the_province(&tickets(&province("1"), Duration::from_secs(3_600)));
}

#[test]
fn speedup_compresses_the_same_hour_into_less_time() {
    assert_one_hour_of_the_province(&tickets(&province("4"), Duration::from_secs(900)));
}

#[test]
fn run_help_prints_the_rates_the_schedule_runs_at() {
    let Pace::FixedRate { streams } = province("1").pace() else {
        panic!("the province scenario runs at fixed rates");
    };
    let rate_of = |kind: RpcKind| {
        streams
            .iter()
            .find(|(candidate, _)| *candidate == kind)
            .map(|(_, rate)| *rate)
            .expect("a stream per RPC")
    };
    let mut cli = Cli::command();
    let help = cli
        .find_subcommand_mut("run")
        .expect("run subcommand")
        .render_long_help()
        .to_string();
    let printed = |name: &str| -> String {
        help.lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(name)).then(|| words.next()).flatten()
            })
            .unwrap_or_else(|| panic!("no {name} line in run --help:\n{help}"))
            .trim_end_matches("/s")
            .to_owned()
    };
    let total: f64 = streams.iter().map(|(_, rate)| rate).sum();
    for (name, rate) in [
        ("UploadDiagnosisKeys", rate_of(RpcKind::Upload)),
        ("ListBatches", rate_of(RpcKind::ListBatches)),
        ("GetBatch", rate_of(RpcKind::GetBatch)),
        ("GetConfirmBucket", rate_of(RpcKind::GetConfirmBucket)),
        ("total", total),
    ] {
        let printed = printed(name);
        let decimals = printed.split('.').nth(1).map_or(0, str::len);
        assert_eq!(
            printed,
            format!("{rate:.decimals$}"),
            "{name}: run --help and the schedule disagree"
        );
    }
}

//! `bench-province`: the province matching benchmark of DESIGN §9 on the command line. The work
//! is [`exposure_matcher::province::run_province_benchmark`]; this module parses flags, shows
//! progress on stderr and prints the report as text or JSON.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use exposure_matcher::FingerprintWidth;
use exposure_matcher::province::{
    CONFIRM_FETCH_OVERHEAD_BYTES, MatchRun, MatchTime, ObservationTags, PHONES_PER_GROUP,
    ProvinceConfig, ProvinceError, ProvinceProgress, ProvinceReport, run_province_benchmark,
};

use crate::Failure;
use crate::json::Json;
use crate::perf::{Counters, PerfStat};

/// Arguments of `bench-province`; the defaults are DESIGN §9's peak day.
#[derive(Debug, Args)]
pub struct BenchProvinceArgs {
    /// Phones to match.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().phones)]
    phones: usize,
    /// Observations each phone stored in the day.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().observations_per_phone)]
    observations: usize,
    /// Cases uploading keys that day.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().cases)]
    cases: usize,
    /// GAEN keys per case, one per day back from the peak day.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().keys_per_case)]
    keys_per_case: usize,
    /// Fingerprint width of the batch's filter in bits: 8, 16 or 32.
    #[arg(long, value_name = "BITS", default_value_t = 16)]
    fingerprint: u32,
    /// Slots on each side of an observation's slot that the phone also looks up.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().tolerance)]
    tolerance: u32,
    /// Prefix bits of a confirm bucket (the deployment's confirm_prefix_bits).
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().confirm_prefix_bits)]
    confirm_prefix_bits: u32,
    /// Plant 1 to 3 known exposures in one phone out of this many.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().plant_one_in)]
    plant_one_in: usize,
    /// Seed of the keys, phones and planted exposures.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().seed)]
    seed: u64,
    /// Rayon threads [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// How phones' observation tags are produced: `stored` draws the tags a phone computed when
    /// it stored each observation (times the daily match, DESIGN §9's target); `computed` draws
    /// random identifiers and computes their tags with SHA-256 during the run.
    #[arg(long, value_enum, default_value_t = TagsArg::Stored)]
    observation_tags: TagsArg,
    /// Phones (the first ones) also matched with the plain loop, as the baseline; 0 for none.
    #[arg(long, value_name = "N", default_value_t = ProvinceConfig::default().baseline_phones)]
    baseline_phones: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
}

/// How observation tags are produced.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TagsArg {
    /// The tags the phone stored, drawn at random (planted ones computed).
    Stored,
    /// Random identifiers, tagged with SHA-256 during the run.
    Computed,
}

/// Output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Aligned lines for people.
    Text,
    /// One JSON object for machines.
    Json,
}

/// Runs the benchmark and prints its report; fails (exit 1) when a planted exposure was missed
/// or a false alert was raised.
pub fn run(args: &BenchProvinceArgs) -> Result<(), Failure> {
    let config = config_from_args(args)?;
    let progress = ProgressDisplay::new(std::io::stderr().is_terminal());
    let counters = CounterRecorder::default();
    let report = run_province_benchmark(&config, &|event| match event {
        ProvinceProgress::RunStarted(run) => counters.start(run),
        ProvinceProgress::RunFinished(run) => counters.finish(run),
        other => progress.show(other),
    })
    .map_err(|error| match error {
        ProvinceError::InvalidConfig { .. } => Failure::Usage(format!("--{error}")),
        other => Failure::Other(other.into()),
    })?;
    progress.finish();
    let counters = counters.into_runs();
    let text = match args.format {
        FormatArg::Text => text_report(&report, &counters),
        FormatArg::Json => json_report(&report, &counters),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    if !report.passed() {
        return Err(Failure::Other(anyhow::anyhow!(
            "benchmark failed: {} of {} planted exposures found, {} false alerts",
            report.planted_found,
            report.planted_exposures,
            report.false_alerts
        )));
    }
    Ok(())
}

fn config_from_args(args: &BenchProvinceArgs) -> Result<ProvinceConfig, Failure> {
    let width = FingerprintWidth::from_bits(args.fingerprint).ok_or_else(|| {
        Failure::Usage(format!(
            "--fingerprint must be 8, 16 or 32, got {}",
            args.fingerprint
        ))
    })?;
    Ok(ProvinceConfig {
        phones: args.phones,
        observations_per_phone: args.observations,
        tolerance: args.tolerance,
        cases: args.cases,
        keys_per_case: args.keys_per_case,
        width,
        confirm_prefix_bits: args.confirm_prefix_bits,
        plant_one_in: args.plant_one_in,
        seed: args.seed,
        threads: args.threads,
        observation_tags: match args.observation_tags {
            TagsArg::Stored => ObservationTags::Stored,
            TagsArg::Computed => ObservationTags::Computed,
        },
        baseline_phones: args.baseline_phones,
    })
}

/// Progress on stderr: one line rewritten in place on a terminal, a line per tenth otherwise.
struct ProgressDisplay {
    terminal: bool,
    started: Instant,
    /// When the terminal line was last drawn, and the last tenth printed as a line.
    last: Mutex<(Instant, usize)>,
}

impl ProgressDisplay {
    /// How often the terminal line is redrawn at most.
    const REDRAW: Duration = Duration::from_millis(250);

    fn new(terminal: bool) -> Self {
        let now = Instant::now();
        ProgressDisplay {
            terminal,
            started: now,
            last: Mutex::new((now, 0)),
        }
    }

    fn show(&self, event: ProvinceProgress) {
        let (phones_done, phones_total) = match event {
            ProvinceProgress::BuildingBatch => {
                eprintln!("bench-province: building the day's batch");
                return;
            }
            ProvinceProgress::Matching {
                phones_done,
                phones_total,
            } => (phones_done, phones_total),
            ProvinceProgress::RunStarted(_) | ProvinceProgress::RunFinished(_) => return,
        };
        // Workers never wait on the display, but for the last update: a busy lock skips one.
        let last = if phones_done == phones_total {
            self.last.lock().ok()
        } else {
            self.last.try_lock().ok()
        };
        let Some(mut last) = last else {
            return;
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let line = format!(
            "bench-province: matched {phones_done} of {phones_total} phone days, baseline included ({:.0} %), {elapsed:.1} s",
            100.0 * phones_done as f64 / phones_total as f64
        );
        if self.terminal {
            if last.0.elapsed() >= Self::REDRAW || phones_done == phones_total {
                eprint!("\r{line}\x1b[K");
                last.0 = Instant::now();
            }
        } else {
            let tenth = phones_done * 10 / phones_total;
            if tenth > last.1 {
                eprintln!("{line}");
                last.1 = tenth;
            }
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// Hardware counters of each run, from `perf stat` attached while it runs.
#[derive(Default)]
struct CounterRecorder {
    current: Mutex<Option<PerfStat>>,
    runs: Mutex<Vec<(MatchRun, Counters)>>,
}

impl CounterRecorder {
    fn start(&self, run: MatchRun) {
        match PerfStat::start() {
            Ok(perf) => {
                if let Ok(mut current) = self.current.lock() {
                    *current = Some(perf);
                }
            }
            Err(reason) => self.record(run, Counters::Unavailable(reason)),
        }
    }

    fn finish(&self, run: MatchRun) {
        let perf = self
            .current
            .lock()
            .ok()
            .and_then(|mut current| current.take());
        if let Some(perf) = perf {
            self.record(run, perf.stop());
        }
    }

    fn record(&self, run: MatchRun, counters: Counters) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push((run, counters));
        }
    }

    fn into_runs(self) -> Vec<(MatchRun, Counters)> {
        self.runs.into_inner().unwrap_or_default()
    }
}

/// Returns the lookups of one run of the report.
fn run_lookups(report: &ProvinceReport, run: MatchRun) -> u64 {
    let baseline = report
        .baseline
        .as_ref()
        .map_or(0, |baseline| baseline.lookups);
    match run {
        MatchRun::PlainBaseline | MatchRun::PartitionedBaseline => baseline,
        MatchRun::Rest => report.lookups - baseline,
    }
}

/// Returns a count per lookup, where both are known.
fn per_lookup(count: Option<u64>, lookups: u64) -> Option<f64> {
    count
        .filter(|_| lookups > 0)
        .map(|count| count as f64 / lookups as f64)
}

fn counters_text(report: &ProvinceReport, runs: &[(MatchRun, Counters)]) -> String {
    if let Some((_, Counters::Unavailable(reason))) = runs
        .iter()
        .find(|(_, counters)| matches!(counters, Counters::Unavailable(_)))
    {
        return format!("none: {reason}");
    }
    let parts: Vec<String> = runs
        .iter()
        .filter_map(|(run, counters)| match counters {
            Counters::Counts(counts) => {
                let lookups = run_lookups(report, *run);
                let events: Vec<String> = counts
                    .iter()
                    .map(|(event, count)| match per_lookup(*count, lookups) {
                        Some(value) => format!("{value:.2} {event}"),
                        None => format!("{event} not counted"),
                    })
                    .collect();
                Some(format!("{}: {} per lookup", run.name(), events.join(", ")))
            }
            Counters::Unavailable(_) => None,
        })
        .collect();
    if parts.is_empty() {
        "none: no run was counted".to_owned()
    } else {
        parts.join("; ")
    }
}

fn counters_json(report: &ProvinceReport, runs: &[(MatchRun, Counters)]) -> Json {
    use Json::{Number, Object};
    let fields: Vec<(&'static str, Json)> = runs
        .iter()
        .filter_map(|(run, counters)| match counters {
            Counters::Counts(counts) => {
                let lookups = run_lookups(report, *run);
                let per_event = counts
                    .iter()
                    .map(|&(event, count)| {
                        (event, Json::optional(per_lookup(count, lookups), Number))
                    })
                    .collect();
                Some((run.key(), Object(per_event)))
            }
            Counters::Unavailable(_) => None,
        })
        .collect();
    // `null` where nothing was counted (no perf, or no hardware counters).
    if fields.is_empty() {
        Json::Null
    } else {
        Object(fields)
    }
}

fn text_report(report: &ProvinceReport, counters: &[(MatchRun, Counters)]) -> String {
    let config = &report.config;
    let within = match report.false_hits_within_20_percent() {
        Some(true) => "within 20 % of theory",
        Some(false) => "NOT within 20 % of theory",
        None => "too few expected to compare",
    };
    let lines = [
        (
            "scenario",
            format!(
                "{} phones × {} observations × {} slot candidates (tolerance {}), {} tags",
                config.phones,
                config.observations_per_phone,
                config.candidates_per_observation(),
                config.tolerance,
                config.observation_tags.name()
            ),
        ),
        (
            "batch",
            format!(
                "{} cases × {} keys = {} keys → {} tags, {} elements, {}-bit, {} bytes ({:.3} bits/element)",
                config.cases,
                config.keys_per_case,
                report.keys,
                report.tags,
                report.element_count,
                config.width.bits(),
                report.batch_bytes,
                report.bits_per_element
            ),
        ),
        (
            "build time",
            format!(
                "{:.3} s (keys, expand, filter, sign, parse, verify, confirm store)",
                report.build_time.as_secs_f64()
            ),
        ),
        (
            "match time",
            format!(
                "{:.3} s on {} threads (target ≤ 60 s), from stores in {} partitions, {} phones a group",
                report.match_time.wall.as_secs_f64(),
                report.threads,
                1u64 << report.partition_bits,
                PHONES_PER_GROUP
            ),
        ),
        (
            "lookups",
            format!(
                "{} ({:.1} M/s end to end; {})",
                report.lookups,
                report.lookups_per_second() / 1e6,
                time_text(&report.match_time, report.lookups)
            ),
        ),
        ("plain-loop baseline", baseline_text(report)),
        ("hardware counters", counters_text(report, counters)),
        (
            "planted found",
            format!(
                "{} of {} exposures in {} phones",
                report.planted_found, report.planted_exposures, report.planted_phones
            ),
        ),
        (
            "false filter hits",
            format!(
                "{} vs {:.1} expected (ratio {}), {within}",
                report.false_filter_hits(),
                report.expected_false_filter_hits(),
                report
                    .false_hit_ratio()
                    .map_or("n/a".to_owned(), |ratio| format!("{ratio:.4}"))
            ),
        ),
        ("false alerts", report.false_alerts.to_string()),
        (
            "confirm fetches",
            format!(
                "{} ({:.3} per phone, at most {} for one phone), {:.1} digests per bucket ({} prefix bits)",
                report.confirm_fetches(),
                report.confirm_fetches_per_phone(),
                report.max_fetches_of_a_phone,
                report.mean_bucket_digests(),
                config.confirm_prefix_bits
            ),
        ),
        (
            "a phone's real day",
            format!(
                "{} lookups ({} batches × {} tags of {} days) → {:.1} confirm fetches at the measured false-hit rate",
                report.phone_day().lookups_per_day(),
                report.phone_day().batches_per_day,
                report.phone_day().lookups_per_batch(),
                report.phone_day().retention_days,
                report.confirm_fetches_per_phone_day()
            ),
        ),
        (
            "bytes per phone per day",
            format!(
                "{:.0} (batch {} + confirm {:.1}, assuming 16 bytes per digest + {} per fetch)",
                report.bytes_per_phone_per_day(),
                report.batch_bytes,
                report.confirm_bytes_per_phone(),
                CONFIRM_FETCH_OVERHEAD_BYTES
            ),
        ),
        (
            "same day as GAEN keys",
            format!(
                "{} bytes ({} keys × 28, before an export file's protobuf and zip)",
                report.gaen_export_bytes(),
                report.keys
            ),
        ),
        (
            "same day as DP-3T Cuckoo",
            format!(
                "{} bytes ({} identifiers × 48 bits)",
                report.dp3t_cuckoo_bytes(),
                report.tags
            ),
        ),
        (
            "verdict",
            if report.passed() { "PASS" } else { "FAIL" }.to_owned(),
        ),
    ];
    let mut text = String::new();
    for (name, value) in lines {
        text.push_str(&format!("{name:<25} {value}\n"));
    }
    text
}

fn time_text(time: &MatchTime, lookups: u64) -> String {
    let cpu = time
        .cpu_ns(lookups)
        .map_or("CPU time not available".to_owned(), |ns| {
            format!("{ns:.2} CPU ns")
        });
    let median = time
        .median_lookup_ns
        .map_or(String::new(), |ns| format!(" (median {ns:.2})"));
    format!(
        "per lookup: {:.2} ns in the loop{median}, {cpu}",
        time.lookup_ns(lookups)
    )
}

fn baseline_text(report: &ProvinceReport) -> String {
    let Some(baseline) = &report.baseline else {
        return "not run (--baseline-phones 0)".to_owned();
    };
    let calibration = &baseline.calibration;
    format!(
        "first {} phones: plain loop {:.3} s ({}); partitioned stores {:.3} s ({}); lookup loop {:.2}× the plain loop's speed ({} median against median), end to end {:.2}×; {}; criterion's plain loop in this process: {:.2} ns a lookup (median of {} matches of {} lookups, {} threads at once); {}",
        baseline.phones,
        baseline.plain.wall.as_secs_f64(),
        time_text(&baseline.plain, baseline.lookups),
        baseline.partitioned.wall.as_secs_f64(),
        time_text(&baseline.partitioned, baseline.lookups),
        baseline.lookup_speedup(),
        baseline
            .median_lookup_speedup()
            .map_or("no".to_owned(), |speedup| format!("{speedup:.2}×")),
        baseline.wall_speedup(),
        if baseline.agrees {
            "same hits"
        } else {
            "HITS DIFFER"
        },
        calibration.ns_per_lookup,
        calibration.matches,
        calibration.lookups_per_match,
        calibration.threads,
        baseline.validity(),
    )
}

fn time_json(time: &MatchTime, lookups: u64) -> Json {
    use Json::{Number, Object};
    Object(vec![
        ("wall_seconds", Number(time.wall.as_secs_f64())),
        ("lookup_ns", Number(time.lookup_ns(lookups))),
        ("cpu_ns", Json::optional(time.cpu_ns(lookups), Number)),
        (
            "median_lookup_ns",
            Json::optional(time.median_lookup_ns, Number),
        ),
    ])
}

fn json_report(report: &ProvinceReport, counters: &[(MatchRun, Counters)]) -> String {
    use Json::{Bool, Integer, Number, Object, Text};
    let config = &report.config;
    let count = |value: usize| Integer(value as u64);
    let json = Object(vec![
        ("passed", Bool(report.passed())),
        (
            "config",
            Object(vec![
                ("phones", count(config.phones)),
                (
                    "observations_per_phone",
                    count(config.observations_per_phone),
                ),
                ("tolerance", Integer(config.tolerance.into())),
                (
                    "slot_candidates",
                    count(config.candidates_per_observation()),
                ),
                ("cases", count(config.cases)),
                ("keys_per_case", count(config.keys_per_case)),
                ("fingerprint_bits", Integer(config.width.bits().into())),
                (
                    "confirm_prefix_bits",
                    Integer(config.confirm_prefix_bits.into()),
                ),
                ("plant_one_in", count(config.plant_one_in)),
                ("seed", Integer(config.seed)),
                ("observation_tags", Text(config.observation_tags.name())),
                ("threads", count(report.threads)),
                ("baseline_phones", count(config.baseline_phones)),
            ]),
        ),
        (
            "batch",
            Object(vec![
                ("keys", count(report.keys)),
                ("tags", count(report.tags)),
                ("element_count", Integer(report.element_count.into())),
                ("size_bytes", count(report.batch_bytes)),
                ("bits_per_element", Number(report.bits_per_element)),
                ("confirm_digests", count(report.confirm_digests)),
            ]),
        ),
        ("build_seconds", Number(report.build_time.as_secs_f64())),
        (
            "match_seconds",
            Number(report.match_time.wall.as_secs_f64()),
        ),
        ("match_time", time_json(&report.match_time, report.lookups)),
        ("hardware_counters", counters_json(report, counters)),
        ("partitions", Integer(1u64 << report.partition_bits)),
        ("phones_per_group", count(PHONES_PER_GROUP)),
        ("lookups", Integer(report.lookups)),
        ("lookups_per_second", Number(report.lookups_per_second())),
        (
            "baseline",
            report.baseline.as_ref().map_or(Json::Null, |baseline| {
                Object(vec![
                    ("phones", count(baseline.phones)),
                    ("lookups", Integer(baseline.lookups)),
                    ("plain", time_json(&baseline.plain, baseline.lookups)),
                    (
                        "partitioned",
                        time_json(&baseline.partitioned, baseline.lookups),
                    ),
                    ("lookup_speedup", Number(baseline.lookup_speedup())),
                    (
                        "median_lookup_speedup",
                        Json::optional(baseline.median_lookup_speedup(), Number),
                    ),
                    ("wall_speedup", Number(baseline.wall_speedup())),
                    ("agrees", Bool(baseline.agrees)),
                    (
                        "plain_loop_calibration",
                        Object(vec![
                            ("threads", count(baseline.calibration.threads)),
                            (
                                "lookups_per_match",
                                count(baseline.calibration.lookups_per_match),
                            ),
                            ("matches", count(baseline.calibration.matches)),
                            ("lookup_ns", Number(baseline.calibration.ns_per_lookup)),
                        ]),
                    ),
                    // Whether the ratios are valid: the plain baseline's `lookup_ns` within
                    // MAX_BASELINE_DEVIATION of the calibration's.
                    ("ratio_valid", Bool(baseline.validity().is_valid())),
                ])
            }),
        ),
        (
            "planted",
            Object(vec![
                ("phones", count(report.planted_phones)),
                ("exposures", count(report.planted_exposures)),
                ("found", Integer(report.planted_found)),
            ]),
        ),
        (
            "filter_hits",
            Object(vec![
                ("total", Integer(report.filter_hits)),
                ("true", Integer(report.true_filter_hits)),
                ("false", Integer(report.false_filter_hits())),
                (
                    "expected_false",
                    Number(report.expected_false_filter_hits()),
                ),
                (
                    "false_ratio",
                    Json::optional(report.false_hit_ratio(), Number),
                ),
                (
                    "within_20_percent",
                    Json::optional(report.false_hits_within_20_percent(), Bool),
                ),
            ]),
        ),
        ("false_alerts", Integer(report.false_alerts)),
        (
            "confirm",
            Object(vec![
                ("fetches", Integer(report.confirm_fetches())),
                (
                    "fetches_per_phone",
                    Number(report.confirm_fetches_per_phone()),
                ),
                (
                    "max_fetches_of_a_phone",
                    Integer(report.max_fetches_of_a_phone),
                ),
                ("mean_bucket_digests", Number(report.mean_bucket_digests())),
                (
                    "lookups_per_phone_day",
                    Integer(report.phone_day().lookups_per_day()),
                ),
                (
                    "fetches_per_phone_day",
                    Number(report.confirm_fetches_per_phone_day()),
                ),
                (
                    "bytes_per_phone_day",
                    Number(report.confirm_bytes_per_phone()),
                ),
                (
                    "fetch_overhead_bytes",
                    Integer(CONFIRM_FETCH_OVERHEAD_BYTES),
                ),
            ]),
        ),
        (
            "bytes_per_phone_per_day",
            Number(report.bytes_per_phone_per_day()),
        ),
        (
            "same_day_as",
            Object(vec![
                ("gaen_export_bytes", Integer(report.gaen_export_bytes())),
                ("dp3t_cuckoo_bytes", Integer(report.dp3t_cuckoo_bytes())),
            ]),
        ),
    ]);
    let mut out = String::new();
    json.write(&mut out, 0);
    out.push('\n');
    out
}

//! The command line: `exposure-loadtest run ...`, `exposure-loadtest attack ...` (issue 18) and
//! `exposure-loadtest demo ...`, their flags (issue 4), and [`execute`], which turns parsed flags into a run, writes the report, the plot
//! and the verdict, and returns the process exit status.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::BearerToken;
use crate::demo::{self, DemoOptions};
use crate::progress::Progress;
use crate::report::{ATTACK_GOALS, AttackGoals, SloReport};
use crate::runner::{self, AttackOptions, RunOptions};
use crate::scenario::Scenario;
use crate::scenario::attack::{Attack, AttackPlan};
use crate::slo::Slo;
use crate::target::{DEFAULT_TARGET, Target};

/// Exit statuses, documented in `--help`.
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   the run finished and every SLO flag given was met
  1   the run could not start or failed (unreachable target, nothing to download, I/O error)
  2   an SLO given by --p99-max-ms, --min-rps or --max-error-rate was breached
  64  bad usage (unknown flag, refused target, missing --token)";

/// The province model in `run --help`.
const PROVINCE_HELP: &str = "\
The province scenario (DESIGN.md section 9, Thái Bình at its 18 March 2022 peak), per second at --speedup 1:
  UploadDiagnosisKeys  0.0142/s  1,230 uploading cases a day (3,074 new cases x 40 %) / 86,400 s
  ListBatches          208.7/s   751,416 phones (1,878,540 people x 40 % adoption) polling hourly / 3,600 s
  GetBatch             208.7/s   one download per poll that sees a new batch: hourly batches, hourly polls
  GetConfirmBucket    1337.7/s   false filter hits: each hourly batch checked once against 14 days x 10,000
                                 observations x 3 slot candidates = 420,000 tags, 24 batches a day, / 2^16
                                 = 153.8 confirms per phone per day, x 751,416 / 86,400 s
  total               1755.1/s   each RPC a fixed-rate stream from t = 0; --speedup multiplies every rate";

/// Drives a real exposure server the way a province does and reports latency, throughput and
/// status codes.
#[derive(Debug, Parser)]
#[command(name = "exposure-loadtest", version, about, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one scenario, bounded by --requests and --duration, and reports like ghz.
    #[command(after_help = EXIT_STATUS_HELP, after_long_help = format!("{PROVINCE_HELP}\n\n{EXIT_STATUS_HELP}"))]
    Run(RunArgs),
    /// Runs the legitimate mix alone, then beside an attack, on loopback only, and compares them
    /// (success rate, p99, the server's memory and descriptors).
    #[command(after_help = ATTACK_EXIT_STATUS_HELP)]
    Attack(AttackArgs),
    /// Tells the whole story of one case: upload, publish, download, verify, match, confirm.
    #[command(after_help = EXIT_STATUS_HELP)]
    Demo(DemoArgs),
    /// Guesses upload codes from many client networks (posing as a trusted proxy, with PROXY
    /// protocol v2 headers) beside patients uploading valid codes; reports their success rate.
    #[command(after_help = EXIT_STATUS_HELP)]
    CodeGuessing(crate::code_guessing::CodeGuessingArgs),
    /// Looks for the uploads of a `run --ledger` file in a server's published confirm store
    /// (a standby after a failover): how many acknowledged uploads it lacks, and how long
    /// before the primary's loss the newest of them was answered. Reports JSON.
    Readback(ReadbackArgs),
}

/// Flags of `exposure-loadtest readback`.
#[derive(Debug, Args)]
pub struct ReadbackArgs {
    /// The server's gRPC URL; loopback only (127.0.0.0/8, ::1, localhost).
    #[arg(long, default_value = DEFAULT_TARGET)]
    pub target: String,
    /// PEM CA certificate that signed the server's certificate; needed for an https:// target.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Region the uploads named.
    #[arg(long, default_value = runner::DEFAULT_REGION)]
    pub region: String,
    /// The file `run --ledger` wrote.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Looks only for uploads answered at or before this Unix millisecond (the primary's loss),
    /// and counts the newest lost upload's age from it.
    #[arg(long, value_name = "UNIX_MS")]
    pub acknowledged_by: Option<u64>,
    /// How long to wait for the server to publish the keys (it needs `--release-delay 0s` and
    /// a `--publish-interval` well below this).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Writes the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Exit statuses of `attack`, documented in its `--help`.
const ATTACK_EXIT_STATUS_HELP: &str = "\
Exit status:
  0   the run finished (and, with --check-goals, every goal was met)
  1   the run could not start or failed (unreachable target, nothing published, unreadable --server-pid)
  2   --check-goals was given and a goal was missed
  64  bad usage (unknown flag, non-loopback target, missing --token)";

/// Flags of `exposure-loadtest attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// The server's gRPC URL; loopback only (127.0.0.0/8, ::1, localhost), always.
    #[arg(long, default_value = DEFAULT_TARGET)]
    pub target: String,
    /// PEM CA certificate that signed the server's certificate; needed for an https:// target.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The attack to run beside the legitimate mix.
    #[arg(long, value_enum)]
    pub attack: Attack,
    /// Health-authority bearer token: the mix uploads and issues codes with it (never printed).
    #[arg(long, env = "EXPOSURE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Region the requests name.
    #[arg(long, default_value = runner::DEFAULT_REGION)]
    pub region: String,
    /// Length of each phase (the quiet one and the attacked one).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
    /// How long the attack runs before the attacked phase starts measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Multiplies every rate of the mix (76 requests/s at 1).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Workers of the mix (requests in flight at most).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the mix's workers share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Per-request timeout of the mix.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Requests of each phase sent first and left out of its statistics (new connections,
    /// cold caches), so the p99s compare the server's steady state.
    #[arg(long, default_value_t = 20)]
    pub warmup: u64,
    /// Attacking connections (workers for odd-upload); default: the issue's number per attack.
    #[arg(long)]
    pub attackers: Option<usize>,
    /// Streams per attacking connection (zero-window, stalled-upload, watch-flood; default 64).
    #[arg(long)]
    pub streams: Option<usize>,
    /// Connections and calls the attack opens at most, renewals included.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_attempts: u64,
    /// Interval between two trickled bytes (connection-flood, stalled-upload).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub trickle: Duration,
    /// The staff console's plaintext URL, loopback only (console-login), e.g.
    /// http://127.0.0.1:8081.
    #[arg(long)]
    pub console: Option<String>,
    /// The server's process id: its memory (VmRSS) and open descriptors are sampled.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// After the run, look for every key of past days of every upload the server acknowledged
    /// in its published confirm store, waiting this long at most for the publisher (the
    /// "nothing acknowledged lost" goal). Needs a server that publishes at once
    /// (`--release-delay 0s`) and often (`--publish-interval` well below the wait).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub check_acknowledged: Option<Duration>,
    /// Goal: the server's resident memory during the attack, at most, MiB.
    #[arg(long, default_value_t = ATTACK_GOALS.max_rss_mib)]
    pub max_rss_mib: u64,
    /// Goal: the server's open descriptors during the attack, at most.
    #[arg(long, default_value_t = ATTACK_GOALS.max_fds)]
    pub max_fds: u64,
    /// Exits 2 when a goal is missed (the report carries the verdict either way).
    #[arg(long)]
    pub check_goals: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Summary)]
    pub format: Format,
    /// Writes the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

impl AttackArgs {
    /// Checks the flags and turns them into attack options; the error is a usage message.
    pub fn to_options(&self) -> Result<AttackOptions, String> {
        // No --allow-remote: an attack is for this machine only, which `validate` below checks
        // with a message that does not offer the flag.
        let target = parse_target(&self.target, true, self.ca_cert.as_deref())?;
        let token = parse_token(self.token.as_deref())?;
        let mut mix = RunOptions::new(target.clone(), Scenario::Mix);
        mix.token = token.clone();
        mix.region = self.region.clone();
        mix.duration = self.phase;
        mix.speedup = self.speedup;
        mix.concurrency = self.concurrency;
        mix.connections = self.connections;
        mix.timeout = self.timeout;
        mix.warmup = self.warmup;
        mix.progress = false;
        let plan = AttackPlan {
            attack: self.attack,
            target,
            attackers: self
                .attackers
                .unwrap_or_else(|| self.attack.default_attackers()),
            streams: self
                .streams
                .unwrap_or_else(|| self.attack.default_streams()),
            max_attempts: self.max_attempts,
            trickle: self.trickle,
            region: self.region.clone(),
            token,
            batch_id: None,
            console: self
                .console
                .as_deref()
                .map(|url| {
                    parse_target(url, false, None).map_err(|error| format!("--console: {error}"))
                })
                .transpose()?,
        };
        let options = AttackOptions {
            mix,
            plan,
            settle: self.settle,
            server_pid: self.server_pid,
            check_acknowledged: self.check_acknowledged,
            goals: AttackGoals {
                max_rss_mib: self.max_rss_mib,
                max_fds: self.max_fds,
                ..ATTACK_GOALS
            },
        };
        options.validate()?;
        Ok(options)
    }
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text laid out like ghz's summary.
    Summary,
    /// The report as one JSON object.
    Json,
}

/// Flags of `exposure-loadtest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server's gRPC URL; a non-loopback host needs --allow-remote.
    #[arg(long, default_value = DEFAULT_TARGET)]
    pub target: String,
    /// Allows a target that is not this machine (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,
    /// PEM CA certificate that signed the server's certificate; needed for an https:// target.
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// What to send.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Health-authority bearer token, required by upload and province (never printed).
    #[arg(long, env = "EXPOSURE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Region the requests name.
    #[arg(long, default_value = runner::DEFAULT_REGION)]
    pub region: String,
    /// Wall time of the run at most, warmup included (e.g. 10s, 2m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Measured requests at most, after the warmup.
    #[arg(long, default_value_t = runner::DEFAULT_REQUESTS)]
    pub requests: u64,
    /// Requests in flight at most (workers).
    #[arg(long, short = 'c', default_value_t = runner::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = runner::DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Fixed rate in requests per second, latency corrected for coordinated omission; without it,
    /// a closed loop.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Requests sent first and left out of the statistics.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Upload codes the upload-code scenario issues before it starts (default: one per request,
    /// --warmup + --requests); uploads beyond them are skipped.
    #[arg(long)]
    pub codes: Option<u64>,
    /// Multiplies every rate of the province scenario.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Per-request timeout (e.g. 20s).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Summary)]
    pub format: Format,
    /// Writes the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Writes an SVG chart of latency and throughput over time to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Writes every upload the server acknowledged (its answer time, its keys of past days)
    /// to this file, one a line, for `readback` against another server (a failover drill).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// SLO: the 99th-percentile latency must not exceed this many milliseconds (exit 2 if it does).
    #[arg(long)]
    pub p99_max_ms: Option<f64>,
    /// SLO: the measured requests per second must reach this (exit 2 if not).
    #[arg(long)]
    pub min_rps: Option<f64>,
    /// SLO: the fraction of failed requests, 0 to 1, must not exceed this (exit 2 if it does).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
}

/// Flags of `exposure-loadtest demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The server's gRPC URL; a non-loopback host needs --allow-remote.
    #[arg(long, default_value = DEFAULT_TARGET)]
    pub target: String,
    /// Allows a target that is not this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// PEM CA certificate that signed the server's certificate; needed for an https:// target.
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Health-authority bearer token (never printed).
    #[arg(long, env = "EXPOSURE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Region of the case.
    #[arg(long, default_value = runner::DEFAULT_REGION)]
    pub region: String,
    /// How long to wait for the publisher to publish the case (e.g. 90s, 2h).
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// The server's HTTP listener (e.g. http://127.0.0.1:8080): also show the case's
    /// Google/Apple export file from `v1/regions/{region}/gaen/index.txt`.
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
}

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything went as asked.
    Success,
    /// An SLO flag was breached.
    SloBreached,
    /// The flags were wrong; the reason was printed on stderr.
    Usage,
}

impl Cli {
    /// Parses a command line (the program name first), as the binary does; for tests and
    /// embedding without depending on clap.
    pub fn parse_from_args<I, T>(arguments: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Cli as Parser>::try_parse_from(arguments)
    }
}

impl ExitStatus {
    /// Returns the process exit code (see `--help`).
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::SloBreached => 2,
            ExitStatus::Usage => 64,
        }
    }
}

impl RunArgs {
    /// Checks the flags and turns them into run options; the error is a usage message.
    pub fn to_options(&self) -> Result<RunOptions, String> {
        let target = parse_target(&self.target, self.allow_remote, self.ca_cert.as_deref())?;
        let token = parse_token(self.token.as_deref())?;
        let options = RunOptions {
            target,
            scenario: self.scenario,
            token,
            region: self.region.clone(),
            duration: self.duration,
            requests: self.requests,
            concurrency: self.concurrency,
            connections: self.connections,
            rps: self.rps,
            warmup: self.warmup,
            speedup: self.speedup,
            timeout: self.timeout,
            progress: Progress::wanted(),
            codes: self.codes,
        };
        options.validate()?;
        if let Some(rate) = self.max_error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err("--max-error-rate is a fraction between 0 and 1 (0.01 for 1 %)".to_owned());
        }
        Ok(options)
    }

    /// Returns the SLO the flags set.
    pub fn slo(&self) -> Slo {
        Slo {
            p99_max_ms: self.p99_max_ms,
            min_rps: self.min_rps,
            max_error_rate: self.max_error_rate,
        }
    }
}

/// Parses `--token`, when given.
fn parse_token(token: Option<&str>) -> Result<Option<BearerToken>, String> {
    token
        .map(BearerToken::new)
        .transpose()
        .map_err(|error| format!("--token: {error}"))
}

/// Parses `--target`, and reads `--ca-cert` for an https target.
fn parse_target(
    text: &str,
    allow_remote: bool,
    ca_cert: Option<&std::path::Path>,
) -> Result<Target, String> {
    Target::parse_with_ca_file(text, allow_remote, ca_cert).map_err(|error| error.to_string())
}

impl DemoArgs {
    /// Checks the flags and turns them into demo options; the error is a usage message.
    pub fn to_options(&self) -> Result<DemoOptions, String> {
        let target = parse_target(&self.target, self.allow_remote, self.ca_cert.as_deref())?;
        let token = BearerToken::new(&self.token).map_err(|error| format!("--token: {error}"))?;
        let http = self
            .http
            .as_deref()
            .map(|url| {
                Target::parse(url, self.allow_remote).map_err(|error| format!("--http: {error}"))
            })
            .transpose()?;
        Ok(DemoOptions::new(target, token, &self.region, self.wait).with_http(http))
    }
}

/// Carries out a parsed command line. Usage errors are printed and returned as
/// [`ExitStatus::Usage`]; failures that stop a run are returned as errors (exit status 1).
pub async fn execute(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => execute_run(&args).await,
        Command::Attack(args) => execute_attack(&args).await,
        Command::Demo(args) => {
            let options = match args.to_options() {
                Ok(options) => options,
                Err(message) => return Ok(usage_error(&message)),
            };
            let mut stdout = std::io::stdout();
            demo::run_demo(&options, &mut stdout).await?;
            Ok(ExitStatus::Success)
        }
        Command::CodeGuessing(args) => crate::code_guessing::execute(&args).await,
        Command::Readback(args) => execute_readback(&args).await,
    }
}

async fn execute_readback(args: &ReadbackArgs) -> anyhow::Result<ExitStatus> {
    let target = match parse_target(&args.target, false, args.ca_cert.as_deref()) {
        Ok(target) => target,
        Err(message) => return Ok(usage_error(&message)),
    };
    let uploads = crate::scenario::readback::read_ledger(&args.ledger)?;
    let connections = crate::client::Connections::open(&target, 1).await?;
    let mut clients = crate::client::Clients::new(connections.channel(0));
    let prefix_bits =
        crate::scenario::catalog::Catalog::load(&mut clients.distribution, &args.region)
            .await?
            .confirm_prefix_bits();
    let found = crate::scenario::readback::check_uploads(
        &mut clients,
        &args.region,
        prefix_bits,
        &uploads,
        args.acknowledged_by,
        args.wait,
    )
    .await?;
    let rendered = render(Format::Json, &found, |_| String::new())?;
    write_report(args.output.as_deref(), &rendered)?;
    Ok(ExitStatus::Success)
}

async fn execute_run(args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let options = match args.to_options() {
        Ok(options) => options,
        Err(message) => return Ok(usage_error(&message)),
    };
    let prepared = runner::PreparedRun::prepare(&options).await?;
    let ledger = prepared.ledger();
    let mut report = prepared.run().await?;
    if let Some(path) = &args.ledger {
        ledger.write(path)?;
    }
    let verdict = args.slo().judge(&report);
    report.slo = verdict.as_ref().map(|verdict| SloReport {
        passed: verdict.passed,
        verdict: verdict.line.clone(),
    });

    let rendered = render(args.format, &report, crate::summary::render)?;
    write_report(args.output.as_deref(), &rendered)?;
    if let Some(path) = &args.plot {
        crate::plot::write_svg(&report, path)?;
    }
    match verdict {
        Some(verdict) => {
            eprintln!("{}", verdict.line);
            Ok(if verdict.passed {
                ExitStatus::Success
            } else {
                ExitStatus::SloBreached
            })
        }
        None => Ok(ExitStatus::Success),
    }
}

async fn execute_attack(args: &AttackArgs) -> anyhow::Result<ExitStatus> {
    let options = match args.to_options() {
        Ok(options) => options,
        Err(message) => return Ok(usage_error(&message)),
    };
    let report = runner::run_attack(&options).await?;
    let rendered = render(args.format, &report, crate::summary::render_attack)?;
    write_report(args.output.as_deref(), &rendered)?;
    eprintln!("{}", report.verdict.line);
    Ok(if args.check_goals && !report.verdict.passed {
        ExitStatus::SloBreached
    } else {
        ExitStatus::Success
    })
}

/// Renders `report` as text with `summary`, or as JSON.
fn render<R: serde::Serialize>(
    format: Format,
    report: &R,
    summary: fn(&R) -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Summary => summary(report),
        Format::Json => {
            let mut json =
                serde_json::to_string_pretty(report).context("cannot encode the report")?;
            json.push('\n');
            json
        }
    })
}

/// Writes a rendered report to `output`, or to stdout.
fn write_report(output: Option<&std::path::Path>, rendered: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("cannot write the report to {}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(rendered.as_bytes())
                .context("cannot write the report")?;
            stdout.flush().context("cannot write the report")
        }
    }
}

fn usage_error(message: &str) -> ExitStatus {
    eprintln!("error: {message}");
    ExitStatus::Usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("exposure-loadtest").chain(arguments.iter().copied()))
    }

    fn run_args(arguments: &[&str]) -> RunArgs {
        match parse(arguments).expect("valid command line").command {
            Command::Run(args) => args,
            _ => panic!("expected run"),
        }
    }

    #[test]
    fn code_guessing_takes_its_bounds_and_needs_a_token() {
        let parsed = parse(&[
            "code-guessing",
            "--token",
            "t0k3n-for-the-authority",
            "--networks",
            "50",
            "--duration",
            "3s",
        ])
        .expect("valid command line");
        let Command::CodeGuessing(args) = parsed.command else {
            panic!("expected code-guessing")
        };
        assert_eq!(args.networks, 50);
        assert_eq!(args.duration, Duration::from_secs(3));
        assert_eq!(args.uploads, 100);
        assert!((args.min_success_percent - 99.9).abs() < 1e-9);
        if std::env::var_os("EXPOSURE_TOKEN").is_none() {
            assert!(parse(&["code-guessing"]).is_err(), "--token is required");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_follow_the_issue() {
        let args = run_args(&["run", "--scenario", "poll"]);
        assert_eq!(args.target, "http://127.0.0.1:50051");
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.requests, 1_000_000);
        assert_eq!(args.format, Format::Summary);
        assert_eq!(args.region, "VN-TB");
        let options = args.to_options().expect("valid");
        assert_eq!(options.scenario, Scenario::Poll);
    }

    #[test]
    fn every_flag_of_the_issue_parses() {
        let args = run_args(&[
            "run",
            "--target",
            "http://localhost:9000",
            "--scenario",
            "province",
            "--token",
            "T",
            "--duration",
            "2m",
            "--requests",
            "500",
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--warmup",
            "10",
            "--speedup",
            "3",
            "--format",
            "json",
            "--output",
            "out.json",
            "--plot",
            "plot.svg",
            "--p99-max-ms",
            "10",
            "--min-rps",
            "100",
            "--max-error-rate",
            "0.01",
            "--timeout",
            "5s",
        ]);
        assert_eq!(args.duration, Duration::from_secs(120));
        assert_eq!(
            args.slo(),
            Slo {
                p99_max_ms: Some(10.0),
                min_rps: Some(100.0),
                max_error_rate: Some(0.01)
            }
        );
        let options = args.to_options().expect("valid");
        assert_eq!(
            (
                options.concurrency,
                options.connections,
                options.warmup,
                options.requests
            ),
            (8, 2, 10, 500)
        );
        assert_eq!(options.speedup, 3.0);
        let fixed = run_args(&["run", "--scenario", "noop", "--rps", "250"])
            .to_options()
            .expect("valid");
        assert_eq!(fixed.rps, Some(250.0));
    }

    fn attack_args(arguments: &[&str]) -> AttackArgs {
        match parse(arguments).expect("valid command line").command {
            Command::Attack(args) => args,
            _ => panic!("expected attack"),
        }
    }

    #[test]
    fn attack_flags_parse_and_targets_stay_on_this_machine() {
        let args = attack_args(&[
            "attack",
            "--attack",
            "zero-window",
            "--token",
            "T",
            "--phase",
            "3s",
            "--server-pid",
            "42",
            "--attackers",
            "5",
        ]);
        let options = args.to_options().expect("valid");
        assert_eq!(options.mix.scenario, Scenario::Mix);
        assert_eq!(options.mix.duration, Duration::from_secs(3));
        assert_eq!(options.mix.warmup, 20, "the default");
        assert_eq!(options.plan.attack, Attack::ZeroWindow);
        assert_eq!(options.plan.attackers, 5);
        assert_eq!(options.plan.streams, 64, "the default");
        assert_eq!(options.server_pid, Some(42));
        assert_eq!(options.goals.min_success_rate, 0.999);
        let remote = attack_args(&[
            "attack",
            "--attack",
            "watch-flood",
            "--token",
            "T",
            "--target",
            "http://203.0.113.7:50051",
        ]);
        assert!(
            remote
                .to_options()
                .expect_err("remote")
                .contains("non-loopback"),
            "an attack never leaves this machine"
        );
        assert!(
            parse(&[
                "attack",
                "--attack",
                "watch-flood",
                "--target",
                "http://203.0.113.7:50051",
                "--allow-remote"
            ])
            .is_err(),
            "attack has no --allow-remote"
        );
        assert!(parse(&["attack", "--attack", "bogus"]).is_err());
    }

    #[test]
    fn usage_mistakes_are_caught() {
        assert!(parse(&["run"]).is_err(), "--scenario is required");
        assert!(parse(&["run", "--scenario", "bogus"]).is_err());
        let remote = run_args(&[
            "run",
            "--scenario",
            "poll",
            "--target",
            "http://203.0.113.7:50051",
        ]);
        assert!(
            remote
                .to_options()
                .expect_err("invalid")
                .contains("--allow-remote")
        );
        let allowed = run_args(&[
            "run",
            "--scenario",
            "poll",
            "--target",
            "http://203.0.113.7:50051",
            "--allow-remote",
        ]);
        assert!(allowed.to_options().is_ok());
        let upload = run_args(&["run", "--scenario", "upload"]);
        if std::env::var_os("EXPOSURE_TOKEN").is_none() {
            assert!(
                upload
                    .to_options()
                    .expect_err("invalid")
                    .contains("--token")
            );
        }
        let error_rate = run_args(&["run", "--scenario", "poll", "--max-error-rate", "5"]);
        assert!(
            error_rate
                .to_options()
                .expect_err("invalid")
                .contains("fraction")
        );
        assert!(
            parse(&["demo"]).is_err() || std::env::var_os("EXPOSURE_TOKEN").is_some(),
            "demo needs --token"
        );
    }
}

//! Runs one scenario against the target: opens the channels, prepares the workload, starts
//! `--concurrency` workers that take tickets from the schedule until it runs dry, and returns the
//! report.
//!
//! `run_attack` runs the legitimate `mix` twice, alone and beside one of the attacks of
//! `scenario::attack`, and compares the two (issue 18).
//!
//! A run always ends by itself: the schedule stops at `--warmup + --requests` tickets or at
//! `--duration`, whichever comes first, and every request is bounded by `--timeout`, so a run
//! lasts at most `--duration + --timeout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;
use tonic::Status;

use crate::client::{BearerToken, Clients, Connections};
use crate::http::HttpClient;
use crate::progress::Progress;
use crate::recorder::{Recorder, Sample};
use crate::report::{AttackGoals, AttackReport, AttackVerdict, Phase, Report, Settings};
use crate::scenario::attack::{self, Attack, AttackPlan};
use crate::scenario::province::THAI_BINH;
use crate::scenario::readback;
use crate::scenario::{CallResult, Outcome, Scenario, Workload};
use crate::schedule::{Bounds, Pace, Schedule};
use crate::server_usage::{Sampler, ServerProcess, ServerUsage};
use crate::target::Target;

/// Region used when `--region` is not given: Thái Bình, the province of DESIGN.md section 9.
pub const DEFAULT_REGION: &str = "VN-TB";
/// Wall time of a run when `--duration` is not given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Measured requests of a run at most when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 1_000_000;
/// Requests in flight when `--concurrency` is not given (ghz's default).
pub const DEFAULT_CONCURRENCY: usize = 50;
/// HTTP/2 channels when `--connections` is not given (ghz's default).
pub const DEFAULT_CONNECTIONS: usize = 1;
/// Per-request timeout when `--timeout` is not given (ghz's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Codes an `upload-code` run issues at most without `--codes`: issuing is not measured, and a
/// run with the default request bound (1,000,000) should not spend minutes on it unasked.
pub const MAX_IMPLICIT_CODES: u64 = 100_000;

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The server to drive.
    pub target: Target,
    /// What to send.
    pub scenario: Scenario,
    /// The authority token, required by `upload` and `province`.
    pub token: Option<BearerToken>,
    /// The region requests name.
    pub region: String,
    /// Wall time of the whole run at most, warmup included.
    pub duration: Duration,
    /// Measured requests at most (after the warmup).
    pub requests: u64,
    /// Workers, that is requests in flight at most.
    pub concurrency: usize,
    /// HTTP/2 channels the workers share.
    pub connections: usize,
    /// Fixed rate in requests per second; `None` runs a closed loop. Not for `province`.
    pub rps: Option<f64>,
    /// Requests sent first and left out of the statistics.
    pub warmup: u64,
    /// Province load multiplier; only `province` accepts a value other than 1.
    pub speedup: f64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Shows a progress bar (the CLI sets it when stderr is a terminal).
    pub progress: bool,
    /// Upload codes an `upload-code` run issues first; `None` means one per request
    /// (`warmup + requests`).
    pub codes: Option<u64>,
}

impl RunOptions {
    /// Returns the defaults for `scenario` against `target`.
    pub fn new(target: Target, scenario: Scenario) -> Self {
        RunOptions {
            target,
            scenario,
            token: None,
            region: DEFAULT_REGION.to_owned(),
            duration: DEFAULT_DURATION,
            requests: DEFAULT_REQUESTS,
            concurrency: DEFAULT_CONCURRENCY,
            connections: DEFAULT_CONNECTIONS,
            rps: None,
            warmup: 0,
            speedup: 1.0,
            timeout: DEFAULT_TIMEOUT,
            progress: false,
            codes: None,
        }
    }

    /// Returns the upload codes the run issues before it starts (0 unless `upload-code` or
    /// `mix`).
    pub fn codes_to_issue(&self) -> u64 {
        match self.scenario {
            Scenario::UploadCode => self
                .codes
                .unwrap_or_else(|| self.warmup.saturating_add(self.requests)),
            Scenario::Mix => {
                crate::scenario::mix::codes_needed(self.speedup, self.duration.as_secs_f64())
            }
            _ => 0,
        }
    }

    /// Checks that the options make sense together; the message says which flag is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.scenario.needs_token() && self.token.is_none() {
            return Err(format!(
                "the {} scenario uploads keys: --token is required",
                self.scenario
            ));
        }
        if self.concurrency == 0 || self.connections == 0 {
            return Err("--concurrency and --connections must be at least 1".to_owned());
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            return Err("--duration and --timeout must be positive".to_owned());
        }
        if let Some(rate) = self.rps {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rps must be a positive number".to_owned());
            }
            if self.scenario.is_mixed() {
                return Err(format!(
                    "the {} scenario sets its own rates: use --speedup instead of --rps",
                    self.scenario
                ));
            }
        }
        match (self.scenario, self.codes) {
            (Scenario::UploadCode, Some(0)) => {
                return Err("--codes must be at least 1".to_owned());
            }
            (Scenario::UploadCode, None) if self.codes_to_issue() > MAX_IMPLICIT_CODES => {
                return Err(format!(
                    "the upload-code scenario issues one code per request before it starts: bound it with --requests (at most {MAX_IMPLICIT_CODES} with --warmup) or give --codes"
                ));
            }
            (Scenario::UploadCode, _) | (_, None) => {}
            (_, Some(_)) => {
                return Err("--codes only applies to the upload-code scenario".to_owned());
            }
        }
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            return Err("--speedup must be a positive number".to_owned());
        }
        if self.speedup != 1.0 && !self.scenario.is_mixed() {
            return Err("--speedup only applies to the province and mix scenarios".to_owned());
        }
        Ok(())
    }

    /// Returns how requests are paced.
    pub fn pace(&self) -> Pace {
        match (self.scenario.rpc(), self.rps) {
            (Some(kind), None) => Pace::ClosedLoop { kind },
            (Some(kind), Some(rate)) => Pace::FixedRate {
                streams: vec![(kind, rate)],
            },
            (None, _) if self.scenario == Scenario::Mix => Pace::FixedRate {
                streams: crate::scenario::mix::rates(self.speedup),
            },
            (None, _) => Pace::FixedRate {
                streams: THAI_BINH.rates(self.speedup),
            },
        }
    }

    /// Returns the settings the report echoes (never the token).
    pub fn settings(&self) -> Settings {
        Settings {
            region: self.region.clone(),
            concurrency: self.concurrency,
            connections: self.connections,
            rate_rps: self
                .pace()
                .total_rate()
                .map(|rate| crate::report::round(rate, 4)),
            speedup: self.scenario.is_mixed().then_some(self.speedup),
            requests: self.requests,
            max_duration_s: self.duration.as_secs_f64(),
            warmup: self.warmup,
            timeout_s: self.timeout.as_secs_f64(),
        }
    }
}

/// Runs `options.scenario` against the target and returns what was measured. Fails only when
/// the run cannot start (bad options, unreachable target, nothing to download); failed requests
/// are part of the report, not errors.
pub async fn run_scenario(options: &RunOptions) -> anyhow::Result<Report> {
    PreparedRun::prepare(options).await?.run().await
}

/// A run whose channels are open and whose workload is ready (listing loaded, codes issued):
/// what an attack run prepares before the attack starts, so that only the measured requests
/// meet it.
pub struct PreparedRun {
    options: RunOptions,
    connections: Connections,
    http: Option<HttpClient>,
    workload: Workload,
}

impl PreparedRun {
    /// Opens the channels and prepares the workload of `options`.
    pub async fn prepare(options: &RunOptions) -> anyhow::Result<Self> {
        options.validate().map_err(anyhow::Error::msg)?;
        let (connections, http) = if options.scenario.is_http() {
            (
                Connections::lazy(&options.target, options.connections)?,
                Some(HttpClient::new(&options.target)),
            )
        } else {
            (
                Connections::open(&options.target, options.connections).await?,
                None,
            )
        };
        let arrivals = (options.scenario == Scenario::Mix)
            .then(|| {
                options
                    .target
                    .endpoint()
                    .map(|endpoint| endpoint.connect_timeout(crate::client::CONNECT_TIMEOUT))
            })
            .transpose()
            .context("TLS settings of the target")?;
        let mut setup_clients = Clients::new(connections.channel(0)).with_http(http.clone());
        let workload = Workload::prepare(
            options.scenario,
            &options.region,
            options.token.clone(),
            options.codes_to_issue(),
            arrivals,
            &mut setup_clients,
        )
        .await?;
        Ok(PreparedRun {
            options: options.clone(),
            connections,
            http,
            workload,
        })
    }

    /// Returns the ledger of the uploads the server acknowledges in this run.
    pub fn ledger(&self) -> Arc<readback::Ledger> {
        self.workload.ledger()
    }

    /// Sends the run's requests and returns the report; the clock starts here.
    pub async fn run(self) -> anyhow::Result<Report> {
        let PreparedRun {
            options,
            connections,
            http,
            workload,
        } = self;
        let bounds = Bounds {
            warmup: options.warmup,
            requests: options.requests,
            duration: options.duration,
        };
        let started = Instant::now();
        let schedule = Arc::new(Schedule::new(options.pace(), bounds, started));
        let recorder = Arc::new(Mutex::new(Recorder::new(started, options.duration)));
        let answered = Arc::new(AtomicU64::new(0));
        let progress = Progress::start(
            options.progress,
            started,
            options.duration,
            Arc::clone(&answered),
        );

        let mut workers = JoinSet::new();
        for index in 0..options.concurrency {
            let worker = Worker {
                schedule: Arc::clone(&schedule),
                workload: workload.clone(),
                clients: Clients::new(connections.channel(index)).with_http(http.clone()),
                recorder: Arc::clone(&recorder),
                answered: Arc::clone(&answered),
                timeout: options.timeout,
            };
            workers.spawn(worker.run());
        }
        while let Some(joined) = workers.join_next().await {
            joined.context("a load-test worker failed")?;
        }
        progress.finish();

        let recorder = recorder
            .lock()
            .map_err(|_| anyhow::anyhow!("the recorder was poisoned by a failed worker"))?;
        Ok(recorder.report(
            options.scenario.name(),
            &options.target.to_string(),
            options.settings(),
            options.scenario.is_mixed(),
        ))
    }

    /// Returns what the run knows about published batches (after `prepare`, the listing).
    pub fn catalog(&self) -> &crate::scenario::catalog::Catalog {
        self.workload.catalog()
    }
}

/// How long after an attack stops the server's figures are read again (`after`).
pub const RECOVERY_WAIT: Duration = Duration::from_secs(1);

/// Everything an attack run needs to know (`exposure-loadtest attack`).
#[derive(Debug, Clone)]
pub struct AttackOptions {
    /// The legitimate traffic: a `mix` run whose `duration` is one phase.
    pub mix: RunOptions,
    /// The attack; `run_attack` fills in the batch `zero-window` asks for.
    pub plan: AttackPlan,
    /// How long the attack runs before the attacked phase starts measuring.
    pub settle: Duration,
    /// The server process whose memory and descriptors are sampled.
    pub server_pid: Option<u32>,
    /// When set, the acknowledged uploads of both phases are looked for in the published
    /// confirm store afterwards, for this long at most (`scenario::readback`).
    pub check_acknowledged: Option<Duration>,
    /// What the verdict judges against.
    pub goals: AttackGoals,
}

impl AttackOptions {
    /// Checks the options; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.mix.scenario != Scenario::Mix {
            return Err("an attack run measures the mix scenario beside it".to_owned());
        }
        self.mix.validate()?;
        // Attacks are for this machine only, whatever the target parser was told.
        for target in [&self.mix.target, &self.plan.target]
            .into_iter()
            .chain(self.plan.console.as_ref())
        {
            if !crate::target::is_loopback_host(target.host()) {
                return Err(format!(
                    "refusing to attack non-loopback host {:?}: attack runs are for this machine only",
                    target.host()
                ));
            }
        }
        if self.plan.target != self.mix.target {
            return Err("the attack and the mix must aim at the same target".to_owned());
        }
        let mut plan = self.plan.clone();
        plan.batch_id.get_or_insert_with(String::new);
        plan.validate()
    }
}

/// Runs the legitimate mix alone for one phase, then again beside the attack (started
/// `settle` before the phase), samples the server's memory and descriptors during both when
/// `server_pid` is given, and returns both phases, what the attack did, and the verdict.
/// Bounded: about `2 × (duration + timeout) + settle` plus a few seconds to stop the attack.
pub async fn run_attack(options: &AttackOptions) -> anyhow::Result<AttackReport> {
    options.validate().map_err(anyhow::Error::msg)?;
    let server = options.server_pid.map(ServerProcess::open).transpose()?;

    let quiet_run = PreparedRun::prepare(&options.mix).await?;
    let quiet_ledger = quiet_run.workload.ledger();
    let sampler = server.as_ref().map(ServerProcess::sample);
    let quiet_report = quiet_run.run().await?;
    let quiet = Phase::new(quiet_report, finish(sampler).await);

    let attacked_run = PreparedRun::prepare(&options.mix).await?;
    let attacked_ledger = attacked_run.workload.ledger();
    let mut plan = options.plan.clone();
    if plan.attack == Attack::ZeroWindow && plan.batch_id.is_none() {
        plan.batch_id = attacked_run.catalog().pick_batch();
        if plan.batch_id.is_none() {
            anyhow::bail!(
                "the zero-window attack downloads a published batch and none is published in region {}: upload keys and wait for the publisher",
                options.mix.region
            );
        }
    }
    let hard_limit = options.settle + options.mix.duration + options.mix.timeout * 2;
    let sampler = server.as_ref().map(ServerProcess::sample);
    let running = attack::launch(plan, hard_limit)?;
    tokio::time::sleep(options.settle).await;
    let attacked_report = attacked_run.run().await;
    let attack_stats = running.stop().await;
    let attacked = Phase::new(attacked_report?, finish(sampler).await);

    let after = match &server {
        Some(server) => {
            tokio::time::sleep(RECOVERY_WAIT).await;
            server.read().ok()
        }
        None => None,
    };
    let acknowledged = match options.check_acknowledged {
        Some(wait) => {
            let connections = Connections::open(&options.mix.target, 1).await?;
            let mut clients = Clients::new(connections.channel(0));
            let prefix_bits = crate::scenario::catalog::Catalog::load(
                &mut clients.distribution,
                &options.mix.region,
            )
            .await?
            .confirm_prefix_bits();
            Some(
                readback::check(
                    &mut clients,
                    &options.mix.region,
                    prefix_bits,
                    &[&quiet_ledger, &attacked_ledger],
                    wait,
                )
                .await?,
            )
        }
        None => None,
    };
    let verdict = AttackVerdict::judge(options.goals, &quiet, &attacked, acknowledged.as_ref());
    Ok(AttackReport {
        attack: options.plan.attack.name().to_owned(),
        target: options.mix.target.to_string(),
        settle_s: options.settle.as_secs_f64(),
        quiet,
        attacked,
        attack_stats,
        after,
        acknowledged,
        verdict,
    })
}

async fn finish(sampler: Option<Sampler>) -> Option<ServerUsage> {
    match sampler {
        Some(sampler) => sampler.finish().await,
        None => None,
    }
}

/// One of the `--concurrency` request loops of a run.
struct Worker {
    schedule: Arc<Schedule>,
    workload: Workload,
    clients: Clients,
    recorder: Arc<Mutex<Recorder>>,
    answered: Arc<AtomicU64>,
    timeout: Duration,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let taken = Instant::now();
            let Some(ticket) = self.schedule.next(taken) else {
                break;
            };
            // A request taken before its due time waits for it and counts from when it is sent
            // (timer slack is ours, not the server's); one taken late, because every worker was
            // busy, counts from its due time: the coordinated-omission correction.
            let late_since = match ticket.due {
                Some(due) if due > taken => {
                    tokio::time::sleep_until(due.into()).await;
                    None
                }
                other => other,
            };
            let sent = Instant::now();
            let outcome = match tokio::time::timeout(
                self.timeout,
                self.workload.call(ticket.kind, &mut self.clients),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Called(CallResult::failed(&Status::deadline_exceeded(
                    "no answer within --timeout",
                ))),
            };
            let answered = Instant::now();
            self.answered.fetch_add(1, Ordering::Relaxed);
            let sample = Sample {
                kind: ticket.kind,
                measured: ticket.measured,
                latency_from: late_since.unwrap_or(sent),
                sent,
                answered,
                outcome: &outcome,
            };
            match self.recorder.lock() {
                Ok(mut recorder) => recorder.record(sample),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::RpcKind;
    use crate::target::DEFAULT_TARGET;

    fn options(scenario: Scenario) -> RunOptions {
        RunOptions::new(
            Target::parse(DEFAULT_TARGET, false).expect("target"),
            scenario,
        )
    }

    #[test]
    fn defaults_are_bounded_and_valid() {
        let defaults = options(Scenario::Poll);
        assert_eq!(defaults.duration, Duration::from_secs(10));
        assert_eq!(defaults.requests, 1_000_000);
        assert_eq!(defaults.region, "VN-TB");
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(
            defaults.pace(),
            Pace::ClosedLoop {
                kind: RpcKind::ListBatches
            }
        );
    }

    #[test]
    fn uploading_scenarios_need_a_token() {
        assert!(
            options(Scenario::Upload)
                .validate()
                .expect_err("invalid")
                .contains("--token")
        );
        assert!(
            options(Scenario::Province)
                .validate()
                .expect_err("invalid")
                .contains("--token")
        );
        let mut with_token = options(Scenario::Upload);
        with_token.token = Some(BearerToken::new("t").expect("token"));
        assert_eq!(with_token.validate(), Ok(()));
    }

    #[test]
    fn rate_and_speedup_flags_are_checked() {
        let mut fixed = options(Scenario::Noop);
        fixed.rps = Some(500.0);
        assert_eq!(
            fixed.pace(),
            Pace::FixedRate {
                streams: vec![(RpcKind::HealthCheck, 500.0)]
            }
        );
        assert_eq!(fixed.settings().rate_rps, Some(500.0));
        fixed.rps = Some(0.0);
        assert!(fixed.validate().is_err());
        let mut sped = options(Scenario::Poll);
        sped.speedup = 2.0;
        assert!(sped.validate().expect_err("invalid").contains("--speedup"));
        let mut province = options(Scenario::Province);
        province.token = Some(BearerToken::new("t").expect("token"));
        province.speedup = 2.0;
        assert_eq!(province.validate(), Ok(()));
        assert!(
            (province.pace().total_rate().expect("fixed") - 2.0 * THAI_BINH.total_rate(1.0)).abs()
                < 1e-9
        );
        province.rps = Some(100.0);
        assert!(
            province
                .validate()
                .expect_err("invalid")
                .contains("--speedup")
        );
    }

    #[test]
    fn upload_code_runs_issue_one_code_per_request_unless_told() {
        let mut codes = options(Scenario::UploadCode);
        codes.token = Some(BearerToken::new("t").expect("token"));
        assert!(
            codes
                .validate()
                .expect_err("1,000,000 codes")
                .contains("--requests"),
            "the default bound is too many codes to issue unasked"
        );
        codes.requests = 500;
        codes.warmup = 20;
        assert_eq!(codes.validate(), Ok(()));
        assert_eq!(codes.codes_to_issue(), 520);
        codes.codes = Some(50);
        assert_eq!(codes.codes_to_issue(), 50);
        codes.codes = Some(0);
        assert!(codes.validate().is_err());
        let mut poll = options(Scenario::Poll);
        assert_eq!(poll.codes_to_issue(), 0);
        poll.codes = Some(5);
        assert!(
            poll.validate()
                .expect_err("not upload-code")
                .contains("--codes")
        );
        assert_eq!(
            options(Scenario::Decoy).validate(),
            Ok(()),
            "decoys need no token"
        );
    }

    #[test]
    fn settings_never_hold_the_token() {
        let mut upload = options(Scenario::Upload);
        upload.token = Some(BearerToken::new("very-secret").expect("token"));
        let json = serde_json::to_string(&upload.settings()).expect("json");
        assert!(!json.contains("very-secret"));
        assert!(!format!("{upload:?}").contains("very-secret"));
    }

    #[tokio::test]
    async fn unreachable_target_fails_before_measuring() {
        // Port 1 on loopback: nothing listens there.
        let target = Target::parse("http://127.0.0.1:1", false).expect("target");
        let error = run_scenario(&RunOptions::new(target, Scenario::Noop))
            .await
            .expect_err("no server");
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    }
}

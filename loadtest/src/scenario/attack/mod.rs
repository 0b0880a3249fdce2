//! The attacks of issue 18, each run beside the legitimate `mix` by `runner::run_attack`: what
//! one client can do to the server with a few connections, and what the server must survive.
//!
//! | attack | what it sends | the hole it probes |
//! |---|---|---|
//! | `zero-window` | raw HTTP/2 connections announcing a stream window of 0, each with `GetBatch` calls it never reads | phone-class permits held for as long as the stream lives |
//! | `connection-flood` | many TCP connections, half silent, half trickling the HTTP/2 preface (or a TLS `ClientHello`) a byte at a time, renewed when the server closes them | descriptors and handshake slots |
//! | `stalled-upload` | raw HTTP/2 upload calls (no credential, a wrong token, or a decoy) whose body announces 60,000 bytes and trickles one a second | upload-class permits held by bodies that never finish |
//! | `watch-flood` | many `grpc.health.v1.Health/Watch` streams on one connection | health-class permits |
//! | `odd-upload` | uploads of wrong shapes: too many keys, 60,000-byte keys, messages over the size limit, bad fields (bearer token when given, and decoys) | validation cost, and anything accepted that should not be |
//! | `console-login` | sign-in forms posted to the staff console (`--console`) as fast as it answers, on keep-alive connections | Argon2id's cost: can sign-ins take the cores uploads and polls need (issue 19)? |
//!
//! Code guessing from many client networks (issue 18, hole 4) is its own attack in its own file,
//! added beside these: a variant of [`Attack`], its module here, and its arm in [`launch`].
//!
//! **Bounds.** An attack opens at most `attackers` connections (workers for `odd-upload`) at
//! once, at most `streams` streams on each, and at most `max_attempts` connections and calls in
//! all (renewals included); every task ends at the stop signal or at the hard deadline given to
//! [`launch`], whichever comes first, and [`Running::stop`] aborts any task still alive a few
//! seconds after. Targets are loopback only: `runner::run_attack` refuses any other.

mod connection_flood;
mod console_login;
mod odd_upload;
mod raw;
mod stalled_upload;
mod watch_flood;
mod zero_window;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::BearerToken;
use crate::target::Target;

/// How long [`Running::stop`] waits for the attack's tasks to end before aborting them.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The pause before an attacker renews a connection or call the server ended, so a server that
/// refuses at once does not turn the attack into a busy loop (the attempt budget bounds it too).
const RENEW_PAUSE: Duration = Duration::from_millis(10);

/// An attack, chosen with `--attack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Attack {
    /// Raw HTTP/2 connections with a stream window of 0, each holding `GetBatch` calls unread.
    ZeroWindow,
    /// Many TCP connections, half silent, half trickling the preface a byte at a time.
    ConnectionFlood,
    /// Upload calls whose body never finishes (no credential, wrong token, decoy).
    StalledUpload,
    /// Many `Health/Watch` streams on one connection.
    WatchFlood,
    /// Uploads of wrong shapes: too many keys, huge keys, oversized messages, bad fields.
    OddUpload,
    /// Sign-in forms posted to the staff console (`--console`) as fast as it answers.
    ConsoleLogin,
}

impl Attack {
    /// Every attack of issue 18, in the order its benchmark runs them (`console-login`, issue
    /// 19's, runs in the console benchmark).
    pub const ALL: [Attack; 5] = [
        Attack::ZeroWindow,
        Attack::ConnectionFlood,
        Attack::StalledUpload,
        Attack::WatchFlood,
        Attack::OddUpload,
    ];

    /// Returns the name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ZeroWindow => "zero-window",
            Attack::ConnectionFlood => "connection-flood",
            Attack::StalledUpload => "stalled-upload",
            Attack::WatchFlood => "watch-flood",
            Attack::OddUpload => "odd-upload",
            Attack::ConsoleLogin => "console-login",
        }
    }

    /// Returns the attackers (connections; workers for `odd-upload`) when `--attackers` is not
    /// given: the numbers issue 18 names as enough to take the server down.
    pub fn default_attackers(self) -> usize {
        match self {
            // "64 such connections hold all 4,096" phone permits.
            Attack::ZeroWindow => 64,
            // "1,024 silent sockets renewed every 10 s lock out every handshake".
            Attack::ConnectionFlood => 1024,
            // "stalled bodies from 8 connections hold all 512 permits".
            Attack::StalledUpload => 8,
            // "one connection with 64 Watch streams holds all health permits".
            Attack::WatchFlood => 1,
            Attack::OddUpload => 8,
            // Twice the checks a 16-core machine would run at once with one per core.
            Attack::ConsoleLogin => 32,
        }
    }

    /// Returns the streams per connection when `--streams` is not given (1 where the attack
    /// opens no streams).
    pub fn default_streams(self) -> usize {
        match self {
            Attack::ZeroWindow | Attack::StalledUpload | Attack::WatchFlood => 64,
            Attack::ConnectionFlood | Attack::OddUpload | Attack::ConsoleLogin => 1,
        }
    }

    /// Returns true when the attack speaks raw plaintext HTTP/2 (no TLS client of its own).
    pub fn needs_plaintext(self) -> bool {
        matches!(self, Attack::ZeroWindow | Attack::StalledUpload)
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// What an attack sends and how much of it.
#[derive(Debug, Clone)]
pub struct AttackPlan {
    /// Which attack.
    pub attack: Attack,
    /// The server (loopback).
    pub target: Target,
    /// Connections held at once (workers for `odd-upload`).
    pub attackers: usize,
    /// Streams per connection (`zero-window`, `stalled-upload`, `watch-flood`).
    pub streams: usize,
    /// Connections and calls opened at most, renewals included.
    pub max_attempts: u64,
    /// Interval between two trickled bytes (`connection-flood`, `stalled-upload`).
    pub trickle: Duration,
    /// The region uploads name.
    pub region: String,
    /// The authority's token: `odd-upload` sends half its uploads with it (never printed).
    pub token: Option<BearerToken>,
    /// A published batch, which `zero-window` asks for.
    pub batch_id: Option<String>,
    /// The staff console's plaintext URL (loopback), which `console-login` posts to.
    pub console: Option<Target>,
}

impl AttackPlan {
    /// Returns the gRPC endpoint of the target, for the attacks that use a gRPC client.
    pub(crate) fn endpoint(&self) -> anyhow::Result<tonic::transport::Endpoint> {
        Ok(self
            .target
            .endpoint()?
            .connect_timeout(raw::CONNECT_TIMEOUT)
            .local_address(raw::attacker_source(&self.target)))
    }

    /// Checks that the plan can run; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.attackers == 0 || self.streams == 0 {
            return Err("--attackers and --streams must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            return Err("--max-attempts must be at least 1".to_owned());
        }
        if self.trickle.is_zero() {
            return Err("--trickle must be positive".to_owned());
        }
        if self.attack.needs_plaintext() && self.target.is_tls() {
            return Err(format!(
                "the {} attack speaks plaintext HTTP/2: aim it at a plaintext listener (http://)",
                self.attack
            ));
        }
        if self.attack == Attack::ConsoleLogin {
            match &self.console {
                None => {
                    return Err(
                        "the console-login attack posts to the staff console: give --console http://127.0.0.1:PORT".to_owned(),
                    );
                }
                Some(console) if console.is_tls() => {
                    return Err("--console: the console-login attack speaks plaintext HTTP/1.1: aim it at a plaintext console (http://)".to_owned());
                }
                Some(_) => {}
            }
        }
        if self.attack == Attack::ZeroWindow && self.batch_id.is_none() {
            return Err(
                "the zero-window attack downloads a published batch: publish one first".to_owned(),
            );
        }
        Ok(())
    }
}

/// The stop signal every attack task watches, and the hard deadline it never outlives.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    signal: watch::Receiver<bool>,
    deadline: Instant,
}

impl Stop {
    /// Returns true once the attack was told to stop or its deadline passed.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.signal.borrow() || Instant::now() >= self.deadline
    }

    /// Waits until the attack is told to stop or its deadline passes.
    pub(crate) async fn wait(&mut self) {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::select! {
            _ = self.signal.wait_for(|stopped| *stopped) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }

    /// Sleeps `pause`, or less when the attack stops first; returns false when it stopped.
    pub(crate) async fn pause(&mut self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => !self.is_stopped(),
            () = self.wait() => false,
        }
    }
}

/// What an attack did, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// When the attack started (`None` only for a default value).
    started: Option<Instant>,
    attempts: AtomicU64,
    max_attempts: u64,
    connections_opened: AtomicU64,
    connect_failures: AtomicU64,
    connections_closed_by_server: AtomicU64,
    connections_held: AtomicU64,
    connections_held_peak: AtomicU64,
    calls_started: AtomicU64,
    calls_ended_by_server: AtomicU64,
    streams_held: AtomicU64,
    streams_held_peak: AtomicU64,
    messages_received: AtomicU64,
    statuses: Mutex<BTreeMap<String, u64>>,
    /// How long each answered call took, in microseconds (`console-login`), at most
    /// [`MAX_TIMINGS`] of them.
    timings: Mutex<Vec<u64>>,
}

/// Answer times kept for [`AttackStats::answers`]; a bounded attack stays well below it.
const MAX_TIMINGS: usize = 1 << 20;

/// Distinct outcome names kept in [`AttackStats::outcomes`]; more are counted as `(other)`.
const MAX_OUTCOMES: usize = 32;

impl Counters {
    fn new(max_attempts: u64) -> Self {
        Counters {
            started: Some(Instant::now()),
            max_attempts,
            ..Counters::default()
        }
    }

    /// Takes one attempt (a connection or a call) from the budget; false once it is spent.
    pub(crate) fn take_attempt(&self) -> bool {
        self.attempts.fetch_add(1, Ordering::Relaxed) < self.max_attempts
    }

    /// Counts a connection the server accepted; the guard counts it held until dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> Held {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Held::new(
            Arc::clone(self),
            |counters| &counters.connections_held,
            |counters| &counters.connections_held_peak,
        )
    }

    /// Counts a connection that could not be opened.
    pub(crate) fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection the server closed while the attacker held it.
    pub(crate) fn closed_by_server(&self) {
        self.connections_closed_by_server
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call sent; the guard counts its stream held until dropped.
    pub(crate) fn call_started(self: &Arc<Self>) -> Held {
        self.calls_started.fetch_add(1, Ordering::Relaxed);
        Held::new(
            Arc::clone(self),
            |counters| &counters.streams_held,
            |counters| &counters.streams_held_peak,
        )
    }

    /// Counts a call the server ended (an answer, a reset, a closed connection) with `outcome`
    /// (a gRPC code name, `reset`, ...), while the attacker still held it.
    pub(crate) fn ended_by_server(&self, outcome: &str) {
        self.calls_ended_by_server.fetch_add(1, Ordering::Relaxed);
        self.outcome(outcome);
    }

    /// Counts an outcome of a call without counting it as ended by the server (the answers of
    /// `odd-upload`, which end every call).
    pub(crate) fn outcome(&self, outcome: &str) {
        let mut statuses = self
            .statuses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = if statuses.len() < MAX_OUTCOMES || statuses.contains_key(outcome) {
            outcome.to_owned()
        } else {
            "(other)".to_owned()
        };
        *statuses.entry(key).or_default() += 1;
    }

    /// Counts a call answered with `outcome` after `elapsed`, and keeps its time.
    pub(crate) fn answered(&self, outcome: &str, elapsed: Duration) {
        self.outcome(outcome);
        let mut timings = self
            .timings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if timings.len() < MAX_TIMINGS {
            timings.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
    }

    /// Counts a message received on a held stream (`watch-flood`).
    pub(crate) fn message_received(&self) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, plan: &AttackPlan) -> AttackStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let attempts = load(&self.attempts).min(self.max_attempts);
        AttackStats {
            attack: plan.attack.name().to_owned(),
            attackers: plan.attackers,
            streams_per_connection: plan.streams,
            max_attempts: self.max_attempts,
            attempts,
            budget_spent: load(&self.attempts) >= self.max_attempts,
            connections_opened: load(&self.connections_opened),
            connect_failures: load(&self.connect_failures),
            connections_closed_by_server: load(&self.connections_closed_by_server),
            connections_held_peak: load(&self.connections_held_peak),
            calls_started: load(&self.calls_started),
            calls_ended_by_server: load(&self.calls_ended_by_server),
            streams_held_peak: load(&self.streams_held_peak),
            messages_received: load(&self.messages_received),
            outcomes: self
                .statuses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            answers: AnswerTimes::of(
                &self
                    .timings
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                self.started
                    .map_or(Duration::ZERO, |started| started.elapsed()),
            ),
        }
    }
}

/// How long answered calls took, for the attacks that time them (`console-login`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerTimes {
    /// Calls answered and timed.
    pub count: u64,
    /// Answers a second over the attack's whole run (its settle time included).
    pub per_second: f64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// The slowest, milliseconds.
    pub max_ms: f64,
}

impl AnswerTimes {
    /// Returns the percentiles of `micros` (nearest rank) of answers over `ran`; `None` when
    /// nothing was timed.
    fn of(micros: &[u64], ran: Duration) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        let mut sorted = micros.to_vec();
        sorted.sort_unstable();
        let rank = |quantile: f64| {
            let index = (quantile * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1] as f64 / 1000.0
        };
        Some(AnswerTimes {
            count: sorted.len() as u64,
            per_second: sorted.len() as f64 / ran.as_secs_f64().max(f64::EPSILON),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: sorted[sorted.len() - 1] as f64 / 1000.0,
        })
    }
}

/// A connection or stream counted as held until the guard is dropped.
pub(crate) struct Held {
    counters: Arc<Counters>,
    gauge: fn(&Counters) -> &AtomicU64,
}

impl Held {
    fn new(
        counters: Arc<Counters>,
        gauge: fn(&Counters) -> &AtomicU64,
        peak: fn(&Counters) -> &AtomicU64,
    ) -> Self {
        let now = gauge(&counters).fetch_add(1, Ordering::Relaxed) + 1;
        peak(&counters).fetch_max(now, Ordering::Relaxed);
        Held { counters, gauge }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.counters).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens one attacker's gRPC connection to `endpoint` (one attempt of the budget); `None` when
/// the budget is spent, the attack stopped, or the connection failed (counted). The guard
/// counts the connection held.
pub(crate) async fn open_channel(
    endpoint: &tonic::transport::Endpoint,
    counters: &Arc<Counters>,
    stop: &mut Stop,
) -> Option<(tonic::transport::Channel, Held)> {
    if !counters.take_attempt() {
        return None;
    }
    let connected = tokio::select! {
        connected = endpoint.connect() => connected,
        () = stop.wait() => return None,
    };
    match connected {
        Ok(channel) => Some((channel, counters.connection_opened())),
        Err(_) => {
            counters.connect_failed();
            None
        }
    }
}

/// What an attack did, as the report writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackStats {
    /// The attack's name.
    pub attack: String,
    /// Connections held at once (workers for `odd-upload`).
    pub attackers: usize,
    /// Streams per connection.
    pub streams_per_connection: usize,
    /// The budget of connections and calls.
    pub max_attempts: u64,
    /// Connections and calls attempted.
    pub attempts: u64,
    /// True when the budget ran out before the attack was stopped.
    pub budget_spent: bool,
    /// Connections the server accepted (TCP; for raw HTTP/2, the handshake too).
    pub connections_opened: u64,
    /// Connections that could not be opened (refused, timed out, handshake failed).
    pub connect_failures: u64,
    /// Connections the server closed while the attacker held them.
    pub connections_closed_by_server: u64,
    /// The most connections held at once.
    pub connections_held_peak: u64,
    /// Calls sent.
    pub calls_started: u64,
    /// Calls the server ended (answered, reset, or closed) while the attacker held them.
    pub calls_ended_by_server: u64,
    /// The most streams held at once.
    pub streams_held_peak: u64,
    /// Messages received on held streams (`watch-flood`).
    pub messages_received: u64,
    /// How calls ended, by gRPC code name or `reset`, `closed`, `answered` (by HTTP status
    /// for `console-login`).
    pub outcomes: BTreeMap<String, u64>,
    /// How long answered calls took (`console-login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<AnswerTimes>,
}

/// An attack under way.
pub struct Running {
    plan: AttackPlan,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    counters: Arc<Counters>,
}

/// Starts `plan`'s attack; its tasks end by themselves `hard_limit` from now at the latest.
pub fn launch(plan: AttackPlan, hard_limit: Duration) -> anyhow::Result<Running> {
    plan.validate().map_err(anyhow::Error::msg)?;
    let (sender, signal) = watch::channel(false);
    let stop = Stop {
        signal,
        deadline: Instant::now() + hard_limit,
    };
    let counters = Arc::new(Counters::new(plan.max_attempts));
    let mut tasks = JoinSet::new();
    match plan.attack {
        Attack::ZeroWindow => zero_window::spawn(&plan, &counters, &stop, &mut tasks),
        Attack::ConnectionFlood => connection_flood::spawn(&plan, &counters, &stop, &mut tasks),
        Attack::StalledUpload => stalled_upload::spawn(&plan, &counters, &stop, &mut tasks),
        Attack::WatchFlood => watch_flood::spawn(&plan, &counters, &stop, &mut tasks)?,
        Attack::OddUpload => odd_upload::spawn(&plan, &counters, &stop, &mut tasks)?,
        Attack::ConsoleLogin => console_login::spawn(&plan, &counters, &stop, &mut tasks)?,
    }
    Ok(Running {
        plan,
        stop: sender,
        tasks,
        counters,
    })
}

impl Running {
    /// Returns what the attack has done so far.
    pub fn stats(&self) -> AttackStats {
        self.counters.snapshot(&self.plan)
    }

    /// Stops the attack: signals every task, waits a few seconds for them to let go of their
    /// connections, aborts the rest, and returns what the attack did.
    pub async fn stop(mut self) -> AttackStats {
        let stats = self.stats();
        let _ = self.stop.send(true);
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => if joined.is_none() { break },
                () = &mut grace => {
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_times_are_nearest_rank_percentiles() {
        // 1..=100 ms: the median is the 50th, the 99th percentile the 99th value.
        let micros: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let times = AnswerTimes::of(&micros, Duration::from_secs(4)).expect("timed");
        assert_eq!(times.count, 100);
        assert_eq!(times.per_second, 25.0);
        assert_eq!(
            (times.p50_ms, times.p99_ms, times.max_ms),
            (50.0, 99.0, 100.0)
        );
        assert_eq!(AnswerTimes::of(&[], Duration::from_secs(1)), None);
    }

    fn plan(attack: Attack, target: &str) -> AttackPlan {
        AttackPlan {
            attack,
            target: Target::parse(target, false).expect("target"),
            attackers: attack.default_attackers(),
            streams: attack.default_streams(),
            max_attempts: 10,
            trickle: Duration::from_secs(1),
            region: "VN-TB".to_owned(),
            token: None,
            batch_id: None,
            console: None,
        }
    }

    #[test]
    fn plans_are_checked() {
        assert_eq!(
            plan(Attack::WatchFlood, "http://127.0.0.1:1").validate(),
            Ok(())
        );
        let no_batch = plan(Attack::ZeroWindow, "http://127.0.0.1:1");
        assert!(
            no_batch
                .validate()
                .expect_err("no batch")
                .contains("publish")
        );
        let mut tls = plan(Attack::StalledUpload, "https://127.0.0.1:1");
        assert!(tls.validate().expect_err("tls").contains("plaintext"));
        tls.attack = Attack::ConnectionFlood;
        assert_eq!(tls.validate(), Ok(()), "the flood needs no TLS client");
        let mut zero = plan(Attack::OddUpload, "http://127.0.0.1:1");
        zero.attackers = 0;
        assert!(zero.validate().expect_err("zero").contains("--attackers"));
    }

    #[test]
    fn the_budget_bounds_attempts_and_held_counts_come_back_down() {
        let counters = Arc::new(Counters::new(3));
        assert!(counters.take_attempt());
        assert!(counters.take_attempt());
        assert!(counters.take_attempt());
        assert!(
            !counters.take_attempt(),
            "the fourth attempt is over budget"
        );
        {
            let _first = counters.call_started();
            let _second = counters.call_started();
        }
        let _third = counters.call_started();
        let stats = counters.snapshot(&plan(Attack::WatchFlood, "http://127.0.0.1:1"));
        assert_eq!(stats.attempts, 3);
        assert!(stats.budget_spent);
        assert_eq!(stats.calls_started, 3);
        assert_eq!(stats.streams_held_peak, 2);
        assert_eq!(counters.streams_held.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn distinct_outcomes_are_bounded() {
        let counters = Counters::new(1);
        for index in 0..100 {
            counters.outcome(&format!("code {index}"));
        }
        counters.outcome("code 3");
        let statuses = counters.statuses.lock().expect("lock");
        assert_eq!(statuses.len(), MAX_OUTCOMES + 1);
        assert_eq!(statuses["(other)"], 100 - MAX_OUTCOMES as u64);
        assert_eq!(statuses["code 3"], 2);
    }
}

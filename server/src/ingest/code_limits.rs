//! Brute-force limits on upload codes (DESIGN.md section 12). A code has 50 bits, so guessing
//! needs billions of tries; these limits make each try expensive without letting guessers lock
//! out patients.
//!
//! - Attempts are counted per client network ([`ClientNetwork`]: an IPv4 address, an IPv6 /64,
//!   so one subscriber's 2^64 addresses are one client; behind `--trusted-proxies` the network
//!   the proxy's PROXY header names) and over all networks, each a GCRA budget:
//!   `--code-failures-per-client-per-hour` per network (an hour's worth may come at once) and
//!   `--code-failures-per-minute` over all.
//! - An attempt is charged to both budgets **before** the code is looked up, and refunded when
//!   the code turns out to be valid (the upload is stored, replayed, or refused for another
//!   reason). So concurrent guesses cannot overshoot a budget, and successful uploads cost
//!   nothing (phones behind one carrier NAT do not pay for each other's success).
//! - A network whose own budget is spent by its *failures* is refused (RESOURCE_EXHAUSTED)
//!   without a lookup. When what fills it is attempts still being looked up, a new attempt
//!   waits (at most [`MAX_WAIT`]) for one of them to be answered instead: patients behind one
//!   address who upload at the same moment are served one after the other, never refused for
//!   each other's valid codes, while concurrent guesses still stop at the budget.
//! - The global budget refuses only *guessing* networks: those whose failures left their
//!   budget short of full, or with a failure in the last hour. A network with neither always gets through
//!   (it is still charged, so its failure counts). Guessers from many networks thus spend the
//!   global budget and then slow only themselves; a patient whose network has not guessed
//!   uploads whatever they do. Each network a guesser holds adds one attempt an hour that the
//!   global budget does not stop (its first failure marks it for an hour).
//! - The table of networks holds at most [`MAX_TRACKED_NETWORKS`]; it is pruned every
//!   [`PRUNE_EVERY`] (and when full) of networks whose budget is full and whose last failure is
//!   over an hour old. A network that finds it full is judged by the global budget alone.
//!
//! Client addresses live only in this module's memory: they are never logged, stored or
//! exported in metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::metrics;
use crate::transport::connections::ClientNetwork;

/// Most client networks tracked at once (about 50 bytes each, with the map's spare room).
pub const MAX_TRACKED_NETWORKS: usize = 500_000;
/// How often the table is pruned of networks it no longer needs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a failed attempt marks its network as guessing.
pub const GUESSING_FOR: Duration = Duration::from_secs(3600);
/// Longest an attempt waits for the attempts in flight that fill its budget to be answered;
/// it is then refused.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// The least time between two prunes forced by a full table.
const PRUNE_WHEN_FULL_EVERY: Duration = Duration::from_secs(1);

/// The network of a connection whose client address is unknown.
const UNKNOWN_NETWORK: ClientNetwork = ClientNetwork::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// A GCRA budget of `burst` cells refilled one per `interval`.
#[derive(Clone, Copy, Debug)]
struct Budget {
    interval: Duration,
    /// `(burst - 1) * interval`: how far ahead of now the theoretical arrival time may be.
    tolerance: Duration,
}

impl Budget {
    fn new(burst: NonZeroU32, period: Duration) -> Self {
        let interval = period / burst.get();
        Self {
            interval,
            tolerance: interval * (burst.get() - 1),
        }
    }

    /// Charges one cell to the arrival time `tat` when the budget has one; returns whether.
    fn charge(&self, tat: &mut Instant, now: Instant) -> bool {
        let start = (*tat).max(now);
        if start > now + self.tolerance {
            return false;
        }
        *tat = start + self.interval;
        true
    }

    /// Gives back a cell charged to `tat`.
    fn refund(&self, tat: &mut Instant) {
        *tat = tat.checked_sub(self.interval).unwrap_or(*tat);
    }

    /// Returns the arrival time `tat` would have without the `in_flight` cells charged to it
    /// for attempts not yet answered: the failures' alone.
    fn settled(&self, tat: Instant, in_flight: u32) -> Instant {
        tat.checked_sub(self.interval * in_flight).unwrap_or(tat)
    }

    /// Returns whether the budget at `tat` has a cell.
    fn has_room(&self, tat: Instant, now: Instant) -> bool {
        tat.max(now) <= now + self.tolerance
    }
}

/// Why an attempt cannot be charged now.
enum NoRoom {
    /// Failures spent the budget.
    Spent,
    /// Attempts in flight fill it; one of their answers may free a cell.
    Busy,
}

/// What is known of one network.
#[derive(Clone, Copy, Debug)]
struct NetworkState {
    /// GCRA theoretical arrival time of its budget: at or before now when the budget is full.
    tat: Instant,
    /// Attempts charged to `tat` and not yet answered.
    in_flight: u32,
    /// When its last failed attempt was charged.
    last_failure: Option<Instant>,
}

impl NetworkState {
    /// Returns true while the network counts as guessing: its failures left its budget short
    /// of full, or it failed in the last hour.
    fn guessing(&self, budget: &Budget, now: Instant) -> bool {
        budget.settled(self.tat, self.in_flight) > now
            || self
                .last_failure
                .is_some_and(|failed| now.duration_since(failed) < GUESSING_FOR)
    }
}

#[derive(Debug)]
struct State {
    networks: HashMap<ClientNetwork, NetworkState>,
    global_tat: Instant,
    /// Attempts charged to `global_tat` and not yet answered.
    global_in_flight: u32,
    last_prune: Instant,
}

/// Failure budgets per client network and overall; see the module documentation.
#[derive(Debug)]
pub struct CodeAttemptLimits {
    per_network: Budget,
    global: Budget,
    capacity: usize,
    state: Mutex<State>,
    /// Woken whenever an attempt is answered, for attempts waiting on a busy budget.
    answered: tokio::sync::Notify,
}

/// One code attempt, charged to its budgets. [`Attempt::code_was_valid`] refunds it; an attempt
/// dropped without it (a wrong code, or a call abandoned while the code was looked up) stays
/// charged and marks its network as guessing.
#[must_use = "an attempt is refunded only by code_was_valid"]
#[derive(Debug)]
pub struct Attempt<'a> {
    limits: &'a CodeAttemptLimits,
    network: ClientNetwork,
    charged_network: bool,
    charged_global: bool,
    refunded: bool,
}

impl CodeAttemptLimits {
    /// Returns limits of `per_network_per_hour` failures per network and `global_per_minute`
    /// failures over all networks; each may come as a burst.
    pub fn new(per_network_per_hour: NonZeroU32, global_per_minute: NonZeroU32) -> Self {
        Self::with_capacity(
            per_network_per_hour,
            global_per_minute,
            MAX_TRACKED_NETWORKS,
        )
    }

    fn with_capacity(
        per_network_per_hour: NonZeroU32,
        global_per_minute: NonZeroU32,
        capacity: usize,
    ) -> Self {
        let now = Instant::now();
        Self {
            per_network: Budget::new(per_network_per_hour, Duration::from_secs(3600)),
            global: Budget::new(global_per_minute, Duration::from_secs(60)),
            capacity,
            state: Mutex::new(State {
                networks: HashMap::new(),
                global_tat: now,
                global_in_flight: 0,
                last_prune: now,
            }),
            answered: tokio::sync::Notify::new(),
        }
    }

    /// Charges an attempt from `client` before its code is looked up; RESOURCE_EXHAUSTED when
    /// its network's failures spent its budget, or when the global budget is spent and the
    /// network is guessing. When attempts still in flight fill a budget, waits for their
    /// answers (at most [`MAX_WAIT`]).
    pub async fn begin(&self, client: Option<IpAddr>) -> Result<Attempt<'_>, ApiError> {
        let network = client.map_or(UNKNOWN_NETWORK, ClientNetwork::of);
        let give_up = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            // Registered before the budgets are read, so no answer in between is missed.
            let answered = self.answered.notified();
            let mut answered = std::pin::pin!(answered);
            answered.as_mut().enable();
            match self.try_begin(network) {
                Ok(attempt) => return Ok(attempt),
                Err(NoRoom::Spent) => return Err(refused()),
                Err(NoRoom::Busy) => {
                    if tokio::time::timeout_at(give_up, answered).await.is_err() {
                        return Err(refused());
                    }
                }
            }
        }
    }

    fn try_begin(&self, network: ClientNetwork) -> Result<Attempt<'_>, NoRoom> {
        let now = Instant::now();
        let mut state = self.lock();
        self.prune_if_due(&mut state, now);
        let State {
            networks,
            global_tat,
            global_in_flight,
            ..
        } = &mut *state;
        let tracked = networks.contains_key(&network) || networks.len() < self.capacity;
        let guessing = if tracked {
            let entry = networks.entry(network).or_insert(NetworkState {
                tat: now,
                in_flight: 0,
                last_failure: None,
            });
            let guessing = entry.guessing(&self.per_network, now);
            if !self.per_network.has_room(entry.tat, now) {
                let settled = self.per_network.settled(entry.tat, entry.in_flight);
                return Err(if self.per_network.has_room(settled, now) {
                    NoRoom::Busy
                } else {
                    NoRoom::Spent
                });
            }
            guessing
        } else {
            // Nothing is known of it: the global budget judges it.
            true
        };
        let global_room = self.global.has_room(*global_tat, now);
        if !global_room && guessing {
            let settled = self.global.settled(*global_tat, *global_in_flight);
            return Err(if self.global.has_room(settled, now) {
                NoRoom::Busy
            } else {
                NoRoom::Spent
            });
        }
        if tracked && let Some(entry) = networks.get_mut(&network) {
            self.per_network.charge(&mut entry.tat, now);
            entry.in_flight += 1;
        }
        if global_room {
            self.global.charge(global_tat, now);
            *global_in_flight += 1;
        }
        Ok(Attempt {
            limits: self,
            network,
            charged_network: tracked,
            charged_global: global_room,
            refunded: false,
        })
    }

    /// Removes networks whose budget is full and whose last failure is over an hour old; the
    /// caller runs it at most every [`PRUNE_EVERY`] (and when the table is full).
    pub fn prune(&self) {
        let now = Instant::now();
        prune(&mut self.lock(), &self.per_network, now);
    }

    /// Returns how many networks are tracked.
    pub fn tracked_networks(&self) -> usize {
        self.lock().networks.len()
    }

    fn prune_if_due(&self, state: &mut State, now: Instant) {
        let since = now.saturating_duration_since(state.last_prune);
        if since >= PRUNE_EVERY
            || (state.networks.len() >= self.capacity && since >= PRUNE_WHEN_FULL_EVERY)
        {
            prune(state, &self.per_network, now);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The table holds plain values; a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn prune(state: &mut State, budget: &Budget, now: Instant) {
    state
        .networks
        .retain(|_, network| network.in_flight > 0 || network.guessing(budget, now));
    state.networks.shrink_to_fit();
    state.last_prune = now;
}

fn refused() -> ApiError {
    ::metrics::counter!(metrics::CODE_ATTEMPTS_REFUSED_TOTAL).increment(1);
    ApiError::ResourceExhausted("too many failed upload-code attempts; retry later".into())
}

impl Attempt<'_> {
    /// Refunds the attempt: its code was valid.
    pub fn code_was_valid(mut self) {
        self.refunded = true;
        self.answer(|budget, tat| budget.refund(tat));
    }

    /// Ends the attempt's time in flight; `settle` refunds or keeps each charged cell.
    fn answer(&self, settle: impl Fn(&Budget, &mut Instant)) {
        let limits = self.limits;
        let mut state = limits.lock();
        if self.charged_global {
            settle(&limits.global, &mut state.global_tat);
            state.global_in_flight = state.global_in_flight.saturating_sub(1);
        }
        if self.charged_network
            && let Some(entry) = state.networks.get_mut(&self.network)
        {
            settle(&limits.per_network, &mut entry.tat);
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if !self.refunded {
                entry.last_failure = Some(Instant::now());
            }
        }
        drop(state);
        limits.answered.notify_waiters();
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.refunded {
            // A failure: its cells stay charged.
            self.answer(|_, _| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_network: u32, global: u32) -> CodeAttemptLimits {
        CodeAttemptLimits::new(
            NonZeroU32::new(per_network).expect("non-zero"),
            NonZeroU32::new(global).expect("non-zero"),
        )
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    async fn fail(limits: &CodeAttemptLimits, client: Option<IpAddr>) -> Result<(), ApiError> {
        limits.begin(client).await.map(drop)
    }

    #[tokio::test]
    async fn a_network_is_refused_once_its_failures_pass_the_budget_and_others_are_not() {
        let limits = limits(3, 1000);
        for _ in 0..3 {
            assert!(fail(&limits, ip("10.0.0.1")).await.is_ok());
        }
        assert!(matches!(
            limits.begin(ip("10.0.0.1")).await,
            Err(ApiError::ResourceExhausted(_))
        ));
        assert!(limits.begin(ip("10.0.0.2")).await.is_ok());
    }

    #[tokio::test]
    async fn every_address_of_an_ipv6_slash_64_is_one_network() {
        let limits = limits(3, 1000);
        for host in 1..=3 {
            assert!(
                fail(&limits, ip(&format!("2001:db8:1:2::{host:x}")))
                    .await
                    .is_ok()
            );
        }
        assert!(limits.begin(ip("2001:db8:1:2:ffff::1")).await.is_err());
        assert!(limits.begin(ip("2001:db8:1:3::1")).await.is_ok());
        assert_eq!(limits.tracked_networks(), 2);
    }

    #[tokio::test]
    async fn valid_codes_cost_nothing() {
        let limits = limits(2, 2);
        for _ in 0..10 {
            limits
                .begin(ip("10.0.0.1"))
                .await
                .expect("never refused")
                .code_was_valid();
        }
        assert!(fail(&limits, ip("10.0.0.1")).await.is_ok());
        assert!(fail(&limits, ip("10.0.0.1")).await.is_ok());
        assert!(limits.begin(ip("10.0.0.1")).await.is_err());
    }

    #[tokio::test]
    async fn attempts_in_flight_count_before_their_answer() {
        let limits = limits(3, 1000);
        let mut in_flight = Vec::new();
        for _ in 0..3 {
            in_flight.push(
                limits
                    .begin(ip("10.0.0.1"))
                    .await
                    .expect("within the budget"),
            );
        }
        // A fourth attempt waits: the three in flight may yet be valid.
        let fourth = limits.begin(ip("10.0.0.1"));
        let mut fourth = std::pin::pin!(fourth);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fourth.as_mut())
                .await
                .is_err(),
            "a fourth concurrent attempt would overshoot, so it waits"
        );
        // The three fail: the fourth is refused without a lookup.
        drop(in_flight);
        assert!(fourth.await.is_err());
        assert!(limits.begin(ip("10.0.0.1")).await.is_err());
    }

    #[tokio::test]
    async fn patients_behind_one_address_are_served_in_turn_never_refused() {
        let limits = std::sync::Arc::new(limits(3, 3));
        // Ten valid codes at once from one network with a budget of three: each waits for a
        // turn and none is refused.
        let mut uploads = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let limits = limits.clone();
            uploads.spawn(async move {
                let attempt = limits.begin(ip("10.0.0.1")).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                attempt.code_was_valid();
                Ok::<_, ApiError>(())
            });
        }
        while let Some(upload) = uploads.join_next().await {
            upload
                .expect("task")
                .expect("a valid code is never refused");
        }
        // They cost nothing: the whole budget is left.
        for _ in 0..3 {
            assert!(fail(&limits, ip("10.0.0.1")).await.is_ok());
        }
        assert!(limits.begin(ip("10.0.0.1")).await.is_err());
    }

    #[tokio::test]
    async fn an_attempt_waits_at_most_max_wait() {
        let limits = limits(1, 1000);
        let held = limits.begin(ip("10.0.0.1")).await.expect("the budget");
        let started = tokio::time::Instant::now();
        assert!(limits.begin(ip("10.0.0.1")).await.is_err());
        let waited = started.elapsed();
        assert!(
            waited >= MAX_WAIT && waited < MAX_WAIT + Duration::from_secs(2),
            "{waited:?}"
        );
        held.code_was_valid();
    }

    #[tokio::test]
    async fn the_global_budget_stops_guessing_networks_but_never_a_clean_one() {
        let limits = limits(1000, 5);
        // Five networks guess once each and spend the global budget.
        for byte in 1..=5u8 {
            assert!(
                fail(&limits, Some(IpAddr::from([10, 0, 1, byte])))
                    .await
                    .is_ok()
            );
        }
        // Each of them is now guessing: refused by the global budget.
        assert!(
            limits
                .begin(Some(IpAddr::from([10, 0, 1, 1])))
                .await
                .is_err()
        );
        // A network that never failed gets through, and through again after a valid code.
        for _ in 0..3 {
            limits
                .begin(ip("192.0.2.9"))
                .await
                .expect("a clean network is never refused by the global budget")
                .code_was_valid();
        }
        // Its first failure marks it, so its second attempt meets the global budget.
        assert!(fail(&limits, ip("198.51.100.1")).await.is_ok());
        assert!(limits.begin(ip("198.51.100.1")).await.is_err());
        // Attempts in flight do not mark a clean network: its valid codes pass while the
        // global budget is spent.
        let first = limits.begin(ip("198.51.100.2")).await.expect("clean");
        let second = limits.begin(ip("198.51.100.2")).await.expect("still clean");
        first.code_was_valid();
        second.code_was_valid();
    }

    #[tokio::test]
    async fn pruning_forgets_networks_that_are_no_longer_guessing() {
        let limits = limits(20, 1000);
        for byte in 1..=50u8 {
            limits
                .begin(Some(IpAddr::from([10, 0, 2, byte])))
                .await
                .expect("clean")
                .code_was_valid();
        }
        assert_eq!(limits.tracked_networks(), 50);
        fail(&limits, ip("10.0.3.1")).await.expect("a failure");
        limits.prune();
        assert_eq!(
            limits.tracked_networks(),
            1,
            "only the network that failed within the hour is kept"
        );
        assert!(limits.begin(ip("10.0.3.1")).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_table_leaves_new_networks_to_the_global_budget() {
        let limits = CodeAttemptLimits::with_capacity(
            NonZeroU32::new(1000).expect("non-zero"),
            NonZeroU32::new(3).expect("non-zero"),
            2,
        );
        fail(&limits, ip("10.0.0.1")).await.expect("tracked");
        fail(&limits, ip("10.0.0.2")).await.expect("tracked");
        assert_eq!(limits.tracked_networks(), 2);
        fail(&limits, ip("10.0.0.3"))
            .await
            .expect("the global budget has one left");
        assert_eq!(limits.tracked_networks(), 2, "the table stays bounded");
        assert!(limits.begin(ip("10.0.0.4")).await.is_err());
    }
}

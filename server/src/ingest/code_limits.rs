//! Brute-force limits on upload codes (DESIGN.md section 12). A code has 50 bits, so guessing
//! needs billions of tries; these limits make each try expensive. Failed attempts are counted
//! per client address and over all clients (GCRA via `governor`); once either budget is spent,
//! further code uploads are refused with RESOURCE_EXHAUSTED, without looking the code up, until
//! the budget refills. Successful uploads cost nothing, so phones behind one carrier NAT are
//! not punished for each other's success.
//!
//! Client addresses live only in this module's memory: they are never logged, stored or
//! exported in metrics, and the maps are pruned as entries expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics;

/// Most addresses tracked at once; past this, expired entries are pruned first.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Failure budgets per client and overall.
pub struct CodeAttemptLimits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// Addresses whose budget is spent, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Until when every client is refused, once the global budget is spent.
    global_blocked: Mutex<Option<Instant>>,
}

/// The address used for a connection whose peer address is unknown.
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

impl CodeAttemptLimits {
    /// Returns limits of `per_client_per_hour` failures per address and `global_per_minute`
    /// failures over all clients; each may come as a burst.
    pub fn new(per_client_per_hour: NonZeroU32, global_per_minute: NonZeroU32) -> Self {
        Self {
            per_client: RateLimiter::keyed(Quota::per_hour(per_client_per_hour)),
            global: RateLimiter::direct(Quota::per_minute(global_per_minute)),
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
            global_blocked: Mutex::new(None),
        }
    }

    /// Refuses the attempt while the client's or the global failure budget is spent.
    pub fn check_allowed(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let now = Instant::now();
        let refused = || {
            ::metrics::counter!(metrics::CODE_ATTEMPTS_REFUSED_TOTAL).increment(1);
            ApiError::ResourceExhausted("too many failed upload-code attempts; retry later".into())
        };
        if lock(&self.global_blocked).is_some_and(|until| until > now) {
            return Err(refused());
        }
        let client = client.unwrap_or(UNKNOWN_CLIENT);
        if lock(&self.blocked)
            .get(&client)
            .is_some_and(|until| *until > now)
        {
            return Err(refused());
        }
        Ok(())
    }

    /// Charges one failed attempt to the client and to the global budget.
    pub fn record_failure(&self, client: Option<IpAddr>) {
        let client = client.unwrap_or(UNKNOWN_CLIENT);
        let now = Instant::now();
        if let Err(not_until) = self.per_client.check_key(&client) {
            let wait = not_until.wait_time_from(self.clock.now());
            let mut blocked = lock(&self.blocked);
            if blocked.len() >= MAX_TRACKED_CLIENTS {
                blocked.retain(|_, until| *until > now);
                self.per_client.retain_recent();
            }
            blocked.insert(client, now + wait.max(Duration::from_secs(1)));
        }
        if let Err(not_until) = self.global.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            *lock(&self.global_blocked) = Some(now + wait.max(Duration::from_secs(1)));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain values; a panic elsewhere leaves them consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_client: u32, global: u32) -> CodeAttemptLimits {
        CodeAttemptLimits::new(
            NonZeroU32::new(per_client).expect("non-zero"),
            NonZeroU32::new(global).expect("non-zero"),
        )
    }

    #[test]
    fn a_client_is_refused_once_its_failures_pass_the_budget_and_others_are_not() {
        let limits = limits(3, 1000);
        let attacker = Some(IpAddr::from([10, 0, 0, 1]));
        let bystander = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(limits.check_allowed(attacker).is_ok());
            limits.record_failure(attacker);
        }
        assert!(
            limits.check_allowed(attacker).is_ok(),
            "three failures fit the burst"
        );
        limits.record_failure(attacker);
        assert!(matches!(
            limits.check_allowed(attacker),
            Err(ApiError::ResourceExhausted(_))
        ));
        assert!(limits.check_allowed(bystander).is_ok());
    }

    #[test]
    fn the_global_budget_refuses_everyone() {
        let limits = limits(1000, 2);
        for byte in 1..=3u8 {
            limits.record_failure(Some(IpAddr::from([10, 0, 1, byte])));
        }
        assert!(
            limits
                .check_allowed(Some(IpAddr::from([10, 9, 9, 9])))
                .is_err()
        );
    }
}

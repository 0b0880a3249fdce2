//! Per-minute rate limits kept for each health authority (upload calls, code issues): one
//! `governor` GCRA limiter per authority id, made on first use with that authority's quota (a
//! minute's worth may come at once, then it refills evenly). A limiter unused for a minute has
//! refilled completely, so it is dropped when the map is pruned (every minute) and made afresh
//! on the authority's next call: the map holds only authorities active in the last minutes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How long a per-minute limiter takes to refill completely, and how often the map is pruned.
const REFILLED_AFTER: Duration = Duration::from_secs(60);

/// The limiters of one kind of call, by authority id.
#[derive(Debug)]
pub struct AuthorityLimiters {
    state: Mutex<Limiters>,
}

#[derive(Debug)]
struct Limiters {
    /// Each authority's limiter and when it was last used.
    by_authority: HashMap<String, (Arc<DefaultDirectRateLimiter>, Instant)>,
    last_prune: Instant,
}

impl Default for AuthorityLimiters {
    fn default() -> Self {
        Self {
            state: Mutex::new(Limiters {
                by_authority: HashMap::new(),
                last_prune: Instant::now(),
            }),
        }
    }
}

impl AuthorityLimiters {
    /// Returns the limiter of `authority_id`, made with `per_minute` when it has none.
    pub fn limiter(
        &self,
        authority_id: &str,
        per_minute: NonZeroU32,
    ) -> Arc<DefaultDirectRateLimiter> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.last_prune) >= REFILLED_AFTER {
            state
                .by_authority
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < REFILLED_AFTER);
            state.last_prune = now;
        }
        let (limiter, used) = state
            .by_authority
            .entry(authority_id.to_owned())
            .or_insert_with(|| {
                (
                    Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
                    now,
                )
            });
        *used = now;
        limiter.clone()
    }

    /// Returns how many authorities have a limiter.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_authority
            .len()
    }

    /// Returns true when no authority has a limiter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn age_by(&self, elapsed: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_prune -= elapsed;
        for (_, used) in state.by_authority.values_mut() {
            *used -= elapsed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_keeps_its_limiter_while_active_and_loses_it_once_refilled() {
        let limiters = AuthorityLimiters::default();
        let three = NonZeroU32::new(3).expect("non-zero");
        for _ in 0..3 {
            assert!(limiters.limiter("a", three).check().is_ok());
        }
        assert!(
            limiters.limiter("a", three).check().is_err(),
            "the same limiter: the burst is spent"
        );
        limiters.limiter("b", three);
        assert_eq!(limiters.len(), 2);
        // A minute later, the next call prunes both idle limiters before making its own.
        limiters.age_by(REFILLED_AFTER);
        assert!(limiters.limiter("c", three).check().is_ok());
        assert_eq!(limiters.len(), 1);
    }
}

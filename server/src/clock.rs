//! The server's notion of "now". Production reads the system clock; tests use a clock they
//! move by hand, so embargoes, daily roll-ups and retention can be tested without waiting days.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of Unix time in seconds, shared by ingest validation and the publisher.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The machine's clock.
    System,
    /// A clock that only moves when told to; for tests.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// Returns a manual clock standing at `unix_seconds`.
    pub fn manual(unix_seconds: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(unix_seconds)))
    }

    /// Returns the current Unix time in seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0),
            Clock::Manual(seconds) => seconds.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock to `unix_seconds`; the system clock ignores this.
    pub fn set(&self, unix_seconds: u64) {
        if let Clock::Manual(seconds) = self {
            seconds.store(unix_seconds, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock forward by `seconds`; the system clock ignores this.
    pub fn advance(&self, seconds: u64) {
        if let Clock::Manual(now) = self {
            now.fetch_add(seconds, Ordering::SeqCst);
        }
    }
}

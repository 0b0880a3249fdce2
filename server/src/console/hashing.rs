//! The gate in front of Argon2id: password checks (every login attempt, every enrolment) run
//! `--console-password-checks` at a time, so the console cannot be made to spend more than that
//! many cores hashing, whatever arrives on its listener. Each check costs tens of milliseconds
//! of one core by design; without a gate, the console's connections (256 by default), each
//! with a login form in flight, would take every core from uploads and polls.
//!
//! An attempt that finds every check busy waits in line, at most [`WAITING_PER_CHECK`] for
//! each concurrent check and at most [`MOST_WAIT`]; past either it is answered at once with
//! "busy, try again" (503 with `Retry-After`), having cost nothing but the form's parsing.
//! The per-network login budget ([`super::auth::LoginLimits`]) is charged before the line, so a
//! network over its budget never queues.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::blocking;
use crate::storage::StorageError;

/// Attempts that may wait for each concurrent check.
pub const WAITING_PER_CHECK: usize = 16;
/// The longest an attempt waits for a check before it is answered "busy".
pub const MOST_WAIT: Duration = Duration::from_secs(5);
/// What a "busy" answer asks the browser to wait, in seconds (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Why a password check did not run.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckRefused {
    /// The line was full, or the wait ran past [`MOST_WAIT`].
    Busy,
    /// The check ran and failed (a store error), with its message.
    Failed(String),
}

/// Runs Argon2id work a bounded number at a time.
pub struct PasswordChecks {
    permits: Semaphore,
    waiting: AtomicUsize,
    most_waiting: usize,
    most_wait: Duration,
}

impl PasswordChecks {
    /// Returns a gate that runs `concurrent` checks at once (at least one).
    pub fn new(concurrent: usize) -> Self {
        Self::with_wait(concurrent, MOST_WAIT)
    }

    fn with_wait(concurrent: usize, most_wait: Duration) -> Self {
        let concurrent = concurrent.max(1);
        Self {
            permits: Semaphore::new(concurrent),
            waiting: AtomicUsize::new(0),
            most_waiting: concurrent * WAITING_PER_CHECK,
            most_wait,
        }
    }

    /// Runs `work` (which hashes or verifies a password, then reads or writes the store) off
    /// the async workers once a check is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, CheckRefused> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.most_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(CheckRefused::Busy);
        }
        let permit = tokio::time::timeout(self.most_wait, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(Ok(_permit)) = permit else {
            return Err(CheckRefused::Busy);
        };
        blocking(work).await.map_err(CheckRefused::Failed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;

    use super::*;

    /// Starts a check that holds its place until `release` is sent to, and waits until it runs.
    async fn held_check(
        gate: &Arc<PasswordChecks>,
    ) -> (
        mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<u32, CheckRefused>>,
    ) {
        let (release, held) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let running = gate.clone();
        let task = tokio::spawn(async move {
            running
                .run(move || {
                    let _ = started_tx.send(());
                    held.recv().ok();
                    Ok(7)
                })
                .await
        });
        started.await.expect("the held check started");
        (release, task)
    }

    #[tokio::test]
    async fn checks_run_one_at_a_time_and_a_full_line_is_busy_at_once() {
        let gate = Arc::new(PasswordChecks::with_wait(1, Duration::from_secs(30)));
        let (release, first) = held_check(&gate).await;
        // The line holds 16 attempts for the one check; the 17th is refused without waiting.
        let mut waiting = Vec::new();
        for n in 0..WAITING_PER_CHECK {
            let queued = gate.clone();
            waiting.push(tokio::spawn(async move { queued.run(move || Ok(n)).await }));
        }
        while gate.waiting.load(Ordering::Acquire) < WAITING_PER_CHECK {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(gate.run(|| Ok(99)).await, Err(CheckRefused::Busy));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Released, the held check and then every waiting one complete, in any order.
        release.send(()).expect("release");
        assert_eq!(first.await.expect("join"), Ok(7));
        let mut results = Vec::new();
        for task in waiting {
            results.push(task.await.expect("join").expect("ran"));
        }
        results.sort_unstable();
        assert_eq!(results, (0..WAITING_PER_CHECK).collect::<Vec<_>>());
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_wait_past_the_limit_is_busy_and_frees_its_place() {
        let gate = Arc::new(PasswordChecks::with_wait(1, Duration::from_millis(200)));
        let (release, first) = held_check(&gate).await;
        let started = std::time::Instant::now();
        assert_eq!(gate.run(|| Ok(1)).await, Err(CheckRefused::Busy));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        release.send(()).expect("release");
        assert_eq!(first.await.expect("join"), Ok(7));
        // Free again: a check runs at once.
        assert_eq!(gate.run(|| Ok(2)).await, Ok(2));
    }

    #[tokio::test]
    async fn a_store_error_is_reported_as_failed() {
        let gate = PasswordChecks::new(2);
        let result = gate
            .run(|| -> Result<(), StorageError> {
                Err(StorageError::Corrupt {
                    column_family: "console_users",
                    reason: "test".into(),
                })
            })
            .await;
        assert!(
            matches!(result, Err(CheckRefused::Failed(message)) if message.contains("console_users"))
        );
    }
}

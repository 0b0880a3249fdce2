//! The background task that empties the outbox into the bucket, and deletes each task from the
//! outbox once done. It starts at once, so tasks a crash or an outage left queued are retried
//! after a restart.
//!
//! Order is kept per object, not globally (DESIGN.md section 10): a task waits only for the
//! earlier tasks on the same object and for those it depends on ([`waits_for`]: an index
//! rewrite takes care itself that every file it names is up first; a batch delete waits for the
//! index rewrites queued before it; indexes wait for the signing-key list). A task that fails is
//! retried with its own exponential backoff while the tasks that do not wait for it go on, so
//! one object that can never be written (a permission denied on one path) does not hold every
//! later batch back. Consecutive failures of any tasks also space the attempts out, so an
//! unreachable bucket is not hammered.
//!
//! The drain keeps its own copy of the queue: the whole outbox is read once at start, then
//! only the tasks committed since the last one read ([`Store::outbox_after`]; tasks commit in
//! sequence order under the commit lock). The queue's length, age and failing tasks are
//! exported from that copy without walking the outbox again.
//!
//! The health of the server does not depend on it: while the bucket is unreachable phones are
//! still served by gRPC and the HTTP listener.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sync::Syncer;
use crate::clock::Clock;
use crate::metrics;
use crate::storage::outbox::{OutboxEntry, OutboxTask};
use crate::storage::{StorageError, Store};

/// How often the queue gauges are refreshed while nothing happens.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);
/// Tasks read from the outbox per read.
const READ_CHUNK: usize = 1024;

/// Retry delays of a failing task: doubling from `initial` up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Returns the delay after `failures` consecutive failures (1 or more).
    fn after(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What a task writes in the bucket: tasks on the same object run in queue order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Object {
    Batch(String),
    Region(String),
    Gaen(String),
    SigningKeys,
}

fn object(task: &OutboxTask) -> Object {
    match task {
        OutboxTask::PutBatch(id) | OutboxTask::DeleteBatch(id) => Object::Batch(id.clone()),
        OutboxTask::SyncRegion(region) => Object::Region(region.clone()),
        OutboxTask::SyncGaen(region) => Object::Gaen(region.clone()),
        OutboxTask::SigningKeys => Object::SigningKeys,
    }
}

/// Returns whether `task` must wait while an earlier task on `earlier` is not done.
fn waits_for(task: &OutboxTask, earlier: &Object) -> bool {
    if object(task) == *earlier {
        return true;
    }
    match (task, earlier) {
        // Retention queues a region's index rewrite before the deletes of its expired batches:
        // the index stops naming a batch before its file goes (the task does not name the
        // batch's region, so any region's pending rewrite holds it).
        (OutboxTask::DeleteBatch(_), Object::Region(_)) => true,
        // An index names files signed with keys the signing-key list must hold first.
        (OutboxTask::SyncRegion(_) | OutboxTask::SyncGaen(_), Object::SigningKeys) => true,
        _ => false,
    }
}

/// A queued task and its attempts.
struct Queued {
    entry: OutboxEntry,
    /// Failed attempts so far.
    failures: u32,
    /// Not tried again before this.
    retry_at: Option<Instant>,
}

/// The drain's copy of the outbox.
#[derive(Default)]
struct Queue {
    tasks: BTreeMap<u64, Queued>,
    /// Highest sequence read from the outbox.
    read_up_to: Option<u64>,
}

impl Queue {
    /// Reads the tasks committed since the last read (all of them the first time).
    async fn refresh(&mut self, store: &Store) -> Result<(), StorageError> {
        loop {
            let (reader, after) = (store.clone(), self.read_up_to);
            let entries =
                tokio::task::spawn_blocking(move || reader.outbox_after(after, READ_CHUNK))
                    .await
                    .map_err(|error| StorageError::Io(std::io::Error::other(error)))??;
            let complete = entries.len() < READ_CHUNK;
            for entry in entries {
                self.read_up_to = Some(entry.sequence);
                self.tasks.insert(
                    entry.sequence,
                    Queued {
                        entry,
                        failures: 0,
                        retry_at: None,
                    },
                );
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Returns the sequence of the oldest task that may run now; otherwise when the next one
    /// may (`None` when nothing waits for a retry: the queue is empty).
    fn next(&self, now: Instant) -> Result<u64, Option<Instant>> {
        let mut held: HashSet<Object> = HashSet::new();
        let mut earliest: Option<Instant> = None;
        for (sequence, queued) in &self.tasks {
            let task = &queued.entry.task;
            if held.iter().any(|earlier| waits_for(task, earlier)) {
                held.insert(object(task));
                continue;
            }
            match queued.retry_at {
                Some(at) if at > now => {
                    earliest = Some(earliest.map_or(at, |earliest| earliest.min(at)));
                    held.insert(object(task));
                }
                _ => return Ok(*sequence),
            }
        }
        Err(earliest)
    }

    /// Sets the queue gauges.
    fn export(&self, clock: &Clock) {
        let oldest = self
            .tasks
            .values()
            .next()
            .map(|queued| queued.entry.enqueued_at);
        let age = oldest.map_or(0, |oldest| clock.now().saturating_sub(oldest));
        let failing = self.tasks.values().filter(|queued| queued.failures > 0);
        let most = failing
            .clone()
            .map(|queued| queued.failures)
            .max()
            .unwrap_or(0);
        ::metrics::gauge!(metrics::PUBLISH_QUEUE_LENGTH).set(self.tasks.len() as f64);
        ::metrics::gauge!(metrics::PUBLISH_QUEUE_OLDEST_SECONDS).set(age as f64);
        ::metrics::gauge!(metrics::PUBLISH_TASKS_FAILING).set(failing.count() as f64);
        ::metrics::gauge!(metrics::PUBLISH_TASK_FAILURES_MAX).set(f64::from(most));
    }
}

/// Drains the outbox into `syncer`'s bucket until `cancel` fires; `wake` is notified by the
/// publisher after each commit that queued tasks.
pub async fn run(
    syncer: Arc<Syncer>,
    store: Store,
    clock: Clock,
    wake: Arc<Notify>,
    backoff: Backoff,
    cancel: CancellationToken,
) {
    tracing::info!(
        target_url = syncer.bucket().description(),
        "object-storage publishing on"
    );
    let mut queue = Queue::default();
    // Consecutive failed attempts, whatever the task: they space the attempts out.
    let mut streak: u32 = 0;
    let mut pause = Duration::ZERO;
    while !cancel.is_cancelled() {
        if !pause.is_zero() {
            sleep_or_cancel(&cancel, pause).await;
            pause = Duration::ZERO;
            continue;
        }
        if let Err(error) = queue.refresh(&store).await {
            tracing::error!(%error, "cannot read the publish outbox");
            queue.export(&clock);
            pause = backoff.initial;
            continue;
        }
        queue.export(&clock);
        let sequence = match queue.next(Instant::now()) {
            Ok(sequence) => sequence,
            Err(retry_at) => {
                let until = retry_at
                    .unwrap_or_else(|| Instant::now() + GAUGE_REFRESH)
                    .min(Instant::now() + GAUGE_REFRESH);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
        };
        let Some(task) = queue
            .tasks
            .get(&sequence)
            .map(|queued| queued.entry.task.clone())
        else {
            continue;
        };
        let applied = syncer.apply(&task).await;
        match applied {
            Ok(()) => {
                if streak > 0 {
                    tracing::info!(failures = streak, "object storage reachable again");
                }
                if streak > 1 {
                    // Failures in a row of several tasks were an outage, now over: the tasks
                    // waiting out their backoff are due at once (their counts stay).
                    for waiting in queue.tasks.values_mut() {
                        waiting.retry_at = None;
                    }
                }
                let Some(queued) = queue.tasks.get(&sequence) else {
                    continue;
                };
                if queued.failures > 0 {
                    tracing::info!(
                        task = task.kind(),
                        failures = queued.failures,
                        "a failing object-storage task went through"
                    );
                }
                streak = 0;
                ::metrics::counter!(metrics::PUBLISH_OBJECT_TASKS_TOTAL, "result" => "done")
                    .increment(1);
                queue.tasks.remove(&sequence);
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.outbox_done(sequence)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "cannot remove a done publish task"),
                    Err(error) => tracing::error!(%error, "publish outbox task failed"),
                }
            }
            Err(error) => {
                let Some(queued) = queue.tasks.get_mut(&sequence) else {
                    continue;
                };
                queued.failures = queued.failures.saturating_add(1);
                let delay = backoff.after(queued.failures);
                queued.retry_at = Some(Instant::now() + delay);
                streak = streak.saturating_add(1);
                ::metrics::counter!(metrics::PUBLISH_OBJECT_TASKS_TOTAL, "result" => "retry")
                    .increment(1);
                // A task's first failure and then every tenth are logged.
                if queued.failures == 1 || queued.failures.is_multiple_of(10) {
                    tracing::warn!(%error, task = task.kind(),
                        failures = queued.failures,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "object-storage write failed; it stays queued and is retried, \
                         later tasks that do not depend on it go on");
                }
                // One failure alone costs nothing: the next task may go at once. Failures in
                // a row (an unreachable bucket) wait longer and longer.
                if streak > 1 {
                    pause = backoff.after(streak - 1);
                }
            }
        }
    }
    queue.export(&clock);
    tracing::debug!("object-storage publishing stopped");
}

/// Sleeps `delay`, or until shutdown.
async fn sleep_or_cancel(cancel: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(sequence: u64, task: OutboxTask, retry_at: Option<Instant>) -> (u64, Queued) {
        let entry = OutboxEntry {
            sequence,
            enqueued_at: 0,
            task,
        };
        let failures = u32::from(retry_at.is_some());
        (
            sequence,
            Queued {
                entry,
                failures,
                retry_at,
            },
        )
    }

    #[test]
    fn a_failing_task_holds_back_only_the_tasks_that_wait_for_it() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(60));
        let region = |name: &str| OutboxTask::SyncRegion(name.into());
        let mut queue = Queue::default();
        queue.tasks.extend([
            queued(1, region("VN-TB"), later),
            queued(2, OutboxTask::PutBatch("b1".into()), None),
        ]);
        // The failing index rewrite waits; the next batch file goes.
        assert_eq!(queue.next(now), Ok(2));
        queue.tasks.remove(&2);
        queue.tasks.extend([
            queued(3, region("VN-TB"), None),
            queued(4, OutboxTask::DeleteBatch("b0".into()), None),
            queued(5, region("VN-HN"), None),
        ]);
        // The same region's next rewrite and a batch delete wait; another region goes.
        assert_eq!(queue.next(now), Ok(5));
        queue.tasks.remove(&5);
        assert_eq!(queue.next(now), Err(later));
        // Once the failing task is due again, it goes first.
        assert_eq!(queue.next(now + Duration::from_secs(61)), Ok(1));
    }

    #[test]
    fn indexes_wait_for_the_signing_keys_and_a_batch_for_its_own_earlier_tasks() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(5));
        let mut queue = Queue::default();
        queue.tasks.extend([
            queued(1, OutboxTask::SigningKeys, later),
            queued(2, OutboxTask::SyncGaen("VN-TB".into()), None),
            queued(3, OutboxTask::SyncRegion("VN-TB".into()), None),
            queued(4, OutboxTask::PutBatch("b1".into()), later),
            queued(5, OutboxTask::DeleteBatch("b1".into()), None),
            queued(6, OutboxTask::PutBatch("b2".into()), None),
        ]);
        assert_eq!(queue.next(now), Ok(6));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (1..=6).map(|n| backoff.after(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.after(u32::MAX).as_millis(), 1000);
    }
}

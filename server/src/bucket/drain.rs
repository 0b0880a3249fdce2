//! The background task that empties the outbox into the bucket: oldest task first, each
//! retried with exponential backoff until it succeeds (a later task never overtakes an earlier
//! one, which keeps section 10's order), and deleted from the outbox once done. It starts at
//! once, so tasks a crash or an outage left queued are retried after a restart.
//!
//! The health of the server does not depend on it: while the bucket is unreachable phones are
//! still served by gRPC and the HTTP listener, and the queue's length and age are exported as
//! `exposure_publish_queue_length` and `exposure_publish_queue_oldest_seconds`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::sync::Syncer;
use crate::clock::Clock;
use crate::metrics;
use crate::storage::Store;
use crate::storage::outbox::OutboxEntry;

/// How often the queue gauges are refreshed while nothing happens.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

/// Retry delays of a failing task: doubling from `initial` up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
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
    let mut delay = backoff.initial;
    let mut failures: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let first = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.outbox_first()).await
        };
        refresh_gauges(&store, &clock).await;
        let entry: OutboxEntry = match first {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) => {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(GAUGE_REFRESH) => {}
                }
                continue;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the publish outbox");
                wait(&cancel, &mut delay, backoff).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "publish outbox read task failed");
                wait(&cancel, &mut delay, backoff).await;
                continue;
            }
        };
        match syncer.apply(&entry.task).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "object storage reachable again");
                }
                failures = 0;
                delay = backoff.initial;
                ::metrics::counter!(metrics::PUBLISH_OBJECT_TASKS_TOTAL, "result" => "done")
                    .increment(1);
                let store = store.clone();
                let sequence = entry.sequence;
                match tokio::task::spawn_blocking(move || store.outbox_done(sequence)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "cannot remove a done publish task"),
                    Err(error) => tracing::error!(%error, "publish outbox task failed"),
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                ::metrics::counter!(metrics::PUBLISH_OBJECT_TASKS_TOTAL, "result" => "retry")
                    .increment(1);
                // The first failure of a series and then every tenth are logged.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(%error, task = entry.task.kind(), failures,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "object-storage write failed; it stays queued and is retried");
                }
                wait(&cancel, &mut delay, backoff).await;
            }
        }
    }
    tracing::debug!("object-storage publishing stopped");
}

/// Sleeps `delay` (or until shutdown), then doubles it up to the maximum.
async fn wait(cancel: &CancellationToken, delay: &mut Duration, backoff: Backoff) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(backoff.max);
}

/// Sets the queue gauges from the outbox.
async fn refresh_gauges(store: &Store, clock: &Clock) {
    let store = store.clone();
    let Ok(Ok((length, oldest))) = tokio::task::spawn_blocking(move || store.outbox_stats()).await
    else {
        return;
    };
    let age = oldest.map_or(0, |oldest| clock.now().saturating_sub(oldest));
    ::metrics::gauge!(metrics::PUBLISH_QUEUE_LENGTH).set(length as f64);
    ::metrics::gauge!(metrics::PUBLISH_QUEUE_OLDEST_SECONDS).set(age as f64);
}

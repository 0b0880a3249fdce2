//! The publisher (DESIGN.md section 6): every `publish_interval` it releases the keys whose
//! embargo has ended as one signed hourly batch per region, rolls each closed UTC day's hourly
//! batches up into one daily batch, and deletes what retention no longer keeps. The GAEN-scheme
//! keys of each hourly batch also go out as a Google/Apple export zip in the same commit
//! (DESIGN section 11, [`gaen`]). A run of a region with few keys is padded with synthetic keys
//! (DESIGN section 14, [`synthetic`]), published in every channel like real keys.
//!
//! Each batch, the keys' "published" marks and the region's sequence commit in one atomic,
//! synced write, and the batch's confirm digests are bulk-loaded durably just before it. A crash
//! before that write commits no batch and the next run redoes the work (loading the same digests
//! again); a crash after it has nothing left to redo. So no key is lost, none is published
//! twice, and every published element can be confirmed.

mod daily;
mod gaen;
mod hourly;
mod retention;
mod synthetic;

pub use gaen::{GaenSettings, export_key};

use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure_matcher::{
    BatchKind, BatchParams, BuiltBatch, FingerprintWidth, TaggedElement, build_batch,
};
use exposure_proto::v1::{self as api, BatchInfo};
use rayon::prelude::*;
use rocksdb::WriteBatch;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::metrics;
use crate::signing::{InService, KeyRing, SigningError, lifecycle};
use crate::storage::outbox::OutboxTask;
use crate::storage::records::{StoredBatch, StoredKey};
use crate::storage::{StorageError, Store};

/// Errors of a publish run.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store failed; nothing of this run was committed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A batch could not be built.
    #[error("batch build: {0}")]
    Build(String),
}

/// The publishing policy, from the server's configuration.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// A region's run of fewer keys is padded with synthetic keys to this many plus a uniform
    /// random 0..=`pad_jitter` (DESIGN §14).
    pub pad_min_keys: usize,
    /// Upper bound of the random part of the padding target.
    pub pad_jitter: usize,
    /// Fingerprint width of the filters.
    pub width: FingerprintWidth,
    /// What is older than this is deleted.
    pub retention: Duration,
    /// Console audit records older than this are deleted.
    pub audit_retention: Duration,
    /// Threads of the publisher's own rayon pool.
    pub threads: usize,
    /// Most keys in one batch.
    pub max_keys_per_batch: usize,
    /// Most elements (before deduplication) in one batch; a larger release is split.
    pub max_elements_per_batch: u64,
    /// GAEN export files; `None` publishes filter batches only.
    pub gaen: Option<GaenSettings>,
}

impl PublishSettings {
    /// Returns the policy `config` asks for, with filters of `width` (the configuration's
    /// fingerprint bits, already checked).
    pub fn from_config(config: &crate::config::ServerConfig, width: FingerprintWidth) -> Self {
        PublishSettings {
            pad_min_keys: config.pad_min_keys as usize,
            pad_jitter: config.pad_jitter as usize,
            width,
            retention: config.retention(),
            audit_retention: Duration::from_secs(
                u64::from(config.console_audit_retention_days) * 86_400,
            ),
            threads: config.publish_threads as usize,
            max_keys_per_batch: config.max_keys_per_batch as usize,
            max_elements_per_batch: config.max_elements_per_batch,
            gaen: config.gaen_export.then(|| GaenSettings {
                key_id: config.gaen_key_id.clone(),
                window_seconds: config.publish_interval.as_secs().max(1),
            }),
        }
    }
}

/// What one publish run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Hourly batches published.
    pub hourly_batches: usize,
    /// Uploaded keys released in them (synthetic keys not counted).
    pub keys_published: usize,
    /// Daily roll-ups published.
    pub daily_batches: usize,
    /// Uploaded keys deleted by retention (synthetic keys expire too, uncounted).
    pub keys_expired: usize,
    /// Batches deleted by retention.
    pub batches_expired: usize,
    /// GAEN export files written.
    pub gaen_files: usize,
    /// GAEN export files deleted by retention.
    pub gaen_files_expired: usize,
}

/// Publishes batches from the store; `publish_once` is one whole run.
pub struct Publisher {
    store: Store,
    catalog: Catalog,
    /// The signing keys in service, changed by a rotation; read before each batch.
    keys: KeyRing,
    clock: Clock,
    settings: PublishSettings,
    /// The publisher's own rayon pool, sized apart from the global one so that publishing
    /// leaves cores to the request path.
    pool: rayon::ThreadPool,
    /// Cancelled at shutdown: a run then stops before its next batch, so shutdown waits for
    /// one batch at most, never for a whole backlog.
    stop: CancellationToken,
    /// Object-storage hook (DESIGN.md section 10): when publishing to a bucket, each commit
    /// also queues its bucket tasks in the outbox, in the same atomic write, and wakes the
    /// drain task (`crate::bucket::drain`).
    outbox: Option<Arc<Notify>>,
}

impl Publisher {
    /// Returns a publisher over the store, updating `catalog` as it commits.
    pub fn new(
        store: Store,
        catalog: Catalog,
        keys: KeyRing,
        clock: Clock,
        settings: PublishSettings,
    ) -> Result<Self, PublishError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads.max(1))
            .thread_name(|index| format!("publisher-{index}"))
            .build()
            .map_err(|error| PublishError::Build(format!("publisher thread pool: {error}")))?;
        Ok(Self {
            store,
            catalog,
            keys,
            clock,
            settings,
            pool,
            stop: CancellationToken::new(),
            outbox: None,
        })
    }

    /// Makes runs stop before their next batch once `stop` is cancelled.
    #[must_use]
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// Queues object-storage tasks with every commit and notifies `wake` after it.
    #[must_use]
    pub fn with_outbox(mut self, wake: Arc<Notify>) -> Self {
        self.outbox = Some(wake);
        self
    }

    /// Object-storage hook: stages `tasks` into a commit's write when publishing to a bucket
    /// (under the commit lock, held until the write).
    fn stage_outbox(
        &self,
        write: &mut WriteBatch,
        tasks: &[OutboxTask],
        now: u64,
        commits: &std::sync::MutexGuard<'_, ()>,
    ) {
        if self.outbox.is_some() {
            self.store.stage_outbox(write, tasks, now, commits);
        }
    }

    /// Object-storage hook: wakes the drain task after a commit that staged tasks.
    fn wake_outbox(&self) {
        if let Some(wake) = &self.outbox {
            wake.notify_one();
        }
    }

    /// Returns whether `keys` are still the signing keys in service; call under the commit
    /// lock, which a rotation takes too, so a batch never commits with a replaced key and a
    /// GAEN export never without the next key of an overlap.
    fn still_in_service(&self, keys: &InService) -> bool {
        self.keys.in_service().same_keys(keys)
    }

    /// Makes the next signing key current when its overlap is over (DESIGN §15), before the
    /// run builds anything.
    fn end_overlap_if_due(&self, now: u64) -> Result<(), PublishError> {
        let queue: &[OutboxTask] = if self.outbox.is_some() {
            &[OutboxTask::SigningKeys]
        } else {
            &[]
        };
        match lifecycle::switch_if_due(&self.store, &self.keys, now, queue) {
            Ok(true) => {
                self.wake_outbox();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(SigningError::Storage(error)) => Err(error.into()),
            Err(error) => Err(PublishError::Build(format!("signing-key switch: {error}"))),
        }
    }

    /// Returns true once shutdown has begun.
    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Runs hourly publishing, daily roll-ups and retention once. Blocking: call it off the
    /// async runtime. The commit lock is taken per batch, only around its final check and
    /// commit, so a revocation waits for one commit at most, never for a whole run.
    #[tracing::instrument(skip_all)]
    pub fn publish_once(&self) -> Result<PublishReport, PublishError> {
        self.pool.install(|| self.publish_all())
    }

    fn publish_all(&self) -> Result<PublishReport, PublishError> {
        let now = self.clock.now();
        let mut report = PublishReport::default();
        let run = self.publish_steps(now, &mut report);
        // Also after a failed run: a publisher that keeps failing shows its backlog growing.
        self.record_gauges(now);
        run.map(|()| report)
    }

    fn publish_steps(&self, now: u64, report: &mut PublishReport) -> Result<(), PublishError> {
        self.end_overlap_if_due(now)?;
        self.publish_hourly(now, report)?;
        self.publish_gaen_revisions(now, report)?;
        self.publish_daily(now, report)?;
        if !self.stopping() {
            self.apply_retention(now, report)?;
        }
        Ok(())
    }

    /// Sets the gauges a run leaves behind: the keys still waiting, split by whether their
    /// embargo had ended when the run started (so releasable keys are ones the run did not
    /// publish), and the store's size.
    fn record_gauges(&self, run_started: u64) {
        match self.store.pending_keys(run_started) {
            Ok(pending) => {
                ::metrics::gauge!(metrics::PENDING_KEYS, "state" => "releasable")
                    .set(pending.releasable as f64);
                ::metrics::gauge!(metrics::PENDING_KEYS, "state" => "embargoed")
                    .set(pending.embargoed as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot count the pending keys"),
        }
        ::metrics::gauge!(metrics::ROCKSDB_SIZE_BYTES)
            .set(self.store.approximate_size_bytes() as f64);
    }

    /// Builds and commits one batch of `region` from `keys`, signed with the current key; returns
    /// how many real keys it holds and GAEN files went with it, or `None` for an hourly batch
    /// whose keys were all withdrawn meanwhile.
    ///
    /// An hourly batch of fewer keys than `plan.pad_to` gets synthetic keys up to it (DESIGN
    /// §14), stored in the batch's commit; a roll-up republishes the ones its hourly batches
    /// stored. The filter is built without any lock. Under the commit lock the real keys are
    /// checked again (a revocation may have withdrawn some, or an earlier run published them);
    /// if any is gone, the batch is rebuilt without it (padded to the same total), and if a
    /// rotation replaced the signing key, it is rebuilt with the new one. Then the confirm
    /// digests of a first publication are loaded and the batch, its sequence and `extra`'s
    /// writes (given the final real keys) commit in one synced write.
    fn build_and_commit(
        &self,
        region: &str,
        plan: BatchPlan,
        mut keys: Vec<(u64, StoredKey)>,
        now: u64,
        extra: impl Fn(&mut WriteBatch, &[(u64, StoredKey)]),
    ) -> Result<Option<Committed>, PublishError> {
        loop {
            let started = Instant::now();
            let signing = self.keys.in_service();
            let synthetic =
                self.synthetic_keys(region, &keys, plan.pad_to.saturating_sub(keys.len()), now)?;
            let mut expanded = expand(&keys)?;
            expanded.extend(expand(&synthetic)?);
            let expanded_at = Instant::now();
            let elements: Vec<TaggedElement> = expanded
                .iter()
                .flat_map(|(_, elements)| elements.iter().copied())
                .collect();
            // Only the publisher moves batch sequences, and its runs do not overlap.
            let sequence = self.store.batch_sequence(region)? + 1;
            let params = BatchParams {
                region: region.to_owned(),
                sequence,
                kind: plan.kind,
                created_at: now,
                width: self.settings.width,
                // Padding is the synthetic keys, never random filter elements: those would have
                // no confirm digest and no GAEN key behind them (DESIGN §14).
                min_elements: 0,
            };
            let built = build_batch(
                &params,
                &elements,
                &signing.current.signer,
                &mut rand::rngs::OsRng,
            )
            .map_err(|error| PublishError::Build(error.to_string()))?;
            // The GAEN export of the same keys rides the same commit (hourly batches only: a
            // roll-up republishes keys already exported).
            let gaen = match plan.kind {
                BatchKind::Hourly => {
                    let published: Vec<&StoredKey> =
                        keys.iter().chain(&synthetic).map(|(_, key)| key).collect();
                    self.prepare_gaen(region, &published, now, &signing)?
                }
                BatchKind::Daily => None,
            };
            let built_at = Instant::now();

            let commits = self.store.lock_commits();
            if !self.still_in_service(&signing) {
                drop(commits);
                tracing::info!("signing key rotated during the build; rebuilding the batch");
                continue;
            }
            let live = self.live_keys(plan.kind, &keys)?;
            if live.len() != keys.len() {
                drop(commits);
                tracing::info!(
                    %region,
                    withdrawn = keys.len() - live.len(),
                    "keys withdrawn during the build; rebuilding the batch"
                );
                if live.is_empty() && plan.kind == BatchKind::Hourly {
                    return Ok(None);
                }
                keys = live;
                continue;
            }
            let info = batch_info(
                &built,
                &params,
                signing.current.signer.key_id(),
                plan.supersedes.clone(),
                plan.day_number,
            );
            let record = StoredBatch {
                info: Some(info.clone()),
                key_sequences: keys
                    .iter()
                    .chain(&synthetic)
                    .map(|(sequence, _)| *sequence)
                    .collect(),
                region: region.to_owned(),
            };
            let mut write = WriteBatch::default();
            self.store.put_batch(&mut write, &record, &built.bytes);
            self.store.put_batch_sequence(&mut write, region, sequence);
            extra(&mut write, &keys);
            for (sequence, key) in &synthetic {
                self.store.put_synthetic_key(&mut write, *sequence, key);
            }
            // Object-storage hook: the file goes up before the region's indexes name it.
            self.stage_outbox(
                &mut write,
                &[
                    OutboxTask::PutBatch(info.batch_id.clone()),
                    OutboxTask::SyncRegion(region.to_owned()),
                ],
                now,
                &commits,
            );
            if let Some(gaen) = &gaen {
                self.stage_gaen(&mut write, region, gaen, now, &commits);
            }
            if plan.load_digests {
                let digests = expanded
                    .iter()
                    .flat_map(|(sequence, elements)| {
                        elements
                            .iter()
                            .map(|element| (element.tag.confirm_digest(), *sequence))
                    })
                    .collect();
                self.store.load_digests(region, digests)?;
            }
            let staged_at = Instant::now();
            self.store.write_synced(write)?;
            // Listed before the commit lock goes (object-storage hook): a region sync takes
            // its snapshot of the catalog under that lock, so it never sees a committed batch
            // unlisted and misses it.
            self.catalog.insert(region, info);
            drop(commits);
            self.wake_outbox();
            if let Some(gaen) = &gaen {
                ::metrics::counter!(metrics::GAEN_FILES_PUBLISHED_TOTAL)
                    .increment(gaen.file_count() as u64);
            }

            let kind_label = kind_label(plan.kind);
            ::metrics::counter!(metrics::BATCHES_PUBLISHED_TOTAL, "kind" => kind_label)
                .increment(1);
            ::metrics::histogram!(metrics::BATCH_BUILD_SECONDS, "kind" => kind_label)
                .record(started.elapsed().as_secs_f64());
            ::metrics::histogram!(metrics::BATCH_SIZE_BYTES, "kind" => kind_label)
                .record(built.bytes.len() as f64);
            ::metrics::histogram!(metrics::BATCH_ELEMENTS, "kind" => kind_label)
                .record(f64::from(built.element_count));
            tracing::info!(%region, sequence, kind = kind_label, keys = keys.len(),
                synthetic_keys = synthetic.len(), elements = built.element_count,
                real_elements = built.real_elements, bytes = built.bytes.len(),
                expand_ms = millis(expanded_at - started), filter_ms = millis(built_at - expanded_at),
                stage_ms = millis(staged_at - built_at), write_ms = millis(staged_at.elapsed()),
                total_ms = millis(started.elapsed()), "batch published");
            return Ok(Some(Committed {
                keys: keys.len(),
                gaen_files: gaen.as_ref().map_or(0, |gaen| gaen.file_count()),
            }));
        }
    }

    /// Returns the keys of `keys` that may still go into a batch of `kind`: not withdrawn
    /// and, for an hourly batch, not yet published. Call under the commit lock.
    fn live_keys(
        &self,
        kind: BatchKind,
        keys: &[(u64, StoredKey)],
    ) -> Result<Vec<(u64, StoredKey)>, PublishError> {
        let sequences: Vec<u64> = keys.iter().map(|(sequence, _)| *sequence).collect();
        let mut live = self.store.keys(&sequences)?;
        if kind == BatchKind::Hourly {
            let mut pending = Vec::with_capacity(live.len());
            for (sequence, key) in live {
                if self.store.is_pending(sequence, key.release_at)? {
                    pending.push((sequence, key));
                }
            }
            live = pending;
        }
        Ok(live)
    }
}

/// What one batch commit published.
struct Committed {
    /// Keys in the batch.
    keys: usize,
    /// GAEN export files committed with it.
    gaen_files: usize,
}

/// What kind of batch to build, and what its listing says about it.
struct BatchPlan {
    /// Hourly or daily.
    kind: BatchKind,
    /// For a daily roll-up: the hourly sequences it replaces.
    supersedes: Vec<u64>,
    /// For a daily roll-up: the UTC day it covers; 0 for hourly batches.
    day_number: u32,
    /// True when the batch publishes its elements for the first time, so their confirm
    /// digests are loaded; a roll-up republishes digests that are already there.
    load_digests: bool,
    /// Keys the batch holds at least, synthetic keys making up the difference (DESIGN §14);
    /// 0 for no padding.
    pad_to: usize,
}

impl BatchPlan {
    /// An hourly batch padded to `pad_to` keys.
    fn hourly(pad_to: usize) -> Self {
        Self {
            pad_to,
            load_digests: true,
            kind: BatchKind::Hourly,
            supersedes: Vec::new(),
            day_number: 0,
        }
    }

    /// The roll-up of `day`, replacing the hourly batches `supersedes`.
    fn daily(day: u64, supersedes: Vec<u64>) -> Self {
        Self {
            pad_to: 0,
            load_digests: false,
            kind: BatchKind::Daily,
            supersedes,
            day_number: u32::try_from(day).unwrap_or(u32::MAX),
        }
    }
}

/// Expands keys into their tagged elements on the rayon pool, keeping which key each came from.
fn expand(keys: &[(u64, StoredKey)]) -> Result<Vec<(u64, Vec<TaggedElement>)>, PublishError> {
    keys.par_iter()
        .map(|(sequence, key)| {
            let elements = key
                .matcher_key()?
                .tagged_elements()
                .map_err(|error| PublishError::Build(format!("key {sequence}: {error}")))?;
            Ok((*sequence, elements))
        })
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn kind_label(kind: BatchKind) -> &'static str {
    match kind {
        BatchKind::Hourly => "hourly",
        BatchKind::Daily => "daily",
    }
}

fn batch_info(
    built: &BuiltBatch,
    params: &BatchParams,
    key_id: &str,
    supersedes: Vec<u64>,
    day_number: u32,
) -> BatchInfo {
    BatchInfo {
        batch_id: built.batch_id.clone(),
        sequence: params.sequence,
        kind: match params.kind {
            BatchKind::Hourly => api::BatchKind::Hourly as i32,
            BatchKind::Daily => api::BatchKind::Daily as i32,
        },
        created_at: params.created_at,
        slot_min: built.slot_min,
        slot_max: built.slot_max,
        element_count: built.element_count,
        size_bytes: built.bytes.len() as u64,
        key_id: key_id.to_owned(),
        supersedes,
        fingerprint_bits: params.width.bits(),
        day_number,
    }
}

/// Runs the publisher every `interval` until `cancel` fires. The first run starts at once, so
/// a restarted server catches up on what a crash left unpublished.
pub async fn run_periodically(
    publisher: Arc<Publisher>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let publisher = publisher.clone();
        match tokio::task::spawn_blocking(move || publisher.publish_once()).await {
            Ok(Ok(report)) if report != PublishReport::default() => {
                tracing::info!(?report, "publish run done")
            }
            Ok(Ok(_)) => tracing::debug!("publish run found nothing to do"),
            Ok(Err(error)) => tracing::error!(%error, "publish run failed; it will be retried"),
            Err(error) => tracing::error!(%error, "publish run panicked; it will be retried"),
        }
    }
    tracing::debug!("publisher stopped");
}

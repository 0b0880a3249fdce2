//! Continuous backup to object storage (`--backup-to`, DESIGN.md section 15): a checkpoint at
//! start and every `--backup-full-interval`, uploading only the files the bucket lacks, and
//! between checkpoints the write-ahead log's new records every `--backup-log-interval`, as
//! sealed objects named by their sequence numbers (layout in [`super::remote`]).
//!
//! Progress lives in the bucket: a checkpoint exists once its manifest is written (after its
//! files), and each log object continues the one before it, so a restore reads the newest
//! checkpoint and its unbroken chain of logs. A restart begins with a new checkpoint, which
//! holds everything the store holds, so nothing is missed or shipped twice across it. So does
//! a gap in the log (the WAL no longer reaches back, or a bulk load of confirm digests, which
//! bypasses the WAL): the next checkpoint follows at once and uploads only the new files.
//! Records written after such a bulk load are in the bucket only once that checkpoint is (the
//! recovery point of a publish run's window is the checkpoint's duration); otherwise the log
//! is shipped on while a checkpoint is made. After each checkpoint, [`super::prune`] keeps the
//! newest `--backup-keep`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::manifest;
use super::remote::{self, CheckpointFile, CheckpointManifest};
use super::seal::{KEY_BYTES, Sealer};
use super::{BackupError, snapshot};
use crate::bucket::Bucket;
use crate::metrics::{
    BACKUP_CHECKPOINTS_TOTAL, BACKUP_FAILURES_TOTAL, BACKUP_LAG_BYTES, BACKUP_LAG_SECONDS,
    BACKUP_LOG_OBJECTS_TOTAL,
};
use crate::storage::Store;

/// Content type of every backup object.
const CONTENT_TYPE: &str = "application/octet-stream";
/// Backups are never cached between the bucket and its reader.
const CACHE_CONTROL: &str = "private, no-store";
/// Most WAL bytes in one log object; a tick ships several when it is behind.
const MAX_LOG_OBJECT_BYTES: u64 = 16 * 1024 * 1024;
/// Delay before retrying a failed checkpoint, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest delay between checkpoint attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What the shipper needs.
pub struct Shipper {
    /// Where backups go.
    pub bucket: Bucket,
    /// The store shipped.
    pub store: Store,
    /// Its data directory (snapshots are staged in it).
    pub data_dir: PathBuf,
    /// The backup key; `None`: objects are stored as they are, without private signing keys.
    pub key: Option<[u8; KEY_BYTES]>,
    /// `--backup-full-interval`.
    pub full_interval: Duration,
    /// `--backup-log-interval`.
    pub log_interval: Duration,
    /// `--backup-keep`: complete checkpoints kept in the bucket (see [`super::prune`]).
    pub keep: usize,
}

/// The checkpoint the shipper extends with logs.
struct Chain {
    /// Its id (see `remote`).
    id: String,
    /// The last sequence shipped.
    last: u64,
    /// When it was made, for `--backup-full-interval`.
    made: Instant,
    /// The store's bulk-load count when it was made.
    bulk_loads: u64,
    /// The log no longer continues it (a bulk load or a gap): nothing more is shipped on it,
    /// and a new checkpoint is due.
    ended: bool,
}

/// Why a tick stopped.
enum Tick {
    /// Everything up to the sequence read at the tick's start is in the bucket.
    CaughtUp,
    /// The log does not continue the chain: a new checkpoint is due.
    NeedsCheckpoint,
}

/// Runs the shipper until `cancel`; ships once more on the way out (after finishing a
/// checkpoint in progress).
///
/// A checkpoint runs beside the log: while it is made (a snapshot, hashing, the upload of its
/// new files, which take seconds on a large store), the current chain is still extended every
/// half interval, so the recovery point stays about one log interval through it. Only a chain
/// the log no longer continues (after a bulk load or a gap) waits for the new checkpoint.
pub async fn run(shipper: Shipper, cancel: CancellationToken) {
    let shipper = Arc::new(shipper);
    let sealer = match shipper.sealer().await {
        Ok(sealer) => sealer.map(Arc::new),
        Err(error) => {
            tracing::error!(%error, "continuous backup cannot start");
            metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "checkpoint").increment(1);
            return;
        }
    };
    let mut chain: Option<Chain> = None;
    let mut making: Option<tokio::task::JoinHandle<Result<Chain, BackupError>>> = None;
    let mut retry = FIRST_RETRY;
    let mut next_try = Instant::now();
    let mut caught_up_at = Instant::now();
    loop {
        let due = chain
            .as_ref()
            .is_none_or(|chain| chain.ended || chain.made.elapsed() >= shipper.full_interval);
        if due && making.is_none() && Instant::now() >= next_try {
            let (shipper, sealer) = (shipper.clone(), sealer.clone());
            making = Some(tokio::spawn(
                async move { shipper.checkpoint(sealer).await },
            ));
        }
        // Reads every half interval, so a record is in the bucket within about one interval
        // of its write even counting the upload's own time.
        let stopping = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep(shipper.log_interval / 2) => false,
        };
        if let Some(handle) = making.take_if(|handle| stopping || handle.is_finished()) {
            let made = handle
                .await
                .unwrap_or_else(|error| Err(BackupError::Upload(error.to_string())));
            match made {
                Ok(made) => {
                    tracing::info!(sequence = made.last, "backup checkpoint written");
                    metrics::counter!(BACKUP_CHECKPOINTS_TOTAL).increment(1);
                    chain = Some(made);
                    retry = FIRST_RETRY;
                    shipper.prune().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "backup checkpoint failed");
                    metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "checkpoint").increment(1);
                    next_try = Instant::now() + retry;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        if let Some(current) = chain.as_mut().filter(|chain| !chain.ended) {
            let started = Instant::now();
            match shipper.ship(current, sealer.clone()).await {
                Ok(Tick::CaughtUp) => {
                    caught_up_at = started;
                    metrics::gauge!(BACKUP_LAG_BYTES).set(0.0);
                }
                Ok(Tick::NeedsCheckpoint) => current.ended = true,
                Err(error) => {
                    tracing::warn!(%error, "backup log shipping failed");
                    metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "log").increment(1);
                }
            }
        }
        metrics::gauge!(BACKUP_LAG_SECONDS).set(caught_up_at.elapsed().as_secs_f64());
        if stopping {
            return;
        }
    }
}

impl Shipper {
    /// Returns the sealer of the store's deployment, when a key is given.
    async fn sealer(&self) -> Result<Option<Sealer>, BackupError> {
        let Some(key) = self.key else {
            return Ok(None);
        };
        let store = self.store.clone();
        let deployment = tokio::task::spawn_blocking(move || store.ensure_deployment_id())
            .await
            .map_err(|error| BackupError::Upload(error.to_string()))??;
        Sealer::new(&key, &deployment)
            .map(Some)
            .map_err(BackupError::Usage)
    }

    /// Deletes the checkpoints beyond the newest `keep` and what only they need; a failure is
    /// counted and retried after the next checkpoint.
    async fn prune(&self) {
        match super::prune::prune(&self.bucket, self.keep, self.key.as_ref()).await {
            Ok(pruned) => {
                if pruned.deleted > 0 || pruned.failed > 0 {
                    tracing::info!(
                        deleted = pruned.deleted,
                        failed = pruned.failed,
                        keep = self.keep,
                        "old backup checkpoints pruned"
                    );
                }
                if pruned.failed > 0 {
                    metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "prune")
                        .increment(pruned.failed as u64);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "old backup checkpoints could not be pruned");
                metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "prune").increment(1);
            }
        }
    }

    /// Takes a snapshot and uploads it as a new checkpoint; returns its chain.
    async fn checkpoint(&self, sealer: Option<Arc<Sealer>>) -> Result<Chain, BackupError> {
        let name = format!("continuous-{:016x}", rand::random::<u64>());
        let bulk_loads = self.store.bulk_loads();
        let made = Instant::now();
        let (store, data_dir, snapshot_name) =
            (self.store.clone(), self.data_dir.clone(), name.clone());
        let taken = tokio::task::spawn_blocking(move || {
            snapshot::take(&store, &data_dir, &snapshot_name, None)
        })
        .await
        .map_err(|error| BackupError::Upload(error.to_string()))?;
        let uploaded = match taken {
            Ok(snapshot) => self.upload_checkpoint(&snapshot, sealer).await,
            Err(error) => Err(error),
        };
        snapshot::discard(&self.data_dir, &name);
        let (id, sequence) = uploaded?;
        Ok(Chain {
            id,
            last: sequence,
            made,
            bulk_loads,
            ended: false,
        })
    }

    /// Uploads the files of `snapshot` the bucket lacks, then its manifest; returns the
    /// checkpoint's id and sequence.
    async fn upload_checkpoint(
        &self,
        snapshot: &Path,
        sealer: Option<Arc<Sealer>>,
    ) -> Result<(String, u64), BackupError> {
        let include_signing_keys = sealer.is_some();
        let folder = snapshot.to_owned();
        let (sequence, deployment, files) =
            tokio::task::spawn_blocking(move || describe_snapshot(&folder, include_signing_keys))
                .await
                .map_err(|error| BackupError::Upload(error.to_string()))??;
        for file in &files {
            let object = remote::file_name(&file.digest);
            if self.bucket.exists(&object).await.map_err(upload_error)? {
                continue;
            }
            let source = snapshot.join(&file.path);
            match &sealer {
                Some(sealer) => {
                    let sealed = snapshot.with_extension("sealing");
                    let (sealer, from, to, name) = (
                        sealer.clone(),
                        source.clone(),
                        sealed.clone(),
                        object.clone(),
                    );
                    tokio::task::spawn_blocking(move || seal_to_file(&sealer, &name, &from, &to))
                        .await
                        .map_err(|error| BackupError::Upload(error.to_string()))??;
                    let put = self
                        .bucket
                        .put_file(&object, &sealed, CONTENT_TYPE, CACHE_CONTROL)
                        .await;
                    let _ = std::fs::remove_file(&sealed);
                    put.map_err(upload_error)?;
                }
                None => {
                    self.bucket
                        .put_file(&object, &source, CONTENT_TYPE, CACHE_CONTROL)
                        .await
                        .map_err(upload_error)?;
                }
            }
        }
        let created_ms = unix_millis();
        let id = remote::checkpoint_id(created_ms, sequence);
        let manifest = CheckpointManifest {
            deployment: deployment.unwrap_or_default(),
            sequence,
            created_ms,
            files,
        };
        let name = remote::manifest_name(&id);
        let text = manifest.to_text().into_bytes();
        let body = match &sealer {
            Some(sealer) => sealer.seal(&name, sequence, &text),
            None => text,
        };
        self.bucket
            .put(&name, Bytes::from(body), CONTENT_TYPE, CACHE_CONTROL)
            .await
            .map_err(upload_error)?;
        Ok((id, sequence))
    }

    /// Ships the log records written since the chain's last, one object per
    /// [`MAX_LOG_OBJECT_BYTES`].
    async fn ship(
        &self,
        chain: &mut Chain,
        sealer: Option<Arc<Sealer>>,
    ) -> Result<Tick, BackupError> {
        let until = self.store.latest_sequence();
        loop {
            let (store, after) = (self.store.clone(), chain.last);
            let read = tokio::task::spawn_blocking(move || {
                store.log_records_after(after, until, MAX_LOG_OBJECT_BYTES)
            })
            .await
            .map_err(|error| BackupError::Upload(error.to_string()))??;
            metrics::gauge!(BACKUP_LAG_BYTES).set(read.bytes as f64);
            // A bulk load since the checkpoint is not in the log, and records read after it
            // may depend on it (the publish run's commit of the digests it loaded): they wait
            // for the next checkpoint, which holds both. The counter moves before that commit
            // is written, so a read that holds the commit sees it moved.
            if self.store.bulk_loads() != chain.bulk_loads {
                return Ok(Tick::NeedsCheckpoint);
            }
            if let (Some(first), Some(last)) = (read.records.first(), read.records.last()) {
                let (first, last) = (first.sequence, last.last_sequence());
                let name = remote::log_name(&chain.id, first, last, unix_millis());
                let body = remote::encode_records(&read.records);
                let body = match &sealer {
                    Some(sealer) => sealer.seal(&name, first, &body),
                    None => body,
                };
                self.bucket
                    .put(&name, Bytes::from(body), CONTENT_TYPE, CACHE_CONTROL)
                    .await
                    .map_err(upload_error)?;
                metrics::counter!(BACKUP_LOG_OBJECTS_TOTAL).increment(1);
                chain.last = last;
            }
            // The records before a gap are shipped; what follows needs a new checkpoint.
            if read.gap {
                return Ok(Tick::NeedsCheckpoint);
            }
            if chain.last >= until || read.records.is_empty() {
                return Ok(Tick::CaughtUp);
            }
        }
    }
}

/// Returns the snapshot's last sequence, its deployment id and its files (hashed), without
/// RocksDB's run-time files, and without `signing/` unless `include_signing_keys`.
fn describe_snapshot(
    snapshot: &Path,
    include_signing_keys: bool,
) -> Result<(u64, Option<String>, Vec<CheckpointFile>), BackupError> {
    let store = Store::open_read_only(snapshot)?;
    let sequence = store.latest_sequence();
    let deployment = store.deployment_id()?;
    drop(store);
    let mut files = Vec::new();
    for relative in manifest::list_files(snapshot)? {
        if super::is_runtime_file(&relative)
            || (!include_signing_keys && relative.starts_with("signing/"))
        {
            continue;
        }
        let (digest, length) = manifest::hash_file(&snapshot.join(&relative))?;
        files.push(CheckpointFile {
            digest: hex::encode(digest),
            length,
            path: relative,
        });
    }
    Ok((sequence, deployment, files))
}

/// Seals the file `from` as the object `name` (position 0) into the new file `to`.
fn seal_to_file(sealer: &Sealer, name: &str, from: &Path, to: &Path) -> Result<(), BackupError> {
    let _ = std::fs::remove_file(to);
    let source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut target = std::io::BufWriter::new(manifest::create_private_file(to)?);
    sealer
        .seal_stream(name, 0, std::io::BufReader::new(source), &mut target)
        .map_err(BackupError::io(to))?;
    std::io::Write::flush(&mut target).map_err(BackupError::io(to))
}

/// Returns the machine's Unix time in milliseconds: backup object names carry real time, which
/// `restore --at` compares with.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Maps a bucket error.
fn upload_error(error: crate::bucket::BucketError) -> BackupError {
    BackupError::Upload(error.to_string())
}

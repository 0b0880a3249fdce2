//! Continuous backup to object storage (`--backup-to`, DESIGN.md section 15): a checkpoint at
//! start and every `--backup-full-interval`, uploading only the files the bucket lacks, and
//! between checkpoints the write-ahead log's new records every `--backup-log-interval`, as
//! sealed objects named by their sequence numbers (layout in [`super::remote`]).
//!
//! Progress lives in the bucket: a checkpoint exists once its manifest is written (after its
//! files), and each log object continues the one before it, so a restore reads the newest
//! checkpoint and its unbroken chain of logs. A restart begins with a new checkpoint, which
//! holds everything the store holds, so nothing is missed or shipped twice across it. A publish
//! run's bulk load of confirm digests bypasses the WAL: the store keeps a link to its file, and
//! the shipper ships the file as a log object of its own in its place in the chain (where it
//! took a sequence number, or before the first record that may depend on it), so the log
//! continues past it and the recovery point stays about one log interval through publish
//! runs. A gap in the log (the WAL no longer reaches back) or a load that was not kept (it
//! failed) ends the chain: the next checkpoint follows at once and uploads only the new files;
//! the log is shipped on while a checkpoint is made. After each checkpoint, [`super::prune`]
//! keeps the newest `--backup-keep`.

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
use crate::storage::wal::{KeptLoad, LogRead, LogRecord};

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

/// The log shipping's own cost since the shipper started, logged when it stops (the failover
/// drill reads it to split the backup's cost between the shipper and the bucket).
#[derive(Default)]
struct ShipStats {
    /// Ticks that read the log.
    ticks: u64,
    /// Log objects written.
    objects: u64,
    /// Their plaintext bytes.
    bytes: u64,
    /// Time reading the WAL (on a blocking thread).
    read: Duration,
    /// Time encoding and sealing.
    seal: Duration,
    /// Time waiting for PUTs.
    put: Duration,
}

impl ShipStats {
    /// Logs the totals.
    fn log(&self, since: Instant) {
        let seconds = since.elapsed().as_secs_f64().max(f64::EPSILON);
        tracing::info!(
            ticks = self.ticks,
            objects = self.objects,
            bytes = self.bytes,
            read_s = self.read.as_secs_f64(),
            seal_s = self.seal.as_secs_f64(),
            put_s = self.put.as_secs_f64(),
            objects_per_s = self.objects as f64 / seconds,
            bytes_per_s = self.bytes as f64 / seconds,
            "backup log shipping totals"
        );
    }
}

/// Why a tick stopped.
enum Tick {
    /// Everything up to the sequence read at the tick's start is in the bucket.
    CaughtUp,
    /// The log does not continue the chain: a new checkpoint is due.
    NeedsCheckpoint,
}

/// Nice value of the shipper's thread: under a CPU-bound load, uploads and reads come first
/// and the shipper takes the cores' idle time (it needs a few percent of one core).
const SHIPPER_NICE: i32 = 10;

/// Runs [`run`] on a thread of its own, at a lower priority ([`SHIPPER_NICE`]), with its own
/// single-threaded runtime (whose blocking threads inherit the priority): reading the WAL,
/// sealing and the PUTs' TLS and HTTP work then never take the server runtime's worker threads.
/// The future completes when the shipper has stopped.
pub async fn run_on_own_thread(shipper: Shipper, cancel: CancellationToken) {
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("backup-shipper".into())
        .spawn(move || {
            lower_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("backup-shipper-io")
                .build()
            {
                Ok(runtime) => runtime.block_on(run(shipper, cancel)),
                Err(error) => {
                    tracing::error!(%error, "continuous backup cannot start its runtime");
                    metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "checkpoint").increment(1);
                }
            }
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = stopped.await;
        }
        Err(error) => {
            tracing::error!(%error, "continuous backup cannot start its thread");
            metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "checkpoint").increment(1);
        }
    }
}

/// Lowers the calling thread's priority to [`SHIPPER_NICE`]; a failure is logged and ignored.
fn lower_priority() {
    if let Err(error) = crate::sys::set_thread_nice(SHIPPER_NICE) {
        tracing::warn!(%error, "the backup shipper's priority could not be lowered");
    }
}

/// Runs the shipper until `cancel`; ships once more on the way out (after finishing a
/// checkpoint in progress).
///
/// A checkpoint runs beside the log: while it is made (a snapshot, hashing, the upload of its
/// new files, which take seconds on a large store), the current chain is still extended every
/// interval. Only a chain the log no longer continues (after a gap or a load that was not kept)
/// waits for the new checkpoint.
///
/// One read and one PUT per log interval, with everything since the last: a record is in the
/// bucket within one interval plus the upload's time of its write (the goal is two), and each
/// tick's read (RocksDB's WAL iterator scans the current WAL file from its start up to the
/// chain's last sequence) and PUT happen as rarely as that allows.
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
    if let Err(error) = shipper.store.keep_bulk_loads() {
        tracing::error!(%error, "continuous backup cannot keep bulk loads");
        metrics::counter!(BACKUP_FAILURES_TOTAL, "stage" => "checkpoint").increment(1);
        return;
    }
    let mut chain: Option<Chain> = None;
    let mut making: Option<tokio::task::JoinHandle<Result<Chain, BackupError>>> = None;
    let mut retry = FIRST_RETRY;
    let mut next_try = Instant::now();
    let mut caught_up_at = Instant::now();
    let (mut stats, started) = (ShipStats::default(), Instant::now());
    let mut next_tick = tokio::time::Instant::now() + shipper.log_interval;
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
        let stopping = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep_until(next_tick) => false,
        };
        // A tick that ran late is followed at once, not by a burst.
        next_tick = (next_tick + shipper.log_interval).max(tokio::time::Instant::now());
        if let Some(handle) = making.take_if(|handle| stopping || handle.is_finished()) {
            let made = handle
                .await
                .unwrap_or_else(|error| Err(BackupError::Upload(error.to_string())));
            match made {
                Ok(made) => {
                    tracing::info!(sequence = made.last, "backup checkpoint written");
                    metrics::counter!(BACKUP_CHECKPOINTS_TOTAL).increment(1);
                    // Its snapshot holds the loads it counted.
                    shipper.store.forget_kept_loads(made.bulk_loads);
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
            match shipper.ship(current, sealer.clone(), &mut stats).await {
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
            // A checkpoint being made may still need the loads this chain shipped.
            if making.is_none() {
                shipper.store.forget_kept_loads(current.bulk_loads);
            }
        }
        metrics::gauge!(BACKUP_LAG_SECONDS).set(caught_up_at.elapsed().as_secs_f64());
        if stopping {
            stats.log(started);
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
        // A load while the snapshot was taken may or may not be in it: the log cannot
        // continue it, so the next checkpoint follows.
        let loaded_meanwhile = self.store.bulk_loads() != bulk_loads;
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
            ended: loaded_meanwhile,
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
                    tokio::task::spawn_blocking(move || {
                        seal_to_file(&sealer, &name, 0, &from, &to)
                    })
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
    /// [`MAX_LOG_OBJECT_BYTES`], and each publish run's bulk load in its place among them
    /// (see [`place_load`]).
    async fn ship(
        &self,
        chain: &mut Chain,
        sealer: Option<Arc<Sealer>>,
        stats: &mut ShipStats,
    ) -> Result<Tick, BackupError> {
        let until = self.store.latest_sequence();
        stats.ticks += 1;
        loop {
            let reading = Instant::now();
            let (store, after) = (self.store.clone(), chain.last);
            // The loads are read after the records: a record that depends on a load (its
            // publish run's commit) is written after the load is kept, so it is never read
            // without its load.
            let (read, (loads_made, kept)) = tokio::task::spawn_blocking(move || {
                let read = store.log_records_after(after, until, MAX_LOG_OBJECT_BYTES)?;
                Ok::<_, BackupError>((read, store.kept_loads()))
            })
            .await
            .map_err(|error| BackupError::Upload(error.to_string()))??;
            stats.read += reading.elapsed();
            metrics::gauge!(BACKUP_LAG_BYTES).set(read.bytes as f64);
            let pending: Vec<KeptLoad> = kept
                .into_iter()
                .filter(|load| load.number > chain.bulk_loads)
                .collect();
            // A load that was not kept (it failed, and may still have taken its file in) is
            // not in the log: the next checkpoint holds it.
            let all_kept = pending
                .iter()
                .zip(chain.bulk_loads + 1..)
                .all(|(load, number)| load.number == number);
            if !all_kept || pending.len() as u64 != loads_made - chain.bulk_loads {
                return Ok(Tick::NeedsCheckpoint);
            }
            let LogRead {
                mut records, gap, ..
            } = read;
            let place = pending
                .first()
                .and_then(|load| place_load(chain.last, &records, gap, load));
            if let Some((_, records_before)) = place {
                records.truncate(records_before);
            }
            if let (Some(first), Some(last)) = (records.first(), records.last()) {
                let (first, last) = (first.sequence, last.last_sequence());
                let name = remote::log_name(&chain.id, first, last, unix_millis());
                let body = remote::encode_records(&records);
                self.put_sealed(&name, first, body, sealer.as_deref(), stats)
                    .await?;
                chain.last = last;
            }
            if let (Some((took, _)), Some(load)) = (place, pending.first()) {
                self.ship_load(chain, load, took, sealer.clone(), stats)
                    .await?;
                continue;
            }
            // The records before a gap are shipped; what follows needs a new checkpoint.
            if gap {
                return Ok(Tick::NeedsCheckpoint);
            }
            if chain.last >= until || records.is_empty() {
                return Ok(Tick::CaughtUp);
            }
        }
    }

    /// Seals `body` as the log object `name` at `position` (when the backup has a key) and
    /// writes it.
    async fn put_sealed(
        &self,
        name: &str,
        position: u64,
        body: Vec<u8>,
        sealer: Option<&Sealer>,
        stats: &mut ShipStats,
    ) -> Result<(), BackupError> {
        let sealing = Instant::now();
        stats.bytes += body.len() as u64;
        let body = match sealer {
            Some(sealer) => sealer.seal(name, position, &body),
            None => body,
        };
        let putting = Instant::now();
        stats.seal += putting - sealing;
        self.bucket
            .put(name, Bytes::from(body), CONTENT_TYPE, CACHE_CONTROL)
            .await
            .map_err(upload_error)?;
        stats.put += putting.elapsed();
        stats.objects += 1;
        metrics::counter!(BACKUP_LOG_OBJECTS_TOTAL).increment(1);
        Ok(())
    }

    /// Ships the bulk load `load` as the chain's next log object, taking `took` sequence
    /// numbers (0 or 1).
    async fn ship_load(
        &self,
        chain: &mut Chain,
        load: &KeptLoad,
        took: u64,
        sealer: Option<Arc<Sealer>>,
        stats: &mut ShipStats,
    ) -> Result<(), BackupError> {
        let (first, last) = (chain.last + 1, chain.last + took);
        let name = remote::ingest_name(&chain.id, first, last, unix_millis());
        let length = std::fs::metadata(&load.path)
            .map_err(BackupError::io(&load.path))?
            .len();
        match sealer {
            Some(sealer) => {
                let sealing = Instant::now();
                let sealed = load.path.with_extension("sealed");
                let (from, to, object) = (load.path.clone(), sealed.clone(), name.clone());
                tokio::task::spawn_blocking(move || {
                    seal_to_file(&sealer, &object, first, &from, &to)
                })
                .await
                .map_err(|error| BackupError::Upload(error.to_string()))??;
                let putting = Instant::now();
                stats.seal += putting - sealing;
                let put = self
                    .bucket
                    .put_file(&name, &sealed, CONTENT_TYPE, CACHE_CONTROL)
                    .await;
                let _ = std::fs::remove_file(&sealed);
                put.map_err(upload_error)?;
                stats.put += putting.elapsed();
            }
            None => {
                let putting = Instant::now();
                self.bucket
                    .put_file(&name, &load.path, CONTENT_TYPE, CACHE_CONTROL)
                    .await
                    .map_err(upload_error)?;
                stats.put += putting.elapsed();
            }
        }
        tracing::info!(
            load = load.number,
            bytes = length,
            position = first,
            "bulk load shipped in the backup log"
        );
        stats.objects += 1;
        stats.bytes += length;
        metrics::counter!(BACKUP_LOG_OBJECTS_TOTAL).increment(1);
        chain.last = last;
        chain.bulk_loads = load.number;
        Ok(())
    }
}

/// Finds where the bulk load `load` sits among the contiguous `records` read after sequence
/// `after` (`gap`: the log did not continue past them): it took the sequence number where the
/// log stops (a gap within the sequences around its ingestion), or none, and then sits after
/// the records up to its `after` sequence. Returns the sequence numbers it took and how many
/// of `records` come before it; `None` while the records read do not reach it.
fn place_load(
    after: u64,
    records: &[LogRecord],
    gap: bool,
    load: &KeptLoad,
) -> Option<(u64, usize)> {
    let end = records.last().map_or(after, LogRecord::last_sequence);
    if gap && load.before < end + 1 && end < load.after {
        return Some((1, records.len()));
    }
    if end >= load.after {
        let before = records
            .iter()
            .take_while(|record| record.last_sequence() <= load.after)
            .count();
        return Some((0, before));
    }
    None
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

/// Seals the file `from` as the object `name` at `position` into the new file `to`.
fn seal_to_file(
    sealer: &Sealer,
    name: &str,
    position: u64,
    from: &Path,
    to: &Path,
) -> Result<(), BackupError> {
    let _ = std::fs::remove_file(to);
    let source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut target = std::io::BufWriter::new(manifest::create_private_file(to)?);
    sealer
        .seal_stream(name, position, std::io::BufReader::new(source), &mut target)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of `count` operations at `sequence`.
    fn record(sequence: u64, count: u64) -> LogRecord {
        LogRecord {
            sequence,
            count,
            data: Vec::new(),
        }
    }

    /// A load ingested between sequences `before` and `after`.
    fn load(before: u64, after: u64) -> KeptLoad {
        KeptLoad {
            number: 1,
            path: PathBuf::from("load"),
            before,
            after,
        }
    }

    #[test]
    fn a_load_sits_at_its_gap_or_after_the_records_before_it() {
        // Records 11..=12 and 13..=15, then the log stops at 16: the load (ingested between
        // 14 and 17, two uploads beside it) took 16.
        let records = [record(11, 2), record(13, 3)];
        assert_eq!(place_load(10, &records, true, &load(14, 17)), Some((1, 2)));
        // A gap outside the load's sequences is not the load's.
        assert_eq!(place_load(10, &records, true, &load(16, 20)), None);
        assert_eq!(place_load(10, &records, true, &load(2, 5)), Some((0, 0)));
        // Nothing read after 10 yet, the log stopping at 11: the load took 11.
        assert_eq!(place_load(10, &[], true, &load(10, 11)), Some((1, 0)));
        // A load that took none sits after the records up to its `after`, before the rest.
        assert_eq!(place_load(10, &records, false, &load(11, 12)), Some((0, 1)));
        // Records that do not reach the load yet: shipped, the load waits.
        assert_eq!(place_load(10, &records, false, &load(15, 16)), None);
    }
}

//! `exposure-server restore --from URL`: rebuilds a data directory from a continuous backup in
//! object storage (layout in [`super::remote`]). It takes the newest checkpoint (or the newest
//! made at or before `--at`), fetches and verifies each of its files, opens the store, then
//! applies the checkpoint's log objects in sequence order (those shipped at or before `--at`):
//! WAL records, and publish runs' bulk loads ingested as the publisher ingested them, refusing
//! a gap, an overlap, or an object that does not open; then each region's batch
//! sequence continues after the highest it published anywhere: `--sequence-gap` ahead of the
//! store's, and past the latest sequence of the bucket's region index when `--publish-to` is
//! given. On any failure the target is emptied again.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::remote::{self, CheckpointManifest, LogKind, LogObject};
use super::restore::{RestoreReport, check, empty_again};
use super::seal::{self, KEY_BYTES, Sealer};
use super::{BackupError, manifest};
use crate::bucket::Bucket;
use crate::storage::Store;

/// What a restore from a bucket is asked to do.
pub struct RemoteRestore<'a> {
    /// Restore the state as of this Unix millisecond (`None`: the newest).
    pub at_ms: Option<u64>,
    /// The backup key (required for a sealed backup; given, an unsealed one is refused).
    pub key: Option<&'a [u8; KEY_BYTES]>,
    /// Batch sequences each region skips beyond the restored store's.
    pub sequence_gap: u64,
    /// The public bucket (`--publish-to`), whose region indexes name the highest sequences
    /// published.
    pub published: Option<&'a Bucket>,
}

/// Restores the continuous backup in `bucket` into the missing or empty `data_dir`.
pub async fn restore(
    bucket: &Bucket,
    data_dir: &Path,
    request: RemoteRestore<'_>,
) -> Result<RestoreReport, BackupError> {
    let paths = bucket.all_paths().await.map_err(bucket_error)?;
    let (id, sequence) = newest_checkpoint(&paths, request.at_ms)
        .ok_or_else(|| no_checkpoint(bucket, &paths, request.at_ms))?;
    let manifest_name = remote::manifest_name(&id);
    let body = fetch(bucket, &manifest_name).await?;
    let (sealer, text) = open_manifest(&manifest_name, sequence, &body, request.key)?;
    let manifest = CheckpointManifest::parse(&String::from_utf8_lossy(&text))
        .map_err(|reason| corrupt(&manifest_name, reason))?;
    if manifest.sequence != sequence
        || sealer
            .as_ref()
            .is_some_and(|sealer| sealer.deployment() != manifest.deployment)
    {
        return Err(corrupt(
            &manifest_name,
            "its sequence or deployment differs from its name and seal".into(),
        ));
    }
    let floors = match request.published {
        Some(published) => published_sequences(published).await?,
        None => Vec::new(),
    };
    crate::datadir::check_restore_target(data_dir)
        .map_err(|error| BackupError::Usage(error.to_string()))?;
    let created = !data_dir.exists();
    let restored = async {
        let (files, bytes) = fetch_files(bucket, &manifest, sealer.as_ref(), data_dir).await?;
        let log_objects = apply_logs(
            bucket,
            &paths,
            &id,
            sequence,
            request.at_ms,
            sealer.as_ref(),
            data_dir,
        )
        .await?;
        let mut report = check(data_dir, request.sequence_gap, &floors)?;
        report.backup = Path::new(bucket.description())
            .join(remote::CHECKPOINTS)
            .join(&id);
        report.files = files;
        report.bytes = bytes;
        report.sealed_for = sealer.as_ref().map(|sealer| sealer.deployment().to_owned());
        report.log_objects = log_objects;
        Ok::<RestoreReport, BackupError>(report)
    }
    .await;
    if restored.is_err() {
        empty_again(data_dir, created);
    }
    restored
}

/// Returns the id and sequence of the newest checkpoint (made at or before `at_ms`).
fn newest_checkpoint(paths: &[String], at_ms: Option<u64>) -> Option<(String, u64)> {
    paths
        .iter()
        .filter_map(|path| {
            let id = path
                .strip_prefix(remote::CHECKPOINTS)?
                .strip_prefix('/')?
                .strip_suffix("/manifest")?;
            let (created_ms, sequence) = remote::parse_checkpoint_id(id)?;
            at_ms
                .is_none_or(|at| created_ms <= at)
                .then(|| (id.to_owned(), sequence))
        })
        .max()
}

/// Returns the error for a bucket without a checkpoint to restore: none at all, or none made
/// by `--at`, when the oldest kept (older ones pruned by `--backup-keep`) is later.
fn no_checkpoint(bucket: &Bucket, paths: &[String], at_ms: Option<u64>) -> BackupError {
    let oldest = super::prune::complete_checkpoints(paths)
        .first()
        .and_then(|id| remote::parse_checkpoint_id(id))
        .map(|(created_ms, _)| created_ms);
    let message = match (at_ms, oldest) {
        (Some(at), Some(oldest)) => format!(
            "--at {}: {} holds no checkpoint made by then; the oldest it keeps was made at {} \
             (older ones are deleted beyond --backup-keep)",
            rfc3339_ms(at),
            bucket.description(),
            rfc3339_ms(oldest)
        ),
        _ => format!("{} holds no checkpoint", bucket.description()),
    };
    BackupError::Usage(message)
}

/// Formats Unix milliseconds as RFC 3339 (UTC, milliseconds).
fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Opens a checkpoint manifest: with `key`, for the deployment its header names; without,
/// only an unsealed one.
pub(super) fn open_manifest(
    name: &str,
    sequence: u64,
    body: &[u8],
    key: Option<&[u8; KEY_BYTES]>,
) -> Result<(Option<Sealer>, Vec<u8>), BackupError> {
    let sealed = body.starts_with(seal::MAGIC);
    match (key, sealed) {
        (Some(key), true) => {
            let deployment =
                seal::deployment_of(body).map_err(|error| corrupt(name, error.to_string()))?;
            let sealer = Sealer::new(key, &deployment).map_err(|reason| corrupt(name, reason))?;
            let text = sealer
                .open(name, sequence, body)
                .map_err(|error| corrupt(name, error.to_string()))?;
            Ok((Some(sealer), text))
        }
        (None, true) => Err(BackupError::Usage(format!(
            "{name} is sealed: give its key with --backup-key-file"
        ))),
        (Some(_), false) => Err(corrupt(
            name,
            "not sealed, but --backup-key-file was given".into(),
        )),
        (None, false) => Ok((None, body.to_vec())),
    }
}

/// Fetches, opens and checks every file of the checkpoint into `data_dir`; returns the files
/// and their bytes.
async fn fetch_files(
    bucket: &Bucket,
    manifest: &CheckpointManifest,
    sealer: Option<&Sealer>,
    data_dir: &Path,
) -> Result<(usize, u64), BackupError> {
    crate::files::create_private_dir(data_dir).map_err(BackupError::io(data_dir))?;
    let mut bytes = 0;
    for file in &manifest.files {
        let name = remote::file_name(&file.digest);
        let body = fetch(bucket, &name).await?;
        let plain = match sealer {
            Some(sealer) => sealer
                .open(&name, 0, &body)
                .map_err(|error| corrupt(&name, error.to_string()))?,
            None => body.to_vec(),
        };
        if hex::encode(Sha256::digest(&plain)) != file.digest || plain.len() as u64 != file.length {
            return Err(corrupt(
                &name,
                format!("checksum mismatch (for {})", file.path),
            ));
        }
        let target = data_dir.join(&file.path);
        if let Some(parent) = target.parent() {
            crate::files::create_private_dir(parent).map_err(BackupError::io(parent))?;
        }
        manifest::write_private_file(&target, &plain)?;
        bytes += file.length;
    }
    for folder in ["db", "signing", "inbox"] {
        let path = data_dir.join(folder);
        if path.is_dir() {
            manifest::sync_dir(&path)?;
        }
    }
    manifest::sync_dir(data_dir)?;
    Ok((manifest.files.len(), bytes))
}

/// Applies the checkpoint's log objects after `sequence` in order, up to `at_ms`; returns how
/// many it applied.
async fn apply_logs(
    bucket: &Bucket,
    paths: &[String],
    id: &str,
    sequence: u64,
    at_ms: Option<u64>,
    sealer: Option<&Sealer>,
    data_dir: &Path,
) -> Result<usize, BackupError> {
    let folder = format!("{}/", remote::log_folder(id));
    let mut objects: Vec<(LogObject, &String)> = paths
        .iter()
        .filter_map(|path| {
            let object = remote::parse_log_name(path.strip_prefix(&folder)?)?;
            Some((object, path))
        })
        .collect();
    objects.sort();
    let store = Store::open(data_dir)?;
    if store.latest_sequence() != sequence {
        return Err(corrupt(
            &remote::manifest_name(id),
            format!(
                "the checkpoint's store ends at sequence {}, not {sequence}",
                store.latest_sequence()
            ),
        ));
    }
    let mut applied = sequence;
    // The primary's sequence numbers minus the restored store's: a replayed bulk load may take
    // a sequence number where the primary's took none, or the other way round.
    let mut shift: i64 = 0;
    let mut count = 0;
    for (object, name) in objects {
        if at_ms.is_some_and(|at| object.shipped_ms > at) {
            break;
        }
        if object.first != applied + 1 {
            let reason = if object.first <= applied {
                format!("overlaps records up to {applied} already applied")
            } else {
                format!(
                    "records {}..={} before it are missing (a log object or a publish run's \
                     bulk load)",
                    applied + 1,
                    object.first - 1
                )
            };
            return Err(corrupt(name, reason));
        }
        let body = fetch(bucket, name).await?;
        let plain = match sealer {
            Some(sealer) => sealer
                .open(name, object.first, &body)
                .map_err(|error| corrupt(name, error.to_string()))?,
            None => body.to_vec(),
        };
        match object.kind {
            LogKind::Records => {
                let records =
                    remote::decode_records(&plain).map_err(|reason| corrupt(name, reason))?;
                for record in &records {
                    store
                        .apply_log_record(record, shift)
                        .map_err(|error| corrupt(name, error.to_string()))?;
                }
            }
            LogKind::Ingest => {
                let file = data_dir.join("ingest").join(format!("restore-{count}.sst"));
                manifest::write_private_file(&file, &plain)?;
                let took = store.apply_bulk_load(&file).map_err(|error| {
                    let _ = std::fs::remove_file(&file);
                    corrupt(name, format!("its file could not be ingested: {error}"))
                })?;
                shift += (object.last + 1 - object.first) as i64 - took as i64;
            }
        }
        let reached = store.latest_sequence().saturating_add_signed(shift);
        if reached != object.last {
            return Err(corrupt(
                name,
                format!("its records end at sequence {reached}, not {}", object.last),
            ));
        }
        applied = object.last;
        count += 1;
    }
    store.flush()?;
    Ok(count)
}

/// Returns each region's latest sequence in the public bucket's region indexes.
async fn published_sequences(published: &Bucket) -> Result<Vec<(String, u64)>, BackupError> {
    let mut floors = Vec::new();
    for path in published.all_paths().await.map_err(bucket_error)? {
        let Some(region) = path
            .strip_prefix("v1/regions/")
            .and_then(|rest| rest.strip_suffix("/index"))
            .filter(|region| !region.contains('/'))
        else {
            continue;
        };
        let body = fetch(published, &path).await?;
        let index: exposure_proto::v1::RegionIndex = prost::Message::decode(body.as_ref())
            .map_err(|error| corrupt(&path, error.to_string()))?;
        floors.push((region.to_owned(), index.latest_sequence));
    }
    Ok(floors)
}

/// Returns an object's body; a missing object is an error naming it.
pub(super) async fn fetch(bucket: &Bucket, name: &str) -> Result<bytes::Bytes, BackupError> {
    bucket
        .get(name)
        .await
        .map_err(bucket_error)?
        .ok_or_else(|| corrupt(name, "missing from the bucket".into()))
}

/// Returns the error for a refused object.
fn corrupt(name: &str, reason: String) -> BackupError {
    BackupError::Corrupt {
        path: name.into(),
        reason,
    }
}

/// Maps a bucket error.
fn bucket_error(error: crate::bucket::BucketError) -> BackupError {
    BackupError::Upload(error.to_string())
}

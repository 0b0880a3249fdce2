//! The point-in-time snapshot a backup copies: a RocksDB checkpoint of the store (hard links to
//! its immutable SST and blob files, after a flush of the memtables, so it is consistent without
//! the WAL), the private signing keys of `signing/`, and the admin requests still waiting in
//! `inbox/`. It is made by whoever holds the store open: the running server, asked through the
//! inbox (the backup command cannot open a store the server holds), or the backup command itself
//! when no server runs. The server applies inbox requests one at a time, so a snapshot taken
//! while applying one sees every earlier request applied and copies the later ones.
//!
//! Snapshots live in `data_dir/backup-staging/NAME/` (on the data directory's filesystem, which
//! checkpoints' hard links need), built in `NAME.tmp/` and renamed when whole; a failure leaves
//! `NAME.failed` with the reason. The backup command deletes its snapshot once copied; a server
//! start deletes any left behind (they pin deleted SST files on disk).

use std::path::{Path, PathBuf};

use super::BackupError;
use super::manifest::{sync_dir, write_private_file};
use crate::storage::Store;

/// Folder of snapshots inside the data directory.
pub const STAGING_DIR: &str = "backup-staging";
/// Suffix of the file that says why a snapshot failed.
const FAILED_SUFFIX: &str = "failed";
/// Largest file of `signing/` or `inbox/` copied (keys and requests are under 1 KiB).
const MAX_SMALL_FILE_BYTES: u64 = 64 * 1024;

/// Returns the staging folder of a data directory.
pub fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(STAGING_DIR)
}

/// Returns whether `name` may name a snapshot: 1 to 64 ASCII letters, digits and `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// Takes a snapshot of the open `store` into `backup-staging/{name}/`; returns its folder.
/// `own_request` is the inbox request that asked for it, which is not copied.
pub fn take(
    store: &Store,
    data_dir: &Path,
    name: &str,
    own_request: Option<&Path>,
) -> Result<PathBuf, BackupError> {
    if !is_valid_name(name) {
        return Err(BackupError::Usage(format!(
            "snapshot name {name:?} is not 1 to 64 letters, digits or '-'"
        )));
    }
    let staging = staging_dir(data_dir);
    crate::files::create_private_dir(&staging).map_err(BackupError::io(&staging))?;
    let building = staging.join(format!("{name}.tmp"));
    let done = staging.join(name);
    for leftover in [&building, &done] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(BackupError::io(leftover))?;
        }
    }
    crate::files::create_private_dir(&building).map_err(BackupError::io(&building))?;
    // Drawn before the checkpoint, so the snapshot holds the id its sealed backup binds.
    store.ensure_deployment_id()?;
    store.checkpoint(&building.join("db"))?;
    copy_small_files(
        &crate::signing::key_dir(data_dir),
        &building.join("signing"),
        |_| true,
    )?;
    copy_small_files(
        &crate::inbox::inbox_dir(data_dir),
        &building.join("inbox"),
        |path| own_request != Some(path) && crate::inbox::is_pending_change(path),
    )?;
    std::fs::rename(&building, &done).map_err(BackupError::io(&done))?;
    sync_dir(&staging)?;
    Ok(done)
}

/// Takes the snapshot an inbox request asks for; a failure is written to `NAME.failed` for the
/// waiting command (the request is done either way: a backup is retried by running it again).
pub fn answer_request(store: &Store, data_dir: &Path, name: &str, request: &Path) {
    match take(store, data_dir, name, Some(request)) {
        Ok(_) => tracing::info!("backup snapshot taken"),
        Err(error) => {
            tracing::error!(%error, "backup snapshot failed");
            if is_valid_name(name) {
                let failed = staging_dir(data_dir).join(format!("{name}.{FAILED_SUFFIX}"));
                let _ = std::fs::remove_file(&failed);
                if let Err(error) = write_private_file(&failed, error.to_string().as_bytes()) {
                    tracing::error!(%error, "backup failure could not be recorded");
                }
            }
        }
    }
}

/// What became of a snapshot request.
pub enum Outcome {
    /// The snapshot is ready in this folder.
    Ready(PathBuf),
    /// The server could not take it, for this reason.
    Failed(String),
    /// Neither yet.
    Pending,
}

/// Returns what became of the snapshot `name`.
pub fn outcome(data_dir: &Path, name: &str) -> Outcome {
    let staging = staging_dir(data_dir);
    let ready = staging.join(name);
    if ready.is_dir() {
        return Outcome::Ready(ready);
    }
    let failed = staging.join(format!("{name}.{FAILED_SUFFIX}"));
    match crate::files::read_private(&failed, MAX_SMALL_FILE_BYTES) {
        Ok(reason) => {
            let _ = std::fs::remove_file(&failed);
            Outcome::Failed(String::from_utf8_lossy(&reason).into_owned())
        }
        Err(_) => Outcome::Pending,
    }
}

/// Deletes the snapshot `name` and anything it left behind.
pub fn discard(data_dir: &Path, name: &str) {
    let staging = staging_dir(data_dir);
    for path in [
        staging.join(name),
        staging.join(format!("{name}.tmp")),
        staging.join(format!("{name}.{FAILED_SUFFIX}")),
    ] {
        let _ = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
    }
}

/// Deletes every snapshot of the data directory; called at server start, when no backup
/// command can be waiting for one.
pub fn clear_staging(data_dir: &Path) -> std::io::Result<()> {
    let staging = staging_dir(data_dir);
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => {
            tracing::info!("left-over backup snapshots deleted");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Copies the regular files of `from` (not its subfolders) that `keep` accepts into the new
/// folder `to`, reading each under the data directory's rules (no links, own files, small).
fn copy_small_files(
    from: &Path,
    to: &Path,
    keep: impl Fn(&Path) -> bool,
) -> Result<(), BackupError> {
    crate::files::create_private_dir(to).map_err(BackupError::io(to))?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BackupError::io(from)(error)),
    };
    for entry in entries {
        let entry = entry.map_err(BackupError::io(from))?;
        let path = entry.path();
        let is_file = entry.file_type().map_err(BackupError::io(&path))?.is_file();
        if !is_file || !keep(&path) {
            continue;
        }
        let bytes = crate::files::read_private(&path, MAX_SMALL_FILE_BYTES).map_err(|error| {
            BackupError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            }
        })?;
        write_private_file(&to.join(entry.file_name()), &bytes)?;
    }
    sync_dir(to)
}

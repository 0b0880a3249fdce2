//! `exposure-server restore`: checks a backup against its manifest, refuses a target that is
//! not missing or empty, copies the files in (folders `0700`, files `0600`, each checksum
//! checked again as it is copied), then opens the restored store as the server would, reads
//! its catalog and signing keys, and moves every region's batch sequence `sequence_gap` ahead.
//! The original server may have published batches after the backup was taken; phones and CDNs
//! may hold them, so the restored server must never give their sequences to other batches
//! (DESIGN.md section 4: a sequence is never reused). The staff console's sessions are all
//! ended; its accounts and audit log stay. On any failure the target is emptied
//! again, so a new attempt is not refused.

use std::path::{Path, PathBuf};

use super::manifest::{self, MANIFEST_FILE, copy_hashed, sync_dir};
use super::{BackupError, INFO_FILE, resolve};

/// What a restore did and found.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Console sessions of the backup, all ended (DESIGN.md section 13).
    pub console_sessions_ended: usize,
    /// The backup restored.
    pub backup: PathBuf,
    /// Files copied.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Regions with batches in the restored store.
    pub regions: usize,
    /// Batches in the restored store.
    pub batches: usize,
    /// Id of the current signing key ("" for a store that never signed).
    pub current_key: String,
    /// Whether the current key's private half came with the backup (false: the server needs
    /// `--signing-key-file`).
    pub current_key_present: bool,
    /// Regions whose batch sequence was moved ahead.
    pub regions_skipped: usize,
}

/// Restores the backup `from` (a backup folder, or a folder of backups: the newest) into the
/// missing or empty `data_dir`, moving each region's batch sequence `sequence_gap` ahead.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    sequence_gap: u64,
) -> Result<RestoreReport, BackupError> {
    let backup = resolve(from)?;
    let (manifest, _) = manifest::verify(&backup)?;
    if manifest.digest("db/CURRENT").is_none() {
        return Err(BackupError::Corrupt {
            path: backup.join(MANIFEST_FILE),
            reason: "lists no db/CURRENT: not a backup of a store".into(),
        });
    }
    crate::datadir::check_restore_target(data_dir)
        .map_err(|error| BackupError::Usage(error.to_string()))?;
    let created = !data_dir.exists();
    let restored = copy_in(&backup, &manifest, data_dir).and_then(|(files, bytes)| {
        let mut report = check(data_dir, sequence_gap)?;
        report.backup = backup.clone();
        report.files = files;
        report.bytes = bytes;
        Ok(report)
    });
    if restored.is_err() {
        empty_again(data_dir, created);
    }
    restored
}

/// Copies every file of the manifest but `BACKUP-INFO` into `data_dir`; returns files and bytes.
fn copy_in(
    backup: &Path,
    manifest: &manifest::Manifest,
    data_dir: &Path,
) -> Result<(usize, u64), BackupError> {
    crate::files::create_private_dir(data_dir).map_err(BackupError::io(data_dir))?;
    let mut folders = vec![data_dir.to_owned()];
    let mut bytes = 0;
    let mut files = 0;
    for (relative, expected) in &manifest.entries {
        if relative == INFO_FILE {
            continue;
        }
        let to = data_dir.join(relative);
        if let Some(parent) = to.parent()
            && !folders.iter().any(|folder| folder == parent)
        {
            crate::files::create_private_dir(parent).map_err(BackupError::io(parent))?;
            folders.push(parent.to_owned());
        }
        let from = backup.join(relative);
        let (digest, length) = copy_hashed(&from, &to)?;
        if &digest != expected {
            return Err(BackupError::Corrupt {
                path: from,
                reason: "checksum mismatch (the file changed during the restore)".into(),
            });
        }
        files += 1;
        bytes += length;
    }
    for folder in folders.iter().rev() {
        sync_dir(folder)?;
    }
    Ok((files, bytes))
}

/// Opens the restored store as the server would, reads what it holds and skips sequences.
fn check(data_dir: &Path, sequence_gap: u64) -> Result<RestoreReport, BackupError> {
    let store = crate::storage::Store::open(data_dir)?;
    let regions_skipped = if sequence_gap > 0 {
        store.skip_batch_sequences(sequence_gap)?
    } else {
        0
    };
    let catalog = crate::catalog::Catalog::load(&store)?;
    let regions = catalog.regions();
    let batches = regions
        .iter()
        .map(|region| catalog.batches(region).len())
        .sum();
    let list = store.signing_keys()?;
    // A session ended after the backup (a logout, a lock) must not come back: every console
    // session of the backup ends, and staff sign in again.
    let console_sessions_ended = store.end_all_sessions()?;
    store.flush()?;
    drop(store);
    let current_key_present =
        !list.current.is_empty() && crate::signing::key_file(data_dir, &list.current).is_file();
    Ok(RestoreReport {
        backup: PathBuf::new(),
        files: 0,
        bytes: 0,
        regions: regions.len(),
        batches,
        current_key: list.current,
        current_key_present,
        regions_skipped,
        console_sessions_ended,
    })
}

/// Removes what a failed restore put into `data_dir` (all of it: the target was empty).
fn empty_again(data_dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(data_dir);
        return;
    }
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == "lost+found" {
            continue;
        }
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

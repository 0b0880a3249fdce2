//! `exposure-server restore`: checks a backup against its manifest, refuses a target that is
//! not missing or empty, copies the files in (folders `0700`, files `0600`, each checksum
//! checked again as it is copied), then opens the restored store as the server would, reads
//! its catalog and signing keys, and moves every region's batch sequence `sequence_gap` ahead.
//! The original server may have published batches after the backup was taken; phones and CDNs
//! may hold them, so the restored server must never give their sequences to other batches
//! (DESIGN.md section 4: a sequence is never reused). The staff console's sessions are all
//! ended; its accounts and audit log stay. On any failure the target is emptied
//! again, so a new attempt is not refused.
//!
//! A sealed backup (see `super::seal`) needs its key: the manifest is taken from
//! `MANIFEST.seal` (and `MANIFEST.sha256` must equal it), then each file is opened as the object
//! of its path at its position, and its sealed bytes checked against the manifest; a refusal
//! names the file. With a key, an unsealed backup is refused, so nobody can swap a sealed
//! backup for an unsealed one of their making.

use std::path::{Path, PathBuf};

use super::manifest::{
    self, Hashing, MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, SEALED_MANIFEST_FILE, copy_hashed,
    sync_dir,
};
use super::seal::{self, KEY_BYTES, OpenError, Sealer};
use super::{BackupError, INFO_FILE, MANIFEST_POSITION, resolve};

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
    /// The deployment a sealed backup was sealed for (`None`: not sealed).
    pub sealed_for: Option<String>,
    /// Log objects applied after the checkpoint (a restore from a bucket).
    pub log_objects: usize,
    /// The store's last sequence number after the restore.
    pub last_sequence: u64,
    /// Regions whose batch sequence was raised to the bucket's index.
    pub regions_raised: usize,
}

/// Restores the backup `from` (a backup folder, or a folder of backups: the newest) into the
/// missing or empty `data_dir`, moving each region's batch sequence `sequence_gap` ahead. A
/// sealed backup needs `key`; with `key`, only a sealed backup is accepted.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    sequence_gap: u64,
    key: Option<&[u8; KEY_BYTES]>,
) -> Result<RestoreReport, BackupError> {
    let backup = resolve(from)?;
    let sealed_manifest = backup.join(SEALED_MANIFEST_FILE);
    let (manifest, sealer) = match (key, sealed_manifest.is_file()) {
        (Some(key), true) => {
            let (manifest, sealer) = open_sealed_manifest(&backup, key)?;
            (manifest, Some(sealer))
        }
        (None, true) => {
            return Err(BackupError::Usage(format!(
                "{} is sealed: give its key with --backup-key-file",
                backup.display()
            )));
        }
        (Some(_), false) => {
            return Err(BackupError::Corrupt {
                path: sealed_manifest,
                reason: "missing: the backup is not sealed, but --backup-key-file was given".into(),
            });
        }
        (None, false) => (manifest::verify(&backup)?.0, None),
    };
    if manifest.digest("db/CURRENT").is_none() {
        return Err(BackupError::Corrupt {
            path: backup.join(MANIFEST_FILE),
            reason: "lists no db/CURRENT: not a backup of a store".into(),
        });
    }
    crate::datadir::check_restore_target(data_dir)
        .map_err(|error| BackupError::Usage(error.to_string()))?;
    let created = !data_dir.exists();
    let restored =
        copy_in(&backup, &manifest, data_dir, sealer.as_ref()).and_then(|(files, bytes)| {
            let mut report = check(data_dir, sequence_gap, &[])?;
            report.backup = backup.clone();
            report.files = files;
            report.bytes = bytes;
            report.sealed_for = sealer.as_ref().map(|sealer| sealer.deployment().to_owned());
            Ok(report)
        });
    if restored.is_err() {
        empty_again(data_dir, created);
    }
    restored
}

/// Opens `MANIFEST.seal` of `backup` with `key` for the deployment its header names; returns
/// the manifest it holds (which `MANIFEST.sha256` must equal) and the sealer of the backup.
fn open_sealed_manifest(
    backup: &Path,
    key: &[u8; KEY_BYTES],
) -> Result<(Manifest, Sealer), BackupError> {
    let path = backup.join(SEALED_MANIFEST_FILE);
    let corrupt = |reason: String| BackupError::Corrupt {
        path: path.clone(),
        reason,
    };
    let rules = crate::files::ReadRules {
        // The sealed text and one seal header and tag per MiB.
        limit: MAX_MANIFEST_BYTES * 2,
        follow_symlinks: false,
        own_only: false,
    };
    let sealed =
        crate::files::read_regular(&path, rules).map_err(|error| corrupt(error.to_string()))?;
    let deployment = seal::deployment_of(&sealed).map_err(|error| corrupt(error.to_string()))?;
    let sealer = Sealer::new(key, &deployment).map_err(corrupt)?;
    let text = sealer
        .open(MANIFEST_FILE, MANIFEST_POSITION, &sealed)
        .map_err(|error| corrupt(error.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8 text".into()))?;
    let manifest = Manifest::parse(&text, &path)?;
    if Manifest::read(backup)? != manifest {
        return Err(BackupError::Corrupt {
            path: backup.join(MANIFEST_FILE),
            reason: format!("differs from the sealed manifest {SEALED_MANIFEST_FILE}"),
        });
    }
    Ok((manifest, sealer))
}

/// Copies every file of the manifest but `BACKUP-INFO` into `data_dir`, opening each with
/// `sealer` when the backup is sealed; returns files and (plaintext) bytes.
fn copy_in(
    backup: &Path,
    manifest: &manifest::Manifest,
    data_dir: &Path,
    sealer: Option<&Sealer>,
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
        // Positions count the manifest's entries without BACKUP-INFO, as the backup sealed them.
        let position = files as u64;
        let (digest, length) = match sealer {
            Some(sealer) => open_file(sealer, relative, position, &from, &to)?,
            None => copy_hashed(&from, &to)?,
        };
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

/// Opens the sealed file `from` as the object `relative` at `position` into the new file `to`
/// (mode 0600, synced); returns the SHA-256 of the sealed file and the plaintext's length.
fn open_file(
    sealer: &Sealer,
    relative: &str,
    position: u64,
    from: &Path,
    to: &Path,
) -> Result<(manifest::Digest, u64), BackupError> {
    let source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut source = Hashing::new(std::io::BufReader::new(source));
    let mut target = manifest::create_private_file(to)?;
    let length = sealer
        .open_stream(relative, position, &mut source, &mut target)
        .map_err(|error| match error {
            OpenError::Io(source) => BackupError::Io {
                path: from.to_owned(),
                source,
            },
            refused => BackupError::Corrupt {
                path: from.to_owned(),
                reason: refused.to_string(),
            },
        })?;
    target.sync_all().map_err(BackupError::io(to))?;
    let (digest, _, _) = source.finish();
    Ok((digest, length))
}

/// Opens the restored store as the server would, reads what it holds, skips sequences, and
/// raises each region's sequence to its floor (the highest published anywhere).
pub(super) fn check(
    data_dir: &Path,
    sequence_gap: u64,
    floors: &[(String, u64)],
) -> Result<RestoreReport, BackupError> {
    let store = crate::storage::Store::open(data_dir)?;
    let last_sequence = store.latest_sequence();
    let regions_skipped = if sequence_gap > 0 {
        store.skip_batch_sequences(sequence_gap)?
    } else {
        0
    };
    let regions_raised = store.raise_batch_sequences(floors)?;
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
        sealed_for: None,
        log_objects: 0,
        last_sequence,
        regions_raised,
        console_sessions_ended,
    })
}

/// Removes what a failed restore put into `data_dir` (all of it: the target was empty).
pub(super) fn empty_again(data_dir: &Path, created: bool) {
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

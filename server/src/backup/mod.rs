//! Online backup and restore of a data directory (`exposure-server backup|restore`).
//!
//! A backup is a folder `ROOT/YYYYMMDDTHHMMSSZ/` holding `db/` (a RocksDB checkpoint),
//! `signing/` (the private signing keys, only in a sealed backup and unless left out), `inbox/`
//! (admin requests not yet applied), `BACKUP-INFO` (what it holds, in words) and
//! `MANIFEST.sha256` (a SHA-256 of every other file, see [`manifest`]). It is built from a
//! [`snapshot`] the process that holds the store takes, copied into `ROOT/.partial-NAME/`, and
//! renamed into place after its manifest, so a folder without `.partial-` is whole.
//!
//! With `--backup-key-file` a backup is sealed ([`seal`]): every file but `BACKUP-INFO` is
//! stored sealed as the object of its relative path at its position (its index among the
//! manifest's entries, `BACKUP-INFO` not counted), the manifest lists the digests of the sealed
//! files (so `sha256sum -c` still checks the copy), and `MANIFEST.seal` holds the manifest's
//! text sealed, so a restore trusts only what the key authenticates. Without a key file a
//! backup holds no private signing keys: a restored server then needs `--signing-key-file`.
//!
//! Why checkpoints and not RocksDB's BackupEngine: the backup must also hold the signing keys
//! and the inbox, all under one manifest of SHA-256 checksums that anyone can check
//! (`sha256sum -c`); the engine keeps its own format of RocksDB files only, and its
//! `verify_backup` (in rust-rocksdb 0.24) compares sizes, not contents. A checkpoint is a
//! consistent cut made of hard links, cheap to take while the server runs.
//!
//! Unsealed backups are incremental where that is safe: SST and blob files never change once
//! written, so a file whose path, size and SHA-256 equal those of the newest earlier backup in
//! `ROOT` (whose own copy is re-checked against its manifest first) is hard-linked from it
//! instead of copied. Deleting an old backup therefore never damages a newer one. A sealed
//! backup is always a full copy: its files are sealed afresh, with new nonces and positions.

pub mod continuous;
pub mod manifest;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod restore_remote;
pub mod seal;
pub mod snapshot;
pub mod upload;

use std::path::{Path, PathBuf};

use manifest::{
    Digest, Hashing, MANIFEST_FILE, Manifest, SEALED_MANIFEST_FILE, copy_hashed, hash_file,
    sync_dir,
};
use seal::Sealer;

use crate::storage::StorageError;

/// File of a backup that says what it holds.
pub const INFO_FILE: &str = "BACKUP-INFO";
/// Prefix of a backup folder still being written.
const PARTIAL_PREFIX: &str = ".partial-";
/// The first line of [`INFO_FILE`], naming the format.
const FORMAT_LINE: &str = "format: exposure-server backup 1";
/// Position the sealed manifest is sealed at: after any file's.
pub const MANIFEST_POSITION: u64 = u64::MAX;

/// Errors of backups and restores.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad arguments (a missing store, a non-empty restore target, a bad name).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read, written, linked or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A backup file is damaged, missing or unexpected.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Object storage refused the backup (after retries).
    #[error("upload: {0}")]
    Upload(String),
    /// The store failed (taking the checkpoint, or opening a restored store).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl BackupError {
    /// Returns a mapper of an I/O error on `path`.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What goes into a backup besides the store.
#[derive(Debug, Clone, Copy)]
pub struct BackupOptions {
    /// Copy the private keys of `signing/` (false: the operator keeps them elsewhere, or the
    /// backup is not sealed).
    pub include_signing_keys: bool,
    /// Delete the oldest whole backups of the root beyond this many, after a success.
    pub keep: Option<usize>,
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The new backup folder.
    pub path: PathBuf,
    /// Files in it (manifest excluded).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files hard-linked from the previous backup instead of copied.
    pub linked_files: usize,
    /// Their bytes.
    pub linked_bytes: u64,
    /// The previous backup files were linked from.
    pub previous: Option<PathBuf>,
    /// What `BACKUP-INFO` says.
    pub info: String,
    /// Older backups deleted by `keep`.
    pub pruned: Vec<PathBuf>,
}

/// Returns the name of a backup made at Unix second `now`: `YYYYMMDDTHHMMSSZ` (UTC), which
/// sorts in time order.
pub fn backup_name(now: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}

/// Returns whether `path` is a whole backup folder (it has a manifest).
pub fn is_backup(path: &Path) -> bool {
    path.join(MANIFEST_FILE).is_file()
}

/// Returns the whole backups in `root`, oldest first (by name).
pub fn backups_in(root: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(BackupError::io(root)(error)),
    };
    for entry in entries {
        let entry = entry.map_err(BackupError::io(root))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && is_backup(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Returns the backup `path` names: itself when it is a backup folder, else the newest
/// backup of the folder of backups it names.
pub fn resolve(path: &Path) -> Result<PathBuf, BackupError> {
    if is_backup(path) {
        return Ok(path.to_owned());
    }
    backups_in(path)?.pop().ok_or_else(|| {
        BackupError::Usage(format!(
            "{} is neither a backup (no {MANIFEST_FILE}) nor a folder of backups",
            path.display()
        ))
    })
}

/// Copies the snapshot `snapshot` into the new backup `root/name/` with its manifest: sealed by
/// `sealer` when given, else linking unchanged files from the newest earlier backup of `root`;
/// then prunes per `options.keep`.
pub fn write_backup(
    snapshot: &Path,
    root: &Path,
    name: &str,
    info: &str,
    options: BackupOptions,
    sealer: Option<&Sealer>,
) -> Result<BackupReport, BackupError> {
    crate::files::create_private_dir(root).map_err(BackupError::io(root))?;
    remove_partials(root)?;
    let target = root.join(name);
    if target.exists() {
        return Err(BackupError::Usage(format!(
            "{} exists already; wait a second and run the backup again",
            target.display()
        )));
    }
    let previous = backups_in(root)?.pop();
    let previous_manifest = previous
        .as_deref()
        .and_then(|path| Manifest::read(path).ok());
    let partial = root.join(format!("{PARTIAL_PREFIX}{name}"));
    crate::files::create_private_dir(&partial).map_err(BackupError::io(&partial))?;

    let mut report = BackupReport {
        path: target.clone(),
        files: 0,
        bytes: 0,
        linked_files: 0,
        linked_bytes: 0,
        previous: None,
        info: info.to_owned(),
        pruned: Vec::new(),
    };
    let mut entries: Vec<(String, Digest)> = Vec::new();
    for relative in manifest::list_files(snapshot)? {
        if is_runtime_file(&relative)
            || (!options.include_signing_keys && relative.starts_with("signing/"))
        {
            continue;
        }
        // Files are listed sorted, as the manifest is, and BACKUP-INFO is added after: the
        // number of files so far is the file's position among the manifest's sealed entries.
        let position = entries.len() as u64;
        let from = snapshot.join(&relative);
        let to = partial.join(&relative);
        if let Some(parent) = to.parent() {
            crate::files::create_private_dir(parent).map_err(BackupError::io(parent))?;
        }
        let earlier = previous
            .as_deref()
            .zip(previous_manifest.as_ref())
            .and_then(|(folder, manifest)| {
                Some((folder.join(&relative), *manifest.digest(&relative)?))
            });
        let (digest, length, linked) = match (sealer, earlier) {
            (Some(sealer), _) => {
                let (digest, length) = seal_file(sealer, &relative, position, &from, &to)?;
                (digest, length, false)
            }
            (None, Some((earlier_file, earlier_digest))) => {
                copy_or_link(&from, &to, &earlier_file, &earlier_digest)?
            }
            (None, None) => {
                let (digest, length) = copy_hashed(&from, &to)?;
                (digest, length, false)
            }
        };
        report.files += 1;
        report.bytes += length;
        if linked {
            report.linked_files += 1;
            report.linked_bytes += length;
        }
        entries.push((relative, digest));
    }
    let info_path = partial.join(INFO_FILE);
    manifest::write_private_file(&info_path, info.as_bytes())?;
    let (info_digest, _) = hash_file(&info_path)?;
    entries.push((INFO_FILE.to_owned(), info_digest));
    entries.sort();
    for folder in ["db", "signing", "inbox"] {
        let path = partial.join(folder);
        if path.is_dir() {
            sync_dir(&path)?;
        }
    }
    let text = Manifest { entries }.to_text();
    if let Some(sealer) = sealer {
        let sealed = sealer.seal(MANIFEST_FILE, MANIFEST_POSITION, text.as_bytes());
        manifest::write_private_file(&partial.join(SEALED_MANIFEST_FILE), &sealed)?;
    }
    manifest::write_private_file(&partial.join(MANIFEST_FILE), text.as_bytes())?;
    sync_dir(&partial)?;
    std::fs::rename(&partial, &target).map_err(BackupError::io(&target))?;
    sync_dir(root)?;
    if report.linked_files > 0 {
        report.previous = previous;
    }
    if let Some(keep) = options.keep {
        report.pruned = prune(root, keep.max(1))?;
    }
    Ok(report)
}

/// Returns whether a snapshot file is RocksDB's own run-time file rather than data: the info
/// logs and the lock, which opening the snapshot to describe it may create.
pub(crate) fn is_runtime_file(relative: &str) -> bool {
    relative
        .strip_prefix("db/")
        .is_some_and(|name| name == "LOCK" || name == "LOG" || name.starts_with("LOG.old."))
}

/// Seals `from` into the new file `to` (mode 0600, synced) as the object `relative` at
/// `position`; returns the SHA-256 and length of the sealed file.
fn seal_file(
    sealer: &Sealer,
    relative: &str,
    position: u64,
    from: &Path,
    to: &Path,
) -> Result<(Digest, u64), BackupError> {
    let source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut target = Hashing::new(manifest::create_private_file(to)?);
    sealer
        .seal_stream(
            relative,
            position,
            std::io::BufReader::new(source),
            &mut target,
        )
        .map_err(BackupError::io(to))?;
    let (digest, length, file) = target.finish();
    file.sync_all().map_err(BackupError::io(to))?;
    Ok((digest, length))
}

/// Puts `from` at `to`: a hard link to `earlier` when both have `earlier_digest` (the earlier
/// copy is re-read, so a damaged one is never shared), else a copy. Returns the digest, the
/// length and whether it linked.
fn copy_or_link(
    from: &Path,
    to: &Path,
    earlier: &Path,
    earlier_digest: &Digest,
) -> Result<(Digest, u64, bool), BackupError> {
    let same_size = match (std::fs::metadata(from), std::fs::metadata(earlier)) {
        (Ok(source), Ok(old)) => source.len() == old.len(),
        _ => false,
    };
    if same_size {
        let (digest, length) = hash_file(from)?;
        if &digest == earlier_digest
            && hash_file(earlier)?.0 == digest
            && std::fs::hard_link(earlier, to).is_ok()
        {
            return Ok((digest, length, true));
        }
    }
    let (digest, length) = copy_hashed(from, to)?;
    Ok((digest, length, false))
}

/// Deletes the `.partial-` folders an interrupted backup left in `root`.
fn remove_partials(root: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(root).map_err(BackupError::io(root))? {
        let entry = entry.map_err(BackupError::io(root))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(BackupError::io(&path))?;
        }
    }
    Ok(())
}

/// Deletes the oldest whole backups of `root` until `keep` remain; returns what it deleted.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let backups = backups_in(root)?;
    let excess = backups.len().saturating_sub(keep);
    let mut pruned = Vec::with_capacity(excess);
    for old in backups.into_iter().take(excess) {
        std::fs::remove_dir_all(&old).map_err(BackupError::io(&old))?;
        pruned.push(old);
    }
    Ok(pruned)
}

/// What a snapshot is, for its backup.
#[derive(Debug, Clone)]
pub struct Description {
    /// The text of `BACKUP-INFO`.
    pub info: String,
    /// The store's deployment id (`None` for a store that never took a snapshot).
    pub deployment: Option<String>,
}

/// Returns the text of `BACKUP-INFO` for a snapshot: when it was made, what it holds, whether
/// it is sealed, and whether the current signing key's private half is in it.
pub fn describe(
    snapshot: &Path,
    now: u64,
    include_signing_keys: bool,
    sealed: bool,
) -> Result<Description, BackupError> {
    let store = crate::storage::Store::open_read_only(snapshot)?;
    let catalog = crate::catalog::Catalog::load(&store)?;
    let batches: usize = catalog
        .regions()
        .iter()
        .map(|region| catalog.batches(region).len())
        .sum();
    let list = store.signing_keys()?;
    let sequences: Vec<String> = store
        .batch_sequences()?
        .into_iter()
        .map(|(region, sequence)| format!("{region}={sequence}"))
        .collect();
    let deployment = store.deployment_id()?;
    drop(store);
    let left_out = if sealed {
        "left out (--without-signing-keys)"
    } else {
        "left out (the backup is not sealed: no --backup-key-file)"
    };
    let current_file = crate::signing::key_file(snapshot, &list.current);
    let current = if list.current.is_empty() {
        "none yet".to_owned()
    } else if !include_signing_keys {
        format!("{} (private key {left_out})", list.current)
    } else if current_file.is_file() {
        format!("{} (private key included)", list.current)
    } else {
        format!(
            "{} (private key NOT in this backup: it is kept outside the data directory, --signing-key-file)",
            list.current
        )
    };
    let info = format!(
        "{FORMAT_LINE}\ncreated_at: {now} ({})\nserver_version: {}\ndeployment: {}\nsealed: {}\nbatches: {batches}\nlast_batch_sequences: {}\nsigning_keys: {}\ncurrent_signing_key: {current}\n",
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now)
        ),
        env!("CARGO_PKG_VERSION"),
        deployment.as_deref().unwrap_or("none yet"),
        if sealed {
            "yes (XChaCha20-Poly1305, --backup-key-file; MANIFEST.seal)"
        } else {
            "no"
        },
        sequences.join(","),
        if include_signing_keys {
            "private keys of the data directory included, sealed"
        } else {
            left_out
        },
    );
    Ok(Description { info, deployment })
}

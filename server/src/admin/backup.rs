//! `exposure-server backup` and `restore` (see [`crate::backup`]): the command asks whoever
//! holds the store for a snapshot (the running server through its inbox, else itself), copies it
//! into a new backup folder with its manifest, sealed with `--backup-key-file` when given, and
//! optionally uploads it; `backup --verify` checks backups against their manifests; `restore`
//! rebuilds a data directory from one.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{AdminError, DataDir, Opened, failed, open};
use crate::backup::seal::{self, KEY_BYTES, Sealer};
use crate::backup::snapshot::{self, Outcome};
use crate::backup::{self, BackupError, BackupOptions};
use crate::clock::Clock;
use crate::inbox::{self, InboxRequest};

/// `exposure-server backup`
#[derive(Debug, Args)]
pub struct BackupCommand {
    /// Where the database lives.
    #[command(flatten)]
    pub data: DataDir,
    /// Folder of backups; each run adds a folder `YYYYMMDDTHHMMSSZ/` (UTC) to it, hard-linking
    /// the files unchanged since the newest backup already there.
    #[arg(long, value_name = "DIR", required_unless_present = "verify")]
    pub to: Option<PathBuf>,
    /// Instead of backing up: checks the backup DIR (or every backup of a folder of backups)
    /// against its manifest.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["to", "keep", "without_signing_keys", "upload_to"])]
    pub verify: Option<PathBuf>,
    /// After a successful backup, deletes the oldest backups of `--to` beyond this many.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Leaves the private signing keys of the data directory out of the backup (keep them
    /// elsewhere; a restored server then needs `--signing-key-file`). A backup without
    /// `--backup-key-file` leaves them out anyway.
    #[arg(long)]
    pub without_signing_keys: bool,
    /// File of 32 random bytes (`head -c 32 /dev/urandom`) that seals the backup: every file
    /// encrypted and authenticated (XChaCha20-Poly1305), private signing keys included. Without
    /// it the backup is plain and holds no private signing keys.
    #[arg(long, value_name = "FILE", env = "EXPOSURE_BACKUP_KEY_FILE")]
    pub backup_key_file: Option<PathBuf>,
    /// Also copies the backup to object storage, as `URL/NAME/...`: `s3://bucket/prefix`,
    /// `gs://…`, `az://…` or `file:///folder`, with credentials from the environment as for
    /// `--publish-to`. It holds private keys: use a private bucket, never the public one.
    #[arg(long, value_name = "URL", env = "EXPOSURE_BACKUP_UPLOAD_TO")]
    pub upload_to: Option<String>,
    /// A `key=value` setting of the upload's object store (repeatable), as `--publish-option`.
    #[arg(
        long = "upload-option",
        value_name = "KEY=VALUE",
        requires = "upload_to"
    )]
    pub upload_options: Vec<String>,
}

/// `exposure-server restore`
#[derive(Debug, Default, Args)]
pub struct RestoreCommand {
    /// A backup folder, or a folder of backups (its newest backup is restored), or the URL of
    /// a continuous backup (`--backup-to`: `s3://…`, `gs://…`, `az://…`, `file:///…`), whose
    /// newest checkpoint and every later log record are restored.
    #[arg(long, value_name = "DIR|URL")]
    pub from: PathBuf,
    /// The data directory to create: a missing or empty folder (anything else is refused).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Batch sequences each region skips, so that batches the original server published after
    /// the backup (phones and CDNs may hold them) are never numbered again. 0 only when the
    /// backup is the original's last state (a stopped server moved to another disk).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEQUENCE_GAP)]
    pub sequence_gap: u64,
    /// The key file the backup was sealed with (required for a sealed backup; given, an
    /// unsealed backup is refused).
    #[arg(long, value_name = "FILE", env = "EXPOSURE_BACKUP_KEY_FILE")]
    pub backup_key_file: Option<PathBuf>,
    /// Restores the state as of TIME (RFC 3339, e.g. `2026-03-18T09:30:00Z`, or Unix seconds):
    /// the newest checkpoint made by then and the log records shipped by then. Only with
    /// `--from URL`.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub at: Option<u64>,
    /// A `key=value` setting of the `--from` bucket's object store (repeatable), as
    /// `--publish-option`.
    #[arg(long = "from-option", value_name = "KEY=VALUE")]
    pub from_options: Vec<String>,
    /// The public bucket the server publishes to (`--publish-to`): each region's batch
    /// sequence then continues after the latest its index names, too.
    #[arg(long, value_name = "URL", env = "EXPOSURE_PUBLISH_TO")]
    pub publish_to: Option<String>,
    /// A `key=value` setting of the `--publish-to` bucket's object store (repeatable).
    #[arg(
        long = "publish-option",
        value_name = "KEY=VALUE",
        env = "EXPOSURE_PUBLISH_OPTION",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub publish_options: Vec<String>,
}

/// Parses `--at`: RFC 3339 or Unix seconds; returns Unix milliseconds.
fn parse_time_ms(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return seconds
            .checked_mul(1000)
            .ok_or_else(|| format!("{text} is too large"));
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("{error} (expected e.g. 2026-03-18T09:30:00Z or Unix seconds)"))?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .map_err(|_| format!("{text} is before 1970"))
}

/// Default of `restore --sequence-gap`: over 41 days of hourly batches, beyond any backup
/// worth restoring (retention keeps 14 days).
pub const DEFAULT_SEQUENCE_GAP: u64 = 1000;

/// How long the command waits for a running server to take its snapshot (a checkpoint flushes
/// the memtables and links files: seconds, unless the disk is very slow).
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl From<BackupError> for AdminError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::Usage(message) => AdminError::Usage(message),
            other => AdminError::Failed(other.to_string()),
        }
    }
}

/// Runs `backup`, writing its report to `out`.
pub fn backup(command: BackupCommand, out: &mut impl Write) -> Result<(), AdminError> {
    if let Some(path) = &command.verify {
        return verify(path, out);
    }
    let root = command
        .to
        .ok_or_else(|| AdminError::Usage("--to DIR is required".into()))?;
    let data_dir = &command.data.data_dir;
    if !crate::datadir::holds_store(data_dir) {
        return Err(AdminError::Usage(format!(
            "--data-dir {}: holds no exposure-server store",
            data_dir.display()
        )));
    }
    let bucket = command
        .upload_to
        .as_deref()
        .map(|url| crate::bucket::Bucket::open(url, &command.upload_options))
        .transpose()
        .map_err(|error| {
            AdminError::Usage(error.to_string().replace("--publish-to", "--upload-to"))
        })?;
    let key = read_key(command.backup_key_file.as_deref())?;
    let options = BackupOptions {
        include_signing_keys: key.is_some() && !command.without_signing_keys,
        keep: command.keep.map(|keep| keep as usize),
    };
    let now = Clock::System.now();
    let name = backup::backup_name(now);
    let snapshot_name = format!("{name}-{:08x}", rand::random::<u32>());
    let _discard = Discard {
        data_dir,
        name: &snapshot_name,
    };
    let snapshot = take_snapshot(data_dir, &snapshot_name, now)?;
    let description =
        backup::describe(&snapshot, now, options.include_signing_keys, key.is_some())?;
    let sealer = match (&key, &description.deployment) {
        (Some(key), Some(deployment)) => {
            Some(Sealer::new(key, deployment).map_err(AdminError::Failed)?)
        }
        (Some(_), None) => {
            return Err(AdminError::Failed(
                "the snapshot holds no deployment id to seal it for".into(),
            ));
        }
        (None, _) => None,
    };
    let report = backup::write_backup(
        &snapshot,
        &root,
        &name,
        &description.info,
        options,
        sealer.as_ref(),
    )?;
    writeln!(
        out,
        "backup {}: {} files, {} bytes",
        report.path.display(),
        report.files,
        report.bytes
    )
    .map_err(failed)?;
    if let Some(previous) = &report.previous {
        writeln!(
            out,
            "{} files ({} bytes) unchanged since {}: hard-linked, not copied",
            report.linked_files,
            report.linked_bytes,
            previous.display()
        )
        .map_err(failed)?;
    }
    for line in report.info.lines().skip(1) {
        writeln!(out, "  {line}").map_err(failed)?;
    }
    for pruned in &report.pruned {
        writeln!(out, "deleted the old backup {} (--keep)", pruned.display()).map_err(failed)?;
    }
    if let Some(bucket) = bucket {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let uploaded = runtime.block_on(backup::upload::upload(&bucket, &report.path))?;
        writeln!(
            out,
            "uploaded {} files ({} bytes) to {}/{}",
            uploaded.files,
            uploaded.bytes,
            bucket.description().trim_end_matches('/'),
            name
        )
        .map_err(failed)?;
    }
    Ok(())
}

/// Restores the continuous backup at `url` (see [`backup::restore_remote`]).
fn restore_from_bucket(
    command: &RestoreCommand,
    url: &str,
    key: Option<&[u8; KEY_BYTES]>,
) -> Result<backup::restore::RestoreReport, AdminError> {
    let bucket = crate::bucket::Bucket::open(url, &command.from_options)
        .map_err(|error| AdminError::Usage(error.to_string().replace("--publish-to", "--from")))?;
    let published = command
        .publish_to
        .as_deref()
        .map(|url| crate::bucket::Bucket::open(url, &command.publish_options))
        .transpose()
        .map_err(|error| AdminError::Usage(error.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let request = backup::restore_remote::RemoteRestore {
        at_ms: command.at,
        key,
        sequence_gap: command.sequence_gap,
        published: published.as_ref(),
    };
    Ok(runtime.block_on(backup::restore_remote::restore(
        &bucket,
        &command.data_dir,
        request,
    ))?)
}

/// Reads the backup key file, when one is given.
fn read_key(path: Option<&Path>) -> Result<Option<[u8; KEY_BYTES]>, AdminError> {
    path.map(seal::read_key_file)
        .transpose()
        .map_err(AdminError::Usage)
}

/// Deletes the command's snapshot however the command ends.
struct Discard<'a> {
    data_dir: &'a Path,
    name: &'a str,
}

impl Drop for Discard<'_> {
    fn drop(&mut self) {
        snapshot::discard(self.data_dir, self.name);
    }
}

/// Has the snapshot `name` taken: by the running server through the inbox, or here.
fn take_snapshot(data_dir: &Path, name: &str, now: u64) -> Result<PathBuf, AdminError> {
    match open(data_dir)? {
        Opened::Store(store) => Ok(snapshot::take(&store, data_dir, name, None)?),
        Opened::HeldByServer => {
            let request = InboxRequest {
                snapshot: name.to_owned(),
                requested_at: now,
                ..InboxRequest::default()
            };
            let path = inbox::submit(data_dir, &request).map_err(failed)?;
            if !inbox::wait_applied(&path, SNAPSHOT_WAIT) {
                let _ = std::fs::remove_file(&path);
                return Err(AdminError::Failed(format!(
                    "the running server did not take the snapshot within {} s (see its log)",
                    SNAPSHOT_WAIT.as_secs()
                )));
            }
            match snapshot::outcome(data_dir, name) {
                Outcome::Ready(path) => Ok(path),
                Outcome::Failed(reason) => Err(AdminError::Failed(format!(
                    "the running server could not take the snapshot: {reason}"
                ))),
                Outcome::Pending => Err(AdminError::Failed(
                    "the running server took the request but left no snapshot (see its log)".into(),
                )),
            }
        }
    }
}

/// Runs `backup --verify PATH`: every backup it names, each reported; fails if any is bad.
fn verify(path: &Path, out: &mut impl Write) -> Result<(), AdminError> {
    let backups = if backup::is_backup(path) {
        vec![path.to_owned()]
    } else {
        backup::backups_in(path)?
    };
    if backups.is_empty() {
        return Err(AdminError::Usage(format!(
            "{} is neither a backup nor a folder of backups",
            path.display()
        )));
    }
    let mut damaged = 0;
    for backup in &backups {
        match backup::manifest::verify(backup) {
            Ok((manifest, bytes)) => writeln!(
                out,
                "ok {}: {} files, {bytes} bytes match the manifest",
                backup.display(),
                manifest.entries.len()
            )
            .map_err(failed)?,
            Err(error) => {
                damaged += 1;
                writeln!(out, "DAMAGED {}: {error}", backup.display()).map_err(failed)?;
            }
        }
    }
    if damaged > 0 {
        return Err(AdminError::Failed(format!(
            "{damaged} of {} backups are damaged",
            backups.len()
        )));
    }
    Ok(())
}

/// Runs `restore`, writing its report to `out`.
pub fn restore(command: RestoreCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let key = read_key(command.backup_key_file.as_deref())?;
    let from = command.from.to_string_lossy().into_owned();
    let report = if from.contains("://") {
        restore_from_bucket(&command, &from, key.as_ref())?
    } else {
        if command.at.is_some() {
            return Err(AdminError::Usage(
                "--at works on a continuous backup only (--from URL)".into(),
            ));
        }
        backup::restore::restore(
            &command.from,
            &command.data_dir,
            command.sequence_gap,
            key.as_ref(),
        )?
    };
    writeln!(
        out,
        "restored {} into {}: {} files, {} bytes checked against the manifest",
        report.backup.display(),
        command.data_dir.display(),
        report.files,
        report.bytes
    )
    .map_err(failed)?;
    if report.log_objects > 0 || from.contains("://") {
        writeln!(
            out,
            "{} log objects applied after the checkpoint: the store ends at sequence {}",
            report.log_objects, report.last_sequence
        )
        .map_err(failed)?;
    }
    if report.regions_raised > 0 {
        writeln!(
            out,
            "{} regions continue after the latest sequence of the bucket's index (--publish-to)",
            report.regions_raised
        )
        .map_err(failed)?;
    }
    if let Some(deployment) = &report.sealed_for {
        writeln!(
            out,
            "every file opened with the key (sealed for deployment {deployment})"
        )
        .map_err(failed)?;
    }
    writeln!(
        out,
        "the store opens: {} batches in {} regions; their batch sequences continue {} ahead (--sequence-gap)",
        report.batches, report.regions, command.sequence_gap
    )
    .map_err(failed)?;
    writeln!(
        out,
        "console: {} sessions of the backup ended (staff sign in again)",
        report.console_sessions_ended
    )
    .map_err(failed)?;
    if report.current_key.is_empty() {
        writeln!(out, "no signing key yet").map_err(failed)?;
    } else if report.current_key_present {
        writeln!(
            out,
            "current signing key {} (private key restored)",
            report.current_key
        )
        .map_err(failed)?;
    } else {
        writeln!(
            out,
            "current signing key {}: its private key is not in the backup; start the server with --signing-key-file FILE holding it",
            report.current_key
        )
        .map_err(failed)?;
    }
    writeln!(
        out,
        "start the server with --data-dir {}",
        command.data_dir.display()
    )
    .map_err(failed)
}

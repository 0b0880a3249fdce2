//! `exposure-server backup` and `restore` (see [`crate::backup`]): the command asks whoever
//! holds the store for a snapshot (the running server through its inbox, else itself), copies it
//! into a new backup folder with its manifest, and optionally uploads it; `backup --verify`
//! checks backups against their manifests; `restore` rebuilds a data directory from one.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{AdminError, DataDir, Opened, failed, open};
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
    /// elsewhere; a restored server then needs `--signing-key-file`).
    #[arg(long)]
    pub without_signing_keys: bool,
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
#[derive(Debug, Args)]
pub struct RestoreCommand {
    /// A backup folder, or a folder of backups (its newest backup is restored).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The data directory to create: a missing or empty folder (anything else is refused).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Batch sequences each region skips, so that batches the original server published after
    /// the backup (phones and CDNs may hold them) are never numbered again. 0 only when the
    /// backup is the original's last state (a stopped server moved to another disk).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEQUENCE_GAP)]
    pub sequence_gap: u64,
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
    let options = BackupOptions {
        include_signing_keys: !command.without_signing_keys,
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
    let info = backup::describe(&snapshot, now, options.include_signing_keys)?;
    let report = backup::write_backup(&snapshot, &root, &name, &info, options)?;
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
    let report = backup::restore::restore(&command.from, &command.data_dir, command.sequence_gap)?;
    writeln!(
        out,
        "restored {} into {}: {} files, {} bytes checked against the manifest",
        report.backup.display(),
        command.data_dir.display(),
        report.files,
        report.bytes
    )
    .map_err(failed)?;
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

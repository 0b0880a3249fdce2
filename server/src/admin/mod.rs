//! Operator commands on a data directory: health authorities and their upload tokens, staff
//! accounts of the console ([`user`]), signing keys ([`signing_key`]), backups ([`backup`]) and
//! the bucket rebuild. They open the database themselves when no server runs on it; while a server holds it (RocksDB admits one writer
//! process), changes go through the server's [`crate::inbox`] and take effect within a second,
//! and listing reads a read-only view.

pub mod backup;
pub mod signing_key;
pub mod user;

pub use signing_key::{SigningKeyCommand, signing_key};
pub use user::{UserCommand, user};

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::clock::Clock;
use crate::inbox::{self, InboxRequest};
use crate::ingest::validate::is_valid_region;
use crate::storage::authorities::new_authority;
use crate::storage::{StorageError, Store};

/// `exposure-server authority …`
#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Creates a health authority and prints its upload token once, alone on the last line.
    Add {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// Human-readable name, e.g. "Thai Binh CDC".
        #[arg(long)]
        name: String,
        /// Region the authority may upload for (repeat for several), e.g. VN-TB.
        #[arg(long = "region", required = true)]
        regions: Vec<String>,
        /// The authority's REVOKED uploads may withdraw keys that came through other
        /// authorities of its regions (a ministry correcting a province's upload).
        #[arg(long)]
        admin: bool,
        /// Upload calls per minute for this authority, instead of the server's
        /// `--authority-uploads-per-minute`.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        uploads_per_minute: Option<u32>,
        /// New keys per UTC day for this authority, instead of the server's
        /// `--authority-keys-per-day`.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keys_per_day: Option<u64>,
    },
    /// Lists authorities (never their tokens).
    List {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
    },
    /// Revokes an authority's token; uploads with it fail from then on.
    Revoke {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// The authority's id, as `authority list` shows it.
        #[arg(long)]
        id: String,
        /// Also withdraw every key uploaded with this token (a leaked token): phones stop
        /// confirming them at once and the next roll-ups leave them out.
        #[arg(long)]
        withdraw_keys: bool,
    },
}

/// `exposure-server publish-sync`: rewrites the whole static layout (DESIGN.md section 10)
/// into object storage, in section 10's order, from a stopped server's data directory; for a
/// new or emptied bucket. The server's own outbox is left as it is (its tasks are idempotent).
#[derive(Debug, Args)]
pub struct PublishSyncCommand {
    /// Where the database lives.
    #[command(flatten)]
    pub data: DataDir,
    /// The target, as the server's `--publish-to` (credentials from the environment).
    #[arg(long, env = "EXPOSURE_PUBLISH_TO")]
    pub publish_to: String,
    /// The object store's settings, as the server's.
    #[command(flatten)]
    pub publish_options: crate::config::PublishOptions,
    /// The server's `--confirm-prefix-bits` (the indexes carry it).
    #[arg(long, env = "EXPOSURE_CONFIRM_PREFIX_BITS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(i64::from(crate::config::MIN_CONFIRM_PREFIX_BITS)..=24))]
    pub confirm_prefix_bits: u32,
}

/// Attempts of a whole `publish-sync` before it gives up (each resumes where the last failed).
const SYNC_ATTEMPTS: u32 = 8;

/// Runs `publish-sync`, writing its report to `out`.
pub fn publish_sync(command: PublishSyncCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let bucket = crate::bucket::Bucket::open(&command.publish_to, &command.publish_options.options)
        .map_err(|error| AdminError::Usage(error.to_string()))?;
    if !command.data.data_dir.join("db").exists() {
        return Err(AdminError::Usage(format!(
            "{} holds no store",
            command.data.data_dir.display()
        )));
    }
    let store = open_stopped(&command.data.data_dir)?;
    let catalog = crate::catalog::Catalog::load(&store).map_err(failed)?;
    let regions = catalog.regions();
    let batches: usize = regions
        .iter()
        .map(|region| catalog.batches(region).len())
        .sum();
    let description = bucket.description().to_owned();
    let syncer = crate::bucket::sync::Syncer::new(
        bucket,
        store,
        catalog,
        Clock::System,
        command.confirm_prefix_bits,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let started = std::time::Instant::now();
    runtime.block_on(async {
        let mut delay = std::time::Duration::from_millis(500);
        for attempt in 1..=SYNC_ATTEMPTS {
            match syncer.sync_all().await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < SYNC_ATTEMPTS => {
                    eprintln!("attempt {attempt} failed ({error}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                Err(error) => return Err(failed(error)),
            }
        }
        Ok(())
    })?;
    writeln!(
        out,
        "published {batches} batches of {} regions and their indexes to {description} in {:.2} s",
        regions.len(),
        started.elapsed().as_secs_f64()
    )
    .map_err(failed)
}

/// The data directory an admin command works on.
#[derive(Debug, Args)]
pub struct DataDir {
    /// Folder of the server's database.
    #[arg(long, env = "EXPOSURE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Errors of admin commands, each a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad arguments (exit code 64).
    #[error("{0}")]
    Usage(String),
    /// The command could not be carried out.
    #[error("{0}")]
    Failed(String),
}

/// The database, or the knowledge that a running server holds it.
enum Opened {
    /// No server runs on the data directory.
    Store(Store),
    /// A server holds the database.
    HeldByServer,
}

fn open(data_dir: &Path) -> Result<Opened, AdminError> {
    let state =
        crate::datadir::prepare(data_dir).map_err(|error| AdminError::Usage(error.to_string()))?;
    if state == crate::datadir::DataDirState::New {
        eprintln!("note: creating a new store at {}", data_dir.display());
    }
    match Store::open(data_dir) {
        Ok(store) => Ok(Opened::Store(store)),
        Err(StorageError::Rocks(error)) if is_lock_held(&error) => Ok(Opened::HeldByServer),
        Err(error) => Err(AdminError::Failed(error.to_string())),
    }
}

/// Returns whether RocksDB refused to open because another process (or this one) holds the
/// database's `LOCK` file: the exact messages of RocksDB's POSIX `LockFile`, not any text that
/// happens to contain "lock" (such as "block").
fn is_lock_held(error: &rocksdb::Error) -> bool {
    matches!(error.kind(), rocksdb::ErrorKind::IOError) && is_lock_message(error.as_ref())
}

fn is_lock_message(message: &str) -> bool {
    let message = message.strip_prefix("IO error: ").unwrap_or(message);
    (message.starts_with("While lock file: ")
        || message.starts_with("lock hold by current process"))
        && message.contains("/LOCK: ")
}

/// Opens the database for commands that must write directly (no inbox path).
fn open_stopped(data_dir: &Path) -> Result<Store, AdminError> {
    match open(data_dir)? {
        Opened::Store(store) => Ok(store),
        Opened::HeldByServer => Err(AdminError::Failed(format!(
            "{} is in use by a running exposure-server; stop it first",
            data_dir.display()
        ))),
    }
}

fn failed(error: impl std::fmt::Display) -> AdminError {
    AdminError::Failed(error.to_string())
}

/// Runs an `authority` command, writing its report to `out`.
pub fn authority(command: AuthorityCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let now = Clock::System.now();
    match command {
        AuthorityCommand::Add {
            data,
            name,
            regions,
            admin,
            uploads_per_minute,
            keys_per_day,
        } => {
            if let Some(bad) = regions.iter().find(|region| !is_valid_region(region)) {
                return Err(AdminError::Usage(format!(
                    "--region {bad:?} must match ^[A-Z]{{2}}(-[A-Z0-9]{{1,3}})?$, e.g. VN-TB"
                )));
            }
            if name.trim().is_empty() {
                return Err(AdminError::Usage("--name must not be empty".into()));
            }
            let mut new = new_authority(&name, &regions, now);
            new.authority.admin = admin;
            new.authority.uploads_per_minute = uploads_per_minute.unwrap_or(0);
            new.authority.keys_per_day = keys_per_day.unwrap_or(0);
            match open(&data.data_dir)? {
                Opened::Store(store) => store
                    .put_authority(&new.token_hash, &new.authority)
                    .map_err(failed)?,
                Opened::HeldByServer => {
                    let request = InboxRequest {
                        add: Some(new.authority.clone()),
                        token_hash: new.token_hash.to_vec(),
                        requested_at: now,
                        ..InboxRequest::default()
                    };
                    let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
                    report_applied(out, &path)?;
                }
            }
            let authority = new.authority;
            let token = new.token;
            writeln!(
                out,
                "created authority {} ({}) for {}",
                authority.id,
                authority.name,
                authority.regions.join(", ")
            )
            .map_err(failed)?;
            writeln!(
                out,
                "upload token (shown once; send it as `authorization: Bearer <token>`):"
            )
            .map_err(failed)?;
            writeln!(out, "{token}").map_err(failed)?;
        }
        AuthorityCommand::List { data } => {
            let store = match open(&data.data_dir)? {
                Opened::Store(store) => store,
                Opened::HeldByServer => Store::open_read_only(&data.data_dir).map_err(failed)?,
            };
            writeln!(
                out,
                "id\tname\tregions\tcreated_at\tstatus\trole\tuploads_per_minute\tkeys_per_day"
            )
            .map_err(failed)?;
            for authority in store.list_authorities().map_err(failed)? {
                let status = if authority.revoked_at == 0 {
                    "active".to_owned()
                } else {
                    format!("revoked at {}", authority.revoked_at)
                };
                let role = if authority.admin {
                    "admin"
                } else {
                    "authority"
                };
                let own_or_default = |value: u64| match value {
                    0 => "default".to_owned(),
                    own => own.to_string(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{status}\t{role}\t{}\t{}",
                    authority.id,
                    authority.name,
                    authority.regions.join(","),
                    authority.created_at,
                    own_or_default(u64::from(authority.uploads_per_minute)),
                    own_or_default(authority.keys_per_day),
                )
                .map_err(failed)?;
            }
        }
        AuthorityCommand::Revoke {
            data,
            id,
            withdraw_keys,
        } => match open(&data.data_dir)? {
            Opened::Store(store) => {
                if !store.revoke_authority(&id, now).map_err(failed)? {
                    return Err(AdminError::Usage(format!(
                        "no active authority with id {id:?} (see `authority list`)"
                    )));
                }
                writeln!(out, "revoked authority {id}").map_err(failed)?;
                if withdraw_keys {
                    let withdrawn = crate::ingest::revoke::withdraw_authority_keys(&store, &id)
                        .map_err(failed)?;
                    writeln!(out, "withdrew {withdrawn} keys uploaded with its token")
                        .map_err(failed)?;
                }
            }
            Opened::HeldByServer => {
                let listed = Store::open_read_only(&data.data_dir)
                    .and_then(|store| store.list_authorities())
                    .map_err(failed)?;
                if !listed
                    .iter()
                    .any(|authority| authority.id == id && authority.revoked_at == 0)
                {
                    return Err(AdminError::Usage(format!(
                        "no active authority with id {id:?} (see `authority list`)"
                    )));
                }
                let request = InboxRequest {
                    revoke_id: id.clone(),
                    requested_at: now,
                    withdraw_keys,
                    ..InboxRequest::default()
                };
                let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
                report_applied(out, &path)?;
                writeln!(out, "revoked authority {id}").map_err(failed)?;
                if withdraw_keys {
                    writeln!(out, "its keys are withdrawn by the running server")
                        .map_err(failed)?;
                }
            }
        },
    }
    Ok(())
}

/// Waits for the running server to apply an inbox request; says whether it did, and returns it.
fn report_applied(out: &mut impl Write, path: &Path) -> Result<bool, AdminError> {
    if inbox::wait_applied(path, APPLY_WAIT) {
        writeln!(out, "the running server has applied the change").map_err(failed)?;
        Ok(true)
    } else {
        writeln!(
            out,
            "the change waits in {}; the server applies it within {} s of its next poll",
            path.display(),
            inbox::POLL_INTERVAL.as_secs()
        )
        .map_err(failed)?;
        Ok(false)
    }
}

/// How long an admin command waits for a running server to apply its request.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rocksdb_lock_errors_mean_a_running_server() {
        assert!(is_lock_message(
            "IO error: While lock file: /var/lib/exposure/db/LOCK: Resource temporarily unavailable"
        ));
        assert!(is_lock_message(
            "IO error: lock hold by current process, acquire time 1 acquiring thread 2: /d/db/LOCK: No locks available"
        ));
        assert!(!is_lock_message(
            "Corruption: block checksum mismatch in /d/db/000012.sst"
        ));
        assert!(!is_lock_message(
            "IO error: No such file or directory: While opening a file for sequentially reading: /d/db/LOCK"
        ));
    }

    #[test]
    fn a_store_open_in_this_process_is_reported_as_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = Store::open(dir.path()).expect("first open");
        assert!(matches!(open(dir.path()), Ok(Opened::HeldByServer)));
    }
}

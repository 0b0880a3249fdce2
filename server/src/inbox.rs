//! The admin inbox: how `exposure-server authority add|revoke`, `user add`, `signing-key
//! rotate|retire` and `backup` reach a server that is running.
//! RocksDB admits one writer process, so while the server holds the database the admin command
//! writes its request as a file into `data_dir/inbox/` (written aside, synced, then renamed into
//! place, so a half-written request is never read); the server applies each request to the store
//! within a second and deletes the file (a backup's request makes the server take a snapshot,
//! see [`crate::backup::snapshot`]). A token is therefore usable without a restart, and only
//! its hash ever touches the disk.
//!
//! The inbox is a folder of mode `0700`. The server reads each entry through
//! [`crate::files::read_private`] (no symbolic links, regular files of its own user only, at most
//! [`MAX_REQUEST_BYTES`]); an entry that fails those checks or does not decode is moved to
//! `inbox/quarantine/` (deleted if it cannot be moved) with a warning, and the other entries are
//! still applied.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::signing::KeyRing;
use crate::storage::outbox::OutboxTask;

use crate::storage::console::{ConsoleUser, Enrolment};
use crate::storage::records::Authority;
use crate::storage::{StorageError, Store};

/// How often the server looks into the inbox.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request file the server reads; a real request is well under 1 KiB.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
const REQUEST_SUFFIX: &str = "request";
const QUARANTINE: &str = "quarantine";

/// One admin request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InboxRequest {
    /// An authority to add, keyed by its token's SHA-256.
    #[prost(message, optional, tag = "1")]
    pub add: Option<Authority>,
    /// SHA-256 of the added authority's token.
    #[prost(bytes = "vec", tag = "2")]
    pub token_hash: Vec<u8>,
    /// Id of an authority to revoke.
    #[prost(string, tag = "3")]
    pub revoke_id: String,
    /// Unix seconds of the request.
    #[prost(uint64, tag = "4")]
    pub requested_at: u64,
    /// With `revoke_id`: also withdraw every key that came through the authority (a leaked
    /// token).
    #[prost(bool, tag = "5")]
    pub withdraw_keys: bool,
    /// Take a backup snapshot under this name (`crate::backup::snapshot`).
    #[prost(string, tag = "6")]
    pub snapshot: String,
    /// Make this signing key current (`signing-key rotate`); its private key is
    /// `signing/{id}.pem` of the data directory, or `rotate_key_file`.
    #[prost(string, tag = "7")]
    pub rotate_key_id: String,
    /// With `rotate_key_id`: the PEM file outside the data directory that holds the key.
    #[prost(string, tag = "8")]
    pub rotate_key_file: String,
    /// With `rotate_key_id`: the GAEN `verification_key_version` of the new key.
    #[prost(string, tag = "9")]
    pub gaen_key_version: String,
    /// Retire this signing key (`signing-key retire`).
    #[prost(string, tag = "10")]
    pub retire_key_id: String,
    /// A staff account of the console to add (`user add`), with `enrolment`.
    #[prost(message, optional, tag = "11")]
    pub add_user: Option<ConsoleUser>,
    /// With `add_user`: SHA-256 of the enrolment link's token.
    #[prost(bytes = "vec", tag = "12")]
    pub enrolment_hash: Vec<u8>,
    /// With `add_user`: the enrolment link's record.
    #[prost(message, optional, tag = "13")]
    pub enrolment: Option<Enrolment>,
    /// With `rotate_key_id`: seconds of the overlap (`signing-key rotate --overlap`): the key
    /// becomes the next key, current this long after the server applies the request (by its
    /// clock); 0 makes it current at once.
    #[prost(uint64, tag = "14")]
    pub overlap_seconds: u64,
}

/// Errors of the inbox.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A request file could not be written, read or removed.
    #[error("inbox {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed while applying a request.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A signing-key change failed in the store (retried).
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
}

/// Returns the inbox folder of a data directory.
pub fn inbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("inbox")
}

/// Drops a request into the inbox, durably; returns its path.
pub fn submit(data_dir: &Path, request: &InboxRequest) -> Result<PathBuf, InboxError> {
    use std::io::Write;
    let folder = inbox_dir(data_dir);
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| InboxError::File { path, source }
    };
    crate::files::create_private_dir(&folder).map_err(file_error(&folder))?;
    let name = format!("{:020}-{:08x}", request.requested_at, rand::random::<u32>());
    let aside = folder.join(format!(".{name}.tmp"));
    let path = folder.join(format!("{name}.{REQUEST_SUFFIX}"));
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)
            .map_err(file_error(&aside))?
    };
    file.write_all(&prost::Message::encode_to_vec(request))
        .map_err(file_error(&aside))?;
    file.sync_all().map_err(file_error(&aside))?;
    std::fs::rename(&aside, &path).map_err(file_error(&path))?;
    std::fs::File::open(&folder)
        .and_then(|dir| dir.sync_all())
        .map_err(file_error(&folder))?;
    Ok(path)
}

/// Waits until the running server has applied the request at `path` (its file is gone);
/// returns false if that did not happen within `timeout`.
pub fn wait_applied(path: &Path, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while path.exists() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Returns the waiting requests of an inbox folder, oldest first (unread).
fn waiting_requests(folder: &Path) -> Result<Vec<PathBuf>, InboxError> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(folder) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == REQUEST_SUFFIX)
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InboxError::File {
                path: folder.to_owned(),
                source,
            });
        }
    };
    paths.sort();
    Ok(paths)
}

/// Reads and decodes one request under the inbox rules; the error names the file.
fn read_request(path: &Path) -> Result<InboxRequest, String> {
    crate::files::read_private(path, MAX_REQUEST_BYTES)
        .map_err(|error| error.to_string())
        .and_then(|bytes| {
            <InboxRequest as prost::Message>::decode(bytes.as_slice())
                .map_err(|error| format!("{}: {error}", path.display()))
        })
}

/// Returns whether `path` is a waiting request that changes the store (not a backup's own
/// snapshot request): what a backup keeps of the inbox, for the restored server to apply.
pub fn is_pending_change(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension == REQUEST_SUFFIX)
        && read_request(path).is_ok_and(|request| request.snapshot.is_empty())
}

/// What the server applies inbox requests to.
#[derive(Clone)]
pub struct Inbox {
    /// The store requests change.
    store: Store,
    /// The data directory whose `inbox/` is read.
    data_dir: PathBuf,
    /// The publisher's signing keys in service, changed by a rotation.
    keys: Option<KeyRing>,
    /// The server's clock: an overlap's switch time counts from it.
    clock: Clock,
    /// Object-storage hook: signing-key changes queue the rewrite of `v1/signing-keys` in
    /// their own write and wake the drain task.
    outbox: Option<Arc<Notify>>,
}

impl Inbox {
    /// Returns the inbox of `data_dir`, applying requests to `store`.
    pub fn new(store: Store, data_dir: PathBuf) -> Self {
        Self {
            store,
            data_dir,
            keys: None,
            clock: Clock::System,
            outbox: None,
        }
    }

    /// Counts overlaps from `clock` (the publisher's), instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Makes rotations replace the key in `keys` (without it they are refused).
    #[must_use]
    pub fn with_keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Queues object-storage tasks with signing-key changes and notifies `wake` after them.
    #[must_use]
    pub fn with_outbox(mut self, wake: Arc<Notify>) -> Self {
        self.outbox = Some(wake);
        self
    }

    /// Applies every request waiting in the inbox, oldest first; returns how many were
    /// applied. An entry that is unsafe to read or does not decode is quarantined and skipped.
    pub fn apply_pending(&self) -> Result<usize, InboxError> {
        let folder = inbox_dir(&self.data_dir);
        let mut applied = 0;
        for path in waiting_requests(&folder)? {
            match read_request(&path) {
                Ok(request) => {
                    self.apply(&request, &path)?;
                    std::fs::remove_file(&path).map_err(|source| InboxError::File {
                        path: path.clone(),
                        source,
                    })?;
                    applied += 1;
                }
                Err(reason) => quarantine(&folder, &path, &reason),
            }
        }
        Ok(applied)
    }

    fn apply(&self, request: &InboxRequest, path: &Path) -> Result<(), InboxError> {
        let store = &self.store;
        if let Some(authority) = &request.add {
            store.put_authority(&request.token_hash, authority)?;
            tracing::info!(authority = %authority.id, "authority added from the inbox");
        }
        if !request.revoke_id.is_empty() {
            let revoked = store.revoke_authority(&request.revoke_id, request.requested_at)?;
            tracing::info!(authority = %request.revoke_id, revoked, "authority revocation from the inbox");
            if request.withdraw_keys {
                let withdrawn =
                    crate::ingest::revoke::withdraw_authority_keys(store, &request.revoke_id)?;
                tracing::info!(authority = %request.revoke_id, withdrawn, "authority's keys withdrawn");
            }
        }
        if let (Some(user), Some(enrolment)) = (&request.add_user, &request.enrolment) {
            store.add_console_user(user, &request.enrolment_hash, enrolment)?;
            tracing::info!(authority = %user.authority_id, "console user added from the inbox");
        }
        if !request.snapshot.is_empty() {
            crate::backup::snapshot::answer_request(store, &self.data_dir, &request.snapshot, path);
        }
        if !request.rotate_key_id.is_empty() || !request.retire_key_id.is_empty() {
            match self.apply_signing(request) {
                Ok(()) => {
                    if let Some(wake) = &self.outbox {
                        wake.notify_one();
                    }
                }
                Err(crate::signing::SigningError::Storage(error)) => return Err(error.into()),
                // A refused or unreadable key is not retried: the waiting command reports it.
                Err(error) => tracing::warn!(%error, "signing-key request from the inbox refused"),
            }
        }
        Ok(())
    }

    /// Applies a rotation or retirement.
    fn apply_signing(&self, request: &InboxRequest) -> Result<(), crate::signing::SigningError> {
        use crate::signing::{self, SigningError, lifecycle};
        let queue: &[OutboxTask] = if self.outbox.is_some() {
            &[OutboxTask::SigningKeys]
        } else {
            &[]
        };
        let now = request.requested_at;
        if !request.rotate_key_id.is_empty() {
            let Some(keys) = &self.keys else {
                return Err(SigningError::Refused(
                    "this inbox cannot rotate signing keys".into(),
                ));
            };
            let signer = if request.rotate_key_file.is_empty() {
                signing::read_data_dir_key(&self.data_dir, &request.rotate_key_id)?
            } else {
                signing::read_given_key(Path::new(&request.rotate_key_file))?
            };
            if signer.key_id() != request.rotate_key_id {
                return Err(SigningError::Refused(format!(
                    "the key file holds key {}, not {}",
                    signer.key_id(),
                    request.rotate_key_id
                )));
            }
            if request.overlap_seconds == 0 {
                lifecycle::activate(
                    &self.store,
                    Some(keys),
                    &signer,
                    &request.gaen_key_version,
                    now,
                    queue,
                )?;
            } else {
                let current_from = self.clock.now().saturating_add(request.overlap_seconds);
                lifecycle::add_next(
                    &self.store,
                    Some(keys),
                    &signer,
                    &request.gaen_key_version,
                    now,
                    current_from,
                    queue,
                )?;
            }
        }
        if !request.retire_key_id.is_empty() {
            lifecycle::retire(
                &self.store,
                self.keys.as_ref(),
                &self.data_dir,
                &request.retire_key_id,
                now,
                queue,
            )?;
        }
        Ok(())
    }

    /// Applies inbox requests every [`POLL_INTERVAL`] until `cancel` fires.
    pub async fn run_periodically(self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let inbox = self.clone();
            match tokio::task::spawn_blocking(move || inbox.apply_pending()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "inbox requests could not be applied; retrying")
                }
                Err(error) => tracing::error!(%error, "inbox task failed; retrying"),
            }
        }
    }
}

/// Moves a bad entry out of the way (into `inbox/quarantine/`, or deletes it when it cannot be
/// moved), so it is not looked at again. The reason names the file, never its contents.
fn quarantine(folder: &Path, path: &Path, reason: &str) {
    let target = folder.join(QUARANTINE);
    let moved = crate::files::create_private_dir(&target).and_then(|()| {
        let name = path.file_name().unwrap_or_default();
        std::fs::rename(path, target.join(name))
    });
    match moved {
        Ok(()) => {
            tracing::warn!(%reason, to = %target.display(), "unsafe or unreadable inbox entry quarantined")
        }
        Err(error) => {
            let removed = std::fs::symlink_metadata(path).and_then(|metadata| {
                if metadata.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                }
            });
            tracing::warn!(%reason, %error, deleted = removed.is_ok(), "unsafe or unreadable inbox entry could not be quarantined")
        }
    }
}

//! The batch signing keys. Private keys live as PKCS#8 PEM files (mode 0600) under
//! `data_dir/signing/`, or in a file the operator names with `--signing-key-file` (kept outside
//! the data directory); their public halves, the GAEN `verification_key_version` each is
//! registered under, which one is current and which are retired live in the store.
//! `GetSigningKeys` lists every key that is not retired, so phones verify batches signed before
//! a rotation; a retired key (a compromise) is listed nowhere, and batches it signed fail
//! verification from then on. [`lifecycle`] rotates and retires keys, on a running server
//! through its inbox; the publisher reads the keys in service from the shared [`KeyRing`]
//! before each batch, so a rotation takes effect at the next batch. A rotation with an overlap
//! (DESIGN §15) adds a next key that signs GAEN exports beside the current one until its
//! switch time, when the publisher's next run makes it current.

pub mod lifecycle;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use exposure_matcher::BatchSigner;

use crate::files::{ReadRules, read_regular};
use crate::storage::{StorageError, Store};

/// Errors of signing-key handling.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key file could not be read or written.
    #[error("signing key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file did not hold a P-256 PKCS#8 key.
    #[error("signing key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The current key's private half is not in the data directory (it is kept elsewhere, or
    /// the store was restored from a backup made without it).
    #[error(
        "the current signing key {key_id} has no private key at {path}: pass --signing-key-file with it"
    )]
    MissingPrivateKey {
        /// The current key.
        key_id: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A rotation, retirement or start that the key rules forbid (retiring the current key, a
    /// GAEN version in use, a key file a rotation replaced); the message says what to do.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Returns the folder of the private keys kept in the data directory.
pub fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("signing")
}

/// Returns where the private key `key_id` lives in the data directory.
pub fn key_file(data_dir: &Path, key_id: &str) -> PathBuf {
    key_dir(data_dir).join(format!("{key_id}.pem"))
}

/// The key that signs new batches, with the GAEN version its exports carry.
#[derive(Clone)]
pub struct ActiveKey {
    /// The private key.
    pub signer: BatchSigner,
    /// `verification_key_version` of GAEN exports signed with it.
    pub gaen_key_version: String,
}

/// The key a rotation with an overlap added (DESIGN §15): it signs GAEN exports beside the
/// current key, never a batch, until `current_from`, when the publisher makes it current.
#[derive(Clone)]
pub struct NextKey {
    /// The key and its GAEN version.
    pub key: ActiveKey,
    /// Unix seconds from which it is current.
    pub current_from: u64,
}

/// The keys in service: the current key, and during a rotation's overlap the next one.
#[derive(Clone)]
pub struct InService {
    /// Signs every batch and every GAEN export.
    pub current: ActiveKey,
    /// During an overlap, also signs every GAEN export.
    pub next: Option<NextKey>,
}

impl InService {
    /// Returns whether `other` holds the same keys (a rotation, an overlap's start, end or
    /// cancellation changes them).
    pub fn same_keys(&self, other: &InService) -> bool {
        let next_id = |keys: &InService| {
            keys.next
                .as_ref()
                .map(|next| next.key.signer.key_id().to_owned())
        };
        self.current.signer.key_id() == other.current.signer.key_id()
            && next_id(self) == next_id(other)
    }
}

/// The keys in service, shared by the publisher and the inbox, which changes them on a
/// rotation, and by the publisher, which ends an overlap.
#[derive(Clone)]
pub struct KeyRing(Arc<RwLock<Arc<InService>>>);

impl KeyRing {
    /// Returns a ring whose current key is `key`, without a next key.
    pub fn new(key: ActiveKey) -> Self {
        Self::with_keys(InService {
            current: key,
            next: None,
        })
    }

    /// Returns a ring holding `keys`.
    pub fn with_keys(keys: InService) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(keys))))
    }

    /// Returns the keys in service.
    pub fn in_service(&self) -> Arc<InService> {
        // Critical sections are a clone or a store of an Arc: a poisoned lock holds a whole value.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `keys` in service.
    pub(crate) fn replace(&self, keys: InService) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
    }
}

/// Returns the key to sign with at start: the key of `--signing-key-file` when given, else the
/// store's current key from the data directory, else a new key (first start). A key without a
/// recorded GAEN version gets `default_gaen_version` (or the next free `vN` when another key
/// has it). A given key that was retired, or that a rotation replaced, is refused: starting
/// with an old key file must not silently undo a rotation.
pub fn load_or_create(
    store: &Store,
    data_dir: &Path,
    given: Option<&Path>,
    default_gaen_version: &str,
    now: u64,
) -> Result<ActiveKey, SigningError> {
    let list = store.signing_keys()?;
    if let Some(path) = given {
        let signer = read_signer(path, GIVEN_KEY_RULES)?;
        let id = signer.key_id();
        return match list.keys.iter().find(|record| record.key_id == id) {
            Some(record) if record.retired_at != 0 => Err(SigningError::Refused(format!(
                "--signing-key-file {}: key {id} was retired; give the current key's file",
                path.display()
            ))),
            Some(_) if list.next == id => Err(SigningError::Refused(format!(
                "--signing-key-file {}: key {id} is the next key of a rotation, current from {}; give the current key's file ({})",
                path.display(),
                lifecycle::time_text(list.next_current_from),
                list.current
            ))),
            Some(_) if list.current != id => Err(SigningError::Refused(format!(
                "--signing-key-file {}: key {id} was replaced by a rotation; the current key is {}: give its file, or leave the flag out when its private key is in the data directory",
                path.display(),
                list.current
            ))),
            Some(_) => lifecycle::record_gaen_version(store, signer, default_gaen_version),
            None => {
                let version = lifecycle::free_gaen_version(&list, default_gaen_version);
                tracing::info!(key_id = id, gaen_key_version = %version, "signing key of --signing-key-file registered");
                lifecycle::activate(store, None, &signer, &version, now, &[])
            }
        };
    }
    if !list.current.is_empty() {
        let path = key_file(data_dir, &list.current);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(SigningError::MissingPrivateKey {
                key_id: list.current,
                path,
            });
        }
        let signer = read_signer(&path, DATA_DIR_KEY_RULES)?;
        return lifecycle::record_gaen_version(store, signer, default_gaen_version);
    }
    add_new_key(store, data_dir, default_gaen_version, now)
}

/// Returns the next key of a rotation in its overlap, read from the data directory; `None`
/// outside an overlap.
pub fn load_next(store: &Store, data_dir: &Path) -> Result<Option<NextKey>, SigningError> {
    let list = store.signing_keys()?;
    if list.next.is_empty() {
        return Ok(None);
    }
    let path = key_file(data_dir, &list.next);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(SigningError::Refused(format!(
            "the next signing key {0} (a rotation in its overlap) has no private key at {1}: put it back, or call the rotation off with `signing-key retire {0}`",
            list.next,
            path.display()
        )));
    }
    let signer = read_signer(&path, DATA_DIR_KEY_RULES)?;
    let gaen_key_version = list
        .keys
        .iter()
        .find(|record| record.key_id == list.next)
        .map(|record| record.gaen_key_version.clone())
        .unwrap_or_default();
    Ok(Some(NextKey {
        key: ActiveKey {
            signer,
            gaen_key_version,
        },
        current_from: list.next_current_from,
    }))
}

/// Generates a key into the data directory and makes it current with GAEN version
/// `gaen_key_version`; returns it.
pub fn add_new_key(
    store: &Store,
    data_dir: &Path,
    gaen_key_version: &str,
    now: u64,
) -> Result<ActiveKey, SigningError> {
    let signer = generate_key(data_dir)?;
    lifecycle::activate(store, None, &signer, gaen_key_version, now, &[])
}

/// Generates a key and writes its private half into the data directory (not yet listed).
pub fn generate_key(data_dir: &Path) -> Result<BatchSigner, SigningError> {
    let signer = BatchSigner::generate();
    write_private_key(&key_file(data_dir, signer.key_id()), &signer.to_pkcs8_pem())?;
    Ok(signer)
}

/// Largest key file read; a P-256 PKCS#8 PEM is about 250 bytes.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;
/// A key of the data directory: no symbolic link, the server's own file.
const DATA_DIR_KEY_RULES: ReadRules = ReadRules {
    limit: MAX_KEY_FILE_BYTES,
    follow_symlinks: false,
    own_only: true,
};
/// A key the operator names with `--signing-key-file` may be a link (a mounted secret) owned by
/// another user, but is still a bounded regular file.
const GIVEN_KEY_RULES: ReadRules = ReadRules {
    limit: MAX_KEY_FILE_BYTES,
    follow_symlinks: true,
    own_only: false,
};

/// Reads a key the operator names (`--signing-key-file`, `signing-key rotate --key-file`).
pub fn read_given_key(path: &Path) -> Result<BatchSigner, SigningError> {
    read_signer(path, GIVEN_KEY_RULES)
}

/// Reads the private key `key_id` of the data directory.
pub fn read_data_dir_key(data_dir: &Path, key_id: &str) -> Result<BatchSigner, SigningError> {
    read_signer(&key_file(data_dir, key_id), DATA_DIR_KEY_RULES)
}

fn read_signer(path: &Path, rules: ReadRules) -> Result<BatchSigner, SigningError> {
    let bytes = read_regular(path, rules).map_err(|error| SigningError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    let pem = String::from_utf8(bytes).map_err(|_| SigningError::Invalid {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    BatchSigner::from_pkcs8_pem(&pem).map_err(|error| SigningError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Writes a private key readable by the owner only, durably (file and folder synced).
fn write_private_key(path: &Path, pem: &str) -> Result<(), SigningError> {
    let file_error = |source| SigningError::File {
        path: path.to_owned(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    crate::files::create_private_dir(folder).map_err(file_error)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(file_error)?;
    file.write_all(pem.as_bytes()).map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    std::fs::File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(file_error)?;
    Ok(())
}

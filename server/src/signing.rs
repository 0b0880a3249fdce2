//! The batch signing keys. Private keys live as PKCS#8 PEM files (mode 0600) under
//! `data_dir/signing/`; their public halves and which one is current live in the store, so
//! `GetSigningKeys` keeps listing retired keys that signed batches phones may still hold.

use std::io::Write;
use std::path::{Path, PathBuf};

use exposure_matcher::BatchSigner;

use crate::files::{ReadRules, read_regular};
use crate::storage::records::{SigningKeyList, SigningKeyRecord};
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

/// Returns the signer to use: the key given on the command line, else the store's current
/// key, else a newly generated one (first start).
pub fn load_or_create(
    store: &Store,
    data_dir: &Path,
    given: Option<&Path>,
    now: u64,
) -> Result<BatchSigner, SigningError> {
    let mut list = store.signing_keys()?;
    if let Some(path) = given {
        let signer = read_signer(path, GIVEN_KEY_RULES)?;
        if list.current != signer.key_id() {
            register(&mut list, &signer, now);
            store.put_signing_keys(&list)?;
        }
        return Ok(signer);
    }
    if !list.current.is_empty() {
        let path = key_file(data_dir, &list.current);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(SigningError::MissingPrivateKey {
                key_id: list.current,
                path,
            });
        }
        return read_signer(&path, DATA_DIR_KEY_RULES);
    }
    add_new_key(store, data_dir, now)
}

/// Generates a key, stores it, and makes it the one that signs from now on; returns it.
pub fn add_new_key(store: &Store, data_dir: &Path, now: u64) -> Result<BatchSigner, SigningError> {
    let signer = BatchSigner::generate();
    write_private_key(&key_file(data_dir, signer.key_id()), &signer.to_pkcs8_pem())?;
    let mut list = store.signing_keys()?;
    register(&mut list, &signer, now);
    store.put_signing_keys(&list)?;
    Ok(signer)
}

fn register(list: &mut SigningKeyList, signer: &BatchSigner, now: u64) {
    if !list
        .keys
        .iter()
        .any(|record| record.key_id == signer.key_id())
    {
        list.keys.push(SigningKeyRecord {
            key_id: signer.key_id().to_owned(),
            public_key_der: signer.public_key_der(),
            created_at: now,
        });
    }
    list.current = signer.key_id().to_owned();
}

/// Largest key file read; a P-256 PKCS#8 PEM is about 250 bytes.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;
/// A key of the data directory: no symbolic link, the server's own file.
const DATA_DIR_KEY_RULES: ReadRules = ReadRules {
    limit: MAX_KEY_FILE_BYTES,
    follow_symlinks: false,
    own_only: true,
};
/// A key the operator names with `--signing-key` may be a link (a mounted secret) owned by
/// another user, but is still a bounded regular file.
const GIVEN_KEY_RULES: ReadRules = ReadRules {
    limit: MAX_KEY_FILE_BYTES,
    follow_symlinks: true,
    own_only: false,
};

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

//! The manifest of a backup: `MANIFEST.sha256`, one line per file, `<sha256 hex>  <path>`,
//! paths relative to the backup folder with `/` separators, sorted. It is the format of
//! `sha256sum`, so `cd BACKUP && sha256sum -c MANIFEST.sha256` checks a backup without the
//! server. The manifest is written last and the folder renamed into place after it, so a backup
//! folder with a manifest is complete.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::BackupError;

/// File name of the manifest inside a backup folder.
pub const MANIFEST_FILE: &str = "MANIFEST.sha256";
/// File name of the sealed copy of the manifest in a sealed backup (see `super::seal`): the
/// manifest's text sealed as the object [`MANIFEST_FILE`] at position `u64::MAX`. It is not
/// listed in the manifest, which it authenticates.
pub const SEALED_MANIFEST_FILE: &str = "MANIFEST.seal";
/// Largest manifest read: a store has thousands of files at most, each line under 200 bytes.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Read and write buffer of the copies.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The files of a backup and their digests, sorted by path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `(relative path, SHA-256)`, sorted by path.
    pub entries: Vec<(String, Digest)>,
}

impl Manifest {
    /// Returns the digest recorded for `path`.
    pub fn digest(&self, path: &str) -> Option<&Digest> {
        self.entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(path))
            .ok()
            .map(|index| &self.entries[index].1)
    }

    /// Returns the manifest's text.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(path, digest)| format!("{}  {path}\n", hex::encode(digest)))
            .collect()
    }

    /// Parses a manifest, refusing any line that is not `<64 hex>  <safe relative path>`,
    /// duplicates and unsorted paths.
    pub fn parse(text: &str, source: &Path) -> Result<Self, BackupError> {
        let bad = |line: usize, reason: &str| BackupError::Corrupt {
            path: source.to_owned(),
            reason: format!("line {line}: {reason}"),
        };
        let mut entries: Vec<(String, Digest)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let (hex_digest, path) = line
                .split_once("  ")
                .ok_or_else(|| bad(number, "expected `<sha256>  <path>`"))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest)
                .map_err(|_| bad(number, "the checksum is not 64 hex digits"))?;
            check_relative(path).map_err(|reason| bad(number, &reason))?;
            if let Some((previous, _)) = entries.last()
                && previous.as_str() >= path
            {
                return Err(bad(number, "paths are not sorted and unique"));
            }
            entries.push((path.to_owned(), digest));
        }
        Ok(Self { entries })
    }

    /// Reads and parses the manifest of the backup folder `backup`.
    pub fn read(backup: &Path) -> Result<Self, BackupError> {
        let path = backup.join(MANIFEST_FILE);
        let bytes = crate::files::read_regular(
            &path,
            crate::files::ReadRules {
                limit: MAX_MANIFEST_BYTES,
                follow_symlinks: false,
                own_only: false,
            },
        )
        .map_err(|error| BackupError::Corrupt {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| BackupError::Corrupt {
            path: path.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        Self::parse(&text, &path)
    }
}

/// Checks that `path` is a plain relative path inside the backup: `/`-separated normal parts,
/// no `.`, `..`, empty part, backslash or control character (which `sha256sum` would escape).
pub fn check_relative(path: &str) -> Result<(), String> {
    let plain = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(format!("{path:?} is not a plain relative path"))
    }
}

/// Returns the SHA-256 and length of a file.
pub fn hash_file(path: &Path) -> Result<(Digest, u64), BackupError> {
    hash_and_copy(path, None)
}

/// Copies `from` to the new file `to` (mode 0600, synced), returning the SHA-256 and length of
/// the bytes copied.
pub fn copy_hashed(from: &Path, to: &Path) -> Result<(Digest, u64), BackupError> {
    let mut target = create_private_file(to)?;
    let hashed = hash_and_copy(from, Some((to, &mut target)))?;
    target.sync_all().map_err(BackupError::io(to))?;
    Ok(hashed)
}

/// Reads `from` to its end, hashing it and writing it to `copy` when given.
fn hash_and_copy(
    from: &Path,
    mut copy: Option<(&Path, &mut std::fs::File)>,
) -> Result<(Digest, u64), BackupError> {
    let mut source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut length = 0u64;
    loop {
        let read = source.read(&mut buffer).map_err(BackupError::io(from))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Some((to, target)) = copy.as_mut() {
            target
                .write_all(&buffer[..read])
                .map_err(BackupError::io(to))?;
        }
        length += read as u64;
    }
    Ok((hasher.finalize().into(), length))
}

/// A reader or writer that hashes (SHA-256) and counts the bytes passing through it.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    length: u64,
}

impl<T> Hashing<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            length: 0,
        }
    }

    /// Returns the SHA-256 and length of the bytes that passed, and the inner reader or writer.
    pub fn finish(self) -> (Digest, u64, T) {
        (self.hasher.finalize().into(), self.length, self.inner)
    }
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        self.length += read as u64;
        Ok(read)
    }
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Creates a new file readable by its owner only; an existing file is an error.
pub fn create_private_file(path: &Path) -> Result<std::fs::File, BackupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(BackupError::io(path))
}

/// Writes a small file (mode 0600, synced).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = create_private_file(path)?;
    file.write_all(bytes).map_err(BackupError::io(path))?;
    file.sync_all().map_err(BackupError::io(path))
}

/// Syncs a folder, so the entries created in it survive a crash.
pub fn sync_dir(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(BackupError::io(path))
}

/// Returns every regular file under `root`, as sorted relative `/` paths. Symbolic links and
/// other special files are refused: nothing the server writes is one.
pub fn list_files(root: &Path) -> Result<Vec<String>, BackupError> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let folder = root.join(&relative);
        for entry in std::fs::read_dir(&folder).map_err(BackupError::io(&folder))? {
            let entry = entry.map_err(BackupError::io(&folder))?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type().map_err(BackupError::io(&entry.path()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let text = path.to_str().ok_or_else(|| BackupError::Corrupt {
                    path: entry.path(),
                    reason: "the name is not UTF-8".into(),
                })?;
                check_relative(text).map_err(|reason| BackupError::Corrupt {
                    path: entry.path(),
                    reason,
                })?;
                found.push(text.to_owned());
            } else {
                return Err(BackupError::Corrupt {
                    path: entry.path(),
                    reason: "not a regular file or folder".into(),
                });
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Checks every file of the backup folder `backup` against its manifest: each listed file
/// exists and has its checksum, and no file is there that the manifest does not list.
/// Returns the manifest and the total bytes checked.
pub fn verify(backup: &Path) -> Result<(Manifest, u64), BackupError> {
    let manifest = Manifest::read(backup)?;
    let present = list_files(backup)?;
    if let Some(extra) = present.iter().find(|path| {
        path.as_str() != MANIFEST_FILE
            && path.as_str() != SEALED_MANIFEST_FILE
            && manifest.digest(path).is_none()
    }) {
        return Err(BackupError::Corrupt {
            path: backup.join(extra),
            reason: "not listed in the manifest".into(),
        });
    }
    let mut bytes = 0;
    for (path, expected) in &manifest.entries {
        let file = backup.join(path);
        if !present.contains(path) {
            return Err(BackupError::Corrupt {
                path: file,
                reason: "listed in the manifest but missing".into(),
            });
        }
        let (digest, length) = hash_file(&file)?;
        if &digest != expected {
            return Err(BackupError::Corrupt {
                path: file,
                reason: "checksum mismatch".into(),
            });
        }
        bytes += length;
    }
    Ok((manifest, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_refuse_unsafe_lines() {
        let manifest = Manifest {
            entries: vec![
                ("BACKUP-INFO".into(), [1; 32]),
                ("db/000012.sst".into(), [2; 32]),
            ],
        };
        let text = manifest.to_text();
        assert_eq!(
            text.lines().next(),
            Some("0101010101010101010101010101010101010101010101010101010101010101  BACKUP-INFO")
        );
        let source = Path::new("m");
        assert_eq!(Manifest::parse(&text, source).expect("parses"), manifest);
        assert_eq!(manifest.digest("db/000012.sst"), Some(&[2; 32]));
        assert_eq!(manifest.digest("db/missing"), None);
        let digest = "ab".repeat(32);
        for bad in [
            format!("{digest}  ../etc/passwd"),
            format!("{digest}  /etc/passwd"),
            format!("{digest}  db//x"),
            format!("{digest}  db/./x"),
            format!("{digest} one-space"),
            format!("{}  short", "ab".repeat(31)),
            format!("{digest}  b\n{digest}  a"),
            format!("{digest}  a\n{digest}  a"),
        ] {
            assert!(Manifest::parse(&bad, source).is_err(), "{bad:?} refused");
        }
    }
}

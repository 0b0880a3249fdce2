//! Reading files without trusting what sits at their path. Everything the server reads from
//! its data directory (admin inbox requests, signing keys) goes through [`read_private`]: the
//! file is opened without following a symbolic link and without blocking (so a FIFO or device
//! cannot hang the server), it must then be a regular file owned by the server's own user, and
//! at most a bounded number of bytes is read. Folders the server creates are made `0700`.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeFile {
    /// The path could not be opened or read (a symbolic link fails here with ELOOP).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is a FIFO, folder, device or socket.
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// The file belongs to another user.
    #[error("{path}: owned by uid {owner}, not by the server's uid {expected}")]
    ForeignOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The server's uid.
        expected: u32,
    },
    /// The file is larger than allowed.
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
}

/// How a file is opened by [`read_regular`].
#[derive(Clone, Copy, Debug)]
pub struct ReadRules {
    /// Most bytes accepted.
    pub limit: u64,
    /// Whether a symbolic link at the path is followed (operator-given paths such as a
    /// mounted secret) or refused (files inside the data directory).
    pub follow_symlinks: bool,
    /// Whether the file must belong to the server's user.
    pub own_only: bool,
}

/// Reads a file of the data directory: no symbolic links, regular, owned by the server's
/// user, at most `limit` bytes.
pub fn read_private(path: &Path, limit: u64) -> Result<Vec<u8>, UnsafeFile> {
    read_regular(
        path,
        ReadRules {
            limit,
            follow_symlinks: false,
            own_only: true,
        },
    )
}

/// Reads a regular file under `rules`, never blocking on a FIFO or device.
pub fn read_regular(path: &Path, rules: ReadRules) -> Result<Vec<u8>, UnsafeFile> {
    let io = |source| UnsafeFile::Io {
        path: path.to_owned(),
        source,
    };
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !rules.follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.file_type().is_file() {
        return Err(UnsafeFile::NotRegular {
            path: path.to_owned(),
        });
    }
    let expected = crate::sys::effective_uid();
    if rules.own_only && metadata.uid() != expected {
        return Err(UnsafeFile::ForeignOwner {
            path: path.to_owned(),
            owner: metadata.uid(),
            expected,
        });
    }
    let mut bytes = Vec::new();
    file.take(rules.limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > rules.limit {
        return Err(UnsafeFile::TooLarge {
            path: path.to_owned(),
            limit: rules.limit,
        });
    }
    Ok(bytes)
}

/// Creates `path` (and missing parents) as folders readable by their owner only, and narrows an
/// existing folder of ours to `0700`.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let metadata = std::fs::metadata(path)?;
    if metadata.uid() == crate::sys::effective_uid() && metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_regular_file_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good");
        std::fs::write(&good, b"hello").expect("write");
        assert_eq!(read_private(&good, 5).expect("read"), b"hello");
        assert!(matches!(
            read_private(&good, 4),
            Err(UnsafeFile::TooLarge { limit: 4, .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert!(matches!(
            read_private(&link, 64),
            Err(UnsafeFile::Io { .. })
        ));
        let followed = read_regular(
            &link,
            ReadRules {
                limit: 64,
                follow_symlinks: true,
                own_only: true,
            },
        );
        assert_eq!(followed.expect("followed"), b"hello");
        assert!(matches!(
            read_private(dir.path(), 64),
            Err(UnsafeFile::NotRegular { .. })
        ));
    }

    #[test]
    fn private_dirs_are_0700() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).expect("create");
        let mode = std::fs::metadata(&nested)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&nested).expect("narrow");
        let mode = std::fs::metadata(&nested)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

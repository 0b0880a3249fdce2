//! The data directory at startup. Opening an existing store is the normal case; a new store is
//! created only in a folder that does not exist yet or is empty, with a warning naming it, so a
//! mistyped `--data-dir` pointing at some other non-empty folder is refused instead of silently
//! starting an empty database. The folder (and its inbox) is made private (`0700`).

use std::path::{Path, PathBuf};

/// Entries a fresh volume may hold that do not make a folder "not empty".
const IGNORED_ENTRIES: [&str; 1] = ["lost+found"];

/// What [`prepare`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirState {
    /// The folder holds a store.
    Existing,
    /// The folder was missing or empty; a new store will be created in it.
    New,
}

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The folder has other files and no store: most likely a wrong `--data-dir`.
    #[error(
        "--data-dir {0}: the folder is not empty and holds no exposure-server store (no db/CURRENT); \
         pass the folder of an existing store, or a missing or empty folder to create a new one"
    )]
    ForeignContents(PathBuf),
    /// A restore target that is not empty (it may even hold a live store).
    #[error(
        "--data-dir {0}: the folder is not empty; restore into a missing or empty folder, then point the server at it"
    )]
    NotEmpty(PathBuf),
    /// The path exists and is not a folder.
    #[error("--data-dir {0}: not a folder")]
    NotAFolder(PathBuf),
    /// The folder could not be read or created.
    #[error("--data-dir {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Returns whether the folder `path` holds nothing but [`IGNORED_ENTRIES`].
fn is_empty(path: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(path)? {
        let name = entry?.file_name();
        if !IGNORED_ENTRIES.iter().any(|ignored| name == **ignored) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks that `data_dir` may receive a restored store: it is missing or an empty folder
/// (a `lost+found` alone counts as empty). Anything else, a store included, is refused.
pub fn check_restore_target(data_dir: &Path) -> Result<(), DataDirError> {
    match std::fs::metadata(data_dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataDirError::Io {
            path: data_dir.to_owned(),
            source,
        }),
        Ok(metadata) if !metadata.is_dir() => Err(DataDirError::NotAFolder(data_dir.to_owned())),
        Ok(_) => match is_empty(data_dir) {
            Ok(true) => Ok(()),
            Ok(false) => Err(DataDirError::NotEmpty(data_dir.to_owned())),
            Err(source) => Err(DataDirError::Io {
                path: data_dir.to_owned(),
                source,
            }),
        },
    }
}

/// Returns whether `data_dir` holds a store (RocksDB's `db/CURRENT`).
pub fn holds_store(data_dir: &Path) -> bool {
    data_dir.join("db").join("CURRENT").is_file()
}

/// Checks `data_dir` before the store is opened: an existing store is used, a missing or empty
/// folder is created (mode `0700`), anything else is refused. The caller announces a new store.
pub fn prepare(data_dir: &Path) -> Result<DataDirState, DataDirError> {
    let io = |source| DataDirError::Io {
        path: data_dir.to_owned(),
        source,
    };
    let state = match std::fs::metadata(data_dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => DataDirState::New,
        Err(error) => return Err(io(error)),
        Ok(metadata) if !metadata.is_dir() => {
            return Err(DataDirError::NotAFolder(data_dir.to_owned()));
        }
        Ok(_) if holds_store(data_dir) => DataDirState::Existing,
        Ok(_) if is_empty(data_dir).map_err(io)? => DataDirState::New,
        Ok(_) => return Err(DataDirError::ForeignContents(data_dir.to_owned())),
    };
    crate::files::create_private_dir(data_dir).map_err(io)?;
    crate::files::create_private_dir(&crate::inbox::inbox_dir(data_dir)).map_err(io)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_and_empty_folders_are_new_and_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let missing = root.path().join("a/data");
        assert_eq!(prepare(&missing).expect("missing"), DataDirState::New);
        let mode = std::fs::metadata(&missing)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        std::fs::create_dir(empty.join("lost+found")).expect("mkdir");
        assert_eq!(prepare(&empty).expect("empty"), DataDirState::New);
    }

    #[test]
    fn a_folder_with_other_files_is_refused_and_a_store_is_existing() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("notes.txt"), "mine").expect("write");
        let error = prepare(root.path()).expect_err("foreign contents");
        assert!(error.to_string().contains("--data-dir"), "{error}");
        assert!(matches!(error, DataDirError::ForeignContents(_)));
        std::fs::create_dir(root.path().join("db")).expect("mkdir");
        std::fs::write(root.path().join("db/CURRENT"), "MANIFEST-000001\n").expect("write");
        assert_eq!(prepare(root.path()).expect("store"), DataDirState::Existing);
        let file = root.path().join("notes.txt");
        assert!(matches!(prepare(&file), Err(DataDirError::NotAFolder(_))));
    }
}

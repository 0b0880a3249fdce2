//! Copies a finished backup to object storage (`backup --upload-to URL`), with the same
//! targets, credentials and `key=value` options as publishing (`crate::bucket`): every file to
//! `PREFIX/NAME/PATH`, the sealed manifest and then the manifest last, so a backup whose
//! manifest is in the bucket is whole there too. A sealed backup shows the bucket no keys or
//! tokens; an unsealed one holds token hashes: either way the target must be a private bucket
//! or prefix, never the public one phones read.

use std::path::Path;

use super::BackupError;
use super::manifest::{MANIFEST_FILE, Manifest, SEALED_MANIFEST_FILE};
use crate::bucket::Bucket;

/// Content type of every backup object.
const CONTENT_TYPE: &str = "application/octet-stream";
/// Backups must never be cached by anything between the bucket and its reader.
const CACHE_CONTROL: &str = "private, no-store";
/// Attempts of one file's upload before the command gives up.
const ATTEMPTS: u32 = 4;

/// What an upload wrote.
#[derive(Debug, Clone, Copy)]
pub struct UploadReport {
    /// Objects written (manifest included).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Uploads the backup folder `backup` under `NAME/` (its folder name) in `bucket`.
pub async fn upload(bucket: &Bucket, backup: &Path) -> Result<UploadReport, BackupError> {
    let name = backup
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| BackupError::Usage(format!("{} has no usable name", backup.display())))?;
    let manifest = Manifest::read(backup)?;
    let mut report = UploadReport { files: 0, bytes: 0 };
    let sealed = backup
        .join(SEALED_MANIFEST_FILE)
        .is_file()
        .then_some(SEALED_MANIFEST_FILE);
    let paths = manifest
        .entries
        .iter()
        .map(|(path, _)| path.as_str())
        .chain(sealed)
        .chain([MANIFEST_FILE]);
    for relative in paths {
        let object = format!("{name}/{relative}");
        let file = backup.join(relative);
        let mut attempt = 1;
        let length = loop {
            match bucket
                .put_file(&object, &file, CONTENT_TYPE, CACHE_CONTROL)
                .await
            {
                Ok(length) => break length,
                Err(error) if attempt < ATTEMPTS => {
                    eprintln!("upload of {relative} failed ({error}); retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    return Err(BackupError::Upload(format!(
                        "{relative} to {}: {error}",
                        bucket.description()
                    )));
                }
            }
        };
        report.files += 1;
        report.bytes += length;
    }
    Ok(report)
}

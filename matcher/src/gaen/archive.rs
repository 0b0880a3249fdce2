//! The zip container of an export file: exactly `export.bin` and `export.sig`, deflated, with
//! fixed timestamps and permissions so the same keys always make the same bytes.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::{EXPORT_BIN_NAME, EXPORT_SIG_NAME, GaenError, MAX_ENTRY_BYTES};

/// Returns a zip holding `export.bin` then `export.sig`.
pub(super) fn write_zip(export_bin: &[u8], export_sig: &[u8]) -> Result<Vec<u8>, GaenError> {
    // 1980-01-01 00:00:00 (the zip epoch) and 0644: nothing in the archive depends on when or
    // where it was built.
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        // Level 1: the key bytes are random and do not compress at any level; the metadata
        // compresses nearly as well at 1 as at 6, in a fraction of the time.
        .compression_level(Some(1))
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let write_error = |error: &dyn std::fmt::Display| GaenError::Write(error.to_string());
    let mut writer = ZipWriter::new(Cursor::new(Vec::with_capacity(export_bin.len() + 512)));
    for (name, bytes) in [(EXPORT_BIN_NAME, export_bin), (EXPORT_SIG_NAME, export_sig)] {
        writer
            .start_file(name, options)
            .map_err(|error| write_error(&error))?;
        writer
            .write_all(bytes)
            .map_err(|error| write_error(&error))?;
    }
    let cursor = writer.finish().map_err(|error| write_error(&error))?;
    Ok(cursor.into_inner())
}

/// Returns the contents of `export.bin` and `export.sig`; any other entry, a missing one, or an
/// entry over [`MAX_ENTRY_BYTES`] is an error.
pub(super) fn read_zip(zip_bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GaenError> {
    let mut archive = ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|error| GaenError::Zip(error.to_string()))?;
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    if archive.len() != 2 || names != [EXPORT_BIN_NAME, EXPORT_SIG_NAME] {
        return Err(GaenError::Entries(names));
    }
    let export_bin = read_entry(&mut archive, EXPORT_BIN_NAME)?;
    let export_sig = read_entry(&mut archive, EXPORT_SIG_NAME)?;
    Ok((export_bin, export_sig))
}

fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &'static str,
) -> Result<Vec<u8>, GaenError> {
    let entry = archive
        .by_name(name)
        .map_err(|error| GaenError::Zip(error.to_string()))?;
    let mut bytes = Vec::new();
    // One byte past the limit tells an oversized entry from one exactly at it.
    entry
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| GaenError::Zip(format!("{name}: {error}")))?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(GaenError::EntryTooLarge(name));
    }
    Ok(bytes)
}

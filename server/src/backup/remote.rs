//! The layout of a continuous backup in object storage (DESIGN.md section 15), shared by the
//! shipper ([`super::continuous`]) and the restore from a bucket ([`super::restore_remote`]):
//!
//! | object | body | sealed as (name, position) |
//! |---|---|---|
//! | `files/{sha256 hex}` | one file of a checkpoint (SST, blob, MANIFEST, WAL, signing key, inbox request), named by the SHA-256 of its plaintext, so a file already in the bucket is never uploaded again | (the object name, 0) |
//! | `checkpoints/{id}/manifest` | the checkpoint's [`CheckpointManifest`] text, written after its files | (the object name, the checkpoint's sequence) |
//! | `checkpoints/{id}/log/{first:020}-{last:020}-{shipped_ms:013}` | WAL records `first..=last` (see [`encode_records`]), shipped at `shipped_ms` (Unix milliseconds) | (the object name, `first`) |
//! | `checkpoints/{id}/log/{first:020}-{last:020}-{shipped_ms:013}-ingest` | a publish run's bulk load of confirm digests (the SST file it ingested, which bypasses the WAL), in its place in the log: it took sequence `first` (`last` = `first`), or none (`last` = `first` - 1) | (the object name, `first`) |
//!
//! The log objects of a checkpoint form one chain in `(first, last)` order, each starting
//! right after the one before it ends.
//!
//! `{id}` is `{created_ms:013}-{sequence:020}`: names sort by time. Objects are sealed when the
//! backup has a key (`super::seal`), else stored as they are.

use crate::storage::wal::LogRecord;

/// Folder of checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";
/// Folder of content-addressed files.
pub const FILES: &str = "files";
/// First line of a checkpoint manifest.
const FORMAT_LINE: &str = "format: exposure-server continuous backup 1";
/// Bytes of a record's header in a log object.
const RECORD_HEADER_BYTES: usize = 8 + 8 + 4;

/// Returns the id of a checkpoint made at `created_ms` holding the store up to `sequence`.
pub fn checkpoint_id(created_ms: u64, sequence: u64) -> String {
    format!("{created_ms:013}-{sequence:020}")
}

/// Parses a checkpoint id into (created_ms, sequence).
pub fn parse_checkpoint_id(id: &str) -> Option<(u64, u64)> {
    let (created, sequence) = id.split_once('-')?;
    if created.len() != 13 || sequence.len() != 20 {
        return None;
    }
    Some((created.parse().ok()?, sequence.parse().ok()?))
}

/// Returns the object name of a checkpoint's manifest.
pub fn manifest_name(id: &str) -> String {
    format!("{CHECKPOINTS}/{id}/manifest")
}

/// Returns the object name of a file with SHA-256 `digest` (hex).
pub fn file_name(digest_hex: &str) -> String {
    format!("{FILES}/{digest_hex}")
}

/// Returns the folder of a checkpoint's log objects.
pub fn log_folder(id: &str) -> String {
    format!("{CHECKPOINTS}/{id}/log")
}

/// Suffix of a bulk load's log object.
const INGEST_SUFFIX: &str = "-ingest";

/// Returns the object name of the log object holding records `first..=last`.
pub fn log_name(id: &str, first: u64, last: u64, shipped_ms: u64) -> String {
    format!("{}/{first:020}-{last:020}-{shipped_ms:013}", log_folder(id))
}

/// Returns the object name of the log object holding a bulk load at `first..=last` (see the
/// module documentation).
pub fn ingest_name(id: &str, first: u64, last: u64, shipped_ms: u64) -> String {
    format!("{}{INGEST_SUFFIX}", log_name(id, first, last, shipped_ms))
}

/// What a log object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogKind {
    /// WAL records.
    Records,
    /// A bulk load's SST file.
    Ingest,
}

/// A log object's place, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogObject {
    /// Its first record's sequence.
    pub first: u64,
    /// Its last record's last sequence.
    pub last: u64,
    /// When it was shipped (Unix milliseconds).
    pub shipped_ms: u64,
    /// What it holds.
    pub kind: LogKind,
}

/// Parses the last part of a log object's name.
pub fn parse_log_name(name: &str) -> Option<LogObject> {
    let (name, kind) = match name.strip_suffix(INGEST_SUFFIX) {
        Some(name) => (name, LogKind::Ingest),
        None => (name, LogKind::Records),
    };
    let mut parts = name.split('-');
    let (first, last, shipped) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || first.len() != 20 || last.len() != 20 || shipped.len() != 13 {
        return None;
    }
    let object = LogObject {
        first: first.parse().ok()?,
        last: last.parse().ok()?,
        shipped_ms: shipped.parse().ok()?,
        kind,
    };
    // Records span at least one sequence; a bulk load one or none.
    let span = (object.last + 1).checked_sub(object.first)?;
    match kind {
        LogKind::Records => (span >= 1).then_some(object),
        LogKind::Ingest => (span <= 1).then_some(object),
    }
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// SHA-256 of its plaintext, hex (its object is `files/{digest}`).
    pub digest: String,
    /// Its length.
    pub length: u64,
    /// Its path in the data directory (`db/000012.sst`, `signing/KEY.pem`, `inbox/…`).
    pub path: String,
}

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointManifest {
    /// The deployment it belongs to.
    pub deployment: String,
    /// The store's last sequence number in it.
    pub sequence: u64,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
    /// Its files, sorted by path.
    pub files: Vec<CheckpointFile>,
}

impl CheckpointManifest {
    /// Returns the manifest's text: the format line, `deployment:`, `sequence:`,
    /// `created_ms:`, then one `{sha256 hex} {length} {path}` line per file.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{FORMAT_LINE}\ndeployment: {}\nsequence: {}\ncreated_ms: {}\n",
            self.deployment, self.sequence, self.created_ms
        );
        for file in &self.files {
            text.push_str(&format!("{} {} {}\n", file.digest, file.length, file.path));
        }
        text
    }

    /// Parses a manifest's text, refusing anything [`CheckpointManifest::to_text`] would not
    /// write (and paths that leave the data directory).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT_LINE) {
            return Err(format!("the first line is not {FORMAT_LINE:?}"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name:?} line"))
        };
        let deployment = field("deployment: ")?;
        let sequence = field("sequence: ")?
            .parse()
            .map_err(|_| "the sequence is not a number".to_owned())?;
        let created_ms = field("created_ms: ")?
            .parse()
            .map_err(|_| "created_ms is not a number".to_owned())?;
        let mut files: Vec<CheckpointFile> = Vec::new();
        for (index, line) in lines.enumerate() {
            let bad = |reason: &str| format!("file line {}: {reason}", index + 1);
            let mut parts = line.splitn(3, ' ');
            let (Some(digest), Some(length), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected `<sha256> <length> <path>`"));
            };
            if digest.len() != 64 || !digest.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(bad("the checksum is not 64 hex digits"));
            }
            let length = length
                .parse()
                .map_err(|_| bad("the length is not a number"))?;
            super::manifest::check_relative(path).map_err(|reason| bad(&reason))?;
            if let Some(previous) = files.last()
                && previous.path.as_str() >= path
            {
                return Err(bad("paths are not sorted and unique"));
            }
            files.push(CheckpointFile {
                digest: digest.to_ascii_lowercase(),
                length,
                path: path.to_owned(),
            });
        }
        Ok(Self {
            deployment,
            sequence,
            created_ms,
            files,
        })
    }
}

/// Encodes WAL records as a log object's body: per record `u64_be(sequence) ‖ u64_be(count) ‖
/// u32_be(length) ‖ the WriteBatch bytes`.
pub fn encode_records(records: &[LogRecord]) -> Vec<u8> {
    let total: usize = records
        .iter()
        .map(|record| RECORD_HEADER_BYTES + record.data.len())
        .sum();
    let mut body = Vec::with_capacity(total);
    for record in records {
        body.extend_from_slice(&record.sequence.to_be_bytes());
        body.extend_from_slice(&record.count.to_be_bytes());
        body.extend_from_slice(&(record.data.len() as u32).to_be_bytes());
        body.extend_from_slice(&record.data);
    }
    body
}

/// Decodes a log object's body.
pub fn decode_records(mut body: &[u8]) -> Result<Vec<LogRecord>, String> {
    let mut records = Vec::new();
    while !body.is_empty() {
        if body.len() < RECORD_HEADER_BYTES {
            return Err("a record header is cut short".into());
        }
        let number = |bytes: &[u8]| {
            let mut array = [0u8; 8];
            array.copy_from_slice(bytes);
            u64::from_be_bytes(array)
        };
        let sequence = number(&body[..8]);
        let count = number(&body[8..16]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&body[16..20]);
        let length = u32::from_be_bytes(length) as usize;
        let rest = &body[RECORD_HEADER_BYTES..];
        if rest.len() < length {
            return Err(format!("the record at sequence {sequence} is cut short"));
        }
        records.push(LogRecord {
            sequence,
            count,
            data: rest[..length].to_vec(),
        });
        body = &rest[length..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_manifests_round_trip() {
        let id = checkpoint_id(1_765_000_000_123, 42);
        assert_eq!(id, "1765000000123-00000000000000000042");
        assert_eq!(parse_checkpoint_id(&id), Some((1_765_000_000_123, 42)));
        let log = log_name(&id, 43, 50, 1_765_000_001_000);
        assert_eq!(
            log,
            "checkpoints/1765000000123-00000000000000000042/log/00000000000000000043-00000000000000000050-1765000001000"
        );
        let last = log.rsplit('/').next().expect("last part");
        assert_eq!(
            parse_log_name(last),
            Some(LogObject {
                first: 43,
                last: 50,
                shipped_ms: 1_765_000_001_000,
                kind: LogKind::Records,
            })
        );
        let ingest = ingest_name(&id, 51, 51, 1_765_000_001_500);
        assert_eq!(
            ingest,
            "checkpoints/1765000000123-00000000000000000042/log/00000000000000000051-00000000000000000051-1765000001500-ingest"
        );
        let ingest_last = ingest.rsplit('/').next().expect("last part");
        assert_eq!(
            parse_log_name(ingest_last).map(|object| (object.first, object.last, object.kind)),
            Some((51, 51, LogKind::Ingest))
        );
        // A load that took no sequence sorts before the records that follow it.
        let none_taken =
            parse_log_name("00000000000000000051-00000000000000000050-1765000001500-ingest")
                .expect("a load that took no sequence");
        let next = parse_log_name("00000000000000000051-00000000000000000052-1765000001400")
            .expect("records");
        assert!(none_taken < next);
        // A load spans at most one sequence; records at least one; other suffixes are refused.
        assert_eq!(
            parse_log_name("00000000000000000051-00000000000000000052-1765000001500-ingest"),
            None
        );
        assert_eq!(
            parse_log_name("00000000000000000051-00000000000000000050-1765000001500"),
            None
        );
        assert_eq!(
            parse_log_name("00000000000000000051-00000000000000000051-1765000001500-other"),
            None
        );
        let manifest = CheckpointManifest {
            deployment: "d".into(),
            sequence: 42,
            created_ms: 7,
            files: vec![CheckpointFile {
                digest: "ab".repeat(32),
                length: 3,
                path: "db/CURRENT".into(),
            }],
        };
        let text = manifest.to_text();
        assert_eq!(
            text,
            format!(
                "format: exposure-server continuous backup 1\ndeployment: d\nsequence: 42\ncreated_ms: 7\n{} 3 db/CURRENT\n",
                "ab".repeat(32)
            )
        );
        assert_eq!(CheckpointManifest::parse(&text), Ok(manifest));
        assert!(CheckpointManifest::parse(&text.replace("db/CURRENT", "../x")).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_a_cut() {
        let records = vec![
            LogRecord {
                sequence: 5,
                count: 2,
                data: vec![1, 2, 3],
            },
            LogRecord {
                sequence: 7,
                count: 1,
                data: vec![],
            },
        ];
        let body = encode_records(&records);
        assert_eq!(
            &body[..20],
            &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(decode_records(&body), Ok(records));
        assert!(decode_records(&body[..body.len() - 21]).is_err());
    }
}

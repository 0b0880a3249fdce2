//! The write-ahead log as a stream of records, for continuous backup (DESIGN.md section 15):
//! the records written since a sequence number, read with RocksDB's WAL iterator
//! (`get_updates_since`), and their replay into a restored store.
//!
//! A store opened with [`super::Store::open_keeping_wal`] archives obsolete WAL files for
//! [`WAL_TTL_SECONDS`] (up to [`WAL_SIZE_LIMIT_MB`]) instead of deleting them at once, so a
//! shipper that fell behind (a bucket outage) can still read what it missed. Records that never
//! pass through the WAL (the confirm digests' bulk-loaded SST files) are kept as hard links
//! once [`Store::keep_bulk_loads`] is called ([`KeptLoads`]), with the sequence numbers around
//! their ingestion, so the shipper can ship each file in its place in the log; a load that took
//! a sequence number shows as a gap in the WAL at that number.

use std::path::{Path, PathBuf};

use rocksdb::{WriteBatch, WriteOptions};

use super::{StorageError, Store};

/// How long obsolete WAL files are archived for a backup shipper that fell behind.
pub const WAL_TTL_SECONDS: u64 = 3600;
/// Most archived WAL kept (RocksDB checks both limits every 10 minutes).
pub const WAL_SIZE_LIMIT_MB: u64 = 1024;

/// One write batch of the WAL: its first sequence number, how many sequence numbers it takes,
/// and its bytes (RocksDB's `WriteBatch` representation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Sequence number of the batch's first operation.
    pub sequence: u64,
    /// Operations in the batch (each takes one sequence number).
    pub count: u64,
    /// The batch's bytes.
    pub data: Vec<u8>,
}

impl LogRecord {
    /// Returns the last sequence number the record takes.
    pub fn last_sequence(&self) -> u64 {
        // A batch of no operation takes no sequence number.
        (self.sequence + self.count).saturating_sub(1)
    }
}

/// What [`Store::log_records_after`] found.
#[derive(Debug, Default)]
pub struct LogRead {
    /// Contiguous records after the requested sequence, oldest first.
    pub records: Vec<LogRecord>,
    /// Their bytes.
    pub bytes: u64,
    /// True when the WAL does not continue the requested sequence (its files are gone, or a
    /// bulk load took sequence numbers without a record): a new checkpoint is needed.
    pub gap: bool,
}

/// A bulk load's file kept for the continuous backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLoad {
    /// Its number among the store's bulk loads since open (see [`Store::bulk_loads`]).
    pub number: u64,
    /// A hard link to the ingested file (deleted by [`Store::forget_kept_loads`]).
    pub path: PathBuf,
    /// The store's last sequence just before the ingestion.
    pub before: u64,
    /// The store's last sequence just after it: the load took a sequence number in
    /// `before + 1..=after`, or none (when no key of the store overlaps the file).
    pub after: u64,
}

/// The bulk loads kept for the continuous backup, oldest first.
#[derive(Debug)]
pub struct KeptLoads {
    /// Where the links are.
    dir: PathBuf,
    /// The loads not yet forgotten.
    loads: Vec<KeptLoad>,
}

impl KeptLoads {
    /// Returns the path of the link for load `number`.
    pub(crate) fn link_for(&self, number: u64) -> PathBuf {
        self.dir.join(format!("load-{number:020}.sst"))
    }

    /// Records load `number`, linked at `link`, ingested between sequences `before` and `after`.
    pub(crate) fn push(&mut self, number: u64, link: PathBuf, before: u64, after: u64) {
        self.loads.push(KeptLoad {
            number,
            path: link,
            before,
            after,
        });
    }
}

impl Store {
    /// From now on, keeps a hard link to each bulk load's file (in the bulk-load folder, which
    /// the next open empties) until it is forgotten.
    pub fn keep_bulk_loads(&self) -> std::io::Result<()> {
        let dir = self.ingest_dir().join("backup");
        let dir = dir.as_path();
        let mut kept = self.lock_kept_loads();
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        crate::files::create_private_dir(dir)?;
        *kept = Some(KeptLoads {
            dir: dir.to_owned(),
            loads: Vec::new(),
        });
        Ok(())
    }

    /// Returns how many bulk loads the store made since open, and the kept ones not yet
    /// forgotten, read together.
    pub fn kept_loads(&self) -> (u64, Vec<KeptLoad>) {
        let kept = self.lock_kept_loads();
        let loads = kept.as_ref().map(|kept| kept.loads.clone());
        (self.bulk_loads(), loads.unwrap_or_default())
    }

    /// Deletes the kept loads numbered up to `number` (shipped, or in a checkpoint).
    pub fn forget_kept_loads(&self, number: u64) {
        let mut kept = self.lock_kept_loads();
        if let Some(kept) = kept.as_mut() {
            kept.loads.retain(|load| {
                let keep = load.number > number;
                if !keep {
                    let _ = std::fs::remove_file(&load.path);
                }
                keep
            });
        }
    }

    /// Ingests a shipped bulk load's file (moved from `path`) into a restored store, as the
    /// publisher ingested it; returns how many sequence numbers it took (0 or 1).
    pub fn apply_bulk_load(&self, path: &Path) -> Result<u64, StorageError> {
        let before = self.latest_sequence();
        self.ingest_confirm_file(path)?;
        Ok(self.latest_sequence() - before)
    }

    /// Returns the sequence number of the last write.
    pub fn latest_sequence(&self) -> u64 {
        self.db().latest_sequence_number()
    }

    /// Reads the WAL records after sequence `after`, up to about `max_bytes` and at least up to
    /// `until` when the WAL holds it; `gap` tells when it does not continue `after` or ends
    /// before `until`.
    pub fn log_records_after(
        &self,
        after: u64,
        until: u64,
        max_bytes: u64,
    ) -> Result<LogRead, StorageError> {
        let mut read = LogRead::default();
        if until <= after {
            return Ok(read);
        }
        let iterator = match self.db().get_updates_since(after) {
            Ok(iterator) => iterator,
            Err(error) => {
                tracing::warn!(%error, "the write-ahead log does not reach back to the backup");
                read.gap = true;
                return Ok(read);
            }
        };
        let mut expected = after + 1;
        for entry in iterator {
            let (sequence, batch) = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!(%error, "the write-ahead log could not be read on");
                    read.gap = true;
                    return Ok(read);
                }
            };
            if sequence != expected {
                read.gap = true;
                return Ok(read);
            }
            let record = LogRecord {
                sequence,
                count: batch.len() as u64,
                data: batch.data().to_vec(),
            };
            expected = record.last_sequence() + 1;
            read.bytes += record.data.len() as u64;
            read.records.push(record);
            if read.bytes >= max_bytes {
                return Ok(read);
            }
        }
        // Everything up to `until` was written to the WAL before `until` was read, so a log
        // that ends before it skipped sequence numbers (a bulk load).
        read.gap = expected <= until;
        Ok(read)
    }

    /// Applies a shipped record to a restored store, checking that it continues the store's
    /// sequence numbers exactly as it did on the primary, where they ran `shift` ahead of the
    /// restored store's (a replayed bulk load can take a sequence number the primary's did
    /// not, or the other way round).
    pub fn apply_log_record(&self, record: &LogRecord, shift: i64) -> Result<(), StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            column_family: "wal",
            reason,
        };
        let latest = self.latest_sequence().saturating_add_signed(shift);
        if record.sequence != latest + 1 {
            return Err(corrupt(format!(
                "record at sequence {} does not follow the store's {latest}",
                record.sequence
            )));
        }
        let batch = WriteBatch::from_data(&record.data);
        if batch.len() as u64 != record.count {
            return Err(corrupt(format!(
                "record at sequence {} holds {} operations, not {}",
                record.sequence,
                batch.len(),
                record.count
            )));
        }
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db().write_opt(batch, &options)?;
        let now = self.latest_sequence().saturating_add_signed(shift);
        if now != record.last_sequence() {
            return Err(corrupt(format!(
                "record at sequence {} ended at {now}, not {}",
                record.sequence,
                record.last_sequence()
            )));
        }
        Ok(())
    }
}

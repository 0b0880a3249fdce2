//! The write-ahead log as a stream of records, for continuous backup (DESIGN.md section 15):
//! the records written since a sequence number, read with RocksDB's WAL iterator
//! (`get_updates_since`), and their replay into a restored store.
//!
//! A store opened with [`super::Store::open_keeping_wal`] archives obsolete WAL files for
//! [`WAL_TTL_SECONDS`] (up to [`WAL_SIZE_LIMIT_MB`]) instead of deleting them at once, so a
//! shipper that fell behind (a bucket outage) can still read what it missed. Records that never
//! pass through the WAL (the confirm digests' bulk-loaded SST files) show as a gap in the
//! sequence numbers, which the shipper answers with a new checkpoint.

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

impl Store {
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
    /// sequence numbers exactly as it did on the primary.
    pub fn apply_log_record(&self, record: &LogRecord) -> Result<(), StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            column_family: "wal",
            reason,
        };
        let latest = self.latest_sequence();
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
        let now = self.latest_sequence();
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

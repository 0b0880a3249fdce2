//! Published batches: listing records by region and sequence, and the files by batch id.

use rocksdb::{IteratorMode, WriteBatch};

use super::records::StoredBatch;
use super::{CF_BATCH_FILES, CF_BATCHES, StorageError, Store, decode_record, scoped_key};

impl Store {
    /// Adds the writes of a published batch (record and file) to `batch`.
    pub(crate) fn put_batch(&self, batch: &mut WriteBatch, record: &StoredBatch, file: &[u8]) {
        let info = record.info.as_ref();
        debug_assert!(info.is_some(), "a stored batch always has its listing");
        let Some(info) = info else { return };
        batch.put_cf(
            self.cf(CF_BATCHES),
            scoped_key(&record.region, &info.sequence.to_be_bytes()),
            prost::Message::encode_to_vec(record),
        );
        batch.put_cf(self.cf(CF_BATCH_FILES), info.batch_id.as_bytes(), file);
    }

    /// Adds the deletion of a batch (record and file) to `batch`.
    pub(crate) fn delete_batch(
        &self,
        batch: &mut WriteBatch,
        region: &str,
        sequence: u64,
        batch_id: &str,
    ) {
        batch.delete_cf(
            self.cf(CF_BATCHES),
            scoped_key(region, &sequence.to_be_bytes()),
        );
        batch.delete_cf(self.cf(CF_BATCH_FILES), batch_id.as_bytes());
    }

    /// Returns every batch record of every region, in key order (region, then sequence).
    pub fn all_batches(&self) -> Result<Vec<StoredBatch>, StorageError> {
        let mut batches = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_BATCHES), IteratorMode::Start)
        {
            let (_, value) = entry?;
            batches.push(decode_record(&value, CF_BATCHES)?);
        }
        Ok(batches)
    }

    /// Returns the file of a batch, if it is stored.
    pub fn batch_file(&self, batch_id: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .db()
            .get_cf(self.cf(CF_BATCH_FILES), batch_id.as_bytes())?)
    }
}

impl Store {
    /// Returns the record of one batch.
    pub fn batch(&self, region: &str, sequence: u64) -> Result<Option<StoredBatch>, StorageError> {
        match self.db().get_pinned_cf(
            self.cf(CF_BATCHES),
            scoped_key(region, &sequence.to_be_bytes()),
        )? {
            Some(value) => Ok(Some(decode_record(&value, CF_BATCHES)?)),
            None => Ok(None),
        }
    }
}

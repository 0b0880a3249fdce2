//! Small named records: the signing-key list and the daily roll-up cursors.

use rocksdb::WriteBatch;

use super::records::SigningKeyList;
use super::{CF_META, StorageError, Store, decode_record, decode_u64};

const SIGNING_KEYS: &str = "signing_keys";

/// Returns the meta key of a region's roll-up cursor.
fn rollup_cursor_key(region: &str) -> String {
    format!("rollup_day/{region}")
}

impl Store {
    /// Returns the signing-key list (empty on a new store).
    pub fn signing_keys(&self) -> Result<SigningKeyList, StorageError> {
        match self.db().get_pinned_cf(self.cf(CF_META), SIGNING_KEYS)? {
            Some(value) => decode_record(&value, CF_META),
            None => Ok(SigningKeyList::default()),
        }
    }

    /// Replaces the signing-key list.
    pub fn put_signing_keys(&self, list: &SigningKeyList) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            SIGNING_KEYS,
            prost::Message::encode_to_vec(list),
        );
        self.write_synced(batch)
    }

    /// Returns the last UTC day whose roll-up is done for `region` (0 when none).
    pub fn rollup_cursor(&self, region: &str) -> Result<u64, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_META), rollup_cursor_key(region))?
        {
            Some(value) => decode_u64(&value, CF_META),
            None => Ok(0),
        }
    }

    /// Adds the move of a region's roll-up cursor to `batch`.
    pub(crate) fn put_rollup_cursor(&self, batch: &mut WriteBatch, region: &str, day: u64) {
        batch.put_cf(
            self.cf(CF_META),
            rollup_cursor_key(region),
            day.to_be_bytes(),
        );
    }
}

/// Returns the meta key of a region's last batch sequence.
fn batch_sequence_key(region: &str) -> String {
    format!("batch_sequence/{region}")
}

impl Store {
    /// Returns the last batch sequence used in `region` (0 before the first batch). Kept apart
    /// from the batches so that a sequence is never reused, even after retention deleted them all.
    pub fn batch_sequence(&self, region: &str) -> Result<u64, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_META), batch_sequence_key(region))?
        {
            Some(value) => decode_u64(&value, CF_META),
            None => Ok(0),
        }
    }

    /// Returns the last batch sequence of every region that ever published.
    pub fn batch_sequences(&self) -> Result<Vec<(String, u64)>, StorageError> {
        let prefix = batch_sequence_key("");
        let mut sequences = Vec::new();
        let iterator = self.db().iterator_cf(
            self.cf(CF_META),
            rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
        );
        for entry in iterator {
            let (key, value) = entry?;
            let Some(region) = key.strip_prefix(prefix.as_bytes()) else {
                break;
            };
            sequences.push((
                String::from_utf8_lossy(region).into_owned(),
                decode_u64(&value, CF_META)?,
            ));
        }
        Ok(sequences)
    }

    /// Adds the move of a region's batch sequence to `batch`.
    pub(crate) fn put_batch_sequence(&self, batch: &mut WriteBatch, region: &str, sequence: u64) {
        batch.put_cf(
            self.cf(CF_META),
            batch_sequence_key(region),
            sequence.to_be_bytes(),
        );
    }
}

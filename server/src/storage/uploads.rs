//! Upload idempotency records: the answer to each `(authority, upload_id)`, so that a retried
//! upload gets the first answer again instead of being stored twice.

use rocksdb::{IteratorMode, WriteBatch};

use super::records::StoredUpload;
use super::{CF_UPLOADS, StorageError, Store, decode_record, scoped_key};

/// Returns the `uploads` key of an upload id, scoped by the authority that sent it.
pub fn upload_key(authority_id: &str, upload_id: &str) -> Vec<u8> {
    scoped_key(authority_id, upload_id.as_bytes())
}

impl Store {
    /// Returns the record of an earlier upload with the same key.
    pub fn upload(&self, upload_key: &[u8]) -> Result<Option<StoredUpload>, StorageError> {
        match self.db().get_pinned_cf(self.cf(CF_UPLOADS), upload_key)? {
            Some(value) => Ok(Some(decode_record(&value, CF_UPLOADS)?)),
            None => Ok(None),
        }
    }

    /// Adds the write of an upload record to `batch`.
    pub(crate) fn put_upload(
        &self,
        batch: &mut WriteBatch,
        upload_key: &[u8],
        record: &StoredUpload,
    ) {
        batch.put_cf(
            self.cf(CF_UPLOADS),
            upload_key,
            prost::Message::encode_to_vec(record),
        );
    }

    /// Returns every upload record with its scope (the authority's id, or `code:` and the
    /// hex SHA-256 of the upload code) and upload id, as the statistics read them.
    pub fn uploads(&self) -> Result<Vec<(String, StoredUpload)>, StorageError> {
        let mut uploads = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_UPLOADS), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let scope_end = key.iter().position(|byte| *byte == 0).unwrap_or(key.len());
            let scope = String::from_utf8_lossy(&key[..scope_end]).into_owned();
            uploads.push((scope, decode_record(&value, CF_UPLOADS)?));
        }
        Ok(uploads)
    }

    /// Adds the deletion of every upload record created before `cutoff` to `batch`; returns
    /// how many.
    pub(crate) fn delete_uploads_before(
        &self,
        batch: &mut WriteBatch,
        cutoff: u64,
    ) -> Result<usize, StorageError> {
        let mut deleted = 0;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_UPLOADS), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let record: StoredUpload = decode_record(&value, CF_UPLOADS)?;
            if record.created_at < cutoff {
                batch.delete_cf(self.cf(CF_UPLOADS), key);
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

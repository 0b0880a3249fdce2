//! One-time upload codes: stored under the SHA-256 of the code (the code itself is never
//! stored), with the region, report type, expiry and issuing authority. A code is consumed in
//! the same synced write that stores its upload's keys (see `ingest::writer`).

use rocksdb::{IteratorMode, WriteBatch};

use super::records::StoredCode;
use super::{CF_CODES, StorageError, Store, decode_record};

impl Store {
    /// Adds the writes that store freshly issued codes to `batch`.
    pub(crate) fn put_code(&self, batch: &mut WriteBatch, code_hash: &[u8; 32], code: &StoredCode) {
        batch.put_cf(
            self.cf(CF_CODES),
            code_hash,
            prost::Message::encode_to_vec(code),
        );
    }

    /// Returns the code stored under `code_hash`, if any (consumed or expired included).
    pub fn code(&self, code_hash: &[u8; 32]) -> Result<Option<StoredCode>, StorageError> {
        match self.db().get_pinned_cf(self.cf(CF_CODES), code_hash)? {
            Some(value) => Ok(Some(decode_record(&value, CF_CODES)?)),
            None => Ok(None),
        }
    }

    /// Returns every stored code issued by `authority_id` (used, unused, and expired until
    /// retention deletes them), never the codes themselves: only their records.
    pub fn codes_of_authority(&self, authority_id: &str) -> Result<Vec<StoredCode>, StorageError> {
        Ok(self
            .hashed_codes_of_authority(authority_id)?
            .into_iter()
            .map(|(_, code)| code)
            .collect())
    }

    /// Returns the records of [`Self::codes_of_authority`] with the hash each is stored under
    /// (the hash an upload with the code names in its idempotency scope).
    pub fn hashed_codes_of_authority(
        &self,
        authority_id: &str,
    ) -> Result<Vec<([u8; 32], StoredCode)>, StorageError> {
        let mut codes = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CODES), IteratorMode::Start)
        {
            let (hash, value) = entry?;
            let code: StoredCode = decode_record(&value, CF_CODES)?;
            if code.authority_id == authority_id {
                let hash =
                    <[u8; 32]>::try_from(hash.as_ref()).map_err(|_| StorageError::Corrupt {
                        column_family: CF_CODES,
                        reason: format!("a code hash of {} bytes", hash.len()),
                    })?;
                codes.push((hash, code));
            }
        }
        Ok(codes)
    }

    /// Adds the deletion of every unused code issued by `authority_id` to `batch` (its
    /// revocation voids them); returns how many. Used codes stay, so a retry of the upload
    /// that consumed one still gets its first answer.
    pub(crate) fn void_unused_codes(
        &self,
        batch: &mut WriteBatch,
        authority_id: &str,
    ) -> Result<usize, StorageError> {
        let mut voided = 0;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CODES), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let code: StoredCode = decode_record(&value, CF_CODES)?;
            if code.authority_id == authority_id && code.consumed_at == 0 {
                batch.delete_cf(self.cf(CF_CODES), key);
                voided += 1;
            }
        }
        Ok(voided)
    }

    /// Adds the deletion of every code that expired before `now` to `batch`; returns how many.
    pub(crate) fn delete_codes_expired_before(
        &self,
        batch: &mut WriteBatch,
        now: u64,
    ) -> Result<usize, StorageError> {
        let mut expired = 0;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CODES), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let code: StoredCode = decode_record(&value, CF_CODES)?;
            if code.expires_at < now {
                batch.delete_cf(self.cf(CF_CODES), key);
                expired += 1;
            }
        }
        Ok(expired)
    }
}

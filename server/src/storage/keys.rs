//! Accepted diagnosis keys: the ingest sequence, the dedup index, the release (embargo) index,
//! and the reads the publisher makes of them; and the publisher's synthetic keys (DESIGN §14),
//! stored beside them under sequences of their own.

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::records::StoredKey;
use super::{
    CF_DEDUP, CF_KEYS, CF_META, CF_RELEASE, StorageError, Store, decode_record, decode_u64,
    scoped_key,
};

/// Sequences of synthetic keys start here: the upper half of the `keys` column family, which
/// the ingest sequence (counted from 1) never reaches. Only the publisher makes synthetic keys,
/// so the two writers never hand out the same number.
pub const SYNTHETIC_SEQUENCES: u64 = 1 << 63;

/// Meta key of the next synthetic sequence; see [`Store::next_synthetic_sequence`].
const NEXT_SYNTHETIC_SEQUENCE: &str = "next_synthetic_sequence";

/// Returns the `release` index key of a stored key.
pub(crate) fn release_key(release_at: u64, sequence: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&release_at.to_be_bytes());
    key[8..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// Returns the `dedup` index key of some key material in a region.
pub fn dedup_key(region: &str, material: &[u8]) -> Vec<u8> {
    scoped_key(region, material)
}

/// How many stored keys wait to be published, split at a moment `now`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingKeys {
    /// Keys whose embargo has ended: the next publish run releases them.
    pub releasable: u64,
    /// Keys whose identifiers may still be broadcast, or that ended less than the release
    /// delay ago (DESIGN.md section 6).
    pub embargoed: u64,
}

impl Store {
    /// Returns the highest ingest sequence in use, 0 for an empty store; synthetic keys'
    /// sequences do not count.
    pub fn last_key_sequence(&self) -> Result<u64, StorageError> {
        self.last_sequence_below(SYNTHETIC_SEQUENCES)
    }

    /// Returns the highest sequence of the `keys` column family below `limit`, 0 when none.
    fn last_sequence_below(&self, limit: u64) -> Result<u64, StorageError> {
        let start = (limit - 1).to_be_bytes();
        let mut iterator = self.db().iterator_cf(
            self.cf(CF_KEYS),
            IteratorMode::From(&start, Direction::Reverse),
        );
        match iterator.next() {
            Some(entry) => decode_u64(&entry?.0, CF_KEYS),
            None => Ok(0),
        }
    }

    /// Returns the sequence the next synthetic key gets. Persisted with each commit that
    /// stores synthetic keys, so a number is never handed out twice, even after retention
    /// deleted its key (a batch record names its keys by sequence).
    pub fn next_synthetic_sequence(&self) -> Result<u64, StorageError> {
        let persisted = match self
            .db()
            .get_pinned_cf(self.cf(CF_META), NEXT_SYNTHETIC_SEQUENCE)?
        {
            Some(value) => decode_u64(&value, CF_META)?,
            None => SYNTHETIC_SEQUENCES,
        };
        let last = self.last_sequence_below(u64::MAX)?;
        Ok(persisted
            .max(SYNTHETIC_SEQUENCES)
            .max(last.saturating_add(1)))
    }

    /// Adds a synthetic key to `batch`: its record only (it is published in the same write, so
    /// it never waits in the release index, and nothing dedups or revokes it), and the next
    /// synthetic sequence after it.
    pub(crate) fn put_synthetic_key(&self, batch: &mut WriteBatch, sequence: u64, key: &StoredKey) {
        debug_assert!(key.synthetic && sequence >= SYNTHETIC_SEQUENCES);
        batch.put_cf(
            self.cf(CF_KEYS),
            sequence.to_be_bytes(),
            prost::Message::encode_to_vec(key),
        );
        batch.put_cf(
            self.cf(CF_META),
            NEXT_SYNTHETIC_SEQUENCE,
            sequence.saturating_add(1).to_be_bytes(),
        );
    }

    /// Returns the ingest sequence of the key stored under `dedup_key`, if any.
    pub fn find_duplicate(&self, dedup_key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.db().get_pinned_cf(self.cf(CF_DEDUP), dedup_key)? {
            Some(value) => Ok(Some(decode_u64(&value, CF_DEDUP)?)),
            None => Ok(None),
        }
    }

    /// Returns the key stored under an ingest sequence.
    pub fn key(&self, sequence: u64) -> Result<Option<StoredKey>, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_KEYS), sequence.to_be_bytes())?
        {
            Some(value) => Ok(Some(decode_record(&value, CF_KEYS)?)),
            None => Ok(None),
        }
    }

    /// Returns the keys under many ingest sequences, skipping ones deleted since (revoked).
    pub fn keys(&self, sequences: &[u64]) -> Result<Vec<(u64, StoredKey)>, StorageError> {
        let cf = self.cf(CF_KEYS);
        let lookups = sequences
            .iter()
            .map(|sequence| (cf, sequence.to_be_bytes()));
        let mut found = Vec::with_capacity(sequences.len());
        for (sequence, value) in sequences.iter().zip(self.db().multi_get_cf(lookups)) {
            if let Some(bytes) = value? {
                found.push((*sequence, decode_record(&bytes, CF_KEYS)?));
            }
        }
        Ok(found)
    }

    /// Adds the writes that store a new key to `batch`.
    pub(crate) fn put_key(&self, batch: &mut WriteBatch, sequence: u64, key: &StoredKey) {
        batch.put_cf(
            self.cf(CF_KEYS),
            sequence.to_be_bytes(),
            prost::Message::encode_to_vec(key),
        );
        batch.put_cf(
            self.cf(CF_RELEASE),
            release_key(key.release_at, sequence),
            [],
        );
        batch.put_cf(self.cf(CF_DEDUP), &key.dedup_key, sequence.to_be_bytes());
    }

    /// Adds the writes that forget a key's record and indexes to `batch`; see
    /// [`Store::withdraw_key`] for the whole withdrawal.
    fn delete_key(&self, batch: &mut WriteBatch, sequence: u64, key: &StoredKey) {
        batch.delete_cf(self.cf(CF_KEYS), sequence.to_be_bytes());
        batch.delete_cf(self.cf(CF_RELEASE), release_key(key.release_at, sequence));
        batch.delete_cf(self.cf(CF_DEDUP), &key.dedup_key);
    }

    /// Adds the writes that withdraw a key (revocation, retention, a leaked token) to `batch`:
    /// its record and indexes, and its own confirm-digest entries.
    pub(crate) fn withdraw_key(
        &self,
        batch: &mut WriteBatch,
        sequence: u64,
        key: &StoredKey,
    ) -> Result<(), StorageError> {
        // A stored key always expands (it was validated); one that no longer does has no
        // digests either.
        if let Ok(elements) = key.matcher_key()?.tagged_elements() {
            for element in elements {
                self.delete_digest(batch, &key.region, &element.tag.confirm_digest(), sequence);
            }
        }
        if key.synthetic {
            batch.delete_cf(self.cf(CF_KEYS), sequence.to_be_bytes());
        } else {
            self.delete_key(batch, sequence, key);
        }
        Ok(())
    }

    /// Returns the ingest sequences of every key that came through `authority_id`.
    pub fn key_sequences_of_authority(&self, authority_id: &str) -> Result<Vec<u64>, StorageError> {
        let mut sequences = Vec::new();
        for entry in self.db().iterator_cf(self.cf(CF_KEYS), IteratorMode::Start) {
            let (key, value) = entry?;
            let stored: StoredKey = decode_record(&value, CF_KEYS)?;
            if stored.authority_id == authority_id && !stored.synthetic {
                sequences.push(decode_u64(&key, CF_KEYS)?);
            }
        }
        Ok(sequences)
    }

    /// Returns the ingest sequences of keys whose embargo ended at or before `now` and that
    /// are not published yet, oldest release first.
    pub fn releasable(&self, now: u64) -> Result<Vec<u64>, StorageError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(release_key(now.saturating_add(1), 0).to_vec());
        let iterator = self
            .db()
            .iterator_cf_opt(self.cf(CF_RELEASE), options, IteratorMode::Start);
        let mut sequences = Vec::new();
        for entry in iterator {
            let (key, _) = entry?;
            sequences.push(decode_u64(&key[8..], CF_RELEASE)?);
        }
        Ok(sequences)
    }

    /// Counts the keys waiting in the release index: those whose embargo ended at or before
    /// `now` and those still under embargo. One scan of the index, for the metrics.
    pub fn pending_keys(&self, now: u64) -> Result<PendingKeys, StorageError> {
        let mut pending = PendingKeys::default();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_RELEASE), IteratorMode::Start)
        {
            let (key, _) = entry?;
            let release_at = decode_u64(key.get(..8).unwrap_or_default(), CF_RELEASE)?;
            if release_at <= now {
                pending.releasable += 1;
            } else {
                pending.embargoed += 1;
            }
        }
        Ok(pending)
    }

    /// Returns true while a key is still waiting in the release index.
    pub fn is_pending(&self, sequence: u64, release_at: u64) -> Result<bool, StorageError> {
        Ok(self
            .db()
            .get_pinned_cf(self.cf(CF_RELEASE), release_key(release_at, sequence))?
            .is_some())
    }

    /// Adds the "published" mark of a key (its removal from the release index) to `batch`.
    pub(crate) fn mark_published(&self, batch: &mut WriteBatch, sequence: u64, release_at: u64) {
        batch.delete_cf(self.cf(CF_RELEASE), release_key(release_at, sequence));
    }

    /// Returns every key whose last slot ended before `cutoff`, for retention.
    pub fn keys_ending_before(&self, cutoff: u64) -> Result<Vec<(u64, StoredKey)>, StorageError> {
        let iterator = self.db().iterator_cf(
            self.cf(CF_KEYS),
            IteratorMode::From(&[], Direction::Forward),
        );
        let mut expired = Vec::new();
        for entry in iterator {
            let (key, value) = entry?;
            let stored: StoredKey = decode_record(&value, CF_KEYS)?;
            if stored.last_slot_end < cutoff {
                expired.push((decode_u64(&key, CF_KEYS)?, stored));
            }
        }
        Ok(expired)
    }

    /// Returns how many uploaded keys are stored, by a scan of the ingest sequences; synthetic
    /// keys are not keys anyone uploaded and do not count. For tests and `stats`.
    pub fn count_keys(&self) -> Result<usize, StorageError> {
        self.count_sequences(1, SYNTHETIC_SEQUENCES)
    }

    /// Returns how many synthetic keys (DESIGN §14) are stored; for tests.
    pub fn count_synthetic_keys(&self) -> Result<usize, StorageError> {
        self.count_sequences(SYNTHETIC_SEQUENCES, u64::MAX)
    }

    /// Counts the `keys` entries with a sequence in `from..until`.
    fn count_sequences(&self, from: u64, until: u64) -> Result<usize, StorageError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(until.to_be_bytes().to_vec());
        let start = from.to_be_bytes();
        let iterator = self.db().iterator_cf_opt(
            self.cf(CF_KEYS),
            options,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut count = 0;
        for entry in iterator {
            entry?;
            count += 1;
        }
        Ok(count)
    }
}

//! Small named records: the signing-key list, the daily roll-up cursors, the batch and ingest
//! sequences and the deployment id of sealed backups.

use rocksdb::WriteBatch;

use super::outbox::OutboxTask;
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

    /// Replaces the signing-key list, queueing the object-storage tasks `queue` (the rewrite of
    /// `v1/signing-keys`) in the same write, under the caller's commit lock.
    pub fn put_signing_keys(
        &self,
        list: &SigningKeyList,
        queue: &[OutboxTask],
        now: u64,
        commits: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            SIGNING_KEYS,
            prost::Message::encode_to_vec(list),
        );
        self.stage_outbox(&mut batch, queue, now, commits);
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

    /// Raises the last batch sequence of every region by `gap` in one synced write; returns how
    /// many regions moved. A store restored from a backup skips the sequences its original may
    /// have published after the backup, so none is ever numbered twice.
    pub fn skip_batch_sequences(&self, gap: u64) -> Result<usize, StorageError> {
        let sequences = self.batch_sequences()?;
        let mut batch = WriteBatch::default();
        for (region, sequence) in &sequences {
            self.put_batch_sequence(&mut batch, region, sequence.saturating_add(gap));
        }
        self.write_synced(batch)?;
        Ok(sequences.len())
    }

    /// Moves every region's last batch sequence to at least `floor` of it (the highest the
    /// region published anywhere, e.g. in the bucket's index) in one synced write, regions the
    /// store never published in included; returns how many regions moved.
    pub fn raise_batch_sequences(&self, floors: &[(String, u64)]) -> Result<usize, StorageError> {
        let mut batch = WriteBatch::default();
        let mut moved = 0;
        for (region, floor) in floors {
            if self.batch_sequence(region)? < *floor {
                self.put_batch_sequence(&mut batch, region, *floor);
                moved += 1;
            }
        }
        self.write_synced(batch)?;
        Ok(moved)
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

/// Meta key of the next ingest sequence; see [`Store::next_key_sequence`].
const NEXT_KEY_SEQUENCE: &str = "next_key_sequence";

impl Store {
    /// Returns the ingest sequence the next accepted key gets. It is persisted with every
    /// upload write, so sequences of keys that were revoked or expired since are never handed
    /// out again (a batch record names its keys by sequence; a reused number would pull another
    /// region's key, or one still under embargo, into a roll-up). Stores written before the
    /// counter existed continue after their highest stored key.
    pub fn next_key_sequence(&self) -> Result<u64, StorageError> {
        let persisted = match self
            .db()
            .get_pinned_cf(self.cf(CF_META), NEXT_KEY_SEQUENCE)?
        {
            Some(value) => decode_u64(&value, CF_META)?,
            None => 1,
        };
        Ok(persisted.max(self.last_key_sequence()? + 1))
    }

    /// Adds the persisted next ingest sequence to `batch`.
    pub(crate) fn put_next_key_sequence(&self, batch: &mut WriteBatch, next: u64) {
        batch.put_cf(self.cf(CF_META), NEXT_KEY_SEQUENCE, next.to_be_bytes());
    }
}

/// Prefix of the per-authority daily key counters.
const KEYS_STORED_PREFIX: &str = "keys_stored/";

/// Returns the meta key of an authority's key counter for a UTC day:
/// `keys_stored/{u64_be(day)}{authority}`, so expired days are one range delete.
fn keys_stored_key(authority: &str, day: u64) -> Vec<u8> {
    let mut key = KEYS_STORED_PREFIX.as_bytes().to_vec();
    key.extend_from_slice(&day.to_be_bytes());
    key.extend_from_slice(authority.as_bytes());
    key
}

impl Store {
    /// Returns how many new keys `authority` stored on UTC `day` (its daily quota's count).
    pub fn keys_stored_on(&self, authority: &str, day: u64) -> Result<u64, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_META), keys_stored_key(authority, day))?
        {
            Some(value) => decode_u64(&value, CF_META),
            None => Ok(0),
        }
    }

    /// Adds an authority's key count for a day to `batch`.
    pub(crate) fn put_keys_stored_on(
        &self,
        batch: &mut WriteBatch,
        authority: &str,
        day: u64,
        count: u64,
    ) {
        batch.put_cf(
            self.cf(CF_META),
            keys_stored_key(authority, day),
            count.to_be_bytes(),
        );
    }

    /// Adds the deletion of every daily key counter of days before `day` to `batch`.
    pub(crate) fn delete_keys_stored_before(&self, batch: &mut WriteBatch, day: u64) {
        let mut end = KEYS_STORED_PREFIX.as_bytes().to_vec();
        end.extend_from_slice(&day.to_be_bytes());
        batch.delete_range_cf(self.cf(CF_META), KEYS_STORED_PREFIX.as_bytes(), &end);
    }
}

/// Returns the meta key of a region's last hourly batch already rolled up.
fn rollup_hourly_cursor_key(region: &str) -> String {
    format!("rollup_hourly/{region}")
}

impl Store {
    /// Returns the sequence of the last hourly batch of `region` that a daily batch holds
    /// (0 when none); a day rolled up in several parts continues after it.
    pub fn rollup_hourly_cursor(&self, region: &str) -> Result<u64, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_META), rollup_hourly_cursor_key(region))?
        {
            Some(value) => decode_u64(&value, CF_META),
            None => Ok(0),
        }
    }

    /// Adds the move of a region's hourly roll-up cursor to `batch`.
    pub(crate) fn put_rollup_hourly_cursor(
        &self,
        batch: &mut WriteBatch,
        region: &str,
        sequence: u64,
    ) {
        batch.put_cf(
            self.cf(CF_META),
            rollup_hourly_cursor_key(region),
            sequence.to_be_bytes(),
        );
    }
}

/// Meta key of the recent code-upload latencies that decoys imitate.
const DECOY_LATENCIES: &str = "decoy_latencies";

impl Store {
    /// Returns the code-upload latencies last saved (see [`crate::ingest::decoy`]), so decoys
    /// after a restart keep imitating real uploads; empty when none were saved.
    pub fn decoy_latencies(&self) -> Result<Vec<std::time::Duration>, StorageError> {
        let Some(value) = self.db().get_pinned_cf(self.cf(CF_META), DECOY_LATENCIES)? else {
            return Ok(Vec::new());
        };
        Ok(value
            .chunks_exact(4)
            .map(|micros| {
                let micros = u32::from_le_bytes([micros[0], micros[1], micros[2], micros[3]]);
                std::time::Duration::from_micros(u64::from(micros))
            })
            .collect())
    }

    /// Saves code-upload latencies (microseconds, u32 little-endian each, saturating at
    /// about 71 minutes).
    pub fn put_decoy_latencies(
        &self,
        latencies: &[std::time::Duration],
    ) -> Result<(), StorageError> {
        let bytes: Vec<u8> = latencies
            .iter()
            .flat_map(|latency| {
                u32::try_from(latency.as_micros())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes()
            })
            .collect();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), DECOY_LATENCIES, bytes);
        self.write_synced(batch)
    }
}

/// Meta key of the deployment id; see [`Store::deployment_id`].
const DEPLOYMENT_ID: &str = "deployment_id";

impl Store {
    /// Returns the id of the deployment this store belongs to, `None` before the first backup.
    /// Sealed backups bind it (DESIGN.md section 15), so an object of another deployment's
    /// backup is refused at restore; a restored store keeps it, being the same deployment.
    pub fn deployment_id(&self) -> Result<Option<String>, StorageError> {
        match self.db().get_pinned_cf(self.cf(CF_META), DEPLOYMENT_ID)? {
            Some(value) => {
                String::from_utf8(value.to_vec())
                    .map(Some)
                    .map_err(|_| StorageError::Corrupt {
                        column_family: CF_META,
                        reason: "the deployment id is not UTF-8".into(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Returns the deployment id, first drawing one (128 random bits, hex) when the store has
    /// none yet.
    pub fn ensure_deployment_id(&self) -> Result<String, StorageError> {
        if let Some(id) = self.deployment_id()? {
            return Ok(id);
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), DEPLOYMENT_ID, id.as_bytes());
        self.write_synced(batch)?;
        Ok(id)
    }
}

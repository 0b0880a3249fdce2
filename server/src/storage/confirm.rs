//! Confirm digests (DESIGN.md section 5): every published element's 16-byte digest, keyed by
//! region, so that a confirm bucket is one prefix range scan.
//!
//! Each entry names its owner: the key is `region ‖ 0 ‖ digest ‖ u64_be(ingest sequence)`.
//! Two keys whose slots overlap (a corrected re-upload of the same identifier) produce the same
//! digest twice, as two entries; revoking or expiring one key deletes only its own entries, so
//! the digest stays confirmable as long as any live key still produces it. A bucket scan
//! returns each digest once.
//!
//! A batch's digests are bulk-loaded: sorted, written to an SST file and ingested, which costs a
//! fraction of inserting millions of random keys through the memtable (5 s → well under 1 s at
//! the peak day's 2.48 M digests) and never stalls the ingest writer's small writes behind one
//! huge write. The publisher loads them just before the synced write that commits the batch
//! and its keys' "published" marks. A crash between the two leaves digests of keys that are not
//! yet published; the next run publishes those keys and loads the same digests again, so every
//! published element is confirmable and nothing is lost or doubled. Revocation deletes digests
//! through ordinary writes, which are newer than any ingested file and so take precedence.

use exposure_matcher::ConfirmDigest;
use rocksdb::{
    IngestExternalFileOptions, IteratorMode, Options, ReadOptions, SstFileWriter, WriteBatch,
};

use super::{CF_CONFIRM, StorageError, Store, scoped_key};

impl Store {
    /// Durably adds the digests of a batch about to be committed, each owned by a key's ingest
    /// sequence (see the module documentation for the ordering).
    #[tracing::instrument(skip_all, fields(region = %region, digests = digests.len()))]
    pub(crate) fn load_digests(
        &self,
        region: &str,
        mut digests: Vec<(ConfirmDigest, u64)>,
    ) -> Result<(), StorageError> {
        if digests.is_empty() {
            return Ok(());
        }
        // An SST file takes keys in order and once each: (digest, owner) sorts like the keys.
        digests.sort_unstable();
        digests.dedup();
        let path = self
            .ingest_dir()
            .join(format!("digests-{}.sst", rand::random::<u64>()));
        let loaded = self.write_digests(&path, region, &digests).and_then(|()| {
            // Held from the ingestion to the count, so the backup shipper sees a load's kept
            // file and its count together.
            let mut kept = self.lock_kept_loads();
            let ingested = self.ingest_keeping(&path, kept.as_mut());
            // Counted whatever the outcome: a failed ingestion may still have taken its file in.
            self.note_bulk_load();
            ingested
        });
        if let Err(error) = &loaded {
            // A failed write (disk full) or ingestion leaves no partial file behind; with
            // `move_files`, a file that was ingested is no longer at `path`.
            let _ = std::fs::remove_file(&path);
            self.note_write_failure(error);
        }
        loaded
    }

    /// Writes sorted `digests` to an SST file at `path`.
    fn write_digests(
        &self,
        path: &std::path::Path,
        region: &str,
        digests: &[(ConfirmDigest, u64)],
    ) -> Result<(), StorageError> {
        let mut options = Options::default();
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let mut writer = SstFileWriter::create(&options);
        writer.open(path)?;
        for (digest, sequence) in digests {
            writer.put(owned_digest_key(region, digest, *sequence), [])?;
        }
        writer.finish()?;
        Ok(())
    }

    /// Ingests the file at `path`; with `kept`, a link to it stays for the continuous backup's
    /// log, numbered as the next bulk load, with the sequences around its ingestion.
    fn ingest_keeping(
        &self,
        path: &std::path::Path,
        kept: Option<&mut super::wal::KeptLoads>,
    ) -> Result<(), StorageError> {
        let Some(kept) = kept else {
            return self.ingest_confirm_file(path);
        };
        let number = self.bulk_loads() + 1;
        let link = kept.link_for(number);
        std::fs::hard_link(path, &link)?;
        let before = self.latest_sequence();
        if let Err(error) = self.ingest_confirm_file(path) {
            let _ = std::fs::remove_file(&link);
            return Err(error);
        }
        kept.push(number, link, before, self.latest_sequence());
        Ok(())
    }

    /// Ingests the sorted-digest SST file at `path` into the confirm digests, moving it into
    /// the store: a publish run's bulk load, or its replay by a restore (DESIGN.md §15).
    ///
    /// A snapshot is held meanwhile, so RocksDB always gives the file a sequence number of its
    /// own (with `snapshot_consistency`, the default) rather than 0 when no key overlaps it:
    /// every load takes exactly one sequence number, its place in the backup's log.
    pub(crate) fn ingest_confirm_file(&self, path: &std::path::Path) -> Result<(), StorageError> {
        let _snapshot = self.db().snapshot();
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db()
            .ingest_external_file_cf_opts(self.cf(CF_CONFIRM), &ingest, vec![path])?;
        Ok(())
    }

    /// Adds the deletion of the key `owner`'s entry for one confirm digest to `batch`; entries
    /// of other keys with the same digest stay.
    pub(crate) fn delete_digest(
        &self,
        batch: &mut WriteBatch,
        region: &str,
        digest: &ConfirmDigest,
        owner: u64,
    ) {
        batch.delete_cf(self.cf(CF_CONFIRM), owned_digest_key(region, digest, owner));
    }

    /// Returns, sorted, every digest of `region` whose first `prefix_bits` bits equal `prefix`.
    #[tracing::instrument(level = "debug", skip_all, fields(region = %region, prefix_bits = prefix_bits))]
    pub fn confirm_bucket(
        &self,
        region: &str,
        prefix: u32,
        prefix_bits: u32,
    ) -> Result<Vec<ConfirmDigest>, StorageError> {
        debug_assert!((1..=32).contains(&prefix_bits));
        let (lower, upper) = bucket_bounds(prefix, prefix_bits);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(scoped_key(region, &lower));
        match upper {
            Some(upper) => options.set_iterate_upper_bound(scoped_key(region, &upper)),
            // The last bucket ends where the region's keys end: the byte after the separator.
            None => options.set_iterate_upper_bound(scoped_key_end(region)),
        }
        let prefix_len = region.len() + 1;
        let mut digests: Vec<ConfirmDigest> = Vec::new();
        for entry in self
            .db()
            .iterator_cf_opt(self.cf(CF_CONFIRM), options, IteratorMode::Start)
        {
            let (key, _) = entry?;
            let digest = digest_of_entry(&key, prefix_len)?;
            // Entries of one digest are adjacent (owners sort after the digest): list it once.
            if digests.last() != Some(&digest) {
                digests.push(digest);
            }
        }
        Ok(digests)
    }

    /// Returns the owners (ingest sequences) of a digest in `region`; empty when no live key
    /// produces it. For tests and tools.
    pub fn digest_owners(
        &self,
        region: &str,
        digest: &ConfirmDigest,
    ) -> Result<Vec<u64>, StorageError> {
        let lower = scoped_key(region, &digest.0);
        // Just past the last possible owner of this digest.
        let mut upper = owned_digest_key(region, digest, u64::MAX);
        upper.push(0);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(upper);
        let mut owners = Vec::new();
        for entry in self.db().iterator_cf_opt(
            self.cf(CF_CONFIRM),
            options,
            IteratorMode::From(&lower, rocksdb::Direction::Forward),
        ) {
            let (key, _) = entry?;
            owners.push(super::decode_u64(&key[lower.len()..], CF_CONFIRM)?);
        }
        Ok(owners)
    }

    /// Returns true when `region` holds this exact digest; for tests and tools.
    pub fn has_digest(&self, region: &str, digest: &ConfirmDigest) -> Result<bool, StorageError> {
        Ok(!self.digest_owners(region, digest)?.is_empty())
    }
}

impl Store {
    /// Rewrites confirm entries of the first store format (`region ‖ 0 ‖ digest` → owner as the
    /// value) into owner-keyed entries, in synced writes of bounded size; a crash midway leaves
    /// both forms, and the next open finishes the job. Returns how many entries moved.
    pub(crate) fn migrate_confirm_entries(&self) -> Result<usize, StorageError> {
        const ENTRIES_PER_WRITE: usize = 100_000;
        /// Meta key set once every entry has the owner-keyed form.
        const OWNER_KEYED: &str = "confirm_owner_keyed";
        let meta = self.cf(super::CF_META);
        if self.db().get_pinned_cf(meta, OWNER_KEYED)?.is_some() {
            return Ok(0);
        }
        let cf = self.cf(CF_CONFIRM);
        let mut moved = 0;
        let mut batch = WriteBatch::default();
        for entry in self.db().iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = entry?;
            let Some(separator) = key.iter().position(|byte| *byte == 0) else {
                continue;
            };
            if key.len() - separator - 1 != 16 {
                continue;
            }
            let mut owned = key.to_vec();
            owned.extend_from_slice(&value);
            batch.put_cf(cf, owned, []);
            batch.delete_cf(cf, &key);
            moved += 1;
            if batch.len() >= 2 * ENTRIES_PER_WRITE {
                self.write_synced(std::mem::take(&mut batch))?;
            }
        }
        batch.put_cf(meta, OWNER_KEYED, []);
        self.write_synced(batch)?;
        Ok(moved)
    }
}

/// Returns the key of one owner's entry for a digest: `region ‖ 0 ‖ digest ‖ u64_be(owner)`.
fn owned_digest_key(region: &str, digest: &ConfirmDigest, owner: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(region.len() + 1 + 16 + 8);
    key.extend_from_slice(region.as_bytes());
    key.push(0);
    key.extend_from_slice(&digest.0);
    key.extend_from_slice(&owner.to_be_bytes());
    key
}

/// Returns the digest of an entry's key, whose region prefix is `prefix_len` bytes long.
fn digest_of_entry(key: &[u8], prefix_len: usize) -> Result<ConfirmDigest, StorageError> {
    key.get(prefix_len..)
        .filter(|rest| rest.len() == 16 + 8)
        .and_then(|rest| rest[..16].try_into().ok())
        .map(ConfirmDigest)
        .ok_or_else(|| StorageError::Corrupt {
            column_family: CF_CONFIRM,
            reason: format!("confirm entry key of {} bytes", key.len()),
        })
}

/// Returns the 4-byte big-endian bounds `[lower, upper)` of a bucket; `None` past the last one.
fn bucket_bounds(prefix: u32, prefix_bits: u32) -> ([u8; 4], Option<[u8; 4]>) {
    let shift = 32 - prefix_bits;
    let lower = u64::from(prefix) << shift;
    let upper = (u64::from(prefix) + 1) << shift;
    let lower_bytes = (lower as u32).to_be_bytes();
    let upper_bytes = (upper <= u64::from(u32::MAX)).then(|| (upper as u32).to_be_bytes());
    (lower_bytes, upper_bytes)
}

/// Returns the first key after every key of `region` in a region-scoped family.
fn scoped_key_end(region: &str) -> Vec<u8> {
    let mut key = region.as_bytes().to_vec();
    key.push(1);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_cover_exactly_the_prefix() {
        assert_eq!(bucket_bounds(0, 16), ([0, 0, 0, 0], Some([0, 1, 0, 0])));
        assert_eq!(
            bucket_bounds(0xabcd, 16),
            ([0xab, 0xcd, 0, 0], Some([0xab, 0xce, 0, 0]))
        );
        assert_eq!(bucket_bounds(0xffff, 16), ([0xff, 0xff, 0, 0], None));
        assert_eq!(bucket_bounds(1, 1), ([0x80, 0, 0, 0], None));
        assert_eq!(
            bucket_bounds(5, 3),
            ([0xa0, 0, 0, 0], Some([0xc0, 0, 0, 0]))
        );
    }
}

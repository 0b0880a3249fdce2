//! GAEN export files (DESIGN §11) in the meta column family: each region's zips, its index of
//! retained files, and the revisions (keys withdrawn after their export) waiting for the next
//! file's `revised_keys`. The publisher writes a file, its index and the "published" marks of its
//! keys in one synced write, so an index never names a missing file and no key is exported twice.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::records::{GaenIndexRecord, StoredKey};
use super::{CF_META, StorageError, Store, decode_record, decode_u64};

/// A meta entry under a prefix: the key's remainder and the value.
type MetaEntry = (Vec<u8>, Vec<u8>);

fn index_key(region: &str) -> String {
    format!("gaen_index/{region}")
}

fn file_key(region: &str, name: &str) -> String {
    format!("gaen_file/{region}/{name}")
}

fn revision_prefix(region: &str) -> Vec<u8> {
    format!("gaen_revised/{region}/").into_bytes()
}

/// Returns the meta key of a pending revision: the region's prefix and the key's sequence.
pub(crate) fn revision_key(region: &str, sequence: u64) -> Vec<u8> {
    let mut key = revision_prefix(region);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

impl Store {
    /// Returns the index of a region's retained GAEN files (empty when none).
    pub fn gaen_index(&self, region: &str) -> Result<GaenIndexRecord, StorageError> {
        match self
            .db()
            .get_pinned_cf(self.cf(CF_META), index_key(region))?
        {
            Some(value) => decode_record(&value, CF_META),
            None => Ok(GaenIndexRecord::default()),
        }
    }

    /// Returns the zip of a region's GAEN file, if it is retained.
    pub fn gaen_file(&self, region: &str, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db().get_cf(self.cf(CF_META), file_key(region, name))?)
    }

    /// Adds the writes of new GAEN files and the region's rewritten index to `batch`.
    pub(crate) fn put_gaen_files(
        &self,
        batch: &mut WriteBatch,
        region: &str,
        files: &[(String, Vec<u8>)],
        index: &GaenIndexRecord,
    ) {
        for (name, zip) in files {
            batch.put_cf(self.cf(CF_META), file_key(region, name), zip);
        }
        self.put_gaen_index(batch, region, index);
    }

    /// Adds the rewrite of a region's index to `batch`.
    pub(crate) fn put_gaen_index(
        &self,
        batch: &mut WriteBatch,
        region: &str,
        index: &GaenIndexRecord,
    ) {
        batch.put_cf(
            self.cf(CF_META),
            index_key(region),
            prost::Message::encode_to_vec(index),
        );
    }

    /// Adds the deletion of a region's GAEN file to `batch`.
    pub(crate) fn delete_gaen_file(&self, batch: &mut WriteBatch, region: &str, name: &str) {
        batch.delete_cf(self.cf(CF_META), file_key(region, name));
    }

    /// Returns every region that has a GAEN index.
    pub fn gaen_regions(&self) -> Result<Vec<String>, StorageError> {
        self.meta_suffixes(b"gaen_index/").map(|suffixes| {
            suffixes
                .into_iter()
                .map(|(suffix, _)| String::from_utf8_lossy(&suffix).into_owned())
                .collect()
        })
    }

    /// Adds a revision to `batch`: a key withdrawn after its export, for the next file's
    /// `revised_keys`.
    pub(crate) fn put_gaen_revision(&self, batch: &mut WriteBatch, sequence: u64, key: &StoredKey) {
        batch.put_cf(
            self.cf(CF_META),
            revision_key(&key.region, sequence),
            prost::Message::encode_to_vec(key),
        );
    }

    /// Returns the pending revisions of every region as (meta key, key), by region.
    pub fn gaen_revisions(&self) -> Result<Vec<(Vec<u8>, StoredKey)>, StorageError> {
        let mut revisions = Vec::new();
        for (suffix, value) in self.meta_suffixes(b"gaen_revised/")? {
            let mut key = b"gaen_revised/".to_vec();
            key.extend_from_slice(&suffix);
            // The sequence closes the key; a record that does not decode is corrupt.
            if suffix.len() < 8 {
                return Err(StorageError::Corrupt {
                    column_family: CF_META,
                    reason: "gaen revision key too short".to_owned(),
                });
            }
            decode_u64(&suffix[suffix.len() - 8..], CF_META)?;
            revisions.push((key, decode_record(&value, CF_META)?));
        }
        Ok(revisions)
    }

    /// Adds the deletion of a pending revision to `batch`.
    pub(crate) fn delete_gaen_revision(&self, batch: &mut WriteBatch, meta_key: &[u8]) {
        batch.delete_cf(self.cf(CF_META), meta_key);
    }

    /// Returns (suffix, value) of every meta entry under `prefix`.
    fn meta_suffixes(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StorageError> {
        let iterator = self.db().iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(prefix, Direction::Forward),
        );
        let mut found = Vec::new();
        for entry in iterator {
            let (key, value) = entry?;
            let Some(suffix) = key.strip_prefix(prefix) else {
                break;
            };
            found.push((suffix.to_vec(), value.to_vec()));
        }
        Ok(found)
    }
}

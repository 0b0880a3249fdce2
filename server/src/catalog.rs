//! The in-memory catalog of published batches, by region. ListBatches is the hottest call (every
//! phone, every hour), so it is answered from here without touching RocksDB; the publisher
//! updates the catalog right after each durable commit, and it is rebuilt from the store at start.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use exposure_proto::v1::{BatchInfo, BatchKind};

use crate::storage::{StorageError, Store};

/// Default and largest page of ListBatches.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Published batches of every region, oldest first. Cloning shares the same catalog.
#[derive(Clone, Default)]
pub struct Catalog {
    regions: Arc<RwLock<HashMap<String, RegionBatches>>>,
}

/// The batches of one region.
#[derive(Default)]
struct RegionBatches {
    /// Oldest first.
    batches: Vec<BatchInfo>,
    /// Highest sequence ever published, kept when retention deletes the batch, so a phone's
    /// cursor never moves back.
    latest_sequence: u64,
}

/// One page of a region's listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// Batches after the cursor, oldest first.
    pub batches: Vec<BatchInfo>,
    /// Highest sequence of the region (0 when it has none).
    pub latest_sequence: u64,
    /// True when batches beyond this page exist.
    pub more: bool,
}

impl Catalog {
    /// Loads every batch record of the store.
    pub fn load(store: &Store) -> Result<Self, StorageError> {
        let catalog = Catalog::default();
        for (region, sequence) in store.batch_sequences()? {
            catalog.write().entry(region).or_default().latest_sequence = sequence;
        }
        for record in store.all_batches()? {
            if let Some(info) = record.info {
                catalog.insert(&record.region, info);
            }
        }
        Ok(catalog)
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, RegionBatches>> {
        // Writers only push or remove whole entries, so a poisoned lock holds consistent data.
        self.regions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, RegionBatches>> {
        self.regions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a batch just committed.
    pub fn insert(&self, region: &str, info: BatchInfo) {
        let mut regions = self.write();
        let region = regions.entry(region.to_owned()).or_default();
        region.latest_sequence = region.latest_sequence.max(info.sequence);
        let position = region
            .batches
            .partition_point(|existing| existing.sequence < info.sequence);
        region.batches.insert(position, info);
    }

    /// Removes a batch deleted by retention.
    pub fn remove(&self, region: &str, sequence: u64) {
        if let Some(region) = self.write().get_mut(region) {
            region.batches.retain(|info| info.sequence != sequence);
        }
    }

    /// Returns up to `limit` batches of `region` with a sequence above `after_sequence`.
    pub fn list(&self, region: &str, after_sequence: u64, limit: usize) -> Listing {
        let regions = self.read();
        let Some(region) = regions.get(region) else {
            return Listing::default();
        };
        let batches = &region.batches;
        let start = batches.partition_point(|info| info.sequence <= after_sequence);
        let end = batches.len().min(start + limit);
        Listing {
            batches: batches[start..end].to_vec(),
            latest_sequence: region.latest_sequence,
            more: end < batches.len(),
        }
    }

    /// Calls `read` with the highest sequence and the batches (oldest first) of `region`, under
    /// the read lock and without copying them; `None` when the region has never published.
    pub fn with_region<T>(
        &self,
        region: &str,
        read: impl FnOnce(u64, &[BatchInfo]) -> T,
    ) -> Option<T> {
        self.read()
            .get(region)
            .map(|region| read(region.latest_sequence, &region.batches))
    }

    /// Returns true when some region lists a batch with this id (retention has not deleted it).
    pub fn contains_batch(&self, batch_id: &str) -> bool {
        self.read()
            .values()
            .any(|region| region.batches.iter().any(|info| info.batch_id == batch_id))
    }

    /// Returns the regions that have batches.
    pub fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self.read().keys().cloned().collect();
        regions.sort();
        regions
    }

    /// Returns every batch of a region, oldest first.
    pub fn batches(&self, region: &str) -> Vec<BatchInfo> {
        self.read()
            .get(region)
            .map(|region| region.batches.clone())
            .unwrap_or_default()
    }

    /// Returns the hourly batches of `region`, grouped by the UTC day of their creation, for
    /// days after `after_day` and before `before_day`, oldest day first.
    pub fn hourly_by_day(
        &self,
        region: &str,
        after_day: u64,
        before_day: u64,
    ) -> Vec<(u64, Vec<BatchInfo>)> {
        let mut days: Vec<(u64, Vec<BatchInfo>)> = Vec::new();
        for info in self.batches(region) {
            let day = info.created_at / 86_400;
            if info.kind != BatchKind::Hourly as i32 || day <= after_day || day >= before_day {
                continue;
            }
            match days.last_mut() {
                Some((last_day, infos)) if *last_day == day => infos.push(info),
                _ => days.push((day, vec![info])),
            }
        }
        days
    }
}

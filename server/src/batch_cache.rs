//! One shared copy of each hot batch file. GetBatch streams and HTTP downloads of a batch all
//! read the same [`Bytes`] (chunks and ranges are slices of it), so a thousand phones fetching
//! the new hourly batch hold one copy, not a thousand. The cache is bounded by bytes and evicts
//! the least recently used file; concurrent misses of one batch load it from RocksDB once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::catalog::Catalog;
use crate::metrics;
use crate::storage::{StorageError, Store};

/// Default bound of the cache: two weeks of a province's hourly batches and roll-ups fit.
pub const DEFAULT_CAPACITY_BYTES: usize = 256 * 1024 * 1024;

/// The shared batch files. Cloning shares the cache.
#[derive(Clone)]
pub struct BatchCache {
    store: Store,
    catalog: Catalog,
    capacity_bytes: usize,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Last use tick → batch id, oldest first.
    order: BTreeMap<u64, String>,
    /// Bytes of the loaded entries.
    bytes: usize,
    tick: u64,
}

struct Entry {
    file: Arc<OnceCell<Bytes>>,
    /// Size once loaded (0 while loading).
    size: usize,
    tick: u64,
}

impl BatchCache {
    /// Returns an empty cache over the store's batch files, holding at most `capacity_bytes`
    /// (a file larger than that is still served, just not kept).
    pub fn new(store: Store, catalog: Catalog, capacity_bytes: usize) -> Self {
        Self {
            store,
            catalog,
            capacity_bytes,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent before it can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the file of a batch the catalog lists, or `None` when it is not published (or
    /// retention has deleted it).
    pub async fn get(&self, batch_id: &str) -> Result<Option<Bytes>, LoadError> {
        if !self.catalog.contains_batch(batch_id) {
            self.forget(batch_id);
            return Ok(None);
        }
        let cell = self.touch(batch_id);
        let store = self.store.clone();
        let id = batch_id.to_owned();
        let loaded = cell
            .get_or_try_init(|| async move {
                let file = tokio::task::spawn_blocking(move || store.batch_file(&id))
                    .await
                    .map_err(|error| LoadError::Task(error.to_string()))??;
                file.map(Bytes::from).ok_or(LoadError::Missing)
            })
            .await;
        match loaded {
            Ok(file) => {
                let file = file.clone();
                self.loaded(batch_id, &cell, file.len());
                Ok(Some(file))
            }
            Err(LoadError::Missing) => {
                self.forget(batch_id);
                Ok(None)
            }
            Err(error) => {
                self.forget(batch_id);
                Err(error)
            }
        }
    }

    /// Returns the entry's cell, creating it, and marks it most recently used.
    fn touch(&self, batch_id: &str) -> Arc<OnceCell<Bytes>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Inner { entries, order, .. } = &mut *inner;
        let entry = entries.entry(batch_id.to_owned()).or_insert_with(|| Entry {
            file: Arc::new(OnceCell::new()),
            size: 0,
            tick,
        });
        order.remove(&entry.tick);
        entry.tick = tick;
        order.insert(tick, batch_id.to_owned());
        entry.file.clone()
    }

    /// Accounts a loaded file and evicts the least recently used ones beyond the bound.
    fn loaded(&self, batch_id: &str, cell: &Arc<OnceCell<Bytes>>, size: usize) {
        let mut inner = self.lock();
        let counted = match inner.entries.get_mut(batch_id) {
            Some(entry) if Arc::ptr_eq(&entry.file, cell) && entry.size == 0 => {
                entry.size = size;
                true
            }
            _ => false,
        };
        if counted {
            inner.bytes += size;
        }
        while inner.bytes > self.capacity_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.bytes -= entry.size;
            }
        }
        ::metrics::gauge!(metrics::BATCH_CACHE_BYTES).set(inner.bytes as f64);
    }

    /// Drops a batch from the cache (deleted, or its load failed).
    fn forget(&self, batch_id: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.remove(batch_id) {
            inner.order.remove(&entry.tick);
            inner.bytes -= entry.size;
            ::metrics::gauge!(metrics::BATCH_CACHE_BYTES).set(inner.bytes as f64);
        }
    }

    /// Returns the number of files and their bytes held now.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (
            inner
                .entries
                .values()
                .filter(|entry| entry.size > 0)
                .count(),
            inner.bytes,
        )
    }
}

/// Why a batch file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The catalog lists the batch but the store has no file (deleted meanwhile).
    #[error("batch file missing")]
    Missing,
    /// RocksDB failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The blocking read task failed.
    #[error("batch read task: {0}")]
    Task(String),
}

#[cfg(test)]
mod tests {
    use exposure_proto::v1::BatchInfo;

    use super::*;
    use crate::storage::records::StoredBatch;

    /// Stores a batch file and lists it, as the publisher does; returns its id.
    fn publish(store: &Store, catalog: &Catalog, sequence: u64, file: &[u8]) -> String {
        let info = BatchInfo {
            batch_id: format!("{sequence:064x}"),
            sequence,
            ..Default::default()
        };
        let record = StoredBatch {
            info: Some(info.clone()),
            region: "VN-TB".into(),
            ..Default::default()
        };
        let mut write = rocksdb::WriteBatch::default();
        store.put_batch(&mut write, &record, file);
        store.write_synced(write).expect("write");
        catalog.insert("VN-TB", info.clone());
        info.batch_id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn downloads_share_one_copy_and_the_bound_evicts_the_oldest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let catalog = Catalog::default();
        let cache = BatchCache::new(store.clone(), catalog.clone(), 250);
        let first = publish(&store, &catalog, 1, &[1; 100]);
        let second = publish(&store, &catalog, 2, &[2; 100]);
        let third = publish(&store, &catalog, 3, &[3; 100]);

        let (a, b) = tokio::join!(cache.get(&first), cache.get(&first));
        let (a, b) = (a.expect("read").expect("a"), b.expect("read").expect("b"));
        assert_eq!(&a[..], &[1; 100][..]);
        assert_eq!(a.as_ptr(), b.as_ptr(), "one copy for concurrent downloads");
        assert_eq!(cache.usage(), (1, 100));

        cache.get(&second).await.expect("read");
        cache.get(&first).await.expect("read"); // first is now the most recent
        cache.get(&third).await.expect("read");
        assert_eq!(cache.usage(), (2, 200), "the least recently used went");
        let again = cache.get(&first).await.expect("read").expect("first");
        assert_eq!(again.as_ptr(), a.as_ptr(), "first was kept");

        catalog.remove("VN-TB", 1);
        assert_eq!(
            cache.get(&first).await.expect("read"),
            None,
            "unlisted is gone"
        );
        assert_eq!(cache.usage(), (1, 100));
        let unknown = format!("{:064x}", 9);
        assert_eq!(cache.get(&unknown).await.expect("read"), None);
    }
}

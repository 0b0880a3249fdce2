//! Writes the layout into the bucket in the order DESIGN.md section 10 requires, so a reader
//! never meets a dangling reference: every batch a day index names is in the bucket before the
//! day index is written, every day the region index names has its day index before the region
//! index is written, and a day index goes only after the region index stopped naming it.
//! Retention's batch deletes are queued after the region's sync, so the indexes drop a batch
//! before its file goes. Every step is idempotent; a failed step is retried by the caller.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::{Bucket, BucketError};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::layout;
use crate::storage::outbox::OutboxTask;
use crate::storage::{StorageError, Store};

/// Errors of one sync step (all retried).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// RocksDB failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An object an index listed (a batch, a GAEN zip) was deleted while its region was synced;
    /// the next attempt takes a fresh look at the index.
    #[error("{0} was deleted during the sync")]
    Moved(String),
    /// A blocking task failed.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Writes objects of the layout from the store and the catalog.
pub struct Syncer {
    bucket: Bucket,
    store: Store,
    catalog: Catalog,
    clock: Clock,
    confirm_prefix_bits: u32,
    /// Hash of the body and Cache-Control last written at each index path, so an unchanged
    /// index is not written again (forgotten at restart: the first sync rewrites).
    written: Mutex<HashMap<String, [u8; 32]>>,
    /// Paths of immutable objects (batches, GAEN zips) known to be in the bucket.
    present: Mutex<HashSet<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert, remove or lookup.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Syncer {
    /// Returns a syncer writing `store`'s published objects into `bucket`.
    pub fn new(
        bucket: Bucket,
        store: Store,
        catalog: Catalog,
        clock: Clock,
        confirm_prefix_bits: u32,
    ) -> Self {
        Self {
            bucket,
            store,
            catalog,
            clock,
            confirm_prefix_bits,
            written: Mutex::new(HashMap::new()),
            present: Mutex::new(HashSet::new()),
        }
    }

    /// Returns the target.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Does one outbox task.
    pub async fn apply(&self, task: &OutboxTask) -> Result<(), SyncError> {
        match task {
            OutboxTask::PutBatch(batch_id) => self.put_batch(batch_id).await.map(|_| ()),
            OutboxTask::SyncRegion(region) => self.sync_region(region).await,
            OutboxTask::DeleteBatch(batch_id) => {
                self.bucket.delete(&layout::batch_path(batch_id)).await?;
                lock(&self.present).remove(&layout::batch_path(batch_id));
                Ok(())
            }
            OutboxTask::SigningKeys => self.sync_signing_keys().await,
            OutboxTask::SyncGaen(region) => self.sync_gaen(region).await,
        }
    }

    /// Writes the whole layout: signing keys, then each region's batches and indexes, then
    /// each region's GAEN exports.
    pub async fn sync_all(&self) -> Result<(), SyncError> {
        self.sync_signing_keys().await?;
        for region in self.catalog.regions() {
            self.sync_region(&region).await?;
        }
        let store = self.store.clone();
        for region in tokio::task::spawn_blocking(move || store.gaen_regions()).await?? {
            self.sync_gaen(&region).await?;
        }
        Ok(())
    }

    /// Uploads a batch file; returns false when the store no longer has it (retention).
    async fn put_batch(&self, batch_id: &str) -> Result<bool, SyncError> {
        let store = self.store.clone();
        let id = batch_id.to_owned();
        let Some(file) = tokio::task::spawn_blocking(move || store.batch_file(&id)).await?? else {
            return Ok(false);
        };
        self.bucket
            .put(
                &layout::batch_path(batch_id),
                Bytes::from(file),
                layout::OCTET_STREAM,
                layout::CACHE_BATCH,
            )
            .await?;
        lock(&self.present).insert(layout::batch_path(batch_id));
        Ok(true)
    }

    /// Makes sure a batch file is in the bucket before an index names it.
    async fn ensure_batch(&self, batch_id: &str) -> Result<(), SyncError> {
        let path = layout::batch_path(batch_id);
        if lock(&self.present).contains(&path) {
            return Ok(());
        }
        if self.bucket.exists(&path).await? {
            lock(&self.present).insert(path);
            return Ok(());
        }
        if self.put_batch(batch_id).await? {
            Ok(())
        } else {
            Err(SyncError::Moved(path))
        }
    }

    /// Writes a protobuf index unless the same body and Cache-Control were written last time.
    async fn put_index(
        &self,
        path: String,
        body: Vec<u8>,
        cache_control: &'static str,
    ) -> Result<(), SyncError> {
        self.put_changed(path, body, layout::PROTOBUF, cache_control)
            .await
    }

    /// Writes an object that is rewritten in place (an index) unless the same body and
    /// Cache-Control were written last time.
    async fn put_changed(
        &self,
        path: String,
        body: Vec<u8>,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Result<(), SyncError> {
        let mut hash = Sha256::new();
        hash.update(&body);
        hash.update(cache_control.as_bytes());
        let hash: [u8; 32] = hash.finalize().into();
        if lock(&self.written).get(&path) == Some(&hash) {
            return Ok(());
        }
        self.bucket
            .put(&path, Bytes::from(body), content_type, cache_control)
            .await?;
        lock(&self.written).insert(path, hash);
        Ok(())
    }

    /// Rewrites a region's indexes from the catalog (see the module documentation).
    pub async fn sync_region(&self, region: &str) -> Result<(), SyncError> {
        // Under the commit lock: the publisher commits a batch (or retention's delete) and
        // updates the catalog inside it, so the snapshot is never between the two.
        let (store, catalog, owned) = (self.store.clone(), self.catalog.clone(), region.to_owned());
        let bits = self.confirm_prefix_bits;
        let snapshot = tokio::task::spawn_blocking(move || {
            let _commits = store.lock_commits();
            layout::region_snapshot(&catalog, &owned, bits)
        })
        .await?;
        let Some((index, days)) = snapshot else {
            return Ok(());
        };
        for (_, listing) in &days {
            for info in &listing.batches {
                self.ensure_batch(&info.batch_id).await?;
            }
        }
        let today = layout::day_of(self.clock.now());
        for (day, listing) in &days {
            let cache = layout::day_cache_control(*day, today);
            self.put_index(
                layout::day_path(region, *day),
                listing.encode_to_vec(),
                cache,
            )
            .await?;
        }
        self.put_index(
            layout::index_path(region),
            index.encode_to_vec(),
            layout::CACHE_INDEX,
        )
        .await?;
        let folder = format!("v1/regions/{region}/days");
        for name in self.bucket.list(&folder).await? {
            let listed = name
                .parse::<u32>()
                .is_ok_and(|day| index.days.contains(&day));
            if !listed {
                let path = format!("{folder}/{name}");
                self.bucket.delete(&path).await?;
                lock(&self.written).remove(&path);
            }
        }
        Ok(())
    }

    /// Brings a region's GAEN exports in the bucket in line with the stored index (DESIGN
    /// sections 10 and 11): every zip the index names is uploaded (when the bucket lacks it)
    /// before `gaen/index.txt` is rewritten (deleted once it names nothing, as the listener
    /// then answers 404), and zips the index stopped naming (retention) are deleted only after
    /// it.
    pub async fn sync_gaen(&self, region: &str) -> Result<(), SyncError> {
        let (store, owned) = (self.store.clone(), region.to_owned());
        // Under the commit lock, like a region's batch indexes: the publisher commits a zip
        // and the index naming it in one write, so the snapshot always has both.
        let index = tokio::task::spawn_blocking(move || {
            let _commits = store.lock_commits();
            store.gaen_index(&owned)
        })
        .await??;
        let mut listed = HashSet::with_capacity(index.files.len());
        for file in &index.files {
            let path = layout::gaen_file_path(region, &file.name);
            listed.insert(file.name.clone());
            if lock(&self.present).contains(&path) || self.bucket.exists(&path).await? {
                lock(&self.present).insert(path);
                continue;
            }
            let (store, owned, name) = (self.store.clone(), region.to_owned(), file.name.clone());
            let zip = tokio::task::spawn_blocking(move || store.gaen_file(&owned, &name)).await??;
            // A file the index named a moment ago is gone only if retention deleted it since;
            // the next attempt reads the new index.
            let zip = zip.ok_or_else(|| SyncError::Moved(path.clone()))?;
            self.bucket
                .put(
                    &path,
                    Bytes::from(zip),
                    layout::ZIP,
                    layout::CACHE_GAEN_FILE,
                )
                .await?;
            lock(&self.present).insert(path);
        }
        let index_path = layout::gaen_index_path(region);
        if index.files.is_empty() {
            // Like the listener, which answers 404 for a region without retained files.
            self.bucket.delete(&index_path).await?;
            lock(&self.written).remove(&index_path);
        } else {
            let names = index.files.iter().map(|file| file.name.as_str());
            self.put_changed(
                index_path,
                layout::gaen_index_text(region, names).into_bytes(),
                layout::TEXT_PLAIN,
                layout::CACHE_GAEN_INDEX,
            )
            .await?;
        }
        let folder = format!("v1/regions/{region}/gaen");
        for name in self.bucket.list(&folder).await? {
            if layout::is_gaen_file_name(&name) && !listed.contains(&name) {
                let path = format!("{folder}/{name}");
                self.bucket.delete(&path).await?;
                lock(&self.present).remove(&path);
            }
        }
        Ok(())
    }

    /// Rewrites `v1/signing-keys` (nothing while the store has no key).
    pub async fn sync_signing_keys(&self) -> Result<(), SyncError> {
        let store = self.store.clone();
        let list = tokio::task::spawn_blocking(move || store.signing_keys()).await??;
        if list.keys.is_empty() {
            return Ok(());
        }
        let body = layout::signing_keys(&list).encode_to_vec();
        self.put_index(
            layout::SIGNING_KEYS_PATH.to_owned(),
            body,
            layout::CACHE_SIGNING_KEYS,
        )
        .await
    }
}

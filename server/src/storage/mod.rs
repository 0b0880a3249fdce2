//! The durable state of the server: one RocksDB database with a column family per concern
//! (DESIGN.md section 8). This module opens it and owns the key layout; the submodules add
//! the reads and writes of each concern, and `records` holds the stored value types.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `keys` | `u64_be(ingest sequence)`; synthetic keys (§14) from 2^63 | [`records::StoredKey`] |
//! | `release` | `u64_be(release_at) ‖ u64_be(ingest sequence)` | empty: "not yet published" |
//! | `dedup` | `region ‖ 0 ‖ key material` | `u64_be(ingest sequence)` |
//! | `uploads` | `authority id ‖ 0 ‖ upload id` | [`records::StoredUpload`] |
//! | `batches` | `region ‖ 0 ‖ u64_be(batch sequence)` | [`records::StoredBatch`] |
//! | `batch_files` | batch id (hex) | the signed batch file (BlobDB) |
//! | `confirm` | `region ‖ 0 ‖ confirm digest ‖ u64_be(owner's ingest sequence)` | empty; bulk-loaded per batch |
//! | `authorities` | `SHA-256(token)` | [`records::Authority`] |
//! | `codes` | `SHA-256(upload code)` | [`records::StoredCode`] |
//! | `meta` | ASCII name | cursors and signing-key records |
//! | `outbox` | `u64_be(task sequence)` | an object-storage task (see `outbox`), oldest first |
//! | `console_users` | staff e-mail address, lower case | [`console::ConsoleUser`] |
//! | `console_enrolments` | `SHA-256(enrolment token)` | [`console::Enrolment`] |
//! | `console_sessions` | `SHA-256(session token)` | [`console::Session`] |
//! | `console_audit` | `u64_be(unix seconds) ‖ u64_be(sequence)` | [`console::AuditRecord`] |

pub mod authorities;
pub mod batches;
pub mod codes;
pub mod confirm;
pub mod console;
pub mod gaen;
pub mod keys;
pub mod meta;
pub mod outbox;
pub mod records;
pub mod uploads;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

/// Names of every column family, in the order they are created.
pub const COLUMN_FAMILIES: [&str; 15] = [
    CF_KEYS,
    CF_RELEASE,
    CF_DEDUP,
    CF_UPLOADS,
    CF_BATCHES,
    CF_BATCH_FILES,
    CF_CONFIRM,
    CF_AUTHORITIES,
    CF_META,
    CF_CODES,
    CF_OUTBOX,
    CF_CONSOLE_USERS,
    CF_CONSOLE_ENROLMENTS,
    CF_CONSOLE_SESSIONS,
    CF_CONSOLE_AUDIT,
];
pub(crate) const CF_KEYS: &str = "keys";
pub(crate) const CF_RELEASE: &str = "release";
pub(crate) const CF_DEDUP: &str = "dedup";
pub(crate) const CF_UPLOADS: &str = "uploads";
pub(crate) const CF_BATCHES: &str = "batches";
pub(crate) const CF_BATCH_FILES: &str = "batch_files";
pub(crate) const CF_CONFIRM: &str = "confirm";
pub(crate) const CF_AUTHORITIES: &str = "authorities";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_CODES: &str = "codes";
pub(crate) const CF_OUTBOX: &str = "outbox";
pub(crate) const CF_CONSOLE_USERS: &str = "console_users";
pub(crate) const CF_CONSOLE_ENROLMENTS: &str = "console_enrolments";
pub(crate) const CF_CONSOLE_SESSIONS: &str = "console_sessions";
pub(crate) const CF_CONSOLE_AUDIT: &str = "console_audit";

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed (I/O error, corruption, lock held by another process).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value did not decode: the database holds something this version cannot read.
    #[error("corrupt record in column family {column_family}: {reason}")]
    Corrupt {
        /// Where the record lives.
        column_family: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The data directory could not be prepared.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The opened database, shared by the ingest writer, the publisher and the read paths.
#[derive(Clone)]
pub struct Store {
    /// The RocksDB handle; RocksDB is internally synchronized.
    db: Arc<DB>,
    /// Serializes the writers whose read-check-write sequences must not interleave: the ingest
    /// writer's revocations and the publisher's commits (a revoked key must never be published).
    /// Every write that queues object-storage tasks holds it from staging to commit, so tasks
    /// commit in the order of their sequences and the outbox is read incrementally.
    commit_lock: Arc<Mutex<()>>,
    /// Serializes an authority's revocation with the ingest writer's groups of code uploads:
    /// a code is checked (and its issuer found active) and consumed under it, and a
    /// revocation voids the authority's unused codes under it, so no code of a revoked
    /// authority uploads after the revocation's write.
    credential_lock: Arc<Mutex<()>>,
    /// Folder for the sorted files that bulk-load confirm digests (see `confirm`).
    ingest_dir: PathBuf,
    /// False from a failed synced write until one succeeds again (disk full, I/O error); the
    /// server then reports the upload service NOT_SERVING while phones are still served.
    writable: Arc<AtomicBool>,
    /// Sequence of the next object-storage task staged (see `outbox`); taken and committed
    /// under the commit lock, so tasks commit in sequence order.
    outbox_next: Arc<AtomicU64>,
    /// Bulk loads (confirm digests ingested as SST files) since open: they bypass the
    /// write-ahead log, so a continuous backup ships each one's file in its log (see
    /// [`wal::KeptLoads`]), or takes a new checkpoint when a load was not kept.
    bulk_loads: Arc<AtomicU64>,
    /// The bulk loads' files kept for a continuous backup (`None`: none are kept); its lock
    /// is held from a load's ingestion to its count, so a reader sees both or neither.
    kept_loads: Arc<Mutex<Option<wal::KeptLoads>>>,
}

impl Store {
    /// Opens (creating if needed) the database under `data_dir/db`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(data_dir, false)
    }

    /// Opens the database as [`Store::open`] does, archiving obsolete write-ahead log files for
    /// a while (see `wal`) so a continuous backup can read every record.
    pub fn open_keeping_wal(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(data_dir, true)
    }

    #[tracing::instrument(skip_all)]
    fn open_with(data_dir: &Path, keep_wal: bool) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)?;
        let mut options = Options::default();
        if keep_wal {
            options.set_wal_ttl_seconds(wal::WAL_TTL_SECONDS);
            options.set_wal_size_limit_mb(wal::WAL_SIZE_LIMIT_MB);
        }
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.increase_parallelism(2);
        options.set_keep_log_file_num(5);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == CF_BATCH_FILES {
                // Batch files are large immutable values: keep them out of the LSM tree.
                cf_options.set_enable_blob_files(true);
                cf_options.set_min_blob_size(4096);
                cf_options.set_blob_compression_type(rocksdb::DBCompressionType::None);
                cf_options.set_enable_blob_gc(true);
            }
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, data_dir.join("db"), descriptors)?;
        // Files left by a bulk load that a crash interrupted were never ingested: drop them.
        let ingest_dir = data_dir.join("ingest");
        if ingest_dir.exists() {
            std::fs::remove_dir_all(&ingest_dir)?;
        }
        std::fs::create_dir_all(&ingest_dir)?;
        let store = Self {
            db: Arc::new(db),
            commit_lock: Arc::new(Mutex::new(())),
            credential_lock: Arc::new(Mutex::new(())),
            ingest_dir,
            writable: Arc::new(AtomicBool::new(true)),
            outbox_next: Arc::new(AtomicU64::new(0)),
            bulk_loads: Arc::new(AtomicU64::new(0)),
            kept_loads: Arc::new(Mutex::new(None)),
        };
        let next = store.outbox_next_sequence()?;
        store.outbox_next.store(next, Ordering::Relaxed);
        let migrated = store.migrate_confirm_entries()?;
        if migrated > 0 {
            tracing::info!(
                entries = migrated,
                "confirm digests migrated to owner-keyed entries"
            );
        }
        Ok(store)
    }

    /// Opens the database read-only, which works while a server holds it open; for
    /// `authority list` on a running deployment.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StorageError> {
        let options = Options::default();
        let db = DB::open_cf_for_read_only(&options, data_dir.join("db"), COLUMN_FAMILIES, false)?;
        Ok(Self {
            db: Arc::new(db),
            commit_lock: Arc::new(Mutex::new(())),
            credential_lock: Arc::new(Mutex::new(())),
            ingest_dir: data_dir.join("ingest"),
            writable: Arc::new(AtomicBool::new(false)),
            outbox_next: Arc::new(AtomicU64::new(0)),
            bulk_loads: Arc::new(AtomicU64::new(0)),
            kept_loads: Arc::new(Mutex::new(None)),
        })
    }

    /// Returns the handle of a column family created at open.
    pub(crate) fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every name in COLUMN_FAMILIES is created by `open`, so the handle always exists.
        match self.db.cf_handle(name) {
            Some(handle) => handle,
            None => unreachable!("column family {name} is created at open"),
        }
    }

    /// Returns how many bulk loads succeeded since the store was opened.
    pub fn bulk_loads(&self) -> u64 {
        self.bulk_loads.load(Ordering::SeqCst)
    }

    /// Counts a bulk load (see the field's documentation).
    pub(crate) fn note_bulk_load(&self) {
        self.bulk_loads.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns the folder for bulk-load files.
    pub(crate) fn ingest_dir(&self) -> &Path {
        &self.ingest_dir
    }

    /// Returns the raw database, for the submodules.
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Takes the commit lock (see the field's documentation).
    pub(crate) fn lock_commits(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no partial write behind (writes are atomic
        // WriteBatches), so a poisoned lock is safe to take over.
        self.commit_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the lock of the kept bulk loads (see the field's documentation).
    pub(crate) fn lock_kept_loads(&self) -> MutexGuard<'_, Option<wal::KeptLoads>> {
        // Its state is updated in single steps, so a poisoned lock is safe to take over.
        self.kept_loads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the credential lock (see the field's documentation).
    pub(crate) fn lock_credentials(&self) -> MutexGuard<'_, ()> {
        // As for the commit lock: writes are atomic, so a poisoned lock is safe to take over.
        self.credential_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `batch` atomically and waits until it is on disk (fsync of the WAL).
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        match self.db.write_opt(batch, &options) {
            Ok(()) => {
                self.writable.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.note_write_failure(&error);
                Err(error.into())
            }
        }
    }

    /// Marks the store unwritable after a failed write; logs the first failure of a series.
    pub(crate) fn note_write_failure(&self, error: &dyn std::fmt::Display) {
        if self.writable.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, "the store cannot write; uploads are refused until it can");
        }
    }

    /// Returns false while synced writes fail (see the field's documentation).
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Tries a small synced write, which marks the store writable again when it succeeds.
    pub fn probe_write(&self) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), "write_probe", [0u8; 0]);
        self.write_synced(batch)
    }

    /// Flushes memtables and the WAL; called on shutdown.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    /// Writes a consistent copy of the database into the new folder `path`: a RocksDB
    /// checkpoint, which flushes the memtables and hard-links the immutable SST and blob files
    /// (copies them when `path` is on another filesystem). For backups.
    pub fn checkpoint(&self, path: &Path) -> Result<(), StorageError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }

    /// Returns the approximate on-disk size of the database in bytes, for the metrics: the
    /// table files of every column family and the blob files that hold the batch files (BlobDB,
    /// see [`Store::open`]). Both properties count every file a live version still references.
    pub fn approximate_size_bytes(&self) -> u64 {
        const PROPERTIES: [&str; 2] = [
            "rocksdb.total-sst-files-size",
            "rocksdb.total-blob-file-size",
        ];
        COLUMN_FAMILIES
            .iter()
            .flat_map(|name| PROPERTIES.map(|property| (*name, property)))
            .filter_map(|(name, property)| {
                self.db
                    .property_int_value_cf(self.cf(name), property)
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// Returns `prefix ‖ 0 ‖ rest`, the composite keys of the region- and authority-scoped families.
pub(crate) fn scoped_key(scope: &str, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(scope.len() + 1 + rest.len());
    key.extend_from_slice(scope.as_bytes());
    key.push(0);
    key.extend_from_slice(rest);
    key
}

/// Decodes a big-endian u64 stored as a value or key part.
pub(crate) fn decode_u64(bytes: &[u8], column_family: &'static str) -> Result<u64, StorageError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        column_family,
        reason: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// Decodes a prost record, naming the column family on failure.
pub(crate) fn decode_record<M: prost::Message + Default>(
    bytes: &[u8],
    column_family: &'static str,
) -> Result<M, StorageError> {
    M::decode(bytes).map_err(|error| StorageError::Corrupt {
        column_family,
        reason: error.to_string(),
    })
}

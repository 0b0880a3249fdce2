//! The object-storage outbox (DESIGN.md section 10): tasks that still have to reach the bucket,
//! kept durably in order. The publisher stages them in the same atomic write as the batch commit
//! or retention delete that causes them, so a batch is never committed without its upload
//! queued; the object-storage writer drains them oldest first and deletes each once done.
//!
//! Key: `u64_be(task sequence)`; value: `u64_be(enqueued_at, Unix seconds) ‖ kind ‖ argument`.

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use rocksdb::{IteratorMode, WriteBatch};

use super::{CF_OUTBOX, StorageError, Store, decode_u64};

/// One thing to do in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxTask {
    /// Upload a batch file (skipped when retention has deleted it meanwhile).
    PutBatch(String),
    /// Rewrite a region's day indexes and region index from the catalog, uploading first any
    /// batch they name that the bucket lacks, then delete day indexes no longer listed.
    SyncRegion(String),
    /// Delete a batch file (retention); staged after the region's sync, so the indexes stop
    /// naming it before it goes.
    DeleteBatch(String),
    /// Rewrite `v1/signing-keys`.
    SigningKeys,
    /// Bring a region's GAEN exports (DESIGN section 11) in line with its stored index:
    /// upload the zips it names that the bucket lacks, rewrite `gaen/index.txt`, then delete
    /// the zips it no longer names.
    SyncGaen(String),
}

impl OutboxTask {
    /// Returns the kind of task, for logs (a region is text a client chose and is not logged
    /// at WARN).
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxTask::PutBatch(_) => "put_batch",
            OutboxTask::SyncRegion(_) => "sync_region",
            OutboxTask::DeleteBatch(_) => "delete_batch",
            OutboxTask::SigningKeys => "signing_keys",
            OutboxTask::SyncGaen(_) => "sync_gaen",
        }
    }

    fn encode(&self, enqueued_at: u64) -> Vec<u8> {
        let (kind, argument) = match self {
            OutboxTask::PutBatch(id) => (b'p', id.as_str()),
            OutboxTask::SyncRegion(region) => (b's', region.as_str()),
            OutboxTask::DeleteBatch(id) => (b'd', id.as_str()),
            OutboxTask::SigningKeys => (b'k', ""),
            OutboxTask::SyncGaen(region) => (b'g', region.as_str()),
        };
        let mut value = Vec::with_capacity(9 + argument.len());
        value.extend_from_slice(&enqueued_at.to_be_bytes());
        value.push(kind);
        value.extend_from_slice(argument.as_bytes());
        value
    }

    fn decode(value: &[u8]) -> Result<(u64, Self), StorageError> {
        let corrupt = |reason: &str| StorageError::Corrupt {
            column_family: CF_OUTBOX,
            reason: reason.to_owned(),
        };
        if value.len() < 9 {
            return Err(corrupt("task shorter than 9 bytes"));
        }
        let enqueued_at = decode_u64(&value[..8], CF_OUTBOX)?;
        let argument = std::str::from_utf8(&value[9..])
            .map_err(|_| corrupt("task argument is not UTF-8"))?
            .to_owned();
        let task = match value[8] {
            b'p' => OutboxTask::PutBatch(argument),
            b's' => OutboxTask::SyncRegion(argument),
            b'd' => OutboxTask::DeleteBatch(argument),
            b'k' => OutboxTask::SigningKeys,
            b'g' => OutboxTask::SyncGaen(argument),
            _ => return Err(corrupt("unknown task kind")),
        };
        Ok((enqueued_at, task))
    }
}

/// A queued task with its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the queue (increasing).
    pub sequence: u64,
    /// When it was queued, Unix seconds.
    pub enqueued_at: u64,
    /// What to do.
    pub task: OutboxTask,
}

impl Store {
    /// Returns the sequence the next staged task gets: one past the last key of the outbox.
    pub(crate) fn outbox_next_sequence(&self) -> Result<u64, StorageError> {
        let mut last = self.db().iterator_cf(self.cf(CF_OUTBOX), IteratorMode::End);
        match last.next() {
            Some(entry) => Ok(decode_u64(&entry?.0, CF_OUTBOX)? + 1),
            None => Ok(1),
        }
    }

    /// Adds `tasks`, in order, to `batch`: they are queued when the batch commits. The caller
    /// holds the commit lock (`_commits`) until the batch is written: tasks then commit in
    /// sequence order, which lets the drain read only what is new ([`Store::outbox_after`]).
    pub fn stage_outbox(
        &self,
        batch: &mut WriteBatch,
        tasks: &[OutboxTask],
        now: u64,
        _commits: &MutexGuard<'_, ()>,
    ) {
        for task in tasks {
            let sequence = self.outbox_next.fetch_add(1, Ordering::Relaxed);
            batch.put_cf(self.cf(CF_OUTBOX), sequence.to_be_bytes(), task.encode(now));
        }
    }

    /// Queues `tasks` durably in one synced write.
    pub fn enqueue_outbox(&self, tasks: &[OutboxTask], now: u64) -> Result<(), StorageError> {
        let commits = self.lock_commits();
        let mut batch = WriteBatch::default();
        self.stage_outbox(&mut batch, tasks, now, &commits);
        self.write_synced(batch)
    }

    /// Returns the oldest queued task.
    pub fn outbox_first(&self) -> Result<Option<OutboxEntry>, StorageError> {
        Ok(self.outbox_after(None, 1)?.pop())
    }

    /// Returns up to `limit` queued tasks, oldest first, whose sequence is past `after` (all
    /// of them from the start with `None`). It seeks straight to `after`: the tombstones of
    /// tasks already done are not walked again.
    pub fn outbox_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        let from = after.map(|sequence| sequence.saturating_add(1).to_be_bytes());
        let mode = match &from {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut entries = Vec::new();
        for entry in self.db().iterator_cf(self.cf(CF_OUTBOX), mode).take(limit) {
            let (key, value) = entry?;
            let (enqueued_at, task) = OutboxTask::decode(&value)?;
            entries.push(OutboxEntry {
                sequence: decode_u64(&key, CF_OUTBOX)?,
                enqueued_at,
                task,
            });
        }
        Ok(entries)
    }

    /// Removes a task that is done. Not synced: a task redone after a crash is harmless, as
    /// every task is idempotent.
    pub fn outbox_done(&self, sequence: u64) -> Result<(), StorageError> {
        self.db()
            .delete_cf(self.cf(CF_OUTBOX), sequence.to_be_bytes())?;
        Ok(())
    }

    /// Returns the number of queued tasks and when the oldest was queued (Unix seconds): one
    /// walk of the whole outbox, for tools and tests (the drain keeps its own counts).
    pub fn outbox_stats(&self) -> Result<(usize, Option<u64>), StorageError> {
        let mut count = 0;
        let mut oldest = None;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_OUTBOX), IteratorMode::Start)
        {
            let (_, value) = entry?;
            if oldest.is_none() {
                oldest = Some(OutboxTask::decode(&value)?.0);
            }
            count += 1;
        }
        Ok((count, oldest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tasks = [
            OutboxTask::PutBatch("ab".into()),
            OutboxTask::SyncRegion("VN-TB".into()),
            OutboxTask::DeleteBatch("cd".into()),
            OutboxTask::SigningKeys,
            OutboxTask::SyncGaen("VN-TB".into()),
        ];
        {
            let store = Store::open(dir.path()).expect("store");
            store.enqueue_outbox(&tasks[..2], 10).expect("enqueue");
            store.enqueue_outbox(&tasks[2..], 20).expect("enqueue");
            assert_eq!(store.outbox_stats().expect("stats"), (5, Some(10)));
            let first = store.outbox_first().expect("first").expect("a task");
            assert_eq!(first.task, tasks[0]);
            store.outbox_done(first.sequence).expect("done");
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        store
            .enqueue_outbox(&[OutboxTask::SigningKeys], 30)
            .expect("enqueue after reopen");
        let mut seen = Vec::new();
        while let Some(entry) = store.outbox_first().expect("first") {
            seen.push((entry.enqueued_at, entry.task));
            store.outbox_done(entry.sequence).expect("done");
        }
        assert_eq!(
            seen,
            vec![
                (10, tasks[1].clone()),
                (20, tasks[2].clone()),
                (20, tasks[3].clone()),
                (20, tasks[4].clone()),
                (30, OutboxTask::SigningKeys),
            ]
        );
        assert_eq!(store.outbox_stats().expect("stats"), (0, None));
    }
}

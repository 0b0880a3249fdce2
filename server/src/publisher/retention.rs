//! Retention: keys, confirm digests, batches and upload records older than the retention window
//! (14 days by default), GAEN export files whose window ended before it, and upload codes that
//! expired before it, are deleted, in one synced write per run. Synthetic keys (DESIGN §14) expire
//! like real keys but are not counted as keys.

use rocksdb::WriteBatch;

use super::{PublishError, PublishReport, Publisher};
use crate::storage::outbox::OutboxTask;

impl Publisher {
    /// Deletes what is older than the retention window.
    pub(super) fn apply_retention(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let cutoff = now.saturating_sub(self.settings.retention.as_secs());
        let mut write = WriteBatch::default();
        let expired_keys = self.store.keys_ending_before(cutoff)?;
        for (sequence, key) in &expired_keys {
            self.store.withdraw_key(&mut write, *sequence, key)?;
        }
        // Quota counters of days before yesterday are never read again (a few bytes per
        // authority and day; they go whenever keys expire, which is daily under load).
        self.store
            .delete_keys_stored_before(&mut write, (now / 86_400).saturating_sub(1));
        let mut expired_batches = Vec::new();
        for region in self.catalog.regions() {
            for info in self.catalog.batches(&region) {
                // A batch of decoys only has no slots; its creation time stands in for them.
                let newest = if info.slot_max > 0 {
                    info.slot_max
                } else {
                    info.created_at
                };
                if newest < cutoff {
                    self.store
                        .delete_batch(&mut write, &region, info.sequence, &info.batch_id);
                    expired_batches.push((region.clone(), info.sequence, info.batch_id.clone()));
                }
            }
        }
        let (expired_gaen_files, gaen_regions) = self.expire_gaen(&mut write, cutoff)?;
        let expired_uploads = self.store.delete_uploads_before(&mut write, cutoff)?;
        // Upload codes go once they expired before the retention window: until then the
        // console's codes list and statistics show them (DESIGN §13); an expired code never
        // uploads again, whether it is stored or not.
        let expired_codes = self.store.delete_codes_expired_before(&mut write, cutoff)?;
        let expired_audit = self.store.delete_audit_before(
            &mut write,
            now.saturating_sub(self.settings.audit_retention.as_secs()),
        )?;
        if expired_keys.is_empty()
            && expired_batches.is_empty()
            && expired_uploads == 0
            && expired_codes == 0
            && expired_audit == 0
            && expired_gaen_files == 0
        {
            // The counters' range delete waits for a run with something else to delete.
            return Ok(());
        }
        // Object-storage hook: each region's indexes are rewritten without the expired
        // batches before their files are deleted from the bucket.
        let mut regions: Vec<&String> = expired_batches.iter().map(|(region, ..)| region).collect();
        regions.dedup();
        let mut tasks: Vec<OutboxTask> = regions
            .into_iter()
            .map(|region| OutboxTask::SyncRegion(region.clone()))
            .collect();
        tasks.extend(
            expired_batches
                .iter()
                .map(|(_, _, batch_id)| OutboxTask::DeleteBatch(batch_id.clone())),
        );
        // A region's GAEN sync rewrites index.txt before it deletes the zips it stopped naming.
        tasks.extend(gaen_regions.into_iter().map(OutboxTask::SyncGaen));
        let commits = self.store.lock_commits();
        self.stage_outbox(&mut write, &tasks, now, &commits);
        self.store.write_synced(write)?;
        for (region, sequence, _) in &expired_batches {
            self.catalog.remove(region, *sequence);
        }
        self.wake_outbox();
        let synthetic_expired = expired_keys.iter().filter(|(_, key)| key.synthetic).count();
        report.keys_expired += expired_keys.len() - synthetic_expired;
        report.batches_expired += expired_batches.len();
        report.gaen_files_expired += expired_gaen_files;
        tracing::info!(
            keys = expired_keys.len() - synthetic_expired,
            synthetic_keys = synthetic_expired,
            batches = expired_batches.len(),
            uploads = expired_uploads,
            codes = expired_codes,
            gaen_files = expired_gaen_files,
            "retention deleted expired data"
        );
        Ok(())
    }
}

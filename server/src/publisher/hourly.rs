//! Hourly batches: the keys whose embargo has ended and that are not yet published, one batch
//! per region.

use std::collections::BTreeMap;

use super::{BatchPlan, PublishError, PublishReport, Publisher};
use crate::storage::records::StoredKey;

impl Publisher {
    /// Publishes every releasable key.
    pub(super) fn publish_hourly(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let sequences = self.store.releasable(now)?;
        let mut by_region: BTreeMap<String, Vec<(u64, StoredKey)>> = BTreeMap::new();
        for (sequence, key) in self.store.keys(&sequences)? {
            by_region
                .entry(key.region.clone())
                .or_default()
                .push((sequence, key));
        }
        let store = &self.store;
        for (region, keys) in by_region {
            // A backlog larger than one batch goes out as several, each its own atomic commit.
            for keys in keys.chunks(self.settings.max_keys_per_batch.max(1)) {
                if self.stopping() {
                    return Ok(());
                }
                let published = self.build_and_commit(
                    &region,
                    BatchPlan::hourly(),
                    keys.to_vec(),
                    now,
                    |write, keys| {
                        for (sequence, key) in keys {
                            store.mark_published(write, *sequence, key.release_at);
                        }
                    },
                )?;
                if let Some(committed) = published {
                    report.hourly_batches += 1;
                    report.keys_published += committed.keys;
                    report.gaen_files += committed.gaen_files;
                }
            }
        }
        Ok(())
    }
}

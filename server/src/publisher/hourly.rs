//! Hourly batches: the keys whose embargo has ended and that are not yet published, one batch
//! per region, or several when the region's release passes one batch's budget.
//!
//! The budget is `max_keys_per_batch` keys and `max_elements_per_batch` elements. Keys are read
//! a page at a time and counted by the elements they expand into (without expanding them), and a
//! region's batch is built and committed as soon as the next key would pass its budget. So the
//! publisher holds at most one batch's elements in memory, plus the unexpanded keys of at most
//! one batch per region, however large the backlog (issue 18: a backlog of keys of one identifier
//! a second once needed ~17 GB).
//!
//! A region whose whole run is one batch of fewer keys than the padding target is padded with
//! synthetic keys (DESIGN §14); a run split into several batches holds more than one batch's
//! worth and is not padded, so no part of it is (as no split file of the reference server is).

use std::collections::BTreeMap;

use super::{BatchPlan, PublishError, PublishReport, Publisher};
use crate::storage::records::StoredKey;

/// Keys read from the store at once.
const READ_PAGE: usize = 1024;

/// The keys of one region gathered for its next batch.
#[derive(Default)]
struct Gathered {
    /// Keys with their ingest sequences, in release order.
    keys: Vec<(u64, StoredKey)>,
    /// Elements they expand into, before deduplication.
    elements: u64,
    /// True once a batch of this region's run was committed: the run is split, not padded.
    split: bool,
}

impl Publisher {
    /// Publishes every releasable key.
    pub(super) fn publish_hourly(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let max_keys = self.settings.max_keys_per_batch.max(1);
        let max_elements = self.settings.max_elements_per_batch.max(1);
        let mut gathered: BTreeMap<String, Gathered> = BTreeMap::new();
        for page in self.store.releasable(now)?.chunks(READ_PAGE) {
            for (sequence, key) in self.store.keys(page)? {
                let elements = key.matcher_key()?.element_count();
                let batch = gathered.entry(key.region.clone()).or_default();
                let full = batch.keys.len() >= max_keys || batch.elements + elements > max_elements;
                if full && !batch.keys.is_empty() {
                    let keys = std::mem::take(&mut batch.keys);
                    batch.elements = 0;
                    batch.split = true;
                    if self.stopping() {
                        return Ok(());
                    }
                    self.commit_hourly(&key.region, keys, 0, now, report)?;
                }
                let batch = gathered.entry(key.region.clone()).or_default();
                batch.elements += elements;
                batch.keys.push((sequence, key));
            }
        }
        for (region, batch) in gathered {
            if batch.keys.is_empty() {
                continue;
            }
            if self.stopping() {
                return Ok(());
            }
            let pad_to = if batch.split {
                0
            } else {
                self.padded_total(batch.keys.len())
            };
            self.commit_hourly(&region, batch.keys, pad_to, now, report)?;
        }
        Ok(())
    }

    /// Builds and commits one hourly batch of `region` from `keys` (within one batch's budget)
    /// and synthetic keys up to `pad_to`, with the keys' "published" marks in the same write.
    fn commit_hourly(
        &self,
        region: &str,
        keys: Vec<(u64, StoredKey)>,
        pad_to: usize,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let store = &self.store;
        let published = self.build_and_commit(
            region,
            BatchPlan::hourly(pad_to),
            keys,
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
        Ok(())
    }
}

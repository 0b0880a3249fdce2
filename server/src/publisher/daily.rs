//! Daily roll-ups: once a UTC day has closed, one batch with every element of that day's hourly
//! batches, listing the hourly sequences it supersedes, so a phone that was away downloads one
//! file per day instead of 24. Keys revoked since are left out.

use super::{BatchPlan, PublishError, PublishReport, Publisher};

const DAY_SECONDS: u64 = 86_400;

impl Publisher {
    /// Publishes the roll-up of every closed day that has hourly batches and none yet.
    pub(super) fn publish_daily(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let today = now / DAY_SECONDS;
        for region in self.catalog.regions() {
            let cursor = self.store.rollup_cursor(&region)?;
            for (day, hourly) in self.catalog.hourly_by_day(&region, cursor, today) {
                if self.stopping() {
                    return Ok(());
                }
                let mut sequences = Vec::new();
                for info in &hourly {
                    if let Some(record) = self.store.batch(&region, info.sequence)? {
                        sequences.extend(record.key_sequences);
                    }
                }
                // Keys revoked since their hourly batch no longer exist and drop out here.
                let keys = self.store.keys(&sequences)?;
                let supersedes = hourly.iter().map(|info| info.sequence).collect();
                let store = &self.store;
                self.build_and_commit(
                    &region,
                    BatchPlan::daily(day, supersedes),
                    &keys,
                    now,
                    |write| {
                        store.put_rollup_cursor(write, &region, day);
                    },
                )?;
                report.daily_batches += 1;
            }
        }
        Ok(())
    }
}

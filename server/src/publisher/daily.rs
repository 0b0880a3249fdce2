//! Daily roll-ups: once a UTC day has closed, its hourly batches are republished as daily
//! batches listing the hourly sequences they supersede, so a phone that was away downloads a
//! file or two per day instead of 24. Keys withdrawn since are left out.
//!
//! A day whose hourly batches hold more than `max_keys_per_batch` keys or
//! `max_elements_per_batch` elements is rolled up as several daily batches, split along hourly
//! batches (each daily batch supersedes exactly the hourly batches whose keys it holds), so one
//! commit, and the publisher's memory, stay bounded as they do for hourly batches. An hourly
//! batch is within both budgets itself (one published before the element budget existed may
//! not be, and then forms a part alone).
//! A per-region cursor of the last hourly sequence rolled up commits with each daily batch:
//! after a crash midway through a day, the next run continues with the next part.

use exposure_proto::v1::BatchInfo;

use super::{BatchPlan, PublishError, PublishReport, Publisher};

const DAY_SECONDS: u64 = 86_400;

/// One part of a day's roll-up: the hourly batches it supersedes and their keys' sequences.
type RollUpPart = (Vec<BatchInfo>, Vec<u64>);

impl Publisher {
    /// Publishes the roll-up of every closed day that has hourly batches not yet rolled up.
    pub(super) fn publish_daily(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        let today = now / DAY_SECONDS;
        for region in self.catalog.regions() {
            let cursor = self.store.rollup_cursor(&region)?;
            let hourly_cursor = self.store.rollup_hourly_cursor(&region)?;
            for (day, hourly) in self.catalog.hourly_by_day(&region, cursor, today) {
                let remaining: Vec<BatchInfo> = hourly
                    .into_iter()
                    .filter(|info| info.sequence > hourly_cursor)
                    .collect();
                let parts = self.split_day(&region, remaining)?;
                let part_count = parts.len();
                for (index, (hourly, sequences)) in parts.into_iter().enumerate() {
                    if self.stopping() {
                        return Ok(());
                    }
                    // Keys withdrawn since their hourly batch no longer exist and drop out; the
                    // region check guards against records naming another region's key.
                    let keys: Vec<_> = self
                        .store
                        .keys(&sequences)?
                        .into_iter()
                        .filter(|(_, key)| key.region == region)
                        .collect();
                    let supersedes: Vec<u64> = hourly.iter().map(|info| info.sequence).collect();
                    let last_hourly = supersedes.last().copied().unwrap_or(hourly_cursor);
                    let closes_day = index + 1 == part_count;
                    let store = &self.store;
                    let region_name = region.as_str();
                    self.build_and_commit(
                        &region,
                        BatchPlan::daily(day, supersedes),
                        keys,
                        now,
                        |write, _keys| {
                            store.put_rollup_hourly_cursor(write, region_name, last_hourly);
                            if closes_day {
                                store.put_rollup_cursor(write, region_name, day);
                            }
                        },
                    )?;
                    report.daily_batches += 1;
                }
            }
        }
        Ok(())
    }

    /// Groups a day's hourly batches, in order, into parts of at most `max_keys_per_batch`
    /// keys and `max_elements_per_batch` elements (an hourly batch is never split, and is
    /// within both itself); returns each part's hourly batches and key sequences. A day with
    /// no batch left gives no part.
    fn split_day(
        &self,
        region: &str,
        hourly: Vec<BatchInfo>,
    ) -> Result<Vec<RollUpPart>, PublishError> {
        let max_keys = self.settings.max_keys_per_batch.max(1);
        let max_elements = self.settings.max_elements_per_batch.max(1);
        let mut parts: Vec<RollUpPart> = Vec::new();
        // Elements of the last part; counted from the keys still held (withdrawn ones drop out).
        let mut part_elements = 0;
        for info in hourly {
            let sequences = match self.store.batch(region, info.sequence)? {
                Some(record) => record.key_sequences,
                None => Vec::new(),
            };
            let mut elements = 0;
            for (_, key) in self.store.keys(&sequences)? {
                elements += key.matcher_key()?.element_count();
            }
            match parts.last_mut() {
                Some((infos, keys))
                    if keys.len() + sequences.len() <= max_keys
                        && part_elements + elements <= max_elements =>
                {
                    infos.push(info);
                    keys.extend(sequences);
                    part_elements += elements;
                }
                _ => {
                    parts.push((vec![info], sequences));
                    part_elements = elements;
                }
            }
        }
        Ok(parts)
    }
}

//! How many confirm fetches a phone makes in a day: the one model of a phone's lookups that the
//! province benchmark's traffic figures and the load test's province scenario both use.
//!
//! A phone polls hourly and checks each new batch once (DESIGN §6, §9). An hourly batch holds
//! the keys released that hour, and an uploading case's 14 daily keys span the whole retention
//! window, so a batch's slot range spans it too: the phone looks up every tag it stored in those
//! 14 days, 14 × 10,000 observations × 3 slot candidates = 420,000 lookups a batch, in 24 batches
//! a day: 10,080,000 lookups. Nearly all of them miss; each false filter hit (2^-w of the
//! lookups at a w-bit fingerprint) costs one confirm fetch: 153.8 a day at 16 bits.
//!
//! The province benchmark's unit of work is smaller: one day of a phone's observations against
//! one peak day's batch (30,000 lookups, DESIGN §9's daily matching target). Its false-hit rate
//! is measured there, and the traffic a phone's real day costs is this model's lookups at that
//! rate.

use super::{DEFAULT_RETENTION_DAYS, PEAK_OBSERVATIONS_PER_PHONE};
use crate::matching::DEFAULT_SLOT_TOLERANCE;

/// The lookups of one phone's day, as it checks each batch it downloads once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhoneDayLookups {
    /// Observations the phone stores a day.
    pub observations_per_day: u64,
    /// Days of observations it keeps: the retention window (DESIGN §6).
    pub retention_days: u64,
    /// Tags looked up per observation: its slot and `tolerance` slots either side (DESIGN §3).
    pub slot_candidates: u64,
    /// Batches it checks a day: one per hourly poll that finds a new hourly batch.
    pub batches_per_day: u64,
}

/// Thái Bình's phone on the peak day (DESIGN §9): 10,000 observations a day kept 14 days, 3 slot
/// candidates each, 24 hourly batches checked.
pub const PEAK_PHONE_DAY: PhoneDayLookups = PhoneDayLookups {
    observations_per_day: PEAK_OBSERVATIONS_PER_PHONE as u64,
    retention_days: DEFAULT_RETENTION_DAYS,
    slot_candidates: 2 * DEFAULT_SLOT_TOLERANCE as u64 + 1,
    batches_per_day: 24,
};

impl PhoneDayLookups {
    /// Returns the tags the phone holds, each looked up in every batch: observations a day ×
    /// retention days × slot candidates.
    pub fn lookups_per_batch(&self) -> u64 {
        self.observations_per_day * self.retention_days * self.slot_candidates
    }

    /// Returns the lookups of a day: [`PhoneDayLookups::lookups_per_batch`] × batches a day.
    pub fn lookups_per_day(&self) -> u64 {
        self.lookups_per_batch() * self.batches_per_day
    }

    /// Returns the confirm fetches of a day when a lookup falsely hits at `false_hit_rate`
    /// (2^-w at a w-bit fingerprint; true exposures are too rare to count).
    pub fn confirm_fetches_per_day(&self, false_hit_rate: f64) -> f64 {
        self.lookups_per_day() as f64 * false_hit_rate
    }

    /// Returns the confirm fetches of a day at a `fingerprint_bits`-bit fingerprint.
    pub fn confirm_fetches_per_day_at(&self, fingerprint_bits: u32) -> f64 {
        self.confirm_fetches_per_day(2_f64.powi(-(fingerprint_bits as i32)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_phone_day_is_design_section_9s_phone() {
        // 10,000 observations (§9) × 14 days (§6) × 3 candidates (§3) = 420,000 tags, in each
        // of 24 hourly batches: 10,080,000 lookups, 10,080,000 / 65,536 = 153.80859375 fetches.
        assert_eq!(PEAK_PHONE_DAY.lookups_per_batch(), 420_000);
        assert_eq!(PEAK_PHONE_DAY.lookups_per_day(), 10_080_000);
        assert_eq!(
            PEAK_PHONE_DAY.confirm_fetches_per_day_at(16),
            153.808_593_75
        );
        assert_eq!(PEAK_PHONE_DAY.confirm_fetches_per_day_at(8), 39_375.0);
    }
}

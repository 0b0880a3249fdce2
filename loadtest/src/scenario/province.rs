//! The `province` scenario: every RPC at the rate Thái Bình's peak day asks of one server
//! (DESIGN.md section 9), multiplied by `--speedup`.
//!
//! The derivation, per second at speedup 1:
//! - uploads: 3,074 new cases on 18 March 2022, 40 % of them uploading = 1,230 uploads a day,
//!   1,230 / 86,400 = 0.0142/s (14 keys each);
//! - polls: 1,878,540 people × 40 % adoption = 751,416 phones, each polling hourly,
//!   751,416 / 3,600 = 208.7/s;
//! - downloads: one per poll that sees a new batch. Batches are published hourly and phones poll
//!   hourly, so nearly every poll sees exactly one new hourly batch: 208.7/s (the daily roll-up
//!   only replaces batches a current phone already holds);
//! - confirms: false filter hits dominate (true exposures are rare). A phone checks each hourly
//!   batch once against every tag it holds: 14 days × 10,000 observations × 3 slot candidates =
//!   420,000 lookups a batch, 24 batches a day, at 16-bit fingerprints (false-positive rate
//!   2^-16): 10,080,000 / 65,536 = 153.8 confirm fetches per phone per day, × 751,416 / 86,400 =
//!   1,337.7/s. The phone's lookups are `exposure_matcher::province::PEAK_PHONE_DAY`, the model
//!   `bench-province` reports its confirm traffic with.
//!
//! Total: 1,755.1 RPCs/s. Each RPC runs as its own fixed-rate stream starting at t = 0, so even a
//! short run exercises every path once (the first upload included) before settling at the
//! model's proportions.

use exposure_matcher::province::{PEAK_PHONE_DAY, PhoneDayLookups};

use crate::scenario::RpcKind;

/// The parameters of a province's peak day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProvinceModel {
    /// Phones running the app (population × adoption).
    pub phones: f64,
    /// Cases uploading keys per day.
    pub uploads_per_day: f64,
    /// Seconds between two polls of one phone.
    pub poll_interval_s: f64,
    /// Seconds between two hourly batches.
    pub publish_interval_s: f64,
    /// What one phone looks up in a day; its `batches_per_day` is replaced by the batches
    /// published in a day (`publish_interval_s`), each checked once.
    pub phone_day: PhoneDayLookups,
    /// Fingerprint width of the filters, in bits (false-positive rate 2^-bits per lookup).
    pub fingerprint_bits: u32,
}

/// Thái Bình at its peak, 18 March 2022 (DESIGN.md section 9).
pub const THAI_BINH: ProvinceModel = ProvinceModel {
    phones: 751_416.0,
    uploads_per_day: 1_230.0,
    poll_interval_s: 3_600.0,
    publish_interval_s: 3_600.0,
    phone_day: PEAK_PHONE_DAY,
    fingerprint_bits: 16,
};

const SECONDS_PER_DAY: f64 = 86_400.0;

impl ProvinceModel {
    /// Returns the expected confirm-bucket fetches per phone per day (false filter hits).
    pub fn confirms_per_phone_day(&self) -> f64 {
        let phone_day = PhoneDayLookups {
            batches_per_day: (SECONDS_PER_DAY / self.publish_interval_s).round().max(1.0) as u64,
            ..self.phone_day
        };
        phone_day.confirm_fetches_per_day_at(self.fingerprint_bits)
    }

    /// Returns the requests per second of every RPC at `speedup` times the model's load, in the
    /// order the streams are started.
    pub fn rates(&self, speedup: f64) -> Vec<(RpcKind, f64)> {
        let polls = self.phones / self.poll_interval_s;
        let new_batch_per_poll = (self.poll_interval_s / self.publish_interval_s).min(1.0);
        vec![
            (
                RpcKind::Upload,
                speedup * self.uploads_per_day / SECONDS_PER_DAY,
            ),
            (RpcKind::ListBatches, speedup * polls),
            (RpcKind::GetBatch, speedup * polls * new_batch_per_poll),
            (
                RpcKind::GetConfirmBucket,
                speedup * self.phones * self.confirms_per_phone_day() / SECONDS_PER_DAY,
            ),
        ]
    }

    /// Returns the total requests per second at `speedup`.
    pub fn total_rate(&self, speedup: f64) -> f64 {
        self.rates(speedup).iter().map(|(_, rate)| rate).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_of(kind: RpcKind, speedup: f64) -> f64 {
        THAI_BINH
            .rates(speedup)
            .into_iter()
            .find(|(candidate, _)| *candidate == kind)
            .map(|(_, rate)| rate)
            .unwrap_or(0.0)
    }

    #[test]
    fn speedup_multiplies_every_rate() {
        for (kind, rate) in THAI_BINH.rates(10.0) {
            assert!((rate - 10.0 * rate_of(kind, 1.0)).abs() < 1e-9, "{kind:?}");
        }
    }

    #[test]
    fn slower_publishing_means_fewer_downloads() {
        let model = ProvinceModel {
            publish_interval_s: 7_200.0,
            ..THAI_BINH
        };
        let rates = model.rates(1.0);
        assert!((rates[2].1 - rates[1].1 / 2.0).abs() < 1e-9);
    }
}

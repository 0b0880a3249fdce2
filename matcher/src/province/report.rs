//! What the province benchmark measured, with the figures derived from it: false filter hits
//! against theory, confirm traffic, and the bytes a phone downloads per day next to the same
//! day shipped as a GAEN export or as DP-3T's Cuckoo filter.

use std::time::Duration;

use super::ProvinceConfig;
use super::calibration::{PlainLoopCalibration, RatioValidity, ratio_validity};
use super::day::ProvinceDay;
use super::phones::{MatchTally, PlantedExposure};
use super::traffic::{PEAK_PHONE_DAY, PhoneDayLookups};
use crate::batch::BatchHeader;

/// Bytes of one confirm digest in a bucket response (DESIGN §3).
pub const CONFIRM_DIGEST_BYTES: u64 = 16;

/// Assumed bytes of one confirm fetch besides its digests: the `GetConfirmBucket` request
/// (region, prefix, prefix bits: about 15 bytes of protobuf) and the HTTP/2 and gRPC framing of
/// request, response and trailers on a kept-alive connection with HPACK-indexed headers.
pub const CONFIRM_FETCH_OVERHEAD_BYTES: u64 = 128;

/// Bytes per key of a GAEN Temporary Exposure Key export: key 16, rolling start 4, rolling
/// period 4, risk level 4, before the file's protobuf, zip and signature overhead.
pub const GAEN_EXPORT_BYTES_PER_KEY: u64 = 28;

/// Bits per entry of DP-3T's unlinkable design, whose Cuckoo filter holds one entry per
/// published identifier (DP-3T white paper, "unlinkable decentralized proximity tracing").
pub const DP3T_CUCKOO_BITS_PER_ENTRY: u64 = 48;

/// Fewest expected false hits for which a 20 % comparison means something: at 100, one
/// standard deviation of the count is 10 %.
const MIN_EXPECTED_FOR_COMPARISON: f64 = 100.0;

/// Where the time of one way of matching went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MatchTime {
    /// Wall time, end to end: drawing the phones' stored tags, looking them up and confirming
    /// every hit.
    pub wall: Duration,
    /// CPU time of all threads over `wall`, where the platform reports it.
    pub cpu: Option<Duration>,
    /// Time inside the lookup loop, summed over threads: hashing and probing for the plain
    /// loop, probing only for partitioned stores (whose tags were hashed when stored).
    pub lookups: Duration,
    /// The median over timed loops (a phone's for the plain loop, a group's pass over one
    /// partition for partitioned stores) of each loop's time per lookup: unlike `lookups`, it leaves out the turns a
    /// thread lost to other work on a shared machine. `None` for a sum of runs.
    pub median_lookup_ns: Option<f64>,
}

impl MatchTime {
    /// Returns both times together.
    pub fn plus(&self, other: &MatchTime) -> MatchTime {
        MatchTime {
            wall: self.wall + other.wall,
            cpu: self.cpu.zip(other.cpu).map(|(a, b)| a + b),
            lookups: self.lookups + other.lookups,
            median_lookup_ns: None,
        }
    }

    /// Returns nanoseconds in the lookup loop per lookup, on one thread.
    pub fn lookup_ns(&self, lookups: u64) -> f64 {
        per_lookup_ns(self.lookups, lookups)
    }

    /// Returns CPU nanoseconds per lookup, all threads together, where CPU time is known.
    pub fn cpu_ns(&self, lookups: u64) -> Option<f64> {
        self.cpu.map(|cpu| per_lookup_ns(cpu, lookups))
    }
}

/// Returns `time` per lookup in nanoseconds (0 without lookups).
fn per_lookup_ns(time: Duration, lookups: u64) -> f64 {
    match lookups {
        0 => 0.0,
        lookups => time.as_secs_f64() * 1e9 / lookups as f64,
    }
}

/// The same phones matched with the plain loop and from partitioned stores, one after the
/// other in the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineReport {
    /// Phones in the sample: the first ones.
    pub phones: usize,
    /// Lookups of the sample, each way.
    pub lookups: u64,
    /// The plain loop's times.
    pub plain: MatchTime,
    /// The partitioned stores' times.
    pub partitioned: MatchTime,
    /// Whether both ways counted the same hits, fetches and confirmations.
    pub agrees: bool,
    /// The plain loop of criterion's phone day, run in this process just before the baseline.
    pub calibration: PlainLoopCalibration,
}

impl BaselineReport {
    /// Returns how many times faster the lookup loop over partitioned stores is than the plain
    /// loop (time in the loop, summed over threads).
    pub fn lookup_speedup(&self) -> f64 {
        self.plain.lookups.as_secs_f64()
            / self
                .partitioned
                .lookups
                .as_secs_f64()
                .max(f64::MIN_POSITIVE)
    }

    /// Returns whether the ratios mean what they say: the baseline's time per lookup in its
    /// loop against the calibrated plain loop's ([`ratio_validity`]).
    ///
    /// Both sides are medians over one phone's match at a time, so that a thread descheduled
    /// by other work on the machine weighs on neither.
    pub fn validity(&self) -> RatioValidity {
        ratio_validity(
            self.plain
                .median_lookup_ns
                .unwrap_or_else(|| self.plain.lookup_ns(self.lookups)),
            self.calibration.ns_per_lookup,
        )
    }

    /// Returns how many times faster the lookup loop over partitioned stores is than the plain
    /// loop, median against median (see [`MatchTime::median_lookup_ns`]); `None` where either
    /// is missing.
    pub fn median_lookup_speedup(&self) -> Option<f64> {
        self.plain
            .median_lookup_ns
            .zip(self.partitioned.median_lookup_ns)
            .map(|(plain, partitioned)| plain / partitioned.max(f64::MIN_POSITIVE))
    }

    /// Returns how many times faster matching partitioned stores is end to end, drawing the
    /// stores and confirming included, than the plain loop (wall time).
    pub fn wall_speedup(&self) -> f64 {
        self.plain.wall.as_secs_f64() / self.partitioned.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Everything one run measured, and the figures derived from it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvinceReport {
    /// The configuration that ran.
    pub config: ProvinceConfig,
    /// Rayon threads that matched.
    pub threads: usize,
    /// GAEN keys published (cases × keys per case).
    pub keys: usize,
    /// Tags the keys expanded into: the day's identifiers.
    pub tags: usize,
    /// The batch's `element_count`: distinct filter keys, decoys included.
    pub element_count: u32,
    /// Size of the signed batch file.
    pub batch_bytes: usize,
    /// Fingerprint bits per element of the batch.
    pub bits_per_element: f64,
    /// Distinct digests in the confirm store.
    pub confirm_digests: usize,
    /// Time to generate the keys, expand them, build, sign, parse and verify the batch, and
    /// fill the confirm store.
    pub build_time: Duration,
    /// Top bits of a hash that name its partition: `2^partition_bits` partitions.
    pub partition_bits: u32,
    /// Time to match and confirm every phone from partitioned stores, and where it went.
    pub match_time: MatchTime,
    /// The plain loop's run over a sample of the phones, if one was asked for.
    pub baseline: Option<BaselineReport>,
    /// Filter lookups: phones × observations × slot candidates.
    pub lookups: u64,
    /// Phones with planted exposures.
    pub planted_phones: usize,
    /// Exposures planted.
    pub planted_exposures: usize,
    /// Planted exposures confirmed.
    pub planted_found: u64,
    /// Filter hits, true and false.
    pub filter_hits: u64,
    /// Filter hits on a planted exposure's real tag.
    pub true_filter_hits: u64,
    /// Most filter hits of one phone.
    pub max_fetches_of_a_phone: u64,
    /// Digests in the buckets fetched, summed over fetches.
    pub digests_fetched: u64,
    /// Confirmed hits that are not planted exposures; must be zero.
    pub false_alerts: u64,
}

impl ProvinceReport {
    /// Assembles the report of a run, without a baseline.
    pub(super) fn new(
        config: &ProvinceConfig,
        day: &ProvinceDay,
        header: &BatchHeader,
        planted: &[PlantedExposure],
        tally: &MatchTally,
        build_time: Duration,
        match_time: MatchTime,
    ) -> ProvinceReport {
        let mut planted_phones: Vec<usize> =
            planted.iter().map(|exposure| exposure.phone).collect();
        planted_phones.dedup();
        ProvinceReport {
            config: config.clone(),
            threads: rayon::current_num_threads(),
            keys: day.keys.len(),
            tags: day.tags,
            element_count: header.element_count,
            batch_bytes: day.batch.bytes.len(),
            bits_per_element: header.bits_per_element(),
            confirm_digests: day.confirm_store.len(),
            build_time,
            partition_bits: 0,
            match_time,
            baseline: None,
            lookups: tally.lookups,
            planted_phones: planted_phones.len(),
            planted_exposures: planted.len(),
            planted_found: tally.planted_found,
            filter_hits: tally.filter_hits,
            true_filter_hits: tally.true_filter_hits,
            max_fetches_of_a_phone: tally.max_fetches_of_a_phone,
            digests_fetched: tally.digests_fetched,
            false_alerts: tally.false_alerts,
        }
    }

    /// Returns whether every planted exposure was found, no false alert was raised, and the
    /// plain loop's baseline, if any, found what the partitioned stores found.
    pub fn passed(&self) -> bool {
        self.planted_found == self.planted_exposures as u64
            && self.false_alerts == 0
            && self
                .baseline
                .as_ref()
                .is_none_or(|baseline| baseline.agrees)
    }

    /// Returns filter lookups per second of matching (confirmations included in the time).
    pub fn lookups_per_second(&self) -> f64 {
        self.lookups as f64 / self.match_time.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Returns filter hits that are not a planted exposure's real tag.
    pub fn false_filter_hits(&self) -> u64 {
        self.filter_hits - self.true_filter_hits
    }

    /// Returns the false filter hits theory expects: every lookup of a key not in the filter
    /// hits with probability 2^-w. For a binary fuse filter this holds whatever the element
    /// count (a lookup XORs three fingerprints the build fixed with one it has never seen).
    pub fn expected_false_filter_hits(&self) -> f64 {
        let misses = self.lookups - self.true_filter_hits;
        misses as f64 * (-f64::from(self.config.width.bits())).exp2()
    }

    /// Returns false filter hits over their expectation, or `None` when none are expected.
    pub fn false_hit_ratio(&self) -> Option<f64> {
        let expected = self.expected_false_filter_hits();
        (expected > 0.0).then(|| self.false_filter_hits() as f64 / expected)
    }

    /// Returns whether false filter hits are within 20 % of theory, or `None` when fewer than
    /// 100 are expected, too few for the comparison to mean anything.
    pub fn false_hits_within_20_percent(&self) -> Option<bool> {
        if self.expected_false_filter_hits() < MIN_EXPECTED_FOR_COMPARISON {
            return None;
        }
        self.false_hit_ratio()
            .map(|ratio| (ratio - 1.0).abs() <= 0.2)
    }

    /// Returns confirm buckets fetched: one per filter hit.
    pub fn confirm_fetches(&self) -> u64 {
        self.filter_hits
    }

    /// Returns confirm fetches per phone in this run (one day's observations against one
    /// day's batch), on average.
    pub fn confirm_fetches_per_phone(&self) -> f64 {
        self.confirm_fetches() as f64 / self.config.phones as f64
    }

    /// Returns the mean number of digests in a fetched bucket.
    pub fn mean_bucket_digests(&self) -> f64 {
        match self.confirm_fetches() {
            0 => 0.0,
            fetches => self.digests_fetched as f64 / fetches as f64,
        }
    }

    /// Returns the lookups of one phone's real day under the traffic model
    /// ([`PhoneDayLookups`]), with this run's observations and slot candidates: every batch
    /// of the day (24 hourly ones) checked once against the whole retention window's tags.
    pub fn phone_day(&self) -> PhoneDayLookups {
        PhoneDayLookups {
            observations_per_day: self.config.observations_per_phone as u64,
            slot_candidates: self.config.candidates_per_observation() as u64,
            ..PEAK_PHONE_DAY
        }
    }

    /// Returns the measured false-hit rate: false filter hits per lookup of a key not in the
    /// filter.
    pub fn false_hit_rate(&self) -> f64 {
        match self.lookups - self.true_filter_hits {
            0 => 0.0,
            misses => self.false_filter_hits() as f64 / misses as f64,
        }
    }

    /// Returns the confirm fetches of one phone's real day: the traffic model's lookups
    /// ([`ProvinceReport::phone_day`]) at the measured false-hit rate.
    pub fn confirm_fetches_per_phone_day(&self) -> f64 {
        self.phone_day()
            .confirm_fetches_per_day(self.false_hit_rate())
    }

    /// Returns a phone's confirm traffic per day under the traffic model: per fetch, a bucket
    /// of the measured mean size and [`CONFIRM_FETCH_OVERHEAD_BYTES`].
    pub fn confirm_bytes_per_phone(&self) -> f64 {
        self.confirm_fetches_per_phone_day()
            * (self.mean_bucket_digests() * CONFIRM_DIGEST_BYTES as f64
                + CONFIRM_FETCH_OVERHEAD_BYTES as f64)
    }

    /// Returns the bytes a phone downloads per day: the day's batch and its confirm traffic.
    pub fn bytes_per_phone_per_day(&self) -> f64 {
        self.batch_bytes as f64 + self.confirm_bytes_per_phone()
    }

    /// Returns the size of the same day's keys as a GAEN TEK export.
    pub fn gaen_export_bytes(&self) -> u64 {
        self.keys as u64 * GAEN_EXPORT_BYTES_PER_KEY
    }

    /// Returns the size of the same day's identifiers in DP-3T's unlinkable Cuckoo filter.
    pub fn dp3t_cuckoo_bytes(&self) -> u64 {
        (self.tags as u64 * DP3T_CUCKOO_BITS_PER_ENTRY).div_ceil(8)
    }
}

//! The province matching benchmark (DESIGN §9): Thái Bình's peak day end to end on one machine.
//!
//! [`run_province_benchmark`] builds the day's signed batch from the uploading cases' GAEN keys
//! with the publisher's own path ([`crate::expand_keys`], [`crate::build_batch`]), parses and
//! verifies it as a phone does, plants known exposures in a seeded sample of phones, matches
//! every phone's day of observations against the batch with rayon, confirms every filter hit
//! against a local copy of the confirm store, and returns a [`ProvinceReport`]. The
//! `exposure-matcher bench-province` subcommand is a thin wrapper around it.
//!
//! Phones are never held in memory: each phone's stored tags are drawn on the fly from the seed
//! (see [`ObservationTags`] for what is drawn).
//!
//! Phones keep their stores partitioned by the top bits of their tags' hashes (issue 12;
//! [`crate::batch::FuseView::partition_bits`]), and the benchmark matches them a group of 32 at
//! a time, partition by partition, so that each L2-sized slice of the filter serves the whole
//! group. The first `baseline_phones` are also matched one by one with the plain loop, over the
//! same stored tags, in the same run; both must find the same hits. Right before the baseline,
//! criterion's plain loop over one phone's day ([`crate::matching::BenchmarkPhoneDay`]) runs
//! in-process on the same threads: a ratio against a baseline whose lookups cost more than a
//! quarter more or less than that loop's is reported as not valid ([`ratio_validity`]).

mod calibration;
mod cpu;
mod day;
mod phones;
mod report;
mod traffic;

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

pub use report::{
    BaselineReport, CONFIRM_DIGEST_BYTES, CONFIRM_FETCH_OVERHEAD_BYTES, DP3T_CUCKOO_BITS_PER_ENTRY,
    GAEN_EXPORT_BYTES_PER_KEY, MatchTime, ProvinceReport,
};

pub use calibration::{
    MAX_BASELINE_DEVIATION, PlainLoopCalibration, RatioValidity, ratio_validity,
};
pub use phones::PHONES_PER_GROUP;
pub use traffic::{PEAK_PHONE_DAY, PhoneDayLookups};

use crate::batch::{BatchError, BatchFile, FingerprintWidth, PARTITION_BYTES, murmur64_finalizer};
use crate::matching::{BenchmarkPhoneDay, DEFAULT_SLOT_TOLERANCE};
use crate::scheme::SchemeError;
use day::ProvinceDay;
use phones::{ProvincePhones, Schedule, plant_exposures};

/// Phones in Thái Bình at 40 % adoption: 1,878,540 people × 0.4 (DESIGN §9).
pub const PEAK_PHONES: usize = 751_416;

/// Observations a phone stores in a day (DESIGN §9).
pub const PEAK_OBSERVATIONS_PER_PHONE: usize = 10_000;

/// Days a phone keeps its observations and the server its keys: the retention default
/// (DESIGN §6).
pub const DEFAULT_RETENTION_DAYS: u64 = 14;

/// Cases uploading on the peak day: 40 % of 3,074 new cases (DESIGN §9).
pub const PEAK_UPLOADING_CASES: usize = 1_230;

/// GAEN keys per upload: one per day of the last 14 days (DESIGN §9).
pub const KEYS_PER_CASE: usize = 14;

/// Default bits of a confirm bucket prefix, the deployment's `confirm_prefix_bits` (DESIGN §5).
pub const DEFAULT_CONFIRM_PREFIX_BITS: u32 = 16;

/// Largest slot tolerance the generator supports (63 tags per observation).
pub const MAX_TOLERANCE: u32 = 31;

/// Phones matched with the plain loop as well, by default: an eighth of the peak day's.
pub const DEFAULT_BASELINE_PHONES: usize = PEAK_PHONES / 8;

/// How the tags a phone stored for its observations are produced.
///
/// A phone computes an observation's tags once, when it stores the observation (DESIGN §3), so
/// its daily match is lookups and confirmations only; that is what the ≤ 60 s target of
/// DESIGN §9 measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservationTags {
    /// Each observation's tags, as the phone stored them, are drawn as 32 uniform random bytes
    /// (which a SHA-256 tag of an identifier never published is indistinguishable from); only
    /// the planted exposures' tags are computed. Times the daily match alone.
    Stored,
    /// Each observation is a random 16-byte GAEN identifier heard at a random second of the
    /// batch's window, and its slot tags are computed with SHA-256 during the run, as the phone
    /// does when storing it. Times one day of tag computation on top of the match.
    Computed,
}

impl ObservationTags {
    /// Returns the lowercase name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ObservationTags::Stored => "stored",
            ObservationTags::Computed => "computed",
        }
    }
}

/// What to benchmark; [`ProvinceConfig::default`] is DESIGN §9's peak day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvinceConfig {
    /// Phones matched.
    pub phones: usize,
    /// Observations each phone stored in the day.
    pub observations_per_phone: usize,
    /// Slots on each side of an observation's own slot that the phone also tagged.
    pub tolerance: u32,
    /// Cases whose keys the day's batch publishes.
    pub cases: usize,
    /// GAEN keys each case uploads, one per day back from the peak day.
    pub keys_per_case: usize,
    /// Fingerprint width of the batch's filter.
    pub width: FingerprintWidth,
    /// Prefix bits of a confirm bucket.
    pub confirm_prefix_bits: u32,
    /// One phone in this many gets planted exposures (at least one phone does).
    pub plant_one_in: usize,
    /// Seed of every random choice but the signing key.
    pub seed: u64,
    /// Rayon threads; `None` uses the global pool (one thread per core).
    pub threads: Option<usize>,
    /// How the phones' observation tags are produced.
    pub observation_tags: ObservationTags,
    /// Phones (the first ones) also matched with the plain loop, for the baseline; 0 for none.
    pub baseline_phones: usize,
}

impl Default for ProvinceConfig {
    fn default() -> Self {
        ProvinceConfig {
            phones: PEAK_PHONES,
            observations_per_phone: PEAK_OBSERVATIONS_PER_PHONE,
            tolerance: DEFAULT_SLOT_TOLERANCE,
            cases: PEAK_UPLOADING_CASES,
            keys_per_case: KEYS_PER_CASE,
            width: FingerprintWidth::Bits16,
            confirm_prefix_bits: DEFAULT_CONFIRM_PREFIX_BITS,
            plant_one_in: 1_000,
            seed: 1,
            threads: None,
            observation_tags: ObservationTags::Stored,
            baseline_phones: DEFAULT_BASELINE_PHONES,
        }
    }
}

impl ProvinceConfig {
    /// Returns the tags a phone stores per observation: `2 * tolerance + 1`.
    pub fn candidates_per_observation(&self) -> usize {
        2 * self.tolerance as usize + 1
    }

    /// Checks every field; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ProvinceError> {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(ProvinceError::InvalidConfig { field, reason })
        };
        if self.phones == 0 {
            return invalid("phones", "must be at least 1");
        }
        if self.observations_per_phone == 0 {
            return invalid("observations", "must be at least 1");
        }
        if self.tolerance > MAX_TOLERANCE {
            return invalid("tolerance", "must be at most 31");
        }
        if self.cases == 0 {
            return invalid("cases", "must be at least 1");
        }
        if !(1..=30).contains(&self.keys_per_case) {
            return invalid(
                "keys-per-case",
                "must be 1..=30, the most keys of one upload",
            );
        }
        if self.confirm_prefix_bits > 32 {
            return invalid("confirm-prefix-bits", "must be at most 32");
        }
        if self.plant_one_in == 0 {
            return invalid("plant-one-in", "must be at least 1");
        }
        if self.threads == Some(0) {
            return invalid("threads", "must be at least 1");
        }
        Ok(())
    }
}

/// Why the benchmark could not run. A run that finds wrong answers is not an error: see
/// [`ProvinceReport::passed`].
#[derive(Debug, thiserror::Error)]
pub enum ProvinceError {
    /// A configuration field is out of range.
    #[error("{field} {reason}")]
    InvalidConfig {
        /// The field at fault, named as on the command line.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The calibration's phone day could not be stored.
    #[error("storing the calibration's observations: {0}")]
    Observation(#[from] crate::matching::ObservationError),
    /// A generated key did not expand.
    #[error("expanding the cases' keys: {0}")]
    Scheme(#[from] SchemeError),
    /// The batch could not be built, parsed back or verified.
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    /// The rayon thread pool could not be started.
    #[error("starting the thread pool: {0}")]
    ThreadPool(String),
}

/// Where a run is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvinceProgress {
    /// The day's batch and confirm store are being built.
    BuildingBatch,
    /// One way of matching starts, on the calling thread: everything until the next
    /// [`ProvinceProgress::RunFinished`] is that run's work.
    RunStarted(MatchRun),
    /// That way of matching has finished.
    RunFinished(MatchRun),
    /// Phones are being matched.
    Matching {
        /// Phones finished so far.
        phones_done: usize,
        /// Phones in the run.
        phones_total: usize,
    },
}

/// The runs of one benchmark, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchRun {
    /// The baseline's phones, with the plain loop.
    PlainBaseline,
    /// The baseline's phones again, from partitioned stores.
    PartitionedBaseline,
    /// The other phones, from partitioned stores (or with the plain loop, for computed tags).
    Rest,
}

impl MatchRun {
    /// Returns a short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            MatchRun::PlainBaseline => "plain baseline",
            MatchRun::PartitionedBaseline => "partitioned baseline",
            MatchRun::Rest => "the rest",
        }
    }

    /// Returns a name for machine-readable reports.
    pub fn key(self) -> &'static str {
        match self {
            MatchRun::PlainBaseline => "plain_baseline",
            MatchRun::PartitionedBaseline => "partitioned_baseline",
            MatchRun::Rest => "rest",
        }
    }
}

/// Runs the benchmark: builds the day, matches every phone, and returns what it measured.
/// `progress` is called from worker threads now and then; it must be cheap.
pub fn run_province_benchmark(
    config: &ProvinceConfig,
    progress: &(dyn Fn(ProvinceProgress) + Sync),
) -> Result<ProvinceReport, ProvinceError> {
    config.validate()?;
    match config.threads {
        None => run_in_current_pool(config, progress),
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|error| ProvinceError::ThreadPool(error.to_string()))?
            .install(|| run_in_current_pool(config, progress)),
    }
}

fn run_in_current_pool(
    config: &ProvinceConfig,
    progress: &(dyn Fn(ProvinceProgress) + Sync),
) -> Result<ProvinceReport, ProvinceError> {
    progress(ProvinceProgress::BuildingBatch);
    let build_started = Instant::now();
    let day = ProvinceDay::build(config)?;
    let batch = BatchFile::parse(&day.batch.bytes)?;
    batch.verify(&day.public_key_der)?;
    let build_time = build_started.elapsed();

    let planted = plant_exposures(config, &day.keys);
    let phones = ProvincePhones {
        partition_bits: batch.filter().partition_bits(PARTITION_BYTES),
        filter: batch.filter(),
        confirm_store: &day.confirm_store,
        planted: &planted,
        window_start: day.window_start,
        window_seconds: day.window_end - day.window_start,
    };
    // Computed tags are matched with the plain loop only, so they have no baseline.
    let baseline_phones = match config.observation_tags {
        ObservationTags::Stored => config.baseline_phones.min(config.phones),
        ObservationTags::Computed => 0,
    };
    let total = config.phones + baseline_phones;
    let done = AtomicUsize::new(0);
    let run = |range: std::ops::Range<usize>, schedule, which: MatchRun| {
        progress(ProvinceProgress::RunStarted(which));
        let started = (Instant::now(), cpu::process_cpu_time());
        let (tally, times) = phones.match_all(config, range, schedule, &done, total, progress);
        let cpu_time = cpu::process_cpu_time()
            .zip(started.1)
            .map(|(end, start)| end.saturating_sub(start));
        let mut unit_ns = times.unit_ns;
        unit_ns.sort_by(f64::total_cmp);
        let time = MatchTime {
            wall: started.0.elapsed(),
            cpu: cpu_time,
            lookups: times.lookups,
            median_lookup_ns: (!unit_ns.is_empty()).then(|| calibration::median(&unit_ns)),
        };
        progress(ProvinceProgress::RunFinished(which));
        (tally, time)
    };
    // Criterion's plain loop over one phone's day, on every thread at once as the baseline
    // runs; then the baseline with the plain loop, partitioned stores on the same phones, and
    // the rest.
    let calibration_day = match baseline_phones {
        0 => None,
        _ => Some(BenchmarkPhoneDay::generate(
            &day.keys,
            config.observations_per_phone,
            config.tolerance,
            sub_seed(config.seed, "calibration"),
        )?),
    };
    let baseline = calibration_day.map(|calibration_day| {
        let calibration = calibration::calibrate_plain_loop(&calibration_day, &batch);
        drop(calibration_day);
        let plain = run(0..baseline_phones, Schedule::Plain, MatchRun::PlainBaseline);
        let partitioned = run(
            0..baseline_phones,
            Schedule::Partitioned,
            MatchRun::PartitionedBaseline,
        );
        (calibration, plain, partitioned)
    });
    let rest = run(
        baseline_phones..config.phones,
        Schedule::Partitioned,
        MatchRun::Rest,
    );
    let (tally, match_time) = match &baseline {
        Some((_, _, sample)) => (sample.0.merge(rest.0), sample.1.plus(&rest.1)),
        None => rest,
    };
    let baseline = baseline.map(|(calibration, plain, partitioned)| BaselineReport {
        phones: baseline_phones,
        calibration,
        lookups: plain.0.lookups,
        plain: plain.1,
        partitioned: partitioned.1,
        agrees: plain.0 == partitioned.0,
    });

    let mut report = ProvinceReport::new(
        config,
        &day,
        batch.header(),
        &planted,
        &tally,
        build_time,
        match_time,
    );
    report.baseline = baseline;
    report.partition_bits = phones.partition_bits;
    Ok(report)
}

/// Returns a seed for one use of the run's randomness, independent of the others.
fn sub_seed(seed: u64, purpose: &str) -> u64 {
    // FNV-1a of the purpose, so each use draws from its own stream.
    let purpose_hash = purpose
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    murmur64_finalizer(seed ^ purpose_hash)
}

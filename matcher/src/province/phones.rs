//! The province's phones: each phone's observations generated on the fly from the seed, known
//! exposures planted in a seeded sample of phones, and the rayon loop that matches every phone
//! against the day's batch and confirms every filter hit against the confirm store.
//!
//! A phone's stored tags are a pure function of `(seed, phone, observation, slot offset)`, so
//! no phone is ever held in memory: each rayon task generates a chunk of one phone's filter
//! keys into a reused buffer, runs the blocked lookup over it, and regenerates the full tag of
//! the rare key that hits.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::day::ConfirmStore;
use super::order::HashOrder;
use super::{ObservationTags, ProvinceConfig, ProvinceProgress, sub_seed};
use crate::batch::{FuseView, murmur64_finalizer};
use crate::matching::{candidate_slots, confirm};
use crate::scheme::{GAEN_INTERVAL_SECONDS, GaenKey, Scheme, rolling_proximity_identifier};
use crate::tag::Tag;

/// Observations whose filter keys are generated and looked up together: 3,072 keys (24 KiB)
/// at the default tolerance, which stay in the L1 cache between generation and lookup.
const OBSERVATIONS_PER_CHUNK: usize = 1_024;

/// Phones matched between two progress reports.
const PROGRESS_EVERY_PHONES: usize = 4_096;

/// Most exposures planted in one phone.
const MAX_EXPOSURES_PER_PHONE: usize = 3;

/// wyrand's state increment (wyhash's first secret).
const WYRAND_INCREMENT: u64 = 0xa076_1d64_78bd_642f;

/// wyrand's output mask (wyhash's second secret).
const WYRAND_XOR: u64 = 0xe703_7ed1_a0b4_28db;

/// A known exposure: a phone heard one of a case's RPIs while the case broadcast it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlantedExposure {
    /// The phone that heard it.
    pub phone: usize,
    /// The index of the observation it replaces in that phone's day.
    pub observation: usize,
    /// The RPI heard.
    pub rpi: [u8; 16],
    /// Start of the slot the case broadcast the RPI in.
    pub broadcast_slot: u64,
    /// When the phone heard it, by its own clock: up to `tolerance` slots off.
    pub observed_at: u64,
}

/// Picks `max(1, phones / plant_one_in)` phones with a seeded RNG and plants 1 to 3 exposures
/// in each, at distinct observations. Returns them sorted by phone, then observation.
pub(super) fn plant_exposures(config: &ProvinceConfig, keys: &[GaenKey]) -> Vec<PlantedExposure> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(config.seed, "planted exposures"));
    let phone_count = (config.phones / config.plant_one_in).clamp(1, config.phones);
    let slot_seconds = GAEN_INTERVAL_SECONDS;
    let mut planted = Vec::new();
    for phone in sample(&mut rng, config.phones, phone_count) {
        let exposures = rng
            .gen_range(1..=MAX_EXPOSURES_PER_PHONE)
            .min(config.observations_per_phone);
        for observation in sample(&mut rng, config.observations_per_phone, exposures) {
            let key = &keys[rng.gen_range(0..keys.len())];
            let interval = key.rolling_start_interval_number + rng.gen_range(0..key.rolling_period);
            let broadcast_slot = u64::from(interval) * slot_seconds;
            // The phone's clock may be off by up to `tolerance` slots either way.
            let reach = u64::from(config.tolerance) * slot_seconds;
            let observed_at = broadcast_slot - reach + rng.gen_range(0..2 * reach + slot_seconds);
            planted.push(PlantedExposure {
                phone,
                observation,
                rpi: rolling_proximity_identifier(&key.rpik(), interval),
                broadcast_slot,
                observed_at,
            });
        }
    }
    planted.sort_unstable_by_key(|exposure| (exposure.phone, exposure.observation));
    planted
}

/// What matching the phones counted; per rayon task, then merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct MatchTally {
    /// Filter lookups.
    pub lookups: u64,
    /// Filter hits, true and false.
    pub filter_hits: u64,
    /// Filter hits on the tag of a planted exposure's broadcast slot (the only real tags a
    /// phone holds).
    pub true_filter_hits: u64,
    /// Digests in the confirm buckets fetched, summed over fetches.
    pub digests_fetched: u64,
    /// Most filter hits (so confirm fetches) of one phone.
    pub max_fetches_of_a_phone: u64,
    /// Planted exposures confirmed.
    pub planted_found: u64,
    /// Confirmed hits that are not a planted exposure.
    pub false_alerts: u64,
}

impl MatchTally {
    /// Returns the counts of both tallies together.
    pub fn merge(self, other: MatchTally) -> MatchTally {
        MatchTally {
            lookups: self.lookups + other.lookups,
            filter_hits: self.filter_hits + other.filter_hits,
            true_filter_hits: self.true_filter_hits + other.true_filter_hits,
            digests_fetched: self.digests_fetched + other.digests_fetched,
            max_fetches_of_a_phone: self
                .max_fetches_of_a_phone
                .max(other.max_fetches_of_a_phone),
            planted_found: self.planted_found + other.planted_found,
            false_alerts: self.false_alerts + other.false_alerts,
        }
    }
}

/// Buffers one rayon task reuses from chunk to chunk and phone to phone.
#[derive(Default)]
struct Scratch {
    filter_keys: Vec<u64>,
    hashes: Vec<u64>,
    order: HashOrder,
    hits: Vec<usize>,
}

/// Time spent in parts of the match, summed over threads.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct MatchTimes {
    /// In the lookup loop itself: hashing and probing for the plain loop, probing for ordered
    /// stores.
    pub lookups: Duration,
    /// Hashing and ordering the ordered stores' tags: what the phone does when it stores them.
    pub ordering: Duration,
}

impl MatchTimes {
    fn merge(self, other: MatchTimes) -> MatchTimes {
        MatchTimes {
            lookups: self.lookups + other.lookups,
            ordering: self.ordering + other.ordering,
        }
    }
}

/// How the phones' lookups are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Schedule {
    /// The plain loop: each chunk's keys hashed and probed one after the other with
    /// [`FuseView::for_each_hit`], the loop before issue 12.
    Plain,
    /// Ordered stores: each phone's tags hashed and put in lookup order ([`HashOrder`]), then
    /// probed in that order with [`FuseView::for_each_hit_of_hashes`].
    Ordered,
}

/// Everything the phones are matched against, and how their observations are generated.
pub(super) struct ProvincePhones<'a> {
    /// The day's filter, parsed from the signed batch file.
    pub filter: &'a FuseView<'a>,
    /// The confirm store that answers bucket fetches.
    pub confirm_store: &'a ConfirmStore,
    /// Planted exposures, sorted by phone then observation.
    pub planted: &'a [PlantedExposure],
    /// Start (Unix seconds) of the span random observations fall in.
    pub window_start: u64,
    /// Length in seconds of that span.
    pub window_seconds: u64,
}

impl ProvincePhones<'_> {
    /// Matches the phones `phones` of `config` in parallel with `schedule`, calling `progress`
    /// now and then from a worker thread; `done` counts phones matched across calls, out of
    /// `total`.
    pub fn match_all(
        &self,
        config: &ProvinceConfig,
        phones: Range<usize>,
        schedule: Schedule,
        done: &AtomicUsize,
        total: usize,
        progress: &(dyn Fn(ProvinceProgress) + Sync),
    ) -> (MatchTally, MatchTimes) {
        (phones.start..phones.end)
            .into_par_iter()
            .fold(
                || {
                    (
                        Scratch::default(),
                        MatchTally::default(),
                        MatchTimes::default(),
                    )
                },
                |(mut scratch, mut tally, mut times), phone| {
                    match schedule {
                        Schedule::Plain => {
                            self.match_phone(config, phone, &mut scratch, &mut tally, &mut times);
                        }
                        Schedule::Ordered => self.match_ordered_phone(
                            config,
                            phone,
                            &mut scratch,
                            &mut tally,
                            &mut times,
                        ),
                    }
                    let phones_done = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if phones_done.is_multiple_of(PROGRESS_EVERY_PHONES) || phones_done == total {
                        progress(ProvinceProgress::Matching {
                            phones_done,
                            phones_total: total,
                        });
                    }
                    (scratch, tally, times)
                },
            )
            .map(|(_, tally, times)| (tally, times))
            .reduce(
                || (MatchTally::default(), MatchTimes::default()),
                |(tally_a, times_a), (tally_b, times_b)| {
                    (tally_a.merge(tally_b), times_a.merge(times_b))
                },
            )
    }

    /// Looks up every stored tag of one phone, chunk by chunk, with the plain loop, and
    /// confirms each hit.
    fn match_phone(
        &self,
        config: &ProvinceConfig,
        phone: usize,
        scratch: &mut Scratch,
        tally: &mut MatchTally,
        times: &mut MatchTimes,
    ) {
        let generator = PhoneGenerator::new(config, phone, self);
        let Scratch {
            filter_keys, hits, ..
        } = scratch;
        let mut phone_hits = 0u64;
        for chunk_start in (0..config.observations_per_phone).step_by(OBSERVATIONS_PER_CHUNK) {
            let chunk_end =
                (chunk_start + OBSERVATIONS_PER_CHUNK).min(config.observations_per_phone);
            filter_keys.clear();
            generator.push_filter_keys(chunk_start..chunk_end, filter_keys);
            tally.lookups += filter_keys.len() as u64;
            hits.clear();
            let started = Instant::now();
            self.filter
                .for_each_hit(filter_keys, |index| hits.push(index));
            times.lookups += started.elapsed();
            for &index in hits.iter() {
                let observation = chunk_start + index / generator.candidates;
                let offset = index % generator.candidates;
                self.confirm_hit(&generator, observation, offset, tally);
            }
            phone_hits += hits.len() as u64;
        }
        tally.max_fetches_of_a_phone = tally.max_fetches_of_a_phone.max(phone_hits);
    }

    /// Puts one phone's stored tags in lookup order, looks them up in that order, and confirms
    /// each hit.
    fn match_ordered_phone(
        &self,
        config: &ProvinceConfig,
        phone: usize,
        scratch: &mut Scratch,
        tally: &mut MatchTally,
        times: &mut MatchTimes,
    ) {
        let generator = PhoneGenerator::new(config, phone, self);
        let Scratch {
            filter_keys,
            hashes,
            order,
            hits,
        } = scratch;
        filter_keys.clear();
        generator.push_filter_keys(0..config.observations_per_phone, filter_keys);
        tally.lookups += filter_keys.len() as u64;
        let started = Instant::now();
        hashes.clear();
        hashes.extend(filter_keys.iter().map(|&key| self.filter.hash(key)));
        order.order(hashes);
        let ordered = Instant::now();
        hits.clear();
        self.filter
            .for_each_hit_of_hashes(&order.hashes, |position| {
                hits.push(order.indices[position] as usize);
            });
        times.lookups += ordered.elapsed();
        times.ordering += ordered - started;
        // Confirm in store order, as the plain loop does.
        hits.sort_unstable();
        for &index in hits.iter() {
            let observation = index / generator.candidates;
            let offset = index % generator.candidates;
            self.confirm_hit(&generator, observation, offset, tally);
        }
        tally.max_fetches_of_a_phone = tally.max_fetches_of_a_phone.max(hits.len() as u64);
    }

    /// Fetches the hit's confirm bucket, confirms exactly, and counts the outcome.
    fn confirm_hit(
        &self,
        generator: &PhoneGenerator<'_>,
        observation: usize,
        offset: usize,
        tally: &mut MatchTally,
    ) {
        let (tag, is_planted_exposure) = generator.tag(observation, offset);
        let digest = tag.confirm_digest();
        let bucket = self.confirm_store.bucket_of(&digest);
        tally.filter_hits += 1;
        tally.true_filter_hits += u64::from(is_planted_exposure);
        tally.digests_fetched += bucket.len() as u64;
        if confirm(digest, bucket) {
            if is_planted_exposure {
                tally.planted_found += 1;
            } else {
                tally.false_alerts += 1;
            }
        }
    }
}

/// One phone's day of stored tags, as a pure function of the seed and the phone.
struct PhoneGenerator<'a> {
    /// Per-phone base of the counter-based generator.
    base: u64,
    /// Tags per observation: `2 * tolerance + 1` slot candidates.
    candidates: usize,
    tolerance: u32,
    mode: ObservationTags,
    /// This phone's planted exposures, sorted by observation.
    planted: &'a [PlantedExposure],
    window_start: u64,
    window_seconds: u64,
}

impl<'a> PhoneGenerator<'a> {
    fn new(config: &ProvinceConfig, phone: usize, phones: &ProvincePhones<'a>) -> Self {
        let first = phones
            .planted
            .partition_point(|exposure| exposure.phone < phone);
        let count = phones.planted[first..].partition_point(|exposure| exposure.phone == phone);
        PhoneGenerator {
            base: murmur64_finalizer(
                sub_seed(config.seed, "phones") ^ murmur64_finalizer(phone as u64),
            ),
            candidates: config.candidates_per_observation(),
            tolerance: config.tolerance,
            mode: config.observation_tags,
            planted: &phones.planted[first..first + count],
            window_start: phones.window_start,
            window_seconds: phones.window_seconds,
        }
    }

    /// Returns word `word` (0..4) of the random value behind `(observation, lane)`, `lane` < 64.
    ///
    /// wyrand (the generator of wyhash, Go's runtime and the `fastrand` crate) at a counter: its
    /// state is a Weyl sequence, so the state of any counter is one multiply away, and its output
    /// is one 64 × 64 → 128-bit multiply. It costs 3 % less CPU per lookup than splitmix64 here,
    /// since a key is generated for every lookup.
    #[inline]
    fn word(&self, observation: usize, lane: usize, word: usize) -> u64 {
        debug_assert!(lane < 64 && word < 4);
        let counter = ((observation as u64) << 8) | ((lane as u64) << 2) | word as u64;
        let state = self
            .base
            .wrapping_add(counter.wrapping_mul(WYRAND_INCREMENT));
        let product = u128::from(state) * u128::from(state ^ WYRAND_XOR);
        (product >> 64) as u64 ^ product as u64
    }

    /// Appends the filter keys of the observations in `range`, `candidates` per observation,
    /// earliest slot first.
    fn push_filter_keys(&self, range: Range<usize>, filter_keys: &mut Vec<u64>) {
        let chunk_start = range.start;
        let pushed_from = filter_keys.len();
        match self.mode {
            ObservationTags::Stored => {
                for observation in range.clone() {
                    for offset in 0..self.candidates {
                        filter_keys.push(self.word(observation, offset, 0));
                    }
                }
            }
            ObservationTags::Computed => {
                for observation in range.clone() {
                    let (identifier, observed_at) = self.random_observation(observation);
                    let before = filter_keys.len();
                    filter_keys.extend(
                        candidate_slots(observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
                            .map(|slot| Tag::compute(Scheme::Gaen, slot, &identifier).filter_key()),
                    );
                    debug_assert_eq!(filter_keys.len() - before, self.candidates);
                }
            }
        }
        // Planted observations replace generated ones: their tags are real.
        for exposure in self
            .planted
            .iter()
            .filter(|e| range.contains(&e.observation))
        {
            let first = pushed_from + (exposure.observation - chunk_start) * self.candidates;
            for (offset, slot) in self.planted_slots(exposure).enumerate() {
                filter_keys[first + offset] =
                    Tag::compute(Scheme::Gaen, slot, &exposure.rpi).filter_key();
            }
        }
    }

    /// Returns the full tag behind a filter key, and whether it is a planted exposure's tag of
    /// the slot the case broadcast in (a real element of the batch).
    fn tag(&self, observation: usize, offset: usize) -> (Tag, bool) {
        if let Ok(index) = self
            .planted
            .binary_search_by_key(&observation, |exposure| exposure.observation)
        {
            let exposure = &self.planted[index];
            let slot = self.planted_slots(exposure).nth(offset).unwrap_or_default();
            let tag = Tag::compute(Scheme::Gaen, slot, &exposure.rpi);
            return (tag, slot == exposure.broadcast_slot);
        }
        let tag = match self.mode {
            ObservationTags::Stored => {
                let mut bytes = [0u8; 32];
                for (word, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&self.word(observation, offset, word).to_le_bytes());
                }
                Tag(bytes)
            }
            ObservationTags::Computed => {
                let (identifier, observed_at) = self.random_observation(observation);
                let slot = candidate_slots(observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
                    .nth(offset)
                    .unwrap_or_default();
                Tag::compute(Scheme::Gaen, slot, &identifier)
            }
        };
        (tag, false)
    }

    /// Returns a random 16-byte GAEN identifier heard at a random second of the window.
    fn random_observation(&self, observation: usize) -> ([u8; 16], u64) {
        let mut identifier = [0u8; 16];
        identifier[..8].copy_from_slice(&self.word(observation, 0, 0).to_le_bytes());
        identifier[8..].copy_from_slice(&self.word(observation, 0, 1).to_le_bytes());
        let observed_at =
            self.window_start + self.word(observation, 0, 2) % self.window_seconds.max(1);
        (identifier, observed_at)
    }

    /// Returns the slots the phone tagged for a planted observation.
    fn planted_slots(&self, exposure: &PlantedExposure) -> impl Iterator<Item = u64> {
        candidate_slots(exposure.observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
    }
}

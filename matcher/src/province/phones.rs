//! The province's phones: each phone's stored tags drawn from the seed, known exposures
//! planted in a seeded sample of phones, and the rayon loops that match every phone against the
//! day's batch and confirm every filter hit against the confirm store.
//!
//! A phone keeps its stored tags' hashes under the batch's seed grouped by partition (the top
//! [`FuseView::partition_bits`] bits of the hash, issue 12), as
//! [`crate::ObservationStore::order_lookups`] keeps a phone's store in lookup order. A phone's
//! store is a pure function of `(seed, phone)`, so no phone is ever held in memory: the
//! partitioned schedule draws each phone's run of hashes in a partition just before probing it,
//! and the plain loop draws the same store, turns it back into filter keys and probes them in an
//! order that jumps across the whole filter, as a store in observation order does. Both find
//! the same hits.
//!
//! With `--observation-tags computed` the tags are SHA-256 of random identifiers, computed
//! during the run and probed with the plain loop only.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::day::ConfirmStore;
use super::{ObservationTags, ProvinceConfig, ProvinceProgress, sub_seed};
use crate::batch::{FuseView, murmur64_finalizer, murmur64_finalizer_inverse};
use crate::matching::{candidate_slots, confirm};
use crate::scheme::{GAEN_INTERVAL_SECONDS, GaenKey, Scheme, rolling_proximity_identifier};
use crate::tag::Tag;

/// Observations whose computed tags are generated and looked up together: 3,072 keys (24 KiB)
/// at the default tolerance, which stay in the L1 cache between generation and lookup.
const OBSERVATIONS_PER_CHUNK: usize = 1_024;

/// Phones matched between two progress reports.
const PROGRESS_EVERY_PHONES: usize = 4_096;

/// Phones the partitioned schedule matches together, partition by partition: each partition's
/// slice of the filter comes from L3 once for the whole group, and from L2 for every phone
/// after the first.
pub const PHONES_PER_GROUP: usize = 32;

/// Most exposures planted in one phone.
const MAX_EXPOSURES_PER_PHONE: usize = 3;

/// wyrand's state increment (wyhash's first secret).
const WYRAND_INCREMENT: u64 = 0xa076_1d64_78bd_642f;

/// wyrand's output mask (wyhash's second secret).
const WYRAND_XOR: u64 = 0xe703_7ed1_a0b4_28db;

/// Keys of a phone's random streams: the computed tags' observations, its store's partition
/// counts, and its stored tags.
const OBSERVATION_STREAM: u64 = 0;
const PARTITION_COUNT_STREAM: u64 = 0x5041_5254_434f_554e;
const STORED_TAG_STREAM: u64 = 0x5041_5254_5441_4753;

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

/// Buffers one rayon task reuses from phone to phone and group to group.
#[derive(Default)]
struct Scratch {
    /// Filter keys the plain loop probes.
    filter_keys: Vec<u64>,
    /// Where each partition's tags start in the plain loop's store in partition order.
    partition_starts: Vec<usize>,
    /// One phone's run of hashes in one partition.
    run: Vec<u64>,
    hits: Vec<usize>,
    /// Tags of each phone (of a group) in each partition.
    partition_counts: Vec<u32>,
    /// The planted tags of a phone or a group, by partition then member.
    planted: Vec<PlantedTag>,
    /// A group's filter hits, confirmed after its lookups.
    group_hits: Vec<StoredHit>,
}

/// Where a tag sits in a phone's partitioned store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Drawn tag `index` of partition `partition`.
    Drawn { partition: usize, index: usize },
    /// Entry `index` of the planted tags.
    Planted(usize),
}

/// A planted exposure's tag in a partitioned store.
#[derive(Clone, Copy, Debug)]
struct PlantedTag {
    partition: usize,
    /// The phone's index within its group.
    member: usize,
    hash: u64,
    filter_key: u64,
    /// Index of the exposure among the phone's planted exposures.
    exposure: usize,
    /// Which of the exposure's slot tags.
    offset: usize,
}

/// A filter hit on a phone's stored tag.
#[derive(Clone, Copy, Debug)]
struct StoredHit {
    /// The phone's index within its group.
    member: usize,
    origin: Origin,
}

/// Time spent in the lookup loop, summed over threads, and per unit of work.
#[derive(Clone, Debug, Default)]
pub(super) struct MatchTimes {
    /// In the lookup loop itself: hashing and probing for the plain loop, probing for
    /// partitioned stores (whose tags were hashed when they were stored).
    pub lookups: Duration,
    /// Nanoseconds per lookup of each timed loop: one per phone (plain loop), per partition
    /// pass of a group (partitioned stores) or per chunk (computed tags). Their median does not count the
    /// turns a thread lost to other work on a shared machine, which the sum does.
    pub unit_ns: Vec<f64>,
}

impl MatchTimes {
    fn merge(mut self, other: MatchTimes) -> MatchTimes {
        self.lookups += other.lookups;
        self.unit_ns.extend(other.unit_ns);
        self
    }

    /// Adds one timed loop of `lookups` lookups.
    fn add(&mut self, elapsed: Duration, lookups: usize) {
        self.lookups += elapsed;
        if lookups > 0 {
            self.unit_ns
                .push(elapsed.as_secs_f64() * 1e9 / lookups as f64);
        }
    }
}

/// How the phones' lookups are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Schedule {
    /// The plain loop: one phone at a time, its filter keys in store order (which jumps across
    /// the whole filter) looked up one by one with [`FuseView::contains_key`], the loop before
    /// issue 12.
    Plain,
    /// Partitioned stores, a group of [`PHONES_PER_GROUP`] phones at a time, partition by
    /// partition: all the group's lookups into one L2-sized slice of the filter run back to
    /// back ([`FuseView::for_each_hit_of_cached_hashes`] on each phone's run).
    Partitioned,
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
    /// Top bits of a hash that name its partition ([`FuseView::partition_bits`]).
    pub partition_bits: u32,
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
        let unit = match (config.observation_tags, schedule) {
            (ObservationTags::Stored, Schedule::Partitioned) => PHONES_PER_GROUP,
            _ => 1,
        };
        (0..phones.len().div_ceil(unit))
            .into_par_iter()
            .fold(
                || {
                    (
                        Scratch::default(),
                        MatchTally::default(),
                        MatchTimes::default(),
                    )
                },
                |(mut scratch, mut tally, mut times), unit_index| {
                    let first = phones.start + unit_index * unit;
                    let group = first..(first + unit).min(phones.end);
                    let count = group.len();
                    let (scratch_ref, tally_ref, times_ref) =
                        (&mut scratch, &mut tally, &mut times);
                    match (config.observation_tags, schedule) {
                        (ObservationTags::Computed, _) => {
                            self.match_computed_phone(
                                config,
                                first,
                                scratch_ref,
                                tally_ref,
                                times_ref,
                            );
                        }
                        (ObservationTags::Stored, Schedule::Plain) => {
                            self.match_plain_phone(
                                config,
                                first,
                                scratch_ref,
                                tally_ref,
                                times_ref,
                            );
                        }
                        (ObservationTags::Stored, Schedule::Partitioned) => {
                            self.match_partitioned_group(
                                config,
                                group,
                                scratch_ref,
                                tally_ref,
                                times_ref,
                            );
                        }
                    }
                    let phones_done = done.fetch_add(count, Ordering::Relaxed) + count;
                    if (phones_done - count) / PROGRESS_EVERY_PHONES
                        != phones_done / PROGRESS_EVERY_PHONES
                        || phones_done == total
                    {
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

    /// Draws a phone's partitioned store, as group member `member`: how many random tags fall in
    /// each partition (into `counts`), and its planted tags, hashed (appended to `planted`).
    fn draw_store(
        &self,
        config: &ProvinceConfig,
        generator: &PhoneGenerator<'_>,
        member: usize,
        counts: &mut [u32],
        planted: &mut Vec<PlantedTag>,
    ) {
        let tags = config.observations_per_phone * generator.candidates;
        let planted_tags = generator.planted.len() * generator.candidates;
        generator.draw_partition_counts(tags - planted_tags, self.partition_bits, counts);
        for (exposure, planted_exposure) in generator.planted.iter().enumerate() {
            for (offset, slot) in generator.planted_slots(planted_exposure).enumerate() {
                let filter_key =
                    Tag::compute(Scheme::Gaen, slot, &planted_exposure.rpi).filter_key();
                let hash = self.filter.hash(filter_key);
                planted.push(PlantedTag {
                    partition: partition_of(hash, self.partition_bits),
                    member,
                    hash,
                    filter_key,
                    exposure,
                    offset,
                });
            }
        }
    }

    /// Matches one phone's partitioned store with the plain loop: its tags turned back into
    /// filter keys, in an order in which consecutive lookups land anywhere in the filter (as a
    /// store in observation order has them), then looked up one by one with
    /// [`FuseView::contains_key`]; then every hit is confirmed.
    ///
    /// The keys are prepared before the timed loop into the one buffer the loop reads (8 bytes
    /// a tag, as criterion's plain loop reads one store); where a hit came from is worked out
    /// from its position afterwards, so the preparation writes nothing else that could push
    /// the filter out of the caches the loop then reads it from.
    fn match_plain_phone(
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
            hits,
            partition_counts: counts,
            partition_starts: starts,
            planted,
            ..
        } = scratch;
        let bits = self.partition_bits;
        counts.clear();
        counts.resize(1 << bits, 0);
        planted.clear();
        self.draw_store(config, &generator, 0, counts, planted);
        let layout = StoreLayout::new(counts, planted.len(), starts);
        // The store in partition order, read with a golden-ratio stride: a permutation in
        // which consecutive lookups land far apart, anywhere in the filter, as a store in
        // observation order has them.
        let len = layout.len();
        let stride = golden_stride(len);
        let seed = self.filter.descriptor().seed;
        filter_keys.clear();
        let mut position = 0;
        for _ in 0..len {
            filter_keys.push(match layout.origin(position) {
                Origin::Drawn { partition, index } => {
                    murmur64_finalizer_inverse(generator.stored_hash(partition, index, bits))
                        .wrapping_sub(seed)
                }
                Origin::Planted(entry) => planted[entry].filter_key,
            });
            position = (position + stride) % len;
        }
        self.probe_plain(filter_keys, hits, tally, times);

        for &index in hits.iter() {
            let hit = StoredHit {
                member: 0,
                origin: layout.origin(strided_position(index, stride, len)),
            };
            self.confirm_stored_hit(&generator, hit, planted, tally);
        }
        tally.max_fetches_of_a_phone = tally.max_fetches_of_a_phone.max(hits.len() as u64);
    }

    /// Matches a group of phones' partitioned stores partition by partition: each phone's run of
    /// hashes in the partition is drawn and probed, so the partition's slice of the filter
    /// serves the whole group from the L2 cache; then every hit is confirmed.
    fn match_partitioned_group(
        &self,
        config: &ProvinceConfig,
        group: Range<usize>,
        scratch: &mut Scratch,
        tally: &mut MatchTally,
        times: &mut MatchTimes,
    ) {
        let bits = self.partition_bits;
        let partitions = 1usize << bits;
        let generators: Vec<PhoneGenerator<'_>> = group
            .map(|phone| PhoneGenerator::new(config, phone, self))
            .collect();
        let Scratch {
            run,
            hits,
            partition_counts: counts,
            planted,
            group_hits,
            ..
        } = scratch;
        counts.clear();
        counts.resize(generators.len() * partitions, 0);
        planted.clear();
        for (member, (generator, counts)) in generators
            .iter()
            .zip(counts.chunks_exact_mut(partitions))
            .enumerate()
        {
            self.draw_store(config, generator, member, counts, planted);
        }
        planted.sort_by_key(|entry| (entry.partition, entry.member));

        group_hits.clear();
        let mut next_planted = 0;
        for partition in 0..partitions {
            // One timed sample per partition pass: the whole group's lookups into one slice.
            let mut lookup_time = Duration::ZERO;
            let mut partition_lookups = 0usize;
            for (member, generator) in generators.iter().enumerate() {
                run.clear();
                let drawn = counts[member * partitions + partition] as usize;
                run.extend((0..drawn).map(|index| generator.stored_hash(partition, index, bits)));
                let first_planted = next_planted;
                while let Some(entry) = planted.get(next_planted)
                    && (entry.partition, entry.member) == (partition, member)
                {
                    run.push(entry.hash);
                    next_planted += 1;
                }
                tally.lookups += run.len() as u64;
                partition_lookups += run.len();
                hits.clear();
                let started = Instant::now();
                self.filter
                    .for_each_hit_of_cached_hashes(run, |index| hits.push(index));
                lookup_time += started.elapsed();
                group_hits.extend(hits.iter().map(|&index| StoredHit {
                    member,
                    origin: if index < drawn {
                        Origin::Drawn { partition, index }
                    } else {
                        Origin::Planted(first_planted + index - drawn)
                    },
                }));
            }
            times.add(lookup_time, partition_lookups);
        }

        let mut fetches = vec![0u64; generators.len()];
        for &hit in group_hits.iter() {
            fetches[hit.member] += 1;
            self.confirm_stored_hit(&generators[hit.member], hit, planted, tally);
        }
        tally.max_fetches_of_a_phone = fetches
            .into_iter()
            .fold(tally.max_fetches_of_a_phone, u64::max);
    }

    /// Confirms a filter hit on a stored tag: a drawn tag is rebuilt from its hash, a planted
    /// one recomputed from its exposure.
    fn confirm_stored_hit(
        &self,
        generator: &PhoneGenerator<'_>,
        hit: StoredHit,
        planted: &[PlantedTag],
        tally: &mut MatchTally,
    ) {
        match hit.origin {
            Origin::Drawn { partition, index } => {
                let tag = generator.stored_tag(partition, index, self.partition_bits, self.filter);
                self.confirm_tag(&tag, false, tally);
            }
            Origin::Planted(entry) => {
                let entry = &planted[entry];
                let exposure = &generator.planted[entry.exposure];
                let slot = generator
                    .planted_slots(exposure)
                    .nth(entry.offset)
                    .unwrap_or_default();
                let tag = Tag::compute(Scheme::Gaen, slot, &exposure.rpi);
                self.confirm_tag(&tag, slot == exposure.broadcast_slot, tally);
            }
        }
    }

    /// Looks up every computed tag of one phone, chunk by chunk, with the plain loop, and
    /// confirms each hit.
    fn match_computed_phone(
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
            generator.push_computed_filter_keys(chunk_start..chunk_end, filter_keys);
            self.probe_plain(filter_keys, hits, tally, times);
            for &index in hits.iter() {
                let observation = chunk_start + index / generator.candidates;
                let offset = index % generator.candidates;
                let (tag, is_planted_exposure) = generator.computed_tag(observation, offset);
                self.confirm_tag(&tag, is_planted_exposure, tally);
            }
            phone_hits += hits.len() as u64;
        }
        tally.max_fetches_of_a_phone = tally.max_fetches_of_a_phone.max(phone_hits);
    }

    /// Looks up `filter_keys` one by one, the plain loop, into `hits`, counting the lookups and timing
    /// the loop.
    fn probe_plain(
        &self,
        filter_keys: &[u64],
        hits: &mut Vec<usize>,
        tally: &mut MatchTally,
        times: &mut MatchTimes,
    ) {
        tally.lookups += filter_keys.len() as u64;
        hits.clear();
        let started = Instant::now();
        for (index, &filter_key) in filter_keys.iter().enumerate() {
            if self.filter.contains_key(filter_key) {
                hits.push(index);
            }
        }
        times.add(started.elapsed(), filter_keys.len());
    }

    /// Fetches the confirm bucket of a tag that hit the filter, confirms exactly, and counts
    /// the outcome; `is_planted_exposure` says whether the tag is a real element of the batch.
    fn confirm_tag(&self, tag: &Tag, is_planted_exposure: bool, tally: &mut MatchTally) {
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

/// A phone's store in partition order: each partition's drawn tags, then the planted ones.
struct StoreLayout<'a> {
    /// Position of each partition's first tag, and the drawn tags' total last.
    starts: &'a [usize],
    planted: usize,
}

impl<'a> StoreLayout<'a> {
    /// Lays out `counts[p]` drawn tags of each partition `p` and `planted` planted ones, with
    /// `starts` as its buffer.
    fn new(counts: &[u32], planted: usize, starts: &'a mut Vec<usize>) -> Self {
        starts.clear();
        let mut next = 0usize;
        for &count in counts {
            starts.push(next);
            next += count as usize;
        }
        starts.push(next);
        StoreLayout { starts, planted }
    }

    /// Returns the tags in the store.
    fn len(&self) -> usize {
        self.drawn() + self.planted
    }

    fn drawn(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Returns where the tag at `position` (below [`StoreLayout::len`]) comes from.
    fn origin(&self, position: usize) -> Origin {
        if position >= self.drawn() {
            return Origin::Planted(position - self.drawn());
        }
        // The last partition starting at or before the position: it holds the position, as
        // the next one starts after it.
        let partition = self.starts.partition_point(|&start| start <= position) - 1;
        Origin::Drawn {
            partition,
            index: position - self.starts[partition],
        }
    }
}

/// Returns the position read at step `step` of a walk from 0 by `stride` modulo `len`.
fn strided_position(step: usize, stride: usize, len: usize) -> usize {
    (step as u128 * stride as u128 % len.max(1) as u128) as usize
}

/// Returns a step coprime with `len` near `len / φ`, so that `i × step mod len` visits every
/// index once, each far from the one before.
fn golden_stride(len: usize) -> usize {
    let mut stride = ((len as f64 * 0.618_033_988_75) as usize).max(1);
    while len > 1 && gcd(stride, len) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Returns the partition of a hash: its top `bits` bits.
#[inline]
fn partition_of(hash: u64, bits: u32) -> usize {
    hash.checked_shr(64 - bits).unwrap_or(0) as usize
}

/// The counter of word `word` (0..4) of drawn tag `index` of partition `partition`.
#[inline]
fn stored_tag_counter(partition: usize, index: usize, word: usize) -> u64 {
    ((partition as u64) << 40) | ((index as u64) << 2) | word as u64
}

/// One phone's day of stored tags, as a pure function of the seed and the phone.
struct PhoneGenerator<'a> {
    /// Per-phone base of the counter-based generator.
    base: u64,
    /// Tags per observation: `2 * tolerance + 1` slot candidates.
    candidates: usize,
    tolerance: u32,
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
            planted: &phones.planted[first..first + count],
            window_start: phones.window_start,
            window_seconds: phones.window_seconds,
        }
    }

    /// Returns the random value at `counter` of this phone's stream `stream`.
    ///
    /// wyrand (the generator of wyhash, Go's runtime and the `fastrand` crate) at a counter: its
    /// state is a Weyl sequence, so the state of any counter is one multiply away, and its output
    /// is one 64 × 64 → 128-bit multiply.
    #[inline]
    fn word(&self, stream: u64, counter: u64) -> u64 {
        let state = (self.base ^ stream).wrapping_add(counter.wrapping_mul(WYRAND_INCREMENT));
        let product = u128::from(state) * u128::from(state ^ WYRAND_XOR);
        (product >> 64) as u64 ^ product as u64
    }

    /// Draws how many of `tags` random stored tags fall in each of the `2^bits` partitions
    /// into `counts` (which it zeroes first): each tag's partition is `bits` uniform random
    /// bits, as the top bits of a random tag's hash are.
    fn draw_partition_counts(&self, tags: usize, bits: u32, counts: &mut [u32]) {
        counts.fill(0);
        if bits == 0 {
            counts[0] = tags as u32;
            return;
        }
        let per_word = (64 / bits) as usize;
        let mask = (1u64 << bits) - 1;
        let mut left = tags;
        for counter in 0.. {
            if left == 0 {
                break;
            }
            let mut word = self.word(PARTITION_COUNT_STREAM, counter);
            let taken = per_word.min(left);
            for _ in 0..taken {
                counts[(word & mask) as usize] += 1;
                word >>= bits;
            }
            left -= taken;
        }
    }

    /// Returns the hash of drawn tag `index` of partition `partition` (of `2^bits`): uniform
    /// within the partition.
    #[inline]
    fn stored_hash(&self, partition: usize, index: usize, bits: u32) -> u64 {
        let top = (partition as u64).checked_shl(64 - bits).unwrap_or(0);
        let low = self
            .word(STORED_TAG_STREAM, stored_tag_counter(partition, index, 0))
            .checked_shr(bits)
            .unwrap_or(0);
        top | low
    }

    /// Returns drawn tag `index` of partition `partition`: its filter key is the one key whose
    /// hash under the filter's seed is [`PhoneGenerator::stored_hash`], and its other 24 bytes
    /// are random.
    fn stored_tag(&self, partition: usize, index: usize, bits: u32, filter: &FuseView<'_>) -> Tag {
        let hash = self.stored_hash(partition, index, bits);
        let filter_key = murmur64_finalizer_inverse(hash).wrapping_sub(filter.descriptor().seed);
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&filter_key.to_le_bytes());
        for (word, chunk) in bytes[8..].chunks_exact_mut(8).enumerate() {
            let counter = stored_tag_counter(partition, index, word + 1);
            chunk.copy_from_slice(&self.word(STORED_TAG_STREAM, counter).to_le_bytes());
        }
        Tag(bytes)
    }

    /// Appends the computed filter keys of the observations in `range`, `candidates` per
    /// observation, earliest slot first: SHA-256 tags of random identifiers, and the planted
    /// exposures' real tags in their observations.
    fn push_computed_filter_keys(&self, range: Range<usize>, filter_keys: &mut Vec<u64>) {
        let chunk_start = range.start;
        let pushed_from = filter_keys.len();
        for observation in range.clone() {
            let (identifier, observed_at) = self.random_observation(observation);
            filter_keys.extend(
                candidate_slots(observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
                    .map(|slot| Tag::compute(Scheme::Gaen, slot, &identifier).filter_key()),
            );
        }
        for exposure in self
            .planted
            .iter()
            .filter(|exposure| range.contains(&exposure.observation))
        {
            let first = pushed_from + (exposure.observation - chunk_start) * self.candidates;
            for (offset, slot) in self.planted_slots(exposure).enumerate() {
                filter_keys[first + offset] =
                    Tag::compute(Scheme::Gaen, slot, &exposure.rpi).filter_key();
            }
        }
    }

    /// Returns computed tag `offset` of observation `observation`, and whether it is a planted
    /// exposure's tag of the slot the case broadcast in (a real element of the batch).
    fn computed_tag(&self, observation: usize, offset: usize) -> (Tag, bool) {
        if let Ok(index) = self
            .planted
            .binary_search_by_key(&observation, |exposure| exposure.observation)
        {
            let exposure = &self.planted[index];
            let slot = self.planted_slots(exposure).nth(offset).unwrap_or_default();
            let tag = Tag::compute(Scheme::Gaen, slot, &exposure.rpi);
            return (tag, slot == exposure.broadcast_slot);
        }
        let (identifier, observed_at) = self.random_observation(observation);
        let slot = candidate_slots(observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
            .nth(offset)
            .unwrap_or_default();
        (Tag::compute(Scheme::Gaen, slot, &identifier), false)
    }

    /// Returns a random 16-byte GAEN identifier heard at a random second of the window.
    fn random_observation(&self, observation: usize) -> ([u8; 16], u64) {
        let word = |word: u64| self.word(OBSERVATION_STREAM, ((observation as u64) << 2) | word);
        let mut identifier = [0u8; 16];
        identifier[..8].copy_from_slice(&word(0).to_le_bytes());
        identifier[8..].copy_from_slice(&word(1).to_le_bytes());
        let observed_at = self.window_start + word(2) % self.window_seconds.max(1);
        (identifier, observed_at)
    }

    /// Returns the slots the phone tagged for a planted observation.
    fn planted_slots(&self, exposure: &PlantedExposure) -> impl Iterator<Item = u64> {
        candidate_slots(exposure.observed_at, GAEN_INTERVAL_SECONDS, self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(phone: u64) -> PhoneGenerator<'static> {
        PhoneGenerator {
            base: murmur64_finalizer(phone),
            candidates: 3,
            tolerance: 1,
            planted: &[],
            window_start: 0,
            window_seconds: 1,
        }
    }

    #[test]
    fn a_drawn_hash_lies_in_its_partition_at_every_width() {
        let generator = generator(7);
        for bits in 0..=16u32 {
            let partitions = 1usize << bits;
            for partition in [0, partitions / 3, partitions - 1] {
                for index in 0..50 {
                    let hash = generator.stored_hash(partition, index, bits);
                    assert_eq!(partition_of(hash, bits), partition, "bits {bits}");
                    // The first partition starts at 0, the last ends at 2^64 - 1: top bits are
                    // the partition's, the rest are drawn.
                    if bits > 0 {
                        assert_eq!(hash >> (64 - bits), partition as u64);
                    }
                }
            }
        }
    }

    #[test]
    fn partition_counts_sum_to_the_tags_and_are_uniform() {
        let generator = generator(11);
        let mut counts = vec![0u32; 64];
        generator.draw_partition_counts(640_000, 6, &mut counts);
        assert_eq!(
            counts.iter().map(|&count| u64::from(count)).sum::<u64>(),
            640_000
        );
        // Pearson's χ² against 10,000 a partition, 63 degrees of freedom: the 99.9th
        // percentile is 103.4.
        let chi_squared: f64 = counts
            .iter()
            .map(|&count| (f64::from(count) - 10_000.0).powi(2) / 10_000.0)
            .sum();
        assert!(chi_squared < 103.4, "χ² {chi_squared}: {counts:?}");
        let mut one = vec![5u32; 1];
        generator.draw_partition_counts(1_234, 0, &mut one);
        assert_eq!(one, [1_234]);
        // Not a multiple of the partitions a word holds (64 / 5 = 12), and zero tags.
        let mut odd = vec![0u32; 32];
        generator.draw_partition_counts(25, 5, &mut odd);
        assert_eq!(odd.iter().sum::<u32>(), 25);
        generator.draw_partition_counts(0, 5, &mut odd);
        assert!(odd.iter().all(|&count| count == 0));
    }

    #[test]
    fn a_drawn_tags_filter_key_hashes_back_to_its_hash() {
        let generator = generator(3);
        let fingerprints = vec![0u8; 2 * (4 * 1_024 + 2 * 1_024)];
        let descriptor = crate::batch::FilterDescriptor {
            seed: 0x0123_4567_89ab_cdef,
            segment_length: 1_024,
            segment_length_mask: 1_023,
            segment_count_length: 4 * 1_024,
        };
        let filter = FuseView::new(descriptor, crate::FingerprintWidth::Bits16, &fingerprints)
            .expect("a valid descriptor");
        for index in 0..100 {
            let tag = generator.stored_tag(5, index, 6, &filter);
            assert_eq!(
                filter.hash(tag.filter_key()),
                generator.stored_hash(5, index, 6)
            );
        }
    }

    #[test]
    fn the_store_layout_finds_each_positions_origin() {
        // Partitions of 2, 0, 3 and 0 drawn tags, then 2 planted ones.
        let mut starts = Vec::new();
        let layout = StoreLayout::new(&[2, 0, 3, 0], 2, &mut starts);
        assert_eq!(layout.len(), 7);
        let origins: Vec<Origin> = (0..7).map(|position| layout.origin(position)).collect();
        let drawn = |partition, index| Origin::Drawn { partition, index };
        assert_eq!(
            origins,
            [
                drawn(0, 0),
                drawn(0, 1),
                drawn(2, 0),
                drawn(2, 1),
                drawn(2, 2),
                Origin::Planted(0),
                Origin::Planted(1),
            ]
        );
        // The walk by a stride reaches the same positions as repeated addition.
        let (len, stride) = (30_007, golden_stride(30_007));
        let mut position = 0;
        for step in 0..len {
            assert_eq!(strided_position(step, stride, len), position);
            position = (position + stride) % len;
        }
    }

    #[test]
    fn the_golden_stride_visits_every_index_once() {
        for len in [0usize, 1, 2, 3, 10, 64, 30_000, 30_007, 65_536] {
            let stride = golden_stride(len);
            let mut seen = vec![false; len];
            let mut position = 0;
            for _ in 0..len {
                assert!(!seen[position], "len {len}: {position} twice");
                seen[position] = true;
                position = (position + stride) % len;
            }
            assert!(seen.iter().all(|&visited| visited), "len {len}");
        }
    }
}

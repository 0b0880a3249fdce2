//! Matching on the phone (DESIGN §3, §5): store what was heard as tags, look them up in a
//! downloaded batch, and confirm a filter hit exactly against a bucket of confirm digests.
//!
//! Tags are computed once, when an observation is stored, for its slot and `tolerance` slots
//! on each side, so that a phone whose clock is a slot off still matches; matching a batch is
//! then one filter lookup per stored tag and no cryptography.

mod order;
mod parallel;
mod phone_day;

use std::borrow::Borrow;

use order::LookupOrder;

pub use parallel::{FilterHit, GeneratedMatch, PhoneHits, match_generated_phones, match_phones};
pub use phone_day::{BenchmarkPhoneDay, REAL_RPI_ONE_IN};

use crate::batch::BatchFile;
use crate::scheme::Scheme;
use crate::tag::{ConfirmDigest, Tag};

/// Slots on each side of an observation's own slot that are looked up by default.
pub const DEFAULT_SLOT_TOLERANCE: u32 = 1;

/// Longest identifier a phone stores; the longest any scheme broadcasts (DESIGN §2).
const MAX_OBSERVED_IDENTIFIER_LEN: usize = 32;

/// Why an observation could not be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObservationError {
    /// The identifier is empty or longer than any scheme's.
    #[error("identifier must be 1..=32 bytes, got {0}")]
    IdentifierLength(usize),
    /// The slot length is zero.
    #[error("slot_seconds must be nonzero")]
    ZeroSlotSeconds,
}

/// One identifier a phone heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Scheme of the identifier heard.
    pub scheme: Scheme,
    /// Unix seconds at which it was heard, by the phone's clock.
    pub observed_at: u64,
    /// Start of the slot `observed_at` falls in.
    pub slot_start: u64,
}

/// One tag stored for an observation: its own slot or a neighbouring one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedTag {
    /// Index of the observation in its store.
    pub observation: usize,
    /// Slot the tag is computed for.
    pub slot_start: u64,
    /// The tag.
    pub tag: Tag,
}

/// A filter hit: probable, to be confirmed with [`confirm`] against the hit's confirm bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the observation that hit.
    pub observation: usize,
    /// Slot of the tag that hit.
    pub slot_start: u64,
    /// The tag that hit.
    pub tag: Tag,
    /// The tag's confirm digest, to look up in the bucket.
    pub digest: ConfirmDigest,
}

impl Candidate {
    /// Returns the confirm bucket to fetch: the first `prefix_bits` bits of the digest.
    pub fn bucket_prefix(&self, prefix_bits: u32) -> u32 {
        self.digest.prefix(prefix_bits)
    }
}

/// The tags of everything a phone heard.
#[derive(Clone, Debug, Default)]
pub struct ObservationStore {
    /// Slots on each side of an observation's own slot that also get a tag.
    tolerance: u32,
    observations: Vec<Observation>,
    tags: Vec<ObservedTag>,
    /// The tags in the order a filter of one seed reads them, once [`Self::order_lookups`] ran.
    order: LookupOrder,
}

impl ObservationStore {
    /// Returns an empty store with the default tolerance (one slot on each side).
    pub fn new() -> Self {
        Self::with_tolerance(DEFAULT_SLOT_TOLERANCE)
    }

    /// Returns an empty store that tags `tolerance` slots on each side of each observation.
    pub fn with_tolerance(tolerance: u32) -> Self {
        ObservationStore {
            tolerance,
            observations: Vec::new(),
            tags: Vec::new(),
            order: LookupOrder::default(),
        }
    }

    /// Returns the tolerance in slots on each side.
    pub fn tolerance(&self) -> u32 {
        self.tolerance
    }

    /// Stores that `identifier` of `scheme` was heard at `observed_at_unix`, computing the tags of
    /// its slot (slots of `slot_seconds`, aligned to Unix time: 600 for GAEN, 900 for Bluezone
    /// and static) and of `tolerance` neighbours on each side. Returns the observation's index.
    pub fn observe(
        &mut self,
        scheme: Scheme,
        identifier: &[u8],
        observed_at_unix: u64,
        slot_seconds: u64,
    ) -> Result<usize, ObservationError> {
        if !(1..=MAX_OBSERVED_IDENTIFIER_LEN).contains(&identifier.len()) {
            return Err(ObservationError::IdentifierLength(identifier.len()));
        }
        if slot_seconds == 0 {
            return Err(ObservationError::ZeroSlotSeconds);
        }
        let index = self.observations.len();
        let slot_start = observed_at_unix - observed_at_unix % slot_seconds;
        self.observations.push(Observation {
            scheme,
            observed_at: observed_at_unix,
            slot_start,
        });
        for candidate in candidate_slots(observed_at_unix, slot_seconds, self.tolerance) {
            let tag = Tag::compute(scheme, candidate, identifier);
            self.tags.push(ObservedTag {
                observation: index,
                slot_start: candidate,
                tag,
            });
        }
        Ok(index)
    }

    /// Returns the number of observations stored.
    pub fn len(&self) -> usize {
        self.observations.len()
    }

    /// Returns whether nothing has been observed.
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
    }

    /// Returns the observations, by index.
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// Returns every stored tag, grouped by observation.
    pub fn tags(&self) -> &[ObservedTag] {
        &self.tags
    }

    /// Keeps the stored tags in the order a filter with seed `seed` reads them (their DESIGN §4
    /// hashes, sorted), so that [`Self::match_batch`] against a batch with that seed probes it
    /// front to back without hashing. Tags stored since the last call are hashed, sorted and
    /// merged in; a new seed reorders every tag. A store of 2^32 tags or more is not ordered.
    ///
    /// Batches keep the seed of their builder, xorf, whose first choice nearly always succeeds;
    /// a phone calls this with the seed of the batch it last matched, when it stores tags or
    /// right before the next match.
    pub fn order_lookups(&mut self, seed: u64) {
        if u32::try_from(self.tags.len()).is_err() {
            return;
        }
        self.order = std::mem::take(&mut self.order).extended(seed, &self.tags);
    }

    /// Returns the stored tags that the batch's filter (probably) holds, in store order.
    ///
    /// When [`Self::order_lookups`] ordered every tag for the batch's seed, the match probes the
    /// ordered hashes front to back; otherwise it hashes the tags at match time and probes them
    /// in store order ([`crate::batch::FuseView::for_each_hit_scheduled`]). Both give the plain
    /// loop's answer.
    pub fn match_batch(&self, batch: &BatchFile<'_>) -> Vec<Candidate> {
        let filter = batch.filter();
        let mut hit_tags = Vec::new();
        if self.order.covers(filter.descriptor().seed, self.tags.len()) {
            filter.for_each_hit_of_cached_hashes(self.order.hashes(), |position| {
                hit_tags.push(self.order.tag_at(position));
            });
            hit_tags.sort_unstable();
        } else {
            let filter_keys: Vec<u64> = self
                .tags
                .iter()
                .map(|observed| observed.tag.filter_key())
                .collect();
            filter.for_each_hit_scheduled(&filter_keys, |index| hit_tags.push(index));
        }
        hit_tags
            .into_iter()
            .map(|index| {
                let observed = &self.tags[index];
                Candidate {
                    observation: observed.observation,
                    slot_start: observed.slot_start,
                    tag: observed.tag,
                    digest: observed.tag.confirm_digest(),
                }
            })
            .collect()
    }

    /// Returns the stored tags that the batch's filter (probably) holds, in store order, by the
    /// plain loop: one DESIGN §4 lookup per tag, in store order. The reference the ordered
    /// paths are tested and benchmarked against.
    pub fn match_batch_plain(&self, batch: &BatchFile<'_>) -> Vec<Candidate> {
        let filter = batch.filter();
        self.tags
            .iter()
            .filter(|observed| filter.contains_key(observed.tag.filter_key()))
            .map(|observed| Candidate {
                observation: observed.observation,
                slot_start: observed.slot_start,
                tag: observed.tag,
                digest: observed.tag.confirm_digest(),
            })
            .collect()
    }
}

/// Returns the slot starts a phone tags for an observation at `observed_at_unix`: the slot it
/// falls in (slots of `slot_seconds`, aligned to Unix time) and `tolerance` slots on each side,
/// earliest first. Slots before the epoch or past `u64` cannot have been broadcast and are left
/// out, so near those ends there are fewer than `2 * tolerance + 1`.
pub fn candidate_slots(
    observed_at_unix: u64,
    slot_seconds: u64,
    tolerance: u32,
) -> impl Iterator<Item = u64> {
    debug_assert!(slot_seconds > 0);
    let slot_start = observed_at_unix - observed_at_unix % slot_seconds.max(1);
    let reach = i128::from(tolerance);
    (-reach..=reach).filter_map(move |offset| {
        u64::try_from(i128::from(slot_start) + offset * i128::from(slot_seconds)).ok()
    })
}

/// Returns whether the candidate's digest is in its confirm bucket, which the server returns
/// sorted; a `true` is an exposure with no false positive (DESIGN §5).
pub fn confirm(
    candidate_digest: impl Borrow<ConfirmDigest>,
    sorted_bucket: &[ConfirmDigest],
) -> bool {
    debug_assert!(
        sorted_bucket.windows(2).all(|pair| pair[0] <= pair[1]),
        "bucket sorted"
    );
    sorted_bucket
        .binary_search(candidate_digest.borrow())
        .is_ok()
}

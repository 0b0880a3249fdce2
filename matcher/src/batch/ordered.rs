//! Lookups scheduled for the cache (issue 12).
//!
//! The plain loop hashes a key and reads its three fingerprints in one go, at random places in
//! the filter. Three other schedules read it more kindly:
//! - **scheduled** ([`FuseView::for_each_hit_scheduled`]): a first pass turns a block of keys
//!   into positions and fingerprints (arithmetic only), a second pass only reads and compares,
//!   so that more lookups' cache misses are in flight at once;
//! - **sorted hashes** ([`FuseView::for_each_hit_of_cached_hashes`] over hashes kept in
//!   ascending order, as an ordered observation store keeps them): DESIGN §4's first position
//!   `h0 = (h × segment_count_length) >> 64` is monotone in the hash and the other two lie in the
//!   next two segments, so the lookups read the filter front to back, as three streams the
//!   hardware prefetcher follows;
//! - **partitioned** ([`FuseView::partition_bits`]): hashes grouped by their top bits, so that
//!   each group reads one slice of the filter small enough for the L2 cache; many phones'
//!   groups for the same slice, probed back to back, read it from L3 once.
//!
//! The answer is the plain loop's, hit for hit: the same membership test on the same hashes,
//! with the hits handed back in input order.

use super::FuseView;
use super::filter::{Fingerprint, Fingerprints, is_member};

/// Lookups whose positions are computed before any of them is probed: 32 KiB of positions,
/// which stay in the L1 and L2 caches between the two passes.
pub const SCHEDULE_BLOCK: usize = 1_024;

const BLOCK: usize = SCHEDULE_BLOCK;

/// Fingerprint bytes one partition of lookups should read at most
/// ([`FuseView::partition_bits`]): a quarter of the 1 MiB L2 cache of the machines measured, so
/// the partition's slice stays there beside the lookups' own buffers.
pub const PARTITION_BYTES: usize = 256 * 1024;

/// One lookup's three positions and its fingerprint, before any fingerprint is read.
#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    fingerprint: u64,
    positions: [usize; 3],
}

impl FuseView<'_> {
    /// Calls `on_hit(index)`, in ascending index order, for every key of `filter_keys` the
    /// filter (probably) holds: exactly what [`FuseView::for_each_hit`] does, scheduled for the
    /// cache (the positions of a block of 1,024 keys first, then their probes).
    pub fn for_each_hit_scheduled(&self, filter_keys: &[u64], mut on_hit: impl FnMut(usize)) {
        self.scheduled(
            filter_keys.len(),
            |index| self.hash(filter_keys[index]),
            &mut on_hit,
        );
    }

    /// Calls `on_hit(index)`, in ascending index order, for every hash of `hashes` (each one
    /// [`FuseView::hash`] of a filter key) whose key the filter (probably) holds, scheduled like
    /// [`FuseView::for_each_hit_scheduled`]. Hashes in ascending order read the filter front
    /// to back.
    pub fn for_each_hit_of_hashes(&self, hashes: &[u64], mut on_hit: impl FnMut(usize)) {
        self.scheduled(hashes.len(), |index| hashes[index], &mut on_hit);
    }

    /// Calls `on_hit(index)`, in ascending index order, for every hash of `hashes` whose key
    /// the filter (probably) holds, probing one hash after the other: for hashes whose
    /// fingerprints the cache already holds (a partition's run, [`FuseView::partition_bits`])
    /// or that the hardware prefetcher brings in (hashes in ascending order, which read the
    /// filter as three forward streams), where a scheduling pass costs more than it hides.
    pub fn for_each_hit_of_cached_hashes(&self, hashes: &[u64], mut on_hit: impl FnMut(usize)) {
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => self.probe_each(fingerprints, hashes, &mut on_hit),
            Fingerprints::Bits16(fingerprints) => {
                self.probe_each(fingerprints, hashes, &mut on_hit);
            }
            Fingerprints::Bits32(fingerprints) => {
                self.probe_each(fingerprints, hashes, &mut on_hit);
            }
        }
    }

    #[inline]
    fn probe_each<F: Fingerprint>(
        &self,
        fingerprints: &[F],
        hashes: &[u64],
        on_hit: &mut impl FnMut(usize),
    ) {
        for (index, &hash) in hashes.iter().enumerate() {
            let (fingerprint, positions) = self.probe_hash(hash);
            if is_member(fingerprints, fingerprint, positions) {
                on_hit(index);
            }
        }
    }

    /// Returns the fewest top bits of a hash that split lookups into partitions whose
    /// fingerprints fit in `budget_bytes`: hashes that share their top `b` bits have their
    /// first position in one `1 / 2^b` share of the first positions (`h0 = (h ×
    /// segment_count_length) >> 64` is monotone in the hash), and the other two in the next two
    /// segments, so they read at most that share and three segments. Stops at one segment a
    /// partition, where the slice can shrink no further; 0 when the whole filter fits.
    pub fn partition_bits(&self, budget_bytes: usize) -> u32 {
        let width = self.fingerprints.width_bytes() as u64;
        let segment = u64::from(self.descriptor.segment_length);
        let first_positions = u64::from(self.descriptor.segment_count_length);
        let segments = first_positions / segment;
        let budget = budget_bytes as u64;
        let mut bits = 0;
        // One partition's slice: its share of the first positions (rounded up), and up to the
        // end of the second segment after the last one the share reaches.
        while (first_positions.div_ceil(1 << bits) + 3 * segment) * width > budget
            && (1u64 << bits) < segments
        {
            bits += 1;
        }
        bits
    }

    /// Returns whether the key whose [`FuseView::hash`] is `hash` is (probably) in the filter.
    pub fn contains_hash(&self, hash: u64) -> bool {
        let (fingerprint, positions) = self.probe_hash(hash);
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => is_member(fingerprints, fingerprint, positions),
            Fingerprints::Bits16(fingerprints) => is_member(fingerprints, fingerprint, positions),
            Fingerprints::Bits32(fingerprints) => is_member(fingerprints, fingerprint, positions),
        }
    }

    /// Runs the two passes over `count` lookups whose hashes `hash_of(index)` gives.
    #[inline]
    fn scheduled(
        &self,
        count: usize,
        hash_of: impl Fn(usize) -> u64,
        on_hit: &mut impl FnMut(usize),
    ) {
        // Dispatching on the width once, outside the loops, keeps the loops free of it.
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => self.passes(fingerprints, count, hash_of, on_hit),
            Fingerprints::Bits16(fingerprints) => self.passes(fingerprints, count, hash_of, on_hit),
            Fingerprints::Bits32(fingerprints) => self.passes(fingerprints, count, hash_of, on_hit),
        }
    }

    #[inline]
    fn passes<F: Fingerprint>(
        &self,
        fingerprints: &[F],
        count: usize,
        hash_of: impl Fn(usize) -> u64,
        on_hit: &mut impl FnMut(usize),
    ) {
        let mut probes = [Probe::default(); BLOCK];
        for start in (0..count).step_by(BLOCK) {
            let probes = &mut probes[..BLOCK.min(count - start)];
            for (slot, probe) in probes.iter_mut().enumerate() {
                let (fingerprint, positions) = self.probe_hash(hash_of(start + slot));
                *probe = Probe {
                    fingerprint,
                    positions,
                };
            }
            for (slot, probe) in probes.iter().enumerate() {
                if is_member(fingerprints, probe.fingerprint, probe.positions) {
                    on_hit(start + slot);
                }
            }
        }
    }
}

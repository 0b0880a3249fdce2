//! Lookups scheduled for the cache: hash a block of filter keys first, then probe them in
//! filter order, so that consecutive lookups read neighbouring fingerprints (issue 12).
//!
//! DESIGN §4 puts a key's first position at `h0 = (h × segment_count_length) >> 64`, which is
//! monotone in the hash `h`; its other two positions lie in the next two segments. Lookups whose
//! hashes share their top `p` bits therefore read one `1/2^p` slice of the fingerprint array
//! plus two segments after it. [`FuseView::for_each_hit_ordered`] radix-partitions a block's
//! hashes on those top bits (one counting pass, one scatter) and probes partition after
//! partition, so that each partition's slice sits in the L2 cache while it is read.
//!
//! The answer is the plain loop's, hit for hit: the same membership test on the same hashes,
//! only in another order, with the hits handed back in key order.

use super::FuseView;
use super::filter::{Fingerprint, Fingerprints, is_member};

/// Most fingerprint bytes one partition's first positions should span: a quarter of a 1 MiB L2,
/// leaving room for the two segments after it and the partition's own entries.
const PARTITION_SPAN_BYTES: usize = 256 * 1024;

/// Fewest lookups a partition should hold on average; fewer and the scatter's bookkeeping costs
/// more than the locality it buys.
const MIN_LOOKUPS_PER_PARTITION: usize = 256;

/// Most partition bits: 4,096 partitions.
const MAX_PARTITION_BITS: u32 = 12;

/// One lookup in a partition: the key's hash and where the key stands in the input.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    hash: u64,
    index: u32,
}

/// Buffers that ordered lookups reuse from call to call; one per thread.
#[derive(Clone, Debug, Default)]
pub struct OrderedLookups {
    hashes: Vec<u64>,
    /// Start of each partition in `entries`, then its fill cursor.
    offsets: Vec<usize>,
    entries: Vec<Entry>,
    hits: Vec<usize>,
}

impl FuseView<'_> {
    /// Returns the partition bits [`FuseView::for_each_hit_ordered`] uses for `lookups` keys:
    /// enough that a partition's first positions span at most 256 KiB of fingerprints, no more
    /// than leave 256 lookups per partition, and 0 when the whole filter is that small.
    pub fn partition_bits(&self, lookups: usize) -> u32 {
        let fingerprint_bytes = self.fingerprint_bytes();
        let mut bits = 0;
        while bits < MAX_PARTITION_BITS
            && (fingerprint_bytes >> bits) > PARTITION_SPAN_BYTES
            && (lookups >> (bits + 1)) >= MIN_LOOKUPS_PER_PARTITION
        {
            bits += 1;
        }
        bits
    }

    /// Calls `on_hit(index)`, in ascending index order, for every key of `filter_keys` the
    /// filter (probably) holds: exactly what [`FuseView::for_each_hit`] does, with the lookups
    /// partitioned by [`FuseView::partition_bits`] so that they read the filter in order.
    pub fn for_each_hit_ordered(
        &self,
        filter_keys: &[u64],
        scratch: &mut OrderedLookups,
        on_hit: impl FnMut(usize),
    ) {
        let bits = self.partition_bits(filter_keys.len());
        self.for_each_hit_partitioned(filter_keys, bits, scratch, on_hit);
    }

    /// [`FuseView::for_each_hit_ordered`] with `bits` partition bits (at most 12; 0 hashes every
    /// key first and probes in input order). For tests and benchmarks that choose the layout.
    pub fn for_each_hit_partitioned(
        &self,
        filter_keys: &[u64],
        bits: u32,
        scratch: &mut OrderedLookups,
        mut on_hit: impl FnMut(usize),
    ) {
        let bits = bits.min(MAX_PARTITION_BITS);
        if u32::try_from(filter_keys.len()).is_err() {
            // Entries index keys with 32 bits; a longer input is looked up as it comes.
            self.for_each_hit(filter_keys, on_hit);
            return;
        }
        let OrderedLookups {
            hashes,
            offsets,
            entries,
            hits,
        } = scratch;
        hashes.clear();
        hashes.extend(filter_keys.iter().map(|&key| self.hash(key)));
        hits.clear();
        if bits == 0 {
            self.for_each_hit_of_hashes(hashes, |index| hits.push(index));
        } else {
            partition(hashes, bits, offsets, entries);
            self.probe_entries(entries, hits);
            hits.sort_unstable();
        }
        for &index in hits.iter() {
            on_hit(index);
        }
    }

    /// Calls `on_hit(index)`, in the order given, for every hash of `hashes` (each one
    /// [`FuseView::hash`] of a filter key) whose key the filter (probably) holds. Hashes kept in
    /// ascending order read the filter front to back.
    pub fn for_each_hit_of_hashes(&self, hashes: &[u64], mut on_hit: impl FnMut(usize)) {
        fn probe<F: Fingerprint>(
            view: &FuseView<'_>,
            fingerprints: &[F],
            hashes: &[u64],
            on_hit: &mut impl FnMut(usize),
        ) {
            for (index, &hash) in hashes.iter().enumerate() {
                let (fingerprint, positions) = view.probe_hash(hash);
                if is_member(fingerprints, fingerprint, positions) {
                    on_hit(index);
                }
            }
        }
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => probe(self, fingerprints, hashes, &mut on_hit),
            Fingerprints::Bits16(fingerprints) => probe(self, fingerprints, hashes, &mut on_hit),
            Fingerprints::Bits32(fingerprints) => probe(self, fingerprints, hashes, &mut on_hit),
        }
    }

    /// Returns whether the key whose [`FuseView::hash`] is `hash` is (probably) in the filter.
    pub fn contains_hash(&self, hash: u64) -> bool {
        let mut hit = false;
        self.for_each_hit_of_hashes(&[hash], |_| hit = true);
        hit
    }

    /// Returns the bytes of the fingerprint array.
    fn fingerprint_bytes(&self) -> usize {
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => fingerprints.len(),
            Fingerprints::Bits16(fingerprints) => 2 * fingerprints.len(),
            Fingerprints::Bits32(fingerprints) => 4 * fingerprints.len(),
        }
    }

    /// Probes every entry, partition after partition, pushing the input index of each hit.
    fn probe_entries(&self, entries: &[Entry], hits: &mut Vec<usize>) {
        fn probe<F: Fingerprint>(
            view: &FuseView<'_>,
            fingerprints: &[F],
            entries: &[Entry],
            hits: &mut Vec<usize>,
        ) {
            for entry in entries {
                let (fingerprint, positions) = view.probe_hash(entry.hash);
                if is_member(fingerprints, fingerprint, positions) {
                    hits.push(entry.index as usize);
                }
            }
        }
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => probe(self, fingerprints, entries, hits),
            Fingerprints::Bits16(fingerprints) => probe(self, fingerprints, entries, hits),
            Fingerprints::Bits32(fingerprints) => probe(self, fingerprints, entries, hits),
        }
    }
}

/// Radix-partitions `hashes` on their top `bits` bits (1..=12) into `entries`, keeping input
/// order within a partition: a counting pass, then a scatter.
fn partition(hashes: &[u64], bits: u32, offsets: &mut Vec<usize>, entries: &mut Vec<Entry>) {
    debug_assert!((1..=MAX_PARTITION_BITS).contains(&bits));
    let shift = 64 - bits;
    offsets.clear();
    offsets.resize((1 << bits) + 1, 0);
    for &hash in hashes {
        offsets[(hash >> shift) as usize + 1] += 1;
    }
    for partition in 1..offsets.len() {
        offsets[partition] += offsets[partition - 1];
    }
    entries.clear();
    entries.resize(hashes.len(), Entry::default());
    for (index, &hash) in hashes.iter().enumerate() {
        let partition = (hash >> shift) as usize;
        let slot = offsets[partition];
        entries[slot] = Entry {
            hash,
            // The caller checked that every index fits in 32 bits.
            index: index as u32,
        };
        offsets[partition] = slot + 1;
    }
}

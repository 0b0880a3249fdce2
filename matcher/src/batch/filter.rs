//! The binary fuse filter of a batch: building it with xorf, and the lookup of DESIGN §4 over the
//! file's bytes, which a phone in any language implements and which equals xorf's `contains`.

use xorf::{BinaryFuse8, BinaryFuse16, BinaryFuse32};

use super::{BatchError, FingerprintWidth};

/// Largest segment length xorf builds (and the bound on any valid descriptor).
const MAX_SEGMENT_LENGTH: u32 = 1 << 18;

/// The binary fuse descriptor, as xorf holds it and as the file stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterDescriptor {
    /// Seed added to each key before hashing.
    pub seed: u64,
    /// Length of one segment; a power of two.
    pub segment_length: u32,
    /// `segment_length - 1`.
    pub segment_length_mask: u32,
    /// Segments a key's first position may fall in, times `segment_length`.
    pub segment_count_length: u32,
}

impl FilterDescriptor {
    /// Returns the fingerprint count a filter with this descriptor has:
    /// `segment_count_length + 2 * segment_length`.
    pub fn expected_fingerprint_count(&self) -> u64 {
        u64::from(self.segment_count_length) + 2 * u64::from(self.segment_length)
    }

    /// Checks that the descriptor describes a filter of `fingerprint_count` fingerprints whose
    /// three positions for any key are in bounds and computable without 32-bit overflow.
    pub fn validate(&self, fingerprint_count: u32) -> Result<(), BatchError> {
        let length = self.segment_length;
        if !length.is_power_of_two() || length > MAX_SEGMENT_LENGTH {
            return Err(BatchError::InvalidDescriptor(
                "segment_length must be a power of two up to 2^18",
            ));
        }
        if self.segment_length_mask != length - 1 {
            return Err(BatchError::InvalidDescriptor(
                "segment_length_mask must be segment_length - 1",
            ));
        }
        if self.segment_count_length == 0 || !self.segment_count_length.is_multiple_of(length) {
            return Err(BatchError::InvalidDescriptor(
                "segment_count_length must be a nonzero multiple of segment_length",
            ));
        }
        let expected = self.expected_fingerprint_count();
        if expected != u64::from(fingerprint_count) {
            return Err(BatchError::FingerprintCount {
                expected,
                got: fingerprint_count,
            });
        }
        Ok(())
    }

    /// Returns the three fingerprint positions of a key's hash (xorf's `hash_of_hash`).
    fn positions(&self, hash: u64) -> [usize; 3] {
        let h0 = ((u128::from(hash) * u128::from(self.segment_count_length)) >> 64) as u32;
        let h1 =
            h0.wrapping_add(self.segment_length) ^ ((hash >> 18) as u32 & self.segment_length_mask);
        let h2 = h0.wrapping_add(self.segment_length.wrapping_mul(2))
            ^ (hash as u32 & self.segment_length_mask);
        [h0 as usize, h1 as usize, h2 as usize]
    }
}

/// MurmurHash3's 64-bit finalizer (fmix64), the hash xorf applies to `key + seed`.
pub fn murmur64_finalizer(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^= value >> 33;
    value
}

/// The inverse of [`murmur64_finalizer`]: `murmur64_finalizer_inverse(murmur64_finalizer(x)) == x`
/// for every `x`. The finalizer is a bijection (xor-shifts by at least half the word and
/// multiplications by odd constants), so a hash names exactly one filter key: a simulation that
/// draws hashes can recover the key behind the rare one that hits.
pub fn murmur64_finalizer_inverse(mut value: u64) -> u64 {
    // An xor-shift by 33 undoes itself; the constants are the inverses of fmix64's modulo 2^64.
    value ^= value >> 33;
    value = value.wrapping_mul(0x9cb4_b2f8_1293_37db);
    value ^= value >> 33;
    value = value.wrapping_mul(0x4f74_430c_22a5_4005);
    value ^= value >> 33;
    value
}

/// The fingerprints of a file, borrowed in place and typed by width.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fingerprints<'a> {
    Bits8(&'a [u8]),
    Bits16(&'a [[u8; 2]]),
    Bits32(&'a [[u8; 4]]),
}

impl Fingerprints<'_> {
    /// Returns the bytes of one fingerprint.
    pub(super) fn width_bytes(&self) -> usize {
        match self {
            Fingerprints::Bits8(_) => 1,
            Fingerprints::Bits16(_) => 2,
            Fingerprints::Bits32(_) => 4,
        }
    }
}

/// A zero-copy binary fuse filter over little-endian fingerprint bytes.
#[derive(Clone, Copy, Debug)]
pub struct FuseView<'a> {
    pub(super) descriptor: FilterDescriptor,
    pub(super) fingerprints: Fingerprints<'a>,
}

impl<'a> FuseView<'a> {
    /// Returns a view over `bytes` (`fingerprint_count × width` bytes) after checking the
    /// descriptor against the fingerprint count.
    pub fn new(
        descriptor: FilterDescriptor,
        width: FingerprintWidth,
        bytes: &'a [u8],
    ) -> Result<Self, BatchError> {
        let count = bytes.len() / width.bytes();
        let count = u32::try_from(count)
            .map_err(|_| BatchError::InvalidDescriptor("more than 2^32 fingerprints"))?;
        if !bytes.len().is_multiple_of(width.bytes()) {
            return Err(BatchError::InvalidDescriptor(
                "fingerprint bytes are not whole",
            ));
        }
        descriptor.validate(count)?;
        let fingerprints = match width {
            FingerprintWidth::Bits8 => Fingerprints::Bits8(bytes),
            FingerprintWidth::Bits16 => Fingerprints::Bits16(bytes.as_chunks::<2>().0),
            FingerprintWidth::Bits32 => Fingerprints::Bits32(bytes.as_chunks::<4>().0),
        };
        Ok(FuseView {
            descriptor,
            fingerprints,
        })
    }

    /// Returns the descriptor of the filter.
    pub fn descriptor(&self) -> &FilterDescriptor {
        &self.descriptor
    }

    /// Returns whether `filter_key` is (probably) in the filter; never a false negative.
    #[inline]
    pub fn contains_key(&self, filter_key: u64) -> bool {
        let (fingerprint, positions) = self.probe(filter_key);
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => is_member(fingerprints, fingerprint, positions),
            Fingerprints::Bits16(fingerprints) => is_member(fingerprints, fingerprint, positions),
            Fingerprints::Bits32(fingerprints) => is_member(fingerprints, fingerprint, positions),
        }
    }

    /// Calls `on_hit(index)` for every key of `filter_keys` the filter (probably) holds.
    ///
    /// Equivalent to `contains_key` on each key; hashing a block of keys before touching any
    /// fingerprint lets the CPU overlap the block's cache misses.
    #[inline]
    pub fn for_each_hit(&self, filter_keys: &[u64], on_hit: impl FnMut(usize)) {
        // Dispatching on the width once, outside the loop, keeps the loop free of it.
        match self.fingerprints {
            Fingerprints::Bits8(fingerprints) => self.hits_in(fingerprints, filter_keys, on_hit),
            Fingerprints::Bits16(fingerprints) => self.hits_in(fingerprints, filter_keys, on_hit),
            Fingerprints::Bits32(fingerprints) => self.hits_in(fingerprints, filter_keys, on_hit),
        }
    }

    /// Returns a key's fingerprint (untruncated) and its three positions.
    #[inline]
    fn probe(&self, filter_key: u64) -> (u64, [usize; 3]) {
        self.probe_hash(self.hash(filter_key))
    }

    /// Returns the hash DESIGN §4 computes for a filter key: `murmur64(key + seed)`.
    #[inline]
    pub fn hash(&self, filter_key: u64) -> u64 {
        murmur64_finalizer(filter_key.wrapping_add(self.descriptor.seed))
    }

    /// Returns the fingerprint (untruncated) and the three positions of a key's hash.
    #[inline]
    pub(super) fn probe_hash(&self, hash: u64) -> (u64, [usize; 3]) {
        (hash ^ (hash >> 32), self.descriptor.positions(hash))
    }

    #[inline]
    fn hits_in<F: Fingerprint>(
        &self,
        fingerprints: &[F],
        filter_keys: &[u64],
        mut on_hit: impl FnMut(usize),
    ) {
        const BLOCK: usize = 16;
        for (block_index, block) in filter_keys.chunks(BLOCK).enumerate() {
            let mut probes = [(0u64, [0usize; 3]); BLOCK];
            for (probe, &key) in probes.iter_mut().zip(block) {
                *probe = self.probe(key);
            }
            for (slot, &(fingerprint, positions)) in probes[..block.len()].iter().enumerate() {
                if is_member(fingerprints, fingerprint, positions) {
                    on_hit(block_index * BLOCK + slot);
                }
            }
        }
    }
}

/// Returns whether `fingerprint` XORs to zero with the three stored at `positions`: the
/// membership test of DESIGN §4.
#[inline]
pub(super) fn is_member<F: Fingerprint>(
    fingerprints: &[F],
    fingerprint: u64,
    [h0, h1, h2]: [usize; 3],
) -> bool {
    // Positions are in bounds for every validated descriptor; `get` keeps a corrupt one from
    // panicking all the same.
    match (
        fingerprints.get(h0),
        fingerprints.get(h1),
        fingerprints.get(h2),
    ) {
        (Some(a), Some(b), Some(c)) => {
            (fingerprint ^ a.value() ^ b.value() ^ c.value()) & F::MASK == 0
        }
        _ => false,
    }
}

/// One stored fingerprint of a given width, read as the low bits of a `u64`.
pub(super) trait Fingerprint: Copy {
    /// The bits of a key's fingerprint that this width keeps.
    const MASK: u64;
    /// Returns the fingerprint, little-endian, zero-extended.
    fn value(&self) -> u64;
}

impl Fingerprint for u8 {
    const MASK: u64 = 0xff;
    #[inline]
    fn value(&self) -> u64 {
        u64::from(*self)
    }
}

impl Fingerprint for [u8; 2] {
    const MASK: u64 = 0xffff;
    #[inline]
    fn value(&self) -> u64 {
        u64::from(u16::from_le_bytes(*self))
    }
}

impl Fingerprint for [u8; 4] {
    const MASK: u64 = 0xffff_ffff;
    #[inline]
    fn value(&self) -> u64 {
        u64::from(u32::from_le_bytes(*self))
    }
}

/// A filter built by xorf, in file form.
#[derive(Clone, Debug)]
pub(crate) struct BuiltFilter {
    /// The descriptor xorf chose.
    pub descriptor: FilterDescriptor,
    /// Number of fingerprints.
    pub fingerprint_count: u32,
    /// The fingerprints, each little-endian.
    pub fingerprint_bytes: Vec<u8>,
}

/// Builds a binary fuse filter of `width` over `keys`, which must be distinct.
pub(crate) fn build_filter(
    keys: &[u64],
    width: FingerprintWidth,
) -> Result<BuiltFilter, BatchError> {
    debug_assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "keys sorted and distinct"
    );
    let (descriptor, fingerprint_bytes) = match width {
        FingerprintWidth::Bits8 => {
            let filter = BinaryFuse8::try_from(keys).map_err(BatchError::FilterConstruction)?;
            (filter.descriptor, filter.fingerprints.into_vec())
        }
        FingerprintWidth::Bits16 => {
            let filter = BinaryFuse16::try_from(keys).map_err(BatchError::FilterConstruction)?;
            let bytes = filter
                .fingerprints
                .iter()
                .flat_map(|fp| fp.to_le_bytes())
                .collect();
            (filter.descriptor, bytes)
        }
        FingerprintWidth::Bits32 => {
            let filter = BinaryFuse32::try_from(keys).map_err(BatchError::FilterConstruction)?;
            let bytes = filter
                .fingerprints
                .iter()
                .flat_map(|fp| fp.to_le_bytes())
                .collect();
            (filter.descriptor, bytes)
        }
    };
    let fingerprint_count = u32::try_from(fingerprint_bytes.len() / width.bytes())
        .map_err(|_| BatchError::TooManyElements(keys.len()))?;
    Ok(BuiltFilter {
        descriptor: FilterDescriptor {
            seed: descriptor.seed,
            segment_length: descriptor.segment_length,
            segment_length_mask: descriptor.segment_length_mask,
            segment_count_length: descriptor.segment_count_length,
        },
        fingerprint_count,
        fingerprint_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_undoes_the_finalizer() {
        // fmix64 values computed with Python's integers, independently of this code.
        assert_eq!(murmur64_finalizer(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(murmur64_finalizer_inverse(0xb456_bcfc_34c2_cb2c), 1);
        assert_eq!(
            murmur64_finalizer_inverse(0x87cb_fbfe_8902_2cea),
            0x0123_4567_89ab_cdef
        );
        let mut value = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            value = value
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            assert_eq!(murmur64_finalizer_inverse(murmur64_finalizer(value)), value);
            assert_eq!(murmur64_finalizer(murmur64_finalizer_inverse(value)), value);
        }
    }
}

//! A phone's stored tags in lookup order, for the province's ordered stores: the tags' hashes
//! under the batch's seed, ordered by their top 16 bits with a two-pass LSD radix sort.
//!
//! An observation store kept in lookup order ([`crate::ObservationStore::order_lookups`]) reads
//! the filter front to back at match time. The province draws each phone's tags afresh, so it
//! orders them per phone before the match, and times that apart from the lookups: the phone
//! pays it once, when it stores its tags, as it pays their SHA-256.
//!
//! Sixteen bits are enough: they split the first positions into 65,536 runs of about 43
//! fingerprints (86 bytes at 16 bits) for the peak day's filter, so lookups in this order walk
//! the array a cache line or two at a time.

/// Bits of the hash the order sorts by, in two passes of 8.
const ORDER_BITS: u32 = 16;

/// Buffers of one ordering, reused from phone to phone.
#[derive(Clone, Debug, Default)]
pub(super) struct HashOrder {
    /// The hashes, ordered by their top 16 bits (stable within equal tops).
    pub hashes: Vec<u64>,
    /// `indices[i]` is the input index of `hashes[i]`.
    pub indices: Vec<u32>,
    spare_hashes: Vec<u64>,
    spare_indices: Vec<u32>,
}

impl HashOrder {
    /// Orders `hashes` (at most 2^32 of them) by their top 16 bits into `self.hashes`, with
    /// their input indices in `self.indices`.
    pub fn order(&mut self, hashes: &[u64]) {
        debug_assert!(u32::try_from(hashes.len()).is_ok());
        let low_shift = 64 - ORDER_BITS;
        let high_shift = 64 - ORDER_BITS / 2;
        // One counting pass serves both digits.
        let mut low_counts = [0usize; 257];
        let mut high_counts = [0usize; 257];
        for &hash in hashes {
            low_counts[((hash >> low_shift) & 0xff) as usize + 1] += 1;
            high_counts[(hash >> high_shift) as usize + 1] += 1;
        }
        for digit in 1..257 {
            low_counts[digit] += low_counts[digit - 1];
            high_counts[digit] += high_counts[digit - 1];
        }
        // Pass 1, by the low digit, from the input into the spare buffers.
        self.spare_hashes.clear();
        self.spare_hashes.resize(hashes.len(), 0);
        self.spare_indices.clear();
        self.spare_indices.resize(hashes.len(), 0);
        for (index, &hash) in hashes.iter().enumerate() {
            let digit = ((hash >> low_shift) & 0xff) as usize;
            let slot = low_counts[digit];
            low_counts[digit] = slot + 1;
            self.spare_hashes[slot] = hash;
            self.spare_indices[slot] = index as u32;
        }
        // Pass 2, by the high digit, stable, into the output.
        self.hashes.clear();
        self.hashes.resize(hashes.len(), 0);
        self.indices.clear();
        self.indices.resize(hashes.len(), 0);
        for (&hash, &index) in self.spare_hashes.iter().zip(&self.spare_indices) {
            let digit = (hash >> high_shift) as usize;
            let slot = high_counts[digit];
            high_counts[digit] = slot + 1;
            self.hashes[slot] = hash;
            self.indices[slot] = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_the_top_16_bits_stably_and_keeps_every_index() {
        let hashes: Vec<u64> = (0..5_000u64)
            .map(|index| crate::batch::murmur64_finalizer(index % 1_700))
            .chain([0, u64::MAX, 0xffff_0000_0000_0000, 0x0000_ffff_ffff_ffff])
            .collect();
        let mut order = HashOrder::default();
        order.order(&hashes);
        let mut expected: Vec<(u64, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(index, &hash)| (hash >> 48, index as u32))
            .collect();
        // Stable: equal tops keep input order, so (top, index) is the whole order.
        expected.sort_unstable();
        let got: Vec<(u64, u32)> = order
            .hashes
            .iter()
            .zip(&order.indices)
            .map(|(&hash, &index)| (hash >> 48, index))
            .collect();
        assert_eq!(got, expected);
        assert!(
            order
                .hashes
                .iter()
                .zip(&order.indices)
                .all(|(&hash, &index)| hashes[index as usize] == hash)
        );
        order.order(&[]);
        assert!(order.hashes.is_empty() && order.indices.is_empty());
    }
}

//! A phone's stored tags in lookup order, for the province's ordered stores: the tags' hashes
//! under the batch's seed, ordered by their top 11 bits with one counting-sort pass.
//!
//! An observation store kept in lookup order ([`crate::ObservationStore::order_lookups`]) reads
//! the filter front to back at match time. The province draws each phone's tags afresh, so it
//! orders them per phone before the match, and times that apart from the lookups: the phone
//! pays it once, when it stores its tags, as it pays their SHA-256.
//!
//! Eleven bits are enough: they split the first positions into 2,048 runs of about 1,370
//! fingerprints (2.7 KB at 16 bits) for the peak day's filter, so lookups in this order walk
//! the array a few cache lines at a time, and the two segments after the current run, where
//! the other two positions fall, stay in the L2 cache. One pass costs half of two.

/// Bits of the hash the order sorts by.
const ORDER_BITS: u32 = 11;

/// Buffers of one ordering, reused from phone to phone.
#[derive(Clone, Debug, Default)]
pub(super) struct HashOrder {
    /// The hashes, ordered by their top 11 bits (stable within equal tops).
    pub hashes: Vec<u64>,
    /// `indices[i]` is the input index of `hashes[i]`.
    pub indices: Vec<u32>,
}

impl HashOrder {
    /// Orders `hashes` (fewer than 2^32 of them) by their top 11 bits into `self.hashes`, with
    /// their input indices in `self.indices`.
    pub fn order(&mut self, hashes: &[u64]) {
        debug_assert!(u32::try_from(hashes.len()).is_ok());
        let shift = 64 - ORDER_BITS;
        let mut starts = [0u32; (1 << ORDER_BITS) + 1];
        for &hash in hashes {
            starts[(hash >> shift) as usize + 1] += 1;
        }
        for bucket in 1..starts.len() {
            starts[bucket] += starts[bucket - 1];
        }
        self.hashes.clear();
        self.hashes.resize(hashes.len(), 0);
        self.indices.clear();
        self.indices.resize(hashes.len(), 0);
        for (index, &hash) in hashes.iter().enumerate() {
            let bucket = (hash >> shift) as usize;
            let slot = starts[bucket] as usize;
            starts[bucket] += 1;
            self.hashes[slot] = hash;
            self.indices[slot] = index as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_the_top_11_bits_stably_and_keeps_every_index() {
        let hashes: Vec<u64> = (0..5_000u64)
            .map(|index| crate::batch::murmur64_finalizer(index % 1_700))
            .chain([0, u64::MAX, 0xffe0_0000_0000_0000, 0x001f_ffff_ffff_ffff])
            .collect();
        let mut order = HashOrder::default();
        order.order(&hashes);
        let mut expected: Vec<(u64, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(index, &hash)| (hash >> 53, index as u32))
            .collect();
        // Stable: equal tops keep input order, so (top, index) is the whole order.
        expected.sort_unstable();
        let got: Vec<(u64, u32)> = order
            .hashes
            .iter()
            .zip(&order.indices)
            .map(|(&hash, &index)| (hash >> 53, index))
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

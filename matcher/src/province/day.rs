//! The province's peak day on the server's side: every uploading case's GAEN keys, the signed
//! daily batch built from them with the real publisher path, and a local stand-in for the
//! server's confirm store (DESIGN §5: a bucket is one prefix range of the sorted digests).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ProvinceConfig, ProvinceError, sub_seed};
use crate::batch::{BatchKind, BatchParams, BatchSigner, BuiltBatch, build_batch};
use crate::expand::expand_keys;
use crate::scheme::{DiagnosisKey, GAEN_INTERVAL_SECONDS, GAEN_MAX_ROLLING_PERIOD, GaenKey};
use crate::tag::{ConfirmDigest, TaggedElement};

/// Region of the benchmark's batch: Thái Bình.
const REGION: &str = "VN-TB";

/// The UTC day of the benchmark, 18 March 2022, Thái Bình's peak (DESIGN §9), in days since
/// the epoch. Each case's newest key covers this day.
pub(super) const PEAK_DAY_NUMBER: u32 = 19_069;

/// Decoy padding of the batch: the publisher's default `min_elements` (DESIGN §6).
const MIN_ELEMENTS: usize = 10_000;

/// Delay between a key's last slot and its publication: the publisher's default
/// `release_delay` (DESIGN §6); it only sets the batch's `created_at`.
const RELEASE_DELAY_SECONDS: u64 = 2 * 3600;

/// The day's published keys, their signed batch, and the confirm store that goes with it.
pub(super) struct ProvinceDay {
    /// Every case's keys, case after case, newest day first within a case.
    pub keys: Vec<GaenKey>,
    /// Tags the keys expand into (before deduplication).
    pub tags: usize,
    /// The signed batch file, as built by the publisher's path.
    pub batch: BuiltBatch,
    /// DER SubjectPublicKeyInfo of the key that signed the batch.
    pub public_key_der: Vec<u8>,
    /// The confirm digests of every real element.
    pub confirm_store: ConfirmStore,
    /// Start (Unix seconds) of the earliest slot the keys cover.
    pub window_start: u64,
    /// End (Unix seconds, exclusive) of the latest slot the keys cover.
    pub window_end: u64,
}

impl ProvinceDay {
    /// Generates the cases' keys from the seed, expands them, builds and signs the day's batch
    /// with a freshly generated key, and collects the confirm digests.
    pub fn build(config: &ProvinceConfig) -> Result<ProvinceDay, ProvinceError> {
        let keys = case_keys(config);
        let diagnosis_keys: Vec<DiagnosisKey> =
            keys.iter().cloned().map(DiagnosisKey::Gaen).collect();
        let elements = expand_keys(&diagnosis_keys)?;
        drop(diagnosis_keys);
        let window_start = keys
            .iter()
            .map(GaenKey::first_slot_start)
            .min()
            .unwrap_or(0);
        let window_end = keys.iter().map(GaenKey::last_slot_end).max().unwrap_or(0);
        let params = BatchParams {
            region: REGION.to_owned(),
            sequence: 1,
            kind: BatchKind::Daily,
            created_at: window_end + RELEASE_DELAY_SECONDS,
            width: config.width,
            min_elements: MIN_ELEMENTS,
        };
        let signer = BatchSigner::generate();
        let mut decoy_rng = ChaCha8Rng::seed_from_u64(sub_seed(config.seed, "decoys"));
        let batch = build_batch(&params, &elements, &signer, &mut decoy_rng)?;
        let confirm_store = ConfirmStore::new(&elements, config.confirm_prefix_bits);
        Ok(ProvinceDay {
            keys,
            tags: elements.len(),
            batch,
            public_key_der: signer.public_key_der(),
            confirm_store,
            window_start,
            window_end,
        })
    }
}

/// Returns `keys_per_case` random full-day GAEN keys per case: one per day, for the days up to
/// and including the peak day, as a phone uploads its last 14 days.
fn case_keys(config: &ProvinceConfig) -> Vec<GaenKey> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(config.seed, "case keys"));
    let mut keys = Vec::with_capacity(config.cases * config.keys_per_case);
    for _case in 0..config.cases {
        for days_back in 0..config.keys_per_case as u32 {
            let mut key_data = [0u8; 16];
            rng.fill_bytes(&mut key_data);
            keys.push(GaenKey {
                key_data,
                rolling_start_interval_number: (PEAK_DAY_NUMBER - days_back)
                    * GAEN_MAX_ROLLING_PERIOD,
                rolling_period: GAEN_MAX_ROLLING_PERIOD,
            });
        }
    }
    debug_assert_eq!(
        u64::from(GAEN_MAX_ROLLING_PERIOD) * GAEN_INTERVAL_SECONDS,
        86_400
    );
    keys
}

/// Most prefix bits the confirm store indexes directly: 2^20 offsets (4 MiB) at most.
const MAX_INDEXED_PREFIX_BITS: u32 = 20;

/// The server's confirm store for one region, held locally: every real confirm digest of the
/// day, sorted, answering buckets by prefix (DESIGN §5).
pub(super) struct ConfirmStore {
    digests: Vec<ConfirmDigest>,
    prefix_bits: u32,
    /// Bits of the prefix that `offsets` indexes: `prefix_bits`, at most 20.
    indexed_bits: u32,
    /// `offsets[p]..offsets[p + 1]` is the range of digests whose first `indexed_bits` bits
    /// are `p`; a bucket is then one lookup, like the server's prefix range scan, instead of
    /// two binary searches over a store that does not fit in cache.
    offsets: Vec<usize>,
}

impl ConfirmStore {
    /// Returns the store of the elements' distinct digests, bucketed by `prefix_bits` bits.
    pub fn new(elements: &[TaggedElement], prefix_bits: u32) -> ConfirmStore {
        let mut digests: Vec<ConfirmDigest> = elements
            .iter()
            .map(|element| element.tag.confirm_digest())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let indexed_bits = prefix_bits.min(MAX_INDEXED_PREFIX_BITS);
        let mut offsets = vec![0usize; (1 << indexed_bits) + 1];
        for digest in &digests {
            offsets[digest.prefix(indexed_bits) as usize + 1] += 1;
        }
        for index in 1..offsets.len() {
            offsets[index] += offsets[index - 1];
        }
        ConfirmStore {
            digests,
            prefix_bits,
            indexed_bits,
            offsets,
        }
    }

    /// Returns the number of distinct digests held.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Returns the bucket a phone fetches for a hit with this digest: every stored digest that
    /// shares its first `prefix_bits` bits, sorted. Sorting by bytes sorts by prefix, so the
    /// bucket is one contiguous range.
    pub fn bucket_of(&self, digest: &ConfirmDigest) -> &[ConfirmDigest] {
        let indexed = digest.prefix(self.indexed_bits) as usize;
        let candidates = &self.digests[self.offsets[indexed]..self.offsets[indexed + 1]];
        if self.indexed_bits == self.prefix_bits {
            return candidates;
        }
        // Longer prefixes narrow the indexed range by two binary searches.
        let prefix = digest.prefix(self.prefix_bits);
        let start = candidates.partition_point(|stored| stored.prefix(self.prefix_bits) < prefix);
        let len =
            candidates[start..].partition_point(|stored| stored.prefix(self.prefix_bits) == prefix);
        &candidates[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::Scheme;
    use crate::tag::Tag;

    #[test]
    fn a_bucket_holds_exactly_the_digests_sharing_the_prefix() {
        let elements: Vec<TaggedElement> = (0..5_000u64)
            .map(|index| TaggedElement {
                slot_start: index,
                tag: Tag::compute(Scheme::Static, index * 900, b"AB12CD"),
            })
            .collect();
        for bits in [0, 8, 20, 24, 32] {
            let store = ConfirmStore::new(&elements, bits);
            assert_eq!(store.len(), 5_000);
            for element in elements.iter().take(50) {
                let digest = element.tag.confirm_digest();
                let bucket = store.bucket_of(&digest);
                let expected = elements
                    .iter()
                    .filter(|other| other.tag.confirm_digest().prefix(bits) == digest.prefix(bits))
                    .count();
                assert_eq!(bucket.len(), expected, "{bits} bits");
                assert!(bucket.iter().all(|d| d.prefix(bits) == digest.prefix(bits)));
                assert!(bucket.contains(&digest));
            }
        }
    }
}

//! A store's tags in the order a filter reads them: their DESIGN §4 hashes under one filter
//! seed, sorted, so that a daily match probes the batch front to back with no hashing or
//! sorting at match time.
//!
//! The hash depends on the filter's seed, which xorf draws from a fixed sequence and keeps at
//! its first value unless construction fails; a store ordered for that seed serves every batch
//! built with it, and a batch with another seed is matched by ordering at match time.

use super::ObservedTag;

/// Tags ordered by their hash under one filter seed.
#[derive(Clone, Debug, Default)]
pub(super) struct LookupOrder {
    /// The filter seed the hashes are computed with.
    seed: u64,
    /// `murmur64(filter_key + seed)` of each ordered tag, ascending.
    hashes: Vec<u64>,
    /// Index in the store of the tag behind each hash.
    tags: Vec<u32>,
}

impl LookupOrder {
    /// Returns the order of `tags` under `seed`, reusing `self` when it already orders a prefix
    /// of them under the same seed: only the tags added since are hashed, sorted and merged in.
    pub fn extended(mut self, seed: u64, tags: &[ObservedTag]) -> LookupOrder {
        if self.seed != seed || self.hashes.len() > tags.len() {
            self = LookupOrder {
                seed,
                ..LookupOrder::default()
            };
        }
        let ordered = self.hashes.len();
        let mut added: Vec<(u64, u32)> = tags[ordered..]
            .iter()
            .enumerate()
            .map(|(offset, observed)| {
                let hash =
                    crate::batch::murmur64_finalizer(observed.tag.filter_key().wrapping_add(seed));
                // Stores hold far fewer than 2^32 tags; `ObservationStore` checks.
                (hash, (ordered + offset) as u32)
            })
            .collect();
        added.sort_unstable();
        let mut hashes = Vec::with_capacity(tags.len());
        let mut indices = Vec::with_capacity(tags.len());
        let mut old = self.hashes.iter().copied().zip(self.tags.iter().copied());
        let mut new = added.into_iter();
        let (mut next_old, mut next_new) = (old.next(), new.next());
        loop {
            let take = match (next_old, next_new) {
                (Some(a), Some(b)) if a <= b => {
                    next_old = old.next();
                    a
                }
                (_, Some(b)) => {
                    next_new = new.next();
                    b
                }
                (Some(a), None) => {
                    next_old = old.next();
                    a
                }
                (None, None) => break,
            };
            hashes.push(take.0);
            indices.push(take.1);
        }
        LookupOrder {
            seed,
            hashes,
            tags: indices,
        }
    }

    /// Returns whether the order covers exactly `tag_count` tags under `seed`.
    pub fn covers(&self, seed: u64, tag_count: usize) -> bool {
        self.seed == seed && self.hashes.len() == tag_count
    }

    /// Returns the hashes, ascending.
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// Returns the store index of the tag behind the hash at `position`.
    pub fn tag_at(&self, position: usize) -> usize {
        self.tags[position] as usize
    }
}

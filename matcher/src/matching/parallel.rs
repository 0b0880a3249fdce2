//! Matching many phones at once with rayon: the province benchmark's engine (DESIGN §9:
//! 751,416 phones × 10,000 observations × 3 slot candidates against a day's batch).
//!
//! Two entry points: [`match_phones`] over real observation stores, and
//! [`match_generated_phones`] over filter keys that a caller generates per phone on the fly, so
//! that billions of observation tags never have to sit in memory at once.

use rayon::prelude::*;

use super::{Candidate, ObservationStore};
use crate::batch::BatchFile;

/// The filter hits of one phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneHits {
    /// Index of the phone in the input.
    pub phone: usize,
    /// Its candidates, in store order.
    pub candidates: Vec<Candidate>,
}

/// Matches every phone's store against the batch in parallel; returns only phones with at least
/// one candidate, in phone order.
pub fn match_phones(phones: &[ObservationStore], batch: &BatchFile<'_>) -> Vec<PhoneHits> {
    phones
        .par_iter()
        .enumerate()
        .filter_map(|(phone, store)| {
            let candidates = store.match_batch(batch);
            (!candidates.is_empty()).then_some(PhoneHits { phone, candidates })
        })
        .collect()
}

/// One filter hit among generated filter keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterHit {
    /// Index of the phone.
    pub phone: usize,
    /// Index of the key in the phone's generated keys.
    pub key_index: usize,
    /// The filter key that hit.
    pub filter_key: u64,
}

/// What [`match_generated_phones`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeneratedMatch {
    /// Filter lookups performed.
    pub lookups: u64,
    /// Every hit, ordered by phone then key index.
    pub hits: Vec<FilterHit>,
}

/// Looks up, for each of `phone_count` phones, the filter keys that `generate(phone, buffer)`
/// writes into a reused buffer (cleared before each call), in parallel over phones.
pub fn match_generated_phones<G>(
    phone_count: usize,
    batch: &BatchFile<'_>,
    generate: G,
) -> GeneratedMatch
where
    G: Fn(usize, &mut Vec<u64>) + Sync,
{
    let filter = batch.filter();
    let (lookups, mut hits) = (0..phone_count)
        .into_par_iter()
        .fold(
            || (Vec::new(), 0u64, Vec::new()),
            |(mut buffer, mut lookups, mut hits): (Vec<u64>, u64, Vec<FilterHit>), phone| {
                buffer.clear();
                generate(phone, &mut buffer);
                lookups += buffer.len() as u64;
                for (key_index, &filter_key) in buffer.iter().enumerate() {
                    if filter.contains_key(filter_key) {
                        hits.push(FilterHit {
                            phone,
                            key_index,
                            filter_key,
                        });
                    }
                }
                (buffer, lookups, hits)
            },
        )
        .map(|(_, lookups, hits)| (lookups, hits))
        .reduce(
            || (0, Vec::new()),
            |(lookups_a, mut hits_a), (lookups_b, hits_b)| {
                hits_a.extend(hits_b);
                (lookups_a + lookups_b, hits_a)
            },
        );
    hits.sort_unstable_by_key(|hit| (hit.phone, hit.key_index));
    GeneratedMatch { lookups, hits }
}

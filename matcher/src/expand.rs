//! Server-side expansion of many diagnosis keys into tagged elements, in parallel with rayon.
//!
//! The publisher calls this on every key that became releasable: a peak day is 17,220 GAEN keys
//! and 2.48 M tags (DESIGN §9), so the work is spread over the rayon pool one key per task.

use rayon::prelude::*;

use crate::scheme::{DiagnosisKey, SchemeError};
use crate::tag::{Tag, TaggedElement};

/// Expands every key into its tagged elements, in key order then slot order.
///
/// An invalid key is not skipped: the first one found makes the whole call fail, because the
/// caller (the publisher) must never publish a partial set of a key's identifiers.
pub fn expand_keys(keys: &[DiagnosisKey]) -> Result<Vec<TaggedElement>, SchemeError> {
    // A few chunks per thread balance the load without one small vector per key.
    let chunk_len = keys.len().div_ceil(rayon::current_num_threads() * 4).max(1);
    let per_chunk: Vec<Vec<TaggedElement>> = keys
        .par_chunks(chunk_len)
        .map(expand_keys_sequential)
        .collect::<Result<_, _>>()?;
    let total = per_chunk.iter().map(Vec::len).sum();
    let mut elements = Vec::with_capacity(total);
    for chunk in per_chunk {
        elements.extend_from_slice(&chunk);
    }
    Ok(elements)
}

/// Expands every key on the calling thread only; the baseline of the expansion benchmark.
pub fn expand_keys_sequential(keys: &[DiagnosisKey]) -> Result<Vec<TaggedElement>, SchemeError> {
    let mut elements = Vec::new();
    for key in keys {
        let scheme = key.scheme();
        key.for_each_identifier(|slot_start, identifier| {
            elements.push(TaggedElement {
                slot_start,
                tag: Tag::compute(scheme, slot_start, identifier),
            });
        })?;
    }
    Ok(elements)
}

//! Building a batch file: deduplicate filter keys, pad with random decoys, build the filter,
//! write the body of DESIGN §4, sign it.

use std::collections::HashSet;

use rand::RngCore;
use rayon::slice::ParallelSliceMut;
use sha2::{Digest, Sha256};

use super::filter::{BuiltFilter, build_filter};
use super::{
    BATCH_MAGIC, BATCH_VERSION, BatchError, BatchKind, BatchSigner, FingerprintWidth,
    is_valid_region,
};
use crate::tag::TaggedElement;

/// What a batch says about itself, besides its elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchParams {
    /// Region the batch belongs to, 1..=32 printable ASCII bytes.
    pub region: String,
    /// Position of the batch in its region's sequence.
    pub sequence: u64,
    /// Hourly batch or daily roll-up.
    pub kind: BatchKind,
    /// Unix seconds at which the batch was built.
    pub created_at: u64,
    /// Fingerprint width of the filter.
    pub width: FingerprintWidth,
    /// Decoy keys pad the filter up to this many elements, so that a batch's size does not
    /// reveal how few keys it holds.
    pub min_elements: usize,
}

/// A signed batch file and what the publisher records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltBatch {
    /// The whole file: body, key id, signature.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of the body.
    pub batch_id: String,
    /// Keys in the filter, decoys included.
    pub element_count: u32,
    /// Distinct real filter keys in the filter.
    pub real_elements: usize,
    /// Earliest slot start of the real elements (0 when there are none).
    pub slot_min: u64,
    /// Latest slot start of the real elements (0 when there are none).
    pub slot_max: u64,
}

/// Builds and signs a batch of `elements` (DESIGN §4, §6).
///
/// Filter keys are deduplicated (two tags may share one), then random decoy keys distinct from
/// the real ones, drawn from `rng`, pad the set up to `params.min_elements`. The same elements,
/// parameters, key and RNG state always give the same bytes.
pub fn build_batch<R: RngCore>(
    params: &BatchParams,
    elements: &[TaggedElement],
    signer: &BatchSigner,
    rng: &mut R,
) -> Result<BuiltBatch, BatchError> {
    let filter_keys = elements
        .iter()
        .map(|element| element.tag.filter_key())
        .collect();
    let slot_range = elements
        .iter()
        .map(|element| element.slot_start)
        .fold(None, |range, slot| {
            Some(match range {
                None => (slot, slot),
                Some((low, high)) => (u64::min(low, slot), u64::max(high, slot)),
            })
        });
    build_batch_from_filter_keys(params, filter_keys, slot_range, signer, rng)
}

/// Builds and signs a batch from raw filter keys, with the slot range of the real elements given
/// apart (`None` when unknown or empty, written as 0, 0). [`build_batch`] is this after
/// computing filter keys; fixture makers with bare tags call it directly.
pub fn build_batch_from_filter_keys<R: RngCore>(
    params: &BatchParams,
    mut filter_keys: Vec<u64>,
    slot_range: Option<(u64, u64)>,
    signer: &BatchSigner,
    rng: &mut R,
) -> Result<BuiltBatch, BatchError> {
    if !is_valid_region(params.region.as_bytes()) {
        return Err(BatchError::InvalidRegion(params.region.clone()));
    }
    filter_keys.par_sort_unstable();
    filter_keys.dedup();
    let real_elements = filter_keys.len();
    pad_with_decoys(&mut filter_keys, params.min_elements, rng);
    let element_count = u32::try_from(filter_keys.len())
        .map_err(|_| BatchError::TooManyElements(filter_keys.len()))?;
    let filter = build_filter(&filter_keys, params.width)?;
    drop(filter_keys);

    let (slot_min, slot_max) = slot_range.unwrap_or((0, 0));
    let body = write_body(params, slot_min, slot_max, element_count, &filter);
    let batch_id = hex::encode(Sha256::digest(&body));
    let signature = signer.sign(&body);
    let bytes = append_signature(body, signer.key_id(), &signature)?;
    Ok(BuiltBatch {
        bytes,
        batch_id,
        element_count,
        real_elements,
        slot_min,
        slot_max,
    })
}

/// Adds random keys distinct from `sorted_keys` and from each other until there are
/// `min_elements`, leaving the whole set sorted.
fn pad_with_decoys<R: RngCore>(sorted_keys: &mut Vec<u64>, min_elements: usize, rng: &mut R) {
    let missing = min_elements.saturating_sub(sorted_keys.len());
    if missing == 0 {
        return;
    }
    let mut decoys = HashSet::with_capacity(missing);
    while decoys.len() < missing {
        let candidate = rng.next_u64();
        if sorted_keys.binary_search(&candidate).is_err() {
            decoys.insert(candidate);
        }
    }
    sorted_keys.extend(decoys);
    sorted_keys.par_sort_unstable();
}

/// Writes the body: every field of DESIGN §4 up to and including the fingerprints.
fn write_body(
    params: &BatchParams,
    slot_min: u64,
    slot_max: u64,
    element_count: u32,
    filter: &BuiltFilter,
) -> Vec<u8> {
    let region = params.region.as_bytes();
    let mut body = Vec::with_capacity(96 + region.len() + filter.fingerprint_bytes.len());
    body.extend_from_slice(BATCH_MAGIC);
    body.push(BATCH_VERSION);
    body.push(params.width.filter_kind());
    body.extend_from_slice(&0u16.to_le_bytes());
    // The region was checked to be 1..=32 bytes, so its length fits the byte.
    body.push(region.len() as u8);
    body.extend_from_slice(region);
    body.extend_from_slice(&params.sequence.to_le_bytes());
    body.push(params.kind.byte());
    body.extend_from_slice(&params.created_at.to_le_bytes());
    body.extend_from_slice(&slot_min.to_le_bytes());
    body.extend_from_slice(&slot_max.to_le_bytes());
    body.extend_from_slice(&element_count.to_le_bytes());
    body.extend_from_slice(&filter.descriptor.seed.to_le_bytes());
    body.extend_from_slice(&filter.descriptor.segment_length.to_le_bytes());
    body.extend_from_slice(&filter.descriptor.segment_length_mask.to_le_bytes());
    body.extend_from_slice(&filter.descriptor.segment_count_length.to_le_bytes());
    body.extend_from_slice(&filter.fingerprint_count.to_le_bytes());
    body.extend_from_slice(&filter.fingerprint_bytes);
    body
}

/// Appends the signature section: `key_id_len, key_id, sig_len, signature`.
fn append_signature(
    mut bytes: Vec<u8>,
    key_id: &str,
    signature: &[u8],
) -> Result<Vec<u8>, BatchError> {
    let key_id_len = u8::try_from(key_id.len()).map_err(|_| BatchError::InvalidKeyId)?;
    let signature_len =
        u16::try_from(signature.len()).map_err(|_| BatchError::SignatureEncoding)?;
    bytes.push(key_id_len);
    bytes.extend_from_slice(key_id.as_bytes());
    bytes.extend_from_slice(&signature_len.to_le_bytes());
    bytes.extend_from_slice(signature);
    Ok(bytes)
}

//! Helpers shared by the integration tests: parameters, elements and seeded randomness.

#![allow(dead_code, clippy::unwrap_used)]

use exposure_matcher::{
    BatchKind, BatchParams, BatchSigner, FingerprintWidth, Scheme, Tag, TaggedElement,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Returns hourly batch parameters for region `VN-TB`.
pub fn params(width: FingerprintWidth, min_elements: usize) -> BatchParams {
    BatchParams {
        region: "VN-TB".to_owned(),
        sequence: 42,
        kind: BatchKind::Hourly,
        created_at: 1_767_232_800,
        width,
        min_elements,
    }
}

/// Returns GAEN export parameters for region `VN-TB`, 2026-01-01 00:00 to 01:00 UTC, key id 452.
pub fn gaen_params(
    min_records: usize,
    max_records_per_file: usize,
) -> exposure_matcher::gaen::GaenExportParams {
    exposure_matcher::gaen::GaenExportParams {
        region: "VN-TB".to_owned(),
        start_timestamp: 1_767_225_600,
        end_timestamp: 1_767_229_200,
        verification_key_id: "452".to_owned(),
        min_records,
        max_records_per_file,
    }
}

/// Returns a seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Returns `count` distinct static-scheme elements, one per 900-second slot.
pub fn elements(count: usize, salt: u64) -> Vec<TaggedElement> {
    (0..count as u64)
        .map(|index| {
            let slot_start = 1_767_225_600 + index * 900;
            TaggedElement {
                slot_start,
                tag: Tag::compute(Scheme::Static, slot_start, &salt.to_le_bytes()),
            }
        })
        .collect()
}

/// Where the official vectors live: the repository's one copy, beside the end-to-end tests
/// (`tests/vectors/`, with a README naming their source).
pub const GAEN_VECTORS_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/gaen-rpi.tsv");

/// Returns the Google/Apple GAEN vector file; fails with a message naming the missing path.
pub fn gaen_vectors() -> String {
    std::fs::read_to_string(GAEN_VECTORS_PATH).unwrap_or_else(|error| {
        panic!(
            "the official GAEN vectors are missing: cannot read {GAEN_VECTORS_PATH} ({error}); \
             the file is part of the repository (tests/vectors/, see its README)"
        )
    })
}

/// Returns one signer per test binary run.
pub fn signer() -> BatchSigner {
    BatchSigner::generate()
}

/// The three widths.
pub const WIDTHS: [FingerprintWidth; 3] = [
    FingerprintWidth::Bits8,
    FingerprintWidth::Bits16,
    FingerprintWidth::Bits32,
];

//! Malformed input: every single-byte corruption and every truncation of a valid batch file is
//! rejected with an error (format at parse time, or signature at verify time), never a panic.

#![allow(clippy::unwrap_used)]

mod common;

use common::{elements, params, rng, signer};
use exposure_matcher::{BatchError, BatchFile, BatchSigner, FingerprintWidth, build_batch};
use proptest::prelude::*;
use rayon::prelude::*;

/// Returns whether the bytes are rejected by parse or by verify with `spki`.
fn rejected(bytes: &[u8], spki: &[u8]) -> Result<BatchError, String> {
    match BatchFile::parse(bytes) {
        Err(error) => Ok(error),
        Ok(batch) => match batch.verify(spki) {
            Err(error) => Ok(error),
            Ok(()) => Err("corrupted file parsed and verified".to_owned()),
        },
    }
}

fn small_file(signer: &BatchSigner, count: usize, seed: u64) -> Vec<u8> {
    build_batch(
        &params(FingerprintWidth::Bits8, 0),
        &elements(count, seed),
        signer,
        &mut rng(seed),
    )
    .unwrap()
    .bytes
}

#[test]
fn every_single_byte_corruption_of_a_small_file_is_rejected() {
    let signer = signer();
    let spki = signer.public_key_der();
    let original = small_file(&signer, 100, 1);
    BatchFile::parse(&original).unwrap().verify(&spki).unwrap();
    // Every position, every other value: about 90,000 files, checked on all cores.
    let failures: Vec<String> = (0..original.len())
        .into_par_iter()
        .flat_map_iter(|position| {
            let original = &original;
            let spki = &spki;
            (1..=255u8).filter_map(move |delta| {
                let mut corrupted = original.clone();
                corrupted[position] = corrupted[position].wrapping_add(delta);
                rejected(&corrupted, spki)
                    .err()
                    .map(|message| format!("byte {position} + {delta}: {message}"))
            })
        })
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn every_truncation_is_rejected() {
    let signer = signer();
    let original = small_file(&signer, 300, 2);
    for length in 0..original.len() {
        assert!(
            BatchFile::parse(&original[..length]).is_err(),
            "truncated to {length}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_corruptions_and_truncations_of_random_files_are_rejected(
        count in 0usize..400,
        seed: u64,
        corruptions in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 64),
    ) {
        let signer = signer();
        let spki = signer.public_key_der();
        let original = small_file(&signer, count, seed);
        for (index, delta) in corruptions {
            let position = index.index(original.len());
            let mut corrupted = original.clone();
            corrupted[position] = corrupted[position].wrapping_add(delta);
            prop_assert!(rejected(&corrupted, &spki).is_ok(), "byte {} + {}", position, delta);
        }
        for length in 0..original.len() {
            prop_assert!(BatchFile::parse(&original[..length]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = BatchFile::parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let signer = signer();
        let original = small_file(&signer, 10, 3);
        let mut bytes = original[..60].to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(batch) = BatchFile::parse(&bytes) {
            let _ = batch.contains_key(12345);
            let _ = batch.verify(&signer.public_key_der());
        }
    }
}

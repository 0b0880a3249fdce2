//! The batch file of DESIGN §4: build → parse round trips, signatures, decoy padding, and the
//! byte-level lookup against xorf's own `contains`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{WIDTHS, elements, params, rng, signer};
use exposure_matcher::batch::{BATCH_MAGIC, build_batch_from_filter_keys};
use exposure_matcher::{
    BatchError, BatchFile, BatchKind, BatchSigner, FingerprintWidth, build_batch,
    key_id_for_public_key_der,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use xorf::{BinaryFuse8, BinaryFuse16, BinaryFuse32, Filter};

#[test]
fn round_trip_keeps_every_header_field() {
    let signer = signer();
    for width in WIDTHS {
        let elements = elements(3_000, 1);
        let params = params(width, 10_000);
        let built = build_batch(&params, &elements, &signer, &mut rng(7)).unwrap();
        let batch = BatchFile::parse(&built.bytes).unwrap();
        let header = batch.header();
        assert_eq!(header.version, 1);
        assert_eq!(header.filter_kind, width);
        assert_eq!(header.region, "VN-TB");
        assert_eq!(header.sequence, 42);
        assert_eq!(header.kind, BatchKind::Hourly);
        assert_eq!(header.created_at, 1_767_232_800);
        assert_eq!(header.slot_min, 1_767_225_600);
        assert_eq!(header.slot_max, 1_767_225_600 + 2_999 * 900);
        assert_eq!(
            (header.slot_min, header.slot_max),
            (built.slot_min, built.slot_max)
        );
        assert_eq!(header.element_count, 10_000);
        assert_eq!(built.element_count, 10_000);
        assert_eq!(built.real_elements, 3_000);
        assert_eq!(batch.key_id(), signer.key_id());
        assert_eq!(batch.batch_id(), built.batch_id);
        assert_eq!(built.batch_id, hex::encode(Sha256::digest(batch.body())));
        assert!(built.bytes.starts_with(BATCH_MAGIC));
        batch.verify(&signer.public_key_der()).unwrap();
        assert!(elements.iter().all(|element| batch.contains(&element.tag)));
    }
}

#[test]
fn same_input_and_seed_give_identical_bytes() {
    let signer = signer();
    let elements = elements(500, 2);
    let mut shuffled = elements.clone();
    shuffled.reverse();
    let params = params(FingerprintWidth::Bits16, 2_000);
    let first = build_batch(&params, &elements, &signer, &mut rng(1)).unwrap();
    let second = build_batch(&params, &shuffled, &signer, &mut rng(1)).unwrap();
    assert_eq!(
        first.bytes, second.bytes,
        "order of elements and RFC 6979 do not change bytes"
    );
    let third = build_batch(&params, &elements, &signer, &mut rng(2)).unwrap();
    assert_ne!(first.batch_id, third.batch_id, "other decoys, other batch");
}

#[test]
fn duplicates_are_removed_and_decoys_are_distinct_from_real_keys() {
    let signer = signer();
    let mut elements = elements(1_000, 3);
    elements.extend_from_within(..);
    let built = build_batch(
        &params(FingerprintWidth::Bits8, 1_500),
        &elements,
        &signer,
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(built.real_elements, 1_000);
    assert_eq!(built.element_count, 1_500);
    let no_padding = build_batch(
        &params(FingerprintWidth::Bits8, 10),
        &elements,
        &signer,
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(no_padding.element_count, 1_000);
}

#[test]
fn decoys_never_collide_with_real_keys_even_when_the_rng_repeats_them() {
    /// An RNG that returns the real keys first, then counts up.
    struct Replaying {
        values: Vec<u64>,
        next: usize,
    }
    impl RngCore for Replaying {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            let value = self
                .values
                .get(self.next)
                .copied()
                .unwrap_or(self.next as u64);
            self.next += 1;
            value
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.iter_mut()
                .for_each(|byte| *byte = self.next_u64() as u8);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    let real: Vec<u64> = (0..100).map(|value| value * 1_000_003).collect();
    let mut rng = Replaying {
        values: real.iter().chain(real.iter()).copied().collect(),
        next: 0,
    };
    let built = build_batch_from_filter_keys(
        &params(FingerprintWidth::Bits16, 300),
        real.clone(),
        None,
        &signer(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(built.real_elements, 100);
    assert_eq!(built.element_count, 300);
    assert_eq!((built.slot_min, built.slot_max), (0, 0));
}

#[test]
fn empty_and_tiny_batches_build_and_parse() {
    let signer = signer();
    for width in WIDTHS {
        for count in [0, 1, 2, 3, 4, 5] {
            let elements = elements(count, 4);
            let built = build_batch(&params(width, 0), &elements, &signer, &mut rng(4)).unwrap();
            let batch = BatchFile::parse(&built.bytes).unwrap();
            batch.verify(&signer.public_key_der()).unwrap();
            assert_eq!(batch.header().element_count as usize, count);
            assert!(elements.iter().all(|element| batch.contains(&element.tag)));
            if count == 0 {
                assert_eq!((batch.header().slot_min, batch.header().slot_max), (0, 0));
            }
        }
    }
}

#[test]
fn byte_lookup_equals_xorf_contains() {
    let mut random = rng(5);
    for size in [1usize, 10, 1_000, 50_000] {
        let mut keys: Vec<u64> = (0..size).map(|_| random.next_u64()).collect();
        keys.sort_unstable();
        keys.dedup();
        for width in WIDTHS {
            let built = build_batch_from_filter_keys(
                &params(width, 0),
                keys.clone(),
                None,
                &signer(),
                &mut rng(0),
            )
            .unwrap();
            let batch = BatchFile::parse(&built.bytes).unwrap();
            let probes: Vec<u64> = keys
                .iter()
                .copied()
                .chain((0..200_000).map(|_| random.next_u64()))
                .collect();
            let header = batch.header();
            let check = |contains: &dyn Fn(u64) -> bool, descriptor: (u64, u32, u32, u32)| {
                assert_eq!(
                    descriptor,
                    (
                        header.seed,
                        header.segment_length,
                        header.segment_length_mask,
                        header.segment_count_length
                    )
                );
                for &probe in &probes {
                    assert_eq!(
                        batch.contains_key(probe),
                        contains(probe),
                        "key {probe} at {width:?}"
                    );
                }
                let mut blocked_hits = Vec::new();
                batch
                    .filter()
                    .for_each_hit(&probes, |index| blocked_hits.push(index));
                let hits: Vec<usize> = (0..probes.len())
                    .filter(|&index| contains(probes[index]))
                    .collect();
                assert_eq!(blocked_hits, hits, "blocked lookup at {width:?}");
            };
            match width {
                FingerprintWidth::Bits8 => {
                    let filter = BinaryFuse8::try_from(&keys[..]).unwrap();
                    let d = &filter.descriptor;
                    check(
                        &|key| filter.contains(&key),
                        (
                            d.seed,
                            d.segment_length,
                            d.segment_length_mask,
                            d.segment_count_length,
                        ),
                    );
                }
                FingerprintWidth::Bits16 => {
                    let filter = BinaryFuse16::try_from(&keys[..]).unwrap();
                    let d = &filter.descriptor;
                    check(
                        &|key| filter.contains(&key),
                        (
                            d.seed,
                            d.segment_length,
                            d.segment_length_mask,
                            d.segment_count_length,
                        ),
                    );
                }
                FingerprintWidth::Bits32 => {
                    let filter = BinaryFuse32::try_from(&keys[..]).unwrap();
                    let d = &filter.descriptor;
                    check(
                        &|key| filter.contains(&key),
                        (
                            d.seed,
                            d.segment_length,
                            d.segment_length_mask,
                            d.segment_count_length,
                        ),
                    );
                }
            }
        }
    }
}

#[test]
fn verification_names_the_failure() {
    let signer = signer();
    let other = BatchSigner::generate();
    let built = build_batch(
        &params(FingerprintWidth::Bits8, 0),
        &elements(10, 6),
        &signer,
        &mut rng(6),
    )
    .unwrap();
    let batch = BatchFile::parse(&built.bytes).unwrap();
    assert!(matches!(
        batch.verify(&other.public_key_der()),
        Err(BatchError::KeyIdMismatch { .. })
    ));
    assert_eq!(
        batch.verify(b"not a key"),
        Err(BatchError::KeyIdMismatch {
            file: signer.key_id().to_owned(),
            given: key_id_for_public_key_der(b"not a key"),
        })
    );
    // A batch whose body changed but whose key id still names the signer.
    let mut tampered = built.bytes.clone();
    let last_fingerprint = batch.body().len() - 1;
    tampered[last_fingerprint] ^= 1;
    let tampered = BatchFile::parse(&tampered).unwrap();
    assert_eq!(
        tampered.verify(&signer.public_key_der()),
        Err(BatchError::SignatureMismatch)
    );
}

#[test]
fn parse_errors_name_the_field() {
    let built = build_batch(
        &params(FingerprintWidth::Bits16, 0),
        &elements(20, 7),
        &signer(),
        &mut rng(7),
    )
    .unwrap();
    let bytes = &built.bytes;
    let with = |position: usize, value: u8| {
        let mut copy = bytes.clone();
        copy[position] = value;
        BatchFile::parse(&copy).err()
    };
    assert_eq!(with(0, b'X'), Some(BatchError::BadMagic));
    assert_eq!(with(4, 2), Some(BatchError::UnsupportedVersion(2)));
    assert_eq!(with(5, 4), Some(BatchError::UnknownFilterKind(4)));
    assert_eq!(with(6, 1), Some(BatchError::ReservedNotZero(1)));
    assert_eq!(with(8, 0), Some(BatchError::InvalidRegion(String::new())));
    assert_eq!(
        with(9, b' '),
        Some(BatchError::InvalidRegion(" N-TB".to_owned()))
    );
    let kind_position = 9 + 5 + 8;
    assert_eq!(
        with(kind_position, 3),
        Some(BatchError::UnknownBatchKind(3))
    );
    assert_eq!(
        BatchFile::parse(&bytes[..3]).err(),
        Some(BatchError::Truncated { field: "magic" })
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        BatchFile::parse(&longer).err(),
        Some(BatchError::TrailingBytes(1))
    );
    let error = BatchFile::parse(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(error, BatchError::Truncated { field: "signature" });
    assert_eq!(error.to_string(), "file truncated in field signature");
}

#[test]
fn signer_pem_round_trip_and_key_id() {
    let signer = signer();
    let pem = signer.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let again = BatchSigner::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(again.key_id(), signer.key_id());
    assert_eq!(again.public_key_der(), signer.public_key_der());
    let expected = &hex::encode(Sha256::digest(signer.public_key_der()))[..16];
    assert_eq!(signer.key_id(), expected);
    assert_eq!(
        signer.key_id(),
        key_id_for_public_key_der(&signer.public_key_der())
    );
    assert!(
        signer
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(
        BatchSigner::from_pkcs8_pem("garbage").unwrap_err(),
        BatchError::InvalidSigningKey
    );
    let distinct: HashSet<String> = (0..4)
        .map(|_| BatchSigner::generate().key_id().to_owned())
        .collect();
    assert_eq!(distinct.len(), 4);
}

#[test]
fn builder_rejects_bad_regions() {
    for region in ["", "VN TB", "Việt", &"A".repeat(33)] {
        let mut params = params(FingerprintWidth::Bits8, 0);
        params.region = region.to_owned();
        assert!(matches!(
            build_batch(&params, &elements(3, 8), &signer(), &mut rng(8)),
            Err(BatchError::InvalidRegion(_))
        ));
    }
}

//! The batch file layout of DESIGN §4, byte for byte: a small batch of DESIGN §3's vector tags,
//! built with a fixed signing key and a fixed decoy seed, must equal the golden file checked in
//! under `tests/golden/`. The test then reads every field itself at its absolute offset (not
//! through the crate's parser), looks the vector filter keys up with its own implementation of
//! DESIGN §4's lookup, and verifies the signature with the public key `openssl` derived from the
//! key file. A writer and a parser that agreed on a wrong layout (two equal-width fields
//! swapped) would still round-trip; they would not pass this.
//!
//! To regenerate the golden files after a deliberate format change:
//! `UPDATE_GOLDEN=1 cargo nextest run --release -p exposure-matcher --test golden_batch`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use exposure_matcher::{
    BatchFile, BatchKind, BatchParams, BatchSigner, FingerprintWidth, Tag, TaggedElement,
    build_batch,
};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use rand::SeedableRng as _;
use sha2::{Digest as _, Sha256};

/// DESIGN §3's vectors: (slot_start, tag).
const VECTOR_TAGS: [(u64, &str); 4] = [
    // GAEN, j = 0 and j = 1.
    (
        1_585_785_600,
        "04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b",
    ),
    (
        1_585_786_200,
        "f234c1c92bf858efbae7f2e2b84f377c68f4dc3f3e003af5c7f6d4a858e47419",
    ),
    // Bluezone, k = 0.
    (
        1_767_225_600,
        "23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8",
    ),
    // Static `AB12CD`.
    (
        1_767_225_600,
        "063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b",
    ),
];

/// Real elements plus decoys.
const ELEMENT_COUNT: u32 = 16;
const SEQUENCE: u64 = 7;
const CREATED_AT: u64 = 1_767_236_400;
/// Seed of the ChaCha8 stream the decoys are drawn from.
const DECOY_SEED: u64 = 20_260_101;
/// Key id of `golden/signing-key.pem`: the first 16 hex digits of the SHA-256 of its DER
/// SubjectPublicKeyInfo, computed with
/// `openssl pkey -in signing-key.pem -pubout -outform DER | sha256sum`.
const KEY_ID: &str = "067cf3ffb777bc65";

// Absolute offsets of DESIGN §4's fields for the 5-byte region `VN-TB`.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 4;
const FILTER_KIND_AT: usize = 5;
const RESERVED_AT: usize = 6;
const REGION_LEN_AT: usize = 8;
const REGION_AT: usize = 9;
const SEQUENCE_AT: usize = 14;
const KIND_AT: usize = 22;
const CREATED_AT_AT: usize = 23;
const SLOT_MIN_AT: usize = 31;
const SLOT_MAX_AT: usize = 39;
const ELEMENT_COUNT_AT: usize = 47;
const SEED_AT: usize = 51;
const SEGMENT_LENGTH_AT: usize = 59;
const SEGMENT_LENGTH_MASK_AT: usize = 63;
const SEGMENT_COUNT_LENGTH_AT: usize = 67;
const FINGERPRINT_COUNT_AT: usize = 71;
const FINGERPRINTS_AT: usize = 75;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn tag(hex_text: &str) -> Tag {
    Tag(hex::decode(hex_text).unwrap().try_into().unwrap())
}

fn build(width: FingerprintWidth) -> Vec<u8> {
    let pem = std::fs::read_to_string(golden_dir().join("signing-key.pem")).unwrap();
    let signer = BatchSigner::from_pkcs8_pem(&pem).unwrap();
    let params = BatchParams {
        region: "VN-TB".to_owned(),
        sequence: SEQUENCE,
        kind: BatchKind::Hourly,
        created_at: CREATED_AT,
        width,
        min_elements: ELEMENT_COUNT as usize,
    };
    let elements: Vec<TaggedElement> = VECTOR_TAGS
        .iter()
        .map(|&(slot_start, hex_text)| TaggedElement {
            slot_start,
            tag: tag(hex_text),
        })
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(DECOY_SEED);
    build_batch(&params, &elements, &signer, &mut rng)
        .unwrap()
        .bytes
}

/// Returns the golden file of `width`, first writing it when `UPDATE_GOLDEN` is set.
fn golden(width: FingerprintWidth, built: &[u8]) -> Vec<u8> {
    let path = golden_dir().join(format!("batch-v1-{}bit.bin", width.bits()));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, built).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "golden file {} unreadable ({error}); write it with UPDATE_GOLDEN=1",
            path.display()
        )
    })
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// MurmurHash3's fmix64, written from the MurmurHash3 reference.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
    k ^ (k >> 33)
}

/// DESIGN §4's lookup of `filter_key`, over the file's bytes at the offsets above.
fn reference_contains(file: &[u8], width_bytes: usize, filter_key: u64) -> bool {
    let seed = u64_at(file, SEED_AT);
    let segment_length = u32_at(file, SEGMENT_LENGTH_AT);
    let mask = u32_at(file, SEGMENT_LENGTH_MASK_AT);
    let segment_count_length = u32_at(file, SEGMENT_COUNT_LENGTH_AT);
    let fingerprint = |index: u32| -> u64 {
        let at = FINGERPRINTS_AT + index as usize * width_bytes;
        let mut le = [0u8; 8];
        le[..width_bytes].copy_from_slice(&file[at..at + width_bytes]);
        u64::from_le_bytes(le)
    };
    let h = fmix64(filter_key.wrapping_add(seed));
    let width_mask = u64::MAX >> (64 - 8 * width_bytes);
    let fp = (h ^ (h >> 32)) & width_mask;
    let h0 = ((u128::from(h) * u128::from(segment_count_length)) >> 64) as u32;
    let h1 = h0.wrapping_add(segment_length) ^ ((h >> 18) as u32 & mask);
    let h2 = h0.wrapping_add(segment_length.wrapping_mul(2)) ^ (h as u32 & mask);
    fp ^ fingerprint(h0) ^ fingerprint(h1) ^ fingerprint(h2) == 0
}

#[test]
fn a_batch_of_the_design_vectors_equals_the_golden_files_field_by_field() {
    let public_pem = std::fs::read_to_string(golden_dir().join("signing-key.pub.pem")).unwrap();
    let public_key = VerifyingKey::from_public_key_pem(&public_pem).unwrap();
    for (width, filter_kind, width_bytes) in [
        (FingerprintWidth::Bits8, 1u8, 1usize),
        (FingerprintWidth::Bits16, 2, 2),
        (FingerprintWidth::Bits32, 3, 4),
    ] {
        let built = build(width);
        let file = golden(width, &built);
        assert!(
            built == file,
            "the {}-bit batch differs from its golden file ({} bytes built, {} golden)",
            width.bits(),
            built.len(),
            file.len()
        );

        // Every body field at its absolute offset.
        assert_eq!(&file[MAGIC_AT..MAGIC_AT + 4], b"EXPB");
        assert_eq!(file[VERSION_AT], 1);
        assert_eq!(file[FILTER_KIND_AT], filter_kind);
        assert_eq!(u16_at(&file, RESERVED_AT), 0);
        assert_eq!(file[REGION_LEN_AT], 5);
        assert_eq!(&file[REGION_AT..REGION_AT + 5], b"VN-TB");
        assert_eq!(u64_at(&file, SEQUENCE_AT), SEQUENCE);
        assert_eq!(file[KIND_AT], 1, "hourly");
        assert_eq!(u64_at(&file, CREATED_AT_AT), CREATED_AT);
        assert_eq!(u64_at(&file, SLOT_MIN_AT), 1_585_785_600, "GAEN j = 0");
        assert_eq!(u64_at(&file, SLOT_MAX_AT), 1_767_225_600, "Bluezone k = 0");
        assert_eq!(u32_at(&file, ELEMENT_COUNT_AT), ELEMENT_COUNT);
        let segment_length = u32_at(&file, SEGMENT_LENGTH_AT);
        let segment_count_length = u32_at(&file, SEGMENT_COUNT_LENGTH_AT);
        let fingerprint_count = u32_at(&file, FINGERPRINT_COUNT_AT);
        assert!(segment_length.is_power_of_two(), "{segment_length}");
        assert_eq!(
            u32_at(&file, SEGMENT_LENGTH_MASK_AT),
            segment_length - 1,
            "the mask follows the segment length"
        );
        assert_eq!(segment_count_length % segment_length, 0);
        assert_eq!(
            fingerprint_count,
            segment_count_length + 2 * segment_length,
            "a binary fuse filter has its segments plus two"
        );

        // The signature section right after the fingerprints.
        let body_len = FINGERPRINTS_AT + fingerprint_count as usize * width_bytes;
        let key_id_len = usize::from(file[body_len]);
        assert_eq!(
            &file[body_len + 1..body_len + 1 + key_id_len],
            KEY_ID.as_bytes()
        );
        let sig_len_at = body_len + 1 + key_id_len;
        let sig_len = usize::from(u16_at(&file, sig_len_at));
        assert_eq!(
            file.len(),
            sig_len_at + 2 + sig_len,
            "nothing after the signature"
        );
        let signature = Signature::from_der(&file[sig_len_at + 2..]).unwrap();
        public_key
            .verify(&file[..body_len], &signature)
            .expect("ECDSA P-256 / SHA-256 over the body");

        // Every vector's filter key, u64_le(tag[0..8]), is found by DESIGN §4's lookup.
        for (_, hex_text) in VECTOR_TAGS {
            let tag_bytes = hex::decode(hex_text).unwrap();
            let filter_key = u64::from_le_bytes(tag_bytes[..8].try_into().unwrap());
            assert!(
                reference_contains(&file, width_bytes, filter_key),
                "{hex_text} in the {}-bit filter",
                width.bits()
            );
        }

        // The crate's parser reads the same values from the same bytes.
        let parsed = BatchFile::parse(&file).unwrap();
        let header = parsed.header();
        assert_eq!(
            (header.filter_kind.filter_kind(), header.region.as_str()),
            (filter_kind, "VN-TB")
        );
        assert_eq!(
            (header.sequence, header.kind, header.created_at),
            (SEQUENCE, BatchKind::Hourly, CREATED_AT)
        );
        assert_eq!(
            (header.slot_min, header.slot_max, header.element_count),
            (1_585_785_600, 1_767_225_600, ELEMENT_COUNT)
        );
        assert_eq!(header.seed, u64_at(&file, SEED_AT));
        assert_eq!(
            (
                header.segment_length,
                header.segment_length_mask,
                header.segment_count_length,
                header.fingerprint_count
            ),
            (
                segment_length,
                segment_length - 1,
                segment_count_length,
                fingerprint_count
            )
        );
        assert_eq!(parsed.key_id(), KEY_ID);
        assert_eq!(parsed.body(), &file[..body_len]);
        assert_eq!(
            parsed.batch_id(),
            hex::encode(Sha256::digest(&file[..body_len]))
        );
        assert_eq!(
            parsed.signature(),
            &file[sig_len_at + 2..],
            "the signature the parser hands out"
        );
        let public_der = p256::pkcs8::EncodePublicKey::to_public_key_der(&public_key).unwrap();
        parsed.verify(public_der.as_bytes()).unwrap();
        for (_, hex_text) in VECTOR_TAGS {
            assert!(parsed.contains(&tag(hex_text)));
        }
    }
}

//! Matching on the phone (DESIGN §3, §5): observation tags with slot tolerance, filter lookups,
//! exact confirmation against a bucket, and the rayon matchers of many phones.

#![allow(clippy::unwrap_used)]

mod common;

use common::{params, rng, signer};
use exposure_matcher::matching::{ObservationError, match_generated_phones};
use exposure_matcher::{
    BatchFile, ConfirmDigest, DiagnosisKey, FingerprintWidth, GaenKey, ObservationStore, Scheme,
    StaticKey, build_batch, confirm, expand_keys, match_phones,
};
use rand::RngCore;

const RSIN: u32 = 2_642_976;

fn gaen_key(seed: u8) -> DiagnosisKey {
    DiagnosisKey::Gaen(GaenKey {
        key_data: [seed; 16],
        rolling_start_interval_number: RSIN,
        rolling_period: 144,
    })
}

/// Builds a 16-bit batch of the keys' elements, padded to 10,000.
fn batch_bytes(keys: &[DiagnosisKey]) -> Vec<u8> {
    let elements = expand_keys(keys).unwrap();
    build_batch(
        &params(FingerprintWidth::Bits16, 10_000),
        &elements,
        &signer(),
        &mut rng(1),
    )
    .unwrap()
    .bytes
}

/// The RPI that `key` broadcast in interval `RSIN + j`.
fn rpi(key: &DiagnosisKey, j: usize) -> Vec<u8> {
    key.identifiers().unwrap()[j].identifier.clone()
}

/// Returns the sorted digests of every element whose bucket equals `prefix` (what the server's
/// confirm store returns).
fn bucket(keys: &[DiagnosisKey], prefix: u32, bits: u32) -> Vec<ConfirmDigest> {
    let mut digests: Vec<ConfirmDigest> = expand_keys(keys)
        .unwrap()
        .iter()
        .map(|element| element.tag.confirm_digest())
        .filter(|digest| digest.prefix(bits) == prefix)
        .collect();
    digests.sort();
    digests
}

#[test]
fn an_observation_in_a_published_slot_matches_and_confirms() {
    let keys = [gaen_key(1), gaen_key(2)];
    let bytes = batch_bytes(&keys);
    let batch = BatchFile::parse(&bytes).unwrap();
    let mut store = ObservationStore::new();
    let heard_at = u64::from(RSIN + 40) * 600 + 123;
    let index = store
        .observe(Scheme::Gaen, &rpi(&keys[1], 40), heard_at, 600)
        .unwrap();
    assert_eq!(
        store.tags().len(),
        3,
        "own slot and one neighbour on each side"
    );
    let candidates = store.match_batch(&batch);
    let exact: Vec<_> = candidates
        .iter()
        .filter(|c| c.slot_start == u64::from(RSIN + 40) * 600)
        .collect();
    assert_eq!(exact.len(), 1);
    let candidate = exact[0];
    assert_eq!(candidate.observation, index);
    assert_eq!(candidate.digest, candidate.tag.confirm_digest());
    let prefix = candidate.bucket_prefix(16);
    assert!(confirm(candidate.digest, &bucket(&keys, prefix, 16)));
    // `confirm` takes the digest by value or by reference.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let by_reference = confirm(&candidate.digest, &bucket(&keys, prefix, 16));
    assert!(by_reference);
}

#[test]
fn clock_skew_within_tolerance_still_matches_and_beyond_does_not() {
    let keys = [gaen_key(3)];
    let bytes = batch_bytes(&keys);
    let batch = BatchFile::parse(&bytes).unwrap();
    let broadcast_interval = RSIN + 70;
    let identifier = rpi(&keys[0], 70);
    let real_slot = u64::from(broadcast_interval) * 600;
    let confirmed = |store: &ObservationStore| {
        store.match_batch(&batch).iter().any(|candidate| {
            confirm(
                candidate.digest,
                &bucket(&keys, candidate.bucket_prefix(16), 16),
            ) && candidate.slot_start == real_slot
        })
    };
    // The phone's clock is one interval ahead: its slot is off by one.
    let mut store = ObservationStore::new();
    store
        .observe(Scheme::Gaen, &identifier, real_slot + 600 + 10, 600)
        .unwrap();
    assert!(confirmed(&store));
    // Two intervals ahead: outside the default tolerance, inside a tolerance of 2.
    let mut store = ObservationStore::new();
    store
        .observe(Scheme::Gaen, &identifier, real_slot + 1200 + 10, 600)
        .unwrap();
    assert!(!confirmed(&store));
    let mut store = ObservationStore::with_tolerance(2);
    store
        .observe(Scheme::Gaen, &identifier, real_slot + 1200 + 10, 600)
        .unwrap();
    assert_eq!(store.tags().len(), 5);
    assert!(confirmed(&store));
}

#[test]
fn a_replayed_identifier_does_not_match_hours_later() {
    let key = DiagnosisKey::Static(StaticKey {
        identifier: b"AB12CD".to_vec(),
        contagious_from: 1_767_225_600,
        contagious_until: 1_767_225_600 + 3_600,
    });
    let bytes = batch_bytes(std::slice::from_ref(&key));
    let batch = BatchFile::parse(&bytes).unwrap();
    let mut store = ObservationStore::new();
    store
        .observe(Scheme::Static, b"AB12CD", 1_767_225_600 + 1_000, 900)
        .unwrap();
    store
        .observe(Scheme::Static, b"AB12CD", 1_767_225_600 + 6 * 3_600, 900)
        .unwrap();
    let keys = [key];
    let confirmed: Vec<usize> = store
        .match_batch(&batch)
        .iter()
        .filter(|candidate| {
            confirm(
                candidate.digest,
                &bucket(&keys, candidate.bucket_prefix(16), 16),
            )
        })
        .map(|candidate| candidate.observation)
        .collect();
    assert!(confirmed.contains(&0));
    assert!(
        !confirmed.contains(&1),
        "the replay six hours later must not confirm"
    );
}

#[test]
fn an_unrelated_filter_hit_is_not_confirmed() {
    let keys = [gaen_key(4)];
    let digests = bucket(&keys, 0, 0);
    let stranger = exposure_matcher::Tag::compute(Scheme::Gaen, 600, &[9; 16]).confirm_digest();
    assert!(!confirm(stranger, &digests));
    assert!(!confirm(stranger, &[]));
}

#[test]
fn observation_errors() {
    let mut store = ObservationStore::new();
    assert_eq!(
        store.observe(Scheme::Gaen, &[], 0, 600),
        Err(ObservationError::IdentifierLength(0))
    );
    assert_eq!(
        store.observe(Scheme::Gaen, &[1; 33], 0, 600),
        Err(ObservationError::IdentifierLength(33))
    );
    assert_eq!(
        store.observe(Scheme::Gaen, &[1; 16], 0, 0),
        Err(ObservationError::ZeroSlotSeconds)
    );
    // At the epoch there is no earlier slot: two tags instead of three.
    store.observe(Scheme::Gaen, &[1; 16], 10, 600).unwrap();
    assert_eq!(store.tags().len(), 2);
    assert_eq!(store.len(), 1);
}

#[test]
fn many_phones_in_parallel_find_every_planted_exposure() {
    let keys: Vec<DiagnosisKey> = (10..30).map(gaen_key).collect();
    let bytes = batch_bytes(&keys);
    let batch = BatchFile::parse(&bytes).unwrap();
    let mut random = rng(9);
    let phones: Vec<ObservationStore> = (0..200)
        .map(|phone| {
            let mut store = ObservationStore::new();
            for _ in 0..50 {
                let mut stranger = [0u8; 16];
                random.fill_bytes(&mut stranger);
                store
                    .observe(
                        Scheme::Gaen,
                        &stranger,
                        u64::from(RSIN) * 600 + random.next_u64() % 86_400,
                        600,
                    )
                    .unwrap();
            }
            if phone % 10 == 0 {
                let key = &keys[phone % keys.len()];
                store
                    .observe(
                        Scheme::Gaen,
                        &rpi(key, 5),
                        u64::from(RSIN + 5) * 600 + 1,
                        600,
                    )
                    .unwrap();
            }
            store
        })
        .collect();
    let hits = match_phones(&phones, &batch);
    let confirmed_phones: Vec<usize> = hits
        .iter()
        .filter(|hit| {
            hit.candidates.iter().any(|candidate| {
                confirm(
                    candidate.digest,
                    &bucket(&keys, candidate.bucket_prefix(16), 16),
                )
            })
        })
        .map(|hit| hit.phone)
        .collect();
    assert_eq!(confirmed_phones, (0..200).step_by(10).collect::<Vec<_>>());
}

#[test]
fn generated_phones_find_planted_filter_keys() {
    let keys: Vec<DiagnosisKey> = (40..45).map(gaen_key).collect();
    let planted = expand_keys(&keys).unwrap()[17].tag.filter_key();
    let bytes = batch_bytes(&keys);
    let batch = BatchFile::parse(&bytes).unwrap();
    let found = match_generated_phones(1_000, &batch, |phone, buffer| {
        // Seeds apart from the decoys' seed, or phone 1 would replay the decoys.
        let mut random = rng(1_000_000 + phone as u64);
        buffer.extend((0..300).map(|_| random.next_u64()));
        if phone % 100 == 7 {
            buffer[123] = planted;
        }
    });
    assert_eq!(found.lookups, 300_000);
    for phone in (7..1_000).step_by(100) {
        assert!(
            found
                .hits
                .iter()
                .any(|hit| hit.phone == phone && hit.key_index == 123 && hit.filter_key == planted)
        );
    }
    // The rest are false positives: about 300,000 × 2^-16 ≈ 4.6.
    assert!(found.hits.len() < 10 + 30, "{} hits", found.hits.len());
}

//! A second implementation of the identifier schemes and tags (DESIGN §2–§3), written from the
//! design text alone, so the end-to-end tests compare what the server publishes with values
//! computed outside the code under test. Nothing here calls `exposure-matcher` or
//! `exposure-server`: the cryptography is RustCrypto's `hkdf`, `aes` and `sha2` directly, the
//! inputs are the wire messages of `exposure-proto`, the outputs plain byte arrays. Its own unit
//! tests check it against DESIGN §3's literal vectors and the Google/Apple RPIs of
//! `tests/vectors/gaen-rpi.tsv`.

use aes::Aes128;
use aes::cipher::{BlockEncrypt as _, KeyInit as _};
use exposure_proto::v1::{DiagnosisKey, diagnosis_key};
use hkdf::Hkdf;
use sha2::{Digest as _, Sha256};

/// Scheme byte of GAEN keys.
pub const SCHEME_GAEN: u8 = 1;
/// Scheme byte of Bluezone rolling identifiers.
pub const SCHEME_BLUEZONE: u8 = 2;
/// Scheme byte of static identifiers.
pub const SCHEME_STATIC: u8 = 3;

/// Seconds of a GAEN interval.
pub const GAEN_INTERVAL: u64 = 600;
/// Seconds of a static identifier's slot, aligned to Unix time.
pub const STATIC_SLOT: u64 = 900;
/// Seconds of a day.
pub const DAY: u64 = 86_400;

/// A tag: 32 bytes of SHA-256.
pub type Tag = [u8; 32];

/// One published element: the slot an identifier began in and its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    /// Unix seconds at which the identifier's slot began.
    pub slot_start: u64,
    /// Its tag.
    pub tag: Tag,
}

/// `tag = SHA-256("EXPOSURE-TAG-V1" || scheme || u64_le(slot_start) || id_len || identifier)`.
pub fn tag(scheme: u8, slot_start: u64, identifier: &[u8]) -> Tag {
    let id_len = u8::try_from(identifier.len()).expect("an identifier of at most 255 bytes");
    let mut hasher = Sha256::new();
    hasher.update(b"EXPOSURE-TAG-V1");
    hasher.update([scheme]);
    hasher.update(slot_start.to_le_bytes());
    hasher.update([id_len]);
    hasher.update(identifier);
    hasher.finalize().into()
}

/// `filter_key = u64_le(tag[0..8])`.
pub fn filter_key(tag: &Tag) -> u64 {
    u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"))
}

/// `confirm_digest = tag[8..24]`.
pub fn confirm_digest(tag: &Tag) -> [u8; 16] {
    tag[8..24].try_into().expect("16 bytes")
}

/// `bucket(d, b)`: the first `bits` bits (1..=32) of `digest`, most significant bit of byte 0
/// first.
pub fn bucket(digest: &[u8; 16], bits: u32) -> u32 {
    assert!((1..=32).contains(&bits), "prefix bits {bits}");
    let first = u32::from_be_bytes(digest[..4].try_into().expect("4 bytes"));
    first >> (32 - bits)
}

/// `RPIK = HKDF-SHA256(ikm = TEK, salt = 32 zero bytes, info = "EN-RPIK", length 16)`.
pub fn gaen_rpik(tek: &[u8; 16]) -> [u8; 16] {
    let mut rpik = [0u8; 16];
    Hkdf::<Sha256>::new(Some(&[0u8; 32]), tek)
        .expand(b"EN-RPIK", &mut rpik)
        .expect("16 bytes is a valid HKDF length");
    rpik
}

/// `RPI = AES-128-ECB(RPIK, "EN-RPI" || 6 zero bytes || u32_le(ENIN))`.
pub fn gaen_rpi(rpik: &[u8; 16], interval: u32) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..6].copy_from_slice(b"EN-RPI");
    block[12..].copy_from_slice(&interval.to_le_bytes());
    let mut block = aes::Block::from(block);
    Aes128::new(&(*rpik).into()).encrypt_block(&mut block);
    block.into()
}

/// The `(slot_start, RPI)` pairs of a GAEN key: one per interval `rsin + j`, `j < period`.
pub fn gaen_identifiers(tek: &[u8; 16], rsin: u32, period: u32) -> Vec<(u64, [u8; 16])> {
    let rpik = gaen_rpik(tek);
    (0..period)
        .map(|j| {
            let interval = rsin + j;
            (
                u64::from(interval) * GAEN_INTERVAL,
                gaen_rpi(&rpik, interval),
            )
        })
        .collect()
}

/// Bluezone's `ID_k`: the bytes of `SK_k` at indices 0, 4, 8, 12, 16, 18, …, 30.
const BLUEZONE_ID_BYTES: [usize; 12] = [0, 4, 8, 12, 16, 18, 20, 22, 24, 26, 28, 30];

/// The `(slot_start, ID_k)` pairs of a Bluezone daily key, `k < sub_keys_per_day`:
/// `SK_0 = SHA-256(D || "bluzonesubkey")`, `SK_{k+1} = SHA-256(SK_k)`,
/// `slot_start = day_number * 86400 + k * (86400 / N)`.
pub fn bluezone_identifiers(
    daily_key: &[u8; 32],
    day_number: u32,
    sub_keys_per_day: u32,
) -> Vec<(u64, [u8; 12])> {
    let slot_length = DAY / u64::from(sub_keys_per_day);
    let mut sub_key: [u8; 32] = Sha256::new()
        .chain_update(daily_key)
        .chain_update(b"bluzonesubkey")
        .finalize()
        .into();
    let mut identifiers = Vec::with_capacity(sub_keys_per_day as usize);
    for k in 0..u64::from(sub_keys_per_day) {
        let id = BLUEZONE_ID_BYTES.map(|index| sub_key[index]);
        identifiers.push((u64::from(day_number) * DAY + k * slot_length, id));
        sub_key = Sha256::digest(sub_key).into();
    }
    identifiers
}

/// The starts of the 900-second slots, aligned to Unix time, that overlap `[from, until)`.
pub fn static_slots(from: u64, until: u64) -> Vec<u64> {
    let first = from - from % STATIC_SLOT;
    (0..)
        .map(|index| first + index * STATIC_SLOT)
        .take_while(|slot| *slot < until)
        .collect()
}

/// Whether the slot `[start, start + length)` overlaps the window `[from, until)`.
fn overlaps(start: u64, length: u64, from: u64, until: u64) -> bool {
    start < until && start + length > from
}

/// The elements a diagnosis key publishes (DESIGN §2): every GAEN interval; the Bluezone and
/// static slots that overlap the contagious window. Panics on a key of the wrong shape.
pub fn elements(key: &DiagnosisKey) -> Vec<Element> {
    match key.key.as_ref().expect("a diagnosis key holds a key") {
        diagnosis_key::Key::Gaen(gaen) => {
            let tek: [u8; 16] = gaen.key_data.as_slice().try_into().expect("16-byte TEK");
            gaen_identifiers(
                &tek,
                gaen.rolling_start_interval_number,
                gaen.rolling_period,
            )
            .into_iter()
            .map(|(slot_start, rpi)| Element {
                slot_start,
                tag: tag(SCHEME_GAEN, slot_start, &rpi),
            })
            .collect()
        }
        diagnosis_key::Key::Bluezone(bluezone) => {
            let daily_key: [u8; 32] = bluezone
                .daily_key
                .as_slice()
                .try_into()
                .expect("32-byte daily key");
            let slot_length = DAY / u64::from(bluezone.sub_keys_per_day);
            bluezone_identifiers(&daily_key, bluezone.day_number, bluezone.sub_keys_per_day)
                .into_iter()
                .filter(|(slot_start, _)| {
                    overlaps(
                        *slot_start,
                        slot_length,
                        bluezone.contagious_from,
                        bluezone.contagious_until,
                    )
                })
                .map(|(slot_start, id)| Element {
                    slot_start,
                    tag: tag(SCHEME_BLUEZONE, slot_start, &id),
                })
                .collect()
        }
        diagnosis_key::Key::StaticId(fixed) => {
            static_slots(fixed.contagious_from, fixed.contagious_until)
                .into_iter()
                .map(|slot_start| Element {
                    slot_start,
                    tag: tag(SCHEME_STATIC, slot_start, &fixed.identifier),
                })
                .collect()
        }
    }
}

/// The tags a diagnosis key publishes, in slot order.
pub fn tags(key: &DiagnosisKey) -> Vec<Tag> {
    elements(key)
        .into_iter()
        .map(|element| element.tag)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{GAEN_RSIN, GAEN_TEK, gaen_rows, tag_bytes};

    fn bytes<const N: usize>(text: &str) -> [u8; N] {
        hex::decode(text).expect("hex").try_into().expect("length")
    }

    #[test]
    fn gaen_matches_design_section_3() {
        let tek: [u8; 16] = bytes(GAEN_TEK);
        assert_eq!(
            hex::encode(gaen_rpik(&tek)),
            "185ad91db69ec7dd048960f1f3ba6175"
        );
        let identifiers = gaen_identifiers(&tek, GAEN_RSIN, 144);
        assert_eq!(identifiers.len(), 144);
        assert_eq!(identifiers[0].0, 1_585_785_600);
        assert_eq!(
            hex::encode(identifiers[0].1),
            "8be6cd371c5c891604bfbe49df845096"
        );
        assert_eq!(
            hex::encode(tag(SCHEME_GAEN, identifiers[0].0, &identifiers[0].1)),
            "04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b"
        );
        assert_eq!(identifiers[1].0, 1_585_786_200);
        assert_eq!(
            hex::encode(identifiers[1].1),
            "3c9a1de5dd6b02afa7fded7b570b3e56"
        );
        assert_eq!(
            hex::encode(tag(SCHEME_GAEN, identifiers[1].0, &identifiers[1].1)),
            "f234c1c92bf858efbae7f2e2b84f377c68f4dc3f3e003af5c7f6d4a858e47419"
        );
    }

    #[test]
    fn gaen_matches_the_sixteen_google_apple_rpis() {
        let tek: [u8; 16] = bytes(GAEN_TEK);
        let identifiers = gaen_identifiers(&tek, GAEN_RSIN, 144);
        let rows = gaen_rows();
        assert_eq!(rows.len(), 16);
        for row in &rows {
            let (slot_start, rpi) = identifiers[row.j as usize];
            assert_eq!(u64::from(row.interval) * 600, slot_start, "j={}", row.j);
            assert_eq!(hex::encode(rpi), row.rpi, "RPI of j={}", row.j);
            assert_eq!(
                tag(SCHEME_GAEN, slot_start, &rpi),
                tag_bytes(&row.tag),
                "tag of j={}",
                row.j
            );
        }
    }

    #[test]
    fn bluezone_matches_design_section_3() {
        let daily_key: [u8; 32] = std::array::from_fn(|index| index as u8);
        let identifiers = bluezone_identifiers(&daily_key, 20_454, 96);
        assert_eq!(identifiers.len(), 96);
        assert_eq!(identifiers[0].0, 1_767_225_600);
        assert_eq!(identifiers[95].0, 1_767_225_600 + 95 * 900);
        assert_eq!(hex::encode(identifiers[0].1), "130cea6472130c185d8643df");
        assert_eq!(
            hex::encode(tag(SCHEME_BLUEZONE, identifiers[0].0, &identifiers[0].1)),
            "23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8"
        );
    }

    #[test]
    fn static_matches_design_section_3() {
        assert_eq!(
            hex::encode(tag(SCHEME_STATIC, 1_767_225_600, b"AB12CD")),
            "063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b"
        );
    }

    #[test]
    fn windows_keep_the_overlapping_slots() {
        let day = 1_767_225_600;
        assert_eq!(static_slots(day + 100, day + 200), vec![day]);
        assert_eq!(static_slots(day, day + 900), vec![day]);
        assert_eq!(static_slots(day + 899, day + 901), vec![day, day + 900]);
        let key = DiagnosisKey {
            key: Some(diagnosis_key::Key::Bluezone(
                exposure_proto::v1::BluezoneKey {
                    daily_key: vec![8; 32],
                    day_number: 20_454,
                    sub_keys_per_day: 96,
                    contagious_from: day + 10 * 3600 + 420,
                    contagious_until: day + 12 * 3600,
                },
            )),
            transmission_risk_level: 0,
        };
        let slots: Vec<u64> = elements(&key).iter().map(|e| e.slot_start).collect();
        let expected: Vec<u64> = (0..8).map(|k| day + 10 * 3600 + k * 900).collect();
        assert_eq!(slots, expected, "10:07 to 12:00 overlaps 10:00 … 11:45");
    }

    #[test]
    fn the_split_of_a_tag_follows_design_section_3() {
        let tag = tag_bytes("04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b");
        assert_eq!(filter_key(&tag), 0x4e5e_8774_ba01_ff04);
        let digest = confirm_digest(&tag);
        assert_eq!(hex::encode(digest), "32c08d38334407a152375d90cd4386cf");
        assert_eq!(bucket(&digest, 16), 0x32c0);
        assert_eq!(bucket(&digest, 4), 0x3);
        assert_eq!(bucket(&digest, 32), 0x32c0_8d38);
    }
}

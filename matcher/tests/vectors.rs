//! The published vectors: DESIGN §3 and the Google/Apple GAEN v1.2 RPIs in
//! `tests/vectors/gaen-rpi.tsv` (the repository's copy), through the library API.

#![allow(clippy::unwrap_used)]

mod common;

use exposure_matcher::scheme::rolling_proximity_identifier;
use exposure_matcher::{BluezoneKey, DiagnosisKey, GaenKey, Scheme, StaticKey, Tag};

const TEK: &str = "75c734c6dd1a782de7a965da5eb93125";
const RPIK: &str = "185ad91db69ec7dd048960f1f3ba6175";
const RSIN: u32 = 2_642_976;

fn gaen_key(rolling_period: u32) -> GaenKey {
    let mut key_data = [0u8; 16];
    hex::decode_to_slice(TEK, &mut key_data).unwrap();
    GaenKey {
        key_data,
        rolling_start_interval_number: RSIN,
        rolling_period,
    }
}

struct VectorRow {
    j: u32,
    interval: u32,
    rpi: String,
    tag: String,
}

fn vector_rows() -> Vec<VectorRow> {
    common::gaen_vectors()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "malformed vector line {line:?}");
            VectorRow {
                j: fields[0].parse().unwrap(),
                interval: fields[1].parse().unwrap(),
                rpi: fields[2].to_owned(),
                tag: fields[3].to_owned(),
            }
        })
        .collect()
}

#[test]
fn gaen_rpik_matches_the_official_vector() {
    assert_eq!(hex::encode(gaen_key(144).rpik()), RPIK);
}

#[test]
fn all_sixteen_official_gaen_rpis_and_their_tags() {
    let rows = vector_rows();
    assert_eq!(rows.len(), 16);
    let identifiers = DiagnosisKey::Gaen(gaen_key(144)).identifiers().unwrap();
    let elements = DiagnosisKey::Gaen(gaen_key(144)).tagged_elements().unwrap();
    assert_eq!(identifiers.len(), 144);
    for row in &rows {
        let j = row.j as usize;
        assert_eq!(row.interval, RSIN + row.j);
        assert_eq!(
            identifiers[j].slot_start,
            u64::from(row.interval) * 600,
            "slot of j={j}"
        );
        assert_eq!(
            hex::encode(&identifiers[j].identifier),
            row.rpi,
            "rpi of j={j}"
        );
        assert_eq!(elements[j].tag.to_hex(), row.tag, "tag of j={j}");
        let rpik = gaen_key(144).rpik();
        assert_eq!(
            hex::encode(rolling_proximity_identifier(&rpik, row.interval)),
            row.rpi
        );
    }
}

#[test]
fn design_gaen_vectors() {
    let elements = DiagnosisKey::Gaen(gaen_key(2)).tagged_elements().unwrap();
    assert_eq!(elements.len(), 2);
    assert_eq!(elements[0].slot_start, 1_585_785_600);
    assert_eq!(
        elements[0].tag.to_hex(),
        "04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b"
    );
    assert_eq!(elements[1].slot_start, 1_585_786_200);
    assert_eq!(
        elements[1].tag.to_hex(),
        "f234c1c92bf858efbae7f2e2b84f377c68f4dc3f3e003af5c7f6d4a858e47419"
    );
}

fn bluezone_key(from: u64, until: u64) -> BluezoneKey {
    let daily_key: [u8; 32] = std::array::from_fn(|index| index as u8);
    BluezoneKey {
        daily_key,
        day_number: 20_454,
        sub_keys_per_day: 96,
        contagious_from: from,
        contagious_until: until,
    }
}

#[test]
fn design_bluezone_vector() {
    let day_start = 20_454 * 86_400;
    let key = DiagnosisKey::Bluezone(bluezone_key(day_start, day_start + 86_400));
    let identifiers = key.identifiers().unwrap();
    assert_eq!(identifiers.len(), 96);
    assert_eq!(identifiers[0].slot_start, 1_767_225_600);
    assert_eq!(
        hex::encode(&identifiers[0].identifier),
        "130cea6472130c185d8643df"
    );
    assert_eq!(
        key.tagged_elements().unwrap()[0].tag.to_hex(),
        "23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8"
    );
    assert!(
        identifiers
            .windows(2)
            .all(|pair| pair[1].slot_start == pair[0].slot_start + 900)
    );
    assert!(identifiers.iter().all(|slot| slot.identifier.len() == 12));
}

#[test]
fn design_static_vector() {
    let tag = Tag::compute(Scheme::Static, 1_767_225_600, b"AB12CD");
    assert_eq!(
        tag.to_hex(),
        "063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b"
    );
    let key = DiagnosisKey::Static(StaticKey {
        identifier: b"AB12CD".to_vec(),
        contagious_from: 1_767_225_600,
        contagious_until: 1_767_225_601,
    });
    assert_eq!(key.tagged_elements().unwrap()[0].tag, tag);
}

#[test]
fn filter_key_and_confirm_digest_split_the_tag() {
    let tag =
        Tag::from_hex("04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b").unwrap();
    assert_eq!(
        tag.filter_key(),
        u64::from_le_bytes([0x04, 0xff, 0x01, 0xba, 0x74, 0x87, 0x5e, 0x4e])
    );
    assert_eq!(
        tag.confirm_digest().to_hex(),
        "32c08d38334407a152375d90cd4386cf"
    );
    assert_eq!(tag.confirm_digest().prefix(16), 0x32c0);
    assert_eq!(tag.confirm_digest().prefix(4), 0x3);
}

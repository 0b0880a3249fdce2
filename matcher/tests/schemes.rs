//! Structural validation, slot windows and key metadata of the three schemes (DESIGN §2).

#![allow(clippy::unwrap_used)]

use exposure_matcher::{
    BluezoneKey, DiagnosisKey, GaenKey, SchemeError, StaticKey, Tag,
    expand::expand_keys_sequential, expand_keys,
};

const DAY: u32 = 20_454;
const DAY_START: u64 = DAY as u64 * 86_400;

fn gaen(rolling_period: u32) -> DiagnosisKey {
    DiagnosisKey::Gaen(GaenKey {
        key_data: [7; 16],
        rolling_start_interval_number: 2_642_976,
        rolling_period,
    })
}

fn bluezone(sub_keys_per_day: u32, from: u64, until: u64) -> DiagnosisKey {
    DiagnosisKey::Bluezone(BluezoneKey {
        daily_key: [3; 32],
        day_number: DAY,
        sub_keys_per_day,
        contagious_from: from,
        contagious_until: until,
    })
}

fn static_key(identifier: &[u8], from: u64, until: u64) -> DiagnosisKey {
    DiagnosisKey::Static(StaticKey {
        identifier: identifier.to_vec(),
        contagious_from: from,
        contagious_until: until,
    })
}

#[test]
fn gaen_rolling_period_bounds() {
    assert_eq!(gaen(0).validate(), Err(SchemeError::RollingPeriod(0)));
    assert_eq!(gaen(145).validate(), Err(SchemeError::RollingPeriod(145)));
    assert_eq!(gaen(1).identifiers().unwrap().len(), 1);
    assert_eq!(gaen(144).identifiers().unwrap().len(), 144);
    assert_eq!(
        gaen(0).validate().unwrap_err().to_string(),
        "rolling_period must be 1..=144, got 0"
    );
    let overflowing = DiagnosisKey::Gaen(GaenKey {
        key_data: [0; 16],
        rolling_start_interval_number: u32::MAX - 3,
        rolling_period: 10,
    });
    assert!(matches!(
        overflowing.validate(),
        Err(SchemeError::IntervalOverflow { .. })
    ));
    assert!(overflowing.tagged_elements().is_err());
}

#[test]
fn gaen_slot_bounds() {
    let key = gaen(10);
    assert_eq!(key.first_slot_start(), 2_642_976 * 600);
    assert_eq!(key.last_slot_end(), (2_642_976 + 10) * 600);
}

#[test]
fn bluezone_sub_keys_must_divide_the_day() {
    for bad in [0, 7, 1000, 86_401] {
        assert_eq!(
            bluezone(bad, DAY_START, DAY_START + 10).validate(),
            Err(SchemeError::SubKeysPerDay(bad))
        );
    }
    assert_eq!(
        bluezone(1, DAY_START, DAY_START + 86_400)
            .identifiers()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        bluezone(288, DAY_START, DAY_START + 86_400)
            .identifiers()
            .unwrap()
            .len(),
        288
    );
}

#[test]
fn bluezone_window_must_be_inside_the_day_and_non_empty() {
    assert!(matches!(
        bluezone(96, DAY_START + 5, DAY_START + 5).validate(),
        Err(SchemeError::EmptyWindow { .. })
    ));
    assert!(matches!(
        bluezone(96, DAY_START - 1, DAY_START + 5).validate(),
        Err(SchemeError::WindowOutsideDay { .. })
    ));
    assert!(matches!(
        bluezone(96, DAY_START, DAY_START + 86_401).validate(),
        Err(SchemeError::WindowOutsideDay { .. })
    ));
}

#[test]
fn bluezone_publishes_only_slots_overlapping_the_window() {
    let whole_day = bluezone(96, DAY_START, DAY_START + 86_400)
        .identifiers()
        .unwrap();
    // From the middle of slot 4 to the middle of slot 6: slots 4, 5 and 6.
    let partial = bluezone(96, DAY_START + 4 * 900 + 450, DAY_START + 6 * 900 + 1);
    let identifiers = partial.identifiers().unwrap();
    assert_eq!(identifiers, whole_day[4..7].to_vec());
    assert_eq!(partial.first_slot_start(), DAY_START + 4 * 900);
    assert_eq!(partial.last_slot_end(), DAY_START + 7 * 900);
    // A window ending exactly on a slot boundary does not publish the next slot.
    let aligned = bluezone(96, DAY_START + 900, DAY_START + 2 * 900);
    assert_eq!(aligned.identifiers().unwrap(), whole_day[1..2].to_vec());
    assert_eq!(aligned.last_slot_end(), DAY_START + 2 * 900);
}

#[test]
fn static_identifier_bounds() {
    assert_eq!(
        static_key(b"", 0, 900).validate(),
        Err(SchemeError::IdentifierLength(0))
    );
    assert_eq!(
        static_key(&[1; 33], 0, 900).validate(),
        Err(SchemeError::IdentifierLength(33))
    );
    assert!(static_key(&[1; 32], 0, 900).validate().is_ok());
    assert!(matches!(
        static_key(b"A", 900, 900).validate(),
        Err(SchemeError::EmptyWindow { .. })
    ));
    assert!(matches!(
        static_key(b"A", 0, 15 * 86_400 + 1).validate(),
        Err(SchemeError::WindowTooLong { .. })
    ));
}

#[test]
fn static_slots_are_unix_aligned_and_overlap_the_window() {
    let key = static_key(b"AB12CD", 1_767_225_600 + 100, 1_767_225_600 + 1800 + 1);
    let identifiers = key.identifiers().unwrap();
    let slots: Vec<u64> = identifiers.iter().map(|slot| slot.slot_start).collect();
    assert_eq!(slots, vec![1_767_225_600, 1_767_226_500, 1_767_227_400]);
    assert!(identifiers.iter().all(|slot| slot.identifier == b"AB12CD"));
    assert_eq!(key.first_slot_start(), 1_767_225_600);
    assert_eq!(key.last_slot_end(), 1_767_228_300);
}

#[test]
fn dedup_material_is_canonical() {
    let material = gaen(144).dedup_material();
    assert_eq!(material.len(), 1 + 16 + 4 + 4);
    assert_eq!(material[0], 1);
    assert_ne!(gaen(144).dedup_material(), gaen(143).dedup_material());
    let material = bluezone(96, DAY_START, DAY_START + 900).dedup_material();
    assert_eq!(material.len(), 1 + 32 + 4 + 4 + 8 + 8);
    assert_eq!(material[0], 2);
    let material = static_key(b"AB", 0, 900).dedup_material();
    assert_eq!(
        material,
        [
            &[3u8, 2, b'A', b'B'][..],
            &0u64.to_le_bytes(),
            &900u64.to_le_bytes()
        ]
        .concat()
    );
}

#[test]
fn parallel_expansion_equals_sequential_and_fails_on_any_invalid_key() {
    let keys: Vec<DiagnosisKey> = (0..50u8)
        .map(|index| match index % 3 {
            0 => DiagnosisKey::Gaen(GaenKey {
                key_data: [index; 16],
                rolling_start_interval_number: 2_642_976 + u32::from(index),
                rolling_period: 144,
            }),
            1 => bluezone(96, DAY_START + u64::from(index), DAY_START + 40_000),
            _ => static_key(&[index; 6], 1_000_000, 1_000_000 + 3600),
        })
        .collect();
    let parallel = expand_keys(&keys).unwrap();
    assert_eq!(parallel, expand_keys_sequential(&keys).unwrap());
    let expected: usize = keys
        .iter()
        .map(|key| key.identifiers().unwrap().len())
        .sum();
    assert_eq!(parallel.len(), expected);
    for element in parallel.iter().take(144) {
        assert_eq!(
            element.tag,
            Tag::compute(
                keys[0].scheme(),
                element.slot_start,
                &keys[0].identifiers().unwrap()[((element.slot_start / 600) - 2_642_976) as usize]
                    .identifier
            )
        );
    }
    let mut with_bad = keys.clone();
    with_bad.insert(17, gaen(0));
    assert_eq!(expand_keys(&with_bad), Err(SchemeError::RollingPeriod(0)));
}

//! Structural validation, slot windows and key metadata of the three schemes (DESIGN §2).

#![allow(clippy::unwrap_used)]

use exposure_matcher::{
    BluezoneKey, DiagnosisKey, GaenKey, MAX_STATIC_ELEMENTS, SchemeError, StaticKey,
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
fn element_counts_equal_the_expansion_without_expanding() {
    // Literal counts by hand: 144 intervals; slots 4..=6 of 96; 1440 one-minute slots; a
    // 15-day static window off the slot grid touches 1,441 slots of 900 s.
    let cases = [
        (gaen(144), 144),
        (gaen(1), 1),
        (
            bluezone(96, DAY_START + 4 * 900 + 450, DAY_START + 6 * 900 + 1),
            3,
        ),
        (bluezone(96, DAY_START, DAY_START + 86_400), 96),
        (bluezone(1440, DAY_START, DAY_START + 86_400), 1440),
        (bluezone(1440, DAY_START + 59, DAY_START + 61), 2),
        (static_key(b"AB12CD", DAY_START + 100, DAY_START + 1801), 3),
        (
            static_key(b"AB12CD", DAY_START + 100, DAY_START + 100 + 15 * 86_400),
            1441,
        ),
    ];
    for (key, expected) in cases {
        assert_eq!(key.element_count(), expected, "{key:?}");
        assert_eq!(
            key.tagged_elements().unwrap().len() as u64,
            expected,
            "{key:?}"
        );
    }
    assert_eq!(MAX_STATIC_ELEMENTS, 1441);
    assert_eq!(bluezone(7, DAY_START, DAY_START + 900).element_count(), 0);
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

/// DESIGN §3's vector keys, as the first three keys of a mixed list.
fn design_vector_keys() -> [DiagnosisKey; 3] {
    let mut tek = [0u8; 16];
    hex::decode_to_slice("75c734c6dd1a782de7a965da5eb93125", &mut tek).unwrap();
    [
        DiagnosisKey::Gaen(GaenKey {
            key_data: tek,
            rolling_start_interval_number: 2_642_976,
            rolling_period: 144,
        }),
        DiagnosisKey::Bluezone(BluezoneKey {
            daily_key: std::array::from_fn(|index| index as u8),
            day_number: DAY,
            sub_keys_per_day: 96,
            contagious_from: DAY_START,
            contagious_until: DAY_START + 40_000,
        }),
        static_key(b"AB12CD", DAY_START, DAY_START + 900),
    ]
}

#[test]
fn parallel_expansion_equals_sequential_and_fails_on_any_invalid_key() {
    let mut keys: Vec<DiagnosisKey> = design_vector_keys().to_vec();
    keys.extend((3..50u8).map(|index| match index % 3 {
        0 => DiagnosisKey::Gaen(GaenKey {
            key_data: [index; 16],
            rolling_start_interval_number: 2_642_976 + u32::from(index),
            rolling_period: 144,
        }),
        1 => bluezone(96, DAY_START + u64::from(index), DAY_START + 40_000),
        _ => static_key(&[index; 6], 1_000_000, 1_000_000 + 3600),
    }));
    let parallel = expand_keys(&keys).unwrap();
    assert_eq!(parallel, expand_keys_sequential(&keys).unwrap());
    let expected: usize = keys
        .iter()
        .map(|key| key.identifiers().unwrap().len())
        .sum();
    assert_eq!(parallel.len(), expected);
    // DESIGN §3's tags, in key order: GAEN j = 0 and 1 open the list, the Bluezone key's
    // k = 0 follows its 144 identifiers, the static slot comes after the Bluezone window's 45.
    let tag_at = |index: usize| (parallel[index].slot_start, parallel[index].tag.to_hex());
    let vectors = [
        (
            0,
            1_585_785_600,
            "04ff01ba74875e4e32c08d38334407a152375d90cd4386cfc64a992c4a0e514b",
        ),
        (
            1,
            1_585_786_200,
            "f234c1c92bf858efbae7f2e2b84f377c68f4dc3f3e003af5c7f6d4a858e47419",
        ),
        (
            144,
            1_767_225_600,
            "23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8",
        ),
        (
            144 + 45,
            1_767_225_600,
            "063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b",
        ),
    ];
    for (index, slot_start, tag) in vectors {
        assert_eq!(
            tag_at(index),
            (slot_start, tag.to_owned()),
            "element {index}"
        );
    }
    let mut with_bad = keys.clone();
    with_bad.insert(17, gaen(0));
    assert_eq!(expand_keys(&with_bad), Err(SchemeError::RollingPeriod(0)));
}

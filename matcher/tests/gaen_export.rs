//! GAEN export files (DESIGN §11) built from known keys and read back: the header, every field,
//! sort order, padding, signature (checked with p256 directly), determinism and splitting.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use exposure_matcher::BatchSigner;
use exposure_matcher::gaen::{
    GaenError, GaenExport, GaenExportKey, GaenReportType, GaenSigner, MAX_RECORDS_PER_FILE,
    build_gaen_exports,
};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;
use common::gaen_params as params;

fn known_keys() -> Vec<GaenExportKey> {
    vec![
        GaenExportKey {
            key_data: [0xf0; 16],
            transmission_risk_level: 4,
            rolling_start_interval_number: 2_900_000,
            rolling_period: 144,
            report_type: GaenReportType::ConfirmedTest,
            days_since_onset_of_symptoms: Some(-2),
        },
        GaenExportKey {
            key_data: [0x10; 16],
            transmission_risk_level: 0,
            rolling_start_interval_number: 2_900_144,
            rolling_period: 100,
            report_type: GaenReportType::ConfirmedClinicalDiagnosis,
            days_since_onset_of_symptoms: None,
        },
        GaenExportKey {
            key_data: [0x80; 16],
            transmission_risk_level: 8,
            rolling_start_interval_number: 2_899_856,
            rolling_period: 1,
            report_type: GaenReportType::SelfReport,
            days_since_onset_of_symptoms: Some(14),
        },
    ]
}

fn revoked_key() -> GaenExportKey {
    GaenExportKey {
        key_data: [0x42; 16],
        transmission_risk_level: 2,
        rolling_start_interval_number: 2_899_712,
        rolling_period: 144,
        report_type: GaenReportType::ConfirmedTest,
        days_since_onset_of_symptoms: Some(0),
    }
}

fn signer() -> BatchSigner {
    BatchSigner::from_pkcs8_pem(&BatchSigner::generate().to_pkcs8_pem()).unwrap()
}

/// `signer` alone, registered as version "v1".
fn one(signer: &BatchSigner) -> [GaenSigner<'_>; 1] {
    [GaenSigner {
        signer,
        verification_key_version: "v1",
    }]
}

#[test]
fn a_file_of_known_keys_parses_back_with_every_field() {
    let signer = signer();
    let files = build_gaen_exports(
        &params(10, MAX_RECORDS_PER_FILE),
        &known_keys(),
        &[revoked_key()],
        &one(&signer),
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(file.file_name(), "1767225600-1767229200-00001.zip");
    let parsed = GaenExport::parse(&file.zip).unwrap();
    let bin = parsed.export_bin();
    assert_eq!(&bin[..16], b"EK Export v1    ");
    // The first key's encoding, written out by hand: key_data (1, bytes), risk 4 (2), interval
    // 2,900,000 as varint A0 80 B1 01 (3), period 144 as 90 01 (4), report 1 (5), onset -2 as
    // zigzag 3 (6).
    let mut expected_key = vec![0x0a, 0x10];
    expected_key.extend_from_slice(&[0xf0; 16]);
    expected_key.extend_from_slice(&[
        0x10, 0x04, 0x18, 0xa0, 0x80, 0xb1, 0x01, 0x20, 0x90, 0x01, 0x28, 0x01, 0x30, 0x03,
    ]);
    assert!(bin.windows(expected_key.len()).any(|w| w == expected_key));

    let export = parsed.export();
    assert_eq!(export.start_timestamp, Some(1_767_225_600));
    assert_eq!(export.end_timestamp, Some(1_767_229_200));
    assert_eq!(export.region.as_deref(), Some("VN-TB"));
    assert_eq!((export.batch_num, export.batch_size), (Some(1), Some(1)));
    assert_eq!(export.signature_infos.len(), 1);
    let info = &export.signature_infos[0];
    assert_eq!(info.verification_key_id.as_deref(), Some("452"));
    assert_eq!(info.verification_key_version.as_deref(), Some("v1"));
    assert_eq!(
        info.signature_algorithm.as_deref(),
        Some("1.2.840.10045.4.3.2")
    );
    assert_eq!(export.keys.len(), 10, "3 real keys padded to 10");
    let key_bytes: Vec<&[u8]> = export
        .keys
        .iter()
        .map(|key| key.key_data.as_deref().unwrap())
        .collect();
    assert!(key_bytes.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
    for known in known_keys() {
        let found = export
            .keys
            .iter()
            .find(|key| key.key_data.as_deref() == Some(&known.key_data[..]))
            .unwrap();
        assert_eq!(
            found.transmission_risk_level,
            Some(known.transmission_risk_level)
        );
        assert_eq!(
            found.rolling_start_interval_number,
            Some(known.rolling_start_interval_number as i32)
        );
        assert_eq!(found.rolling_period, Some(known.rolling_period as i32));
        assert_eq!(found.report_type, Some(known.report_type as i32));
        assert_eq!(
            found.days_since_onset_of_symptoms,
            known.days_since_onset_of_symptoms
        );
    }
    // Padding copies a real key's metadata.
    let metadata: BTreeSet<(i32, i32, i32)> =
        [(2_900_000, 144, 1), (2_900_144, 100, 2), (2_899_856, 1, 3)].into();
    for key in &export.keys {
        let triple = (
            key.rolling_start_interval_number.unwrap(),
            key.rolling_period.unwrap(),
            key.report_type.unwrap(),
        );
        assert!(metadata.contains(&triple), "{triple:?}");
    }
    assert_eq!(export.revised_keys.len(), 1);
    let revised = &export.revised_keys[0];
    assert_eq!(revised.key_data.as_deref(), Some(&[0x42u8; 16][..]));
    assert_eq!(revised.report_type, Some(5));
    assert_eq!(revised.rolling_start_interval_number, Some(2_899_712));

    let signatures = &parsed.signatures().signatures;
    assert_eq!(signatures.len(), 1);
    assert_eq!(
        (signatures[0].batch_num, signatures[0].batch_size),
        (Some(1), Some(1))
    );
    assert_eq!(signatures[0].signature_info.as_ref(), Some(info));
    // Checked with p256 itself over the whole export.bin, header included.
    let public_key = VerifyingKey::from_public_key_der(&signer.public_key_der()).unwrap();
    let signature = Signature::from_der(signatures[0].signature.as_deref().unwrap()).unwrap();
    public_key.verify(bin, &signature).unwrap();
    parsed.verify(&signer.public_key_der()).unwrap();
    assert_eq!(
        parsed.verify(&BatchSigner::generate().public_key_der()),
        Err(GaenError::SignatureMismatch)
    );
}

#[test]
fn the_same_keys_and_seed_give_the_same_bytes() {
    let signer = signer();
    let build = |seed| {
        build_gaen_exports(
            &params(50, MAX_RECORDS_PER_FILE),
            &known_keys(),
            &[],
            &one(&signer),
            &mut ChaCha20Rng::seed_from_u64(seed),
        )
        .unwrap()
        .remove(0)
        .zip
    };
    assert_eq!(build(9), build(9));
    assert_ne!(build(9), build(10));
}

#[test]
fn many_keys_split_into_files_of_one_batch_with_distinct_end_timestamps() {
    let signer = signer();
    let keys: Vec<GaenExportKey> = (0u8..10)
        .map(|index| GaenExportKey {
            key_data: [index; 16],
            ..known_keys()[0].clone()
        })
        .collect();
    let files = build_gaen_exports(
        &params(1, 4),
        &keys,
        &[revoked_key()],
        &one(&signer),
        &mut ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let ends: Vec<u64> = files.iter().map(|file| file.end_timestamp).collect();
    assert_eq!(ends, [1_767_229_200, 1_767_229_201, 1_767_229_202]);
    // The revised key takes a record of the first file's four.
    let counts: Vec<(usize, usize)> = files
        .iter()
        .map(|file| (file.key_count, file.revised_key_count))
        .collect();
    assert_eq!(counts, [(3, 1), (4, 0), (3, 0)]);
    let mut seen = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let parsed = GaenExport::parse(&file.zip).unwrap();
        parsed.verify(&signer.public_key_der()).unwrap();
        let export = parsed.export();
        assert_eq!((export.batch_num, export.batch_size), (Some(1), Some(1)));
        assert_eq!(export.revised_keys.len(), usize::from(index == 0));
        seen.extend(export.keys.iter().map(|key| key.key_data.clone().unwrap()));
    }
    let expected: Vec<Vec<u8>> = (0u8..10).map(|index| vec![index; 16]).collect();
    assert_eq!(seen, expected);
}

#[test]
fn more_than_500000_keys_make_a_second_file() {
    let signer = signer();
    let keys: Vec<GaenExportKey> = (0..MAX_RECORDS_PER_FILE as u32 + 1)
        .map(|index| {
            let mut key_data = [0u8; 16];
            key_data[..4].copy_from_slice(&index.to_be_bytes());
            GaenExportKey {
                key_data,
                ..known_keys()[1].clone()
            }
        })
        .collect();
    let files = build_gaen_exports(
        &params(1_000, MAX_RECORDS_PER_FILE),
        &keys,
        &[],
        &one(&signer),
        &mut ChaCha20Rng::seed_from_u64(4),
    )
    .unwrap();
    let counts: Vec<usize> = files.iter().map(|file| file.key_count).collect();
    assert_eq!(
        counts,
        [500_000, 1],
        "a run above the minimum is not padded, so neither is the split's last file"
    );
    let second = GaenExport::parse(&files[1].zip).unwrap();
    assert!(
        second
            .export()
            .keys
            .iter()
            .any(|key| key.key_data.as_deref().unwrap()[..4] == 500_000u32.to_be_bytes())
    );
}

#[test]
fn out_of_range_fields_are_refused() {
    let signer = signer();
    let mut key = known_keys()[0].clone();
    key.days_since_onset_of_symptoms = Some(15);
    let outcome = build_gaen_exports(
        &params(1, MAX_RECORDS_PER_FILE),
        &[key],
        &[],
        &one(&signer),
        &mut ChaCha20Rng::seed_from_u64(5),
    );
    assert!(matches!(outcome, Err(GaenError::InvalidKey(_))));
}

#[test]
fn a_small_run_is_padded_once_before_the_split_and_a_large_one_never() {
    let signer = signer();
    let keys: Vec<GaenExportKey> = (0u8..5)
        .map(|index| GaenExportKey {
            key_data: [index; 16],
            ..known_keys()[0].clone()
        })
        .collect();
    let build = |min_records, max_records_per_file| {
        build_gaen_exports(
            &params(min_records, max_records_per_file),
            &keys,
            &[],
            &one(&signer),
            &mut ChaCha20Rng::seed_from_u64(6),
        )
        .unwrap()
        .iter()
        .map(|file| file.key_count)
        .collect::<Vec<usize>>()
    };
    assert_eq!(build(8, 100), [8], "5 keys padded to 8");
    assert_eq!(build(5, 100), [5], "5 keys are not below a minimum of 5");
    assert_eq!(build(4, 2), [2, 2, 1], "above the minimum: split, unpadded");
    assert_eq!(build(50, 6), [6], "padding stops at one file's room");
}

#[test]
fn every_signer_in_service_signs_and_each_signature_verifies_alone() {
    let (current, next) = (signer(), signer());
    let signers = [
        GaenSigner {
            signer: &next,
            verification_key_version: "v2",
        },
        GaenSigner {
            signer: &current,
            verification_key_version: "v1",
        },
    ];
    let files = build_gaen_exports(
        &params(0, MAX_RECORDS_PER_FILE),
        &known_keys(),
        &[],
        &signers,
        &mut ChaCha20Rng::seed_from_u64(7),
    )
    .unwrap();
    let parsed = GaenExport::parse(&files[0].zip).unwrap();
    let versions: Vec<Option<&str>> = parsed
        .export()
        .signature_infos
        .iter()
        .map(|info| info.verification_key_version.as_deref())
        .collect();
    assert_eq!(versions, [Some("v2"), Some("v1")], "newest key first");
    let signatures = &parsed.signatures().signatures;
    assert_eq!(signatures.len(), 2);
    // Each signature checked with p256 itself against its own key, over the whole export.bin.
    for (signature, key) in signatures.iter().zip([&next, &current]) {
        let public_key = VerifyingKey::from_public_key_der(&key.public_key_der()).unwrap();
        let der = Signature::from_der(signature.signature.as_deref().unwrap()).unwrap();
        public_key.verify(parsed.export_bin(), &der).unwrap();
        parsed.verify(&key.public_key_der()).unwrap();
    }
    let none: [GaenSigner<'_>; 0] = [];
    assert!(matches!(
        build_gaen_exports(
            &params(0, 10),
            &known_keys(),
            &[],
            &none,
            &mut ChaCha20Rng::seed_from_u64(8)
        ),
        Err(GaenError::InvalidKey(_))
    ));
}

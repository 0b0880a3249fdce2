//! `gaen-export` and `gaen-inspect` run as a user would: a file of known keys, every malformed
//! variant refused with a clear error and exit 1, and a cross-check of the bytes with an
//! independent decoder (`tests/src/gaen_python.rs`: Python's zipfile and Google's protobuf
//! package, plus `cryptography` for the signatures), also of what the library writes for a
//! padded run, a split run and two signing keys. Without python3 or one of those packages the
//! cross-check fails under CI and is skipped loudly elsewhere (`tests/src/outside.rs`).

#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use exposure_matcher::BatchSigner;

/// The tests crate's rule for a missing outside part (this crate cannot depend on that one).
#[path = "../../tests/src/outside.rs"]
mod outside;

mod common;

/// The tests crate's independent decoder (Python's zipfile, protobuf and cryptography).
#[path = "../../tests/src/gaen_python.rs"]
mod gaen_python;

const KEYS_JSON: &str = r#"{
  "keys": [
    {"key_data": "ffeeddccbbaa99887766554433221100", "transmission_risk_level": 4,
     "rolling_start_interval_number": 2900000, "rolling_period": 144,
     "report_type": "CONFIRMED_TEST", "days_since_onset_of_symptoms": -2},
    {"key_data": "00112233445566778899aabbccddeeff", "rolling_start_interval_number": 2900144,
     "rolling_period": 100, "report_type": 2}
  ],
  "revised_keys": [
    {"key_data": "0102030405060708090a0b0c0d0e0f10", "rolling_start_interval_number": 2899856}
  ]
}"#;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exposure-matcher"))
        .args(args)
        .output()
        .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let signer = BatchSigner::generate();
        std::fs::write(dir.path().join("key.pem"), signer.to_pkcs8_pem()).unwrap();
        std::fs::write(dir.path().join("pub.pem"), signer.public_key_pem()).unwrap();
        std::fs::write(dir.path().join("keys.json"), KEYS_JSON).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn export(&self) -> PathBuf {
        let output = run(&[
            "gaen-export",
            "--keys",
            &self.path("keys.json"),
            "--out",
            &self.path("x.zip"),
            "--signing-key",
            &self.path("key.pem"),
            "--region",
            "VN-TB",
            "--min-records",
            "8",
            "--seed",
            "7",
            "--start",
            "1767225600",
            "--end",
            "1767229200",
        ]);
        assert!(output.status.success(), "{output:?}");
        self.dir.path().join("x.zip")
    }

    fn inspect(&self, zip: &[u8]) -> Output {
        let path = self.dir.path().join("candidate.zip");
        std::fs::write(&path, zip).unwrap();
        run(&[
            "gaen-inspect",
            path.to_str().unwrap(),
            "--public-key",
            &self.path("pub.pem"),
        ])
    }
}

/// Returns the entries of a zip, in order.
fn entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut entry = archive.by_index(index).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().to_owned(), bytes)
        })
        .collect()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn assert_refused(output: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(message), "expected {message:?} in {stderr}");
}

#[test]
fn an_exported_file_inspects_with_its_fields_and_a_valid_signature() {
    let fixture = Fixture::new();
    let zip = std::fs::read(fixture.export()).unwrap();
    let output = fixture.inspect(&zip);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    for line in [
        "start_timestamp: 1767225600",
        "end_timestamp: 1767229200",
        "region: VN-TB",
        "batch_num: 1",
        "batch_size: 1",
        "signature_info: verification_key_id=452 verification_key_version=v1 signature_algorithm=1.2.840.10045.4.3.2",
        "keys: 8",
        "revised_keys: 1",
        "signature: valid",
    ] {
        assert!(text.lines().any(|got| got == line), "{line} in {text}");
    }
}

#[test]
fn malformed_files_are_refused_with_a_clear_error() {
    let fixture = Fixture::new();
    let zip = std::fs::read(fixture.export()).unwrap();
    let original = entries(&zip);
    assert_eq!(original[0].0, "export.bin");
    assert_eq!(original[1].0, "export.sig");
    let (bin, sig) = (&original[0].1, &original[1].1);

    // A header of version 2: refused before any signature is looked at.
    let mut bad_header = bin.clone();
    bad_header[11] = b'2';
    let output = fixture.inspect(&zip_of(&[("export.bin", &bad_header), ("export.sig", sig)]));
    assert_refused(&output, "header \"EK Export v1    \"");

    let output = fixture.inspect(&zip[..zip.len() / 2]);
    assert_refused(&output, "not a zip archive");

    // One flipped bit in the last key: still decodes, no longer verifies.
    let mut tampered = bin.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let output = fixture.inspect(&zip_of(&[("export.bin", &tampered), ("export.sig", sig)]));
    assert_refused(&output, "signature does not verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("signature: INVALID"), "{stdout}");

    let output = fixture.inspect(&zip_of(&[
        ("export.bin", bin),
        ("export.sig", sig),
        ("extra.txt", b"hello"),
    ]));
    assert_refused(&output, "zip must hold exactly export.bin and export.sig");

    let output = fixture.inspect(&zip_of(&[("export.bin", bin)]));
    assert_refused(&output, "zip must hold exactly export.bin and export.sig");

    let mut garbage = b"EK Export v1    ".to_vec();
    garbage.extend_from_slice(&[0xff; 7]);
    let output = fixture.inspect(&zip_of(&[("export.bin", &garbage), ("export.sig", sig)]));
    assert_refused(&output, "export.bin does not decode");

    let output = fixture.inspect(&zip_of(&[
        ("export.bin", bin),
        ("export.sig", &[0x0a, 0x05]),
    ]));
    assert_refused(&output, "export.sig does not decode");
}

#[test]
fn python_protobuf_decodes_the_same_fields() {
    let protoc = protoc_bin_vendored::protoc_bin_path().unwrap();
    let Some(decoder) = gaen_python::PythonDecoder::find(&protoc) else {
        return;
    };
    let fixture = Fixture::new();
    let zip = fixture.export();
    let public_key = fixture.dir.path().join("pub.pem");
    let decoded = decoder.decode(&zip, &[&public_key]);
    assert_eq!(
        decoded["names"],
        serde_json::json!(["export.bin", "export.sig"])
    );
    assert_eq!(decoded["header"], "EK Export v1    ");
    if decoded["signature_checks"] != "skipped" {
        assert_eq!(decoded["signature_checks"], serde_json::json!([0]));
    }
    let export = &decoded["export"];
    // json_format writes 64-bit integers as strings and bytes as base64.
    assert_eq!(export["start_timestamp"], "1767225600");
    assert_eq!(export["end_timestamp"], "1767229200");
    assert_eq!(export["region"], "VN-TB");
    assert_eq!(export["batch_num"], 1);
    assert_eq!(export["batch_size"], 1);
    let info = serde_json::json!({
        "verification_key_id": "452",
        "verification_key_version": "v1",
        "signature_algorithm": "1.2.840.10045.4.3.2",
    });
    assert_eq!(export["signature_infos"], serde_json::json!([info]));
    let keys = export["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 8);
    let first_real = keys
        .iter()
        .find(|key| key["key_data"] == "/+7dzLuqmYh3ZlVEMyIRAA==")
        .unwrap();
    assert_eq!(
        *first_real,
        serde_json::json!({
            "key_data": "/+7dzLuqmYh3ZlVEMyIRAA==",
            "transmission_risk_level": 4,
            "rolling_start_interval_number": 2900000,
            "rolling_period": 144,
            "report_type": "CONFIRMED_TEST",
            "days_since_onset_of_symptoms": -2,
        })
    );
    let second_real = keys
        .iter()
        .find(|key| key["key_data"] == "ABEiM0RVZneImaq7zN3u/w==")
        .unwrap();
    assert_eq!(second_real["report_type"], "CONFIRMED_CLINICAL_DIAGNOSIS");
    assert_eq!(second_real["rolling_period"], 100);
    assert!(second_real.get("days_since_onset_of_symptoms").is_none());
    assert_eq!(
        export["revised_keys"],
        serde_json::json!([{
            "key_data": "AQIDBAUGBwgJCgsMDQ4PEA==",
            "transmission_risk_level": 0,
            "rolling_start_interval_number": 2899856,
            "rolling_period": 144,
            "report_type": "REVOKED",
        }])
    );
    let signature = &decoded["signatures"]["signatures"][0];
    assert_eq!(signature["batch_num"], 1);
    assert_eq!(signature["batch_size"], 1);
    assert_eq!(signature["signature_info"], info);
}

/// Writes `zip` to a file in `dir` and returns its path.
fn written(dir: &Path, name: &str, zip: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, zip).unwrap();
    path
}

#[test]
fn python_reads_a_padded_run_a_split_run_and_two_signatures_as_written() {
    use exposure_matcher::gaen::{GaenExportKey, GaenReportType, GaenSigner, build_gaen_exports};
    use rand::SeedableRng;
    let protoc = protoc_bin_vendored::protoc_bin_path().unwrap();
    let Some(decoder) = gaen_python::PythonDecoder::find(&protoc) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (current, next) = (BatchSigner::generate(), BatchSigner::generate());
    let current_pem = written(
        dir.path(),
        "current.pem",
        current.public_key_pem().as_bytes(),
    );
    let next_pem = written(dir.path(), "next.pem", next.public_key_pem().as_bytes());
    let keys: Vec<GaenExportKey> = (0u8..5)
        .map(|index| GaenExportKey {
            key_data: [index.wrapping_mul(53); 16],
            transmission_risk_level: 4,
            rolling_start_interval_number: 2_900_000,
            rolling_period: 144,
            report_type: GaenReportType::ConfirmedTest,
            days_since_onset_of_symptoms: None,
        })
        .collect();
    let build = |min_records, max_records_per_file, signers: &[GaenSigner<'_>]| {
        build_gaen_exports(
            &common::gaen_params(min_records, max_records_per_file),
            &keys,
            &[],
            signers,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(11),
        )
        .unwrap()
    };
    let one = [GaenSigner {
        signer: &current,
        verification_key_version: "v1",
    }];

    // Five keys below a minimum of 8: one file of 8, sorted, the real five among them.
    let padded = build(8, 100, &one);
    assert_eq!(padded.len(), 1);
    let decoded = decoder.decode(
        &written(dir.path(), "padded.zip", &padded[0].zip),
        &[&current_pem],
    );
    let found = gaen_python::key_bytes(&decoded);
    assert_eq!(found.len(), 8);
    assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
    for key in &keys {
        assert!(found.contains(&key.key_data.to_vec()));
    }

    // Five keys above a minimum of 4, two a file: 2, 2, 1, none padded, ends end + i.
    let split = build(4, 2, &one);
    let mut counts = Vec::new();
    for (index, file) in split.iter().enumerate() {
        let decoded = decoder.decode(
            &written(dir.path(), &format!("split-{index}.zip"), &file.zip),
            &[&current_pem],
        );
        counts.push(gaen_python::key_bytes(&decoded).len());
        assert_eq!(
            decoded["export"]["end_timestamp"],
            (1_767_229_200 + index as u64).to_string()
        );
    }
    assert_eq!(counts, [2, 2, 1]);

    // A rotation's overlap: both keys sign, newest first, each signature verifies alone.
    let both = [
        GaenSigner {
            signer: &next,
            verification_key_version: "v2",
        },
        one[0],
    ];
    let overlap = build(0, 100, &both);
    let decoded = decoder.decode(
        &written(dir.path(), "overlap.zip", &overlap[0].zip),
        &[&next_pem, &current_pem],
    );
    let versions: Vec<&str> = decoded["export"]["signature_infos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|info| info["verification_key_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v2", "v1"]);
    if decoded["signature_checks"] != "skipped" {
        assert_eq!(decoded["signature_checks"], serde_json::json!([0, 1]));
    }
}

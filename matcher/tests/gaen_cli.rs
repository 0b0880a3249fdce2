//! `gaen-export` and `gaen-inspect` run as a user would: a file of known keys, every malformed
//! variant refused with a clear error and exit 1, and a cross-check of the bytes with an
//! independent decoder (Python's zipfile and Google's protobuf package, plus `cryptography` for
//! the signature). Without python3 or one of those packages the cross-check fails under CI and
//! is skipped loudly elsewhere (`tests/src/outside.rs`); `EXPOSURE_TEST_PYTHON` names another
//! interpreter than `python3`.

#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use exposure_matcher::BatchSigner;

/// The tests crate's rule for a missing outside part (this crate cannot depend on that one).
#[path = "../../tests/src/outside.rs"]
mod outside;

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

/// The Python decoder: compiles nothing, loads the descriptor set protoc wrote, reads the zip
/// with `zipfile`, and prints the fields as JSON.
const PYTHON_DECODER: &str = r#"
import json, sys, zipfile
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
descriptor_set = descriptor_pb2.FileDescriptorSet()
descriptor_set.ParseFromString(open(sys.argv[1], "rb").read())
pool = descriptor_pool.DescriptorPool()
for proto_file in descriptor_set.file:
    pool.Add(proto_file)
def message(name):
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))()
archive = zipfile.ZipFile(sys.argv[2])
names = archive.namelist()
export_bin = archive.read("export.bin")
export = message("gaen.export.TemporaryExposureKeyExport")
export.ParseFromString(export_bin[16:])
signatures = message("gaen.export.TEKSignatureList")
signatures.ParseFromString(archive.read("export.sig"))
signature_check = "skipped"
try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    public_key = serialization.load_pem_public_key(open(sys.argv[3], "rb").read())
    try:
        public_key.verify(signatures.signatures[0].signature, export_bin, ec.ECDSA(hashes.SHA256()))
        signature_check = "valid"
    except Exception:
        signature_check = "invalid"
except ImportError:
    pass
print(json.dumps({
    "names": names,
    "header": export_bin[:16].decode("ascii"),
    "export": MessageToDict(export, preserving_proto_field_name=True),
    "signatures": MessageToDict(signatures, preserving_proto_field_name=True),
    "signature_check": signature_check,
}, sort_keys=True))
"#;

/// The Python interpreter: `EXPOSURE_TEST_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("EXPOSURE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python` runs `code` successfully.
fn python_runs(python: &str, code: &str) -> bool {
    Command::new(python)
        .args(["-c", code])
        .output()
        .is_ok_and(|output| output.status.success())
}

const PIP_INSTALL: &str = "install python3 (Debian: apt-get install python3 python3-pip), then \
                           `python3 -m pip install protobuf cryptography`; .ci/run does both";

#[test]
fn python_protobuf_decodes_the_same_fields() {
    let python = python();
    if !python_runs(&python, "pass") {
        outside::missing(&format!("the Python interpreter {python}"), PIP_INSTALL);
        return;
    }
    if !python_runs(&python, "import google.protobuf") {
        outside::missing(
            &format!("Google's protobuf package for {python}"),
            PIP_INSTALL,
        );
        return;
    }
    let fixture = Fixture::new();
    let zip = fixture.export();
    let descriptor_set = fixture.dir.path().join("export.desc");
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let protoc = protoc_bin_vendored::protoc_bin_path().unwrap();
    let status = Command::new(protoc)
        .arg(format!("--proto_path={}", proto_root.display()))
        .arg(format!("--descriptor_set_out={}", descriptor_set.display()))
        .arg("gaen/export.proto")
        .status()
        .unwrap();
    assert!(status.success());
    let output = Command::new(&python)
        .args(["-c", PYTHON_DECODER])
        .arg(&descriptor_set)
        .arg(&zip)
        .arg(fixture.path("pub.pem"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let decoded: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        decoded["names"],
        serde_json::json!(["export.bin", "export.sig"])
    );
    assert_eq!(decoded["header"], "EK Export v1    ");
    match decoded["signature_check"].as_str() {
        Some("valid") => {}
        Some("skipped") => outside::missing(
            &format!("the cryptography package for {python} (the second ECDSA verifier)"),
            PIP_INSTALL,
        ),
        other => panic!("export.sig does not verify with cryptography: {other:?}"),
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

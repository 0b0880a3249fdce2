//! The independent GAEN decoder: Python's `zipfile` and Google's protobuf package read an export
//! zip through the descriptor set protoc writes of `proto/proto/gaen/export.proto` (nothing is
//! compiled from the Rust side), and the `cryptography` package checks every signature against
//! the given public keys. Without python3 or protobuf a test fails under CI and is skipped loudly
//! elsewhere (`outside.rs`); `EXPOSURE_TEST_PYTHON` names another interpreter than `python3`.
//!
//! The matcher's CLI tests compile this same file (`#[path]`, beside `outside.rs`): they cannot
//! depend on this crate, which depends on the matcher.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::outside;

/// The decoder: prints the zip's entry names, header, both messages (as
/// `json_format.MessageToDict`), the keys' `key_data` in hex, in file order, and, per signature,
/// the index of the given key that verifies it (-1 for none), or "skipped" without the
/// cryptography package.
const DECODER: &str = r#"
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
signature_checks = "skipped"
try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    def load(path):
        data = open(path, "rb").read()
        if data.startswith(b"-----"):
            return serialization.load_pem_public_key(data)
        return serialization.load_der_public_key(data)
    keys = [load(path) for path in sys.argv[3:]]
    def verifier(signature):
        for index, key in enumerate(keys):
            try:
                key.verify(signature.signature, export_bin, ec.ECDSA(hashes.SHA256()))
                return index
            except Exception:
                pass
        return -1
    signature_checks = [verifier(signature) for signature in signatures.signatures]
except ImportError:
    pass
print(json.dumps({
    "names": names,
    "header": export_bin[:16].decode("ascii"),
    "export": MessageToDict(export, preserving_proto_field_name=True),
    "signatures": MessageToDict(signatures, preserving_proto_field_name=True),
    "signature_checks": signature_checks,
    "keys_hex": [key.key_data.hex() for key in export.keys],
}, sort_keys=True))
"#;

const PIP_INSTALL: &str = "install python3 (Debian: apt-get install python3 python3-pip), then \
                           `python3 -m pip install protobuf cryptography`; .ci/run does both";

/// A ready decoder: the interpreter and the descriptor set of the export messages.
pub struct PythonDecoder {
    python: String,
    descriptor_set: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether `python` runs `code` successfully.
fn python_runs(python: &str, code: &str) -> bool {
    Command::new(python)
        .args(["-c", code])
        .output()
        .is_ok_and(|output| output.status.success())
}

impl PythonDecoder {
    /// Returns the decoder, or `None` after reporting the missing part (python3 or its protobuf
    /// package); `protoc` is the vendored compiler's path.
    pub fn find(protoc: &Path) -> Option<PythonDecoder> {
        let python = std::env::var("EXPOSURE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        if !python_runs(&python, "pass") {
            outside::missing(&format!("the Python interpreter {python}"), PIP_INSTALL);
            return None;
        }
        if !python_runs(&python, "import google.protobuf") {
            outside::missing(
                &format!("Google's protobuf package for {python}"),
                PIP_INSTALL,
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary dir");
        let descriptor_set = dir.path().join("export.desc");
        let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
        let status = Command::new(protoc)
            .arg(format!("--proto_path={}", proto_root.display()))
            .arg(format!("--descriptor_set_out={}", descriptor_set.display()))
            .arg("gaen/export.proto")
            .status()
            .expect("protoc runs");
        assert!(status.success(), "protoc compiles gaen/export.proto");
        Some(PythonDecoder {
            python,
            descriptor_set,
            _dir: dir,
        })
    }

    /// Decodes the zip at `zip` and checks its signatures against the public keys (PEM, or DER
    /// SubjectPublicKeyInfo) in the files `public_keys`; returns the decoder's JSON. A "skipped" signature check without the
    /// cryptography package is reported as a missing outside part.
    pub fn decode(&self, zip: &Path, public_keys: &[impl AsRef<Path>]) -> serde_json::Value {
        let output = Command::new(&self.python)
            .args(["-c", DECODER])
            .arg(&self.descriptor_set)
            .arg(zip)
            .args(public_keys.iter().map(AsRef::as_ref))
            .output()
            .expect("python runs");
        assert!(output.status.success(), "{output:?}");
        let decoded: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("decoder JSON");
        if decoded["signature_checks"] == "skipped" {
            outside::missing(
                &format!(
                    "the cryptography package for {} (the second ECDSA verifier)",
                    self.python
                ),
                PIP_INSTALL,
            );
        }
        decoded
    }
}

/// Returns the decoded keys' `key_data`, in file order.
pub fn key_bytes(decoded: &serde_json::Value) -> Vec<Vec<u8>> {
    decoded["keys_hex"]
        .as_array()
        .expect("keys_hex")
        .iter()
        .map(|key| hex::decode(key.as_str().expect("hex text")).expect("hex"))
        .collect()
}

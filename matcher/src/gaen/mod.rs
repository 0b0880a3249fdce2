//! Google/Apple Exposure Notification export files (DESIGN §11): what Android and iOS phones,
//! whose operating system does the matching, download instead of filter batches.
//!
//! [`build_gaen_exports`] turns GAEN diagnosis keys into signed zips (a small run padded, keys
//! sorted, `export.bin` + `export.sig` signed by every key in service, at most 500,000 records a
//! file); [`GaenExport::parse`] reads a zip back, checks its two entries and header, decodes both
//! messages and verifies a signature against a DER SubjectPublicKeyInfo public key. Both are pure and deterministic: the zips carry fixed
//! timestamps, signatures are RFC 6979, and padding comes from a caller's seeded RNG.

mod archive;
mod error;
mod reader;
mod writer;

pub use error::GaenError;
pub use reader::GaenExport;
pub use writer::{
    GaenExportFile, GaenExportKey, GaenExportParams, GaenReportType, GaenSigner, MAX_SIGNERS,
    build_gaen_exports,
};

/// The proto2 messages of `export.bin` and `export.sig`, generated from
/// `proto/proto/gaen/export.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/gaen.export.rs"));
}

/// The 16 bytes `export.bin` starts with: "EK Export v1" and four spaces.
pub const EXPORT_HEADER: &[u8; 16] = b"EK Export v1    ";

/// Name of the zip entry holding the header and `TemporaryExposureKeyExport`.
pub const EXPORT_BIN_NAME: &str = "export.bin";

/// Name of the zip entry holding `TEKSignatureList`.
pub const EXPORT_SIG_NAME: &str = "export.sig";

/// OID of ECDSA with SHA-256, the only signature algorithm the frameworks accept.
pub const SIGNATURE_ALGORITHM_OID: &str = "1.2.840.10045.4.3.2";

/// Default `verification_key_id`: Vietnam's mobile country code, the convention (ANCHORS).
pub const DEFAULT_VERIFICATION_KEY_ID: &str = "452";

/// Default `verification_key_version`.
pub const DEFAULT_VERIFICATION_KEY_VERSION: &str = "v1";

/// Default minimum of keys a file holds, padding included (Google's server pads to 1,000).
pub const DEFAULT_MIN_RECORDS: usize = 1_000;

/// Most keys and revised keys one file holds together, padding included (Google's default); more
/// make more files.
pub const MAX_RECORDS_PER_FILE: usize = 500_000;

/// Largest decompressed zip entry a reader accepts (a 500,000-key `export.bin` is ~15 MB), so a
/// crafted zip cannot exhaust memory.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;

//! The one error type of building, reading and verifying GAEN export files.

/// Why an export file could not be built, read or verified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GaenError {
    /// The bytes are not a readable zip archive.
    #[error("not a zip archive: {0}")]
    Zip(String),
    /// The zip does not hold exactly `export.bin` and `export.sig`.
    #[error("zip must hold exactly export.bin and export.sig, found {0:?}")]
    Entries(Vec<String>),
    /// A zip entry decompresses to more than the limit.
    #[error("zip entry {0} is larger than 64 MiB")]
    EntryTooLarge(&'static str),
    /// `export.bin` does not start with "EK Export v1" and four spaces.
    #[error("export.bin must start with the 16-byte header \"EK Export v1    \"")]
    BadHeader,
    /// A message does not decode as its proto2 type.
    #[error("{entry} does not decode: {reason}")]
    Decode {
        /// The entry whose message is malformed.
        entry: &'static str,
        /// What the protobuf decoder reported.
        reason: String,
    },
    /// `export.sig` holds no signature.
    #[error("export.sig holds no signature")]
    NoSignature,
    /// The given public key is not a DER SubjectPublicKeyInfo of a P-256 key.
    #[error("public key is not a der subjectpublickeyinfo of a p-256 key")]
    InvalidPublicKey,
    /// No signature in `export.sig` verifies over `export.bin` with the given key.
    #[error("signature does not verify over export.bin with the given public key")]
    SignatureMismatch,
    /// A key to export is not 16 bytes, or a field is out of range.
    #[error("invalid key to export: {0}")]
    InvalidKey(&'static str),
    /// The zip could not be written.
    #[error("writing the zip failed: {0}")]
    Write(String),
}

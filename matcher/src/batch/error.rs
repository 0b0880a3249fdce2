//! The one error type of building, parsing and verifying batch files. Parse errors name the
//! field at fault, so a phone developer with a bad fixture learns where it went wrong.

/// Why a batch could not be built, parsed or verified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The file ends inside a field.
    #[error("file truncated in field {field}")]
    Truncated {
        /// The field being read when the bytes ran out.
        field: &'static str,
    },
    /// The file does not start with "EXPB".
    #[error("magic must be \"EXPB\"")]
    BadMagic,
    /// The file's version is not 1.
    #[error("version must be 1, got {0}")]
    UnsupportedVersion(u8),
    /// The file's `filter_kind` is not 1, 2 or 3.
    #[error("filter_kind must be 1, 2 or 3, got {0}")]
    UnknownFilterKind(u8),
    /// The reserved field is not zero.
    #[error("reserved must be 0, got {0}")]
    ReservedNotZero(u16),
    /// The region is empty, longer than 32 bytes or not printable ASCII.
    #[error("region must be 1..=32 printable ascii bytes, got {0:?}")]
    InvalidRegion(String),
    /// The file's `kind` is not 1 or 2.
    #[error("kind must be 1 (hourly) or 2 (daily), got {0}")]
    UnknownBatchKind(u8),
    /// `slot_min` is after `slot_max`.
    #[error("slot_min {slot_min} must not exceed slot_max {slot_max}")]
    SlotRange {
        /// The file's `slot_min`.
        slot_min: u64,
        /// The file's `slot_max`.
        slot_max: u64,
    },
    /// The binary fuse descriptor cannot describe a valid filter.
    #[error("invalid filter descriptor: {0}")]
    InvalidDescriptor(&'static str),
    /// `fingerprint_count` does not match the descriptor.
    #[error("fingerprint_count must be {expected} for this descriptor, got {got}")]
    FingerprintCount {
        /// What the descriptor implies: `segment_count_length + 2 * segment_length`.
        expected: u64,
        /// The file's `fingerprint_count`.
        got: u32,
    },
    /// More elements than fingerprints, which no binary fuse filter has.
    #[error("element_count {element_count} must not exceed fingerprint_count {fingerprint_count}")]
    ElementCount {
        /// The file's `element_count`.
        element_count: u32,
        /// The file's `fingerprint_count`.
        fingerprint_count: u32,
    },
    /// The key id is empty or not printable ASCII.
    #[error("key_id must be 1..=255 printable ascii bytes")]
    InvalidKeyId,
    /// Bytes follow the signature.
    #[error("{0} trailing bytes after the signature")]
    TrailingBytes(usize),
    /// The signature is not a DER-encoded ECDSA P-256 signature.
    #[error("signature is not a der-encoded ecdsa p-256 signature")]
    SignatureEncoding,
    /// The given public key is not a DER SubjectPublicKeyInfo of a P-256 key.
    #[error("public key is not a der subjectpublickeyinfo of a p-256 key")]
    InvalidPublicKey,
    /// The file names another signing key than the one given.
    #[error("batch names key_id {file}, but the given public key is {given}")]
    KeyIdMismatch {
        /// The key id in the file.
        file: String,
        /// The key id of the public key given.
        given: String,
    },
    /// The signature does not verify over the body with the given key.
    #[error("signature does not verify over the body")]
    SignatureMismatch,
    /// The signing key could not be read.
    #[error("signing key is not a pkcs#8 (or sec1) pem p-256 private key")]
    InvalidSigningKey,
    /// xorf could not build a filter from the keys.
    #[error("binary fuse filter construction failed: {0}")]
    FilterConstruction(&'static str),
    /// More distinct elements than the 32-bit `element_count` can count.
    #[error("a batch holds at most 4294967295 elements, got {0}")]
    TooManyElements(usize),
}

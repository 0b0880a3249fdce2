//! Batch files, version 1 (DESIGN §4): the signed, content-addressed binary fuse filters the
//! server publishes and phones download.
//!
//! [`build_batch`] turns tagged elements into file bytes (dedup, decoy padding, filter, body,
//! signature); [`BatchFile::parse`] turns bytes back into a zero-copy view that checks every
//! length and bound, verifies the signature, and answers lookups without copying fingerprints.

mod builder;
mod error;
mod file;
mod filter;
mod ordered;
mod signer;

pub use builder::{BatchParams, BuiltBatch, build_batch, build_batch_from_filter_keys};
pub use error::BatchError;
pub use file::{BatchFile, BatchHeader};
pub use filter::{FilterDescriptor, FuseView, murmur64_finalizer, murmur64_finalizer_inverse};
pub use ordered::{PARTITION_BYTES, SCHEDULE_BLOCK};
pub(crate) use signer::verify_signature;
pub use signer::{BatchSigner, key_id_for_public_key_der, public_key_der_from_pem};

/// The four magic bytes every batch file starts with.
pub const BATCH_MAGIC: &[u8; 4] = b"EXPB";

/// The batch file version this crate writes and reads.
pub const BATCH_VERSION: u8 = 1;

/// The longest region name a batch carries, in bytes.
pub const MAX_REGION_LEN: usize = 32;

/// Width of the filter's fingerprints; its byte is the file's `filter_kind`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FingerprintWidth {
    /// 8-bit fingerprints: false-positive rate 2^-8 per lookup.
    Bits8 = 1,
    /// 16-bit fingerprints: false-positive rate 2^-16 per lookup (the deployment default).
    Bits16 = 2,
    /// 32-bit fingerprints: false-positive rate 2^-32 per lookup.
    Bits32 = 3,
}

impl FingerprintWidth {
    /// Returns the width for 8, 16 or 32 bits, or `None` for any other count.
    pub fn from_bits(bits: u32) -> Option<FingerprintWidth> {
        match bits {
            8 => Some(FingerprintWidth::Bits8),
            16 => Some(FingerprintWidth::Bits16),
            32 => Some(FingerprintWidth::Bits32),
            _ => None,
        }
    }

    /// Returns the width of the file's `filter_kind` byte, or `None` for an unknown byte.
    pub fn from_filter_kind(filter_kind: u8) -> Option<FingerprintWidth> {
        match filter_kind {
            1 => Some(FingerprintWidth::Bits8),
            2 => Some(FingerprintWidth::Bits16),
            3 => Some(FingerprintWidth::Bits32),
            _ => None,
        }
    }

    /// Returns the number of bits in one fingerprint.
    pub fn bits(self) -> u32 {
        match self {
            FingerprintWidth::Bits8 => 8,
            FingerprintWidth::Bits16 => 16,
            FingerprintWidth::Bits32 => 32,
        }
    }

    /// Returns the number of bytes one fingerprint takes in the file.
    pub fn bytes(self) -> usize {
        self.bits() as usize / 8
    }

    /// Returns the file's `filter_kind` byte.
    pub fn filter_kind(self) -> u8 {
        self as u8
    }
}

/// Whether a batch is an hourly batch or a daily roll-up (DESIGN §6).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchKind {
    /// Published every `publish_interval` from newly releasable keys.
    Hourly = 1,
    /// One UTC day's elements, superseding that day's hourly batches.
    Daily = 2,
}

impl BatchKind {
    /// Returns the file's `kind` byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Returns the kind of a `kind` byte, or `None` for an unknown byte.
    pub fn from_byte(byte: u8) -> Option<BatchKind> {
        match byte {
            1 => Some(BatchKind::Hourly),
            2 => Some(BatchKind::Daily),
            _ => None,
        }
    }

    /// Returns the lowercase name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BatchKind::Hourly => "hourly",
            BatchKind::Daily => "daily",
        }
    }
}

/// Returns whether `region` is a region name a batch can carry: 1..=32 printable ASCII bytes.
pub(crate) fn is_valid_region(region: &[u8]) -> bool {
    (1..=MAX_REGION_LEN).contains(&region.len()) && region.iter().all(u8::is_ascii_graphic)
}

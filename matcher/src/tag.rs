//! Tags (DESIGN §3): the hash that binds one identifier to its scheme and time slot, and the two
//! pieces it splits into: the 64-bit filter key that goes into a batch's binary fuse filter, and
//! the 16-byte confirm digest that the exact second stage compares.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::scheme::Scheme;

/// Domain-separation prefix hashed first into every tag.
pub const TAG_DOMAIN: &[u8] = b"EXPOSURE-TAG-V1";

/// Longest identifier whose length fits the tag's one length byte.
const MAX_TAGGED_IDENTIFIER_LEN: usize = u8::MAX as usize;

/// `SHA-256("EXPOSURE-TAG-V1" || scheme || u64_le(slot_start) || id_len || identifier)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag(pub [u8; 32]);

/// The 16 bytes `tag[8..24]` that a phone checks exactly against a confirm bucket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConfirmDigest(pub [u8; 16]);

/// One element of a batch: a tag with the slot it belongs to (for the batch's slot range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaggedElement {
    /// Unix seconds at which the identifier's slot began.
    pub slot_start: u64,
    /// The identifier's tag.
    pub tag: Tag,
}

/// Why a string is not a tag or a confirm digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagParseError {
    /// The string has the wrong number of hex digits.
    #[error("expected {expected} hex digits, got {got}")]
    Length {
        /// Hex digits required.
        expected: usize,
        /// Characters found.
        got: usize,
    },
    /// The string holds a character that is not a hex digit.
    #[error("invalid hex digit in {0:?}")]
    NotHex(String),
}

impl Tag {
    /// Returns the tag of `identifier` broadcast by `scheme` in the slot starting `slot_start`.
    ///
    /// Every scheme's identifiers are 1..=32 bytes; an identifier longer than 255 bytes cannot
    /// be encoded and is hashed with a saturated length byte.
    pub fn compute(scheme: Scheme, slot_start: u64, identifier: &[u8]) -> Tag {
        debug_assert!(identifier.len() <= MAX_TAGGED_IDENTIFIER_LEN);
        let id_len = u8::try_from(identifier.len()).unwrap_or(u8::MAX);
        // Assembling the message on the stack and hashing it in one call keeps the common
        // case (identifiers up to 30 bytes) to a single SHA-256 block.
        let mut message = [0u8; TAG_DOMAIN.len() + 1 + 8 + 1 + 32];
        let header_len = TAG_DOMAIN.len() + 1 + 8 + 1;
        message[..TAG_DOMAIN.len()].copy_from_slice(TAG_DOMAIN);
        message[TAG_DOMAIN.len()] = scheme.byte();
        message[TAG_DOMAIN.len() + 1..header_len - 1].copy_from_slice(&slot_start.to_le_bytes());
        message[header_len - 1] = id_len;
        let digest = if identifier.len() <= 32 {
            message[header_len..header_len + identifier.len()].copy_from_slice(identifier);
            Sha256::digest(&message[..header_len + identifier.len()])
        } else {
            Sha256::new()
                .chain_update(&message[..header_len])
                .chain_update(identifier)
                .finalize()
        };
        Tag(digest.into())
    }

    /// Returns the filter key `u64_le(tag[0..8])` inserted in the binary fuse filter.
    pub fn filter_key(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(bytes)
    }

    /// Returns the confirm digest `tag[8..24]`.
    pub fn confirm_digest(&self) -> ConfirmDigest {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[8..24]);
        ConfirmDigest(bytes)
    }

    /// Parses 64 hex digits (either case); surrounding whitespace is ignored.
    pub fn from_hex(text: &str) -> Result<Tag, TagParseError> {
        decode_hex_array(text).map(Tag)
    }

    /// Returns the 64 lowercase hex digits of the tag.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl ConfirmDigest {
    /// Returns the first `bits` (0..=32) bits of the digest, most significant bit of byte 0
    /// first, right-aligned: the confirm bucket the digest falls in. `bits` above 32 count as 32.
    pub fn prefix(&self, bits: u32) -> u32 {
        debug_assert!(bits <= 32);
        let leading = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        match bits.min(32) {
            0 => 0,
            bits => leading >> (32 - bits),
        }
    }

    /// Parses 32 hex digits (either case); surrounding whitespace is ignored.
    pub fn from_hex(text: &str) -> Result<ConfirmDigest, TagParseError> {
        decode_hex_array(text).map(ConfirmDigest)
    }

    /// Returns the 32 lowercase hex digits of the digest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ConfirmDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

/// Decodes exactly `2 * N` hex digits into `N` bytes.
fn decode_hex_array<const N: usize>(text: &str) -> Result<[u8; N], TagParseError> {
    let text = text.trim();
    if text.len() != 2 * N {
        return Err(TagParseError::Length {
            expected: 2 * N,
            got: text.chars().count(),
        });
    }
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| TagParseError::NotHex(text.to_owned()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_takes_most_significant_bits_first() {
        let digest = ConfirmDigest([
            0b1010_0000,
            0xff,
            0x00,
            0x01,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        assert_eq!(digest.prefix(0), 0);
        assert_eq!(digest.prefix(1), 1);
        assert_eq!(digest.prefix(3), 0b101);
        assert_eq!(digest.prefix(16), 0xa0ff);
        assert_eq!(digest.prefix(32), 0xa0ff_0001);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let tag = Tag([7u8; 32]);
        assert_eq!(Tag::from_hex(&tag.to_hex().to_uppercase()), Ok(tag));
        assert!(matches!(
            Tag::from_hex("00"),
            Err(TagParseError::Length { .. })
        ));
        assert!(matches!(
            Tag::from_hex(&"zz".repeat(32)),
            Err(TagParseError::NotHex(_))
        ));
    }

    #[test]
    fn long_identifiers_hash_in_two_parts_like_short_ones() {
        let identifier = [9u8; 40];
        let mut message = TAG_DOMAIN.to_vec();
        message.push(3);
        message.extend_from_slice(&5u64.to_le_bytes());
        message.push(40);
        message.extend_from_slice(&identifier);
        let expected: [u8; 32] = Sha256::digest(&message).into();
        assert_eq!(Tag::compute(Scheme::Static, 5, &identifier), Tag(expected));
    }
}

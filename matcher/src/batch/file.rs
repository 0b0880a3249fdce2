//! Parsing a batch file: a zero-copy view that checks every length and bound of DESIGN §4,
//! verifies the signature, and looks filter keys up in the fingerprints where they lie.

use p256::ecdsa::Signature;
use sha2::{Digest, Sha256};

use super::filter::{FilterDescriptor, FuseView};
use super::signer::{key_id_for_public_key_der, verify_signature};
use super::{BATCH_MAGIC, BATCH_VERSION, BatchError, BatchKind, FingerprintWidth, is_valid_region};
use crate::tag::Tag;

/// Every body field of DESIGN §4 except the fingerprints, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Format version (always 1).
    pub version: u8,
    /// Fingerprint width (`filter_kind` byte 1, 2 or 3).
    pub filter_kind: FingerprintWidth,
    /// Region the batch belongs to.
    pub region: String,
    /// Position of the batch in its region's sequence.
    pub sequence: u64,
    /// Hourly batch or daily roll-up.
    pub kind: BatchKind,
    /// Unix seconds at which the batch was built.
    pub created_at: u64,
    /// Earliest slot start of the real elements.
    pub slot_min: u64,
    /// Latest slot start of the real elements.
    pub slot_max: u64,
    /// Keys in the filter, padding included.
    pub element_count: u32,
    /// Binary fuse seed.
    pub seed: u64,
    /// Binary fuse segment length.
    pub segment_length: u32,
    /// Binary fuse segment length mask.
    pub segment_length_mask: u32,
    /// Binary fuse segment count times segment length.
    pub segment_count_length: u32,
    /// Number of fingerprints.
    pub fingerprint_count: u32,
}

impl BatchHeader {
    /// Returns the filter's size in bits per element (`fingerprint_count × w / element_count`),
    /// the figure DESIGN §9 bounds; 0 for an empty filter.
    pub fn bits_per_element(&self) -> f64 {
        if self.element_count == 0 {
            return 0.0;
        }
        f64::from(self.fingerprint_count) * f64::from(self.filter_kind.bits())
            / f64::from(self.element_count)
    }

    /// Returns the binary fuse descriptor.
    pub fn descriptor(&self) -> FilterDescriptor {
        FilterDescriptor {
            seed: self.seed,
            segment_length: self.segment_length,
            segment_length_mask: self.segment_length_mask,
            segment_count_length: self.segment_count_length,
        }
    }
}

/// A parsed batch file, borrowing the bytes it was parsed from.
#[derive(Clone, Debug)]
pub struct BatchFile<'a> {
    header: BatchHeader,
    body: &'a [u8],
    filter: FuseView<'a>,
    key_id: &'a str,
    signature: &'a [u8],
}

impl<'a> BatchFile<'a> {
    /// Parses a whole file, checking every length and bound; trailing bytes are an error.
    /// The signature is decoded but not verified: see [`BatchFile::verify`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let mut reader = Reader { bytes, position: 0 };
        if reader.take(4, "magic")? != BATCH_MAGIC {
            return Err(BatchError::BadMagic);
        }
        let version = reader.u8("version")?;
        if version != BATCH_VERSION {
            return Err(BatchError::UnsupportedVersion(version));
        }
        let filter_kind_byte = reader.u8("filter_kind")?;
        let filter_kind = FingerprintWidth::from_filter_kind(filter_kind_byte)
            .ok_or(BatchError::UnknownFilterKind(filter_kind_byte))?;
        let reserved = reader.u16("reserved")?;
        if reserved != 0 {
            return Err(BatchError::ReservedNotZero(reserved));
        }
        let region_len = usize::from(reader.u8("region_len")?);
        let region = reader.take(region_len, "region")?;
        if !is_valid_region(region) {
            return Err(BatchError::InvalidRegion(
                String::from_utf8_lossy(region).into_owned(),
            ));
        }
        let region = String::from_utf8_lossy(region).into_owned();
        let sequence = reader.u64("sequence")?;
        let kind_byte = reader.u8("kind")?;
        let kind =
            BatchKind::from_byte(kind_byte).ok_or(BatchError::UnknownBatchKind(kind_byte))?;
        let created_at = reader.u64("created_at")?;
        let slot_min = reader.u64("slot_min")?;
        let slot_max = reader.u64("slot_max")?;
        if slot_min > slot_max {
            return Err(BatchError::SlotRange { slot_min, slot_max });
        }
        let element_count = reader.u32("element_count")?;
        let descriptor = FilterDescriptor {
            seed: reader.u64("seed")?,
            segment_length: reader.u32("segment_length")?,
            segment_length_mask: reader.u32("segment_length_mask")?,
            segment_count_length: reader.u32("segment_count_length")?,
        };
        let fingerprint_count = reader.u32("fingerprint_count")?;
        descriptor.validate(fingerprint_count)?;
        if element_count > fingerprint_count {
            return Err(BatchError::ElementCount {
                element_count,
                fingerprint_count,
            });
        }
        // At most 2^32 × 4 bytes, which fits usize on the 64-bit targets this crate serves.
        let fingerprint_bytes = (fingerprint_count as usize)
            .checked_mul(filter_kind.bytes())
            .ok_or(BatchError::Truncated {
                field: "fingerprints",
            })?;
        let fingerprints = reader.take(fingerprint_bytes, "fingerprints")?;
        let body = &bytes[..reader.position];

        let key_id_len = usize::from(reader.u8("key_id_len")?);
        let key_id = reader.take(key_id_len, "key_id")?;
        if key_id.is_empty() || !key_id.iter().all(u8::is_ascii_graphic) {
            return Err(BatchError::InvalidKeyId);
        }
        let key_id = std::str::from_utf8(key_id).map_err(|_| BatchError::InvalidKeyId)?;
        let signature_len = usize::from(reader.u16("sig_len")?);
        let signature = reader.take(signature_len, "signature")?;
        Signature::from_der(signature).map_err(|_| BatchError::SignatureEncoding)?;
        let trailing = bytes.len() - reader.position;
        if trailing != 0 {
            return Err(BatchError::TrailingBytes(trailing));
        }

        let filter = FuseView::new(descriptor, filter_kind, fingerprints)?;
        let header = BatchHeader {
            version,
            filter_kind,
            region,
            sequence,
            kind,
            created_at,
            slot_min,
            slot_max,
            element_count,
            seed: descriptor.seed,
            segment_length: descriptor.segment_length,
            segment_length_mask: descriptor.segment_length_mask,
            segment_count_length: descriptor.segment_count_length,
            fingerprint_count,
        };
        Ok(BatchFile {
            header,
            body,
            filter,
            key_id,
            signature,
        })
    }

    /// Returns the decoded header fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Returns the id of the key that signed the batch, as written in the file.
    pub fn key_id(&self) -> &str {
        self.key_id
    }

    /// Returns the body: every byte before the signature section.
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// Returns the DER signature bytes.
    pub fn signature(&self) -> &[u8] {
        self.signature
    }

    /// Returns the batch id: the lowercase hex SHA-256 of the body.
    pub fn batch_id(&self) -> String {
        hex::encode(Sha256::digest(self.body))
    }

    /// Returns the zero-copy filter, for callers that run many lookups.
    pub fn filter(&self) -> &FuseView<'a> {
        &self.filter
    }

    /// Checks that the file names the key `spki_der` (DER SubjectPublicKeyInfo) and that its
    /// signature verifies over the body with that key.
    pub fn verify(&self, spki_der: &[u8]) -> Result<(), BatchError> {
        let given = key_id_for_public_key_der(spki_der);
        if given != self.key_id {
            return Err(BatchError::KeyIdMismatch {
                file: self.key_id.to_owned(),
                given,
            });
        }
        verify_signature(spki_der, self.body, self.signature)
    }

    /// Returns whether the filter (probably) holds `filter_key`: the lookup of DESIGN §4 over the
    /// file's bytes.
    #[inline]
    pub fn contains_key(&self, filter_key: u64) -> bool {
        self.filter.contains_key(filter_key)
    }

    /// Returns whether the filter (probably) holds the tag's filter key.
    #[inline]
    pub fn contains(&self, tag: &Tag) -> bool {
        self.filter.contains_key(tag.filter_key())
    }
}

/// A cursor over the file that names the field whose bytes ran out.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, field: &'static str) -> Result<&'a [u8], BatchError> {
        let end = self
            .position
            .checked_add(length)
            .ok_or(BatchError::Truncated { field })?;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or(BatchError::Truncated { field })?;
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BatchError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, BatchError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, BatchError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, BatchError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, BatchError> {
        self.array(field).map(u64::from_le_bytes)
    }
}

//! Reading export files back: the two zip entries, the header, both proto2 messages, and the
//! signature over the whole `export.bin` (what a phone's framework checks before matching).

use prost::Message;

use super::archive::read_zip;
use super::proto::{TekSignatureList, TemporaryExposureKeyExport};
use super::{EXPORT_BIN_NAME, EXPORT_HEADER, EXPORT_SIG_NAME, GaenError};
use crate::batch::{BatchError, verify_signature};

/// A parsed export zip: the decoded messages plus the raw `export.bin` the signatures cover.
#[derive(Clone, Debug)]
pub struct GaenExport {
    /// `export.bin` as stored, header included.
    export_bin: Vec<u8>,
    /// The decoded `TemporaryExposureKeyExport`.
    export: TemporaryExposureKeyExport,
    /// The decoded `TEKSignatureList`.
    signatures: TekSignatureList,
}

impl GaenExport {
    /// Parses a zip: exactly `export.bin` and `export.sig`, the 16-byte header, both messages
    /// decoding, and at least one signature. The signature itself is checked by [`verify`].
    ///
    /// [`verify`]: GaenExport::verify
    pub fn parse(zip_bytes: &[u8]) -> Result<GaenExport, GaenError> {
        let (export_bin, export_sig) = read_zip(zip_bytes)?;
        let body = export_bin
            .strip_prefix(EXPORT_HEADER.as_slice())
            .ok_or(GaenError::BadHeader)?;
        let export =
            TemporaryExposureKeyExport::decode(body).map_err(|error| GaenError::Decode {
                entry: EXPORT_BIN_NAME,
                reason: error.to_string(),
            })?;
        let signatures =
            TekSignatureList::decode(export_sig.as_slice()).map_err(|error| GaenError::Decode {
                entry: EXPORT_SIG_NAME,
                reason: error.to_string(),
            })?;
        if signatures.signatures.is_empty() {
            return Err(GaenError::NoSignature);
        }
        Ok(GaenExport {
            export_bin,
            export,
            signatures,
        })
    }

    /// Checks that some signature of `export.sig` verifies over the whole `export.bin` with the
    /// given DER SubjectPublicKeyInfo P-256 key.
    pub fn verify(&self, spki_der: &[u8]) -> Result<(), GaenError> {
        let mut outcome = Err(GaenError::SignatureMismatch);
        for signature in &self.signatures.signatures {
            let signature_der = signature.signature.as_deref().unwrap_or_default();
            match verify_signature(spki_der, &self.export_bin, signature_der) {
                Ok(()) => return Ok(()),
                Err(BatchError::InvalidPublicKey) => return Err(GaenError::InvalidPublicKey),
                Err(_) => outcome = Err(GaenError::SignatureMismatch),
            }
        }
        outcome
    }

    /// Returns the decoded `TemporaryExposureKeyExport`.
    pub fn export(&self) -> &TemporaryExposureKeyExport {
        &self.export
    }

    /// Returns the decoded `TEKSignatureList`.
    pub fn signatures(&self) -> &TekSignatureList {
        &self.signatures
    }

    /// Returns `export.bin` as stored, header included.
    pub fn export_bin(&self) -> &[u8] {
        &self.export_bin
    }
}

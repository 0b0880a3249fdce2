//! The signing key of batches: ECDSA P-256 over SHA-256 with deterministic RFC 6979 nonces and
//! DER-encoded signatures (DESIGN §4), and the key id that names a public key in a batch file.

use std::fmt;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::BatchError;

/// Hex characters of SHA-256(SPKI DER) that make up a key id.
const KEY_ID_HEX_LEN: usize = 16;

/// Returns the key id of a public key: the first 16 lowercase hex characters of the SHA-256 of
/// its DER SubjectPublicKeyInfo.
pub fn key_id_for_public_key_der(spki_der: &[u8]) -> String {
    let mut key_id = hex::encode(Sha256::digest(spki_der));
    key_id.truncate(KEY_ID_HEX_LEN);
    key_id
}

/// An ECDSA P-256 private key that signs batch bodies.
#[derive(Clone)]
pub struct BatchSigner {
    signing_key: SigningKey,
    /// DER SubjectPublicKeyInfo of the public key, computed once.
    public_key_der: Vec<u8>,
    /// Key id derived from `public_key_der`, written into every batch.
    key_id: String,
}

impl BatchSigner {
    /// Returns a fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::random(&mut OsRng))
    }

    /// Reads a PKCS#8 PEM ("BEGIN PRIVATE KEY") P-256 private key; a SEC1 PEM ("BEGIN EC
    /// PRIVATE KEY", what `openssl ecparam -genkey` writes) is accepted too.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, BatchError> {
        let signing_key = SigningKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(SigningKey::from))
            .map_err(|_| BatchError::InvalidSigningKey)?;
        Ok(Self::from_signing_key(signing_key))
    }

    fn from_signing_key(signing_key: SigningKey) -> Self {
        // Encoding a valid P-256 point as SPKI cannot fail; an empty fallback keeps this total.
        let public_key_der = signing_key
            .verifying_key()
            .to_public_key_der()
            .map(|document| document.as_bytes().to_vec())
            .unwrap_or_default();
        debug_assert!(!public_key_der.is_empty());
        let key_id = key_id_for_public_key_der(&public_key_der);
        BatchSigner {
            signing_key,
            public_key_der,
            key_id,
        }
    }

    /// Returns the private key as PKCS#8 PEM, for storing it.
    pub fn to_pkcs8_pem(&self) -> String {
        let pem = self.signing_key.to_pkcs8_pem(LineEnding::LF);
        debug_assert!(pem.is_ok(), "a valid P-256 scalar always encodes");
        pem.map(|pem| pem.to_string()).unwrap_or_default()
    }

    /// Returns the key id written into batches (16 lowercase hex characters).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the public key as DER SubjectPublicKeyInfo, what `GetSigningKeys` serves.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.public_key_der.clone()
    }

    /// Returns the public key as PEM ("BEGIN PUBLIC KEY").
    pub fn public_key_pem(&self) -> String {
        let pem = self
            .signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF);
        debug_assert!(pem.is_ok(), "a valid P-256 point always encodes");
        pem.unwrap_or_default()
    }

    /// Returns the DER-encoded deterministic (RFC 6979) ECDSA signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing_key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

impl fmt::Debug for BatchSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        formatter
            .debug_struct("BatchSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Returns the DER SubjectPublicKeyInfo of a public key given as PEM ("BEGIN PUBLIC KEY").
pub fn public_key_der_from_pem(pem: &str) -> Result<Vec<u8>, BatchError> {
    let key = VerifyingKey::from_public_key_pem(pem).map_err(|_| BatchError::InvalidPublicKey)?;
    key.to_public_key_der()
        .map(|document| document.as_bytes().to_vec())
        .map_err(|_| BatchError::InvalidPublicKey)
}

/// Checks a DER signature over `message` with a DER SubjectPublicKeyInfo public key.
pub(crate) fn verify_signature(
    spki_der: &[u8],
    message: &[u8],
    signature_der: &[u8],
) -> Result<(), BatchError> {
    let key =
        VerifyingKey::from_public_key_der(spki_der).map_err(|_| BatchError::InvalidPublicKey)?;
    let signature =
        Signature::from_der(signature_der).map_err(|_| BatchError::SignatureEncoding)?;
    key.verify(message, &signature)
        .map_err(|_| BatchError::SignatureMismatch)
}

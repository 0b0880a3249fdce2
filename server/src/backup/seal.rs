//! Sealing of backup objects (DESIGN.md section 15): every file of a backup made with
//! `--backup-key-file` is encrypted and authenticated with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`), so the folder or bucket that holds it sees no keys or tokens, and a
//! flipped byte, a swapped, truncated or reordered object, an object sealed with another key or
//! an object of another deployment is refused at restore, naming the object.
//!
//! A sealed object, byte by byte:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `EXPSEAL1` |
//! | 1 | `L`, the length of the deployment id (1..=64) |
//! | L | the deployment id (ASCII letters, digits, `-`, `_`) |
//! | then, per chunk of at most 1 MiB of plaintext: | |
//! | 24 | a random nonce (OS-seeded CSPRNG; 192 bits, so random nonces never collide in practice) |
//! | n + 16 | the chunk encrypted, then its Poly1305 tag |
//!
//! Every chunk but the last holds exactly 1 MiB of plaintext; the last holds 0 to 1 MiB (an
//! empty file is one empty chunk). The associated data of chunk `i` is
//! `"exposure-server backup seal 1" ‖ L ‖ deployment id ‖ u32_be(name length) ‖ name ‖
//! u64_be(position) ‖ u64_be(i) ‖ last (1 for the last chunk, else 0)`, so a chunk moved within
//! or between objects, a dropped final chunk, an object under another name or position, and an
//! object of another deployment (whose header would have to be rewritten) all fail the tag.
//!
//! Chunks keep memory bounded: an SST or blob file of hundreds of MiB is sealed and opened as a
//! stream, 1 MiB at a time.

use std::io::{Read, Write};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

/// Bytes of a backup key (`head -c 32 /dev/urandom`).
pub const KEY_BYTES: usize = 32;
/// First bytes of every sealed object.
pub const MAGIC: &[u8; 8] = b"EXPSEAL1";
/// Separates this use of the key from any other.
pub const DOMAIN: &[u8] = b"exposure-server backup seal 1";
/// Plaintext bytes of every chunk but the last.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of an XChaCha20 nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of a Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// Longest deployment id.
pub const MAX_DEPLOYMENT_BYTES: usize = 64;
/// Bytes of a sealed chunk that holds a whole [`CHUNK_BYTES`] of plaintext.
const SEALED_CHUNK_BYTES: usize = NONCE_BYTES + CHUNK_BYTES + TAG_BYTES;

/// Why a sealed object was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The object does not start with a seal header.
    #[error("not a sealed backup object (no EXPSEAL1 header)")]
    NotSealed,
    /// The object was sealed for another deployment.
    #[error(
        "sealed for deployment {found:?}, not this backup's {expected:?}: an object of another deployment"
    )]
    ForeignDeployment {
        /// The deployment its header names.
        found: String,
        /// The deployment of the backup being read.
        expected: String,
    },
    /// A tag did not verify.
    #[error(
        "refused: it does not open with this key (tampered, truncated, moved, reordered, or sealed with another key)"
    )]
    Refused,
    /// Reading the object or writing the plaintext failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Seals and opens the objects of one deployment's backups.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    deployment: String,
}

/// Returns whether `id` may name a deployment: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn is_valid_deployment(id: &str) -> bool {
    (1..=MAX_DEPLOYMENT_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Reads a backup key file: exactly [`KEY_BYTES`] bytes. A symbolic link is followed (a
/// mounted secret); the message names the setting and never the key.
pub fn read_key_file(path: &Path) -> Result<[u8; KEY_BYTES], String> {
    let bytes = crate::files::read_regular(
        path,
        crate::files::ReadRules {
            limit: KEY_BYTES as u64,
            follow_symlinks: true,
            own_only: false,
        },
    )
    .map_err(|error| format!("--backup-key-file: {error}"))?;
    bytes.as_slice().try_into().map_err(|_| {
        format!(
            "--backup-key-file {}: holds {} bytes, not exactly {KEY_BYTES} random bytes (make one with head -c {KEY_BYTES} /dev/urandom)",
            path.display(),
            bytes.len()
        )
    })
}

/// Returns the deployment id a sealed object's header names.
pub fn deployment_of(sealed: &[u8]) -> Result<String, OpenError> {
    read_header(&mut &sealed[..])
}

impl Sealer {
    /// Returns a sealer of `key` for the deployment `deployment`.
    pub fn new(key: &[u8; KEY_BYTES], deployment: &str) -> Result<Self, String> {
        if !is_valid_deployment(deployment) {
            return Err(format!(
                "deployment id {deployment:?} is not 1 to {MAX_DEPLOYMENT_BYTES} letters, digits, '-' or '_'"
            ));
        }
        Ok(Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            deployment: deployment.to_owned(),
        })
    }

    /// Returns the deployment this sealer binds.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// Returns the associated data of chunk `index` of the object `name` at `position`.
    fn associated_data(&self, name: &str, position: u64, index: u64, last: bool) -> Vec<u8> {
        let mut data = Vec::with_capacity(DOMAIN.len() + 22 + self.deployment.len() + name.len());
        data.extend_from_slice(DOMAIN);
        data.push(self.deployment.len() as u8);
        data.extend_from_slice(self.deployment.as_bytes());
        data.extend_from_slice(&(name.len() as u32).to_be_bytes());
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&position.to_be_bytes());
        data.extend_from_slice(&index.to_be_bytes());
        data.push(u8::from(last));
        data
    }

    /// Seals everything `reader` yields as the object `name` at `position` into `writer`;
    /// returns the sealed length.
    pub fn seal_stream(
        &self,
        name: &str,
        position: u64,
        mut reader: impl Read,
        mut writer: impl Write,
    ) -> std::io::Result<u64> {
        writer.write_all(MAGIC)?;
        writer.write_all(&[self.deployment.len() as u8])?;
        writer.write_all(self.deployment.as_bytes())?;
        let mut written = (MAGIC.len() + 1 + self.deployment.len()) as u64;
        let mut current = vec![0u8; CHUNK_BYTES];
        let mut next = vec![0u8; CHUNK_BYTES];
        let mut current_length = read_full(&mut reader, &mut current)?;
        let mut index = 0u64;
        loop {
            // A full chunk is the last only when nothing follows it.
            let next_length = if current_length == CHUNK_BYTES {
                read_full(&mut reader, &mut next)?
            } else {
                0
            };
            let last = next_length == 0;
            let mut nonce = [0u8; NONCE_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let aad = self.associated_data(name, position, index, last);
            let sealed = self
                .cipher
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &current[..current_length],
                        aad: &aad,
                    },
                )
                .map_err(|_| std::io::Error::other("sealing failed"))?;
            writer.write_all(&nonce)?;
            writer.write_all(&sealed)?;
            written += (NONCE_BYTES + sealed.len()) as u64;
            if last {
                return Ok(written);
            }
            std::mem::swap(&mut current, &mut next);
            current_length = next_length;
            index += 1;
        }
    }

    /// Opens the sealed object `name` at `position` that `reader` yields, writing its plaintext
    /// to `writer`; returns the plaintext length. Plaintext written before a refusal must be
    /// discarded by the caller.
    pub fn open_stream(
        &self,
        name: &str,
        position: u64,
        mut reader: impl Read,
        mut writer: impl Write,
    ) -> Result<u64, OpenError> {
        let found = read_header(&mut reader)?;
        if found != self.deployment {
            return Err(OpenError::ForeignDeployment {
                found,
                expected: self.deployment.clone(),
            });
        }
        let mut current = vec![0u8; SEALED_CHUNK_BYTES];
        let mut next = vec![0u8; SEALED_CHUNK_BYTES];
        let mut current_length = read_full(&mut reader, &mut current)?;
        let mut index = 0u64;
        let mut plain = 0u64;
        loop {
            if current_length < NONCE_BYTES + TAG_BYTES {
                return Err(OpenError::Refused);
            }
            let next_length = if current_length == SEALED_CHUNK_BYTES {
                read_full(&mut reader, &mut next)?
            } else {
                0
            };
            let last = next_length == 0;
            let aad = self.associated_data(name, position, index, last);
            let mut nonce = [0u8; NONCE_BYTES];
            nonce.copy_from_slice(&current[..NONCE_BYTES]);
            let opened = self
                .cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &current[NONCE_BYTES..current_length],
                        aad: &aad,
                    },
                )
                .map_err(|_| OpenError::Refused)?;
            writer.write_all(&opened)?;
            plain += opened.len() as u64;
            if last {
                return Ok(plain);
            }
            std::mem::swap(&mut current, &mut next);
            current_length = next_length;
            index += 1;
        }
    }

    /// Returns `plaintext` sealed as the object `name` at `position`.
    pub fn seal(&self, name: &str, position: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(plaintext.len() + 128);
        // Writing into a Vec cannot fail, nor can sealing a bounded chunk.
        let _ = self.seal_stream(name, position, plaintext, &mut sealed);
        sealed
    }

    /// Returns the plaintext of the sealed object `name` at `position`.
    pub fn open(&self, name: &str, position: u64, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut plaintext = Vec::with_capacity(sealed.len());
        self.open_stream(name, position, sealed, &mut plaintext)?;
        Ok(plaintext)
    }
}

/// Reads the seal header; returns the deployment id it names.
fn read_header(reader: &mut impl Read) -> Result<String, OpenError> {
    let mut fixed = [0u8; 9];
    if read_full(reader, &mut fixed)? < fixed.len() || &fixed[..8] != MAGIC {
        return Err(OpenError::NotSealed);
    }
    let mut id = vec![0u8; usize::from(fixed[8])];
    if read_full(reader, &mut id)? < id.len() {
        return Err(OpenError::NotSealed);
    }
    match String::from_utf8(id) {
        Ok(id) if is_valid_deployment(&id) => Ok(id),
        _ => Err(OpenError::NotSealed),
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_BYTES] = [7; KEY_BYTES];

    fn sealer(deployment: &str) -> Sealer {
        Sealer::new(&KEY, deployment).expect("valid deployment")
    }

    /// The layout of the module documentation, rebuilt here by hand: the header bytes, and the
    /// first chunk opened directly with the AEAD under associated data written out literally.
    #[test]
    fn a_sealed_object_has_the_documented_layout() {
        let sealed = sealer("dep-1").seal("db/CURRENT", 3, b"MANIFEST-000005\n");
        assert_eq!(&sealed[..14], b"EXPSEAL1\x05dep-1");
        assert_eq!(sealed.len(), 14 + 24 + 16 + 16);
        let mut aad = b"exposure-server backup seal 1\x05dep-1".to_vec();
        aad.extend_from_slice(&[0, 0, 0, 10]);
        aad.extend_from_slice(b"db/CURRENT");
        aad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        aad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        aad.push(1);
        let cipher = XChaCha20Poly1305::new((&KEY).into());
        let plain = cipher
            .decrypt(
                &XNonce::from(<[u8; 24]>::try_from(&sealed[14..38]).expect("24 bytes")),
                Payload {
                    msg: &sealed[38..],
                    aad: &aad,
                },
            )
            .expect("opens with the documented associated data");
        assert_eq!(plain, b"MANIFEST-000005\n");
    }

    #[test]
    fn objects_round_trip_across_chunk_boundaries() {
        let ours = sealer("dep-1");
        for length in [
            0,
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            2 * CHUNK_BYTES,
        ] {
            let plain: Vec<u8> = (0..length).map(|index| (index % 251) as u8).collect();
            let sealed = ours.seal("db/000010.sst", 9, &plain);
            let chunks = length.div_ceil(CHUNK_BYTES).max(1);
            assert_eq!(
                sealed.len(),
                14 + length + chunks * (NONCE_BYTES + TAG_BYTES)
            );
            assert_eq!(
                ours.open("db/000010.sst", 9, &sealed).expect("opens"),
                plain
            );
        }
    }

    #[test]
    fn tampered_moved_foreign_and_truncated_objects_are_refused() {
        let ours = sealer("dep-1");
        let plain = vec![0x42u8; CHUNK_BYTES + 10];
        let sealed = ours.seal("log/1", 1, &plain);
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(matches!(
            ours.open("log/1", 1, &flipped),
            Err(OpenError::Refused)
        ));
        assert!(matches!(
            ours.open("log/2", 1, &sealed),
            Err(OpenError::Refused)
        ));
        assert!(matches!(
            ours.open("log/1", 2, &sealed),
            Err(OpenError::Refused)
        ));
        let other_key = Sealer::new(&[8; KEY_BYTES], "dep-1").expect("sealer");
        assert!(matches!(
            other_key.open("log/1", 1, &sealed),
            Err(OpenError::Refused)
        ));
        assert!(matches!(
            sealer("dep-2").open("log/1", 1, &sealed),
            Err(OpenError::ForeignDeployment { .. })
        ));
        // The header rewritten to claim the other deployment fails the tag.
        let mut relabelled = sealed.clone();
        relabelled[13] = b'2';
        assert!(matches!(
            sealer("dep-2").open("log/1", 1, &relabelled),
            Err(OpenError::Refused)
        ));
        // Dropping the final chunk leaves a full chunk that was not sealed as the last.
        let truncated = &sealed[..14 + SEALED_CHUNK_BYTES];
        assert!(matches!(
            ours.open("log/1", 1, truncated),
            Err(OpenError::Refused)
        ));
        assert!(matches!(
            ours.open("log/1", 1, b"plain text"),
            Err(OpenError::NotSealed)
        ));
    }

    #[test]
    fn key_files_must_hold_exactly_32_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        std::fs::write(&path, [1u8; 31]).expect("write");
        let error = read_key_file(&path).expect_err("short");
        assert!(
            error.contains("--backup-key-file") && error.contains("31 bytes"),
            "{error}"
        );
        std::fs::write(&path, [1u8; 33]).expect("write");
        assert!(read_key_file(&path).is_err());
        std::fs::write(&path, [1u8; 32]).expect("write");
        assert_eq!(read_key_file(&path).expect("key"), [1u8; 32]);
        assert!(!is_valid_deployment("") && !is_valid_deployment("a/b"));
        assert!(Sealer::new(&KEY, &"x".repeat(65)).is_err());
    }
}

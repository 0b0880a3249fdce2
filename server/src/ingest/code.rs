//! One-time upload codes (DESIGN.md section 12): 10 characters of Crockford base32 (50 bits
//! from the OS random generator), shown as `XXXXX-XXXXX`. A code is read case-insensitively,
//! with or without the hyphen, and with Crockford's aliases for look-alike characters
//! (`O` → `0`, `I` and `L` → `1`); only the SHA-256 of its canonical form is stored.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Crockford's base32 alphabet: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code, without the hyphen.
pub const CODE_CHARS: usize = 10;

/// A code in canonical form: 10 upper-case Crockford characters.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadCode(String);

impl std::fmt::Debug for UploadCode {
    // A code is a credential: never printed in logs or panics.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UploadCode(..)")
    }
}

impl UploadCode {
    /// Returns a fresh random code (50 bits from the OS random generator).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let mut bits = u64::from_le_bytes(bytes);
        let mut code = String::with_capacity(CODE_CHARS);
        for _ in 0..CODE_CHARS {
            code.push(char::from(ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
        Self(code)
    }

    /// Reads a code as a person or a phone may type it; `None` when it cannot be one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut code = String::with_capacity(CODE_CHARS);
        for character in text.trim().chars() {
            let canonical = match character.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                other if other.is_ascii() && ALPHABET.contains(&(other as u8)) => other,
                _ => return None,
            };
            if code.len() == CODE_CHARS {
                return None;
            }
            code.push(canonical);
        }
        (code.len() == CODE_CHARS).then_some(Self(code))
    }

    /// Returns the code as shown to a patient: `XXXXX-XXXXX`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }

    /// Returns the stored lookup key: SHA-256 of the canonical form.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_read_back_in_every_written_form() {
        for _ in 0..200 {
            let code = UploadCode::generate();
            let shown = code.display();
            assert_eq!(shown.len(), 11);
            assert_eq!(shown.as_bytes()[5], b'-');
            assert_eq!(UploadCode::parse(&shown), Some(code.clone()));
            assert_eq!(UploadCode::parse(&shown.to_lowercase()), Some(code.clone()));
            assert_eq!(
                UploadCode::parse(&shown.replace('-', "")),
                Some(code.clone())
            );
        }
    }

    #[test]
    fn look_alike_characters_read_as_crockford_says() {
        let canonical = UploadCode::parse("01234-56789").expect("digits");
        assert_eq!(UploadCode::parse("oI234-56789"), Some(canonical.clone()));
        assert_eq!(UploadCode::parse("Ol234 56789"), Some(canonical));
    }

    #[test]
    fn what_cannot_be_a_code_is_refused() {
        for text in [
            "",
            "ABCDE",
            "ABCDE-FGHJK-M",
            "ABCDE-FGHJU",
            "ÀBCDE-FGHJK",
            "ABCDE_FGHJK",
        ] {
            assert_eq!(UploadCode::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_form() {
        // sha256("0000000000"), computed independently (`printf 0000000000 | sha256sum`).
        let code = UploadCode::parse("00000-00000").expect("zeros");
        assert_eq!(
            hex::encode(code.hash()),
            "84d9c4b849506b6d8f8075a9000e7e0a254be71060ea889fad3c88395988f4fc"
        );
    }

    #[test]
    fn fifty_random_bits_use_the_whole_alphabet() {
        let mut seen = [false; 32];
        for _ in 0..2000 {
            for byte in UploadCode::generate().0.bytes() {
                let index = ALPHABET
                    .iter()
                    .position(|letter| *letter == byte)
                    .expect("alphabet");
                seen[index] = true;
            }
        }
        assert!(seen.iter().all(|seen| *seen));
    }
}

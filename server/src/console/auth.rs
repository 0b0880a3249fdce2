//! The console's credentials (DESIGN.md section 13): passwords (at least 12 characters, not a
//! common one, hashed with Argon2id), the TOTP second factor (RFC 6238: HMAC-SHA1, 30-second
//! steps, 6 digits, one step of clock skew either way, each step's code accepted once), and the
//! per-client-network budget of login attempts.

use std::num::NonZeroU32;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore as _;
use totp_rs::{Algorithm, TOTP};

use crate::transport::connections::ClientNetwork;

/// Fewest characters of a password (DESIGN.md section 13).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Seconds of one TOTP time step (RFC 6238 section 5.2's recommendation).
pub const TOTP_STEP: u64 = 30;
/// Digits of a TOTP code.
const TOTP_DIGITS: usize = 6;
/// Bytes of a TOTP secret: 160 bits, the HMAC-SHA1 output length RFC 4226 section 4 recommends.
const TOTP_SECRET_BYTES: usize = 20;
/// How often the per-network login budgets are pruned of networks that have refilled.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The bundled list of common passwords, one a line (`#` starts a comment).
static COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Why a new password is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    TooShort,
    /// On the bundled list of common passwords.
    Common,
}

/// Checks a password a person chose.
pub fn check_new_password(password: &str) -> Result<(), PasswordProblem> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordProblem::TooShort);
    }
    let lowered = password.to_lowercase();
    let common = COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .any(|line| line == lowered);
    if common {
        return Err(PasswordProblem::Common);
    }
    Ok(())
}

/// Returns the Argon2id hash of a password as a PHC string (the `argon2` crate's defaults:
/// 19 MiB, 2 passes, 1 lane, OWASP's recommended minimum), with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| error.to_string())
}

/// Returns whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password nobody knows: a login to an unknown or unenrolled account is
/// verified against it, so that it takes as long as one to a real account.
pub fn unknown_account_hash() -> &'static str {
    static HASH: LazyLock<String> =
        LazyLock::new(|| hash_password(&crate::storage::console::new_token()).unwrap_or_default());
    &HASH
}

/// Returns a fresh TOTP secret.
pub fn new_totp_secret() -> Vec<u8> {
    let mut secret = vec![0u8; TOTP_SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, TOTP_DIGITS, 1, TOTP_STEP, secret.to_vec()).ok()
}

/// Returns the secret as authenticator apps take it typed: RFC 4648 base32, no padding.
pub fn totp_secret_base32(secret: &[u8]) -> String {
    totp(secret)
        .map(|totp| totp.get_secret_base32())
        .unwrap_or_default()
}

/// Returns the `otpauth://` URI of Google Authenticator's key URI format, which the enrolment
/// QR code holds (every common authenticator app reads it).
pub fn totp_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}",
        encode(issuer),
        encode(account),
        totp_secret_base32(secret),
        encode(issuer),
    )
}

/// Returns the time step of `code` when it is the code of the step at `now`, or of the step
/// just before or after it, and that step is later than `last_step` (a code is accepted once).
pub fn accept_totp(secret: &[u8], code: &str, now: u64, last_step: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != TOTP_DIGITS || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret)?;
    let current = now / TOTP_STEP;
    let mut accepted = None;
    // Every candidate is computed and compared in constant time, whichever matches.
    for step in current.saturating_sub(1)..=current + 1 {
        let expected = totp.generate(step * TOTP_STEP);
        if same_bytes(expected.as_bytes(), code.as_bytes()) && step > last_step {
            accepted = Some(step);
        }
    }
    accepted
}

/// Compares two byte strings of equal length without an early exit.
pub fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Login attempts per client network: a GCRA budget of `--console-logins-per-network-per-hour`
/// (an hour's worth may come at once), so one network cannot try passwords against every
/// account faster than that. Networks whose budget has refilled are pruned every minute.
pub struct LoginLimits {
    limiter: DefaultKeyedRateLimiter<ClientNetwork>,
    last_prune: Mutex<Instant>,
}

impl LoginLimits {
    /// Returns budgets of `per_hour` attempts per network.
    pub fn new(per_hour: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_hour(per_hour)),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Charges one attempt to `network`; returns false when its budget is spent.
    pub fn allow(&self, network: ClientNetwork) -> bool {
        let now = Instant::now();
        {
            let mut last_prune = self
                .last_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.saturating_duration_since(*last_prune) >= PRUNE_EVERY {
                self.limiter.retain_recent();
                *last_prune = now;
            }
        }
        self.limiter.check_key(&network).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_common_passwords_are_refused() {
        assert_eq!(
            check_new_password("elevenchars"),
            Err(PasswordProblem::TooShort)
        );
        // Characters are counted, not bytes: eleven characters in 16 bytes are too few.
        assert_eq!(
            check_new_password("mật khẩu dà"),
            Err(PasswordProblem::TooShort)
        );
        assert_eq!(check_new_password("mật khẩu dài"), Ok(()));
        assert_eq!(
            check_new_password("Password1234"),
            Err(PasswordProblem::Common)
        );
        assert_eq!(
            check_new_password("MATKHAU123456"),
            Err(PasswordProblem::Common)
        );
        assert_eq!(check_new_password("correct horse battery"), Ok(()));
    }

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert!(!verify_password(unknown_account_hash(), ""));
    }

    #[test]
    fn totp_codes_match_rfc_6238_and_are_accepted_once() {
        // RFC 6238 Appendix B, SHA-1 secret "12345678901234567890": T = 59 gives 94287082
        // (8 digits); its last 6 digits are the 6-digit code.
        let secret = b"12345678901234567890";
        assert_eq!(accept_totp(secret, "287082", 59, 0), Some(1));
        assert_eq!(accept_totp(secret, "287 082", 59, 0), Some(1));
        // T = 1111111109 gives 07081804: accepted at the step before, at and after.
        assert_eq!(
            accept_totp(secret, "081804", 1_111_111_109, 0),
            Some(37_037_036)
        );
        assert_eq!(
            accept_totp(secret, "081804", 1_111_111_109 + 30, 0),
            Some(37_037_036)
        );
        assert_eq!(accept_totp(secret, "081804", 1_111_111_109 + 60, 0), None);
        assert_eq!(
            accept_totp(secret, "081804", 1_111_111_109, 37_037_036),
            None
        );
        assert_eq!(accept_totp(secret, "081805", 1_111_111_109, 0), None);
        assert_eq!(accept_totp(secret, "08180", 1_111_111_109, 0), None);
    }

    #[test]
    fn the_typed_secret_is_base32_of_the_bytes() {
        // RFC 4648 section 10: BASE32("foobar") = "MZXW6YTBOI======".
        assert_eq!(
            totp_secret_base32(b"foobarfoobarfoobar"),
            "MZXW6YTBOJTG633CMFZGM33PMJQXE"
        );
    }
}

//! GAEN (Google/Apple Exposure Notification v1.2) keys: TEK → RPIK → one rolling proximity
//! identifier per 10-minute interval (DESIGN §2, scheme byte 1).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128Enc, Block};
use hkdf::Hkdf;
use sha2::Sha256;

use super::SchemeError;

/// Seconds in one GAEN interval (ENIntervalNumber = Unix seconds / 600).
pub const GAEN_INTERVAL_SECONDS: u64 = 600;

/// The most intervals one TEK covers: one day of 10-minute intervals (GAEN v1.2).
pub const GAEN_MAX_ROLLING_PERIOD: u32 = 144;

/// HKDF info string of the RPI key (GAEN cryptography specification v1.2).
const RPIK_INFO: &[u8] = b"EN-RPIK";

/// Prefix of the padded data block each RPI encrypts (GAEN cryptography specification v1.2).
const RPI_PREFIX: &[u8; 6] = b"EN-RPI";

/// A GAEN temporary exposure key as uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GaenKey {
    /// The 16-byte temporary exposure key (TEK).
    pub key_data: [u8; 16],
    /// ENIntervalNumber (Unix seconds / 600) of the key's first interval.
    pub rolling_start_interval_number: u32,
    /// How many intervals the key covers, 1..=144.
    pub rolling_period: u32,
}

impl GaenKey {
    /// Checks `rolling_period` and that the last interval number fits in 32 bits.
    pub fn validate(&self) -> Result<(), SchemeError> {
        if !(1..=GAEN_MAX_ROLLING_PERIOD).contains(&self.rolling_period) {
            return Err(SchemeError::RollingPeriod(self.rolling_period));
        }
        if self
            .rolling_start_interval_number
            .checked_add(self.rolling_period)
            .is_none()
        {
            return Err(SchemeError::IntervalOverflow {
                start: self.rolling_start_interval_number,
                period: self.rolling_period,
            });
        }
        Ok(())
    }

    /// Returns the rolling proximity identifier key:
    /// `HKDF-SHA256(ikm = TEK, salt = 32 zero bytes, info = "EN-RPIK", length 16)`.
    pub fn rpik(&self) -> [u8; 16] {
        let hkdf = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &self.key_data);
        let mut rpik = [0u8; 16];
        let expanded = hkdf.expand(RPIK_INFO, &mut rpik);
        debug_assert!(
            expanded.is_ok(),
            "16 bytes is far below HKDF-SHA256's output limit"
        );
        rpik
    }

    /// Calls `visit(slot_start, rpi)` for each interval of a validated key, in order.
    pub(crate) fn for_each_identifier(&self, mut visit: impl FnMut(u64, &[u8])) {
        let cipher = Aes128Enc::new(&self.rpik().into());
        let period = self.rolling_period.min(GAEN_MAX_ROLLING_PERIOD) as usize;
        let mut blocks = [Block::default(); GAEN_MAX_ROLLING_PERIOD as usize];
        let blocks = &mut blocks[..period];
        for (offset, block) in (0u32..).zip(blocks.iter_mut()) {
            let interval = self.rolling_start_interval_number.wrapping_add(offset);
            *block = Block::from(padded_data(interval));
        }
        // One call lets AES-NI pipeline the independent blocks.
        cipher.encrypt_blocks(blocks);
        for (offset, block) in (0u64..).zip(blocks.iter()) {
            let interval = u64::from(self.rolling_start_interval_number) + offset;
            visit(interval * GAEN_INTERVAL_SECONDS, &block[..]);
        }
    }

    /// Returns the start of the key's first interval in Unix seconds.
    pub fn first_slot_start(&self) -> u64 {
        u64::from(self.rolling_start_interval_number) * GAEN_INTERVAL_SECONDS
    }

    /// Returns the end (exclusive) of the key's last interval in Unix seconds.
    pub fn last_slot_end(&self) -> u64 {
        (u64::from(self.rolling_start_interval_number) + u64::from(self.rolling_period))
            * GAEN_INTERVAL_SECONDS
    }
}

/// Returns `"EN-RPI" || 6 zero bytes || u32_le(interval)`, the block an RPI encrypts.
fn padded_data(interval: u32) -> [u8; 16] {
    let mut data = [0u8; 16];
    data[..6].copy_from_slice(RPI_PREFIX);
    data[12..].copy_from_slice(&interval.to_le_bytes());
    data
}

/// Returns the RPI of one interval: `AES-128-ECB(rpik, padded_data(interval))`. Useful to a
/// phone that broadcasts, and to baselines that match the way GAEN phones do.
pub fn rolling_proximity_identifier(rpik: &[u8; 16], interval: u32) -> [u8; 16] {
    let cipher = Aes128Enc::new(&(*rpik).into());
    let mut block = Block::from(padded_data(interval));
    cipher.encrypt_block(&mut block);
    block.into()
}

//! Bluezone v3 rolling IDs: a daily key hashed into a chain of sub-keys, each giving one 12-byte
//! identifier per slot of the day (DESIGN §2, scheme byte 2). The daily key itself is never
//! published, because publishing one day's key would expose every later day of the chain.

use sha2::{Digest, Sha256};

use super::{SECONDS_PER_DAY, SchemeError, ceil_to, floor_to, slot_overlaps};

/// Sub-keys per day of the Bluezone app v3 (900-second slots).
pub const BLUEZONE_DEFAULT_SUB_KEYS_PER_DAY: u32 = 96;

/// ASCII salt appended to the daily key; spelled this way in the Bluezone app.
pub const BLUEZONE_SUB_KEY_SALT: &[u8] = b"bluzonesubkey";

/// Byte positions of a sub-key that make up its broadcast identifier.
const IDENTIFIER_BYTE_INDICES: [usize; 12] = [0, 4, 8, 12, 16, 18, 20, 22, 24, 26, 28, 30];

/// A Bluezone daily key with the contagious window the upload carried.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BluezoneKey {
    /// The 32-byte daily key `D`.
    pub daily_key: [u8; 32],
    /// UTC day (Unix seconds / 86400) the key belongs to.
    pub day_number: u32,
    /// Sub-keys per day `N`; must divide 86400 (96 in the app).
    pub sub_keys_per_day: u32,
    /// Unix seconds at which the person became contagious (inclusive).
    pub contagious_from: u64,
    /// Unix seconds at which the contagious window ends (exclusive).
    pub contagious_until: u64,
}

impl BluezoneKey {
    /// Checks `sub_keys_per_day` and that the window is non-empty and inside the key's day.
    pub fn validate(&self) -> Result<(), SchemeError> {
        if self.slot_seconds().is_none() {
            return Err(SchemeError::SubKeysPerDay(self.sub_keys_per_day));
        }
        let (from, until) = (self.contagious_from, self.contagious_until);
        if until <= from {
            return Err(SchemeError::EmptyWindow { from, until });
        }
        let day_start = self.day_start();
        let day_end = day_start + SECONDS_PER_DAY;
        if from < day_start || until > day_end {
            return Err(SchemeError::WindowOutsideDay {
                from,
                until,
                day_number: self.day_number,
                day_start,
                day_end,
            });
        }
        Ok(())
    }

    /// Returns the slot length `86400 / N`, or `None` when `N` is zero or does not divide 86400.
    pub fn slot_seconds(&self) -> Option<u64> {
        let sub_keys = u64::from(self.sub_keys_per_day);
        (sub_keys != 0 && SECONDS_PER_DAY.is_multiple_of(sub_keys))
            .then(|| SECONDS_PER_DAY / sub_keys)
    }

    /// Returns Unix seconds at the start of the key's UTC day.
    pub fn day_start(&self) -> u64 {
        u64::from(self.day_number) * SECONDS_PER_DAY
    }

    /// Returns the first sub-key: `SHA-256(D || "bluzonesubkey")`.
    pub fn first_sub_key(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.daily_key)
            .chain_update(BLUEZONE_SUB_KEY_SALT)
            .finalize()
            .into()
    }

    /// Calls `visit(slot_start, id)` for each slot of a validated key that overlaps the window.
    pub(crate) fn for_each_identifier(&self, mut visit: impl FnMut(u64, &[u8])) {
        let Some(slot_seconds) = self.slot_seconds() else {
            return;
        };
        let day_start = self.day_start();
        let mut sub_key = self.first_sub_key();
        for index in 0..u64::from(self.sub_keys_per_day) {
            let slot_start = day_start + index * slot_seconds;
            if slot_start >= self.contagious_until {
                break;
            }
            if slot_overlaps(
                slot_start,
                slot_seconds,
                self.contagious_from,
                self.contagious_until,
            ) {
                visit(slot_start, &identifier_of(&sub_key));
            }
            // The chain must be walked from the start: SK_k depends on every earlier link.
            sub_key = Sha256::digest(sub_key).into();
        }
    }

    /// Returns the start of the first slot overlapping the window.
    pub fn first_slot_start(&self) -> u64 {
        let day_start = self.day_start();
        let step = self.slot_seconds().unwrap_or(SECONDS_PER_DAY);
        day_start + floor_to(self.contagious_from.saturating_sub(day_start), step)
    }

    /// Returns the end (exclusive) of the last slot overlapping the window.
    pub fn last_slot_end(&self) -> u64 {
        let day_start = self.day_start();
        let step = self.slot_seconds().unwrap_or(SECONDS_PER_DAY);
        day_start.saturating_add(ceil_to(
            self.contagious_until.saturating_sub(day_start),
            step,
        ))
    }
}

/// Returns the 12 broadcast bytes of a sub-key.
fn identifier_of(sub_key: &[u8; 32]) -> [u8; 12] {
    IDENTIFIER_BYTE_INDICES.map(|index| sub_key[index])
}

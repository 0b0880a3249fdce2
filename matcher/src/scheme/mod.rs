//! Identifier schemes (DESIGN §2): what a diagnosis key is and which identifiers it broadcast.
//!
//! Each scheme lives in its own module and expands one key into `(slot_start, identifier)`
//! pairs; this module holds the scheme-independent envelope, [`DiagnosisKey`], which the server
//! stores and publishes and which [`crate::tag`] turns into tags.

mod bluezone;
mod error;
mod gaen;
mod static_id;

pub use bluezone::{BLUEZONE_DEFAULT_SUB_KEYS_PER_DAY, BLUEZONE_SUB_KEY_SALT, BluezoneKey};
pub use error::SchemeError;
pub use gaen::{
    GAEN_INTERVAL_SECONDS, GAEN_MAX_ROLLING_PERIOD, GaenKey, rolling_proximity_identifier,
};
pub use static_id::{
    MAX_STATIC_ELEMENTS, MAX_STATIC_WINDOW_SECONDS, SLOT_SECONDS_STATIC, STATIC_IDENTIFIER_MAX_LEN,
    StaticKey,
};

use crate::tag::{Tag, TaggedElement};

/// Seconds in a UTC day; Bluezone keys and day numbers are counted in these.
pub const SECONDS_PER_DAY: u64 = 86_400;

/// The identifier scheme of a key; its byte is hashed into every tag (DESIGN §3).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Google/Apple Exposure Notification: TEK → RPIK → one RPI per 10-minute interval.
    Gaen = 1,
    /// Bluezone v3 rolling IDs: a daily key hashed into a chain of sub-keys.
    Bluezone = 2,
    /// A fixed identifier (Bluezone v1 BLID or a Bluetooth Classic MAC).
    Static = 3,
}

impl Scheme {
    /// Returns the scheme byte of DESIGN §2 (1, 2 or 3).
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Returns the scheme of a scheme byte, or `None` for an unknown byte.
    pub fn from_byte(byte: u8) -> Option<Scheme> {
        match byte {
            1 => Some(Scheme::Gaen),
            2 => Some(Scheme::Bluezone),
            3 => Some(Scheme::Static),
            _ => None,
        }
    }

    /// Returns the lowercase name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Gaen => "gaen",
            Scheme::Bluezone => "bluezone",
            Scheme::Static => "static",
        }
    }
}

/// One identifier a key broadcast, with the Unix second at which its broadcast began.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotIdentifier {
    /// Unix seconds at which the identifier began to be broadcast.
    pub slot_start: u64,
    /// The identifier bytes as heard over Bluetooth.
    pub identifier: Vec<u8>,
}

/// A diagnosis key of any scheme, as uploaded by a health authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiagnosisKey {
    /// A GAEN temporary exposure key.
    Gaen(GaenKey),
    /// A Bluezone daily key with its contagious window.
    Bluezone(BluezoneKey),
    /// A static identifier with its contagious window.
    Static(StaticKey),
}

impl DiagnosisKey {
    /// Returns the scheme of this key.
    pub fn scheme(&self) -> Scheme {
        match self {
            DiagnosisKey::Gaen(_) => Scheme::Gaen,
            DiagnosisKey::Bluezone(_) => Scheme::Bluezone,
            DiagnosisKey::Static(_) => Scheme::Static,
        }
    }

    /// Checks the key's structure: static identifier 1..=32 bytes, `rolling_period` 1..=144,
    /// `sub_keys_per_day` nonzero and dividing 86400, a non-empty window, a Bluezone window
    /// inside its UTC day.
    ///
    /// Clock-relative rules (not in the future, within 15 days) are the server's job: this crate
    /// has no clock.
    pub fn validate(&self) -> Result<(), SchemeError> {
        match self {
            DiagnosisKey::Gaen(key) => key.validate(),
            DiagnosisKey::Bluezone(key) => key.validate(),
            DiagnosisKey::Static(key) => key.validate(),
        }
    }

    /// Returns every identifier the key published, in slot order (DESIGN §2). Bluezone and
    /// static keys yield only the slots that overlap their contagious window.
    pub fn identifiers(&self) -> Result<Vec<SlotIdentifier>, SchemeError> {
        let mut identifiers = Vec::new();
        self.for_each_identifier(|slot_start, identifier| {
            identifiers.push(SlotIdentifier {
                slot_start,
                identifier: identifier.to_vec(),
            });
        })?;
        Ok(identifiers)
    }

    /// Returns the tag of every identifier the key published, in slot order.
    pub fn tagged_elements(&self) -> Result<Vec<TaggedElement>, SchemeError> {
        let scheme = self.scheme();
        let mut elements = Vec::new();
        self.for_each_identifier(|slot_start, identifier| {
            let tag = Tag::compute(scheme, slot_start, identifier);
            elements.push(TaggedElement { slot_start, tag });
        })?;
        Ok(elements)
    }

    /// Validates the key, then calls `visit(slot_start, identifier)` for each identifier in slot
    /// order without allocating one buffer per identifier (the publisher's hot path).
    pub fn for_each_identifier(&self, visit: impl FnMut(u64, &[u8])) -> Result<(), SchemeError> {
        self.validate()?;
        match self {
            DiagnosisKey::Gaen(key) => key.for_each_identifier(visit),
            DiagnosisKey::Bluezone(key) => key.for_each_identifier(visit),
            DiagnosisKey::Static(key) => key.for_each_identifier(visit),
        }
        Ok(())
    }

    /// Returns how many elements (tags) the key expands into, without expanding it: what the
    /// publisher counts to bound a batch by elements before it spends the memory. Meaningful
    /// only for keys that pass [`DiagnosisKey::validate`] (0 for a Bluezone key whose
    /// `sub_keys_per_day` does not divide the day); never panics on others.
    pub fn element_count(&self) -> u64 {
        match self {
            DiagnosisKey::Gaen(key) => u64::from(key.rolling_period.min(GAEN_MAX_ROLLING_PERIOD)),
            DiagnosisKey::Bluezone(key) => key.slot_seconds().map_or(0, |slot_seconds| {
                (key.last_slot_end().saturating_sub(key.first_slot_start()) / slot_seconds)
                    .min(u64::from(key.sub_keys_per_day))
            }),
            DiagnosisKey::Static(key) => {
                key.last_slot_end().saturating_sub(key.first_slot_start()) / SLOT_SECONDS_STATIC
            }
        }
    }

    /// Returns the end (Unix seconds, exclusive) of the last slot this key publishes; the
    /// publishing embargo is measured from it. Meaningful only for keys that pass
    /// [`DiagnosisKey::validate`]; never panics on others.
    pub fn last_slot_end(&self) -> u64 {
        match self {
            DiagnosisKey::Gaen(key) => key.last_slot_end(),
            DiagnosisKey::Bluezone(key) => key.last_slot_end(),
            DiagnosisKey::Static(key) => key.last_slot_end(),
        }
    }

    /// Returns the start (Unix seconds) of the first slot this key publishes; retention is
    /// measured from it. Meaningful only for keys that pass [`DiagnosisKey::validate`]; never
    /// panics on others.
    pub fn first_slot_start(&self) -> u64 {
        match self {
            DiagnosisKey::Gaen(key) => key.first_slot_start(),
            DiagnosisKey::Bluezone(key) => key.first_slot_start(),
            DiagnosisKey::Static(key) => key.first_slot_start(),
        }
    }

    /// Returns the canonical bytes of the key for deduplication: the scheme byte followed by
    /// every field, integers little-endian, the static identifier prefixed by its length.
    ///
    /// The layout is stable across versions because stored dedup entries depend on it:
    /// - GAEN: `1 || key_data (16) || u32 rsin || u32 rolling_period`
    /// - Bluezone: `2 || daily_key (32) || u32 day_number || u32 sub_keys_per_day
    ///   || u64 contagious_from || u64 contagious_until`
    /// - static: `3 || u8 len || identifier || u64 contagious_from || u64 contagious_until`
    pub fn dedup_material(&self) -> Vec<u8> {
        let mut material = vec![self.scheme().byte()];
        match self {
            DiagnosisKey::Gaen(key) => {
                material.extend_from_slice(&key.key_data);
                material.extend_from_slice(&key.rolling_start_interval_number.to_le_bytes());
                material.extend_from_slice(&key.rolling_period.to_le_bytes());
            }
            DiagnosisKey::Bluezone(key) => {
                material.extend_from_slice(&key.daily_key);
                material.extend_from_slice(&key.day_number.to_le_bytes());
                material.extend_from_slice(&key.sub_keys_per_day.to_le_bytes());
                material.extend_from_slice(&key.contagious_from.to_le_bytes());
                material.extend_from_slice(&key.contagious_until.to_le_bytes());
            }
            DiagnosisKey::Static(key) => {
                // Identifiers longer than a byte can count are invalid anyway; saturating keeps
                // this total without making two valid keys collide.
                let length = u8::try_from(key.identifier.len()).unwrap_or(u8::MAX);
                material.push(length);
                material.extend_from_slice(&key.identifier);
                material.extend_from_slice(&key.contagious_from.to_le_bytes());
                material.extend_from_slice(&key.contagious_until.to_le_bytes());
            }
        }
        material
    }
}

/// Returns whether the slot `[slot_start, slot_start + slot_seconds)` overlaps `[from, until)`.
pub(crate) fn slot_overlaps(slot_start: u64, slot_seconds: u64, from: u64, until: u64) -> bool {
    slot_start < until && slot_start.saturating_add(slot_seconds) > from
}

/// Returns `value` rounded down to a multiple of `step` (`step` > 0).
pub(crate) fn floor_to(value: u64, step: u64) -> u64 {
    debug_assert!(step > 0);
    value - value % step.max(1)
}

/// Returns `value` rounded up to a multiple of `step` (`step` > 0), saturating at the top.
pub(crate) fn ceil_to(value: u64, step: u64) -> u64 {
    debug_assert!(step > 0);
    let step = step.max(1);
    match value % step {
        0 => value,
        remainder => value.saturating_add(step - remainder),
    }
}

//! Static identifiers: Bluezone v1's fixed 6-character BLID, or the Bluetooth Classic MAC of a
//! case without the app (DESIGN §2, scheme byte 3). One tag per 900-second slot, aligned to Unix
//! time, that overlaps the contagious window.

use super::{SchemeError, ceil_to, floor_to, slot_overlaps};

/// Slot length of static identifiers, aligned to Unix time.
pub const SLOT_SECONDS_STATIC: u64 = 900;

/// The longest static identifier accepted (DESIGN §7).
pub const STATIC_IDENTIFIER_MAX_LEN: usize = 32;

/// The longest contagious window accepted: the 15 days the server keeps (DESIGN §7). A bound in
/// the library keeps one key from expanding into an unbounded number of slots.
pub const MAX_STATIC_WINDOW_SECONDS: u64 = 15 * 86_400;

/// The most elements one static key expands into: a longest window, not aligned to a slot,
/// touches one slot more than it spans (15 days of 900-second slots + 1 = 1,441).
pub const MAX_STATIC_ELEMENTS: u64 = MAX_STATIC_WINDOW_SECONDS / SLOT_SECONDS_STATIC + 1;

/// A static identifier with its contagious window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StaticKey {
    /// The identifier bytes, 1..=32 (e.g. ASCII `AB12CD` or a 6-byte MAC).
    pub identifier: Vec<u8>,
    /// Unix seconds at which the person became contagious (inclusive).
    pub contagious_from: u64,
    /// Unix seconds at which the contagious window ends (exclusive).
    pub contagious_until: u64,
}

impl StaticKey {
    /// Checks the identifier length and that the window is non-empty and at most 15 days.
    pub fn validate(&self) -> Result<(), SchemeError> {
        let length = self.identifier.len();
        if !(1..=STATIC_IDENTIFIER_MAX_LEN).contains(&length) {
            return Err(SchemeError::IdentifierLength(length));
        }
        let (from, until) = (self.contagious_from, self.contagious_until);
        if until <= from {
            return Err(SchemeError::EmptyWindow { from, until });
        }
        if until - from > MAX_STATIC_WINDOW_SECONDS {
            return Err(SchemeError::WindowTooLong {
                length: until - from,
                max: MAX_STATIC_WINDOW_SECONDS,
            });
        }
        Ok(())
    }

    /// Calls `visit(slot_start, identifier)` for each slot of a validated key that overlaps the
    /// window.
    pub(crate) fn for_each_identifier(&self, mut visit: impl FnMut(u64, &[u8])) {
        let mut slot_start = self.first_slot_start();
        while slot_overlaps(
            slot_start,
            SLOT_SECONDS_STATIC,
            self.contagious_from,
            self.contagious_until,
        ) {
            visit(slot_start, &self.identifier);
            let Some(next) = slot_start.checked_add(SLOT_SECONDS_STATIC) else {
                return;
            };
            slot_start = next;
        }
    }

    /// Returns the start of the first 900-second slot overlapping the window.
    pub fn first_slot_start(&self) -> u64 {
        floor_to(self.contagious_from, SLOT_SECONDS_STATIC)
    }

    /// Returns the end (exclusive) of the last 900-second slot overlapping the window.
    pub fn last_slot_end(&self) -> u64 {
        ceil_to(self.contagious_until, SLOT_SECONDS_STATIC)
    }
}

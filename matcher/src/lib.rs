//! The phone's side of the exposure server, and the server's publishing core.
//!
//! This crate is pure and synchronous (no async runtime, no network): a phone could embed it, and
//! the server links it to publish. Data flows one way through its modules:
//!
//! 1. [`scheme`]: a diagnosis key (GAEN, Bluezone rolling IDs, static identifier) expands into
//!    the `(slot_start, identifier)` pairs it broadcast (DESIGN §2);
//! 2. [`tag`]: each pair becomes a time-bound [`Tag`], which splits into a filter key and a
//!    confirm digest (DESIGN §3); [`expand`] does this for many keys with rayon;
//! 3. [`batch`]: filter keys become a signed binary fuse filter file, and the file parses back
//!    into a zero-copy view that answers lookups (DESIGN §4);
//! 4. [`matching`]: what a phone heard is looked up in a batch with slot-clock tolerance, and a
//!    filter hit is confirmed exactly against a bucket of confirm digests (DESIGN §5);
//! 5. [`province`]: the province matching benchmark, all of the above at DESIGN §9's scale;
//! 6. [`gaen`]: GAEN keys as Google/Apple export zips, for phones whose OS matches (DESIGN §11).

pub mod batch;
pub mod expand;
pub mod gaen;
pub mod matching;
pub mod province;
pub mod scheme;
pub mod tag;

pub use batch::{
    BatchError, BatchFile, BatchHeader, BatchKind, BatchParams, BatchSigner, BuiltBatch,
    FingerprintWidth, build_batch, key_id_for_public_key_der,
};
pub use expand::expand_keys;
pub use matching::{
    Candidate, ObservationError, ObservationStore, PhoneHits, confirm, match_phones,
};
pub use scheme::{
    BluezoneKey, DiagnosisKey, GAEN_INTERVAL_SECONDS, GaenKey, MAX_STATIC_ELEMENTS,
    MAX_STATIC_WINDOW_SECONDS, SLOT_SECONDS_STATIC, Scheme, SchemeError, SlotIdentifier, StaticKey,
};
pub use tag::{ConfirmDigest, Tag, TagParseError, TaggedElement};

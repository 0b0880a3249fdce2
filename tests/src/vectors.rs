//! The official vectors of DESIGN §3 as data, for end-to-end tests that compare what the server
//! publishes with published values rather than with the server's own derivation.

use std::path::PathBuf;

/// The Google/Apple GAEN test key (TEK) of DESIGN §3 and `vectors/gaen-rpi.tsv`.
pub const GAEN_TEK: &str = "75c734c6dd1a782de7a965da5eb93125";
/// Its `rolling_start_interval_number`.
pub const GAEN_RSIN: u32 = 2_642_976;

/// One row of `vectors/gaen-rpi.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaenRow {
    /// `j`, the identifier's index in the key's rolling period.
    pub j: u32,
    /// `ENIntervalNumber` of the identifier.
    pub interval: u32,
    /// The tag, lowercase hex.
    pub tag: String,
}

/// Returns the path of `shared/vectors/gaen-rpi.tsv`, beside the repository checkout.
pub fn gaen_vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/gaen-rpi.tsv")
}

/// Returns the rows of the GAEN vector file; fails with a message naming the missing path.
pub fn gaen_rows() -> Vec<GaenRow> {
    let path = gaen_vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "the official GAEN vectors are missing: cannot read {} ({error}); these tests need \
             the shared folder (DESIGN.md, vectors/) checked out beside the repository as ../shared",
            path.display()
        )
    });
    let rows: Vec<GaenRow> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "malformed vector line {line:?}");
            GaenRow {
                j: fields[0].parse().expect("j"),
                interval: fields[1].parse().expect("ENIntervalNumber"),
                tag: fields[3].to_owned(),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "{} holds no vectors", path.display());
    rows
}

/// Returns the 32 bytes of a tag given in hex.
pub fn tag_bytes(tag_hex: &str) -> [u8; 32] {
    hex::decode(tag_hex)
        .expect("hex tag")
        .try_into()
        .expect("32-byte tag")
}

/// Returns DESIGN §3's filter key of a tag: `u64_le(tag[0..8])`.
pub fn filter_key(tag: &[u8; 32]) -> u64 {
    u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"))
}

/// Returns DESIGN §3's confirm digest of a tag: `tag[8..24]`.
pub fn confirm_digest(tag: &[u8; 32]) -> [u8; 16] {
    tag[8..24].try_into().expect("16 bytes")
}

/// Returns the first `bits` bits (at most 32) of `digest`, most significant bit of byte 0 first.
pub fn digest_prefix(digest: &[u8; 16], bits: u32) -> u32 {
    assert!((1..=32).contains(&bits), "prefix bits {bits}");
    let first = u32::from_be_bytes(digest[..4].try_into().expect("4 bytes"));
    first >> (32 - bits)
}

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
    /// The RPI, lowercase hex (Google/Apple's value).
    pub rpi: String,
    /// The tag, lowercase hex.
    pub tag: String,
}

/// Returns the path of `tests/vectors/gaen-rpi.tsv`, the repository's copy of the vectors.
pub fn gaen_vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/gaen-rpi.tsv")
}

/// Returns the rows of the GAEN vector file; fails with a message naming the missing path.
pub fn gaen_rows() -> Vec<GaenRow> {
    let path = gaen_vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "the official GAEN vectors are missing: cannot read {} ({error}); the file is part \
             of the repository (tests/vectors/, see its README)",
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
                rpi: fields[2].to_owned(),
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

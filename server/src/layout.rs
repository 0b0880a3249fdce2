//! The static layout of DESIGN.md section 10, in one place: the path of every object, how a path
//! parses back, the `Cache-Control` of each, and the protobuf bodies of the indexes. The HTTP
//! listener ([`crate::http_mirror`]) serves it; the object-storage publisher writes the same objects.

use exposure_proto::v1::{
    BatchInfo, GetSigningKeysResponse, ListBatchesResponse, RegionIndex, SigningKey,
};

use crate::catalog::Catalog;
use crate::ingest::validate::is_valid_region;
use crate::storage::records::SigningKeyList;

/// Seconds of a UTC day.
pub const DAY_SECONDS: u64 = 86_400;
/// Name of the only signature algorithm.
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-p256-sha256";

/// Path of the signing keys.
pub const SIGNING_KEYS_PATH: &str = "v1/signing-keys";
/// `Cache-Control` of the signing keys.
pub const CACHE_SIGNING_KEYS: &str = "public, max-age=300";
/// `Cache-Control` of a region index.
pub const CACHE_INDEX: &str = "public, max-age=60";
/// `Cache-Control` of today's day index (it still grows).
pub const CACHE_DAY_OPEN: &str = "public, max-age=60";
/// `Cache-Control` of a closed day's index.
pub const CACHE_DAY_CLOSED: &str = "public, max-age=86400";
/// `Cache-Control` of a batch file (named by its hash, so never changes).
pub const CACHE_BATCH: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a confirm bucket.
pub const CACHE_CONFIRM: &str = "public, max-age=300";

/// `Cache-Control` of a region's GAEN index: it changes with every export (ANCHORS: Google's
/// server had to fix a cached index).
pub const CACHE_GAEN_INDEX: &str = "no-cache";
/// `Cache-Control` of a GAEN export zip.
pub const CACHE_GAEN_FILE: &str = "public, max-age=86400";

/// Content type of the GAEN index.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of GAEN export zips.
pub const ZIP: &str = "application/zip";

/// Content type of protobuf bodies.
pub const PROTOBUF: &str = "application/x-protobuf";
/// Content type of batch files.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Returns the path of a region's index.
pub fn index_path(region: &str) -> String {
    format!("v1/regions/{region}/index")
}

/// Returns the path of a region's day index.
pub fn day_path(region: &str, day: u32) -> String {
    format!("v1/regions/{region}/days/{day}")
}

/// Returns the path of a batch file.
pub fn batch_path(batch_id: &str) -> String {
    format!("v1/batches/{batch_id}")
}

/// Returns the path of a confirm bucket (HTTP listener only).
pub fn confirm_path(region: &str, prefix_bits: u32, prefix: u32) -> String {
    format!("v1/regions/{region}/confirm/{prefix_bits}/{prefix}")
}

/// Returns the path of a region's GAEN index (DESIGN §11).
pub fn gaen_index_path(region: &str) -> String {
    format!("v1/regions/{region}/gaen/index.txt")
}

/// Returns the path of a region's GAEN export zip named `name` (`{start}-{end}-00001.zip`).
pub fn gaen_file_path(region: &str, name: &str) -> String {
    format!("v1/regions/{region}/gaen/{name}")
}

/// Returns the body of a region's `gaen/index.txt`: the zip paths, relative to the root, in the
/// order given (oldest first), joined with `\n` and no newline after the last, byte for byte as
/// the reference server writes it.
pub fn gaen_index_text<'a>(region: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|name| gaen_file_path(region, name))
        .collect::<Vec<String>>()
        .join("\n")
}

/// Returns true for a GAEN file name the publisher writes: `{start}-{end}-00001.zip`, both
/// timestamps in decimal.
pub fn is_gaen_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix("-00001.zip") else {
        return false;
    };
    let mut parts = stem.split('-');
    let numeric = |part: Option<&str>| {
        part.is_some_and(|part| {
            !part.is_empty() && part.len() <= 20 && part.bytes().all(|byte| byte.is_ascii_digit())
        })
    };
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
}

/// Returns the UTC day of a Unix time.
pub fn day_of(unix_seconds: u64) -> u32 {
    u32::try_from(unix_seconds / DAY_SECONDS).unwrap_or(u32::MAX)
}

/// Returns the `Cache-Control` of day `day`'s index when the clock's day is `today`.
pub fn day_cache_control(day: u32, today: u32) -> &'static str {
    if day >= today {
        CACHE_DAY_OPEN
    } else {
        CACHE_DAY_CLOSED
    }
}

/// One object of the layout, as a path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `v1/signing-keys`.
    SigningKeys,
    /// `v1/regions/{region}/index`.
    Index {
        /// Region code.
        region: &'a str,
    },
    /// `v1/regions/{region}/days/{day}`.
    Day {
        /// Region code.
        region: &'a str,
        /// UTC day number.
        day: u32,
    },
    /// `v1/batches/{batch_id}`.
    Batch {
        /// Lowercase hex SHA-256.
        batch_id: &'a str,
    },
    /// `v1/regions/{region}/confirm/{prefix_bits}/{prefix}`.
    Confirm {
        /// Region code.
        region: &'a str,
        /// Bits of the prefix.
        prefix_bits: u32,
        /// The prefix, right-aligned.
        prefix: u32,
    },
    /// `v1/regions/{region}/gaen/index.txt`.
    GaenIndex {
        /// Region code.
        region: &'a str,
    },
    /// `v1/regions/{region}/gaen/{start}-{end}-00001.zip`.
    GaenFile {
        /// Region code.
        region: &'a str,
        /// File name.
        name: &'a str,
    },
}

/// Why a path names no object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No object of the layout has a path of this shape.
    #[error("no such path")]
    Unknown,
    /// The shape is right but a part is malformed; the text names the part (one line).
    #[error("{0}")]
    Bad(String),
}

impl Route<'_> {
    /// Returns a short name of the kind of object, for metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::SigningKeys => "signing_keys",
            Route::Index { .. } => "index",
            Route::Day { .. } => "day",
            Route::Batch { .. } => "batch",
            Route::Confirm { .. } => "confirm",
            Route::GaenIndex { .. } => "gaen_index",
            Route::GaenFile { .. } => "gaen_file",
        }
    }
}

/// Parses a path of the layout (with or without its leading `/`).
pub fn parse(path: &str) -> Result<Route<'_>, PathError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    match *parts.as_slice() {
        ["v1", "signing-keys"] => Ok(Route::SigningKeys),
        ["v1", "batches", batch_id] => {
            if is_batch_id(batch_id) {
                Ok(Route::Batch { batch_id })
            } else {
                Err(bad("batch_id", "must be 64 lowercase hex characters"))
            }
        }
        ["v1", "regions", region, "index"] => Ok(Route::Index {
            region: region_part(region)?,
        }),
        ["v1", "regions", region, "days", day] => {
            let region = region_part(region)?;
            let day = decimal(day).ok_or_else(|| {
                bad(
                    "day",
                    "must be a UTC day number (Unix seconds / 86400) in decimal",
                )
            })?;
            Ok(Route::Day { region, day })
        }
        ["v1", "regions", region, "confirm", prefix_bits, prefix] => {
            let region = region_part(region)?;
            let prefix_bits = decimal(prefix_bits)
                .ok_or_else(|| bad("prefix_bits", "must be a number in decimal"))?;
            let prefix =
                decimal(prefix).ok_or_else(|| bad("prefix", "must be a number in decimal"))?;
            Ok(Route::Confirm {
                region,
                prefix_bits,
                prefix,
            })
        }
        ["v1", "regions", region, "gaen", "index.txt"] => Ok(Route::GaenIndex {
            region: region_part(region)?,
        }),
        ["v1", "regions", region, "gaen", name] => {
            let region = region_part(region)?;
            if is_gaen_file_name(name) {
                Ok(Route::GaenFile { region, name })
            } else {
                Err(bad("name", "must be {start}-{end}-00001.zip"))
            }
        }
        _ => Err(PathError::Unknown),
    }
}

fn bad(field: &str, description: &str) -> PathError {
    PathError::Bad(format!("{field}: {description}"))
}

fn region_part(region: &str) -> Result<&str, PathError> {
    if is_valid_region(region) {
        Ok(region)
    } else {
        Err(bad(
            "region",
            "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB",
        ))
    }
}

/// Parses plain decimal digits (no sign, no spaces) that fit a `u32`.
fn decimal(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Returns true for a lowercase hex SHA-256.
pub fn is_batch_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Returns the index of `region`, or `None` when it has never published a batch.
pub fn region_index(
    catalog: &Catalog,
    region: &str,
    confirm_prefix_bits: u32,
) -> Option<RegionIndex> {
    catalog.with_region(region, |latest_sequence, batches| {
        let mut days: Vec<u32> = batches.iter().map(|info| day_of(info.created_at)).collect();
        days.sort_unstable();
        days.dedup();
        RegionIndex {
            latest_sequence,
            confirm_prefix_bits,
            days,
        }
    })
}

/// Returns the day index of `region` for UTC day `day`: every retained batch created that day,
/// in sequence order, with `latest_sequence` the highest of them (so a closed day's body no
/// longer changes) and `more` false. `None` when no retained batch was created that day.
pub fn day_listing(
    catalog: &Catalog,
    region: &str,
    day: u32,
    confirm_prefix_bits: u32,
) -> Option<ListBatchesResponse> {
    let batches: Vec<BatchInfo> = catalog
        .with_region(region, |_, batches| {
            batches
                .iter()
                .filter(|info| day_of(info.created_at) == day)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let latest_sequence = batches.iter().map(|info| info.sequence).max()?;
    Some(ListBatchesResponse {
        batches,
        confirm_prefix_bits,
        latest_sequence,
        more: false,
    })
}

/// A region's index and every one of its day indexes, taken under one read of the catalog so
/// the index names exactly the days listed (the object-storage writer needs that consistency;
/// the bodies are those [`region_index`] and [`day_listing`] return). `None` when the region
/// has never published.
pub fn region_snapshot(
    catalog: &Catalog,
    region: &str,
    confirm_prefix_bits: u32,
) -> Option<(RegionIndex, Vec<(u32, ListBatchesResponse)>)> {
    catalog.with_region(region, |latest_sequence, batches| {
        let mut days: Vec<(u32, ListBatchesResponse)> = Vec::new();
        let mut sorted: Vec<&BatchInfo> = batches.iter().collect();
        sorted.sort_by_key(|info| (day_of(info.created_at), info.sequence));
        for info in sorted {
            let day = day_of(info.created_at);
            if days.last().is_none_or(|(last, _)| *last != day) {
                days.push((
                    day,
                    ListBatchesResponse {
                        batches: Vec::new(),
                        confirm_prefix_bits,
                        latest_sequence: 0,
                        more: false,
                    },
                ));
            }
            if let Some((_, listing)) = days.last_mut() {
                listing.latest_sequence = listing.latest_sequence.max(info.sequence);
                listing.batches.push(info.clone());
            }
        }
        let index = RegionIndex {
            latest_sequence,
            confirm_prefix_bits,
            days: days.iter().map(|(day, _)| *day).collect(),
        };
        (index, days)
    })
}

/// Returns the public signing keys: the current one first, then the others newest first (the
/// next key of a rotation's overlap, the newest, second, with the time it becomes current);
/// retired keys are left out, so what they signed no longer verifies.
pub fn signing_keys(list: &SigningKeyList) -> GetSigningKeysResponse {
    let mut keys: Vec<SigningKey> = list
        .keys
        .iter()
        .rev()
        .filter(|record| record.retired_at == 0)
        .map(|record| SigningKey {
            key_id: record.key_id.clone(),
            public_key_der: record.public_key_der.clone(),
            algorithm: SIGNATURE_ALGORITHM.to_owned(),
            current: record.key_id == list.current,
            created_at: record.created_at,
            current_from: if record.key_id == list.next {
                list.next_current_from
            } else {
                0
            },
            gaen_key_version: record.gaen_key_version.clone(),
        })
        .collect();
    keys.sort_by_key(|key| !key.current);
    GetSigningKeysResponse { keys }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn paths_parse_back_to_their_route() {
        assert_eq!(parse("/v1/signing-keys"), Ok(Route::SigningKeys));
        assert_eq!(
            parse("v1/regions/VN-TB/index"),
            Ok(Route::Index { region: "VN-TB" })
        );
        assert_eq!(
            parse("/v1/regions/VN/days/20463"),
            Ok(Route::Day {
                region: "VN",
                day: 20463
            })
        );
        assert_eq!(
            parse(&format!("/{}", batch_path(ID))),
            Ok(Route::Batch { batch_id: ID })
        );
        assert_eq!(
            parse("/v1/regions/VN-TB/confirm/16/65535"),
            Ok(Route::Confirm {
                region: "VN-TB",
                prefix_bits: 16,
                prefix: 65535
            })
        );
        assert_eq!(
            parse("/v1/regions/VN-TB/gaen/index.txt"),
            Ok(Route::GaenIndex { region: "VN-TB" })
        );
        assert_eq!(
            parse("/v1/regions/VN-TB/gaen/1767225600-1767229200-00001.zip"),
            Ok(Route::GaenFile {
                region: "VN-TB",
                name: "1767225600-1767229200-00001.zip"
            })
        );
        assert_eq!(
            gaen_index_text("VN", ["1-2-00001.zip", "2-3-00001.zip"]),
            "v1/regions/VN/gaen/1-2-00001.zip\nv1/regions/VN/gaen/2-3-00001.zip"
        );
    }

    #[test]
    fn malformed_parts_name_the_field_and_unknown_shapes_are_unknown() {
        let reason = |path| match parse(path) {
            Err(PathError::Bad(reason)) => reason,
            other => panic!("{path}: {other:?}"),
        };
        assert!(reason("/v1/regions/vn-tb/index").starts_with("region: "));
        assert!(reason("/v1/regions/VN-TB/days/-1").starts_with("day: "));
        assert!(reason("/v1/regions/VN-TB/days/99999999999").starts_with("day: "));
        assert!(reason("/v1/regions/VN-TB/confirm/x/1").starts_with("prefix_bits: "));
        assert!(reason("/v1/regions/VN-TB/confirm/16/+1").starts_with("prefix: "));
        assert!(reason("/v1/batches/ABC").starts_with("batch_id: "));
        assert!(reason("/v1/batches/").starts_with("batch_id: "));
        for path in [
            "/",
            "/v1",
            "/v2/signing-keys",
            "/v1/regions/VN-TB",
            "/v1/regions",
        ] {
            assert_eq!(parse(path), Err(PathError::Unknown), "{path}");
        }
        assert_eq!(parse("/v1/regions/VN-TB/other"), Err(PathError::Unknown));
        assert!(reason("/v1/regions/VN-TB/gaen/1-2-00002.zip").starts_with("name: "));
        assert!(reason("/v1/regions/VN-TB/gaen/-2-00001.zip").starts_with("name: "));
        assert_eq!(parse("/v1/signing-keys/"), Err(PathError::Unknown));
    }

    #[test]
    fn a_snapshot_holds_the_same_bodies_as_the_index_and_day_listings() {
        let catalog = Catalog::default();
        for (sequence, created_at) in [(1, 86_400 * 3 + 5), (2, 86_400 * 3 + 9), (3, 86_400 * 5)] {
            let info = BatchInfo {
                batch_id: format!("{sequence:064x}"),
                sequence,
                created_at,
                ..Default::default()
            };
            catalog.insert("VN-TB", info);
        }
        let (index, days) = region_snapshot(&catalog, "VN-TB", 16).expect("snapshot");
        assert_eq!(Some(index.clone()), region_index(&catalog, "VN-TB", 16));
        assert_eq!(index.days, vec![3, 5]);
        for (day, listing) in days {
            assert_eq!(Some(listing), day_listing(&catalog, "VN-TB", day, 16));
        }
        assert!(region_snapshot(&catalog, "VN-HN", 16).is_none());
    }

    #[test]
    fn closed_days_cache_for_a_day_and_today_for_a_minute() {
        assert_eq!(day_of(1_768_046_400), 20_463);
        assert_eq!(day_cache_control(20_463, 20_463), "public, max-age=60");
        assert_eq!(day_cache_control(20_462, 20_463), "public, max-age=86400");
    }
}

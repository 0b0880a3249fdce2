//! Validation of uploads (DESIGN.md section 7). Every rule that fails names the field it
//! concerns, as `google.rpc.BadRequest` expects (`keys[2].gaen.rolling_period`), and all
//! failures of one request are reported together.

use exposure_matcher as matcher;
use exposure_proto::v1::{
    BluezoneKey, DiagnosisKey, GaenKey, ReportType, StaticIdentifier, UploadDiagnosisKeysRequest,
    diagnosis_key,
};
use sha2::{Digest, Sha256};

const DAY_SECONDS: u64 = 86_400;
const GAEN_INTERVAL_SECONDS: u64 = 600;
/// Bluezone v3's default number of rolling identifiers a day (one every 15 minutes).
pub const DEFAULT_SUB_KEYS_PER_DAY: u32 = 96;
/// The highest `sub_keys_per_day` the `--bluezone-sub-keys-per-day` setting may allow: one
/// identifier a minute. It keeps a Bluezone key's expansion within a static key's, so the
/// bound below does not depend on the setting.
pub const MAX_BLUEZONE_SUB_KEYS_PER_DAY: u32 = 1440;
/// The most elements (tags) one valid key expands into, whatever the settings: a static key's
/// longest window (1,441 slots of 900 s), above a Bluezone key's 1,440 and a GAEN key's 144.
/// One upload therefore expands into at most `max_keys_per_upload` × this (43,230 at the
/// default 30 keys), and a batch cap at least this large always fits any one key.
pub const MAX_ELEMENTS_PER_KEY: u64 = {
    let bluezone = MAX_BLUEZONE_SUB_KEYS_PER_DAY as u64;
    if bluezone > matcher::MAX_STATIC_ELEMENTS {
        bluezone
    } else {
        matcher::MAX_STATIC_ELEMENTS
    }
};
const _: () = assert!(MAX_ELEMENTS_PER_KEY >= matcher::scheme::GAEN_MAX_ROLLING_PERIOD as u64);
/// The highest transmission risk level of the GAEN scheme.
const MAX_TRANSMISSION_RISK: u32 = 8;
/// Longest accepted upload id, in bytes.
const MAX_UPLOAD_ID_BYTES: usize = 128;
/// How far past "now" a static identifier's contagious window may end: a case still contagious
/// today. The embargo holds its slots back until they have ended.
const MAX_WINDOW_LEAD_SECONDS: u64 = DAY_SECONDS;

/// One broken rule: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, e.g. `keys[0].gaen.key_data`.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub description: String,
}

impl Violation {
    fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// The clock-relative limits and the settings that validation applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits<'a> {
    /// Unix seconds now.
    pub now: u64,
    /// Keys that stopped being valid more than this many days ago are refused.
    pub max_key_age_days: u32,
    /// Most keys in one upload.
    pub max_keys_per_upload: u32,
    /// The Bluezone `sub_keys_per_day` values accepted (`--bluezone-sub-keys-per-day`), each a
    /// divisor of 86,400 of at most [`MAX_BLUEZONE_SUB_KEYS_PER_DAY`].
    pub bluezone_sub_keys_per_day: &'a [u32],
}

/// One key that passed validation.
#[derive(Clone, Debug)]
pub struct ValidKey {
    /// The key as it is stored (defaults filled in).
    pub stored: DiagnosisKey,
    /// The same key in the matcher's types, for expansion.
    pub key: matcher::DiagnosisKey,
}

/// An upload that passed validation.
#[derive(Clone, Debug)]
pub struct ValidUpload {
    /// Region code.
    pub region: String,
    /// Client-chosen idempotency key.
    pub upload_id: String,
    /// What the keys report.
    pub report_type: ReportType,
    /// The keys, in request order.
    pub keys: Vec<ValidKey>,
    /// SHA-256 of the request's content (not its padding), to tell a replay from a reuse.
    pub request_digest: [u8; 32],
}

/// Returns true for region codes of the form `^[A-Z]{2}(-[A-Z0-9]{1,3})?$`, e.g. `VN-TB`.
pub fn is_valid_region(region: &str) -> bool {
    let bytes = region.as_bytes();
    let country_ok = bytes.len() >= 2 && bytes[..2].iter().all(u8::is_ascii_uppercase);
    match bytes.len() {
        2 => country_ok,
        4..=6 => {
            country_ok
                && bytes[2] == b'-'
                && bytes[3..]
                    .iter()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        }
        _ => false,
    }
}

/// Whether an upload must name its region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegionRule {
    /// A token upload: the region says where the keys go.
    Required,
    /// A decoy: a phone's code upload may leave the region empty (DESIGN §12, the code holds
    /// it), so the decoy that imitates one may too.
    MayBeEmpty,
}

/// Checks every rule of an upload; returns the valid upload or every violation found.
pub fn validate_upload(
    request: &UploadDiagnosisKeysRequest,
    limits: Limits<'_>,
) -> Result<ValidUpload, Vec<Violation>> {
    validate(request, limits, RegionRule::Required)
}

/// Checks a decoy's shape: every rule of an upload, but the region may be empty, as a code
/// upload's may.
pub fn validate_decoy(
    request: &UploadDiagnosisKeysRequest,
    limits: Limits<'_>,
) -> Result<ValidUpload, Vec<Violation>> {
    validate(request, limits, RegionRule::MayBeEmpty)
}

fn validate(
    request: &UploadDiagnosisKeysRequest,
    limits: Limits<'_>,
    region_rule: RegionRule,
) -> Result<ValidUpload, Vec<Violation>> {
    let mut violations = Vec::new();
    let region_omitted = region_rule == RegionRule::MayBeEmpty && request.region.is_empty();
    if !region_omitted && !is_valid_region(&request.region) {
        violations.push(Violation::new(
            "region",
            "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB",
        ));
    }
    if request.upload_id.is_empty() || request.upload_id.len() > MAX_UPLOAD_ID_BYTES {
        violations.push(Violation::new("upload_id", "must be 1..=128 bytes"));
    } else if request.upload_id.chars().any(char::is_control) {
        violations.push(Violation::new(
            "upload_id",
            "must not contain control characters",
        ));
    }
    let report_type = ReportType::try_from(request.report_type).unwrap_or_else(|_| {
        violations.push(Violation::new(
            "report_type",
            format!("unknown value {}", request.report_type),
        ));
        ReportType::ConfirmedTest
    });
    if request.keys.is_empty() {
        violations.push(Violation::new("keys", "must hold at least one key"));
    }
    if request.keys.len() > limits.max_keys_per_upload as usize {
        violations.push(Violation::new(
            "keys",
            format!(
                "at most {} keys per upload, got {}",
                limits.max_keys_per_upload,
                request.keys.len()
            ),
        ));
    }

    let mut keys = Vec::with_capacity(request.keys.len());
    let mut seen = std::collections::HashMap::new();
    for (index, key) in request.keys.iter().enumerate() {
        let field = format!("keys[{index}]");
        match validate_key(key, &field, limits) {
            Ok(valid) => {
                if let Some(first) = seen.insert(valid.key.dedup_material(), index) {
                    violations.push(Violation::new(&field, format!("repeats keys[{first}]")));
                } else {
                    keys.push(valid);
                }
            }
            Err(mut key_violations) => violations.append(&mut key_violations),
        }
    }
    // The bound on one upload's expansion, which the publisher's memory relies on. Each key
    // is within MAX_ELEMENTS_PER_KEY under any setting the server starts with, so this only
    // fires for limits built by hand; it is checked anyway, being cheap.
    let elements: u64 = keys.iter().map(|valid| valid.key.element_count()).sum();
    let most_elements = u64::from(limits.max_keys_per_upload) * MAX_ELEMENTS_PER_KEY;
    if elements > most_elements {
        violations.push(Violation::new(
            "keys",
            format!(
                "the keys expand into {elements} identifiers, more than the {most_elements} one upload may hold"
            ),
        ));
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(ValidUpload {
        region: request.region.clone(),
        upload_id: request.upload_id.clone(),
        report_type,
        keys,
        request_digest: request_digest(request),
    })
}

/// Returns the digest of what makes two uploads "the same content": region, report type, keys.
fn request_digest(request: &UploadDiagnosisKeysRequest) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((request.region.len() as u64).to_le_bytes());
    hasher.update(request.region.as_bytes());
    hasher.update(request.report_type.to_le_bytes());
    for key in &request.keys {
        let encoded = prost::Message::encode_to_vec(key);
        hasher.update((encoded.len() as u64).to_le_bytes());
        hasher.update(&encoded);
    }
    hasher.finalize().into()
}

fn validate_key(
    key: &DiagnosisKey,
    field: &str,
    limits: Limits<'_>,
) -> Result<ValidKey, Vec<Violation>> {
    let mut violations = Vec::new();
    if key.transmission_risk_level > MAX_TRANSMISSION_RISK {
        violations.push(Violation::new(
            format!("{field}.transmission_risk_level"),
            format!("must be 0..=8, got {}", key.transmission_risk_level),
        ));
    }
    let checked = match &key.key {
        Some(diagnosis_key::Key::Gaen(gaen)) => {
            validate_gaen(gaen, &format!("{field}.gaen"), limits)
        }
        Some(diagnosis_key::Key::Bluezone(bluezone)) => {
            validate_bluezone(bluezone, &format!("{field}.bluezone"), limits)
        }
        Some(diagnosis_key::Key::StaticId(static_id)) => {
            validate_static(static_id, &format!("{field}.static_id"), limits)
        }
        None => Err(vec![Violation::new(
            field,
            "must set one of gaen, bluezone, static_id",
        )]),
    };
    match checked {
        Ok((stored_key, matcher_key)) if violations.is_empty() => {
            // The matcher re-checks the shape; a disagreement would be a bug on our side, but
            // it still must not let a malformed key through.
            if let Err(error) = matcher_key.validate() {
                return Err(vec![Violation::new(field, error.to_string())]);
            }
            let stored = DiagnosisKey {
                key: Some(stored_key),
                transmission_risk_level: key.transmission_risk_level,
            };
            Ok(ValidKey {
                stored,
                key: matcher_key,
            })
        }
        Ok(_) => Err(violations),
        Err(mut scheme_violations) => {
            violations.append(&mut scheme_violations);
            Err(violations)
        }
    }
}

type Checked = Result<(diagnosis_key::Key, matcher::DiagnosisKey), Vec<Violation>>;

fn validate_gaen(gaen: &GaenKey, field: &str, limits: Limits<'_>) -> Checked {
    let mut violations = Vec::new();
    let key_data: Option<[u8; 16]> = gaen.key_data.as_slice().try_into().ok();
    if key_data.is_none() {
        violations.push(Violation::new(
            format!("{field}.key_data"),
            format!("must be 16 bytes, got {}", gaen.key_data.len()),
        ));
    }
    if !(1..=144).contains(&gaen.rolling_period) {
        violations.push(Violation::new(
            format!("{field}.rolling_period"),
            format!("must be 1..=144, got {}", gaen.rolling_period),
        ));
    }
    if let Some(days) = gaen.days_since_onset_of_symptoms
        && !(-14..=14).contains(&days)
    {
        violations.push(Violation::new(
            format!("{field}.days_since_onset_of_symptoms"),
            format!("must be -14..=14, got {days}"),
        ));
    }
    let start = u64::from(gaen.rolling_start_interval_number) * GAEN_INTERVAL_SECONDS;
    let end = start + u64::from(gaen.rolling_period) * GAEN_INTERVAL_SECONDS;
    let oldest = limits
        .now
        .saturating_sub(u64::from(limits.max_key_age_days) * DAY_SECONDS);
    if start > limits.now {
        violations.push(Violation::new(
            format!("{field}.rolling_start_interval_number"),
            "must not start in the future",
        ));
    } else if end <= oldest {
        violations.push(Violation::new(
            format!("{field}.rolling_start_interval_number"),
            format!("key expired more than {} days ago", limits.max_key_age_days),
        ));
    }
    match key_data {
        Some(key_data) if violations.is_empty() => Ok((
            diagnosis_key::Key::Gaen(gaen.clone()),
            matcher::DiagnosisKey::Gaen(matcher::GaenKey {
                key_data,
                rolling_start_interval_number: gaen.rolling_start_interval_number,
                rolling_period: gaen.rolling_period,
            }),
        )),
        _ => Err(violations),
    }
}

fn validate_bluezone(bluezone: &BluezoneKey, field: &str, limits: Limits<'_>) -> Checked {
    let mut violations = Vec::new();
    let daily_key: Option<[u8; 32]> = bluezone.daily_key.as_slice().try_into().ok();
    if daily_key.is_none() {
        violations.push(Violation::new(
            format!("{field}.daily_key"),
            format!("must be 32 bytes, got {}", bluezone.daily_key.len()),
        ));
    }
    let today = limits.now / DAY_SECONDS;
    let day = u64::from(bluezone.day_number);
    if day > today {
        violations.push(Violation::new(
            format!("{field}.day_number"),
            "must not be in the future",
        ));
    } else if day + u64::from(limits.max_key_age_days) < today {
        violations.push(Violation::new(
            format!("{field}.day_number"),
            format!("must be within the last {} days", limits.max_key_age_days),
        ));
    }
    let sub_keys_per_day = match bluezone.sub_keys_per_day {
        0 => DEFAULT_SUB_KEYS_PER_DAY,
        given => given,
    };
    if !limits.bluezone_sub_keys_per_day.contains(&sub_keys_per_day) {
        violations.push(Violation::new(
            format!("{field}.sub_keys_per_day"),
            format!(
                "must be one of {:?} (0 means {DEFAULT_SUB_KEYS_PER_DAY}), got {sub_keys_per_day}",
                limits.bluezone_sub_keys_per_day
            ),
        ));
    }
    let day_start = day * DAY_SECONDS;
    check_window(
        bluezone.contagious_from,
        bluezone.contagious_until,
        (day_start, day_start + DAY_SECONDS),
        "inside the key's UTC day",
        field,
        &mut violations,
    );
    match daily_key {
        Some(daily_key) if violations.is_empty() => {
            let stored = BluezoneKey {
                sub_keys_per_day,
                ..bluezone.clone()
            };
            Ok((
                diagnosis_key::Key::Bluezone(stored),
                matcher::DiagnosisKey::Bluezone(matcher::BluezoneKey {
                    daily_key,
                    day_number: bluezone.day_number,
                    sub_keys_per_day,
                    contagious_from: bluezone.contagious_from,
                    contagious_until: bluezone.contagious_until,
                }),
            ))
        }
        _ => Err(violations),
    }
}

fn validate_static(static_id: &StaticIdentifier, field: &str, limits: Limits<'_>) -> Checked {
    let mut violations = Vec::new();
    if !(1..=32).contains(&static_id.identifier.len()) {
        violations.push(Violation::new(
            format!("{field}.identifier"),
            format!("must be 1..=32 bytes, got {}", static_id.identifier.len()),
        ));
    }
    let oldest = limits
        .now
        .saturating_sub(u64::from(limits.max_key_age_days) * DAY_SECONDS);
    check_window(
        static_id.contagious_from,
        static_id.contagious_until,
        (oldest, limits.now + MAX_WINDOW_LEAD_SECONDS),
        &format!(
            "within the last {} days and end at most a day from now",
            limits.max_key_age_days
        ),
        field,
        &mut violations,
    );
    let window = static_id
        .contagious_until
        .saturating_sub(static_id.contagious_from);
    if window > matcher::MAX_STATIC_WINDOW_SECONDS {
        violations.push(Violation::new(
            format!("{field}.contagious_until"),
            format!(
                "the window may span at most {} days, got {} s",
                matcher::MAX_STATIC_WINDOW_SECONDS / DAY_SECONDS,
                window
            ),
        ));
    }
    if violations.is_empty() {
        Ok((
            diagnosis_key::Key::StaticId(static_id.clone()),
            matcher::DiagnosisKey::Static(matcher::StaticKey {
                identifier: static_id.identifier.clone(),
                contagious_from: static_id.contagious_from,
                contagious_until: static_id.contagious_until,
            }),
        ))
    } else {
        Err(violations)
    }
}

/// Checks that `[from, until)` is non-empty and inside `bounds`.
fn check_window(
    from: u64,
    until: u64,
    bounds: (u64, u64),
    where_: &str,
    field: &str,
    violations: &mut Vec<Violation>,
) {
    if from >= until {
        violations.push(Violation::new(
            format!("{field}.contagious_until"),
            "must be after contagious_from (the window is empty)",
        ));
        return;
    }
    if from < bounds.0 {
        violations.push(Violation::new(
            format!("{field}.contagious_from"),
            format!("must be {where_} (not before {})", bounds.0),
        ));
    }
    if until > bounds.1 {
        violations.push(Violation::new(
            format!("{field}.contagious_until"),
            format!("must be {where_} (not after {})", bounds.1),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_768_046_400;

    fn full_day_bluezone(byte: u8, sub_keys_per_day: u32) -> DiagnosisKey {
        let day = NOW / DAY_SECONDS - 1;
        DiagnosisKey {
            key: Some(diagnosis_key::Key::Bluezone(BluezoneKey {
                daily_key: vec![byte; 32],
                day_number: day as u32,
                sub_keys_per_day,
                contagious_from: day * DAY_SECONDS,
                contagious_until: (day + 1) * DAY_SECONDS,
            })),
            transmission_risk_level: 0,
        }
    }

    fn request(keys: Vec<DiagnosisKey>) -> UploadDiagnosisKeysRequest {
        UploadDiagnosisKeysRequest {
            region: "VN-TB".into(),
            upload_id: "u".into(),
            keys,
            report_type: ReportType::ConfirmedTest as i32,
            padding: Vec::new(),
        }
    }

    #[test]
    fn an_upload_expanding_past_the_bound_is_refused_even_under_hand_made_limits() {
        // 30 keys of one identifier a second: 2,592,000 elements, the attack of issue 18.
        let keys = (0..30)
            .map(|byte| full_day_bluezone(byte, 86_400))
            .collect();
        let limits = Limits {
            now: NOW,
            max_key_age_days: 14,
            max_keys_per_upload: 30,
            bluezone_sub_keys_per_day: &[86_400],
        };
        let violations = validate_upload(&request(keys), limits).expect_err("refused");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "keys");
        assert!(
            violations[0].description.contains("2592000"),
            "{violations:?}"
        );
        assert!(
            violations[0].description.contains("43230"),
            "{violations:?}"
        );
    }

    #[test]
    fn only_the_configured_sub_keys_per_day_are_accepted() {
        let limits = Limits {
            now: NOW,
            max_key_age_days: 14,
            max_keys_per_upload: 30,
            bluezone_sub_keys_per_day: &[96, 48],
        };
        for accepted in [0, 96, 48] {
            assert!(
                validate_upload(&request(vec![full_day_bluezone(1, accepted)]), limits).is_ok(),
                "{accepted}"
            );
        }
        for refused in [1440, 86_400, 7] {
            let violations = validate_upload(&request(vec![full_day_bluezone(1, refused)]), limits)
                .expect_err("refused");
            assert_eq!(violations[0].field, "keys[0].bluezone.sub_keys_per_day");
        }
    }
}

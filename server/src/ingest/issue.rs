//! Issuing one-time upload codes (DESIGN.md sections 12 and 13): an authority's staff confirm a
//! case and hand the patient a code. Codes are stored hashed, with the region, report type,
//! expiry and issuing authority, in one synced write; each authority may issue
//! `--authority-codes-per-minute` codes. [`CodeIssuer`] is the one path both callers take: the
//! gRPC `KeyUpload.IssueUploadCodes` (an authority's bearer token) and the staff console (a
//! signed-in issuer of the authority).

use std::num::NonZeroU32;
use std::sync::Arc;

use exposure_proto::v1::{
    IssueUploadCodesRequest, IssueUploadCodesResponse, IssuedUploadCode, ReportType,
};
use rocksdb::WriteBatch;

use super::authority_limits::AuthorityLimiters;
use super::code::UploadCode;
use super::validate::{Violation, is_valid_region};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::storage::Store;
use crate::storage::records::{Authority, StoredCode};

/// Most codes one request may ask for.
pub const MAX_CODES_PER_REQUEST: u32 = 100;
/// Most codes one bulk issue of the console may ask for (a CSV download).
pub const MAX_BULK_CODES: u32 = 1000;
/// Validity of a code when the request names none: 24 hours.
pub const DEFAULT_VALID_FOR: u64 = 86_400;
/// Longest validity of a code: 7 days.
pub const MAX_VALID_FOR: u64 = 7 * 86_400;
/// Most days a symptom-onset or test date may lie before today (UTC).
pub const MAX_ONSET_DAYS_BACK: u64 = 30;
/// Widest days since onset a GAEN export carries (DESIGN §11): -14..=14.
pub const MAX_DAYS_SINCE_ONSET: i64 = 14;
/// Seconds of a UTC day.
const DAY: u64 = 86_400;

/// Issues codes for authorities: checks the request against the authority, charges the
/// authority's issue rate, and stores the codes' hashes in one synced write.
#[derive(Clone)]
pub struct CodeIssuer {
    store: Store,
    clock: Clock,
    /// Codes an authority may issue per minute; 0 turns the limit off.
    codes_per_minute: u32,
    /// One code-issue limiter per active authority, shared by every caller.
    limiters: Arc<AuthorityLimiters>,
}

impl CodeIssuer {
    /// Returns an issuer writing to `store`, with `codes_per_minute` per authority.
    pub fn new(store: Store, clock: Clock, codes_per_minute: u32) -> Self {
        Self {
            store,
            clock,
            codes_per_minute,
            limiters: Arc::default(),
        }
    }

    /// Issues the codes `request` asks for on behalf of `authority` (already authenticated),
    /// after checking the region, the request and the authority's issue rate; `issued_by` is
    /// the console account that asks (empty for the authority's bearer token).
    pub async fn issue(
        &self,
        authority: &Authority,
        request: &IssueUploadCodesRequest,
        issued_by: &str,
    ) -> Result<IssueUploadCodesResponse, ApiError> {
        self.issue_up_to(authority, request, issued_by, MAX_CODES_PER_REQUEST)
            .await
    }

    /// Issues like [`Self::issue`], up to `max_count` codes at once (the console's bulk issue:
    /// [`MAX_BULK_CODES`]). A request for more codes than the authority may issue per minute
    /// takes that minute's whole budget.
    pub async fn issue_up_to(
        &self,
        authority: &Authority,
        request: &IssueUploadCodesRequest,
        issued_by: &str,
        max_count: u32,
    ) -> Result<IssueUploadCodesResponse, ApiError> {
        let now = self.clock.now();
        let checked = check_request(authority, request, now, max_count)?;
        // A bulk issue past the per-minute budget takes the whole of it (it could never pass
        // otherwise); the console's daily quotas bound it.
        let charge = if max_count > MAX_CODES_PER_REQUEST {
            request.count.min(self.codes_per_minute)
        } else {
            request.count
        };
        self.check_issue_rate(&authority.id, charge)?;

        let expires_at = now + checked.valid_for;
        let record = StoredCode {
            region: request.region.clone(),
            report_type: checked.report_type as i32,
            expires_at,
            authority_id: authority.id.clone(),
            issued_at: now,
            consumed_at: 0,
            keys_per_day: authority.keys_per_day,
            onset_day: checked.onset.map(|(day, _)| day),
            onset_is_test_date: checked.onset.is_some_and(|(_, test)| test),
            issued_by: issued_by.to_owned(),
        };
        let codes: Vec<UploadCode> = (0..request.count).map(|_| UploadCode::generate()).collect();
        let hashes: Vec<[u8; 32]> = codes.iter().map(UploadCode::hash).collect();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = WriteBatch::default();
            for hash in &hashes {
                store.put_code(&mut batch, hash, &record);
            }
            store.write_synced(batch)
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))??;
        ::metrics::counter!(crate::metrics::UPLOAD_CODES_ISSUED_TOTAL)
            .increment(u64::from(request.count));
        Ok(IssueUploadCodesResponse {
            codes: codes
                .iter()
                .map(|code| IssuedUploadCode {
                    code: code.display(),
                    expires_at,
                })
                .collect(),
        })
    }

    /// Charges `count` codes to the authority's issue rate.
    fn check_issue_rate(&self, authority_id: &str, count: u32) -> Result<(), ApiError> {
        let Some(per_minute) = NonZeroU32::new(self.codes_per_minute) else {
            return Ok(());
        };
        let limiter = self.limiters.limiter(authority_id, per_minute);
        let refused = || {
            ApiError::ResourceExhausted(format!(
                "code issue limit of {per_minute} codes per minute reached; retry later"
            ))
        };
        let count = NonZeroU32::new(count).ok_or_else(refused)?;
        match limiter.check_n(count) {
            Ok(Ok(())) => Ok(()),
            _ => Err(refused()),
        }
    }
}

/// What a checked request asks for.
struct Checked {
    /// CONFIRMED_TEST when unspecified.
    report_type: ReportType,
    /// Seconds.
    valid_for: u64,
    /// The onset day (UTC day number) and whether it is a test date.
    onset: Option<(u32, bool)>,
}

/// Checks a request against the rules and the authority's regions at `now`.
fn check_request(
    authority: &Authority,
    request: &IssueUploadCodesRequest,
    now: u64,
    max_count: u32,
) -> Result<Checked, ApiError> {
    let mut violations = Vec::new();
    if !is_valid_region(&request.region) {
        violations.push(Violation {
            field: "region".into(),
            description: "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB".into(),
        });
    } else if !authority.regions.contains(&request.region) {
        return Err(ApiError::PermissionDenied(request.region.clone()));
    }
    if !(1..=max_count).contains(&request.count) {
        violations.push(Violation {
            field: "count".into(),
            description: format!("must be 1..={max_count}"),
        });
    }
    let report_type = match ReportType::try_from(request.report_type) {
        Ok(ReportType::Unspecified) => Some(ReportType::ConfirmedTest),
        Ok(ReportType::Revoked) | Err(_) => None,
        Ok(other) => Some(other),
    };
    if report_type.is_none() {
        violations.push(Violation {
            field: "report_type".into(),
            description: "must be CONFIRMED_TEST, CONFIRMED_CLINICAL_DIAGNOSIS or SELF_REPORT"
                .into(),
        });
    }
    let valid_for = match request.valid_for {
        0 => DEFAULT_VALID_FOR,
        seconds => seconds,
    };
    if valid_for > MAX_VALID_FOR {
        violations.push(Violation {
            field: "valid_for".into(),
            description: format!("must be at most {MAX_VALID_FOR} seconds (7 days)"),
        });
    }
    let today = now / DAY;
    let onset = date_day(
        "symptom_onset_date",
        &request.symptom_onset_date,
        today,
        &mut violations,
    );
    let test = date_day("test_date", &request.test_date, today, &mut violations);
    let onset = onset
        .map(|day| (day, false))
        .or(test.map(|day| (day, true)));
    match report_type {
        Some(report_type) if violations.is_empty() => Ok(Checked {
            report_type,
            valid_for,
            onset,
        }),
        _ => Err(ApiError::InvalidArgument(violations)),
    }
}

/// Returns the UTC day number of the date `text` (`YYYY-MM-DD`) of the request's `field`,
/// `None` when it is empty; a date that is malformed, after `today` or more than
/// [`MAX_ONSET_DAYS_BACK`] days before it is a violation.
fn date_day(field: &str, text: &str, today: u64, violations: &mut Vec<Violation>) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = (text.len() == 10)
        .then(|| humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok())
        .flatten()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_secs() / DAY);
    let problem = match parsed {
        None => "must be a date YYYY-MM-DD",
        Some(day) if day > today => "must not be in the future",
        Some(day) if day + MAX_ONSET_DAYS_BACK < today => "must be at most 30 days ago",
        Some(day) => return u32::try_from(day).ok(),
    };
    violations.push(Violation {
        field: field.into(),
        description: problem.into(),
    });
    None
}

/// Returns a GAEN key's days since onset: the UTC day of its first interval
/// (`rolling_start_interval_number`, 10-minute intervals since the epoch) minus `onset_day`,
/// or `None` outside -14..=14 (DESIGN §11 leaves the value absent when it is not known).
pub fn days_since_onset(rolling_start_interval_number: u32, onset_day: u32) -> Option<i32> {
    let key_day = i64::from(rolling_start_interval_number) / 144;
    let days = key_day - i64::from(onset_day);
    (-MAX_DAYS_SINCE_ONSET..=MAX_DAYS_SINCE_ONSET)
        .contains(&days)
        .then(|| i32::try_from(days).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-10 00:00 UTC (`date -u -d 2026-01-10 +%s` = 1768003200).
    const JAN_10: u64 = 1_768_003_200 / DAY;

    #[test]
    fn dates_are_utc_days_within_30_days_back_and_never_ahead() {
        let mut violations = Vec::new();
        assert_eq!(
            date_day("test_date", "2026-01-10", JAN_10, &mut violations),
            Some(20_463)
        );
        assert_eq!(
            date_day("test_date", "2025-12-11", JAN_10, &mut violations),
            Some(20_433)
        );
        assert_eq!(date_day("test_date", "", JAN_10, &mut violations), None);
        assert!(violations.is_empty(), "{violations:?}");
        for (text, problem) in [
            ("2026-01-11", "must not be in the future"),
            ("2025-12-10", "must be at most 30 days ago"),
            ("2026-1-5", "must be a date YYYY-MM-DD"),
            ("2026-02-30", "must be a date YYYY-MM-DD"),
            ("10/01/2026", "must be a date YYYY-MM-DD"),
        ] {
            let mut violations = Vec::new();
            assert_eq!(
                date_day("symptom_onset_date", text, JAN_10, &mut violations),
                None
            );
            assert_eq!(violations.len(), 1, "{text}");
            assert_eq!(violations[0].field, "symptom_onset_date");
            assert_eq!(violations[0].description, problem, "{text}");
        }
    }

    #[test]
    fn days_since_onset_is_the_key_day_minus_the_date_within_14_days() {
        // Day 20,463 starts at interval 20,463 * 144 = 2,946,672.
        let day = 20_463;
        assert_eq!(days_since_onset(2_946_672, day), Some(0));
        assert_eq!(days_since_onset(2_946_672 + 143, day), Some(0));
        assert_eq!(days_since_onset(2_946_672 - 1, day), Some(-1));
        assert_eq!(days_since_onset(2_946_672 + 14 * 144, day), Some(14));
        assert_eq!(days_since_onset(2_946_672 + 15 * 144, day), None);
        assert_eq!(days_since_onset(2_946_672 - 14 * 144, day), Some(-14));
        assert_eq!(days_since_onset(2_946_672 - 15 * 144, day), None);
    }
}

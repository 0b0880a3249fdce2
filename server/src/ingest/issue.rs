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
/// Validity of a code when the request names none: 24 hours.
pub const DEFAULT_VALID_FOR: u64 = 86_400;
/// Longest validity of a code: 7 days.
pub const MAX_VALID_FOR: u64 = 7 * 86_400;

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
    /// after checking the region, the request and the authority's issue rate.
    pub async fn issue(
        &self,
        authority: &Authority,
        request: &IssueUploadCodesRequest,
    ) -> Result<IssueUploadCodesResponse, ApiError> {
        let (report_type, valid_for) = check_request(authority, request)?;
        self.check_issue_rate(&authority.id, request.count)?;

        let now = self.clock.now();
        let expires_at = now + valid_for;
        let record = StoredCode {
            region: request.region.clone(),
            report_type: report_type as i32,
            expires_at,
            authority_id: authority.id.clone(),
            issued_at: now,
            consumed_at: 0,
            keys_per_day: authority.keys_per_day,
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

/// Checks a request against the rules and the authority's regions; returns its report type
/// (CONFIRMED_TEST when unspecified) and validity in seconds.
fn check_request(
    authority: &Authority,
    request: &IssueUploadCodesRequest,
) -> Result<(ReportType, u64), ApiError> {
    let mut violations = Vec::new();
    if !is_valid_region(&request.region) {
        violations.push(Violation {
            field: "region".into(),
            description: "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB".into(),
        });
    } else if !authority.regions.contains(&request.region) {
        return Err(ApiError::PermissionDenied(request.region.clone()));
    }
    if !(1..=MAX_CODES_PER_REQUEST).contains(&request.count) {
        violations.push(Violation {
            field: "count".into(),
            description: format!("must be 1..={MAX_CODES_PER_REQUEST}"),
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
    match report_type {
        Some(report_type) if violations.is_empty() => Ok((report_type, valid_for)),
        _ => Err(ApiError::InvalidArgument(violations)),
    }
}

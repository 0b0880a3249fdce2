//! `KeyUpload.IssueUploadCodes` (DESIGN.md section 12): an authority's staff confirm a case
//! and hand the patient a one-time code. Codes are stored hashed, with the region, report
//! type, expiry and issuing authority, in one synced write; each authority may issue
//! `--authority-codes-per-minute` codes.

use std::num::NonZeroU32;

use exposure_proto::v1::{
    IssueUploadCodesRequest, IssueUploadCodesResponse, IssuedUploadCode, ReportType,
};
use rocksdb::WriteBatch;

use super::code::UploadCode;
use super::service::KeyUploadService;
use super::validate::is_valid_region;
use crate::error::ApiError;
use crate::storage::records::StoredCode;

/// Most codes one request may ask for.
pub const MAX_CODES_PER_REQUEST: u32 = 100;
/// Validity of a code when the request names none: 24 hours.
pub const DEFAULT_VALID_FOR: u64 = 86_400;
/// Longest validity of a code: 7 days.
pub const MAX_VALID_FOR: u64 = 7 * 86_400;

/// Issues the codes a request asks for, after checking the token, the region, the request and
/// the authority's issue rate.
pub(super) async fn issue_codes(
    service: &KeyUploadService,
    token: String,
    request: IssueUploadCodesRequest,
) -> Result<IssueUploadCodesResponse, ApiError> {
    let authority = service.authenticate(token).await?;
    let mut violations = Vec::new();
    if !is_valid_region(&request.region) {
        violations.push(super::validate::Violation {
            field: "region".into(),
            description: "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB".into(),
        });
    } else if !authority.regions.contains(&request.region) {
        return Err(ApiError::PermissionDenied(request.region));
    }
    if !(1..=MAX_CODES_PER_REQUEST).contains(&request.count) {
        violations.push(super::validate::Violation {
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
        violations.push(super::validate::Violation {
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
        violations.push(super::validate::Violation {
            field: "valid_for".into(),
            description: format!("must be at most {MAX_VALID_FOR} seconds (7 days)"),
        });
    }
    if !violations.is_empty() {
        return Err(ApiError::InvalidArgument(violations));
    }
    check_issue_rate(service, &authority.id, request.count)?;

    let now = service.now();
    let expires_at = now + valid_for;
    let record = StoredCode {
        region: request.region.clone(),
        report_type: report_type.unwrap_or(ReportType::ConfirmedTest) as i32,
        expires_at,
        authority_id: authority.id.clone(),
        issued_at: now,
        consumed_at: 0,
        keys_per_day: authority.keys_per_day,
    };
    let codes: Vec<UploadCode> = (0..request.count).map(|_| UploadCode::generate()).collect();
    let hashes: Vec<[u8; 32]> = codes.iter().map(UploadCode::hash).collect();
    let store = service.store().clone();
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
fn check_issue_rate(
    service: &KeyUploadService,
    authority_id: &str,
    count: u32,
) -> Result<(), ApiError> {
    let Some(per_minute) = NonZeroU32::new(service.codes_per_minute) else {
        return Ok(());
    };
    let limiter = service.issue_limiters.limiter(authority_id, per_minute);
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

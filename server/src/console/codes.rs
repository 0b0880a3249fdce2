//! The home page and issuing one upload code (DESIGN.md section 13). The code is issued by
//! [`crate::ingest::issue::CodeIssuer`], the path the gRPC `IssueUploadCodes` takes (the same
//! checks, the authority's issue rate, one synced write of the code's hash), on behalf of the
//! signed-in person's authority; only an `issuer` may, within the account's daily quota
//! (`--console-codes-per-user-per-day`). The page shows the code once, large,
//! with its expiry and a QR code, and is never cached. The audit log records each issue with
//! its count, report type and region, never the code.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use exposure_proto::v1::{IssueUploadCodesRequest, IssueUploadCodesResponse, ReportType};
use http::StatusCode;

use super::login::internal;
use super::session::{Form, Request, SignedIn, signed_in};
use super::{ConsoleState, blocking, network_text, pages};
use crate::error::ApiError;
use crate::storage::StorageError;
use crate::storage::console::{AuditRecord, ROLE_ISSUER};
use crate::storage::records::Authority;

/// Seconds of a UTC day.
const DAY: u64 = 86_400;
/// Longest validity the form offers, in hours (the API's 7 days).
const MAX_VALID_HOURS: u64 = crate::ingest::issue::MAX_VALID_FOR / 3600;

/// `GET /`: the issue form, or the sign-in page for a browser without a session.
pub async fn home(State(state): State<Arc<ConsoleState>>, request: Request) -> Response {
    let signed = match signed_in(&state, &request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(&request, &error),
    };
    match authority_of(&state, &signed).await {
        Ok(authority) => {
            let regions = authority
                .map(|authority| authority.regions)
                .unwrap_or_default();
            pages::respond(
                &request,
                StatusCode::OK,
                pages::home(&request, &signed, &regions, None),
            )
        }
        Err(error) => internal(&request, &error),
    }
}

/// `POST /codes`: issues one code for the signed-in issuer's authority.
pub async fn issue(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let t = request.lang.text();
    let signed = match signed_in(&state, &request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(&request, &error),
    };
    let form = Form::parse(&body);
    if !signed.csrf_ok(&form) {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.form_refused,
        );
    }
    let authority = match authority_of(&state, &signed).await {
        Ok(authority) => authority,
        Err(error) => return internal(&request, &error),
    };
    let (true, Some(authority)) = (signed.user.has_role(ROLE_ISSUER), authority) else {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_issue,
        );
    };
    let (report_type, report_name) = match form.get("report_type") {
        "clinical_diagnosis" => (
            ReportType::ConfirmedClinicalDiagnosis,
            "CONFIRMED_CLINICAL_DIAGNOSIS",
        ),
        "self_report" => (ReportType::SelfReport, "SELF_REPORT"),
        _ => (ReportType::ConfirmedTest, "CONFIRMED_TEST"),
    };
    let region = form.get("region").to_owned();
    let now = state.clock.now();
    let result = match form.get("valid_hours").trim().parse::<u64>() {
        Ok(hours) if (1..=MAX_VALID_HOURS).contains(&hours) => {
            let order = IssueUploadCodesRequest {
                region: region.clone(),
                count: 1,
                report_type: report_type as i32,
                valid_for: hours * 3600,
            };
            issue_within_quota(&state, &signed, &authority, &order, now).await
        }
        _ => Err(Refusal::Api(ApiError::invalid(
            "valid_hours",
            format!("must be a whole number of hours from 1 to {MAX_VALID_HOURS}"),
        ))),
    };
    let record = AuditRecord {
        at: now,
        email: signed.user.email.clone(),
        authority_id: authority.id.clone(),
        action: "code_issue".into(),
        object: format!("1 code, {report_name}, {region}"),
        result: match &result {
            Ok(_) => "ok".into(),
            Err(Refusal::Api(error)) => error.to_string(),
            Err(Refusal::Quota { .. }) => "daily quota of the account reached".into(),
        },
        network: network_text(request.peer.as_ref()),
    };
    let audited = state.clone();
    if let Err(error) = blocking(move || {
        audited.audit(record);
        Ok(())
    })
    .await
    {
        return internal(&request, &error);
    }
    match result {
        Ok(response) => match response.codes.first() {
            Some(issued) => {
                let link = match &state.code_link {
                    Some(template) => template.replace("{code}", &issued.code),
                    None => issued.code.clone(),
                };
                let page = pages::code(
                    &request,
                    &signed,
                    &issued.code,
                    &pages::utc_time(issued.expires_at),
                    &pages::qr_svg(&link),
                );
                pages::respond(&request, StatusCode::OK, page)
            }
            None => internal(&request, "the issuer returned no code"),
        },
        Err(refusal) => refused(&request, &signed, &authority, refusal),
    }
}

/// Why no code was issued.
enum Refusal {
    /// The issuing path refused (bad input, the authority's rate) or failed.
    Api(ApiError),
    /// The account's daily quota is used up until `resets_at` (Unix seconds).
    Quota {
        /// The next midnight UTC.
        resets_at: u64,
    },
}

/// Answers a refused issue: the form again with the reason (and, past the quota, when it
/// resets), or the generic page for a failure of the server.
fn refused(
    request: &Request,
    signed: &SignedIn,
    authority: &Authority,
    refusal: Refusal,
) -> Response {
    let t = request.lang.text();
    let (status, reason) = match refusal {
        Refusal::Quota { resets_at } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} {}", t.quota_reached, pages::utc_time(resets_at)),
        ),
        Refusal::Api(error) => {
            let status = match &error {
                ApiError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
                ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
                ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
                _ => return internal(request, &error.to_string()),
            };
            (status, error.to_string())
        }
    };
    let page = pages::home(request, signed, &authority.regions, Some(&reason));
    pages::respond(request, status, page)
}

/// Issues `order` through the shared issuing path once the account's daily quota has room;
/// a failed issue gives its place in the quota back.
async fn issue_within_quota(
    state: &Arc<ConsoleState>,
    signed: &SignedIn,
    authority: &Authority,
    order: &IssueUploadCodesRequest,
    now: u64,
) -> Result<IssueUploadCodesResponse, Refusal> {
    let worker = state.clone();
    let email = signed.user.email.clone();
    match blocking(move || charge_quota(&worker, &email, now, 1)).await {
        Ok(Ok(())) => {}
        Ok(Err(resets_at)) => return Err(Refusal::Quota { resets_at }),
        Err(error) => return Err(Refusal::Api(ApiError::Internal(error))),
    }
    let result = state.issuer.issue(authority, order).await;
    if result.is_err() {
        let worker = state.clone();
        let email = signed.user.email.clone();
        if let Err(error) =
            blocking(move || charge_quota(&worker, &email, now, -1).map(|_| ())).await
        {
            tracing::warn!(%error, "quota not given back after a failed issue");
        }
    }
    result.map_err(Refusal::Api)
}

/// Adds `count` codes (negative: gives them back) to the account's count of the UTC day of
/// `now`; returns the next midnight UTC instead when adding would pass
/// `--console-codes-per-user-per-day`.
fn charge_quota(
    state: &ConsoleState,
    email: &str,
    now: u64,
    count: i64,
) -> Result<Result<(), u64>, StorageError> {
    let limit = state.codes_per_user_per_day;
    if limit == 0 {
        return Ok(Ok(()));
    }
    let _accounts = state
        .accounts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let day = now / DAY;
    let Some(mut user) = state.store.console_user(email)? else {
        return Ok(Ok(()));
    };
    if user.quota_day != day {
        if count < 0 {
            return Ok(Ok(()));
        }
        user.quota_day = day;
        user.codes_today = 0;
    }
    let after = i64::from(user.codes_today) + count;
    if after > i64::from(limit) {
        return Ok(Err((day + 1) * DAY));
    }
    user.codes_today = u32::try_from(after.max(0)).unwrap_or(0);
    state.store.put_console_user(&user)?;
    Ok(Ok(()))
}

/// Returns the signed-in person's authority while it is active.
async fn authority_of(
    state: &ConsoleState,
    signed: &SignedIn,
) -> Result<Option<Authority>, String> {
    let store = state.store.clone();
    let id = signed.user.authority_id.clone();
    blocking(move || store.active_authority(&id)).await
}

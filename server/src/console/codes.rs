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
use http::{StatusCode, header};

use super::login::internal;
use super::session::{Form, Request, SignedIn, signed_in};
use super::{ConsoleState, blocking, network_text, pages};
use crate::error::ApiError;
use crate::ingest::issue::MAX_BULK_CODES;
use crate::storage::StorageError;
use crate::storage::console::{AuditRecord, ConsoleUser, ROLE_ISSUER};
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
    let authority = match authority_of(&state, &signed).await {
        Ok(authority) => authority,
        Err(error) => return internal(&request, &error),
    };
    let regions = authority
        .map(|authority| authority.regions)
        .unwrap_or_default();
    let now = state.clock.now();
    let quota = match blocking({
        let (state, signed) = (state.clone(), signed.user.clone());
        move || quota_use(&state, &signed, now)
    })
    .await
    {
        Ok(quota) => quota,
        Err(error) => return internal(&request, &error),
    };
    pages::respond(
        &request,
        StatusCode::OK,
        pages::home(&request, &signed, &regions, Some(&quota), None),
    )
}

/// `POST /codes`: issues one code for the signed-in issuer's authority.
pub async fn issue(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let (signed, authority, result) = match issue_from_form(&state, &request, &body, false).await {
        Ok(issued) => issued,
        Err(answer) => return answer,
    };
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

/// `POST /codes/bulk`: issues up to [`MAX_BULK_CODES`] codes at once and answers them as a
/// CSV download (`code,expires_at`, one code a line, never cached), counted against both
/// daily quotas, with one audit record.
pub async fn issue_bulk(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let (signed, authority, result) = match issue_from_form(&state, &request, &body, true).await {
        Ok(issued) => issued,
        Err(answer) => return answer,
    };
    match result {
        Ok(response) => {
            let mut csv = String::from("code,expires_at\n");
            for issued in &response.codes {
                csv.push_str(&issued.code);
                csv.push(',');
                csv.push_str(&pages::utc_time(issued.expires_at));
                csv.push('\n');
            }
            let name = format!("attachment; filename=\"codes-{}.csv\"", state.clock.now());
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, name),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
                csv,
            )
                .into_response()
        }
        Err(refusal) => refused(&request, &signed, &authority, refusal),
    }
}

/// What an issue form gave: the signed-in issuer, the authority, and the codes or why none.
type Issued = (
    SignedIn,
    Authority,
    Result<IssueUploadCodesResponse, Refusal>,
);

/// Issues what the form of `body` asks for (one code, or `count` of them when `bulk`) and
/// writes its audit record; answers at once instead when the form may not issue (no session,
/// no CSRF token, not an issuer).
async fn issue_from_form(
    state: &Arc<ConsoleState>,
    request: &Request,
    body: &Bytes,
    bulk: bool,
) -> Result<Issued, Response> {
    let t = request.lang.text();
    let signed = match signed_in(state, request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Err(Redirect::to("/login").into_response()),
        Err(error) => return Err(internal(request, &error)),
    };
    let form = Form::parse(body);
    if !signed.csrf_ok(&form) {
        return Err(pages::message(
            request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.form_refused,
        ));
    }
    let authority = match authority_of(state, &signed).await {
        Ok(authority) => authority,
        Err(error) => return Err(internal(request, &error)),
    };
    let (true, Some(authority)) = (signed.user.has_role(ROLE_ISSUER), authority) else {
        return Err(pages::message(
            request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_issue,
        ));
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
    let count = if bulk {
        form.get("count")
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|count| (1..=MAX_BULK_CODES).contains(count))
    } else {
        Some(1)
    };
    let hours = form
        .get("valid_hours")
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|hours| (1..=MAX_VALID_HOURS).contains(hours));
    let result = match (count, hours) {
        (None, _) => Err(Refusal::Api(ApiError::invalid(
            "count",
            format!("must be a whole number from 1 to {MAX_BULK_CODES}"),
        ))),
        (_, None) => Err(Refusal::Api(ApiError::invalid(
            "valid_hours",
            format!("must be a whole number of hours from 1 to {MAX_VALID_HOURS}"),
        ))),
        (Some(count), Some(hours)) => {
            // A bulk issue is for many patients: no one patient's dates.
            let date = |field: &str| {
                if bulk {
                    String::new()
                } else {
                    form.get(field).trim().to_owned()
                }
            };
            let order = IssueUploadCodesRequest {
                region: region.clone(),
                count,
                report_type: report_type as i32,
                valid_for: hours * 3600,
                symptom_onset_date: date("symptom_onset_date"),
                test_date: date("test_date"),
            };
            issue_within_quota(state, &signed, &authority, &order, now).await
        }
    };
    let count = count.unwrap_or(0);
    let record = AuditRecord {
        at: now,
        email: signed.user.email.clone(),
        authority_id: authority.id.clone(),
        action: "code_issue".into(),
        object: format!(
            "{count} code{}, {report_name}, {region}",
            if count == 1 { "" } else { "s" }
        ),
        result: match &result {
            Ok(_) => "ok".into(),
            Err(Refusal::Api(error)) => error.to_string(),
            Err(Refusal::Quota {
                authority: false, ..
            }) => "daily quota of the account reached".into(),
            Err(Refusal::Quota {
                authority: true, ..
            }) => "daily quota of the authority reached".into(),
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
        return Err(internal(request, &error));
    }
    Ok((signed, authority, result))
}

/// Why no code was issued.
enum Refusal {
    /// The issuing path refused (bad input, the authority's rate) or failed.
    Api(ApiError),
    /// The account's or the authority's daily quota is used up until `resets_at`.
    Quota {
        /// Whether the authority's quota (not the account's) is used up.
        authority: bool,
        /// The next midnight UTC (Unix seconds).
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
        Refusal::Quota {
            authority,
            resets_at,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} {}",
                if authority {
                    t.authority_quota_reached
                } else {
                    t.quota_reached
                },
                pages::utc_time(resets_at)
            ),
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
    let page = pages::home(request, signed, &authority.regions, None, Some(&reason));
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
    let authority_id = authority.id.clone();
    let count = i64::from(order.count);
    match blocking(move || charge_quota(&worker, &email, &authority_id, now, count)).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => return Err(refusal),
        Err(error) => return Err(Refusal::Api(ApiError::Internal(error))),
    }
    let result = state
        .issuer
        .issue_up_to(authority, order, &signed.user.email, MAX_BULK_CODES)
        .await;
    if result.is_err() {
        let worker = state.clone();
        let email = signed.user.email.clone();
        let authority_id = authority.id.clone();
        if let Err(error) =
            blocking(move || charge_quota(&worker, &email, &authority_id, now, -count).map(|_| ()))
                .await
        {
            tracing::warn!(%error, "quota not given back after a failed issue");
        }
    }
    result.map_err(Refusal::Api)
}

/// Adds `count` codes (negative: gives them back) to the account's and its authority's
/// counts of the UTC day of `now`; refuses instead, with the next midnight UTC, when adding
/// would pass `--console-codes-per-user-per-day` or `--console-codes-per-authority-per-day`.
fn charge_quota(
    state: &ConsoleState,
    email: &str,
    authority_id: &str,
    now: u64,
    count: i64,
) -> Result<Result<(), Refusal>, StorageError> {
    let _accounts = state
        .accounts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let day = now / DAY;
    let resets_at = (day + 1) * DAY;
    // The counts after the change, or `None` where there is no quota (or nothing to give
    // back: a count of an earlier day).
    let recount = |counted_day: u64, counted: u64, limit: u32| -> Option<Result<u64, ()>> {
        if limit == 0 {
            return None;
        }
        let counted = if counted_day == day { counted } else { 0 };
        if counted_day != day && count < 0 {
            return None;
        }
        let after = i64::try_from(counted)
            .unwrap_or(i64::MAX)
            .saturating_add(count);
        Some(if after > i64::from(limit) {
            Err(())
        } else {
            Ok(u64::try_from(after).unwrap_or(0))
        })
    };
    let mut user = state.store.console_user(email)?;
    let user_after = user.as_ref().and_then(|user| {
        recount(
            user.quota_day,
            u64::from(user.codes_today),
            state.codes_per_user_per_day,
        )
    });
    let (counted_day, counted) = state.store.authority_codes_today(authority_id)?;
    let authority_after = recount(counted_day, counted, state.codes_per_authority_per_day);
    if let Some(Err(())) = user_after {
        return Ok(Err(Refusal::Quota {
            authority: false,
            resets_at,
        }));
    }
    if let Some(Err(())) = authority_after {
        return Ok(Err(Refusal::Quota {
            authority: true,
            resets_at,
        }));
    }
    if let (Some(Ok(after)), Some(user)) = (user_after, user.as_mut()) {
        user.quota_day = day;
        user.codes_today = u32::try_from(after).unwrap_or(u32::MAX);
        state.store.put_console_user(user)?;
    }
    if let Some(Ok(after)) = authority_after {
        state
            .store
            .put_authority_codes_today(authority_id, day, after)?;
    }
    Ok(Ok(()))
}

/// Returns the codes the account and its authority issued today, and the next midnight UTC:
/// what the issue form shows beside the quotas.
pub fn quota_use(
    state: &ConsoleState,
    user: &ConsoleUser,
    now: u64,
) -> Result<QuotaUse, StorageError> {
    let day = now / DAY;
    let (counted_day, counted) = state.store.authority_codes_today(&user.authority_id)?;
    let user = if user.quota_day == day {
        u64::from(user.codes_today)
    } else {
        0
    };
    Ok(QuotaUse {
        user,
        user_limit: state.codes_per_user_per_day,
        authority: if counted_day == day { counted } else { 0 },
        authority_limit: state.codes_per_authority_per_day,
        resets_at: (day + 1) * DAY,
    })
}

/// Today's use of the two daily quotas.
pub struct QuotaUse {
    /// Codes the account issued today.
    pub user: u64,
    /// `--console-codes-per-user-per-day` (0: none).
    pub user_limit: u32,
    /// Codes the authority's accounts issued today.
    pub authority: u64,
    /// `--console-codes-per-authority-per-day` (0: none).
    pub authority_limit: u32,
    /// The next midnight UTC.
    pub resets_at: u64,
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

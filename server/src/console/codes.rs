//! The home page and issuing one upload code (DESIGN.md section 13). The code is issued by
//! [`crate::ingest::issue::CodeIssuer`], the path the gRPC `IssueUploadCodes` takes (the same
//! checks, the authority's issue rate, one synced write of the code's hash), on behalf of the
//! signed-in person's authority; only an `issuer` may. The page shows the code once, large,
//! with its expiry and a QR code, and is never cached. The audit log records each issue with
//! its count, report type and region, never the code.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use exposure_proto::v1::{IssueUploadCodesRequest, ReportType};
use http::StatusCode;

use super::login::internal;
use super::session::{Form, Request, SignedIn, signed_in};
use super::{ConsoleState, blocking, network_text, pages};
use crate::error::ApiError;
use crate::storage::console::{AuditRecord, ROLE_ISSUER};
use crate::storage::records::Authority;

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
            let regions = authority.map(|authority| authority.regions).unwrap_or_default();
            pages::respond(&request, StatusCode::OK, pages::home(&request, &signed, &regions, None))
        }
        Err(error) => internal(&request, &error),
    }
}

/// `POST /codes`: issues one code for the signed-in issuer's authority.
pub async fn issue(State(state): State<Arc<ConsoleState>>, request: Request, body: Bytes) -> Response {
    let t = request.lang.text();
    let signed = match signed_in(&state, &request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(&request, &error),
    };
    let form = Form::parse(&body);
    if !signed.csrf_ok(&form) {
        return pages::message(&request, StatusCode::FORBIDDEN, t.forbidden_heading, t.form_refused);
    }
    let authority = match authority_of(&state, &signed).await {
        Ok(authority) => authority,
        Err(error) => return internal(&request, &error),
    };
    let (true, Some(authority)) = (signed.user.has_role(ROLE_ISSUER), authority) else {
        return pages::message(&request, StatusCode::FORBIDDEN, t.forbidden_heading, t.cannot_issue);
    };
    let (report_type, report_name) = match form.get("report_type") {
        "clinical_diagnosis" => (ReportType::ConfirmedClinicalDiagnosis, "CONFIRMED_CLINICAL_DIAGNOSIS"),
        "self_report" => (ReportType::SelfReport, "SELF_REPORT"),
        _ => (ReportType::ConfirmedTest, "CONFIRMED_TEST"),
    };
    let region = form.get("region").to_owned();
    let result = match form.get("valid_hours").trim().parse::<u64>() {
        Ok(hours) if (1..=MAX_VALID_HOURS).contains(&hours) => {
            let order = IssueUploadCodesRequest {
                region: region.clone(),
                count: 1,
                report_type: report_type as i32,
                valid_for: hours * 3600,
            };
            state.issuer.issue(&authority, &order).await
        }
        _ => Err(ApiError::invalid(
            "valid_hours",
            format!("must be a whole number of hours from 1 to {MAX_VALID_HOURS}"),
        )),
    };
    let record = AuditRecord {
        at: state.clock.now(),
        email: signed.user.email.clone(),
        authority_id: authority.id.clone(),
        action: "code_issue".into(),
        object: format!("1 code, {report_name}, {region}"),
        result: match &result {
            Ok(_) => "ok".into(),
            Err(error) => error.to_string(),
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
        Err(error) => {
            let status = match &error {
                ApiError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
                ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
                ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                return internal(&request, &error.to_string());
            }
            let page = pages::home(&request, &signed, &authority.regions, Some(&error.to_string()));
            pages::respond(&request, status, page)
        }
    }
}

/// Returns the signed-in person's authority while it is active.
async fn authority_of(state: &ConsoleState, signed: &SignedIn) -> Result<Option<Authority>, String> {
    let store = state.store.clone();
    let id = signed.user.authority_id.clone();
    blocking(move || store.active_authority(&id)).await
}

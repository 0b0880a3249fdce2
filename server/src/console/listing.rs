//! The console's lists (DESIGN.md section 13): the codes of the authority and, for its admins,
//! its audit log (also as CSV), newest first, a page of [`PAGE_SIZE`] at a time (`?page=N`,
//! from 1). Codes show their issuer, issue time, report
//! type, expiry and status (unused, used, expired), never the code or its hash. Issuers see
//! the codes they issued; admins and viewers every code of the authority; nobody another
//! authority's.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use exposure_proto::v1::ReportType;
use http::{StatusCode, header};

use super::login::internal;
use super::session::{Request, signed_in};
use super::{ConsoleState, blocking, pages};
use crate::storage::console::{AuditRecord, ROLE_ADMIN, ROLE_ISSUER, ROLE_VIEWER};
use crate::storage::records::StoredCode;

/// Rows a page of a list shows.
pub const PAGE_SIZE: usize = 50;

/// Returns the page number of a query (`page=N`, from 1; 1 when missing or malformed).
pub fn page_of(query: Option<&str>) -> usize {
    query
        .map(|query| url::form_urlencoded::parse(query.as_bytes()))
        .and_then(|mut pairs| pairs.find(|(name, _)| name == "page"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .filter(|page| *page >= 1)
        .unwrap_or(1)
}

/// Returns page `page` (from 1) of `items` and whether a later page exists.
pub fn paginate<T>(items: Vec<T>, page: usize) -> (Vec<T>, bool) {
    let start = (page - 1).saturating_mul(PAGE_SIZE);
    let more = items.len() > start.saturating_add(PAGE_SIZE);
    (
        items.into_iter().skip(start).take(PAGE_SIZE).collect(),
        more,
    )
}

/// What the codes list shows of one code.
pub struct CodeRow {
    /// Issue time, UTC.
    pub issued: String,
    /// The issuing account's address; empty for the authority's bearer token.
    pub issued_by: String,
    /// The report type's name in the catalogue.
    pub report_type: &'static str,
    /// Expiry time, UTC.
    pub expires: String,
    /// `unused`, `used` or `expired` (the row's class), and its name in the catalogue.
    pub status: (&'static str, &'static str),
}

/// `GET /codes`: the authority's codes, newest first.
pub async fn codes(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    RawQuery(query): RawQuery,
) -> Response {
    let t = request.lang.text();
    let signed = match signed_in(&state, &request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(&request, &error),
    };
    let user = &signed.user;
    if !(user.has_role(ROLE_ISSUER) || user.has_role(ROLE_VIEWER) || user.has_role(ROLE_ADMIN)) {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_see,
        );
    }
    // Issuers alone see their own codes; admins and viewers the authority's.
    let own_only = !(user.has_role(ROLE_VIEWER) || user.has_role(ROLE_ADMIN));
    let store = state.store.clone();
    let authority = user.authority_id.clone();
    let email = user.email.clone();
    let mut codes: Vec<StoredCode> =
        match blocking(move || store.codes_of_authority(&authority)).await {
            Ok(codes) => codes,
            Err(error) => return internal(&request, &error),
        };
    if own_only {
        codes.retain(|code| code.issued_by == email);
    }
    codes.sort_by_key(|code| std::cmp::Reverse(code.issued_at));
    let total = codes.len();
    let page = page_of(query.as_deref());
    let (codes, more) = paginate(codes, page);
    let now = state.clock.now();
    let rows: Vec<CodeRow> = codes
        .iter()
        .map(|code| CodeRow {
            issued: pages::utc_time(code.issued_at),
            issued_by: code.issued_by.clone(),
            report_type: match ReportType::try_from(code.report_type) {
                Ok(ReportType::ConfirmedClinicalDiagnosis) => t.clinical_diagnosis,
                Ok(ReportType::SelfReport) => t.self_report,
                _ => t.confirmed_test,
            },
            expires: pages::utc_time(code.expires_at),
            status: if code.consumed_at > 0 {
                ("used", t.status_used)
            } else if code.expires_at < now {
                ("expired", t.status_expired)
            } else {
                ("unused", t.status_unused)
            },
        })
        .collect();
    let page_markup = pages::codes_list(&request, &signed, &rows, total, page, more);
    pages::respond(&request, StatusCode::OK, page_markup)
}

/// `GET /audit`: the authority's audit log for its admins, newest first.
pub async fn audit(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    RawQuery(query): RawQuery,
) -> Response {
    let (signed, records) = match audit_records(&state, &request).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let total = records.len();
    let page = page_of(query.as_deref());
    let (records, more) = paginate(records, page);
    let page_markup = pages::audit_list(&request, &signed, &records, total, page, more);
    pages::respond(&request, StatusCode::OK, page_markup)
}

/// `GET /audit.csv`: the whole audit log of the authority as CSV, newest first.
pub async fn audit_csv(State(state): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (_, records) = match audit_records(&state, &request).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let mut csv = String::from("time_utc,user,action,object,result,client_network\n");
    for record in &records {
        let fields = [
            pages::utc_time(record.at),
            record.email.clone(),
            record.action.clone(),
            record.object.clone(),
            record.result.clone(),
            record.network.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        csv,
    )
        .into_response()
}

/// Returns one CSV field (RFC 4180): quoted, with quotes doubled; a field that a spreadsheet
/// would read as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
pub fn csv_field(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// Returns the signed-in admin and the audit records of their authority, newest first, or the
/// answer for anyone else.
async fn audit_records(
    state: &Arc<ConsoleState>,
    request: &Request,
) -> Result<(super::session::SignedIn, Vec<AuditRecord>), Response> {
    let t = request.lang.text();
    let signed = match signed_in(state, request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Err(Redirect::to("/login").into_response()),
        Err(error) => return Err(internal(request, &error)),
    };
    if !signed.user.has_role(ROLE_ADMIN) {
        return Err(pages::message(
            request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_see,
        ));
    }
    let store = state.store.clone();
    let authority = signed.user.authority_id.clone();
    match blocking(move || store.audit_records(&authority)).await {
        Ok(mut records) => {
            records.reverse();
            Ok((signed, records))
        }
        Err(error) => Err(internal(request, &error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_fifty_rows_and_say_whether_more_follow() {
        let items: Vec<u32> = (0..120).collect();
        let (first, more) = paginate(items.clone(), 1);
        assert_eq!((first.len(), first[0], more), (50, 0, true));
        let (third, more) = paginate(items.clone(), 3);
        assert_eq!((third.len(), third[0], more), (20, 100, false));
        let (beyond, more) = paginate(items, 9);
        assert!(beyond.is_empty() && !more);
        assert_eq!(page_of(Some("page=3")), 3);
        assert_eq!(page_of(Some("lang=vi&page=2")), 2);
        assert_eq!(page_of(Some("page=0")), 1);
        assert_eq!(page_of(Some("page=x")), 1);
        assert_eq!(page_of(None), 1);
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), r#""say ""hi""""#);
        assert_eq!(csv_field("=SUM(A1)"), "\"'=SUM(A1)\"");
        assert_eq!(csv_field(""), "\"\"");
    }
}

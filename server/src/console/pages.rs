//! The console's pages, as `maud` templates (checked when the server compiles; every value
//! escaped unless marked otherwise). Each page takes its words from the request's catalogue
//! ([`super::i18n`]) and works without JavaScript; QR codes are drawn on the server as inline
//! SVG (the `qrcode` crate), so the content security policy allows no script, image source or
//! inline style.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::{Request, SignedIn};
use crate::storage::console::role_names;

/// Returns an HTML answer with `status`, remembering a switched language.
pub fn respond(request: &Request, status: StatusCode, page: Markup) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response();
    if let Some(cookie) = request
        .lang_cookie()
        .and_then(|cookie| HeaderValue::from_str(&cookie).ok())
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Returns a page that only says something (an error, a refusal).
pub fn message(request: &Request, status: StatusCode, heading: &str, text: &str) -> Response {
    let t = request.lang.text();
    let body = html! {
        h1 { (heading) }
        p.notice { (text) }
        p { a href="/" { (t.back) } }
    };
    respond(request, status, layout(request, None, body))
}

/// Wraps a page's body in the document: the title bar, the language switch and, when signed
/// in, the account and its sign-out button.
pub fn layout(request: &Request, signed: Option<&SignedIn>, body: Markup) -> Markup {
    let t = request.lang.text();
    let other = match request.lang {
        super::i18n::Lang::Vi => super::i18n::Lang::En,
        super::i18n::Lang::En => super::i18n::Lang::Vi,
    };
    html! {
        (DOCTYPE)
        html lang=(request.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (t.title) }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    span.brand { (t.title) }
                    nav {
                        a href={ (switch_path(&request.path)) "?lang=" (other.code()) } lang=(other.code()) {
                            (t.switch_to)
                        }
                        @if let Some(signed) = signed {
                            a id="nav-issue" href="/" { (t.nav_issue) }
                            a id="nav-codes" href="/codes" { (t.nav_codes) }
                            @if signed.user.has_role(crate::storage::console::ROLE_ADMIN) || signed.user.has_role(crate::storage::console::ROLE_VIEWER) {
                                a id="nav-stats" href="/stats" { (t.nav_stats) }
                            }
                            @if signed.user.has_role(crate::storage::console::ROLE_ADMIN) {
                                a id="nav-users" href="/users" { (t.nav_users) }
                                a id="nav-audit" href="/audit" { (t.nav_audit) }
                            }
                            span.account {
                                (t.signed_in_as) " " strong { (signed.user.email) }
                                " · " (t.roles) ": " (role_names(signed.user.roles))
                            }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(signed.session.csrf_token);
                                button type="submit" { (t.sign_out) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Returns the path the language switch reloads: the page itself for a page that a GET shows,
/// the home page after a POST (whose answer cannot be reloaded).
fn switch_path(path: &str) -> &str {
    match path {
        "/login" | "/" | "/codes" | "/audit" | "/users" | "/stats" => path,
        _ => "/",
    }
}

/// The sign-in page, with a notice (enrolled) or an error (the one failure message).
pub fn login(request: &Request, notice: Option<&str>, error: Option<&str>) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.sign_in_heading) }
        @if let Some(notice) = notice { p.notice { (notice) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/login" {
            label { (t.email) input type="email" name="email" autocomplete="username" required; }
            label { (t.password) input type="password" name="password" autocomplete="current-password" required; }
            label { (t.totp_code) input type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required; }
            button type="submit" { (t.sign_in) }
        }
    };
    layout(request, None, body)
}

/// The enrolment page: the TOTP key as text and QR code, and the password and code fields.
pub fn enrol(
    request: &Request,
    token: &str,
    email: &str,
    secret_text: &str,
    qr: &Markup,
    error: Option<&str>,
) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.enrol_heading) }
        p { strong { (email) } }
        p { (t.enrol_intro) }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        div.qr { (qr) }
        p { (t.totp_key) ": " code.secret { (secret_text) } }
        form method="post" action="/enrol" {
            input type="hidden" name="token" value=(token);
            label { (t.password) input type="password" name="password" autocomplete="new-password" minlength="12" required; }
            label { (t.password_again) input type="password" name="password_again" autocomplete="new-password" minlength="12" required; }
            label { (t.totp_code) input type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required; }
            button type="submit" { (t.enrol_button) }
        }
    };
    layout(request, None, body)
}

/// The home page: the issue form for an issuer (with the authority's regions and today's use
/// of the quotas), a short note for anyone else; `error` says why the last issue failed.
pub fn home(
    request: &Request,
    signed: &SignedIn,
    regions: &[String],
    quota: Option<&super::codes::QuotaUse>,
    error: Option<&str>,
) -> Markup {
    let t = request.lang.text();
    let issuer = signed.user.has_role(crate::storage::console::ROLE_ISSUER);
    let body = html! {
        @if issuer && !regions.is_empty() {
            h1 { (t.issue_heading) }
            @if let Some(error) = error { p.error role="alert" { (t.issue_failed) " " (error) } }
            @if let Some(quota) = quota {
                p.hint id="quota" {
                    @if quota.user_limit > 0 {
                        span id="quota-user" { (t.quota_user) ": " (quota.user) " / " (quota.user_limit) }
                        " · "
                    }
                    @if quota.authority_limit > 0 {
                        span id="quota-authority" { (t.quota_authority) ": " (quota.authority) " / " (quota.authority_limit) }
                        " · "
                    }
                    (t.quota_resets) " " (utc_time(quota.resets_at))
                }
            }
            form method="post" action="/codes" {
                input type="hidden" name="csrf" value=(signed.session.csrf_token);
                label { (t.region)
                    select name="region" {
                        @for region in regions { option value=(region) { (region) } }
                    }
                }
                label { (t.report_type)
                    select name="report_type" {
                        option value="confirmed_test" { (t.confirmed_test) }
                        option value="clinical_diagnosis" { (t.clinical_diagnosis) }
                        option value="self_report" { (t.self_report) }
                    }
                }
                label { (t.valid_for) " (" (t.hours) ")"
                    input type="number" name="valid_hours" min="1" max="168" value="24" required;
                }
                label { (t.symptom_onset_date)
                    input type="date" id="symptom_onset_date" name="symptom_onset_date";
                }
                label { (t.test_date)
                    input type="date" id="test_date" name="test_date";
                }
                p.hint { (t.onset_hint) }
                button type="submit" { (t.issue_button) }
            }
            h2 { (t.bulk_heading) }
            p.hint { (t.bulk_hint) }
            form id="bulk" method="post" action="/codes/bulk" {
                input type="hidden" name="csrf" value=(signed.session.csrf_token);
                label { (t.region)
                    select id="bulk_region" name="region" {
                        @for region in regions { option value=(region) { (region) } }
                    }
                }
                label { (t.report_type)
                    select id="bulk_report_type" name="report_type" {
                        option value="confirmed_test" { (t.confirmed_test) }
                        option value="clinical_diagnosis" { (t.clinical_diagnosis) }
                        option value="self_report" { (t.self_report) }
                    }
                }
                label { (t.valid_for) " (" (t.hours) ")"
                    input id="bulk_valid_hours" type="number" name="valid_hours" min="1" max="168" value="24" required;
                }
                label { (t.bulk_count)
                    input id="bulk_count" type="number" name="count" min="1" max="1000" value="100" required;
                }
                button id="bulk_submit" type="submit" { (t.bulk_button) }
            }
        } @else {
            p.notice { (t.nothing_to_do) }
        }
    };
    layout(request, Some(signed), body)
}

/// The page that shows a freshly issued code, once: large, with its expiry and a QR code.
pub fn code(
    request: &Request,
    signed: &SignedIn,
    code: &str,
    expires: &str,
    qr: &Markup,
) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.code_heading) }
        p.code { (code) }
        p { (t.expires) ": " time { (expires) } }
        div.qr { (qr) }
        p.notice { (t.code_hint) }
        p { a href="/" { (t.back) } }
    };
    layout(request, Some(signed), body)
}

/// The codes list: one table row per code, never the code itself; `total` codes in all,
/// `page` of them (from 1), `more` when a later page exists.
pub fn codes_list(
    request: &Request,
    signed: &SignedIn,
    rows: &[super::listing::CodeRow],
    total: usize,
    page: usize,
    more: bool,
) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.codes_heading) }
        p id="codes-total" { (t.codes_total) ": " (total) }
        div.scroll {
            table id="codes" {
                thead { tr {
                    th { (t.issued_at) } th { (t.issued_by) } th { (t.report_type) }
                    th { (t.expires) } th { (t.status) }
                } }
                tbody {
                    @for row in rows {
                        tr class=(row.status.0) {
                            td { (row.issued) }
                            td { @if row.issued_by.is_empty() { (t.by_token) } @else { (row.issued_by) } }
                            td { (row.report_type) }
                            td { (row.expires) }
                            td.status data-status=(row.status.0) { (row.status.1) }
                        }
                    }
                }
            }
        }
        (pager(request, "/codes", page, more))
    };
    layout(request, Some(signed), body)
}

/// The audit log: one table row per record, newest first; `total` records in all.
pub fn audit_list(
    request: &Request,
    signed: &SignedIn,
    records: &[crate::storage::console::AuditRecord],
    total: usize,
    page: usize,
    more: bool,
) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.audit_heading) }
        p id="audit-total" { (t.codes_total) ": " (total) " · " a id="audit-csv" href="/audit.csv" { (t.download_csv) } }
        div.scroll {
            table id="audit" {
                thead { tr {
                    th { (t.time) } th { (t.user) } th { (t.action) } th { (t.object) }
                    th { (t.result) } th { (t.network) }
                } }
                tbody {
                    @for record in records {
                        tr {
                            td { (utc_time(record.at)) }
                            td { (record.email) }
                            td.action { (record.action) }
                            td { (record.object) }
                            td { (record.result) }
                            td { (record.network) }
                        }
                    }
                }
            }
        }
        (pager(request, "/audit", page, more))
    };
    layout(request, Some(signed), body)
}

/// The role boxes of a users form, checked as `roles` has them.
fn role_boxes(request: &Request, roles: u32) -> Markup {
    use crate::storage::console::{ROLE_ADMIN, ROLE_ISSUER, ROLE_VIEWER};
    let t = request.lang.text();
    html! {
        @for (name, bit, label) in [("role_admin", ROLE_ADMIN, t.role_admin), ("role_issuer", ROLE_ISSUER, t.role_issuer), ("role_viewer", ROLE_VIEWER, t.role_viewer)] {
            label.check {
                input type="checkbox" name=(name) value="1" checked[roles & bit != 0];
                (label)
            }
        }
    }
}

/// The users page of an admin: the authority's accounts, each with its forms, and the
/// invitation form; `link` is a fresh enrolment link to hand over, once.
pub fn users(
    request: &Request,
    signed: &SignedIn,
    users: &[crate::storage::console::ConsoleUser],
    now: u64,
    error: Option<&str>,
    link: Option<&str>,
) -> Markup {
    let t = request.lang.text();
    let csrf = &signed.session.csrf_token;
    let body = html! {
        h1 { (t.users_heading) }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        @if let Some(link) = link {
            p.notice { (t.enrolment_link_hint) }
            p { code id="enrol-link" .secret { (link) } }
        }
        div.scroll {
            table id="users" {
                thead { tr { th { (t.email) } th { (t.roles) } th { (t.status) } th { (t.changes) } } }
                tbody {
                    @for user in users {
                        tr id={ "user-" (user.email) } {
                            td { (user.email) }
                            td.roles { (crate::storage::console::role_names(user.roles)) }
                            td.state {
                                @if user.disabled { (t.user_disabled) }
                                @else if user.enrolled_at == 0 { (t.user_invited) }
                                @else if user.locked_until > now { (t.user_locked) }
                                @else { (t.user_active) }
                            }
                            td {
                                form.inline method="post" action="/users" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="email" value=(user.email);
                                    input type="hidden" name="action" value="roles";
                                    (role_boxes(request, user.roles))
                                    button type="submit" name="submit" value="roles" { (t.change_roles) }
                                }
                                form.inline method="post" action="/users" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="email" value=(user.email);
                                    @if user.disabled {
                                        input type="hidden" name="action" value="enable";
                                        button type="submit" { (t.enable_user) }
                                    } @else {
                                        input type="hidden" name="action" value="disable";
                                        button type="submit" { (t.disable_user) }
                                    }
                                }
                                form.inline method="post" action="/users" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="email" value=(user.email);
                                    input type="hidden" name="action" value="reset";
                                    button type="submit" { (t.reset_second_factor) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t.invite_heading) }
        form id="invite" method="post" action="/users" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value="invite";
            label { (t.email) input id="invite_email" type="email" name="email" required; }
            (role_boxes(request, crate::storage::console::ROLE_ISSUER))
            button id="invite_submit" type="submit" { (t.invite_button) }
        }
    };
    layout(request, Some(signed), body)
}

/// The statistics page: the chart, then the table, one row per UTC day, newest first.
pub fn stats(
    request: &Request,
    signed: &SignedIn,
    days: &std::collections::BTreeMap<u64, super::stats::DayCounts>,
    min: u64,
    chart: &str,
) -> Markup {
    let t = request.lang.text();
    let body = html! {
        h1 { (t.stats_heading) }
        p.hint { (t.stats_hint) " " (min) ". " a id="stats-csv" href="/stats.csv" { (t.download_csv) } }
        div.chart { (PreEscaped(chart)) }
        p.hint { span.legend-issued { "■ " } (t.codes_issued) " · " span.legend-used { "■ " } (t.codes_used) }
        div.scroll {
            table id="stats" {
                thead { tr {
                    th { (t.day) } th { (t.codes_issued) } th { (t.codes_used) } th { (t.codes_expired) }
                    th { (t.uploads_token) } th { (t.uploads_code) } th { (t.keys) } th { (t.keys_published) }
                    th { (t.median_to_upload) }
                } }
                tbody {
                    @for (day, counts) in days.iter().rev() {
                        tr id={ "day-" (super::stats::day_text(*day)) } {
                            td { (super::stats::day_text(*day)) }
                            @for count in counts.columns() { td.count { (super::stats::shown(count, min)) } }
                            td.count.median { (super::stats::shown_median(counts, min)) }
                        }
                    }
                }
            }
        }
    };
    layout(request, Some(signed), body)
}

/// Links to the pages before and after `page` of the list at `path`.
pub fn pager(request: &Request, path: &str, page: usize, more: bool) -> Markup {
    let t = request.lang.text();
    html! {
        nav.pager {
            @if page > 1 { a id="page-newer" href={ (path) "?page=" (page - 1) } { (t.newer) } }
            span { (t.page) " " (page) }
            @if more { a id="page-older" href={ (path) "?page=" (page + 1) } { (t.older) } }
        }
    }
}

/// Returns `text` as a QR code in inline SVG (medium error correction), or nothing when it
/// is too long for one.
pub fn qr_svg(text: &str) -> Markup {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
    else {
        return html! {};
    };
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Inline in HTML: the XML declaration before the element is left out.
    let element = svg.find("<svg").map_or("", |start| &svg[start..]);
    PreEscaped(element.to_owned())
}

/// Returns Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_time(unix_seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    // `2026-01-10T12:00:00Z`
    format!("{} {} UTC", &text[..10], &text[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc_to_the_minute() {
        // 1,768,046,400 is 2026-01-10 12:00:00 UTC (`date -u -d @1768046400`).
        assert_eq!(utc_time(1_768_046_400), "2026-01-10 12:00 UTC");
    }

    #[test]
    fn a_qr_code_is_an_inline_svg_element() {
        let svg = qr_svg("ABCDE-FGHJK").into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
    }
}

//! Signing in and out, and enrolment (DESIGN.md section 13).
//!
//! A login needs the password and a current TOTP code. Whatever fails (an unknown address, an
//! account not yet enrolled or disabled, a wrong password, a wrong or reused code, a locked
//! account) the page says the same thing, and an unknown account's password is checked against
//! a hash all the same, so the answer's time tells nothing either. Five failures in a row lock
//! the account for 15 minutes, each further lock lasting twice the one before, until a login
//! succeeds; every client network has a budget of attempts per hour. The audit log records each
//! login, failed login (with what failed) and lock.
//!
//! Enrolment: the link from `user add` shows a fresh TOTP key (as text and a QR code) and asks
//! for a password twice and the code the app then shows; the account is enrolled and the link
//! deleted in one write.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};

use super::auth::{
    PasswordProblem, accept_totp, check_new_password, hash_password, new_totp_secret,
    totp_secret_base32, totp_uri, unknown_account_hash, verify_password,
};
use super::hashing::{self, CheckRefused};
use super::session::{Form, Request, cleared_cookie, session_cookie, signed_in, start_session};
use super::{ConsoleState, blocking, network_text, pages};
use crate::storage::StorageError;
use crate::storage::console::{AuditRecord, ConsoleUser, Enrolment};

/// Failed logins in a row that lock an account.
pub const FAILURES_BEFORE_LOCK: u32 = 5;
/// Length of the first lock; each further one in a row lasts twice as long.
pub const FIRST_LOCK_SECONDS: u64 = 15 * 60;
/// The doubling stops here (15 min × 2^10, about 10 days).
const MOST_LOCK_DOUBLINGS: u32 = 10;
/// The issuer name authenticator apps show beside the account.
const TOTP_ISSUER: &str = "Exposure console";

/// `GET /login`.
pub async fn login_page(request: Request) -> Response {
    pages::respond(&request, StatusCode::OK, pages::login(&request, None, None))
}

/// How a login attempt ended.
enum LoginOutcome {
    /// Signed in: the new session's token.
    SignedIn(String),
    /// Refused, whatever the reason (the audit log has it).
    Refused,
}

/// `POST /login`.
pub async fn login(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let t = request.lang.text();
    if !request.same_origin() {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.form_refused,
        );
    }
    let network = request
        .peer
        .as_ref()
        .and_then(|peer| peer.remote_ip)
        .map(crate::transport::connections::ClientNetwork::of)
        .unwrap_or(crate::transport::connections::ClientNetwork::V4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ));
    if !state.login_limits.allow(network) {
        state.refusals.wait().await;
        let page = pages::login(&request, None, Some(t.too_many_attempts));
        return pages::respond(&request, StatusCode::TOO_MANY_REQUESTS, page);
    }
    let form = Form::parse(&body);
    let attempt = Attempt {
        email: form.get("email").trim().to_lowercase(),
        password: form.get("password").to_owned(),
        totp: form.get("totp").to_owned(),
        now: state.clock.now(),
        network: network_text(request.peer.as_ref()),
    };
    let worker = state.clone();
    let outcome = state
        .password_checks
        .run(move || attempt.run(&worker))
        .await;
    // Every refusal (a failed sign-in, the checks busy) is answered after --refusal-delay, as
    // the gRPC listener answers refusals of the caller's making: a client that posts the form
    // again the moment it is refused gets one answer a second per connection, not thousands.
    if !matches!(
        outcome,
        Ok(LoginOutcome::SignedIn(_)) | Err(CheckRefused::Failed(_))
    ) {
        state.refusals.wait().await;
    }
    match outcome {
        Ok(LoginOutcome::SignedIn(token)) => {
            let mut response = Redirect::to("/").into_response();
            if let Ok(cookie) = HeaderValue::from_str(&session_cookie(state.https, &token)) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Ok(LoginOutcome::Refused) => {
            let page = pages::login(&request, None, Some(t.login_failed));
            pages::respond(&request, StatusCode::UNAUTHORIZED, page)
        }
        Err(CheckRefused::Busy) => busy(pages::respond(
            &request,
            StatusCode::SERVICE_UNAVAILABLE,
            pages::login(&request, None, Some(t.busy)),
        )),
        Err(CheckRefused::Failed(error)) => internal(&request, &error),
    }
}

/// Marks the answer to an attempt the password checks had no room for (nothing was checked,
/// counted or stored): 503 with `Retry-After`.
fn busy(mut response: Response) -> Response {
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(hashing::RETRY_AFTER_SECONDS),
    );
    response
}

/// One login attempt's input.
struct Attempt {
    email: String,
    password: String,
    totp: String,
    now: u64,
    network: String,
}

impl Attempt {
    /// Checks the attempt and records it (blocking: Argon2id and the store).
    fn run(self, state: &ConsoleState) -> Result<LoginOutcome, StorageError> {
        let store = &state.store;
        let account = store
            .console_user(&self.email)?
            .filter(|user| user.enrolled_at > 0 && !user.disabled);
        let hash = account
            .as_ref()
            .map_or(unknown_account_hash(), |user| user.password_hash.as_str());
        let password_ok = verify_password(hash, &self.password);
        let Some(account) = account else {
            state.audit(self.record("", "", "login_failed", "no such account"));
            return Ok(LoginOutcome::Refused);
        };
        let _accounts = state
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read again under the lock: another attempt may have changed the counters.
        let Some(mut user) = store.console_user(&account.email)? else {
            return Ok(LoginOutcome::Refused);
        };
        let authority = user.authority_id.clone();
        if user.locked_until > self.now {
            state.audit(self.record(&user.email, &authority, "login_failed", "account locked"));
            return Ok(LoginOutcome::Refused);
        }
        let step = accept_totp(&user.totp_secret, &self.totp, self.now, user.last_totp_step);
        if let (true, Some(step)) = (password_ok, step) {
            user.failures = 0;
            user.locks = 0;
            user.last_totp_step = step;
            store.put_console_user(&user)?;
            let token = start_session(store, &user.email, self.now)?;
            state.audit(self.record(&user.email, &authority, "login", "ok"));
            return Ok(LoginOutcome::SignedIn(token));
        }
        let reason = match (password_ok, step.is_some()) {
            (false, false) => "wrong password and code",
            (false, true) => "wrong password",
            _ => "wrong or reused code",
        };
        state.audit(self.record(&user.email, &authority, "login_failed", reason));
        user.failures += 1;
        if user.failures >= FAILURES_BEFORE_LOCK {
            let doublings = user.locks.min(MOST_LOCK_DOUBLINGS);
            let seconds = FIRST_LOCK_SECONDS << doublings;
            user.locks += 1;
            user.failures = 0;
            user.locked_until = self.now + seconds;
            let mut record = self.record(&user.email, &authority, "lock", "ok");
            record.object = format!("locked for {} min", seconds / 60);
            state.audit(record);
        }
        store.put_console_user(&user)?;
        Ok(LoginOutcome::Refused)
    }

    fn record(&self, email: &str, authority: &str, action: &str, result: &str) -> AuditRecord {
        AuditRecord {
            at: self.now,
            email: email.to_owned(),
            authority_id: authority.to_owned(),
            action: action.to_owned(),
            object: "session".to_owned(),
            result: result.to_owned(),
            network: self.network.clone(),
        }
    }
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
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
    if !signed.csrf_ok(&Form::parse(&body)) {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.form_refused,
        );
    }
    let store = state.store.clone();
    let token = signed.token.clone();
    if let Err(error) = blocking(move || store.delete_session(&token)).await {
        return internal(&request, &error);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cleared_cookie(state.https)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// An enrolment link that still works, with its account.
struct OpenEnrolment {
    enrolment: Enrolment,
    user: ConsoleUser,
}

/// Returns the enrolment of `token` when it has not expired and its account is not enrolled;
/// gives it a TOTP secret on first sight.
fn open_enrolment(
    state: &ConsoleState,
    token: &str,
    now: u64,
) -> Result<Option<OpenEnrolment>, StorageError> {
    if token.is_empty() {
        return Ok(None);
    }
    let store = &state.store;
    let Some(mut enrolment) = store.enrolment(token)?.filter(|e| e.expires_at >= now) else {
        return Ok(None);
    };
    let Some(user) = store
        .console_user(&enrolment.email)?
        .filter(|user| user.enrolled_at == 0)
    else {
        return Ok(None);
    };
    if enrolment.totp_secret.is_empty() {
        enrolment.totp_secret = new_totp_secret();
        store.put_enrolment(token, &enrolment)?;
    }
    Ok(Some(OpenEnrolment { enrolment, user }))
}

/// Returns the `token` parameter of a query, empty when missing.
fn query_token(query: Option<&str>) -> String {
    query
        .and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default()
}

/// `GET /enrol?token=…`.
pub async fn enrol_page(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    uri: http::Uri,
) -> Response {
    let token = query_token(uri.query());
    let now = state.clock.now();
    let worker = state.clone();
    let lookup = token.clone();
    match blocking(move || open_enrolment(&worker, &lookup, now)).await {
        Ok(Some(open)) => enrol_form(&request, &token, &open, None, StatusCode::OK),
        Ok(None) => invalid_link(&request),
        Err(error) => internal(&request, &error),
    }
}

/// `POST /enrol`: sets the password and the second factor, once the code proves the app has
/// the key.
pub async fn enrol(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let t = request.lang.text();
    let form = Form::parse(&body);
    let token = form.get("token").to_owned();
    let now = state.clock.now();
    let worker = state.clone();
    let lookup = token.clone();
    let open = match blocking(move || open_enrolment(&worker, &lookup, now)).await {
        Ok(Some(open)) => open,
        Ok(None) => return invalid_link(&request),
        Err(error) => return internal(&request, &error),
    };
    let password = form.get("password").to_owned();
    let problem = match check_new_password(&password) {
        Err(PasswordProblem::TooShort) => Some(t.password_too_short),
        Err(PasswordProblem::Common) => Some(t.password_common),
        Ok(()) if password != form.get("password_again") => Some(t.password_mismatch),
        Ok(()) => None,
    };
    let step = accept_totp(&open.enrolment.totp_secret, form.get("totp"), now, 0);
    let problem = problem.or(step.is_none().then_some(t.totp_wrong));
    if let Some(problem) = problem {
        return enrol_form(
            &request,
            &token,
            &open,
            Some(problem),
            StatusCode::BAD_REQUEST,
        );
    }
    let network = network_text(request.peer.as_ref());
    let worker = state.clone();
    let result = state
        .password_checks
        .run(move || {
            let hash = hash_password(&password).map_err(|reason| StorageError::Corrupt {
                column_family: "console_users",
                reason,
            })?;
            let mut user = open.user;
            user.password_hash = hash;
            user.totp_secret = open.enrolment.totp_secret;
            user.enrolled_at = now;
            user.last_totp_step = step.unwrap_or(0);
            worker.store.complete_enrolment(&token, &user)?;
            worker.audit(AuditRecord {
                at: now,
                email: user.email.clone(),
                authority_id: user.authority_id.clone(),
                action: "enrol".into(),
                object: "password and second factor".into(),
                result: "ok".into(),
                network,
            });
            Ok(())
        })
        .await;
    match result {
        Ok(()) => pages::respond(
            &request,
            StatusCode::OK,
            pages::login(&request, Some(t.enrolled), None),
        ),
        // The link still works: nothing was stored.
        Err(CheckRefused::Busy) => busy({
            state.refusals.wait().await;
            pages::message(
                &request,
                StatusCode::SERVICE_UNAVAILABLE,
                t.busy_heading,
                t.busy,
            )
        }),
        Err(CheckRefused::Failed(error)) => internal(&request, &error),
    }
}

fn enrol_form(
    request: &Request,
    token: &str,
    open: &OpenEnrolment,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let secret = &open.enrolment.totp_secret;
    let text = totp_secret_base32(secret);
    // Groups of four, as authenticator apps show keys; the apps ignore the spaces.
    let grouped = text
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let qr = pages::qr_svg(&totp_uri(secret, TOTP_ISSUER, &open.user.email));
    let page = pages::enrol(request, token, &open.user.email, &grouped, &qr, error);
    pages::respond(request, status, page)
}

fn invalid_link(request: &Request) -> Response {
    let t = request.lang.text();
    pages::message(
        request,
        StatusCode::NOT_FOUND,
        t.enrol_heading,
        t.enrol_link_invalid,
    )
}

/// Answers a failure of the server: logged, and a generic page.
pub fn internal(request: &Request, error: &str) -> Response {
    tracing::error!(%error, "console request failed");
    let t = request.lang.text();
    pages::message(
        request,
        StatusCode::INTERNAL_SERVER_ERROR,
        t.internal_error,
        t.internal_error,
    )
}

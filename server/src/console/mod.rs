//! The staff console (DESIGN.md section 13): a health authority's staff sign in with a
//! password and a TOTP code and issue upload codes in a browser, on the listener
//! `--console-addr`. Pages are rendered on the server ([`pages`], strings from [`i18n`]) and
//! need no JavaScript; one stylesheet. The listener is served by the same loop as the HTTP
//! mirror ([`crate::transport::http1`]): connection caps, handshake timeout, TLS.
//!
//! - [`auth`]: passwords, TOTP, the per-network login budget;
//! - [`hashing`]: the gate that runs Argon2id `--console-password-checks` at a time;
//! - [`session`]: cookies, sessions and their CSRF tokens, the signed-in account of a request;
//! - [`login`]: sign-in (lockout, one message for every failure), sign-out and enrolment;
//! - [`codes`]: the home page and issuing a code through [`CodeIssuer`], the path the gRPC
//!   `IssueUploadCodes` takes;
//! - [`listing`]: the codes list and the audit log, paginated; the audit log as CSV;
//! - [`users`]: the admins' users page (invite, roles, disable, second-factor reset);
//! - [`stats`]: the statistics per day, as a table, an SVG chart and CSV.
//!
//! Everything it stores is in the store's `console_*` column families
//! ([`crate::storage::console`]); every login, failed login, lock and code issue is written to
//! the audit log there.

pub mod auth;
pub mod codes;
pub mod hashing;
pub mod i18n;
pub mod listing;
pub mod login;
pub mod pages;
pub mod session;
pub mod stats;
pub mod users;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::ingest::issue::CodeIssuer;
use crate::storage::Store;
use crate::storage::console::AuditRecord;
use crate::tls::PeerInfo;
use crate::transport::connections::{ClientNetwork, ListenerLimits};
use crate::transport::http1::ConnectionLifetime;
use crate::transport::refusal::RefusalDelay;

/// Largest form the console reads; its forms are a few hundred bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// The stylesheet, the only one.
const STYLESHEET: &str = include_str!("style.css");

/// What the console's handlers share.
pub struct ConsoleState {
    /// Accounts, sessions, enrolments, the audit log and the authorities.
    pub store: Store,
    /// The server's clock: sessions, locks, TOTP steps and code expiry all read it.
    pub clock: Clock,
    /// The one code-issuing path, shared with the gRPC `IssueUploadCodes`.
    pub issuer: CodeIssuer,
    /// Login attempts per client network.
    pub login_limits: auth::LoginLimits,
    /// `--console-password-checks` Argon2id checks at a time.
    pub password_checks: hashing::PasswordChecks,
    /// Paces the answers to refused sign-ins (`--refusal-delay`).
    pub refusals: RefusalDelay,
    /// Whether the browser reaches the console over HTTPS (TLS here, or `--insecure-plaintext`
    /// behind a TLS-terminating proxy): the session cookie is then `__Host-` and `Secure`.
    pub https: bool,
    /// `--console-code-link`: the QR code's link template, with `{code}`.
    pub code_link: Option<String>,
    /// `--console-codes-per-user-per-day`; 0 for no quota.
    pub codes_per_user_per_day: u32,
    /// `--console-codes-per-authority-per-day`; 0 for no quota.
    pub codes_per_authority_per_day: u32,
    /// `--stats-min-count`: smaller counts are shown as "< N".
    pub stats_min_count: u64,
    /// Serializes the read-change-write of an account's failure counters, so two logins at
    /// once cannot lose a failure.
    pub accounts: Mutex<()>,
}

impl ConsoleState {
    /// Returns the console's state for a server with `config`.
    pub fn new(store: Store, clock: Clock, issuer: CodeIssuer, config: &ServerConfig) -> Self {
        Self {
            store,
            clock,
            issuer,
            login_limits: auth::LoginLimits::new(
                NonZeroU32::new(config.console_logins_per_network_per_hour)
                    .unwrap_or(NonZeroU32::MIN),
            ),
            password_checks: hashing::PasswordChecks::new(usize::from(
                config.console_password_checks,
            )),
            // Each waiting refusal is one connection's request: at most the listener's cap.
            refusals: RefusalDelay::new(config.refusal_delay, config.max_console_connections),
            https: config.tls_cert.is_some() || config.insecure_plaintext,
            code_link: config.console_code_link.clone(),
            codes_per_user_per_day: config.console_codes_per_user_per_day,
            codes_per_authority_per_day: config.console_codes_per_authority_per_day,
            stats_min_count: config.stats_min_count,
            accounts: Mutex::new(()),
        }
    }

    /// Appends an audit record; a failure is logged (the action it records went through).
    pub fn audit(&self, record: AuditRecord) {
        if let Err(error) = self.store.append_audit(&record) {
            tracing::error!(%error, action = %record.action, "audit record not written");
        }
    }
}

/// Returns the console's routes.
pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/", get(codes::home))
        .route("/codes", get(listing::codes).post(codes::issue))
        .route("/codes/bulk", post(codes::issue_bulk))
        .route("/users", get(users::users).post(users::change))
        .route("/stats", get(stats::stats))
        .route("/stats.csv", get(stats::stats_csv))
        .route("/audit", get(listing::audit))
        .route("/audit.csv", get(listing::audit_csv))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/enrol", get(login::enrol_page).post(login::enrol))
        .route("/style.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ConsoleState>,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    lifetime: ConnectionLifetime,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::transport::http1::serve(listener, router(state), tls, limits, lifetime, shutdown).await
}

/// Adds the headers every answer carries: a content security policy that allows nothing but
/// the console's own stylesheet and forms (no script, no frame), and no caching of pages (a
/// page may show a code, an enrolment key, or an account).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Enrolment links carry their token in the query: never sent on to another site.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn not_found(request: session::Request) -> Response {
    let text = request.lang.text();
    pages::message(
        &request,
        StatusCode::NOT_FOUND,
        text.not_found,
        text.not_found,
    )
}

/// Returns the client network of a request, as the audit log records it: an IPv4 address, or
/// an IPv6 /64 prefix; empty when unknown.
pub fn network_text(peer: Option<&PeerInfo>) -> String {
    match peer.and_then(|peer| peer.remote_ip).map(ClientNetwork::of) {
        Some(ClientNetwork::V4(address)) => address.to_string(),
        Some(ClientNetwork::V6(prefix)) => {
            format!("{}/64", std::net::Ipv6Addr::from(u128::from(prefix) << 64))
        }
        None => String::new(),
    }
}

/// Returns the result of blocking store work, run off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_records_networks_not_addresses_of_ipv6_clients() {
        let peer = |ip: &str| PeerInfo {
            remote_ip: Some(ip.parse().expect("address")),
            ..PeerInfo::default()
        };
        assert_eq!(network_text(Some(&peer("192.0.2.7"))), "192.0.2.7");
        assert_eq!(network_text(Some(&peer("::ffff:192.0.2.7"))), "192.0.2.7");
        assert_eq!(
            network_text(Some(&peer("2001:db8:1:2:3:4:5:6"))),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network_text(None), "");
    }
}

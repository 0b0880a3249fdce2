//! Sessions of the console (DESIGN.md section 13): a session is 256 random bits, kept by the
//! browser in a cookie and by the store only as their SHA-256; it ends 30 minutes after its
//! last request and 12 hours after its login, whichever comes first, and at logout. Each
//! session has its own CSRF token, which every POST of the session must carry.
//!
//! The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/` and has no `Domain`. When the browser
//! reaches the console over HTTPS (TLS on the listener, or `--insecure-plaintext` behind a
//! TLS-terminating proxy) it is named `__Host-exposure-session` and is `Secure`, so no other
//! host or plaintext page can set or read it. On plaintext loopback (the default
//! `127.0.0.1:8081`, for an operator on the machine itself) browsers refuse a `__Host-` cookie
//! without `Secure`, and a `Secure` cookie over `http://` (all but Chromium's `localhost`), so
//! the cookie is then named `exposure-session`, without `Secure`; loopback traffic never
//! leaves the machine.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, header};

use super::ConsoleState;
use super::auth::same_bytes;
use super::i18n::Lang;
use crate::storage::console::{ConsoleUser, Session, new_token};
use crate::tls::PeerInfo;

/// A session ends this long after its last request.
pub const IDLE_TIMEOUT: u64 = 30 * 60;
/// A session ends this long after its login, whatever it does.
pub const ABSOLUTE_TIMEOUT: u64 = 12 * 3600;
/// A session's last request is written down at most this often.
const TOUCH_EVERY: u64 = 60;
/// The language cookie, set by the language switch.
const LANG_COOKIE: &str = "exposure-lang";

/// Returns the session cookie's name: `__Host-` prefixed when the browser uses HTTPS.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-exposure-session"
    } else {
        "exposure-session"
    }
}

/// Returns the `Set-Cookie` value that stores a session token in the browser.
pub fn session_cookie(https: bool, token: &str) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(https)
    )
}

/// Returns the `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}",
        cookie_name(https)
    )
}

/// What every handler knows of its request before any session is looked up.
pub struct Request {
    /// The language of the answer.
    pub lang: Lang,
    /// Whether the request switched the language (`?lang=`): the answer remembers it.
    pub lang_switched: bool,
    /// The path, for the language switch's link.
    pub path: String,
    /// The connection's client (never logged).
    pub peer: Option<PeerInfo>,
    /// The request's headers.
    pub headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Request {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let switch = parts.uri.query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "lang")
                .map(|(_, value)| value.into_owned())
        });
        let switch = switch.filter(|value| Lang::of_tag(value).is_some());
        let lang = Lang::choose(
            switch.as_deref(),
            cookie(&parts.headers, LANG_COOKIE),
            &parts.headers,
        );
        Ok(Self {
            lang,
            lang_switched: switch.is_some(),
            path: parts.uri.path().to_owned(),
            peer: parts.extensions.get::<PeerInfo>().cloned(),
            headers: parts.headers.clone(),
        })
    }
}

impl Request {
    /// Returns the `Set-Cookie` value that remembers a switched language, when it was switched.
    pub fn lang_cookie(&self) -> Option<String> {
        self.lang_switched.then(|| {
            format!(
                "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
                self.lang.code()
            )
        })
    }

    /// Returns the session token the browser sent, if any.
    pub fn session_token(&self, https: bool) -> Option<&str> {
        cookie(&self.headers, cookie_name(https)).filter(|token| !token.is_empty())
    }

    /// Returns false for a form the browser says came from another site (`Sec-Fetch-Site`,
    /// or an `Origin` whose host is not this one). The login form has no session and so no
    /// CSRF token; this keeps other sites from posting it.
    pub fn same_origin(&self) -> bool {
        let text = |name| self.headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(site) = text("sec-fetch-site") {
            // The browser's own word on where the form came from. It is the only one for the
            // console's own forms: their pages are `Referrer-Policy: no-referrer`, under which
            // browsers send `Origin: null` with a form's POST (Fetch, "append a request
            // `Origin` header"), so there is no origin to compare.
            return site == "same-origin";
        }
        match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
            (Some(origin), Some(host)) => origin
                .split_once("://")
                .is_some_and(|(_, origin_host)| origin_host == host),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// Returns the value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie_name, _)| *cookie_name == name)
        .map(|(_, value)| value)
}

/// A request's signed-in account.
pub struct SignedIn {
    /// The session's token (the cookie's value).
    pub token: String,
    /// The session.
    pub session: Session,
    /// Its account, as stored now.
    pub user: ConsoleUser,
}

impl SignedIn {
    /// Returns whether a form carries the session's CSRF token.
    pub fn csrf_ok(&self, form: &Form) -> bool {
        let sent = form.get("csrf");
        !sent.is_empty() && same_bytes(sent.as_bytes(), self.session.csrf_token.as_bytes())
    }
}

/// Returns the signed-in account of a request: its session exists, has not passed either
/// timeout, and its account is enrolled and enabled. An expired session is deleted; a live
/// one's last request is moved to now (written at most once a minute).
pub async fn signed_in(
    state: &std::sync::Arc<ConsoleState>,
    request: &Request,
) -> Result<Option<SignedIn>, String> {
    let Some(token) = request.session_token(state.https).map(str::to_owned) else {
        return Ok(None);
    };
    let store = state.store.clone();
    let now = state.clock.now();
    super::blocking(move || {
        let Some(mut session) = store.session(&token)? else {
            return Ok(None);
        };
        let idle = now.saturating_sub(session.last_seen) > IDLE_TIMEOUT;
        let too_old = now.saturating_sub(session.created_at) > ABSOLUTE_TIMEOUT;
        if idle || too_old {
            store.delete_session(&token)?;
            return Ok(None);
        }
        let user = store
            .console_user(&session.email)?
            .filter(|user| user.enrolled_at > 0 && !user.disabled);
        let Some(user) = user else {
            store.delete_session(&token)?;
            return Ok(None);
        };
        if now.saturating_sub(session.last_seen) >= TOUCH_EVERY {
            session.last_seen = now;
            store.put_session(&token, &session)?;
        }
        Ok(Some(SignedIn {
            token,
            session,
            user,
        }))
    })
    .await
}

/// Starts a session for `email` at `now`; returns its token (stored only hashed).
pub fn start_session(
    store: &crate::storage::Store,
    email: &str,
    now: u64,
) -> Result<String, crate::storage::StorageError> {
    let token = new_token();
    let session = Session {
        email: email.to_owned(),
        created_at: now,
        last_seen: now,
        csrf_token: new_token(),
    };
    store.put_session(&token, &session)?;
    Ok(token)
}

/// A submitted form (`application/x-www-form-urlencoded`).
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a form body.
    pub fn parse(body: &Bytes) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// Returns the value of field `name`, empty when missing.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_prefixed_and_secure_only_over_https() {
        assert_eq!(
            session_cookie(true, "ab"),
            "__Host-exposure-session=ab; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            session_cookie(false, "ab"),
            "exposure-session=ab; Path=/; HttpOnly; SameSite=Strict"
        );
    }

    fn request_with(headers: &[(&'static str, &'static str)]) -> Request {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().expect("header"));
        }
        Request {
            lang: Lang::En,
            lang_switched: false,
            path: "/login".into(),
            peer: None,
            headers: map,
        }
    }

    #[test]
    fn forms_from_other_sites_are_told_apart() {
        let host = ("host", "console.example.vn");
        assert!(
            request_with(&[host]).same_origin(),
            "no Origin: a non-browser client"
        );
        assert!(request_with(&[host, ("origin", "https://console.example.vn")]).same_origin());
        assert!(!request_with(&[host, ("origin", "https://evil.example")]).same_origin());
        assert!(!request_with(&[("origin", "https://console.example.vn")]).same_origin());
        assert!(
            !request_with(&[host, ("sec-fetch-site", "cross-site")]).same_origin(),
            "Sec-Fetch-Site wins even without Origin"
        );
        assert!(request_with(&[host, ("sec-fetch-site", "same-origin")]).same_origin());
        // What chromium sends with the sign-in form of a `Referrer-Policy: no-referrer` page
        // (seen in tests/tests/console_browser.rs).
        assert!(
            request_with(&[host, ("sec-fetch-site", "same-origin"), ("origin", "null")])
                .same_origin()
        );
        assert!(!request_with(&[host, ("origin", "null")]).same_origin());
        assert!(!request_with(&[host, ("sec-fetch-site", "none")]).same_origin());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "xexposure-session=no; exposure-lang=vi"
                .parse()
                .expect("cookie"),
        );
        headers.append(
            header::COOKIE,
            "exposure-session=yes".parse().expect("cookie"),
        );
        assert_eq!(cookie(&headers, "exposure-session"), Some("yes"));
        assert_eq!(cookie(&headers, "exposure-lang"), Some("vi"));
        assert_eq!(cookie(&headers, "__Host-exposure-session"), None);
    }
}

//! What the console tests need besides the server: a cookie-keeping HTTP/1.1 client (hyper's,
//! a second implementation of the protocol beside the server's), readers of the values a page
//! shows, and the test's own RFC 6238 TOTP (HMAC-SHA1 over the time step, RFC 4226's dynamic
//! truncation) with its own RFC 4648 base32 decoder, so the server's TOTP code is never what
//! checks itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use crate::http_client::Answer;

/// A browser as far as the console cares: it keeps the cookies the server sets and sends
/// them back, posts forms, and never follows redirects (tests look at them).
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    cookies: BTreeMap<String, String>,
    /// Sent as `Accept-Language` when set.
    pub accept_language: Option<String>,
}

impl Browser {
    /// A browser for the console at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self::with_connector(base, HttpConnector::new())
    }

    /// A browser whose connections leave from `local` (another loopback address: another
    /// client network).
    pub fn from_address(base: &str, local: IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self::with_connector(base, connector)
    }

    fn with_connector(base: &str, connector: HttpConnector) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
            accept_language: None,
        }
    }

    /// Returns the value of a cookie the browser holds.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sets a cookie by hand (a stolen or replayed one).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// GETs `path` (with its query).
    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// POSTs `fields` as a form to `path`.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<String>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let cookies = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", cookies);
        }
        if let Some(language) = &self.accept_language {
            request = request.header("accept-language", language);
        }
        let body = match body {
            Some(form) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .client
            .request(request.body(body).expect("request"))
            .await
            .expect("console request");
        let (parts, body) = response.into_parts();
        for value in parts.headers.get_all("set-cookie") {
            let text = value.to_str().expect("ascii set-cookie");
            let first = text.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').expect("cookie name=value");
            let removed = text
                .split(';')
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
            if removed {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let body = body.collect().await.expect("console body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Returns the `value` of the form field `name` on a page; panics when there is none.
pub fn field_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} on the page: {page}"));
    let rest = &page[at..];
    let start = rest.find("value=\"").expect("field has a value") + "value=\"".len();
    let end = rest[start..].find('"').expect("value ends");
    rest[start..start + end].to_owned()
}

/// Returns the text of the first element with `class` on a page (`<p class="code">…</p>`),
/// or `None`.
pub fn text_of_class(page: &str, class: &str) -> Option<String> {
    let marker = format!("class=\"{class}\"");
    let at = page.find(&marker)?;
    let start = at + page[at..].find('>')? + 1;
    let end = start + page[start..].find('<')?;
    Some(page[start..end].to_owned())
}

/// Decodes RFC 4648 base32 (upper case, spaces and padding ignored).
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut held = 0;
    let mut out = Vec::new();
    for byte in text
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace() && *byte != b'=')
    {
        let value = ALPHABET
            .iter()
            .position(|letter| *letter == byte.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("{:?} is not base32", char::from(byte)));
        bits = (bits << 5) | value as u64;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

/// Returns the RFC 6238 TOTP of `secret` at Unix time `time` (30-second steps, HMAC-SHA1),
/// `digits` long, zero-padded.
pub fn totp(secret: &[u8], time: u64, digits: u32) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("any key length");
    mac.update(&(time / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // RFC 4226 section 5.3: dynamic truncation.
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    let code = binary % 10_u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

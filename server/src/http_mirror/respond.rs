//! HTTP answers of one object: strong ETags and `If-None-Match` (304), single byte ranges
//! (206, or 416 when unsatisfiable) and the plain-text errors of the listener.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, IF_RANGE, RANGE,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest as _, Sha256};

/// One object ready to send.
pub struct Object {
    /// The whole body.
    pub body: Bytes,
    /// The strong ETag, quotes included.
    pub etag: String,
    /// `Cache-Control` of the object's path.
    pub cache_control: &'static str,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// True when the object answers `Range` (batch files).
    pub ranges: bool,
}

impl Object {
    /// An object whose ETag is a hash of its body.
    pub fn hashed(body: Vec<u8>, cache_control: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(&body);
        Self {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body: Bytes::from(body),
            cache_control,
            content_type,
            ranges: false,
        }
    }
}

/// Returns the answer to a GET of `object` given the request's headers.
pub fn answer(object: Object, request: &HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(object.cache_control),
    );
    if let Ok(etag) = HeaderValue::from_str(&object.etag) {
        headers.insert(ETAG, etag);
    }
    if object.ranges {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if none_match(request, &object.etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(object.content_type));
    let total = object.body.len() as u64;
    let range = match request.get(RANGE) {
        Some(value) if object.ranges && if_range_holds(request, &object.etag) => {
            parse_range(value.to_str().unwrap_or_default(), total)
        }
        _ => RangeRequest::Whole,
    };
    match range {
        RangeRequest::Whole => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
            *response.body_mut() = Body::from(object.body);
        }
        RangeRequest::Part { first, last } => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
                headers.insert(CONTENT_RANGE, value);
            }
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            // Offsets are below the body's length, which is a usize.
            *response.body_mut() = Body::from(object.body.slice(first as usize..=last as usize));
        }
        RangeRequest::Unsatisfiable => {
            return range_not_satisfiable(total, object.cache_control);
        }
    }
    response
}

fn range_not_satisfiable(total: u64, cache_control: &'static str) -> Response {
    let mut response = error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        &format!("range: outside the {total} bytes of the file"),
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
        headers.insert(CONTENT_RANGE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response
}

/// Returns a plain-text error: one line, `no-store` so no cache keeps it.
pub fn error(status: StatusCode, reason: &str) -> Response {
    let body = format!("{reason}\n");
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

/// Returns true when `If-None-Match` lists `etag` (weak comparison, as RFC 9110 says) or `*`.
fn none_match(request: &HeaderMap, etag: &str) -> bool {
    request.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.to_str().unwrap_or_default().split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// Returns true when there is no `If-Range`, or it names the current ETag (strong comparison).
fn if_range_holds(request: &HeaderMap, etag: &str) -> bool {
    match request.get(IF_RANGE) {
        None => true,
        Some(value) => value.to_str().is_ok_and(|value| value.trim() == etag),
    }
}

/// What a `Range` header asks of a body of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable range (absent, malformed or several): send the whole body.
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// A well-formed range that lies outside the body.
    Unsatisfiable,
}

fn parse_range(value: &str, total: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (start, end) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if total == 0 => RangeRequest::Unsatisfiable,
            Some(length) => RangeRequest::Part {
                first: total.saturating_sub(length),
                last: total - 1,
            },
            None => RangeRequest::Whole,
        },
        (start, "") => match number(start) {
            Some(first) if first < total => RangeRequest::Part {
                first,
                last: total - 1,
            },
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(first), Some(last)) if first <= last => {
                if first < total {
                    RangeRequest::Part {
                        first,
                        last: last.min(total - 1),
                    }
                } else {
                    RangeRequest::Unsatisfiable
                }
            }
            _ => RangeRequest::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { first: 0, last: 9 });
        assert_eq!(
            parse_range("bytes=90-200", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            parse_range("bytes=95-", 100),
            Part {
                first: 95,
                last: 99
            }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(parse_range("bytes=-500", 100), Part { first: 0, last: 99 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-120", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-0", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Whole);
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(none_match(&headers, "\"b\""));
        assert!(none_match(&headers, "\"a\""));
        assert!(!none_match(&headers, "\"c\""));
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&headers, "\"c\""));
        assert!(!none_match(&HeaderMap::new(), "\"a\""));
    }
}

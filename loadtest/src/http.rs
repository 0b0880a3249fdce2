//! The HTTP/1.1 client of the `http-poll` and `http-download` scenarios: hyper's pooled
//! keep-alive client against the server's HTTP mirror (DESIGN.md section 10). HTTP/1.1 carries
//! one request at a time per connection, so the pool opens up to `--concurrency` connections and
//! keeps them; `--connections` applies to gRPC only.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::{Code, Status};

use crate::target::Target;

/// A pooled HTTP/1.1 client for one target. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
}

impl HttpClient {
    /// A client for `target` (its URL is the HTTP listener's, e.g. `http://127.0.0.1:8080`).
    pub fn new(target: &Target) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(crate::client::CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient {
            client,
            base: target.to_string(),
        }
    }

    /// GETs `path` (starting with `/`) and reads the whole body. A status other than 200
    /// becomes the gRPC status of the same meaning, so reports count HTTP and gRPC failures alike.
    pub async fn get(&self, path: &str) -> Result<Bytes, Status> {
        let request = Request::get(format!("{}{path}", self.base))
            .body(Empty::new())
            .map_err(|error| Status::invalid_argument(format!("bad request: {error}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| Status::unavailable(format!("http: {error}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| Status::data_loss(format!("http body: {error}")))?
            .to_bytes();
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(Status::new(
                code_of(status),
                format!("HTTP {}", status.as_u16()),
            ))
        }
    }
}

/// Returns the gRPC code closest to an HTTP status (the mapping of gRPC's HTTP guide, reversed).
pub fn code_of(status: StatusCode) -> Code {
    match status.as_u16() {
        200..=299 | 304 => Code::Ok,
        400 | 416 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 501 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        429 | 502 | 503 => Code::Unavailable,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_the_grpc_codes_of_the_same_meaning() {
        assert_eq!(code_of(StatusCode::OK), Code::Ok);
        assert_eq!(code_of(StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(code_of(StatusCode::BAD_REQUEST), Code::InvalidArgument);
        assert_eq!(code_of(StatusCode::SERVICE_UNAVAILABLE), Code::Unavailable);
        assert_eq!(code_of(StatusCode::INTERNAL_SERVER_ERROR), Code::Internal);
    }
}

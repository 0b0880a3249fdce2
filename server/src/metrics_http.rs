//! The `/metrics` scrape endpoint: HTTP/1.1 on its own listener, behind the same TLS as the
//! gRPC API when the server has a certificate (see [`crate::tls::incoming`]). Only `GET
//! /metrics` answers; each connection has a deadline, so a stalled scraper holds nothing.
//! Who may scrape is [`ScrapeAccess`]: on an address other hosts can reach, only a scraper
//! with the bearer token of `--metrics-token-file` or a client certificate of `--client-ca`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use crate::config::{ConfigError, ServerConfig};
use crate::transport::connections::ListenerLimits;

/// Longest one scrape connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histograms are compacted when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Who may scrape `/metrics`. With neither credential (a loopback address), anyone who can
/// connect; otherwise a scrape needs the bearer token or a verified client certificate.
#[derive(Clone, Default)]
pub struct ScrapeAccess {
    /// SHA-256 of the token a scrape must send as `Authorization: Bearer <token>`; digests
    /// are compared, so the time taken says nothing about the token.
    token_digest: Option<[u8; 32]>,
    /// Whether a TLS client certificate verified against `--client-ca` admits a scrape.
    client_certificate: bool,
}

impl ScrapeAccess {
    /// Returns the access `config` asks for: the token of `--metrics-token-file` when given,
    /// and client certificates when `--client-ca` is given and the metrics address is not
    /// loopback. Fails, naming the flag, when the token file is unreadable or empty.
    pub fn from_config(config: &ServerConfig) -> Result<Self, ConfigError> {
        let token_digest = match &config.metrics_token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
                    flag: "--metrics-token-file",
                    reason: format!("cannot read {}: {error}", path.display()),
                })?;
                Some(Self::token(text.trim()).map_err(|reason| ConfigError {
                    flag: "--metrics-token-file",
                    reason,
                })?)
            }
        };
        let client_certificate =
            config.client_ca.is_some() && !config.metrics_addr.ip().to_canonical().is_loopback();
        Ok(Self {
            token_digest,
            client_certificate,
        })
    }

    /// Returns the access of a scraper holding `token`, or why the token is unusable.
    pub fn with_token(token: &str) -> Result<Self, String> {
        Ok(Self {
            token_digest: Some(Self::token(token)?),
            client_certificate: false,
        })
    }

    fn token(token: &str) -> Result<[u8; 32], String> {
        if token.len() < MIN_TOKEN_BYTES || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_BYTES} printable characters without spaces (e.g. from `openssl rand -hex 32`)"
            ));
        }
        Ok(Sha256::digest(token.as_bytes()).into())
    }

    /// Returns whether a request with `headers` on a connection that did (or did not) show a
    /// verified client certificate may scrape.
    fn admits(&self, headers: &hyper::HeaderMap, verified_client: bool) -> bool {
        if self.token_digest.is_none() && !self.client_certificate {
            return true;
        }
        if self.client_certificate && verified_client {
            return true;
        }
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match (self.token_digest, presented) {
            (Some(expected), Some(token)) => {
                <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())) == expected
            }
            _ => false,
        }
    }
}

/// Shortest accepted metrics token.
const MIN_TOKEN_BYTES: usize = 16;

/// Serves `/metrics` on `listener` (TLS when `tls` is given) to the scrapers `access` admits,
/// until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    access: ScrapeAccess,
) {
    let access = Arc::new(access);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    let mut connections = crate::tls::incoming(listener, tls, limits);
    while let Some(connection) = connections.next().await {
        let Ok(io) = connection else { continue };
        let (handle, access) = (handle.clone(), access.clone());
        let verified_client = io.connect_info().client_certificates.is_some();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let admitted = access.admits(request.headers(), verified_client);
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&request, &handle, admitted)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

fn respond<B>(request: &Request<B>, handle: &PrometheusHandle, admitted: bool) -> Response<String> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (_, "/metrics") if !admitted => (
            StatusCode::UNAUTHORIZED,
            "send the token of --metrics-token-file as a bearer token, or a client certificate\n"
                .to_owned(),
        ),
        (&Method::GET, "/metrics") => (StatusCode::OK, handle.render()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "see /metrics\n".to_owned()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

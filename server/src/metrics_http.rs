//! The `/metrics` scrape endpoint: HTTP/1.1 on its own listener, behind the same TLS as the
//! gRPC API when the server has a certificate (see [`crate::tls::incoming`]). Only `GET
//! /metrics` answers; each connection has a deadline, so a stalled scraper holds nothing.

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Longest one scrape connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histograms are compacted when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` (TLS when `tls` is given) until the task is dropped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, tls: Option<TlsAcceptor>) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    let mut connections = crate::tls::incoming(listener, tls);
    while let Some(connection) = connections.next().await {
        let Ok(io) = connection else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&request, &handle)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

fn respond<B>(request: &Request<B>, handle: &PrometheusHandle) -> Response<String> {
    let (status, body) = match (request.method(), request.uri().path()) {
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
    response
}

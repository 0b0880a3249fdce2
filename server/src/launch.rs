//! What the binary runs: loads TLS once for every listener, refuses plaintext on an address
//! other hosts can reach, binds the gRPC, HTTP-mirror, console and metrics listeners, installs
//! the metrics recorder, serves `/metrics` and runs the server until `shutdown` completes.

use std::future::Future;

use crate::app::{Listeners, ServerError, run_with_tls};
use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::tls::{ALPN_HTTP1, ServerTls};

/// Binds the configured addresses and serves until `shutdown` completes.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let scrape_access = crate::metrics_http::ScrapeAccess::from_config(&config)?;
    let tls = match config.tls_files() {
        Some(files) => Some(ServerTls::load(&files)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .map_err(ServerError::Listener)?;
    let http_listener = match config.http_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(ServerError::Listener)?,
        ),
        None => None,
    };
    let console_listener = match config.console_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(ServerError::Listener)?,
        ),
        None => None,
    };
    let shown = |listener: &Option<tokio::net::TcpListener>| match listener {
        Some(listener) => listener
            .local_addr()
            .map(|addr| addr.to_string())
            .map_err(ServerError::Listener),
        None => Ok("off".to_owned()),
    };
    let http_addr = shown(&http_listener)?;
    let console_addr = shown(&console_listener)?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(ServerError::Listener)?;
    let grpc_addr = listener.local_addr().map_err(ServerError::Listener)?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(ServerError::Listener)?;
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        console = %console_addr,
        metrics = %metrics_addr,
        tls = tls.is_some(),
        client_certificates = tls.as_ref().is_some_and(ServerTls::checks_client_certificates),
        "listening"
    );
    tracing::info!(
        "to create an upload token, run `exposure-server authority add --data-dir {} --name NAME --region VN-TB`",
        config.data_dir.display()
    );
    let handle =
        crate::metrics::install().map_err(|error| ServerError::Metrics(error.to_string()))?;
    tokio::spawn(crate::metrics_http::serve(
        metrics_listener,
        handle,
        tls.as_ref().map(|tls| tls.acceptor(ALPN_HTTP1)),
        crate::transport::connections::ListenerLimits::metrics(&config),
        scrape_access,
    ));
    let listeners = Listeners {
        grpc: listener,
        http: http_listener,
        console: console_listener,
    };
    run_with_tls(listeners, config, Clock::System, tls, shutdown).await
}

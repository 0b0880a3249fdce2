//! The HTTP/1.1 listeners' serving loop, shared by the HTTP mirror and the staff console:
//! connections come from [`crate::tls::incoming`] (connection caps, handshake timeout, TLS with
//! the server's certificate, PROXY headers from trusted proxies), each is served keep-alive by
//! hyper with a header timeout and a lifetime, and every request carries its connection's
//! [`PeerInfo`] in its extensions (the console's per-network login limit reads the client's
//! address there; it is never logged).

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use futures::StreamExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected as _;

use crate::metrics;
use crate::tls::PeerInfo;
use crate::transport::connections::{CloseReason, ListenerLimits};

/// Longest a client may take to send a request's headers; a slow-loris connection is cut.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a listener's connections may live.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLifetime {
    /// A connection takes no new request after this long.
    pub lifetime: Duration,
    /// A response still being sent at the lifetime (or at shutdown) is cut this much later.
    pub grace: Duration,
}

/// One HTTP/1.1 connection.
type Http1Connection = http1::Connection<
    TokioIo<crate::transport::connection::Connection<crate::tls::ServerIo>>,
    TowerToHyperService<WithPeer>,
>;

/// The router of one connection, which hands each request its connection's [`PeerInfo`].
#[derive(Clone)]
pub struct WithPeer {
    router: Router,
    peer: PeerInfo,
}

impl tower::Service<http::Request<Incoming>> for WithPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as tower::Service<http::Request<Incoming>>>::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<Incoming>>::poll_ready(&mut self.router, context)
    }

    fn call(&mut self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.router.call(request)
    }
}

/// Serves HTTP/1.1 keep-alive with `router` on `listener` (TLS when `tls` is given, through
/// the same acceptor as gRPC) until `shutdown` completes, then lets requests in flight end.
///
/// Connections are counted and capped by `limits` (see [`crate::transport::connections`]):
/// a client that stalls a download holds (and is bounded by) one slot until it reads nothing
/// for the send-stall timeout or its connection reaches its lifetime.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    lifetime: ConnectionLifetime,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let name = limits.name;
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut connections = crate::tls::incoming(listener, tls, limits);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let connection = tokio::select! {
            () = &mut shutdown => break,
            next = connections.next() => match next {
                Some(connection) => connection,
                None => break,
            },
        };
        let Ok(io) = connection else { continue };
        let service = TowerToHyperService::new(WithPeer {
            router: router.clone(),
            peer: io.connect_info(),
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service);
        tasks.spawn(serve_connection(connection, name, lifetime, stop.clone()));
    }
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Serves one connection until it ends, its lifetime passes or the server stops; then it
/// takes no new request, and a response still going out is cut after the grace period.
async fn serve_connection(
    connection: Http1Connection,
    listener: &'static str,
    lifetime: ConnectionLifetime,
    stop: CancellationToken,
) {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = tokio::time::sleep(lifetime.lifetime) => {
            ::metrics::counter!(metrics::CONNECTIONS_CLOSED_TOTAL,
                "listener" => listener, "reason" => CloseReason::Lifetime.label())
            .increment(1);
        }
        () = stop.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(lifetime.grace, connection).await;
}

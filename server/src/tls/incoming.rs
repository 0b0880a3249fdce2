//! Accepted connections of any `TcpListener`, as plaintext or TLS streams that tonic (or
//! hyper) can serve. Every TCP connection gets `TCP_NODELAY` and keepalive and is counted
//! against its listener's caps ([`crate::transport::connections`]): at the listener's cap the
//! loop stops accepting until a connection closes, and a client network at its cap is closed
//! at once. Each TLS handshake runs in its own task; it starts when the client's first bytes
//! arrive, waits its turn while [`MAX_HANDSHAKES`] run, and must be done, with the client's
//! first request bytes, within the handshake timeout from accept, so slow or silent clients
//! never hold up the accept loop or other clients' handshakes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::transport::connection::Connection;
pub use crate::transport::connections::MAX_HANDSHAKES;
use crate::transport::connections::{CloseReason, ConnectionLimiter, ListenerLimits};

/// Connections handed over but not yet taken by the server.
const QUEUE: usize = 256;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What a request learns about its connection (in its extensions). The client's address is
/// there only for the in-memory brute-force limits on upload codes
/// (`ingest::code_limits`); it is never logged or kept, and `Debug` leaves it out.
#[derive(Clone, Default)]
pub struct PeerInfo {
    /// The client's certificate chain, present only when the client sent one and it was
    /// verified against `--client-ca`.
    pub client_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The client's IP address, when the socket knows it.
    pub remote_ip: Option<std::net::IpAddr>,
    /// A number no other connection of this process has: admission control counts each
    /// connection's calls by it (`crate::admission`). Set by [`Connection`].
    pub connection: Option<u64>,
}

impl std::fmt::Debug for PeerInfo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerInfo")
            .field(
                "client_certificates",
                &self.client_certificates.as_ref().map(|chain| chain.len()),
            )
            .finish_non_exhaustive()
    }
}

/// One accepted connection.
#[derive(Debug)]
pub enum ServerIo {
    /// A plaintext TCP connection.
    Plain(TcpStream),
    /// A TLS connection whose handshake completed.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Returns the connections of `listener` within `limits`, TLS-wrapped when `tls` is given.
/// The accept loop runs in its own task and ends when the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
) -> ReceiverStream<io::Result<Connection<ServerIo>>> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(accept_loop(
        listener,
        tls,
        ConnectionLimiter::new(limits),
        sender,
    ));
    ReceiverStream::new(receiver)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limiter: Arc<ConnectionLimiter>,
    sender: mpsc::Sender<io::Result<Connection<ServerIo>>>,
) {
    let mut tcp = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let handshake_timeout = limiter.limits().handshake_timeout;
    loop {
        // At the cap, connections wait in the kernel's backlog until a slot frees.
        let permit = tokio::select! {
            () = sender.closed() => break,
            permit = limiter.free_slot() => permit,
        };
        let next = tokio::select! {
            () = sender.closed() => break,
            next = tcp.next() => next,
        };
        let stream = match next {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let deadline = Instant::now() + handshake_timeout;
        let ip = stream.peer_addr().ok().map(|address| address.ip());
        let Some(slot) = limiter.admit(permit, ip) else {
            continue;
        };
        let (acceptor, handshakes, sender) = (tls.clone(), handshakes.clone(), sender.clone());
        tokio::spawn(async move {
            let io = match acceptor {
                None => ServerIo::Plain(stream),
                Some(acceptor) => {
                    let handshake = tokio::time::timeout_at(
                        deadline,
                        handshake(stream, &acceptor, &handshakes),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(stream)) => ServerIo::Tls(Box::new(stream)),
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            slot.limiter().count_closed(CloseReason::HandshakeTimeout);
                            return;
                        }
                    }
                }
            };
            let _ = sender.send(Ok(Connection::new(io, slot, deadline))).await;
        });
    }
}

/// Runs the TLS handshake of `stream` once the client has sent something, in its turn among
/// the handshakes in progress: a silent client waits for its deadline without taking a turn.
async fn handshake(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    handshakes: &Semaphore,
) -> io::Result<TlsStream<TcpStream>> {
    if stream.peek(&mut [0_u8; 1]).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before the handshake",
        ));
    }
    let _turn = handshakes
        .acquire()
        .await
        .map_err(|_| io::Error::other("handshakes closed"))?;
    acceptor.accept(stream).await
}

impl Connected for ServerIo {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            ServerIo::Plain(stream) => PeerInfo {
                client_certificates: None,
                remote_ip: stream.peer_addr().ok().map(|address| address.ip()),
                connection: None,
            },
            ServerIo::Tls(stream) => PeerInfo {
                client_certificates: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .filter(|chain| !chain.is_empty())
                    .map(|chain| Arc::new(chain.to_vec())),
                remote_ip: stream
                    .get_ref()
                    .0
                    .peer_addr()
                    .ok()
                    .map(|address| address.ip()),
                connection: None,
            },
        }
    }
}

/// Lets through a call whose connection presented a client certificate that verified against
/// `--client-ca`; refuses any other with UNAUTHENTICATED. The upload service's bearer-token
/// calls run behind it when `--client-ca` is set.
#[allow(clippy::result_large_err, reason = "tonic's interceptor signature")]
pub fn require_client_certificate(
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let verified = request
        .extensions()
        .get::<PeerInfo>()
        .is_some_and(|peer| peer.client_certificates.is_some());
    if verified {
        Ok(request)
    } else {
        Err(tonic::Status::unauthenticated(
            "calls with a bearer token need a TLS client certificate signed by the server's --client-ca",
        ))
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            ServerIo::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            ServerIo::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            ServerIo::Tls(stream) => {
                Pin::new(stream.as_mut()).poll_write_vectored(context, buffers)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(stream) => stream.is_write_vectored(),
            ServerIo::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(stream) => Pin::new(stream).poll_flush(context),
            ServerIo::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            ServerIo::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

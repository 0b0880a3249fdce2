//! Accepted connections of any `TcpListener`, as plaintext or TLS streams that tonic (or
//! hyper) can serve. Every TCP connection gets `TCP_NODELAY` and keepalive and is counted
//! against its listener's caps ([`crate::transport::connections`]): at the listener's cap the
//! loop stops accepting until a connection closes, and a client network at its cap is closed
//! at once. Each connection is then opened in its own task, which must finish within the
//! handshake timeout from accept, so slow or silent clients never hold up the accept loop or
//! other clients' handshakes:
//!
//! - a peer inside `--trusted-proxies` must first send a PROXY protocol v2 header
//!   ([`crate::transport::proxy_protocol`]); the client it names is the connection's client,
//!   counted against its network's cap and seen by the code-guessing limits. Any other peer
//!   whose first byte starts that header is refused, so a client cannot name its own address;
//! - the TLS handshake starts when the client's first bytes arrive, and waits its turn while
//!   [`MAX_HANDSHAKES`] run.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::transport::connection::Connection;
pub use crate::transport::connections::MAX_HANDSHAKES;
use crate::transport::connections::{
    CloseReason, ConnectionLimiter, ConnectionSlot, ListenerLimits,
};
use crate::transport::proxy_protocol::{self, Header};

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
    /// The client's IP address: the one a trusted proxy's PROXY header named, otherwise the
    /// socket's peer, when known.
    pub remote_ip: Option<IpAddr>,
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

/// One accepted connection and its client's address.
pub struct ServerIo {
    stream: Stream,
    /// The client: a trusted proxy's PROXY header, or the socket's peer.
    client_ip: Option<IpAddr>,
}

impl std::fmt::Debug for ServerIo {
    // The client's address is left out: it is never logged.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.stream {
            Stream::Plain(_) => "plain",
            Stream::Tls(_) => "tls",
        };
        formatter
            .debug_struct("ServerIo")
            .field("stream", &kind)
            .finish_non_exhaustive()
    }
}

enum Stream {
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

/// A connection's place in the counts while it opens.
enum Admission {
    /// Counted against its peer's network already.
    Admitted(ConnectionSlot),
    /// From a trusted proxy: counted against its client's network once the header names it.
    Proxied(OwnedSemaphorePermit),
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
        let peer = stream.peer_addr().ok().map(|address| address.ip());
        let admission = if peer.is_some_and(|ip| limiter.limits().trusted_proxies.contains(ip)) {
            Admission::Proxied(permit)
        } else {
            match limiter.admit(permit, peer) {
                Ok(slot) => Admission::Admitted(slot),
                Err(slot) => {
                    limiter.refuse(stream, slot);
                    continue;
                }
            }
        };
        let (acceptor, handshakes, sender) = (tls.clone(), handshakes.clone(), sender.clone());
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let opening = open(stream, peer, admission, &limiter, acceptor, &handshakes);
            match tokio::time::timeout_at(deadline, opening).await {
                Ok(Some((io, slot))) => {
                    let _ = sender.send(Ok(Connection::new(io, slot, deadline))).await;
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::debug!("connection not opened within the handshake timeout");
                    limiter.count_closed(CloseReason::HandshakeTimeout);
                }
            }
        });
    }
}

/// Opens an accepted connection: reads a trusted proxy's header (and counts the connection
/// against the client's network), refuses a header from anyone else, runs the TLS handshake.
/// `None` when the connection is closed instead.
async fn open(
    mut stream: TcpStream,
    peer: Option<IpAddr>,
    admission: Admission,
    limiter: &Arc<ConnectionLimiter>,
    acceptor: Option<TlsAcceptor>,
    handshakes: &Semaphore,
) -> Option<(ServerIo, ConnectionSlot)> {
    let (client_ip, slot) = match admission {
        Admission::Proxied(permit) => {
            let client_ip = match proxy_protocol::read_header(&mut stream).await {
                Ok(Header::Proxied(client)) => Some(client),
                Ok(Header::Local | Header::NoAddress) => peer,
                Err(error) => {
                    tracing::debug!(%error, "PROXY header refused");
                    limiter.count_closed(CloseReason::ProxyHeader);
                    return None;
                }
            };
            match limiter.admit(permit, client_ip) {
                Ok(slot) => (client_ip, slot),
                Err(slot) => {
                    limiter.refuse(stream, slot);
                    return None;
                }
            }
        }
        Admission::Admitted(slot) => {
            let mut first = [0_u8; 1];
            match stream.peek(&mut first).await {
                Ok(0) | Err(_) => return None,
                Ok(_) if first[0] == proxy_protocol::SIGNATURE[0] => {
                    // No TLS record, HTTP/2 preface or HTTP/1.1 request starts with this byte.
                    tracing::debug!("PROXY header from a peer outside --trusted-proxies refused");
                    limiter.count_closed(CloseReason::ProxyHeader);
                    return None;
                }
                Ok(_) => {}
            }
            (peer, slot)
        }
    };
    let stream = match acceptor {
        None => Stream::Plain(stream),
        Some(acceptor) => match handshake(stream, &acceptor, handshakes).await {
            Ok(stream) => Stream::Tls(Box::new(stream)),
            Err(error) => {
                tracing::debug!(%error, "TLS handshake failed");
                return None;
            }
        },
    };
    Some((ServerIo { stream, client_ip }, slot))
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
        let client_certificates = match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(stream) => stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| Arc::new(chain.to_vec())),
        };
        PeerInfo {
            client_certificates,
            remote_ip: self.client_ip,
            connection: None,
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
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(context, buffers),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(context),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

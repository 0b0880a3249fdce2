//! One accepted connection as the servers see it: the stream, its place in the listener's
//! counts ([`ConnectionSlot`], given back when the server drops the connection) and two
//! deadlines enforced on its reads and writes:
//!
//! - until the client has sent its first bytes (the HTTP/2 preface for gRPC), a read past the
//!   handshake deadline fails, so a silent or trickling socket is closed and frees its slot;
//! - a write (or flush) that makes no progress for the send-stall timeout fails, so a client
//!   that stops reading a response cannot hold its connection (and the response) forever;
//! - once the listener's maximum age has passed since the connection was accepted, a read or a
//!   blocked write fails: the gRPC server sends GOAWAY at `--max-connection-age` and lets the
//!   streams in flight finish, and this closes the connection if one is still open after the
//!   grace (a stream that never ends, such as a health `Watch`).
//!
//! A failed read or write makes hyper close the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::connections::{CloseReason, ConnectionSlot};
use crate::tls::PeerInfo;

/// An accepted connection with its slot and deadlines; see the module documentation.
#[derive(Debug)]
pub struct Connection<IO> {
    io: IO,
    /// Bytes the client still owes before the handshake deadline, and that deadline; `None`
    /// once they arrived.
    first_bytes: Option<(usize, Pin<Box<Sleep>>)>,
    send_stall_timeout: Duration,
    /// Set while a write is blocked: when it fires, the write fails.
    send_stall: Option<Pin<Box<Sleep>>>,
    /// The end of the connection's life, when the listener has a maximum age.
    age_limit: Option<Pin<Box<Sleep>>>,
    slot: ConnectionSlot,
    /// This connection's number, unique in the process ([`PeerInfo::connection`]).
    id: u64,
}

/// The number of the next connection.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl<IO> Connection<IO> {
    /// Wraps `io`, which must deliver its first bytes by `handshake_deadline`.
    pub fn new(io: IO, slot: ConnectionSlot, handshake_deadline: Instant) -> Self {
        let limits = slot.limiter().limits();
        let first_bytes = (limits.first_bytes > 0).then(|| {
            (
                limits.first_bytes,
                Box::pin(tokio::time::sleep_until(handshake_deadline)),
            )
        });
        let send_stall_timeout = limits.send_stall_timeout;
        Self {
            io,
            first_bytes,
            send_stall_timeout,
            send_stall: None,
            age_limit: limits.max_age.map(|age| Box::pin(tokio::time::sleep(age))),
            slot,
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Returns the error that ends a connection past its maximum age, when that time has come;
    /// otherwise registers the wake-up for it.
    fn aged(&mut self, context: &mut Context<'_>) -> Option<io::Error> {
        let limit = self.age_limit.as_mut()?;
        if limit.as_mut().poll(context).is_pending() {
            return None;
        }
        self.age_limit = None;
        self.slot.limiter().count_closed(CloseReason::Lifetime);
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection outlived its maximum age and grace",
        ))
    }

    /// Returns the wrapped stream.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Returns the error that ends a connection whose write made no progress in time, when
    /// that time has come; otherwise arms (or keeps) the stall deadline and its wake-up.
    fn stalled(&mut self, context: &mut Context<'_>) -> Option<io::Error> {
        let timeout = self.send_stall_timeout;
        let deadline = self
            .send_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(context).is_pending() {
            return None;
        }
        self.slot.limiter().count_closed(CloseReason::SendStalled);
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for the send-stall timeout",
        ))
    }

    /// Ends a blocked write: `Pending` until the stall deadline or the age limit, then the
    /// error.
    fn blocked<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
        if let Some(error) = self.aged(context) {
            return Poll::Ready(Err(error));
        }
        match self.stalled(context) {
            Some(error) => Poll::Ready(Err(error)),
            None => Poll::Pending,
        }
    }

    /// Notes the outcome of a write or flush: progress clears the stall deadline.
    fn wrote<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.blocked(context),
            ready => {
                self.send_stall = None;
                ready
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Connection<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        match Pin::new(&mut this.io).poll_read(context, buffer) {
            Poll::Ready(Ok(())) => {
                let read = buffer.filled().len() - before;
                if let Some((owed, _)) = &mut this.first_bytes {
                    // End of stream (0 bytes) ends the wait too: the server sees the close.
                    if read == 0 || read >= *owed {
                        this.first_bytes = None;
                    } else {
                        *owed -= read;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if let Some(error) = this.aged(context) {
                    return Poll::Ready(Err(error));
                }
                let Some((_, deadline)) = &mut this.first_bytes else {
                    return Poll::Pending;
                };
                if deadline.as_mut().poll(context).is_pending() {
                    return Poll::Pending;
                }
                this.first_bytes = None;
                this.slot
                    .limiter()
                    .count_closed(CloseReason::HandshakeTimeout);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no request within the handshake timeout",
                )))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Connection<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(context, buffer);
        this.wrote(result, context)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(context, buffers);
        this.wrote(result, context)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(context);
        this.wrote(result, context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(context);
        this.wrote(result, context)
    }
}

impl<IO: Connected<ConnectInfo = PeerInfo>> Connected for Connection<IO> {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            connection: Some(self.id),
            ..self.io.connect_info()
        }
    }
}

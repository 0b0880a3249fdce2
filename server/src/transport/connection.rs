//! One accepted connection as the servers see it: the stream, its place in the listener's
//! counts ([`ConnectionSlot`], given back when the server drops the connection) and two
//! deadlines enforced on its reads and writes:
//!
//! - until the client has sent its first bytes (the HTTP/2 preface for gRPC), a read past the
//!   handshake deadline fails, so a silent or trickling socket is closed and frees its slot;
//! - a write (or flush) that makes no progress for the send-stall timeout fails, so a client
//!   that stops reading a response cannot hold its connection (and the response) forever.
//!
//! A failed read or write makes hyper close the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::connections::{CloseReason, ConnectionSlot};

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
    slot: ConnectionSlot,
}

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
            slot,
        }
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

    /// Ends a blocked write: `Pending` until the stall deadline, then the error.
    fn blocked<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
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

impl<IO: Connected> Connected for Connection<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

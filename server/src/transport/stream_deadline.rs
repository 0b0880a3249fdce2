//! A deadline on a whole gRPC call, client stream included. tonic's `--request-timeout` only
//! bounds the time until the response starts, so a bidirectional stream (server reflection)
//! could stay open as long as its client liked. [`StreamDeadline`] wraps a service so that its
//! request stream fails with DEADLINE_EXCEEDED at the deadline; the handler then stops and the
//! call ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::server::NamedService;
use tower::Service;

/// A service whose calls' request streams end at a deadline; see the module documentation.
#[derive(Clone, Debug)]
pub struct StreamDeadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> StreamDeadline<S> {
    /// Wraps `inner`: each call's request stream fails `limit` after the call starts.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

impl<S: NamedService> NamedService for StreamDeadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for StreamDeadline<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let deadline = Box::pin(tokio::time::sleep(self.limit));
        self.inner.call(request.map(|body| {
            tonic::body::Body::new(DeadlineBody {
                inner: body,
                deadline,
            })
        }))
    }
}

/// A request body that fails with DEADLINE_EXCEEDED once its deadline passes.
struct DeadlineBody {
    inner: tonic::body::Body,
    deadline: Pin<Box<Sleep>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(context).is_ready() {
            return Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(
                "the stream outlived the request timeout",
            ))));
        }
        Pin::new(&mut self.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

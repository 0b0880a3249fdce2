//! Admission control of the gRPC listener. Calls fall into three classes, each with its own
//! concurrency limit, so that an anonymous flood of phone requests can neither shed an
//! authority's uploads nor fail the liveness probe:
//!
//! | class | paths | setting |
//! |---|---|---|
//! | upload | `/exposure.v1.KeyUpload/*` | `--max-concurrent-uploads` |
//! | health | `/grpc.health.v1.Health/*` | `--max-concurrent-health-requests` |
//! | phone | everything else (Distribution, reflection, unknown paths) | `--max-concurrent-phone-requests` |
//!
//! A call past its class's limit is answered at once with RESOURCE_EXHAUSTED. An admitted
//! call keeps its permit until its response body is finished or dropped, not just until the
//! handler returns, so a client that opens many GetBatch streams and never reads them holds
//! permits (and is bounded by them) for as long as the streams live. A response body still
//! open after `--stream-timeout` ends with DEADLINE_EXCEEDED in its trailers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::metrics;

/// The admission class of a call; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    /// Authority uploads.
    Upload,
    /// Anonymous phone calls and anything not recognised.
    Phone,
    /// Health checks.
    Health,
}

impl CallClass {
    /// Returns the class of a gRPC request path.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/exposure.v1.KeyUpload/") {
            CallClass::Upload
        } else if path.starts_with("/grpc.health.v1.Health/") {
            CallClass::Health
        } else {
            CallClass::Phone
        }
    }

    /// Returns the metrics label of the class.
    pub fn label(self) -> &'static str {
        match self {
            CallClass::Upload => "upload",
            CallClass::Phone => "phone",
            CallClass::Health => "health",
        }
    }
}

/// Concurrency limits per class and the longest a response body may stay open.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Calls of the upload class at once.
    pub uploads: usize,
    /// Calls of the phone class at once.
    pub phones: usize,
    /// Calls of the health class at once.
    pub health: usize,
    /// Longest a response body may stay open.
    pub stream_timeout: Duration,
}

/// Adds [`Admission`] around a service.
#[derive(Clone)]
pub struct AdmissionLayer {
    uploads: Arc<Semaphore>,
    phones: Arc<Semaphore>,
    health: Arc<Semaphore>,
    stream_timeout: Duration,
}

impl AdmissionLayer {
    /// Returns the layer with one permit pool per class.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            uploads: Arc::new(Semaphore::new(limits.uploads)),
            phones: Arc::new(Semaphore::new(limits.phones)),
            health: Arc::new(Semaphore::new(limits.health)),
            stream_timeout: limits.stream_timeout,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            limits: self.clone(),
        }
    }
}

/// Admits or sheds each call; see the module documentation.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    limits: AdmissionLayer,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Admission<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
    ResponseBody: Body<Data = Bytes> + Send + 'static,
    ResponseBody::Error: Into<tower::BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let class = CallClass::of_path(request.uri().path());
        let semaphore = match class {
            CallClass::Upload => &self.limits.uploads,
            CallClass::Phone => &self.limits.phones,
            CallClass::Health => &self.limits.health,
        };
        let Ok(permit) = semaphore.clone().try_acquire_owned() else {
            ::metrics::counter!(metrics::REQUESTS_SHED_TOTAL, "class" => class.label())
                .increment(1);
            let status = tonic::Status::resource_exhausted(format!(
                "too many concurrent {} calls; retry later",
                class.label()
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let stream_timeout = self.limits.stream_timeout;
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await.map_err(Into::into)?;
            Ok(response.map(|body| {
                tonic::body::Body::new(AdmittedBody {
                    inner: Box::pin(body),
                    deadline: Box::pin(tokio::time::sleep(stream_timeout)),
                    finished: false,
                    _permit: permit,
                })
            }))
        })
    }
}

/// A response body that holds its call's permit and ends at the stream deadline.
struct AdmittedBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Set once the deadline trailers went out; nothing follows them.
    finished: bool,
    /// Released when the body is dropped: after its last frame, or when the stream is reset.
    _permit: OwnedSemaphorePermit,
}

impl<B> Body for AdmittedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.as_mut().poll_frame(context) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(context).is_ready() {
            this.finished = true;
            let mut trailers = http::HeaderMap::new();
            trailers.insert(
                "grpc-status",
                http::HeaderValue::from(tonic::Code::DeadlineExceeded as i32),
            );
            trailers.insert(
                "grpc-message",
                http::HeaderValue::from_static("response stream exceeded its deadline"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_their_class() {
        assert_eq!(
            CallClass::of_path("/exposure.v1.KeyUpload/UploadDiagnosisKeys"),
            CallClass::Upload
        );
        assert_eq!(
            CallClass::of_path("/exposure.v1.Distribution/GetBatch"),
            CallClass::Phone
        );
        assert_eq!(
            CallClass::of_path("/grpc.health.v1.Health/Check"),
            CallClass::Health
        );
        assert_eq!(
            CallClass::of_path("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            CallClass::Phone
        );
        assert_eq!(CallClass::of_path("/no.such/Path"), CallClass::Phone);
        // A prefix without the separator is not the upload service.
        assert_eq!(
            CallClass::of_path("/exposure.v1.KeyUploadX/UploadDiagnosisKeys"),
            CallClass::Phone
        );
    }
}

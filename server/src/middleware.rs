//! The tower layer around every gRPC call: it records the call's latency by method and status
//! code (`exposure_grpc_request_duration_seconds`). The clock stops when the response body
//! ends, not when the headers are ready, so a streaming call (GetBatch) is measured to its last
//! chunk, and the code is the one the call really ended with: the `grpc-status` of its
//! trailers (or of a trailers-only answer), CANCELLED when the stream was dropped before its
//! end (the client reset it or went away, or shutdown's grace period ran out), UNKNOWN when the
//! body failed. Calls shed by [`crate::admission`] arrive here as RESOURCE_EXHAUSTED answers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use exposure_proto::status::code_name;

use crate::metrics;

/// Adds [`RequestMetrics`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

/// Measures each call; see the module documentation.
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for RequestMetrics<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Send,
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
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = match call.await {
                Ok(response) => response,
                Err(error) => {
                    record(method, "UNKNOWN", started);
                    return Err(error.into());
                }
            };
            // A trailers-only answer (every unary error) carries its status in the headers and
            // has an empty body.
            let header_code = status_code(response.headers());
            Ok(response.map(|body| {
                tonic::body::Body::new(MeasuredBody {
                    inner: Box::pin(body),
                    pending: Some(Pending {
                        method,
                        started,
                        header_code,
                    }),
                })
            }))
        })
    }
}

/// A call whose latency is not recorded yet.
struct Pending {
    method: &'static str,
    started: Instant,
    /// The status of a trailers-only answer.
    header_code: Option<&'static str>,
}

/// A response body that records its call when its last frame goes out or when it is dropped
/// before that.
struct MeasuredBody<B> {
    inner: Pin<Box<B>>,
    /// Taken when the call is recorded, so it is recorded once.
    pending: Option<Pending>,
}

impl<B> MeasuredBody<B> {
    /// Records the call once: with `code`, else the status of a trailers-only answer, else
    /// `otherwise`.
    fn finish(&mut self, code: Option<&'static str>, otherwise: &'static str) {
        if let Some(pending) = self.pending.take() {
            let code = code.or(pending.header_code).unwrap_or(otherwise);
            record(pending.method, code, pending.started);
        }
    }
}

impl<B> Body for MeasuredBody<B>
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
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(context));
        match &frame {
            // Trailers end a gRPC response; ones without grpc-status are malformed.
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(status_code(trailers), "UNKNOWN");
                }
            }
            Some(Err(_)) => this.finish(Some("UNKNOWN"), "UNKNOWN"),
            None => this.finish(None, "UNKNOWN"),
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeasuredBody<B> {
    fn drop(&mut self) {
        // The transport drops an empty trailers-only body without polling it; any other body
        // dropped before its end is a stream the client reset, a connection that went away, or
        // one cut at the end of shutdown's grace period.
        self.finish(None, "CANCELLED");
    }
}

/// Returns the name of the `grpc-status` in `headers`, if there is one.
fn status_code(headers: &http::HeaderMap) -> Option<&'static str> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(|code| code_name(tonic::Code::from_i32(code)))
}

fn record(method: &'static str, code: &'static str, started: Instant) {
    ::metrics::histogram!(metrics::GRPC_REQUEST_DURATION_SECONDS, "method" => method, "code" => code)
        .record(started.elapsed().as_secs_f64());
}

/// The gRPC paths measured under their own `method` label (its last segment).
pub(crate) const METHODS: [&str; 8] = [
    "/exposure.v1.KeyUpload/UploadDiagnosisKeys",
    "/exposure.v1.KeyUpload/IssueUploadCodes",
    "/exposure.v1.Distribution/ListBatches",
    "/exposure.v1.Distribution/GetBatch",
    "/exposure.v1.Distribution/GetConfirmBucket",
    "/exposure.v1.Distribution/GetSigningKeys",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Returns the method label of a gRPC path; unknown paths share one label, so a scanner
/// cannot blow up the label set.
pub(crate) fn method_label(path: &str) -> &'static str {
    METHODS
        .iter()
        .find(|method| **method == path)
        .map_or("other", |method| {
            method.rsplit('/').next().unwrap_or("other")
        })
}

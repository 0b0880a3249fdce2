//! The tower layer around every gRPC call: it records the call's latency by method and status
//! code (`exposure_grpc_request_duration_seconds`); calls shed by [`crate::admission`] arrive
//! here as RESOURCE_EXHAUSTED answers. Bodies pass through untouched.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
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

impl<S, Body, ResponseBody> Service<http::Request<Body>> for RequestMetrics<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResponseBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await.map_err(Into::into);
            let code = match &result {
                // Unary errors arrive as trailers-only responses, with the status in the headers;
                // a successful call carries its status in the trailers, after this point.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or("OK", |code| code_name(tonic::Code::from_i32(code))),
                Err(_) => "UNKNOWN",
            };
            ::metrics::histogram!(metrics::GRPC_REQUEST_DURATION_SECONDS, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Returns the method label of a gRPC path; unknown paths share one label, so a scanner
/// cannot blow up the label set.
fn method_label(path: &str) -> &'static str {
    const METHODS: [&str; 7] = [
        "/exposure.v1.KeyUpload/UploadDiagnosisKeys",
        "/exposure.v1.Distribution/ListBatches",
        "/exposure.v1.Distribution/GetBatch",
        "/exposure.v1.Distribution/GetConfirmBucket",
        "/exposure.v1.Distribution/GetSigningKeys",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ];
    METHODS
        .iter()
        .find(|method| **method == path)
        .map_or("other", |method| {
            method.rsplit('/').next().unwrap_or("other")
        })
}

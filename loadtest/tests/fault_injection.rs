//! Fault injection: the load generator against a gRPC server that stalls one chosen request,
//! which is how a server hiccup looks to a load generator. The real exposure server cannot be
//! made to stall on request number N, so these two tests (the coordinated-omission correction and
//! the per-request timeout) use a `grpc.health.v1.Health` service that can. Every other runner
//! behaviour is tested against the real server in `tests/tests/loadtest.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exposure_loadtest::{RunOptions, Scenario, Target, run_scenario};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A health service that answers at once, except request number `stall_at`, which it holds for
/// `stall`.
struct StallingHealth {
    answered: AtomicU64,
    stall_at: u64,
    stall: Duration,
}

#[tonic::async_trait]
impl Health for StallingHealth {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if self.answered.fetch_add(1, Ordering::SeqCst) == self.stall_at {
            tokio::time::sleep(self.stall).await;
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("this test server does not watch"))
    }
}

/// Starts the stalling server on a loopback port; it runs until the test's runtime ends.
async fn start_stalling_server(stall_at: u64, stall: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = listener.local_addr().expect("address");
    let service = HealthServer::new(StallingHealth {
        answered: AtomicU64::new(0),
        stall_at,
        stall,
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    address
}

fn noop_options(address: SocketAddr) -> RunOptions {
    let target = Target::parse(&format!("http://{address}"), false).expect("loopback target");
    let mut options = RunOptions::new(target, Scenario::Noop);
    options.duration = Duration::from_secs(30);
    options.concurrency = 4;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_every_request_it_delayed() {
    // One worker at 200 requests/s; request 20 stalls 400 ms, so about 80 requests fall due while
    // the worker waits. Corrected latency counts each from its due time; the uncorrected service
    // time sees one slow request and a fast median.
    let address = start_stalling_server(20, Duration::from_millis(400)).await;
    let mut options = noop_options(address);
    options.concurrency = 1;
    options.duration = Duration::from_millis(1500);
    options.rps = Some(200.0);
    let report = run_scenario(&options).await.expect("run");
    assert_eq!(report.count, 300);
    let corrected = report.latency_ms;
    let service = report.service_time_ms.expect("fixed rate");
    assert!(
        corrected.max >= 390.0,
        "the stalled request itself: {corrected:?}"
    );
    assert!(service.max >= 390.0, "{service:?}");
    assert!(
        corrected.p75 > service.p75,
        "delayed requests carry the stall: {corrected:?} vs {service:?}"
    );
    assert!(
        corrected.p90 >= 100.0,
        "over 10 % of requests waited behind the stall: {corrected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_request_timeout_is_reported_as_deadline_exceeded() {
    let address = start_stalling_server(0, Duration::from_secs(5)).await;
    let mut options = noop_options(address);
    options.concurrency = 1;
    options.requests = 3;
    options.timeout = Duration::from_millis(200);
    let report = run_scenario(&options).await.expect("run");
    assert_eq!(report.count, 3);
    assert_eq!(
        report.status_codes.get("DEADLINE_EXCEEDED"),
        Some(&1),
        "{:?}",
        report.status_codes
    );
    assert_eq!(report.errors, 1);
}

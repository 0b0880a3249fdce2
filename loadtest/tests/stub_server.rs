//! The load generator against a stub gRPC server that answers only `grpc.health.v1.Health`, so
//! the runner, the schedule and the coordinated-omission correction are checked end to end
//! without building the real server (its end-to-end tests are in `tests/tests/loadtest.rs`).
//!
//! The stub can stall one request, which is how a server hiccup looks to a load generator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exposure_loadtest::cli::{Cli, ExitStatus, execute};
use exposure_loadtest::{RunOptions, Scenario, Target, run_scenario};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A health service that answers at once, except request number `stall_at`, which it holds for
/// `stall`.
struct StubHealth {
    answered: AtomicU64,
    stall_at: u64,
    stall: Duration,
}

#[tonic::async_trait]
impl Health for StubHealth {
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
        Err(Status::unimplemented("the stub does not watch"))
    }
}

/// Starts the stub on a loopback port; it runs until the test's runtime ends.
async fn start_stub(stall_at: u64, stall: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = listener.local_addr().expect("address");
    let service = HealthServer::new(StubHealth {
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
async fn closed_loop_stops_at_the_request_count() {
    let address = start_stub(u64::MAX, Duration::ZERO).await;
    let mut options = noop_options(address);
    options.requests = 500;
    options.warmup = 20;
    let report = run_scenario(&options).await.expect("run");
    assert_eq!(report.count, 500);
    assert_eq!(report.errors, 0);
    assert_eq!(report.status_codes.get("OK"), Some(&500));
    assert_eq!(
        report
            .histogram
            .iter()
            .map(|bucket| bucket.count)
            .sum::<u64>(),
        500
    );
    assert!(
        report.service_time_ms.is_none(),
        "closed loops have no separate service time"
    );
    assert!(report.rps > 0.0 && report.duration_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_stops_at_the_deadline_with_the_scheduled_count() {
    let address = start_stub(u64::MAX, Duration::ZERO).await;
    let mut options = noop_options(address);
    options.duration = Duration::from_secs(1);
    options.rps = Some(250.0);
    let report = run_scenario(&options).await.expect("run");
    assert_eq!(report.count, 250, "1 s at 250/s");
    assert_eq!(report.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_every_request_it_delayed() {
    // One worker at 200 requests/s; request 20 stalls 400 ms, so about 80 requests fall due while
    // the worker waits. Corrected latency counts each from its due time; the uncorrected service
    // time sees one slow request and a fast median.
    let address = start_stub(20, Duration::from_millis(400)).await;
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
    let address = start_stub(0, Duration::from_secs(5)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_exit_status_follows_the_slo() {
    let address = start_stub(u64::MAX, Duration::ZERO).await;
    let target = format!("http://{address}");
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("report.json");
    let output = output.to_str().expect("utf-8 path");
    let plot = dir.path().join("plot.svg");
    let plot = plot.to_str().expect("utf-8 path");
    let run = |slo: &[&str]| {
        let mut arguments = vec![
            "exposure-loadtest",
            "run",
            "--target",
            &target,
            "--scenario",
            "noop",
            "--requests",
            "200",
            "--format",
            "json",
            "--output",
            output,
            "--plot",
            plot,
        ];
        arguments.extend_from_slice(slo);
        Cli::parse_from_args(arguments).expect("valid command line")
    };
    assert_eq!(
        execute(run(&["--max-error-rate", "0", "--min-rps", "1"]))
            .await
            .expect("run"),
        ExitStatus::Success
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output).expect("report")).expect("json");
    assert_eq!(json["count"], 200);
    assert_eq!(json["slo"]["passed"], true);
    assert!(
        std::fs::read_to_string(plot)
            .expect("plot")
            .contains("</svg>")
    );

    assert_eq!(
        execute(run(&["--p99-max-ms", "0.000001"]))
            .await
            .expect("run"),
        ExitStatus::SloBreached
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output).expect("report")).expect("json");
    assert_eq!(json["slo"]["passed"], false);

    let remote = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--scenario",
        "noop",
        "--target",
        "http://192.0.2.1:50051",
    ])
    .expect("valid command line");
    assert_eq!(
        execute(remote).await.expect("usage"),
        ExitStatus::Usage,
        "non-loopback targets need --allow-remote"
    );
}

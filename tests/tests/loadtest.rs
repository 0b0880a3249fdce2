//! `exposure-loadtest` against a real server: a bounded run of every scenario whose report adds
//! up with every request `OK`; a wrong token reported as `UNAUTHENTICATED` rather than a crash;
//! the run bounds (request count, fixed-rate schedule, warmup); SLO flags that exit 2 when
//! breached; the JSON, summary and SVG outputs; the demo from upload to confirmed exposure; and a
//! bounded run of every attack of issue 18 beside the legitimate mix, whose report must carry
//! both phases, what the attack did and the server's memory and descriptors.
//!
//! Runs last a second or two each. Nothing here asserts a speed: counts are fixed by the
//! schedule, not by how fast this machine is.

use std::time::Duration;

use exposure_loadtest::cli::{Cli, ExitStatus, execute};
use exposure_loadtest::client::BearerToken;
use exposure_loadtest::demo::{DemoOptions, run_demo};
use exposure_loadtest::report::{ATTACK_GOALS, AttackReport};
use exposure_loadtest::scenario::attack::{Attack, AttackPlan};
use exposure_loadtest::{
    AttackOptions, Report, RunOptions, Scenario, Target, run_attack, run_scenario,
};
use exposure_server::Clock;
use exposure_tests::TestServer;

/// Options for a short run of `scenario` against `server`.
fn options(server: &TestServer, scenario: Scenario) -> RunOptions {
    let mut options = RunOptions::new(
        Target::parse(&server.url, false).expect("loopback target"),
        scenario,
    );
    options.token = Some(BearerToken::new(&server.token).expect("token"));
    options.duration = Duration::from_millis(1500);
    options.concurrency = 4;
    options.connections = 2;
    options
}

/// Checks that a report adds up and that every measured request succeeded.
fn assert_clean(report: &Report) {
    assert!(report.count > 0, "{} measured nothing", report.scenario);
    assert_eq!(
        report.errors, 0,
        "{}: {:?}",
        report.scenario, report.error_distribution
    );
    assert!(report.error_distribution.is_empty());
    assert_eq!(
        report.status_codes.len(),
        1,
        "only OK: {:?}",
        report.status_codes
    );
    assert_eq!(report.status_codes.get("OK"), Some(&report.count));
    assert_eq!(
        report
            .histogram
            .iter()
            .map(|bucket| bucket.count)
            .sum::<u64>(),
        report.count
    );
    let latency = &report.latency_ms;
    assert!(
        latency.min <= latency.p50 && latency.p50 <= latency.p90,
        "{latency:?}"
    );
    assert!(
        latency.p90 <= latency.p99 && latency.p99 <= latency.p999 && latency.p999 <= latency.max,
        "{latency:?}"
    );
    assert!(report.duration_s > 0.0);
    let expected_rps = report.count as f64 / report.duration_s;
    assert!(
        (report.rps - expected_rps).abs() <= 0.01 * expected_rps + 0.01,
        "{} vs {expected_rps}",
        report.rps
    );
    assert!(report.timeline.iter().map(|point| point.rps).sum::<f64>() > 0.0);
}

/// The encoded answer to a case whose 14 keys are all accepted: `keys_accepted` (field 1,
/// varint) = 14, the bytes `08 0e`.
const ANSWER_BYTES: u64 = 2;

/// Uploads a few cases with the tool and waits until the publisher has published a batch.
async fn publish_something(server: &TestServer) {
    let mut upload = options(server, Scenario::Upload);
    upload.requests = 3;
    upload.concurrency = 1;
    assert_clean(&run_scenario(&upload).await.expect("upload run"));
    server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_run_stores_every_case() {
    // The run uploads thousands of cases a second on purpose: no per-authority rate limit.
    let server = TestServer::start_with(Clock::System, |config| {
        config.authority_uploads_per_minute = 0;
        config.authority_keys_per_day = 0;
    })
    .await;
    let report = run_scenario(&options(&server, Scenario::Upload))
        .await
        .expect("upload run");
    assert_clean(&report);
    assert_eq!(report.scenario, "upload");
    assert_eq!(report.bytes_received, report.count * ANSWER_BYTES);
    assert!(
        report.per_rpc.is_none(),
        "single-RPC scenarios have no per_rpc"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_code_run_issues_codes_then_uploads_one_case_per_code() {
    // Thousands of codes and code uploads a second on purpose: no per-authority limits.
    let server = TestServer::start_with(Clock::System, |config| {
        config.authority_codes_per_minute = 0;
        config.authority_uploads_per_minute = 0;
        config.authority_keys_per_day = 0;
    })
    .await;
    let mut codes = options(&server, Scenario::UploadCode);
    codes.requests = 40;
    let report = run_scenario(&codes).await.expect("upload-code run");
    assert_clean(&report);
    assert_eq!(report.scenario, "upload-code");
    assert_eq!(report.count, 40, "one upload per issued code");
    assert_eq!(report.bytes_received, 40 * ANSWER_BYTES);
    assert_eq!(report.skipped, 0);

    // Fewer codes than requests: the uploads beyond them send nothing.
    codes.codes = Some(5);
    codes.requests = 12;
    let report = run_scenario(&codes).await.expect("upload-code run");
    assert_eq!(report.status_codes.get("OK"), Some(&5), "{report:?}");
    assert_eq!(report.skipped, 7);
    assert_eq!(report.errors, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_code_run_fails_before_measuring_when_codes_are_refused() {
    // The server's default code limit (300 a minute per authority) refuses 400 codes: the run
    // stops before it starts and says which server flag governs it.
    let server = TestServer::start().await;
    let mut codes = options(&server, Scenario::UploadCode);
    codes.requests = 400;
    let error = run_scenario(&codes).await.expect_err("codes refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("--authority-codes-per-minute"),
        "{message}"
    );
    assert!(message.contains("RESOURCE_EXHAUSTED"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoy_run_is_answered_like_uploads_without_a_credential() {
    let server = TestServer::start().await;
    let mut decoys = options(&server, Scenario::Decoy);
    decoys.token = None;
    decoys.requests = 30;
    let report = run_scenario(&decoys).await.expect("decoy run");
    assert_clean(&report);
    assert_eq!(report.scenario, "decoy");
    assert_eq!(report.count, 30);
    assert_eq!(
        report.bytes_received,
        30 * ANSWER_BYTES,
        "a decoy's answer has a real one's shape"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_run_lists_batches() {
    let server = TestServer::start().await;
    publish_something(&server).await;
    let report = run_scenario(&options(&server, Scenario::Poll))
        .await
        .expect("poll run");
    assert_clean(&report);
    assert!(
        report.bytes_received > 0,
        "listings carry the published batch"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_run_streams_published_batches() {
    let server = TestServer::start().await;
    let nothing_yet = run_scenario(&options(&server, Scenario::Download))
        .await
        .expect_err("nothing published");
    assert!(
        format!("{nothing_yet:#}").contains("no batch is published"),
        "{nothing_yet:#}"
    );
    publish_something(&server).await;
    let report = run_scenario(&options(&server, Scenario::Download))
        .await
        .expect("download run");
    assert_clean(&report);
    assert!(
        report.bytes_received >= report.count * 1000,
        "every download is a whole batch file"
    );
    assert!(report.throughput_mb_s > 0.0);
    server.stop().await;
}

/// Options for a short HTTP run of `scenario` against the server's HTTP listener.
fn http_options(server: &TestServer, scenario: Scenario) -> RunOptions {
    let mut options = options(server, scenario);
    options.target = Target::parse(&server.http_url, false).expect("loopback http target");
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_poll_run_reads_the_region_index() {
    let server = TestServer::start().await;
    let nothing_yet = run_scenario(&http_options(&server, Scenario::HttpPoll))
        .await
        .expect("a run against a region that published nothing");
    assert_eq!(
        nothing_yet.status_codes.get("NOT_FOUND"),
        Some(&nothing_yet.count),
        "an unpublished region's index is 404, reported as NOT_FOUND"
    );
    publish_something(&server).await;
    let report = run_scenario(&http_options(&server, Scenario::HttpPoll))
        .await
        .expect("http poll run");
    assert_clean(&report);
    assert_eq!(report.scenario, "http-poll");
    // An index of one region with one day: latest_sequence, prefix bits and one day number.
    assert!(report.bytes_received >= report.count * 8);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_download_run_reads_whole_batches() {
    let server = TestServer::start().await;
    let nothing_yet = run_scenario(&http_options(&server, Scenario::HttpDownload))
        .await
        .expect_err("nothing published");
    assert!(
        format!("{nothing_yet:#}").contains("no batch is published"),
        "{nothing_yet:#}"
    );
    publish_something(&server).await;
    let listing = server.wait_for_batches(|_| true).await;
    let sizes: Vec<u64> = listing.batches.iter().map(|info| info.size_bytes).collect();
    let report = run_scenario(&http_options(&server, Scenario::HttpDownload))
        .await
        .expect("http download run");
    assert_clean(&report);
    assert_eq!(report.scenario, "http-download");
    assert!(
        report.bytes_received >= report.count * sizes.iter().min().copied().unwrap_or(1),
        "every download is a whole batch file"
    );
    assert!(report.throughput_mb_s > 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_scenario_aimed_at_the_grpc_port_fails_to_start() {
    let server = TestServer::start().await;
    let error = run_scenario(&options(&server, Scenario::HttpPoll))
        .await
        .expect_err("gRPC port does not serve the index");
    assert!(format!("{error:#}").contains("HTTP listener"), "{error:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_run_fetches_buckets() {
    let server = TestServer::start().await;
    publish_something(&server).await;
    let report = run_scenario(&options(&server, Scenario::Confirm))
        .await
        .expect("confirm run");
    assert_clean(&report);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_run_checks_health() {
    let server = TestServer::start().await;
    let report = run_scenario(&options(&server, Scenario::Noop))
        .await
        .expect("noop run");
    assert_clean(&report);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn province_run_mixes_every_rpc() {
    let server = TestServer::start().await;
    publish_something(&server).await;
    let mut province = options(&server, Scenario::Province);
    province.duration = Duration::from_secs(2);
    province.concurrency = 16;
    let report = run_scenario(&province).await.expect("province run");
    assert_clean(&report);
    assert_eq!(
        report.skipped, 0,
        "a batch was published, so every download had one to fetch"
    );
    let per_rpc = report
        .per_rpc
        .as_ref()
        .expect("mixed scenarios report per RPC");
    assert_eq!(
        per_rpc.values().map(|rpc| rpc.count).sum::<u64>(),
        report.count
    );
    assert_eq!(per_rpc.values().map(|rpc| rpc.errors).sum::<u64>(), 0);
    // Every stream starts at t = 0: one upload, then 208.7 polls/s and downloads/s, and
    // 751,416 phones × 420,000 lookups an hourly batch / 65,536 / 3,600 s = 1,337.66 confirms/s,
    // for 2 s: 2,675.3, so 2,676 (the first at 0). The counts follow from the schedule, not
    // from this machine's speed.
    assert_eq!(per_rpc["UploadDiagnosisKeys"].count, 1);
    assert_eq!(per_rpc["ListBatches"].count, 418);
    assert_eq!(per_rpc["GetBatch"].count, 418);
    assert_eq!(per_rpc["GetConfirmBucket"].count, 2_676);
    assert!(per_rpc["GetBatch"].bytes_received > 0);
    assert_eq!(report.settings.speedup, Some(1.0));
    assert!(
        report.service_time_ms.is_some(),
        "province runs at a fixed rate"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_reported_as_unauthenticated() {
    let server = TestServer::start().await;
    let mut upload = options(&server, Scenario::Upload);
    upload.token = Some(BearerToken::new("not-the-authority-token").expect("token"));
    upload.requests = 25;
    let report = run_scenario(&upload)
        .await
        .expect("the run itself succeeds");
    assert_eq!(report.count, 25);
    assert_eq!(report.errors, 25);
    assert_eq!(
        report.status_codes.get("UNAUTHENTICATED"),
        Some(&25),
        "{:?}",
        report.status_codes
    );
    assert_eq!(report.error_distribution.values().sum::<u64>(), 25);
    assert!(
        report
            .error_distribution
            .keys()
            .all(|error| error.starts_with("UNAUTHENTICATED"))
    );
    let json = serde_json::to_string(&report).expect("json");
    assert!(
        !json.contains("not-the-authority-token"),
        "the token never reaches the report"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_stop_at_their_request_count_and_leave_warmup_out() {
    let server = TestServer::start().await;
    let mut counted = options(&server, Scenario::Noop);
    counted.duration = Duration::from_secs(60);
    counted.requests = 200;
    counted.warmup = 50;
    let report = run_scenario(&counted).await.expect("noop run");
    assert_clean(&report);
    assert_eq!(report.count, 200, "warmup requests are not counted");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_sends_exactly_the_scheduled_requests() {
    let server = TestServer::start().await;
    let mut fixed = options(&server, Scenario::Poll);
    fixed.rps = Some(200.0);
    let report = run_scenario(&fixed).await.expect("poll run");
    assert_clean(&report);
    assert_eq!(report.count, 300, "1.5 s at 200/s");
    assert_eq!(report.settings.rate_rps, Some(200.0));
    let service = report
        .service_time_ms
        .expect("fixed-rate runs report uncorrected service time too");
    assert!(
        service.p50 <= report.latency_ms.p50 + 0.001,
        "corrected latency is never below service time"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_writes_json_and_plot_and_passes_a_met_slo() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("report.json");
    let plot_path = dir.path().join("plot.svg");
    let cli = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--target",
        server.url.as_str(),
        "--scenario",
        "noop",
        "--duration",
        "1s",
        "--concurrency",
        "4",
        "--format",
        "json",
        "--output",
        json_path.to_str().expect("utf-8 path"),
        "--plot",
        plot_path.to_str().expect("utf-8 path"),
        "--max-error-rate",
        "0.0",
        "--min-rps",
        "1",
    ])
    .expect("valid command line");
    assert_eq!(execute(cli).await.expect("run"), ExitStatus::Success);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("report written")).expect("json");
    for field in [
        "scenario",
        "count",
        "errors",
        "duration_s",
        "rps",
        "latency_ms",
        "status_codes",
        "histogram",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    for percentile in [
        "p50", "p75", "p90", "p95", "p99", "p999", "max", "min", "mean",
    ] {
        assert!(
            json["latency_ms"][percentile].is_number(),
            "latency_ms.{percentile}"
        );
    }
    assert_eq!(json["scenario"], "noop");
    assert_eq!(json["errors"], 0);
    assert_eq!(json["status_codes"]["OK"], json["count"]);
    assert_eq!(json["slo"]["passed"], true);
    let svg = std::fs::read_to_string(&plot_path).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breached_slo_exits_with_status_2() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("report.json");
    // No gRPC call answers in a nanosecond, and no 2-core machine does a billion a second.
    for slo in [["--p99-max-ms", "0.000001"], ["--min-rps", "1000000000"]] {
        let cli = Cli::parse_from_args([
            "exposure-loadtest",
            "run",
            "--target",
            server.url.as_str(),
            "--scenario",
            "noop",
            "--requests",
            "50",
            "--format",
            "json",
            "--output",
            json_path.to_str().expect("utf-8 path"),
            slo[0],
            slo[1],
        ])
        .expect("valid command line");
        assert_eq!(
            execute(cli).await.expect("run"),
            ExitStatus::SloBreached,
            "{slo:?}"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json_path).expect("report")).expect("json");
        assert_eq!(json["slo"]["passed"], false);
        assert!(
            json["slo"]["verdict"]
                .as_str()
                .expect("verdict")
                .starts_with("SLO BREACH")
        );
    }
    // Errors breach --max-error-rate: every upload with a wrong token fails.
    let cli = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--target",
        server.url.as_str(),
        "--scenario",
        "upload",
        "--token",
        "wrong",
        "--requests",
        "10",
        "--output",
        json_path.to_str().expect("utf-8 path"),
        "--max-error-rate",
        "0.01",
    ])
    .expect("valid command line");
    assert_eq!(execute(cli).await.expect("run"), ExitStatus::SloBreached);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tells_the_whole_story() {
    let server = TestServer::start().await;
    let options = DemoOptions::new(
        Target::parse(&server.url, false).expect("target"),
        BearerToken::new(&server.token).expect("token"),
        exposure_tests::REGION,
        Duration::from_secs(30),
    )
    .with_http(Some(
        Target::parse(&server.http_url, false).expect("http target"),
    ));
    let mut transcript = Vec::new();
    let outcome = run_demo(&options, &mut transcript).await.expect("demo");
    let transcript = String::from_utf8(transcript).expect("utf-8");
    assert!(outcome.exposed_phone_hits >= 1, "{transcript}");
    assert!(outcome.exposed_phone_confirmed, "{transcript}");
    assert!(!outcome.other_phone_confirmed, "{transcript}");
    assert!(outcome.batch_bytes > 0 && outcome.batch_sequence >= 1);
    for step in 1..=8 {
        assert!(
            transcript.contains(&format!("[{step}/8]")),
            "step {step} missing:\n{transcript}"
        );
    }
    assert!(transcript.contains("exposure CONFIRMED"), "{transcript}");
    let gaen_file = outcome.gaen_file.expect("the case's GAEN export file");
    assert!(
        gaen_file.starts_with(&format!("v1/regions/{}/gaen/", exposure_tests::REGION)),
        "{gaen_file}"
    );
    assert!(transcript.contains("[GAEN] Export file:"), "{transcript}");
    assert!(
        transcript.contains("one-time upload code") && transcript.contains("UploadCode"),
        "the case goes in with a code, as a phone uploads it:\n{transcript}"
    );
    assert!(
        !transcript.contains(&server.token),
        "the token is never printed"
    );
    server.stop().await;
}

/// A server for attack runs: the mix uploads and issues codes a few times a second, so no
/// per-authority limit; a batch is published, so the mix downloads and `zero-window` has
/// something to ask for.
async fn attack_server() -> TestServer {
    let server = TestServer::start_with(Clock::System, |config| {
        config.authority_codes_per_minute = 0;
        config.authority_uploads_per_minute = 0;
        config.authority_keys_per_day = 0;
    })
    .await;
    publish_something(&server).await;
    server
}

/// A bounded attack run against `server`: 1 s phases, a short settle, few attackers, the
/// server's process sampled. The server runs inside this test process, so its figures include
/// the test's own (the attackers' sockets among them): here they only have to be measured.
fn attack_options(server: &TestServer, attack: Attack, attackers: usize) -> AttackOptions {
    let target = Target::parse(&server.url, false).expect("loopback target");
    let mut mix = RunOptions::new(target.clone(), Scenario::Mix);
    mix.token = Some(BearerToken::new(&server.token).expect("token"));
    mix.duration = Duration::from_secs(1);
    mix.concurrency = 16;
    mix.connections = 2;
    mix.timeout = Duration::from_secs(5);
    AttackOptions {
        mix,
        plan: AttackPlan {
            attack,
            target,
            attackers,
            streams: 8,
            max_attempts: 1_000_000,
            trickle: Duration::from_millis(200),
            region: exposure_tests::REGION.to_owned(),
            token: Some(BearerToken::new(&server.token).expect("token")),
            batch_id: None,
            console: None,
        },
        settle: Duration::from_millis(300),
        server_pid: Some(std::process::id()),
        // The test server publishes every 200 ms with no release delay.
        check_acknowledged: Some(Duration::from_secs(20)),
        goals: ATTACK_GOALS,
    }
}

/// Checks the fields every attack report has: both phases measured the whole mix, the quiet
/// one cleanly; success rates are fractions that match the counts; the server's memory and
/// descriptors were sampled in both phases and after; the verdict judged all four goals.
fn assert_attack_report(report: &AttackReport, attack: Attack) {
    assert_eq!(report.attack, attack.name());
    assert_eq!(report.attack_stats.attack, attack.name());
    assert_clean(&report.quiet.legit);
    assert_eq!(report.quiet.success_rate, 1.0, "the mix alone never fails");
    let per_rpc = report
        .quiet
        .legit
        .per_rpc
        .as_ref()
        .expect("the mix is mixed");
    for method in [
        "UploadDiagnosisKeys",
        "UploadDiagnosisKeys (code)",
        "ListBatches",
        "GetBatch",
        "Health/Check",
        "connect + Health/Check",
    ] {
        let rpc = per_rpc
            .get(method)
            .unwrap_or_else(|| panic!("{method} in {per_rpc:?}"));
        assert!(rpc.count >= 1, "{method} was sent");
    }
    // 76 requests a second for 1 s, the first of each stream at t = 0.
    assert!(
        (76..=82).contains(&report.quiet.legit.count),
        "{}",
        report.quiet.legit.count
    );
    let attacked = &report.attacked.legit;
    assert!(attacked.count > 0, "the attacked phase measured the mix");
    let ok = attacked.status_codes.get("OK").copied().unwrap_or(0);
    assert!(
        (report.attacked.success_rate - ok as f64 / attacked.count as f64).abs() < 1e-5,
        "{} vs {ok}/{}",
        report.attacked.success_rate,
        attacked.count
    );
    for (phase, usage) in [
        ("quiet", &report.quiet.server),
        ("attacked", &report.attacked.server),
    ] {
        let usage = usage.unwrap_or_else(|| panic!("{phase}: the server was sampled"));
        assert_eq!(usage.pid, std::process::id());
        assert!(usage.samples >= 2, "{phase}: {usage:?}");
        assert!(
            usage.rss_kib.start > 1024 && usage.rss_kib.max >= usage.rss_kib.end,
            "{phase}: {usage:?}"
        );
        // stdin, stdout, stderr, RocksDB's files, the listeners: more than a handful.
        assert!(
            usage.fds.start > 10 && usage.fds.max >= usage.fds.end,
            "{phase}: {usage:?}"
        );
    }
    let after = report.after.expect("read after the attack");
    assert!(after.rss_kib > 0 && after.fds > 0);
    let verdict = &report.verdict;
    assert_eq!(verdict.goals, ATTACK_GOALS);
    assert!(verdict.rss_met.is_some() && verdict.fds_met.is_some());
    // Every upload the server acknowledged in both phases was published: each key of a past
    // day found in the confirm store by its digest, computed by the matcher library.
    let acknowledged = report
        .acknowledged
        .as_ref()
        .expect("acknowledged uploads read back");
    assert!(
        acknowledged.uploads_acknowledged >= 2,
        "the mix uploads in both phases: {acknowledged:?}"
    );
    assert_eq!(
        acknowledged.keys_checked,
        acknowledged.uploads_acknowledged * 7,
        "seven keys of yesterday in every case"
    );
    assert_eq!(
        acknowledged.keys_found, acknowledged.keys_checked,
        "nothing acknowledged lost: {acknowledged:?}"
    );
    assert_eq!(verdict.nothing_lost_met, Some(true));
    assert_eq!(
        verdict.passed,
        verdict.success_met
            && verdict.p99_met
            && verdict.rss_met == Some(true)
            && verdict.fds_met == Some(true)
            && verdict.nothing_lost_met == Some(true)
    );
    assert!(verdict.line.starts_with("ATTACK "), "{}", verdict.line);
    assert!(report.attack_stats.attempts >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_readers_hold_get_batch_calls_beside_the_mix() {
    let server = attack_server().await;
    let report = run_attack(&attack_options(&server, Attack::ZeroWindow, 3))
        .await
        .expect("attack run");
    assert_attack_report(&report, Attack::ZeroWindow);
    let stats = &report.attack_stats;
    assert!(stats.connections_opened >= 3, "{stats:?}");
    assert!(stats.calls_started >= 3 * 8, "{stats:?}");
    assert!(stats.streams_held_peak >= 1, "{stats:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_holds_its_sockets_beside_the_mix() {
    let server = attack_server().await;
    let report = run_attack(&attack_options(&server, Attack::ConnectionFlood, 40))
        .await
        .expect("attack run");
    assert_attack_report(&report, Attack::ConnectionFlood);
    let stats = &report.attack_stats;
    assert!(stats.connections_opened >= 40, "{stats:?}");
    assert!(stats.connections_held_peak >= 1, "{stats:?}");
    assert_eq!(stats.calls_started, 0, "a flood sends no call");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upload_bodies_are_held_or_refused_beside_the_mix() {
    let server = attack_server().await;
    let report = run_attack(&attack_options(&server, Attack::StalledUpload, 2))
        .await
        .expect("attack run");
    assert_attack_report(&report, Attack::StalledUpload);
    let stats = &report.attack_stats;
    assert!(stats.connections_opened >= 2, "{stats:?}");
    assert!(stats.calls_started >= 2 * 8, "{stats:?}");
    // Whatever the server answered, an unfinished body is never a stored upload.
    assert!(!stats.outcomes.contains_key("OK"), "{:?}", stats.outcomes);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_uploads_are_all_refused_beside_the_mix() {
    let server = attack_server().await;
    let report = run_attack(&attack_options(&server, Attack::OddUpload, 2))
        .await
        .expect("attack run");
    assert_attack_report(&report, Attack::OddUpload);
    let outcomes = &report.attack_stats.outcomes;
    assert!(report.attack_stats.calls_started >= 4, "{outcomes:?}");
    let answered: u64 = outcomes.values().sum();
    assert!(answered >= 4, "{outcomes:?}");
    for shape in ["too-many-keys", "huge-key", "oversized", "bad-fields"] {
        assert!(
            outcomes.keys().any(|outcome| outcome.starts_with(shape)),
            "{shape} was sent: {outcomes:?}"
        );
    }
    for (outcome, count) in outcomes {
        assert!(
            !outcome.contains(": OK"),
            "an odd upload was accepted ({count}): {outcome}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_flood_from_the_command_line_writes_an_attack_report() {
    let server = attack_server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("watch-flood.json");
    let pid = std::process::id().to_string();
    let cli = Cli::parse_from_args([
        "exposure-loadtest",
        "attack",
        "--target",
        server.url.as_str(),
        "--attack",
        "watch-flood",
        "--token",
        server.token.as_str(),
        "--phase",
        "1s",
        "--settle",
        "300ms",
        "--concurrency",
        "16",
        "--streams",
        "16",
        "--warmup",
        "0",
        "--server-pid",
        pid.as_str(),
        "--check-acknowledged",
        "20s",
        "--format",
        "json",
        "--output",
        json_path.to_str().expect("utf-8 path"),
    ])
    .expect("valid command line");
    assert_eq!(execute(cli).await.expect("attack run"), ExitStatus::Success);
    let text = std::fs::read_to_string(&json_path).expect("report written");
    assert!(
        !text.contains(&server.token),
        "the token never reaches the report"
    );
    let report: AttackReport = serde_json::from_str(&text).expect("an attack report");
    assert_attack_report(&report, Attack::WatchFlood);
    let stats = &report.attack_stats;
    assert_eq!(
        stats.connections_opened, 1,
        "one connection, as in the issue"
    );
    assert!(stats.calls_started >= 16, "{stats:?}");
    assert!(
        stats.messages_received >= 1,
        "a watcher is told the current status first: {stats:?}"
    );
    server.stop().await;
}

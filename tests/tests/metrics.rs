//! The metrics operators read, checked against a real server: pending keys split into
//! releasable and embargoed (only releasable keys mean a stalled publisher), the RocksDB size
//! counting the blob files that hold the batches, GetBatch measured to the end of its stream with
//! the outcome it really had, and the Grafana dashboard and alert rules in `deploy/` naming only
//! metrics (and label values) the server exports.
//!
//! The metrics recorder is global to the test process ([`exposure_tests::scrape`]), so each test
//! runs one server at a time and reads its own deltas.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::{
    DiagnosisKey, GetBatchRequest, GetConfirmBucketRequest, GetSigningKeysRequest,
    IssueUploadCodesRequest, ReportType,
};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::http_client::HttpClient;
use exposure_tests::scrape::{self, Scrape};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;
const PENDING: &str = "exposure_pending_keys";
const GRPC_CALLS: &str = "exposure_grpc_request_duration_seconds_count";
const GRPC_SECONDS: &str = "exposure_grpc_request_duration_seconds_sum";

/// A GAEN key valid all day `day` (days since the epoch).
fn day_key(byte: u8, day: u64) -> DiagnosisKey {
    gaen(
        key16(byte),
        u32::try_from(day * 144).expect("interval"),
        144,
    )
}

/// A GAEN key valid all of yesterday, by the system clock: releasable at once in a test server.
fn yesterday_key(byte: u8) -> DiagnosisKey {
    let today = Clock::System.now() / DAY;
    day_key(byte, today - 1)
}

/// Returns the pending-key gauges as (releasable, embargoed).
fn pending(scrape: &Scrape) -> (Option<f64>, Option<f64>) {
    (
        scrape.value(PENDING, &[("state", "releasable")]),
        scrape.value(PENDING, &[("state", "embargoed")]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_keys_split_releasable_from_embargoed() {
    scrape::install();
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.release_delay = Duration::from_secs(2 * 3600);
    })
    .await;
    // Today's key is broadcast until midnight: it stays embargoed until 02:00 tomorrow.
    server
        .upload(fixtures::upload("today", vec![day_key(1, TODAY)]))
        .await;
    scrape::until("one embargoed key, none releasable", |scrape| {
        pending(scrape) == (Some(0.0), Some(1.0))
    })
    .await;

    // A publisher that cannot write its digest file (the bulk-load folder is now a plain file)
    // fails every run: once the embargo is over, the key shows as releasable and unpublished.
    let ingest = server.data_dir().join("ingest");
    std::fs::remove_dir_all(&ingest).expect("remove the bulk-load folder");
    std::fs::write(&ingest, b"not a folder").expect("block the bulk-load folder");
    clock.set((TODAY + 1) * DAY + 2 * 3600 + 60);
    scrape::until("the key releasable but unpublished", |scrape| {
        pending(scrape) == (Some(1.0), Some(0.0))
    })
    .await;
    assert!(
        server.list_batches().await.batches.is_empty(),
        "nothing was published"
    );

    // With the folder back, the next run publishes it and nothing is pending.
    std::fs::remove_file(&ingest).expect("unblock");
    std::fs::create_dir(&ingest).expect("bulk-load folder");
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    scrape::until("nothing pending", |scrape| {
        pending(scrape) == (Some(0.0), Some(0.0))
    })
    .await;
    server.stop().await;
}

/// Returns the total size of the files in `folder` whose names end with `suffix`.
fn size_of_files(folder: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(folder)
        .expect("read the database folder")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
        .map(|entry| entry.metadata().expect("metadata").len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_size_counts_the_blob_files_that_hold_the_batches() {
    scrape::install();
    // A batch of 250,000 32-bit elements is about 1.1 MB. Every element also has a confirm
    // digest in the table files (about 9 MB), so the batch is about a tenth of the store.
    let server = TestServer::start_with(Clock::System, |config| {
        // 1,737 synthetic keys of 144 elements: 250,128 elements.
        config.pad_min_keys = 1_737;
        config.fingerprint_bits = 32;
    })
    .await;
    let batch_bytes = server.publish_one_case(yesterday_key(1)).await.size_bytes;
    let (token, config) = (server.token.clone(), server.config.clone());
    // Stopping flushes the memtables: the batch file now lies in a blob file.
    let dir = server.stop().await;
    let db = dir.path().join("db");
    let blob_bytes = size_of_files(&db, ".blob");
    let table_bytes = size_of_files(&db, ".sst");
    assert!(
        blob_bytes >= batch_bytes,
        "the batch file lies in blob files: {blob_bytes} < {batch_bytes}"
    );
    assert!(
        blob_bytes as f64 > table_bytes as f64 * 0.08,
        "the batch ({blob_bytes}) is a sizeable part of the store (tables {table_bytes})"
    );

    // The restarted server's first publish run sets the gauge.
    let restarted = TestServer::restart(&dir, token, Clock::System, config).await;
    // Without the blob files the gauge would stay near the table files' size; the 5 % slack
    // covers table files on disk that RocksDB no longer counts.
    let with_blobs = table_bytes as f64 * 0.95 + blob_bytes as f64;
    let scrape = scrape::until("the size with the blob files", |scrape| {
        scrape
            .value("exposure_rocksdb_size_bytes", &[])
            .is_some_and(|bytes| bytes >= with_blobs)
    })
    .await;
    let reported = scrape
        .value("exposure_rocksdb_size_bytes", &[])
        .expect("gauge");
    assert!(
        reported <= (blob_bytes + table_bytes) as f64 * 2.0,
        "{reported} is the files' size, not more"
    );
    restarted.stop_kept().await;
}

/// Returns the number and total seconds of the GetBatch calls recorded with `code`.
fn get_batch_calls(scrape: &Scrape, code: &str) -> (f64, f64) {
    let labels = [("method", "GetBatch"), ("code", code)];
    (
        scrape.value(GRPC_CALLS, &labels).unwrap_or(0.0),
        scrape.value(GRPC_SECONDS, &labels).unwrap_or(0.0),
    )
}

/// Returns a distribution client whose HTTP/2 windows hold one chunk, so the server can run
/// only about one chunk ahead of what the test has read.
async fn narrow_client(server: &TestServer) -> DistributionClient<Channel> {
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    DistributionClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_batch_is_measured_to_the_end_of_its_stream_with_its_real_outcome() {
    scrape::install();
    let server = TestServer::start_with(Clock::System, |config| {
        // 1,737 synthetic keys of 144 elements: 250,128 elements.
        config.pad_min_keys = 1_737;
    })
    .await;
    let batch = server.publish_one_case(yesterday_key(1)).await;
    let request = GetBatchRequest {
        batch_id: batch.batch_id.clone(),
    };

    // A download read slowly to its end: OK, and the recorded time covers the reading.
    let before = get_batch_calls(&scrape::Scrape::parse(&scrape::render()), "OK");
    let pause = Duration::from_millis(100);
    let mut client = narrow_client(&server).await;
    let mut stream = client
        .get_batch(request.clone())
        .await
        .expect("download starts")
        .into_inner();
    let (mut received, mut chunks) = (0u64, 0u32);
    while let Some(chunk) = stream.message().await.expect("chunk") {
        received += chunk.data.len() as u64;
        chunks += 1;
        tokio::time::sleep(pause).await;
    }
    assert_eq!(received, batch.size_bytes);
    assert!(chunks >= 8, "{chunks} chunks");
    let scrape = scrape::until("the completed download", |scrape| {
        get_batch_calls(scrape, "OK").0 == before.0 + 1.0
    })
    .await;
    // The server can be at most about two chunks ahead of the reader, so the stream ended
    // after the reader's pauses behind all but the last few chunks.
    let recorded = get_batch_calls(&scrape, "OK").1 - before.1;
    let paused_behind = pause.as_secs_f64() * f64::from(chunks - 5);
    assert!(
        recorded >= paused_behind,
        "recorded {recorded} s, the reader paused {paused_behind} s before the end"
    );

    // A download abandoned after its first chunk is not OK but CANCELLED.
    let mut client = narrow_client(&server).await;
    let mut stream = client
        .get_batch(request)
        .await
        .expect("download starts")
        .into_inner();
    stream
        .message()
        .await
        .expect("first chunk")
        .expect("a chunk");
    drop(stream);
    drop(client);
    let scrape = scrape::until("the abandoned download", |scrape| {
        get_batch_calls(scrape, "CANCELLED").0 == 1.0
    })
    .await;
    assert_eq!(
        get_batch_calls(&scrape, "OK").0,
        before.0 + 1.0,
        "the abandoned download is not counted OK"
    );

    // A refused call is labelled with its status.
    let status = server
        .distribution_client()
        .await
        .get_batch(GetBatchRequest {
            batch_id: "0".repeat(64),
        })
        .await
        .expect_err("unknown batch");
    assert_eq!(status.code(), Code::NotFound);
    scrape::until("the refused download", |scrape| {
        get_batch_calls(scrape, "NOT_FOUND").0 == 1.0
    })
    .await;
    server.stop().await;
}

/// Returns every `exposure_…` metric name in `text`, with a histogram's series suffix.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("exposure_") {
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Returns the name of every metric `server/src/metrics.rs` declares (its `pub const`s).
fn declared_metrics() -> BTreeSet<String> {
    include_str!("../../server/src/metrics.rs")
        .lines()
        .filter(|line| line.starts_with("pub const "))
        .filter_map(|line| line.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// Returns every selector `name{label="value", ...}` of `expr` with its equality matchers.
fn selectors(expr: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found = Vec::new();
    for name in metric_names(expr) {
        for (at, _) in expr.match_indices(&name) {
            let after = &expr[at + name.len()..];
            let Some(body) = after.strip_prefix('{') else {
                continue;
            };
            let body = &body[..body.find('}').expect("closing brace")];
            let matchers = body
                .split(',')
                .filter_map(|matcher| {
                    let (label, value) = matcher.split_once('=')?;
                    // Regular-expression and negative matchers select nothing by themselves.
                    if label.ends_with('!') || value.starts_with('~') {
                        return None;
                    }
                    Some((
                        label.trim().to_owned(),
                        value.trim().trim_matches('"').to_owned(),
                    ))
                })
                .collect();
            found.push((name.clone(), matchers));
        }
    }
    found
}

/// Returns the metric family a series name belongs to (a histogram's `_bucket`, `_sum` and
/// `_count` series belong to the histogram).
fn family(name: &str, scrape: &Scrape) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && scrape.families().get(base).map(String::as_str) == Some("histogram")
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// Returns every PromQL expression of the Grafana dashboard (targets and variable queries).
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/exposure-server.json"))
            .expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(object) => {
                for (key, value) in object {
                    match (key.as_str(), value) {
                        ("expr" | "definition", serde_json::Value::String(expr)) => {
                            expressions.push(expr.clone());
                        }
                        _ => stack.push(value),
                    }
                }
            }
            serde_json::Value::Array(values) => stack.extend(values),
            _ => {}
        }
    }
    expressions
}

/// Metrics a server exports only with `--tls-cert` (tests/tests/tls.rs finds them from startup
/// on a TLS server); the servers here have no certificate.
fn tls_only(metric: &str) -> bool {
    metric.starts_with("exposure_tls_")
}

/// Returns the expression of every rule in `deploy/alerts.yml`.
fn alert_expressions() -> Vec<String> {
    include_str!("../../deploy/alerts.yml")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| {
            let expr = expr.trim();
            assert!(
                !expr.is_empty() && !expr.starts_with(['|', '>']),
                "write each alert expression on its line: {expr}"
            );
            expr.to_owned()
        })
        .collect()
}

/// Drives every kind of traffic that moves a metric: uploads (bearer, code, decoy, refused
/// code guesses), a publish run to a `file://` bucket, every phone call over gRPC and HTTP, and
/// a health check shed at its class's limit.
async fn drive_every_metric(server: &TestServer) {
    server
        .upload(fixtures::upload("case", vec![yesterday_key(1)]))
        .await;
    let listing = server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let batch_id = listing.batches[0].batch_id.clone();

    let mut upload = server.upload_client().await;
    let over_quota = upload
        .upload_diagnosis_keys(server.authorized(fixtures::upload("again", vec![yesterday_key(4)])))
        .await
        .expect_err("one upload a minute");
    assert_eq!(over_quota.code(), Code::ResourceExhausted);
    let issue = server.authorized(IssueUploadCodesRequest {
        region: REGION.into(),
        count: 1,
        report_type: ReportType::ConfirmedTest as i32,
        valid_for: 0,
        ..Default::default()
    });
    upload
        .issue_upload_codes(issue)
        .await
        .expect("codes issued");
    let decoy = fixtures::decoy(fixtures::upload("decoy", vec![yesterday_key(2)]), None);
    upload.upload_diagnosis_keys(decoy).await.expect("decoy");
    // One failed code attempt per client network and hour, charged before the look-up: the
    // second and third guesses are refused without one.
    for (attempt, expected) in [
        (1, Code::Unauthenticated),
        (2, Code::ResourceExhausted),
        (3, Code::ResourceExhausted),
    ] {
        let mut guess = tonic::Request::new(fixtures::upload(
            &format!("guess-{attempt}"),
            vec![yesterday_key(3)],
        ));
        guess.metadata_mut().insert(
            "authorization",
            "UploadCode 7K3QX-9M2PD".parse().expect("ascii"),
        );
        let status = upload
            .upload_diagnosis_keys(guess)
            .await
            .expect_err("a guessed code");
        assert_eq!(status.code(), expected);
    }

    let mut phone = server.distribution_client().await;
    fixtures::download(&mut phone, &batch_id).await;
    phone
        .get_confirm_bucket(GetConfirmBucketRequest {
            region: REGION.into(),
            prefix: 0,
            prefix_bits: listing.confirm_prefix_bits,
        })
        .await
        .expect("confirm bucket");
    phone
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .expect("signing keys");
    let http = HttpClient::new(&server.http_url);
    for path in [
        "/v1/regions/VN-TB/index".to_owned(),
        format!("/v1/batches/{batch_id}"),
    ] {
        assert_eq!(http.get(&path).await.status, 200, "{path}");
    }

    // The health class holds one call: a Watch stream takes it, so a Check is shed.
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch");
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect_err("shed");
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_metrics_the_server_exports() {
    scrape::install();
    let bucket = tempfile::tempdir().expect("bucket folder");
    let server = TestServer::start_with(Clock::System, |config| {
        config.publish_to = Some(format!("file://{}", bucket.path().display()));
        config.max_concurrent_health_requests = 1;
        config.code_failures_per_client_per_hour = 1;
        config.authority_uploads_per_minute = 1;
    })
    .await;
    drive_every_metric(&server).await;
    // Every metric family the traffic moved is in the scrape once the bucket took the batch.
    let scrape = scrape::until("the object-storage tasks", |scrape| {
        // Every series exists at zero from startup: wait for the counts to move.
        scrape
            .value("exposure_publish_object_tasks_total", &[("result", "done")])
            .is_some_and(|done| done > 0.0)
            && scrape
                .value("exposure_requests_shed_total", &[])
                .is_some_and(|shed| shed > 0.0)
    })
    .await;

    let declared = declared_metrics();
    assert!(declared.len() >= 20, "{declared:?}");
    let dashboard = dashboard_expressions();
    let alerts = alert_expressions();
    assert!(dashboard.len() >= 20 && alerts.len() >= 5);
    let mut on_the_dashboard = BTreeSet::new();
    for expr in dashboard.iter().chain(&alerts) {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || !expr.contains("exposure"),
            "no metric in {expr}"
        );
        for name in names {
            let metric = family(&name, &scrape);
            assert!(
                declared.contains(&metric),
                "{metric} (in {expr}) is not declared in server/src/metrics.rs"
            );
            if tls_only(&metric) {
                on_the_dashboard.insert(metric);
                continue;
            }
            assert!(
                scrape.families().contains_key(&metric),
                "{metric} (in {expr}) is not exported:\n{}",
                scrape.text
            );
            if dashboard.contains(expr) {
                on_the_dashboard.insert(metric);
            }
        }
        for (name, matchers) in selectors(expr) {
            if tls_only(&name) {
                continue;
            }
            for (label, value) in &matchers {
                let seen = scrape.value(&name, &[(label, value)]).is_some();
                // Internal errors cannot be caused from outside; the label itself must exist.
                let rare = (name.as_str(), label.as_str(), value.as_str())
                    == ("exposure_uploads_total", "result", "error")
                    && scrape.value(&name, &[(label, "stored")]).is_some();
                assert!(
                    seen || rare,
                    "no series {name}{{{label}=\"{value}\"}} (in {expr}) is exported:\n{}",
                    scrape.text
                );
            }
        }
    }
    let missing: Vec<_> = declared.difference(&on_the_dashboard).collect();
    assert!(
        missing.is_empty(),
        "metrics without a dashboard panel: {missing:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_alerts_is_exported_at_zero_from_startup() {
    // The real binary, scraped once on its own /metrics before any call reaches it: a panel
    // or an alert must never read "no data" while nothing has happened yet.
    let data_dir = tempfile::tempdir().expect("data dir");
    let server = exposure_tests::binary::ServerProcess::start(data_dir.path(), &[]);
    let answer = HttpClient::new(&server.metrics_url).get("/metrics").await;
    assert_eq!(answer.status, 200);
    let scrape = Scrape::parse(answer.text());
    let dashboard = dashboard_expressions();
    let alerts = alert_expressions();
    assert!(dashboard.len() >= 20 && alerts.len() >= 5);
    let mut checked = BTreeSet::new();
    for expr in dashboard.iter().chain(&alerts) {
        for name in metric_names(expr)
            .into_iter()
            .filter(|name| !tls_only(name))
        {
            let metric = family(&name, &scrape);
            assert!(
                scrape.families().contains_key(&metric),
                "{metric} (in {expr}) is missing before any traffic:\n{}",
                scrape.text
            );
            checked.insert(metric);
        }
        for (name, matchers) in selectors(expr) {
            if tls_only(&name) {
                continue;
            }
            for (label, value) in &matchers {
                assert!(
                    scrape.value(&name, &[(label, value)]).is_some(),
                    "no series {name}{{{label}=\"{value}\"}} (in {expr}) before any traffic:\n{}",
                    scrape.text
                );
            }
        }
    }
    assert!(checked.len() >= 20, "{checked:?}");
    for metric in &checked {
        if metric.ends_with("_total") {
            assert_eq!(
                scrape.value(metric, &[]),
                Some(0.0),
                "{metric} counts nothing yet"
            );
        }
        if scrape.families().get(metric).map(String::as_str) == Some("histogram") {
            assert_eq!(
                scrape.value(&format!("{metric}_count"), &[]),
                Some(0.0),
                "{metric} holds no sample yet"
            );
        }
    }
    assert_eq!(
        scrape.value("exposure_store_writable", &[]),
        Some(1.0),
        "a fresh store is writable: the alert on 0 stays quiet"
    );
    // Shutdown is not what this test is about (a SIGTERM this early may come before the
    // signal handler is in place).
    server.kill();
}

/// Sends `request` as a phone would: with `authorization: UploadCode <code>`, and marked as a
/// decoy when `decoy` (a decoy's code is made up).
async fn phone_upload(
    client: &mut exposure_proto::v1::key_upload_client::KeyUploadClient<Channel>,
    code: &str,
    decoy: bool,
    request: exposure_proto::v1::UploadDiagnosisKeysRequest,
) -> exposure_proto::v1::UploadDiagnosisKeysResponse {
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        "authorization",
        format!("UploadCode {code}").parse().expect("ascii"),
    );
    if decoy {
        request
            .metadata_mut()
            .insert("x-exposure-decoy", "1".parse().expect("ascii"));
    }
    client
        .upload_diagnosis_keys(request)
        .await
        .expect("answered")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_series_tells_a_real_code_upload_from_a_decoy() {
    scrape::install();
    // No publish run between the scrapes: a run would move the publisher's series.
    let server = TestServer::start_with(Clock::System, |config| {
        config.publish_interval = Duration::from_secs(3600);
    })
    .await;
    let mut upload = server.upload_client().await;
    let issue = server.authorized(IssueUploadCodesRequest {
        region: REGION.into(),
        count: 1,
        report_type: ReportType::ConfirmedTest as i32,
        valid_for: 0,
        ..Default::default()
    });
    let code = upload
        .issue_upload_codes(issue)
        .await
        .expect("codes issued")
        .into_inner()
        .codes
        .remove(0)
        .code;
    // The startup publish run, if any, is over.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = Scrape::parse(&scrape::render());
    let real = fixtures::upload("real", vec![yesterday_key(1), yesterday_key(2)]);
    let answer = phone_upload(&mut upload, &code, false, real).await;
    assert_eq!((answer.keys_accepted, answer.replay), (2, false));
    let after_real = Scrape::parse(&scrape::render());
    let decoy = fixtures::upload("decoy", vec![yesterday_key(3), yesterday_key(4)]);
    let answer = phone_upload(&mut upload, "7K3QX-9M2PD", true, decoy).await;
    assert_eq!((answer.keys_accepted, answer.replay), (2, false));
    let after_decoy = Scrape::parse(&scrape::render());

    // Latency sums and buckets differ by nature (a decoy's delay is drawn, not copied); every
    // other series must move alike, counts of those histograms included.
    let comparable = |moved: std::collections::BTreeMap<String, f64>| {
        moved
            .into_iter()
            .filter(|(series, _)| !series.contains("_sum{") && !series.contains("_bucket{"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let by_real = comparable(before.moved_in(&after_real));
    let by_decoy = comparable(after_real.moved_in(&after_decoy));
    // What a stored two-key code upload moves, written out: the check below compares against
    // a real upload, so it must not be empty.
    for (series, delta) in [
        ("exposure_uploads_total{result=\"stored\"}", 1.0),
        ("exposure_keys_ingested_total{scheme=\"gaen\"}", 2.0),
        ("exposure_upload_duration_seconds_count{}", 1.0),
    ] {
        assert_eq!(
            by_real.get(series),
            Some(&delta),
            "{series} in {by_real:#?}"
        );
    }
    assert_eq!(
        by_real, by_decoy,
        "a scraper tells a real upload (left) from a decoy (right)"
    );
    let named: Vec<_> = after_decoy
        .families()
        .keys()
        .filter(|family| family.contains("decoy"))
        .collect();
    assert!(named.is_empty(), "series of decoys alone: {named:?}");
    server.stop().await;
}

#[test]
fn names_and_selectors_are_read_from_promql() {
    let expr = r#"sum by (le) (rate(exposure_a_seconds_bucket{instance=~"$i", method="GetBatch"}[5m])) / my_exposure_x"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        ["exposure_a_seconds_bucket"]
    );
    assert_eq!(
        selectors(expr),
        [(
            "exposure_a_seconds_bucket".to_owned(),
            vec![("method".to_owned(), "GetBatch".to_owned())]
        )]
    );
}

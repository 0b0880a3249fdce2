//! Abuse limits: per-authority quotas (keys per day, uploads per minute), separate admission
//! limits for uploads, phones and health checks, held for a response stream's whole life, and
//! the request timeout that ends a request whose client stalls.

use std::time::Duration;

use exposure_proto::v1::{
    DiagnosisKey, GetBatchRequest, ListBatchesRequest, UploadDiagnosisKeysRequest,
};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;

fn yesterday_key(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TODAY - 1) * 144) as u32, 144)
}

/// Uploads with the harness token and returns the status code (OK when accepted).
async fn upload_code(server: &TestServer, request: UploadDiagnosisKeysRequest) -> Code {
    match server
        .upload_client()
        .await
        .upload_diagnosis_keys(server.authorized(request))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn the_daily_key_quota_refuses_whole_uploads_and_survives_a_restart() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.authority_keys_per_day = 5;
        config.release_delay = Duration::from_secs(30 * DAY);
    })
    .await;
    let first = fixtures::upload("first", (1..=3).map(yesterday_key).collect());
    assert_eq!(upload_code(&server, first.clone()).await, Code::Ok);
    let past_quota = fixtures::upload("second", (4..=6).map(yesterday_key).collect());
    let status = server
        .upload_client()
        .await
        .upload_diagnosis_keys(server.authorized(past_quota))
        .await
        .expect_err("past the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("quota"),
        "the message says which limit: {}",
        status.message()
    );
    // Keys already known and replays cost nothing; what still fits is stored.
    assert_eq!(upload_code(&server, first).await, Code::Ok);
    let known_and_new = fixtures::upload("third", (1..=5).map(yesterday_key).collect());
    assert_eq!(upload_code(&server, known_and_new).await, Code::Ok);
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;

    let server = TestServer::restart(&dir, token.clone(), clock.clone(), config.clone()).await;
    let one_more = fixtures::upload("fourth", vec![yesterday_key(7)]);
    assert_eq!(
        upload_code(&server, one_more.clone()).await,
        Code::ResourceExhausted,
        "the day's count is durable"
    );
    clock.advance(DAY);
    let next_day = fixtures::upload("fifth", vec![gaen(key16(7), (TODAY * 144) as u32, 144)]);
    assert_eq!(
        upload_code(&server, next_day).await,
        Code::Ok,
        "a new day, a new quota"
    );
    server.stop_kept().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        6,
        "exactly the accepted keys"
    );
}

#[tokio::test]
async fn the_upload_rate_limit_answers_resource_exhausted() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.authority_uploads_per_minute = 2;
    })
    .await;
    let mut codes = Vec::new();
    for index in 0..4u8 {
        let request = fixtures::upload(&format!("rate-{index}"), vec![yesterday_key(index + 1)]);
        codes.push(upload_code(&server, request).await);
    }
    assert_eq!(
        codes,
        vec![
            Code::Ok,
            Code::Ok,
            Code::ResourceExhausted,
            Code::ResourceExhausted
        ]
    );
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 2);
}

#[tokio::test]
async fn unread_phone_streams_hold_their_permits_but_never_shed_uploads_or_health() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        // One large batch (~6 MB), far more than a stream's flow-control window: 20,834
        // synthetic keys of 144 elements pad it to 3,000,096 elements.
        config.pad_min_keys = 20_834;
        config.max_keys_per_batch = 20_835;
        config.max_concurrent_phone_requests = 2;
    })
    .await;
    server
        .upload(fixtures::upload("large", vec![yesterday_key(1)]))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let batch_id = listing.batches[0].batch_id.clone();

    // Two downloads that are never read take both phone permits.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = server.distribution_client().await;
        let stream = client
            .get_batch(GetBatchRequest {
                batch_id: batch_id.clone(),
            })
            .await
            .expect("download starts")
            .into_inner();
        held.push((client, stream));
    }
    let mut phone = server.distribution_client().await;
    let list = ListBatchesRequest {
        region: REGION.into(),
        after_sequence: 0,
        limit: 0,
    };
    let status = phone
        .list_batches(list.clone())
        .await
        .expect_err("the phone class is full");
    assert_eq!(status.code(), Code::ResourceExhausted);

    // Uploads and health checks have their own permits.
    assert_eq!(
        upload_code(&server, fixtures::upload("during", vec![yesterday_key(2)])).await,
        Code::Ok
    );
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // Dropping the streams gives the permits back.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match phone.list_batches(list.clone()).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "permits came back after the streams were dropped"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    server.stop().await;
}

/// Returns the resident memory of this process (the server runs inside it), from /proc.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kilobytes: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kilobytes * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unread_downloads_of_the_largest_batch_share_one_copy() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        // A peak-day-sized file: 2.5 M elements at 16 bits, about 5.6 MB (17,362 synthetic
        // keys of 144 elements).
        config.pad_min_keys = 17_362;
        config.max_keys_per_batch = 17_363;
        // Every connection comes from 127.0.0.1, one client network: let it hold the 1,024
        // stalled downloads and still be served.
        config.max_phone_requests_per_network = Some(2048);
    })
    .await;
    server
        .upload(fixtures::upload("large", vec![yesterday_key(1)]))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let batch = listing.batches[0].clone();
    assert!(batch.size_bytes > 5_000_000, "{} bytes", batch.size_bytes);
    let request = GetBatchRequest {
        batch_id: batch.batch_id.clone(),
    };
    // One complete download first, so the shared copy exists before the baseline.
    let file = fixtures::download(&mut server.distribution_client().await, &batch.batch_id).await;
    assert_eq!(file.len() as u64, batch.size_bytes);
    let baseline = resident_bytes();

    // 16 connections with small flow-control windows, 64 streams each (the per-connection
    // limit), none of them ever read: private copies would be 1,024 × 5.6 MB = 5.7 GB.
    let mut held = Vec::new();
    for _ in 0..16 {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .expect("url")
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .expect("connect");
        let client = exposure_proto::v1::distribution_client::DistributionClient::new(channel);
        for _ in 0..64 {
            let stream = client
                .clone()
                .get_batch(request.clone())
                .await
                .expect("download starts")
                .into_inner();
            held.push(stream);
        }
    }
    let grown = resident_bytes().saturating_sub(baseline);
    eprintln!(
        "1,024 stalled downloads: resident memory grew by {} MiB",
        grown >> 20
    );
    assert!(
        grown < 1 << 30,
        "1,024 stalled downloads grew the process by {} MiB",
        grown >> 20
    );

    // Other phones are still served, completely.
    let again = fixtures::download(&mut server.distribution_client().await, &batch.batch_id).await;
    assert_eq!(again, file);
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_request_still_unfinished_at_the_request_timeout_is_cancelled() {
    use http_body_util::BodyExt as _;
    use tonic::codegen::Service as _;

    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.request_timeout = Duration::from_millis(300);
    })
    .await;
    // An upload whose message never finishes arriving (a slow or stalled client): the gRPC
    // frame header announces 100 bytes, 5 follow, and the stream stays open.
    let (body_sender, body_frames) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>(1);
    body_sender
        .send(Ok(http_body::Frame::data(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 100, 1, 2, 3, 4, 5,
        ]))))
        .await
        .expect("first frame queued");
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(body_frames),
    ));
    let request = http::Request::post(format!(
        "{}/exposure.v1.KeyUpload/UploadDiagnosisKeys",
        server.url
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {}", server.token))
    .body(body)
    .expect("request");
    let mut channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    std::future::poll_fn(|context| channel.poll_ready(context))
        .await
        .expect("channel ready");
    let response = tokio::time::timeout(Duration::from_secs(30), channel.call(request))
        .await
        .expect("the server ends a stalled request long before 30 s")
        .expect("an HTTP/2 response");
    let status = match tonic::Status::from_header_map(response.headers()) {
        Some(status) => status,
        None => {
            let trailers = response
                .into_body()
                .collect()
                .await
                .expect("response body")
                .trailers()
                .cloned()
                .expect("grpc trailers");
            tonic::Status::from_header_map(&trailers).expect("grpc-status")
        }
    };
    assert_eq!(
        status.code(),
        Code::Cancelled,
        "tonic ends a request past --request-timeout as CANCELLED: {status:?}"
    );
    drop(body_sender);

    // The timeout ended that request only: a whole upload is answered.
    assert_eq!(
        upload_code(&server, fixtures::upload("after", vec![yesterday_key(1)])).await,
        Code::Ok
    );
    server.stop().await;
}

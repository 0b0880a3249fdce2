//! Admission classes under bounded versions of the attacks of issue 18 (hole 2), driven by a
//! raw HTTP/2 client (the `h2` crate), which can do what no gRPC client does: keep a request
//! body open forever, or never open its flow-control window.
//!
//! Each loopback address (127.0.0.2, 127.0.0.3, ...) is its own client network to the
//! server, so one test plays an attacker's network beside a legitimate client's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    DiagnosisKey, GetBatchRequest, IssueUploadCodesRequest, ListBatchesRequest, ReportType,
};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use prost::Message;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DAY: u64 = 86_400;
const UPLOAD: &str = "/exposure.v1.KeyUpload/UploadDiagnosisKeys";
const WATCH: &str = "/grpc.health.v1.Health/Watch";
const GET_BATCH: &str = "/exposure.v1.Distribution/GetBatch";
/// A well-formed upload code that was never issued: its class is chosen before any lookup.
const UNISSUED_CODE: &str = "UploadCode 23456-789AB";

fn yesterday_key(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

/// A raw HTTP/2 connection from the loopback address `source`.
struct RawConnection {
    client: h2::client::SendRequest<Bytes>,
    /// Sends a new initial stream window (SETTINGS) to the server when asked.
    open_window: Option<tokio::sync::oneshot::Sender<u32>>,
}

/// Connects from `source` with a stream flow-control window of `window` bytes.
async fn connect(server: &TestServer, source: [u8; 4], window: u32) -> RawConnection {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (client, mut connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("HTTP/2 handshake");
    let (open_window, opened) = tokio::sync::oneshot::channel::<u32>();
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut connection => return,
            size = opened => {
                if let Ok(size) = size {
                    connection.set_initial_window_size(size).expect("new window");
                }
            }
        }
        let _ = connection.await;
    });
    RawConnection {
        client,
        open_window: Some(open_window),
    }
}

/// A gRPC message frame: uncompressed, its length, the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// The first bytes of a request message that never finishes arriving: the frame header
/// announces 100 bytes and 5 follow.
fn stalled_frame() -> Bytes {
    Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3, 4, 5])
}

impl RawConnection {
    /// Starts a call on `path` with `headers` whose body is `first`, ended or left open.
    async fn call(
        &mut self,
        path: &str,
        headers: &[(&'static str, String)],
        first: Bytes,
        end: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        std::future::poll_fn(|context| self.client.poll_ready(context))
            .await
            .expect("a stream is free");
        let mut request = http::Request::post(format!("http://127.0.0.1{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(()).expect("request");
        let (response, mut body) = self
            .client
            .send_request(request, false)
            .expect("send request");
        body.send_data(first, end).expect("request body");
        (response, body)
    }
}

/// How the server answered a call.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A response without a status in its headers: the call was admitted and its response
    /// stream started.
    Streaming,
    /// Nothing by the deadline: the call was admitted and waits for its request body.
    Waiting,
    /// A trailers-only answer with this gRPC status.
    Refused(i32),
}

/// Returns how the server answered each call by `deadline` (all waited for together).
async fn answers(
    calls: Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)>,
    deadline: Instant,
) -> (Vec<Answer>, Vec<h2::SendStream<Bytes>>) {
    let (responses, bodies): (Vec<_>, Vec<_>) = calls.into_iter().unzip();
    let answers = futures::future::join_all(responses.into_iter().map(|response| async move {
        match tokio::time::timeout_at(deadline, response).await {
            Err(_) => Answer::Waiting,
            Ok(response) => {
                let response = response.expect("an HTTP/2 response");
                match response.headers().get("grpc-status") {
                    Some(status) => Answer::Refused(
                        status
                            .to_str()
                            .expect("ascii")
                            .parse()
                            .expect("a status number"),
                    ),
                    None => Answer::Streaming,
                }
            }
        }
    }))
    .await;
    (answers, bodies)
}

fn count(answers: &[Answer], wanted: &Answer) -> usize {
    answers.iter().filter(|answer| *answer == wanted).count()
}

/// A tonic channel from the loopback address `source`.
async fn channel_from(server: &TestServer, source: [u8; 4]) -> Channel {
    tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("url")
        .local_address(Some(IpAddr::from(source)))
        .connect()
        .await
        .expect("connect")
}

fn with_header<T>(message: T, name: &'static str, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(name, value.parse().expect("ascii"));
    request
}

#[tokio::test]
async fn stalled_upload_bodies_hold_neither_the_authorities_class_nor_the_whole_code_class() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        // Long enough that no stalled body is ended by the request timeout in this test.
        config.request_timeout = Duration::from_secs(120);
        config.max_concurrent_uploads = 16;
        config.max_concurrent_code_uploads = 16;
        config.max_code_uploads_per_connection = Some(2);
        config.max_code_uploads_per_network = Some(8);
        config.max_concurrent_decoys = 4;
    })
    .await;
    let bad_token = vec![("authorization", "Bearer not-a-token".to_owned())];
    let code = vec![("authorization", UNISSUED_CODE.to_owned())];

    // The attack: 8 connections of one network, each with 8 stalled bodies of each kind.
    let mut attackers = Vec::new();
    let mut code_calls = Vec::new();
    let mut refused_calls = Vec::new();
    for _ in 0..8 {
        let mut attacker = connect(&server, [127, 0, 0, 2], 65_535).await;
        for _ in 0..8 {
            code_calls.push(attacker.call(UPLOAD, &code, stalled_frame(), false).await);
            refused_calls.push(
                attacker
                    .call(UPLOAD, &bad_token, stalled_frame(), false)
                    .await,
            );
            refused_calls.push(attacker.call(UPLOAD, &[], stalled_frame(), false).await);
        }
        attackers.push(attacker);
    }
    let mut decoy_sender = connect(&server, [127, 0, 0, 3], 65_535).await;
    let decoy = vec![("x-exposure-decoy", "1".to_owned())];
    let mut decoy_calls = Vec::new();
    for _ in 0..6 {
        decoy_calls.push(
            decoy_sender
                .call(UPLOAD, &decoy, stalled_frame(), false)
                .await,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let (refused, _held_a) = answers(refused_calls, deadline).await;
    let (codes, _held_b) = answers(code_calls, deadline).await;
    let (decoys, _held_c) = answers(decoy_calls, deadline).await;

    // A bad or missing credential is refused before the body is read: none waits for it.
    assert_eq!(
        count(&refused, &Answer::Refused(Code::Unauthenticated as i32)),
        128,
        "{refused:?}"
    );
    // The network holds its share of the code class (8 of 16), 2 per connection; the rest are
    // refused at once.
    assert_eq!(count(&codes, &Answer::Waiting), 8, "{codes:?}");
    assert_eq!(
        count(&codes, &Answer::Refused(Code::ResourceExhausted as i32)),
        56,
        "{codes:?}"
    );
    // Stalled decoys fill the decoy class only.
    assert_eq!(count(&decoys, &Answer::Waiting), 4, "{decoys:?}");
    assert_eq!(
        count(&decoys, &Answer::Refused(Code::ResourceExhausted as i32)),
        2
    );

    // Meanwhile an authority uploads and issues codes, and a patient uploads with a code.
    let mut authority = KeyUploadClient::new(channel_from(&server, [127, 0, 0, 1]).await);
    authority
        .upload_diagnosis_keys(
            server.authorized(fixtures::upload("during", vec![yesterday_key(1)])),
        )
        .await
        .expect("an authority's upload is admitted");
    let issued = authority
        .issue_upload_codes(with_header(
            IssueUploadCodesRequest {
                region: REGION.into(),
                count: 1,
                report_type: ReportType::ConfirmedTest as i32,
                valid_for: 0,
                ..Default::default()
            },
            "authorization",
            &format!("Bearer {}", server.token),
        ))
        .await
        .expect("codes issued")
        .into_inner();
    let mut patient = KeyUploadClient::new(channel_from(&server, [127, 0, 0, 4]).await);
    patient
        .upload_diagnosis_keys(with_header(
            fixtures::upload("patient", vec![yesterday_key(2)]),
            "authorization",
            &format!("UploadCode {}", issued.codes[0].code),
        ))
        .await
        .expect("a patient's code upload is admitted");
    // The decoy class is full: a decoy is refused, while real uploads went through above.
    let refused_decoy = patient
        .upload_diagnosis_keys(with_header(
            fixtures::upload("decoy", vec![yesterday_key(3)]),
            "x-exposure-decoy",
            "1",
        ))
        .await
        .expect_err("the decoy class is full");
    assert_eq!(refused_decoy.code(), Code::ResourceExhausted);

    // Closing the attack's connections gives its permits back.
    drop((attackers, _held_a, _held_b, _held_c));
    let mut again = KeyUploadClient::new(channel_from(&server, [127, 0, 0, 2]).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = again
            .upload_diagnosis_keys(with_header(
                fixtures::upload("after", vec![yesterday_key(4)]),
                "authorization",
                UNISSUED_CODE,
            ))
            .await
            .expect_err("the code was never issued");
        if status.code() == Code::Unauthenticated {
            break;
        }
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            Instant::now() < deadline,
            "the network's permits came back after its connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn watch_streams_of_one_connection_or_network_leave_the_health_class_to_others() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_concurrent_health_requests = 8;
        config.max_health_requests_per_connection = Some(2);
        config.max_health_requests_per_network = Some(4);
    })
    .await;
    let watch = grpc_frame(
        &HealthCheckRequest {
            service: String::new(),
        }
        .encode_to_vec(),
    );
    let mut flood = Vec::new();
    let mut results = Vec::new();
    for _ in 0..2 {
        let mut connection = connect(&server, [127, 0, 0, 2], 65_535).await;
        let mut calls = Vec::new();
        for _ in 0..16 {
            calls.push(connection.call(WATCH, &[], watch.clone(), true).await);
        }
        let (answers, bodies) = answers(calls, Instant::now() + Duration::from_secs(3)).await;
        results.push(answers);
        flood.push((connection, bodies));
    }
    let exhausted = Answer::Refused(Code::ResourceExhausted as i32);
    // The first connection holds its share of 2; the second only what is left of the
    // network's 4.
    for answers in &results {
        assert_eq!(count(answers, &Answer::Streaming), 2, "{answers:?}");
        assert_eq!(count(answers, &exhausted), 14, "{answers:?}");
    }
    // Another network still gets health checks (and Watch streams).
    let mut probe = HealthClient::new(channel_from(&server, [127, 0, 0, 1]).await);
    probe
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the probe is answered");
    let mut other = connect(&server, [127, 0, 0, 3], 65_535).await;
    let call = other.call(WATCH, &[], watch.clone(), true).await;
    let (answers, open) = answers(vec![call], Instant::now() + Duration::from_secs(3)).await;
    assert_eq!(answers, vec![Answer::Streaming]);
    // Open streams would hold the server's shutdown until their stream timeout.
    drop((flood, other, open, probe));
    server.stop().await;
}

#[tokio::test]
async fn a_reader_that_never_opens_its_window_loses_its_permit_at_the_stream_timeout() {
    let stream_timeout = Duration::from_secs(4);
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_concurrent_phone_requests = 1;
        config.stream_timeout = stream_timeout;
    })
    .await;
    let batch = server.publish_one_case(yesterday_key(1)).await;

    // A download whose stream window is 0: the server can send it no byte of the batch.
    let mut reader = connect(&server, [127, 0, 0, 2], 0).await;
    let request = grpc_frame(
        &GetBatchRequest {
            batch_id: batch.batch_id.clone(),
        }
        .encode_to_vec(),
    );
    let (response, _request_body) = reader.call(GET_BATCH, &[], request, true).await;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the download's headers come at once")
        .expect("a response");
    assert!(
        response.headers().get("grpc-status").is_none(),
        "the download was admitted: {response:?}"
    );

    // It holds the phone class's only permit...
    let mut phone = DistributionClient::new(channel_from(&server, [127, 0, 0, 1]).await);
    let list = ListBatchesRequest {
        region: REGION.into(),
        after_sequence: 0,
        limit: 0,
    };
    let refused = phone
        .list_batches(list.clone())
        .await
        .expect_err("the phone class is full");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        started.elapsed() < stream_timeout,
        "the refusal was seen before the stream timeout ({:?})",
        started.elapsed()
    );
    // ...until the stream timeout, though hyper never polls a body it cannot send.
    loop {
        match phone.list_batches(list.clone()).await {
            Ok(_) => break,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
        assert!(
            started.elapsed() < stream_timeout + Duration::from_secs(5),
            "the permit came back within 5 s of the stream timeout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= stream_timeout - Duration::from_millis(500));

    // When the reader finally opens its window, the stream ends with DEADLINE_EXCEEDED.
    let _ = reader
        .open_window
        .take()
        .expect("window sender")
        .send(1 << 20);
    let mut body = response.into_body();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(data) = body.data().await {
            let data = data.expect("data");
            let _ = body.flow_control().release_capacity(data.len());
        }
        body.trailers().await
    })
    .await
    .expect("the stream ends once it can")
    .expect("trailers")
    .expect("a trailers frame");
    assert_eq!(
        ended.get("grpc-status").map(|value| value.as_bytes()),
        Some(b"4".as_slice()),
        "DEADLINE_EXCEEDED: {ended:?}"
    );
    server.stop().await;
}

/// Returns how long a health check over its connection's share of one took to be refused,
/// on a server with `refusal_delay`.
async fn refusal_latency(refusal_delay: Duration) -> Duration {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_health_requests_per_connection = Some(1);
        config.refusal_delay = refusal_delay;
    })
    .await;
    let mut health = HealthClient::new(channel_from(&server, [127, 0, 0, 2]).await);
    let request = || HealthCheckRequest {
        service: String::new(),
    };
    // A Watch holds the connection's one health permit.
    let mut watch = health.watch(request()).await.expect("watch").into_inner();
    watch.message().await.expect("first status");
    let started = Instant::now();
    let refused = health
        .check(request())
        .await
        .expect_err("over the connection's share");
    let latency = started.elapsed();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    drop((watch, health));
    server.stop().await;
    latency
}

#[tokio::test]
async fn a_refusal_is_answered_after_the_refusal_delay() {
    // A client that retries its refusals in a loop gets one answer per stream per delay.
    let delayed = refusal_latency(Duration::from_millis(1500)).await;
    assert!(
        delayed >= Duration::from_millis(1450) && delayed < Duration::from_secs(5),
        "refused after {delayed:?}"
    );
    let immediate = refusal_latency(Duration::ZERO).await;
    assert!(
        immediate < Duration::from_millis(500),
        "refused after {immediate:?} with --refusal-delay 0s"
    );
}

//! Connection limits of every listener, attacked as a client would: a client network past its
//! connection cap is refused while other networks are served; silent, trickling and
//! handshake-only sockets are closed after `--handshake-timeout` and free their slots for a
//! client waiting at the cap; an HTTP client that never reads a batch is cut after
//! `--send-stall-timeout`; HTTP connections end at their lifetime; reflection and health refuse
//! large messages, and a reflection stream ends at the request timeout.
//!
//! Loopback has a whole /8: binding a client socket to 127.0.0.2 first makes it another
//! client network, as the server counts them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use exposure_proto::v1::ListBatchesRequest;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::pki::{TestCa, TlsPaths, handshake, tls_channel};
use exposure_tests::{REGION, TEST_NOW, TestServer, http_client::HttpClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

/// How long a test waits for the server to close a socket it should close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn list_request() -> ListBatchesRequest {
    ListBatchesRequest {
        region: REGION.into(),
        after_sequence: 0,
        limit: 0,
    }
}

/// Opens a TCP connection to `server` from the loopback address `from`, sending nothing.
async fn connect_from(from: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind source");
    socket.connect(server).await.expect("connect")
}

/// Returns whether the server closed `stream` (end of stream or reset) within `wait`; bytes
/// the server sent before closing are read and ignored.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Lists batches over a new connection from `from`; returns the status code.
async fn list_from(server: &TestServer, from: IpAddr) -> Code {
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("url")
        .local_address(Some(from))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await;
    let Ok(channel) = channel else {
        return Code::Unavailable;
    };
    match DistributionClient::new(channel)
        .list_batches(list_request())
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn a_network_at_its_cap_is_refused_while_other_networks_are_served() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_connections_per_network = 3;
        config.handshake_timeout = Duration::from_secs(120);
        config.refusal_delay = Duration::from_secs(1);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(loopback(1), server.addr).await);
    }
    let mut extra = connect_from(loopback(1), server.addr).await;
    // Held unread for --refusal-delay (1 s by default), so a client that reconnects as soon
    // as it is closed cannot keep the accept loop busy, then closed.
    assert!(
        !closed_within(&mut extra, Duration::from_millis(700)).await,
        "a fourth connection from 127.0.0.1 is held for the refusal delay"
    );
    assert!(
        closed_within(&mut extra, CLOSE_WAIT).await,
        "and then closed"
    );
    assert_eq!(
        list_from(&server, loopback(2)).await,
        Code::Ok,
        "another client network is served"
    );
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(300)).await,
        "the network's first three connections stay open"
    );
    assert_ne!(
        list_from(&server, loopback(1)).await,
        Code::Ok,
        "127.0.0.1 is at its cap"
    );

    // Closing its connections gives the network its share back.
    drop(held);
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while list_from(&server, loopback(1)).await != Code::Ok {
        assert!(
            tokio::time::Instant::now() < deadline,
            "127.0.0.1 is served again once its connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn silent_and_trickling_sockets_are_closed_and_free_their_slots_for_a_waiting_client() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_grpc_connections = 3;
        config.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    // The listener's whole cap, from three networks: one silent, one that sends part of the
    // HTTP/2 preface, one that sends it all but nothing more (that one is a client).
    let mut silent = connect_from(loopback(3), server.addr).await;
    let mut trickling = connect_from(loopback(4), server.addr).await;
    trickling
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("part of the preface");
    let mut quiet_client = connect_from(loopback(5), server.addr).await;
    quiet_client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("the whole preface");

    // A phone arriving now waits at the cap until a slot frees, then is served.
    assert_eq!(list_from(&server, loopback(6)).await, Code::Ok);
    assert!(
        closed_within(&mut silent, CLOSE_WAIT).await,
        "silent socket"
    );
    assert!(
        closed_within(&mut trickling, CLOSE_WAIT).await,
        "socket that sent 16 of the preface's 24 bytes"
    );
    assert!(
        !closed_within(&mut quiet_client, Duration::from_millis(300)).await,
        "a client that sent its preface is not cut by the handshake timeout"
    );
    drop(quiet_client);
    server.stop().await;
}

#[tokio::test]
async fn a_tls_listener_closes_silent_sockets_and_handshakes_without_a_preface() {
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &ca.issue_server());
    let (cert, key) = (paths.cert.clone(), paths.key.clone());
    let server = TestServer::start_with(Clock::System, move |config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(connect_from(loopback(7), server.addr).await);
    }
    // Silent sockets take no handshake turn: a client is served at once beside them.
    let channel = tls_channel(server.addr, &ca.pem(), None)
        .await
        .expect("a TLS client connects");
    DistributionClient::new(channel)
        .list_batches(list_request())
        .await
        .expect("served");
    let (mut handshake_only, _) = handshake(server.addr, &ca.pem(), b"h2")
        .await
        .expect("handshake");
    for socket in &mut silent {
        assert!(closed_within(socket, CLOSE_WAIT).await, "silent TLS socket");
    }
    let mut buffer = [0_u8; 1024];
    let ended = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match handshake_only.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "a TLS client that never sends the HTTP/2 preface is closed"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http_client_that_never_reads_a_batch_is_cut_after_the_send_stall_timeout() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        // One batch of about 6 MB, far more than the sockets' buffers hold: 20,834 synthetic
        // keys of 144 elements pad it to 3,000,096 elements.
        config.pad_min_keys = 20_834;
        config.max_keys_per_batch = 20_835;
        config.send_stall_timeout = Duration::from_secs(1);
    })
    .await;
    let day = TEST_NOW / 86_400;
    let key = gaen(
        key16(1),
        u32::try_from((day - 1) * 144).expect("interval"),
        144,
    );
    server.upload(fixtures::upload("large", vec![key])).await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let batch = listing.batches[0].clone();
    assert!(batch.size_bytes > 5_000_000, "{} bytes", batch.size_bytes);

    let http_addr: SocketAddr = server
        .http_url
        .trim_start_matches("http://")
        .parse()
        .expect("http address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut reader = socket.connect(http_addr).await.expect("connect");
    let request = format!(
        "GET /v1/batches/{} HTTP/1.1\r\nHost: test\r\n\r\n",
        batch.batch_id
    );
    reader
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    // The client reads nothing for five send-stall timeouts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 0_u64;
    let mut buffer = vec![0_u8; 64 * 1024];
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received += read as u64,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection ended");
    assert!(
        received < batch.size_bytes,
        "the stalled client got {received} of {} bytes: the server cut it",
        batch.size_bytes
    );

    // A client that reads gets the whole file.
    let whole = HttpClient::new(&server.http_url)
        .get(&format!("/v1/batches/{}", batch.batch_id))
        .await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len() as u64, batch.size_bytes);
    server.stop().await;
}

#[tokio::test]
async fn an_http_connection_takes_no_request_past_its_lifetime() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.http_connection_lifetime = Duration::from_secs(1);
    })
    .await;
    let http_addr: SocketAddr = server
        .http_url
        .trim_start_matches("http://")
        .parse()
        .expect("http address");
    let mut connection = TcpStream::connect(http_addr).await.expect("connect");
    connection
        .write_all(b"GET /v1/signing-keys HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0_u8; 12];
    connection.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head[..9], b"HTTP/1.1 ", "{head:?}");
    // The keep-alive connection idles; hyper's header timeout alone would close it at 10 s.
    assert!(
        closed_within(&mut connection, Duration::from_secs(6)).await,
        "the connection ends at its 1 s lifetime"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_refuse_messages_over_16_kib() {
    let server = TestServer::start().await;
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let large = health
        .check(HealthCheckRequest {
            service: "x".repeat(32 * 1024),
        })
        .await
        .expect_err("a 32 KiB health check is refused");
    assert_eq!(large.code(), Code::OutOfRange, "{large:?}");
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("a normal health check");

    let mut reflection = ServerReflectionClient::new(channel);
    let ask = |host: String| ServerReflectionRequest {
        host,
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut small = reflection
        .server_reflection_info(futures::stream::iter(vec![ask(String::new())]))
        .await
        .expect("reflection")
        .into_inner();
    assert!(
        matches!(small.message().await, Ok(Some(_))),
        "a small reflection request is answered"
    );
    let refused = match reflection
        .server_reflection_info(futures::stream::iter(vec![ask("x".repeat(32 * 1024))]))
        .await
    {
        Err(_) => true,
        Ok(answer) => !matches!(answer.into_inner().message().await, Ok(Some(_))),
    };
    assert!(refused, "a 32 KiB reflection request gets no answer");
    server.stop().await;
}

#[tokio::test]
async fn a_reflection_stream_ends_at_the_request_timeout() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.request_timeout = Duration::from_secs(1);
    })
    .await;
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    sender
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .expect("queued");
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("reflection")
        .into_inner();
    assert!(matches!(stream.message().await, Ok(Some(_))), "answered");
    // The client keeps its side open and asks nothing more; the stream's default limit
    // (--stream-timeout) is 5 minutes.
    let end = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the server ends the stream long before 20 s");
    assert!(!matches!(end, Ok(Some(_))), "no further answer: {end:?}");
    drop(sender);
    server.stop().await;
}

/// Opens a reflection stream on `channel` and has one request answered; returns the sender
/// of further requests and the answers.
async fn open_reflection_stream(
    channel: tonic::transport::Channel,
) -> (
    tokio::sync::mpsc::Sender<ServerReflectionRequest>,
    tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>,
) {
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    sender.send(list_services()).await.expect("queued");
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("reflection")
        .into_inner();
    assert!(matches!(stream.message().await, Ok(Some(_))), "answered");
    (sender, stream)
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

/// Returns the open connections of the gRPC listener and those closed at their age.
fn grpc_connections() -> (f64, f64) {
    let scrape = exposure_tests::scrape::Scrape::parse(&exposure_tests::scrape::render());
    (
        scrape
            .value("exposure_connections", &[("listener", "grpc")])
            .unwrap_or(0.0),
        scrape
            .value(
                "exposure_connections_closed_total",
                &[("listener", "grpc"), ("reason", "lifetime")],
            )
            .unwrap_or(0.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aged_connection_gets_goaway_its_streams_finish_and_it_closes_after_the_grace() {
    exposure_tests::scrape::install();
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_connection_age = Duration::from_secs(2);
        config.shutdown_grace = Duration::from_secs(4);
        config.request_timeout = Duration::from_secs(30);
    })
    .await;
    let channel = Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let connected = tokio::time::Instant::now();
    // Two streams start just before the age: one the client finishes after it, one it never
    // ends (as a health Watch does not).
    tokio::time::sleep_until(connected + Duration::from_millis(1500)).await;
    let (finishing_sender, mut finishing) = open_reflection_stream(channel.clone()).await;
    let (_held_sender, mut held) = open_reflection_stream(channel.clone()).await;
    assert_eq!(grpc_connections(), (1.0, 0.0));

    // Past the age the server has sent GOAWAY: new calls go over a new connection (a call
    // that meets the GOAWAY may fail and is retried, as clients do) while the streams carry on.
    tokio::time::sleep_until(connected + Duration::from_millis(2500)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let answered = DistributionClient::new(channel.clone())
            .list_batches(list_request())
            .await
            .is_ok();
        if answered && grpc_connections().0 == 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new connection after the age: {:?} (open, closed at their age)",
            grpc_connections()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finishing_sender
        .send(list_services())
        .await
        .expect("queued");
    assert!(
        matches!(finishing.message().await, Ok(Some(_))),
        "a stream in flight is answered after the GOAWAY"
    );
    drop(finishing_sender);
    let end = finishing.message().await;
    assert!(matches!(end, Ok(None)), "it ends with OK: {end:?}");

    // The stream that never ends is cut with its connection at the age plus the grace.
    let end = tokio::time::timeout_at(connected + Duration::from_secs(12), held.message())
        .await
        .expect("the connection is closed soon after age + grace");
    assert!(
        !matches!(end, Ok(Some(_))),
        "no answer after the cut: {end:?}"
    );
    assert!(
        connected.elapsed() >= Duration::from_millis(5500),
        "cut only after the grace, not at {:?}",
        connected.elapsed()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while grpc_connections().1 != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut is counted once: {:?}",
            grpc_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

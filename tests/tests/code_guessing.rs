//! Guessing upload codes (issue 18, hole 4; DESIGN.md section 12) against a real server on
//! loopback: failures counted per client network (an IPv4 address, an IPv6 /64), the client of
//! a trusted proxy taken from its PROXY protocol v2 header (and from nobody else), charged
//! before the lookup, and a global budget that slows guessing networks but never a patient's
//! network that has not guessed. The headers come from the load-test tool's encoder
//! (`exposure_loadtest::proxy_header`), written apart from the server's reader.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use exposure_loadtest::proxy_header;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    DiagnosisKey, IssueUploadCodesRequest, ReportType, UploadDiagnosisKeysRequest,
    UploadDiagnosisKeysResponse,
};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::scrape;
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const DAY: u64 = 86_400;
/// The address the tests' proxy connects from; the only one the servers trust.
const PROXY: [u8; 4] = [127, 0, 0, 2];

fn yesterday_key(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// Starts a server that trusts [`PROXY`] and takes `failures_per_network` failed attempts per
/// network and hour, `failures_per_minute` over all.
async fn server(failures_per_network: u32, failures_per_minute: u32) -> TestServer {
    TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.trusted_proxies = vec!["127.0.0.2/32".parse().expect("range")];
        config.code_failures_per_client_per_hour = failures_per_network;
        config.code_failures_per_minute = failures_per_minute;
    })
    .await
}

/// Issues `count` codes with the harness token, over a direct (untrusted) connection.
async fn issue(server: &TestServer, count: u32) -> Vec<String> {
    let mut request = tonic::Request::new(IssueUploadCodesRequest {
        region: REGION.into(),
        count,
        report_type: ReportType::ConfirmedTest as i32,
        valid_for: 0,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", server.token).parse().expect("ascii"),
    );
    let codes = server
        .upload_client()
        .await
        .issue_upload_codes(request)
        .await
        .expect("codes issued")
        .into_inner()
        .codes;
    codes.into_iter().map(|code| code.code).collect()
}

fn endpoint(server: &TestServer) -> Endpoint {
    Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
}

/// Returns a client whose connection comes from `local` and starts with `header`.
async fn connect_with_header(
    server: &TestServer,
    local: [u8; 4],
    header: Vec<u8>,
) -> Result<KeyUploadClient<Channel>, tonic::transport::Error> {
    proxy_header::channel(&endpoint(server), header, Some(IpAddr::from(local)))
        .await
        .map(KeyUploadClient::new)
}

/// Returns a client of the trusted proxy passing on `client`.
async fn through_proxy(server: &TestServer, client: IpAddr) -> KeyUploadClient<Channel> {
    let header = proxy_header::proxy(SocketAddr::new(client, 50_000), server.addr);
    connect_with_header(server, PROXY, header)
        .await
        .expect("the proxy connects")
}

/// Returns a client connecting directly from `local`.
async fn direct(server: &TestServer, local: [u8; 4]) -> KeyUploadClient<Channel> {
    let channel = endpoint(server)
        .local_address(Some(IpAddr::from(local)))
        .connect()
        .await
        .expect("connect");
    KeyUploadClient::new(channel)
}

async fn upload_with_code(
    client: &mut KeyUploadClient<Channel>,
    code: &str,
    request: UploadDiagnosisKeysRequest,
) -> Result<UploadDiagnosisKeysResponse, Status> {
    client
        .upload_diagnosis_keys(fixtures::with_code(request, code))
        .await
        .map(tonic::Response::into_inner)
}

/// Sends one wrong code (`number` makes it distinct); returns the status code.
async fn guess(client: &mut KeyUploadClient<Channel>, number: u32) -> Code {
    let code = format!("ZZZZZ-Z{number:04}")
        .replace('0', "A")
        .replace('1', "B");
    upload_with_code(
        client,
        &code,
        fixtures::upload(&format!("guess-{number}"), vec![yesterday_key(9)]),
    )
    .await
    .expect_err("a wrong code")
    .code()
}

#[tokio::test]
async fn every_address_of_an_ipv6_slash_64_is_one_client_network() {
    let server = server(5, 10_000).await;
    let codes = issue(&server, 2).await;
    // Eight addresses of 2001:db8:1:2::/64, each on its own connection: five failures pass,
    // then the whole /64 is refused, whichever address it uses.
    let mut outcomes = Vec::new();
    for host in 1..=8u32 {
        let mut client = through_proxy(&server, ip(&format!("2001:db8:1:2::{host:x}"))).await;
        outcomes.push(guess(&mut client, host).await);
    }
    assert_eq!(
        outcomes,
        [
            [Code::Unauthenticated; 5].as_slice(),
            [Code::ResourceExhausted; 3].as_slice()
        ]
        .concat()
    );
    let mut same_network = through_proxy(&server, ip("2001:db8:1:2:abcd::1")).await;
    let refused = upload_with_code(
        &mut same_network,
        &codes[0],
        fixtures::upload("same-64", vec![yesterday_key(1)]),
    )
    .await
    .expect_err("the /64 is out of attempts");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // The next /64 is another subscriber.
    let mut next_network = through_proxy(&server, ip("2001:db8:1:3::1")).await;
    let accepted = upload_with_code(
        &mut next_network,
        &codes[1],
        fixtures::upload("next-64", vec![yesterday_key(2)]),
    )
    .await
    .expect("another network uploads");
    assert_eq!(accepted.keys_accepted, 1);
    server.stop().await;
}

#[tokio::test]
async fn guessers_from_many_networks_cannot_stop_a_patient_with_a_valid_code() {
    // 20 failures an hour per network, but only 10 a minute over all networks.
    let server = server(20, 10).await;
    let codes = issue(&server, 3).await;
    // Forty networks guess three times each: the global budget is spent after ten failures,
    // and from then on each guessing network is refused without a lookup.
    let mut outcomes = Vec::new();
    for network in 0..40u32 {
        let mut guesser = through_proxy(&server, ip(&format!("198.18.0.{network}"))).await;
        for attempt in 0..3 {
            outcomes.push(guess(&mut guesser, network * 3 + attempt).await);
        }
    }
    let looked_up = outcomes
        .iter()
        .filter(|code| **code == Code::Unauthenticated)
        .count();
    let refused = outcomes
        .iter()
        .filter(|code| **code == Code::ResourceExhausted)
        .count();
    assert_eq!(looked_up + refused, 120, "{outcomes:?}");
    // Ten from the global budget (networks 0 to 2 three times, network 3 once), then the first
    // attempt of each of networks 4 to 39, which had not guessed yet: 46. The budget refills
    // one every 6 s, which may let a few more through on a slow machine.
    assert!(
        (46..=50).contains(&looked_up),
        "{looked_up} guesses were looked up: {outcomes:?}"
    );

    // Patients from networks that never guessed upload with their codes, through the proxy
    // and directly, while the global budget is spent.
    for (index, mut patient) in [
        through_proxy(&server, ip("203.0.113.50")).await,
        through_proxy(&server, ip("2001:db8:77::1")).await,
        direct(&server, [127, 0, 0, 9]).await,
    ]
    .into_iter()
    .enumerate()
    {
        let accepted = upload_with_code(
            &mut patient,
            &codes[index],
            fixtures::upload(
                &format!("patient-{index}"),
                vec![yesterday_key(20 + index as u8)],
            ),
        )
        .await
        .expect("a patient's valid code uploads");
        assert_eq!(accepted.keys_accepted, 1);
    }
    // A guessing network is still refused, even with a valid code it might have guessed.
    let mut guesser = through_proxy(&server, ip("198.18.0.39")).await;
    assert_eq!(guess(&mut guesser, 999).await, Code::ResourceExhausted);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_overshoot_the_budget() {
    let server = server(5, 10_000).await;
    // Fifty guesses at once on one connection (HTTP/2 streams) from one network.
    let guesser = direct(&server, [127, 0, 0, 5]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for number in 0..50u32 {
        let mut client = guesser.clone();
        tasks.spawn(async move { guess(&mut client, number).await });
    }
    let mut looked_up = 0;
    let mut refused = 0;
    while let Some(code) = tasks.join_next().await {
        match code.expect("task") {
            Code::Unauthenticated => looked_up += 1,
            Code::ResourceExhausted => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (looked_up, refused),
        (5, 45),
        "exactly the budget of five was looked up"
    );
    server.stop().await;
}

#[tokio::test]
async fn patients_behind_one_address_upload_at_the_same_moment() {
    // A budget of five failures an hour, and twelve patients behind one address (a carrier
    // NAT) uploading at once over three connections: charged before their lookups, the later
    // ones wait for the earlier ones' answers instead of being refused, and every valid code
    // is stored.
    let server = server(5, 10_000).await;
    let codes = issue(&server, 12).await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(direct(&server, [127, 0, 0, 6]).await);
    }
    let mut uploads = tokio::task::JoinSet::new();
    for (index, code) in codes.into_iter().enumerate() {
        let mut client = connections[index % 3].clone();
        uploads.spawn(async move {
            let request = fixtures::upload(
                &format!("nat-{index}"),
                vec![yesterday_key(40 + index as u8)],
            );
            upload_with_code(&mut client, &code, request).await
        });
    }
    let mut stored = 0;
    while let Some(upload) = uploads.join_next().await {
        let accepted = upload
            .expect("task")
            .expect("every patient's valid code uploads");
        stored += accepted.keys_accepted;
    }
    assert_eq!(stored, 12);
    // They cost the network nothing: its five failures are all left.
    let mut guesser = direct(&server, [127, 0, 0, 6]).await;
    for number in 0..5 {
        assert_eq!(guess(&mut guesser, number).await, Code::Unauthenticated);
    }
    assert_eq!(guess(&mut guesser, 5).await, Code::ResourceExhausted);
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_header_is_believed_only_from_a_trusted_proxy() {
    scrape::install();
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.trusted_proxies = vec!["127.0.0.2/32".parse().expect("range")];
        config.code_failures_per_client_per_hour = 2;
    })
    .await;
    let closed = |reason: &'static str| {
        move |scrape: &scrape::Scrape| {
            scrape.value(
                "exposure_connections_closed_total",
                &[("listener", "grpc"), ("reason", reason)],
            )
        }
    };
    let refused_before =
        closed("proxy_header")(&scrape::Scrape::parse(&scrape::render())).unwrap_or(0.0);

    // An untrusted peer sending a header naming someone else: the connection is closed.
    let header = proxy_header::proxy("198.51.100.7:1234".parse().expect("addr"), server.addr);
    let untrusted = connect_with_header(&server, [127, 0, 0, 3], header.clone()).await;
    let refused = match untrusted {
        Err(_) => true,
        Ok(mut client) => matches!(
            upload_with_code(
                &mut client,
                "ZZZZZ-ZZZZZ",
                fixtures::upload("untrusted", vec![yesterday_key(1)])
            )
            .await,
            Err(status) if refused_connection(&status)
        ),
    };
    assert!(refused, "a header from an untrusted peer must be refused");
    scrape::until("the untrusted header counted", |scrape| {
        closed("proxy_header")(scrape).unwrap_or(0.0) >= refused_before + 1.0
    })
    .await;

    // The trusted proxy must send a header: a bare HTTP/2 connection from it is refused, and
    // so is a malformed header (version 1 in the version nibble).
    let bare = direct_result(&server, PROXY).await;
    let mut malformed = header.clone();
    malformed[12] = 0x11;
    let malformed = connect_with_header(&server, PROXY, malformed).await;
    for (what, result) in [("bare", bare), ("malformed", malformed)] {
        let mut client = match result {
            Err(_) => continue,
            Ok(client) => client,
        };
        let status = upload_with_code(
            &mut client,
            "ZZZZZ-ZZZZZ",
            fixtures::upload(what, vec![yesterday_key(1)]),
        )
        .await
        .expect_err(what);
        assert!(refused_connection(&status), "{what}: {status:?}");
    }
    scrape::until("both refusals counted", |scrape| {
        closed("proxy_header")(scrape).unwrap_or(0.0) >= refused_before + 3.0
    })
    .await;

    // A LOCAL header (the proxy's own health check) is the proxy itself: its failures count
    // against 127.0.0.2, not against a client it names.
    let mut own = connect_with_header(&server, PROXY, proxy_header::local())
        .await
        .expect("a LOCAL header connects");
    assert_eq!(guess(&mut own, 1).await, Code::Unauthenticated);
    assert_eq!(guess(&mut own, 2).await, Code::Unauthenticated);
    assert_eq!(guess(&mut own, 3).await, Code::ResourceExhausted);
    let mut named = through_proxy(&server, ip("198.51.100.7")).await;
    assert_eq!(
        guess(&mut named, 4).await,
        Code::Unauthenticated,
        "the client the proxy names has its own budget"
    );
    // The untrusted peer, without a header, is a client like any other.
    let mut plain = direct(&server, [127, 0, 0, 3]).await;
    assert_eq!(guess(&mut plain, 5).await, Code::Unauthenticated);
    server.stop().await;
}

/// Returns true for the status of a call whose connection the server closed: not an answer
/// of the upload service.
fn refused_connection(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::Ok | Code::Unauthenticated | Code::ResourceExhausted | Code::InvalidArgument
    )
}

/// Connects directly from `local`, returning the error rather than panicking.
async fn direct_result(
    server: &TestServer,
    local: [u8; 4],
) -> Result<KeyUploadClient<Channel>, tonic::transport::Error> {
    endpoint(server)
        .local_address(Some(IpAddr::from(local)))
        .connect()
        .await
        .map(KeyUploadClient::new)
}

#[tokio::test]
async fn the_connection_cap_per_network_counts_the_proxys_clients_apart() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.trusted_proxies = vec!["127.0.0.2/32".parse().expect("range")];
        config.max_connections_per_network = 2;
    })
    .await;
    // Six connections from the proxy, for six client networks: all served.
    let mut clients = Vec::new();
    for network in 1..=6u8 {
        let mut client = through_proxy(&server, IpAddr::from([198, 51, 100, network])).await;
        assert_eq!(
            guess(&mut client, u32::from(network)).await,
            Code::Unauthenticated
        );
        clients.push(client);
    }
    // A third connection for one client network is closed.
    let mut third = Vec::new();
    for attempt in 0..2 {
        let mut client = through_proxy(&server, ip("203.0.113.9")).await;
        assert_eq!(
            guess(&mut client, 10 + attempt).await,
            Code::Unauthenticated
        );
        third.push(client);
    }
    let header = proxy_header::proxy("203.0.113.9:1".parse().expect("addr"), server.addr);
    let over = match connect_with_header(&server, PROXY, header).await {
        Err(_) => true,
        Ok(mut client) => matches!(
            upload_with_code(
                &mut client,
                "ZZZZZ-ZZZZZ",
                fixtures::upload("over", vec![yesterday_key(1)])
            )
            .await,
            Err(status) if refused_connection(&status)
        ),
    };
    assert!(over, "the client network's third connection must be closed");
    server.stop().await;
}

#[tokio::test]
async fn the_load_test_scenario_keeps_every_patient_uploading() {
    // The tool uploads keys of today and yesterday: the server keeps the real time.
    let server = TestServer::start_with(Clock::System, |config| {
        config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("range")];
        config.code_failures_per_minute = 30;
    })
    .await;
    let args = exposure_loadtest::code_guessing::CodeGuessingArgs {
        target: server.url.clone(),
        allow_remote: false,
        ca_cert: None,
        token: server.token.clone(),
        region: REGION.into(),
        duration: Duration::from_secs(2),
        networks: 20,
        guess_concurrency: 8,
        max_guesses: 2_000,
        uploads: 20,
        timeout: Duration::from_secs(10),
        min_success_percent: 100.0,
        format: exposure_loadtest::cli::Format::Json,
        output: None,
    };
    let report = exposure_loadtest::code_guessing::run(&args)
        .await
        .expect("the run");
    assert_eq!(report.quiet.patients.sent, 20);
    assert_eq!(report.quiet.patients.succeeded, 20, "{report:?}");
    assert_eq!(report.under_attack.patients.sent, 20);
    assert_eq!(report.under_attack.patients.succeeded, 20, "{report:?}");
    let guesses = &report.under_attack.guesses;
    assert!(guesses.sent > 0, "{report:?}");
    assert_eq!(guesses.other, 0, "no guess may succeed: {report:?}");
    assert!(
        guesses.resource_exhausted > 0,
        "the guessers were slowed: {report:?}"
    );
    // 30 from the global budget, one first attempt per network, and what the budget refills
    // (one every 2 s) at most.
    assert!(guesses.unauthenticated <= 30 + 20 + 3, "{report:?}");
    assert_eq!(report.quiet.guesses.sent, 0);
    server.stop().await;
}

//! TLS end to end, with certificates made at test time: a client that trusts the server's CA
//! connects and one that does not fails; a renewed certificate on disk is served without a
//! restart, but an expired or not-yet-valid one is refused and counted, and the time the served
//! certificate has left is exported from startup; with `--client-ca`, bearer-token calls need a
//! client certificate and phones (polls, code uploads, decoys) do not, and a changed CA file is
//! reloaded; `/metrics` is served over the same TLS.

use std::time::Duration;

use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{IssueUploadCodesRequest, ListBatchesRequest, ReportType};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16, upload};
use exposure_tests::pki::{Issued, TestCa, TlsPaths, handshake, replace, tls_channel};
use exposure_tests::scrape;
use exposure_tests::{REGION, TestServer, logs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the server logs when it refuses a changed certificate pair.
const REFUSED_RELOAD: &str = "TLS material not reloaded";

/// Starts a server with TLS from `paths`, and `--client-ca` when given.
async fn start_tls(paths: &TlsPaths, client_ca: Option<std::path::PathBuf>) -> TestServer {
    let (cert, key) = (paths.cert.clone(), paths.key.clone());
    TestServer::start_with(Clock::System, move |config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.client_ca = client_ca;
    })
    .await
}

fn list_request() -> ListBatchesRequest {
    ListBatchesRequest {
        region: REGION.into(),
        after_sequence: 0,
        limit: 0,
    }
}

/// A GAEN key valid yesterday, so the upload is accepted today.
fn fresh_upload(upload_id: &str, byte: u8) -> exposure_proto::v1::UploadDiagnosisKeysRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let interval = u32::try_from((now / 86_400 - 1) * 144).expect("interval");
    upload(upload_id, vec![gaen(key16(byte), interval, 144)])
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_others_fail() {
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &ca.issue_server());
    let server = start_tls(&paths, None).await;

    let channel = tls_channel(server.addr, &ca.pem(), None)
        .await
        .expect("a client with the CA connects");
    DistributionClient::new(channel)
        .list_batches(list_request())
        .await
        .expect("a poll over TLS");

    let stranger = TestCa::new("some other CA");
    let refused = match tls_channel(server.addr, &stranger.pem(), None).await {
        Err(_) => true,
        Ok(channel) => DistributionClient::new(channel)
            .list_batches(list_request())
            .await
            .is_err(),
    };
    assert!(refused, "a client that does not trust the CA gets nowhere");

    let plaintext = match DistributionClient::connect(server.url.clone()).await {
        Err(_) => true,
        Ok(mut client) => client.list_batches(list_request()).await.is_err(),
    };
    assert!(
        plaintext,
        "plaintext HTTP/2 is not served on a TLS listener"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_restart() {
    logs::capture();
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let first = ca.issue_server();
    let paths = TlsPaths::write(files.path(), &first);
    let server = start_tls(&paths, None).await;
    let (_, presented) = handshake(server.addr, &ca.pem(), b"h2")
        .await
        .expect("handshake");
    assert_eq!(presented, first.der, "the first certificate is served");

    let renewed = ca.issue_server();
    assert_ne!(renewed.der, first.der);
    TlsPaths::write(files.path(), &renewed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, presented) = handshake(server.addr, &ca.pem(), b"h2")
            .await
            .expect("handshake during renewal");
        if presented == renewed.der {
            break;
        }
        assert_eq!(presented, first.der, "only the old or the new certificate");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken renewal (a key that does not belong to the certificate) keeps the last good pair:
    // once the server has read it and refused it, the renewed certificate is still served.
    let refusals = logs::captured()
        .lines()
        .filter(|line| line.contains(REFUSED_RELOAD))
        .count();
    replace(&paths.key, &ca.issue_server().key_pem);
    logs::wait_for(REFUSED_RELOAD, refusals + 1).await;
    let (_, presented) = handshake(server.addr, &ca.pem(), b"h2")
        .await
        .expect("handshake after a broken renewal");
    assert_eq!(presented, renewed.der, "a mismatched pair is not loaded");
    let channel = tls_channel(server.addr, &ca.pem(), None)
        .await
        .expect("connect");
    DistributionClient::new(channel)
        .list_batches(list_request())
        .await
        .expect("calls work on the renewed certificate");
    server.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_token_calls_need_a_client_certificate_and_phones_do_not() {
    let server_ca = TestCa::new("server CA");
    let authority_ca = TestCa::new("health authority CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &server_ca.issue_server());
    let client_ca = files.path().join("clients.pem");
    std::fs::write(&client_ca, authority_ca.pem()).expect("write client CA");
    let server = start_tls(&paths, Some(client_ca)).await;

    let anonymous = tls_channel(server.addr, &server_ca.pem(), None)
        .await
        .expect("a phone connects without a certificate");
    DistributionClient::new(anonymous.clone())
        .list_batches(list_request())
        .await
        .expect("a phone polls without a certificate");
    let refused = KeyUploadClient::new(anonymous.clone())
        .upload_diagnosis_keys(server.authorized(fresh_upload("no-cert", 1)))
        .await
        .expect_err("an upload without a client certificate is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("client certificate"),
        "{refused:?}"
    );

    let authority = authority_ca.issue_client("Thai Binh CDC");
    let authenticated = tls_channel(server.addr, &server_ca.pem(), Some(&authority))
        .await
        .expect("an authority connects with its certificate");
    let stored = KeyUploadClient::new(authenticated.clone())
        .upload_diagnosis_keys(server.authorized(fresh_upload("with-cert", 2)))
        .await
        .expect("an upload with a client certificate is accepted")
        .into_inner();
    assert_eq!(stored.keys_accepted, 1);

    // Issuing codes is a token call: it needs the certificate too.
    let issue = |token: &str| {
        fixtures::with_authorization(
            IssueUploadCodesRequest {
                region: REGION.into(),
                count: 1,
                report_type: ReportType::ConfirmedTest as i32,
                valid_for: 0,
                ..Default::default()
            },
            "Bearer",
            token,
        )
    };
    let refused = KeyUploadClient::new(anonymous.clone())
        .issue_upload_codes(issue(&server.token))
        .await
        .expect_err("issuing without a client certificate is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let code = KeyUploadClient::new(authenticated)
        .issue_upload_codes(issue(&server.token))
        .await
        .expect("issuing with a client certificate")
        .into_inner()
        .codes
        .remove(0)
        .code;

    // A patient's phone has no certificate: its code upload and its decoys go through.
    let mut phone = KeyUploadClient::new(anonymous);
    let accepted = phone
        .upload_diagnosis_keys(fixtures::with_code(fresh_upload("phone", 4), &code))
        .await
        .expect("a code upload needs no client certificate")
        .into_inner();
    assert_eq!(accepted.keys_accepted, 1);
    let answered = phone
        .upload_diagnosis_keys(fixtures::decoy(
            fresh_upload("decoy", 5),
            Some(fixtures::DECOY_CODE),
        ))
        .await
        .expect("a decoy needs no client certificate")
        .into_inner();
    assert_eq!(answered.keys_accepted, 1);

    let forged = server_ca.issue_client("not an authority");
    let outcome = match tls_channel(server.addr, &server_ca.pem(), Some(&forged)).await {
        Err(_) => None,
        Ok(channel) => Some(
            KeyUploadClient::new(channel)
                .upload_diagnosis_keys(server.authorized(fresh_upload("forged", 3)))
                .await,
        ),
    };
    assert!(
        !matches!(outcome, Some(Ok(_))),
        "a certificate from another CA does not authenticate"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_over_the_same_tls() {
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &ca.issue_server());
    let tls = exposure_server::tls::ServerTls::load(&exposure_server::tls::TlsFiles {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        client_ca: None,
    })
    .expect("TLS loads");
    let handle = exposure_server::metrics::install().expect("recorder");
    metrics::counter!(exposure_server::metrics::POLLS_TOTAL).increment(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = tokio::spawn(exposure_server::metrics_http::serve(
        listener,
        handle,
        Some(tls.acceptor(exposure_server::tls::ALPN_HTTP1)),
        exposure_server::transport::connections::ListenerLimits::metrics(
            &exposure_server::ServerConfig::with_data_dir(files.path()),
        ),
        exposure_server::metrics_http::ScrapeAccess::default(),
    ));

    let (mut stream, _) = handshake(addr, &ca.pem(), b"http/1.1")
        .await
        .expect("TLS handshake with the metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("exposure_polls_total 3"), "{answer}");

    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("plaintext request");
    let mut plain_answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        plain.read_to_end(&mut plain_answer),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&plain_answer).contains("exposure_polls_total"),
        "no metrics over plaintext on a TLS listener"
    );
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_test_and_the_demo_run_over_https() {
    use exposure_loadtest::cli::{Cli, ExitStatus, execute};
    use exposure_loadtest::client::BearerToken;
    use exposure_loadtest::demo::{DemoOptions, run_demo};
    use exposure_loadtest::{Scenario, Target, run_scenario};

    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &ca.issue_server());
    let ca_path = files.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let server = start_tls(&paths, None).await;
    let https = format!("https://localhost:{}", server.addr.port());
    let target = Target::parse(&https, false)
        .expect("https target")
        .with_ca_cert(Some(ca.pem().into_bytes()))
        .expect("with CA");

    for scenario in [Scenario::Poll, Scenario::Upload] {
        let mut options = exposure_loadtest::RunOptions::new(target.clone(), scenario);
        options.token = Some(BearerToken::new(&server.token).expect("token"));
        options.requests = 40;
        options.concurrency = 4;
        options.connections = 2;
        let report = run_scenario(&options).await.expect("run over TLS");
        assert_eq!(report.count, 40, "{scenario:?}");
        assert_eq!(
            report.errors, 0,
            "{scenario:?}: {:?}",
            report.error_distribution
        );
    }

    let without_ca = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--target",
        &https,
        "--scenario",
        "poll",
        "--requests",
        "5",
    ])
    .expect("parses");
    assert!(matches!(
        execute(without_ca).await.expect("runs"),
        ExitStatus::Usage
    ));
    let with_ca = Cli::parse_from_args([
        "exposure-loadtest",
        "run",
        "--target",
        &https,
        "--ca-cert",
        ca_path.to_str().expect("path"),
        "--scenario",
        "poll",
        "--requests",
        "5",
        "--format",
        "json",
    ])
    .expect("parses");
    assert!(matches!(
        execute(with_ca).await.expect("runs"),
        ExitStatus::Success
    ));

    let demo = DemoOptions::new(
        target,
        BearerToken::new(&server.token).expect("token"),
        REGION,
        Duration::from_secs(30),
    );
    let mut transcript = Vec::new();
    let outcome = run_demo(&demo, &mut transcript)
        .await
        .expect("demo over TLS");
    assert!(
        outcome.exposed_phone_confirmed,
        "{}",
        String::from_utf8_lossy(&transcript)
    );
    server.stop().await;
}

const DAY: u64 = 86_400;
const EXPIRY: &str = "exposure_tls_certificate_expiry_seconds";
const RELOADS: &str = "exposure_tls_reloads_total";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Waits until `exposure_tls_reloads_total{file, result}` reads `count`.
async fn wait_reloads(file: &str, result: &str, count: f64) {
    scrape::until(&format!("{file} reloads {result} at {count}"), |scrape| {
        scrape.value(RELOADS, &[("file", file), ("result", result)]) == Some(count)
    })
    .await;
}

/// Waits until the expiry gauge reads `not_after` less the time now, to within 5 s.
async fn wait_expiry(not_after: u64) {
    scrape::until(
        &format!("the expiry gauge at {not_after} - now"),
        |scrape| {
            scrape
                .value(EXPIRY, &[])
                .is_some_and(|left| (left - (not_after as f64 - unix_now() as f64)).abs() <= 5.0)
        },
    )
    .await;
}

/// Returns the certificate the server presents now.
async fn served(server: &TestServer, ca: &TestCa) -> Vec<u8> {
    handshake(server.addr, &ca.pem(), b"h2")
        .await
        .expect("handshake")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_not_yet_valid_renewal_is_refused_and_the_expiry_is_exported() {
    scrape::install();
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let now = unix_now();
    let first = ca.issue_server_valid(now - DAY, now + 30 * DAY);
    let paths = TlsPaths::write(files.path(), &first);
    let server = start_tls(&paths, None).await;
    // From startup, before any reload: the time left, and every reload outcome at zero.
    // The gauge is set when the certificate is loaded, the counters a moment later, when the
    // server exports its TLS metrics: wait for both.
    let scrape = scrape::until("the TLS metrics", |scrape| {
        scrape.value(EXPIRY, &[]).is_some()
            && scrape
                .value(RELOADS, &[("file", "cert"), ("result", "invalid")])
                .is_some()
    })
    .await;
    let left = scrape.value(EXPIRY, &[]).expect("expiry");
    let expected = (now + 30 * DAY) as f64 - unix_now() as f64;
    assert!(
        (left - expected).abs() <= 5.0,
        "{left} s left, not {expected}"
    );
    for result in ["reloaded", "expired", "not_yet_valid", "invalid"] {
        assert_eq!(
            scrape.value(RELOADS, &[("file", "cert"), ("result", result)]),
            Some(0.0),
            "{result}:\n{}",
            scrape.text
        );
    }
    assert_eq!(served(&server, &ca).await, first.der);

    // A renewal that expired yesterday is refused; the first certificate stays.
    TlsPaths::write(
        files.path(),
        &ca.issue_server_valid(now - 30 * DAY, now - DAY),
    );
    wait_reloads("cert", "expired", 1.0).await;
    assert_eq!(
        served(&server, &ca).await,
        first.der,
        "an expired one is not served"
    );
    // So is one valid only from tomorrow.
    TlsPaths::write(
        files.path(),
        &ca.issue_server_valid(now + DAY, now + 90 * DAY),
    );
    wait_reloads("cert", "not_yet_valid", 1.0).await;
    assert_eq!(
        served(&server, &ca).await,
        first.der,
        "a future one is not served"
    );
    wait_expiry(now + 30 * DAY).await;

    // A valid renewal is served, and the gauge follows it.
    let renewed = ca.issue_server_valid(now - 60, now + 100 * DAY);
    TlsPaths::write(files.path(), &renewed);
    wait_reloads("cert", "reloaded", 1.0).await;
    assert_eq!(served(&server, &ca).await, renewed.der);
    wait_expiry(now + 100 * DAY).await;
    server.stop().await;
}

#[test]
fn an_expired_certificate_is_refused_at_startup_naming_the_flag() {
    let ca = TestCa::new("test CA");
    let files = tempfile::tempdir().expect("tempdir");
    let now = unix_now();
    let paths = TlsPaths::write(
        files.path(),
        &ca.issue_server_valid(now - 9 * DAY, now - DAY),
    );
    let error = exposure_server::tls::reload::ReloadingCertificate::load(&paths.cert, &paths.key)
        .expect_err("an expired certificate does not load");
    let text = error.to_string();
    assert!(
        text.starts_with("--tls-cert: the certificate expired"),
        "{text}"
    );
}

/// Returns whether a bearer-token call presenting `client` is accepted.
async fn token_call_accepted(server: &TestServer, server_ca: &TestCa, client: &Issued) -> bool {
    let Ok(channel) = tls_channel(server.addr, &server_ca.pem(), Some(client)).await else {
        return false;
    };
    let request = server.authorized(IssueUploadCodesRequest {
        region: REGION.into(),
        count: 1,
        report_type: ReportType::ConfirmedTest as i32,
        valid_for: 0,
        ..Default::default()
    });
    KeyUploadClient::new(channel)
        .issue_upload_codes(request)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_client_ca_is_reloaded_and_a_broken_one_refused() {
    scrape::install();
    let server_ca = TestCa::new("server CA");
    let old_ca = TestCa::new("old authority CA");
    let new_ca = TestCa::new("new authority CA");
    let files = tempfile::tempdir().expect("tempdir");
    let paths = TlsPaths::write(files.path(), &server_ca.issue_server());
    let client_ca = files.path().join("clients.pem");
    replace(&client_ca, &old_ca.pem());
    let server = start_tls(&paths, Some(client_ca.clone())).await;
    let (old_client, new_client) = (old_ca.issue_client("old"), new_ca.issue_client("new"));
    assert!(token_call_accepted(&server, &server_ca, &old_client).await);
    assert!(!token_call_accepted(&server, &server_ca, &new_client).await);

    replace(&client_ca, &new_ca.pem());
    wait_reloads("client_ca", "reloaded", 1.0).await;
    assert!(token_call_accepted(&server, &server_ca, &new_client).await);
    assert!(
        !token_call_accepted(&server, &server_ca, &old_client).await,
        "the replaced CA no longer authenticates"
    );

    replace(&client_ca, "not a certificate");
    wait_reloads("client_ca", "invalid", 1.0).await;
    assert!(
        token_call_accepted(&server, &server_ca, &new_client).await,
        "a broken CA file keeps the last good one"
    );
    server.stop().await;
}

//! The `exposure-server` binary as an operator uses it: admin commands, startup on flags,
//! the metrics endpoint, graceful exit on SIGTERM, and usage errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BINARY, admin, start};

#[test]
fn authority_commands_create_list_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let added = admin(
        dir.path(),
        &[
            "authority",
            "add",
            "--name",
            "Thai Binh CDC",
            "--region",
            "VN-TB",
            "--region",
            "VN-HN",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let stdout = String::from_utf8(added.stdout).expect("utf-8");
    let token = stdout.lines().last().expect("token line");
    assert!(
        token.starts_with("exps_") && token.len() == 69,
        "token alone on the last line: {token:?}"
    );

    let listed = admin(dir.path(), &["authority", "list"]);
    let listing = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(
        listing.contains("Thai Binh CDC")
            && listing.contains("VN-TB,VN-HN")
            && listing.contains("active")
    );
    assert!(!listing.contains(token), "tokens are never listed");
    let id = first_authority_id(&listing);

    let revoked = admin(dir.path(), &["authority", "revoke", "--id", &id]);
    assert!(revoked.status.success());
    let store = exposure_server::storage::Store::open(dir.path()).expect("open");
    assert!(
        store.authenticate(token).expect("lookup").is_none(),
        "a revoked token no longer authenticates"
    );
}

#[test]
fn usage_errors_exit_64_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_region = admin(
        dir.path(),
        &["authority", "add", "--name", "x", "--region", "vietnam"],
    );
    assert_eq!(bad_region.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_region.stderr).contains("--region"));
    let unknown_flag = Command::new(BINARY)
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert_eq!(unknown_flag.status.code(), Some(64));
    let bad_duration = Command::new(BINARY)
        .args(["--publish-interval", "soon"])
        .output()
        .expect("run");
    assert_eq!(bad_duration.status.code(), Some(64));
    let help = Command::new(BINARY).arg("--help").output().expect("run");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--data-dir",
        "--grpc-addr",
        "--metrics-addr",
        "--publish-interval",
        "--release-delay",
        "--pad-min-keys",
        "--pad-jitter",
        "--fingerprint-bits",
        "--confirm-prefix-bits",
        "--retention-days",
        "--max-keys-per-upload",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

/// Flags that start the server with text logs on free ports and a data directory that is a
/// plain file: it logs that it listens, then exits with 64 because the store cannot open.
fn text_log_run(data_file: &std::path::Path) -> Vec<String> {
    [
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--console-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "text",
        "--data-dir",
    ]
    .iter()
    .map(|flag| (*flag).to_owned())
    .chain([data_file.display().to_string()])
    .collect()
}

#[test]
fn text_logs_are_coloured_only_on_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_file = dir.path().join("not-a-folder");
    std::fs::write(&data_file, b"").expect("file");
    let args = text_log_run(&data_file);

    // `2> server.log`: plain text.
    let log_path = dir.path().join("server.log");
    let status = Command::new(BINARY)
        .args(&args)
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(64));
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains(" INFO ") && log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a file: {log:?}"
    );

    // A terminal (a pseudo-terminal from util-linux `script`): coloured, so the check above
    // is about where the log goes.
    let quoted: Vec<String> = std::iter::once(BINARY.to_owned())
        .chain(args)
        .map(|arg| format!("'{arg}'"))
        .collect();
    let on_terminal = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .output()
        .expect("run `script` (util-linux)");
    let terminal_log = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(terminal_log.contains("listening"), "{terminal_log}");
    assert!(
        terminal_log.contains("\u{1b}["),
        "colour codes on a terminal: {terminal_log:?}"
    );
}

#[test]
fn serves_metrics_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let log = server.log();
    assert!(
        log.contains("key_id"),
        "startup names the signing key: {log}"
    );
    assert!(
        log.contains(&dir.path().display().to_string()),
        "startup names the data dir"
    );
    assert!(
        log.contains("authority add"),
        "startup says how to create an upload token"
    );

    // The publisher's first run (at start) sets the storage gauges.
    let metrics = scrape_until(&server.metrics_addr, "exposure_rocksdb_size_bytes");
    assert!(metrics.contains("exposure_pending_keys"), "{metrics}");

    // SIGTERM: the process exits 0 after a graceful shutdown.
    let log = server.log.clone();
    assert!(server.terminate(), "exit status after SIGTERM");
    let log = log.lock().expect("log").clone();
    assert!(
        log.contains("shutting down") && log.contains("\"message\":\"stopped\""),
        "{log}"
    );
    let keys: Vec<_> = dir
        .path()
        .join("signing")
        .read_dir()
        .expect("key dir")
        .collect();
    assert_eq!(keys.len(), 1, "the signing key was written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = keys[0]
            .as_ref()
            .expect("entry")
            .metadata()
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is readable by its owner only"
        );
    }
}

/// Returns the id column of the first authority in `authority list` output.
fn first_authority_id(listing: &str) -> String {
    let row = listing.lines().nth(1).expect("an authority row");
    row.split('\t').next().expect("id column").to_owned()
}

/// Scrapes `/metrics` at `addr` until the body holds `needle`; panics after 10 s.
fn scrape_until(addr: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.write_all(
                b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            );
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            if body.starts_with("HTTP/1.1 200") && body.contains(needle) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "metrics endpoint did not show {needle}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn authorities_are_added_listed_and_revoked_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let token = common::add_authority(dir.path(), "VN-TB");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The command returns once the running server has applied it: the token works at once.
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 1)),
        tonic::Code::Ok
    );

    let listed = admin(dir.path(), &["authority", "list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listing = String::from_utf8(listed.stdout).expect("utf-8");
    let id = first_authority_id(&listing);
    assert!(
        listing.contains("test authority") && listing.contains("active"),
        "{listing}"
    );

    let revoked = admin(dir.path(), &["authority", "revoke", "--id", &id]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 2)),
        tonic::Code::Unauthenticated,
        "a revoked token fails at once"
    );
    let unknown = admin(dir.path(), &["authority", "revoke", "--id", "nosuchid"]);
    assert_eq!(
        unknown.status.code(),
        Some(64),
        "revoking an unknown id is a usage error"
    );
    assert!(server.terminate());
}

#[test]
fn revoking_a_leaked_token_with_withdraw_keys_withdraws_its_keys_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let leaked = common::add_authority(dir.path(), "VN-TB");
    let listing =
        String::from_utf8(admin(dir.path(), &["authority", "list"]).stdout).expect("utf-8");
    let leaked_id = first_authority_id(&listing);
    let honest = common::add_authority(dir.path(), "VN-TB");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for (token, byte) in [(&leaked, 1), (&leaked, 2), (&honest, 3)] {
        assert_eq!(
            runtime.block_on(common::upload_one(&server.url, token, byte)),
            tonic::Code::Ok
        );
    }

    let revoked = admin(
        dir.path(),
        &["authority", "revoke", "--id", &leaked_id, "--withdraw-keys"],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(server.terminate());
    let store = exposure_server::storage::Store::open(dir.path()).expect("open");
    assert_eq!(
        store
            .key_sequences_of_authority(&leaked_id)
            .expect("scan")
            .len(),
        0,
        "the leaked token's keys are gone"
    );
    assert_eq!(
        store.count_keys().expect("count"),
        1,
        "the other authority's key stays"
    );
}

#[test]
fn a_code_guessers_address_reaches_no_log_line_and_no_metric() {
    use exposure_proto::v1::UploadDiagnosisKeysRequest;
    use exposure_proto::v1::key_upload_client::KeyUploadClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(BINARY);
    command
        .env("RUST_LOG", "debug")
        .args(["--grpc-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .args(["--code-failures-per-client-per-hour", "3"])
        .arg("--data-dir")
        .arg(dir.path());
    let server = common::start_command(command);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let codes = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .expect("url")
            .local_address(Some(std::net::IpAddr::from([127, 0, 0, 2])))
            .connect()
            .await
            .expect("connect from 127.0.0.2");
        let mut client = KeyUploadClient::new(channel);
        let mut codes = Vec::new();
        for attempt in 0..6 {
            let mut request = tonic::Request::new(UploadDiagnosisKeysRequest {
                region: "VN-TB".into(),
                upload_id: format!("guess-{attempt}"),
                ..Default::default()
            });
            request.metadata_mut().insert(
                "authorization",
                format!("UploadCode ZZZZZ-ZZZZ{attempt}")
                    .parse()
                    .expect("ascii"),
            );
            let status = client
                .upload_diagnosis_keys(request)
                .await
                .expect_err("a guess is refused");
            codes.push(status.code());
        }
        codes
    });
    assert_eq!(
        codes.last(),
        Some(&tonic::Code::ResourceExhausted),
        "{codes:?}"
    );
    let metrics = scrape_until(&server.metrics_addr, "exposure_code_attempts_refused_total");
    let log = server.log();
    assert!(server.terminate());
    assert!(
        !metrics.contains("127.0.0.2"),
        "metrics name no client address"
    );
    assert!(
        !log.contains("127.0.0.2"),
        "no log line names the client's address, even at debug: {log}"
    );
}

#[test]
fn health_reports_not_serving_after_sigterm_while_calls_drain() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &["--metrics-addr", "127.0.0.1:0", "--shutdown-grace", "30s"],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let services = ["", "exposure.v1.KeyUpload", "exposure.v1.Distribution"];
    // Watch streams opened before the signal: in-flight calls that the drain lets finish.
    let mut watches = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut watches = Vec::new();
        for service in services {
            let mut stream = HealthClient::new(channel.clone())
                .watch(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .expect("watch")
                .into_inner();
            let first = stream.message().await.expect("first status");
            assert_eq!(
                first.map(|status| status.status),
                Some(ServingStatus::Serving as i32),
                "{service:?} serves before the signal"
            );
            watches.push(stream);
        }
        watches
    });

    server.send_sigterm();
    let next = |stream: &mut tonic::Streaming<HealthCheckResponse>| {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("a status within 20 s of SIGTERM")
                .expect("the watch stream stays open while draining")
                .map(|status| status.status)
        })
    };
    for (service, stream) in services.iter().zip(&mut watches) {
        assert_eq!(
            next(stream),
            Some(ServingStatus::NotServing as i32),
            "{service:?} reports NOT_SERVING after SIGTERM"
        );
    }
    let log = server.log.clone();
    // The drain waits for these calls; ending them lets the process exit before the grace.
    drop(watches);
    assert!(server.wait(), "exit status after SIGTERM");
    let log = log.lock().expect("log").clone();
    assert!(
        !log.contains("did not finish within the grace period"),
        "the drain ended when the last call did: {log}"
    );
}

/// Waits for `child` to exit, `limit` at most; returns its status and how long it took.
fn wait_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the server did not exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stream_that_never_ends_and_a_silent_connection_do_not_hold_the_stop() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir().expect("tempdir");
    // The stream timeout (5 minutes by default) would end the Watch long after the grace.
    let mut server = start(
        dir.path(),
        &["--metrics-addr", "127.0.0.1:0", "--shutdown-grace", "2s"],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let watch = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut stream = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        stream.message().await.expect("first status");
        stream
    });
    // A client that sent the HTTP/2 preface and nothing more: no SETTINGS, no request.
    let mut silent = TcpStream::connect(server.url.trim_start_matches("http://")).expect("connect");
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("preface");

    server.send_sigterm();
    let (status, took) = wait_within(&mut server.child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status}: {}", server.log());
    // Grace, the publisher's stop and the final flush: seconds, not the stream timeout.
    assert!(took < Duration::from_secs(15), "the stop took {took:?}");
    let log = server.log();
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
    drop((watch, silent));
}

#[test]
fn sigterm_while_starting_shuts_down_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BINARY)
        .args(["--grpc-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--console-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("EXPOSURE_HTTP_ADDR", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start server");
    // SIGTERM as soon as the process catches it (`SigCgt`, bit 15 - 1), which is before it
    // opens the store: the signal must not kill it, the server must stop as it would later.
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(&status_file).expect("proc status");
        let caught = status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .expect("SigCgt");
        if caught & (1 << (15 - 1)) != 0 {
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM never caught");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let (status, _) = wait_within(&mut child, Duration::from_secs(30));
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("log");
    assert!(status.success(), "exit status {status}: {log}");
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
}

//! The `exposure-server` binary as an operator uses it: admin commands, startup on flags,
//! the metrics endpoint, graceful exit on SIGTERM, and usage errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_exposure-server");

fn admin(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BINARY).args(args).arg("--data-dir").arg(data_dir).output().expect("run exposure-server")
}

#[test]
fn authority_commands_create_list_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let added = admin(dir.path(), &["authority", "add", "--name", "Thai Binh CDC", "--region", "VN-TB", "--region", "VN-HN"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let stdout = String::from_utf8(added.stdout).expect("utf-8");
    let token = stdout.lines().last().expect("token line");
    assert!(token.starts_with("exps_") && token.len() == 69, "token alone on the last line: {token:?}");

    let listed = admin(dir.path(), &["authority", "list"]);
    let listing = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(listing.contains("Thai Binh CDC") && listing.contains("VN-TB,VN-HN") && listing.contains("active"));
    assert!(!listing.contains(token), "tokens are never listed");
    let id = listing.lines().nth(1).and_then(|line| line.split('\t').next()).expect("id column").to_owned();

    let revoked = admin(dir.path(), &["authority", "revoke", "--id", &id]);
    assert!(revoked.status.success());
    let store = exposure_server::storage::Store::open(dir.path()).expect("open");
    assert!(store.authenticate(token).expect("lookup").is_none(), "a revoked token no longer authenticates");
}

#[test]
fn usage_errors_exit_64_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_region = admin(dir.path(), &["authority", "add", "--name", "x", "--region", "vietnam"]);
    assert_eq!(bad_region.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_region.stderr).contains("--region"));
    let unknown_flag = Command::new(BINARY).arg("--no-such-flag").output().expect("run");
    assert_eq!(unknown_flag.status.code(), Some(64));
    let bad_duration = Command::new(BINARY).args(["--publish-interval", "soon"]).output().expect("run");
    assert_eq!(bad_duration.status.code(), Some(64));
    let help = Command::new(BINARY).arg("--help").output().expect("run");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--data-dir", "--grpc-addr", "--metrics-addr", "--publish-interval", "--release-delay", "--min-elements",
        "--fingerprint-bits", "--confirm-prefix-bits", "--retention-days", "--max-keys-per-upload", "--log-format"] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn serves_metrics_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_port = free_port();
    let mut child = Command::new(BINARY)
        .args(["--grpc-addr", "127.0.0.1:0", "--metrics-addr", &format!("127.0.0.1:{metrics_port}"), "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("\"message\":\"store opened\"") {
        assert!(Instant::now() < deadline, "server did not start: {log}");
        stderr.read_line(&mut log).expect("read log");
    }
    assert!(log.contains("key_id"), "startup names the signing key: {log}");
    assert!(log.contains(&dir.path().display().to_string()), "startup names the data dir");

    // The publisher's first run (at start) sets the storage gauges.
    let metrics = scrape_until(metrics_port, "exposure_rocksdb_size_bytes");
    assert!(metrics.contains("exposure_pending_keys"), "{metrics}");

    // SIGTERM: the process exits 0 after a graceful shutdown.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read rest");
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}: {rest}");
    assert!(rest.contains("shutting down") && rest.contains("stopped"), "{rest}");
    let keys: Vec<_> = dir.path().join("signing").read_dir().expect("key dir").collect();
    assert_eq!(keys.len(), 1, "the signing key was written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = keys[0].as_ref().expect("entry").metadata().expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by its owner only");
    }
}

/// Scrapes `/metrics` until the body holds `needle`; panics after 10 s.
fn scrape_until(port: u16, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            if body.starts_with("HTTP/1.1 200") && body.contains(needle) {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "metrics endpoint did not show {needle}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

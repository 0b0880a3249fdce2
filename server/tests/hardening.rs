//! The binary's perimeter: plaintext only on loopback unless told, settings checked at startup
//! (exit 64 naming the flag), a private data directory whatever the umask, no empty store in a
//! mistyped folder, and log lines that a request cannot forge.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{BINARY, RunningBinary, start, start_command};

/// Runs the binary to completion with `args` on a fresh data dir.
fn run(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .env("EXPOSURE_HTTP_ADDR", "127.0.0.1:0")
        .env("EXPOSURE_CONSOLE_ADDR", "127.0.0.1:0")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run exposure-server")
}

fn assert_usage_error(output: &Output, flag: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{flag}: {stderr}");
    assert!(stderr.contains(flag), "the message names {flag}: {stderr}");
}

#[test]
fn plaintext_on_a_public_address_is_refused_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = run(
        dir.path(),
        &["--grpc-addr", "0.0.0.0:0", "--metrics-addr", "127.0.0.1:0"],
    );
    assert_usage_error(&refused, "--grpc-addr");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--insecure-plaintext"));
    let metrics = run(
        dir.path(),
        &["--grpc-addr", "127.0.0.1:0", "--metrics-addr", "0.0.0.0:0"],
    );
    assert_usage_error(&metrics, "--metrics-addr");
    let http = run(
        dir.path(),
        &[
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--http-addr",
            "0.0.0.0:0",
        ],
    );
    assert_usage_error(&http, "--http-addr");

    let mut command = Command::new(BINARY);
    command
        .args(["--grpc-addr", "0.0.0.0:0", "--metrics-addr", "127.0.0.1:0"])
        .args(["--insecure-plaintext", "--log-format", "json", "--data-dir"])
        .arg(dir.path());
    let server = start_command(command);
    assert!(server.log().contains("\"tls\":false"), "{}", server.log());
    assert!(server.terminate(), "exits 0 on SIGTERM");
}

#[test]
fn unusable_settings_exit_64_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, flag) in [
        (&["--publish-interval", "0s"][..], "--publish-interval"),
        (&["--request-timeout", "0s"], "--request-timeout"),
        (&["--shutdown-grace", "0s"], "--shutdown-grace"),
        (
            &["--max-concurrent-phone-requests", "0"],
            "--max-concurrent-phone-requests",
        ),
        (&["--max-message-bytes", "0"], "--max-message-bytes"),
        // Removed settings stop the start, naming what replaced them.
        (&["--min-elements", "10000"], "--min-elements"),
        (&["--gaen-min-records", "1000"], "--gaen-min-records"),
        (&["--pad-min-keys", "4990"], "--pad-min-keys"),
        (&["--confirm-prefix-bits", "7"], "--confirm-prefix-bits"),
        (&["--gaen-key-id", "45 2"], "--gaen-key-id"),
        (&["--gaen-key-version", ""], "--gaen-key-version"),
        (&["--tls-cert", "/nonexistent.pem"], "--tls-key"),
        (&["--client-ca", "/nonexistent.pem"], "--tls-cert"),
        (
            &[
                "--tls-cert",
                "/nonexistent.crt",
                "--tls-key",
                "/nonexistent.key",
            ],
            "--tls-cert",
        ),
    ] {
        let output = run(dir.path(), args);
        assert_usage_error(&output, flag);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "a refused start leaves the data dir untouched"
    );
    let help = Command::new(BINARY).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--tls-cert",
        "--tls-key",
        "--client-ca",
        "--insecure-plaintext",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
    assert!(help.contains("millions of digests"), "{help}");
}

#[test]
fn publish_options_come_from_the_environment_comma_separated() {
    // The second of two comma-separated options has no `=`: only an environment variable
    // that is read and split at the comma makes the server and `publish-sync` refuse it. Were
    // it ignored, the server would start: its bucket is then a loopback port that nothing
    // serves, with static keys (no instance-metadata lookup), and it is stopped after 20 s.
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &[
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ][..],
        &["publish-sync"],
    ] {
        let stderr_file = tempfile::NamedTempFile::new().expect("stderr file");
        let mut child = Command::new(BINARY)
            .env("EXPOSURE_HTTP_ADDR", "127.0.0.1:0")
            .env("EXPOSURE_CONSOLE_ADDR", "127.0.0.1:0")
            .env("EXPOSURE_PUBLISH_TO", "s3://exposure/v1root")
            .env("AWS_ENDPOINT", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env(
                "EXPOSURE_PUBLISH_OPTION",
                "aws_allow_http=true,secret-looking-text",
            )
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file.reopen().expect("reopen"))
            .spawn()
            .expect("run exposure-server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().expect("kill");
                break child.wait().expect("reap");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(stderr_file.path()).expect("stderr");
        assert_eq!(status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains("--publish-option"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("secret-looking-text"),
            "an option may hold a secret and is never echoed: {stderr}"
        );
    }
}

#[test]
fn a_non_empty_folder_without_a_store_is_refused_and_a_missing_one_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("thesis.tex"), "not a database").expect("write");
    let refused = run(
        dir.path(),
        &[
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    assert_usage_error(&refused, "--data-dir");
    let admin = common::admin(dir.path(), &["authority", "list"]);
    assert_usage_error(&admin, "--data-dir");
    assert!(!dir.path().join("db").exists(), "no store was created");

    let fresh = dir.path().join("new-store");
    let server = start(&fresh, &["--metrics-addr", "127.0.0.1:0"]);
    assert!(
        server.log().contains("creating a new store at"),
        "{}",
        server.log()
    );
    assert!(server.terminate());
    let again = start(&fresh, &["--metrics-addr", "127.0.0.1:0"]);
    assert!(
        !again.log().contains("creating a new store"),
        "an existing store is opened silently"
    );
    assert!(again.terminate());
}

#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"umask 000; exec "$0" --grpc-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --log-format json --publish-interval 200ms --release-delay 0s --data-dir "$1""#)
        .arg(BINARY)
        .arg(&data);
    let server: RunningBinary = start_command(command);
    let token = common::add_authority(&data, "VN-TB");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 7)),
        tonic::Code::Ok
    );
    // The files publishing writes (batch, GAEN export) are private too.
    server.wait_for_log("\"message\":\"batch published\"");
    assert!(server.terminate());

    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(path) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "{} is a private folder", path.display());
            stack.extend(
                std::fs::read_dir(&path)
                    .expect("read dir")
                    .map(|entry| entry.expect("entry").path()),
            );
        } else {
            assert_eq!(mode, 0o600, "{} is a private file", path.display());
        }
        checked += 1;
    }
    assert!(checked > 10, "walked the store: {checked} entries");
}

const FORGED: &str =
    "2030-01-01T00:00:00.000000Z  INFO exposure_server::inbox: FORGED authority added";

/// Runs the binary with text logs at `rust_log`, sends one unauthenticated upload whose region
/// carries a newline and a forged log line, and returns everything it logged.
fn log_of_a_forging_upload(rust_log: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(BINARY);
    command
        .env("RUST_LOG", rust_log)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "text", "--data-dir"])
        .arg(dir.path());
    let server = common::start_text(command);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let region = format!("VN-TB\n{FORGED}");
    // A patient's code upload reaches the upload handler (a bad bearer token is refused before
    // its body is read), so its region is what a forger controls.
    let code = runtime.block_on(common::upload_as(
        &server.url,
        "UploadCode 7K3QX-9M2PD",
        &region,
        0,
    ));
    assert_ne!(code, tonic::Code::Ok, "the forging upload is refused");
    let log = server.log.clone();
    assert!(server.terminate());
    let log = log.lock().expect("log").clone();
    assert!(
        log.contains("upload refused"),
        "the refused upload was logged: {log}"
    );
    assert!(
        !log.lines().any(|line| line.starts_with("2030-01-01")),
        "no forged line: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal: {log}"
    );
    log
}

#[test]
fn a_request_cannot_forge_a_log_line() {
    let info = log_of_a_forging_upload("info");
    assert!(
        !info.contains("FORGED"),
        "text a client chose is not logged at INFO: {info}"
    );
    let debug = log_of_a_forging_upload("info,exposure_server=debug");
    assert!(
        debug.contains("VN-TB\\n2030-01-01"),
        "at DEBUG the region is logged, escaped: {debug}"
    );
}

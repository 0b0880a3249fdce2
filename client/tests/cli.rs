//! `exposure-client` end to end: the real binary against a real server on a loopback port (the
//! `exposure-tests` harness, manual clock at `TEST_NOW` so that the committed example keys file
//! is recent). Covers the code flow (issue, upload with the code as a phone, list, download,
//! verify), the bearer-token upload, a bad file (line and column or field named, exit 64), a
//! server validation error (field printed, exit 1), and that the token is never printed.

use std::path::{Path, PathBuf};
use std::process::Output;

use exposure_server::Clock;
use exposure_tests::{REGION, TEST_NOW, TestServer};

/// The example keys file of the README.
fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keys.json")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("read the example keys file")
}

/// One run of the binary: its exit code and what it printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `exposure-client --server URL ARGS` with `EXPOSURE_TOKEN` set to `env_token` (or unset),
/// off the async workers so that the in-process server keeps serving.
async fn client(server: &TestServer, env_token: Option<&str>, arguments: &[&str]) -> Run {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_exposure-client"));
    command.arg("--server").arg(&server.url).args(arguments);
    command
        .env_remove("EXPOSURE_TOKEN")
        .env_remove("EXPOSURE_SERVER");
    if let Some(token) = env_token {
        command.env("EXPOSURE_TOKEN", token);
    }
    let output: Output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run exposure-client");
    let run = Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    };
    assert!(
        !run.stdout.contains(&server.token) && !run.stderr.contains(&server.token),
        "the token is never printed: {arguments:?}"
    );
    run
}

async fn start() -> TestServer {
    TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_from_issue_to_a_verified_batch() {
    let server = start().await;
    let dir = tempfile::tempdir().expect("temporary dir");
    let token_file = write(dir.path(), "token", &format!("{}\n", server.token));

    let issued = client(
        &server,
        None,
        &[
            "--token-file",
            &token_file,
            "codes",
            "issue",
            "--region",
            REGION,
            "--count",
            "2",
        ],
    )
    .await;
    assert_eq!(issued.code, 0, "{}", issued.stderr);
    let codes: Vec<&str> = issued.stdout.lines().collect();
    assert_eq!(codes.len(), 2, "one code per line: {}", issued.stdout);
    for code in &codes {
        assert!(
            code.len() == 11 && code.as_bytes()[5] == b'-',
            "XXXXX-XXXXX: {code}"
        );
    }

    let json = client(
        &server,
        Some(&server.token),
        &[
            "codes",
            "issue",
            "--region",
            REGION,
            "--count",
            "1",
            "--valid-for",
            "48h",
            "--format",
            "json",
            "--report-type",
            "clinical",
        ],
    )
    .await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON output");
    assert_eq!(document["codes"][0]["expires_at"], TEST_NOW + 48 * 3600);
    assert_eq!(
        document["codes"][0]["code"].as_str().expect("code").len(),
        11
    );

    // The phone's upload: the example file with the first code.
    let example = example_path();
    let example = example.to_str().expect("utf-8 path");
    let uploaded = client(
        &server,
        None,
        &["upload", "--code", codes[0], "--file", example],
    )
    .await;
    assert_eq!(uploaded.code, 0, "{}", uploaded.stderr);
    assert!(
        uploaded.stdout.contains("3 key(s) accepted"),
        "{}",
        uploaded.stdout
    );
    assert!(
        !uploaded.stdout.contains(codes[0]),
        "the code is not echoed"
    );
    let again = client(
        &server,
        None,
        &["upload", "--code", codes[0], "--file", example],
    )
    .await;
    assert_eq!(
        again.code, 0,
        "a retry gets the first answer: {}",
        again.stderr
    );
    assert!(again.stdout.contains("replay"), "{}", again.stdout);
    let other_case = write(
        dir.path(),
        "other.json",
        &example_text().replace("case-2026-0001", "case-2026-0002"),
    );
    let reused = client(
        &server,
        None,
        &["upload", "--code", codes[0], "--file", &other_case],
    )
    .await;
    assert_eq!(reused.code, 1, "a used code is refused");
    assert!(
        reused.stderr.contains("UNAUTHENTICATED"),
        "{}",
        reused.stderr
    );
    let elsewhere = write(
        dir.path(),
        "elsewhere.json",
        &example_text().replace("VN-TB", "VN-HN"),
    );
    let wrong_region = client(
        &server,
        None,
        &["upload", "--code", codes[1], "--file", &elsewhere],
    )
    .await;
    assert_eq!(wrong_region.code, 1, "the file's region must be the code's");
    assert!(
        wrong_region.stderr.contains("PERMISSION_DENIED"),
        "{}",
        wrong_region.stderr
    );

    // The case is published; list, download and verify it.
    server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let listed = client(
        &server,
        None,
        &["batches", "list", "--region", REGION, "--format", "json"],
    )
    .await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listing: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON listing");
    let batch_id = listing["batches"][0]["batch_id"]
        .as_str()
        .expect("batch id")
        .to_owned();
    let table = client(&server, None, &["batches", "list", "--region", REGION]).await;
    assert!(table.stdout.contains(&batch_id), "{}", table.stdout);
    let empty = client(
        &server,
        None,
        &["batches", "list", "--region", REGION, "--after", "1000"],
    )
    .await;
    assert!(
        empty.stdout.contains("0 batch(es) after 1000"),
        "{}",
        empty.stdout
    );

    let file = dir.path().join("batch.bin");
    let file = file.to_str().expect("utf-8 path");
    let downloaded = client(
        &server,
        None,
        &["batches", "download", "--id", &batch_id, "--out", file],
    )
    .await;
    assert_eq!(downloaded.code, 0, "{}", downloaded.stderr);
    let verified = client(&server, None, &["batches", "verify", file]).await;
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    assert!(
        verified.stdout.contains("OK, signed by key"),
        "{}",
        verified.stdout
    );
    assert!(verified.stdout.contains(&batch_id), "{}", verified.stdout);

    // A flipped bit in the signature fails verification.
    let mut bytes = std::fs::read(file).expect("read batch");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(file, &bytes).expect("write batch");
    let tampered = client(&server, None, &["batches", "verify", file]).await;
    assert_ne!(
        tampered.code, 0,
        "a tampered batch never verifies: {}",
        tampered.stdout
    );
    assert!(tampered.stderr.contains("error:"), "{}", tampered.stderr);

    let missing = client(
        &server,
        None,
        &[
            "batches",
            "download",
            "--id",
            &"0".repeat(64),
            "--out",
            file,
        ],
    )
    .await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("NOT_FOUND"), "{}", missing.stderr);

    let keys = client(&server, None, &["signing-keys"]).await;
    assert_eq!(keys.code, 0, "{}", keys.stderr);
    assert!(
        keys.stdout.contains("ecdsa-p256-sha256") && keys.stdout.contains("(current)"),
        "{}",
        keys.stdout
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_upload_and_every_kind_of_mistake() {
    let server = start().await;
    let dir = tempfile::tempdir().expect("temporary dir");
    let example = example_path();
    let example = example.to_str().expect("utf-8 path");
    let token = Some(server.token.as_str());

    let uploaded = client(&server, token, &["upload", "--file", example]).await;
    assert_eq!(uploaded.code, 0, "{}", uploaded.stderr);
    assert!(
        uploaded
            .stdout
            .contains("upload case-2026-0001: 3 key(s) accepted"),
        "{}",
        uploaded.stdout
    );

    // Not JSON: the line and column.
    let broken = write(
        dir.path(),
        "broken.json",
        &example_text().replacen("\"VN-TB\",", "\"VN-TB\"", 1),
    );
    let run = client(&server, token, &["upload", "--file", &broken]).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(run.stderr.contains("line 3, column"), "{}", run.stderr);
    // JSON, but not an upload: the field.
    let bad_hex = write(
        dir.path(),
        "bad-hex.json",
        &example_text().replace("00112233445566778899aabbccddeeff", "not hex"),
    );
    let run = client(&server, token, &["upload", "--file", &bad_hex]).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(
        run.stderr.contains("keys[0].gaen.key_data: not hex"),
        "{}",
        run.stderr
    );
    // Valid to the file, refused by the server: its field names, one per line.
    let too_long = write(
        dir.path(),
        "too-long.json",
        &example_text()
            .replace("\"rolling_period\": 144", "\"rolling_period\": 200")
            .replace("case-2026-0001", "case-2026-0003"),
    );
    let run = client(&server, token, &["upload", "--file", &too_long]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("INVALID_ARGUMENT"), "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|line| line
            .trim_start()
            .starts_with("keys[0].gaen.rolling_period:")),
        "{}",
        run.stderr
    );

    let wrong_token = client(
        &server,
        Some("not-the-token"),
        &["upload", "--file", example],
    )
    .await;
    assert_eq!(wrong_token.code, 1);
    assert!(
        wrong_token.stderr.contains("UNAUTHENTICATED"),
        "{}",
        wrong_token.stderr
    );
    assert!(!wrong_token.stderr.contains("not-the-token"));
    let no_token = client(&server, None, &["upload", "--file", example]).await;
    assert_eq!(no_token.code, 64);
    assert!(
        no_token.stderr.contains("--token-file"),
        "{}",
        no_token.stderr
    );
    let token_file = write(dir.path(), "token", &server.token);
    let both = client(
        &server,
        None,
        &[
            "--token-file",
            &token_file,
            "upload",
            "--code",
            "ABCDE-12345",
            "--file",
            example,
        ],
    )
    .await;
    assert_eq!(both.code, 64, "{}", both.stderr);
    let missing = client(
        &server,
        token,
        &["upload", "--file", "/nonexistent/keys.json"],
    )
    .await;
    assert_eq!(missing.code, 64);
    let no_flag = client(
        &server,
        token,
        &["upload", "--file", example, "--token", "x"],
    )
    .await;
    assert_eq!(no_flag.code, 64, "there is no --token flag");

    let help = client(&server, None, &["--help"]).await;
    assert_eq!(help.code, 0);
    for command in [
        "codes",
        "upload",
        "batches",
        "signing-keys",
        "Examples:",
        "64",
    ] {
        assert!(
            help.stdout.contains(command),
            "{command} missing from --help"
        );
    }
    server.stop().await;
}

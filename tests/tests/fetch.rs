//! `exposure-matcher fetch` through its binary against a real server's HTTP listener: it writes
//! exactly the batches gRPC lists (same bytes as GetBatch), skips what is already there on a
//! second run, and refuses a bad region with the usage exit status.

use std::path::PathBuf;
use std::process::{Command, Output};

use exposure_server::Clock;
use exposure_tests::fixtures::{self, download, gaen, key16};
use exposure_tests::{TEST_NOW, TestServer};

const DAY: u64 = 86_400;

/// Returns the `exposure-matcher` binary of this build, building it when a run of this package
/// alone did not (cargo builds only the binaries of the packages it tests).
fn matcher_binary() -> PathBuf {
    let test_exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/fetch-HASH → target/<profile>
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile folder");
    let binary = profile_dir.join(format!("exposure-matcher{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args([
            "build",
            "-p",
            "exposure-matcher",
            "--bin",
            "exposure-matcher",
        ]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building exposure-matcher failed");
    }
    binary
}

fn fetch(base_url: &str, region: &str, out: &std::path::Path) -> Output {
    Command::new(matcher_binary())
        .args(["fetch", "--base-url", base_url, "--region", region, "--out"])
        .arg(out)
        .output()
        .expect("run exposure-matcher fetch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_writes_every_listed_batch_once_and_verified() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let today = (TEST_NOW / DAY) as u32;
    server
        .upload(fixtures::upload(
            "a",
            vec![gaen(key16(1), (today - 1) * 144, 144)],
        ))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    server
        .upload(fixtures::upload(
            "b",
            vec![gaen(key16(2), (today - 2) * 144, 144)],
        ))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    let out = tempfile::tempdir().expect("out dir");

    let base = server.http_url.clone();
    let dir = out.path().to_owned();
    let first = tokio::task::spawn_blocking(move || fetch(&base, "VN-TB", &dir))
        .await
        .expect("fetch task");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut grpc = server.distribution_client().await;
    for info in &listing.batches {
        let written = std::fs::read(out.path().join(&info.batch_id)).expect("batch written");
        assert_eq!(written, download(&mut grpc, &info.batch_id).await);
        assert!(
            stdout.contains(&format!("fetched {}", info.batch_id)),
            "{stdout}"
        );
    }
    assert_eq!(
        std::fs::read_dir(out.path()).expect("list").count(),
        listing.batches.len(),
        "nothing else is written"
    );
    assert!(stdout.contains("2 batches fetched"), "{stdout}");

    let base = server.http_url.clone();
    let dir = out.path().to_owned();
    let again = tokio::task::spawn_blocking(move || fetch(&base, "VN-TB", &dir))
        .await
        .expect("fetch task");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("0 batches fetched") && stdout.contains("2 already present"),
        "{stdout}"
    );

    let base = server.http_url.clone();
    let dir = out.path().to_owned();
    let bad = tokio::task::spawn_blocking(move || fetch(&base, "vn-tb", &dir))
        .await
        .expect("fetch task");
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--region"));
    server.stop().await;
}

//! `exposure-matcher fetch` through its binary against a real server's HTTP listener: it writes
//! exactly the batches gRPC lists (same bytes as GetBatch), skips what is already there on a
//! second run, and refuses a bad region with the usage exit status.

use std::process::{Command, Output};

use exposure_server::Clock;
use exposure_tests::fixtures::{self, download, gaen, key16};
use exposure_tests::{TEST_NOW, TestServer};

const DAY: u64 = 86_400;

fn fetch(base_url: &str, region: &str, out: &std::path::Path) -> Output {
    Command::new(exposure_tests::binary::path(
        "exposure-matcher",
        "exposure-matcher",
    ))
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

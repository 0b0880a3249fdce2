//! Object-storage publishing (DESIGN.md section 10) against real targets: a `file://` folder
//! and moto, a real S3-protocol server process on loopback, reached through a relay the test
//! takes down to simulate an outage. The bucket must hold exactly what the HTTP listener
//! serves (GAEN exports included); an outage queues tasks durably (also across a restart) and loses nothing; a reader
//! polling the bucket never sees an index naming a missing object; retention removes objects;
//! `publish-sync` rebuilds an emptied bucket; `exposure-matcher fetch` reads the bucket.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exposure_proto::v1::{ListBatchesResponse, RegionIndex};
use exposure_server::Clock;
use exposure_server::storage::Store;
use exposure_tests::bucket_check::Target;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::s3::{self, Moto, Relay};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use http::StatusCode;
use prost::Message as _;

const DAY: u64 = 86_400;
const TODAY: u32 = (TEST_NOW / DAY) as u32;
const BUCKET: &str = "exposure";
const PREFIX: &str = "vn/prod";

/// Returns the outbox's length, read through a read-only view while the server runs.
fn queued(data_dir: &Path) -> usize {
    let store = Store::open_read_only(data_dir).expect("read-only store");
    store.outbox_stats().expect("outbox stats").0
}

/// Waits (30 s at most) until `done` holds for the outbox length.
async fn wait_queue(data_dir: &Path, done: impl Fn(usize) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dir = data_dir.to_owned();
        let length = tokio::task::spawn_blocking(move || queued(&dir))
            .await
            .expect("outbox read");
        if done(length) {
            return length;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox stuck at {length}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Uploads one GAEN key from `days_ago` and waits until the server lists `batches` batches.
async fn publish_one(server: &TestServer, id: &str, byte: u8, days_ago: u32, batches: usize) {
    let key = gaen(key16(byte), (TODAY - days_ago) * 144, 144);
    server.upload(fixtures::upload(id, vec![key])).await;
    server
        .wait_for_batches(|listing| listing.batches.len() == batches)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_target_holds_what_the_listener_serves_and_retention_removes_expired_batches() {
    let folder = tempfile::tempdir().expect("bucket folder");
    let url = format!("file://{}", folder.path().join("root").display());
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.publish_to = Some(url);
    })
    .await;
    publish_one(&server, "a", 1, 13, 1).await;
    publish_one(&server, "b", 2, 1, 2).await;
    let target = Target::Folder(folder.path().join("root"));
    let layout = target.wait_until_matches(&server.http_url).await;
    let batches = layout
        .keys()
        .filter(|path| path.starts_with("v1/batches/"))
        .count();
    assert_eq!(batches, 2, "{:?}", layout.keys());
    assert!(layout.contains_key("v1/signing-keys"));
    // Both uploads were GAEN keys: each publish run exported them in a zip of its own.
    let zips: Vec<&String> = layout
        .keys()
        .filter(|path| {
            path.starts_with(&format!("v1/regions/{REGION}/gaen/")) && path.ends_with(".zip")
        })
        .collect();
    assert_eq!(zips.len(), 2, "{:?}", layout.keys());
    let index = &layout[&format!("v1/regions/{REGION}/gaen/index.txt")];
    assert_eq!(
        String::from_utf8_lossy(&index.body),
        format!("{}\n{}", zips[0], zips[1]),
        "index.txt names both zips, oldest first, without a newline after the last"
    );

    // Two days on: the 13-day-old key's batch expires, the other stays (with a roll-up).
    let old = server.wait_for_batches(|_| true).await.batches[0]
        .batch_id
        .clone();
    clock.advance(2 * DAY);
    server
        .wait_for_batches(|listing| listing.batches.iter().all(|info| info.batch_id != old))
        .await;
    let after = target.wait_until_matches(&server.http_url).await;
    assert!(
        after
            .keys()
            .filter(|path| path.starts_with("v1/batches/"))
            .count()
            >= 1
    );
    for path in layout.keys().filter(|path| path.starts_with("v1/batches/")) {
        let id = path.trim_start_matches("v1/batches/");
        let listed = server
            .wait_for_batches(|_| true)
            .await
            .batches
            .iter()
            .any(|info| info.batch_id == id);
        assert_eq!(after.contains_key(path), listed, "{path}");
    }

    // Past the 14-day retention of both export files: index.txt goes (the listener answers
    // 404 for it), and so do the zips.
    clock.advance(13 * DAY);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let expired = loop {
        let layout = target.wait_until_matches(&server.http_url).await;
        if !layout.keys().any(|path| path.contains("/gaen/")) {
            break layout;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GAEN files never expired: {:?}",
            layout.keys()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(expired.contains_key("v1/signing-keys"));
    wait_queue(server.data_dir(), |length| length == 0).await;
    server.stop().await;
}

/// A reader that polls the bucket the way a phone behind a CDN would and counts every index
/// that names an object the bucket does not have.
fn start_reader(
    moto_url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let http = exposure_tests::http_client::HttpClient::new(&moto_url);
        let root = format!("/{BUCKET}/{PREFIX}");
        let (mut polls, mut dangling) = (0, 0);
        // Bounded: at most 100,000 polls, and the test stops it.
        while !stop.load(Ordering::Relaxed) && polls < 100_000 {
            polls += 1;
            // GAEN exports: every zip index.txt names must be there too.
            let gaen = http
                .get(&format!("{root}/v1/regions/{REGION}/gaen/index.txt"))
                .await;
            if gaen.status == StatusCode::OK {
                for line in String::from_utf8_lossy(&gaen.body).lines() {
                    if http.get(&format!("{root}/{line}")).await.status != StatusCode::OK {
                        dangling += 1;
                    }
                }
            }
            let index = http.get(&format!("{root}/v1/regions/{REGION}/index")).await;
            if index.status != StatusCode::OK {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let index = RegionIndex::decode(index.body.clone()).expect("index decodes");
            for day in index.days {
                let listing = http
                    .get(&format!("{root}/v1/regions/{REGION}/days/{day}"))
                    .await;
                if listing.status != StatusCode::OK {
                    dangling += 1;
                    continue;
                }
                let listing = ListBatchesResponse::decode(listing.body.clone()).expect("day");
                for info in listing.batches {
                    let batch = http
                        .get(&format!("{root}/v1/batches/{}", info.batch_id))
                        .await;
                    if batch.status != StatusCode::OK {
                        dangling += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (polls, dangling)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_publishing_survives_an_outage_and_a_restart_in_order() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket(BUCKET).await;
    let relay = Relay::start(&moto.url).await;
    let clock = Clock::manual(TEST_NOW);
    let options = s3::publish_options(&relay.url);
    let configure = |config: &mut exposure_server::ServerConfig| {
        config.publish_to = Some(format!("s3://{BUCKET}/{PREFIX}"));
        config.publish_options.options = options.clone();
        config.publish_retry_initial = Duration::from_millis(50);
        config.publish_retry_max = Duration::from_millis(400);
    };
    let server = TestServer::start_with(clock.clone(), configure).await;
    let target = Target::S3 {
        moto: &moto,
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
    };
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = start_reader(moto.url.clone(), stop_reader.clone());

    publish_one(&server, "a", 1, 1, 1).await;
    let first = target.wait_until_matches(&server.http_url).await;
    let batch = first
        .iter()
        .find(|(path, _)| path.starts_with("v1/batches/"))
        .expect("a batch object");
    assert_eq!(batch.1.cache_control, "public, max-age=31536000, immutable");
    assert_eq!(batch.1.content_type, "application/octet-stream");
    let index = &first[&format!("v1/regions/{REGION}/index")];
    assert_eq!(index.cache_control, "public, max-age=60");
    assert_eq!(index.content_type, "application/x-protobuf");

    // The endpoint goes down during publishing: batches still commit, the tasks queue up.
    relay.take_down();
    publish_one(&server, "b", 2, 1, 2).await;
    publish_one(&server, "c", 3, 2, 3).await;
    let length = wait_queue(server.data_dir(), |length| length >= 4).await;
    assert!(length >= 4, "two batches queue a put and a sync each");
    let found = target.layout().await;
    assert_eq!(
        found
            .keys()
            .filter(|path| path.starts_with("v1/batches/"))
            .count(),
        1,
        "nothing reached the bucket while it was down"
    );
    // Phones are still served by the listener meanwhile: signing keys, the region index, one
    // day index, three batches, and the GAEN index with its three zips.
    assert_eq!(
        exposure_tests::bucket_check::served(&server.http_url)
            .await
            .len(),
        10
    );

    // A restart while it is still down: the queue is durable.
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;
    let persisted = Store::open(dir.path())
        .expect("reopen")
        .outbox_stats()
        .expect("stats")
        .0;
    assert!(persisted >= length, "{persisted} < {length}");
    let refused = relay.refused();
    let server = TestServer::restart(&dir, token, clock.clone(), config).await;
    // The restarted server's first attempts meet the outage before the endpoint comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay.refused() == refused {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted server never tried the endpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.bring_up();
    wait_queue(server.data_dir(), |length| length == 0).await;
    let complete = target.wait_until_matches(&server.http_url).await;
    assert_eq!(
        complete
            .keys()
            .filter(|path| path.starts_with("v1/batches/"))
            .count(),
        3
    );
    stop_reader.store(true, Ordering::Relaxed);
    let (polls, dangling) = reader.await.expect("reader");
    assert!(polls > 10, "the reader polled {polls} times");
    assert_eq!(dangling, 0, "an index named a missing object");
    server.stop_kept().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retention_publish_sync_and_fetch_through_the_bucket() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket(BUCKET).await;
    let clock = Clock::manual(TEST_NOW);
    let options = s3::publish_options(&moto.url);
    let publish_options = options.clone();
    let server = TestServer::start_with(clock.clone(), move |config| {
        config.publish_to = Some(format!("s3://{BUCKET}/{PREFIX}"));
        config.publish_options.options = publish_options;
        config.publish_retry_initial = Duration::from_millis(50);
    })
    .await;
    let target = Target::S3 {
        moto: &moto,
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
    };
    publish_one(&server, "old", 1, 13, 1).await;
    publish_one(&server, "new", 2, 1, 2).await;
    let before = target.wait_until_matches(&server.http_url).await;

    // exposure-matcher fetch reads the bucket through moto's path-style HTTP endpoint.
    let out = tempfile::tempdir().expect("fetch folder");
    let base = format!("{}/{BUCKET}/{PREFIX}", moto.url);
    let dir = out.path().to_owned();
    let fetched: Output = tokio::task::spawn_blocking(move || {
        Command::new(exposure_tests::binary::path(
            "exposure-matcher",
            "exposure-matcher",
        ))
        .args(["fetch", "--base-url", &base, "--region", REGION, "--out"])
        .arg(&dir)
        .output()
        .expect("run fetch")
    })
    .await
    .expect("fetch task");
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    for (path, object) in before
        .iter()
        .filter(|(path, _)| path.starts_with("v1/batches/"))
    {
        let id = path.trim_start_matches("v1/batches/");
        assert_eq!(
            std::fs::read(out.path().join(id)).expect("fetched"),
            object.body
        );
    }

    // Retention: the old batch goes from the bucket, the index first.
    let old = server.wait_for_batches(|_| true).await.batches[0]
        .batch_id
        .clone();
    clock.advance(2 * DAY);
    server
        .wait_for_batches(|listing| listing.batches.iter().all(|info| info.batch_id != old))
        .await;
    let after = target.wait_until_matches(&server.http_url).await;
    let old_batches: Vec<&String> = before
        .keys()
        .filter(|path| path.starts_with("v1/batches/") && !after.contains_key(*path))
        .collect();
    assert_eq!(old_batches.len(), 1, "the 13-day-old batch is deleted");

    // publish-sync rebuilds an emptied bucket from the stopped server's data directory.
    let config = server.config.clone();
    let token = server.token.clone();
    let dir = server.stop().await;
    for key in moto.keys(BUCKET, &format!("{PREFIX}/")).await {
        moto.delete(BUCKET, &key).await;
    }
    assert!(target.layout().await.is_empty());
    let data_dir = dir.path().to_owned();
    let synced = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(exposure_tests::binary::path(
            "exposure-server",
            "exposure-server",
        ));
        command
            .args(["publish-sync", "--data-dir"])
            .arg(&data_dir)
            .args(["--publish-to", &format!("s3://{BUCKET}/{PREFIX}")]);
        for option in &options {
            command.args(["--publish-option", option]);
        }
        command.output().expect("run publish-sync")
    })
    .await
    .expect("publish-sync task");
    let stdout = String::from_utf8_lossy(&synced.stdout);
    assert!(
        synced.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert!(stdout.contains("published"), "{stdout}");
    // Same paths and bytes; publish-sync reads the system clock, so the day indexes of the
    // test's manual "today" are written as closed days (max-age=86400).
    let rebuilt = target.layout().await;
    assert_eq!(
        rebuilt.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, object) in &after {
        assert_eq!(rebuilt[path].body, object.body, "{path}");
        assert_eq!(rebuilt[path].content_type, object.content_type, "{path}");
    }
    let server = TestServer::restart(&dir, token, clock, config).await;
    target.wait_until_matches(&server.http_url).await;
    server.stop_kept().await;
    drop(dir);
}

/// Returns whether the folder bucket at `root` holds `path`.
fn holds(root: &Path, path: &str) -> bool {
    root.join(path).is_file()
}

/// Waits (30 s at most) until `done` holds for the folder bucket at `root`.
async fn wait_bucket(root: &Path, what: &str, done: impl Fn(&Path) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(root) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the batch files (`v1/batches/…`) in the folder bucket at `root`.
fn batch_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("v1/batches")).map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_forever_holds_back_only_what_waits_for_it() {
    exposure_tests::scrape::install();
    let data = tempfile::tempdir().expect("data dir");
    let folder = tempfile::tempdir().expect("bucket folder");
    let root = folder.path().join("root");
    // A plain file sits where VN-TB's day indexes go, so every sync of VN-TB's indexes fails
    // (as a path the bucket's credentials may not write would; these tests may run as root,
    // for whom no permission is denied).
    std::fs::create_dir_all(root.join(format!("v1/regions/{REGION}"))).expect("region folder");
    let blocker = root.join(format!("v1/regions/{REGION}/days"));
    std::fs::write(&blocker, b"in the way").expect("blocker");
    let other_token = exposure_tests::add_authority(data.path(), &["VN-HN"]);
    let url = format!("file://{}", root.display());
    let server = TestServer::start_in(data.path(), Clock::manual(TEST_NOW), |config| {
        config.publish_to = Some(url);
        config.publish_retry_initial = Duration::from_millis(50);
        config.publish_retry_max = Duration::from_millis(400);
    })
    .await;

    publish_one(&server, "tb", 1, 1, 1).await;
    // VN-TB's batch file goes up (nothing it names is missing), its indexes cannot.
    wait_bucket(&root, "VN-TB's batch file", |root| batch_files(root) == 1).await;
    let failing = exposure_tests::scrape::until("a failing task counted", |scrape| {
        scrape.value("exposure_publish_tasks_failing", &[]) == Some(1.0)
            && scrape
                .value("exposure_publish_task_failures_max", &[])
                .is_some_and(|failures| failures >= 3.0)
    })
    .await;
    assert!(
        failing
            .value("exposure_publish_queue_length", &[])
            .is_some_and(|length| length >= 1.0),
        "{}",
        failing.text
    );

    // A later batch of another region is published in full meanwhile.
    let mut request = fixtures::upload("hn", vec![gaen(key16(2), (TODAY - 1) * 144, 144)]);
    request.region = "VN-HN".into();
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {other_token}").parse().expect("ascii"),
    );
    server
        .upload_client()
        .await
        .upload_diagnosis_keys(request)
        .await
        .expect("VN-HN upload");
    wait_bucket(&root, "VN-HN's batch and indexes", |root| {
        batch_files(root) == 2 && holds(root, "v1/regions/VN-HN/index")
    })
    .await;
    assert!(
        !holds(&root, &format!("v1/regions/{REGION}/index")),
        "VN-TB's index waits for its day indexes"
    );

    // Once the path is writable, VN-TB's indexes follow and the queue empties.
    std::fs::remove_file(&blocker).expect("remove the blocker");
    wait_bucket(&root, "VN-TB's indexes", |root| {
        holds(root, &format!("v1/regions/{REGION}/index"))
    })
    .await;
    exposure_tests::scrape::until("an empty queue with nothing failing", |scrape| {
        scrape.value("exposure_publish_queue_length", &[]) == Some(0.0)
            && scrape.value("exposure_publish_tasks_failing", &[]) == Some(0.0)
            && scrape.value("exposure_publish_task_failures_max", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(wait_queue(data.path(), |length| length == 0).await, 0);
    server.stop_kept().await;
}

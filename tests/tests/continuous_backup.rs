//! Continuous backup (`--backup-to`, DESIGN.md section 15) with the real binary: a primary
//! shipping to moto (a real S3-protocol server) is SIGKILLed under uploads and restored from the
//! bucket with every upload acknowledged more than one log interval before the kill; a backup in
//! a local bucket restores a point in time (`--at`), continues sequences after the public
//! bucket's index, and refuses a flipped, swapped or wrongly keyed object, naming it; uploads
//! after a publish run are restored with its batch, its bulk load shipped in the log, and a
//! tampered or missing load is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{DiagnosisKey, RegionIndex};
use exposure_server::storage::Store;
use exposure_server::storage::keys::dedup_key;
use exposure_tests::binary::{self, ServerProcess};
use exposure_tests::fixtures;
use exposure_tests::s3::{self, Moto};
use exposure_tests::{REGION, add_authority};

const BUCKET: &str = "exposure-backups";

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A GAEN key of yesterday, distinct for each `index`.
fn key(index: u32) -> DiagnosisKey {
    let mut key_data = [0xb7; 16];
    key_data[..4].copy_from_slice(&index.to_be_bytes());
    fixtures::gaen(key_data, ((now_seconds() / 86_400 - 1) * 144) as u32, 144)
}

/// Returns whether `store` holds `key` (its dedup entry, written with the key).
fn holds(store: &Store, key: &DiagnosisKey) -> bool {
    let stored = exposure_server::storage::records::StoredKey {
        key: Some(key.clone()),
        ..Default::default()
    };
    let material = stored.matcher_key().expect("converts").dedup_material();
    store
        .find_duplicate(&dedup_key(REGION, &material))
        .expect("lookup")
        .is_some()
}

/// Uploads `key` with `token`; returns whether it was acknowledged.
async fn upload(url: &str, token: &str, upload_id: &str, key: DiagnosisKey) -> bool {
    let Ok(mut client) = KeyUploadClient::connect(url.to_owned()).await else {
        return false;
    };
    upload_with(&mut client, token, upload_id, key).await
}

/// Uploads `key` through `client`; returns whether it was acknowledged.
async fn upload_with(
    client: &mut KeyUploadClient<tonic::transport::Channel>,
    token: &str,
    upload_id: &str,
    key: DiagnosisKey,
) -> bool {
    try_upload(client, token, upload_id, key).await.is_ok()
}

/// Uploads `key` through `client`; returns the refusal.
async fn try_upload(
    client: &mut KeyUploadClient<tonic::transport::Channel>,
    token: &str,
    upload_id: &str,
    key: DiagnosisKey,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(fixtures::upload(upload_id, vec![key]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    client.upload_diagnosis_keys(request).await.map(|_| ())
}

/// Writes a backup key file of `byte`s; returns its path.
fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [byte; 32]).expect("key file");
    path
}

/// Runs `exposure-server restore` with `args`; returns (success, stdout + stderr).
fn restore(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary::path("exposure-server", "exposure-server"))
        .arg("restore")
        .args(args)
        .output()
        .expect("run restore");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Waits until `ready` holds (30 s at most), polling.
async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_after_sigkill_holds_every_upload_acknowledged_a_log_interval_before() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().expect("data dir");
    let keys = tempfile::tempdir().expect("keys");
    let backup_key = key_file(keys.path(), "backup.key", 0x42);
    let token = add_authority(dir.path(), &[REGION]);
    let backup_url = format!("s3://{BUCKET}/prod");
    let log_interval = Duration::from_millis(500);
    let mut flags: Vec<String> = [
        "--backup-to",
        &backup_url,
        "--backup-key-file",
        path_str(&backup_key),
        "--backup-log-interval",
        "500ms",
        "--publish-interval",
        "1h",
        "--release-delay",
        "0s",
        // The default 600 calls a minute would refuse the load after its first burst, each
        // refusal answered `--refusal-delay` (1 s) late: the load must run up to the kill.
        "--authority-uploads-per-minute",
        "0",
    ]
    .iter()
    .map(|flag| (*flag).to_owned())
    .collect();
    let options = s3::publish_options(&moto.url);
    for option in &options {
        flags.extend(["--backup-option".to_owned(), option.clone()]);
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = ServerProcess::start(dir.path(), &flag_refs);
    wait_until("the first checkpoint", async || {
        moto.keys(BUCKET, "prod/checkpoints/")
            .await
            .iter()
            .any(|key| key.ends_with("/manifest"))
    })
    .await;

    // One upload after another, each recorded with the moment it was acknowledged.
    let acknowledged: Arc<Mutex<Vec<(Instant, DiagnosisKey)>>> = Arc::default();
    let load = {
        let (acknowledged, url, token) =
            (acknowledged.clone(), server.grpc_url.clone(), token.clone());
        tokio::spawn(async move {
            let mut client = KeyUploadClient::connect(url).await.expect("connect");
            for index in 0..100_000u32 {
                let key = key(index);
                if let Err(status) =
                    try_upload(&mut client, &token, &format!("kill-{index}"), key.clone()).await
                {
                    eprintln!(
                        "upload {index} not acknowledged: {:?} {}",
                        status.code(),
                        status.message()
                    );
                    return;
                }
                acknowledged
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), key));
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    server.kill();
    load.await.expect("load");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    // When the uploads were answered, for a stall of the write path: the longest wait between
    // two answers and how long before the kill the last one came.
    let mut longest = (Duration::ZERO, Duration::ZERO);
    for pair in acknowledged.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        if gap > longest.0 {
            longest = (gap, killed_at.duration_since(pair[1].0));
        }
    }
    let last_answer = acknowledged
        .last()
        .map(|(at, _)| killed_at.duration_since(*at));
    eprintln!(
        "answers: {} in {:?}; longest wait between two {:?}, ending {:?} before the kill; the last {last_answer:?} before it",
        acknowledged.len(),
        acknowledged
            .first()
            .map(|(at, _)| killed_at.duration_since(*at)),
        longest.0,
        longest.1,
    );
    let early: Vec<&DiagnosisKey> = acknowledged
        .iter()
        .filter(|(at, _)| killed_at.duration_since(*at) > log_interval)
        .map(|(_, key)| key)
        .collect();
    // The boundary is exercised: uploads answered just more than one log interval before the
    // kill (which must be restored) and within the last interval (which may be lost), so the
    // write path did not stall while the backup shipped.
    let age = |at: &Instant| killed_at.duration_since(*at);
    assert!(
        acknowledged
            .iter()
            .any(|(at, _)| age(at) > log_interval && age(at) <= 2 * log_interval),
        "uploads were acknowledged between one and two log intervals before the kill"
    );
    assert!(
        last_answer.is_some_and(|last| last <= log_interval),
        "uploads were acknowledged within the last log interval before the kill: the last {last_answer:?} before it"
    );

    let restored = tempfile::tempdir().expect("restore target");
    let mut args = vec![
        "--from".to_owned(),
        backup_url.clone(),
        "--data-dir".to_owned(),
        path_str(restored.path()).to_owned(),
        "--backup-key-file".to_owned(),
        path_str(&backup_key).to_owned(),
    ];
    for option in &options {
        args.extend(["--from-option".to_owned(), option.clone()]);
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (restored_ok, report) = restore(&arg_refs);
    assert!(restored_ok, "{report}");
    assert!(
        report.contains("every file opened with the key"),
        "{report}"
    );
    let store = Store::open(restored.path()).expect("the restored store opens");
    let missing = early.iter().filter(|key| !holds(&store, key)).count();
    let later_present = acknowledged[early.len()..]
        .iter()
        .filter(|(_, key)| holds(&store, key))
        .count();
    eprintln!(
        "{} uploads acknowledged, {} more than {log_interval:?} before the kill ({missing} of them missing after the restore); {later_present} of the {} later ones restored too",
        acknowledged.len(),
        early.len(),
        acknowledged.len() - early.len()
    );
    assert_eq!(
        missing, 0,
        "an upload acknowledged more than one log interval before the kill is missing"
    );
    drop(store);

    // The restored store starts as the primary did: its signing key came sealed in the
    // backup, and the primary's token still uploads.
    let server = ServerProcess::start(restored.path(), &["--publish-interval", "1h"]);
    assert!(
        upload(&server.grpc_url, &token, "after-restore", key(1_000_000)).await,
        "the primary's token uploads to the restored store"
    );
    assert!(server.terminate());
}

/// A primary with an upload authority, shipping a sealed backup to a `file://` bucket folder
/// every 200 ms and publishing to another every 300 ms (no release delay, no padding).
struct SealedPrimary {
    /// The primary's data directory.
    dir: tempfile::TempDir,
    /// Holds both bucket folders (and whatever a test restores beside them).
    buckets: tempfile::TempDir,
    /// Holds the backup key file (and any other key a test writes).
    keys: tempfile::TempDir,
    backup_key: PathBuf,
    backup_dir: PathBuf,
    public_dir: PathBuf,
    backup_url: String,
    public_url: String,
    token: String,
    server: ServerProcess,
}

impl SealedPrimary {
    /// Makes the folders, the key and the authority, and starts the server.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("data dir");
        let buckets = tempfile::tempdir().expect("buckets");
        let keys = tempfile::tempdir().expect("keys");
        let backup_key = key_file(keys.path(), "backup.key", 0x42);
        let backup_dir = buckets.path().join("backup");
        let public_dir = buckets.path().join("public");
        let backup_url = format!("file://{}", backup_dir.display());
        let public_url = format!("file://{}", public_dir.display());
        let token = add_authority(dir.path(), &[REGION]);
        let server = ServerProcess::start(
            dir.path(),
            &[
                "--backup-to",
                &backup_url,
                "--backup-key-file",
                path_str(&backup_key),
                "--backup-log-interval",
                "200ms",
                "--publish-to",
                &public_url,
                "--publish-interval",
                "300ms",
                "--release-delay",
                "0s",
                "--pad-min-keys",
                "0",
            ],
        );
        Self {
            dir,
            buckets,
            keys,
            backup_key,
            backup_dir,
            public_dir,
            backup_url,
            public_url,
            token,
            server,
        }
    }
}

/// Returns the latest sequence of `REGION`'s index in the public bucket folder (0: none yet).
fn latest_published(public_dir: &Path) -> u64 {
    std::fs::read(public_dir.join(format!("v1/regions/{REGION}/index")))
        .ok()
        .and_then(|body| <RegionIndex as prost::Message>::decode(body.as_slice()).ok())
        .map_or(0, |index| index.latest_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_backup_restores_a_point_in_time_after_the_bucket_and_refuses_tampering() {
    let SealedPrimary {
        dir: _dir,
        buckets,
        keys,
        backup_key,
        backup_dir,
        public_dir,
        backup_url,
        public_url,
        token,
        server,
    } = SealedPrimary::start();
    let other_key = key_file(keys.path(), "other.key", 0x43);
    let published_sequence = || latest_published(&public_dir);
    let before = key(1);
    assert!(upload(&server.grpc_url, &token, "before", before.clone()).await);
    wait_until("the first batch in the public bucket", async || {
        published_sequence() >= 1
    })
    .await;
    // Two log intervals: the batch's bulk load and its commit are shipped in the log.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = now_seconds() + 1;
    while now_seconds() <= at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = key(2);
    assert!(upload(&server.grpc_url, &token, "after", after.clone()).await);
    let first_published = published_sequence();
    wait_until("the second batch in the public bucket", async || {
        published_sequence() > first_published
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Keys of today wait for their period's end, so these uploads are log records after the
    // newest checkpoint (no batch, no bulk load).
    for index in 0..3u32 {
        let mut key_data = [0x3d; 16];
        key_data[..4].copy_from_slice(&index.to_be_bytes());
        let today = fixtures::gaen(key_data, ((now_seconds() / 86_400) * 144) as u32, 144);
        assert!(upload(&server.grpc_url, &token, &format!("today-{index}"), today).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.terminate());
    let bucket_latest = published_sequence();

    // As of `at`: the first upload, not the second; sequences continue after the bucket's.
    let at_text = at.to_string();
    let past = buckets.path().join("past");
    let (ok, report) = restore(&[
        "--from",
        &backup_url,
        "--data-dir",
        path_str(&past),
        "--backup-key-file",
        path_str(&backup_key),
        "--at",
        &at_text,
        "--publish-to",
        &public_url,
        "--sequence-gap",
        "0",
    ]);
    assert!(ok, "{report}");
    let store = Store::open(&past).expect("opens");
    assert!(holds(&store, &before), "the upload before --at is restored");
    assert!(!holds(&store, &after), "the upload after --at is not");
    assert_eq!(
        store.batch_sequence(REGION).expect("sequence"),
        bucket_latest,
        "the next batch continues after the bucket's latest sequence: {report}"
    );
    drop(store);

    // The newest state holds both.
    let newest = buckets.path().join("newest");
    let (ok, report) = restore(&[
        "--from",
        &backup_url,
        "--data-dir",
        path_str(&newest),
        "--backup-key-file",
        path_str(&backup_key),
    ]);
    assert!(ok, "{report}");
    let store = Store::open(&newest).expect("opens");
    assert!(holds(&store, &before) && holds(&store, &after), "{report}");
    drop(store);

    // Tampering, each refused with the object's name; the target is left empty.
    let mut logs: Vec<PathBuf> = walk(&backup_dir)
        .into_iter()
        .filter(|path| path.parent().is_some_and(|parent| parent.ends_with("log")))
        .collect();
    logs.sort();
    let newest_checkpoint = walk(&backup_dir)
        .into_iter()
        .filter(|path| path.ends_with("manifest"))
        .max()
        .expect("a checkpoint");
    let chain: Vec<PathBuf> = logs
        .iter()
        .filter(|path| path.starts_with(newest_checkpoint.parent().expect("folder")))
        .cloned()
        .collect();
    assert!(
        chain.len() >= 2,
        "the newest checkpoint has a chain of logs: {chain:?}"
    );
    let relative = |path: &Path| {
        path.strip_prefix(&backup_dir)
            .expect("inside")
            .to_str()
            .expect("utf-8")
            .to_owned()
    };
    let refused = |name: &str, target: &str, key: &Path| {
        let target = buckets.path().join(target);
        let (ok, report) = restore(&[
            "--from",
            &backup_url,
            "--data-dir",
            path_str(&target),
            "--backup-key-file",
            path_str(key),
        ]);
        assert!(!ok, "restored despite tampering: {report}");
        assert!(
            report.contains(name) && report.contains("does not open with this key"),
            "{report}"
        );
        assert!(
            std::fs::read_dir(&target).map_or(true, |mut entries| entries.next().is_none()),
            "nothing is left in the target"
        );
    };
    // Another key: the checkpoint's manifest is refused first.
    refused(&relative(&newest_checkpoint), "other-key", &other_key);
    // A flipped byte in the first log object.
    let original = std::fs::read(&chain[0]).expect("log");
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    std::fs::write(&chain[0], &flipped).expect("flip");
    refused(&relative(&chain[0]), "flipped", &backup_key);
    // The first two log objects' bodies swapped.
    let second = std::fs::read(&chain[1]).expect("log");
    std::fs::write(&chain[0], &second).expect("swap");
    std::fs::write(&chain[1], &original).expect("swap");
    refused(&relative(&chain[0]), "swapped", &backup_key);
}

/// Returns every confirm digest of `REGION` in `store`.
fn confirm_digests(store: &Store) -> usize {
    (0..2u32)
        .map(|half| {
            store
                .confirm_bucket(REGION, half, 1)
                .expect("confirm scan")
                .len()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_after_a_publish_run_are_restored_with_its_batch_and_its_load_is_checked() {
    let SealedPrimary {
        dir,
        buckets,
        keys: _keys,
        backup_key,
        backup_dir,
        public_dir,
        backup_url,
        public_url: _,
        token,
        server,
    } = SealedPrimary::start();
    let log_interval = Duration::from_millis(200);
    wait_until("the first checkpoint", async || {
        objects(&backup_dir)
            .iter()
            .any(|name| name.ends_with("/manifest"))
    })
    .await;
    // A key of yesterday is published in the next run: its 144 elements' confirm digests are
    // bulk-loaded, outside the write-ahead log.
    let published = key(7);
    assert!(upload(&server.grpc_url, &token, "published", published.clone()).await);
    wait_until("the batch in the public bucket", async || {
        latest_published(&public_dir) >= 1
    })
    .await;
    // Keys of today wait for their period's end: after the run, only log records.
    let mut later = Vec::new();
    for index in 0..5u32 {
        let mut key_data = [0x5e; 16];
        key_data[..4].copy_from_slice(&index.to_be_bytes());
        let today = fixtures::gaen(key_data, ((now_seconds() / 86_400) * 144) as u32, 144);
        assert!(
            upload(
                &server.grpc_url,
                &token,
                &format!("later-{index}"),
                today.clone()
            )
            .await
        );
        later.push(today);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // More than one log interval, far less than a checkpoint of the default 24 h: then the
    // machine is lost.
    tokio::time::sleep(3 * log_interval).await;
    server.kill();

    let names = objects(&backup_dir);
    let manifests: Vec<&String> = names
        .iter()
        .filter(|name| name.ends_with("/manifest"))
        .collect();
    assert_eq!(
        manifests.len(),
        1,
        "the log continued past the bulk load, without a new checkpoint: {names:#?}"
    );
    let ingests: Vec<&String> = names
        .iter()
        .filter(|name| name.contains("/log/") && name.ends_with("-ingest"))
        .collect();
    assert_eq!(ingests.len(), 1, "one bulk load in the log: {names:#?}");
    let ingest = ingests[0].clone();

    let restore_into = |target: &str| {
        restore(&[
            "--from",
            &backup_url,
            "--data-dir",
            path_str(&buckets.path().join(target)),
            "--backup-key-file",
            path_str(&backup_key),
            "--sequence-gap",
            "0",
        ])
    };
    let (ok, report) = restore_into("restored");
    assert!(ok, "{report}");
    // The primary's own store (RocksDB recovers its WAL after the kill) is what the restore
    // must match.
    let primary = Store::open(dir.path()).expect("the killed primary's store opens");
    let (primary_digests, primary_sequence) = (
        confirm_digests(&primary),
        primary.batch_sequence(REGION).expect("sequence"),
    );
    drop(primary);
    assert!(
        primary_digests > 0 && primary_digests % 144 == 0,
        "the primary holds the batch's digests, 144 per key: {primary_digests}"
    );
    let store = Store::open(&buckets.path().join("restored")).expect("opens");
    assert!(holds(&store, &published), "the published key is restored");
    assert_eq!(
        confirm_digests(&store),
        primary_digests,
        "the published batch's confirm digests are restored"
    );
    assert_eq!(
        store.batch_sequence(REGION).expect("sequence"),
        primary_sequence,
        "the publish run's commit is restored"
    );
    let missing: Vec<usize> = (0..later.len())
        .filter(|index| !holds(&store, &later[*index]))
        .collect();
    assert!(
        missing.is_empty(),
        "uploads after the publish run are restored; missing: {missing:?}: {report}"
    );
    drop(store);

    // The load's object tampered with, then missing: refused, naming it (or, missing, the
    // object after it and the sequences it held).
    let ingest_path = backup_dir.join(&ingest);
    let original = std::fs::read(&ingest_path).expect("ingest object");
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    std::fs::write(&ingest_path, &flipped).expect("flip");
    let (ok, report) = restore_into("flipped");
    assert!(!ok, "restored despite a flipped byte in the load: {report}");
    assert!(
        report.contains(&ingest) && report.contains("does not open with this key"),
        "{report}"
    );
    std::fs::remove_file(&ingest_path).expect("remove");
    let (ok, report) = restore_into("missing");
    assert!(!ok, "restored without the load: {report}");
    let position: u64 = ingest.rsplit('/').next().expect("name")[..20]
        .parse()
        .expect("position");
    assert!(
        report.contains(&format!(
            "records {position}..={position} before it are missing"
        )),
        "{report}"
    );
}

/// Returns every file under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Returns every object name under the bucket folder `root`, relative to it.
fn objects(root: &Path) -> std::collections::BTreeSet<String> {
    walk(root)
        .into_iter()
        .map(|path| {
            path.strip_prefix(root)
                .expect("inside")
                .to_str()
                .expect("utf-8")
                .to_owned()
        })
        .collect()
}

/// Returns the `files/{sha256}` names an unsealed checkpoint manifest lists, read line by line
/// (format line, three header lines, then `{sha256} {length} {path}`).
fn listed_files(manifest: &str) -> Vec<String> {
    let mut lines = manifest.lines();
    assert_eq!(
        lines.next(),
        Some("format: exposure-server continuous backup 1")
    );
    for header in ["deployment: ", "sequence: ", "created_ms: "] {
        assert!(lines.next().is_some_and(|line| line.starts_with(header)));
    }
    lines
        .map(|line| {
            let digest = line.split(' ').next().expect("digest");
            assert_eq!(digest.len(), 64, "{line}");
            format!("files/{digest}")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_exactly_the_newest_checkpoints_and_what_they_need() {
    // 0 is refused, naming the flag.
    let refused_dir = tempfile::tempdir().expect("data dir");
    let output = Command::new(binary::path("exposure-server", "exposure-server"))
        .args(["--backup-to", "file:///nonexistent", "--backup-keep", "0"])
        .arg("--data-dir")
        .arg(refused_dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--backup-keep") && stderr.contains("at least 1"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("data dir");
    let buckets = tempfile::tempdir().expect("buckets");
    let backup_dir = buckets.path().join("backup");
    let backup_url = format!("file://{}", backup_dir.display());
    let token = add_authority(dir.path(), &[REGION]);
    let server = ServerProcess::start(
        dir.path(),
        &[
            "--backup-to",
            &backup_url,
            "--backup-keep",
            "2",
            "--backup-full-interval",
            "1s",
            "--backup-log-interval",
            "200ms",
            "--publish-interval",
            "1h",
        ],
    );
    // Uploads between checkpoints, so each checkpoint has files of its own (WAL, MANIFEST);
    // every checkpoint and file seen in the bucket on the way is remembered.
    let mut seen_checkpoints = std::collections::BTreeSet::new();
    let mut seen_files = std::collections::BTreeSet::new();
    let mut uploaded = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 0u32;
    while seen_checkpoints.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "5 checkpoints in 60 s: {seen_checkpoints:?}"
        );
        let key = key(index);
        assert!(
            upload(
                &server.grpc_url,
                &token,
                &format!("keep-{index}"),
                key.clone()
            )
            .await
        );
        uploaded.push(key);
        index += 1;
        for name in objects(&backup_dir) {
            if let Some(id) = name
                .strip_prefix("checkpoints/")
                .and_then(|rest| rest.strip_suffix("/manifest"))
            {
                seen_checkpoints.insert(id.to_owned());
            } else if name.starts_with("files/") {
                seen_files.insert(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A graceful stop finishes a checkpoint in progress and its prune.
    assert!(server.terminate());

    let remaining = objects(&backup_dir);
    let manifests: Vec<&String> = remaining
        .iter()
        .filter(|name| name.ends_with("/manifest"))
        .collect();
    assert_eq!(manifests.len(), 2, "{remaining:#?}");
    let kept: Vec<String> = manifests
        .iter()
        .map(|name| {
            name.strip_prefix("checkpoints/")
                .and_then(|rest| rest.strip_suffix("/manifest"))
                .expect("checkpoint id")
                .to_owned()
        })
        .collect();
    let newest_seen: Vec<&String> = seen_checkpoints.iter().rev().take(2).collect();
    assert!(
        kept.iter().all(|id| *id >= *newest_seen[1]),
        "the kept checkpoints {kept:?} are the newest (seen {seen_checkpoints:?})"
    );
    let mut expected = std::collections::BTreeSet::new();
    for id in &kept {
        let manifest_name = format!("checkpoints/{id}/manifest");
        let text = std::fs::read_to_string(backup_dir.join(&manifest_name)).expect("manifest");
        expected.extend(listed_files(&text));
        expected.insert(manifest_name);
        let log_folder = format!("checkpoints/{id}/log/");
        expected.extend(
            remaining
                .iter()
                .filter(|name| name.starts_with(&log_folder))
                .cloned(),
        );
    }
    assert_eq!(
        remaining, expected,
        "exactly the newest two checkpoints, their logs and their files remain"
    );
    let pruned_files = seen_files.difference(&remaining).count();
    assert!(
        pruned_files > 0,
        "files only older checkpoints listed were deleted"
    );
    eprintln!(
        "{} checkpoints seen, {} kept; {} files seen, {pruned_files} deleted; {} objects remain",
        seen_checkpoints.len(),
        kept.len(),
        seen_files.len(),
        remaining.len()
    );

    // The newest state restores with every upload.
    let newest = buckets.path().join("newest");
    let (ok, report) = restore(&["--from", &backup_url, "--data-dir", path_str(&newest)]);
    assert!(ok, "{report}");
    let store = Store::open(&newest).expect("opens");
    assert!(
        uploaded.iter().all(|key| holds(&store, key)),
        "every upload is restored: {report}"
    );
    drop(store);

    // Before the oldest kept checkpoint, nothing is left to restore, and the error says so.
    let oldest_ms: u64 = kept[0][..13].parse().expect("created_ms");
    let before = ((oldest_ms - 1) / 1000).to_string();
    let past = buckets.path().join("past");
    let (ok, report) = restore(&[
        "--from",
        &backup_url,
        "--data-dir",
        path_str(&past),
        "--at",
        &before,
    ]);
    assert!(
        !ok,
        "restored from before the oldest kept checkpoint: {report}"
    );
    assert!(
        report.contains("holds no checkpoint made by then")
            && report.contains("the oldest it keeps was made at")
            && report.contains("--backup-keep"),
        "{report}"
    );
}

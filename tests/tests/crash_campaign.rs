//! Crash campaign (issue 11): the real `exposure-server` binary runs with its publisher every
//! 300 ms and a `file://` bucket while authority uploads, upload-code uploads and revocations
//! stream in; it is SIGKILLed at a random moment, restarted, and after every kill the test
//! checks what a crash must never break:
//!
//! - every acknowledged upload is stored (unless an acknowledged revocation withdrew it), and
//!   every acknowledged revocation has withdrawn its key;
//! - no key is in two hourly batches, and after the last round every stored key is published;
//! - a region's batch sequences run 1, 2, 3, ... with no gap, in the store and for phones;
//! - every element of every published key still stored confirms (its digest is stored);
//! - every index entry names an existing object, in the bucket and on the HTTP listener
//!   (region index → day indexes → batches; `gaen/index.txt` → zips).
//!
//! `EXPOSURE_CRASH_KILLS` sets the number of kills (5 here, 50 in `scripts/crash-campaign.sh`);
//! `EXPOSURE_CRASH_SEED` replays a campaign (the seed is printed).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exposure_matcher::ConfirmDigest;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    BatchKind, DiagnosisKey, GaenKey, IssueUploadCodesRequest, ListBatchesResponse, RegionIndex,
    ReportType, UploadDiagnosisKeysRequest, diagnosis_key,
};
use exposure_server::storage::Store;
use exposure_server::storage::keys::dedup_key;
use exposure_server::storage::records::StoredKey;
use exposure_tests::REGION;
use exposure_tests::binary::{self, ServerProcess};
use exposure_tests::http_client::HttpClient;
use exposure_tests::reference;
use http::StatusCode;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tonic::transport::Channel;

/// Requests one load task sends at most per round (the kill usually comes first).
const REQUESTS_PER_TASK: usize = 400;

/// What the campaign knows about each key it sent, by key number.
#[derive(Default)]
struct Ledger {
    /// Uploads the server acknowledged.
    uploaded: BTreeSet<u32>,
    /// Revocations the server acknowledged.
    revoked: BTreeSet<u32>,
    /// Revocations sent and not acknowledged: the key may or may not be withdrawn.
    revoking: BTreeSet<u32>,
}

fn key(number: u32, interval: u32) -> DiagnosisKey {
    let mut key_data = [0x5a; 16];
    key_data[..4].copy_from_slice(&number.to_be_bytes());
    DiagnosisKey {
        key: Some(diagnosis_key::Key::Gaen(GaenKey {
            key_data: key_data.to_vec(),
            rolling_start_interval_number: interval,
            rolling_period: 144,
            days_since_onset_of_symptoms: None,
        })),
        transmission_risk_level: 0,
    }
}

fn stored_key(key: &DiagnosisKey) -> StoredKey {
    StoredKey {
        key: Some(key.clone()),
        ..Default::default()
    }
}

fn yesterday_interval() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    u32::try_from((now / 86_400 - 1) * 144).expect("interval")
}

fn add_authority(data_dir: &Path) -> String {
    let added = Command::new(binary::path("exposure-server", "exposure-server"))
        .args([
            "authority",
            "add",
            "--name",
            "crash campaign",
            "--region",
            REGION,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("authority add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    String::from_utf8(added.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("token line")
        .to_owned()
}

fn start(data_dir: &Path, bucket: &Path) -> ServerProcess {
    let publish_to = format!("file://{}", bucket.display());
    ServerProcess::start(
        data_dir,
        &[
            "--publish-interval",
            "300ms",
            "--release-delay",
            "0s",
            "--pad-min-keys",
            "0",
            "--publish-to",
            &publish_to,
            "--authority-uploads-per-minute",
            "0",
            "--authority-codes-per-minute",
            "0",
        ],
    )
}

fn authorized<T>(message: T, scheme: &str, credential: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("{scheme} {credential}").parse().expect("ascii"),
    );
    request
}

/// Uploads one new key per credential until one is refused (the server died).
async fn upload_keys(
    mut client: KeyUploadClient<Channel>,
    credentials: Vec<(&'static str, String)>,
    next_key: Arc<AtomicU32>,
    ledger: Arc<Mutex<Ledger>>,
    interval: u32,
) {
    for (scheme, credential) in credentials {
        let number = next_key.fetch_add(1, Ordering::SeqCst);
        let request = UploadDiagnosisKeysRequest {
            region: REGION.into(),
            upload_id: format!("u-{number}"),
            keys: vec![key(number, interval)],
            report_type: ReportType::ConfirmedTest as i32,
            padding: Vec::new(),
        };
        match client
            .upload_diagnosis_keys(authorized(request, scheme, &credential))
            .await
        {
            Ok(_) => {
                lock(&ledger).uploaded.insert(number);
            }
            Err(_) => return,
        }
    }
}

/// Sends uploads, code uploads and revocations until the server dies or the round's requests
/// run out, recording every acknowledgement in the ledger.
async fn load(
    client: KeyUploadClient<Channel>,
    token: String,
    codes: Vec<String>,
    next_key: Arc<AtomicU32>,
    ledger: Arc<Mutex<Ledger>>,
    interval: u32,
    seed: u64,
) {
    let mut tasks = Vec::new();
    // Two authority uploaders and one phone uploader spending upload codes.
    for _ in 0..2 {
        let bearer = vec![("Bearer", token.clone()); REQUESTS_PER_TASK];
        tasks.push(tokio::spawn(upload_keys(
            client.clone(),
            bearer,
            next_key.clone(),
            ledger.clone(),
            interval,
        )));
    }
    let codes = codes.into_iter().map(|code| ("UploadCode", code)).collect();
    tasks.push(tokio::spawn(upload_keys(
        client.clone(),
        codes,
        next_key.clone(),
        ledger.clone(),
        interval,
    )));
    // One revoker withdrawing keys acknowledged earlier.
    {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            for _ in 0..REQUESTS_PER_TASK / 8 {
                let target = {
                    let mut ledger = lock(&ledger);
                    let candidates: Vec<u32> = ledger
                        .uploaded
                        .iter()
                        .filter(|number| {
                            !ledger.revoked.contains(number) && !ledger.revoking.contains(number)
                        })
                        .copied()
                        .collect();
                    if candidates.is_empty() {
                        None
                    } else {
                        let number = candidates[rng.gen_range(0..candidates.len())];
                        ledger.revoking.insert(number);
                        Some(number)
                    }
                };
                let Some(number) = target else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let request = UploadDiagnosisKeysRequest {
                    region: REGION.into(),
                    upload_id: format!("r-{number}"),
                    keys: vec![key(number, interval)],
                    report_type: ReportType::Revoked as i32,
                    padding: Vec::new(),
                };
                match client
                    .upload_diagnosis_keys(authorized(request, "Bearer", &token))
                    .await
                {
                    Ok(_) => {
                        let mut ledger = lock(&ledger);
                        ledger.revoking.remove(&number);
                        ledger.revoked.insert(number);
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checks the stopped server's store against the ledger; returns the number of hourly batches.
fn check_store(data_dir: &Path, ledger: &Ledger, interval: u32, round: usize) -> usize {
    let store = Store::open(data_dir).expect("the store opens after the kill");
    let present = |number: u32| {
        let material = stored_key(&key(number, interval))
            .matcher_key()
            .expect("converts")
            .dedup_material();
        store
            .find_duplicate(&dedup_key(REGION, &material))
            .expect("dedup lookup")
            .is_some()
    };
    for &number in &ledger.uploaded {
        if ledger.revoking.contains(&number) {
            continue;
        }
        assert_eq!(
            present(number),
            !ledger.revoked.contains(&number),
            "round {round}: key {number} (acknowledged upload, revoked: {})",
            ledger.revoked.contains(&number)
        );
    }
    let mut batches = store.all_batches().expect("batches");
    batches.retain(|batch| batch.region == REGION);
    batches.sort_by_key(|batch| batch.info.as_ref().map_or(0, |info| info.sequence));
    let sequences: Vec<u64> = batches
        .iter()
        .map(|batch| batch.info.as_ref().expect("info").sequence)
        .collect();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(
        sequences, expected,
        "round {round}: batch sequences have a gap"
    );
    let mut published = HashSet::new();
    let mut hourly = 0;
    for batch in &batches {
        let info = batch.info.as_ref().expect("info");
        if info.kind != BatchKind::Hourly as i32 {
            continue;
        }
        hourly += 1;
        for &sequence in &batch.key_sequences {
            assert!(
                published.insert(sequence),
                "round {round}: key {sequence} is in two hourly batches"
            );
            // A key withdrawn since is gone with its digests; every other element confirms.
            let Some(stored) = store.key(sequence).expect("key") else {
                continue;
            };
            // The key's tags from the tests crate's reference implementation, not the server's.
            let key = stored.key.as_ref().expect("a stored key holds its key");
            for tag in reference::tags(key) {
                let digest = ConfirmDigest(reference::confirm_digest(&tag));
                assert!(
                    store.has_digest(REGION, &digest).expect("digest lookup"),
                    "round {round}: a published element of key {sequence} does not confirm"
                );
            }
        }
    }
    hourly
}

/// Returns the paths a region's indexes name in a `file://` bucket that are missing.
fn dangling_in_bucket(bucket: &Path) -> Vec<String> {
    let read = |path: &str| std::fs::read(bucket.join(path)).ok();
    let mut missing = Vec::new();
    if let Some(text) = read(&format!("v1/regions/{REGION}/gaen/index.txt")) {
        for line in String::from_utf8(text).expect("index.txt is UTF-8").lines() {
            if read(line).is_none() {
                missing.push(line.to_owned());
            }
        }
    }
    let Some(index) = read(&format!("v1/regions/{REGION}/index")) else {
        return missing;
    };
    let index = RegionIndex::decode(index.as_slice()).expect("region index decodes");
    for day in index.days {
        let day_path = format!("v1/regions/{REGION}/days/{day}");
        let Some(listing) = read(&day_path) else {
            missing.push(day_path);
            continue;
        };
        let listing = ListBatchesResponse::decode(listing.as_slice()).expect("day index decodes");
        for info in listing.batches {
            let path = format!("v1/batches/{}", info.batch_id);
            if read(&path).is_none() {
                missing.push(path);
            }
        }
    }
    missing
}

/// Checks what phones see from a running server: ListBatches sequences without a gap, and
/// every HTTP index entry served.
async fn check_served(server: &ServerProcess, round: usize) {
    let mut client = DistributionClient::connect(server.grpc_url.clone())
        .await
        .expect("connect");
    let listing = exposure_tests::list_all(&mut client).await;
    let sequences: Vec<u64> = listing.batches.iter().map(|info| info.sequence).collect();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(sequences, expected, "round {round}: phones see a gap");
    // Before the first batch the listener has no index to serve; from then on it must serve
    // both (every key of the campaign is a GAEN key, so every run also writes an export).
    let expected = if listing.batches.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let http = HttpClient::new(&server.http_url);
    let gaen = http
        .get(&format!("/v1/regions/{REGION}/gaen/index.txt"))
        .await;
    assert_eq!(
        gaen.status,
        expected,
        "round {round}: gaen/index.txt with {} batches listed",
        listing.batches.len()
    );
    if gaen.status == StatusCode::OK {
        for line in String::from_utf8_lossy(&gaen.body).lines() {
            let zip = http.get(&format!("/{line}")).await;
            assert_eq!(zip.status, StatusCode::OK, "round {round}: {line}");
        }
    }
    let index = http.get(&format!("/v1/regions/{REGION}/index")).await;
    assert_eq!(
        index.status,
        expected,
        "round {round}: the region index with {} batches listed",
        listing.batches.len()
    );
    if index.status != StatusCode::OK {
        return;
    }
    let index = RegionIndex::decode(index.body.clone()).expect("region index");
    for day in index.days {
        let listing = http.get(&format!("/v1/regions/{REGION}/days/{day}")).await;
        assert_eq!(listing.status, StatusCode::OK, "round {round}: day {day}");
        let listing = ListBatchesResponse::decode(listing.body.clone()).expect("day index");
        for info in listing.batches {
            let batch = http.get(&format!("/v1/batches/{}", info.batch_id)).await;
            assert_eq!(batch.status, StatusCode::OK, "round {round}: batch");
        }
    }
}

async fn issue_codes(client: &mut KeyUploadClient<Channel>, token: &str) -> Vec<String> {
    let request = IssueUploadCodesRequest {
        region: REGION.into(),
        count: 50,
        ..Default::default()
    };
    client
        .issue_upload_codes(authorized(request, "Bearer", token))
        .await
        .expect("codes issued")
        .into_inner()
        .codes
        .into_iter()
        .map(|code| code.code)
        .collect()
}

#[test]
fn sigkills_under_load_lose_nothing_and_publish_everything_once() {
    let kills: usize = std::env::var("EXPOSURE_CRASH_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("EXPOSURE_CRASH_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| rand::random::<u32>().into());
    eprintln!("crash campaign: {kills} kills, seed {seed} (EXPOSURE_CRASH_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (data_dir, bucket) = (dir.path().join("data"), dir.path().join("bucket"));
    let token = add_authority(&data_dir);
    let interval = yesterday_interval();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next_key = Arc::new(AtomicU32::new(0));

    for round in 1..=kills {
        let server = start(&data_dir, &bucket);
        runtime.block_on(check_served(&server, round));
        let kill_after = Duration::from_millis(rng.gen_range(200..1500));
        let round_seed = rng.r#gen::<u64>();
        runtime.block_on(async {
            let mut client = KeyUploadClient::connect(server.grpc_url.clone())
                .await
                .expect("connect");
            let codes = issue_codes(&mut client, &token).await;
            let load = tokio::spawn(load(
                client,
                token.clone(),
                codes,
                next_key.clone(),
                ledger.clone(),
                interval,
                round_seed,
            ));
            tokio::time::sleep(kill_after).await;
            server.kill();
            load.await.expect("load");
        });
        let ledger = lock(&ledger);
        let hourly = check_store(&data_dir, &ledger, interval, round);
        let dangling = dangling_in_bucket(&bucket);
        assert!(
            dangling.is_empty(),
            "round {round}: the bucket's indexes name missing objects: {dangling:?}"
        );
        eprintln!(
            "round {round}: killed after {} ms; {} uploads and {} revocations acknowledged so far, {} hourly batches",
            kill_after.as_millis(),
            ledger.uploaded.len(),
            ledger.revoked.len(),
            hourly
        );
    }

    // A last, clean run: everything stored gets published, exactly once.
    let server = start(&data_dir, &bucket);
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let pending = {
                let view = Store::open_read_only(&data_dir).expect("read-only view");
                view.releasable(u64::MAX).expect("pending").len()
            };
            if pending == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{pending} keys were never published"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        check_served(&server, kills + 1).await;
    });
    assert!(server.terminate(), "a clean stop after the campaign");
    let ledger = lock(&ledger);
    check_store(&data_dir, &ledger, interval, kills + 1);
    let store = Store::open(&data_dir).expect("store");
    let published: HashSet<u64> = store
        .all_batches()
        .expect("batches")
        .into_iter()
        .filter(|batch| {
            batch
                .info
                .as_ref()
                .is_some_and(|info| info.kind == BatchKind::Hourly as i32)
        })
        .flat_map(|batch| batch.key_sequences)
        // Uploaded keys only: synthetic padding keys (DESIGN section 14) are not uploads.
        .filter(|&sequence| {
            store
                .key(sequence)
                .expect("key")
                .is_some_and(|key| !key.synthetic)
        })
        .collect();
    assert_eq!(
        published.len(),
        store.count_keys().expect("count"),
        "every stored key is in an hourly batch"
    );
    assert!(dangling_in_bucket(&bucket).is_empty());
    assert!(
        !ledger.uploaded.is_empty() && !ledger.revoked.is_empty(),
        "the load reached the server"
    );
}

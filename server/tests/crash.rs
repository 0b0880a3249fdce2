//! Crash safety of the real binary: every upload the server acknowledged before a SIGKILL is on
//! disk afterwards, and a restarted server publishes each stored key exactly once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exposure_proto::v1::ListBatchesRequest;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    DiagnosisKey, GaenKey, ReportType, UploadDiagnosisKeysRequest, diagnosis_key,
};
use exposure_server::storage::Store;
use exposure_server::storage::keys::dedup_key;

const REGION: &str = "VN-TB";

fn key(index: u32, start_interval: u32) -> DiagnosisKey {
    let mut key_data = [0u8; 16];
    key_data[..4].copy_from_slice(&index.to_le_bytes());
    key_data[15] = 0xcc;
    DiagnosisKey {
        key: Some(diagnosis_key::Key::Gaen(GaenKey {
            key_data: key_data.to_vec(),
            rolling_start_interval_number: start_interval,
            rolling_period: 144,
            days_since_onset_of_symptoms: None,
        })),
        transmission_risk_level: 0,
    }
}

fn material(key: &DiagnosisKey) -> Vec<u8> {
    let stored = exposure_server::storage::records::StoredKey {
        key: Some(key.clone()),
        ..Default::default()
    };
    dedup_key(
        REGION,
        &stored.matcher_key().expect("converts").dedup_material(),
    )
}

/// SIGKILLs `child` once 20 uploads were acknowledged (or after 30 s) and returns how many
/// were acknowledged at that moment; fails when every one of the `total` uploads had already
/// been answered, as the kill must land while uploads are in flight.
async fn kill_while_uploading(
    child: &mut std::process::Child,
    acknowledged: &AtomicUsize,
    total: usize,
) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::SeqCst) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_kill = acknowledged.load(Ordering::SeqCst);
    child.kill().expect("SIGKILL");
    assert!(
        at_kill < total,
        "all {total} uploads were answered before the kill: nothing was in flight"
    );
    at_kill
}

/// Checks after the kill that it cut uploads off: some of the `total` never got an answer.
fn assert_some_cut_off(answered: usize, at_kill: usize, total: usize) {
    eprintln!("{at_kill} of {total} uploads acknowledged at the kill, {answered} in all");
    assert!(
        answered < total,
        "every one of the {total} uploads was answered ({at_kill} at the kill): the kill came \
         after the last upload, so nothing was in flight"
    );
}

#[test]
fn acknowledged_uploads_survive_sigkill_and_are_published_once_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = common::add_authority(dir.path(), REGION);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let yesterday = ((now / 86_400 - 1) * 144) as u32;

    // Publishing is held back (1 h interval after the first, empty run) while uploads stream in.
    let server = common::start(
        dir.path(),
        &[
            "--publish-interval",
            "1h",
            "--release-delay",
            "0s",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let (mut child, address) = (server.child, server.url);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let acknowledged: Vec<DiagnosisKey> = runtime.block_on(async {
        let client = KeyUploadClient::connect(address).await.expect("connect");
        let acknowledged_count = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for index in 0..400u32 {
            let mut client = client.clone();
            let token = token.clone();
            let acknowledged_count = acknowledged_count.clone();
            tasks.push(tokio::spawn(async move {
                let key = key(index, yesterday);
                let mut request = tonic::Request::new(UploadDiagnosisKeysRequest {
                    region: REGION.into(),
                    upload_id: format!("crash-{index}"),
                    keys: vec![key.clone()],
                    report_type: ReportType::ConfirmedTest as i32,
                    padding: Vec::new(),
                });
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("ascii"),
                );
                match client.upload_diagnosis_keys(request).await {
                    Ok(_) => {
                        acknowledged_count.fetch_add(1, Ordering::SeqCst);
                        Some(key)
                    }
                    Err(status) => {
                        eprintln!("upload {index}: {:?} {}", status.code(), status.message());
                        None
                    }
                }
            }));
        }
        // Kill the server while uploads are still in flight, once some have been acknowledged.
        let at_kill = kill_while_uploading(&mut child, &acknowledged_count, tasks.len()).await;
        let total = tasks.len();
        let mut acknowledged = Vec::new();
        for task in tasks {
            if let Some(key) = task.await.expect("task") {
                acknowledged.push(key);
            }
        }
        assert_some_cut_off(acknowledged.len(), at_kill, total);
        acknowledged
    });
    let _ = child.wait();
    assert!(
        !acknowledged.is_empty(),
        "some uploads were acknowledged before the kill"
    );

    let store = Store::open(dir.path()).expect("reopen after SIGKILL");
    for key in &acknowledged {
        assert!(
            store
                .find_duplicate(&material(key))
                .expect("lookup")
                .is_some(),
            "an acknowledged key was lost"
        );
    }
    let stored = store.count_keys().expect("count");
    drop(store);

    // A restarted server publishes every stored key, each in exactly one hourly batch.
    let server = common::start(
        dir.path(),
        &[
            "--publish-interval",
            "200ms",
            "--pad-min-keys",
            "0",
            "--release-delay",
            "0s",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let address = server.url.clone();
    runtime.block_on(async {
        let mut client = DistributionClient::connect(address).await.expect("connect");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let request = ListBatchesRequest {
                region: REGION.into(),
                after_sequence: 0,
                limit: 0,
            };
            let listing = client
                .list_batches(request)
                .await
                .expect("list")
                .into_inner();
            if !listing.batches.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing was published after the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The database is locked while the server runs: stop it to look inside.
    assert!(server.terminate());

    let store = Store::open(dir.path()).expect("reopen");
    let mut published = HashSet::new();
    for batch in store.all_batches().expect("batches") {
        for sequence in batch.key_sequences {
            assert!(
                published.insert(sequence),
                "key {sequence} was published twice"
            );
        }
    }
    assert_eq!(published.len(), stored, "every stored key is published");
    assert!(
        store.releasable(u64::MAX).expect("pending").is_empty(),
        "nothing is left pending"
    );
}

#[test]
fn a_sigkill_among_code_uploads_never_separates_a_consumed_code_from_its_keys() {
    use exposure_proto::v1::IssueUploadCodesRequest;
    use exposure_server::ingest::code::UploadCode;

    let dir = tempfile::tempdir().expect("tempdir");
    let token = common::add_authority(dir.path(), REGION);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let yesterday = ((now / 86_400 - 1) * 144) as u32;
    let server = common::start(
        dir.path(),
        &[
            "--publish-interval",
            "1h",
            "--metrics-addr",
            "127.0.0.1:0",
            "--authority-codes-per-minute",
            "0",
        ],
    );
    let (mut child, address) = (server.child, server.url);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (codes, acknowledged) = runtime.block_on(async {
        let client = KeyUploadClient::connect(address).await.expect("connect");
        let mut codes = Vec::new();
        for _ in 0..3 {
            let mut request = tonic::Request::new(IssueUploadCodesRequest {
                region: REGION.into(),
                count: 100,
                ..Default::default()
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii"),
            );
            let issued = client
                .clone()
                .issue_upload_codes(request)
                .await
                .expect("codes issued")
                .into_inner();
            codes.extend(issued.codes.into_iter().map(|code| code.code));
        }
        let acknowledged_count = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (index, code) in codes.iter().enumerate() {
            let mut client = client.clone();
            let code = code.clone();
            let acknowledged_count = acknowledged_count.clone();
            tasks.push(tokio::spawn(async move {
                let mut request = tonic::Request::new(UploadDiagnosisKeysRequest {
                    region: REGION.into(),
                    upload_id: format!("phone-{index}"),
                    keys: vec![key(50_000 + index as u32, yesterday)],
                    ..Default::default()
                });
                request.metadata_mut().insert(
                    "authorization",
                    format!("UploadCode {code}").parse().expect("ascii"),
                );
                let stored = client.upload_diagnosis_keys(request).await.is_ok();
                if stored {
                    acknowledged_count.fetch_add(1, Ordering::SeqCst);
                }
                stored.then_some(index)
            }));
        }
        let at_kill = kill_while_uploading(&mut child, &acknowledged_count, tasks.len()).await;
        let total = tasks.len();
        let mut acknowledged = HashSet::new();
        for task in tasks {
            if let Some(index) = task.await.expect("task") {
                acknowledged.insert(index);
            }
        }
        assert_some_cut_off(acknowledged.len(), at_kill, total);
        (codes, acknowledged)
    });
    let _ = child.wait();
    assert!(
        !acknowledged.is_empty(),
        "some code uploads were acknowledged"
    );

    let store = Store::open(dir.path()).expect("reopen after SIGKILL");
    let mut consumed = 0;
    for (index, code) in codes.iter().enumerate() {
        let hash = UploadCode::parse(code)
            .expect("an issued code parses")
            .hash();
        let record = store
            .code(&hash)
            .expect("lookup")
            .expect("every issued code is stored");
        let has_keys = store
            .find_duplicate(&material(&key(50_000 + index as u32, yesterday)))
            .expect("lookup")
            .is_some();
        assert_eq!(
            record.consumed_at != 0,
            has_keys,
            "code {index}: consumed exactly when its keys are stored"
        );
        if acknowledged.contains(&index) {
            assert!(has_keys, "code {index}: an acknowledged upload was lost");
        }
        consumed += usize::from(has_keys);
    }
    assert!(consumed >= acknowledged.len());
}

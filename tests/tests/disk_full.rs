//! A full disk: the server runs on a small tmpfs that the test fills during uploads. Uploads
//! then answer UNAVAILABLE (never INTERNAL), the upload service reports NOT_SERVING while
//! phones are still served; once space is back the server resumes by itself (SERVING, uploads
//! accepted) without a restart, and every upload acknowledged before is still stored.
//!
//! Mounting a tmpfs needs root (CI and the development machines run as root); elsewhere the
//! test says why it did not run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use exposure_proto::v1::key_upload_server::KeyUploadServer;
use exposure_proto::v1::{DiagnosisKey, ListBatchesRequest};
use exposure_server::Clock;
use exposure_server::ingest::service::KeyUploadService;
use exposure_server::storage::Store;
use exposure_tests::fixtures::{self, gaen};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const DAY: u64 = 86_400;

/// A tmpfs mounted for the test's lifetime.
struct SmallDisk {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let parent = tempfile::tempdir().expect("temporary dir");
        let mount_point = parent.path().join("disk");
        std::fs::create_dir(&mount_point).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&mount_point)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self {
            mount_point,
            _parent: parent,
        })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Writes a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.mount_point.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        while file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

fn key(number: u32) -> DiagnosisKey {
    let mut key_data = [0x3c; 16];
    key_data[..4].copy_from_slice(&number.to_be_bytes());
    gaen(key_data, ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

async fn upload_status(server: &TestServer, number: u32) -> Code {
    let request = fixtures::upload(&format!("case-{number}"), vec![key(number)]);
    match server
        .upload_client()
        .await
        .upload_diagnosis_keys(server.authorized(request))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn upload_health(server: &TestServer) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: <KeyUploadServer<KeyUploadService> as tonic::server::NamedService>::NAME
                .to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

#[tokio::test]
async fn a_full_disk_refuses_uploads_as_unavailable_and_loses_nothing_acknowledged() {
    // Larger than RocksDB's 64 MiB write buffer: after a hard "no space" error it resumes by
    // itself only once that much is free again (its SstFileManager polls every 5 s).
    let Some(disk) = SmallDisk::mount(160) else {
        exposure_tests::outside::missing(
            "a 160 MiB tmpfs for the full-disk test (mount -t tmpfs failed)",
            "run the test as root, where `mount -t tmpfs` works (CI's container does)",
        );
        return;
    };
    let data_dir = disk.path().join("data");
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_in(&data_dir, clock.clone(), |config| {
        config.authority_uploads_per_minute = 0;
        // Nothing is published, so only uploads write.
        config.release_delay = Duration::from_secs(30 * DAY);
    })
    .await;
    let mut acknowledged = Vec::new();
    for number in 0..5 {
        assert_eq!(upload_status(&server, number).await, Code::Ok);
        acknowledged.push(number);
    }
    let filler = disk.fill();

    // Uploads go on until the store's writes fail; none of them may fail as INTERNAL.
    let mut refused = None;
    for number in 5..5000 {
        match upload_status(&server, number).await {
            Code::Ok => acknowledged.push(number),
            code => {
                refused = Some(code);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(Code::Unavailable),
        "a full disk is UNAVAILABLE"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upload_health(&server).await != ServingStatus::NotServing as i32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload service reports NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
        .distribution_client()
        .await
        .list_batches(ListBatchesRequest {
            region: REGION.into(),
            after_sequence: 0,
            limit: 0,
        })
        .await
        .expect("phones are still served");

    // Space comes back: the server recovers by itself, without a restart.
    std::fs::remove_file(filler).expect("free the space");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while upload_health(&server).await != ServingStatus::Serving as i32 {
        if tokio::time::Instant::now() > deadline {
            // RocksDB's own log says why it did not resume.
            let log = std::fs::read_to_string(data_dir.join("db/LOG")).unwrap_or_default();
            let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
            panic!(
                "the upload service never reported SERVING again once space was back; RocksDB: {errors:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        upload_status(&server, 9_000).await,
        Code::Ok,
        "uploads are accepted again"
    );
    acknowledged.push(9_000);
    let _ = server.stop_with_result().await;
    let store = Store::open(&data_dir).expect("reopen with space");
    let stored = store.count_keys().expect("count");
    // The refused upload may have reached the log before its sync failed; it was never
    // acknowledged, so either way is correct.
    assert!(
        (acknowledged.len()..=acknowledged.len() + 1).contains(&stored),
        "every acknowledged upload is stored ({stored} stored, {} acknowledged)",
        acknowledged.len()
    );
}

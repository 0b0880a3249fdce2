//! `exposure-server backup` and `restore` as an operator runs them: backups of a running server,
//! incremental (unchanged files hard-linked from the previous backup), pruned by `--keep`,
//! copied to object storage; a restore that leaves a private data directory a new server starts
//! on with the same keys; a backup without the signing keys, whose restored server needs
//! `--signing-key-file`; and a sealed backup (`EXPOSURE_BACKUP_KEY_FILE`) uploaded to a bucket
//! and restored from there.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BINARY, add_authority, start};
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::{GetSigningKeysRequest, SigningKey};

const SERVER_FLAGS: [&str; 6] = [
    "--metrics-addr",
    "127.0.0.1:0",
    "--publish-interval",
    "200ms",
    "--release-delay",
    "0s",
];

/// Runs the binary with `args`.
fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("run exposure-server")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// Runs `backup` of `data_dir` into `root` with `extra` flags; returns its folder and report.
fn backup(data_dir: &Path, root: &Path, extra: &[&str]) -> (PathBuf, String) {
    let mut args = vec![
        "backup",
        "--data-dir",
        data_dir.to_str().expect("path"),
        "--to",
        root.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let report = stdout_of(&run(&args));
    let folder = report
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("backup "))
        .and_then(|line| line.split(':').next())
        .map(PathBuf::from)
        .expect("the first line names the backup");
    (folder, report)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

async fn signing_keys(url: &str) -> Vec<SigningKey> {
    DistributionClient::connect(url.to_owned())
        .await
        .expect("connect")
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .expect("signing keys")
        .into_inner()
        .keys
}

/// A running server that has published one batch.
struct Published {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    token: String,
    server: common::RunningBinary,
    original_keys: Vec<SigningKey>,
}

/// Starts the binary on a new store, uploads a key and waits for its batch.
fn start_and_publish() -> Published {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = add_authority(dir.path(), "VN-TB");
    let server = start(dir.path(), &SERVER_FLAGS);
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 1)),
        tonic::Code::Ok
    );
    runtime.block_on(common::wait_for_batches(&server.url, 1));
    let original_keys = runtime.block_on(signing_keys(&server.url));
    Published {
        runtime,
        dir,
        token,
        server,
        original_keys,
    }
}

/// Waits until a backup made now gets a name after `previous`'s (names are UTC seconds), so
/// the next backup is a new folder; polls the clock instead of sleeping a fixed second.
fn wait_for_a_name_after(previous: &Path) {
    let previous = previous
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a backup folder name")
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        if exposure_server::backup::backup_name(now) > previous {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not pass the second of backup {previous}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn incremental_backups_of_a_running_server_restore_into_a_private_store() {
    let Published {
        runtime,
        dir,
        token,
        server,
        original_keys,
    } = start_and_publish();

    let root = tempfile::tempdir().expect("backups");
    let bucket = tempfile::tempdir().expect("bucket");
    let bucket_url = format!("file://{}", bucket.path().display());
    let (first, report) = backup(
        dir.path(),
        root.path(),
        &["--keep", "2", "--upload-to", &bucket_url],
    );
    assert!(report.contains("uploaded"), "{report}");
    let first_name = first.file_name().expect("name").to_owned();
    // The uploaded copy is a backup in its own right.
    let uploaded = bucket.path().join(&first_name);
    let verified = stdout_of(&run(&["backup", "--verify", path_str(&uploaded)]));
    assert!(verified.starts_with("ok "), "{verified}");

    wait_for_a_name_after(&first);
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 2)),
        tonic::Code::Ok
    );
    runtime.block_on(common::wait_for_batches(&server.url, 2));
    let (second, report) = backup(dir.path(), root.path(), &["--keep", "2"]);
    assert!(report.contains("hard-linked"), "{report}");
    let manifest = std::fs::read_to_string(first.join("MANIFEST.sha256")).expect("manifest");
    let shared = manifest
        .lines()
        .filter_map(|line| line.split_once("  ").map(|(_, path)| path))
        .filter(|path| path.ends_with(".sst") || path.ends_with(".blob"))
        .find(|path| second.join(path).exists())
        .expect("a store file both backups hold");
    assert_eq!(
        std::fs::metadata(first.join(shared)).expect("first").ino(),
        std::fs::metadata(second.join(shared))
            .expect("second")
            .ino(),
        "an unchanged file is linked, not copied"
    );

    wait_for_a_name_after(&second);
    let (third, report) = backup(dir.path(), root.path(), &["--keep", "2"]);
    assert!(report.contains("deleted the old backup"), "{report}");
    assert!(!first.exists() && second.exists() && third.exists());
    let verified = stdout_of(&run(&["backup", "--verify", path_str(root.path())]));
    assert_eq!(
        verified
            .lines()
            .filter(|line| line.starts_with("ok "))
            .count(),
        2
    );
    assert!(
        second.join(shared).exists(),
        "pruning the first backup left the linked file of the second"
    );
    assert!(server.terminate());

    let parent = tempfile::tempdir().expect("restore parent");
    let restored = parent.path().join("restored");
    let report = stdout_of(&run(&[
        "restore",
        "--from",
        path_str(root.path()),
        "--data-dir",
        path_str(&restored),
    ]));
    // A backup without --backup-key-file holds no private signing keys.
    assert!(
        report.contains(path_str(&third)) && report.contains("--signing-key-file"),
        "the newest backup is restored: {report}"
    );
    assert_private(&restored);
    let again = run(&[
        "restore",
        "--from",
        path_str(&third),
        "--data-dir",
        path_str(&restored),
    ]);
    assert_eq!(
        again.status.code(),
        Some(64),
        "a restored store is not overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let current = original_keys
        .iter()
        .find(|key| key.current)
        .expect("current")
        .key_id
        .clone();
    let key_file = dir.path().join("signing").join(format!("{current}.pem"));
    let server = start(
        &restored,
        &[
            &SERVER_FLAGS[..],
            &["--signing-key-file", path_str(&key_file)],
        ]
        .concat(),
    );
    assert_eq!(
        runtime.block_on(signing_keys(&server.url)),
        original_keys,
        "the restored server has the same signing keys"
    );
    runtime.block_on(common::wait_for_batches(&server.url, 2));
    assert_eq!(
        runtime.block_on(common::upload_one(&server.url, &token, 3)),
        tonic::Code::Ok,
        "the token still works"
    );
    assert!(server.terminate());
}

/// Asserts that every folder under `root` (itself included) is 0700 and every file 0600.
fn assert_private(root: &Path) {
    let mut pending = vec![root.to_owned()];
    while let Some(folder) = pending.pop() {
        let mode = std::fs::metadata(&folder)
            .expect("folder")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", folder.display());
        for entry in std::fs::read_dir(&folder).expect("read") {
            let path = entry.expect("entry").path();
            let metadata = std::fs::symlink_metadata(&path).expect("metadata");
            if metadata.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(
                    metadata.permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn a_backup_without_signing_keys_restores_a_server_that_needs_the_key_file() {
    let Published {
        runtime,
        dir,
        token: _,
        server,
        original_keys,
    } = start_and_publish();
    let current = original_keys
        .iter()
        .find(|key| key.current)
        .expect("current")
        .key_id
        .clone();
    assert!(server.terminate());

    // No server runs now: the command takes the snapshot itself.
    let root = tempfile::tempdir().expect("backups");
    let (folder, report) = backup(dir.path(), root.path(), &["--without-signing-keys"]);
    assert!(report.contains("private key left out"), "{report}");
    let manifest = std::fs::read_to_string(folder.join("MANIFEST.sha256")).expect("manifest");
    assert!(!manifest.contains("signing/"), "{manifest}");
    assert!(!folder.join("signing").exists());

    let restored = tempfile::tempdir().expect("restore target");
    let report = stdout_of(&run(&[
        "restore",
        "--from",
        path_str(&folder),
        "--data-dir",
        path_str(restored.path()),
    ]));
    assert!(report.contains("--signing-key-file"), "{report}");

    let refused = Command::new(BINARY)
        .args(SERVER_FLAGS)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "",
            "--console-addr",
            "",
        ])
        .arg("--data-dir")
        .arg(restored.path())
        .output()
        .expect("run");
    assert!(!refused.status.success(), "no key, no start");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&current) && message.contains("--signing-key-file"),
        "{message}"
    );

    let key_file = dir.path().join("signing").join(format!("{current}.pem"));
    let server = start(
        restored.path(),
        &[
            &SERVER_FLAGS[..],
            &["--signing-key-file", path_str(&key_file)],
        ]
        .concat(),
    );
    assert_eq!(runtime.block_on(signing_keys(&server.url)), original_keys);
    assert!(server.terminate());
}

#[test]
fn a_sealed_backup_uploaded_to_a_bucket_restores_with_its_key_from_the_environment() {
    let Published {
        runtime,
        dir,
        token: _,
        server,
        original_keys,
    } = start_and_publish();
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("backup.key");
    std::fs::write(&key_file, [0x5e; 32]).expect("key");
    let root = tempfile::tempdir().expect("backups");
    let bucket = tempfile::tempdir().expect("bucket");
    let bucket_url = format!("file://{}", bucket.path().display());
    let output = Command::new(BINARY)
        .args(["backup", "--data-dir", path_str(dir.path())])
        .args(["--to", path_str(root.path()), "--upload-to", &bucket_url])
        .env("EXPOSURE_BACKUP_KEY_FILE", &key_file)
        .output()
        .expect("run");
    let report = stdout_of(&output);
    assert!(
        report.contains("sealed: yes") && report.contains("(private key included)"),
        "{report}"
    );
    let folder = PathBuf::from(
        report
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("backup "))
            .and_then(|line| line.split(':').next())
            .expect("the first line names the backup"),
    );
    let uploaded = bucket.path().join(folder.file_name().expect("name"));
    assert!(
        uploaded.join("MANIFEST.seal").is_file(),
        "the seal is uploaded"
    );
    let current = &original_keys
        .iter()
        .find(|key| key.current)
        .expect("current")
        .key_id;
    let pem = std::fs::read(uploaded.join("signing").join(format!("{current}.pem")))
        .expect("the uploaded key");
    assert!(pem.starts_with(b"EXPSEAL1") && !String::from_utf8_lossy(&pem).contains("PRIVATE"));
    // The manifest checks the sealed copy without the key, as `sha256sum -c` would.
    let verified = stdout_of(&run(&["backup", "--verify", path_str(&uploaded)]));
    assert!(verified.starts_with("ok "), "{verified}");
    assert!(server.terminate());

    let restored = tempfile::tempdir().expect("restore target");
    let refused = run(&[
        "restore",
        "--from",
        path_str(&uploaded),
        "--data-dir",
        path_str(restored.path()),
    ]);
    assert_eq!(
        refused.status.code(),
        Some(64),
        "a sealed backup needs its key"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--backup-key-file"));
    let output = Command::new(BINARY)
        .args(["restore", "--from", path_str(&uploaded)])
        .args(["--data-dir", path_str(restored.path())])
        .env("EXPOSURE_BACKUP_KEY_FILE", &key_file)
        .output()
        .expect("run");
    let report = stdout_of(&output);
    assert!(
        report.contains("every file opened with the key")
            && report.contains("private key restored"),
        "{report}"
    );
    assert_private(restored.path());
    let server = start(restored.path(), &SERVER_FLAGS);
    assert_eq!(
        runtime.block_on(signing_keys(&server.url)),
        original_keys,
        "the restored server signs with the same keys, without --signing-key-file"
    );
    assert!(server.terminate());
}

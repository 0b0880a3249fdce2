//! Online backup and restore: a backup taken through the running server's inbox while uploads
//! pour in restores into a server that lists the same batches with the same bytes, accepts the
//! same tokens, signs with the same key, keeps every upload acknowledged before the backup and
//! continues its sequences; a damaged backup is caught by `backup --verify` and by `restore`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use exposure_matcher::BatchFile;
use exposure_proto::v1::{DiagnosisKey, ListBatchesResponse, SigningKey};
use exposure_server::admin::backup::{BackupCommand, RestoreCommand};
use exposure_server::admin::{AuthorityCommand, DataDir};
use exposure_server::{Clock, storage::Store};
use exposure_tests::fixtures::{self, confirmed, download, gaen};
use exposure_tests::reference;
use exposure_tests::{REGION, TEST_NOW, TestServer, test_config};

const TODAY: u64 = TEST_NOW / 86_400;
/// Sequences a restored region skips.
const GAP: u64 = 1000;

/// A GAEN key of yesterday, distinct for each `index`.
fn load_key(index: u32) -> DiagnosisKey {
    let mut key_data = [0x5a; 16];
    key_data[..4].copy_from_slice(&index.to_be_bytes());
    gaen(key_data, ((TODAY - 1) * 144) as u32, 144)
}

/// Runs an admin command of the library on a blocking thread (it waits for the server's inbox).
async fn admin<T: Send + 'static>(
    run: impl FnOnce(&mut Vec<u8>) -> Result<T, exposure_server::admin::AdminError> + Send + 'static,
) -> Result<(T, String), String> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let result = run(&mut out);
        let text = String::from_utf8(out).expect("utf-8 output");
        result
            .map(|value| (value, text))
            .map_err(|error| error.to_string())
    })
    .await
    .expect("admin task")
}

fn backup_command(data_dir: &Path, root: &Path) -> BackupCommand {
    BackupCommand {
        data: DataDir {
            data_dir: data_dir.to_owned(),
        },
        to: Some(root.to_owned()),
        verify: None,
        keep: None,
        without_signing_keys: false,
        backup_key_file: None,
        upload_to: None,
        upload_options: Vec::new(),
    }
}

fn verify_command(path: &Path) -> BackupCommand {
    BackupCommand {
        verify: Some(path.to_owned()),
        to: None,
        ..backup_command(Path::new("unused"), Path::new("unused"))
    }
}

async fn signing_keys(server: &TestServer) -> Vec<SigningKey> {
    fixtures::signing_keys(&mut server.distribution_client().await).await
}

/// Uploads one key with `token`; returns whether it was accepted.
async fn upload_with(server: &TestServer, token: &str, upload_id: &str, key: DiagnosisKey) -> bool {
    let mut request = tonic::Request::new(fixtures::upload(upload_id, vec![key]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    server
        .upload_client()
        .await
        .upload_diagnosis_keys(request)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_upload_load_restores_the_same_server() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.authority_uploads_per_minute = 0;
    })
    .await;
    let data_dir = server.data_dir().to_owned();
    // Once it answers, the server holds the store (an admin command would otherwise open it).
    server.wait_for_batches(|_| true).await;

    // A second authority, added through the inbox of the running server.
    let add_dir = data_dir.clone();
    let ((), added) = admin(move |out| {
        exposure_server::admin::authority(
            AuthorityCommand::Add {
                data: DataDir { data_dir: add_dir },
                name: "Ha Noi CDC".into(),
                regions: vec![REGION.into()],
                admin: false,
                uploads_per_minute: None,
                keys_per_day: None,
            },
            out,
        )
    })
    .await
    .expect("authority add");
    let second_token = added.lines().last().expect("token line").to_owned();

    // Upload load until told to stop; each acknowledged key is recorded in order.
    let acknowledged: Arc<Mutex<Vec<DiagnosisKey>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        let client = server.upload_client().await;
        let token = server.token.clone();
        tokio::spawn(async move {
            let mut index = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = load_key(index);
                let mut request = tonic::Request::new(fixtures::upload(
                    &format!("load-{index}"),
                    vec![key.clone()],
                ));
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("ascii"),
                );
                client
                    .clone()
                    .upload_diagnosis_keys(request)
                    .await
                    .expect("upload under load");
                acknowledged.lock().expect("lock").push(key);
                index += 1;
            }
        })
    };
    let before = server
        .wait_for_batches(|listing| listing.batches.len() >= 3)
        .await;
    let acknowledged_before: Vec<DiagnosisKey> = acknowledged.lock().expect("lock").clone();

    let root = tempfile::tempdir().expect("backup root");
    let key_dir = tempfile::tempdir().expect("key folder");
    let key_file = key_dir.path().join("backup.key");
    std::fs::write(&key_file, [0x3c; 32]).expect("key file");
    let command = BackupCommand {
        backup_key_file: Some(key_file.clone()),
        ..backup_command(&data_dir, root.path())
    };
    let ((), report) = admin(move |out| exposure_server::admin::backup::backup(command, out))
        .await
        .expect("backup of the running server");
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    assert!(
        acknowledged.lock().expect("lock").len() > acknowledged_before.len(),
        "uploads went on while the backup ran"
    );
    let backup = PathBuf::from(
        report
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("backup "))
            .and_then(|line| line.split(':').next())
            .expect("the report names the backup"),
    );
    assert!(backup.starts_with(root.path()), "{report}");
    let original_keys = signing_keys(&server).await;
    let current = original_keys
        .iter()
        .find(|key| key.current)
        .expect("a current key")
        .clone();
    let info = std::fs::read_to_string(backup.join("BACKUP-INFO")).expect("BACKUP-INFO");
    assert!(
        info.contains(&format!(
            "current_signing_key: {} (private key included)",
            current.key_id
        )),
        "{info}"
    );
    let manifest = std::fs::read_to_string(backup.join("MANIFEST.sha256")).expect("manifest");
    let pem = format!("signing/{}.pem", current.key_id);
    assert!(
        manifest
            .lines()
            .any(|line| line.ends_with(&format!("  {pem}"))),
        "{manifest}"
    );
    let private_key = std::fs::read(data_dir.join(&pem)).expect("the server's private key");
    assert!(
        String::from_utf8_lossy(&private_key).contains("PRIVATE KEY"),
        "the server's key file is PEM"
    );
    let sealed_key = std::fs::read(backup.join(&pem)).expect("the backed-up private key");
    assert!(sealed_key.starts_with(b"EXPSEAL1"), "the key is sealed");
    assert!(
        !String::from_utf8_lossy(&sealed_key).contains("PRIVATE KEY")
            && !sealed_key
                .windows(private_key.len())
                .any(|window| window == private_key),
        "the private key is not in the backup in clear"
    );
    assert!(backup.join("MANIFEST.seal").is_file());
    let (_, verified) = admin({
        let backup = backup.clone();
        move |out| exposure_server::admin::backup::backup(verify_command(&backup), out)
    })
    .await
    .expect("a fresh backup verifies");
    assert!(verified.starts_with("ok "), "{verified}");

    // Restore into a new, empty folder.
    let restored_dir = tempfile::tempdir().expect("restore target");
    let restore = RestoreCommand {
        from: root.path().to_owned(),
        data_dir: restored_dir.path().to_owned(),
        sequence_gap: GAP,
        backup_key_file: Some(key_file.clone()),
        ..RestoreCommand::default()
    };
    let ((), restored) = admin(move |out| exposure_server::admin::backup::restore(restore, out))
        .await
        .expect("restore");
    assert!(restored.contains("private key restored"), "{restored}");
    assert_eq!(
        std::fs::read(restored_dir.path().join(&pem)).expect("the restored private key"),
        private_key,
        "the restore opens the sealed key to the same bytes"
    );
    // The backup's last sequence, as its BACKUP-INFO records it (the restored store has moved
    // ahead); the listings below check it.
    let last_sequence: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("last_batch_sequences: VN-TB="))
        .and_then(|value| value.parse().ok())
        .expect("BACKUP-INFO names the region's last sequence");
    server
        .upload(fixtures::upload("post-backup", vec![load_key(2_000_000)]))
        .await;
    assert!(last_sequence >= before.batches.len() as u64);
    let store = Store::open(restored_dir.path()).expect("restored store opens");
    assert_eq!(
        store.batch_sequence(REGION).expect("sequence"),
        last_sequence + GAP,
        "the restored region skips GAP sequences"
    );
    drop(store);

    let original_listing = server.wait_for_batches(|_| true).await;
    let original: HashMap<String, _> = original_listing
        .batches
        .iter()
        .map(|batch| (batch.batch_id.clone(), batch.clone()))
        .collect();
    let mut original_distribution = server.distribution_client().await;
    let config = test_config(restored_dir.path());
    let restored_server =
        TestServer::restart(&restored_dir, server.token.clone(), clock.clone(), config).await;
    assert_eq!(
        signing_keys(&restored_server).await,
        original_keys,
        "the same signing keys, the same one current"
    );

    // The same batches up to the backup's last sequence, with identical bytes.
    let listing = restored_server.wait_for_batches(|_| true).await;
    let backed_up: Vec<_> = listing
        .batches
        .iter()
        .filter(|batch| batch.sequence <= last_sequence)
        .collect();
    assert_eq!(
        backed_up.len() as u64,
        last_sequence,
        "no gap, no duplicate"
    );
    for batch in &before.batches {
        assert!(
            backed_up
                .iter()
                .any(|restored| restored.batch_id == batch.batch_id),
            "batch {} listed before the backup is restored",
            batch.sequence
        );
    }
    let mut restored_distribution = restored_server.distribution_client().await;
    for batch in &backed_up {
        assert_eq!(
            original.get(&batch.batch_id),
            Some(*batch),
            "batch {} is listed alike",
            batch.sequence
        );
        let bytes = download(&mut restored_distribution, &batch.batch_id).await;
        assert_eq!(
            bytes,
            download(&mut original_distribution, &batch.batch_id).await,
            "batch {} serves identical bytes",
            batch.sequence
        );
        BatchFile::parse(&bytes)
            .expect("parses")
            .verify(&current.public_key_der)
            .expect("verifies with the original key");
    }

    // Every upload acknowledged before the backup began is in the restored store.
    let bits = restored_server.config.confirm_prefix_bits;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for key in &acknowledged_before {
        let tag = reference::tags(key)[0];
        while !confirmed(&mut restored_distribution, &tag, bits).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "an upload acknowledged before the backup is missing after the restore"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    // Both tokens work, the same key signs, and sequences continue past every sequence the
    // original published, also those it published after the backup.
    assert!(
        upload_with(
            &restored_server,
            &restored_server.token,
            "after-1",
            load_key(1_000_000)
        )
        .await
    );
    assert!(
        upload_with(
            &restored_server,
            &second_token,
            "after-2",
            load_key(1_000_001)
        )
        .await
    );
    assert!(
        !upload_with(
            &restored_server,
            "exps_not-a-token",
            "after-3",
            load_key(1_000_002)
        )
        .await,
        "a made-up token is still refused"
    );
    let past_backup = |listing: &ListBatchesResponse| {
        listing
            .batches
            .iter()
            .any(|batch| batch.sequence > last_sequence)
    };
    let grown = restored_server.wait_for_batches(past_backup).await;
    let new_batch = grown
        .batches
        .iter()
        .find(|batch| batch.sequence > last_sequence)
        .expect("a batch published after the restore");
    let original_highest = server
        .wait_for_batches(past_backup)
        .await
        .batches
        .iter()
        .map(|batch| batch.sequence)
        .max()
        .unwrap_or(0);
    assert!(
        original_highest > last_sequence,
        "the original published more after the backup"
    );
    assert_eq!(new_batch.sequence, last_sequence + GAP + 1);
    assert!(
        new_batch.sequence > original_highest,
        "no sequence is reused"
    );
    assert_eq!(new_batch.key_id, current.key_id);
    let bytes = download(&mut restored_distribution, &new_batch.batch_id).await;
    BatchFile::parse(&bytes)
        .expect("parses")
        .verify(&current.public_key_der)
        .expect("the restored server signs with the original key");

    restored_server.stop_kept().await;
    drop(server);
}

#[tokio::test]
async fn a_damaged_backup_is_caught_by_verify_and_by_restore() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    server
        .upload(fixtures::upload("a", vec![load_key(1)]))
        .await;
    server
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let root = tempfile::tempdir().expect("backup root");
    let command = backup_command(server.data_dir(), root.path());
    admin(move |out| exposure_server::admin::backup::backup(command, out))
        .await
        .expect("backup");
    let backup = exposure_server::backup::resolve(root.path()).expect("the backup");

    // One flipped byte in the largest file of the store.
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(backup.join("db"))
        .expect("db")
        .map(|entry| {
            let path = entry.expect("entry").path();
            (std::fs::metadata(&path).expect("meta").len(), path)
        })
        .collect();
    files.sort();
    let (_, damaged) = files.pop().expect("a file");
    let mut bytes = std::fs::read(&damaged).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, &bytes).expect("write");
    let name = damaged
        .file_name()
        .and_then(|name| name.to_str())
        .expect("name")
        .to_owned();

    let error = admin({
        let root = root.path().to_owned();
        move |out| exposure_server::admin::backup::backup(verify_command(&root), out)
    })
    .await
    .expect_err("verify fails");
    assert!(error.contains("damaged"), "{error}");
    let mut out = Vec::new();
    let _ = exposure_server::admin::backup::backup(verify_command(&backup), &mut out);
    let report = String::from_utf8(out).expect("utf-8");
    assert!(
        report.contains("DAMAGED")
            && report.contains(&name)
            && report.contains("checksum mismatch"),
        "{report}"
    );

    let target = tempfile::tempdir().expect("restore target");
    let restore = RestoreCommand {
        from: backup.clone(),
        data_dir: target.path().to_owned(),
        sequence_gap: GAP,
        backup_key_file: None,
        ..RestoreCommand::default()
    };
    let error = admin(move |out| exposure_server::admin::backup::restore(restore, out))
        .await
        .expect_err("restore refuses a damaged backup");
    assert!(
        error.contains(&name) && error.contains("checksum mismatch"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(target.path()).expect("target").count(),
        0,
        "nothing was restored"
    );

    // A non-empty target is refused even with a sound backup.
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, &bytes).expect("repair");
    std::fs::write(target.path().join("notes.txt"), "mine").expect("write");
    let restore = RestoreCommand {
        from: backup,
        data_dir: target.path().to_owned(),
        sequence_gap: GAP,
        backup_key_file: None,
        ..RestoreCommand::default()
    };
    let error = admin(move |out| exposure_server::admin::backup::restore(restore, out))
        .await
        .expect_err("a non-empty target is refused");
    assert!(error.contains("not empty"), "{error}");
    assert_eq!(
        std::fs::read_to_string(target.path().join("notes.txt")).expect("untouched"),
        "mine"
    );
    drop(server);
}

/// Copies the backup folder `from` into the new folder `to`, file by file.
fn copy_backup(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_backup(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Makes a sealed backup of `server` into `root` with the key in `key_file`; returns it.
async fn sealed_backup(server: &TestServer, root: &Path, key_file: &Path) -> PathBuf {
    let command = BackupCommand {
        backup_key_file: Some(key_file.to_owned()),
        ..backup_command(server.data_dir(), root)
    };
    admin(move |out| exposure_server::admin::backup::backup(command, out))
        .await
        .expect("sealed backup");
    exposure_server::backup::resolve(root).expect("the backup")
}

/// Restores `backup` with `key_file` into a new folder; returns the error, or `None` on
/// success, and checks that a refused restore leaves the target empty.
async fn restore_sealed(backup: &Path, key_file: Option<&Path>) -> Option<String> {
    let target = tempfile::tempdir().expect("restore target");
    let restore = RestoreCommand {
        from: backup.to_owned(),
        data_dir: target.path().to_owned(),
        sequence_gap: GAP,
        backup_key_file: key_file.map(Path::to_owned),
        ..RestoreCommand::default()
    };
    let result = admin(move |out| exposure_server::admin::backup::restore(restore, out)).await;
    match result {
        Ok(_) => None,
        Err(error) => {
            assert_eq!(
                std::fs::read_dir(target.path()).expect("target").count(),
                0,
                "a refused restore leaves nothing behind: {error}"
            );
            Some(error)
        }
    }
}

/// The sealed files of a backup's `db/`, largest first, as (relative path, bytes).
fn sealed_store_files(backup: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(backup.join("db"))
        .expect("db")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = format!("db/{}", entry.file_name().to_str().expect("name"));
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .collect();
    files.sort_by_key(|(name, bytes)| (std::cmp::Reverse(bytes.len()), name.clone()));
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_backup_refuses_flipped_swapped_foreign_and_wrongly_keyed_files() {
    let first = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    first.upload(fixtures::upload("a", vec![load_key(1)])).await;
    first
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let second = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    second
        .upload(fixtures::upload("b", vec![load_key(2)]))
        .await;
    second
        .wait_for_batches(|listing| !listing.batches.is_empty())
        .await;
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("right.key");
    std::fs::write(&key_file, [0x11; 32]).expect("key");
    let other_key_file = keys.path().join("other.key");
    std::fs::write(&other_key_file, [0x22; 32]).expect("key");

    let roots: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("root")).collect();
    let backup = sealed_backup(&first, roots[0].path(), &key_file).await;
    // The same deployment sealed with another key, and another deployment with the same key.
    let other_key = sealed_backup(&first, roots[1].path(), &other_key_file).await;
    let foreign = sealed_backup(&second, roots[2].path(), &key_file).await;
    let info = std::fs::read_to_string(backup.join("BACKUP-INFO")).expect("info");
    let foreign_info = std::fs::read_to_string(foreign.join("BACKUP-INFO")).expect("info");
    let deployment = |info: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix("deployment: "))
            .expect("BACKUP-INFO names the deployment")
            .to_owned()
    };
    assert_ne!(deployment(&info), deployment(&foreign_info));
    assert!(info.contains("sealed: yes"), "{info}");

    // The untouched backup restores; without its key it is refused as sealed.
    assert_eq!(restore_sealed(&backup, Some(&key_file)).await, None);
    let error = restore_sealed(&backup, None).await.expect("needs the key");
    assert!(
        error.contains("sealed") && error.contains("--backup-key-file"),
        "{error}"
    );
    // The whole backup with another key: its sealed manifest is refused first.
    let error = restore_sealed(&backup, Some(&other_key_file))
        .await
        .expect("another key");
    assert!(
        error.contains("MANIFEST.seal") && error.contains("does not open with this key"),
        "{error}"
    );

    let scratch = tempfile::tempdir().expect("scratch");
    let files = sealed_store_files(&backup);
    let (largest, largest_bytes) = &files[0];

    // One flipped byte in the largest file.
    let flipped = scratch.path().join("flipped");
    copy_backup(&backup, &flipped);
    let mut bytes = largest_bytes.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(flipped.join(largest), &bytes).expect("flip");
    let error = restore_sealed(&flipped, Some(&key_file))
        .await
        .expect("a flipped byte is refused");
    assert!(
        error.contains(largest.as_str()) && error.contains("does not open with this key"),
        "{error}"
    );

    // Two files swapped: whichever comes first in the manifest is refused by name.
    let (smaller, smaller_bytes) = &files[1];
    let swapped = scratch.path().join("swapped");
    copy_backup(&backup, &swapped);
    std::fs::write(swapped.join(largest), smaller_bytes).expect("swap");
    std::fs::write(swapped.join(smaller), largest_bytes).expect("swap");
    let error = restore_sealed(&swapped, Some(&key_file))
        .await
        .expect("a swapped file is refused");
    let first_named = std::cmp::min(largest, smaller);
    assert!(
        error.contains(first_named.as_str()) && error.contains("does not open with this key"),
        "{error}"
    );

    // One file sealed with another key for the same deployment, under the same name.
    let rekeyed = scratch.path().join("rekeyed");
    copy_backup(&backup, &rekeyed);
    std::fs::copy(other_key.join("db/CURRENT"), rekeyed.join("db/CURRENT")).expect("copy");
    let error = restore_sealed(&rekeyed, Some(&key_file))
        .await
        .expect("a file sealed with another key is refused");
    assert!(
        error.contains("db/CURRENT") && error.contains("does not open with this key"),
        "{error}"
    );

    // One file of another deployment's backup, sealed with the same key, under the same name.
    let mixed = scratch.path().join("mixed");
    copy_backup(&backup, &mixed);
    std::fs::copy(foreign.join("db/CURRENT"), mixed.join("db/CURRENT")).expect("copy");
    let error = restore_sealed(&mixed, Some(&key_file))
        .await
        .expect("a file of another deployment is refused");
    assert!(
        error.contains("db/CURRENT") && error.contains("another deployment"),
        "{error}"
    );

    // With a key, an unsealed backup is refused: the seal cannot be stripped.
    let unsealed_root = tempfile::tempdir().expect("root");
    let command = backup_command(first.data_dir(), unsealed_root.path());
    admin(move |out| exposure_server::admin::backup::backup(command, out))
        .await
        .expect("unsealed backup");
    let unsealed = exposure_server::backup::resolve(unsealed_root.path()).expect("backup");
    assert!(
        !unsealed.join("signing").exists(),
        "no private keys in clear"
    );
    let error = restore_sealed(&unsealed, Some(&key_file))
        .await
        .expect("an unsealed backup is refused with a key");
    assert!(
        error.contains("MANIFEST.seal") && error.contains("not sealed"),
        "{error}"
    );
    drop((first, second));
}

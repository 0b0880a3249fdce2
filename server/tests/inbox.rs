//! The admin inbox under hostile entries: a symbolic link to `/dev/zero`, a FIFO, a huge file,
//! a folder, a file of another user and undecodable bytes are each quarantined without blocking
//! or reading them whole, and a good request behind them is still applied.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use exposure_server::inbox::{self, Inbox, InboxRequest, MAX_REQUEST_BYTES};
use exposure_server::storage::Store;
use exposure_server::storage::authorities::new_authority;

/// Names that sort before any real request (`{seconds:020}-…`), so the good one comes last.
fn bad_entry(folder: &Path, tag: &str) -> std::path::PathBuf {
    folder.join(format!("00000000000000000000-{tag}.request"))
}

#[test]
fn bad_entries_are_quarantined_and_a_good_one_after_them_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let new = new_authority("Thai Binh CDC", &["VN-TB".to_owned()], 1_768_046_400);
    let good = InboxRequest {
        add: Some(new.authority.clone()),
        token_hash: new.token_hash.to_vec(),
        requested_at: 1_768_046_400,
        ..InboxRequest::default()
    };
    let good_path = inbox::submit(dir.path(), &good).expect("submit");
    let folder = inbox::inbox_dir(dir.path());
    let mode = std::fs::metadata(&folder)
        .expect("inbox")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the inbox is private");
    let request_mode = std::fs::metadata(&good_path)
        .expect("request")
        .permissions()
        .mode();
    assert_eq!(request_mode & 0o777, 0o600, "requests are private");

    std::os::unix::fs::symlink("/dev/zero", bad_entry(&folder, "a-symlink")).expect("symlink");
    let fifo = bad_entry(&folder, "b-fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let huge = bad_entry(&folder, "c-huge");
    std::fs::write(
        &huge,
        vec![0x0a; usize::try_from(MAX_REQUEST_BYTES).expect("size") * 16],
    )
    .expect("huge");
    std::fs::create_dir(bad_entry(&folder, "d-folder")).expect("folder");
    let foreign = bad_entry(&folder, "e-foreign");
    std::fs::write(&foreign, prost::Message::encode_to_vec(&good)).expect("foreign");
    std::os::unix::fs::chown(&foreign, Some(65_534), Some(65_534)).expect("chown to nobody");
    std::fs::write(bad_entry(&folder, "f-garbage"), [0xff; 40]).expect("garbage");

    let inbox = Inbox::new(store.clone(), dir.path().to_owned());
    let applied = inbox.apply_pending().expect("apply");
    assert_eq!(applied, 1, "only the good request is applied");
    assert_eq!(
        store
            .authenticate(&new.token)
            .expect("lookup")
            .map(|authority| authority.id),
        Some(new.authority.id.clone()),
        "the good request's token works"
    );
    let left: Vec<_> = std::fs::read_dir(&folder)
        .expect("inbox")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("name")
        })
        .collect();
    assert_eq!(
        left,
        vec!["quarantine".to_owned()],
        "nothing is left to retry"
    );
    let mut quarantined: Vec<_> = std::fs::read_dir(folder.join("quarantine"))
        .expect("quarantine")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("name")
        })
        .collect();
    quarantined.sort();
    assert_eq!(quarantined.len(), 6, "{quarantined:?}");
    assert!(quarantined[0].contains("a-symlink") && quarantined[5].contains("f-garbage"));
    assert_eq!(
        inbox.apply_pending().expect("apply again"),
        0,
        "quarantined entries are not looked at again"
    );
}

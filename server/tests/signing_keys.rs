//! `exposure-server signing-key rotate|retire|list` on a running binary, as an operator types
//! them: a rotation applies at once with the next GAEN version, the current key and unknown
//! keys are refused with exit code 64, and a retired key shows as retired.

mod common;

use common::{BINARY, admin, start};

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// Returns `(key_id, gaen_key_version, status)` of each row of `signing-key list`.
fn rows(listing: &str) -> Vec<(String, String, String)> {
    listing
        .lines()
        .skip(1)
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), 4, "{line}");
            (
                columns[0].to_owned(),
                columns[2].to_owned(),
                columns[3].to_owned(),
            )
        })
        .collect()
}

#[test]
fn keys_are_rotated_and_retired_on_a_running_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let listed = rows(&stdout_of(&admin(dir.path(), &["signing-key", "list"])));
    assert_eq!(listed.len(), 1);
    let (old, old_version, status) = listed[0].clone();
    assert_eq!((old_version.as_str(), status.as_str()), ("v1", "current"));

    let rotated = stdout_of(&admin(dir.path(), &["signing-key", "rotate"]));
    assert!(
        rotated.contains("the running server has applied the change")
            && rotated.contains("GAEN version v2")
            && rotated.contains("from now on"),
        "{rotated}"
    );
    let listed = rows(&stdout_of(&admin(dir.path(), &["signing-key", "list"])));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], (old.clone(), "v1".into(), "verifying".into()));
    let new = listed[1].0.clone();
    assert_eq!(listed[1], (new.clone(), "v2".into(), "current".into()));

    let current = admin(dir.path(), &["signing-key", "retire", &new]);
    assert_eq!(current.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&current.stderr).contains("rotate first"));
    let unknown = admin(dir.path(), &["signing-key", "retire", "nope"]);
    assert_eq!(unknown.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("KEY_ID"));
    let bad_version = admin(
        dir.path(),
        &["signing-key", "rotate", "--gaen-key-version", "v 3"],
    );
    assert_eq!(bad_version.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_version.stderr).contains("--gaen-key-version"));

    let retired = stdout_of(&admin(dir.path(), &["signing-key", "retire", &old]));
    assert!(retired.contains("no longer list it"), "{retired}");
    let listed = rows(&stdout_of(&admin(dir.path(), &["signing-key", "list"])));
    assert!(listed[0].2.starts_with("retired at "), "{listed:?}");
    assert_eq!(listed[1].2, "current");
    assert!(server.terminate());

    let help = std::process::Command::new(BINARY)
        .args(["--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--signing-key-file") && help.contains("--signing-key"),
        "{help}"
    );
}

//! Rotation and retirement of signing keys, shared by the admin commands (on a stopped server)
//! and the inbox (on a running one, through the same authenticated path as authorities).
//!
//! - **Rotation** makes a new key current at once: the list gains its record and the ring (when
//!   a server runs) its private key, under the store's commit lock, so no batch commits with the
//!   old key after the rotation is applied (the publisher re-checks the current key under that
//!   lock and rebuilds a batch built with a replaced one). The old key stays listed, so phones
//!   verify the batches it signed.
//! - **Retirement** (after a compromise) marks a key retired: `GetSigningKeys`, `v1/signing-keys`
//!   and the bucket's copy stop listing it, so batches it signed fail verification for every
//!   client that fetches the keys afresh; its private key file is deleted. The current key
//!   cannot be retired: rotate first.
//! - **Rotation with an overlap** (`--overlap`, DESIGN §15) lists the new key as the *next*
//!   key with the time it becomes current: until then it signs every GAEN export beside the
//!   current key (so it can be registered with Apple and Google while phones still accept the
//!   old one), never a batch. The publisher's first run at or after that time makes it current
//!   ([`switch_if_due`]); the old key stays listed like after any rotation. One overlap at a
//!   time: another rotation is refused until the switch, and retiring the next key calls the
//!   rotation off.
//! - **GAEN versions**: Apple and Google register each public key under an id and a version, so
//!   every key records the `verification_key_version` its exports carry, unique among the keys.

use std::path::Path;

use exposure_matcher::BatchSigner;

use super::{ActiveKey, InService, KeyRing, NextKey, SigningError};
use crate::storage::Store;
use crate::storage::outbox::OutboxTask;
use crate::storage::records::{SigningKeyList, SigningKeyRecord};

/// Lists `signer` as a new key with GAEN version `gaen_key_version` and makes it current (in
/// `ring` too, when a server runs), queueing `queue` in the same write; returns it. Refuses a
/// key that is listed already and a version another key has.
pub fn activate(
    store: &Store,
    ring: Option<&KeyRing>,
    signer: &BatchSigner,
    gaen_key_version: &str,
    now: u64,
    queue: &[OutboxTask],
) -> Result<ActiveKey, SigningError> {
    let commits = store.lock_commits();
    let mut list = store.signing_keys()?;
    let id = signer.key_id();
    list_new_key(&mut list, signer, gaen_key_version, now)?;
    list.current = id.to_owned();
    store.put_signing_keys(&list, queue, now, &commits)?;
    let active = ActiveKey {
        signer: signer.clone(),
        gaen_key_version: gaen_key_version.to_owned(),
    };
    if let Some(ring) = ring {
        ring.replace(InService {
            current: active.clone(),
            next: None,
        });
    }
    tracing::info!(key_id = id, gaen_key_version, "signing key made current");
    Ok(active)
}

/// Lists `signer` as the next key, current from `current_from` (a rotation with an overlap),
/// with GAEN version `gaen_key_version`, in `ring` too when a server runs, queueing `queue` in
/// the same write; returns it. Refuses like [`activate`], and during another overlap.
pub fn add_next(
    store: &Store,
    ring: Option<&KeyRing>,
    signer: &BatchSigner,
    gaen_key_version: &str,
    now: u64,
    current_from: u64,
    queue: &[OutboxTask],
) -> Result<NextKey, SigningError> {
    let commits = store.lock_commits();
    let mut list = store.signing_keys()?;
    let id = signer.key_id();
    list_new_key(&mut list, signer, gaen_key_version, now)?;
    list.next = id.to_owned();
    list.next_current_from = current_from;
    store.put_signing_keys(&list, queue, now, &commits)?;
    let next = NextKey {
        key: ActiveKey {
            signer: signer.clone(),
            gaen_key_version: gaen_key_version.to_owned(),
        },
        current_from,
    };
    if let Some(ring) = ring {
        let current = ring.in_service().current.clone();
        ring.replace(InService {
            current,
            next: Some(next.clone()),
        });
    }
    tracing::info!(
        key_id = id,
        gaen_key_version,
        current_from,
        "next signing key listed; it signs GAEN exports beside the current key until it becomes current"
    );
    Ok(next)
}

/// Adds `signer`'s record to `list` after the checks every new key passes: no overlap under
/// way, a key not listed yet, a free GAEN version.
fn list_new_key(
    list: &mut SigningKeyList,
    signer: &BatchSigner,
    gaen_key_version: &str,
    now: u64,
) -> Result<(), SigningError> {
    let id = signer.key_id();
    check_no_overlap(list)?;
    check_new_key(list, id)?;
    check_gaen_version(list, gaen_key_version)?;
    list.keys.push(SigningKeyRecord {
        key_id: id.to_owned(),
        public_key_der: signer.public_key_der(),
        created_at: now,
        gaen_key_version: gaen_key_version.to_owned(),
        retired_at: 0,
    });
    Ok(())
}

/// Checks that no rotation is in its overlap: one next key at a time.
pub fn check_no_overlap(list: &SigningKeyList) -> Result<(), SigningError> {
    if list.next.is_empty() {
        return Ok(());
    }
    Err(SigningError::Refused(format!(
        "a rotation is in its overlap: key {0} becomes current at {1}; rotate again after that, or call this rotation off with `signing-key retire {0}`",
        list.next,
        time_text(list.next_current_from)
    )))
}

/// Returns whether the next key of `list` is due to become current at `now`.
pub fn switch_due(list: &SigningKeyList, now: u64) -> bool {
    !list.next.is_empty() && now >= list.next_current_from
}

/// Makes the next key of `list` current and ends the overlap; the old key stays listed.
fn switch(list: &mut SigningKeyList) {
    list.current = std::mem::take(&mut list.next);
    list.next_current_from = 0;
}

/// Ends an overlap whose switch time has come: the next key becomes current, in the store and
/// in `ring`, queueing `queue` in the same write. Returns whether it switched. Cheap when no
/// switch is due (the ring alone is read).
pub fn switch_if_due(
    store: &Store,
    ring: &KeyRing,
    now: u64,
    queue: &[OutboxTask],
) -> Result<bool, SigningError> {
    let due = |keys: &InService| {
        keys.next
            .as_ref()
            .is_some_and(|next| now >= next.current_from)
    };
    if !due(&ring.in_service()) {
        return Ok(false);
    }
    let commits = store.lock_commits();
    let keys = ring.in_service();
    let mut list = store.signing_keys()?;
    let Some(next) = keys.next.as_ref().filter(|_| due(&keys)) else {
        return Ok(false);
    };
    if !switch_due(&list, now) || list.next != next.key.signer.key_id() {
        return Err(SigningError::Refused(format!(
            "the store's next signing key {:?} is not the server's {}; restart the server",
            list.next,
            next.key.signer.key_id()
        )));
    }
    let old = std::mem::take(&mut list.current);
    switch(&mut list);
    store.put_signing_keys(&list, queue, now, &commits)?;
    ring.replace(InService {
        current: next.key.clone(),
        next: None,
    });
    tracing::info!(
        key_id = %list.current,
        gaen_key_version = %next.key.gaen_key_version,
        previous = %old,
        "overlap over: the next signing key is current"
    );
    Ok(true)
}

/// Returns Unix seconds as RFC 3339 UTC followed by the seconds, for messages.
pub fn time_text(unix_seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    format!(
        "{} (Unix {unix_seconds})",
        humantime::format_rfc3339_seconds(time)
    )
}

/// Checks that `key_id` is not listed yet (a rotation needs a new key).
pub fn check_new_key(list: &SigningKeyList, key_id: &str) -> Result<(), SigningError> {
    match list.keys.iter().find(|record| record.key_id == key_id) {
        Some(record) => Err(SigningError::Refused(format!(
            "key {key_id} is listed already ({}); a rotation needs a new key",
            status(list, record)
        ))),
        None => Ok(()),
    }
}

/// Checks that `version` may name a new key's GAEN version: well formed, and no key has it
/// (Apple and Google register one key per version).
pub fn check_gaen_version(list: &SigningKeyList, version: &str) -> Result<(), SigningError> {
    crate::config::registered_name("--gaen-key-version", version)
        .map_err(|error| SigningError::Refused(error.to_string()))?;
    match list
        .keys
        .iter()
        .find(|record| record.gaen_key_version == version)
    {
        Some(owner) => Err(SigningError::Refused(format!(
            "--gaen-key-version {version} belongs to key {} already; pass another",
            owner.key_id
        ))),
        None => Ok(()),
    }
}

/// Retires `key_id`, queueing `queue` in the same write, and deletes its private key from the
/// data directory. Refuses the current key, an unknown key and a retired one. Retiring the
/// next key of an overlap calls that rotation off (in `ring` too, when a server runs).
pub fn retire(
    store: &Store,
    ring: Option<&KeyRing>,
    data_dir: &Path,
    key_id: &str,
    now: u64,
    queue: &[OutboxTask],
) -> Result<(), SigningError> {
    {
        let commits = store.lock_commits();
        let mut list = store.signing_keys()?;
        check_retirable(&list, key_id)?;
        if let Some(record) = list.keys.iter_mut().find(|record| record.key_id == key_id) {
            record.retired_at = now.max(1);
        }
        let calls_off = list.next == key_id;
        if calls_off {
            list.next.clear();
            list.next_current_from = 0;
        }
        store.put_signing_keys(&list, queue, now, &commits)?;
        if let Some(ring) = ring.filter(|_| calls_off) {
            let current = ring.in_service().current.clone();
            ring.replace(InService {
                current,
                next: None,
            });
        }
        if calls_off {
            tracing::info!(key_id, "rotation called off: the next key was retired");
        }
    }
    let private = super::key_file(data_dir, key_id);
    match std::fs::remove_file(&private) {
        Ok(()) => tracing::info!(key_id, "retired key's private key deleted"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(key_id, %error, "retired key's private key not deleted"),
    }
    tracing::info!(key_id, "signing key retired");
    Ok(())
}

/// Checks that `key_id` may be retired: listed, not retired, not current.
pub fn check_retirable(list: &SigningKeyList, key_id: &str) -> Result<(), SigningError> {
    match list.keys.iter().find(|record| record.key_id == key_id) {
        None => Err(SigningError::Refused(format!(
            "KEY_ID {key_id:?}: no such signing key (see `signing-key list`)"
        ))),
        Some(record) if record.retired_at != 0 => Err(SigningError::Refused(format!(
            "KEY_ID {key_id}: retired already"
        ))),
        Some(_) if list.current == key_id => Err(SigningError::Refused(format!(
            "KEY_ID {key_id} is the current signing key: rotate first (`signing-key rotate`), then retire it"
        ))),
        Some(_) => Ok(()),
    }
}

/// Returns a key's state in words: current, next (signing GAEN exports beside the current key
/// until its switch time), verifying (listed, no longer signing) or retired.
pub fn status(list: &SigningKeyList, record: &SigningKeyRecord) -> String {
    if record.retired_at != 0 {
        format!("retired at {}", record.retired_at)
    } else if record.key_id == list.current {
        "current".to_owned()
    } else if record.key_id == list.next {
        format!("next, current from {}", time_text(list.next_current_from))
    } else {
        "verifying".to_owned()
    }
}

/// Returns the current key as an [`ActiveKey`], first recording `default_gaen_version` (or
/// the next free `vN`) as its GAEN version when it has none (a store from before versions were
/// recorded, where every export carried `--gaen-key-version`).
pub fn record_gaen_version(
    store: &Store,
    signer: BatchSigner,
    default_gaen_version: &str,
) -> Result<ActiveKey, SigningError> {
    let commits = store.lock_commits();
    let mut list = store.signing_keys()?;
    let free = free_gaen_version(&list, default_gaen_version);
    let Some(record) = list
        .keys
        .iter_mut()
        .find(|record| record.key_id == signer.key_id())
    else {
        return Err(SigningError::Refused(format!(
            "key {} is not listed",
            signer.key_id()
        )));
    };
    let version = if record.gaen_key_version.is_empty() {
        record.gaen_key_version = free.clone();
        store.put_signing_keys(&list, &[], 0, &commits)?;
        free
    } else {
        record.gaen_key_version.clone()
    };
    Ok(ActiveKey {
        signer,
        gaen_key_version: version,
    })
}

/// Returns `preferred` when no key has it, else the first `vN` after it (after `v1` when it
/// is not of that form) that no key has.
pub fn free_gaen_version(list: &SigningKeyList, preferred: &str) -> String {
    let used = |version: &str| {
        list.keys
            .iter()
            .any(|record| record.gaen_key_version == version)
    };
    if !used(preferred) {
        return preferred.to_owned();
    }
    let start = version_number(preferred).unwrap_or(1);
    (start.saturating_add(1)..)
        .map(|number| format!("v{number}"))
        .find(|version| !used(version))
        .unwrap_or_else(|| preferred.to_owned())
}

/// Returns the GAEN version a rotation gives the new key: `requested`, else the first free
/// `vN` after the current key's. Refuses to guess when the current key's version is unknown
/// or not of the form `vN`.
pub fn next_gaen_version(
    list: &SigningKeyList,
    requested: Option<&str>,
) -> Result<String, SigningError> {
    if let Some(version) = requested {
        return Ok(version.to_owned());
    }
    let Some(current) = list
        .keys
        .iter()
        .find(|record| record.key_id == list.current)
    else {
        return Ok(free_gaen_version(list, "v1"));
    };
    if current.gaen_key_version.is_empty() {
        return Err(SigningError::Refused(format!(
            "the current key {} has no GAEN version recorded yet (a server start records its --gaen-key-version); pass --gaen-key-version",
            current.key_id
        )));
    }
    if version_number(&current.gaen_key_version).is_none() {
        return Err(SigningError::Refused(format!(
            "the current key's GAEN version {:?} is not of the form vN; pass --gaen-key-version",
            current.gaen_key_version
        )));
    }
    Ok(free_gaen_version(list, &current.gaen_key_version))
}

/// Returns N of a version `vN`.
fn version_number(version: &str) -> Option<u64> {
    version.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key_id: &str, version: &str) -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: key_id.into(),
            gaen_key_version: version.into(),
            ..SigningKeyRecord::default()
        }
    }

    #[test]
    fn versions_count_on_past_every_version_in_use() {
        let list = SigningKeyList {
            keys: vec![record("a", "v1"), record("b", "v2"), record("c", "v4")],
            current: "b".into(),
            ..SigningKeyList::default()
        };
        assert_eq!(next_gaen_version(&list, None).expect("next"), "v3");
        assert_eq!(
            next_gaen_version(&list, Some("2026-b")).expect("requested"),
            "2026-b"
        );
        assert_eq!(free_gaen_version(&list, "v9"), "v9");
        assert_eq!(free_gaen_version(&list, "v2"), "v3");
        assert_eq!(free_gaen_version(&list, "v3"), "v3");
        let empty = SigningKeyList::default();
        assert_eq!(next_gaen_version(&empty, None).expect("first"), "v1");
        let legacy = SigningKeyList {
            keys: vec![record("a", "")],
            current: "a".into(),
            ..SigningKeyList::default()
        };
        assert!(matches!(
            next_gaen_version(&legacy, None),
            Err(SigningError::Refused(_))
        ));
        let custom = SigningKeyList {
            keys: vec![record("a", "2026a")],
            current: "a".into(),
            ..SigningKeyList::default()
        };
        assert!(next_gaen_version(&custom, None).is_err());
    }

    #[test]
    fn only_a_listed_key_that_does_not_sign_may_be_retired() {
        let mut list = SigningKeyList {
            keys: vec![record("old", "v1"), record("new", "v2")],
            current: "new".into(),
            ..SigningKeyList::default()
        };
        assert!(check_retirable(&list, "old").is_ok());
        let current = check_retirable(&list, "new").expect_err("current");
        assert!(current.to_string().contains("rotate first"), "{current}");
        assert!(check_retirable(&list, "other").is_err());
        list.keys[0].retired_at = 5;
        assert!(check_retirable(&list, "old").is_err());
        assert_eq!(status(&list, &list.keys[0]), "retired at 5");
        assert_eq!(status(&list, &list.keys[1]), "current");
    }

    #[test]
    fn an_overlap_is_one_at_a_time_and_ends_at_its_switch_time() {
        let mut list = SigningKeyList {
            keys: vec![record("old", "v1"), record("new", "v2")],
            current: "old".into(),
            next: "new".into(),
            next_current_from: 1_768_651_200,
        };
        let refused = check_no_overlap(&list).expect_err("a second rotation");
        let message = refused.to_string();
        assert!(
            message.contains("overlap")
                && message.contains("2026-01-17T12:00:00Z")
                && message.contains("signing-key retire new"),
            "{message}"
        );
        assert_eq!(
            status(&list, &list.keys[1]),
            "next, current from 2026-01-17T12:00:00Z (Unix 1768651200)"
        );
        assert_eq!(status(&list, &list.keys[0]), "current");
        // The next key may be retired (calling the rotation off), never the current one.
        assert!(check_retirable(&list, "new").is_ok());
        assert!(check_retirable(&list, "old").is_err());
        assert!(!switch_due(&list, 1_768_651_199));
        assert!(switch_due(&list, 1_768_651_200));
        switch(&mut list);
        assert_eq!(
            (
                list.current.as_str(),
                list.next.as_str(),
                list.next_current_from
            ),
            ("new", "", 0)
        );
        assert_eq!(status(&list, &list.keys[0]), "verifying");
        assert!(check_no_overlap(&list).is_ok());
        assert!(!switch_due(&list, u64::MAX));
    }

    fn active(signer: &BatchSigner, version: &str) -> ActiveKey {
        ActiveKey {
            signer: signer.clone(),
            gaen_key_version: version.into(),
        }
    }

    #[test]
    fn the_store_and_the_ring_move_together_through_an_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let old = BatchSigner::generate();
        activate(&store, None, &old, "v1", 100, &[]).expect("first key");
        let ring = KeyRing::new(active(&old, "v1"));
        let new = BatchSigner::generate();
        add_next(&store, Some(&ring), &new, "v2", 200, 1_000, &[]).expect("overlap");
        let keys = ring.in_service();
        assert_eq!(keys.current.signer.key_id(), old.key_id());
        let next = keys.next.as_ref().expect("a next key");
        assert_eq!(
            (next.key.signer.key_id(), next.current_from),
            (new.key_id(), 1_000)
        );
        let list = store.signing_keys().expect("list");
        assert_eq!(
            (list.current.as_str(), list.next.as_str()),
            (old.key_id(), new.key_id())
        );

        // Neither rotation kind is accepted during the overlap.
        let third = BatchSigner::generate();
        assert!(activate(&store, Some(&ring), &third, "v3", 300, &[]).is_err());
        assert!(add_next(&store, Some(&ring), &third, "v3", 300, 2_000, &[]).is_err());
        assert_eq!(store.signing_keys().expect("list"), list, "unchanged");

        assert!(!switch_if_due(&store, &ring, 999, &[]).expect("early"));
        assert!(ring.in_service().same_keys(&keys));
        assert!(switch_if_due(&store, &ring, 1_000, &[]).expect("due"));
        let list = store.signing_keys().expect("list");
        assert_eq!(list.current, new.key_id());
        assert!(list.next.is_empty());
        assert_eq!(list.keys.len(), 2, "the old key stays listed");
        let keys = ring.in_service();
        assert_eq!(keys.current.signer.key_id(), new.key_id());
        assert_eq!(keys.current.gaen_key_version, "v2");
        assert!(keys.next.is_none());
        assert!(!switch_if_due(&store, &ring, 5_000, &[]).expect("nothing left"));

        // Retiring the next key of a second overlap calls it off.
        add_next(&store, Some(&ring), &third, "v3", 1_100, 9_000, &[]).expect("second");
        retire(&store, Some(&ring), dir.path(), third.key_id(), 1_200, &[]).expect("off");
        let list = store.signing_keys().expect("list");
        assert_eq!(
            (list.current.as_str(), list.next.as_str()),
            (new.key_id(), "")
        );
        assert!(ring.in_service().next.is_none());
        assert!(!switch_if_due(&store, &ring, 10_000, &[]).expect("called off"));
    }
}

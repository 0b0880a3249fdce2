//! Retention of a continuous backup (`--backup-keep`, DESIGN.md section 15): after a new
//! checkpoint is complete in the bucket, the shipper deletes the checkpoints older than the
//! newest `keep` complete ones, with their log objects, then every `files/` object that no kept
//! checkpoint's manifest lists (layout in [`super::remote`]).
//!
//! Order keeps the bucket restorable at every step: an old checkpoint's manifest goes first
//! (a checkpoint exists only while its manifest does), then its log objects; a folder whose
//! manifest is gone but whose logs remain (a deletion that failed) is deleted on the next run.
//! Files are deleted only when every kept manifest was read and opened, so nothing a kept
//! checkpoint needs is ever deleted. A deletion that fails is logged, counted in
//! `exposure_backup_failures_total{stage="prune"}` and retried after the next checkpoint,
//! which lists the bucket afresh. One server ships to a backup prefix at a time: a second
//! writer's checkpoint in progress is not known here.

use std::collections::BTreeSet;

use super::BackupError;
use super::remote::{self, CheckpointManifest};
use super::restore_remote::{fetch, open_manifest};
use super::seal::KEY_BYTES;
use crate::bucket::Bucket;

/// What a prune deletes, from one listing of the bucket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The complete checkpoints kept (ids, oldest first).
    pub kept: Vec<String>,
    /// The older checkpoints' objects, per checkpoint (oldest first): its manifest first when
    /// it still has one, then its log objects.
    pub checkpoints: Vec<Vec<String>>,
}

/// Returns the ids of the complete checkpoints (those with a manifest) in `paths`, oldest first.
pub fn complete_checkpoints(paths: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = paths
        .iter()
        .filter_map(|path| checkpoint_of(path))
        .filter(|(id, rest)| *rest == "manifest" && remote::parse_checkpoint_id(id).is_some())
        .map(|(id, _)| id.to_owned())
        .collect();
    ids.sort();
    ids
}

/// Plans the deletion of every checkpoint folder older than the oldest of the newest `keep`
/// complete checkpoints. Nothing is planned with `keep` 0 or no complete checkpoint.
pub fn plan(paths: &[String], keep: usize) -> Plan {
    let complete = complete_checkpoints(paths);
    if keep == 0 || complete.is_empty() {
        return Plan::default();
    }
    let kept = complete[complete.len().saturating_sub(keep)..].to_vec();
    let oldest_kept = kept[0].as_str();
    let mut old: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for path in paths {
        let Some((id, rest)) = checkpoint_of(path) else {
            continue;
        };
        // Only folders named as the shipper names them, older than every kept one.
        if remote::parse_checkpoint_id(id).is_none() || id >= oldest_kept {
            continue;
        }
        let objects = old.entry(id).or_default();
        if rest == "manifest" {
            objects.insert(0, path.clone());
        } else {
            objects.push(path.clone());
        }
    }
    Plan {
        kept,
        checkpoints: old.into_values().collect(),
    }
}

/// Returns the `files/` objects of `paths` that none of `manifests` lists.
pub fn unreferenced_files(paths: &[String], manifests: &[CheckpointManifest]) -> Vec<String> {
    let referenced: BTreeSet<String> = manifests
        .iter()
        .flat_map(|manifest| manifest.files.iter())
        .map(|file| remote::file_name(&file.digest))
        .collect();
    paths
        .iter()
        .filter(|path| path.starts_with(&format!("{}/", remote::FILES)))
        .filter(|path| !referenced.contains(*path))
        .cloned()
        .collect()
}

/// What a prune did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Objects deleted.
    pub deleted: usize,
    /// Deletions that failed (retried on the next run).
    pub failed: usize,
}

/// Keeps the newest `keep` complete checkpoints of `bucket` and what they need; deletes the
/// rest. `key` opens sealed manifests. An error (the listing, a kept manifest that cannot be
/// read) stops before any file is deleted.
pub async fn prune(
    bucket: &Bucket,
    keep: usize,
    key: Option<&[u8; KEY_BYTES]>,
) -> Result<Pruned, BackupError> {
    let paths = bucket
        .all_paths()
        .await
        .map_err(|error| BackupError::Upload(error.to_string()))?;
    let plan = plan(&paths, keep);
    if plan.kept.is_empty() {
        return Ok(Pruned::default());
    }
    let mut manifests = Vec::with_capacity(plan.kept.len());
    for id in &plan.kept {
        let name = remote::manifest_name(id);
        let (_, sequence) = remote::parse_checkpoint_id(id).unwrap_or_default();
        let body = fetch(bucket, &name).await?;
        let (_, text) = open_manifest(&name, sequence, &body, key)?;
        let manifest =
            CheckpointManifest::parse(&String::from_utf8_lossy(&text)).map_err(|reason| {
                BackupError::Corrupt {
                    path: name.clone().into(),
                    reason,
                }
            })?;
        manifests.push(manifest);
    }
    let mut pruned = Pruned::default();
    for objects in &plan.checkpoints {
        for object in objects {
            match bucket.delete(object).await {
                Ok(()) => pruned.deleted += 1,
                Err(error) => {
                    tracing::warn!(%error, object, "a pruned backup object could not be deleted");
                    pruned.failed += 1;
                    // Its manifest kept, the checkpoint keeps its logs: retried next time.
                    if object.ends_with("/manifest") {
                        break;
                    }
                }
            }
        }
    }
    for object in unreferenced_files(&paths, &manifests) {
        match bucket.delete(&object).await {
            Ok(()) => pruned.deleted += 1,
            Err(error) => {
                tracing::warn!(%error, object, "a pruned backup file could not be deleted");
                pruned.failed += 1;
            }
        }
    }
    Ok(pruned)
}

/// Splits `checkpoints/{id}/{rest}` into (id, rest).
fn checkpoint_of(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix(remote::CHECKPOINTS)?
        .strip_prefix('/')?
        .split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::remote::CheckpointFile;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn plans_the_checkpoints_older_than_the_newest_kept() {
        let paths = strings(&[
            "checkpoints/1000000000001-00000000000000000010/log/00000000000000000011-00000000000000000012-1000000000002",
            "checkpoints/1000000000001-00000000000000000010/manifest",
            // Its manifest went in an earlier run, a log deletion failed.
            "checkpoints/1000000000000-00000000000000000005/log/00000000000000000006-00000000000000000006-1000000000001",
            "checkpoints/1000000000003-00000000000000000020/manifest",
            "checkpoints/1000000000003-00000000000000000020/log/00000000000000000021-00000000000000000021-1000000000004",
            "checkpoints/1000000000005-00000000000000000030/manifest",
            // Not named as the shipper names checkpoints: left alone.
            "checkpoints/notes/readme",
            "files/aa",
        ]);
        let planned = plan(&paths, 2);
        assert_eq!(
            planned.kept,
            strings(&[
                "1000000000003-00000000000000000020",
                "1000000000005-00000000000000000030"
            ])
        );
        assert_eq!(
            planned.checkpoints,
            vec![
                strings(&[
                    "checkpoints/1000000000000-00000000000000000005/log/00000000000000000006-00000000000000000006-1000000000001"
                ]),
                strings(&[
                    "checkpoints/1000000000001-00000000000000000010/manifest",
                    "checkpoints/1000000000001-00000000000000000010/log/00000000000000000011-00000000000000000012-1000000000002",
                ]),
            ]
        );
        // Keeping as many as there are, or more, deletes nothing older than the oldest.
        assert_eq!(
            plan(&paths, 3).checkpoints,
            vec![strings(&[
                "checkpoints/1000000000000-00000000000000000005/log/00000000000000000006-00000000000000000006-1000000000001"
            ])]
        );
        assert_eq!(plan(&paths, 0), Plan::default());
        assert_eq!(plan(&strings(&["files/aa"]), 2), Plan::default());
    }

    #[test]
    fn files_no_kept_manifest_lists_are_unreferenced() {
        let file = |digest: &str| CheckpointFile {
            digest: digest.repeat(32),
            length: 1,
            path: format!("db/{digest}.sst"),
        };
        let manifest = |files| CheckpointManifest {
            deployment: "d".into(),
            sequence: 1,
            created_ms: 1,
            files,
        };
        let paths = strings(&[
            &format!("files/{}", "aa".repeat(32)),
            &format!("files/{}", "bb".repeat(32)),
            &format!("files/{}", "cc".repeat(32)),
            "checkpoints/1000000000003-00000000000000000020/manifest",
        ]);
        assert_eq!(
            unreferenced_files(
                &paths,
                &[manifest(vec![file("aa")]), manifest(vec![file("cc")])]
            ),
            strings(&[&format!("files/{}", "bb".repeat(32))])
        );
    }
}

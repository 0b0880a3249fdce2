//! Withdrawal of keys: a REVOKED upload, and an operator withdrawing every key of a leaked
//! token. A withdrawn key's record, release entry, dedup entry and its own confirm-digest
//! entries go in one synced write under the commit lock, so phones stop confirming it at once
//! and no batch committed afterwards contains it. Digests that another live key also produces
//! stay confirmable (see `storage::confirm`). A withdrawn GAEN key that was already exported is
//! kept as a revision, in the same write, for the next export file's `revised_keys`.

use exposure_proto::v1::UploadDiagnosisKeysResponse;
use rocksdb::WriteBatch;

use super::writer::{UploadJob, UploadOutcome, replay_or_conflict};
use crate::storage::records::{StoredKey, StoredUpload};
use crate::storage::{StorageError, Store};

/// Keys withdrawn per write when an authority's keys are withdrawn wholesale.
const KEYS_PER_WRITE: usize = 1000;

/// Withdraws the keys named by a REVOKED upload. An authority withdraws only keys that came
/// through itself; an admin authority withdraws any key of the region.
#[tracing::instrument(skip_all, fields(keys = job.keys.len()))]
pub(super) fn revoke(store: &Store, job: &UploadJob) -> Result<UploadOutcome, StorageError> {
    let _commit = store.lock_commits();
    let upload_key = crate::storage::uploads::upload_key(&job.idempotency_scope, &job.upload_id);
    if let Some(earlier) = store.upload(&upload_key)? {
        return Ok(replay_or_conflict(&earlier, &job.request_digest));
    }
    let mut batch = WriteBatch::default();
    let mut revoked = 0u32;
    for requested in &job.keys {
        let Some(sequence) = store.find_duplicate(&requested.dedup_key)? else {
            continue;
        };
        let Some(stored) = store.key(sequence)? else {
            continue;
        };
        if !job.admin && stored.authority_id != job.authority_id {
            continue;
        }
        record_gaen_revision(store, &mut batch, sequence, &stored)?;
        store.withdraw_key(&mut batch, sequence, &stored)?;
        revoked += 1;
    }
    let response = UploadDiagnosisKeysResponse {
        keys_accepted: 0,
        keys_already_known: 0,
        replay: false,
        keys_revoked: revoked,
    };
    let record = StoredUpload {
        request_digest: job.request_digest.to_vec(),
        response: Some(response),
        created_at: job.now,
    };
    store.put_upload(&mut batch, &upload_key, &record);
    store.write_synced(batch)?;
    Ok(UploadOutcome::Stored(response))
}

/// Withdraws every stored key that came through `authority_id` (`authority revoke
/// --withdraw-keys`, for a leaked token); returns how many keys went.
#[tracing::instrument(skip_all)]
pub fn withdraw_authority_keys(store: &Store, authority_id: &str) -> Result<usize, StorageError> {
    let sequences = store.key_sequences_of_authority(authority_id)?;
    let mut withdrawn = 0;
    for chunk in sequences.chunks(KEYS_PER_WRITE) {
        let _commit = store.lock_commits();
        let mut batch = WriteBatch::default();
        for (sequence, key) in store.keys(chunk)? {
            record_gaen_revision(store, &mut batch, sequence, &key)?;
            store.withdraw_key(&mut batch, sequence, &key)?;
            withdrawn += 1;
        }
        store.write_synced(batch)?;
    }
    Ok(withdrawn)
}

/// Adds a revision for a GAEN-scheme key that was already published (and so exported), so the
/// next GAEN export file lists it in `revised_keys` with report type REVOKED (DESIGN §11).
/// A key still under embargo was never exported and needs none. Call under the commit lock.
fn record_gaen_revision(
    store: &Store,
    batch: &mut WriteBatch,
    sequence: u64,
    key: &StoredKey,
) -> Result<(), StorageError> {
    if crate::publisher::export_key(key).is_none() || store.is_pending(sequence, key.release_at)? {
        return Ok(());
    }
    store.put_gaen_revision(batch, sequence, key);
    Ok(())
}

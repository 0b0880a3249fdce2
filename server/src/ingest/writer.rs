//! The ingest writer: one thread that owns every upload write. Concurrent uploads queue here
//! and are committed together in one synced RocksDB WriteBatch (group commit), so a thousand
//! uploads cost a handful of fsyncs, and the dedup and idempotency checks see every earlier
//! upload, also those in the same group, without locks. An upload is answered only after the
//! write that holds it is on disk.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::thread::JoinHandle;

use exposure_proto::v1::UploadDiagnosisKeysResponse;
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::storage::records::{StoredKey, StoredUpload};
use crate::storage::{StorageError, Store};

/// Most uploads committed in one write.
const MAX_GROUP: usize = 512;
/// Uploads that may wait for the writer; past this, callers wait for room.
const QUEUE_DEPTH: usize = 4096;

/// One upload, validated and ready to store.
pub struct UploadJob {
    /// Authority that sent it; upload ids are scoped per authority.
    pub authority_id: String,
    /// Client-chosen idempotency key.
    pub upload_id: String,
    /// Digest of the request's content.
    pub request_digest: [u8; 32],
    /// True for a REVOKED upload: the keys are withdrawn, not stored.
    pub revoke: bool,
    /// The keys, as they will be stored.
    pub keys: Vec<StoredKey>,
    /// Unix seconds of the upload.
    pub now: u64,
}

/// What became of an upload.
#[derive(Clone, Debug, PartialEq)]
pub enum UploadOutcome {
    /// Stored now.
    Stored(UploadDiagnosisKeysResponse),
    /// The same upload was stored before: its first answer.
    Replay(UploadDiagnosisKeysResponse),
    /// The upload id was used before for other content.
    Conflict,
}

type Reply = oneshot::Sender<Result<UploadOutcome, StorageError>>;

/// Handle to the writer thread; cloning shares the same thread.
#[derive(Clone)]
pub struct IngestWriter {
    sender: mpsc::SyncSender<(UploadJob, Reply)>,
}

impl IngestWriter {
    /// Starts the writer thread over `store`. The thread ends once every handle is dropped
    /// and the queue is drained.
    pub fn start(store: Store) -> Result<(Self, JoinHandle<()>), StorageError> {
        let next_sequence = store.last_key_sequence()? + 1;
        let (sender, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer_loop(store, receiver, next_sequence))?;
        Ok((Self { sender }, thread))
    }

    /// Queues an upload and waits until it is durable (or refused).
    pub async fn submit(&self, job: UploadJob) -> Result<UploadOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StorageError::Io(std::io::Error::other("ingest writer stopped"));
        match self.sender.try_send((job, reply)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
            Err(mpsc::TrySendError::Full(queued)) => {
                // The queue is bounded: waiting for room must not block an async worker.
                let sender = self.sender.clone();
                tokio::task::spawn_blocking(move || sender.send(queued).map_err(drop))
                    .await
                    .map_err(|error| StorageError::Io(std::io::Error::other(error)))?
                    .map_err(|_| stopped())?;
            }
        }
        answer.await.map_err(|_| stopped())?
    }
}

fn writer_loop(store: Store, receiver: mpsc::Receiver<(UploadJob, Reply)>, mut next_sequence: u64) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut writer = GroupWriter::new(&store);
        for (job, reply) in group {
            if job.revoke {
                // Revocations delete what the publisher may be reading: commit what came
                // before, then withdraw under the commit lock on its own.
                writer.commit();
                let outcome = revoke(&store, &job);
                let _ = reply.send(outcome);
                writer = GroupWriter::new(&store);
                continue;
            }
            writer.add(job, reply, &mut next_sequence);
        }
        writer.commit();
    }
    tracing::debug!("ingest writer stopped");
}

/// The uploads of one group, gathered into one WriteBatch.
struct GroupWriter<'a> {
    store: &'a Store,
    batch: WriteBatch,
    /// Uploads of this group, so a retry inside the same group is still a replay.
    uploads: HashMap<Vec<u8>, StoredUpload>,
    /// Dedup keys written by this group.
    dedup: HashSet<Vec<u8>>,
    /// Answers to send once the batch is durable.
    replies: Vec<(Reply, UploadOutcome)>,
    /// Scheme label of every key this group stores, counted once the write is durable.
    stored_schemes: Vec<&'static str>,
}

impl<'a> GroupWriter<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            batch: WriteBatch::default(),
            uploads: HashMap::new(),
            dedup: HashSet::new(),
            replies: Vec::new(),
            stored_schemes: Vec::new(),
        }
    }

    fn add(&mut self, job: UploadJob, reply: Reply, next_sequence: &mut u64) {
        match self.try_add(job, next_sequence) {
            Ok(outcome) => self.replies.push((reply, outcome)),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn try_add(
        &mut self,
        job: UploadJob,
        next_sequence: &mut u64,
    ) -> Result<UploadOutcome, StorageError> {
        let upload_key = crate::storage::uploads::upload_key(&job.authority_id, &job.upload_id);
        if let Some(earlier) = self.earlier_upload(&upload_key)? {
            return Ok(replay_or_conflict(&earlier, &job.request_digest));
        }
        let mut accepted = 0u32;
        let mut already_known = 0u32;
        for key in &job.keys {
            if self.dedup.contains(&key.dedup_key)
                || self.store.find_duplicate(&key.dedup_key)?.is_some()
            {
                already_known += 1;
                continue;
            }
            self.store.put_key(&mut self.batch, *next_sequence, key);
            *next_sequence += 1;
            self.dedup.insert(key.dedup_key.clone());
            self.stored_schemes.push(scheme_label(key));
            accepted += 1;
        }
        let response = UploadDiagnosisKeysResponse {
            keys_accepted: accepted,
            keys_already_known: already_known,
            replay: false,
            keys_revoked: 0,
        };
        let record = StoredUpload {
            request_digest: job.request_digest.to_vec(),
            response: Some(response),
            created_at: job.now,
        };
        self.store.put_upload(&mut self.batch, &upload_key, &record);
        self.uploads.insert(upload_key, record);
        Ok(UploadOutcome::Stored(response))
    }

    fn earlier_upload(&self, upload_key: &[u8]) -> Result<Option<StoredUpload>, StorageError> {
        match self.uploads.get(upload_key) {
            Some(record) => Ok(Some(record.clone())),
            None => self.store.upload(upload_key),
        }
    }

    /// Writes the group durably, then answers every upload in it.
    #[tracing::instrument(level = "debug", skip_all, fields(uploads = self.replies.len()))]
    fn commit(self) {
        if self.replies.is_empty() {
            return;
        }
        let result = self.store.write_synced(self.batch);
        if result.is_ok() {
            for scheme in self.stored_schemes {
                metrics::counter!(crate::metrics::KEYS_INGESTED_TOTAL, "scheme" => scheme)
                    .increment(1);
            }
        }
        for (reply, outcome) in self.replies {
            let answer = match &result {
                Ok(()) => Ok(outcome),
                Err(error) => Err(StorageError::Io(std::io::Error::other(error.to_string()))),
            };
            let _ = reply.send(answer);
        }
    }
}

/// Returns the metrics label of a stored key's scheme.
fn scheme_label(key: &StoredKey) -> &'static str {
    use exposure_proto::v1::diagnosis_key::Key;
    match key.key.as_ref().and_then(|key| key.key.as_ref()) {
        Some(Key::Gaen(_)) => "gaen",
        Some(Key::Bluezone(_)) => "bluezone",
        Some(Key::StaticId(_)) => "static",
        None => "unknown",
    }
}

fn replay_or_conflict(earlier: &StoredUpload, request_digest: &[u8; 32]) -> UploadOutcome {
    if earlier.request_digest == request_digest {
        let mut response = earlier.response.unwrap_or_default();
        response.replay = true;
        UploadOutcome::Replay(response)
    } else {
        UploadOutcome::Conflict
    }
}

/// Withdraws the keys of a REVOKED upload: the keys, their release entries and their confirm
/// digests go in one synced write, so phones stop confirming them at once.
#[tracing::instrument(skip_all, fields(keys = job.keys.len()))]
fn revoke(store: &Store, job: &UploadJob) -> Result<UploadOutcome, StorageError> {
    let _commit = store.lock_commits();
    let upload_key = crate::storage::uploads::upload_key(&job.authority_id, &job.upload_id);
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
        for element in stored.matcher_key()?.tagged_elements().unwrap_or_default() {
            store.delete_digest(&mut batch, &stored.region, &element.tag.confirm_digest());
        }
        store.delete_key(&mut batch, sequence, &stored);
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

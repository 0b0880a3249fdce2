//! The ingest writer: one thread that owns every upload write. Concurrent uploads queue here
//! and are committed together in one synced RocksDB WriteBatch (group commit), so a thousand
//! uploads cost a handful of fsyncs, and the dedup and idempotency checks see every earlier
//! upload, also those in the same group, without locks. An upload is answered only after the
//! write that holds it is on disk.
//!
//! The writer also enforces each authority's daily key quota: it is the only writer of the
//! per-day counters, which are persisted in the same write as the keys they count.

use std::collections::{HashMap, HashSet};
use std::thread::JoinHandle;

use exposure_proto::v1::UploadDiagnosisKeysResponse;
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot};

use super::revoke::revoke;
use crate::storage::records::{StoredKey, StoredUpload};
use crate::storage::{StorageError, Store};

/// Most uploads committed in one write.
const MAX_GROUP: usize = 512;
/// Uploads that may wait for the writer; past this, callers wait (asynchronously, within the
/// request deadline) for room.
const QUEUE_DEPTH: usize = 4096;
const DAY_SECONDS: u64 = 86_400;

/// One upload, validated and ready to store.
pub struct UploadJob {
    /// Authority the keys come through: the token's, or the code's issuer.
    pub authority_id: String,
    /// Scope of `upload_id`: the authority's id for token uploads, the code's hash for code
    /// uploads (so a retry after the code is consumed still finds its first answer).
    pub idempotency_scope: String,
    /// SHA-256 of the one-time code the upload was made with, consumed in the same write.
    pub code_hash: Option<[u8; 32]>,
    /// Client-chosen idempotency key.
    pub upload_id: String,
    /// Digest of the request's content.
    pub request_digest: [u8; 32],
    /// True for a REVOKED upload: the keys are withdrawn, not stored.
    pub revoke: bool,
    /// True when the uploader is an admin authority, which may withdraw any authority's keys;
    /// others withdraw only keys that came through themselves.
    pub admin: bool,
    /// Most new keys the authority may store per UTC day; 0 for no limit.
    pub keys_per_day: u64,
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
    /// The upload code is unknown, used by another upload, or expired; nothing was stored.
    CodeRejected,
    /// Storing the keys would take the authority past its daily key quota; nothing was stored.
    QuotaExceeded {
        /// The authority's quota, keys per UTC day.
        keys_per_day: u64,
    },
}

type Reply = oneshot::Sender<Result<UploadOutcome, StorageError>>;

/// What the writer thread receives.
enum Message {
    /// An upload (or revocation) and where its outcome goes.
    Job(UploadJob, Reply),
    /// Stop taking jobs, write those already queued, and end.
    Stop,
}

/// Handle to the writer thread; cloning shares the same thread.
#[derive(Clone)]
pub struct IngestWriter {
    sender: mpsc::Sender<Message>,
}

impl IngestWriter {
    /// Starts the writer thread over `store`. The thread ends once every handle is dropped,
    /// or [`IngestWriter::stop`] is called, and the queue is drained.
    pub fn start(store: Store) -> Result<(Self, JoinHandle<()>), StorageError> {
        let next_sequence = store.next_key_sequence()?;
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer_loop(store, receiver, next_sequence))?;
        Ok((Self { sender }, thread))
    }

    /// Queues an upload and waits until it is durable (or refused). A full queue is waited on
    /// asynchronously: no thread is parked, so a stalled writer cannot exhaust the runtime's
    /// blocking pool, and the request deadline bounds the wait.
    pub async fn submit(&self, job: UploadJob) -> Result<UploadOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StorageError::Io(std::io::Error::other("ingest writer stopped"));
        self.sender
            .send(Message::Job(job, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Makes the writer thread end once the jobs already queued are written, however many
    /// handles are left: at shutdown, a connection that outlives the grace period (a stream
    /// that never ends) still holds one. Later submissions fail ("ingest writer stopped").
    pub async fn stop(&self) {
        let _ = self.sender.send(Message::Stop).await;
    }
}

fn writer_loop(store: Store, mut receiver: mpsc::Receiver<Message>, mut next_sequence: u64) {
    let mut quota = QuotaCounters::default();
    while let Some(first) = receiver.blocking_recv() {
        let mut group = Vec::new();
        take(first, &mut group, &mut receiver);
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(message) => take(message, &mut group, &mut receiver),
                Err(_) => break,
            }
        }
        if group.is_empty() {
            continue;
        }
        let mut writer = GroupWriter::new(&store, &mut quota);
        for (job, reply) in group {
            if job.revoke {
                // Revocations delete what the publisher may be reading: commit what came
                // before, then withdraw under the commit lock on its own.
                writer.commit();
                let outcome = revoke(&store, &job);
                let _ = reply.send(outcome);
                writer = GroupWriter::new(&store, &mut quota);
                continue;
            }
            writer.add(job, reply, &mut next_sequence);
        }
        writer.commit();
    }
    tracing::debug!("ingest writer stopped");
}

/// Adds a job to `group`; a stop closes the channel, which refuses new jobs and still yields
/// those queued (then `None`).
fn take(
    message: Message,
    group: &mut Vec<(UploadJob, Reply)>,
    receiver: &mut mpsc::Receiver<Message>,
) {
    match message {
        Message::Job(job, reply) => group.push((job, reply)),
        Message::Stop => receiver.close(),
    }
}

/// Keys stored per authority and UTC day, as persisted; loaded on first use.
#[derive(Default)]
struct QuotaCounters {
    /// (authority id, day) → keys stored, including the group being written.
    counts: HashMap<(String, u64), u64>,
}

impl QuotaCounters {
    fn count(&mut self, store: &Store, authority: &str, day: u64) -> Result<u64, StorageError> {
        let key = (authority.to_owned(), day);
        if let Some(count) = self.counts.get(&key) {
            return Ok(*count);
        }
        // Yesterday's counters are never read again: keep the map small.
        self.counts
            .retain(|(_, counted_day), _| *counted_day >= day.saturating_sub(1));
        let count = store.keys_stored_on(authority, day)?;
        self.counts.insert(key, count);
        Ok(count)
    }

    /// Forgets counts that a failed write did not persist, so they are read again.
    fn reset(&mut self) {
        self.counts.clear();
    }
}

/// The uploads of one group, gathered into one WriteBatch.
struct GroupWriter<'a> {
    store: &'a Store,
    quota: &'a mut QuotaCounters,
    batch: WriteBatch,
    /// The next ingest sequence after this group, persisted with it.
    next_sequence: Option<u64>,
    /// Uploads of this group, so a retry inside the same group is still a replay.
    uploads: HashMap<Vec<u8>, StoredUpload>,
    /// Dedup keys written by this group.
    dedup: HashSet<Vec<u8>>,
    /// Answers to send once the batch is durable.
    replies: Vec<(Reply, UploadOutcome)>,
    /// Scheme label of every key this group stores, counted once the write is durable.
    stored_schemes: Vec<&'static str>,
    /// Codes consumed by this group, so a second upload with one in the same group fails.
    consumed_codes: HashSet<[u8; 32]>,
    /// The store's credential lock, taken at the group's first code upload and held until its
    /// write is durable, so an authority revoked meanwhile cannot have a code consumed after
    /// its revocation voided the code.
    credentials: Option<std::sync::MutexGuard<'a, ()>>,
}

impl<'a> GroupWriter<'a> {
    fn new(store: &'a Store, quota: &'a mut QuotaCounters) -> Self {
        Self {
            store,
            quota,
            batch: WriteBatch::default(),
            next_sequence: None,
            uploads: HashMap::new(),
            dedup: HashSet::new(),
            replies: Vec::new(),
            stored_schemes: Vec::new(),
            consumed_codes: HashSet::new(),
            credentials: None,
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
        let upload_key =
            crate::storage::uploads::upload_key(&job.idempotency_scope, &job.upload_id);
        if let Some(earlier) = self.earlier_upload(&upload_key)? {
            return Ok(match replay_or_conflict(&earlier, &job.request_digest) {
                // Other content under a consumed code's upload id: the code is used.
                UploadOutcome::Conflict if job.code_hash.is_some() => UploadOutcome::CodeRejected,
                outcome => outcome,
            });
        }
        if job.code_hash.is_some() && self.credentials.is_none() {
            let store: &'a Store = self.store;
            self.credentials = Some(store.lock_credentials());
        }
        let code = match &job.code_hash {
            Some(hash) => match self.usable_code(hash, job.now)? {
                Some(code) => Some((*hash, code)),
                None => return Ok(UploadOutcome::CodeRejected),
            },
            None => None,
        };
        let mut new_keys = Vec::with_capacity(job.keys.len());
        for key in &job.keys {
            let known = self.dedup.contains(&key.dedup_key)
                || self.store.find_duplicate(&key.dedup_key)?.is_some();
            if !known {
                new_keys.push(key);
            }
        }
        let already_known = (job.keys.len() - new_keys.len()) as u32;
        let accepted = new_keys.len() as u32;
        if accepted > 0 {
            let day = job.now / DAY_SECONDS;
            let stored_today = self.quota.count(self.store, &job.authority_id, day)?;
            let after = stored_today + u64::from(accepted);
            if job.keys_per_day > 0 && after > job.keys_per_day {
                return Ok(UploadOutcome::QuotaExceeded {
                    keys_per_day: job.keys_per_day,
                });
            }
            self.quota
                .counts
                .insert((job.authority_id.clone(), day), after);
            self.store
                .put_keys_stored_on(&mut self.batch, &job.authority_id, day, after);
        }
        if let Some((hash, mut code)) = code {
            code.consumed_at = job.now;
            self.store.put_code(&mut self.batch, &hash, &code);
            self.consumed_codes.insert(hash);
        }
        for key in new_keys {
            self.store.put_key(&mut self.batch, *next_sequence, key);
            *next_sequence += 1;
            self.dedup.insert(key.dedup_key.clone());
            self.stored_schemes.push(scheme_label(key));
        }
        self.next_sequence = Some(*next_sequence);
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

    /// Returns the code under `hash` if it may still upload: known, unused (also within this
    /// group), not expired, and issued by an authority that is still active (a revocation
    /// voids its unused codes; this also covers codes of one revoked before that was so).
    fn usable_code(
        &self,
        hash: &[u8; 32],
        now: u64,
    ) -> Result<Option<crate::storage::records::StoredCode>, StorageError> {
        if self.consumed_codes.contains(hash) {
            return Ok(None);
        }
        let Some(code) = self
            .store
            .code(hash)?
            .filter(|code| code.consumed_at == 0 && code.expires_at >= now)
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .active_authority(&code.authority_id)?
            .map(|_| code))
    }

    fn earlier_upload(&self, upload_key: &[u8]) -> Result<Option<StoredUpload>, StorageError> {
        match self.uploads.get(upload_key) {
            Some(record) => Ok(Some(record.clone())),
            None => self.store.upload(upload_key),
        }
    }

    /// Writes the group durably, then answers every upload in it.
    #[tracing::instrument(level = "debug", skip_all, fields(uploads = self.replies.len()))]
    fn commit(mut self) {
        if self.replies.is_empty() {
            return;
        }
        if let Some(next) = self.next_sequence {
            self.store.put_next_key_sequence(&mut self.batch, next);
        }
        let result = self.store.write_synced(self.batch);
        if result.is_err() {
            self.quota.reset();
        }
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
    key.key.as_ref().map_or("unknown", key_scheme_label)
}

/// Returns the metrics label of a key's scheme (a decoy's keys count under the same labels as
/// a real upload's).
pub(super) fn key_scheme_label(key: &exposure_proto::v1::DiagnosisKey) -> &'static str {
    use exposure_proto::v1::diagnosis_key::Key;
    match key.key.as_ref() {
        Some(Key::Gaen(_)) => "gaen",
        Some(Key::Bluezone(_)) => "bluezone",
        Some(Key::StaticId(_)) => "static",
        None => "unknown",
    }
}

pub(super) fn replay_or_conflict(
    earlier: &StoredUpload,
    request_digest: &[u8; 32],
) -> UploadOutcome {
    if earlier.request_digest == request_digest {
        let mut response = earlier.response.unwrap_or_default();
        response.replay = true;
        UploadOutcome::Replay(response)
    } else {
        UploadOutcome::Conflict
    }
}

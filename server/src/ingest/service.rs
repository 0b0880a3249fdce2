//! `exposure.v1.KeyUpload`: authenticates the caller (a health authority's bearer token, or a
//! patient's one-time upload code), validates the upload, and hands it to the ingest writer;
//! answers once the upload is on disk. Decoy uploads are answered here without storing
//! anything (see [`super::decoy`]); codes are issued by [`super::issue`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure_proto::v1::key_upload_server::KeyUpload;
use exposure_proto::v1::{
    IssueUploadCodesRequest, IssueUploadCodesResponse, ReportType, UploadDiagnosisKeysRequest,
    UploadDiagnosisKeysResponse,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::authority_limits::AuthorityLimiters;
use super::code::UploadCode;
use super::code_limits::CodeAttemptLimits;
use super::decoy::DecoyTiming;
use super::issue::CodeIssuer;
use super::validate::{Limits, ValidUpload, is_valid_region, validate_decoy, validate_upload};
use super::writer::{IngestWriter, UploadJob, UploadOutcome};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::metrics;
use crate::storage::Store;
use crate::storage::keys::dedup_key;
use crate::storage::records::{Authority, StoredCode, StoredKey};

/// The upload service.
#[derive(Clone)]
pub struct KeyUploadService {
    store: Store,
    writer: IngestWriter,
    clock: Clock,
    /// Embargo after a key's last slot.
    release_delay: Duration,
    max_key_age_days: u32,
    max_keys_per_upload: u32,
    /// Bluezone `sub_keys_per_day` values accepted.
    bluezone_sub_keys_per_day: Arc<[u32]>,
    /// Default upload calls per minute of an authority whose record sets none.
    uploads_per_minute: u32,
    /// Default new keys per UTC day of an authority whose record sets none; 0 for no limit.
    keys_per_day: u64,
    /// One upload-rate limiter per active authority (GCRA: a minute's quota may come as a
    /// burst, then it refills evenly).
    rate_limiters: Arc<AuthorityLimiters>,
    /// Upload-code attempts, per client network and overall.
    code_limits: Arc<CodeAttemptLimits>,
    /// Recent real code-upload latencies, which decoys imitate; saved in the store so that
    /// they survive a restart.
    decoys: Arc<DecoyTiming>,
    /// Issues upload codes, for this service and the staff console alike.
    issuer: CodeIssuer,
}

/// How a caller proved it may upload.
enum Credential {
    /// `authorization: Bearer <token>` of a health authority.
    Token(String),
    /// `authorization: UploadCode <code>` of a patient's phone.
    Code(UploadCode),
    /// Neither, or a malformed code.
    Missing,
}

impl KeyUploadService {
    /// Returns the service over an opened store and a running writer; codes are issued by
    /// `issuer` (shared with the staff console, so both draw on one issue rate).
    pub fn new(
        store: Store,
        writer: IngestWriter,
        clock: Clock,
        issuer: CodeIssuer,
        config: &crate::config::ServerConfig,
    ) -> Self {
        let decoys = DecoyTiming::restored(store.decoy_latencies().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the saved decoy latencies");
            Vec::new()
        }));
        Self {
            store,
            writer,
            clock,
            release_delay: config.release_delay,
            max_key_age_days: config.accepted_key_age_days(),
            max_keys_per_upload: config.max_keys_per_upload,
            bluezone_sub_keys_per_day: config.bluezone_sub_keys_per_day.clone().into(),
            uploads_per_minute: config.authority_uploads_per_minute,
            keys_per_day: config.authority_keys_per_day,
            rate_limiters: Arc::default(),
            code_limits: Arc::new(CodeAttemptLimits::new(
                NonZeroU32::new(config.code_failures_per_client_per_hour)
                    .unwrap_or(NonZeroU32::MIN),
                NonZeroU32::new(config.code_failures_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            decoys: Arc::new(decoys),
            issuer,
        }
    }

    /// Charges one upload call to the authority's rate limit.
    fn check_rate(&self, authority: &Authority) -> Result<(), ApiError> {
        let per_minute = match authority.uploads_per_minute {
            0 => self.uploads_per_minute,
            own => own,
        };
        let Some(per_minute) = NonZeroU32::new(per_minute) else {
            return Ok(());
        };
        self.rate_limiters
            .limiter(&authority.id, per_minute)
            .check()
            .map_err(|_| {
                ApiError::ResourceExhausted(format!(
                    "upload rate limit of {per_minute} calls per minute reached; retry later"
                ))
            })
    }

    async fn upload(
        &self,
        credential: Credential,
        client: Option<IpAddr>,
        request: UploadDiagnosisKeysRequest,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        let code = match credential {
            Credential::Token(token) => return self.upload_with_token(token, request).await,
            Credential::Code(code) => code,
            Credential::Missing => return Err(ApiError::Unauthenticated),
        };
        // Charged before the lookup, so concurrent guesses cannot pass the budget (an attempt
        // that finds it filled by others in flight waits for their answers); refunded once the
        // code proves valid, whatever the upload's outcome.
        let attempt = self.code_limits.begin(client).await?;
        let result = self.upload_with_code(&code, request).await;
        if !matches!(result, Err(ApiError::BadUploadCode)) {
            attempt.code_was_valid();
        }
        result
    }

    async fn upload_with_token(
        &self,
        token: String,
        request: UploadDiagnosisKeysRequest,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        let authority = self.authenticate(token).await?;
        if is_valid_region(&request.region) && !authority.regions.contains(&request.region) {
            return Err(ApiError::PermissionDenied(request.region));
        }
        self.check_rate(&authority)?;
        let now = self.clock.now();
        let upload =
            validate_upload(&request, self.limits(now)).map_err(ApiError::InvalidArgument)?;
        let keys_per_day = match authority.keys_per_day {
            0 => self.keys_per_day,
            own => own,
        };
        let job = UploadJob {
            admin: authority.admin,
            keys_per_day,
            idempotency_scope: authority.id.clone(),
            code_hash: None,
            ..self.job(&authority.id, &upload, now)
        };
        self.submit(job, upload.upload_id).await
    }

    /// Uploads a patient's keys with a one-time code: the region and report type are the
    /// code's, and the writer consumes the code in the write that stores the keys.
    async fn upload_with_code(
        &self,
        code: &UploadCode,
        mut request: UploadDiagnosisKeysRequest,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        let now = self.clock.now();
        let code_hash = code.hash();
        let store = self.store.clone();
        let record: Option<StoredCode> =
            tokio::task::spawn_blocking(move || store.code(&code_hash))
                .await
                .map_err(|error| ApiError::Internal(error.to_string()))??;
        // A consumed code passes here: the writer answers a retry of the upload that consumed
        // it with its first answer, and refuses anything else.
        let record = record
            .filter(|record| record.expires_at >= now)
            .ok_or(ApiError::BadUploadCode)?;
        // The region is the code's: a request may leave it empty (DESIGN §12), and one that
        // names another gets PERMISSION_DENIED (a malformed one INVALID_ARGUMENT, below).
        if request.region.is_empty() {
            request.region.clone_from(&record.region);
        } else if is_valid_region(&request.region) && request.region != record.region {
            return Err(ApiError::PermissionDenied(request.region));
        }
        request.report_type = record.report_type;
        if let Some(onset_day) = record.onset_day {
            fill_days_since_onset(&mut request, onset_day);
        }
        let upload =
            validate_upload(&request, self.limits(now)).map_err(ApiError::InvalidArgument)?;
        let job = UploadJob {
            admin: false,
            keys_per_day: match record.keys_per_day {
                0 => self.keys_per_day,
                own => own,
            },
            idempotency_scope: format!("code:{}", hex::encode(code_hash)),
            code_hash: Some(code_hash),
            ..self.job(&record.authority_id, &upload, now)
        };
        self.submit(job, upload.upload_id).await
    }

    async fn submit(
        &self,
        job: UploadJob,
        upload_id: String,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        match self.writer.submit(job).await? {
            UploadOutcome::Stored(response) | UploadOutcome::Replay(response) => Ok(response),
            UploadOutcome::Conflict => Err(ApiError::AlreadyExists(upload_id)),
            UploadOutcome::CodeRejected => Err(ApiError::BadUploadCode),
            UploadOutcome::QuotaExceeded { keys_per_day } => Err(ApiError::ResourceExhausted(
                format!("daily quota of {keys_per_day} new keys reached; nothing was stored"),
            )),
        }
    }

    /// Answers a decoy: the same checks of shape as a real upload, nothing stored, the same
    /// answer a first upload of those keys gets, after a delay like a real upload's.
    async fn decoy(
        &self,
        request: UploadDiagnosisKeysRequest,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        let delay = self.decoys.sample_delay();
        let now = self.clock.now();
        let checked = validate_decoy(&request, self.limits(now)).map_err(ApiError::InvalidArgument);
        tokio::time::sleep(delay).await;
        let upload = checked?;
        // Its keys count as a real upload's would, just before the answer (a real upload's
        // count moves when its write commits): no public figure tells the two apart.
        for key in &upload.keys {
            ::metrics::counter!(metrics::KEYS_INGESTED_TOTAL,
                "scheme" => super::writer::key_scheme_label(&key.stored))
            .increment(1);
        }
        Ok(UploadDiagnosisKeysResponse {
            keys_accepted: upload.keys.len() as u32,
            ..UploadDiagnosisKeysResponse::default()
        })
    }

    /// Saves the decoys' latency model in the background, for the next start.
    fn save_decoy_latencies(&self, latencies: Vec<Duration>) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.put_decoy_latencies(&latencies) {
                tracing::warn!(%error, "cannot save the decoy latencies");
            }
        });
    }

    /// Returns the validation limits at `now`.
    fn limits(&self, now: u64) -> Limits<'_> {
        Limits {
            now,
            max_key_age_days: self.max_key_age_days,
            max_keys_per_upload: self.max_keys_per_upload,
            bluezone_sub_keys_per_day: &self.bluezone_sub_keys_per_day,
        }
    }

    /// Returns the authority of a bearer token that is known and not revoked.
    pub(super) async fn authenticate(&self, token: String) -> Result<Authority, ApiError> {
        authenticate(&self.store, token).await
    }

    /// Returns the job of an upload whose keys come through `authority_id`; the caller sets
    /// the fields that depend on the credential.
    fn job(&self, authority_id: &str, upload: &ValidUpload, now: u64) -> UploadJob {
        let keys = upload
            .keys
            .iter()
            .map(|valid| {
                let last_slot_end = valid.key.last_slot_end();
                StoredKey {
                    region: upload.region.clone(),
                    key: Some(valid.stored.clone()),
                    received_at: now,
                    release_at: last_slot_end.saturating_add(self.release_delay.as_secs()),
                    last_slot_end,
                    report_type: upload.report_type as i32,
                    dedup_key: dedup_key(&upload.region, &valid.key.dedup_material()),
                    authority_id: authority_id.to_owned(),
                    synthetic: false,
                }
            })
            .collect();
        UploadJob {
            admin: false,
            keys_per_day: self.keys_per_day,
            idempotency_scope: authority_id.to_owned(),
            code_hash: None,
            authority_id: authority_id.to_owned(),
            upload_id: upload.upload_id.clone(),
            request_digest: upload.request_digest,
            revoke: upload.report_type == ReportType::Revoked,
            keys,
            now,
        }
    }
}

/// Returns the authority of a bearer token that is known and not revoked. The admission
/// layer asks it before an upload's body is read, the handlers again when they run.
pub async fn authenticate(store: &Store, token: String) -> Result<Authority, ApiError> {
    let store = store.clone();
    let authority = tokio::task::spawn_blocking(move || store.authenticate(&token))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))??;
    authority.ok_or(ApiError::Unauthenticated)
}

/// Who an upload call says it is, read from its headers alone, before its body.
#[derive(Debug, PartialEq, Eq)]
pub enum Caller {
    /// `x-exposure-decoy: 1`: answered without any credential.
    Decoy,
    /// `authorization: Bearer <token>` of a health authority (not yet checked).
    Token(String),
    /// `authorization: UploadCode <code>` of a well-formed code (not yet looked up).
    Code,
    /// Neither, or a malformed code: refused with UNAUTHENTICATED.
    Anonymous,
}

/// Returns who the headers of an upload call say it is.
pub fn caller(headers: &http::HeaderMap) -> Caller {
    if is_decoy(headers) {
        return Caller::Decoy;
    }
    match credential(headers) {
        Credential::Token(token) => Caller::Token(token),
        Credential::Code(_) => Caller::Code,
        Credential::Missing => Caller::Anonymous,
    }
}

/// Returns the token of an `authorization: Bearer <token>` entry.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    (!token.is_empty()).then(|| token.trim().to_owned())
}

/// Gives each GAEN key of `request` without a `days_since_onset_of_symptoms` of its own the
/// one its code's symptom-onset or test date gives it (DESIGN §11, §12); a key outside
/// -14..=14 days of the date keeps none.
fn fill_days_since_onset(request: &mut UploadDiagnosisKeysRequest, onset_day: u32) {
    for key in &mut request.keys {
        if let Some(exposure_proto::v1::diagnosis_key::Key::Gaen(gaen)) = key.key.as_mut()
            && gaen.days_since_onset_of_symptoms.is_none()
        {
            gaen.days_since_onset_of_symptoms =
                super::issue::days_since_onset(gaen.rolling_start_interval_number, onset_day);
        }
    }
}

/// Returns true when the `authorization` entry claims a bearer token (the scheme name read
/// case-insensitively, RFC 9110 §11.1), well-formed or not: the calls that `--client-ca` puts
/// behind a client certificate. A patient's code upload and a decoy claim none.
pub fn claims_bearer_token<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .get_all("authorization")
        .iter()
        .any(|value| {
            let bytes = value.as_bytes();
            bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"bearer")
        })
}

/// Returns the credential of the `authorization` entry.
fn credential(headers: &http::HeaderMap) -> Credential {
    if let Some(token) = bearer_token(headers) {
        return Credential::Token(token);
    }
    let code = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("UploadCode "))
        .and_then(UploadCode::parse);
    match code {
        Some(code) => Credential::Code(code),
        None => Credential::Missing,
    }
}

/// Returns true for a request marked `x-exposure-decoy: 1`.
fn is_decoy(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-exposure-decoy")
        .is_some_and(|value| value.as_bytes() == b"1")
}

/// Returns the metrics label of an upload's result.
fn result_label(result: &Result<UploadDiagnosisKeysResponse, ApiError>) -> &'static str {
    match result {
        Ok(response) if response.replay => "replay",
        Ok(_) => "stored",
        Err(ApiError::InvalidArgument(_)) => "invalid",
        Err(ApiError::Unauthenticated | ApiError::BadUploadCode) => "unauthenticated",
        Err(ApiError::PermissionDenied(_)) => "permission_denied",
        Err(ApiError::AlreadyExists(_)) => "conflict",
        Err(ApiError::ResourceExhausted(_)) => "quota",
        Err(_) => "error",
    }
}

#[tonic::async_trait]
impl KeyUpload for KeyUploadService {
    #[instrument(level = "debug", skip_all, fields(region = %request.get_ref().region, keys = request.get_ref().keys.len()))]
    async fn upload_diagnosis_keys(
        &self,
        request: Request<UploadDiagnosisKeysRequest>,
    ) -> Result<Response<UploadDiagnosisKeysResponse>, Status> {
        let started = Instant::now();
        let decoy = is_decoy(request.metadata().as_ref());
        let result = if decoy {
            self.decoy(request.into_inner()).await
        } else {
            let credential = credential(request.metadata().as_ref());
            // Decoys imitate a phone's code upload: only those latencies are their model (an
            // authority's uploads of 30 keys over a fast link would make decoys stand out).
            let imitated = matches!(credential, Credential::Code(_));
            let client = request
                .extensions()
                .get::<crate::tls::PeerInfo>()
                .and_then(|peer| peer.remote_ip)
                .or_else(|| request.remote_addr().map(|address| address.ip()));
            let result = self.upload(credential, client, request.into_inner()).await;
            if imitated
                && result.is_ok()
                && let Some(latencies) = self.decoys.record(started.elapsed())
            {
                self.save_decoy_latencies(latencies);
            }
            result
        };
        let label = result_label(&result);
        // Decoys count in the same series as real uploads, by the answer they got: a scraper
        // of `/metrics` must not learn which phone uploaded for real (DESIGN §12).
        ::metrics::counter!(metrics::UPLOADS_TOTAL, "result" => label).increment(1);
        ::metrics::histogram!(metrics::UPLOAD_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(response) => {
                tracing::info!(
                    accepted = response.keys_accepted,
                    known = response.keys_already_known,
                    revoked = response.keys_revoked,
                    replay = response.replay,
                    "upload stored"
                );
                Ok(Response::new(response))
            }
            Err(error) => {
                tracing::info!(result = label, "upload refused");
                Err(error.into())
            }
        }
    }

    #[instrument(skip_all, fields(count = request.get_ref().count))]
    async fn issue_upload_codes(
        &self,
        request: Request<IssueUploadCodesRequest>,
    ) -> Result<Response<IssueUploadCodesResponse>, Status> {
        let token = bearer_token(request.metadata().as_ref()).ok_or(ApiError::Unauthenticated)?;
        let request = request.into_inner();
        let result = match self.authenticate(token).await {
            Ok(authority) => self.issuer.issue(&authority, &request, "").await,
            Err(error) => Err(error),
        };
        match &result {
            Ok(response) => tracing::info!(codes = response.codes.len(), "upload codes issued"),
            Err(_) => tracing::info!("upload codes refused"),
        }
        Ok(Response::new(result?))
    }
}

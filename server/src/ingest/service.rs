//! `exposure.v1.KeyUpload`: authenticates the health authority, validates the upload, and
//! hands it to the ingest writer; answers once the upload is on disk.

use std::time::{Duration, Instant};

use exposure_proto::v1::key_upload_server::KeyUpload;
use exposure_proto::v1::{ReportType, UploadDiagnosisKeysRequest, UploadDiagnosisKeysResponse};
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::validate::{Limits, ValidUpload, is_valid_region, validate_upload};
use super::writer::{IngestWriter, UploadJob, UploadOutcome};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::metrics;
use crate::storage::Store;
use crate::storage::keys::dedup_key;
use crate::storage::records::{Authority, StoredKey};

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
}

impl KeyUploadService {
    /// Returns the service over an opened store and a running writer.
    pub fn new(
        store: Store,
        writer: IngestWriter,
        clock: Clock,
        config: &crate::config::ServerConfig,
    ) -> Self {
        Self {
            store,
            writer,
            clock,
            release_delay: config.release_delay,
            max_key_age_days: config.max_key_age_days,
            max_keys_per_upload: config.max_keys_per_upload,
        }
    }

    async fn upload(
        &self,
        token: Option<String>,
        request: UploadDiagnosisKeysRequest,
    ) -> Result<UploadDiagnosisKeysResponse, ApiError> {
        let authority = self.authenticate(token).await?;
        if is_valid_region(&request.region) && !authority.regions.contains(&request.region) {
            return Err(ApiError::PermissionDenied(request.region));
        }
        let now = self.clock.now();
        let limits = Limits {
            now,
            max_key_age_days: self.max_key_age_days,
            max_keys_per_upload: self.max_keys_per_upload,
        };
        let upload = validate_upload(&request, limits).map_err(ApiError::InvalidArgument)?;
        let job = self.job(authority, &upload, now);
        match self.writer.submit(job).await? {
            UploadOutcome::Stored(response) | UploadOutcome::Replay(response) => Ok(response),
            UploadOutcome::Conflict => Err(ApiError::AlreadyExists(upload.upload_id)),
        }
    }

    async fn authenticate(&self, token: Option<String>) -> Result<Authority, ApiError> {
        let token = token.ok_or(ApiError::Unauthenticated)?;
        let store = self.store.clone();
        let authority = tokio::task::spawn_blocking(move || store.authenticate(&token))
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))??;
        authority.ok_or(ApiError::Unauthenticated)
    }

    fn job(&self, authority: Authority, upload: &ValidUpload, now: u64) -> UploadJob {
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
                }
            })
            .collect();
        UploadJob {
            authority_id: authority.id,
            upload_id: upload.upload_id.clone(),
            request_digest: upload.request_digest,
            revoke: upload.report_type == ReportType::Revoked,
            keys,
            now,
        }
    }
}

/// Returns the token of an `authorization: Bearer <token>` entry.
fn bearer_token<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    (!token.is_empty()).then(|| token.trim().to_owned())
}

/// Returns the metrics label of an upload's result.
fn result_label(result: &Result<UploadDiagnosisKeysResponse, ApiError>) -> &'static str {
    match result {
        Ok(response) if response.replay => "replay",
        Ok(_) => "stored",
        Err(ApiError::InvalidArgument(_)) => "invalid",
        Err(ApiError::Unauthenticated) => "unauthenticated",
        Err(ApiError::PermissionDenied(_)) => "permission_denied",
        Err(ApiError::AlreadyExists(_)) => "conflict",
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
        let token = bearer_token(&request);
        let result = self.upload(token, request.into_inner()).await;
        let label = result_label(&result);
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
}

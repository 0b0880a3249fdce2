//! The RPCs behind the staff CLI's commands, usable from other tools (the load test issues its
//! upload codes with [`issue_codes`]): connecting, issuing codes, uploading with either
//! credential, listing and downloading batches, and verifying a batch file against the
//! server's signing keys with `exposure_matcher`.

use std::time::Duration;

use exposure_matcher::BatchFile;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    GetBatchRequest, GetSigningKeysRequest, IssueUploadCodesRequest, IssuedUploadCode, ReportType,
    SigningKey, UploadDiagnosisKeysRequest, UploadDiagnosisKeysResponse,
};
use rand::RngCore as _;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::credential::{BearerToken, UploadCode};
use crate::target::Target;

/// How long opening the connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one RPC may take (a batch download included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Codes one `IssueUploadCodes` call returns at most (DESIGN.md section 12).
pub const MAX_CODES_PER_CALL: u32 = 100;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server cannot be reached (or TLS cannot be set up).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The server's URL.
        target: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{0}")]
    Refused(#[from] crate::refusal::Refusal),
    /// A downloaded batch is not what the server said it was.
    #[error("{0}")]
    BadBatch(String),
}

/// How an upload authenticates.
#[derive(Debug, Clone)]
pub enum UploadCredential {
    /// A health authority's token (`authorization: Bearer`).
    Token(BearerToken),
    /// A patient's one-time code (`authorization: UploadCode`), as a phone sends it.
    Code(UploadCode),
}

/// Opens one channel to `target`.
pub async fn connect(target: &Target) -> Result<Channel, CallError> {
    let failed = |error: tonic::transport::Error| CallError::Connect {
        target: target.to_string(),
        reason: error_chain(&error),
    };
    target
        .endpoint()
        .map_err(failed)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(failed)
}

/// Issues `count` codes for `region`, in calls of at most [`MAX_CODES_PER_CALL`].
pub async fn issue_codes(
    client: &mut KeyUploadClient<Channel>,
    token: &BearerToken,
    region: &str,
    count: u64,
    report_type: ReportType,
    valid_for: Duration,
) -> Result<Vec<IssuedUploadCode>, CallError> {
    let mut codes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut left = count;
    while left > 0 {
        let this_call = left.min(u64::from(MAX_CODES_PER_CALL));
        let mut request = Request::new(IssueUploadCodesRequest {
            region: region.to_owned(),
            count: u32::try_from(this_call).unwrap_or(MAX_CODES_PER_CALL),
            report_type: report_type as i32,
            valid_for: valid_for.as_secs(),
            ..Default::default()
        });
        token.authorize(&mut request);
        let answer = client
            .issue_upload_codes(request)
            .await
            .map_err(|status| refused("issue codes", &status))?;
        codes.extend(answer.into_inner().codes);
        left -= this_call;
    }
    Ok(codes)
}

/// Uploads one case with `credential`.
pub async fn upload(
    client: &mut KeyUploadClient<Channel>,
    credential: &UploadCredential,
    body: UploadDiagnosisKeysRequest,
) -> Result<UploadDiagnosisKeysResponse, CallError> {
    let mut request = Request::new(body);
    match credential {
        UploadCredential::Token(token) => token.authorize(&mut request),
        UploadCredential::Code(code) => code.authorize(&mut request),
    }
    client
        .upload_diagnosis_keys(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| refused("upload", &status))
}

/// Returns a fresh random upload id, for files that name none.
pub fn random_upload_id() -> String {
    format!("cli-{:016x}", rand::thread_rng().next_u64())
}

/// Downloads batch `batch_id` whole and checks that its body hashes to that id.
pub async fn download_batch(
    client: &mut DistributionClient<Channel>,
    batch_id: &str,
) -> Result<Vec<u8>, CallError> {
    let request = GetBatchRequest {
        batch_id: batch_id.to_owned(),
    };
    let mut stream = client
        .get_batch(request)
        .await
        .map_err(|status| refused("download", &status))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| refused("download", &status))?
    {
        if chunk.offset != bytes.len() as u64 {
            return Err(CallError::BadBatch(format!(
                "chunk at offset {} after {} bytes",
                chunk.offset,
                bytes.len()
            )));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let batch = BatchFile::parse(&bytes)
        .map_err(|error| CallError::BadBatch(format!("the batch does not parse: {error}")))?;
    if batch.batch_id() != batch_id {
        return Err(CallError::BadBatch(
            "the batch's body does not hash to its id".to_owned(),
        ));
    }
    Ok(bytes)
}

/// Returns the server's signing keys, the current one first.
pub async fn signing_keys(
    client: &mut DistributionClient<Channel>,
) -> Result<Vec<SigningKey>, CallError> {
    client
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .map(|answer| answer.into_inner().keys)
        .map_err(|status| refused("signing keys", &status))
}

/// What a verified batch file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBatch {
    /// SHA-256 of the body, the batch's id.
    pub batch_id: String,
    /// The signing key whose signature verified.
    pub key_id: String,
    /// Filter elements, decoys included.
    pub element_count: u32,
    /// Hourly or daily.
    pub kind: &'static str,
    /// Region the batch belongs to.
    pub region: String,
    /// Its per-region sequence number.
    pub sequence: u64,
}

/// Checks that `bytes` is a batch file signed by one of `keys`; the error says why not.
pub fn verify_batch(bytes: &[u8], keys: &[SigningKey]) -> Result<VerifiedBatch, String> {
    let batch = BatchFile::parse(bytes).map_err(|error| format!("not a batch file: {error}"))?;
    let signer = keys
        .iter()
        .find(|key| key.key_id == batch.key_id())
        .ok_or_else(|| {
            format!(
                "signed by key {}, which the server does not list",
                batch.key_id()
            )
        })?;
    batch
        .verify(&signer.public_key_der)
        .map_err(|error| format!("the signature by key {} is invalid: {error}", signer.key_id))?;
    Ok(VerifiedBatch {
        batch_id: batch.batch_id(),
        key_id: signer.key_id.clone(),
        element_count: batch.header().element_count,
        kind: batch.header().kind.name(),
        region: batch.header().region.clone(),
        sequence: batch.header().sequence,
    })
}

fn refused(action: &str, status: &Status) -> CallError {
    CallError::Refused(crate::refusal::Refusal::from_status(action, status))
}

/// Returns an error and its causes on one line (tonic's transport errors hide the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

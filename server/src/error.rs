//! The one place where failures become gRPC statuses. The table of codes is closed:
//!
//! | error | code | client sees |
//! |---|---|---|
//! | [`ApiError::InvalidArgument`] | INVALID_ARGUMENT | `google.rpc.BadRequest` naming each field |
//! | [`ApiError::Unauthenticated`] | UNAUTHENTICATED | "missing or invalid bearer token" |
//! | [`ApiError::BadUploadCode`] | UNAUTHENTICATED | one message for unknown, used and expired codes |
//! | [`ApiError::PermissionDenied`] | PERMISSION_DENIED | the region that is not allowed |
//! | [`ApiError::AlreadyExists`] | ALREADY_EXISTS | the reused upload id |
//! | [`ApiError::ResourceExhausted`] | RESOURCE_EXHAUSTED | which quota or rate limit is used up |
//! | [`ApiError::NotFound`] | NOT_FOUND | what was not found |
//! | [`ApiError::Unavailable`] | UNAVAILABLE | "storage cannot write now; retry later" (disk full, I/O error) |
//! | [`ApiError::Internal`] | INTERNAL | a generic message; the cause is logged, never sent |
//!
//! Calls shed at their class's concurrency limit never reach a handler: [`crate::admission`]
//! answers them RESOURCE_EXHAUSTED ("too many concurrent … calls; retry later").

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::ingest::validate::Violation;
use crate::storage::StorageError;

/// A failure of an API call, before it is turned into a [`Status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request broke validation rules; every broken rule is listed.
    #[error("invalid argument: {}", summarize(.0))]
    InvalidArgument(Vec<Violation>),
    /// No valid bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// An upload code that is unknown, used or expired: one message for all three, so a
    /// guesser learns nothing about which.
    #[error("unknown, used or expired upload code")]
    BadUploadCode,
    /// The token's authority may not upload for this region.
    #[error("authority may not upload for region {0}")]
    PermissionDenied(String),
    /// An upload id was reused with other content.
    #[error("upload_id {0:?} was already used for different content")]
    AlreadyExists(String),
    /// A quota or rate limit of the caller is used up; the message says which.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The server cannot take the request now.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A fault on the server's side; details stay in the logs.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Returns an INVALID_ARGUMENT error for a single field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![Violation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }
}

fn summarize(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<StorageError> for ApiError {
    /// A store that cannot write now (disk full, I/O error, the writer stopping) is a
    /// condition the client should retry: UNAVAILABLE. A record that does not decode is a
    /// fault of the server: INTERNAL.
    fn from(error: StorageError) -> Self {
        use rocksdb::ErrorKind;
        let retryable = match &error {
            StorageError::Io(_) => true,
            StorageError::Rocks(rocks) => matches!(
                rocks.kind(),
                ErrorKind::IOError
                    | ErrorKind::Busy
                    | ErrorKind::TimedOut
                    | ErrorKind::TryAgain
                    | ErrorKind::Incomplete
                    | ErrorKind::Aborted
                    | ErrorKind::ShutdownInProgress
            ),
            StorageError::Corrupt { .. } => false,
        };
        if retryable {
            tracing::error!(cause = %error, "storage cannot serve the request");
            ApiError::Unavailable("storage cannot write now; retry later")
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = summarize(&violations);
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|violation| {
                            FieldViolation::new(violation.field, violation.description)
                        })
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Unauthenticated | ApiError::BadUploadCode => {
                Status::unauthenticated(error.to_string())
            }
            ApiError::PermissionDenied(_) => Status::permission_denied(error.to_string()),
            ApiError::AlreadyExists(_) => Status::already_exists(error.to_string()),
            ApiError::NotFound(_) => Status::not_found(error.to_string()),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(error.to_string()),
            ApiError::Unavailable(_) => Status::unavailable(error.to_string()),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

//! The two credentials of `UploadDiagnosisKeys` (DESIGN.md sections 7 and 12): a health
//! authority's bearer token and a patient's one-time upload code, each carried in the
//! `authorization` metadata entry, and where the staff CLI reads the token from.
//!
//! Both are secrets: their `Debug` output is redacted and the header value is marked sensitive,
//! so neither reaches a log, a report or an error message. There is deliberately no way to pass
//! the token as a command-line argument, where `ps` and shell history would show it.

use std::fmt;
use std::path::Path;

use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

/// The environment variable that holds the token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "EXPOSURE_TOKEN";

/// Why a credential cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The token is empty (after trimming white space).
    #[error("the token is empty")]
    EmptyToken,
    /// The token cannot travel in an HTTP header.
    #[error("the token contains characters that cannot be sent in a header")]
    UnsendableToken,
    /// The text cannot be an upload code.
    #[error("not an upload code: expected 10 letters and digits such as ABCDE-12345")]
    BadCode,
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {reason}")]
    TokenFile {
        /// The file named by `--token-file`.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// Neither `--token-file` nor the environment variable gives a token.
    #[error("this command needs the authority's token: --token-file PATH or {TOKEN_ENV}")]
    MissingToken,
}

/// A health authority's bearer token, sent as `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerToken {
    header: AsciiMetadataValue,
}

impl BearerToken {
    /// Wraps a token (surrounding white space, such as a file's final newline, is dropped).
    pub fn new(token: &str) -> Result<Self, CredentialError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialError::EmptyToken);
        }
        Ok(BearerToken {
            header: sensitive_header(&format!("Bearer {token}"))
                .ok_or(CredentialError::UnsendableToken)?,
        })
    }

    /// Reads the token from `token_file` when given, else takes `from_env`, the value of
    /// `EXPOSURE_TOKEN` (the caller reads the environment, so that tests need not change it).
    pub fn load(
        token_file: Option<&Path>,
        from_env: Option<String>,
    ) -> Result<Self, CredentialError> {
        if let Some(path) = token_file {
            let text =
                std::fs::read_to_string(path).map_err(|error| CredentialError::TokenFile {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })?;
            return BearerToken::new(&text);
        }
        match from_env {
            Some(token) => BearerToken::new(&token),
            None => Err(CredentialError::MissingToken),
        }
    }

    /// Adds the `authorization` entry to a request's metadata.
    pub fn authorize<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BearerToken(<redacted>)")
    }
}

/// A one-time upload code, sent as `authorization: UploadCode <code>`, as a phone does.
#[derive(Clone)]
pub struct UploadCode {
    header: AsciiMetadataValue,
}

impl UploadCode {
    /// Wraps a code as a person may type it: `XXXXX-XXXXX`, any case, hyphen optional. Only the
    /// shape is checked here (10 letters or digits); the server decides whether it is valid.
    pub fn new(code: &str) -> Result<Self, CredentialError> {
        let code = code.trim();
        let characters: Vec<char> = code.chars().filter(|character| *character != '-').collect();
        if characters.len() != 10 || !characters.iter().all(char::is_ascii_alphanumeric) {
            return Err(CredentialError::BadCode);
        }
        Ok(UploadCode {
            header: sensitive_header(&format!("UploadCode {code}"))
                .ok_or(CredentialError::BadCode)?,
        })
    }

    /// Adds the `authorization` entry to a request's metadata.
    pub fn authorize<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
    }
}

impl fmt::Debug for UploadCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("UploadCode(<redacted>)")
    }
}

/// Marks a request as a decoy (`x-exposure-decoy: 1`, DESIGN.md section 12): the server checks
/// its shape, stores nothing, and answers like a real upload.
pub fn mark_decoy<T>(request: &mut Request<T>) {
    request
        .metadata_mut()
        .insert("x-exposure-decoy", AsciiMetadataValue::from_static("1"));
}

/// Returns `value` as a header value marked sensitive (kept out of HPACK tables and debug
/// output); `None` when it holds characters a header cannot carry.
fn sensitive_header(value: &str) -> Option<AsciiMetadataValue> {
    let mut header: AsciiMetadataValue = MetadataValue::try_from(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_in_debug_output() {
        let token = BearerToken::new("s3cr3t-token-value").expect("token");
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let code = UploadCode::new("ABCDE-12345").expect("code");
        assert!(!format!("{code:?}").contains("ABCDE"));
    }

    #[test]
    fn credentials_go_into_the_authorization_header() {
        let token = BearerToken::new(" abc\n").expect("token");
        let mut request = Request::new(());
        token.authorize(&mut request);
        let header = request.metadata().get("authorization").expect("header");
        assert_eq!(header.to_str().expect("ascii"), "Bearer abc");
        let code = UploadCode::new(" abcde-12345 ").expect("code");
        code.authorize(&mut request);
        let header = request.metadata().get("authorization").expect("header");
        assert_eq!(header.to_str().expect("ascii"), "UploadCode abcde-12345");
        mark_decoy(&mut request);
        assert_eq!(
            request.metadata().get("x-exposure-decoy").expect("decoy"),
            "1"
        );
    }

    #[test]
    fn unusable_credentials_are_refused() {
        assert!(BearerToken::new("").is_err());
        assert!(BearerToken::new("line\nbreak").is_err());
        for code in ["", "ABCDE", "ABCDE-123456", "ABCDE-1234!", "ÄBCDE-12345"] {
            assert!(UploadCode::new(code).is_err(), "{code}");
        }
        assert!(UploadCode::new("ABCDE12345").is_ok());
    }

    #[test]
    fn token_file_wins_over_the_environment() {
        let dir = tempfile::tempdir().expect("temporary dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").expect("write token");
        let mut request = Request::new(());
        BearerToken::load(Some(&path), Some("from-env".to_owned()))
            .expect("token")
            .authorize(&mut request);
        assert_eq!(
            request.metadata().get("authorization").expect("header"),
            "Bearer from-file"
        );
        assert!(matches!(
            BearerToken::load(None, None),
            Err(CredentialError::MissingToken)
        ));
        assert!(matches!(
            BearerToken::load(Some(&dir.path().join("missing")), None),
            Err(CredentialError::TokenFile { .. })
        ));
    }
}

//! What the staff CLI prints when the server refuses a request: the gRPC code and message, and
//! for `INVALID_ARGUMENT` each `google.rpc.BadRequest` field violation on its own line, with
//! the server's field names (`keys[2].gaen.rolling_period`), which are also the keys file's.

use tonic::Status;
use tonic_types::StatusExt as _;

/// A request the server answered with an error, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.lines().join("\n"))]
pub struct Refusal {
    /// What was asked, such as `upload` or `list batches`.
    pub action: String,
    /// The gRPC code's name, such as `INVALID_ARGUMENT`.
    pub code: &'static str,
    /// The server's message.
    pub message: String,
    /// `(field, description)` of every field the server named.
    pub violations: Vec<(String, String)>,
}

impl Refusal {
    /// Reads `status`, decoding its `google.rpc.BadRequest` details when it has any.
    pub fn from_status(action: &str, status: &Status) -> Self {
        let violations = status
            .get_error_details()
            .bad_request()
            .map(|bad_request| {
                bad_request
                    .field_violations
                    .iter()
                    .map(|violation| (violation.field.clone(), violation.description.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Refusal {
            action: action.to_owned(),
            code: exposure_proto::status::code_name(status.code()),
            message: status.message().to_owned(),
            violations,
        }
    }

    /// Returns the lines to print: the refusal, then one line per field violation (the
    /// message, which sums the violations up, is left out then).
    pub fn lines(&self) -> Vec<String> {
        let first = match self.violations.len() {
            0 => format!(
                "{} refused by the server: {}: {}",
                self.action, self.code, self.message
            ),
            count => format!(
                "{} refused by the server: {}, {count} bad field(s):",
                self.action, self.code
            ),
        };
        let mut lines = vec![first];
        lines.extend(
            self.violations
                .iter()
                .map(|(field, description)| format!("  {field}: {description}")),
        );
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::{ErrorDetails, FieldViolation};

    #[test]
    fn bad_request_details_print_one_field_per_line() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("keys[0].gaen.rolling_period", "must be 1..=144"),
            FieldViolation::new("region", "does not match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$"),
        ]);
        let status = Status::with_error_details(Code::InvalidArgument, "2 bad fields", details);
        let refusal = Refusal::from_status("upload", &status);
        assert_eq!(
            refusal.lines(),
            vec![
                "upload refused by the server: INVALID_ARGUMENT, 2 bad field(s):".to_owned(),
                "  keys[0].gaen.rolling_period: must be 1..=144".to_owned(),
                "  region: does not match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$".to_owned(),
            ]
        );
    }

    #[test]
    fn a_plain_status_prints_one_line() {
        let refusal = Refusal::from_status("issue codes", &Status::permission_denied("region"));
        assert_eq!(refusal.violations, Vec::new());
        assert_eq!(
            refusal.to_string(),
            "issue codes refused by the server: PERMISSION_DENIED: region"
        );
    }
}

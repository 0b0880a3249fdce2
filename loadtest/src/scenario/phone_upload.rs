//! The uploads a phone sends (DESIGN.md section 12): a case's keys with a one-time upload code
//! (the `upload-code` scenario), and decoys (`decoy`).
//!
//! An `upload-code` run issues its codes before the clock starts, with the authority's token,
//! in calls of 100 (`exposure_client::calls::issue_codes`), one code per request of the run;
//! each upload then takes one code from the [`CodePool`] and uploads the same 14-key case as the
//! `upload` scenario, authenticated with `authorization: UploadCode <code>`. A decoy carries the
//! same case, `x-exposure-decoy: 1` and no credential; the server checks its shape, stores
//! nothing, and answers after a delay drawn from recent real uploads.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use exposure_client::calls::issue_codes;
use exposure_client::credential::{BearerToken, UploadCode, mark_decoy};
use exposure_proto::v1::ReportType;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::readback::Ledger;
use super::upload::{UploadIds, case_request, send, send_case, today};
use crate::client::Clients;

/// How long the issued codes stay valid: long enough for any bounded run.
const CODES_VALID_FOR: Duration = Duration::from_secs(24 * 3600);

/// The unused codes of an `upload-code` run. Never printed: its `Debug` shows only the count.
#[derive(Default)]
pub struct CodePool {
    codes: Mutex<Vec<UploadCode>>,
}

impl std::fmt::Debug for CodePool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CodePool({} codes)", self.len())
    }
}

impl CodePool {
    /// Issues `count` codes for `region` with `token`.
    pub async fn issue(
        client: &mut KeyUploadClient<Channel>,
        token: &BearerToken,
        region: &str,
        count: u64,
    ) -> anyhow::Result<Self> {
        let issued = issue_codes(
            client,
            token,
            region,
            count,
            ReportType::ConfirmedTest,
            CODES_VALID_FOR,
        )
        .await
        .with_context(|| {
            format!(
                "cannot issue {count} upload codes before the run (the server limits codes per authority: --authority-codes-per-minute)"
            )
        })?;
        let codes = issued
            .iter()
            .map(|issued| UploadCode::new(&issued.code))
            .collect::<Result<Vec<_>, _>>()
            .context("the server issued a code that is not one")?;
        Ok(CodePool {
            codes: Mutex::new(codes),
        })
    }

    /// Takes an unused code; `None` when every code has been taken.
    pub fn take(&self) -> Option<UploadCode> {
        self.codes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    /// Returns the number of unused codes.
    pub fn len(&self) -> usize {
        self.codes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Returns true when every code has been taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Uploads one fresh case with `code`, as the patient's phone does; returns the encoded size
/// of the answer.
pub async fn call_with_code(
    clients: &mut Clients,
    region: &str,
    code: &UploadCode,
    upload_ids: &UploadIds,
    ledger: &Ledger,
) -> Result<u64, Status> {
    send_case(clients, region, upload_ids, ledger, |request| {
        code.authorize(request)
    })
    .await
}

/// Sends one decoy upload shaped like a real case; returns the encoded size of the answer
/// (shaped like a real one).
pub async fn call_decoy(
    clients: &mut Clients,
    region: &str,
    upload_ids: &UploadIds,
) -> Result<u64, Status> {
    let body = case_request(
        &mut rand::thread_rng(),
        region,
        upload_ids.next_id(),
        today(),
    );
    let mut request = Request::new(body);
    mark_decoy(&mut request);
    send(clients, request).await
}

//! What a run sends: the scenarios operators choose with `--scenario`, the RPCs they are made of,
//! and the [`Workload`] that performs one RPC per ticket.
//!
//! Each RPC lives in its own module (`upload`, `poll`, `download`, `confirm`, `noop`, and `http`
//! for the GETs of the HTTP mirror; `phone_upload` for the uploads a phone sends, with a code
//! or as a decoy); `province`
//! holds the DESIGN.md section 9 model that mixes them; `mix` the legitimate traffic an attack
//! run measures (issue 18); `attack` the attacks themselves; `catalog` is the shared knowledge of
//! which batches exist, learned from `ListBatches`.

pub mod attack;
pub mod catalog;
pub mod confirm;
pub mod download;
pub mod http;
pub mod mix;
pub mod noop;
pub mod phone_upload;
pub mod poll;
pub mod province;
pub mod readback;
pub mod upload;

use std::fmt;
use std::sync::Arc;

use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::client::{BearerToken, Clients};
use catalog::Catalog;
use phone_upload::CodePool;
use upload::UploadIds;

/// A load-test scenario, chosen with `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Authority uploads of 14 fresh random GAEN keys, unique upload ids (needs --token).
    Upload,
    /// Phone uploads with one-time codes: issues one code per request first (--codes or the
    /// request bound, with --token), then uploads one case per code.
    UploadCode,
    /// Decoy uploads (x-exposure-decoy: 1), as phones send at random times; no credential.
    Decoy,
    /// ListBatches after a random cursor, what a phone does every hour.
    Poll,
    /// GetBatch of published batches, streamed to the end (reports bytes/s).
    Download,
    /// GetConfirmBucket of random prefixes, a phone's second stage after a filter hit.
    Confirm,
    /// grpc.health.v1.Health/Check: the transport's ceiling on this machine.
    Noop,
    /// Every RPC above mixed at Thái Bình's peak rates (DESIGN.md §9), times --speedup (needs --token).
    Province,
    /// GET of the region index from the HTTP listener (--target is its URL), a phone's poll.
    HttpPoll,
    /// GET of whole batch files from the HTTP listener (--target is its URL; reports bytes/s).
    HttpDownload,
    /// The legitimate traffic of an attack run at fixed rates: authority and code uploads,
    /// polls, downloads, health checks and newly arriving connections (needs --token).
    Mix,
}

impl Scenario {
    /// Returns the name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Upload => "upload",
            Scenario::UploadCode => "upload-code",
            Scenario::Decoy => "decoy",
            Scenario::Poll => "poll",
            Scenario::Download => "download",
            Scenario::Confirm => "confirm",
            Scenario::Noop => "noop",
            Scenario::Province => "province",
            Scenario::HttpPoll => "http-poll",
            Scenario::HttpDownload => "http-download",
            Scenario::Mix => "mix",
        }
    }

    /// Returns the single RPC of a plain scenario; `None` for the mixed `province`.
    pub fn rpc(self) -> Option<RpcKind> {
        match self {
            Scenario::Upload | Scenario::UploadCode | Scenario::Decoy => Some(RpcKind::Upload),
            Scenario::Poll => Some(RpcKind::ListBatches),
            Scenario::Download => Some(RpcKind::GetBatch),
            Scenario::Confirm => Some(RpcKind::GetConfirmBucket),
            Scenario::Noop => Some(RpcKind::HealthCheck),
            Scenario::Province | Scenario::Mix => None,
            Scenario::HttpPoll => Some(RpcKind::HttpIndex),
            Scenario::HttpDownload => Some(RpcKind::HttpBatch),
        }
    }

    /// Returns true when the scenario speaks HTTP/1.1 to the HTTP listener instead of gRPC.
    pub fn is_http(self) -> bool {
        matches!(self, Scenario::HttpPoll | Scenario::HttpDownload)
    }

    /// Returns true when the scenario mixes several RPCs (its report has `per_rpc`).
    pub fn is_mixed(self) -> bool {
        self.rpc().is_none()
    }

    /// Returns true when the scenario needs an authority token: it uploads with it, or issues
    /// upload codes with it.
    pub fn needs_token(self) -> bool {
        matches!(
            self,
            Scenario::Upload | Scenario::Province | Scenario::UploadCode | Scenario::Mix
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One RPC of the API that a ticket performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RpcKind {
    /// `exposure.v1.KeyUpload/UploadDiagnosisKeys`.
    Upload,
    /// `exposure.v1.Distribution/ListBatches`.
    ListBatches,
    /// `exposure.v1.Distribution/GetBatch` (server stream, read to the end).
    GetBatch,
    /// `exposure.v1.Distribution/GetConfirmBucket`.
    GetConfirmBucket,
    /// `grpc.health.v1.Health/Check`.
    HealthCheck,
    /// HTTP `GET /v1/regions/{region}/index`.
    HttpIndex,
    /// HTTP `GET /v1/batches/{batch_id}`, read to the end.
    HttpBatch,
    /// `exposure.v1.KeyUpload/UploadDiagnosisKeys` with a one-time upload code, in the `mix`.
    CodeUpload,
    /// A phone arriving: a new connection (handshake included) and `Health/Check` on it.
    Arrival,
}

impl RpcKind {
    /// Every kind, in report order.
    pub const ALL: [RpcKind; 9] = [
        RpcKind::Upload,
        RpcKind::CodeUpload,
        RpcKind::ListBatches,
        RpcKind::GetBatch,
        RpcKind::GetConfirmBucket,
        RpcKind::HealthCheck,
        RpcKind::HttpIndex,
        RpcKind::HttpBatch,
        RpcKind::Arrival,
    ];

    /// Returns the method name used in reports (`per_rpc` keys).
    pub fn method_name(self) -> &'static str {
        match self {
            RpcKind::Upload => "UploadDiagnosisKeys",
            RpcKind::ListBatches => "ListBatches",
            RpcKind::GetBatch => "GetBatch",
            RpcKind::GetConfirmBucket => "GetConfirmBucket",
            RpcKind::HealthCheck => "Health/Check",
            RpcKind::HttpIndex => "GET index",
            RpcKind::HttpBatch => "GET batch",
            RpcKind::CodeUpload => "UploadDiagnosisKeys (code)",
            RpcKind::Arrival => "connect + Health/Check",
        }
    }
}

/// What one RPC came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The gRPC status code (`OK` on success).
    pub code: Code,
    /// The status message of a failed call (empty on success).
    pub message: String,
    /// Payload bytes received: the batch file for `GetBatch`, the digests for buckets, the
    /// encoded answer for `ListBatches` and uploads.
    pub bytes_received: u64,
}

impl CallResult {
    /// A successful call that received `bytes_received` payload bytes.
    pub fn ok(bytes_received: u64) -> Self {
        CallResult {
            code: Code::Ok,
            message: String::new(),
            bytes_received,
        }
    }

    /// A failed call, from the status the client returned.
    pub fn failed(status: &Status) -> Self {
        CallResult {
            code: status.code(),
            message: status.message().to_owned(),
            bytes_received: 0,
        }
    }

    /// Returns true when the call did not end with `OK`.
    pub fn is_error(&self) -> bool {
        self.code != Code::Ok
    }
}

/// The outcome of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The RPC was sent and answered (or failed).
    Called(CallResult),
    /// Nothing was sent: a province phone's download when no batch is published yet.
    Skipped,
}

impl From<Result<u64, Status>> for Outcome {
    fn from(result: Result<u64, Status>) -> Self {
        match result {
            Ok(bytes) => Outcome::Called(CallResult::ok(bytes)),
            Err(status) => Outcome::Called(CallResult::failed(&status)),
        }
    }
}

/// Everything the RPCs of one run share: the region, the token, the batch catalog and the upload
/// id sequence. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workload {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    scenario: Scenario,
    region: String,
    token: Option<BearerToken>,
    catalog: Catalog,
    upload_ids: UploadIds,
    /// The codes of an `upload-code` or `mix` run, one per upload (empty for other scenarios).
    codes: CodePool,
    /// Where a `mix` run's arriving phones connect (`None` for other scenarios).
    arrivals: Option<Endpoint>,
    /// The uploads the server acknowledged.
    ledger: Arc<readback::Ledger>,
}

impl Workload {
    /// Prepares a run of `scenario`: loads the region's batch listing when the scenario reads it,
    /// refuses a `download` run when nothing is published yet, and issues the `codes` upload
    /// codes of an `upload-code` or `mix` run (0 for other scenarios). `arrivals` is where a
    /// `mix` run's new connections go.
    pub async fn prepare(
        scenario: Scenario,
        region: &str,
        token: Option<BearerToken>,
        codes: u64,
        arrivals: Option<Endpoint>,
        clients: &mut Clients,
    ) -> anyhow::Result<Self> {
        if scenario.needs_token() && token.is_none() {
            anyhow::bail!("the {scenario} scenario uploads keys and needs --token");
        }
        let catalog = match scenario {
            Scenario::Upload | Scenario::UploadCode | Scenario::Decoy | Scenario::Noop => {
                Catalog::empty()
            }
            Scenario::Poll
            | Scenario::Download
            | Scenario::Confirm
            | Scenario::Province
            | Scenario::Mix => Catalog::load(&mut clients.distribution, region).await?,
            Scenario::HttpPoll | Scenario::HttpDownload => {
                let Some(client) = &clients.http else {
                    anyhow::bail!("the {scenario} scenario needs an HTTP client");
                };
                http::load_catalog(client, region).await?
            }
        };
        if matches!(scenario, Scenario::Download | Scenario::HttpDownload) && catalog.is_empty() {
            anyhow::bail!(
                "no batch is published in region {region} yet: upload keys (the upload scenario or the demo) and wait for the publisher"
            );
        }
        let codes = match (&token, scenario) {
            (Some(token), Scenario::UploadCode | Scenario::Mix) if codes > 0 => {
                CodePool::issue(&mut clients.upload, token, region, codes).await?
            }
            _ => CodePool::default(),
        };
        let shared = Shared {
            scenario,
            region: region.to_owned(),
            token,
            catalog,
            upload_ids: UploadIds::new(),
            codes,
            arrivals: arrivals.filter(|_| scenario == Scenario::Mix),
            ledger: Arc::default(),
        };
        Ok(Workload {
            shared: Arc::new(shared),
        })
    }

    /// Returns the region the run talks about.
    pub fn region(&self) -> &str {
        &self.shared.region
    }

    /// Returns what the run knows about published batches.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// Returns the ledger of the uploads the server acknowledged in this run.
    pub fn ledger(&self) -> Arc<readback::Ledger> {
        Arc::clone(&self.shared.ledger)
    }

    /// Uploads one case with the next code; skipped when the codes ran out (more tickets than
    /// codes: a `--codes` below the request bound).
    async fn upload_with_code(&self, clients: &mut Clients) -> Outcome {
        let shared = &self.shared;
        match shared.codes.take() {
            Some(code) => phone_upload::call_with_code(
                clients,
                &shared.region,
                &code,
                &shared.upload_ids,
                &shared.ledger,
            )
            .await
            .into(),
            None => Outcome::Skipped,
        }
    }

    /// Performs one RPC of `kind` on `clients`.
    pub async fn call(&self, kind: RpcKind, clients: &mut Clients) -> Outcome {
        let shared = &self.shared;
        match kind {
            RpcKind::Upload if shared.scenario == Scenario::Decoy => {
                phone_upload::call_decoy(clients, &shared.region, &shared.upload_ids)
                    .await
                    .into()
            }
            RpcKind::Upload if shared.scenario == Scenario::UploadCode => {
                self.upload_with_code(clients).await
            }
            RpcKind::Upload => match &shared.token {
                Some(token) => upload::call(
                    clients,
                    &shared.region,
                    token,
                    &shared.upload_ids,
                    &shared.ledger,
                )
                .await
                .into(),
                // `prepare` refuses uploading scenarios without a token.
                None => Outcome::Called(CallResult::failed(&Status::unauthenticated(
                    "no token given",
                ))),
            },
            RpcKind::ListBatches => {
                let cursor = match shared.scenario {
                    // A phone polling hourly is about one batch behind the head.
                    Scenario::Province => shared.catalog.latest_sequence().saturating_sub(1),
                    _ => shared.catalog.random_cursor(),
                };
                poll::call(clients, &shared.region, cursor, &shared.catalog)
                    .await
                    .into()
            }
            RpcKind::GetBatch => match shared.catalog.pick_batch() {
                Some(batch_id) => download::call(clients, &batch_id).await.into(),
                None => Outcome::Skipped,
            },
            RpcKind::GetConfirmBucket => {
                let bits = shared.catalog.confirm_prefix_bits();
                confirm::call(clients, &shared.region, confirm::random_prefix(bits), bits)
                    .await
                    .into()
            }
            RpcKind::HealthCheck => noop::call(clients).await.into(),
            RpcKind::CodeUpload => self.upload_with_code(clients).await,
            RpcKind::Arrival => match &shared.arrivals {
                Some(endpoint) => noop::arrive(endpoint).await.into(),
                None => Outcome::Called(CallResult::failed(&Status::failed_precondition(
                    "no endpoint for arriving connections",
                ))),
            },
            RpcKind::HttpIndex => match &clients.http {
                Some(client) => http::poll(client, &shared.region, &shared.catalog)
                    .await
                    .into(),
                None => no_http_client(),
            },
            RpcKind::HttpBatch => match (&clients.http, shared.catalog.pick_batch()) {
                (Some(client), Some(batch_id)) => http::download(client, &batch_id).await.into(),
                (None, _) => no_http_client(),
                (_, None) => Outcome::Skipped,
            },
        }
    }
}

/// The outcome of an HTTP ticket given to gRPC-only clients (the runner never does this).
fn no_http_client() -> Outcome {
    Outcome::Called(CallResult::failed(&Status::failed_precondition(
        "no HTTP client",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_province_is_mixed_and_uploading_scenarios_need_a_token() {
        assert!(Scenario::Province.is_mixed());
        assert!(!Scenario::Poll.is_mixed());
        assert!(Scenario::Upload.needs_token());
        assert!(Scenario::Province.needs_token());
        assert!(Scenario::UploadCode.needs_token(), "it issues its codes");
        assert!(!Scenario::Decoy.needs_token());
        assert!(!Scenario::Noop.needs_token());
        assert_eq!(Scenario::Decoy.rpc(), Some(RpcKind::Upload));
        assert_eq!(Scenario::Noop.rpc(), Some(RpcKind::HealthCheck));
    }

    #[test]
    fn failed_status_keeps_code_and_message() {
        let outcome: Outcome = Err::<u64, _>(Status::unauthenticated("bad token")).into();
        let Outcome::Called(result) = outcome else {
            panic!("expected a call")
        };
        assert_eq!(result.code, Code::Unauthenticated);
        assert_eq!(result.message, "bad token");
        assert!(result.is_error());
    }
}

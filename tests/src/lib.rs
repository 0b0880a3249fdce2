//! Harness of the end-to-end tests: starts the real server on `127.0.0.1:0` with a temporary
//! RocksDB, an upload authority for `VN-TB`, a manual clock and a fast publisher, and stops it
//! gracefully. The tests in `tests/` drive it through the generated gRPC clients.

pub mod binary;
pub mod browser;
pub mod bucket_check;
pub mod console_client;
pub mod gaen_python;
pub mod logs;
pub mod outside;
pub mod pki;
pub mod public_view;
pub mod reference;
pub mod s3;
pub mod scrape;
pub mod vectors;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    BatchInfo, DiagnosisKey, ListBatchesRequest, ListBatchesResponse, UploadDiagnosisKeysRequest,
    UploadDiagnosisKeysResponse,
};
use exposure_server::{Clock, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The region the harness's authority may upload for.
pub const REGION: &str = "VN-TB";
/// A fixed "now" for tests that use the manual clock: 2026-01-10 12:00:00 UTC.
pub const TEST_NOW: u64 = 1_768_046_400;

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    /// Address the server listens on.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, for clients.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the HTTP mirror (DESIGN.md section 10), no trailing `/`.
    pub http_url: String,
    /// `http://127.0.0.1:PORT` of the staff console (DESIGN.md section 13), no trailing `/`.
    pub console_url: String,
    /// Upload token of an authority allowed for [`REGION`].
    pub token: String,
    /// The clock the server reads; tests move it when it is manual.
    pub clock: Clock,
    /// The configuration the server runs with.
    pub config: ServerConfig,
    data_dir: DataDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), exposure_server::ServerError>>>,
}

/// A data directory that is either owned (deleted at the end) or borrowed from a restart.
enum DataDir {
    Owned(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Owned(dir) => dir.path(),
            DataDir::Kept(path) => path,
        }
    }
}

/// Returns the configuration the tests use by default: everything from the server's
/// defaults, except a publisher that runs every 200 ms, no embargo delay, refusals answered at
/// once, and no synthetic keys, so that what a test uploads is all a batch, a bucket and a GAEN file hold (the tests of
/// padding, `tests/padding.rs`, turn it on).
pub fn test_config(data_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::with_data_dir(data_dir);
    config.publish_interval = Duration::from_millis(200);
    config.release_delay = Duration::ZERO;
    config.pad_min_keys = 0;
    config.pad_jitter = 0;
    config.shutdown_grace = Duration::from_secs(5);
    // Refusals answered at once: many tests send hundreds of bad calls one after another. The
    // tests of the delay itself (admission.rs, connections.rs) set it.
    config.refusal_delay = Duration::ZERO;
    config
}

impl TestServer {
    /// Starts a server with the system clock and the default test configuration.
    pub async fn start() -> Self {
        Self::start_with(Clock::System, |_| {}).await
    }

    /// Starts a server with `clock`, after letting `adjust` change the test configuration.
    pub async fn start_with(clock: Clock, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temporary data dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let token = add_authority(dir.path(), &[REGION]);
        Self::launch(DataDir::Owned(dir), config, clock, token).await
    }

    /// Starts a server on a data directory the test owns (e.g. on a small filesystem), with
    /// a new authority for [`REGION`].
    pub async fn start_in(
        data_dir: &Path,
        clock: Clock,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut config = test_config(data_dir);
        adjust(&mut config);
        let token = add_authority(data_dir, &[REGION]);
        Self::launch(DataDir::Kept(data_dir.to_owned()), config, clock, token).await
    }

    async fn launch(data_dir: DataDir, config: ServerConfig, clock: Clock, token: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local address");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0 for http");
        let http_url = format!("http://{}", http.local_addr().expect("http local address"));
        let console = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0 for the console");
        let console_url = format!(
            "http://{}",
            console.local_addr().expect("console local address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = exposure_server::Listeners {
            grpc: listener,
            http: Some(http),
            console: Some(console),
        };
        let task = tokio::spawn(exposure_server::run_listeners(
            listeners,
            config.clone(),
            clock.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            url: format!("http://{addr}"),
            http_url,
            console_url,
            token,
            clock,
            config,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Returns the data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Returns a connected upload client.
    pub async fn upload_client(&self) -> KeyUploadClient<Channel> {
        KeyUploadClient::connect(self.url.clone())
            .await
            .expect("connect upload client")
    }

    /// Returns a connected distribution client.
    pub async fn distribution_client(&self) -> DistributionClient<Channel> {
        DistributionClient::connect(self.url.clone())
            .await
            .expect("connect distribution client")
    }

    /// Returns an upload request carrying the harness token.
    pub fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        fixtures::with_authorization(message, "Bearer", &self.token)
    }

    /// Uploads `request` with the harness token and returns the answer; panics if it is refused.
    pub async fn upload(&self, request: UploadDiagnosisKeysRequest) -> UploadDiagnosisKeysResponse {
        self.upload_client()
            .await
            .upload_diagnosis_keys(self.authorized(request))
            .await
            .expect("upload accepted")
            .into_inner()
    }

    /// Returns every batch of [`REGION`] the server lists.
    pub async fn list_batches(&self) -> ListBatchesResponse {
        list_all(&mut self.distribution_client().await).await
    }

    /// Uploads `key` as one case and waits until the publisher has published it as the
    /// region's only batch; returns that batch.
    pub async fn publish_one_case(&self, key: DiagnosisKey) -> BatchInfo {
        self.upload(fixtures::upload("one-case", vec![key])).await;
        let listing = self
            .wait_for_batches(|listing| listing.batches.len() == 1)
            .await;
        listing.batches[0].clone()
    }

    /// Polls ListBatches until `done` accepts the answer; panics after 20 s.
    pub async fn wait_for_batches(
        &self,
        done: impl Fn(&ListBatchesResponse) -> bool,
    ) -> ListBatchesResponse {
        let mut client = self.distribution_client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let listing = list_all(&mut client).await;
            if done(&listing) {
                return listing;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for batches: {listing:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the lines of [`REGION`]'s GAEN `index.txt` from the HTTP mirror once there are
    /// `count`; panics after 20 s.
    pub async fn wait_for_gaen_index(&self, count: usize) -> Vec<String> {
        let http = http_client::HttpClient::new(&self.http_url);
        let path = format!("/v1/regions/{REGION}/gaen/index.txt");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = http.get(&path).await;
            let lines: Vec<String> = if answer.status == 200 {
                answer.text().lines().map(str::to_owned).collect()
            } else {
                Vec::new()
            };
            if lines.len() == count {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "index has {lines:?}, waiting for {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server gracefully and returns its data directory (kept for a restart).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        match std::mem::replace(&mut self.data_dir, DataDir::Kept(PathBuf::new())) {
            DataDir::Owned(dir) => dir,
            DataDir::Kept(_) => panic!("stop a restarted server with stop_kept"),
        }
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran and stopped cleanly");
        }
    }

    /// Starts a new server on the data directory of a stopped one, with the same token.
    pub async fn restart(
        dir: &tempfile::TempDir,
        token: String,
        clock: Clock,
        config: ServerConfig,
    ) -> Self {
        Self::launch(DataDir::Kept(dir.path().to_owned()), config, clock, token).await
    }

    /// Stops a server started by [`TestServer::restart`].
    pub async fn stop_kept(mut self) {
        self.shutdown().await;
    }

    /// Stops a server whose data directory the test owns and returns how its run ended,
    /// for tests where the shutdown's final flush may fail (a full disk).
    pub async fn stop_with_result(mut self) -> Result<(), exposure_server::ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Returns every batch of [`REGION`] that `client`'s server lists.
pub async fn list_all(client: &mut DistributionClient<Channel>) -> ListBatchesResponse {
    client
        .list_batches(ListBatchesRequest {
            region: REGION.into(),
            after_sequence: 0,
            limit: 0,
        })
        .await
        .expect("list batches")
        .into_inner()
}

/// Creates an authority for `regions` in the (stopped) data directory; returns its token.
pub fn add_authority(data_dir: &Path, regions: &[&str]) -> String {
    let store = exposure_server::storage::Store::open(data_dir).expect("open store");
    let regions: Vec<String> = regions.iter().map(|region| (*region).to_owned()).collect();
    let (_, token) = store
        .add_authority("test authority", &regions, Clock::System.now())
        .expect("add authority");
    token
}

/// A plain HTTP/1.1 client for the HTTP mirror (hyper's, a second implementation of the
/// protocol beside the server's axum).
pub mod http_client {
    use bytes::Bytes;
    use http::{HeaderMap, Method, Request, StatusCode};
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    /// An answer: status, headers and the whole body.
    #[derive(Debug)]
    pub struct Answer {
        /// The status.
        pub status: StatusCode,
        /// The headers.
        pub headers: HeaderMap,
        /// The body, read to the end.
        pub body: Bytes,
    }

    impl Answer {
        /// Returns a header as text; panics when it is missing.
        pub fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .unwrap_or_else(|| panic!("header {name} missing: {:?}", self.headers))
                .to_str()
                .expect("ascii header")
        }

        /// Returns the body as text.
        pub fn text(&self) -> &str {
            std::str::from_utf8(&self.body).expect("utf-8 body")
        }
    }

    /// A keep-alive client.
    #[derive(Clone)]
    pub struct HttpClient {
        client: Client<HttpConnector, Empty<Bytes>>,
        base: String,
    }

    impl HttpClient {
        /// A client for `base` (`http://host:port`).
        pub fn new(base: &str) -> Self {
            Self {
                client: Client::builder(TokioExecutor::new()).build_http(),
                base: base.trim_end_matches('/').to_owned(),
            }
        }

        /// GETs `path` (starting with `/`).
        pub async fn get(&self, path: &str) -> Answer {
            self.send(Method::GET, path, &[]).await
        }

        /// Sends `method` to `path` with extra headers.
        pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
            let mut request = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = self
                .client
                .request(request.body(Empty::new()).expect("request"))
                .await
                .expect("http request");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("http body").to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        }
    }
}

/// Builders of requests and helpers to read answers, shared by the tests.
pub mod fixtures {
    use exposure_proto::v1::distribution_client::DistributionClient;
    use exposure_proto::v1::{
        BluezoneKey, DiagnosisKey, GaenKey, GetBatchRequest, GetConfirmBucketRequest,
        GetSigningKeysRequest, ReportType, SigningKey, StaticIdentifier,
        UploadDiagnosisKeysRequest, diagnosis_key,
    };
    use tonic::transport::Channel;

    use super::REGION;

    /// Returns a GAEN key.
    pub fn gaen(
        key_data: [u8; 16],
        rolling_start_interval_number: u32,
        rolling_period: u32,
    ) -> DiagnosisKey {
        DiagnosisKey {
            key: Some(diagnosis_key::Key::Gaen(GaenKey {
                key_data: key_data.to_vec(),
                rolling_start_interval_number,
                rolling_period,
                days_since_onset_of_symptoms: None,
            })),
            transmission_risk_level: 4,
        }
    }

    /// Returns a Bluezone daily key with 96 identifiers and the given window.
    pub fn bluezone(daily_key: [u8; 32], day_number: u32, from: u64, until: u64) -> DiagnosisKey {
        DiagnosisKey {
            key: Some(diagnosis_key::Key::Bluezone(BluezoneKey {
                daily_key: daily_key.to_vec(),
                day_number,
                sub_keys_per_day: 96,
                contagious_from: from,
                contagious_until: until,
            })),
            transmission_risk_level: 0,
        }
    }

    /// Returns a static identifier with a contagious window.
    pub fn static_id(identifier: &[u8], from: u64, until: u64) -> DiagnosisKey {
        DiagnosisKey {
            key: Some(diagnosis_key::Key::StaticId(StaticIdentifier {
                identifier: identifier.to_vec(),
                contagious_from: from,
                contagious_until: until,
            })),
            transmission_risk_level: 0,
        }
    }

    /// A code that was never issued, for decoys (a decoy's code need not exist).
    pub const DECOY_CODE: &str = "7K3QX-9M2PD";

    /// Returns `message` with `authorization: <scheme> <credential>`: `Bearer` and an
    /// authority's token, or `UploadCode` and a patient's code.
    pub fn with_authorization<T>(message: T, scheme: &str, credential: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("{scheme} {credential}")
                .parse()
                .expect("ascii credential"),
        );
        request
    }

    /// Returns `message` as a patient's code upload with `code`.
    pub fn with_code<T>(message: T, code: &str) -> tonic::Request<T> {
        with_authorization(message, "UploadCode", code)
    }

    /// Returns `message` marked as a decoy (`x-exposure-decoy: 1`), with `code` if given.
    pub fn decoy<T>(message: T, code: Option<&str>) -> tonic::Request<T> {
        let mut request = match code {
            Some(code) => with_code(message, code),
            None => tonic::Request::new(message),
        };
        request
            .metadata_mut()
            .insert("x-exposure-decoy", "1".parse().expect("ascii"));
        request
    }

    /// Returns a confirmed-test upload for [`REGION`].
    pub fn upload(upload_id: &str, keys: Vec<DiagnosisKey>) -> UploadDiagnosisKeysRequest {
        UploadDiagnosisKeysRequest {
            region: REGION.into(),
            upload_id: upload_id.into(),
            keys,
            report_type: ReportType::ConfirmedTest as i32,
            padding: vec![0; 100],
        }
    }

    /// Returns a 16-byte key made of one repeated byte, distinct per test key.
    pub fn key16(byte: u8) -> [u8; 16] {
        [byte; 16]
    }

    /// Downloads a whole batch file, checking chunk sizes and offsets.
    pub async fn download(client: &mut DistributionClient<Channel>, batch_id: &str) -> Vec<u8> {
        let mut stream = client
            .get_batch(GetBatchRequest {
                batch_id: batch_id.into(),
            })
            .await
            .expect("get batch")
            .into_inner();
        let mut file = Vec::new();
        while let Some(chunk) = stream.message().await.expect("batch chunk") {
            assert!(chunk.data.len() <= 64 * 1024, "chunk larger than 64 KiB");
            assert_eq!(chunk.offset, file.len() as u64, "chunk offset");
            file.extend_from_slice(&chunk.data);
            assert!(file.len() as u64 <= chunk.total_size);
        }
        file
    }

    /// Returns the signing keys GetSigningKeys lists.
    pub async fn signing_keys(client: &mut DistributionClient<Channel>) -> Vec<SigningKey> {
        client
            .get_signing_keys(GetSigningKeysRequest {})
            .await
            .expect("signing keys")
            .into_inner()
            .keys
    }

    /// Returns the DER public key of the current signing key and its id.
    pub async fn current_signing_key(
        client: &mut DistributionClient<Channel>,
    ) -> (String, Vec<u8>) {
        let current = signing_keys(client)
            .await
            .into_iter()
            .find(|key| key.current)
            .expect("a current key");
        assert_eq!(current.algorithm, "ecdsa-p256-sha256");
        (current.key_id, current.public_key_der)
    }

    /// Returns the confirm bucket of [`REGION`] for `prefix`, checking that it is sorted and
    /// free of repeats.
    pub async fn confirm_bucket(
        client: &mut DistributionClient<Channel>,
        prefix: u32,
        prefix_bits: u32,
    ) -> Vec<Vec<u8>> {
        let bucket = client
            .get_confirm_bucket(GetConfirmBucketRequest {
                region: REGION.into(),
                prefix,
                prefix_bits,
            })
            .await
            .expect("confirm bucket")
            .into_inner()
            .digests;
        assert!(
            bucket.windows(2).all(|pair| pair[0] < pair[1]),
            "bucket is sorted and unique"
        );
        bucket
    }

    /// Returns true when the confirm bucket of `tag` holds its exact digest; the digest and its
    /// prefix are cut by [`crate::reference`], not by the code under test.
    pub async fn confirmed(
        client: &mut DistributionClient<Channel>,
        tag: &crate::reference::Tag,
        prefix_bits: u32,
    ) -> bool {
        use crate::reference::{bucket, confirm_digest};
        let digest = confirm_digest(tag);
        let prefix = bucket(&digest, prefix_bits);
        let bucket_digests = confirm_bucket(client, prefix, prefix_bits).await;
        assert!(
            bucket_digests.iter().all(|other| {
                let other: [u8; 16] = other.as_slice().try_into().expect("16-byte digest");
                bucket(&other, prefix_bits) == prefix
            }),
            "every digest of the bucket shares the prefix"
        );
        bucket_digests
            .iter()
            .any(|other| other.as_slice() == digest)
    }
}

//! Connections to the target and the generated gRPC clients that ride on them.
//!
//! A run opens `--connections` HTTP/2 channels up front (so an unreachable target fails before any
//! measurement) and spreads its workers over them round-robin: many in-flight RPCs share one
//! channel as HTTP/2 streams, the way ghz's `--connections` works.

use std::time::Duration;

use anyhow::Context as _;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::http::HttpClient;
use crate::target::Target;

/// The authority's token, shared with the staff CLI: its `Debug` output is redacted, so it never
/// reaches a log or a report.
pub use exposure_client::credential::{BearerToken, UploadCode};

/// How long opening one channel may take before the run is abandoned.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channels of one run.
#[derive(Debug, Clone)]
pub struct Connections {
    channels: Vec<Channel>,
}

impl Connections {
    /// Opens `count` channels (at least one) to `target`, failing if any cannot connect within
    /// [`CONNECT_TIMEOUT`].
    pub async fn open(target: &Target, count: usize) -> anyhow::Result<Self> {
        let endpoint = target
            .endpoint()
            .with_context(|| format!("cannot set up TLS for {target}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {target}: is the server running?"))?;
            channels.push(channel);
        }
        Ok(Connections { channels })
    }

    /// Makes `count` channels that connect only when first used: the HTTP scenarios carry
    /// gRPC clients they never call.
    pub fn lazy(target: &Target, count: usize) -> anyhow::Result<Self> {
        let endpoint = target
            .endpoint()
            .context("TLS settings of the target")?
            .connect_timeout(CONNECT_TIMEOUT);
        let channels = (0..count.max(1)).map(|_| endpoint.connect_lazy()).collect();
        Ok(Connections { channels })
    }

    /// Returns the channel that worker `worker` uses (round-robin).
    pub fn channel(&self, worker: usize) -> Channel {
        self.channels[worker % self.channels.len()].clone()
    }

    /// Returns the number of open channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Returns true when no channel is open (never, once `open` succeeded).
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// The three generated clients a worker needs, all on one channel.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `exposure.v1.KeyUpload`, for authority uploads.
    pub upload: KeyUploadClient<Channel>,
    /// `exposure.v1.Distribution`, for what phones do.
    pub distribution: DistributionClient<Channel>,
    /// `grpc.health.v1.Health`, the cheapest RPC the server has (the `noop` scenario).
    pub health: HealthClient<Channel>,
    /// The HTTP/1.1 client of the HTTP scenarios (`None` for gRPC runs).
    pub http: Option<HttpClient>,
}

impl Clients {
    /// Builds the clients on `channel`.
    pub fn new(channel: Channel) -> Self {
        Clients {
            upload: KeyUploadClient::new(channel.clone()),
            distribution: DistributionClient::new(channel.clone()),
            health: HealthClient::new(channel),
            http: None,
        }
    }

    /// Adds the HTTP client of the HTTP scenarios.
    #[must_use]
    pub fn with_http(mut self, http: Option<HttpClient>) -> Self {
        self.http = http;
        self
    }
}

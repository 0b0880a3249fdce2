//! The `noop` scenario: `grpc.health.v1.Health/Check`, an RPC that touches neither RocksDB nor the
//! publisher. Its rate is the ceiling of gRPC transport on this machine, the yardstick that
//! uploads/s and polls/s are compared with (docs/BENCHMARKS.md).

use tonic::Status;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::client::Clients;

/// Asks for the overall health of the server (the empty service name).
pub async fn call(clients: &mut Clients) -> Result<u64, Status> {
    clients
        .health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(0)
}

/// A phone arriving: opens a new connection to `endpoint` (TCP, TLS and HTTP/2 handshakes) and
/// asks for the server's health on it, so a run sees a server that stops accepting newcomers
/// even while its established connections are served. The connection is closed afterwards.
pub async fn arrive(endpoint: &Endpoint) -> Result<u64, Status> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| Status::unavailable(format!("cannot connect: {error}")))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(0)
}

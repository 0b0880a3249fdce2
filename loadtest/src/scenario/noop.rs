//! The `noop` scenario: `grpc.health.v1.Health/Check`, an RPC that touches neither RocksDB nor the
//! publisher. Its rate is the ceiling of gRPC transport on this machine, the yardstick that
//! uploads/s and polls/s are compared with (docs/BENCHMARKS.md).

use tonic::Status;
use tonic_health::pb::HealthCheckRequest;

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

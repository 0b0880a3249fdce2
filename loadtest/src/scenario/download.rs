//! The `download` scenario: `GetBatch` of a published batch, streamed to its last chunk, what a
//! phone does when a poll shows a new batch. The report's bytes/s is the distribution throughput.

use exposure_proto::v1::GetBatchRequest;
use tonic::Status;

use crate::client::Clients;

/// Downloads batch `batch_id` completely and returns its size in bytes. A stream that ends before
/// the announced total size fails with `DATA_LOSS`.
pub async fn call(clients: &mut Clients, batch_id: &str) -> Result<u64, Status> {
    let request = GetBatchRequest {
        batch_id: batch_id.to_owned(),
    };
    let mut stream = clients.distribution.get_batch(request).await?.into_inner();
    let mut received = 0_u64;
    let mut total_size = 0_u64;
    while let Some(chunk) = stream.message().await? {
        received += chunk.data.len() as u64;
        total_size = total_size.max(chunk.total_size);
    }
    if received < total_size {
        return Err(Status::data_loss(format!(
            "batch stream ended after {received} of {total_size} bytes"
        )));
    }
    Ok(received)
}

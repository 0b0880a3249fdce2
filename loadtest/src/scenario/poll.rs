//! The `poll` scenario: `ListBatches` after a cursor, what every phone does once an hour
//! (DESIGN.md section 9: 751,416 phones polling hourly is 209 polls/s).

use exposure_proto::v1::ListBatchesRequest;
use prost::Message as _;
use tonic::Status;

use crate::client::Clients;
use crate::scenario::catalog::Catalog;

/// Lists the region's batches after `cursor`, feeds the answer to the catalog (so downloads learn
/// of new batches) and returns the answer's encoded size.
pub async fn call(
    clients: &mut Clients,
    region: &str,
    cursor: u64,
    catalog: &Catalog,
) -> Result<u64, Status> {
    let request = ListBatchesRequest {
        region: region.to_owned(),
        after_sequence: cursor,
        limit: 0,
    };
    let response = clients
        .distribution
        .list_batches(request)
        .await?
        .into_inner();
    catalog.observe(&response);
    Ok(response.encoded_len() as u64)
}

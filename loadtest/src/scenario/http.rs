//! The `http-poll` and `http-download` scenarios: what a phone does against the HTTP mirror
//! (DESIGN.md section 10) or a CDN in front of it. A poll is a GET of the region index; a
//! download is a GET of a whole batch file. The batch catalog is learned from the day indexes.

use exposure_proto::v1::{ListBatchesResponse, RegionIndex};
use prost::Message as _;
use tonic::Status;

use crate::http::HttpClient;
use crate::scenario::catalog::Catalog;

/// Path of a region's index.
fn index_path(region: &str) -> String {
    format!("/v1/regions/{region}/index")
}

/// GETs the region index and returns it with its body size.
async fn index(http: &HttpClient, region: &str) -> Result<(RegionIndex, u64), Status> {
    let body = http.get(&index_path(region)).await?;
    let size = body.len() as u64;
    let index = RegionIndex::decode(body)
        .map_err(|error| Status::data_loss(format!("region index does not decode: {error}")))?;
    Ok((index, size))
}

/// Polls the region index, tells the catalog the head sequence, and returns the body size.
pub async fn poll(http: &HttpClient, region: &str, catalog: &Catalog) -> Result<u64, Status> {
    let (index, size) = index(http, region).await?;
    catalog.observe(&ListBatchesResponse {
        latest_sequence: index.latest_sequence,
        ..Default::default()
    });
    Ok(size)
}

/// Downloads batch `batch_id` whole and returns its size.
pub async fn download(http: &HttpClient, batch_id: &str) -> Result<u64, Status> {
    let body = http.get(&format!("/v1/batches/{batch_id}")).await?;
    Ok(body.len() as u64)
}

/// Loads the catalog the way a phone starts: the index, then every day index it names. A region
/// that has published nothing (404) gives an empty catalog.
pub async fn load_catalog(http: &HttpClient, region: &str) -> anyhow::Result<Catalog> {
    let index = match index(http, region).await {
        Ok((index, _)) => index,
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(Catalog::empty()),
        Err(status) => anyhow::bail!(
            "cannot read the index of region {region}: {}: is the target the server's HTTP listener?",
            status.message()
        ),
    };
    let catalog = Catalog::with_prefix_bits(index.confirm_prefix_bits);
    for day in &index.days {
        let body = http
            .get(&format!("/v1/regions/{region}/days/{day}"))
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "cannot read day {day} of region {region}: {}",
                    status.message()
                )
            })?;
        let listing = ListBatchesResponse::decode(body)
            .map_err(|error| anyhow::anyhow!("day index {day} does not decode: {error}"))?;
        catalog.observe(&listing);
    }
    catalog.observe(&ListBatchesResponse {
        latest_sequence: index.latest_sequence,
        ..Default::default()
    });
    Ok(catalog)
}

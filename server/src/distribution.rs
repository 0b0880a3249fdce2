//! `exposure.v1.Distribution`: the anonymous phone API. Listing is served from the in-memory
//! catalog; batch files and confirm buckets are read from RocksDB off the async workers.

use std::pin::Pin;

use exposure_proto::v1::distribution_server::Distribution;
use exposure_proto::v1::{
    GetBatchChunk, GetBatchRequest, GetConfirmBucketRequest, GetConfirmBucketResponse,
    GetSigningKeysRequest, GetSigningKeysResponse, ListBatchesRequest, ListBatchesResponse,
    SigningKey,
};
use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::catalog::{Catalog, MAX_LIST_LIMIT};
use crate::error::ApiError;
use crate::ingest::validate::is_valid_region;
use crate::metrics;
use crate::storage::Store;

/// Largest chunk of a batch file in one GetBatch message.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Name of the only signature algorithm.
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-p256-sha256";

/// The distribution service.
#[derive(Clone)]
pub struct DistributionService {
    store: Store,
    catalog: Catalog,
    /// Bits of the confirm prefix of this deployment.
    confirm_prefix_bits: u32,
}

impl DistributionService {
    /// Returns the service over the store and the catalog the publisher keeps.
    pub fn new(store: Store, catalog: Catalog, confirm_prefix_bits: u32) -> Self {
        Self {
            store,
            catalog,
            confirm_prefix_bits,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Store) -> Result<T, crate::storage::StorageError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?
            .map_err(ApiError::from)
    }
}

fn check_region(region: &str) -> Result<(), ApiError> {
    if is_valid_region(region) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "region",
            "must match ^[A-Z]{2}(-[A-Z0-9]{1,3})?$, e.g. VN-TB",
        ))
    }
}

/// Returns true for a lowercase hex SHA-256.
fn is_batch_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<GetBatchChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Distribution for DistributionService {
    #[instrument(level = "debug", skip_all, fields(region = %request.get_ref().region))]
    async fn list_batches(
        &self,
        request: Request<ListBatchesRequest>,
    ) -> Result<Response<ListBatchesResponse>, Status> {
        let request = request.into_inner();
        check_region(&request.region)?;
        ::metrics::counter!(metrics::POLLS_TOTAL).increment(1);
        let limit = match request.limit as usize {
            0 => MAX_LIST_LIMIT,
            given => given.min(MAX_LIST_LIMIT),
        };
        let listing = self
            .catalog
            .list(&request.region, request.after_sequence, limit);
        Ok(Response::new(ListBatchesResponse {
            batches: listing.batches,
            confirm_prefix_bits: self.confirm_prefix_bits,
            latest_sequence: listing.latest_sequence,
            more: listing.more,
        }))
    }

    type GetBatchStream = ChunkStream;

    #[instrument(skip_all)]
    async fn get_batch(
        &self,
        request: Request<GetBatchRequest>,
    ) -> Result<Response<Self::GetBatchStream>, Status> {
        let batch_id = request.into_inner().batch_id;
        if !is_batch_id(&batch_id) {
            return Err(
                ApiError::invalid("batch_id", "must be 64 lowercase hex characters").into(),
            );
        }
        let lookup = batch_id.clone();
        let file = self
            .blocking(move |store| store.batch_file(&lookup))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("batch {batch_id}")))?;
        ::metrics::counter!(metrics::DOWNLOADS_TOTAL).increment(1);
        ::metrics::counter!(metrics::DOWNLOAD_BYTES_TOTAL).increment(file.len() as u64);
        let total_size = file.len() as u64;
        let chunks: Vec<Result<GetBatchChunk, Status>> = file
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(index, chunk)| {
                Ok(GetBatchChunk {
                    data: chunk.to_vec(),
                    offset: (index * CHUNK_BYTES) as u64,
                    total_size,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    #[instrument(level = "debug", skip_all, fields(region = %request.get_ref().region))]
    async fn get_confirm_bucket(
        &self,
        request: Request<GetConfirmBucketRequest>,
    ) -> Result<Response<GetConfirmBucketResponse>, Status> {
        let request = request.into_inner();
        check_region(&request.region)?;
        if request.prefix_bits != self.confirm_prefix_bits {
            return Err(ApiError::invalid(
                "prefix_bits",
                format!(
                    "must be {} (the deployment's confirm_prefix_bits)",
                    self.confirm_prefix_bits
                ),
            )
            .into());
        }
        if u64::from(request.prefix) >= 1u64 << request.prefix_bits {
            return Err(ApiError::invalid(
                "prefix",
                format!("must be below 2^{}", request.prefix_bits),
            )
            .into());
        }
        ::metrics::counter!(metrics::CONFIRM_REQUESTS_TOTAL).increment(1);
        let digests = self
            .blocking(move |store| {
                store.confirm_bucket(&request.region, request.prefix, request.prefix_bits)
            })
            .await?;
        Ok(Response::new(GetConfirmBucketResponse {
            digests: digests
                .into_iter()
                .map(|digest| digest.0.to_vec())
                .collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_signing_keys(
        &self,
        _request: Request<GetSigningKeysRequest>,
    ) -> Result<Response<GetSigningKeysResponse>, Status> {
        let list = self.blocking(|store| store.signing_keys()).await?;
        let mut keys: Vec<SigningKey> = list
            .keys
            .iter()
            .rev()
            .map(|record| SigningKey {
                key_id: record.key_id.clone(),
                public_key_der: record.public_key_der.clone(),
                algorithm: SIGNATURE_ALGORITHM.to_owned(),
                current: record.key_id == list.current,
                created_at: record.created_at,
            })
            .collect();
        // The current key first, then the others newest first.
        keys.sort_by_key(|key| !key.current);
        Ok(Response::new(GetSigningKeysResponse { keys }))
    }
}

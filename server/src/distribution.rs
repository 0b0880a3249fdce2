//! `exposure.v1.Distribution`: the anonymous phone API. Listing is served from the in-memory
//! catalog; batch files from the shared [`BatchCache`] (each chunk a slice of one copy, made as
//! the stream is read); confirm buckets are read from RocksDB off the async workers.

use std::pin::Pin;

use exposure_proto::v1::distribution_server::Distribution;
use exposure_proto::v1::{
    GetBatchChunk, GetBatchRequest, GetConfirmBucketRequest, GetConfirmBucketResponse,
    GetSigningKeysRequest, GetSigningKeysResponse, ListBatchesRequest, ListBatchesResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::batch_cache::BatchCache;
use crate::catalog::{Catalog, MAX_LIST_LIMIT};
use crate::error::ApiError;
use crate::ingest::validate::is_valid_region;
use crate::layout::{self, is_batch_id};
use crate::metrics;
use crate::storage::Store;

/// Largest chunk of a batch file in one GetBatch message.
pub const CHUNK_BYTES: usize = 64 * 1024;
pub use crate::layout::SIGNATURE_ALGORITHM;

/// The distribution service.
#[derive(Clone)]
pub struct DistributionService {
    store: Store,
    catalog: Catalog,
    batches: BatchCache,
    /// Bits of the confirm prefix of this deployment.
    confirm_prefix_bits: u32,
}

impl DistributionService {
    /// Returns the service over the store, the catalog the publisher keeps and the shared
    /// batch files.
    pub fn new(
        store: Store,
        catalog: Catalog,
        batches: BatchCache,
        confirm_prefix_bits: u32,
    ) -> Self {
        Self {
            store,
            catalog,
            batches,
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
        let file = self
            .batches
            .get(&batch_id)
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("batch {batch_id}")))?;
        ::metrics::counter!(metrics::DOWNLOADS_TOTAL).increment(1);
        ::metrics::counter!(metrics::DOWNLOAD_BYTES_TOTAL).increment(file.len() as u64);
        let total_size = file.len() as u64;
        // Each chunk is a slice of the shared file, made when the transport asks for it.
        let chunks = futures::stream::unfold(0_usize, move |offset| {
            let file = file.clone();
            async move {
                if offset >= file.len() {
                    return None;
                }
                let end = file.len().min(offset + CHUNK_BYTES);
                let chunk = GetBatchChunk {
                    data: file.slice(offset..end),
                    offset: offset as u64,
                    total_size,
                };
                Some((Ok::<_, Status>(chunk), end))
            }
        });
        Ok(Response::new(Box::pin(chunks)))
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
        Ok(Response::new(layout::signing_keys(&list)))
    }
}

//! The HTTP mirror of the distribution API (DESIGN.md section 10): GET and HEAD of every path of
//! the static [`layout`], answered from the catalog, the shared [`BatchCache`] and RocksDB, with
//! the layout's `Cache-Control`, strong ETags, `If-None-Match` and byte ranges for batches. A CDN
//! can use it as its origin. It shares the tokio runtime of the gRPC server.

mod respond;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use exposure_proto::v1::GetConfirmBucketResponse;
use http::{HeaderMap, Method, StatusCode, Uri};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::batch_cache::BatchCache;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::layout::{self, PathError, Route};
use crate::metrics;
use crate::storage::Store;
use crate::transport::connections::ListenerLimits;
use respond::{Object, answer, error};

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The store (signing keys, confirm buckets).
    pub store: Store,
    /// The published batches.
    pub catalog: Catalog,
    /// The shared batch files.
    pub batches: BatchCache,
    /// Today's UTC day decides the cache lifetime of day indexes.
    pub clock: Clock,
    /// The deployment's confirm prefix length.
    pub confirm_prefix_bits: u32,
}

pub use crate::transport::http1::ConnectionLifetime;

/// Serves the mirror on `listener` until `shutdown` completes (see
/// [`crate::transport::http1::serve`]); a client that stalls a download holds one slot, and
/// the batch bytes it references are shared with every other download.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    lifetime: ConnectionLifetime,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(handle).with_state(Arc::new(state));
    crate::transport::http1::serve(listener, app, tls, limits, lifetime, shutdown).await
}

async fn handle(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let (route, mut response) = match layout::parse(uri.path()) {
        Err(PathError::Unknown) => ("unknown", error(StatusCode::NOT_FOUND, "no such path")),
        Err(PathError::Bad(reason)) => ("bad", error(StatusCode::BAD_REQUEST, &reason)),
        Ok(route) if method != Method::GET && method != Method::HEAD => (
            route.name(),
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("method {method} not allowed: use GET or HEAD"),
            ),
        ),
        Ok(route) => (route.name(), respond(&state, &route, &headers).await),
    };
    let status = response.status();
    if method == Method::GET
        && route == "batch"
        && (status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT)
    {
        let sent = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        ::metrics::counter!(metrics::DOWNLOADS_TOTAL).increment(1);
        ::metrics::counter!(metrics::DOWNLOAD_BYTES_TOTAL).increment(sent);
    }
    if method == Method::HEAD {
        // Same headers (Content-Length included), no body.
        *response.body_mut() = Body::empty();
    }
    ::metrics::counter!(metrics::HTTP_REQUESTS_TOTAL, "route" => route, "status" => status_label(status))
        .increment(1);
    ::metrics::histogram!(metrics::HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Returns the status as a label value without allocating for the codes the listener sends.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        206 => "206",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        416 => "416",
        500 => "500",
        _ => "other",
    }
}

async fn respond(state: &HttpState, route: &Route<'_>, headers: &HeaderMap) -> Response {
    match object(state, route).await {
        Ok(Some(object)) => answer(object, headers),
        Ok(None) => error(StatusCode::NOT_FOUND, &not_found(route)),
        Err(Failure::Bad(reason)) => error(StatusCode::BAD_REQUEST, &reason),
        Err(Failure::Internal(cause)) => {
            tracing::error!(%cause, route = route.name(), "http request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn not_found(route: &Route<'_>) -> String {
    match route {
        Route::SigningKeys => "no signing key yet".to_owned(),
        Route::Index { region } => format!("region {region} has published nothing"),
        Route::Day { region, day } => format!("region {region} has no batch created on day {day}"),
        Route::Batch { batch_id } => format!("batch {batch_id} not found"),
        Route::Confirm { .. } => "no such bucket".to_owned(),
        Route::GaenIndex { region } => format!("region {region} has no gaen export"),
        Route::GaenFile { name, .. } => format!("gaen file {name} not found"),
    }
}

/// Why a request got no object.
enum Failure {
    /// A part of the path is valid in form but not for this deployment.
    Bad(String),
    /// The server failed; the cause is logged, never sent.
    Internal(String),
}

/// Returns the object a route names, `None` when it does not exist.
async fn object(state: &HttpState, route: &Route<'_>) -> Result<Option<Object>, Failure> {
    let bits = state.confirm_prefix_bits;
    match *route {
        Route::SigningKeys => {
            let list = blocking(state, |store| store.signing_keys()).await?;
            if list.keys.is_empty() {
                return Ok(None);
            }
            let body = layout::signing_keys(&list).encode_to_vec();
            Ok(Some(protobuf(body, layout::CACHE_SIGNING_KEYS)))
        }
        Route::Index { region } => {
            ::metrics::counter!(metrics::POLLS_TOTAL).increment(1);
            Ok(layout::region_index(&state.catalog, region, bits)
                .map(|index| protobuf(index.encode_to_vec(), layout::CACHE_INDEX)))
        }
        Route::Day { region, day } => {
            let today = layout::day_of(state.clock.now());
            Ok(
                layout::day_listing(&state.catalog, region, day, bits).map(|listing| {
                    protobuf(
                        listing.encode_to_vec(),
                        layout::day_cache_control(day, today),
                    )
                }),
            )
        }
        Route::Batch { batch_id } => {
            let file = state
                .batches
                .get(batch_id)
                .await
                .map_err(|error| Failure::Internal(error.to_string()))?;
            Ok(file.map(|body| Object {
                body,
                etag: format!("\"{batch_id}\""),
                cache_control: layout::CACHE_BATCH,
                content_type: layout::OCTET_STREAM,
                ranges: true,
            }))
        }
        Route::Confirm {
            region,
            prefix_bits,
            prefix,
        } => {
            if prefix_bits != bits {
                return Err(Failure::Bad(format!(
                    "prefix_bits: must be {bits} (the deployment's confirm_prefix_bits)"
                )));
            }
            if u64::from(prefix) >= 1_u64 << prefix_bits {
                return Err(Failure::Bad(format!(
                    "prefix: must be below 2^{prefix_bits}"
                )));
            }
            ::metrics::counter!(metrics::CONFIRM_REQUESTS_TOTAL).increment(1);
            let region = region.to_owned();
            let digests = blocking(state, move |store| {
                store.confirm_bucket(&region, prefix, prefix_bits)
            })
            .await?;
            let body = GetConfirmBucketResponse {
                digests: digests
                    .into_iter()
                    .map(|digest| digest.0.to_vec())
                    .collect(),
            }
            .encode_to_vec();
            Ok(Some(protobuf(body, layout::CACHE_CONFIRM)))
        }
        Route::GaenIndex { region } => gaen_object(state, region, None).await,
        Route::GaenFile { region, name } => gaen_object(state, region, Some(name)).await,
    }
}

/// Returns a region's GAEN index or export zip (DESIGN §11), straight from the store.
async fn gaen_object(
    state: &HttpState,
    region: &str,
    name: Option<&str>,
) -> Result<Option<Object>, Failure> {
    let region = region.to_owned();
    match name {
        None => {
            let index = blocking(state, move |store| {
                let index = store.gaen_index(&region)?;
                Ok((!index.files.is_empty()).then(|| {
                    layout::gaen_index_text(
                        &region,
                        index.files.iter().map(|file| file.name.as_str()),
                    )
                }))
            })
            .await?;
            Ok(index.map(|text| {
                Object::hashed(
                    text.into_bytes(),
                    layout::CACHE_GAEN_INDEX,
                    layout::TEXT_PLAIN,
                )
            }))
        }
        Some(name) => {
            let name = name.to_owned();
            let zip = blocking(state, move |store| store.gaen_file(&region, &name)).await?;
            Ok(zip.map(|zip| Object::hashed(zip, layout::CACHE_GAEN_FILE, layout::ZIP)))
        }
    }
}

fn protobuf(body: Vec<u8>, cache_control: &'static str) -> Object {
    Object::hashed(body, cache_control, layout::PROTOBUF)
}

async fn blocking<T: Send + 'static>(
    state: &HttpState,
    work: impl FnOnce(Store) -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, Failure> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || work(store))
        .await
        .map_err(|error| Failure::Internal(error.to_string()))?
        .map_err(|error| Failure::Internal(error.to_string()))
}

//! Every metric the server exports, declared once. Names carry the `exposure_` prefix and
//! their base unit; counters end in `_total`; labels have few values.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Uploads by `result` (stored, replay, invalid, unauthenticated, permission_denied, conflict, error).
pub const UPLOADS_TOTAL: &str = "exposure_uploads_total";
/// Keys stored, by `scheme` (gaen, bluezone, static).
pub const KEYS_INGESTED_TOTAL: &str = "exposure_keys_ingested_total";
/// Time from receiving an upload to answering it (durable write included).
pub const UPLOAD_DURATION_SECONDS: &str = "exposure_upload_duration_seconds";
/// Batches published, by `kind` (hourly, daily).
pub const BATCHES_PUBLISHED_TOTAL: &str = "exposure_batches_published_total";
/// Time to expand, filter, sign and commit one batch, by `kind`.
pub const BATCH_BUILD_SECONDS: &str = "exposure_batch_build_duration_seconds";
/// Size of each published batch file, by `kind`.
pub const BATCH_SIZE_BYTES: &str = "exposure_batch_size_bytes";
/// Filter elements (decoys included) of each published batch, by `kind`.
pub const BATCH_ELEMENTS: &str = "exposure_batch_elements";
/// ListBatches calls.
pub const POLLS_TOTAL: &str = "exposure_polls_total";
/// GetBatch calls that found their batch.
pub const DOWNLOADS_TOTAL: &str = "exposure_batch_downloads_total";
/// Bytes of batch files sent.
pub const DOWNLOAD_BYTES_TOTAL: &str = "exposure_batch_download_bytes_total";
/// GetConfirmBucket calls.
pub const CONFIRM_REQUESTS_TOTAL: &str = "exposure_confirm_requests_total";
/// Approximate size of the RocksDB files.
pub const ROCKSDB_SIZE_BYTES: &str = "exposure_rocksdb_size_bytes";
/// Keys waiting for their embargo to end or for the next publish.
pub const PENDING_KEYS: &str = "exposure_pending_keys";
/// Latency of every gRPC call, by `method` and `code`.
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "exposure_grpc_request_duration_seconds";
/// Requests refused because the server was at its concurrency limit.
pub const REQUESTS_SHED_TOTAL: &str = "exposure_requests_shed_total";

/// Buckets for request latencies: 0.25 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for batch builds: 10 ms to 2 min.
const BUILD_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0];
/// Buckets for batch sizes: 1 KiB to 64 MiB.
const SIZE_BUCKETS: &[f64] = &[
    1024.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// Buckets for element counts: 1 k to 10 M.
const ELEMENT_BUCKETS: &[f64] = &[1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7];

/// Installs the Prometheus recorder; returns the handle that renders `/metrics` (served by
/// [`crate::metrics_http::serve`]). Call once per process.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(GRPC_REQUEST_DURATION_SECONDS.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(UPLOAD_DURATION_SECONDS.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(BATCH_BUILD_SECONDS.into()), BUILD_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE_BYTES.into()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_ELEMENTS.into()), ELEMENT_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Registers the help text and unit of every metric.
fn describe() {
    describe_counter!(UPLOADS_TOTAL, "Uploads of diagnosis keys, by result");
    describe_counter!(KEYS_INGESTED_TOTAL, "Diagnosis keys stored, by scheme");
    describe_histogram!(
        UPLOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Upload handling time, durable write included"
    );
    describe_counter!(BATCHES_PUBLISHED_TOTAL, "Batches published, by kind");
    describe_histogram!(
        BATCH_BUILD_SECONDS,
        Unit::Seconds,
        "Time to expand, filter, sign and commit a batch"
    );
    describe_histogram!(
        BATCH_SIZE_BYTES,
        Unit::Bytes,
        "Size of published batch files"
    );
    describe_histogram!(
        BATCH_ELEMENTS,
        Unit::Count,
        "Filter elements of published batches, decoys included"
    );
    describe_counter!(POLLS_TOTAL, "ListBatches calls");
    describe_counter!(DOWNLOADS_TOTAL, "Batch downloads started");
    describe_counter!(
        DOWNLOAD_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of batch files sent"
    );
    describe_counter!(CONFIRM_REQUESTS_TOTAL, "Confirm bucket requests");
    describe_gauge!(
        ROCKSDB_SIZE_BYTES,
        Unit::Bytes,
        "Approximate size of the RocksDB files"
    );
    describe_gauge!(PENDING_KEYS, Unit::Count, "Keys not yet published");
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "gRPC call latency, by method and code"
    );
    describe_counter!(
        REQUESTS_SHED_TOTAL,
        "Requests refused at the concurrency limit"
    );
}

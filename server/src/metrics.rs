//! Every metric the server exports, declared once. Names carry the `exposure_` prefix and
//! their base unit; counters end in `_total`; labels have few values.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Uploads by `result` (stored, replay, invalid, unauthenticated, permission_denied, conflict,
/// quota, error); decoys count here by the answer they got, like real uploads.
pub const UPLOADS_TOTAL: &str = "exposure_uploads_total";
/// Keys accepted, by `scheme` (gaen, bluezone, static): the keys a real upload stored and
/// those a decoy was answered as accepting, so that no series tells the two apart.
pub const KEYS_INGESTED_TOTAL: &str = "exposure_keys_ingested_total";
/// Time from receiving an upload to answering it (durable write included; decoys too).
pub const UPLOAD_DURATION_SECONDS: &str = "exposure_upload_duration_seconds";
/// Batches published, by `kind` (hourly, daily).
pub const BATCHES_PUBLISHED_TOTAL: &str = "exposure_batches_published_total";
/// GAEN export files published (DESIGN §11).
pub const GAEN_FILES_PUBLISHED_TOTAL: &str = "exposure_gaen_files_published_total";
/// Time to expand, filter, sign and commit one batch, by `kind`.
pub const BATCH_BUILD_SECONDS: &str = "exposure_batch_build_duration_seconds";
/// Size of each published batch file, by `kind`.
pub const BATCH_SIZE_BYTES: &str = "exposure_batch_size_bytes";
/// Filter elements (decoys included) of each published batch, by `kind`.
pub const BATCH_ELEMENTS: &str = "exposure_batch_elements";
/// ListBatches calls and HTTP region-index requests.
pub const POLLS_TOTAL: &str = "exposure_polls_total";
/// GetBatch calls that found their batch, and HTTP batch GETs answered 200 or 206.
pub const DOWNLOADS_TOTAL: &str = "exposure_batch_downloads_total";
/// Bytes of batch files sent.
pub const DOWNLOAD_BYTES_TOTAL: &str = "exposure_batch_download_bytes_total";
/// GetConfirmBucket calls, over gRPC and HTTP.
pub const CONFIRM_REQUESTS_TOTAL: &str = "exposure_confirm_requests_total";
/// Approximate size of the RocksDB files on disk: table files and the blob files that hold
/// the batch files; set after every publish run.
pub const ROCKSDB_SIZE_BYTES: &str = "exposure_rocksdb_size_bytes";
/// Keys not yet published, by `state`: `releasable` (their embargo had ended when the last
/// publish run started, yet they are still waiting: 0 after a run that published everything)
/// and `embargoed` (not publishable yet). Set after every publish run, failed ones included.
pub const PENDING_KEYS: &str = "exposure_pending_keys";
/// Upload codes issued.
pub const UPLOAD_CODES_ISSUED_TOTAL: &str = "exposure_upload_codes_issued_total";
/// Code uploads refused because a failed-attempt budget was spent.
pub const CODE_ATTEMPTS_REFUSED_TOTAL: &str = "exposure_code_attempts_refused_total";
/// Object-storage tasks (uploads, index rewrites, deletes) waiting in the outbox.
pub const PUBLISH_QUEUE_LENGTH: &str = "exposure_publish_queue_length";
/// Age of the oldest object-storage task waiting in the outbox (0 when empty).
pub const PUBLISH_QUEUE_OLDEST_SECONDS: &str = "exposure_publish_queue_oldest_seconds";
/// Object-storage task attempts, by `result` (done, retry).
pub const PUBLISH_OBJECT_TASKS_TOTAL: &str = "exposure_publish_object_tasks_total";
/// Object-storage tasks waiting in the outbox whose last attempt failed (later tasks that do
/// not depend on them go on).
pub const PUBLISH_TASKS_FAILING: &str = "exposure_publish_tasks_failing";
/// Failed attempts of the queued object-storage task that failed most (0 when none fails).
pub const PUBLISH_TASK_FAILURES_MAX: &str = "exposure_publish_task_failures_max";
/// Seconds since the continuous backup (`--backup-to`) last had every record written before
/// a tick in the bucket: about `--backup-log-interval` when healthy, 0 without `--backup-to`.
pub const BACKUP_LAG_SECONDS: &str = "exposure_backup_lag_seconds";
/// Write-ahead log bytes read but not yet in the bucket at the last tick.
pub const BACKUP_LAG_BYTES: &str = "exposure_backup_lag_bytes";
/// Failed continuous-backup attempts, by `stage` (checkpoint, log, prune: one per deletion that
/// failed, retried after the next checkpoint).
pub const BACKUP_FAILURES_TOTAL: &str = "exposure_backup_failures_total";
/// Checkpoints written to the backup bucket.
pub const BACKUP_CHECKPOINTS_TOTAL: &str = "exposure_backup_checkpoints_total";
/// Log objects written to the backup bucket.
pub const BACKUP_LOG_OBJECTS_TOTAL: &str = "exposure_backup_log_objects_total";
/// Seconds until the served TLS certificate's notAfter (negative once past it); only with
/// `--tls-cert`, set from startup and every reload tick.
pub const TLS_CERTIFICATE_EXPIRY_SECONDS: &str = "exposure_tls_certificate_expiry_seconds";
/// TLS files that changed on disk, by `file` (cert, client_ca) and `result`: reloaded, or
/// refused and the previous material kept (expired, not_yet_valid, invalid); only with
/// `--tls-cert`.
pub const TLS_RELOADS_TOTAL: &str = "exposure_tls_reloads_total";
/// 1 while the store accepts synced writes, 0 while they fail (disk full, I/O error).
pub const STORE_WRITABLE: &str = "exposure_store_writable";
/// Latency of every gRPC call until its last response message and status went out (the
/// whole stream for GetBatch), by `method` and `code`: the status the call ended with, or
/// CANCELLED when the client went away first.
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "exposure_grpc_request_duration_seconds";
/// Requests of the HTTP listener, by `route` (signing_keys, index, day, batch, confirm, unknown,
/// bad) and `status` (the HTTP code).
pub const HTTP_REQUESTS_TOTAL: &str = "exposure_http_requests_total";
/// Latency of every HTTP request until its headers are ready, by `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "exposure_http_request_duration_seconds";
/// Batch files held by the shared batch cache, in bytes.
pub const BATCH_CACHE_BYTES: &str = "exposure_batch_cache_bytes";
/// Requests refused because their class was at its concurrency limit, by `class`: gRPC calls
/// answered RESOURCE_EXHAUSTED (upload, phone, health) and HTTP connections closed (http).
pub const REQUESTS_SHED_TOTAL: &str = "exposure_requests_shed_total";
/// Open connections, by `listener` (grpc, http, metrics).
pub const CONNECTIONS: &str = "exposure_connections";
/// Connections closed by a limit, by `listener` and `reason`: network_cap (the client network
/// was at its cap), handshake_timeout (no TLS handshake or first request bytes in time),
/// send_stalled (the client stopped reading), lifetime (an HTTP connection reached its age).
pub const CONNECTIONS_CLOSED_TOTAL: &str = "exposure_connections_closed_total";
/// Times a listener reached its connection cap and left new connections waiting, by `listener`.
pub const CONNECTION_CAP_WAITS_TOTAL: &str = "exposure_connection_cap_waits_total";

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
            Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.into()),
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
    register_at_zero();
    Ok(handle)
}

/// Label values of `UPLOADS_TOTAL`'s `result`.
const UPLOAD_RESULTS: [&str; 8] = [
    "stored",
    "replay",
    "invalid",
    "unauthenticated",
    "permission_denied",
    "conflict",
    "quota",
    "error",
];
/// Label values of `route` on the HTTP listener's metrics.
const HTTP_ROUTES: [&str; 9] = [
    "signing_keys",
    "index",
    "day",
    "batch",
    "confirm",
    "gaen_index",
    "gaen_file",
    "unknown",
    "bad",
];

/// Creates every metric, and every label value the dashboard and alerts select, at its
/// starting value, so a panel or an alert reads 0 from the first scrape instead of "no data"
/// until the first event (a rate over a series that appears with its first increment also
/// misses that increment). Gauges start at what the server holds before its first update:
/// nothing pending, nothing queued, a writable store (the store's own starting state; the
/// health watcher probes it within a second).
fn register_at_zero() {
    use ::metrics::{counter, gauge, histogram};
    // A histogram is created by its handle; dropping the handle records no sample.
    for result in UPLOAD_RESULTS {
        counter!(UPLOADS_TOTAL, "result" => result).absolute(0);
    }
    for scheme in ["gaen", "bluezone", "static"] {
        counter!(KEYS_INGESTED_TOTAL, "scheme" => scheme).absolute(0);
    }
    drop(histogram!(UPLOAD_DURATION_SECONDS));
    for kind in ["hourly", "daily"] {
        counter!(BATCHES_PUBLISHED_TOTAL, "kind" => kind).absolute(0);
        drop(histogram!(BATCH_BUILD_SECONDS, "kind" => kind));
        drop(histogram!(BATCH_SIZE_BYTES, "kind" => kind));
        drop(histogram!(BATCH_ELEMENTS, "kind" => kind));
    }
    for name in [
        GAEN_FILES_PUBLISHED_TOTAL,
        POLLS_TOTAL,
        DOWNLOADS_TOTAL,
        DOWNLOAD_BYTES_TOTAL,
        CONFIRM_REQUESTS_TOTAL,
        UPLOAD_CODES_ISSUED_TOTAL,
        CODE_ATTEMPTS_REFUSED_TOTAL,
    ] {
        counter!(name).absolute(0);
    }
    for state in ["releasable", "embargoed"] {
        gauge!(PENDING_KEYS, "state" => state).set(0.0);
    }
    for name in [
        ROCKSDB_SIZE_BYTES,
        PUBLISH_QUEUE_LENGTH,
        PUBLISH_QUEUE_OLDEST_SECONDS,
        PUBLISH_TASKS_FAILING,
        PUBLISH_TASK_FAILURES_MAX,
        BATCH_CACHE_BYTES,
        BACKUP_LAG_SECONDS,
        BACKUP_LAG_BYTES,
    ] {
        gauge!(name).set(0.0);
    }
    for stage in ["checkpoint", "log", "prune"] {
        counter!(BACKUP_FAILURES_TOTAL, "stage" => stage).absolute(0);
    }
    counter!(BACKUP_CHECKPOINTS_TOTAL).absolute(0);
    counter!(BACKUP_LOG_OBJECTS_TOTAL).absolute(0);
    gauge!(STORE_WRITABLE).set(1.0);
    for listener in crate::transport::connections::LISTENERS {
        gauge!(CONNECTIONS, "listener" => listener).set(0.0);
        counter!(CONNECTION_CAP_WAITS_TOTAL, "listener" => listener).absolute(0);
        for reason in crate::transport::connections::CloseReason::ALL {
            counter!(CONNECTIONS_CLOSED_TOTAL, "listener" => listener, "reason" => reason.label())
                .absolute(0);
        }
    }
    for result in ["done", "retry"] {
        counter!(PUBLISH_OBJECT_TASKS_TOTAL, "result" => result).absolute(0);
    }
    for path in crate::middleware::METHODS {
        let method = crate::middleware::method_label(path);
        drop(histogram!(GRPC_REQUEST_DURATION_SECONDS, "method" => method, "code" => "OK"));
    }
    for route in HTTP_ROUTES {
        counter!(HTTP_REQUESTS_TOTAL, "route" => route, "status" => "200").absolute(0);
        drop(histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route));
    }
    for class in crate::admission::CallClass::ALL {
        for reason in crate::admission::ShedReason::ALL {
            counter!(REQUESTS_SHED_TOTAL, "class" => class.label(), "reason" => reason.label())
                .absolute(0);
        }
    }
}

/// Registers the help text and unit of every metric.
fn describe() {
    describe_counter!(
        UPLOADS_TOTAL,
        "Uploads of diagnosis keys (decoys included), by result"
    );
    describe_counter!(
        KEYS_INGESTED_TOTAL,
        "Diagnosis keys accepted (decoys' included), by scheme"
    );
    describe_histogram!(
        UPLOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Upload handling time (decoys included), durable write included"
    );
    describe_counter!(BATCHES_PUBLISHED_TOTAL, "Batches published, by kind");
    describe_counter!(
        GAEN_FILES_PUBLISHED_TOTAL,
        "Google/Apple export files published"
    );
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
        "Approximate size of the RocksDB table and blob files"
    );
    describe_gauge!(
        PENDING_KEYS,
        Unit::Count,
        "Keys not yet published, by state (releasable, embargoed)"
    );
    describe_counter!(UPLOAD_CODES_ISSUED_TOTAL, "Upload codes issued");
    describe_counter!(
        CODE_ATTEMPTS_REFUSED_TOTAL,
        "Code uploads refused after too many failed attempts"
    );
    describe_gauge!(
        PUBLISH_QUEUE_LENGTH,
        Unit::Count,
        "Object-storage tasks waiting in the outbox"
    );
    describe_gauge!(
        PUBLISH_QUEUE_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest object-storage task waiting in the outbox"
    );
    describe_counter!(
        PUBLISH_OBJECT_TASKS_TOTAL,
        "Object-storage task attempts by result (done, retry)"
    );
    describe_gauge!(
        PUBLISH_TASKS_FAILING,
        Unit::Count,
        "Queued object-storage tasks whose last attempt failed"
    );
    describe_gauge!(
        PUBLISH_TASK_FAILURES_MAX,
        Unit::Count,
        "Failed attempts of the queued object-storage task that failed most"
    );
    describe_gauge!(
        BACKUP_LAG_SECONDS,
        Unit::Seconds,
        "Seconds since the continuous backup last had every record of a tick in the bucket"
    );
    describe_gauge!(
        BACKUP_LAG_BYTES,
        Unit::Bytes,
        "Write-ahead log bytes read but not yet in the backup bucket"
    );
    describe_counter!(
        BACKUP_FAILURES_TOTAL,
        "Failed continuous-backup attempts, by stage (checkpoint, log, prune)"
    );
    describe_counter!(
        BACKUP_CHECKPOINTS_TOTAL,
        "Checkpoints written to the backup bucket"
    );
    describe_counter!(
        BACKUP_LOG_OBJECTS_TOTAL,
        "Write-ahead log objects written to the backup bucket"
    );
    describe_gauge!(
        TLS_CERTIFICATE_EXPIRY_SECONDS,
        Unit::Seconds,
        "Seconds until the served TLS certificate expires"
    );
    describe_counter!(
        TLS_RELOADS_TOTAL,
        "Changed TLS files reloaded or refused, by file and result"
    );
    describe_gauge!(
        STORE_WRITABLE,
        Unit::Count,
        "1 while the store accepts synced writes, 0 while they fail"
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "gRPC call latency until the end of the response stream, by method and final code"
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP listener requests, by route and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency until the headers are ready, by route"
    );
    describe_gauge!(
        BATCH_CACHE_BYTES,
        Unit::Bytes,
        "Batch files held in memory by the shared batch cache"
    );
    describe_counter!(
        REQUESTS_SHED_TOTAL,
        "gRPC calls refused with RESOURCE_EXHAUSTED by admission control, by class and reason (class_limit, connection_share, network_share)"
    );
    describe_gauge!(CONNECTIONS, Unit::Count, "Open connections, by listener");
    describe_counter!(
        CONNECTIONS_CLOSED_TOTAL,
        "Connections closed by a limit, by listener and reason"
    );
    describe_counter!(
        CONNECTION_CAP_WAITS_TOTAL,
        "Times a listener reached its connection cap, by listener"
    );
}

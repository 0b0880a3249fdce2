//! Health of the upload path: while the store cannot write (disk full, I/O errors), the
//! `exposure.v1.KeyUpload` service reports NOT_SERVING, so load balancers send uploads
//! elsewhere, while the phone API, which only reads, stays SERVING. A small synced write is
//! tried every second until one succeeds; the service is then SERVING again.

use std::time::Duration;

use exposure_proto::v1::key_upload_server::KeyUploadServer;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

use crate::ingest::service::KeyUploadService;
use crate::metrics;
use crate::storage::Store;

/// How often the store's writability is checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the upload service's health in step with the store until `cancel` fires.
pub async fn watch_store(store: Store, reporter: HealthReporter, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    let mut serving = true;
    ::metrics::gauge!(metrics::STORE_WRITABLE).set(1.0);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut writable = store.is_writable();
        if !writable {
            let probe = store.clone();
            writable = tokio::task::spawn_blocking(move || probe.probe_write().is_ok())
                .await
                .unwrap_or(false);
        }
        if writable == serving || cancel.is_cancelled() {
            continue;
        }
        serving = writable;
        ::metrics::gauge!(metrics::STORE_WRITABLE).set(if writable { 1.0 } else { 0.0 });
        if writable {
            tracing::info!("the store writes again; uploads are served");
            reporter
                .set_serving::<KeyUploadServer<KeyUploadService>>()
                .await;
        } else {
            tracing::warn!("the store cannot write; the upload service reports NOT_SERVING");
            reporter
                .set_not_serving::<KeyUploadServer<KeyUploadService>>()
                .await;
        }
    }
}

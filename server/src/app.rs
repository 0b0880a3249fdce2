//! Assembles the server: checks the settings, opens the store, loads the signing key and the
//! catalog, starts the ingest writer and the publisher, serves gRPC (and the HTTP mirror and the
//! staff console, when given listeners) on already-bound listeners, with TLS when configured,
//! until the shutdown future completes, then winds down in order (see [`run_with_tls`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use exposure_matcher::FingerprintWidth;
use exposure_proto::v1::distribution_server::DistributionServer;
use exposure_proto::v1::key_upload_server::KeyUploadServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

use crate::admission::{AdmissionLayer, AdmissionLimits};
use crate::batch_cache::BatchCache;
use crate::bucket::Bucket;
use crate::bucket::drain::Backoff;
use crate::bucket::sync::Syncer;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::distribution::DistributionService;
use crate::ingest::issue::CodeIssuer;
use crate::ingest::service::KeyUploadService;
use crate::ingest::writer::IngestWriter;
use crate::middleware::RequestMetricsLayer;
use crate::publisher::{PublishSettings, Publisher};
use crate::signing;
use crate::storage::Store;
use crate::storage::outbox::OutboxTask;
use crate::tls::ServerTls;
use crate::transport::connections::ListenerLimits;
use crate::transport::stream_deadline::StreamDeadline;

/// How long shutdown waits for the publisher to finish a run in progress.
const PUBLISHER_STOP_GRACE: Duration = Duration::from_secs(30);
/// Largest health-check or reflection request message: their fields are service and symbol
/// names, far below this.
pub const SMALL_MESSAGE_BYTES: usize = 16 * 1024;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or flushed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Signing(#[from] signing::SigningError),
    /// A setting is unusable (the binary exits with 64).
    #[error("{0}")]
    Config(String),
    /// TLS could not be set up (the binary exits with 64).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The gRPC transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The publisher could not be set up.
    #[error(transparent)]
    Publisher(#[from] crate::publisher::PublishError),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A listener could not be bound or its address read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A blocking task failed.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The listeners of a server, bound by the caller (`main.rs` binds the configured addresses;
/// tests bind port 0 and read the ports before starting).
pub struct Listeners {
    /// The gRPC API.
    pub grpc: TcpListener,
    /// The HTTP mirror of DESIGN.md section 10; `None` serves no HTTP.
    pub http: Option<TcpListener>,
    /// The staff console of DESIGN.md section 13; `None` serves no console.
    pub console: Option<TcpListener>,
}

impl From<crate::config::ConfigError> for ServerError {
    fn from(error: crate::config::ConfigError) -> Self {
        ServerError::Config(error.to_string())
    }
}

impl From<crate::datadir::DataDirError> for ServerError {
    fn from(error: crate::datadir::DataDirError) -> Self {
        ServerError::Config(error.to_string())
    }
}

impl ServerError {
    /// Returns whether the error is the operator's to fix in the flags (exit code 64).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ServerError::Config(_)
                | ServerError::Tls(_)
                | ServerError::Signing(signing::SigningError::Refused(_))
        )
    }
}

/// Runs the server with gRPC only on `listener` with the system clock until `shutdown`
/// completes.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_clock(listener, config, Clock::System, shutdown).await
}

/// Runs the server with gRPC only and a given clock (tests move a manual one).
pub async fn run_with_clock(
    listener: TcpListener,
    config: ServerConfig,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listeners = Listeners {
        grpc: listener,
        http: None,
        console: None,
    };
    run_listeners(listeners, config, clock, shutdown).await
}

/// Runs the server on `listeners` with a given clock, loading TLS from the configuration.
pub async fn run_listeners(
    listeners: Listeners,
    config: ServerConfig,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tls = match config.tls_files() {
        Some(files) => Some(ServerTls::load(&files)?),
        None => None,
    };
    run_with_tls(listeners, config, clock, tls, shutdown).await
}

/// Runs the server with TLS state already loaded (the binary shares it with the metrics
/// listener, so every listener serves the same reloading certificate).
///
/// Shutdown order: health turns NOT_SERVING, the listeners stop accepting, in-flight calls and
/// HTTP requests get `shutdown_grace` to finish, the publisher stops (a run in progress
/// completes or commits nothing), the ingest writer drains, and RocksDB is flushed.
pub async fn run_with_tls(
    listeners: Listeners,
    config: ServerConfig,
    clock: Clock,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Listeners {
        grpc: listener,
        http: http_listener,
        console: console_listener,
    } = listeners;
    config.validate()?;
    if let Some(tls) = &tls {
        tls.export_metrics();
    }
    config.check_exposure(
        "--grpc-addr",
        listener.local_addr().map_err(ServerError::Listener)?,
    )?;
    if let Some(http_listener) = &http_listener {
        config.check_exposure(
            "--http-addr",
            http_listener.local_addr().map_err(ServerError::Listener)?,
        )?;
    }
    if let Some(console_listener) = &console_listener {
        config.check_exposure(
            "--console-addr",
            console_listener
                .local_addr()
                .map_err(ServerError::Listener)?,
        )?;
    }
    let bucket = match &config.publish_to {
        Some(url) => Some(
            Bucket::open(url, &config.publish_options.options)
                .map_err(|error| ServerError::Config(error.to_string()))?,
        ),
        None => None,
    };
    let backup_bucket = match &config.backup_to {
        Some(url) => Some(Bucket::open(url, &config.backup_options).map_err(|error| {
            ServerError::Config(error.to_string().replace("--publish-to", "--backup-to"))
        })?),
        None => None,
    };
    let backup_key = config
        .backup_key_file
        .as_deref()
        .map(crate::backup::seal::read_key_file)
        .transpose()
        .map_err(ServerError::Config)?;
    let keep_wal = backup_bucket.is_some();
    let width = FingerprintWidth::from_bits(config.fingerprint_bits).ok_or_else(|| {
        ServerError::Config(format!(
            "fingerprint bits {} (use 8, 16 or 32)",
            config.fingerprint_bits
        ))
    })?;
    let data_dir = config.data_dir.clone();
    let signing_key = config.signing_key.clone();
    let default_gaen_version = config.gaen_key_version.clone();
    let now = clock.now();
    let (store, signer, next_key, catalog) =
        tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
            if crate::datadir::prepare(&data_dir)? == crate::datadir::DataDirState::New {
                tracing::warn!(data_dir = %data_dir.display(), "creating a new store at {}", data_dir.display());
            }
            let store = if keep_wal {
                Store::open_keeping_wal(&data_dir)?
            } else {
                Store::open(&data_dir)?
            };
            // No backup command can be waiting for a snapshot of a server that was not running.
            crate::backup::snapshot::clear_staging(&data_dir).map_err(crate::storage::StorageError::Io)?;
            let signer = signing::load_or_create(
                &store,
                &data_dir,
                signing_key.as_deref(),
                &default_gaen_version,
                now,
            )?;
            let next_key = signing::load_next(&store, &data_dir)?;
            let catalog = Catalog::load(&store)?;
            Ok((store, signer, next_key, catalog))
        })
        .await??;
    tracing::info!(data_dir = %config.data_dir.display(), key_id = signer.signer.key_id(),
        gaen_key_version = %signer.gaen_key_version, "store opened");
    if let Some(next) = &next_key {
        tracing::info!(next_key_id = next.key.signer.key_id(),
            gaen_key_version = %next.key.gaen_key_version, current_from = next.current_from,
            "a signing-key rotation is in its overlap: the next key signs GAEN exports too");
    }
    let keys = signing::KeyRing::with_keys(signing::InService {
        current: signer,
        next: next_key,
    });

    let (writer, writer_thread) = IngestWriter::start(store.clone())?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let settings = PublishSettings::from_config(&config, width);
    let mut publisher = Publisher::new(
        store.clone(),
        catalog.clone(),
        keys.clone(),
        clock.clone(),
        settings,
    )?
    .stop_on(cancel.clone());
    // Admin requests of `authority`, `signing-key` and `backup` commands (crate::inbox).
    let mut inbox = crate::inbox::Inbox::new(store.clone(), config.data_dir.clone())
        .with_keys(keys.clone())
        .with_clock(clock.clone());
    if let Some(bucket) = bucket {
        // Object storage (DESIGN.md section 10): whatever changed while the server was down
        // or publishing was off is caught up by a full sync queued at start; from then on
        // each commit queues its own tasks.
        let mut tasks = vec![OutboxTask::SigningKeys];
        tasks.extend(catalog.regions().into_iter().map(OutboxTask::SyncRegion));
        let queued = store.clone();
        let now = clock.now();
        tokio::task::spawn_blocking(move || {
            tasks.extend(queued.gaen_regions()?.into_iter().map(OutboxTask::SyncGaen));
            queued.enqueue_outbox(&tasks, now)
        })
        .await??;
        let wake = Arc::new(tokio::sync::Notify::new());
        let syncer = Syncer::new(
            bucket,
            store.clone(),
            catalog.clone(),
            clock.clone(),
            config.confirm_prefix_bits,
        );
        let backoff = Backoff {
            initial: config.publish_retry_initial,
            max: config.publish_retry_max,
        };
        tracker.spawn(crate::bucket::drain::run(
            Arc::new(syncer),
            store.clone(),
            clock.clone(),
            wake.clone(),
            backoff,
            cancel.clone(),
        ));
        inbox = inbox.with_outbox(wake.clone());
        publisher = publisher.with_outbox(wake);
    }
    if let Some(bucket) = backup_bucket {
        // Continuous backup (DESIGN.md section 15): a checkpoint now, then the log, on a thread
        // of its own.
        tracker.spawn(crate::backup::continuous::run_on_own_thread(
            crate::backup::continuous::Shipper {
                bucket,
                store: store.clone(),
                data_dir: config.data_dir.clone(),
                key: backup_key,
                full_interval: config.backup_full_interval,
                log_interval: config.backup_log_interval,
                keep: config.backup_keep as usize,
            },
            cancel.clone(),
        ));
    }
    let publisher = Arc::new(publisher);
    tracker.spawn(crate::publisher::run_periodically(
        publisher,
        config.publish_interval,
        cancel.clone(),
    ));
    tracker.spawn(inbox.run_periodically(cancel.clone()));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<KeyUploadServer<KeyUploadService>>()
        .await;
    health_reporter
        .set_serving::<DistributionServer<DistributionService>>()
        .await;
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    tracker.spawn(crate::health::watch_store(
        store.clone(),
        health_reporter.clone(),
        cancel.clone(),
    ));
    let batches = BatchCache::new(store.clone(), catalog.clone(), config.batch_cache_bytes);
    let http_task = http_listener.map(|http_listener| {
        let state = crate::http_mirror::HttpState {
            store: store.clone(),
            catalog: catalog.clone(),
            batches: batches.clone(),
            clock: clock.clone(),
            confirm_prefix_bits: config.confirm_prefix_bits,
        };
        let stop = cancel.clone();
        tokio::spawn(crate::http_mirror::serve(
            http_listener,
            state,
            tls.as_ref().map(|tls| tls.acceptor(crate::tls::ALPN_HTTP1)),
            ListenerLimits::http(&config),
            crate::http_mirror::ConnectionLifetime {
                lifetime: config.http_connection_lifetime,
                grace: config.shutdown_grace,
            },
            async move {
                stop.cancelled().await;
            },
        ))
    });

    // One code-issuing path (and one issue rate per authority) for gRPC and the console.
    let issuer = CodeIssuer::new(
        store.clone(),
        clock.clone(),
        config.authority_codes_per_minute,
    );
    let console_task = console_listener.map(|console_listener| {
        spawn_console(
            console_listener,
            crate::console::ConsoleState::new(
                store.clone(),
                clock.clone(),
                issuer.clone(),
                &config,
            ),
            &config,
            tls.as_ref(),
            cancel.clone(),
        )
    });

    // Health and reflection requests are a few bytes; a reflection stream lives no longer
    // than a request.
    let health_service = health_service.max_decoding_message_size(SMALL_MESSAGE_BYTES);
    let reflection_v1 = StreamDeadline::new(
        reflection_builder()
            .build_v1()?
            .max_decoding_message_size(SMALL_MESSAGE_BYTES),
        config.request_timeout,
    );
    let reflection_v1alpha = StreamDeadline::new(
        reflection_builder()
            .build_v1alpha()?
            .max_decoding_message_size(SMALL_MESSAGE_BYTES),
        config.request_timeout,
    );
    let writer_stop = writer.clone();
    let upload = KeyUploadServer::new(KeyUploadService::new(
        store.clone(),
        writer,
        clock,
        issuer,
        &config,
    ))
    .max_decoding_message_size(config.max_message_bytes);
    let needs_client_certificate = tls
        .as_ref()
        .is_some_and(ServerTls::checks_client_certificates);
    // Only token calls need the certificate: a patient's code upload and a decoy come from
    // phones, which have none.
    let upload = tonic::service::interceptor::InterceptedService::new(
        upload,
        move |request: tonic::Request<()>| {
            if needs_client_certificate && crate::ingest::service::claims_bearer_token(&request) {
                crate::tls::require_client_certificate(request)
            } else {
                Ok(request)
            }
        },
    );
    let distribution = DistributionServer::new(DistributionService::new(
        store.clone(),
        catalog,
        batches,
        config.confirm_prefix_bits,
    ))
    .max_decoding_message_size(config.max_message_bytes);

    let (stopping_sender, stopping) = tokio::sync::oneshot::channel::<()>();
    let stop_background = cancel.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        // Background work stops at once; in-flight calls get the grace period.
        stop_background.cancel();
        health_reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health_reporter
            .set_not_serving::<KeyUploadServer<KeyUploadService>>()
            .await;
        health_reporter
            .set_not_serving::<DistributionServer<DistributionService>>()
            .await;
        let _ = stopping_sender.send(());
    };
    let layers = ServiceBuilder::new()
        .layer(RequestMetricsLayer)
        .layer(AdmissionLayer::new(
            AdmissionLimits::from_config(&config),
            store.clone(),
        ));
    let serve = tonic::transport::Server::builder()
        .timeout(config.request_timeout)
        .max_concurrent_streams(config.max_streams_per_connection)
        // At the age tonic sends GOAWAY and lets the streams in flight finish. No
        // `max_connection_age_grace`: tonic 0.14 then sleeps age + grace and drops the
        // connection without any GOAWAY; the forced close after the grace is the listener's
        // (`ListenerLimits::max_age`).
        .max_connection_age(config.max_connection_age)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(upload)
        .add_service(distribution)
        .serve_with_incoming_shutdown(
            crate::tls::incoming(
                listener,
                tls.map(|tls| tls.acceptor(crate::tls::ALPN_GRPC)),
                ListenerLimits::grpc(&config),
            ),
            signal,
        );

    let grace = config.shutdown_grace;
    let grace_expired = async move {
        match stopping.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serve => served?,
        () = grace_expired => tracing::warn!(grace_seconds = grace.as_secs(), "in-flight calls did not finish within the grace period"),
    }

    cancel.cancel();
    futures::future::join_all(
        [http_task, console_task]
            .into_iter()
            .flatten()
            .map(|task| wait_listener(task, grace)),
    )
    .await;
    tracker.close();
    if tokio::time::timeout(PUBLISHER_STOP_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("publisher did not stop in time; its uncommitted run is discarded");
    }
    // The writer thread writes what is queued and ends, even while a connection that
    // outlived the grace (a stream that never ends) still holds a handle to it.
    writer_stop.stop().await;
    drop(writer_stop);
    tokio::task::spawn_blocking(move || {
        let _ = writer_thread.join();
        store.flush()
    })
    .await??;
    tracing::info!("stopped");
    Ok(())
}

/// A listener's serving task.
type ListenerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Starts serving the staff console on `listener` until `stop` is cancelled.
fn spawn_console(
    listener: TcpListener,
    state: crate::console::ConsoleState,
    config: &ServerConfig,
    tls: Option<&ServerTls>,
    stop: CancellationToken,
) -> ListenerTask {
    tokio::spawn(crate::console::serve(
        listener,
        Arc::new(state),
        tls.map(|tls| tls.acceptor(crate::tls::ALPN_HTTP1)),
        ListenerLimits::console(config),
        crate::transport::http1::ConnectionLifetime {
            lifetime: config.http_connection_lifetime,
            grace: config.shutdown_grace,
        },
        async move {
            stop.cancelled().await;
        },
    ))
}

/// Waits up to `grace` for an HTTP listener's requests in flight, then cuts them.
async fn wait_listener(mut task: ListenerTask, grace: Duration) {
    match tokio::time::timeout(grace, &mut task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "http listener failed"),
        Ok(Err(error)) => tracing::warn!(%error, "http listener task failed"),
        Err(_) => {
            tracing::warn!("http requests did not finish within the grace period");
            task.abort();
        }
    }
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(exposure_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

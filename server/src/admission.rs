//! Admission control of the gRPC listener. Calls fall into five classes, each with its own
//! concurrency limit, so that an anonymous flood of one kind can neither shed an authority's
//! uploads nor fail the liveness probe:
//!
//! | class | calls | settings |
//! |---|---|---|
//! | upload | `KeyUpload` calls whose bearer token verified (uploads, code issuing) | `--max-concurrent-uploads`, `--max-uploads-per-connection`, `--max-uploads-per-network` |
//! | code | `UploadDiagnosisKeys` with an upload code (patients' phones) | `--max-concurrent-code-uploads`, `--max-code-uploads-per-connection`, `--max-code-uploads-per-network` |
//! | decoy | `UploadDiagnosisKeys` marked `x-exposure-decoy: 1` | `--max-concurrent-decoys`, `--max-decoys-per-connection`, `--max-decoys-per-network` |
//! | health | `/grpc.health.v1.Health/*` | `--max-concurrent-health-requests`, `--max-health-requests-per-connection`, `--max-health-requests-per-network` |
//! | phone | everything else (Distribution, reflection, unknown paths) | `--max-concurrent-phone-requests`, `--max-phone-requests-per-connection`, `--max-phone-requests-per-network` |
//!
//! The class is chosen from the path and headers alone, before the request body is read: a
//! bearer token is verified first (a bad or missing credential on an upload path is answered
//! UNAUTHENTICATED at once and never holds a permit), so anonymous callers cannot fill the
//! authorities' class with stalled bodies, and decoys, which sleep, have their own class.
//!
//! Besides its class's limit, a call must fit its connection's share and its client network's
//! share of the class (a network is an IPv4 address or an IPv6 /64,
//! [`ClientNetwork`]), so one connection or one network never holds a whole class. A call
//! refused by any of the three is answered with RESOURCE_EXHAUSTED and counted in
//! `exposure_requests_shed_total{class, reason}`. Every refusal of this layer (a share, a
//! class limit, a bad credential), and every refusal a handler makes for what the client sent
//! (INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED, PERMISSION_DENIED, UNAUTHENTICATED: a
//! bad field, an oversized message, a wrong upload code, a spent budget) is answered `--refusal-delay` after it was decided,
//! without a permit ([`RefusalDelay`]), so a client that retries refusals in a loop cannot keep
//! the cores busy answering them.
//!
//! An admitted call keeps its permit until its response body is finished or dropped, not just
//! until the handler returns, and at most `--stream-timeout`: the deadline is checked on every
//! poll of the body, and a timer ends the body and gives the permit back even when hyper stops
//! polling it (a client that never opens its flow-control window). The stream then ends with
//! DEADLINE_EXCEEDED in its trailers as soon as the client reads again.

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::config::ServerConfig;
use crate::ingest::service::{self, Caller};
use crate::metrics;
use crate::storage::Store;
use crate::tls::PeerInfo;
use crate::transport::connections::ClientNetwork;
use crate::transport::refusal::RefusalDelay;

/// Most refusals waiting out `--refusal-delay` at once (each an open HTTP/2 stream and a
/// timer, about a kilobyte); later ones are answered at once.
pub const MAX_DELAYED_REFUSALS: usize = 16_384;

/// The upload method, whose caller decides its class.
const UPLOAD_PATH: &str = "/exposure.v1.KeyUpload/UploadDiagnosisKeys";
/// The code-issuing method, for bearer tokens only.
const ISSUE_PATH: &str = "/exposure.v1.KeyUpload/IssueUploadCodes";

/// The admission class of a call; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    /// Calls of health authorities whose bearer token verified.
    Upload,
    /// Patients' uploads with a one-time code.
    Code,
    /// Decoy uploads.
    Decoy,
    /// Anonymous phone calls and anything not recognised.
    Phone,
    /// Health checks.
    Health,
}

impl CallClass {
    /// Every class, in the order of the settings.
    pub const ALL: [CallClass; 5] = [
        CallClass::Upload,
        CallClass::Code,
        CallClass::Decoy,
        CallClass::Phone,
        CallClass::Health,
    ];

    /// Returns the metrics label of the class.
    pub fn label(self) -> &'static str {
        match self {
            CallClass::Upload => "upload",
            CallClass::Code => "code",
            // A decoy is labelled as the code upload it imitates: no figure on /metrics (nor
            // the text of a refusal) tells decoys from real uploads (DESIGN.md section 12).
            CallClass::Decoy => "code",
            CallClass::Phone => "phone",
            CallClass::Health => "health",
        }
    }
}

/// Why a call was refused admission (the `reason` label of `exposure_requests_shed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// Its class was at its limit.
    ClassLimit,
    /// Its connection held its share of the class.
    ConnectionShare,
    /// Its client network held its share of the class.
    NetworkShare,
}

impl ShedReason {
    /// Every reason.
    pub const ALL: [ShedReason; 3] = [
        ShedReason::ClassLimit,
        ShedReason::ConnectionShare,
        ShedReason::NetworkShare,
    ];

    /// Returns the metrics label.
    pub fn label(self) -> &'static str {
        match self {
            ShedReason::ClassLimit => "class_limit",
            ShedReason::ConnectionShare => "connection_share",
            ShedReason::NetworkShare => "network_share",
        }
    }
}

/// What the layer decides from a call's path and headers, before its body is read.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Admit into this class.
    Class(CallClass),
    /// Admit into the upload class once this bearer token verifies.
    Token(String),
    /// Answer UNAUTHENTICATED at once: an upload path without a usable credential.
    Unauthenticated,
}

/// Returns the route of a call from its path and headers.
fn route<B>(request: &http::Request<B>) -> Route {
    let path = request.uri().path();
    let headers = request.headers();
    if path.starts_with("/grpc.health.v1.Health/") {
        return Route::Class(CallClass::Health);
    }
    match path {
        UPLOAD_PATH => match service::caller(headers) {
            Caller::Decoy => Route::Class(CallClass::Decoy),
            Caller::Token(token) => Route::Token(token),
            Caller::Code => Route::Class(CallClass::Code),
            Caller::Anonymous => Route::Unauthenticated,
        },
        ISSUE_PATH => match service::bearer_token(headers) {
            Some(token) => Route::Token(token),
            None => Route::Unauthenticated,
        },
        _ => Route::Class(CallClass::Phone),
    }
}

/// The limits of one class: calls at once, in all, per connection and per client network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimits {
    /// Calls of the class at once.
    pub limit: usize,
    /// Calls of the class one connection may hold at once.
    pub per_connection: usize,
    /// Calls of the class one client network may hold at once.
    pub per_network: usize,
}

impl ClassLimits {
    /// Returns the limits of a class whose shares are the given ones, or the defaults no
    /// larger than the class.
    fn new(
        limit: usize,
        per_connection: Option<usize>,
        per_network: Option<usize>,
        defaults: (usize, usize),
    ) -> Self {
        Self {
            limit,
            per_connection: per_connection.unwrap_or(defaults.0.min(limit)),
            per_network: per_network.unwrap_or(defaults.1.min(limit)),
        }
    }
}

/// Default shares (per connection, per client network) of each class. An authority's backend
/// may multiplex a whole connection of uploads; a phone makes one or two calls at a time, but
/// a carrier NAT puts many phones behind one address; a probe makes one health call.
pub const DEFAULT_SHARES: [(CallClass, (usize, usize)); 5] = [
    (CallClass::Upload, (64, 256)),
    (CallClass::Code, (16, 64)),
    (CallClass::Decoy, (16, 64)),
    (CallClass::Phone, (64, 512)),
    (CallClass::Health, (4, 16)),
];

fn default_shares(class: CallClass) -> (usize, usize) {
    DEFAULT_SHARES
        .iter()
        .find(|(each, _)| *each == class)
        .map_or((1, 1), |(_, shares)| *shares)
}

/// The limits of every class and the longest a response body may stay open.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Authorities' calls.
    pub uploads: ClassLimits,
    /// Code uploads.
    pub codes: ClassLimits,
    /// Decoy uploads.
    pub decoys: ClassLimits,
    /// Phone calls.
    pub phones: ClassLimits,
    /// Health checks.
    pub health: ClassLimits,
    /// Longest a response body may stay open.
    pub stream_timeout: Duration,
    /// How long a refused call waits for its answer.
    pub refusal_delay: Duration,
}

impl AdmissionLimits {
    /// Returns the limits the settings give; a share not set is its default, or the class's
    /// limit when that is smaller.
    pub fn from_config(config: &ServerConfig) -> Self {
        let class = |class, limit, per_connection, per_network| {
            ClassLimits::new(limit, per_connection, per_network, default_shares(class))
        };
        Self {
            uploads: class(
                CallClass::Upload,
                config.max_concurrent_uploads,
                config.max_uploads_per_connection,
                config.max_uploads_per_network,
            ),
            codes: class(
                CallClass::Code,
                config.max_concurrent_code_uploads,
                config.max_code_uploads_per_connection,
                config.max_code_uploads_per_network,
            ),
            decoys: class(
                CallClass::Decoy,
                config.max_concurrent_decoys,
                config.max_decoys_per_connection,
                config.max_decoys_per_network,
            ),
            phones: class(
                CallClass::Phone,
                config.max_concurrent_phone_requests,
                config.max_phone_requests_per_connection,
                config.max_phone_requests_per_network,
            ),
            health: class(
                CallClass::Health,
                config.max_concurrent_health_requests,
                config.max_health_requests_per_connection,
                config.max_health_requests_per_network,
            ),
            stream_timeout: config.stream_timeout,
            refusal_delay: config.refusal_delay,
        }
    }

    /// Returns the limits of `class`.
    pub fn of(&self, class: CallClass) -> ClassLimits {
        match class {
            CallClass::Upload => self.uploads,
            CallClass::Code => self.codes,
            CallClass::Decoy => self.decoys,
            CallClass::Phone => self.phones,
            CallClass::Health => self.health,
        }
    }
}

/// Counts per key; a key leaves the map with its last count, so the map never holds more
/// entries than there are admitted calls.
#[derive(Debug)]
struct Tally<K>(HashMap<K, usize>);

impl<K: Hash + Eq> Tally<K> {
    fn new() -> Self {
        Self(HashMap::new())
    }

    fn count(&self, key: &K) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: K) {
        *self.0.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(count) = self.0.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.0.remove(key);
            }
        }
    }
}

/// Who holds a permit: the call's connection and client network, when known.
#[derive(Clone, Copy, Debug, Default)]
struct Holder {
    connection: Option<u64>,
    network: Option<ClientNetwork>,
}

impl Holder {
    fn of<B>(request: &http::Request<B>) -> Self {
        let peer = request.extensions().get::<PeerInfo>();
        Self {
            connection: peer.and_then(|peer| peer.connection),
            network: peer.and_then(|peer| peer.remote_ip).map(ClientNetwork::of),
        }
    }
}

/// The permits of one class and who holds them.
#[derive(Debug)]
struct Pool {
    class: CallClass,
    limits: ClassLimits,
    permits: Arc<Semaphore>,
    holders: Mutex<Holders>,
}

#[derive(Debug)]
struct Holders {
    connections: Tally<u64>,
    networks: Tally<ClientNetwork>,
}

impl Pool {
    fn new(class: CallClass, limits: ClassLimits) -> Arc<Self> {
        Arc::new(Self {
            class,
            limits,
            permits: Arc::new(Semaphore::new(limits.limit)),
            holders: Mutex::new(Holders {
                connections: Tally::new(),
                networks: Tally::new(),
            }),
        })
    }

    fn holders(&self) -> MutexGuard<'_, Holders> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a permit for `holder`, or says which limit refuses it (and counts that).
    fn admit(self: &Arc<Self>, holder: Holder) -> Result<ClassPermit, ShedReason> {
        let admitted = self.try_admit(holder);
        if let Err(reason) = admitted {
            ::metrics::counter!(metrics::REQUESTS_SHED_TOTAL,
                "class" => self.class.label(), "reason" => reason.label())
            .increment(1);
        }
        admitted
    }

    fn try_admit(self: &Arc<Self>, holder: Holder) -> Result<ClassPermit, ShedReason> {
        let mut holders = self.holders();
        if let Some(connection) = holder.connection
            && holders.connections.count(&connection) >= self.limits.per_connection
        {
            return Err(ShedReason::ConnectionShare);
        }
        if let Some(network) = holder.network
            && holders.networks.count(&network) >= self.limits.per_network
        {
            return Err(ShedReason::NetworkShare);
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ShedReason::ClassLimit)?;
        if let Some(connection) = holder.connection {
            holders.connections.add(connection);
        }
        if let Some(network) = holder.network {
            holders.networks.add(network);
        }
        Ok(ClassPermit {
            pool: self.clone(),
            holder,
            _permit: permit,
        })
    }
}

/// One admitted call's place in its class, given back when dropped.
#[derive(Debug)]
struct ClassPermit {
    pool: Arc<Pool>,
    holder: Holder,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ClassPermit {
    fn drop(&mut self) {
        let mut holders = self.pool.holders();
        if let Some(connection) = &self.holder.connection {
            holders.connections.remove(connection);
        }
        if let Some(network) = &self.holder.network {
            holders.networks.remove(network);
        }
    }
}

/// What every call of the layer shares.
struct Shared {
    pools: [Arc<Pool>; 5],
    /// Where bearer tokens are verified.
    store: Store,
    stream_timeout: Duration,
    /// Paces every refusal.
    refusals: RefusalDelay,
}

impl Shared {
    fn pool(&self, class: CallClass) -> &Arc<Pool> {
        let index = CallClass::ALL
            .iter()
            .position(|each| *each == class)
            .unwrap_or(0);
        &self.pools[index]
    }
}

/// Adds [`Admission`] around a service.
#[derive(Clone)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
}

impl AdmissionLayer {
    /// Returns the layer with one permit pool per class; bearer tokens are verified in `store`.
    pub fn new(limits: AdmissionLimits, store: Store) -> Self {
        let pools = CallClass::ALL.map(|class| Pool::new(class, limits.of(class)));
        Self {
            shared: Arc::new(Shared {
                pools,
                store,
                stream_timeout: limits.stream_timeout,
                refusals: RefusalDelay::new(limits.refusal_delay, MAX_DELAYED_REFUSALS),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Admits or sheds each call; see the module documentation.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Admission<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
    RequestBody: Send + 'static,
    ResponseBody: Body<Data = Bytes> + Send + 'static,
    ResponseBody::Error: Into<tower::BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let route = route(&request);
        let holder = Holder::of(&request);
        // The service that was polled ready serves this call; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let class = match route {
                Route::Class(class) => class,
                Route::Token(token) => match service::authenticate(&shared.store, token).await {
                    Ok(_) => CallClass::Upload,
                    Err(error) => {
                        shared.refusals.wait().await;
                        return Ok(refused_upload(&request, error.into()));
                    }
                },
                Route::Unauthenticated => {
                    shared.refusals.wait().await;
                    return Ok(refused_upload(
                        &request,
                        crate::error::ApiError::Unauthenticated.into(),
                    ));
                }
            };
            let permit = match shared.pool(class).admit(holder) {
                Ok(permit) => permit,
                Err(reason) => {
                    shared.refusals.wait().await;
                    let status = tonic::Status::resource_exhausted(match reason {
                        ShedReason::ClassLimit => {
                            format!("too many concurrent {} calls; retry later", class.label())
                        }
                        ShedReason::ConnectionShare | ShedReason::NetworkShare => format!(
                            "too many concurrent {} calls from this client; retry later",
                            class.label()
                        ),
                    });
                    return Ok(status.into_http());
                }
            };
            let response = inner.call(request).await.map_err(Into::into)?;
            if refused_for_the_caller(&response) {
                // The handler refused what the client sent (a bad field, a wrong code, a spent
                // budget): answered after the refusal delay too, the permit given back first.
                drop(permit);
                shared.refusals.wait().await;
                return Ok(response.map(tonic::body::Body::new));
            }
            let deadline = Instant::now() + shared.stream_timeout;
            Ok(response
                .map(|body| tonic::body::Body::new(AdmittedBody::new(body, permit, deadline))))
        })
    }
}

/// gRPC status codes that refuse a call for what its client sent or did: INVALID_ARGUMENT,
/// OUT_OF_RANGE (a message over its size limit), RESOURCE_EXHAUSTED, PERMISSION_DENIED,
/// UNAUTHENTICATED.
const CALLER_FAULTS: [tonic::Code; 5] = [
    tonic::Code::InvalidArgument,
    tonic::Code::OutOfRange,
    tonic::Code::ResourceExhausted,
    tonic::Code::PermissionDenied,
    tonic::Code::Unauthenticated,
];

/// Returns whether a handler's response is a refusal of the caller's making: a trailers-only
/// response (the status in its headers, no message) with one of [`CALLER_FAULTS`].
fn refused_for_the_caller<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .is_some_and(|code| CALLER_FAULTS.contains(&tonic::Code::from_i32(code)))
}

/// Answers a call refused before its body was read; an upload's refusal is counted as the
/// handler would have counted it.
fn refused_upload<B>(
    request: &http::Request<B>,
    status: tonic::Status,
) -> http::Response<tonic::body::Body> {
    if request.uri().path() == UPLOAD_PATH {
        let result = match status.code() {
            tonic::Code::Unauthenticated => "unauthenticated",
            _ => "error",
        };
        ::metrics::counter!(metrics::UPLOADS_TOTAL, "result" => result).increment(1);
        // As the upload service logs its refusals (the body, never read, is not in the line).
        tracing::info!(result, "upload refused");
    } else {
        tracing::debug!(code = ?status.code(), "call refused before its body was read");
    }
    status.into_http()
}

/// A response body that holds its call's permit until it ends, at the latest at its deadline.
struct AdmittedBody<B> {
    stream: Arc<Mutex<Admitted<B>>>,
    deadline: Instant,
    /// Ends the body at the deadline when nothing polls it; stopped when the body is dropped.
    timer: tokio::task::AbortHandle,
}

struct Admitted<B> {
    state: State<B>,
    /// The waker of the last poll that found the body pending, woken when the timer ends it.
    waker: Option<Waker>,
}

enum State<B> {
    /// Streaming, holding the permit.
    Open {
        body: Pin<Box<B>>,
        _permit: ClassPermit,
    },
    /// Past the deadline: the body and the permit are gone, the trailers not yet sent.
    Expired,
    /// Nothing more to send.
    Done,
}

impl<B: Send + 'static> AdmittedBody<B> {
    fn new(body: B, permit: ClassPermit, deadline: Instant) -> Self {
        let stream = Arc::new(Mutex::new(Admitted {
            state: State::Open {
                body: Box::pin(body),
                _permit: permit,
            },
            waker: None,
        }));
        let unheld = Arc::downgrade(&stream);
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(stream) = unheld.upgrade() {
                expire(&stream);
            }
        })
        .abort_handle();
        Self {
            stream,
            deadline,
            timer,
        }
    }
}

fn lock<B>(stream: &Mutex<Admitted<B>>) -> MutexGuard<'_, Admitted<B>> {
    stream.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ends an open body at its deadline: drops it and its permit, and wakes whoever polled it
/// last so that the trailers go out as soon as the connection can carry them.
fn expire<B>(stream: &Mutex<Admitted<B>>) {
    let mut admitted = lock(stream);
    if !matches!(admitted.state, State::Open { .. }) {
        return;
    }
    let open = std::mem::replace(&mut admitted.state, State::Expired);
    let waker = admitted.waker.take();
    drop(admitted);
    drop(open);
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn deadline_trailers() -> Frame<Bytes> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        http::HeaderValue::from(tonic::Code::DeadlineExceeded as i32),
    );
    trailers.insert(
        "grpc-message",
        http::HeaderValue::from_static("response stream exceeded its deadline"),
    );
    Frame::trailers(trailers)
}

impl<B> Body for AdmittedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let mut guard = lock(&this.stream);
        let admitted = &mut *guard;
        // Checked on every poll: a body whose frames are always ready never reaches the timer.
        if matches!(admitted.state, State::Open { .. }) && Instant::now() >= this.deadline {
            admitted.state = State::Expired;
        }
        let polled = match &mut admitted.state {
            State::Done => return Poll::Ready(None),
            State::Expired => {
                admitted.state = State::Done;
                return Poll::Ready(Some(Ok(deadline_trailers())));
            }
            State::Open { body, .. } => body.as_mut().poll_frame(context),
        };
        match polled {
            Poll::Pending => {
                match &mut admitted.waker {
                    Some(waker) => waker.clone_from(context.waker()),
                    None => admitted.waker = Some(context.waker().clone()),
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                admitted.state = State::Done;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                // The permit goes back with the body, at once.
                admitted.state = State::Done;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &lock(&self.stream).state {
            State::Open { body, .. } => body.is_end_stream(),
            State::Expired => false,
            State::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &lock(&self.stream).state {
            State::Open { body, .. } => body.size_hint(),
            State::Expired | State::Done => SizeHint::default(),
        }
    }
}

impl<B> Drop for AdmittedBody<B> {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&'static str, &'static str)]) -> http::Request<()> {
        let mut request = http::Request::post(path).body(()).expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, http::HeaderValue::from_static(value));
        }
        request
    }

    #[test]
    fn calls_fall_into_their_class_by_path_and_credential() {
        let class = |path, headers: &[(&'static str, &'static str)]| route(&request(path, headers));
        assert_eq!(
            class(UPLOAD_PATH, &[("authorization", "Bearer abc")]),
            Route::Token("abc".into())
        );
        assert_eq!(
            class(UPLOAD_PATH, &[("authorization", "UploadCode 23456-789AB")]),
            Route::Class(CallClass::Code)
        );
        // A decoy needs no credential, whatever it carries.
        assert_eq!(
            class(
                UPLOAD_PATH,
                &[("x-exposure-decoy", "1"), ("authorization", "Bearer abc")]
            ),
            Route::Class(CallClass::Decoy)
        );
        assert_eq!(class(UPLOAD_PATH, &[]), Route::Unauthenticated);
        assert_eq!(
            class(UPLOAD_PATH, &[("authorization", "UploadCode not-a-code")]),
            Route::Unauthenticated
        );
        assert_eq!(
            class(ISSUE_PATH, &[("authorization", "Bearer abc")]),
            Route::Token("abc".into())
        );
        // Issuing codes is for tokens only: a decoy mark does not make it anonymous.
        assert_eq!(
            class(ISSUE_PATH, &[("x-exposure-decoy", "1")]),
            Route::Unauthenticated
        );
        assert_eq!(
            class("/exposure.v1.Distribution/GetBatch", &[]),
            Route::Class(CallClass::Phone)
        );
        assert_eq!(
            class("/grpc.health.v1.Health/Watch", &[]),
            Route::Class(CallClass::Health)
        );
        assert_eq!(
            class(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                &[]
            ),
            Route::Class(CallClass::Phone)
        );
        assert_eq!(class("/no.such/Path", &[]), Route::Class(CallClass::Phone));
        // A prefix without the separator is not the upload service.
        assert_eq!(
            class(
                "/exposure.v1.KeyUploadX/UploadDiagnosisKeys",
                &[("authorization", "Bearer abc")]
            ),
            Route::Class(CallClass::Phone)
        );
    }

    fn holder(connection: u64, ip: &str) -> Holder {
        Holder {
            connection: Some(connection),
            network: Some(ClientNetwork::of(ip.parse().expect("address"))),
        }
    }

    #[test]
    fn a_connection_and_a_network_hold_only_their_share() {
        let pool = Pool::new(
            CallClass::Health,
            ClassLimits {
                limit: 5,
                per_connection: 2,
                per_network: 3,
            },
        );
        let first = pool.admit(holder(1, "10.0.0.1")).expect("first");
        let second = pool.admit(holder(1, "10.0.0.1")).expect("second");
        assert_eq!(
            pool.admit(holder(1, "10.0.0.1")).expect_err("third"),
            ShedReason::ConnectionShare
        );
        let other_connection = pool.admit(holder(2, "10.0.0.1")).expect("other connection");
        assert_eq!(
            pool.admit(holder(3, "10.0.0.1")).expect_err("network full"),
            ShedReason::NetworkShare
        );
        // Another address of the same IPv6 /64 is the same network; another /64 is not.
        let v6 = pool.admit(holder(4, "2001:db8::1")).expect("v6");
        let v6_again = pool.admit(holder(5, "2001:db8::2")).expect("v6 again");
        assert_eq!(
            pool.admit(holder(6, "2001:db8:0:1::1"))
                .expect_err("class full"),
            ShedReason::ClassLimit
        );
        drop(first);
        let after = pool
            .admit(holder(1, "10.0.0.1"))
            .expect("a share came back");
        drop((second, other_connection, v6, v6_again, after));
        let holders = pool.holders();
        assert!(holders.connections.0.is_empty() && holders.networks.0.is_empty());
        assert_eq!(pool.permits.available_permits(), 5);
    }

    #[test]
    fn unset_shares_are_the_defaults_no_larger_than_the_class() {
        let mut config = ServerConfig::with_data_dir("/tmp/x");
        config.max_concurrent_health_requests = 2;
        config.max_phone_requests_per_network = Some(100);
        let limits = AdmissionLimits::from_config(&config);
        assert_eq!(
            limits.health,
            ClassLimits {
                limit: 2,
                per_connection: 2,
                per_network: 2
            }
        );
        assert_eq!(
            limits.phones,
            ClassLimits {
                limit: 4096,
                per_connection: 64,
                per_network: 100
            }
        );
        assert_eq!(
            AdmissionLimits::from_config(&ServerConfig::with_data_dir("/tmp/x")).uploads,
            ClassLimits {
                limit: 512,
                per_connection: 64,
                per_network: 256
            }
        );
    }
}

//! Settings of a running server: every one is a command-line flag with an `EXPOSURE_*`
//! environment variable, and every default is the one DESIGN.md section 6 names, so
//! `exposure-server` with no flags starts a working deployment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// A listening address that may be turned off (`None`, from an empty value). An alias, so that
/// clap takes the whole option from [`parse_optional_addr`] rather than making the flag optional.
pub type OptionalAddr = Option<SocketAddr>;
mod validate;
pub use validate::{ConfigError, MIN_CONFIRM_PREFIX_BITS, registered_name};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// Everything `exposure-server serve` needs to run.
#[derive(Clone, Debug, Args)]
pub struct ServerConfig {
    /// Folder of the RocksDB database and the signing keys (kept private, mode 0700). A store
    /// is created only in a missing or empty folder; a non-empty folder without a store is
    /// refused, so a mistyped path does not start an empty database.
    #[arg(long, env = "EXPOSURE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address the gRPC API listens on. A non-loopback address needs --tls-cert/--tls-key
    /// (or --insecure-plaintext behind a TLS-terminating proxy).
    #[arg(long, env = "EXPOSURE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP mirror of the distribution API (DESIGN.md section 10), for phones
    /// and as a CDN's origin; an empty value turns it off.
    #[arg(long, env = "EXPOSURE_HTTP_ADDR", default_value = "127.0.0.1:8080",
          value_parser = parse_optional_addr)]
    pub http_addr: OptionalAddr,

    /// Address of the staff console (DESIGN.md section 13), where a health authority's staff
    /// issue upload codes in a browser; an empty value turns it off. Served with the same TLS
    /// as the other listeners; a non-loopback address needs TLS or --insecure-plaintext.
    #[arg(long, env = "EXPOSURE_CONSOLE_ADDR", default_value = "127.0.0.1:8081",
          value_parser = parse_optional_addr)]
    pub console_addr: OptionalAddr,

    /// Connections the console listener keeps open at once; at the cap new connections wait
    /// until one closes.
    #[arg(long, env = "EXPOSURE_MAX_CONSOLE_CONNECTIONS", default_value_t = 256)]
    pub max_console_connections: usize,

    /// Console login attempts one client network (an IPv4 address, an IPv6 /64; behind
    /// --trusted-proxies the client's) may make per hour (an hour's worth may come at once);
    /// past it the login page refuses attempts from that network until the budget refills.
    /// Each account is also locked after 5 failures in a row.
    #[arg(long, env = "EXPOSURE_CONSOLE_LOGINS_PER_NETWORK_PER_HOUR", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub console_logins_per_network_per_hour: u32,

    /// Console password checks (Argon2id, tens of milliseconds of one core each: every login
    /// attempt and enrolment) that run at once; more wait in line (16 per check, 5 s at most)
    /// or are answered "busy, try again" (503). Bounds the cores the console can take from
    /// uploads and polls, whatever arrives on its listener.
    #[arg(long, env = "EXPOSURE_CONSOLE_PASSWORD_CHECKS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub console_password_checks: u16,

    /// Upload codes one console account may issue per UTC day; past it the console refuses
    /// and says when the quota resets (midnight UTC). 0 turns the quota off.
    #[arg(
        long,
        env = "EXPOSURE_CONSOLE_CODES_PER_USER_PER_DAY",
        default_value_t = 200
    )]
    pub console_codes_per_user_per_day: u32,

    /// Upload codes the console accounts of one authority may issue per UTC day, all of them
    /// together (the authority's bearer token is not counted); past it the console refuses and
    /// says when the quota resets (midnight UTC). 0 turns the quota off.
    #[arg(
        long,
        env = "EXPOSURE_CONSOLE_CODES_PER_AUTHORITY_PER_DAY",
        default_value_t = 5000
    )]
    pub console_codes_per_authority_per_day: u32,

    /// Days the console's audit log keeps a record; older ones are deleted by retention.
    #[arg(long, env = "EXPOSURE_CONSOLE_AUDIT_RETENTION_DAYS", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub console_audit_retention_days: u32,

    /// The console's statistics show a count below this as "< N", so that small numbers of
    /// cases are not told.
    #[arg(long, env = "EXPOSURE_STATS_MIN_COUNT", default_value_t = 10)]
    pub stats_min_count: u64,

    /// What the QR code beside a code issued in the console holds: a link template with
    /// `{code}` where the code goes (an app's deep link, e.g.
    /// `https://app.example/upload?code={code}`). Unset: the QR code holds the code itself.
    #[arg(long, env = "EXPOSURE_CONSOLE_CODE_LINK")]
    pub console_code_link: Option<String>,

    /// Most bytes of batch files kept in memory, shared by every download (gRPC and HTTP).
    #[arg(long, env = "EXPOSURE_BATCH_CACHE_BYTES", default_value_t = crate::batch_cache::DEFAULT_CAPACITY_BYTES)]
    pub batch_cache_bytes: usize,

    /// Address of the Prometheus scrape endpoint (`/metrics`).
    /// Address of the Prometheus scrape endpoint (`/metrics`); served with the same TLS as
    /// gRPC, and bound to a non-loopback address only with TLS or --insecure-plaintext.
    #[arg(long, env = "EXPOSURE_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    /// PEM certificate chain (leaf first) served on the gRPC and metrics listeners. The file
    /// is re-read every few seconds: a renewed certificate is used without a restart.
    #[arg(long, env = "EXPOSURE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1), re-read with it.
    #[arg(long, env = "EXPOSURE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) of health authorities' client certificates. When set, calls with
    /// a bearer token (uploads, code issues) without a TLS client certificate signed by this
    /// CA are refused (UNAUTHENTICATED), in addition to the token; phones need none, for
    /// Distribution calls, code uploads and decoys alike.
    #[arg(long, env = "EXPOSURE_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,

    /// Serve plaintext on a non-loopback address; only behind a proxy that terminates TLS.
    #[arg(long, env = "EXPOSURE_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,

    /// How often the publisher releases an hourly batch (e.g. `1h`, `90m`, `1s`).
    #[arg(long, env = "EXPOSURE_PUBLISH_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub publish_interval: Duration,

    /// Embargo: a key is published this long after its last identifier stopped being broadcast.
    #[arg(long, env = "EXPOSURE_RELEASE_DELAY", default_value = "2h", value_parser = parse_duration)]
    pub release_delay: Duration,

    /// A region's publish run of fewer keys is padded with synthetic keys (DESIGN §14: random
    /// GAEN keys copying a real key's fields, in the filter, the confirm store and the GAEN
    /// export alike) up to this many plus a random 0..=--pad-jitter. 0 turns padding off.
    #[arg(long, env = "EXPOSURE_PAD_MIN_KEYS", default_value_t = 100)]
    pub pad_min_keys: u32,

    /// Upper bound of the uniform random number of keys added to --pad-min-keys each run, so
    /// the padded total itself does not say "fewer than the minimum".
    #[arg(long, env = "EXPOSURE_PAD_JITTER", default_value_t = 20)]
    pub pad_jitter: u32,

    /// Removed: padding is synthetic keys now (--pad-min-keys, --pad-jitter). Kept only so
    /// that an old deployment's setting stops the start with that explanation.
    #[arg(long, env = "EXPOSURE_MIN_ELEMENTS", hide = true)]
    pub min_elements: Option<String>,

    /// Fingerprint width of published filters: 8, 16 or 32 bits (false-positive rate 2^-bits).
    #[arg(long, env = "EXPOSURE_FINGERPRINT_BITS", default_value_t = 16, value_parser = parse_fingerprint_bits)]
    pub fingerprint_bits: u32,

    /// Bits of the confirm-digest prefix a phone sends to GetConfirmBucket (8..=24). Each
    /// bit fewer doubles the digests one request returns; below 8 a single request could
    /// return millions of digests, so 8 is the floor.
    #[arg(long, env = "EXPOSURE_CONFIRM_PREFIX_BITS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CONFIRM_PREFIX_BITS)..=24))]
    pub confirm_prefix_bits: u32,

    /// Keys, batches and confirm digests whose slots are older than this many days are deleted.
    #[arg(long, env = "EXPOSURE_RETENTION_DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=60))]
    pub retention_days: u32,

    /// Threads that expand keys and build filters; the default leaves one core to serving, so a
    /// large batch does not starve uploads and polls.
    #[arg(long, env = "EXPOSURE_PUBLISH_THREADS", default_value_t = default_publish_threads(),
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub publish_threads: u32,

    /// Most keys in one hourly batch; a larger backlog is published as several batches, each
    /// its own atomic commit, which bounds the size of one write.
    #[arg(long, env = "EXPOSURE_MAX_KEYS_PER_BATCH", default_value_t = 5_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_keys_per_batch: u32,

    /// Most filter elements (tags, before deduplication) in one batch, hourly or daily; a larger
    /// release is published as several batches of the same run, each its own atomic commit.
    /// The publisher takes keys until this budget is reached, so its memory is bounded by
    /// elements, not keys (about 40 bytes an element while a batch is built). At least 1,441
    /// (the most one key expands into) and at least --min-elements.
    #[arg(long, env = "EXPOSURE_MAX_ELEMENTS_PER_BATCH", default_value_t = 4_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_elements_per_batch: u64,

    /// Bluezone `sub_keys_per_day` values an upload may use (comma-separated); others are
    /// refused naming `keys[i].bluezone.sub_keys_per_day`. Each must divide 86,400 and be at
    /// most 1,440, so one key expands into at most 1,440 identifiers (the app uses 96).
    #[arg(long, env = "EXPOSURE_BLUEZONE_SUB_KEYS_PER_DAY", value_delimiter = ',',
          default_values_t = vec![crate::ingest::validate::DEFAULT_SUB_KEYS_PER_DAY])]
    pub bluezone_sub_keys_per_day: Vec<u32>,

    /// Also publish GAEN-scheme keys as Google/Apple export zips under
    /// `v1/regions/{region}/gaen/` (DESIGN §11); `false` publishes filter batches only.
    #[arg(long, env = "EXPOSURE_GAEN_EXPORT", default_value_t = true, action = clap::ArgAction::Set)]
    pub gaen_export: bool,

    /// `verification_key_id` of GAEN export files: the id the public key is registered under
    /// with Apple and Google, conventionally the mobile country code (Vietnam: 452).
    #[arg(long, env = "EXPOSURE_GAEN_KEY_ID", default_value = "452")]
    pub gaen_key_id: String,

    /// GAEN `verification_key_version` of a signing key that has none recorded yet: the first
    /// key, or one first given with --signing-key-file (the next free `vN` when another key has
    /// it). Each key keeps its own version, which its exports carry; `signing-key rotate` sets
    /// the new key's (`--gaen-key-version`, default the next `vN`).
    #[arg(long, env = "EXPOSURE_GAEN_KEY_VERSION", default_value = "v1")]
    pub gaen_key_version: String,

    /// Removed: GAEN files carry the run's synthetic keys (--pad-min-keys, --pad-jitter).
    /// Kept only so that an old deployment's setting stops the start with that explanation.
    #[arg(long, env = "EXPOSURE_GAEN_MIN_RECORDS", hide = true)]
    pub gaen_min_records: Option<String>,

    /// Most keys one upload may carry.
    #[arg(long, env = "EXPOSURE_MAX_KEYS_PER_UPLOAD", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_keys_per_upload: u32,

    /// How far back (days) a key may have been valid and still be accepted; at most
    /// --retention-days applies (14 with the defaults), since retention would delete an older
    /// key's digests in the very publish run that releases it, after it was acknowledged.
    #[arg(long, env = "EXPOSURE_MAX_KEY_AGE_DAYS", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..=60))]
    pub max_key_age_days: u32,

    /// Upload calls per minute one authority may make (a minute's worth may come at once);
    /// more are refused with RESOURCE_EXHAUSTED. `authority add --uploads-per-minute` sets
    /// another value for one authority. 0 turns the limit off.
    #[arg(
        long,
        env = "EXPOSURE_AUTHORITY_UPLOADS_PER_MINUTE",
        default_value_t = 600
    )]
    pub authority_uploads_per_minute: u32,

    /// New keys one authority may store per UTC day (Thái Bình's peak day was 17,220); an
    /// upload that would pass it stores nothing and gets RESOURCE_EXHAUSTED.
    /// `authority add --keys-per-day` sets another value for one authority. 0 turns it off.
    #[arg(
        long,
        env = "EXPOSURE_AUTHORITY_KEYS_PER_DAY",
        default_value_t = 100_000
    )]
    pub authority_keys_per_day: u64,

    /// Upload codes one authority may issue per minute (a minute's worth may come at once).
    /// 0 turns the limit off.
    #[arg(
        long,
        env = "EXPOSURE_AUTHORITY_CODES_PER_MINUTE",
        default_value_t = 300
    )]
    pub authority_codes_per_minute: u32,

    /// Failed upload-code attempts one client network (an IPv4 address, an IPv6 /64; behind
    /// --trusted-proxies the client's) may make per hour (an hour's worth may come at once);
    /// past it, its code uploads get RESOURCE_EXHAUSTED until the budget refills. A code has
    /// 50 bits, so this makes guessing hopeless.
    #[arg(long, env = "EXPOSURE_CODE_FAILURES_PER_CLIENT_PER_HOUR", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub code_failures_per_client_per_hour: u32,

    /// Failed upload-code attempts over all clients per minute (a distributed guesser); past
    /// it, code uploads from networks that failed an attempt in the last hour get
    /// RESOURCE_EXHAUSTED until the budget refills. A network with no failure in the last hour
    /// is never refused by it, so guessers cannot lock out patients.
    #[arg(long, env = "EXPOSURE_CODE_FAILURES_PER_MINUTE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub code_failures_per_minute: u32,

    /// Largest accepted request message, in bytes.
    #[arg(long, env = "EXPOSURE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Deadline of one request: a call not answered by then (or by the client's own shorter
    /// `grpc-timeout`) ends with CANCELLED, "Timeout expired". A response stream that has
    /// started is bounded by --stream-timeout instead.
    #[arg(long, env = "EXPOSURE_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Health authorities' calls (uploads and code issuing whose bearer token verified before
    /// the request body is read) handled at once; more are refused with RESOURCE_EXHAUSTED.
    /// Kept apart from every anonymous class, so phones never shed an authority's uploads.
    #[arg(long, env = "EXPOSURE_MAX_CONCURRENT_UPLOADS", default_value_t = 512)]
    pub max_concurrent_uploads: usize,

    /// Authorities' calls one connection may have in flight at once (its share of
    /// --max-concurrent-uploads). Default: 64, or --max-concurrent-uploads when smaller.
    #[arg(long, env = "EXPOSURE_MAX_UPLOADS_PER_CONNECTION")]
    pub max_uploads_per_connection: Option<usize>,

    /// Authorities' calls one client network (an IPv4 address, an IPv6 /64) may have in flight
    /// at once. Default: 256, or --max-concurrent-uploads when smaller.
    #[arg(long, env = "EXPOSURE_MAX_UPLOADS_PER_NETWORK")]
    pub max_uploads_per_network: Option<usize>,

    /// Patients' code uploads (`authorization: UploadCode ...`) handled at once, apart from
    /// the authorities' class; more are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "EXPOSURE_MAX_CONCURRENT_CODE_UPLOADS",
        default_value_t = 256
    )]
    pub max_concurrent_code_uploads: usize,

    /// Code uploads one connection may have in flight at once. Default: 16, or
    /// --max-concurrent-code-uploads when smaller.
    #[arg(long, env = "EXPOSURE_MAX_CODE_UPLOADS_PER_CONNECTION")]
    pub max_code_uploads_per_connection: Option<usize>,

    /// Code uploads one client network (an IPv4 address, an IPv6 /64) may have in flight at
    /// once. Default: 64, or --max-concurrent-code-uploads when smaller.
    #[arg(long, env = "EXPOSURE_MAX_CODE_UPLOADS_PER_NETWORK")]
    pub max_code_uploads_per_network: Option<usize>,

    /// Decoy uploads (`x-exposure-decoy: 1`, which wait like a real upload) handled at once,
    /// in a class of their own; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "EXPOSURE_MAX_CONCURRENT_DECOYS", default_value_t = 256)]
    pub max_concurrent_decoys: usize,

    /// Decoys one connection may have in flight at once. Default: 16, or
    /// --max-concurrent-decoys when smaller.
    #[arg(long, env = "EXPOSURE_MAX_DECOYS_PER_CONNECTION")]
    pub max_decoys_per_connection: Option<usize>,

    /// Decoys one client network (an IPv4 address, an IPv6 /64) may have in flight at once.
    /// Default: 64, or --max-concurrent-decoys when smaller.
    #[arg(long, env = "EXPOSURE_MAX_DECOYS_PER_NETWORK")]
    pub max_decoys_per_network: Option<usize>,

    /// Phone API calls (and any other anonymous call) handled at once, response streams
    /// included until they finish; more are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "EXPOSURE_MAX_CONCURRENT_PHONE_REQUESTS",
        default_value_t = 4096
    )]
    pub max_concurrent_phone_requests: usize,

    /// Phone calls one connection may have in flight at once, open download streams
    /// included. Default: 64, or --max-concurrent-phone-requests when smaller.
    #[arg(long, env = "EXPOSURE_MAX_PHONE_REQUESTS_PER_CONNECTION")]
    pub max_phone_requests_per_connection: Option<usize>,

    /// Phone calls one client network (an IPv4 address, an IPv6 /64; a carrier NAT puts many
    /// phones behind one) may have in flight at once. Default: 512, or
    /// --max-concurrent-phone-requests when smaller.
    #[arg(long, env = "EXPOSURE_MAX_PHONE_REQUESTS_PER_NETWORK")]
    pub max_phone_requests_per_network: Option<usize>,

    /// Health checks handled at once, apart from every other call so probes still answer
    /// under a flood.
    #[arg(
        long,
        env = "EXPOSURE_MAX_CONCURRENT_HEALTH_REQUESTS",
        default_value_t = 64
    )]
    pub max_concurrent_health_requests: usize,

    /// Health calls (a `Watch` stream included, until it ends) one connection may have in
    /// flight at once. Default: 4, or --max-concurrent-health-requests when smaller.
    #[arg(long, env = "EXPOSURE_MAX_HEALTH_REQUESTS_PER_CONNECTION")]
    pub max_health_requests_per_connection: Option<usize>,

    /// Health calls one client network (an IPv4 address, an IPv6 /64) may have in flight at
    /// once. Default: 16, or --max-concurrent-health-requests when smaller.
    #[arg(long, env = "EXPOSURE_MAX_HEALTH_REQUESTS_PER_NETWORK")]
    pub max_health_requests_per_network: Option<usize>,

    /// Connections the gRPC listener keeps open at once. At the cap new connections wait (in
    /// the kernel's listen backlog) until one closes. Default: half of what the descriptor limit
    /// (RLIMIT_NOFILE, raised to its hard limit at start) leaves after a reserve of max(1,024,
    /// limit/4) for RocksDB and files, between 64 and 32,768.
    #[arg(long, env = "EXPOSURE_MAX_GRPC_CONNECTIONS",
          default_value_t = crate::transport::connections::DerivedCaps::of_process().grpc)]
    pub max_grpc_connections: usize,

    /// Connections the HTTP mirror keeps open at once (each keep-alive connection holds one
    /// slot until it closes); at the cap new connections wait until one closes. Default: a
    /// quarter of what the descriptor limit leaves after the reserve, between 64 and 16,384.
    #[arg(long, env = "EXPOSURE_MAX_HTTP_CONNECTIONS",
          default_value_t = crate::transport::connections::DerivedCaps::of_process().http)]
    pub max_http_connections: usize,

    /// Connections the metrics listener keeps open at once.
    #[arg(long, env = "EXPOSURE_MAX_METRICS_CONNECTIONS", default_value_t = 64)]
    pub max_metrics_connections: usize,

    /// Connections one client network (an IPv4 address, an IPv6 /64) may hold open on each
    /// listener; more from it are closed at once. Default: a 32nd of the gRPC cap, between 64
    /// and 512. Behind a proxy in --trusted-proxies the network is the client's, from its
    /// PROXY header; behind any other proxy every connection comes from the proxy: raise it
    /// to the listener's cap there.
    #[arg(long, env = "EXPOSURE_MAX_CONNECTIONS_PER_NETWORK",
          default_value_t = crate::transport::connections::DerivedCaps::of_process().per_network)]
    pub max_connections_per_network: usize,

    /// Address ranges of the proxies or load balancers in front of the gRPC listener and the
    /// HTTP mirror (comma-separated CIDRs, e.g. `10.0.0.0/8,fd00::/8`; default none). A
    /// connection from inside them must start with a PROXY protocol v2 header (HAProxy
    /// `send-proxy-v2`, nginx `proxy_protocol on`, a load balancer's PROXY protocol setting);
    /// the client address it names then counts for --max-connections-per-network and the
    /// upload-code guessing limits. A header from any other peer is refused.
    #[arg(
        long,
        env = "EXPOSURE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<crate::transport::proxy_protocol::IpCidr>,

    /// Longest from accepting a connection until its TLS handshake is done and its first
    /// request bytes (the HTTP/2 preface on gRPC) have arrived; a client slower than this, or
    /// silent, is closed and frees its slot.
    #[arg(long, env = "EXPOSURE_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a client refused for exceeding its own share waits to hear it: a connection
    /// beyond its network's cap is held unread this long and then closed; a call beyond its
    /// connection's or network's share of a class, or with a bad credential, is answered this
    /// long after it arrived (most 16,384 at once). A client that retries refusals in a loop
    /// then runs at one try per stream per delay instead of as fast as the server answers.
    /// 0s answers at once.
    #[arg(long, env = "EXPOSURE_REFUSAL_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub refusal_delay: Duration,

    /// A response write that makes no progress for this long (the client stopped reading)
    /// closes the connection, on every listener.
    #[arg(long, env = "EXPOSURE_SEND_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_stall_timeout: Duration,

    /// An HTTP mirror connection takes no new request after this long; a response still
    /// being sent is cut --shutdown-grace later (batch downloads resume with Range).
    #[arg(long, env = "EXPOSURE_HTTP_CONNECTION_LIFETIME", default_value = "10m", value_parser = parse_duration)]
    pub http_connection_lifetime: Duration,

    /// File holding the bearer token a scraper of `/metrics` must send (Prometheus:
    /// `authorization: {credentials_file: ...}`), at least 16 printable characters. A
    /// non-loopback --metrics-addr needs it, or --client-ca (then a client certificate signed
    /// by that CA also admits a scrape).
    #[arg(long, env = "EXPOSURE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,

    /// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(
        long,
        env = "EXPOSURE_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 64
    )]
    pub max_streams_per_connection: u32,

    /// Longest a response stream (a batch download) may stay open; it then ends with
    /// DEADLINE_EXCEEDED. 5.6 MB at 50 kB/s takes two minutes.
    #[arg(long, env = "EXPOSURE_STREAM_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub stream_timeout: Duration,

    /// A connection is asked to close after this long (clients reconnect transparently) and
    /// is closed `--shutdown-grace` later, so a client that never reads cannot hold streams
    /// forever.
    #[arg(long, env = "EXPOSURE_MAX_CONNECTION_AGE", default_value = "30m", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// How long shutdown waits for in-flight requests before closing anyway.
    #[arg(long, env = "EXPOSURE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Also write the static layout (DESIGN.md section 10) to object storage: `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` or `file:///folder`. Credentials, region
    /// and endpoint come from the store's standard environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
    /// `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...). Off when unset.
    #[arg(long, env = "EXPOSURE_PUBLISH_TO")]
    pub publish_to: Option<String>,

    /// The object store's `--publish-option` settings.
    #[command(flatten)]
    pub publish_options: PublishOptions,

    /// First retry delay of a failed object-storage write; doubles on each failure.
    #[arg(long, env = "EXPOSURE_PUBLISH_RETRY_INITIAL", default_value = "1s", value_parser = parse_duration)]
    pub publish_retry_initial: Duration,

    /// Longest retry delay of a failed object-storage write.
    #[arg(long, env = "EXPOSURE_PUBLISH_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub publish_retry_max: Duration,

    /// Ships the store continuously to object storage (DESIGN.md section 15): a checkpoint at
    /// start and every `--backup-full-interval` (only files the bucket lacks are uploaded),
    /// and the write-ahead log's new records every `--backup-log-interval`. `s3://…`, `gs://…`,
    /// `az://…` or `file:///folder`, with credentials from the environment as for
    /// `--publish-to`. A private bucket, never the public one phones read. Off when unset.
    #[arg(long, value_name = "URL", env = "EXPOSURE_BACKUP_TO")]
    pub backup_to: Option<String>,

    /// A `key=value` setting of the backup's object store (repeatable), as `--publish-option`.
    #[arg(
        long = "backup-option",
        value_name = "KEY=VALUE",
        env = "EXPOSURE_BACKUP_OPTION",
        hide_env_values = true,
        value_delimiter = ',',
        requires = "backup_to"
    )]
    pub backup_options: Vec<String>,

    /// File of exactly 32 random bytes (`head -c 32 /dev/urandom`) that seals every backup
    /// object (XChaCha20-Poly1305). Without it backups hold no private signing keys.
    #[arg(long, value_name = "FILE", env = "EXPOSURE_BACKUP_KEY_FILE")]
    pub backup_key_file: Option<PathBuf>,

    /// How often `--backup-to` takes a new checkpoint (also after a gap in the log).
    #[arg(long, env = "EXPOSURE_BACKUP_FULL_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub backup_full_interval: Duration,

    /// How often `--backup-to` ships the write-ahead log's new records: about the most
    /// acknowledged uploads a lost machine loses.
    #[arg(long, env = "EXPOSURE_BACKUP_LOG_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub backup_log_interval: Duration,

    /// How many complete checkpoints `--backup-to` keeps in the bucket: after each new one,
    /// older checkpoints are deleted with their logs, and the files no kept checkpoint lists.
    /// `restore --at` reaches back to the oldest kept. At least 1.
    #[arg(long, env = "EXPOSURE_BACKUP_KEEP", default_value_t = 7)]
    pub backup_keep: u32,

    /// PKCS#8 PEM file of the P-256 key that signs batches, kept outside the data directory
    /// (a mounted secret, an HSM export), so it is never in a backup. Without it the key is
    /// generated into, and read from, `DATA_DIR/signing/`. `--signing-key` is the same flag.
    #[arg(
        long = "signing-key-file",
        visible_alias = "signing-key",
        env = "EXPOSURE_SIGNING_KEY"
    )]
    pub signing_key: Option<PathBuf>,

    /// Log line format.
    #[arg(long, env = "EXPOSURE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServerConfig {
    /// Returns the TLS files, when --tls-cert and --tls-key are given.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.client_ca.clone(),
        })
    }

    /// Returns the defaults of every setting with the data in `data_dir`, as tests and tools want.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: ServerConfig,
        }
        let mut config = <Defaults as clap::Parser>::parse_from(["exposure-server"]).config;
        config.data_dir = data_dir.into();
        config
    }

    /// Returns how far back (days) an accepted key may have been valid: `--max-key-age-days`,
    /// but never more than `--retention-days`, so every key acknowledged is still retained
    /// when it is published (a key that ended 14.5 days ago would otherwise be acknowledged,
    /// published and deleted by retention in one run).
    pub fn accepted_key_age_days(&self) -> u32 {
        self.max_key_age_days.min(self.retention_days)
    }

    /// Returns the retention window as a duration.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// Returns one thread fewer than the machine has cores, and at least one.
fn default_publish_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(cores.saturating_sub(1).max(1)).unwrap_or(1)
}

/// Accepts the fingerprint widths the batch format has: 8, 16 or 32 bits.
fn parse_fingerprint_bits(text: &str) -> Result<u32, String> {
    match text {
        "8" | "16" | "32" => Ok(text.parse().unwrap_or(16)),
        _ => Err(format!(
            "{text:?} is not a fingerprint width (use 8, 16 or 32)"
        )),
    }
}

/// Parses an address, or nothing for an empty value (the listener is off).
pub fn parse_optional_addr(text: &str) -> Result<OptionalAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("{text:?} is not an address (expected e.g. 127.0.0.1:8080, or empty to turn off)")
    })
}

/// Parses `1s`, `90m`, `2h`, `500ms` and the other humantime forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (expected e.g. 30s, 90m, 2h)"))
}

/// `--publish-option`, shared by the server and `publish-sync`, which open the same store.
#[derive(Clone, Debug, Default, Args)]
pub struct PublishOptions {
    /// A `key=value` setting of the object store, over its environment variable (repeatable),
    /// e.g. `aws_endpoint=http://minio:9000`. The environment variable takes several,
    /// comma-separated (`aws_endpoint=http://minio:9000,aws_allow_http=true`). Keep secrets in
    /// the store's own environment variables, not here.
    #[arg(
        long = "publish-option",
        value_name = "KEY=VALUE",
        env = "EXPOSURE_PUBLISH_OPTION",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let config = ServerConfig::with_data_dir("/tmp/x");
        assert_eq!(config.publish_interval, Duration::from_secs(3600));
        assert_eq!(config.release_delay, Duration::from_secs(7200));
        assert_eq!((config.pad_min_keys, config.pad_jitter), (100, 20));
        assert_eq!(
            (
                config.min_elements.as_ref(),
                config.gaen_min_records.as_ref()
            ),
            (None, None)
        );
        assert_eq!(config.fingerprint_bits, 16);
        assert_eq!(config.confirm_prefix_bits, 16);
        assert_eq!(config.retention_days, 14);
        assert_eq!(config.max_keys_per_upload, 30);
        assert_eq!(
            config.accepted_key_age_days(),
            14,
            "15 days asked, 14 retained"
        );
        assert_eq!(config.max_elements_per_batch, 4_000_000);
        assert_eq!(config.bluezone_sub_keys_per_day, vec![96]);
        assert_eq!(config.max_message_bytes, 65_536);
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(
            config.http_addr.map(|addr| addr.to_string()).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            config.console_addr.map(|addr| addr.to_string()).as_deref(),
            Some("127.0.0.1:8081")
        );
    }

    #[test]
    fn an_empty_http_address_turns_the_listener_off() {
        assert_eq!(parse_optional_addr(""), Ok(None));
        assert_eq!(
            parse_optional_addr("[::1]:80"),
            Ok(Some("[::1]:80".parse().expect("address")))
        );
        assert!(parse_optional_addr("localhost").is_err());
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: ServerConfig,
        }
        let off = <Cli as clap::Parser>::parse_from(["exposure-server", "--http-addr", ""]);
        assert_eq!(off.config.http_addr, None);
    }

    #[test]
    fn durations_parse_in_the_usual_forms() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
    }
}

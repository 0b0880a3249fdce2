//! Startup checks of the settings that clap's parsers cannot express: every zero that would
//! stall or crash the server (a zero publish interval panics the publisher's ticker), the
//! confirm-prefix floor, and TLS flags that only make sense together. `main` turns an error into
//! exit code 64 with a message naming the flag.

use std::net::SocketAddr;
use std::time::Duration;

use super::ServerConfig;

/// Smallest confirm-digest prefix: with fewer bits a GetConfirmBucket answer covers 1/128 or
/// more of all digests, which at national scale is millions of digests in one reply.
pub const MIN_CONFIRM_PREFIX_BITS: u32 = 8;

/// A setting that cannot run, naming its flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ConfigError {
    /// The flag at fault, e.g. `--publish-interval`.
    pub flag: &'static str,
    /// What is wrong and what to use instead.
    pub reason: String,
}

fn refuse(flag: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        flag,
        reason: reason.into(),
    })
}

fn positive_duration(flag: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return refuse(flag, "must be more than 0 (e.g. 10s)");
    }
    Ok(())
}

/// Longest `--refusal-delay` accepted.
const MAX_REFUSAL_DELAY: Duration = Duration::from_secs(60);

fn positive(flag: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return refuse(flag, "must be at least 1");
    }
    Ok(())
}

/// Longest GAEN verification key id or version accepted.
const MAX_REGISTERED_NAME: usize = 32;

/// Checks a GAEN `verification_key_id` or `_version`: phones compare it byte for byte with what
/// Apple and Google registered (an id is the mobile country code, e.g. `452`; a version `v1`),
/// so a stray space, quote or empty value would make every export file unverifiable. The
/// characters are the reference server's, `[A-Za-z0-9_]`.
pub fn registered_name(flag: &'static str, value: &str) -> Result<(), ConfigError> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    if value.is_empty() || value.len() > MAX_REGISTERED_NAME || !value.bytes().all(allowed) {
        return refuse(
            flag,
            format!(
                "must be 1 to {MAX_REGISTERED_NAME} letters, digits or '_', exactly as registered with Apple and Google (e.g. 452, v1)"
            ),
        );
    }
    Ok(())
}

/// Checks one admission class: a limit of at least 1, and shares of at least 1 and no larger
/// than the class (a share above it would never apply).
fn admission_class(
    limit: (&'static str, usize),
    shares: [(&'static str, Option<usize>); 2],
) -> Result<(), ConfigError> {
    positive(limit.0, limit.1 as u64)?;
    for (flag, share) in shares {
        let Some(share) = share else { continue };
        positive(flag, share as u64)?;
        if share > limit.1 {
            return refuse(
                flag,
                format!(
                    "{share} is more than the class's {} of {}: a share is at most its class",
                    limit.0, limit.1
                ),
            );
        }
    }
    Ok(())
}

impl ServerConfig {
    /// Checks the admission classes' limits and shares (`crate::admission`).
    fn check_admission(&self) -> Result<(), ConfigError> {
        admission_class(
            ("--max-concurrent-uploads", self.max_concurrent_uploads),
            [
                (
                    "--max-uploads-per-connection",
                    self.max_uploads_per_connection,
                ),
                ("--max-uploads-per-network", self.max_uploads_per_network),
            ],
        )?;
        admission_class(
            (
                "--max-concurrent-code-uploads",
                self.max_concurrent_code_uploads,
            ),
            [
                (
                    "--max-code-uploads-per-connection",
                    self.max_code_uploads_per_connection,
                ),
                (
                    "--max-code-uploads-per-network",
                    self.max_code_uploads_per_network,
                ),
            ],
        )?;
        admission_class(
            ("--max-concurrent-decoys", self.max_concurrent_decoys),
            [
                (
                    "--max-decoys-per-connection",
                    self.max_decoys_per_connection,
                ),
                ("--max-decoys-per-network", self.max_decoys_per_network),
            ],
        )?;
        admission_class(
            (
                "--max-concurrent-phone-requests",
                self.max_concurrent_phone_requests,
            ),
            [
                (
                    "--max-phone-requests-per-connection",
                    self.max_phone_requests_per_connection,
                ),
                (
                    "--max-phone-requests-per-network",
                    self.max_phone_requests_per_network,
                ),
            ],
        )?;
        admission_class(
            (
                "--max-concurrent-health-requests",
                self.max_concurrent_health_requests,
            ),
            [
                (
                    "--max-health-requests-per-connection",
                    self.max_health_requests_per_connection,
                ),
                (
                    "--max-health-requests-per-network",
                    self.max_health_requests_per_network,
                ),
            ],
        )
    }

    /// Checks every setting; returns the first that cannot run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_duration("--publish-interval", self.publish_interval)?;
        positive_duration("--backup-full-interval", self.backup_full_interval)?;
        positive_duration("--backup-log-interval", self.backup_log_interval)?;
        if self.backup_keep == 0 {
            refuse(
                "--backup-keep",
                "must be at least 1: the newest checkpoint is what a restore starts from",
            )?;
        }
        positive_duration("--request-timeout", self.request_timeout)?;
        positive_duration("--shutdown-grace", self.shutdown_grace)?;
        self.check_removed_padding_settings()?;
        positive("--max-message-bytes", self.max_message_bytes as u64)?;
        self.check_admission()?;
        positive(
            "--max-streams-per-connection",
            u64::from(self.max_streams_per_connection),
        )?;
        positive_duration("--stream-timeout", self.stream_timeout)?;
        positive("--max-grpc-connections", self.max_grpc_connections as u64)?;
        positive("--max-http-connections", self.max_http_connections as u64)?;
        positive(
            "--max-metrics-connections",
            self.max_metrics_connections as u64,
        )?;
        positive(
            "--max-connections-per-network",
            self.max_connections_per_network as u64,
        )?;
        positive_duration("--handshake-timeout", self.handshake_timeout)?;
        if self.refusal_delay > MAX_REFUSAL_DELAY {
            return refuse(
                "--refusal-delay",
                "must be at most 60s: a longer wait holds refused sockets and streams for nothing",
            );
        }
        if let Some(everyone) = self
            .trusted_proxies
            .iter()
            .find(|range| range.prefix() == 0)
        {
            return refuse(
                "--trusted-proxies",
                format!(
                    "{everyone} trusts every peer to name its own address (and every peer must then send a PROXY header): list only the proxies' ranges"
                ),
            );
        }
        positive_duration("--send-stall-timeout", self.send_stall_timeout)?;
        positive_duration("--http-connection-lifetime", self.http_connection_lifetime)?;
        // Plaintext on a public address is the more basic refusal, so it is named first.
        self.check_exposure("--grpc-addr", self.grpc_addr)?;
        self.check_exposure("--metrics-addr", self.metrics_addr)?;
        if let Some(http_addr) = self.http_addr {
            self.check_exposure("--http-addr", http_addr)?;
        }
        if let Some(console_addr) = self.console_addr {
            self.check_exposure("--console-addr", console_addr)?;
        }
        positive(
            "--max-console-connections",
            self.max_console_connections as u64,
        )?;
        if let Some(link) = &self.console_code_link
            && !link.contains("{code}")
        {
            return refuse(
                "--console-code-link",
                format!("{link:?} has no {{code}} where the code goes"),
            );
        }
        if !self.metrics_addr.ip().to_canonical().is_loopback()
            && self.metrics_token_file.is_none()
            && self.client_ca.is_none()
        {
            return refuse(
                "--metrics-addr",
                format!(
                    "{} is reachable from other hosts: give --metrics-token-file (a bearer token for the scraper) or --client-ca (client certificates)",
                    self.metrics_addr
                ),
            );
        }
        positive_duration("--max-connection-age", self.max_connection_age)?;
        positive("--max-keys-per-batch", u64::from(self.max_keys_per_batch))?;
        positive("--max-keys-per-upload", u64::from(self.max_keys_per_upload))?;
        self.check_element_bounds()?;
        positive("--publish-threads", u64::from(self.publish_threads))?;
        if !(MIN_CONFIRM_PREFIX_BITS..=24).contains(&self.confirm_prefix_bits) {
            return refuse(
                "--confirm-prefix-bits",
                format!(
                    "{} is outside {MIN_CONFIRM_PREFIX_BITS}..=24 (fewer bits make one request return millions of digests)",
                    self.confirm_prefix_bits
                ),
            );
        }
        if !matches!(self.fingerprint_bits, 8 | 16 | 32) {
            return refuse("--fingerprint-bits", "use 8, 16 or 32");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return refuse("--tls-key", "--tls-cert needs --tls-key"),
            (None, Some(_)) => return refuse("--tls-cert", "--tls-key needs --tls-cert"),
            _ => {}
        }
        registered_name("--gaen-key-id", &self.gaen_key_id)?;
        registered_name("--gaen-key-version", &self.gaen_key_version)?;
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return refuse(
                "--client-ca",
                "client certificates need TLS: give --tls-cert and --tls-key too",
            );
        }
        Ok(())
    }

    /// Checks the settings that bound how many elements one key, one upload and one batch
    /// hold (issue 18: one upload of 30 keys at one identifier a second was 2.59 M elements).
    fn check_element_bounds(&self) -> Result<(), ConfigError> {
        use crate::ingest::validate::{MAX_BLUEZONE_SUB_KEYS_PER_DAY, MAX_ELEMENTS_PER_KEY};
        const FLAG: &str = "--bluezone-sub-keys-per-day";
        if self.bluezone_sub_keys_per_day.is_empty() {
            return refuse(FLAG, "give at least one value (the app uses 96)");
        }
        for value in &self.bluezone_sub_keys_per_day {
            if *value == 0 || 86_400 % value != 0 || *value > MAX_BLUEZONE_SUB_KEYS_PER_DAY {
                return refuse(
                    FLAG,
                    format!(
                        "{value} is not a divisor of 86400 between 1 and {MAX_BLUEZONE_SUB_KEYS_PER_DAY} (the app uses 96)"
                    ),
                );
            }
        }
        if self.max_elements_per_batch < MAX_ELEMENTS_PER_KEY {
            return refuse(
                "--max-elements-per-batch",
                format!(
                    "must be at least {MAX_ELEMENTS_PER_KEY}, the most elements one key expands into"
                ),
            );
        }
        // Padding goes into one batch: the most synthetic keys (of at most 144 elements each)
        // must fit both of a batch's budgets.
        let most_padding = u64::from(self.pad_min_keys) + u64::from(self.pad_jitter);
        if most_padding > u64::from(self.max_keys_per_batch) {
            return refuse(
                "--pad-min-keys",
                format!(
                    "padding up to {most_padding} keys (with --pad-jitter) would pass --max-keys-per-batch {}",
                    self.max_keys_per_batch
                ),
            );
        }
        if most_padding * 144 > self.max_elements_per_batch {
            return refuse(
                "--pad-min-keys",
                format!(
                    "padding up to {most_padding} keys of 144 elements (with --pad-jitter) would pass --max-elements-per-batch {}",
                    self.max_elements_per_batch
                ),
            );
        }
        Ok(())
    }

    /// Refuses the padding settings that synthetic keys replaced, explaining what to use.
    fn check_removed_padding_settings(&self) -> Result<(), ConfigError> {
        if self.min_elements.is_some() {
            return refuse(
                "--min-elements",
                "was removed: random filter elements could be told from real ones (they have no confirm digest and no GAEN key); runs are padded with synthetic keys instead, set --pad-min-keys and --pad-jitter (DESIGN §14)",
            );
        }
        if self.gaen_min_records.is_some() {
            return refuse(
                "--gaen-min-records",
                "was removed: GAEN files carry the run's synthetic keys, which the filter batch and the confirm store hold too; set --pad-min-keys and --pad-jitter (DESIGN §14)",
            );
        }
        Ok(())
    }

    /// Refuses plaintext on an address other hosts can reach, unless TLS is configured or
    /// `--insecure-plaintext` says a TLS-terminating proxy is in front.
    pub fn check_exposure(&self, flag: &'static str, addr: SocketAddr) -> Result<(), ConfigError> {
        if addr.ip().to_canonical().is_loopback()
            || self.tls_cert.is_some()
            || self.insecure_plaintext
        {
            return Ok(());
        }
        refuse(
            flag,
            format!(
                "{addr} is reachable from other hosts, but no TLS is configured: give --tls-cert and --tls-key, \
                 or --insecure-plaintext when a TLS-terminating proxy is in front"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_name_their_flag() {
        let config = ServerConfig::with_data_dir("/tmp/x");
        assert_eq!(config.validate(), Ok(()));
        let mut zero_interval = config.clone();
        zero_interval.publish_interval = Duration::ZERO;
        assert_eq!(
            zero_interval.validate().map_err(|error| error.flag),
            Err("--publish-interval")
        );
        let mut low_prefix = config.clone();
        low_prefix.confirm_prefix_bits = 4;
        assert_eq!(
            low_prefix.validate().map_err(|error| error.flag),
            Err("--confirm-prefix-bits")
        );
        let mut no_concurrency = config.clone();
        no_concurrency.max_concurrent_phone_requests = 0;
        assert_eq!(
            no_concurrency.validate().map_err(|error| error.flag),
            Err("--max-concurrent-phone-requests")
        );
        // A share is 1 to its class's limit; an unset one follows a small class down.
        let mut small_class = config.clone();
        small_class.max_concurrent_health_requests = 2;
        assert_eq!(small_class.validate(), Ok(()));
        small_class.max_health_requests_per_connection = Some(3);
        assert_eq!(
            small_class.validate().map_err(|error| error.flag),
            Err("--max-health-requests-per-connection")
        );
        let mut wide_share = config.clone();
        wide_share.max_code_uploads_per_network = Some(257);
        let refused = wide_share.validate().expect_err("a share above its class");
        assert_eq!(refused.flag, "--max-code-uploads-per-network");
        assert!(
            refused
                .reason
                .contains("--max-concurrent-code-uploads of 256"),
            "{refused}"
        );
        let mut zero_share = config.clone();
        zero_share.max_decoys_per_connection = Some(0);
        assert_eq!(
            zero_share.validate().map_err(|error| error.flag),
            Err("--max-decoys-per-connection")
        );
        for (id, version, flag) in [
            ("", "v1", "--gaen-key-id"),
            ("452 ", "v1", "--gaen-key-id"),
            ("452", "v\"1", "--gaen-key-version"),
            ("452", &"v".repeat(33), "--gaen-key-version"),
        ] {
            let mut gaen = config.clone();
            gaen.gaen_key_id = id.to_owned();
            gaen.gaen_key_version = version.to_owned();
            assert_eq!(
                gaen.validate().map_err(|error| error.flag),
                Err(flag),
                "{id:?} {version:?}"
            );
        }
        for (sub_keys, flag) in [
            (vec![], "--bluezone-sub-keys-per-day"),
            (vec![96, 0], "--bluezone-sub-keys-per-day"),
            (vec![7], "--bluezone-sub-keys-per-day"),
            (vec![86_400], "--bluezone-sub-keys-per-day"),
        ] {
            let mut bluezone = config.clone();
            bluezone.bluezone_sub_keys_per_day = sub_keys.clone();
            assert_eq!(
                bluezone.validate().map_err(|error| error.flag),
                Err(flag),
                "{sub_keys:?}"
            );
        }
        let mut allowed = config.clone();
        allowed.bluezone_sub_keys_per_day = vec![96, 1440, 48];
        assert_eq!(allowed.validate(), Ok(()));
        let mut tiny_batches = config.clone();
        tiny_batches.max_elements_per_batch = 1440;
        assert_eq!(
            tiny_batches.validate().map_err(|error| error.flag),
            Err("--max-elements-per-batch")
        );
        tiny_batches.max_elements_per_batch = 17_000;
        assert_eq!(
            tiny_batches.validate().map_err(|error| error.flag),
            Err("--pad-min-keys"),
            "the default padding of up to 120 keys of 144 elements would pass a cap of 17,000"
        );
        let mut few_keys = config.clone();
        few_keys.max_keys_per_batch = 119;
        assert_eq!(
            few_keys.validate().map_err(|error| error.flag),
            Err("--pad-min-keys"),
            "the default padding of up to 120 keys would pass a cap of 119"
        );
        let mut old_elements = config.clone();
        old_elements.min_elements = Some("10000".to_owned());
        let mut old_records = config.clone();
        old_records.gaen_min_records = Some("1000".to_owned());
        for (old, flag) in [
            (old_elements, "--min-elements"),
            (old_records, "--gaen-min-records"),
        ] {
            let refused = old.validate().expect_err(flag);
            assert_eq!(refused.flag, flag);
            assert!(refused.reason.contains("--pad-min-keys"), "{refused}");
        }
        let mut registered = config;
        registered.gaen_key_id = "310".to_owned();
        registered.gaen_key_version = "v2_1".to_owned();
        assert_eq!(registered.validate(), Ok(()));
        // The reference server's character set: no '.', '-' or anything else.
        for version in ["v2.1", "v-2", "vé"] {
            let mut refused = registered.clone();
            refused.gaen_key_version = version.to_owned();
            assert_eq!(
                refused.validate().map_err(|error| error.flag),
                Err("--gaen-key-version"),
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_public_metrics_address_needs_a_token_or_client_certificates() {
        let mut config = ServerConfig::with_data_dir("/tmp/x");
        config.metrics_addr = "0.0.0.0:9090".parse().expect("addr");
        config.insecure_plaintext = true;
        assert_eq!(
            config.validate().map_err(|error| error.flag),
            Err("--metrics-addr")
        );
        let mut with_token = config.clone();
        with_token.metrics_token_file = Some("/run/secrets/metrics-token".into());
        assert_eq!(with_token.validate(), Ok(()));
        let mut with_client_ca = config;
        with_client_ca.tls_cert = Some("/tls/cert.pem".into());
        with_client_ca.tls_key = Some("/tls/key.pem".into());
        with_client_ca.client_ca = Some("/tls/ca.pem".into());
        assert_eq!(with_client_ca.validate(), Ok(()));
    }

    #[test]
    fn trusted_proxies_are_ranges_but_never_everyone() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: ServerConfig,
        }
        let parse = |value: &str| {
            <Cli as clap::Parser>::try_parse_from(["exposure-server", "--trusted-proxies", value])
                .map(|cli| cli.config)
        };
        let config = parse("10.0.0.0/8,fd00::/8").expect("two ranges");
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.validate(), Ok(()));
        let error = parse("10.0.0.1/8").expect_err("host bits set").to_string();
        assert!(error.contains("--trusted-proxies"), "{error}");
        assert!(error.contains("10.0.0.0/8"), "{error}");
        for everyone in ["0.0.0.0/0", "::/0"] {
            assert_eq!(
                parse(everyone)
                    .expect("parses")
                    .validate()
                    .map_err(|error| error.flag),
                Err("--trusted-proxies"),
                "{everyone}"
            );
        }
        assert!(
            ServerConfig::with_data_dir("/tmp/x")
                .trusted_proxies
                .is_empty(),
            "no proxy is trusted by default"
        );
    }

    #[test]
    fn plaintext_is_loopback_only_unless_told() {
        let mut config = ServerConfig::with_data_dir("/tmp/x");
        let open: SocketAddr = "0.0.0.0:50051".parse().expect("addr");
        let local: SocketAddr = "[::1]:50051".parse().expect("addr");
        assert!(config.check_exposure("--grpc-addr", local).is_ok());
        assert_eq!(
            config
                .check_exposure("--grpc-addr", open)
                .map_err(|error| error.flag),
            Err("--grpc-addr")
        );
        config.insecure_plaintext = true;
        assert!(config.check_exposure("--grpc-addr", open).is_ok());
    }
}

//! The server a tool talks to: a validated gRPC URL, its TLS settings, and the loopback guard.
//!
//! Shared by the staff CLI (`--server`) and the load test (`--target`, re-exported as
//! `exposure_loadtest::target`). A load test aimed at the wrong host is a denial-of-service
//! attack, so the load test refuses a host that is not a loopback address (`127.0.0.0/8`, `::1`,
//! `localhost`) unless `--allow-remote` is given; the staff CLI talks to production servers and
//! parses with `allow_remote` set.
//!
//! An `https://` target is reached over TLS and needs the CA certificate that signed the
//! server's certificate (`--ca-cert`); neither tool carries a public root store.

use std::fmt;
use std::net::IpAddr;

use tonic::transport::Uri;

/// The target used when `--target` is not given.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:50051";

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The text is not a URL with a host.
    #[error("invalid target {0:?}: expected a URL such as {DEFAULT_TARGET}")]
    Invalid(String),
    /// The scheme is neither `http` nor `https`.
    #[error("unsupported scheme {0:?}: use http:// or https://")]
    UnsupportedScheme(String),
    /// An `https` target without `--ca-cert`, or `--ca-cert` with an `http` target.
    #[error("--ca-cert: {0}")]
    CaCertificate(&'static str),
    /// The `--ca-cert` file cannot be read.
    #[error("--ca-cert {path}: {reason}")]
    CaCertificateFile {
        /// The file named by `--ca-cert`.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The host is not loopback and `--allow-remote` was not given.
    #[error("refusing to load-test non-loopback host {0:?}: pass --allow-remote if you own it")]
    NotLoopback(String),
}

/// A validated gRPC target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    uri: Uri,
    host: String,
    ca_pem: Option<Vec<u8>>,
}

impl Target {
    /// Parses `text` (`http://host:port`, or `host:port`, read as `http://host:port`) and refuses a
    /// non-loopback host unless `allow_remote` is true.
    pub fn parse(text: &str, allow_remote: bool) -> Result<Self, TargetError> {
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| TargetError::Invalid(text.to_owned()))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err(TargetError::UnsupportedScheme(scheme.to_owned()));
        }
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| TargetError::Invalid(text.to_owned()))?;
        let host = host.to_owned();
        if !allow_remote && !is_loopback_host(&host) {
            return Err(TargetError::NotLoopback(host));
        }
        Ok(Target {
            uri,
            host,
            ca_pem: None,
        })
    }

    /// Attaches the CA certificate (PEM) that an `https` target's certificate must chain to;
    /// an `https` target needs one and an `http` target takes none.
    pub fn with_ca_cert(mut self, ca_pem: Option<Vec<u8>>) -> Result<Self, TargetError> {
        match (self.is_tls(), ca_pem.is_some()) {
            (true, false) => Err(TargetError::CaCertificate(
                "an https:// target needs the CA certificate that signed the server's certificate",
            )),
            (false, true) => Err(TargetError::CaCertificate(
                "only an https:// target uses a CA certificate",
            )),
            _ => {
                self.ca_pem = ca_pem;
                Ok(self)
            }
        }
    }

    /// Parses `text` as [`Target::parse`] does and reads the CA certificate (PEM) at `ca_cert`,
    /// which an `https` target needs and an `http` target takes none of: what `--ca-cert` means
    /// for both tools.
    pub fn parse_with_ca_file(
        text: &str,
        allow_remote: bool,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, TargetError> {
        let target = Target::parse(text, allow_remote)?;
        let ca_pem = ca_cert
            .map(|path| {
                std::fs::read(path).map_err(|error| TargetError::CaCertificateFile {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })
            })
            .transpose()?;
        target.with_ca_cert(ca_pem)
    }

    /// Returns whether the target is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// Returns the tonic endpoint of the target, with TLS set up for an `https` target.
    pub fn endpoint(&self) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        let endpoint = tonic::transport::Endpoint::from(self.uri.clone());
        match &self.ca_pem {
            Some(ca_pem) => endpoint.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem)),
            ),
            None => Ok(endpoint),
        }
    }

    /// Returns the URL as tonic's `Endpoint` takes it.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Returns the host part (an IPv6 address keeps its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for Target {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Uri` prints a trailing `/` for an empty path; operators typed none.
        let text = self.uri.to_string();
        formatter.write_str(text.strip_suffix('/').unwrap_or(&text))
    }
}

/// Returns true when `host` names this machine: `localhost`, an address in `127.0.0.0/8`, or
/// `::1` (also IPv4-mapped loopback such as `::ffff:127.0.0.1`).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(address) => address.to_canonical().is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "128.0.0.1",
            "example.com",
            "localhost.example.com",
            "[::2]",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn default_target_is_accepted() {
        let target = Target::parse(DEFAULT_TARGET, false).expect("default target");
        assert_eq!(target.to_string(), DEFAULT_TARGET);
        assert_eq!(target.host(), "127.0.0.1");
    }

    #[test]
    fn bare_host_port_reads_as_http() {
        let target = Target::parse("localhost:8080", false).expect("bare target");
        assert_eq!(target.to_string(), "http://localhost:8080");
        assert_eq!(
            Target::parse("[::1]:50051", false).expect("ipv6").host(),
            "[::1]"
        );
    }

    #[test]
    fn remote_target_needs_allow_remote() {
        assert_eq!(
            Target::parse("http://10.1.2.3:50051", false),
            Err(TargetError::NotLoopback("10.1.2.3".to_owned()))
        );
        assert!(Target::parse("http://10.1.2.3:50051", true).is_ok());
        assert!(matches!(
            Target::parse("grpc.example.org:443", false),
            Err(TargetError::NotLoopback(_))
        ));
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert!(matches!(
            Target::parse("ftp://127.0.0.1:443", true),
            Err(TargetError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Target::parse("http://", true),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            Target::parse("not a url", true),
            Err(TargetError::Invalid(_))
        ));
    }

    #[test]
    fn https_needs_a_ca_certificate_and_http_takes_none() {
        let https = Target::parse("https://localhost:50051", false).expect("https");
        assert!(https.is_tls());
        assert!(matches!(
            https.clone().with_ca_cert(None),
            Err(TargetError::CaCertificate(_))
        ));
        assert!(https.with_ca_cert(Some(b"PEM".to_vec())).is_ok());
        let http = Target::parse(DEFAULT_TARGET, false).expect("http");
        assert!(matches!(
            http.with_ca_cert(Some(b"PEM".to_vec())),
            Err(TargetError::CaCertificate(_))
        ));
    }
}

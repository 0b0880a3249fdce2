//! TLS for every listener of the server (gRPC, metrics, and any other `TcpListener` through
//! [`incoming`]): rustls with the ring provider, a certificate that is reloaded from disk when
//! its files change (see [`reload`]), and optional client certificates checked against
//! `--client-ca`. A client certificate is requested but not required at the handshake, so phones
//! connect without one; the upload service then refuses calls that did not present one (see
//! [`require_client_certificate`]).

mod incoming;
pub mod reload;
mod validity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub use incoming::{PeerInfo, ServerIo, incoming, require_client_certificate};
use reload::{ReloadingCertificate, ReloadingClientCa};

/// Largest PEM file read (a certificate chain with its key is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// ALPN protocols of the gRPC listener.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN protocols of a plain HTTP/1.1 listener such as `/metrics`.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material.
    #[error("{flag}: {reason}")]
    Invalid {
        /// The flag whose file is at fault.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// The certificate's validity period is over.
    #[error("{flag}: the certificate expired (notAfter {not_after}, Unix seconds)")]
    Expired {
        /// The flag whose file is at fault.
        flag: &'static str,
        /// Its `notAfter`.
        not_after: i64,
    },
    /// The certificate's validity period has not begun.
    #[error("{flag}: the certificate is not valid yet (notBefore {not_before}, Unix seconds)")]
    NotYetValid {
        /// The flag whose file is at fault.
        flag: &'static str,
        /// Its `notBefore`.
        not_before: i64,
    },
}

/// Where the TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificates that sign upload clients' certificates (`--client-ca`).
    pub client_ca: Option<PathBuf>,
}

/// The server's TLS state, shared by all its listeners: one reloading certificate and one
/// reloading client verifier. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct ServerTls {
    certificate: Arc<ReloadingCertificate>,
    client_verifier: Option<Arc<ReloadingClientCa>>,
}

impl ServerTls {
    /// Loads the certificate, key and client CA. They are then watched for changes by a task
    /// on the current tokio runtime, for as long as this value (or a clone) lives.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let certificate = Arc::new(ReloadingCertificate::load(&files.cert, &files.key)?);
        let client_verifier = match &files.client_ca {
            None => None,
            Some(path) => Some(Arc::new(ReloadingClientCa::load(path)?)),
        };
        reload::watch(&certificate, client_verifier.clone());
        Ok(Self {
            certificate,
            client_verifier,
        })
    }

    /// Creates the TLS metrics (the reload counts at zero, the certificate's expiry); call once
    /// the metrics recorder is installed.
    pub fn export_metrics(&self) {
        reload::register_at_zero(&self.certificate, self.client_verifier.is_some());
    }

    /// Returns whether client certificates are checked (`--client-ca` was given).
    pub fn checks_client_certificates(&self) -> bool {
        self.client_verifier.is_some()
    }

    /// Returns an acceptor offering `alpn` (e.g. [`ALPN_GRPC`]).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        let builder = match &self.client_verifier {
            Some(verifier) => {
                builder.with_client_cert_verifier(verifier.clone() as Arc<dyn ClientCertVerifier>)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.certificate.clone());
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// The crypto provider every TLS object of the server uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file, bounded in size, following a symbolic link (certificate managers keep
/// the live files as links).
pub(crate) fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::files::read_regular(
        path,
        crate::files::ReadRules {
            limit: MAX_PEM_BYTES,
            follow_symlinks: true,
            own_only: false,
        },
    )
    .map_err(|error| TlsError::File {
        flag,
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Parses every certificate of a PEM text.
pub(crate) fn parse_certificates(
    flag: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Invalid {
            flag,
            reason: format!("bad PEM certificate: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Invalid {
            flag,
            reason: "no CERTIFICATE block in the file".into(),
        });
    }
    Ok(certificates)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM text.
pub(crate) fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| TlsError::Invalid {
        flag: "--tls-key",
        reason: format!("no usable PEM private key: {error}"),
    })
}

/// Returns a verifier of client certificates signed by the CAs of the `--client-ca` PEM text.
fn client_verifier(pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in parse_certificates("--client-ca", pem)? {
        roots.add(certificate).map_err(|error| TlsError::Invalid {
            flag: "--client-ca",
            reason: error.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Invalid {
            flag: "--client-ca",
            reason: error.to_string(),
        })
}

//! TLS material reloaded without a restart: a task reads `--tls-cert` and `--tls-key` (and
//! `--client-ca`) every [`RELOAD_INTERVAL`] and, when their contents changed and are usable,
//! new handshakes get the new material. A broken pair (a renewal half-written, a key that does
//! not match), a certificate outside its validity period (expired, or not valid yet) or an
//! unreadable CA file is reported once, counted in `exposure_tls_reloads_total`, and the
//! previous material stays in service. `exposure_tls_certificate_expiry_seconds` tells how long
//! the served certificate has left.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::validity::{self, Validity};
use super::{TlsError, client_verifier, parse_certificates, parse_key, provider, read_pem};
use crate::metrics;

/// How often the files are looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Label values of `exposure_tls_reloads_total`'s `result`.
pub const RELOAD_RESULTS: [&str; 4] = ["reloaded", "expired", "not_yet_valid", "invalid"];

/// A certificate and key that new handshakes use, replaced when the files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// What the files held when last read (loaded or refused), to notice changes.
    files: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
    /// Validity of the served leaf certificate.
    validity: Validity,
}

/// Returns the time now, Unix seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

impl ReloadingCertificate {
    /// Loads the pair; fails if either file is unreadable, they do not match, or the
    /// certificate is expired or not valid yet.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let files = read_pair(cert_path, key_path)?;
        let (key, validity) = certified_key(&files, now())?;
        let certificate = Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Loaded {
                files,
                key,
                validity,
            }),
        };
        certificate.export_expiry();
        Ok(certificate)
    }

    /// Reads the files again and switches to them if they changed and are usable at `now`
    /// (Unix seconds); returns whether it switched.
    pub fn reload_at(&self, now: i64) -> Result<bool, TlsError> {
        let files = read_pair(&self.cert_path, &self.key_path)?;
        if self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .files
            == files
        {
            return Ok(false);
        }
        let result = certified_key(&files, now);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // Remember the refused contents too, so a refused pair is reported once, not every tick.
        current.files = files;
        (current.key, current.validity) = result?;
        Ok(true)
    }

    /// Reads the files again (see [`Self::reload_at`]) at the time now.
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.reload_at(now())
    }

    /// Returns the validity period of the certificate served now.
    pub fn validity(&self) -> Validity {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .validity
    }

    /// Sets `exposure_tls_certificate_expiry_seconds` from the served certificate.
    pub fn export_expiry(&self) {
        let left = self.validity().not_after.saturating_sub(now());
        ::metrics::gauge!(metrics::TLS_CERTIFICATE_EXPIRY_SECONDS).set(left as f64);
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .key
                .clone(),
        )
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((
        read_pem("--tls-cert", cert_path)?,
        read_pem("--tls-key", key_path)?,
    ))
}

/// Returns the pair's signing key and the leaf's validity, refusing a leaf outside its
/// validity period at `now`.
fn certified_key(
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
    now: i64,
) -> Result<(Arc<CertifiedKey>, Validity), TlsError> {
    let chain = parse_certificates("--tls-cert", cert_pem)?;
    let validity = validity::of_certificate(&chain[0]).map_err(|reason| TlsError::Invalid {
        flag: "--tls-cert",
        reason: format!("cannot read the certificate's validity: {reason}"),
    })?;
    if now > validity.not_after {
        return Err(TlsError::Expired {
            flag: "--tls-cert",
            not_after: validity.not_after,
        });
    }
    if now < validity.not_before {
        return Err(TlsError::NotYetValid {
            flag: "--tls-cert",
            not_before: validity.not_before,
        });
    }
    let key = provider()
        .key_provider
        .load_private_key(parse_key(key_pem)?)
        .map_err(|error| TlsError::Invalid {
            flag: "--tls-key",
            reason: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|error| TlsError::Invalid {
        flag: "--tls-key",
        reason: format!("the key does not belong to the --tls-cert certificate: {error}"),
    })?;
    Ok((Arc::new(certified), validity))
}

/// The client-certificate verifier of `--client-ca`, rebuilt when the file changes.
///
/// rustls asks a verifier for the names of the CAs it accepts (sent to clients as a hint
/// for choosing a certificate) by reference, which a replaceable verifier cannot lend: this one
/// sends no hint, and clients present the certificate they have (a health authority's upload
/// client has one).
#[derive(Debug)]
pub struct ReloadingClientCa {
    path: PathBuf,
    current: RwLock<(Vec<u8>, Arc<dyn ClientCertVerifier>)>,
}

impl ReloadingClientCa {
    /// Loads the CA file; fails if it is unreadable or holds no usable CA certificate.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = read_pem("--client-ca", path)?;
        let verifier = client_verifier(&pem)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((pem, verifier)),
        })
    }

    /// Reads the file again and switches to it if it changed and is usable; returns whether
    /// it switched.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = read_pem("--client-ca", &self.path)?;
        if self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            == pem
        {
            return Ok(false);
        }
        let result = client_verifier(&pem);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        current.0 = pem;
        current.1 = result?;
        Ok(true)
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn offer_client_auth(&self) -> bool {
        self.verifier().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.verifier().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// Counts one reload of `file` (cert, client_ca) that switched or was refused, and logs it.
fn report(file: &'static str, result: Result<bool, TlsError>) {
    let label = match &result {
        Ok(false) => return,
        Ok(true) => "reloaded",
        Err(TlsError::Expired { .. }) => "expired",
        Err(TlsError::NotYetValid { .. }) => "not_yet_valid",
        Err(_) => "invalid",
    };
    ::metrics::counter!(metrics::TLS_RELOADS_TOTAL, "file" => file, "result" => label).increment(1);
    match result {
        Ok(_) => tracing::info!(file, "TLS material reloaded"),
        Err(error) => tracing::warn!(%error, file, result = label,
            "TLS material not reloaded; the previous one stays in use"),
    }
}

/// Creates `exposure_tls_reloads_total`'s series at zero and the expiry gauge from the loaded
/// certificate, so a panel or alert reads them from the first scrape (call once the metrics
/// recorder is installed).
pub fn register_at_zero(certificate: &ReloadingCertificate, client_ca: bool) {
    let files: &[&'static str] = if client_ca {
        &["cert", "client_ca"]
    } else {
        &["cert"]
    };
    for file in files {
        for result in RELOAD_RESULTS {
            ::metrics::counter!(metrics::TLS_RELOADS_TOTAL, "file" => *file, "result" => result)
                .absolute(0);
        }
    }
    certificate.export_expiry();
}

/// Starts the task that reloads `certificate` (and `client_ca`) every [`RELOAD_INTERVAL`] and
/// refreshes the expiry gauge; it ends when the certificate is dropped.
pub fn watch(certificate: &Arc<ReloadingCertificate>, client_ca: Option<Arc<ReloadingClientCa>>) {
    let weak: Weak<ReloadingCertificate> = Arc::downgrade(certificate);
    let weak_ca = client_ca.as_ref().map(Arc::downgrade);
    drop(client_ca);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(certificate) = weak.upgrade() else {
                break;
            };
            let client_ca = weak_ca.as_ref().and_then(Weak::upgrade);
            let done = tokio::task::spawn_blocking(move || {
                report("cert", certificate.reload());
                certificate.export_expiry();
                if let Some(client_ca) = client_ca {
                    report("client_ca", client_ca.reload());
                }
            })
            .await;
            if let Err(error) = done {
                tracing::warn!(%error, "TLS reload task failed");
            }
        }
    });
}

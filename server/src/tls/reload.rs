//! The server certificate, reloaded without a restart: a task reads `--tls-cert` and
//! `--tls-key` every [`RELOAD_INTERVAL`] and, when their contents changed and form a valid pair,
//! new handshakes get the new certificate. A broken pair (a renewal half-written, a key that
//! does not match) is reported once and the previous certificate stays in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, parse_certificates, parse_key, provider, read_pem};

/// How often the certificate files are looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

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
}

impl ReloadingCertificate {
    /// Loads the pair; fails if either file is unreadable or they do not match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let files = read_pair(cert_path, key_path)?;
        let key = certified_key(&files)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Loaded { files, key }),
        })
    }

    /// Reads the files again and switches to them if they changed; returns whether it switched.
    pub fn reload(&self) -> Result<bool, TlsError> {
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
        let result = certified_key(&files);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // Remember the refused contents too, so a broken pair is reported once, not every tick.
        current.files = files;
        current.key = result?;
        Ok(true)
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

fn certified_key((cert_pem, key_pem): &(Vec<u8>, Vec<u8>)) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = parse_certificates("--tls-cert", cert_pem)?;
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
    Ok(Arc::new(certified))
}

/// Starts the task that reloads `certificate` every [`RELOAD_INTERVAL`]; it ends when the
/// certificate is dropped.
pub fn watch(certificate: &Arc<ReloadingCertificate>) {
    let weak: Weak<ReloadingCertificate> = Arc::downgrade(certificate);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(certificate) = weak.upgrade() else {
                break;
            };
            match tokio::task::spawn_blocking(move || certificate.reload()).await {
                Ok(Ok(true)) => tracing::info!("TLS certificate reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use")
                }
                Err(error) => tracing::warn!(%error, "TLS reload task failed"),
            }
        }
    });
}

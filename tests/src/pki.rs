//! Certificates made at test time with rcgen: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, client certificates; and the clients that use them (a tonic channel over TLS,
//! and a bare rustls connection that reports which certificate the server sent).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate authority of the tests.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate issued by a [`TestCa`], with its private key.
#[derive(Clone)]
pub struct Issued {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM of its private key.
    pub key_pem: String,
    /// DER of the certificate, to compare with what a server sent.
    pub der: Vec<u8>,
}

impl TestCa {
    /// Creates a CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Self { certificate, key }
    }

    /// Returns the CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1`.
    pub fn issue_server(&self) -> Issued {
        self.issue(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "exposure-server test",
        )
    }

    /// Issues a server certificate like [`Self::issue_server`] valid from `not_before` until
    /// `not_after` (Unix seconds, both given to the second).
    pub fn issue_server_valid(&self, not_before: u64, not_after: u64) -> Issued {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        self.issue_with(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "exposure-server test",
            |params| {
                params.not_before = epoch + std::time::Duration::from_secs(not_before);
                params.not_after = epoch + std::time::Duration::from_secs(not_after);
            },
        )
    }

    /// Issues a client certificate for a health authority called `name`.
    pub fn issue_client(&self, name: &str) -> Issued {
        self.issue(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    fn issue(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str) -> Issued {
        self.issue_with(names, usage, name, |_| {})
    }

    fn issue_with(
        &self,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        name: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        adjust(&mut params);
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("signed leaf");
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
        }
    }
}

/// Where a server's TLS files were written.
pub struct TlsPaths {
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
}

impl TlsPaths {
    /// Writes `issued` as the certificate and key files in `dir`, each replaced atomically
    /// (written aside, then renamed), as a certificate manager does.
    pub fn write(dir: &Path, issued: &Issued) -> Self {
        let paths = Self {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        replace(&paths.key, &issued.key_pem);
        replace(&paths.cert, &issued.cert_pem);
        paths
    }
}

/// Writes `text` to `path` atomically.
pub fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).expect("write aside");
    std::fs::rename(&aside, path).expect("rename into place");
}

/// Opens a gRPC channel over TLS to `addr`, trusting `ca_pem`, checking the name `localhost`,
/// and presenting `client` as the client certificate when given.
pub async fn tls_channel(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert_pem, &client.key_pem));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)?
        .connect()
        .await
}

/// Connects with rustls (trusting `ca_pem`, offering `alpn`) and returns the stream and the
/// DER of the certificate the server presented.
pub async fn handshake(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
)> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(certificate.expect("CA PEM"))
            .expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = connector.connect(name, tcp).await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .unwrap_or_default();
    Ok((stream, presented))
}

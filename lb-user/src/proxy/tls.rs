//! TLS termination for `bind ADDR ssl crt FILE [crt FILE ...]`: rustls (TLS 1.2 and 1.3),
//! each FILE a PEM with a certificate chain and its private key (as HAProxy's `crt`); the
//! certificate for a handshake is the first whose names cover the client's SNI, else the
//! first one (the default). ALPN offers `h2` and `http/1.1`. Also TLS to servers
//! (`ssl = "verify required ca-file FILE [sni NAME]"` or `"verify none"`).

use std::{fmt, path::Path, sync::Arc};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
    },
};

/// A bind's TLS setup, built once at configuration load.
#[derive(Clone)]
pub struct TlsSettings {
    /// The certificate files, for messages.
    pub files: Vec<String>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSettings({:?})", self.files)
    }
}

impl TlsSettings {
    /// Loads `files` (PEM: chain then key, in one file each); the error names the file.
    pub fn load(files: &[String]) -> Result<TlsSettings, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut keys = Vec::new();
        for file in files {
            keys.push(Arc::new(load_pem(Path::new(file), &provider)?));
        }
        if keys.is_empty() {
            return Err("`ssl` needs at least one `crt FILE`".into());
        }
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni { keys }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsSettings {
            files: files.to_vec(),
            config: Arc::new(config),
        })
    }

    /// An acceptor for client connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

fn load_pem(
    path: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read certificate `{shown}`: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{shown}`: bad PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err(format!("`{shown}` holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("`{shown}` holds no usable private key: {e}"))?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| format!("`{shown}`: {e}"))?;
    Ok(certified)
}

/// Chooses the certificate by SNI.
#[derive(Debug)]
struct BySni {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wanted = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name.to_string()).ok());
        if let Some(wanted) = wanted {
            for key in &self.keys {
                let Some(leaf) = key.cert.first() else {
                    continue;
                };
                let covers = webpki::EndEntityCert::try_from(leaf)
                    .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&wanted).is_ok());
                if covers {
                    return Some(key.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}

/// TLS to a server (`ssl = "verify required ca-file FILE [sni NAME]"` or `"verify none"`).
pub struct UpstreamTls {
    /// The line it was made from (for messages and comparison).
    pub line: String,
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    /// The name came from `sni` (else from the server's address).
    explicit_name: bool,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamTls({:?})", self.line)
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
    }
}

impl Eq for UpstreamTls {}

impl UpstreamTls {
    /// Parses a server's `ssl` line; `addr` names the server when there is no `sni`. With
    /// `h2`, the handshake offers only HTTP/2 (ALPN h2).
    pub fn parse(line: &str, addr: std::net::IpAddr, h2: bool) -> Result<UpstreamTls, String> {
        let mut verify = None;
        let mut ca_file = None;
        let mut sni = None;
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| format!("`{word}` needs a value"))
            };
            match word {
                "verify" => verify = Some(value()?.to_string()),
                "ca-file" => ca_file = Some(value()?.to_string()),
                "sni" => sni = Some(value()?.to_string()),
                other => {
                    return Err(format!(
                        "unknown ssl option `{other}` (known: verify required|none, ca-file FILE, sni NAME)"
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = match (verify.as_deref(), ca_file) {
            (Some("none"), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
            (Some("required") | None, Some(file)) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(&file)
                    .map_err(|e| format!("cannot read ca-file `{file}`: {e}"))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("`{file}`: bad PEM certificate: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("`{file}`: unusable CA certificate: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("ca-file `{file}` holds no certificate"));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (Some("required") | None, None) => {
                return Err("`verify required` needs `ca-file FILE` (or say `verify none`)".into());
            }
            (Some(other), _) => {
                return Err(format!("expected verify required or none, found `{other}`"));
            }
        };
        let mut config = config;
        if h2 {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        let explicit_name = sni.is_some();
        let name = match sni {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|_| format!("`{name}` is not a server name"))?,
            None => ServerName::IpAddress(addr.into()),
        };
        Ok(UpstreamTls {
            line: line.to_string(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            explicit_name,
        })
    }

    /// Runs the TLS handshake over `stream`.
    pub async fn connect(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connector.connect(self.name.clone(), stream).await
    }

    /// Runs the TLS handshake over `stream` to `peer`: the `sni` name if one was given, else
    /// the peer's address (a health check's settings serve every server of a backend).
    pub async fn connect_to(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::IpAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = if self.explicit_name {
            self.name.clone()
        } else {
            ServerName::IpAddress(peer.into())
        };
        self.connector.connect(name, stream).await
    }
}

/// `verify none`: any certificate is accepted (as HAProxy's `ssl verify none`); signatures
/// are still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_certificate_files_are_named() {
        let missing = TlsSettings::load(&["/nonexistent/site.pem".into()]).unwrap_err();
        assert!(missing.contains("/nonexistent/site.pem"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = TlsSettings::load(&[empty.display().to_string()]).unwrap_err();
        assert!(
            error.contains("empty.pem") && error.contains("no certificate"),
            "{error}"
        );
        assert!(TlsSettings::load(&[]).is_err());
    }
}

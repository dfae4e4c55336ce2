//! TLS termination for `bind ADDR ssl crt FILE [crt FILE ...]`: rustls (TLS 1.2 and 1.3),
//! each FILE a PEM with a certificate chain and its private key (as HAProxy's `crt`); the
//! certificate for a handshake is the first whose names cover the client's SNI, else the
//! first one (the default). ALPN offers `h2` and `http/1.1`.

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

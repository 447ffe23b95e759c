//! TLS with rustls: the certificate chain and key from PEM files, offered for
//! HTTP/2 and HTTP/1.1 (ALPN), and read again on SIGHUP so that a renewed
//! certificate is served without a restart (a bad pair is refused and the one
//! in force stays).

use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// The certificate in force; swapped whole on reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.0.read() {
            Ok(k) => Some(k.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the TLS key {}", files.key.display()))?;
    CertifiedKey::from_der(certs, key, provider).with_context(|| {
        format!(
            "the TLS key {} does not fit the certificate {}",
            files.key.display(),
            files.cert.display()
        )
    })
}

impl Tls {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified_key(
            files, &provider,
        )?))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            files: files.clone(),
            provider,
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the certificate and key again; on error the pair in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(&self.files, &self.provider)?);
        match self.current.0.write() {
            Ok(mut k) => *k = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

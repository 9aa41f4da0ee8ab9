//! TLS for `wss://`: rustls with the ring provider, certificate and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::EdgeError;

fn tls_err(what: &str, e: &dyn std::fmt::Display) -> EdgeError {
    EdgeError::Tls(format!("{what}: {e}"))
}

/// The certificate chain in the PEM file `cert`.
fn certificates(cert: &Path) -> Result<Vec<CertificateDer<'static>>, EdgeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(&format!("reading {}", cert.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&format!("parsing {}", cert.display()), &e))?;
    if certs.is_empty() {
        return Err(EdgeError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    Ok(certs)
}

/// The private key in the PEM file `key`.
fn private_key(key: &Path) -> Result<PrivateKeyDer<'static>, EdgeError> {
    PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(&format!("reading key {}", key.display()), &e))
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, EdgeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Which file of `[tls]` a [`check`] error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `cert`: unreadable, not PEM, or holding no certificate.
    Cert,
    /// `key`: unreadable, holding no private key, or not the certificate's.
    Key,
}

/// What [`acceptor`] refuses, and the file at fault, for `switchboard check-config`.
pub fn check(cert: &Path, key: &Path) -> Result<(), (TlsFile, EdgeError)> {
    let certs = certificates(cert).map_err(|e| (TlsFile::Cert, e))?;
    let key = private_key(key).map_err(|e| (TlsFile::Key, e))?;
    server_config(certs, key)
        .map(drop)
        .map_err(|e| (TlsFile::Key, e))
}

/// Builds the acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, EdgeError> {
    let config = server_config(certificates(cert)?, private_key(key)?)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

//! The one TLS client configuration of the gateway: `https://` functions and the JWKS
//! fetch both build theirs here, so trust, protocol versions and the crypto provider are
//! decided in one place.
//!
//! Trust is the Mozilla roots of `webpki-roots` plus any extra PEM roots the user names
//! (`tls_ca_file`); the system store is never read, so the same binary behaves the same in
//! any container. The provider is ring, named explicitly so no other crate's process-wide
//! default can swap it. Session resumption keeps rustls's default (an in-memory cache of
//! 256 sessions with tickets); 0-RTT stays off because an invocation is not idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, RootCertStore};

/// A builder for a [`rustls::ClientConfig`].
pub struct ClientTls {
    roots: RootCertStore,
    identity: Option<Identity>,
    alpn: Vec<Vec<u8>>,
}

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientTls {
    /// Trusting the public web PKI (the Mozilla roots of `webpki-roots`).
    pub fn public_roots() -> Self {
        Self::with_roots(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ))
    }

    /// Trusting `roots` only.
    pub fn with_roots(roots: RootCertStore) -> Self {
        Self {
            roots,
            identity: None,
            alpn: Vec::new(),
        }
    }

    /// Also trusts every certificate of the PEM file at `path` (`tls_ca_file`). A file
    /// without a certificate is an error: it is surely not what the user meant.
    pub fn extra_roots_pem(mut self, path: &Path) -> Result<Self, TlsSetupError> {
        let pem = read(path, "tls_ca_file")?;
        let mut found = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| TlsSetupError::Pem {
                key: "tls_ca_file",
                path: path.to_owned(),
                problem: e.to_string(),
            })?;
            self.roots.add(cert).map_err(|e| TlsSetupError::Pem {
                key: "tls_ca_file",
                path: path.to_owned(),
                problem: e.to_string(),
            })?;
            found += 1;
        }
        if found == 0 {
            return Err(TlsSetupError::NoCertificate(path.to_owned()));
        }
        Ok(self)
    }

    /// Presents the PEM certificate chain at `cert` with the PEM private key at `key` when
    /// the server asks for a client certificate (mutual TLS).
    pub fn client_identity_pem(mut self, cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let pem = read(cert, "tls_client_cert")?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsSetupError::Pem {
                key: "tls_client_cert",
                path: cert.to_owned(),
                problem: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsSetupError::NoClientCertificate(cert.to_owned()));
        }
        let pem = read(key, "tls_client_key")?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|_| TlsSetupError::NoKey(key.to_owned()))?;
        self.identity = Some(Identity { chain, key });
        Ok(self)
    }

    /// The protocols offered by ALPN, most preferred first.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// The configuration: TLS 1.2 and 1.3 on ring, SNI on, default resumption.
    pub fn build(self) -> Result<rustls::ClientConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Versions)?
            .with_root_certificates(self.roots);
        let mut config = match self.identity {
            Some(Identity { chain, key }) => builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsSetupError::Identity)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        Ok(config)
    }
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Why a TLS client configuration could not be built. [`TlsSetupError::key`] names the
/// configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is malformed.
    #[error("{}: {problem}", path.display())]
    Pem {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `tls_ca_file` holds no certificate.
    #[error("{}: no certificate found", .0.display())]
    NoCertificate(PathBuf),
    /// `tls_client_cert` holds no certificate.
    #[error("{}: no certificate found", .0.display())]
    NoClientCertificate(PathBuf),
    /// `tls_client_key` holds no private key.
    #[error("{}: no private key found", .0.display())]
    NoKey(PathBuf),
    /// The client key cannot be used with its certificate.
    #[error("unusable with tls_client_cert: {0}")]
    Identity(#[source] rustls::Error),
    /// The provider offers no protocol version (cannot happen with ring).
    #[error("TLS versions: {0}")]
    Versions(#[source] rustls::Error),
}

impl TlsSetupError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Read { key, .. } | Self::Pem { key, .. } => key,
            Self::NoCertificate(_) => "tls_ca_file",
            Self::NoClientCertificate(_) => "tls_client_cert",
            Self::NoKey(_) | Self::Identity(_) => "tls_client_key",
            Self::Versions(_) => "url",
        }
    }
}

/// Why a TLS connection to a function failed, in terms a user can act on.
/// [`TlsFailure::label`] is the `reason` of `switchboard_invoke_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted root (add `tls_ca_file`).
    #[error("certificate not trusted: {0}")]
    UntrustedCertificate(String),
    /// The certificate is not valid for the URL's host.
    #[error("certificate not valid for the host: {0}")]
    HostnameMismatch(String),
    /// The certificate's validity ended (or the gateway's clock is wrong).
    #[error("certificate expired: {0}")]
    CertificateExpired(String),
    /// The certificate is not yet valid, revoked, malformed or not for servers.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The server refused our client certificate, or wanted one we did not send.
    #[error("client certificate refused: {0}")]
    ClientCertificateRefused(String),
    /// The server speaks none of the offered application protocols.
    #[error("no common application protocol: {0}")]
    AlpnMismatch(String),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// Any other handshake failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl TlsFailure {
    /// Every label, in declaration order.
    pub const LABELS: [&'static str; 8] = [
        "tls_untrusted_certificate",
        "tls_hostname_mismatch",
        "tls_certificate_expired",
        "tls_invalid_certificate",
        "tls_client_certificate_refused",
        "tls_alpn_mismatch",
        "tls_handshake_timeout",
        "tls_handshake_failed",
    ];

    /// A stable snake_case label for metrics.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The position of this cause in [`TlsFailure::LABELS`], for once-per-cause logging.
    pub fn index(&self) -> usize {
        match self {
            Self::UntrustedCertificate(_) => 0,
            Self::HostnameMismatch(_) => 1,
            Self::CertificateExpired(_) => 2,
            Self::InvalidCertificate(_) => 3,
            Self::ClientCertificateRefused(_) => 4,
            Self::AlpnMismatch(_) => 5,
            Self::HandshakeTimeout => 6,
            Self::Handshake(_) => 7,
        }
    }

    /// The cause of a failed handshake or TLS read: tokio-rustls wraps the
    /// [`rustls::Error`] in the [`std::io::Error`]; anything else is an I/O failure during
    /// the handshake.
    pub fn classify(error: &std::io::Error) -> Self {
        Self::from_io(error).unwrap_or_else(|| Self::Handshake(capped(error.to_string())))
    }

    /// The cause of an I/O error that carries a [`rustls::Error`] (as tokio-rustls wraps
    /// it), if it carries one.
    pub fn from_io(error: &std::io::Error) -> Option<Self> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(Self::from_rustls)
    }

    /// The cause of a [`rustls::Error`].
    pub fn from_rustls(error: &rustls::Error) -> Self {
        let text = capped(error.to_string());
        match error {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer
                | CertificateError::BadSignature
                | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    Self::UntrustedCertificate(text)
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Self::HostnameMismatch(text),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Self::CertificateExpired(text)
                }
                _ => Self::InvalidCertificate(text),
            },
            rustls::Error::NoApplicationProtocol
            | rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
                Self::AlpnMismatch(text)
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate,
            ) => Self::ClientCertificateRefused(text),
            _ => Self::Handshake(text),
        }
    }
}

/// Keeps a peer-influenced message short enough for one log line.
fn capped(mut text: String) -> String {
    const MAX: usize = 160;
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn rustls_errors_map_to_the_cause_a_user_can_act_on() {
        use rustls::pki_types::UnixTime;
        use rustls::Error as E;
        use std::time::Duration;
        use AlertDescription as A;
        use CertificateError as C;
        let cert = E::InvalidCertificate;
        let cases = [
            (cert(C::UnknownIssuer), "tls_untrusted_certificate"),
            (cert(C::BadSignature), "tls_untrusted_certificate"),
            (cert(C::NotValidForName), "tls_hostname_mismatch"),
            (cert(C::Expired), "tls_certificate_expired"),
            (
                cert(C::ExpiredContext {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(2)),
                    not_after: UnixTime::since_unix_epoch(Duration::from_secs(1)),
                }),
                "tls_certificate_expired",
            ),
            (cert(C::NotValidYet), "tls_invalid_certificate"),
            (cert(C::InvalidPurpose), "tls_invalid_certificate"),
            (
                E::AlertReceived(A::CertificateRequired),
                "tls_client_certificate_refused",
            ),
            (
                E::AlertReceived(A::UnknownCA),
                "tls_client_certificate_refused",
            ),
            (E::NoApplicationProtocol, "tls_alpn_mismatch"),
            (
                E::AlertReceived(A::NoApplicationProtocol),
                "tls_alpn_mismatch",
            ),
            (
                E::AlertReceived(A::HandshakeFailure),
                "tls_handshake_failed",
            ),
            (E::DecryptError, "tls_handshake_failed"),
        ];
        for (error, label) in cases {
            let text = error.to_string();
            assert_eq!(TlsFailure::classify(&io(error)).label(), label, "{text}");
        }
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(TlsFailure::classify(&reset).label(), "tls_handshake_failed");
    }

    #[test]
    fn labels_are_distinct_snake_case_and_indexed() {
        let all = [
            TlsFailure::UntrustedCertificate(String::new()),
            TlsFailure::HostnameMismatch(String::new()),
            TlsFailure::CertificateExpired(String::new()),
            TlsFailure::InvalidCertificate(String::new()),
            TlsFailure::ClientCertificateRefused(String::new()),
            TlsFailure::AlpnMismatch(String::new()),
            TlsFailure::HandshakeTimeout,
            TlsFailure::Handshake(String::new()),
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(TlsFailure::label).collect();
        assert_eq!(labels.len(), all.len());
        for (i, f) in all.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert!(f.label().starts_with("tls_"));
            assert!(f
                .label()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn setup_errors_name_their_key() {
        let dir = std::env::temp_dir().join(format!("sb-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let ca = |path: &Path| {
            ClientTls::public_roots()
                .extra_roots_pem(path)
                .err()
                .unwrap()
        };
        let cases = [
            (ca(&missing), "tls_ca_file", "missing.pem: "),
            (ca(&empty), "tls_ca_file", "empty.pem: no certificate found"),
            (
                ClientTls::public_roots()
                    .client_identity_pem(&empty, &missing)
                    .err()
                    .unwrap(),
                "tls_client_cert",
                "empty.pem: no certificate found",
            ),
        ];
        for (error, key, text) in cases {
            assert_eq!(error.key(), key, "{error}");
            assert!(error.to_string().contains(text), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_config_offers_the_alpn_list() {
        let config = ClientTls::public_roots()
            .alpn(&[b"h2", b"http/1.1"])
            .build()
            .unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.enable_sni);
        assert!(!config.enable_early_data);
    }
}

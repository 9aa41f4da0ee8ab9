//! Making new connections to a function: where it is ([`Target`]), a TCP connection to
//! it, and for `https://` a TLS handshake over that ([`TlsDial`]). The pools (HTTP/1.1
//! and HTTP/2) only decide when to dial.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::TlsFailure;
use crate::InvokeError;

/// A TLS handshake (after the TCP connect) must finish within this, or within the
/// invocation's deadline if that comes first.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go: resolved at each new connection, so a DNS change is followed.
pub(crate) struct Target {
    /// Host as written in the URL (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// A new TCP connection to the target (each address it resolves to in turn), with
/// Nagle off: requests are whole writes, Nagle would only add latency. Failures are
/// [`InvokeError::Unreachable`].
pub(crate) async fn connect_tcp(target: &Target) -> Result<TcpStream, InvokeError> {
    let Target { host, port } = target;
    let addrs = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(|e| InvokeError::Unreachable(capped(format!("dns error: {e}"))))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(InvokeError::Unreachable(capped(match last {
        Some(e) => format!("tcp connect error: {e}"),
        None => format!("dns error: no addresses for {host}"),
    })))
}

/// What the server chose by ALPN on a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `http/1.1`, or no choice at all (a server without ALPN speaks HTTP/1.1).
    Http1,
    /// `h2`.
    H2,
}

impl Alpn {
    /// The choice the handshake of `stream` ended with.
    pub(crate) fn of(stream: &TlsStream<TcpStream>) -> Self {
        match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Self::H2,
            _ => Self::Http1,
        }
    }
}

/// The once-per-cause log keeps one bit per cause in a `u8`.
const _: () = assert!(TlsFailure::LABELS.len() <= u8::BITS as usize);

/// TLS to one function: its configuration (with its own session cache), the name its
/// certificate must hold, and which failure causes were logged since the last success.
pub(crate) struct TlsDial {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    function: Arc<str>,
    /// One bit per [`TlsFailure::index`]: logged since the last success.
    logged: AtomicU8,
}

impl TlsDial {
    /// `host` is the URL's host (IPv6 without brackets): a DNS name or an IP address.
    pub(crate) fn new(
        function: &str,
        config: rustls::ClientConfig,
        host: &str,
    ) -> Result<Self, crate::SetupError> {
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
            crate::SetupError::invalid("url", "host is not a valid TLS server name")
        })?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            function: function.into(),
            logged: AtomicU8::new(0),
        })
    }

    /// A new TLS connection to `target`: TCP, then the handshake, which must finish by
    /// `deadline` and within [`TLS_HANDSHAKE_TIMEOUT`].
    pub(crate) async fn connect(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, InvokeError> {
        let tcp = connect_tcp(target).await?;
        let by = deadline.min(Instant::now() + TLS_HANDSHAKE_TIMEOUT);
        let handshake = self.connector.connect(self.server_name.clone(), tcp);
        match tokio::time::timeout_at(by, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(InvokeError::Tls(TlsFailure::classify(&e))),
            Err(_elapsed) => Err(InvokeError::Tls(TlsFailure::HandshakeTimeout)),
        }
    }

    /// A new TLS connection on which the server chose `h2`, for `http_version = "2"`,
    /// which offers nothing else: a server that chose nothing (it has no ALPN, so it
    /// speaks HTTP/1.1) fails with [`TlsFailure::AlpnMismatch`].
    pub(crate) async fn connect_h2(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, InvokeError> {
        let stream = self.connect(target, deadline).await?;
        match Alpn::of(&stream) {
            Alpn::H2 => Ok(stream),
            Alpn::Http1 => Err(InvokeError::Tls(TlsFailure::AlpnMismatch(
                "the server chose no protocol by ALPN, so not h2 (http_version = \"2\"); \
                 http_version = \"auto\" would speak HTTP/1.1 to it"
                    .into(),
            ))),
        }
    }

    /// Logs a TLS failure the first time its cause shows up since the last success, so
    /// a function with a bad certificate does not fill the log at the invocation rate.
    pub(crate) fn note_failure(&self, failure: &TlsFailure) {
        let bit = 1u8 << failure.index();
        if self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(
                function = %self.function,
                reason = failure.label(),
                error = %failure,
                "TLS connection to the function failed"
            );
        }
    }

    /// After a success, each cause is logged again when it comes back.
    pub(crate) fn note_success(&self) {
        // Read first: the common case (nothing logged) writes nothing.
        if self.logged.load(Ordering::Relaxed) != 0 {
            self.logged.store(0, Ordering::Relaxed);
        }
    }
}

/// Connect errors name the cause; at most 160 bytes of it.
fn capped(mut reason: String) -> String {
    switchboard_core::text::truncate_on_char(&mut reason, 160);
    reason
}

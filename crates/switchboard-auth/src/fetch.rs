//! A bounded HTTP(S) GET for JWKS documents: hyper-util's legacy client over rustls with
//! ring, trusting the Mozilla roots of `webpki-roots` (no system store, so the same
//! binary behaves the same in any container).

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchboard_functions::tls::{ClientTls, TlsSetupError};

/// A whole JWKS fetch (connect, TLS, request, body) must finish within this.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWKS document larger than this is refused; real ones are a few KiB.
pub const JWKS_MAX_BYTES: usize = 1024 * 1024;

const USER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// Fetches documents over `http://` or `https://`.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// Trusting the public web PKI.
    pub(crate) fn with_public_roots() -> Result<Self, FetchError> {
        Self::from_tls(ClientTls::public_roots())
    }

    /// Trusting `roots` only.
    #[cfg(test)]
    pub(crate) fn new(roots: rustls::RootCertStore) -> Result<Self, FetchError> {
        Self::from_tls(ClientTls::with_roots(roots))
    }

    fn from_tls(tls: ClientTls) -> Result<Self, FetchError> {
        // No ALPN list: hyper-rustls's `enable_http1` owns it (and asserts it is empty).
        let tls = tls.build().map_err(FetchError::Tls)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        // Fetches are minutes apart: keeping idle connections would only hold sockets.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self { client })
    }

    /// GETs `uri`, expecting a 2xx answer of at most [`JWKS_MAX_BYTES`], all within
    /// [`JWKS_FETCH_TIMEOUT`]. Redirects are not followed. The error is a short reason.
    pub(crate) async fn get(&self, uri: &Uri) -> Result<Bytes, FetchError> {
        match tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.get_untimed(uri)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(FetchError::Timeout),
        }
    }

    async fn get_untimed(&self, uri: &Uri) -> Result<Bytes, FetchError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::new())
            .map_err(FetchError::Request)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(FetchError::Failed)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), JWKS_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Body(e)
                }
            })?;
        Ok(body.to_bytes())
    }
}

/// Why a JWKS URL could not be fetched. Short, for a one-line log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The TLS client could not be set up.
    #[error("TLS setup: {0}")]
    Tls(#[source] TlsSetupError),
    /// The request could not be built from the URL.
    #[error("bad request: {0}")]
    Request(#[source] http::Error),
    /// No answer: connect, TLS handshake or transfer failed.
    #[error("request failed: {}", error_chain(.0))]
    Failed(#[source] hyper_util::client::legacy::Error),
    /// The server answered a status other than 2xx.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body exceeds [`JWKS_MAX_BYTES`].
    #[error("body larger than {JWKS_MAX_BYTES} bytes")]
    TooLarge,
    /// The body could not be read to its end.
    #[error("reading the body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer within [`JWKS_FETCH_TIMEOUT`].
    #[error("timed out after {} s", JWKS_FETCH_TIMEOUT.as_secs())]
    Timeout,
}

/// Why a JWKS URL is refused at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("not a valid URL")]
    Invalid,
    #[error("must be an http:// or https:// URL")]
    Scheme,
    #[error("credentials in the URL are not supported")]
    Credentials,
    #[error("has no host")]
    NoHost,
}

/// `outer: inner: innermost`, capped, for a one-line log.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    const MAX: usize = 200;
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    switchboard_core::text::truncate_on_char(&mut out, MAX);
    out
}

/// Checks a JWKS URL at startup: `http://` or `https://` with a host.
pub(crate) fn parse_url(url: &str) -> Result<Uri, UrlError> {
    let uri: Uri = url.parse().map_err(|_| UrlError::Invalid)?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err(UrlError::Scheme),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(uri),
        Some(a) if a.as_str().contains('@') => Err(UrlError::Credentials),
        _ => Err(UrlError::NoHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn urls() {
        assert!(parse_url("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/jwks").is_ok());
        assert_eq!(parse_url("ftp://x/"), Err(UrlError::Scheme));
        assert_eq!(parse_url("/jwks"), Err(UrlError::Scheme));
        assert_eq!(parse_url("https://u:p@x/"), Err(UrlError::Credentials));
        assert_eq!(parse_url("not a url"), Err(UrlError::Invalid));
    }

    /// A JWKS server that answers the head and then trickles the body, one byte a
    /// second, forever: the fetch still ends at [`JWKS_FETCH_TIMEOUT`] (paused time,
    /// real sockets).
    #[tokio::test(start_paused = true)]
    async fn a_trickling_server_cannot_hold_a_fetch_past_the_timeout() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/jwks", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tcp.read(&mut request).await.unwrap();
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n{")
                .await
                .unwrap();
            let mut sent = 1u64;
            while tcp.write_all(b" ").await.is_ok() {
                sent += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            sent
        });
        let started = tokio::time::Instant::now();
        let err = Fetcher::with_public_roots()
            .unwrap()
            .get(&uri)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, FetchError::Timeout), "{err}");
        assert_eq!(err.to_string(), "timed out after 5 s");
        assert!(
            (JWKS_FETCH_TIMEOUT..JWKS_FETCH_TIMEOUT + Duration::from_secs(1)).contains(&took),
            "{took:?}"
        );
        // The fetch gave up and closed its connection: the server's writes fail.
        let sent = tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .expect("the server saw the connection close")
            .unwrap();
        assert!(
            sent >= 2,
            "the body was trickling when the fetch gave up ({sent})"
        );
    }

    /// A server that accepts and never answers.
    #[tokio::test(start_paused = true)]
    async fn a_silent_server_cannot_hold_a_fetch_past_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/jwks", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let _server = tokio::spawn(async move {
            let (_tcp, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        let err = Fetcher::with_public_roots()
            .unwrap()
            .get(&uri)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Timeout), "{err}");
        assert_eq!(err.to_string(), "timed out after 5 s");
        assert!(started.elapsed() >= JWKS_FETCH_TIMEOUT);
    }

    /// The https path end to end: a local TLS server with a certificate from a CA the
    /// fetcher is told to trust, and the public-roots fetcher refusing that CA.
    #[tokio::test]
    async fn https_fetch_against_a_local_ca() {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();

        let server_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"{\"keys\":[]}")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });

        let uri: Uri = format!("https://localhost:{port}/jwks").parse().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let body = Fetcher::new(roots).unwrap().get(&uri).await.unwrap();
        assert_eq!(&body[..], b"{\"keys\":[]}");

        let err = Fetcher::with_public_roots()
            .unwrap()
            .get(&uri)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Failed(_)), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}

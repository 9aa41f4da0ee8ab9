//! `https://` functions against a real rustls server on 127.0.0.1, with a CA made at
//! test time: HTTP/1.1 over TLS, pooled reuse, and each refusal with its reason.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_core::config::HttpFunctionConfig;
use switchboard_core::event::{ApiIdentity, EventKind};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::tls::TlsFailure;
use switchboard_functions::{InvokeError, Invoker};
use tokio::net::TcpListener;

/// A CA, its files, and certificates it signs, under a directory of this test's own.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, as DER for the server and as PEM files for the client.
struct Leaf {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl TestCa {
    fn new(case: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-https-{}-{case}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn leaf(&self, file: &str, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.join(format!("{file}.pem"));
        let key_file = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Leaf {
            der: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_file,
            key_file,
        }
    }

    fn server_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf("server", names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_leaf(&self) -> Leaf {
        self.leaf(
            "client",
            &["client"],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS function server answering every POST with a Lambda-proxy 200 whose body is the
/// request's `host` header. Counts TCP accepts.
struct TlsFunction {
    port: u16,
    accepts: Arc<AtomicUsize>,
    /// With a client CA: whether new connections must present a client certificate.
    strict: Arc<AtomicBool>,
}

impl TlsFunction {
    /// `client_ca`: require a client certificate signed by it (mTLS).
    async fn start(leaf: &Leaf, client_ca: Option<&TestCa>) -> Self {
        let lax = Self::acceptor(leaf, None);
        let strict_acceptor = Self::acceptor(leaf, client_ca);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let strict = Arc::new(AtomicBool::new(true));
        let (counted, strict_now) = (Arc::clone(&accepts), Arc::clone(&strict));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let acceptor = if strict_now.load(Ordering::SeqCst) {
                    strict_acceptor.clone()
                } else {
                    lax.clone()
                };
                tokio::spawn(serve(acceptor, tcp));
            }
        });
        Self {
            port,
            accepts,
            strict,
        }
    }

    fn acceptor(leaf: &Leaf, client_ca: Option<&TestCa>) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.issuer.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![leaf.der.clone()], leaf.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/fn", self.port)
    }
}

/// Serves one connection: every POST gets a 200 whose body is its `host` header.
async fn serve(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let host = req.headers()["host"].to_str().unwrap_or("?").to_owned();
        let _ = req.into_body().collect().await;
        let body = serde_json::json!({"statusCode": 200, "body": host});
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
            body.to_string(),
        ))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

/// The function's table for `server`, trusting `ca`.
fn trusting(ca: &TestCa, server: &TlsFunction) -> HttpFunctionConfig {
    let mut cfg = common::http_config(server.url());
    cfg.tls_ca_file = Some(ca.ca_file());
    cfg
}

fn invoker(cfg: &HttpFunctionConfig) -> HttpInvoker {
    let api = ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    };
    HttpInvoker::new("fn", cfg, api).unwrap()
}

async fn call(invoker: &HttpInvoker) -> Result<String, InvokeError> {
    let invocation = common::invocation(EventKind::Message, Some(Bytes::from_static(b"hi")));
    let answer = invoker.invoke(invocation).await?;
    let body = answer.body.expect("the function answered a body");
    Ok(String::from_utf8(body.data.to_vec()).unwrap())
}

fn tls_label(result: Result<String, InvokeError>) -> &'static str {
    match result {
        Err(e @ InvokeError::Tls(_)) => e.label(),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn http1_over_tls_round_trips_on_one_pooled_connection() {
    let ca = TestCa::new("pooled");
    let server = TlsFunction::start(&ca.server_leaf(&["localhost"]), None).await;
    let cfg = trusting(&ca, &server);
    let invoker = invoker(&cfg);
    for _ in 0..10 {
        let host = call(&invoker).await.unwrap();
        assert_eq!(host, format!("localhost:{}", server.port));
    }
    assert_eq!(
        server.accepts.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let ca = TestCa::new("untrusted");
    let server = TlsFunction::start(&ca.server_leaf(&["localhost"]), None).await;
    let invoker = invoker(&common::http_config(server.url()));
    let result = call(&invoker).await;
    assert!(
        matches!(
            result,
            Err(InvokeError::Tls(TlsFailure::UntrustedCertificate(_)))
        ),
        "{result:?}"
    );
    assert_eq!(tls_label(call(&invoker).await), "tls_untrusted_certificate");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = TestCa::new("hostname");
    let server = TlsFunction::start(&ca.server_leaf(&["other.example"]), None).await;
    let cfg = trusting(&ca, &server);
    let result = call(&invoker(&cfg)).await;
    assert_eq!(tls_label(result), "tls_hostname_mismatch");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("mtls");
    let server = TlsFunction::start(&ca.server_leaf(&["localhost"]), Some(&ca)).await;
    let client = ca.client_leaf();
    let mut cfg = trusting(&ca, &server);
    let without = call(&invoker(&cfg)).await;
    assert_eq!(tls_label(without), "tls_client_certificate_refused");

    cfg.tls_client_cert = Some(client.cert_file.clone());
    cfg.tls_client_key = Some(client.key_file.clone());
    let host = call(&invoker(&cfg)).await.unwrap();
    assert_eq!(host, format!("localhost:{}", server.port));
}

#[tokio::test]
async fn a_silent_server_times_the_handshake_out_at_the_deadline() {
    let ca = TestCa::new("silent");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never answering the ClientHello.
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut cfg = common::http_config(format!("https://localhost:{port}/"));
    cfg.tls_ca_file = Some(ca.ca_file());
    cfg.timeout_ms = 300;
    let started = tokio::time::Instant::now();
    let result = call(&invoker(&cfg)).await;
    assert_eq!(tls_label(result), "tls_handshake_timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    held.abort();
}

/// Log lines written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct Log(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock())
            .matches(needle)
            .count()
    }
}

/// A cause is logged once however often it recurs, and again once it comes back after a
/// success. The test runtime is single-threaded, so the invoker runs under this thread's
/// subscriber.
#[tokio::test]
async fn each_tls_failure_cause_is_logged_once_until_a_success() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let line = "TLS connection to the function failed";

    let ca = TestCa::new("logged");
    let server = TlsFunction::start(&ca.server_leaf(&["localhost"]), Some(&ca)).await;
    let cfg = trusting(&ca, &server);
    let refused = invoker(&cfg);
    for _ in 0..3 {
        assert_eq!(
            tls_label(call(&refused).await),
            "tls_client_certificate_refused"
        );
    }
    assert_eq!(log.count(line), 1, "three failures of one cause, one line");
    assert_eq!(log.count("reason=\"tls_client_certificate_refused\""), 1);

    // The server stops asking; the connection the failure left is gone, so the next
    // call handshakes anew and succeeds.
    server.strict.store(false, Ordering::SeqCst);
    call(&refused).await.unwrap();
    assert_eq!(log.count(line), 1, "a success logs nothing");
    server.strict.store(true, Ordering::SeqCst);
    // The success left one pooled connection: of two calls at once, one reuses it and
    // the other handshakes anew and is refused, the first refusal since the success.
    let (reused, dialled) = tokio::join!(call(&refused), call(&refused));
    reused.unwrap();
    assert_eq!(tls_label(dialled), "tls_client_certificate_refused");
    assert_eq!(log.count(line), 2, "logged again after a success");
}

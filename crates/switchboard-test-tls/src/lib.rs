//! TLS for tests of `https://` functions: a CA made at test time ([`TestCa`]), the
//! certificates it signs ([`Leaf`]), and a function server on 127.0.0.1
//! ([`TlsFunction`]) that speaks HTTP/1.1 or HTTP/2 as its ALPN pick says, counting what
//! a test asserts on: connections, resumed handshakes, HTTP/2 connections, requests.
//!
//! The server is rustls (ring) with hyper's HTTP/1.1 server and the `h2` crate's server,
//! picked by the negotiated protocol, as an ALPN-aware front end does.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::HandshakeKind;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A CA, its PEM file, and the certificates it signs, under a directory of the test's
/// own (removed on drop).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key: DER for a server, PEM files for a client's configuration.
pub struct Leaf {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The certificate as a PEM file.
    pub cert_file: PathBuf,
    /// The key as a PEM file.
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA; `case` names its directory, unique per process and case.
    pub fn new(case: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-test-ca-{}-{case}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    /// The CA certificate as a PEM file (for `tls_ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names`, valid now.
    pub fn server_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf(
            "server",
            names,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            |_| {},
        )
    }

    /// A server certificate for `names` that was valid through 2020 only.
    pub fn expired_server_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf(
            "expired",
            names,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            |params| {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            },
        )
    }

    /// A client certificate (mutual TLS).
    pub fn client_leaf(&self) -> Leaf {
        self.leaf(
            "client",
            &["client"],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            |_| {},
        )
    }

    fn leaf(
        &self,
        file: &str,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        adjust(&mut params);
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
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Leaf {
    /// A TLS acceptor (rustls on ring, TLS 1.2 and 1.3, default session cache) presenting
    /// this certificate, picking from `alpn` (none: no ALPN at all), and with `client_ca`
    /// asking for a client certificate it signed.
    pub fn acceptor(&self, alpn: &[&[u8]], client_ca: Option<&TestCa>) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).unwrap();
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
            .with_single_cert(vec![self.der.clone()], self.key.clone_key())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// What the server has seen, summed over its connections.
#[derive(Debug, Default)]
pub struct Counts {
    /// TCP connections accepted.
    pub accepts: AtomicUsize,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// Of those, handshakes that resumed an earlier session.
    pub resumed: AtomicUsize,
    /// Connections on which `h2` was picked.
    pub h2_connections: AtomicUsize,
    /// Requests answered over HTTP/1.1.
    pub h1_requests: AtomicUsize,
    /// Requests answered over HTTP/2.
    pub h2_requests: AtomicUsize,
}

impl Counts {
    /// One counter's value.
    pub fn get(&self, counter: impl Fn(&Self) -> &AtomicUsize) -> usize {
        counter(self).load(Ordering::SeqCst)
    }
}

/// One request as the function saw it.
pub struct Seen {
    /// `:authority` (HTTP/2) or `host` (HTTP/1.1).
    pub authority: String,
    /// Whether it came over HTTP/2.
    pub h2: bool,
    /// The body: the event JSON (`null` if it was not JSON).
    pub event: serde_json::Value,
}

type Answer = Arc<dyn Fn(&Seen) -> String + Send + Sync>;

/// Holds answers back until a number of requests have arrived, so that many are in
/// flight at once.
struct Gate {
    until: usize,
    arrived: AtomicUsize,
    open: Notify,
}

impl Gate {
    async fn pass(&self) {
        let open = self.open.notified();
        tokio::pin!(open);
        open.as_mut().enable();
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 >= self.until {
            self.open.notify_waiters();
        } else {
            open.await;
        }
    }
}

/// What every connection of a server shares.
struct Shared {
    counts: Arc<Counts>,
    answer: Answer,
    close_after_answer: bool,
    gate: Option<Gate>,
}

/// An https function server: every POST gets a Lambda-proxy `200` whose body is the
/// answer's text (by default the request's authority).
pub struct TlsFunction {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it has seen.
    pub counts: Arc<Counts>,
    /// With a client CA: whether new connections must present a client certificate
    /// (initially true).
    pub strict: Arc<AtomicBool>,
    /// Whether new connections may pick `h2` (initially true; it is picked only if the
    /// ALPN list has it).
    pub picks_h2: Arc<AtomicBool>,
}

/// How a [`TlsFunction`] behaves; see [`TlsFunction::builder`].
pub struct Builder<'a> {
    leaf: &'a Leaf,
    alpn: Vec<&'static [u8]>,
    client_ca: Option<&'a TestCa>,
    close_after_answer: bool,
    hold_until: Option<usize>,
    answer: Answer,
}

impl TlsFunction {
    /// A server presenting `leaf`, picking `h2` or `http/1.1` by ALPN, answering with the
    /// request's authority, keeping connections open.
    pub fn builder(leaf: &Leaf) -> Builder<'_> {
        Builder {
            leaf,
            alpn: vec![b"h2", b"http/1.1"],
            client_ca: None,
            close_after_answer: false,
            hold_until: None,
            answer: Arc::new(|seen| seen.authority.clone()),
        }
    }

    /// `https://localhost:<port>/fn`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/fn", self.port)
    }
}

impl<'a> Builder<'a> {
    /// The protocols it picks from, in its order of preference (empty: no ALPN, so
    /// HTTP/1.1).
    pub fn alpn(mut self, protocols: &[&'static [u8]]) -> Self {
        self.alpn = protocols.to_vec();
        self
    }

    /// Asks for a client certificate signed by `ca` while [`TlsFunction::strict`] is set.
    pub fn client_ca(mut self, ca: &'a TestCa) -> Self {
        self.client_ca = Some(ca);
        self
    }

    /// Closes each connection after its first answer (`connection: close`, or a `GOAWAY`
    /// on HTTP/2), so the next request needs a new connection.
    pub fn close_after_each_answer(mut self) -> Self {
        self.close_after_answer = true;
        self
    }

    /// Holds every answer until `n` requests have arrived; later ones pass at once.
    pub fn hold_until(mut self, n: usize) -> Self {
        self.hold_until = Some(n);
        self
    }

    /// The text each answer carries as its `body`.
    pub fn answer(mut self, answer: impl Fn(&Seen) -> String + Send + Sync + 'static) -> Self {
        self.answer = Arc::new(answer);
        self
    }

    /// Binds 127.0.0.1:0 and serves until the runtime ends.
    pub async fn start(self) -> TlsFunction {
        // By [strict][picks_h2], built once so that sessions resume across connections.
        let without_h2: Vec<&[u8]> = self.alpn.iter().copied().filter(|p| *p != b"h2").collect();
        let acceptors = [None, self.client_ca].map(|client_ca| {
            [&without_h2[..], &self.alpn[..]].map(|alpn| self.leaf.acceptor(alpn, client_ca))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let strict = Arc::new(AtomicBool::new(true));
        let picks_h2 = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Shared {
            counts: Arc::clone(&counts),
            answer: self.answer,
            close_after_answer: self.close_after_answer,
            gate: self.hold_until.map(|until| Gate {
                until,
                arrived: AtomicUsize::new(0),
                open: Notify::new(),
            }),
        });
        let (strict_now, h2_now) = (Arc::clone(&strict), Arc::clone(&picks_h2));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.counts.accepts.fetch_add(1, Ordering::SeqCst);
                let by_strictness = &acceptors[usize::from(strict_now.load(Ordering::SeqCst))];
                let acceptor = by_strictness[usize::from(h2_now.load(Ordering::SeqCst))].clone();
                tokio::spawn(serve(acceptor, tcp, Arc::clone(&shared)));
            }
        });
        TlsFunction {
            port,
            counts,
            strict,
            picks_h2,
        }
    }
}

/// One connection: the handshake, then HTTP/2 or HTTP/1.1 as ALPN picked.
async fn serve(acceptor: TlsAcceptor, tcp: TcpStream, shared: Arc<Shared>) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let counts = &shared.counts;
    counts.handshakes.fetch_add(1, Ordering::SeqCst);
    let session = tls.get_ref().1;
    if session.handshake_kind() == Some(HandshakeKind::Resumed) {
        counts.resumed.fetch_add(1, Ordering::SeqCst);
    }
    if session.alpn_protocol() == Some(b"h2") {
        counts.h2_connections.fetch_add(1, Ordering::SeqCst);
        serve_h2(tls, shared).await;
    } else {
        serve_h1(tls, shared).await;
    }
}

async fn serve_h1(tls: TlsStream<TcpStream>, shared: Arc<Shared>) {
    let keep_alive = !shared.close_after_answer;
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let authority = req.headers()["host"].to_str().unwrap_or("?").to_owned();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let text = shared
                .respond(authority, false, &body.unwrap_or_default())
                .await;
            shared.counts.h1_requests.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(text)))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

async fn serve_h2(tls: TlsStream<TcpStream>, shared: Arc<Shared>) {
    let Ok(mut conn) = h2::server::handshake(tls).await else {
        return;
    };
    // Accepting also drives the connection, the answers written by the spawned tasks
    // included.
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let shared = Arc::clone(&shared);
        if shared.close_after_answer {
            conn.graceful_shutdown();
        }
        tokio::spawn(async move {
            let authority = req.uri().authority().map_or("?".into(), |a| a.to_string());
            let mut body = req.into_body();
            let mut event = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                event.extend_from_slice(&chunk);
            }
            let text = shared.respond(authority, true, &event).await;
            shared.counts.h2_requests.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut send) = respond.send_response(http::Response::new(()), false) {
                let _ = send.send_data(text, true);
            }
        });
    }
}

impl Shared {
    /// The Lambda-proxy answer to one request, once the gate lets it through.
    async fn respond(&self, authority: String, h2: bool, body: &[u8]) -> Bytes {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        let seen = Seen {
            authority,
            h2,
            event: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        };
        let answer = serde_json::json!({"statusCode": 200, "body": (self.answer)(&seen)});
        Bytes::from(answer.to_string())
    }
}

//! Shared by the integration tests: token minting on ring, a tiny real HTTP server that
//! counts its requests, and handshakes.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};
use switchboard_auth::{AuthError, Authorizer, Handshake, Identity};
use switchboard_core::config::{AuthorizerConfig, ConfigError};
use switchboard_core::event::ConnectionInfo;
use switchboard_core::id::IdGenerator;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

/// Something that signs JWS.
pub enum Signer {
    Hs256(Vec<u8>),
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl Signer {
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Hs256(_) => "HS256",
            Self::Rs256(_) => "RS256",
            Self::Es256(_) => "ES256",
        }
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Hs256(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                ring::hmac::sign(&key, input).as_ref().to_vec()
            }
            Self::Rs256(kp) => {
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .unwrap();
                sig
            }
            Self::Es256(kp) => kp.sign(&rng, input).unwrap().as_ref().to_vec(),
        }
    }

    /// A compact JWS: header `{"alg", "typ"}` plus `extra_header`, and `claims`.
    pub fn token(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        sign_with_header(self, &header, claims)
    }

    /// The public half as a JWK.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Self::Hs256(secret) => json!({"kty": "oct", "kid": kid, "k": b64url(secret)}),
            Self::Rs256(kp) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": b64url(&c.n), "e": b64url(&c.e)})
            }
            Self::Es256(kp) => {
                let point = kp.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "crv": "P-256", "use": "sig",
                       "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
            }
        }
    }
}

pub fn sign_with_header(signer: &Signer, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// The committed test RSA key (`tests/keys/<name>.pem`).
pub fn rsa(name: &str) -> Signer {
    let der = PrivatePkcs8KeyDer::from_pem_file(keys_dir().join(format!("{name}.pem"))).unwrap();
    Signer::Rs256(RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap())
}

/// A fresh P-256 key.
pub fn ec() -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    Signer::Es256(
        EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap(),
    )
}

/// A P-256 key's SubjectPublicKeyInfo as PEM.
pub fn ec_public_pem(signer: &Signer) -> String {
    let Signer::Es256(kp) = signer else {
        panic!("not an EC key")
    };
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(kp.public_key().as_ref());
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// A file in a fresh temporary directory, removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-auth-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the test server answers.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Value) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1:0 that counts requests and remembers the last
/// request body (as JSON, `null` if it was not).
pub struct Server {
    pub url: String,
    hits: Arc<AtomicUsize>,
    last: Arc<parking_lot::Mutex<Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(handler: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let hits = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(parking_lot::Mutex::new(Value::Null));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (h, l) = (Arc::clone(&hits), Arc::clone(&last));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (handler, hits, last) = (Arc::clone(&handler), Arc::clone(&h), Arc::clone(&l));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (handler, hits, last) =
                            (Arc::clone(&handler), Arc::clone(&hits), Arc::clone(&last));
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            hits.fetch_add(1, Ordering::SeqCst);
                            let reply = handler(&body);
                            *last.lock() = body;
                            tokio::time::sleep(reply.delay).await;
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            hits,
            last,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> Value {
        self.last.lock().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A handshake's parts, owned.
pub struct Hs {
    pub headers: http::HeaderMap,
    pub query: Vec<(String, String)>,
    pub protocols: Vec<String>,
    pub conn: Arc<ConnectionInfo>,
}

impl Hs {
    pub fn new() -> Self {
        Self {
            headers: http::HeaderMap::new(),
            query: Vec::new(),
            protocols: Vec::new(),
            conn: Arc::new(ConnectionInfo {
                id: IdGenerator::new("t").connection_id(),
                connected_at_ms: 1_731_324_924_553,
                source_ip: "10.1.2.3".parse().unwrap(),
                user_agent: Some("test-agent".into()),
                path: "/".into(),
                headers: Vec::new(),
                query: Vec::new(),
                subprotocol: None,
                tls: false,
                port: 8080,
                authorizer: None,
            }),
        }
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Self {
        Self::new().header("authorization", &format!("Bearer {token}"))
    }

    /// Adds a header, to the map and to the connection (as the edge would).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        Arc::make_mut(&mut self.conn)
            .headers
            .push((name.into(), value.into()));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        Arc::make_mut(&mut self.conn)
            .query
            .push((name.into(), value.into()));
        self
    }

    pub fn protocol(mut self, p: &str) -> Self {
        self.protocols.push(p.into());
        self
    }

    pub fn handshake(&self) -> Handshake<'_> {
        Handshake {
            headers: &self.headers,
            query: &self.query,
            offered_protocols: &self.protocols,
            connection: &self.conn,
            request_id: "req-1",
            request_time_ms: 1_731_324_924_561,
        }
    }
}

pub async fn authorizer(cfg: Value) -> Authorizer {
    try_authorizer(cfg).await.unwrap()
}

pub async fn try_authorizer(cfg: Value) -> Result<Authorizer, ConfigError> {
    let cfg: AuthorizerConfig = serde_json::from_value(cfg).unwrap();
    Authorizer::new(&cfg, None).await
}

pub async fn check(a: &Authorizer, hs: &Hs) -> Result<Identity, AuthError> {
    a.authorize(&hs.handshake()).await
}

/// A real RSA JWK with `n` or `e` replaced.
pub fn rsa_jwk_with(member: &str, value: &str) -> Value {
    let mut jwk = rsa("rsa2048").jwk("r");
    jwk[member] = serde_json::json!(value);
    jwk
}

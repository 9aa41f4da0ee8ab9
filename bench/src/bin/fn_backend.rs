//! `fn-backend`: the trivial function behind both systems in the function round-trip
//! benchmark (`bench/functions.sh`). Loopback only, TCP_NODELAY.
//!
//! - `--mode lambda`: switchboard's `kind = "http"` functions. The request body is an AWS
//!   API Gateway WebSocket event; the answer is `{"statusCode":200,"body":<event.body>}`
//!   (plus `"isBase64Encoded":true` when the event had it), so a two-way route echoes the
//!   message byte for byte. Events without a body (`$connect`, `$disconnect`) get
//!   `{"statusCode":200}`.
//! - `--mode pushpin`: Pushpin's WebSocket-over-HTTP. The request body is a list of events
//!   `TYPE[ SIZE_HEX]\r\n[CONTENT\r\n]`; the answer (200, `application/websocket-events`)
//!   holds `OPEN` for `OPEN`, the same event for `TEXT`/`BINARY` (echo), `PONG` for `PING`
//!   and `CLOSE` with the same code for `CLOSE`; `PONG` and `DISCONNECT` get nothing.
//!
//! The HTTP server (`--server`):
//! - `minimal` (the default): HTTP/1.1 written out here, the least a function server can
//!   do per request: keep-alive, `Content-Length` or chunked request bodies,
//!   `Expect: 100-continue`, one write per answer. A connection that opens with the
//!   HTTP/2 preface is served by hyper (cleartext HTTP/2 with prior knowledge).
//! - `hyper`: hyper 1's server for both versions (the backend before the minimal one;
//!   kept to show what the server costs).
//!
//! `--tls-dir DIR` (with `--server hyper`) serves TLS instead, for `https://` functions:
//! at start it makes a test CA and a certificate for `127.0.0.1` and `localhost` signed by
//! it, writes the CA to `DIR/ca.pem` (what the gateway's `tls_ca_file` names), and offers
//! ALPN `h2` and `http/1.1`; hyper serves whichever the client then speaks. rustls on ring,
//! as the gateway.
//!
//! Both systems get the same server. On 2 cores shared by the load generator, the
//! gateway and this backend, the backend's CPU per request is a share of every figure;
//! the minimal server keeps that share small (see docs/benchmarks.md).
//!
//! Prints `listening on ADDR` once bound; on SIGTERM/SIGINT prints
//! `served N requests on M connections` and exits.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::{Buf, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Largest request body accepted (both modes); beyond it: 413.
const MAX_BODY: usize = 8 << 20;
/// Largest request head (request line and headers) of the minimal server; beyond it: 431.
const MAX_HEAD: usize = 64 << 10;
/// Most headers the minimal server reads in a request; more: 431.
const MAX_HEADERS: usize = 64;
/// What a client speaking HTTP/2 with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const WS_EVENTS: &str = "application/websocket-events";
/// Time a TLS client has to complete its handshake; a stalled one is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// switchboard HTTP function: AWS event JSON in, Lambda proxy result out.
    Lambda,
    /// Pushpin WebSocket-over-HTTP: websocket-events in and out.
    Pushpin,
}

#[derive(Clone, Copy, ValueEnum)]
enum Server {
    /// HTTP/1.1 written out here (HTTP/2 connections go to hyper).
    Minimal,
    /// hyper 1's server, both versions.
    Hyper,
}

#[derive(Parser)]
#[command(about = "Trivial echo function for the function round-trip benchmark (loopback only)")]
struct Cli {
    /// Address to listen on (a loopback address; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, value_enum)]
    mode: Mode,
    /// The HTTP server.
    #[arg(long, value_enum, default_value = "minimal")]
    server: Server,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Serve TLS (ALPN h2 and http/1.1) with a test CA made at start, written to
    /// DIR/ca.pem; the certificate names 127.0.0.1 and localhost. Needs --server hyper.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        bail!("refusing to listen on {}: loopback only", cli.listen);
    }
    let tls = match (&cli.tls_dir, cli.server) {
        (None, _) => None,
        (Some(_), Server::Minimal) => {
            bail!("--tls-dir needs --server hyper: the minimal server speaks cleartext only")
        }
        (Some(dir), Server::Hyper) => Some(TlsAcceptor::from(Arc::new(test_tls(dir)?))),
    };
    let _ = switchboard_bench::raise_nofile_limit();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n);
    }
    rt.build()?
        .block_on(serve(cli.listen, cli.mode, cli.server, tls))
}

/// Makes a test CA and a server certificate for `127.0.0.1` and `localhost` signed by it,
/// writes the CA to `dir/ca.pem` (creating `dir`), and returns the server's TLS config:
/// ring, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
fn test_tls(dir: &Path) -> Result<rustls::ServerConfig> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fn-backend test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;
    let key = rcgen::KeyPair::generate()?;
    let mut leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(
    listen: SocketAddr,
    mode: Mode,
    server: Server,
    tls: Option<TlsAcceptor>,
) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let served = Arc::new(AtomicU64::new(0));
    let mut accepted = 0u64;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    accepted += 1;
                    let _ = stream.set_nodelay(true);
                    let served = served.clone();
                    match (&tls, server) {
                        (Some(tls), _) => {
                            tokio::spawn(serve_tls(tls.clone(), stream, mode, served))
                        }
                        (None, Server::Minimal) => tokio::spawn(serve_minimal(stream, mode, served)),
                        (None, Server::Hyper) => tokio::spawn(serve_hyper(stream, mode, served)),
                    };
                }
                // EMFILE and friends: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!(
        "served {} requests on {accepted} connections",
        served.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A handler's answer, whichever server sends it.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    Answer {
        status,
        content_type,
        body,
    }
}

fn error(status: StatusCode, msg: &'static str) -> Answer {
    reply(status, "text/plain", Bytes::from_static(msg.as_bytes()))
}

/// The answer to one request, given whether it said `Content-Type:
/// application/websocket-events` (Pushpin mode requires it).
fn answer(mode: Mode, websocket_events: bool, body: &[u8]) -> Answer {
    match mode {
        Mode::Lambda => lambda(body),
        Mode::Pushpin if websocket_events => pushpin(body),
        Mode::Pushpin => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/websocket-events\n",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// hyper

/// Serves one connection with hyper (HTTP/1.1, or HTTP/2 told apart by its preface).
async fn serve_hyper<S>(stream: S, mode: Mode, served: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        served.fetch_add(1, Ordering::Relaxed);
        handle(mode, req)
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// Serves one TLS connection with hyper once its handshake is done; the client speaks
/// HTTP/2 or HTTP/1.1 as ALPN settled it (hyper tells them apart by the preface).
async fn serve_tls(tls: TlsAcceptor, stream: TcpStream, mode: Mode, served: Arc<AtomicU64>) {
    if let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        serve_hyper(stream, mode, served).await;
    }
}

async fn handle(mode: Mode, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let a = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => {
            let ct = parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
            answer(mode, is_websocket_events(ct), &c.to_bytes())
        }
        Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or broken\n"),
    };
    let mut resp = Response::new(Full::new(a.body));
    *resp.status_mut() = a.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    Ok(resp)
}

fn is_websocket_events(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|v| v.starts_with(WS_EVENTS.as_bytes()))
}

/// A stream that first yields bytes already read from it (the minimal server's look at
/// a connection's first bytes), then reads on.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// the minimal HTTP/1.1 server

/// What the minimal server needs from a request head.
#[derive(Debug, PartialEq)]
struct Head {
    /// Bytes of the request line and headers, the blank line included.
    len: usize,
    body: BodyLength,
    keep_alive: bool,
    /// HTTP/1.0: the answer says `Connection: keep-alive` when the connection stays.
    http10: bool,
    expect_continue: bool,
    websocket_events: bool,
}

#[derive(Debug, PartialEq)]
enum BodyLength {
    Fixed(usize),
    Chunked,
}

/// Why a request cannot be served; the connection is answered with the status and closed.
type Refusal = (StatusCode, &'static str);

/// Parses a request head at the start of `buf`: `Ok(None)` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let bad = |what| (StatusCode::BAD_REQUEST, what);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large\n",
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers\n",
            ))
        }
        Err(_) => return Err(bad("malformed request head\n")),
    };
    let http10 = req.version == Some(0);
    let mut head = Head {
        len,
        body: BodyLength::Fixed(0),
        keep_alive: !http10,
        http10,
        expect_continue: false,
        websocket_events: false,
    };
    let mut length = None;
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            let n = switchboard_bench::parse_decimal(value.trim_ascii())
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(bad("bad content-length\n"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length headers\n"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err((
                    StatusCode::NOT_IMPLEMENTED,
                    "only chunked transfer-encoding\n",
                ));
            }
            head.body = BodyLength::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            head.websocket_events = is_websocket_events(Some(value));
        }
    }
    match (length, &head.body) {
        // RFC 9112 6.3: both is a smuggling attempt; refuse rather than pick one.
        (Some(_), BodyLength::Chunked) => {
            return Err(bad("both content-length and transfer-encoding\n"))
        }
        (Some(n), _) if n > MAX_BODY => {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"))
        }
        (Some(n), _) => head.body = BodyLength::Fixed(n),
        (None, _) => {}
    }
    Ok(Some(head))
}

/// Decodes the chunked body in `buf[*pos..]` into `body`, as far as `buf` goes: `Ok(true)`
/// once the last chunk and the trailers are in, `*pos` then just past them. Resumable:
/// call again with the same `pos` and `body` after more bytes arrived.
fn decode_chunked(buf: &[u8], pos: &mut usize, body: &mut Vec<u8>) -> Result<bool, Refusal> {
    let bad = (StatusCode::BAD_REQUEST, "bad chunked body\n");
    let line_end = |from: usize| -> Result<Option<usize>, Refusal> {
        match buf[from..].windows(2).position(|w| w == b"\r\n") {
            Some(i) => Ok(Some(from + i)),
            None if buf.len() - from > 4096 => Err(bad),
            None => Ok(None),
        }
    };
    loop {
        let Some(eol) = line_end(*pos)? else {
            return Ok(false);
        };
        let size = switchboard_core::text::chunk_size(&buf[*pos..eol])
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(bad)?;
        if size == 0 {
            // Trailers, then the blank line.
            let mut at = eol + 2;
            loop {
                let Some(end) = line_end(at)? else {
                    return Ok(false);
                };
                if end == at {
                    *pos = end + 2;
                    return Ok(true);
                }
                at = end + 2;
            }
        }
        if size > MAX_BODY - body.len() {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"));
        }
        let data = eol + 2;
        if buf.len() < data + size + 2 {
            return Ok(false);
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Err(bad);
        }
        body.extend_from_slice(&buf[data..data + size]);
        *pos = data + size + 2;
    }
}

/// The answer's bytes: status line, headers, body.
fn write_answer(out: &mut Vec<u8>, a: &Answer, keep_alive: bool, http10: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(a.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(a.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(a.content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    let mut digits = [0u8; 20];
    out.extend_from_slice(switchboard_core::text::decimal(
        a.body.len() as u64,
        &mut digits,
    ));
    match (keep_alive, http10) {
        (false, _) => out.extend_from_slice(b"\r\nconnection: close"),
        (true, true) => out.extend_from_slice(b"\r\nconnection: keep-alive"),
        (true, false) => {}
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&a.body);
}

/// Serves one connection: requests one after another until the client closes, asks to
/// close, or sends something that cannot be served (answered with its status, then
/// closed). A connection that opens with the HTTP/2 preface goes to hyper.
async fn serve_minimal(mut stream: TcpStream, mode: Mode, served: Arc<AtomicU64>) {
    let mut buf = BytesMut::with_capacity(8 << 10);
    let mut out = Vec::with_capacity(1 << 10);
    // Until the first bytes differ from the HTTP/2 preface, it may be one.
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            break;
        }
        if n == H2_PREFACE.len() {
            let prefix = buf.split().freeze();
            return serve_hyper(
                Rewind {
                    prefix,
                    inner: stream,
                },
                mode,
                served,
            )
            .await;
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    loop {
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(refusal) => return refuse(&mut stream, &mut out, refusal).await,
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        buf.advance(head.len);
        if head.expect_continue
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let body = match head.body {
            BodyLength::Fixed(n) => {
                while buf.len() < n {
                    buf.reserve(n - buf.len());
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                buf.split_to(n).freeze()
            }
            BodyLength::Chunked => {
                let (mut pos, mut body) = (0, Vec::new());
                loop {
                    match decode_chunked(&buf, &mut pos, &mut body) {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(refusal) => return refuse(&mut stream, &mut out, refusal).await,
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                buf.advance(pos);
                Bytes::from(body)
            }
        };
        served.fetch_add(1, Ordering::Relaxed);
        let a = answer(mode, head.websocket_events, &body);
        write_answer(&mut out, &a, head.keep_alive, head.http10);
        if stream.write_all(&out).await.is_err() || !head.keep_alive {
            return;
        }
    }
}

/// Answers a request that cannot be served, then closes.
async fn refuse(stream: &mut TcpStream, out: &mut Vec<u8>, (status, msg): Refusal) {
    write_answer(out, &error(status, msg), false, false);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// lambda

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "isBase64Encoded", default)]
    is_base64_encoded: bool,
}

#[derive(Serialize)]
struct ProxyResult<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(rename = "isBase64Encoded", skip_serializing_if = "std::ops::Not::not")]
    is_base64_encoded: bool,
}

fn lambda(body: &[u8]) -> Answer {
    let event: Event<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) => return error(StatusCode::BAD_REQUEST, "not an event JSON object\n"),
    };
    let out = ProxyResult {
        status_code: 200,
        body: event.body.as_deref(),
        is_base64_encoded: event.is_base64_encoded,
    };
    match serde_json::to_vec(&out) {
        Ok(v) => reply(StatusCode::OK, "application/json", Bytes::from(v)),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

// ---------------------------------------------------------------------------------------
// pushpin

/// One WebSocket-over-HTTP event: its type and, when it has a size, its content.
type WsEvent<'a> = (&'a [u8], Option<&'a [u8]>);

/// Parses `TYPE[ SIZE_HEX]\r\n[CONTENT\r\n]...`, or `None` if the framing is broken.
fn parse_events(mut b: &[u8]) -> Option<Vec<WsEvent<'_>>> {
    let mut events = Vec::with_capacity(1);
    while !b.is_empty() {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let line = &b[..eol];
        b = &b[eol + 2..];
        let (kind, content) = match line.iter().position(|&c| c == b' ') {
            None => (line, None),
            Some(sp) => {
                let size = std::str::from_utf8(&line[sp + 1..]).ok()?;
                let size = usize::from_str_radix(size, 16).ok()?;
                if b.len() < size + 2 || &b[size..size + 2] != b"\r\n" {
                    return None;
                }
                let content = &b[..size];
                b = &b[size + 2..];
                (&line[..sp], Some(content))
            }
        };
        events.push((kind, content));
    }
    Some(events)
}

fn push_event(out: &mut Vec<u8>, kind: &[u8], content: Option<&[u8]>) {
    out.extend_from_slice(kind);
    if let Some(c) = content {
        out.extend_from_slice(format!(" {:X}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(b"\r\n");
}

fn pushpin(body: &[u8]) -> Answer {
    let Some(events) = parse_events(body) else {
        return error(StatusCode::BAD_REQUEST, "bad websocket-events framing\n");
    };
    let mut out = Vec::with_capacity(body.len() + 16);
    for (kind, content) in events {
        match kind {
            b"OPEN" => push_event(&mut out, b"OPEN", None),
            b"TEXT" | b"BINARY" => push_event(&mut out, kind, Some(content.unwrap_or_default())),
            b"PING" => push_event(&mut out, b"PONG", content),
            b"CLOSE" => push_event(&mut out, b"CLOSE", content),
            // PONG, DISCONNECT and anything newer: nothing to say.
            _ => {}
        }
    }
    reply(StatusCode::OK, WS_EVENTS, Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_echoes_events() {
        let ev = parse_events(b"OPEN\r\nTEXT 5\r\nhello\r\nTEXT 0\r\n\r\n").unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[1], (&b"TEXT"[..], Some(&b"hello"[..])));
        assert_eq!(ev[2], (&b"TEXT"[..], Some(&b""[..])));
        assert!(parse_events(b"TEXT 6\r\nhello\r\n").is_none());
        let mut out = Vec::new();
        push_event(&mut out, b"TEXT", Some(&[b'x'; 26]));
        assert_eq!(out, b"TEXT 1A\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    }

    fn head(req: &str) -> Result<Option<Head>, Refusal> {
        parse_head(req.as_bytes())
    }

    #[test]
    fn request_heads() {
        let h = head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: application/websocket-events\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyLength::Fixed(5));
        assert!(h.keep_alive && h.websocket_events && !h.expect_continue && !h.http10);
        assert_eq!(h.len, 82);
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyLength::Chunked);
        assert!(h.expect_continue && !h.keep_alive);
        let h = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.http10 && !h.keep_alive && h.body == BodyLength::Fixed(0));
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.http10 && h.keep_alive);
        assert_eq!(head("POST / HTTP/1.1\r\nContent-Le").unwrap(), None);
        for (bad, status) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ("NOT HTTP\r\n\r\n", StatusCode::BAD_REQUEST),
        ] {
            assert_eq!(head(bad).unwrap_err().0, status, "{bad:?}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            head(&many).unwrap_err().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let long = format!("GET / HTTP/1.1\r\nx: {}", "y".repeat(MAX_HEAD));
        assert_eq!(
            head(&long).unwrap_err().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn chunked_bodies_decode_however_they_arrive() {
        let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        // Every split point: decoding resumes where it stopped.
        for split in 0..wire.len() {
            let (mut pos, mut body) = (0, Vec::new());
            let done = decode_chunked(&wire[..split], &mut pos, &mut body).unwrap();
            assert!(!done || split >= wire.len() - 4, "done early at {split}");
            assert!(done || decode_chunked(wire, &mut pos, &mut body).unwrap());
            assert_eq!(body, b"hello 0123456789");
            assert_eq!(&wire[pos..], b"NEXT");
        }
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"\r\n", b"123456789\r\n"] {
            let (mut pos, mut body) = (0, Vec::new());
            assert!(decode_chunked(bad, &mut pos, &mut body).is_err(), "{bad:?}");
        }
    }

    /// Listens on 127.0.0.1:0 and hands every connection to `serve` with the count of
    /// requests served; returns the address and that count.
    async fn listen<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicU64>)
    where
        F: Fn(TcpStream, Arc<AtomicU64>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, counter.clone()));
            }
        });
        (addr, served)
    }

    /// The minimal server on a real socket: keep-alive, pipelining, chunked bodies,
    /// `Expect: 100-continue`, HTTP/1.0, refusals, and HTTP/2 handed to hyper.
    #[tokio::test]
    async fn minimal_server_over_a_socket() {
        let (addr, served) =
            listen(|stream, served| serve_minimal(stream, Mode::Lambda, served)).await;
        let event = r#"{"requestContext":{},"body":"hi","isBase64Encoded":false}"#;
        let answer = r#"{"statusCode":200,"body":"hi"}"#;
        let ok = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());

        // Two requests in one write, then a chunked one behind an Expect.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let fixed = format!(
            "POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n{event}",
            event.len()
        );
        c.write_all(format!("{fixed}{fixed}").as_bytes())
            .await
            .unwrap();
        let mut got = vec![0u8; 2 * ok.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), format!("{ok}{ok}"));
        c.write_all(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut got = vec![0u8; cont.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, cont);
        let (a, b) = event.split_at(10);
        c.write_all(
            format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).as_bytes(),
        )
        .await
        .unwrap();
        let mut got = vec![0u8; ok.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), ok);

        // HTTP/1.0 without keep-alive: answered, then closed.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!(
                "POST / HTTP/1.0\r\ncontent-length: {}\r\n\r\n{event}",
                event.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("connection: close\r\n"),
            "{got}"
        );

        // Not an event: 400, and the connection stays. Broken framing: 400, then closed.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n[1]POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert_eq!(
            got.matches("HTTP/1.1 400 Bad Request\r\n").count(),
            2,
            "{got}"
        );
        assert!(got.ends_with("bad chunked body\n"), "{got}");

        // HTTP/2 with prior knowledge goes to hyper.
        let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::post("http://localhost/")
            .body(Full::new(Bytes::from(event)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, answer.as_bytes());
        // 2 + 1 + 1 + 1 (the refused one is not counted) + 1 over HTTP/2.
        assert_eq!(served.load(Ordering::Relaxed), 6);
    }

    /// `--tls-dir`: a client trusting only the written `ca.pem` gets answers over
    /// HTTP/1.1 and over HTTP/2, as ALPN chose, for both names on the certificate.
    #[tokio::test]
    async fn tls_server_answers_h1_and_h2() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};

        let dir = std::env::temp_dir().join(format!("fn-backend-tls-{}", std::process::id()));
        let tls = TlsAcceptor::from(Arc::new(test_tls(&dir).unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let (addr, served) =
            listen(move |stream, served| serve_tls(tls.clone(), stream, Mode::Lambda, served))
                .await;
        let event = r#"{"requestContext":{},"body":"hi","isBase64Encoded":false}"#;
        for (alpn, name, version) in [
            (&b"http/1.1"[..], "localhost", http::Version::HTTP_11),
            (b"h2", "127.0.0.1", http::Version::HTTP_2),
        ] {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            let tcp = TcpStream::connect(addr).await.unwrap();
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from(name).unwrap(), tcp)
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
            let io = TokioIo::new(stream);
            let req = Request::post(format!("https://{name}/"))
                .body(Full::new(Bytes::from(event)))
                .unwrap();
            let resp = if version == http::Version::HTTP_2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                send.send_request(req).await.unwrap()
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                send.send_request(req).await.unwrap()
            };
            assert_eq!((resp.status(), resp.version()), (StatusCode::OK, version));
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, &br#"{"statusCode":200,"body":"hi"}"#[..], "{name}");
        }
        assert_eq!(served.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn lambda_echoes_body() {
        let r = lambda(
            br#"{"requestContext":{"routeKey":"$default"},"body":"a\"b","isBase64Encoded":false}"#,
        );
        assert_eq!(r.status, StatusCode::OK);
        let r = lambda(b"[1]");
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

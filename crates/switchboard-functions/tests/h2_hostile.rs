//! The HTTP invoker with `http_version = "2"` against a hostile HTTP/2 server: a raw TCP
//! listener that writes frames by hand. Floods, zero window updates, oversized headers,
//! CONTINUATION floods and a GOAWAY that refuses everything: each invocation fails
//! cleanly (or succeeds, where the server finally answers), nothing hangs, and what the
//! server can make the gateway read stays bounded. The floods are also sent over TLS to
//! an `https://` function whose server picked `h2` by ALPN (`http_version = "auto"`).

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::config::{HttpFunctionConfig, HttpVersion};
use switchboard_core::event::{ApiIdentity, EventKind};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::{InvokeError, Invoker};
use switchboard_test_tls::TestCa;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// An upper bound for every invocation: far above its `timeout_ms`, so a hang fails the
/// test instead of stalling it.
const HANG: Duration = Duration::from_secs(20);

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field with a new name, added to the dynamic table when `index`.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8], index: bool) {
    if index {
        out.push(0x40);
    } else {
        out.push(0x00);
    }
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// `:status: 200` (static table index 8).
const STATUS_200: u8 = 0x88;

/// A complete `200` answer with `body` on stream `id`.
fn answer(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = frame(HEADERS, END_HEADERS, id, &[STATUS_200]);
    out.extend(frame(DATA, END_STREAM, id, body));
    out
}

/// The two halves of a server connection, over TCP or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A server connection: the client's preface has been read.
struct Peer {
    rd: ReadHalf,
    wr: WriteHalf,
}

impl Peer {
    async fn new(stream: impl AsyncRead + AsyncWrite + Send + 'static) -> std::io::Result<Self> {
        let (rd, wr) = tokio::io::split(stream);
        let (mut rd, wr): (ReadHalf, WriteHalf) = (Box::new(rd), Box::new(wr));
        let mut preface = [0u8; 24];
        rd.read_exact(&mut preface).await?;
        assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        Ok(Self { rd, wr })
    }

    /// The id of the next request (its HEADERS), skipping every other frame.
    async fn request(&mut self) -> std::io::Result<u32> {
        read_request(&mut self.rd).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write(&mut self.wr, bytes).await
    }

    /// Reads and drops everything the client sends from now on; request ids go to the
    /// returned channel.
    fn drain(self) -> (WriteHalf, tokio::sync::mpsc::UnboundedReceiver<u32>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut rd = self.rd;
        tokio::spawn(async move {
            while let Ok(id) = read_request(&mut rd).await {
                if tx.send(id).is_err() {
                    return;
                }
            }
        });
        (self.wr, rx)
    }
}

/// Writes `bytes` and flushes: TLS may hold records back until then.
async fn write(wr: &mut WriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

async fn read_request(rd: &mut ReadHalf) -> std::io::Result<u32> {
    loop {
        let mut head = [0u8; 9];
        rd.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        if head[3] == HEADERS {
            return Ok(id);
        }
    }
}

type Script =
    Arc<dyn Fn(usize, Peer) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static>;

/// A listener running `script(n, peer)` for its `n`th connection (from 0), in cleartext
/// or over TLS.
struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    /// For TLS: the CA of its certificate (for `localhost`), which the invoker trusts.
    ca: Option<TestCa>,
}

/// How the server is reached.
#[derive(Clone, Copy, Debug)]
enum Over {
    /// h2c with prior knowledge (`http_version = "2"`).
    Cleartext,
    /// TLS, `h2` picked by ALPN (`http_version = "auto"`).
    Tls,
}

async fn server<F, Fut>(script: F) -> Server
where
    F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    server_over(Over::Cleartext, script).await
}

async fn server_over<F, Fut>(over: Over, script: F) -> Server
where
    F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let script: Script = Arc::new(move |n, peer| Box::pin(script(n, peer)));
    let (ca, tls): (_, Option<TlsAcceptor>) = match over {
        Over::Cleartext => (None, None),
        Over::Tls => {
            let ca = TestCa::new(&format!(
                "h2-hostile-{}",
                NEXT_CA.fetch_add(1, Ordering::SeqCst)
            ));
            let acceptor = ca.server_leaf(&["localhost"]).acceptor(&[b"h2"], None);
            (Some(ca), Some(acceptor))
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepts);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let (script, tls) = (Arc::clone(&script), tls.clone());
            tokio::spawn(async move {
                let peer = match tls {
                    None => Peer::new(stream).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => Peer::new(stream).await,
                        Err(_) => return,
                    },
                };
                if let Ok(peer) = peer {
                    script(n, peer).await;
                }
            });
        }
    });
    Server { addr, accepts, ca }
}

/// Tells the test CAs of one process apart.
static NEXT_CA: AtomicUsize = AtomicUsize::new(0);

fn invoker(srv: &Server, timeout_ms: u64) -> HttpInvoker {
    let port = srv.addr.port();
    let (url, http_version) = match srv.ca {
        None => (format!("http://{}/fn", srv.addr), HttpVersion::Http2),
        Some(_) => (format!("https://localhost:{port}/fn"), HttpVersion::Auto),
    };
    let cfg = HttpFunctionConfig {
        url,
        timeout_ms,
        max_concurrency: 16,
        max_queue: 16,
        secret: None,
        headers: BTreeMap::new(),
        max_response_bytes: 64 * 1024,
        http_version,
        tls_ca_file: srv.ca.as_ref().map(TestCa::ca_file),
        tls_client_cert: None,
        tls_client_key: None,
    };
    let api = ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    };
    HttpInvoker::new("fn", &cfg, api).unwrap()
}

/// One invocation, bounded by [`HANG`]; its answer's body.
async fn call(inv: &HttpInvoker) -> Result<Bytes, InvokeError> {
    let invocation = common::invocation(EventKind::Message, Some(Bytes::from_static(b"hi")));
    let response = tokio::time::timeout(HANG, inv.invoke(invocation))
        .await
        .expect("the invocation ended on its own")?;
    Ok(response.body.map(|p| p.data).unwrap_or_default())
}

/// How an invocation fails whose server broke the protocol with `code`.
fn broke(code: &str) -> Result<Bytes, InvokeError> {
    Err(InvokeError::Failed(format!(
        "function broke HTTP/2 ({code})"
    )))
}

fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[])
}

/// A server that answers every request with `pong`.
async fn good(mut peer: Peer) {
    if peer.write(&settings()).await.is_err() {
        return;
    }
    while let Ok(id) = peer.request().await {
        if peer.write(&answer(id, b"pong")).await.is_err() {
            return;
        }
    }
}

/// Floods `unit` frames up to 64 MiB without ever reading what the client writes back.
/// The client must stop reading once its acknowledgements stop going out, so the flood
/// stalls far short of that, and the invocation times out.
async fn flood_without_reading(over: Over, unit: Vec<u8>) {
    const TOTAL: usize = 64 << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (w, f) = (Arc::clone(&written), Arc::clone(&finished));
    let srv = server_over(over, move |_, mut peer| {
        let (written, finished, unit) = (Arc::clone(&w), Arc::clone(&f), unit.clone());
        async move {
            let batch: Vec<u8> = unit.repeat((64 * 1024) / unit.len());
            let _ = peer.write(&settings()).await;
            while written.load(Ordering::SeqCst) < TOTAL {
                if peer.write(&batch).await.is_err() {
                    return;
                }
                written.fetch_add(batch.len(), Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
            // Hold the connection open: the client's reads must have stopped.
            let _keep = peer;
            std::future::pending::<()>().await;
        }
    })
    .await;
    let inv = invoker(&srv, 1_000);
    assert_eq!(call(&inv).await, Err(InvokeError::Timeout));
    assert!(!finished.load(Ordering::SeqCst), "the flood was read whole");
    let written = written.load(Ordering::SeqCst);
    assert!(written > 0, "the flood began (the connection was up)");
    assert!(written < 32 << 20, "{written} bytes of flood were taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_our_acks_stalls_and_times_out() {
    flood_without_reading(Over::Cleartext, ping()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_that_never_reads_our_acks_stalls_and_times_out() {
    flood_without_reading(Over::Cleartext, settings_change()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_ping_flood_that_never_reads_our_acks_stalls_and_times_out() {
    flood_without_reading(Over::Tls, ping()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_settings_flood_that_never_reads_our_acks_stalls_and_times_out() {
    flood_without_reading(Over::Tls, settings_change()).await;
}

fn ping() -> Vec<u8> {
    frame(PING, 0, 0, b"12345678")
}

/// `SETTINGS_INITIAL_WINDOW_SIZE` = 65536, to be acknowledged.
fn settings_change() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0x0, 0x4, 0, 1, 0, 0])
}

/// Floods `count` copies of `unit` while reading, then answers the request.
async fn flood_then_answer(over: Over, unit: Vec<u8>, count: usize) {
    let srv = server_over(over, move |_, peer| {
        let flood = unit.repeat(count);
        async move {
            let (mut wr, mut requests) = peer.drain();
            let _ = write(&mut wr, &settings()).await;
            let _ = write(&mut wr, &flood).await;
            if let Some(id) = requests.recv().await {
                let _ = write(&mut wr, &answer(id, b"pong")).await;
            }
            let _keep = (wr, requests);
            std::future::pending::<()>().await;
        }
    })
    .await;
    let inv = invoker(&srv, 10_000);
    assert_eq!(call(&inv).await.unwrap(), "pong");
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_reads_our_acks_still_gets_its_answer_through() {
    flood_then_answer(Over::Cleartext, ping(), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_that_reads_our_acks_still_gets_its_answer_through() {
    flood_then_answer(Over::Cleartext, settings_change(), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_ping_flood_that_reads_our_acks_still_gets_its_answer_through() {
    flood_then_answer(Over::Tls, ping(), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_settings_flood_that_reads_our_acks_still_gets_its_answer_through() {
    flood_then_answer(Over::Tls, settings_change(), 20_000).await;
}

/// The first connection answers its first request with `bad`, the later ones with `pong`
/// (if it is still up); later connections behave.
async fn broken_first_connection(bad: fn(u32) -> Vec<u8>) -> (Result<Bytes, InvokeError>, Server) {
    let srv = server(move |n, mut peer| async move {
        if n > 0 {
            return good(peer).await;
        }
        let _ = peer.write(&settings()).await;
        if let Ok(id) = peer.request().await {
            let _ = peer.write(&bad(id)).await;
        }
        while let Ok(id) = peer.request().await {
            if peer.write(&answer(id, b"pong")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let inv = invoker(&srv, 5_000);
    let first = call(&inv).await;
    assert_eq!(call(&inv).await.unwrap(), "pong", "the next call is served");
    (first, srv)
}

#[tokio::test]
async fn a_zero_connection_window_update_fails_cleanly_and_the_next_call_reconnects() {
    let (first, srv) =
        broken_first_connection(|_| frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes())).await;
    assert_eq!(first, broke("PROTOCOL_ERROR"));
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_zero_stream_window_update_fails_cleanly_and_the_next_call_reconnects() {
    let (first, srv) =
        broken_first_connection(|id| frame(WINDOW_UPDATE, 0, id, &0u32.to_be_bytes())).await;
    assert_eq!(first, broke("PROTOCOL_ERROR"));
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 2);
}

/// A `200` head on stream `id` whose header list decodes to `copies` times 4 KB: one
/// field put in the dynamic table, then named by index, so the block itself is small.
fn big_head(id: u32, copies: usize) -> Vec<u8> {
    let mut block = vec![STATUS_200];
    hpack_literal(&mut block, "x-big", &[b'a'; 4000], true);
    block.extend(std::iter::repeat_n(0xbe, copies));
    let mut out = frame(HEADERS, END_HEADERS, id, &block);
    out.extend(frame(DATA, END_STREAM, id, b"pong"));
    out
}

#[tokio::test]
async fn response_headers_over_64_kib_fail_the_stream_and_keep_the_connection() {
    let (first, srv) = broken_first_connection(|id| big_head(id, 20)).await;
    assert_eq!(first, broke("PROTOCOL_ERROR"));
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn response_headers_over_four_times_the_limit_fail_the_connection() {
    let (first, srv) = broken_first_connection(|id| big_head(id, 70)).await;
    assert_eq!(first, broke("ENHANCE_YOUR_CALM"));
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_continuation_flood_is_refused_with_enhance_your_calm() {
    let written = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&written);
    let srv = server(move |n, mut peer| {
        let written = Arc::clone(&w);
        async move {
            if n > 0 {
                return good(peer).await;
            }
            let _ = peer.write(&settings()).await;
            let Ok(id) = peer.request().await else { return };
            // A header block that never ends.
            if peer
                .write(&frame(HEADERS, 0, id, &[STATUS_200]))
                .await
                .is_err()
            {
                return;
            }
            let empty = frame(CONTINUATION, 0, id, &[]).repeat(1024);
            for _ in 0..1024 {
                if peer.write(&empty).await.is_err() {
                    return;
                }
                written.fetch_add(1024, Ordering::SeqCst);
            }
        }
    })
    .await;
    let inv = invoker(&srv, 5_000);
    assert_eq!(call(&inv).await, broke("ENHANCE_YOUR_CALM"));
    let written = written.load(Ordering::SeqCst);
    assert!(written < 1024 * 1024, "{written} CONTINUATION frames taken");
    assert_eq!(call(&inv).await.unwrap(), "pong");
}

#[tokio::test]
async fn a_goaway_refusing_every_stream_is_retried_on_a_new_connection() {
    let srv = server(|n, mut peer| async move {
        if n > 0 {
            return good(peer).await;
        }
        let _ = peer.write(&settings()).await;
        if peer.request().await.is_ok() {
            // Last stream id 0, NO_ERROR: nothing was processed.
            let mut payload = 0u32.to_be_bytes().to_vec();
            payload.extend_from_slice(&0u32.to_be_bytes());
            let _ = peer.write(&frame(GOAWAY, 0, 0, &payload)).await;
        }
        while peer.request().await.is_ok() {}
    })
    .await;
    let inv = invoker(&srv, 5_000);
    assert_eq!(call(&inv).await.unwrap(), "pong");
    assert_eq!(srv.accepts.load(Ordering::SeqCst), 2);
}

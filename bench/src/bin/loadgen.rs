//! `loadgen`: a WebSocket load generator for the switchboard edge, written on
//! `switchboard-ws` (Role::Client) and tokio.
//!
//! Subcommands (each prints one JSON line on stdout, human-readable lines on stderr):
//! - `idle`: open N connections over several loopback source addresses, print `READY`,
//!   hold them until stdin reaches EOF (or `--hold SECS`), then close them cleanly; with
//!   `--steps`, print `READY` at each step and open more at each line on stdin.
//! - `echo`: closed loop, every connection sends one text message (fixed bytes, or JSON
//!   chat messages) and waits for its echo.
//! - `connect-rate`: workers open a connection (TCP + handshake until 101), close it
//!   cleanly, and repeat.
//! - `fanout`: N subscribers join one group (switchboard) or channel (sockudo, Pusher
//!   protocol); then, driven by commands, one publish at a time measures the time until
//!   the last subscriber has the message, or publishing in a closed loop measures
//!   sustained deliveries/s, every subscriber checked for every message (see `fanout`).
//!
//! Every subcommand can offer permessage-deflate (`--deflate`, RFC 7692, with the codec of
//! `switchboard-ws`) and the `switchboard.v1` subprotocol (`--switchboard-v1`,
//! docs/protocol.md: the hello is read before a connection counts as open; `echo` then
//! sends `m<n>:` messages and acks the server's every 32). `echo` counts the bytes on the
//! wire both ways, so compressed and plain runs can be compared by bandwidth.
//!
//! Loopback targets only; every loop is bounded in time and count.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use switchboard_ws::deflate::{DeflateConfig, DeflateParams};
use switchboard_ws::{close_code, handshake, Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Open files this process may use for connections (the hard limit is 20,000).
const MAX_CONNECTIONS: usize = 19_000;
/// Upper bound of any hold or run, whatever the flags say.
const MAX_SECS: f64 = 3600.0;
const CLIENT_LIMITS: Limits = Limits {
    max_frame_bytes: 64 << 20,
    max_message_bytes: 64 << 20,
};

#[derive(Parser)]
#[command(about = "WebSocket load generator (loopback targets only)")]
struct Cli {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Cmd {
    /// Open N idle connections, print READY, hold until stdin EOF or --hold, then close.
    Idle(IdleArgs),
    /// Closed-loop echo: each connection sends a message and waits for its echo.
    Echo(EchoArgs),
    /// Open, handshake and cleanly close connections in a loop.
    ConnectRate(ConnectRateArgs),
    /// Group fan-out: N subscribers, publish through the HTTP API, time the deliveries.
    Fanout(FanoutArgs),
}

#[derive(Args)]
struct Target {
    /// ws://HOST:PORT/PATH; HOST must be a loopback address (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    url: String,
    /// Number of source addresses 127.0.0.1..=127.0.0.K the connections are spread over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`); when the
    /// server agrees, messages of 32 bytes or more are compressed at zlib level 1.
    #[arg(long)]
    deflate: bool,
    /// Offer the `switchboard.v1` subprotocol and speak it (the server must select it).
    #[arg(long)]
    switchboard_v1: bool,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    /// Connections to open.
    #[arg(long)]
    connections: usize,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Hold for this many seconds (stdin is then ignored). Without it: until stdin EOF.
    #[arg(long)]
    hold: Option<f64>,
    /// Upper bound on the hold when waiting for stdin EOF.
    #[arg(long, default_value_t = 600.0)]
    max_hold: f64,
    /// Open in steps: after each of these counts (below --connections) print `READY N` and
    /// wait for a line on stdin before opening more (EOF instead: close everything).
    #[arg(long, value_delimiter = ',')]
    steps: Vec<usize>,
}

#[derive(Args)]
struct EchoArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Message size in bytes (text), for `--payload fixed`.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// What each message holds.
    #[arg(long, value_enum, default_value_t = Payload::Fixed)]
    payload: Payload,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send binary messages instead of text.
    #[arg(long)]
    binary: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Payload {
    /// `--size` bytes of `abc...`, the same message every time.
    Fixed,
    /// JSON chat messages (`{"action":"sendmessage","room":...,"text":...}`, 100–400
    /// bytes), a deterministic pool of 512 different ones, each connection cycling
    /// through it from its own offset: what permessage-deflate is for.
    Chat,
}

#[derive(Args)]
struct ConnectRateArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent workers.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many connections in total.
    #[arg(long, default_value_t = 5_000_000)]
    max_connections: u64,
}

fn main() {
    let cli = Cli::parse();
    let limit = switchboard_bench::raise_nofile_limit().unwrap_or(1024);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n);
    }
    let rt = rt.build().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Idle(a) => idle(a, limit).await,
            Cmd::Echo(a) => echo(a, limit).await,
            Cmd::ConnectRate(a) => connect_rate(a).await,
            Cmd::Fanout(a) => fanout(a, limit).await,
        }
    });
    let code = match result {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            1
        }
    };
    // Don't wait for the blocking stdin reader or lingering tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------
// Target and connection

struct Endpoint {
    addr: SocketAddr,
    host: String,
    path: String,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    /// Offer permessage-deflate.
    deflate: bool,
    /// Offer `switchboard.v1`, require it, and read the hello.
    v1: bool,
}

impl Endpoint {
    fn parse(t: &Target) -> Result<Arc<Self>> {
        let rest = t
            .url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("only ws:// URLs are supported: {}", t.url))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| anyhow!("bad IPv6 host in {}", t.url))?;
            let port = v6[end + 1..].strip_prefix(':').unwrap_or("80");
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (authority, "80"),
            }
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in {}", t.url))?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .with_context(|| format!("host must be a loopback IP or localhost: {host}"))?
        };
        if !ip.is_loopback() {
            bail!("refusing non-loopback target {ip}: this tool only loads this machine");
        }
        let sources = match ip {
            IpAddr::V4(_) => (1..=t.sources.clamp(1, 254))
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
        };
        Ok(Arc::new(Self {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
            path: path.to_string(),
            sources,
            next_source: AtomicUsize::new(0),
            deflate: t.deflate,
            v1: t.switchboard_v1,
        }))
    }

    /// TCP connect from the next source address, then the opening handshake up to the 101
    /// (and, with `switchboard.v1`, the hello).
    async fn connect(&self) -> Result<Ws> {
        self.connect_opts(None).await
    }

    /// `connect`, with the socket's receive buffer set to `rcvbuf` bytes when given (set
    /// before connecting, so the advertised window stays that small).
    async fn connect_opts(&self, rcvbuf: Option<u32>) -> Result<Ws> {
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        let src = self.sources[i % self.sources.len()];
        let socket = match src {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if src.is_ipv4() {
            // Pick the ephemeral port at connect time, per 4-tuple, not at bind time.
            let one: libc::c_int = 1;
            // SAFETY: a valid fd and a c_int option of the right size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size)?;
        }
        socket.bind(SocketAddr::new(src, 0))?;
        let mut stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let key = handshake::client_key();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, key
        );
        if self.deflate {
            request.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
        }
        if self.v1 {
            request.push_str("Sec-WebSocket-Protocol: ");
            request.push_str(V1_PROTOCOL);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let expected = handshake::accept_key(key.as_bytes());
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("connection closed during the handshake");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf)? {
                httparse::Status::Complete(n) => {
                    if resp.code != Some(101) {
                        bail!("handshake answered {:?}, not 101", resp.code);
                    }
                    let header = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| h.value)
                    };
                    if header("sec-websocket-accept") != Some(expected.as_bytes()) {
                        bail!("wrong or missing Sec-WebSocket-Accept");
                    }
                    let deflate = match header("sec-websocket-extensions") {
                        Some(v) if self.deflate => Some(client_deflate_params(v)?),
                        Some(v) => bail!(
                            "extension {:?} selected but none offered",
                            String::from_utf8_lossy(v)
                        ),
                        None => None,
                    };
                    let protocol = header("sec-websocket-protocol");
                    let v1 = match protocol {
                        Some(p) if self.v1 && p == V1_PROTOCOL.as_bytes() => true,
                        None if self.v1 => {
                            bail!("the server did not select {V1_PROTOCOL} (is [resume] enabled?)")
                        }
                        None => false,
                        Some(p) => bail!(
                            "subprotocol {:?} selected, not offered",
                            String::from_utf8_lossy(p)
                        ),
                    };
                    buf.advance(n);
                    let mut ws = Ws {
                        stream,
                        wire_in: buf.len() as u64,
                        wire_out: 0,
                        rbuf: buf,
                        wbuf: BytesMut::with_capacity(256),
                        decoder: Decoder::new(Role::Client, CLIENT_LIMITS, deflate),
                        encoder: Encoder::new(Role::Client, deflate),
                        deflate: deflate.is_some(),
                        v1: None,
                        scratch: Vec::new(),
                    };
                    if v1 {
                        ws.read_hello().await?;
                    }
                    return Ok(ws);
                }
                httparse::Status::Partial if buf.len() < 16 * 1024 => {}
                httparse::Status::Partial => bail!("handshake response head too long"),
            }
        }
    }

    async fn connect_timeout(&self) -> Result<Ws> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect())
            .await
            .map_err(|_| anyhow!("handshake timed out"))?
    }
}

/// Our side of the permessage-deflate the server answered with. `switchboard-ws` names
/// the parameters from the server's side (`server_*` is the compressor, the inflater
/// follows `client_no_context_takeover`), so a client swaps them: it compresses as the
/// `client_*` parameters say and inflates what the server compressed.
fn client_deflate_params(value: &[u8]) -> Result<DeflateParams> {
    let value = std::str::from_utf8(value).context("Sec-WebSocket-Extensions is not UTF-8")?;
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("permessage-deflate"))
        || value.contains(',')
    {
        bail!("unexpected Sec-WebSocket-Extensions: {value}");
    }
    let defaults = DeflateConfig::default();
    let mut params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        level: defaults.level,
        threshold: defaults.threshold,
    };
    for part in parts {
        let (name, arg) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        match (name, arg) {
            // The server resets its compressor: our inflater may too (shared per thread).
            ("server_no_context_takeover", None) => params.client_no_context_takeover = true,
            // We must reset ours after every message.
            ("client_no_context_takeover", None) => params.server_no_context_takeover = true,
            // Our 15-bit inflater reads any smaller window.
            ("server_max_window_bits", Some(_)) => {}
            ("client_max_window_bits", Some(bits)) => {
                params.server_max_window_bits = bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| (8..=15).contains(b))
                    .ok_or_else(|| anyhow!("bad client_max_window_bits in {value}"))?;
            }
            _ => bail!("unexpected permessage-deflate parameter {part:?} in {value}"),
        }
    }
    Ok(params)
}

/// The `switchboard.v1` subprotocol name (docs/protocol.md).
const V1_PROTOCOL: &str = "switchboard.v1";
/// The client acknowledges the server's messages at least this often (as the server does).
const V1_ACK_EVERY: u64 = 32;
/// First byte of a sequenced binary message.
const V1_BINARY_TAG: u8 = 0x01;

/// A client's `switchboard.v1` numbers.
struct V1 {
    /// Sequence number of our last message.
    sent: u64,
    /// Sequence number of the server's last message.
    received: u64,
    /// What we last acknowledged.
    acked: u64,
    /// Ack frames from the server.
    acks_received: u64,
}

/// One client connection.
struct Ws {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    /// Bytes read from and written to the socket after the handshake: frames as on the wire.
    wire_in: u64,
    wire_out: u64,
    /// permessage-deflate agreed.
    deflate: bool,
    /// `switchboard.v1` selected (and its hello read).
    v1: Option<V1>,
    /// Builds `switchboard.v1` frames without allocating per message.
    scratch: Vec<u8>,
}

impl Ws {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wire_out += self.wbuf.len() as u64;
            self.wbuf.clear();
        }
        Ok(())
    }

    async fn send(&mut self, text: bool, payload: &[u8]) -> std::io::Result<()> {
        self.encoder.message(text, payload, &mut self.wbuf);
        self.flush().await
    }

    /// Sends one application message: as it is, or on `switchboard.v1` numbered (`m<n>:`
    /// or the binary tag), after an ack of the server's messages when one is due.
    async fn send_data(&mut self, text: bool, payload: &[u8]) -> std::io::Result<()> {
        let Some(v1) = self.v1.as_mut() else {
            return self.send(text, payload).await;
        };
        use std::io::Write;
        if v1.received >= v1.acked + V1_ACK_EVERY {
            self.scratch.clear();
            let _ = write!(self.scratch, "a{}", v1.received);
            v1.acked = v1.received;
            self.encoder.message(true, &self.scratch, &mut self.wbuf);
        }
        v1.sent += 1;
        self.scratch.clear();
        if text {
            let _ = write!(self.scratch, "m{}:", v1.sent);
        } else {
            self.scratch.push(V1_BINARY_TAG);
            self.scratch.extend_from_slice(&v1.sent.to_be_bytes());
        }
        self.scratch.extend_from_slice(payload);
        self.encoder.message(text, &self.scratch, &mut self.wbuf);
        self.flush().await
    }

    /// The next application message's payload (`switchboard.v1`: its frame checked and
    /// stripped, acks and heartbeats counted and skipped); pongs skipped, pings answered.
    async fn recv_data(&mut self) -> Result<Bytes> {
        loop {
            let (text, data) = match self.recv().await? {
                Some(Message::Text(b)) => (true, b),
                Some(Message::Binary(b)) => (false, b),
                Some(Message::Pong(_)) | Some(Message::Ping(_)) => continue,
                Some(Message::Close(c)) => bail!("server closed: {c:?}"),
                None => bail!("server closed the TCP connection"),
            };
            let Some(v1) = self.v1.as_mut() else {
                return Ok(data);
            };
            let (seq, payload) = match (text, data.first()) {
                (true, Some(b'm')) => {
                    let colon = data
                        .iter()
                        .position(|&b| b == b':')
                        .ok_or_else(|| anyhow!("switchboard.v1: message frame without ':'"))?;
                    (parse_decimal(&data[1..colon]), data.slice(colon + 1..))
                }
                (true, Some(b'a')) => {
                    parse_decimal(&data[1..])
                        .ok_or_else(|| anyhow!("switchboard.v1: malformed ack"))?;
                    v1.acks_received += 1;
                    continue;
                }
                (true, Some(b'h')) if data.len() == 1 => continue,
                (false, Some(&V1_BINARY_TAG)) if data.len() >= 9 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&data[1..9]);
                    (Some(u64::from_be_bytes(n)), data.slice(9..))
                }
                _ => bail!(
                    "switchboard.v1: unexpected frame {:?}",
                    String::from_utf8_lossy(&data[..data.len().min(40)])
                ),
            };
            match seq {
                Some(n) if n == v1.received + 1 => v1.received = n,
                Some(n) => bail!(
                    "switchboard.v1: message {n} after {} (gap or repeat)",
                    v1.received
                ),
                None => bail!("switchboard.v1: malformed message number"),
            }
            return Ok(payload);
        }
    }

    /// Reads the `switchboard.v1` hello (`s{json}` with a session token), the first frame.
    async fn read_hello(&mut self) -> Result<()> {
        let b = match self.recv().await? {
            Some(Message::Text(b)) => b,
            other => bail!("expected the switchboard.v1 hello, got {other:?}"),
        };
        let hello: Value = match b.strip_prefix(b"s") {
            Some(json) => serde_json::from_slice(json).context("switchboard.v1 hello")?,
            None => bail!(
                "expected the switchboard.v1 hello, got {:?}",
                String::from_utf8_lossy(&b[..b.len().min(40)])
            ),
        };
        if !hello["session"].is_string() {
            bail!("switchboard.v1 hello without a session: {hello}");
        }
        self.v1 = Some(V1 {
            sent: 0,
            received: 0,
            acked: 0,
            acks_received: 0,
        });
        Ok(())
    }

    /// The next data, pong or close message; pings are answered here. `None`: EOF.
    async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.decoder.decode(&mut self.rbuf)? {
                Some(Message::Ping(p)) => {
                    self.encoder.ping_pong(true, &p, &mut self.wbuf);
                    self.flush().await?;
                }
                Some(m) => return Ok(Some(m)),
                None => {
                    self.rbuf.reserve(4096);
                    let n = self.stream.read_buf(&mut self.rbuf).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.wire_in += n as u64;
                }
            }
        }
    }

    /// Close handshake from our side: send 1000, read until the peer's close, then wait
    /// for the peer to close TCP. `true` when all of that happened in time.
    async fn close(mut self) -> bool {
        let fut = async {
            self.encoder.close(close_code::NORMAL, "", &mut self.wbuf);
            self.flush().await?;
            loop {
                match self.recv().await? {
                    Some(Message::Close(_)) => break,
                    Some(_) => {}
                    None => return Ok::<bool, anyhow::Error>(false),
                }
            }
            let mut scratch = [0u8; 256];
            while self.stream.read(&mut scratch).await? > 0 {}
            Ok(true)
        };
        matches!(tokio::time::timeout(CLOSE_TIMEOUT, fut).await, Ok(Ok(true)))
    }

    /// Answers a close the peer started.
    async fn answer_close(&mut self, code: u16) {
        self.encoder.close(code, "", &mut self.wbuf);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.flush()).await;
    }
}

/// A non-empty run of ASCII digits as a number (no sign, no overflow).
fn parse_decimal(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    d.iter().try_fold(0u64, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0'))
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, MAX_SECS))
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 120_000_000)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Opens `n` connections with at most `concurrency` handshakes in flight, handing each to
/// `on_open`. Stops early when failures pile up. Returns (opened, failed, first error).
async fn open_many<F>(
    ep: &Arc<Endpoint>,
    n: usize,
    concurrency: usize,
    on_open: F,
) -> (usize, usize, Option<String>)
where
    F: Fn(usize, Ws) + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_err = Arc::new(parking_lot::Mutex::new(None::<String>));
    let on_open = Arc::new(on_open);
    let max_failures = n / 20 + 50;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (ep, next, opened, failed, first_err, on_open) = (
            ep.clone(),
            next.clone(),
            opened.clone(),
            failed.clone(),
            first_err.clone(),
            on_open.clone(),
        );
        workers.spawn(async move {
            loop {
                if failed.load(Ordering::Relaxed) > max_failures {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match ep.connect_timeout().await {
                    Ok(ws) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        on_open(i, ws);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_err.lock().get_or_insert(format!("{e:#}"));
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let err = first_err.lock().take();
    (
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        err,
    )
}

// ---------------------------------------------------------------------------------------
// idle

async fn idle(a: IdleArgs, nofile: u64) -> Result<Value> {
    let ep = Endpoint::parse(&a.target)?;
    let cap = MAX_CONNECTIONS.min((nofile as usize).saturating_sub(100));
    if a.connections > cap {
        bail!(
            "--connections {} is more than this process may hold ({cap})",
            a.connections
        );
    }
    if !a.steps.is_empty() && a.hold.is_some() {
        bail!("--steps waits for stdin between steps: it cannot go with --hold");
    }
    // Counts to stop at: the steps below --connections, then --connections.
    let mut targets: Vec<usize> = a
        .steps
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < a.connections)
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets.push(a.connections);

    // stdin, line by line, from a plain thread (it may stay blocked on stdin after the
    // hold ends otherwise); `None` at EOF. Only read when no --hold is given. Unbounded:
    // one line per step comes from the driving script.
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    if a.hold.is_none() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line_tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = line_tx.send(None);
        });
    }

    let (tx, rx) = watch::channel(false);
    let dropped = Arc::new(AtomicUsize::new(0));
    let holders = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(a.connections)));
    let started = Instant::now();
    let (mut opened, mut failed, mut err) = (0usize, 0usize, None);
    let mut steps = Vec::new();
    let mut eof = false;
    for (i, &target) in targets.iter().enumerate() {
        let step_started = Instant::now();
        let (o, f, e) = {
            let (holders, dropped, rx) = (holders.clone(), dropped.clone(), rx.clone());
            open_many(&ep, target - opened, a.concurrency, move |_, ws| {
                let h = tokio::spawn(hold(ws, rx.clone(), dropped.clone()));
                holders.lock().push(h);
            })
            .await
        };
        opened += o;
        failed += f;
        if err.is_none() {
            err = e;
        }
        let connect_s = step_started.elapsed().as_secs_f64();
        if let Some(e) = &err {
            eprintln!("idle: {failed} connections failed so far; first error: {e}");
        }
        eprintln!(
            "idle: {opened}/{target} connections open ({o} in {connect_s:.2}s, {:.0}/s) to {}",
            o as f64 / connect_s.max(1e-9),
            ep.addr
        );
        if opened == 0 {
            bail!("no connection opened: {}", err.unwrap_or_default());
        }
        steps.push(json!({"requested": target, "opened": opened, "connect_s": (connect_s * 100.0).round() / 100.0}));
        eprintln!("READY {opened}");
        if i + 1 < targets.len() {
            // Between steps: the next line on stdin, or EOF (close now), or the bound.
            match tokio::time::timeout(secs(a.max_hold), lines.recv()).await {
                Ok(Some(Some(_))) => continue,
                _ => {
                    eof = true;
                    break;
                }
            }
        }
    }
    let connect_s = started.elapsed().as_secs_f64();

    let hold_started = Instant::now();
    match a.hold {
        Some(s) => {
            tokio::select! {
                _ = tokio::time::sleep(secs(s)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None if eof => {}
        None => {
            let stdin_eof = async { while let Some(Some(_)) = lines.recv().await {} };
            tokio::select! {
                _ = stdin_eof => {}
                _ = tokio::time::sleep(secs(a.max_hold)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    let held_s = hold_started.elapsed().as_secs_f64();
    let dropped_during_hold = dropped.load(Ordering::Relaxed);
    eprintln!("idle: held {held_s:.1}s; {dropped_during_hold} connections dropped by the server meanwhile; closing");

    let closing = Instant::now();
    let _ = tx.send(true);
    let handles = std::mem::take(&mut *holders.lock());
    let mut clean = 0usize;
    for h in handles {
        if let Ok(true) = h.await {
            clean += 1;
        }
    }
    let close_s = closing.elapsed().as_secs_f64();
    eprintln!("idle: {clean} closed cleanly in {close_s:.2}s");
    Ok(json!({
        "mode": "idle",
        "url": a.target.url,
        "sources": ep.sources.len(),
        "switchboard_v1": a.target.switchboard_v1,
        "requested": a.connections,
        "opened": opened,
        "failed": failed,
        "first_error": err,
        "steps": steps,
        "connect_s": (connect_s * 100.0).round() / 100.0,
        "held_s": round1(held_s),
        "dropped_during_hold": dropped_during_hold,
        "closed_cleanly": clean,
        "close_s": (close_s * 100.0).round() / 100.0,
    }))
}

/// Keeps one idle connection open (answering pings) until told to close it. `true`: closed
/// cleanly by us.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>, dropped: Arc<AtomicUsize>) -> bool {
    loop {
        tokio::select! {
            r = ws.recv() => match r {
                Ok(Some(Message::Close(c))) => {
                    let code = c.map_or(close_code::NORMAL, |(code, _)| code);
                    ws.answer_close(code).await;
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            },
            _ = stop.changed() => break,
        }
    }
    ws.close().await
}

// ---------------------------------------------------------------------------------------
// echo

struct EchoStats {
    hist: Histogram<u64>,
    /// Messages sent in the measured window.
    messages: u64,
    /// Messages echoed in all, warmup and the window's tail included.
    total: u64,
    /// Payload bytes of those (`total`) messages, one way.
    payload_bytes: u64,
    /// Bytes on the wire, both directions, up to the last echo (before the close).
    wire_out: u64,
    wire_in: u64,
    /// `switchboard.v1` ack frames the server sent.
    acks_received: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Words of the chat messages.
const CHAT_WORDS: [&str; 64] = [
    "the", "meeting", "is", "at", "three", "today", "can", "you", "send", "me", "link", "thanks",
    "sure", "I", "will", "check", "later", "sounds", "good", "see", "tomorrow", "what", "about",
    "release", "notes", "deploy", "finished", "tests", "pass", "on", "main", "lunch", "anyone",
    "coffee", "please", "review", "my", "pull", "request", "when", "free", "great", "work", "team",
    "ok", "let's", "ship", "it", "new", "build", "looks", "fine", "ping", "channel", "done", "and",
    "for", "this", "week", "bug", "fixed", "yes", "no", "maybe",
];

/// `n` JSON chat messages, the same on every run (xorshift from a fixed seed): a room, a
/// user, an id, a timestamp and 6 to 45 words of text.
fn chat_messages(n: usize) -> Vec<Arc<[u8]>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let words = 6 + (next() % 40) as usize;
            let text: Vec<&str> = (0..words)
                .map(|_| CHAT_WORDS[(next() % CHAT_WORDS.len() as u64) as usize])
                .collect();
            let msg = json!({
                "action": "sendmessage",
                "room": format!("room-{}", next() % 8),
                "from": format!("user-{:04}", next() % 2000),
                "id": 100_000 + i,
                "ts": 1_763_800_000_000u64 + next() % 86_400_000,
                "text": text.join(" "),
            });
            msg.to_string().into_bytes().into()
        })
        .collect()
}

async fn echo(a: EchoArgs, nofile: u64) -> Result<Value> {
    let ep = Endpoint::parse(&a.target)?;
    let cap = MAX_CONNECTIONS.min((nofile as usize).saturating_sub(100));
    if a.connections == 0 || a.connections > cap {
        bail!("--connections must be in 1..={cap}");
    }
    if a.size > 128 * 1024 {
        eprintln!(
            "echo: warning: --size {} exceeds the 128 KiB default message limit of the gateway",
            a.size
        );
    }
    let conns = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(a.connections)));
    let (opened, failed, err) = {
        let conns = conns.clone();
        open_many(&ep, a.connections, 50, move |_, ws| conns.lock().push(ws)).await
    };
    if opened < a.connections {
        bail!(
            "only {opened}/{} connections opened ({failed} failed): {}",
            a.connections,
            err.unwrap_or_default()
        );
    }
    let payloads: Arc<[Arc<[u8]>]> = match a.payload {
        Payload::Fixed => vec![(0..a.size)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz012345"[i % 32])
            .collect::<Vec<u8>>()
            .into()],
        Payload::Chat => chat_messages(512),
    }
    .into();
    let payload_mean =
        payloads.iter().map(|p| p.len()).sum::<usize>() as f64 / payloads.len() as f64;
    let conns = std::mem::take(&mut *conns.lock());
    let deflate_agreed = conns.iter().filter(|ws| ws.deflate).count();
    let v1_sessions = conns.iter().filter(|ws| ws.v1.is_some()).count();
    let text = !a.binary;
    let start = Instant::now();
    let measure_from = start + secs(a.warmup);
    let end = measure_from + secs(a.duration);
    eprintln!(
        "echo: {} connections ({deflate_agreed} compressed, {v1_sessions} switchboard.v1), {} {}, {:.1}s warmup + {:.1}s against {}",
        a.connections,
        match a.payload {
            Payload::Fixed => format!("{} B", a.size),
            Payload::Chat => format!("chat JSON (mean {payload_mean:.0} B)"),
        },
        if text { "text" } else { "binary" },
        a.warmup,
        a.duration,
        ep.addr
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let payloads = payloads.clone();
        tasks.spawn(async move {
            let mut st = EchoStats {
                hist: new_hist(),
                messages: 0,
                total: 0,
                payload_bytes: 0,
                wire_out: 0,
                wire_in: 0,
                acks_received: 0,
                errors: 0,
                first_error: None,
            };
            let mut k = i;
            let res: Result<()> = async {
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        return Ok(());
                    }
                    let payload = &payloads[k % payloads.len()];
                    k += 1;
                    ws.send_data(text, payload).await?;
                    let reply = tokio::time::timeout(REPLY_TIMEOUT, ws.recv_data())
                        .await
                        .map_err(|_| anyhow!("no echo within {REPLY_TIMEOUT:?}"))??;
                    let t1 = Instant::now();
                    st.total += 1;
                    st.payload_bytes += payload.len() as u64;
                    if reply[..] != payload[..] {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| "echo payload differs".into());
                    }
                    if t0 >= measure_from {
                        st.messages += 1;
                        let _ = st.hist.record(micros(t1 - t0));
                    }
                }
            }
            .await;
            st.wire_out = ws.wire_out;
            st.wire_in = ws.wire_in;
            st.acks_received = ws.v1.as_ref().map_or(0, |v| v.acks_received);
            match res {
                Ok(()) => {
                    ws.close().await;
                }
                Err(e) => {
                    st.errors += 1;
                    st.first_error.get_or_insert(format!("{e:#}"));
                }
            }
            st
        });
    }
    let mut hist = new_hist();
    let (mut messages, mut total, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    let (mut payload_bytes, mut wire_out, mut wire_in, mut acks) = (0u64, 0u64, 0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let st = r?;
        hist.add(&st.hist).ok();
        messages += st.messages;
        total += st.total;
        payload_bytes += st.payload_bytes;
        wire_out += st.wire_out;
        wire_in += st.wire_in;
        acks += st.acks_received;
        errors += st.errors;
        if first_error.is_none() {
            first_error = st.first_error;
        }
    }
    let rate = messages as f64 / a.duration.max(1e-9);
    let per_msg = |bytes: u64| round1(bytes as f64 / total.max(1) as f64);
    eprintln!(
        "echo: {messages} messages, {rate:.0} msgs/s, p50 {} µs, p99 {} µs, max {} µs, {errors} errors; wire {:.1} B out / {:.1} B in per message",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        per_msg(wire_out),
        per_msg(wire_in),
    );
    if let Some(e) = &first_error {
        eprintln!("echo: first error: {e}");
    }
    Ok(json!({
        "mode": "echo",
        "url": a.target.url,
        "connections": a.connections,
        "size": a.size,
        "payload": match a.payload { Payload::Fixed => "fixed", Payload::Chat => "chat" },
        "payload_bytes_mean": round1(payload_mean),
        "binary": a.binary,
        "deflate_offered": a.target.deflate,
        "deflate_agreed": deflate_agreed,
        "switchboard_v1": v1_sessions,
        "warmup_s": a.warmup,
        "duration_s": a.duration,
        "messages": messages,
        "messages_total": total,
        "msgs_per_s": round1(rate),
        "p50_us": hist.value_at_quantile(0.5),
        "p99_us": hist.value_at_quantile(0.99),
        "max_us": hist.max(),
        // Per echoed message (warmup included), one way: what the application sent, and
        // the frames on the wire client -> server and server -> client.
        "payload_bytes_per_msg": per_msg(payload_bytes),
        "wire_out_bytes_per_msg": per_msg(wire_out),
        "wire_in_bytes_per_msg": per_msg(wire_in),
        "wire_out_bytes": wire_out,
        "wire_in_bytes": wire_in,
        "v1_acks_received": acks,
        "errors": errors,
        "first_error": first_error,
    }))
}

// ---------------------------------------------------------------------------------------
// connect-rate

async fn connect_rate(a: ConnectRateArgs) -> Result<Value> {
    let ep = Endpoint::parse(&a.target)?;
    if a.concurrency == 0 || a.concurrency > 5000 {
        bail!("--concurrency must be in 1..=5000");
    }
    eprintln!(
        "connect-rate: {} workers for {:.1}s against {}",
        a.concurrency, a.duration, ep.addr
    );
    let start = Instant::now();
    let end = start + secs(a.duration);
    let started = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.concurrency {
        let (ep, started) = (ep.clone(), started.clone());
        let max = a.max_connections;
        tasks.spawn(async move {
            let mut hist = new_hist();
            let (mut ok, mut unclean, mut errors) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            while Instant::now() < end && started.fetch_add(1, Ordering::Relaxed) < max {
                let t0 = Instant::now();
                match ep.connect_timeout().await {
                    Ok(ws) => {
                        let _ = hist.record(micros(t0.elapsed()));
                        ok += 1;
                        if !ws.close().await {
                            unclean += 1;
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                        // Don't spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (hist, ok, unclean, errors, first_error)
        });
    }
    let mut hist = new_hist();
    let (mut ok, mut unclean, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    while let Some(r) = tasks.join_next().await {
        let (h, o, u, e, fe) = r?;
        hist.add(&h).ok();
        ok += o;
        unclean += u;
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = ok as f64 / elapsed;
    eprintln!(
        "connect-rate: {ok} connections in {elapsed:.2}s = {rate:.0}/s; handshake p50 {} µs, p99 {} µs; {unclean} unclean closes, {errors} errors",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99)
    );
    if let Some(e) = &first_error {
        eprintln!("connect-rate: first error: {e}");
    }
    Ok(json!({
        "mode": "connect-rate",
        "url": a.target.url,
        "concurrency": a.concurrency,
        "duration_s": round1(elapsed),
        "connections": ok,
        "conns_per_s": round1(rate),
        "handshake_p50_us": hist.value_at_quantile(0.5),
        "handshake_p99_us": hist.value_at_quantile(0.99),
        "handshake_max_us": hist.max(),
        "unclean_closes": unclean,
        "errors": errors,
        "first_error": first_error,
    }))
}

// ---------------------------------------------------------------------------------------
// fanout
//
// N subscribers join one group (switchboard: the builtin `join_group` function via
// `{"action":"join","group":G}`, answered `{"joined":G}`) or channel (sockudo: Pusher
// `pusher:subscribe`, answered `pusher_internal:subscription_succeeded`). Every published
// message carries a sequence number (`s=0000000042;` then padding to --size bytes); each
// delivery is counted per sequence number, so the time the *last* member got a message
// and every loss are known exactly; it also names its publisher (`p=03;`), and each member
// checks that the messages of one publisher (whose calls are sequential) arrive in order
// (concurrent publishers' messages have no order between them). Publishing goes through the system's HTTP API
// (switchboard: `POST /v1/groups/G/messages` with a bearer token; sockudo: the signed
// `POST /apps/ID/events`).
//
// Commands (from --commands, `;`-separated, or stdin, one per line); each prints one
// JSON line on stdout:
// - `shots K`: one warm-up publish, then K single publishes, each waiting until every
//   member has it (or the wait gives up): last-delivery time from just before the publish
//   call, deliveries/s = members / that time; medians.
// - `sustained SECS [stalled]`: --inflight publishers in a closed loop (the next publish
//   when the previous HTTP call returned) for SECS, then a drain until every member has
//   every message (or the wait gives up). `stalled`: first one more member joins whose
//   socket is never read again (receive buffer 4 KiB); it is not counted, the others are.
// - `quit`.

/// Sequence numbers one process may publish (the per-message tables are preallocated).
const SEQ_CAP: usize = 1 << 20;
/// Concurrent publishers at most (members keep the last sequence number of each).
const MAX_PUBLISHERS: usize = 16;
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A wait for deliveries gives up when no delivery at all happened for this long.
const QUIET_GIVE_UP: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum System {
    /// switchboard: join through the builtin `join_group`, publish to `/v1/groups/G/messages`.
    Switchboard,
    /// sockudo (Pusher protocol 7): subscribe to a channel, publish via `/apps/ID/events`.
    Sockudo,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Switchboard => "switchboard",
            System::Sockudo => "sockudo",
        }
    }
}

#[derive(Args)]
struct FanoutArgs {
    /// Subscribers' URL: the gateway (`ws://127.0.0.1:PORT/`) or sockudo
    /// (`ws://127.0.0.1:6001/app/KEY?protocol=7`).
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum)]
    system: System,
    /// Base URL of the publish API: switchboard's management listener
    /// (`http://127.0.0.1:MPORT`) or sockudo's HTTP port (`http://127.0.0.1:6001`).
    #[arg(long)]
    publish_url: String,
    /// Group (switchboard) or channel (sockudo) name.
    #[arg(long, default_value = "bench")]
    group: String,
    /// Subscribers.
    #[arg(long)]
    connections: usize,
    /// Handshakes + joins in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Bytes of each published message (switchboard delivers exactly this; sockudo wraps it
    /// in its JSON event envelope).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// switchboard: bearer token of the management API.
    #[arg(long, default_value = "bench-token-0123456789")]
    token: String,
    /// sockudo: app id, key and secret.
    #[arg(long, default_value = "app")]
    app_id: String,
    #[arg(long, default_value = "key")]
    app_key: String,
    #[arg(long, default_value = "secret")]
    app_secret: String,
    /// Pusher event name.
    #[arg(long, default_value = "bench")]
    event: String,
    /// Sustained: publishers in a closed loop, each on its own HTTP connection (1..=16).
    #[arg(long, default_value_t = 2)]
    inflight: usize,
    /// Sustained: at most this many messages published but not yet at every member
    /// (0 = no limit: only the HTTP round trip paces the publishers).
    #[arg(long, default_value_t = 0)]
    window: usize,
    /// Upper bound of any wait for deliveries, seconds (a wait also gives up after 3 s
    /// without any delivery).
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Every K-th member records each delivery's latency (publish call -> received).
    #[arg(long, default_value_t = 50)]
    sample_every: usize,
    /// Commands to run, `;`-separated; without: commands from stdin, one per line.
    #[arg(long)]
    commands: Option<String>,
}

/// Shared by the members and the command loop.
struct Fan {
    system: System,
    group: String,
    base: Instant,
    /// Per sequence number: deliveries to counted members, members expected, first and
    /// last (the one completing `expected`) delivery and publish-call start, in ns since
    /// `base`.
    counts: Box<[AtomicU32]>,
    expected: Box<[AtomicU32]>,
    first_ns: Box<[AtomicU64]>,
    last_ns: Box<[AtomicU64]>,
    pub_ns: Box<[AtomicU64]>,
    next_seq: AtomicU64,
    /// Counted members joined and still connected.
    alive: AtomicUsize,
    joined: AtomicUsize,
    join_failed: AtomicUsize,
    /// Counted members whose connection ended after they joined.
    lost_members: AtomicUsize,
    delivered: AtomicU64,
    /// Deliveries whose sequence number was not above the previous one the member got
    /// from the same publisher.
    out_of_order: AtomicU64,
    /// Data messages without a sequence number (other than Pusher pings).
    unparsed: AtomicU64,
    first_error: parking_lot::Mutex<Option<String>>,
    notify: tokio::sync::Notify,
    sampled: parking_lot::Mutex<Histogram<u64>>,
}

fn atomics32(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

fn atomics64(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Fan {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn error(&self, e: String) {
        self.first_error.lock().get_or_insert(e);
    }

    fn complete(&self, seq: usize) -> bool {
        self.counts[seq].load(Ordering::Acquire) >= self.expected[seq].load(Ordering::Acquire)
    }

    /// One delivery of `seq` from publisher `publisher` to a counted member; `last`: the
    /// member's last sequence number from each publisher.
    fn deliver(&self, seq: u64, publisher: usize, last: &mut [u64; MAX_PUBLISHERS], sample: bool) {
        let now = self.now_ns();
        let i = seq as usize;
        if seq == 0 || i >= SEQ_CAP || publisher >= MAX_PUBLISHERS {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if seq <= last[publisher] {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            last[publisher] = seq;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let c = self.counts[i].fetch_add(1, Ordering::AcqRel) + 1;
        if c == 1 {
            self.first_ns[i].store(now, Ordering::Release);
        }
        if c == self.expected[i].load(Ordering::Acquire) {
            self.last_ns[i].store(now, Ordering::Release);
            self.notify.notify_waiters();
        }
        if sample {
            let p = self.pub_ns[i].load(Ordering::Acquire);
            if p > 0 && now > p {
                let _ = self
                    .sampled
                    .lock()
                    .record(((now - p) / 1000).clamp(1, 120_000_000));
            }
        }
    }

    /// Waits until every expected member has `seq`; gives up at `deadline` or after
    /// QUIET_GIVE_UP without any delivery. `true`: complete.
    async fn wait_complete(&self, seq: usize, deadline: Instant) -> bool {
        let mut seen = self.delivered.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.complete(seq) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let d = self.delivered.load(Ordering::Relaxed);
            if d != seen {
                seen = d;
                quiet_since = now;
            } else if now >= quiet_since + QUIET_GIVE_UP {
                return false;
            }
            let wake = deadline.min(now + Duration::from_millis(250));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }
}

/// The sequence number and publisher of a delivered message: `s=` 10 digits `;p=` 2
/// digits `;`.
fn parse_seq(b: &[u8]) -> Option<(u64, usize)> {
    fn num(d: &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for &c in d {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
        }
        Some(v)
    }
    let i = b.windows(2).position(|w| w == b"s=")?;
    let seq = num(b.get(i + 2..i + 12)?)?;
    if b.get(i + 12..i + 15)? != b";p=" {
        return None;
    }
    let publisher = num(b.get(i + 15..i + 17)?)?;
    Some((seq, publisher as usize))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The next text message (pings answered, pongs skipped); an error on close or EOF.
async fn next_text(ws: &mut Ws) -> Result<bytes::Bytes> {
    loop {
        match ws.recv().await? {
            Some(Message::Text(b)) | Some(Message::Binary(b)) => return Ok(b),
            Some(Message::Pong(_)) | Some(Message::Ping(_)) => {}
            Some(Message::Close(c)) => bail!("server closed: {c:?}"),
            None => bail!("server closed the TCP connection"),
        }
    }
}

/// Joins the group / subscribes to the channel and waits for the confirmation.
async fn fan_join(ws: &mut Ws, system: System, group: &str) -> Result<()> {
    match system {
        System::Switchboard => {
            let msg = json!({"action": "join", "group": group}).to_string();
            ws.send(true, msg.as_bytes()).await?;
            let b = next_text(ws).await?;
            if !contains(&b, b"\"joined\"") {
                bail!("join answered {}", String::from_utf8_lossy(&b));
            }
        }
        System::Sockudo => {
            loop {
                let b = next_text(ws).await?;
                if contains(&b, b"pusher:connection_established") {
                    break;
                }
                if contains(&b, b"pusher:error") {
                    bail!("sockudo: {}", String::from_utf8_lossy(&b));
                }
            }
            let msg = json!({"event": "pusher:subscribe", "data": {"channel": group}}).to_string();
            ws.send(true, msg.as_bytes()).await?;
            loop {
                let b = next_text(ws).await?;
                if contains(&b, b"pusher_internal:subscription_succeeded") {
                    break;
                }
                if contains(&b, b"pusher:error") || contains(&b, b"subscription_error") {
                    bail!("subscribe answered {}", String::from_utf8_lossy(&b));
                }
            }
        }
    }
    Ok(())
}

/// One counted member: join, then count every delivery until the connection ends.
async fn fan_member(mut ws: Ws, fan: Arc<Fan>, sample: bool) {
    match tokio::time::timeout(JOIN_TIMEOUT, fan_join(&mut ws, fan.system, &fan.group)).await {
        Ok(Ok(())) => {
            fan.joined.fetch_add(1, Ordering::AcqRel);
            fan.alive.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Err(e)) => {
            fan.error(format!("join: {e:#}"));
            fan.join_failed.fetch_add(1, Ordering::AcqRel);
            return;
        }
        Err(_) => {
            fan.error("join timed out".into());
            fan.join_failed.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
    let mut last = [0u64; MAX_PUBLISHERS];
    let why = loop {
        match ws.recv().await {
            Ok(Some(Message::Text(b))) | Ok(Some(Message::Binary(b))) => match parse_seq(&b) {
                Some((seq, publisher)) => fan.deliver(seq, publisher, &mut last, sample),
                None if fan.system == System::Sockudo && contains(&b, b"pusher:ping") => {
                    let pong = br#"{"event":"pusher:pong","data":{}}"#;
                    if let Err(e) = ws.send(true, pong).await {
                        break format!("pong: {e}");
                    }
                }
                None => {
                    fan.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Some(Message::Pong(_))) | Ok(Some(Message::Ping(_))) => {}
            Ok(Some(Message::Close(c))) => {
                let code = c.as_ref().map_or(close_code::NORMAL, |(code, _)| *code);
                ws.answer_close(code).await;
                break format!(
                    "member closed by the server: {:?}",
                    c.map(|(code, r)| (code, String::from_utf8_lossy(&r).into_owned()))
                );
            }
            Ok(None) => break "member connection: EOF".into(),
            Err(e) => break format!("member connection: {e:#}"),
        }
    };
    fan.alive.fetch_sub(1, Ordering::AcqRel);
    fan.lost_members.fetch_add(1, Ordering::AcqRel);
    fan.error(why);
}

/// Publishes through one keep-alive HTTP connection.
struct Publisher {
    /// Named in every message (`p=NN;`), 0..MAX_PUBLISHERS.
    id: usize,
    system: System,
    client: switchboard_bench::http1::Client,
    path: String,
    headers: Vec<String>,
    group: String,
    event: String,
    app_key: String,
    app_secret: String,
    size: usize,
}

/// What one publish call answered.
struct Published {
    /// switchboard's `dropped` (recipients whose queue was full or that were closing).
    dropped: u64,
    recipients: u64,
}

impl Publisher {
    fn new(a: &FanoutArgs, id: usize) -> Result<Self> {
        let (addr, host, prefix) = switchboard_bench::http1::parse_base(&a.publish_url)?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback publish target {addr}");
        }
        let (path, headers) = match a.system {
            System::Switchboard => (
                format!("{prefix}/v1/groups/{}/messages", percent_encode(&a.group)),
                vec![
                    format!("Authorization: Bearer {}", a.token),
                    "Content-Type: text/plain; charset=utf-8".to_string(),
                ],
            ),
            System::Sockudo => (
                format!("{prefix}/apps/{}/events", a.app_id),
                vec!["Content-Type: application/json".to_string()],
            ),
        };
        Ok(Self {
            id,
            system: a.system,
            client: switchboard_bench::http1::Client::new(addr, host, Duration::from_secs(30)),
            path,
            headers,
            group: a.group.clone(),
            event: a.event.clone(),
            app_key: a.app_key.clone(),
            app_secret: a.app_secret.clone(),
            size: a.size,
        })
    }

    /// The message with sequence number `seq`: `s=SEQ;p=ID;` and `x` up to `size` bytes
    /// (no character that JSON would escape).
    fn payload(&self, seq: u64) -> String {
        let mut s = format!("s={seq:010};p={:02};", self.id);
        while s.len() < self.size {
            s.push('x');
        }
        s
    }

    async fn publish(&mut self, seq: u64) -> Result<Published> {
        let data = self.payload(seq);
        match self.system {
            System::Switchboard => {
                let r = self
                    .client
                    .post(&self.path, &self.headers, data.as_bytes())
                    .await?;
                if r.status != 200 {
                    bail!(
                        "publish answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                let v: Value = serde_json::from_slice(&r.body).context("publish answer")?;
                Ok(Published {
                    dropped: v["dropped"].as_u64().unwrap_or(0),
                    recipients: v["recipients"].as_u64().unwrap_or(0),
                })
            }
            System::Sockudo => {
                let body =
                    json!({"name": self.event, "channel": self.group, "data": data}).to_string();
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let q = switchboard_bench::pusher::signed_query(
                    &self.app_key,
                    &self.app_secret,
                    &self.path,
                    body.as_bytes(),
                    ts,
                );
                let target = format!("{}?{q}", self.path);
                let r = self
                    .client
                    .post(&target, &self.headers, body.as_bytes())
                    .await?;
                if r.status != 200 {
                    bail!(
                        "publish answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                Ok(Published {
                    dropped: 0,
                    recipients: 0,
                })
            }
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

fn median_f(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

async fn fanout(a: FanoutArgs, nofile: u64) -> Result<Value> {
    let ep = Endpoint::parse(&a.target)?;
    let cap = MAX_CONNECTIONS.min((nofile as usize).saturating_sub(200));
    if a.connections == 0 || a.connections > cap {
        bail!("--connections must be in 1..={cap}");
    }
    if a.size < 32 {
        bail!("--size must be at least 32");
    }
    if !(1..=MAX_PUBLISHERS).contains(&a.inflight) {
        bail!("--inflight must be in 1..={MAX_PUBLISHERS}");
    }
    let fan = Arc::new(Fan {
        system: a.system,
        group: a.group.clone(),
        base: Instant::now(),
        counts: atomics32(SEQ_CAP),
        expected: atomics32(SEQ_CAP),
        first_ns: atomics64(SEQ_CAP),
        last_ns: atomics64(SEQ_CAP),
        pub_ns: atomics64(SEQ_CAP),
        next_seq: AtomicU64::new(1),
        alive: AtomicUsize::new(0),
        joined: AtomicUsize::new(0),
        join_failed: AtomicUsize::new(0),
        lost_members: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        first_error: parking_lot::Mutex::new(None),
        notify: tokio::sync::Notify::new(),
        sampled: parking_lot::Mutex::new(new_hist()),
    });
    // Publishing works before anyone joins (a clear error beats a long wait later).
    let mut publisher = Publisher::new(&a, 0)?;

    let started = Instant::now();
    let sample_every = a.sample_every.max(1);
    let (opened, failed, err) = {
        let fan = fan.clone();
        open_many(&ep, a.connections, a.concurrency, move |i, ws| {
            tokio::spawn(fan_member(ws, fan.clone(), i % sample_every == 0));
        })
        .await
    };
    if let Some(e) = &err {
        eprintln!("fanout: {failed} connections failed; first error: {e}");
    }
    // Joins finish after the handshakes.
    let join_deadline = Instant::now() + JOIN_TIMEOUT + Duration::from_secs(5);
    while fan.joined.load(Ordering::Acquire) + fan.join_failed.load(Ordering::Acquire) < opened
        && Instant::now() < join_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_s = started.elapsed().as_secs_f64();
    let joined = fan.joined.load(Ordering::Acquire);
    eprintln!(
        "fanout[{}]: {joined}/{} joined {} in {setup_s:.1}s ({opened} opened, {} join failures)",
        a.system.name(),
        a.connections,
        a.group,
        fan.join_failed.load(Ordering::Acquire)
    );
    if joined == 0 {
        bail!(
            "no member joined: {}",
            fan.first_error.lock().clone().or(err).unwrap_or_default()
        );
    }
    emit(json!({
        "mode": "fanout",
        "cmd": "ready",
        "system": a.system.name(),
        "requested": a.connections,
        "opened": opened,
        "joined": joined,
        "failed": failed + fan.join_failed.load(Ordering::Acquire),
        "first_error": fan.first_error.lock().clone().or(err),
        "setup_s": round1(setup_s),
    }));

    // Commands.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    match &a.commands {
        Some(list) => {
            for c in list.split(';') {
                let _ = tx.send(c.trim().to_string());
            }
            let _ = tx.send("quit".into());
        }
        None => {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line.trim().to_string()).is_err() {
                        break;
                    }
                }
                let _ = tx.send("quit".into());
            });
        }
    }
    let mut commands = 0usize;
    while let Some(line) = rx.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.as_slice() {
            [] => continue,
            ["quit"] => break,
            ["shots", k] => match k.parse::<usize>() {
                Ok(k) if (1..=100).contains(&k) => cmd_shots(&fan, &a, &mut publisher, k).await,
                _ => Err(anyhow!("shots K: K in 1..=100")),
            },
            ["sustained", s, rest @ ..] => match (s.parse::<f64>(), rest) {
                (Ok(s), []) if s > 0.0 && s <= 600.0 => {
                    cmd_sustained(&fan, &a, &ep, s, false).await
                }
                (Ok(s), ["stalled"]) if s > 0.0 && s <= 600.0 => {
                    cmd_sustained(&fan, &a, &ep, s, true).await
                }
                _ => Err(anyhow!("sustained SECS [stalled]: SECS in (0, 600]")),
            },
            _ => Err(anyhow!("unknown command: {line}")),
        };
        commands += 1;
        match result {
            Ok(mut v) => {
                v["mode"] = json!("fanout");
                v["system"] = json!(a.system.name());
                v["members"] = json!(fan.alive.load(Ordering::Acquire));
                v["lost_members_total"] = json!(fan.lost_members.load(Ordering::Acquire));
                v["out_of_order_total"] = json!(fan.out_of_order.load(Ordering::Relaxed));
                v["unparsed_total"] = json!(fan.unparsed.load(Ordering::Relaxed));
                v["first_error"] = json!(fan.first_error.lock().clone());
                emit(v);
            }
            Err(e) => emit(
                json!({"mode": "fanout", "system": a.system.name(), "cmd": line, "error": format!("{e:#}")}),
            ),
        }
    }
    Ok(json!({
        "mode": "fanout",
        "cmd": "quit",
        "system": a.system.name(),
        "commands": commands,
        "members": fan.alive.load(Ordering::Acquire),
        "delivered_total": fan.delivered.load(Ordering::Relaxed),
    }))
}

/// One JSON line on stdout (line-buffered: the driving script reads it at once).
fn emit(v: Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn take_seq(fan: &Fan) -> Result<usize> {
    let seq = fan.next_seq.fetch_add(1, Ordering::AcqRel) as usize;
    if seq >= SEQ_CAP {
        bail!("sequence numbers exhausted ({SEQ_CAP})");
    }
    Ok(seq)
}

async fn cmd_shots(
    fan: &Arc<Fan>,
    a: &FanoutArgs,
    publisher: &mut Publisher,
    k: usize,
) -> Result<Value> {
    let members = fan.alive.load(Ordering::Acquire);
    let mut last_ms = Vec::new();
    let mut first_ms = Vec::new();
    let mut http_ms = Vec::new();
    let (mut losses, mut incomplete, mut dropped) = (0u64, 0usize, 0u64);
    let mut recipients = Vec::new();
    for shot in 0..=k {
        // Shot 0 warms up (HTTP connection, caches) and is not counted.
        let seq = take_seq(fan)?;
        let n = fan.alive.load(Ordering::Acquire) as u32;
        fan.expected[seq].store(n, Ordering::Release);
        let t0 = fan.now_ns();
        fan.pub_ns[seq].store(t0, Ordering::Release);
        let r = publisher.publish(seq as u64).await;
        let t1 = fan.now_ns();
        let p = match r {
            Ok(p) => p,
            Err(e) => {
                fan.expected[seq].store(0, Ordering::Release);
                return Err(e.context(format!("publish of shot {shot}")));
            }
        };
        let ok = fan
            .wait_complete(seq, Instant::now() + secs(a.drain_timeout))
            .await;
        if shot == 0 {
            if !ok {
                eprintln!("fanout: warm-up shot incomplete");
            }
        } else {
            http_ms.push(ms(t1 - t0));
            dropped += p.dropped;
            recipients.push(p.recipients);
            if ok {
                last_ms.push(ms(fan.last_ns[seq].load(Ordering::Acquire) - t0));
                first_ms.push(ms(fan.first_ns[seq]
                    .load(Ordering::Acquire)
                    .saturating_sub(t0)));
            } else {
                incomplete += 1;
                losses += u64::from(n.saturating_sub(fan.counts[seq].load(Ordering::Acquire)));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shots_ms = last_ms.clone();
    let med_last = median_f(&mut last_ms);
    Ok(json!({
        "cmd": "shots",
        "shots": k,
        "members_at_start": members,
        "size": a.size,
        "last_delivery_ms": shots_ms,
        "last_delivery_ms_median": med_last,
        "first_delivery_ms_median": median_f(&mut first_ms),
        "http_ms_median": median_f(&mut http_ms),
        "deliveries_per_s": med_last.map(|m| (members as f64 / (m / 1000.0)).round()),
        "incomplete_shots": incomplete,
        "losses": losses,
        "dropped_reported": dropped,
        "recipients_reported": recipients,
    }))
}

/// Opens the stalled member: joined like the others, receive buffer 4 KiB, never read.
async fn open_stalled(fan: &Fan, ep: &Endpoint) -> Result<Ws> {
    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, ep.connect_opts(Some(4096)))
        .await
        .map_err(|_| anyhow!("stalled member: handshake timed out"))??;
    tokio::time::timeout(JOIN_TIMEOUT, fan_join(&mut ws, fan.system, &fan.group))
        .await
        .map_err(|_| anyhow!("stalled member: join timed out"))??;
    Ok(ws)
}

/// After the run: what the stalled member had been sent (read for up to 3 s).
async fn probe_stalled(mut ws: Ws) -> Value {
    let mut messages = 0u64;
    let deadline = Instant::now() + Duration::from_secs(3);
    let end = loop {
        match tokio::time::timeout_at(deadline, ws.recv()).await {
            Err(_) => break "still open".to_string(),
            Ok(Ok(Some(Message::Text(_)))) | Ok(Ok(Some(Message::Binary(_)))) => messages += 1,
            Ok(Ok(Some(Message::Close(c)))) => {
                break format!(
                    "closed by the server: {:?}",
                    c.map(|(code, r)| (code, String::from_utf8_lossy(&r).into_owned()))
                )
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => break "EOF (closed by the server without a close frame)".into(),
            Ok(Err(e)) => break format!("error: {e:#}"),
        }
    };
    json!({"messages_buffered": messages, "end": end})
}

async fn cmd_sustained(
    fan: &Arc<Fan>,
    a: &FanoutArgs,
    ep: &Arc<Endpoint>,
    secs_: f64,
    stalled: bool,
) -> Result<Value> {
    let stalled_ws = if stalled {
        Some(open_stalled(fan, ep).await?)
    } else {
        None
    };
    let members = fan.alive.load(Ordering::Acquire);
    let lost0 = fan.lost_members.load(Ordering::Acquire);
    let ooo0 = fan.out_of_order.load(Ordering::Relaxed);
    *fan.sampled.lock() = new_hist();
    let start_seq = fan.next_seq.load(Ordering::Acquire) as usize;
    let delivered0 = fan.delivered.load(Ordering::Relaxed);
    let t_start_ns = fan.now_ns();
    let t_start = Instant::now();
    let end = t_start + secs(secs_);

    let http_hist = Arc::new(parking_lot::Mutex::new(new_hist()));
    let publish_errors = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..a.inflight {
        let mut p = Publisher::new(a, id)?;
        let (fan, http_hist, publish_errors, dropped) = (
            fan.clone(),
            http_hist.clone(),
            publish_errors.clone(),
            dropped.clone(),
        );
        let window = a.window;
        let drain = secs(a.drain_timeout);
        workers.spawn(async move {
            let mut first_err = None;
            while Instant::now() < end {
                let seq = match take_seq(&fan) {
                    Ok(s) => s,
                    Err(e) => {
                        first_err.get_or_insert(format!("{e:#}"));
                        break;
                    }
                };
                if window > 0 && seq >= start_seq + window {
                    fan.wait_complete(seq - window, end + drain).await;
                }
                let n = fan.alive.load(Ordering::Acquire) as u32;
                fan.expected[seq].store(n, Ordering::Release);
                let t0 = fan.now_ns();
                fan.pub_ns[seq].store(t0, Ordering::Release);
                match p.publish(seq as u64).await {
                    Ok(r) => {
                        let _ = http_hist
                            .lock()
                            .record(micros(Duration::from_nanos(fan.now_ns() - t0)));
                        dropped.fetch_add(r.dropped, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Not sent: not expected anywhere.
                        fan.expected[seq].store(0, Ordering::Release);
                        publish_errors.fetch_add(1, Ordering::Relaxed);
                        first_err.get_or_insert(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            first_err
        });
    }
    // Deliveries per second while publishing.
    let mut timeline = Vec::new();
    let mut prev = delivered0;
    let mut tick = t_start;
    loop {
        tick += Duration::from_secs(1);
        if tick > end {
            break;
        }
        tokio::time::sleep_until(tick).await;
        let d = fan.delivered.load(Ordering::Relaxed);
        timeline.push(d - prev);
        prev = d;
    }
    let mut publish_error = None;
    while let Some(r) = workers.join_next().await {
        if let Ok(Some(e)) = r {
            publish_error.get_or_insert(e);
        }
    }
    let publish_end_ns = fan.now_ns();
    let in_window = fan.delivered.load(Ordering::Relaxed) - delivered0;
    let end_seq = (fan.next_seq.load(Ordering::Acquire) as usize).min(SEQ_CAP);

    // Drain: every message to every member, or give up.
    let drain_deadline = Instant::now() + secs(a.drain_timeout);
    let mut complete = true;
    for seq in start_seq..end_seq {
        if !fan.wait_complete(seq, drain_deadline).await {
            complete = false;
            break;
        }
    }
    let drained_ns = fan.now_ns();
    let mut last_member = new_hist();
    let (mut published, mut deliveries, mut losses, mut extra) = (0u64, 0u64, 0u64, 0u64);
    let mut t_last = t_start_ns;
    for seq in start_seq..end_seq {
        let exp = u64::from(fan.expected[seq].load(Ordering::Acquire));
        if exp == 0 {
            continue;
        }
        published += 1;
        let c = u64::from(fan.counts[seq].load(Ordering::Acquire));
        deliveries += c.min(exp);
        extra += c.saturating_sub(exp);
        losses += exp.saturating_sub(c);
        if c >= exp {
            let l = fan.last_ns[seq].load(Ordering::Acquire);
            t_last = t_last.max(l);
            let p = fan.pub_ns[seq].load(Ordering::Acquire);
            let _ = last_member.record((l.saturating_sub(p) / 1000).clamp(1, 120_000_000));
        }
    }
    if !complete {
        t_last = drained_ns;
    }
    let total_s = (t_last.saturating_sub(t_start_ns)) as f64 / 1e9;
    let pub_s = (publish_end_ns - t_start_ns) as f64 / 1e9;
    let sampled = fan.sampled.lock().clone();
    let http = http_hist.lock().clone();
    let stalled_info = match stalled_ws {
        Some(ws) => probe_stalled(ws).await,
        None => Value::Null,
    };
    let q = |h: &Histogram<u64>, x: f64| {
        if h.is_empty() {
            Value::Null
        } else {
            json!(round1(h.value_at_quantile(x) as f64 / 1000.0))
        }
    };
    Ok(json!({
        "cmd": if stalled { "sustained-stalled" } else { "sustained" },
        "secs": secs_,
        "inflight": a.inflight,
        "window": a.window,
        "size": a.size,
        "members_at_start": members,
        "published": published,
        "publishes_per_s": round1(published as f64 / pub_s.max(1e-9)),
        "publish_errors": publish_errors.load(Ordering::Relaxed),
        "publish_error": publish_error,
        "deliveries": deliveries,
        // Every delivery of every message published in the run, over the time from the
        // first publish call to the last delivery (drain included): the headline figure.
        "deliveries_per_s": round1(deliveries as f64 / total_s.max(1e-9)),
        // Deliveries counted while publishing, over the publishing time.
        "deliveries_per_s_in_window": round1(in_window as f64 / pub_s.max(1e-9)),
        "timeline_per_s": timeline,
        "drain_ms": round1((t_last.saturating_sub(publish_end_ns)) as f64 / 1e6),
        "complete": complete,
        "losses": losses,
        "extra_deliveries": extra,
        "dropped_reported": dropped.load(Ordering::Relaxed),
        "members_lost": fan.lost_members.load(Ordering::Acquire) - lost0,
        "out_of_order": fan.out_of_order.load(Ordering::Relaxed) - ooo0,
        "last_member_ms_p50": q(&last_member, 0.5),
        "last_member_ms_p99": q(&last_member, 0.99),
        "last_member_ms_max": if last_member.is_empty() { Value::Null } else { json!(round1(last_member.max() as f64 / 1000.0)) },
        "member_latency_ms_p50": q(&sampled, 0.5),
        "member_latency_ms_p99": q(&sampled, 0.99),
        "http_ms_p50": q(&http, 0.5),
        "http_ms_p99": q(&http, 0.99),
        "stalled_member": stalled_info,
    }))
}

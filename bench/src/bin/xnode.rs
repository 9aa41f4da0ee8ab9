//! `xnode`: the client side of `bench/cluster.sh`, a benchmark of a switchboard cluster
//! (several nodes sharing a Redis or NATS backplane), written on `switchboard-ws`
//! (Role::Client) and tokio. Loopback targets only; every wait is bounded.
//!
//! Subcommands (each prints JSON lines on stdout, one per measurement; progress on stderr):
//!
//! - `direct`: N connections to one node ("B") join a group through the builtin
//!   `join_group` route; their ids are listed through B's `GET /v1/groups/G/members`, and a
//!   probe sent to each id through B's `POST /prod/@connections/{id}` tells each socket its
//!   own id. Then runs alternate between sending through B's own management API (same
//!   node) and through another node's ("A", cross node: the send travels over the
//!   backplane). In a run, `--concurrency` workers each keep one POST in flight on their
//!   own keep-alive HTTP connection, targets in turn; every message carries a sequence
//!   number, and each socket checks it got exactly the messages addressed to it (losses,
//!   duplicates, misrouted). Two pacings:
//!   `http`: the next POST as soon as the previous answered 200 (what an API caller sees;
//!   a cross-node 200 means "handed to the backplane", so the drain after the run counts);
//!   `delivered`: the next POST only once the previous message reached its socket (an
//!   end-to-end closed loop).
//! - `fanout`: M connections on each of several nodes join one group; publishes go through
//!   one node's `POST /v1/groups/G/messages`. `shots`: single publishes, time until the
//!   last member (and the last member of each node) has it. Sustained: `--inflight`
//!   publishers in a closed loop for `--secs`, then a drain until every member has every
//!   message; deliveries/s counted at the clients, per node too, losses exact.
//!
//! With `--pids name=PID,...` each run also reports the CPU seconds those processes spent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};
use switchboard_bench::http1;
use switchboard_ws::{close_code, handshake, Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A drain gives up after this long without any delivery.
const QUIET_GIVE_UP: Duration = Duration::from_secs(3);
/// Longest drain after a run.
const DRAIN_MAX: Duration = Duration::from_secs(20);
/// Open files this process may use for connections (the hard limit is usually 20,000).
const MAX_CONNECTIONS: usize = 19_000;
const MAX_SECS: f64 = 600.0;
const CLIENT_LIMITS: Limits = Limits {
    max_frame_bytes: 16 << 20,
    max_message_bytes: 16 << 20,
};
/// Sequence numbers per process (tables are preallocated).
const DIRECT_SEQ_CAP: usize = 1 << 21;
const FAN_SEQ_CAP: usize = 1 << 17;
/// Source addresses 127.0.0.1..=127.0.0.SOURCES.
const SOURCES: u8 = 16;

#[derive(Parser)]
#[command(about = "Cluster benchmark client for switchboard (loopback targets only)")]
struct Cli {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Same-node vs cross-node `@connections` sends to N connections on one node.
    Direct(DirectArgs),
    /// Group fan-out over several nodes, published through one.
    Fanout(FanoutArgs),
}

#[derive(Args)]
struct DirectArgs {
    /// WebSocket URL of the node holding the connections (B).
    #[arg(long)]
    ws_url: String,
    /// Management base URL of B (same-node sends, member listing).
    #[arg(long)]
    same_url: String,
    /// Management base URL of another node (A): cross-node sends.
    #[arg(long)]
    cross_url: String,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    #[arg(long, default_value = "bench-b")]
    group: String,
    /// Message bytes (text).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// POSTs in flight (workers, one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Runs of each (pacing, path) pair.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Pacings, comma-separated: `http`, `delivered`.
    #[arg(long, default_value = "http,delivered")]
    pacings: String,
    /// Processes whose CPU time each run reports: `name=PID,...`.
    #[arg(long, default_value = "")]
    pids: String,
}

#[derive(Args)]
struct FanoutArgs {
    /// WebSocket URLs of the nodes, comma-separated.
    #[arg(long)]
    ws_urls: String,
    /// Names of the nodes, comma-separated, in the same order.
    #[arg(long)]
    names: String,
    /// Management base URL of the node publishes go through.
    #[arg(long)]
    publish_url: String,
    /// Members per node.
    #[arg(long, default_value_t = 5000)]
    per_node: usize,
    #[arg(long, default_value = "bench")]
    group: String,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Handshakes + joins in flight while connecting.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Single publishes (after one warm-up).
    #[arg(long, default_value_t = 5)]
    shots: usize,
    /// Sustained runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per sustained run.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Publishers in the closed loop (one keep-alive HTTP connection each).
    #[arg(long, default_value_t = 2)]
    inflight: usize,
    /// >0: at most this many messages published but not yet at every member.
    #[arg(long, default_value_t = 0)]
    window: usize,
    /// Processes whose CPU time each run reports: `name=PID,...`.
    #[arg(long, default_value = "")]
    pids: String,
}

fn main() {
    let cli = Cli::parse();
    let nofile = switchboard_bench::raise_nofile_limit().unwrap_or(1024);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n);
    }
    let rt = rt.build().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Direct(a) => direct(a, nofile).await,
            Cmd::Fanout(a) => fanout(a, nofile).await,
        }
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xnode: error: {e:#}");
            emit(json!({"kind": "error", "error": format!("{e:#}")}));
            1
        }
    };
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

/// One JSON line on stdout, flushed at once.
fn emit(v: Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, MAX_SECS))
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn q_ms(h: &Histogram<u64>, q: f64) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        json!(round1(h.value_at_quantile(q) as f64 / 1000.0))
    }
}

fn ms(ns: u64) -> f64 {
    round1(ns as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc

struct Cpu {
    names: Vec<String>,
    pids: Vec<u32>,
    tck: f64,
}

struct CpuMark {
    per: Vec<u64>,
    busy: u64,
    at: Instant,
}

impl Cpu {
    fn parse(spec: &str) -> Result<Self> {
        let mut names = Vec::new();
        let mut pids = Vec::new();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (n, p) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("--pids: expected name=PID, got {item}"))?;
            names.push(n.to_string());
            pids.push(p.parse().with_context(|| format!("--pids: bad pid {p}"))?);
        }
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(Self { names, pids, tck })
    }

    fn ticks(pid: u32) -> u64 {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        let Some(i) = s.rfind(')') else { return 0 };
        let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
        // After ") ": state is field 0, utime 11, stime 12.
        let g = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        g(11) + g(12)
    }

    fn busy() -> u64 {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = s.lines().next().unwrap_or("");
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let g = |k: usize| v.get(k).copied().unwrap_or(0);
        g(0) + g(1) + g(2) + g(5) + g(6) + g(7)
    }

    fn mark(&self) -> CpuMark {
        CpuMark {
            per: self.pids.iter().map(|&p| Self::ticks(p)).collect(),
            busy: Self::busy(),
            at: Instant::now(),
        }
    }

    /// Waits until the watched processes together use less than 10 % of one core over
    /// two consecutive 250 ms windows (work left behind by the setup, such as registry
    /// writes, has ended), at most `max`. Returns the seconds waited.
    async fn settle(&self, max: Duration) -> f64 {
        let t0 = Instant::now();
        if self.pids.is_empty() {
            return 0.0;
        }
        let sum = || self.pids.iter().map(|&p| Self::ticks(p)).sum::<u64>();
        let mut prev = sum();
        let mut quiet = 0;
        while t0.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = sum();
            if ((now - prev) as f64) / self.tck < 0.025 {
                quiet += 1;
                if quiet >= 2 {
                    break;
                }
            } else {
                quiet = 0;
            }
            prev = now;
        }
        round1(t0.elapsed().as_secs_f64())
    }

    /// CPU seconds per process, our own, and the machine's busy share since `m`.
    fn since(&self, m: &CpuMark, own0: u64) -> Value {
        let now = self.mark();
        let mut per = serde_json::Map::new();
        for (i, n) in self.names.iter().enumerate() {
            per.insert(
                n.clone(),
                json!(round2(
                    (now.per[i].saturating_sub(m.per[i])) as f64 / self.tck
                )),
            );
        }
        let own = Self::ticks(std::process::id()).saturating_sub(own0);
        per.insert("xnode".into(), json!(round2(own as f64 / self.tck)));
        let wall = now.at.duration_since(m.at).as_secs_f64().max(1e-9);
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        json!({
            "cpu_s": per,
            "wall_s": round2(wall),
            "machine_busy_pct": round1(100.0 * (now.busy.saturating_sub(m.busy)) as f64 / self.tck / wall / ncpu),
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// WebSocket client

struct Endpoint {
    addr: SocketAddr,
    host: String,
    path: String,
}

static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

impl Endpoint {
    fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("only ws:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("{url}: a port is required"))?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .with_context(|| format!("{url}: host must be an IPv4 loopback address"))?
        };
        if !ip.is_loopback() || !ip.is_ipv4() {
            bail!("refusing {ip}: this tool only loads this machine over IPv4 loopback");
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port.parse().context("bad port")?),
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    async fn connect(&self) -> Result<Ws> {
        let i = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCES as usize) as u8));
        let socket = TcpSocket::new_v4()?;
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
        socket.bind(SocketAddr::new(src, 0))?;
        let mut stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let key = handshake::client_key();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.path, self.host, key
        );
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
                    let accept = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                        .map(|h| h.value);
                    if accept != Some(expected.as_bytes()) {
                        bail!("wrong or missing Sec-WebSocket-Accept");
                    }
                    buf.advance(n);
                    return Ok(Ws {
                        stream,
                        rbuf: buf,
                        wbuf: BytesMut::with_capacity(256),
                        decoder: Decoder::new(Role::Client, CLIENT_LIMITS, None),
                        encoder: Encoder::new(Role::Client, None),
                    });
                }
                httparse::Status::Partial if buf.len() < 16 * 1024 => {}
                httparse::Status::Partial => bail!("handshake response head too long"),
            }
        }
    }
}

struct Ws {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
}

impl Ws {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    async fn send_text(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.encoder.message(true, payload, &mut self.wbuf);
        self.flush().await
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
                    self.rbuf.reserve(8192);
                    if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn answer_close(&mut self, code: u16) {
        self.encoder.close(code, "", &mut self.wbuf);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
    }

    /// Sends `{"action":"join","group":G}` and waits for `{"joined":G}`.
    async fn join(&mut self, group: &str) -> Result<()> {
        let msg = json!({"action": "join", "group": group}).to_string();
        self.send_text(msg.as_bytes()).await?;
        loop {
            match self.recv().await? {
                Some(Message::Text(b)) => {
                    if contains(&b, b"\"joined\"") {
                        return Ok(());
                    }
                    bail!("join answered {}", String::from_utf8_lossy(&b));
                }
                Some(Message::Close(c)) => bail!("closed while joining: {c:?}"),
                Some(_) => {}
                None => bail!("EOF while joining"),
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Opens and joins `per_target[i]` connections to each endpoint, `concurrency` at a time.
/// Returns the joined sockets with their endpoint index, and the failures.
async fn open_and_join(
    eps: &[Arc<Endpoint>],
    per_target: usize,
    group: &str,
    concurrency: usize,
) -> (Vec<(usize, Ws)>, usize, Option<String>) {
    let jobs: Vec<usize> = (0..per_target)
        .flat_map(|_| 0..eps.len())
        .collect::<Vec<_>>();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_err = Arc::new(Mutex::new(None::<String>));
    let out = Arc::new(Mutex::new(Vec::with_capacity(jobs.len())));
    let max_failures = jobs.len() / 20 + 20;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, jobs.len().max(1)) {
        let (jobs, next, failed, first_err, out, eps) = (
            jobs.clone(),
            next.clone(),
            failed.clone(),
            first_err.clone(),
            out.clone(),
            eps.to_vec(),
        );
        let group = group.to_string();
        workers.spawn(async move {
            loop {
                if failed.load(Ordering::Relaxed) > max_failures {
                    break;
                }
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = jobs.get(j) else { break };
                let r = async {
                    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, eps[k].connect())
                        .await
                        .map_err(|_| anyhow!("handshake timed out"))??;
                    tokio::time::timeout(JOIN_TIMEOUT, ws.join(&group))
                        .await
                        .map_err(|_| anyhow!("join timed out"))??;
                    Ok::<_, anyhow::Error>(ws)
                }
                .await;
                match r {
                    Ok(ws) => out.lock().push((k, ws)),
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_err.lock().get_or_insert(format!("{e:#}"));
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let v = std::mem::take(&mut *out.lock());
    let e = first_err.lock().take();
    (v, failed.load(Ordering::Relaxed), e)
}

/// Parses `s=` + 10 digits at the start of a message.
fn parse_seq(b: &[u8]) -> Option<usize> {
    let d = b.strip_prefix(b"s=")?.get(..10)?;
    let mut v = 0usize;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + usize::from(c - b'0');
    }
    Some(v)
}

/// `s=SEQ;` padded with `x` to `size` bytes.
fn payload(seq: usize, size: usize) -> Vec<u8> {
    let mut s = format!("s={seq:010};").into_bytes();
    s.resize(size.max(s.len()), b'x');
    s
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

/// `GET` with `Connection: close` (the bench's HTTP client only posts).
async fn http_get(base: &str, path: &str) -> Result<(u16, Bytes)> {
    let (addr, host, prefix) = http1::parse_base(base)?;
    if !addr.ip().is_loopback() {
        bail!("refusing non-loopback {addr}");
    }
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let req =
            format!("GET {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&buf)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => bail!("truncated response"),
        };
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && h.value.eq_ignore_ascii_case(b"chunked")
        });
        let status = resp.code.unwrap_or(0);
        let body = if chunked {
            dechunk(&buf[n..])?
        } else {
            buf[n..].to_vec()
        };
        Ok::<_, anyhow::Error>((status, Bytes::from(body)))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("GET {path} timed out"))?
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i])?
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )?;
        b = &b[i + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        b = &b[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------
// direct: same-node vs cross-node @connections sends

struct Direct {
    base: Instant,
    /// The id each socket learned from its probe.
    ids: Vec<Mutex<Option<String>>>,
    /// Cross-node probes each socket received.
    xprobes: Vec<AtomicU32>,
    /// Per sequence number: the socket it is for, its worker, when its POST started, when
    /// it arrived, how often it arrived, whether its POST answered 200.
    target: Box<[AtomicU32]>,
    worker: Box<[AtomicU32]>,
    pub_ns: Box<[AtomicU64]>,
    recv_ns: Box<[AtomicU64]>,
    counts: Box<[AtomicU32]>,
    ok: Box<[AtomicBool]>,
    next_seq: AtomicUsize,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    misrouted: AtomicU64,
    unparsed: AtomicU64,
    conns_lost: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// One per worker: woken when its message arrived (`delivered` pacing).
    wakers: Vec<Notify>,
    /// Delivery latency (POST start -> arrival), sharded to keep locks cold.
    lat: Vec<Mutex<Histogram<u64>>>,
}

fn atomics32(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}
fn atomics64(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Direct {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn on_message(&self, idx: usize, b: &[u8]) {
        if let Some(id) = b.strip_prefix(b"probe:") {
            *self.ids[idx].lock() = Some(String::from_utf8_lossy(id).into_owned());
            return;
        }
        if b.starts_with(b"xprobe:") {
            self.xprobes[idx].fetch_add(1, Ordering::AcqRel);
            return;
        }
        let Some(seq) = parse_seq(b).filter(|&s| s > 0 && s < DIRECT_SEQ_CAP) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.now_ns();
        if self.target[seq].load(Ordering::Acquire) as usize != idx {
            self.misrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.counts[seq].fetch_add(1, Ordering::AcqRel) > 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.recv_ns[seq].store(now, Ordering::Release);
        self.delivered.fetch_add(1, Ordering::AcqRel);
        let p = self.pub_ns[seq].load(Ordering::Acquire);
        if p > 0 && now > p {
            let _ = self.lat[idx % self.lat.len()]
                .lock()
                .record(((now - p) / 1000).clamp(1, 120_000_000));
        }
        let w = self.worker[seq].load(Ordering::Acquire) as usize;
        if let Some(n) = self.wakers.get(w) {
            n.notify_one();
        }
    }
}

async fn direct_reader(mut ws: Ws, idx: usize, st: Arc<Direct>) {
    let why = loop {
        match ws.recv().await {
            Ok(Some(Message::Text(b))) | Ok(Some(Message::Binary(b))) => st.on_message(idx, &b),
            Ok(Some(Message::Close(c))) => {
                let code = c.as_ref().map_or(close_code::NORMAL, |(code, _)| *code);
                ws.answer_close(code).await;
                break format!("closed by the server: {c:?}");
            }
            Ok(Some(_)) => {}
            Ok(None) => break "EOF".to_string(),
            Err(e) => break format!("{e:#}"),
        }
    };
    st.conns_lost.fetch_add(1, Ordering::AcqRel);
    st.first_error
        .lock()
        .get_or_insert(format!("connection {idx}: {why}"));
}

/// Lists every member of `group` through `base`.
async fn list_members(base: &str, group: &str) -> Result<Vec<String>> {
    Ok(list_members_timed(base, group).await?.0)
}

/// Lists every member of `group` through `base`; also each page's time in ms.
async fn list_members_timed(base: &str, group: &str) -> Result<(Vec<String>, Vec<f64>)> {
    let mut out = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let t0 = Instant::now();
        let path = match &after {
            None => format!("/v1/groups/{}/members?limit=1000", percent_encode(group)),
            Some(a) => format!(
                "/v1/groups/{}/members?limit=1000&after={}",
                percent_encode(group),
                percent_encode(a)
            ),
        };
        let (status, body) = http_get(base, &path).await?;
        pages.push(round1(t0.elapsed().as_secs_f64() * 1000.0));
        if status != 200 {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body).context("members answer")?;
        for m in v["members"].as_array().into_iter().flatten() {
            if let Some(s) = m.as_str() {
                out.push(s.to_string());
            } else if let Some(s) = m["connectionId"].as_str() {
                out.push(s.to_string());
            }
        }
        match v["next"].as_str() {
            Some(n) if !n.is_empty() => after = Some(n.to_string()),
            _ => return Ok((out, pages)),
        }
    }
    bail!("member listing did not end after 100 pages")
}

fn new_client(base: &str) -> Result<(http1::Client, String)> {
    let (addr, host, prefix) = http1::parse_base(base)?;
    if !addr.ip().is_loopback() {
        bail!("refusing non-loopback {addr}");
    }
    Ok((http1::Client::new(addr, host, HTTP_TIMEOUT), prefix))
}

async fn direct(a: DirectArgs, nofile: u64) -> Result<()> {
    let cap = MAX_CONNECTIONS.min((nofile as usize).saturating_sub(200));
    if a.connections == 0 || a.connections > cap {
        bail!("--connections must be in 1..={cap}");
    }
    if a.concurrency == 0 || a.concurrency > 1024 {
        bail!("--concurrency must be in 1..=1024");
    }
    let pacings: Vec<String> = a
        .pacings
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for p in &pacings {
        if p != "http" && p != "delivered" {
            bail!("--pacings: unknown pacing {p}");
        }
    }
    let cpu = Cpu::parse(&a.pids)?;
    let ep = Arc::new(Endpoint::parse(&a.ws_url)?);
    let started = Instant::now();
    let (socks, failed, err) = open_and_join(&[ep], a.connections, &a.group, 50).await;
    if socks.len() < a.connections {
        bail!(
            "only {}/{} connections joined ({failed} failed): {}",
            socks.len(),
            a.connections,
            err.unwrap_or_default()
        );
    }
    let n = socks.len();
    let st = Arc::new(Direct {
        base: Instant::now(),
        ids: (0..n).map(|_| Mutex::new(None)).collect(),
        xprobes: (0..n).map(|_| AtomicU32::new(0)).collect(),
        target: atomics32(DIRECT_SEQ_CAP),
        worker: atomics32(DIRECT_SEQ_CAP),
        pub_ns: atomics64(DIRECT_SEQ_CAP),
        recv_ns: atomics64(DIRECT_SEQ_CAP),
        counts: atomics32(DIRECT_SEQ_CAP),
        ok: (0..DIRECT_SEQ_CAP)
            .map(|_| AtomicBool::new(false))
            .collect(),
        next_seq: AtomicUsize::new(1),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        misrouted: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        conns_lost: AtomicU64::new(0),
        first_error: Mutex::new(None),
        wakers: (0..a.concurrency).map(|_| Notify::new()).collect(),
        lat: (0..16).map(|_| Mutex::new(new_hist())).collect(),
    });
    for (idx, (_, ws)) in socks.into_iter().enumerate() {
        tokio::spawn(direct_reader(ws, idx, st.clone()));
    }
    eprintln!(
        "direct: {n} connections joined {} in {:.1}s",
        a.group,
        started.elapsed().as_secs_f64()
    );

    // Ids: the listing through B, then a probe to each through B tells each socket its id.
    let members = list_members(&a.same_url, &a.group).await?;
    if members.len() != n {
        eprintln!(
            "direct: warning: the listing has {} members, {n} joined",
            members.len()
        );
    }
    let (mut same, prefix) = new_client(&a.same_url)?;
    for id in &members {
        let r = same
            .post(
                &format!("{prefix}/prod/@connections/{}", percent_encode(id)),
                &[],
                format!("probe:{id}").as_bytes(),
            )
            .await?;
        if r.status != 200 {
            bail!(
                "same-node probe to {id} answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids: Vec<String> = loop {
        let known: Vec<Option<String>> = st.ids.iter().map(|m| m.lock().clone()).collect();
        if known.iter().all(|k| k.is_some()) {
            break known.into_iter().map(|k| k.unwrap_or_default()).collect();
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {n} sockets never got their probe (listing had {} ids)",
                known.iter().filter(|k| k.is_none()).count(),
                members.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Cross-node probes: the registry is written asynchronously, so retry 410s a while.
    let (mut cross, xprefix) = new_client(&a.cross_url)?;
    let t_probe = Instant::now();
    let mut gone_retries = 0u64;
    for id in &ids {
        loop {
            let r = cross
                .post(
                    &format!("{xprefix}/prod/@connections/{}", percent_encode(id)),
                    &[],
                    b"xprobe:1",
                )
                .await?;
            match r.status {
                200 => break,
                410 if t_probe.elapsed() < Duration::from_secs(15) => {
                    gone_retries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                s => bail!(
                    "cross-node probe to {id} answered {s}: {}",
                    String::from_utf8_lossy(&r.body)
                ),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while st.xprobes.iter().any(|x| x.load(Ordering::Acquire) == 0) {
        if Instant::now() > deadline {
            bail!(
                "{} sockets never got the cross-node probe",
                st.xprobes
                    .iter()
                    .filter(|x| x.load(Ordering::Acquire) == 0)
                    .count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emit(json!({
        "kind": "direct-ready",
        "connections": n,
        "listed": members.len(),
        "setup_s": round1(started.elapsed().as_secs_f64()),
        "cross_probe_gone_retries": gone_retries,
        "cross_probe_ms": ms(t_probe.elapsed().as_nanos() as u64),
    }));
    drop((same, cross));
    let ids: Arc<[String]> = ids.into();

    let mut pair = 0usize;
    for run in 1..=a.runs {
        for pacing in &pacings {
            let order: [(&str, &str); 2] = if pair.is_multiple_of(2) {
                [("same", &a.same_url), ("cross", &a.cross_url)]
            } else {
                [("cross", &a.cross_url), ("same", &a.same_url)]
            };
            pair += 1;
            for (path, base) in order {
                let v = direct_run(&st, &a, &cpu, &ids, base, pacing == "delivered").await?;
                let mut v = v;
                v["kind"] = json!("direct");
                v["path"] = json!(path);
                v["pacing"] = json!(pacing);
                v["run"] = json!(run);
                eprintln!(
                    "direct run {run} {pacing:9} {path:5}: {} msgs/s delivered (http {} ok/s), delivery p50 {} ms p99 {} ms, losses {}, errors {}",
                    v["deliveries_per_s"], v["ok_per_s"], v["delivery_ms_p50"], v["delivery_ms_p99"], v["losses"], v["http_errors"]
                );
                emit(v);
            }
        }
    }
    Ok(())
}

async fn direct_run(
    st: &Arc<Direct>,
    a: &DirectArgs,
    cpu: &Cpu,
    ids: &Arc<[String]>,
    base: &str,
    await_delivery: bool,
) -> Result<Value> {
    for h in &st.lat {
        *h.lock() = new_hist();
    }
    let own0 = Cpu::ticks(std::process::id());
    let mark = cpu.mark();
    let load = loadavg();
    // Every run starts from sequence number 1 (the previous run was drained): clear what
    // the previous runs used.
    let used = st.next_seq.swap(1, Ordering::AcqRel).min(DIRECT_SEQ_CAP);
    for i in 1..used {
        st.target[i].store(0, Ordering::Relaxed);
        st.worker[i].store(0, Ordering::Relaxed);
        st.pub_ns[i].store(0, Ordering::Relaxed);
        st.recv_ns[i].store(0, Ordering::Relaxed);
        st.counts[i].store(0, Ordering::Relaxed);
        st.ok[i].store(false, Ordering::Relaxed);
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    let start_seq = st.next_seq.load(Ordering::Acquire);
    let lost0 = st.conns_lost.load(Ordering::Acquire);
    let (dup0, mis0, unp0) = (
        st.duplicates.load(Ordering::Relaxed),
        st.misrouted.load(Ordering::Relaxed),
        st.unparsed.load(Ordering::Relaxed),
    );
    let delivered0 = st.delivered.load(Ordering::Acquire);
    let t_start_ns = st.now_ns();
    let t_start = Instant::now();
    let end = t_start + secs(a.secs);
    let http_hist = Arc::new(Mutex::new(new_hist()));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let first_http_error = Arc::new(Mutex::new(None::<String>));
    let delivery_timeouts = Arc::new(AtomicU64::new(0));
    let n = ids.len();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..a.concurrency {
        let (mut client, prefix) = new_client(base)?;
        let (st, ids, http_hist, statuses, first_http_error, delivery_timeouts) = (
            st.clone(),
            ids.clone(),
            http_hist.clone(),
            statuses.clone(),
            first_http_error.clone(),
            delivery_timeouts.clone(),
        );
        let size = a.size;
        workers.spawn(async move {
            let mut local = new_hist();
            while Instant::now() < end {
                let seq = st.next_seq.fetch_add(1, Ordering::AcqRel);
                if seq >= DIRECT_SEQ_CAP {
                    first_http_error
                        .lock()
                        .get_or_insert("sequence numbers exhausted".into());
                    break;
                }
                let idx = seq % n;
                st.target[seq].store(idx as u32, Ordering::Release);
                st.worker[seq].store(w as u32, Ordering::Release);
                let body = payload(seq, size);
                let path = format!("{prefix}/prod/@connections/{}", percent_encode(&ids[idx]));
                let t0 = st.now_ns();
                st.pub_ns[seq].store(t0, Ordering::Release);
                match client.post(&path, &[], &body).await {
                    Ok(r) => {
                        let _ = local.record(((st.now_ns() - t0) / 1000).clamp(1, 120_000_000));
                        if r.status == 200 {
                            st.ok[seq].store(true, Ordering::Release);
                        } else {
                            *statuses.lock().entry(r.status.to_string()).or_default() += 1;
                            first_http_error.lock().get_or_insert(format!(
                                "{}: {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    }
                    Err(e) => {
                        *statuses.lock().entry("transport".into()).or_default() += 1;
                        first_http_error.lock().get_or_insert(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                if await_delivery {
                    let give_up = Instant::now() + Duration::from_secs(2);
                    loop {
                        let notified = st.wakers[w].notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        if st.counts[seq].load(Ordering::Acquire) > 0 {
                            break;
                        }
                        if tokio::time::timeout_at(give_up, notified).await.is_err() {
                            delivery_timeouts.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            http_hist.lock().add(&local).ok();
        });
    }
    while workers.join_next().await.is_some() {}
    let publish_end_ns = st.now_ns();
    let in_window = st.delivered.load(Ordering::Acquire) - delivered0;
    let end_seq = st.next_seq.load(Ordering::Acquire).min(DIRECT_SEQ_CAP);

    // Drain: every message answered 200 arrives, or give up.
    let drain_deadline = Instant::now() + DRAIN_MAX;
    let mut seen = st.delivered.load(Ordering::Acquire);
    let mut quiet_since = Instant::now();
    let mut complete = false;
    let mut next_check = start_seq;
    loop {
        while next_check < end_seq
            && (!st.ok[next_check].load(Ordering::Acquire)
                || st.counts[next_check].load(Ordering::Acquire) > 0)
        {
            next_check += 1;
        }
        if next_check >= end_seq {
            complete = true;
            break;
        }
        let now = Instant::now();
        let d = st.delivered.load(Ordering::Acquire);
        if d != seen {
            seen = d;
            quiet_since = now;
        }
        if now >= drain_deadline || now >= quiet_since + QUIET_GIVE_UP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained_ns = st.now_ns();
    let (mut sent_ok, mut deliveries, mut losses, mut delivered_after_error) =
        (0u64, 0u64, 0u64, 0u64);
    let mut t_last = t_start_ns;
    for seq in start_seq..end_seq {
        let c = st.counts[seq].load(Ordering::Acquire);
        if st.ok[seq].load(Ordering::Acquire) {
            sent_ok += 1;
            if c > 0 {
                deliveries += 1;
                t_last = t_last.max(st.recv_ns[seq].load(Ordering::Acquire));
            } else {
                losses += 1;
            }
        } else if c > 0 {
            delivered_after_error += 1;
        }
    }
    if !complete {
        t_last = drained_ns;
    }
    let total_s = (t_last.saturating_sub(t_start_ns)) as f64 / 1e9;
    let pub_s = (publish_end_ns - t_start_ns) as f64 / 1e9;
    let mut lat = new_hist();
    for h in &st.lat {
        lat.add(&*h.lock()).ok();
    }
    let http = http_hist.lock().clone();
    let statuses = statuses.lock().clone();
    let http_errors: u64 = statuses.values().sum();
    Ok(json!({
        "connections": n,
        "concurrency": a.concurrency,
        "size": a.size,
        "secs": a.secs,
        "load_at_start": load,
        "attempts": end_seq - start_seq,
        "sent_ok": sent_ok,
        "ok_per_s": round1(sent_ok as f64 / pub_s.max(1e-9)),
        "deliveries": deliveries,
        // Every delivery of a message whose POST answered 200, over the time from the first
        // POST to the last delivery (drain included): the headline figure.
        "deliveries_per_s": round1(deliveries as f64 / total_s.max(1e-9)),
        "deliveries_per_s_in_window": round1(in_window as f64 / pub_s.max(1e-9)),
        "drain_ms": ms(t_last.saturating_sub(publish_end_ns)),
        "complete": complete,
        "losses": losses,
        "duplicates": st.duplicates.load(Ordering::Relaxed) - dup0,
        "misrouted": st.misrouted.load(Ordering::Relaxed) - mis0,
        "unparsed": st.unparsed.load(Ordering::Relaxed) - unp0,
        "delivered_after_error": delivered_after_error,
        "delivery_timeouts": delivery_timeouts.load(Ordering::Relaxed),
        "connections_lost": st.conns_lost.load(Ordering::Acquire) - lost0,
        "http_errors": http_errors,
        "http_statuses": statuses,
        "first_http_error": first_http_error.lock().clone(),
        "first_error": st.first_error.lock().clone(),
        "http_ms_p50": q_ms(&http, 0.5),
        "http_ms_p99": q_ms(&http, 0.99),
        "delivery_ms_p50": q_ms(&lat, 0.5),
        "delivery_ms_p99": q_ms(&lat, 0.99),
        "delivery_ms_max": if lat.is_empty() { Value::Null } else { json!(round1(lat.max() as f64 / 1000.0)) },
        "cpu": cpu.since(&mark, own0),
    }))
}

// ---------------------------------------------------------------------------------------
// fanout: one group over several nodes

struct Fan {
    base: Instant,
    nodes: usize,
    /// Per node, members joined and still connected.
    alive: Vec<AtomicUsize>,
    lost: Vec<AtomicUsize>,
    /// Per sequence number: deliveries in all, expected in all, last delivery (when the
    /// count reached `expected`), first delivery, publish start.
    counts: Box<[AtomicU32]>,
    expected: Box<[AtomicU32]>,
    first_ns: Box<[AtomicU64]>,
    last_ns: Box<[AtomicU64]>,
    pub_ns: Box<[AtomicU64]>,
    /// The same per node: index `node * FAN_SEQ_CAP + seq`.
    node_counts: Box<[AtomicU32]>,
    node_expected: Box<[AtomicU32]>,
    node_last_ns: Box<[AtomicU64]>,
    next_seq: AtomicUsize,
    delivered: AtomicU64,
    node_delivered: Vec<AtomicU64>,
    unparsed: AtomicU64,
    first_error: Mutex<Option<String>>,
    notify: Notify,
    /// Sampled delivery latency (every 50th member).
    sampled: Mutex<Histogram<u64>>,
}

impl Fan {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn alive_total(&self) -> u32 {
        self.alive
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .sum::<usize>() as u32
    }

    fn deliver(&self, node: usize, b: &[u8], sample: bool) {
        let now = self.now_ns();
        let Some(seq) = parse_seq(b).filter(|&s| s > 0 && s < FAN_SEQ_CAP) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.node_delivered[node].fetch_add(1, Ordering::Relaxed);
        let k = node * FAN_SEQ_CAP + seq;
        let nc = self.node_counts[k].fetch_add(1, Ordering::AcqRel) + 1;
        if nc == self.node_expected[k].load(Ordering::Acquire) {
            self.node_last_ns[k].store(now, Ordering::Release);
        }
        let c = self.counts[seq].fetch_add(1, Ordering::AcqRel) + 1;
        if c == 1 {
            self.first_ns[seq].store(now, Ordering::Release);
        }
        if c == self.expected[seq].load(Ordering::Acquire) {
            self.last_ns[seq].store(now, Ordering::Release);
            self.notify.notify_waiters();
        }
        if sample {
            let p = self.pub_ns[seq].load(Ordering::Acquire);
            if p > 0 && now > p {
                let _ = self
                    .sampled
                    .lock()
                    .record(((now - p) / 1000).clamp(1, 120_000_000));
            }
        }
    }

    fn complete(&self, seq: usize) -> bool {
        self.counts[seq].load(Ordering::Acquire) >= self.expected[seq].load(Ordering::Acquire)
    }

    /// Waits until every expected member has `seq`; gives up at `deadline` or after
    /// QUIET_GIVE_UP without any delivery.
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
            let _ =
                tokio::time::timeout_at(deadline.min(now + Duration::from_millis(100)), notified)
                    .await;
        }
    }

    /// Marks `seq` as expected at every member alive now.
    fn expect(&self, seq: usize) {
        let mut total = 0;
        for k in 0..self.nodes {
            let n = self.alive[k].load(Ordering::Acquire) as u32;
            self.node_expected[k * FAN_SEQ_CAP + seq].store(n, Ordering::Release);
            total += n;
        }
        self.expected[seq].store(total, Ordering::Release);
        self.pub_ns[seq].store(self.now_ns(), Ordering::Release);
    }

    fn unexpect(&self, seq: usize) {
        self.expected[seq].store(0, Ordering::Release);
        for k in 0..self.nodes {
            self.node_expected[k * FAN_SEQ_CAP + seq].store(0, Ordering::Release);
        }
    }

    fn take_seq(&self) -> Result<usize> {
        let s = self.next_seq.fetch_add(1, Ordering::AcqRel);
        if s >= FAN_SEQ_CAP {
            bail!("sequence numbers exhausted ({FAN_SEQ_CAP})");
        }
        Ok(s)
    }
}

async fn fan_member(mut ws: Ws, node: usize, fan: Arc<Fan>, sample: bool) {
    let why = loop {
        match ws.recv().await {
            Ok(Some(Message::Text(b))) | Ok(Some(Message::Binary(b))) => {
                fan.deliver(node, &b, sample)
            }
            Ok(Some(Message::Close(c))) => {
                let code = c.as_ref().map_or(close_code::NORMAL, |(code, _)| *code);
                ws.answer_close(code).await;
                break format!(
                    "closed by the server: {:?}",
                    c.map(|(code, r)| (code, String::from_utf8_lossy(&r).into_owned()))
                );
            }
            Ok(Some(_)) => {}
            Ok(None) => break "EOF".into(),
            Err(e) => break format!("{e:#}"),
        }
    };
    fan.alive[node].fetch_sub(1, Ordering::AcqRel);
    fan.lost[node].fetch_add(1, Ordering::AcqRel);
    fan.first_error
        .lock()
        .get_or_insert(format!("member on node {node}: {why}"));
}

struct GroupPublisher {
    client: http1::Client,
    path: String,
    size: usize,
}

impl GroupPublisher {
    fn new(a: &FanoutArgs) -> Result<Self> {
        let (client, prefix) = new_client(&a.publish_url)?;
        Ok(Self {
            client,
            path: format!("{prefix}/v1/groups/{}/messages", percent_encode(&a.group)),
            size: a.size,
        })
    }

    /// One publish; the answer's `recipients` and `dropped`.
    async fn publish(&mut self, seq: usize) -> Result<(u64, u64)> {
        let r = self
            .client
            .post(
                &self.path,
                &["Content-Type: text/plain; charset=utf-8".to_string()],
                &payload(seq, self.size),
            )
            .await?;
        if r.status != 200 {
            bail!(
                "publish answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        let v: Value = serde_json::from_slice(&r.body).context("publish answer")?;
        Ok((
            v["recipients"].as_u64().unwrap_or(0),
            v["dropped"].as_u64().unwrap_or(0),
        ))
    }
}

async fn fanout(a: FanoutArgs, nofile: u64) -> Result<()> {
    let urls: Vec<&str> = a.ws_urls.split(',').filter(|s| !s.is_empty()).collect();
    let names: Vec<String> = a.names.split(',').map(str::to_string).collect();
    if urls.is_empty() || names.len() != urls.len() {
        bail!("--ws-urls and --names must list the same nodes");
    }
    let total = a.per_node * urls.len();
    let cap = MAX_CONNECTIONS.min((nofile as usize).saturating_sub(200));
    if total == 0 || total > cap {
        bail!("{total} members is more than this process may hold ({cap})");
    }
    if a.inflight == 0 || a.inflight > 16 {
        bail!("--inflight must be in 1..=16");
    }
    let cpu = Cpu::parse(&a.pids)?;
    let eps: Vec<Arc<Endpoint>> = urls
        .iter()
        .map(|u| Endpoint::parse(u).map(Arc::new))
        .collect::<Result<_>>()?;
    let nodes = eps.len();
    let fan = Arc::new(Fan {
        base: Instant::now(),
        nodes,
        alive: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
        lost: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
        counts: atomics32(FAN_SEQ_CAP),
        expected: atomics32(FAN_SEQ_CAP),
        first_ns: atomics64(FAN_SEQ_CAP),
        last_ns: atomics64(FAN_SEQ_CAP),
        pub_ns: atomics64(FAN_SEQ_CAP),
        node_counts: atomics32(FAN_SEQ_CAP * nodes),
        node_expected: atomics32(FAN_SEQ_CAP * nodes),
        node_last_ns: atomics64(FAN_SEQ_CAP * nodes),
        next_seq: AtomicUsize::new(1),
        delivered: AtomicU64::new(0),
        node_delivered: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        unparsed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        notify: Notify::new(),
        sampled: Mutex::new(new_hist()),
    });
    let started = Instant::now();
    let own0 = Cpu::ticks(std::process::id());
    let mark = cpu.mark();
    let (socks, failed, err) = open_and_join(&eps, a.per_node, &a.group, a.concurrency).await;
    let setup = cpu.since(&mark, own0);
    let mut per_node = vec![0usize; nodes];
    for (i, (k, ws)) in socks.into_iter().enumerate() {
        per_node[k] += 1;
        fan.alive[k].fetch_add(1, Ordering::AcqRel);
        tokio::spawn(fan_member(ws, k, fan.clone(), i % 50 == 0));
    }
    let joined: usize = per_node.iter().sum();
    eprintln!(
        "fanout: {joined}/{total} members joined {} ({:?} per node) in {:.1}s; {failed} failed",
        a.group,
        per_node,
        started.elapsed().as_secs_f64()
    );
    emit(json!({
        "kind": "fanout-ready",
        "requested": total,
        "joined": joined,
        "joined_per_node": names.iter().cloned().zip(per_node.iter().map(|c| json!(c))).collect::<serde_json::Map<String, Value>>(),
        "failed": failed,
        "first_error": err,
        "setup_s": round1(started.elapsed().as_secs_f64()),
        "setup_cpu": setup,
    }));
    if joined == 0 {
        bail!("no member joined");
    }
    // Let the work the joins left behind (registry writes) end before measuring.
    let own0 = Cpu::ticks(std::process::id());
    let mark = cpu.mark();
    let settle_s = cpu.settle(Duration::from_secs(20)).await;
    let settle = json!({"kind": "settle", "settle_s": settle_s, "cpu": cpu.since(&mark, own0)});
    eprintln!("fanout: nodes quiet {settle_s}s after the joins");
    emit(settle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Single shots.
    let mut publisher = GroupPublisher::new(&a)?;
    let mut last_ms = Vec::new();
    let mut node_last_ms: Vec<Vec<f64>> = vec![Vec::new(); nodes];
    let mut first_ms = Vec::new();
    let mut http_ms = Vec::new();
    let (mut losses, mut incomplete) = (0u64, 0usize);
    let mut recipients = Vec::new();
    let own0 = Cpu::ticks(std::process::id());
    let mark = cpu.mark();
    for shot in 0..=a.shots {
        let seq = fan.take_seq()?;
        fan.expect(seq);
        let t0 = fan.pub_ns[seq].load(Ordering::Acquire);
        let r = publisher.publish(seq).await;
        let t1 = fan.now_ns();
        let (rec, _dropped) = match r {
            Ok(p) => p,
            Err(e) => {
                fan.unexpect(seq);
                return Err(e.context(format!("publish of shot {shot}")));
            }
        };
        let ok = fan
            .wait_complete(seq, Instant::now() + Duration::from_secs(15))
            .await;
        if shot > 0 {
            http_ms.push(ms(t1 - t0));
            recipients.push(rec);
            if ok {
                last_ms.push(ms(fan.last_ns[seq].load(Ordering::Acquire) - t0));
                first_ms.push(ms(fan.first_ns[seq]
                    .load(Ordering::Acquire)
                    .saturating_sub(t0)));
                for (k, v) in node_last_ms.iter_mut().enumerate() {
                    let l = fan.node_last_ns[k * FAN_SEQ_CAP + seq].load(Ordering::Acquire);
                    v.push(ms(l.saturating_sub(t0)));
                }
            } else {
                incomplete += 1;
                losses += u64::from(
                    fan.expected[seq]
                        .load(Ordering::Acquire)
                        .saturating_sub(fan.counts[seq].load(Ordering::Acquire)),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let members = fan.alive_total();
    let med_last = median(&last_ms);
    let shot_line = json!({
        "kind": "shots",
        "shots": a.shots,
        "members": members,
        "size": a.size,
        "last_delivery_ms": last_ms,
        "last_delivery_ms_median": med_last,
        "first_delivery_ms_median": median(&first_ms),
        "last_delivery_ms_median_per_node": names.iter().cloned().zip(node_last_ms.iter().map(|v| json!(median(v)))).collect::<serde_json::Map<String, Value>>(),
        "http_ms_median": median(&http_ms),
        "deliveries_per_s": med_last.map(|m| (f64::from(members) / (m / 1000.0)).round()),
        "incomplete_shots": incomplete,
        "losses": losses,
        "recipients_reported": recipients,
        "load_at_end": loadavg(),
        "cpu": cpu.since(&mark, own0),
    });
    eprintln!(
        "fanout shots: last delivery {:?} ms (median {:?}; per node {}), losses {losses}",
        shot_line["last_delivery_ms"], med_last, shot_line["last_delivery_ms_median_per_node"]
    );
    emit(shot_line);

    for run in 1..=a.runs {
        let mut v = sustained(&fan, &a, &cpu, &names).await?;
        v["kind"] = json!("sustained");
        v["run"] = json!(run);
        eprintln!(
            "fanout sustained run {run}: {} deliveries/s ({} msgs, {} publishes/s, in-window {}/s, drain {} ms), losses {}, last-member p50 {} ms, members lost {}",
            v["deliveries_per_s"], v["published"], v["publishes_per_s"], v["deliveries_per_s_in_window"], v["drain_ms"], v["losses"], v["last_member_ms_p50"], v["members_lost"]
        );
        emit(v);
    }

    // Listing every member through the publishing node (members of the other nodes come
    // from the registry).
    let t0 = Instant::now();
    let listing = match tokio::time::timeout(
        Duration::from_secs(60),
        list_members_timed(&a.publish_url, &a.group),
    )
    .await
    {
        Ok(Ok((ids, pages))) => {
            let unique = ids.iter().collect::<std::collections::HashSet<_>>().len();
            json!({"kind": "listing", "members": ids.len(), "unique": unique,
                   "expected": fan.alive_total(), "pages": pages.len(), "page_ms": pages,
                   "total_ms": round1(t0.elapsed().as_secs_f64() * 1000.0)})
        }
        Ok(Err(e)) => json!({"kind": "listing", "error": format!("{e:#}"),
                             "total_ms": round1(t0.elapsed().as_secs_f64() * 1000.0)}),
        Err(_) => json!({"kind": "listing", "error": "listing took more than 60 s"}),
    };
    eprintln!(
        "fanout: listing through the publishing node: {} members of {} in {} ms ({} pages){}",
        listing["members"],
        listing["expected"],
        listing["total_ms"],
        listing["pages"],
        listing
            .get("error")
            .map(|e| format!(", error: {e}"))
            .unwrap_or_default()
    );
    emit(listing);
    Ok(())
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        round1((s[m - 1] + s[m]) / 2.0)
    })
}

async fn sustained(fan: &Arc<Fan>, a: &FanoutArgs, cpu: &Cpu, names: &[String]) -> Result<Value> {
    let members = fan.alive_total();
    let lost0: Vec<usize> = fan.lost.iter().map(|l| l.load(Ordering::Acquire)).collect();
    *fan.sampled.lock() = new_hist();
    let own0 = Cpu::ticks(std::process::id());
    let mark = cpu.mark();
    let load = loadavg();
    let start_seq = fan.next_seq.load(Ordering::Acquire);
    let delivered0 = fan.delivered.load(Ordering::Relaxed);
    let t_start_ns = fan.now_ns();
    let t_start = Instant::now();
    let end = t_start + secs(a.secs);
    let http_hist = Arc::new(Mutex::new(new_hist()));
    let publish_errors = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..a.inflight {
        let mut p = GroupPublisher::new(a)?;
        let (fan, http_hist, publish_errors, dropped) = (
            fan.clone(),
            http_hist.clone(),
            publish_errors.clone(),
            dropped.clone(),
        );
        let window = a.window;
        workers.spawn(async move {
            let mut first_err = None;
            while Instant::now() < end {
                let seq = match fan.take_seq() {
                    Ok(s) => s,
                    Err(e) => {
                        first_err.get_or_insert(format!("{e:#}"));
                        break;
                    }
                };
                if window > 0 && seq >= start_seq + window {
                    fan.wait_complete(seq - window, end + DRAIN_MAX).await;
                }
                fan.expect(seq);
                let t0 = fan.pub_ns[seq].load(Ordering::Acquire);
                match p.publish(seq).await {
                    Ok((_, d)) => {
                        let _ = http_hist
                            .lock()
                            .record(((fan.now_ns() - t0) / 1000).clamp(1, 120_000_000));
                        dropped.fetch_add(d, Ordering::Relaxed);
                    }
                    Err(e) => {
                        fan.unexpect(seq);
                        publish_errors.fetch_add(1, Ordering::Relaxed);
                        first_err.get_or_insert(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            first_err
        });
    }
    let mut timeline = Vec::new();
    let mut node_timeline: Vec<Vec<u64>> = vec![Vec::new(); fan.nodes];
    let mut prev = delivered0;
    let mut node_prev: Vec<u64> = fan
        .node_delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .collect();
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
        for k in 0..fan.nodes {
            let d = fan.node_delivered[k].load(Ordering::Relaxed);
            node_timeline[k].push(d - node_prev[k]);
            node_prev[k] = d;
        }
    }
    let mut publish_error = None;
    while let Some(r) = workers.join_next().await {
        if let Ok(Some(e)) = r {
            publish_error.get_or_insert(e);
        }
    }
    let publish_end_ns = fan.now_ns();
    let in_window = fan.delivered.load(Ordering::Relaxed) - delivered0;
    let end_seq = fan.next_seq.load(Ordering::Acquire).min(FAN_SEQ_CAP);
    let drain_deadline = Instant::now() + DRAIN_MAX;
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
    let mut node_losses = vec![0u64; fan.nodes];
    let mut node_deliveries = vec![0u64; fan.nodes];
    let mut partial = vec![0u64; fan.nodes];
    let mut t_last = t_start_ns;
    for seq in start_seq..end_seq {
        let exp = u64::from(fan.expected[seq].load(Ordering::Acquire));
        if exp == 0 {
            // Not published (the call failed), yet perhaps delivered somewhere: a 503
            // "done on this node only" reaches the publishing node's members alone.
            for (k, p) in partial.iter_mut().enumerate() {
                *p += u64::from(fan.node_counts[k * FAN_SEQ_CAP + seq].load(Ordering::Acquire));
            }
            continue;
        }
        published += 1;
        let c = u64::from(fan.counts[seq].load(Ordering::Acquire));
        deliveries += c.min(exp);
        extra += c.saturating_sub(exp);
        losses += exp.saturating_sub(c);
        for k in 0..fan.nodes {
            let i = k * FAN_SEQ_CAP + seq;
            let e = u64::from(fan.node_expected[i].load(Ordering::Acquire));
            let c = u64::from(fan.node_counts[i].load(Ordering::Acquire));
            node_losses[k] += e.saturating_sub(c);
            node_deliveries[k] += c.min(e);
        }
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
    let per_node = |v: &[u64]| -> serde_json::Map<String, Value> {
        names
            .iter()
            .cloned()
            .zip(v.iter().map(|x| json!(x)))
            .collect()
    };
    let members_lost: Vec<u64> = fan
        .lost
        .iter()
        .zip(&lost0)
        .map(|(l, &l0)| (l.load(Ordering::Acquire) - l0) as u64)
        .collect();
    Ok(json!({
        "secs": a.secs,
        "inflight": a.inflight,
        "window": a.window,
        "size": a.size,
        "members_at_start": members,
        "load_at_start": load,
        "published": published,
        "publishes_per_s": round1(published as f64 / pub_s.max(1e-9)),
        "publish_errors": publish_errors.load(Ordering::Relaxed),
        "publish_error": publish_error,
        "deliveries": deliveries,
        "deliveries_per_s": round1(deliveries as f64 / total_s.max(1e-9)),
        "deliveries_per_s_in_window": round1(in_window as f64 / pub_s.max(1e-9)),
        "deliveries_per_node": per_node(&node_deliveries),
        "losses_per_node": per_node(&node_losses),
        "timeline_per_s": timeline,
        "timeline_per_s_per_node": names.iter().cloned().zip(node_timeline.iter().map(|v| json!(v))).collect::<serde_json::Map<String, Value>>(),
        "drain_ms": ms(t_last.saturating_sub(publish_end_ns)),
        "complete": complete,
        "losses": losses,
        "extra_deliveries": extra,
        "dropped_reported": dropped.load(Ordering::Relaxed),
        // Deliveries of messages whose publish call failed, per node.
        "failed_publish_deliveries_per_node": per_node(&partial),
        "members_lost": members_lost.iter().sum::<u64>(),
        "members_lost_per_node": per_node(&members_lost),
        "unparsed_total": fan.unparsed.load(Ordering::Relaxed),
        "first_error": fan.first_error.lock().clone(),
        "last_member_ms_p50": q_ms(&last_member, 0.5),
        "last_member_ms_p99": q_ms(&last_member, 0.99),
        "member_latency_ms_p50": q_ms(&sampled, 0.5),
        "member_latency_ms_p99": q_ms(&sampled, 0.99),
        "http_ms_p50": q_ms(&http, 0.5),
        "http_ms_p99": q_ms(&http, 0.99),
        "cpu": cpu.since(&mark, own0),
    }))
}

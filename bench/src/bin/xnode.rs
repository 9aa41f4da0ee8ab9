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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use switchboard_bench::cpu::{loadavg, Cpu};
use switchboard_bench::fanout::{
    self, Audience, Deliveries, Publish, Published, SustainedOpts, QUIET_GIVE_UP,
};
use switchboard_bench::stats::{
    atomics32, atomics64, max_ms, median, new_hist, ns_micros, quantile_ms, round1,
};
use switchboard_bench::ws_client::{self, ClientOptions, End, Endpoint, Ws, WsUrl};
use switchboard_bench::{contains, http1, jsonl::emit, parse_decimal};
use switchboard_ws::{Limits, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest drain after a run.
const DRAIN_MAX: Duration = Duration::from_secs(20);
/// Open files this process may use for connections (the hard limit is usually 20,000).
const MAX_CONNECTIONS: usize = 19_000;
const MAX_SECS: f64 = 600.0;
/// Sequence numbers per process (tables are preallocated).
const DIRECT_SEQ_CAP: usize = 1 << 21;
const FAN_SEQ_CAP: usize = 1 << 17;
/// Source addresses 127.0.0.1..=127.0.0.SOURCES.
const SOURCES: u8 = 16;
/// How often a wait for fan-out deliveries looks again although no delivery woke it.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// How the connections are opened, read and closed.
const CLIENT_OPTIONS: ClientOptions = ClientOptions {
    limits: Limits {
        max_frame_bytes: 16 << 20,
        max_message_bytes: 16 << 20,
    },
    read_reserve: 8192,
    close_timeout: Duration::from_secs(2),
    deflate: false,
    v1: false,
};

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
    let about = "Cluster benchmark client for switchboard (loopback targets only)";
    switchboard_bench::main(about, |cmd: Cmd, nofile| async move {
        let result = match cmd {
            Cmd::Direct(a) => direct(a, nofile).await,
            Cmd::Fanout(a) => fanout(a, nofile).await,
        };
        if let Err(e) = result {
            eprintln!("xnode: error: {e:#}");
            emit(json!({"kind": "error", "error": format!("{e:#}")}));
            return 1;
        }
        0
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, MAX_SECS))
}

/// `ns` in ms, one decimal.
fn ms(ns: u64) -> f64 {
    round1(ns as f64 / 1e6)
}

/// `{NAME: value}` for the nodes `names` and their values `v`, in the same order.
fn per_node<T: Serialize>(names: &[String], v: &[T]) -> Value {
    names
        .iter()
        .cloned()
        .zip(v.iter().map(|x| json!(x)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// WebSocket client

/// The node at `url` (`ws://127.x.y.z:PORT/PATH`), connected to from 127.0.0.1..=16.
fn endpoint(url: &str) -> Result<Arc<Endpoint>> {
    let parts = WsUrl::split(url)?;
    let port = parts
        .port
        .ok_or_else(|| anyhow!("{url}: a port is required"))?;
    let ip = parts
        .ip()
        .with_context(|| format!("{url}: host must be an IPv4 loopback address"))?;
    if !ip.is_loopback() || !ip.is_ipv4() {
        bail!("refusing {ip}: this tool only loads this machine over IPv4 loopback");
    }
    let addr = SocketAddr::new(ip, port.parse().context("bad port")?);
    let sources = Endpoint::loopback_sources(SOURCES);
    Ok(Arc::new(Endpoint::new(
        addr,
        parts.authority,
        parts.path,
        sources,
        CLIENT_OPTIONS,
    )))
}

/// Sends `{"action":"join","group":G}` and waits for `{"joined":G}`.
async fn join(ws: &mut Ws, group: &str) -> Result<()> {
    let msg = json!({"action": "join", "group": group}).to_string();
    ws.send(true, msg.as_bytes()).await?;
    loop {
        match ws.recv().await? {
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

/// Opens and joins `per_target` connections to each endpoint, `concurrency` at a time.
/// Returns the joined sockets with their endpoint index, and the failures.
async fn open_and_join(
    eps: &[Arc<Endpoint>],
    per_target: usize,
    group: &str,
    concurrency: usize,
) -> (Vec<(usize, Ws)>, usize, Option<String>) {
    let jobs: Vec<usize> = (0..per_target).flat_map(|_| 0..eps.len()).collect();
    let n = jobs.len();
    let (eps, group) = (eps.to_vec(), group.to_string());
    let open = move |j: usize| {
        let k = jobs[j];
        let (ep, group) = (eps[k].clone(), group.clone());
        async move {
            let mut ws = ep.connect_timeout(HANDSHAKE_TIMEOUT).await?;
            tokio::time::timeout(JOIN_TIMEOUT, join(&mut ws, &group))
                .await
                .map_err(|_| anyhow!("join timed out"))??;
            Ok((k, ws))
        }
    };
    let out = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let sink = out.clone();
    let r = ws_client::open_many(n, concurrency, n / 20 + 20, open, move |_, joined| {
        sink.lock().push(joined)
    })
    .await;
    let v = std::mem::take(&mut *out.lock());
    (v, r.failed, r.first_error)
}

/// Parses `s=` + 10 digits at the start of a message.
fn parse_seq(b: &[u8]) -> Option<usize> {
    let d = b.strip_prefix(b"s=")?.get(..10)?;
    parse_decimal(d).map(|v| v as usize)
}

/// `s=SEQ;` padded with `x` to `size` bytes.
fn payload(seq: usize, size: usize) -> Vec<u8> {
    let mut s = format!("s={seq:010};").into_bytes();
    s.resize(size.max(s.len()), b'x');
    s
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

/// The body of a chunked response.
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
                .record(ns_micros(now - p));
        }
        let w = self.worker[seq].load(Ordering::Acquire) as usize;
        if let Some(n) = self.wakers.get(w) {
            n.notify_one();
        }
    }
}

async fn direct_reader(mut ws: Ws, idx: usize, st: Arc<Direct>) {
    let why = loop {
        match ws.next_data().await {
            Ok(b) => st.on_message(idx, &b),
            Err(End::Closed(c)) => break format!("closed by the server: {c:?}"),
            Err(end) => break end.to_string(),
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
            None => format!(
                "/v1/groups/{}/members?limit=1000",
                http1::percent_encode(group)
            ),
            Some(a) => format!(
                "/v1/groups/{}/members?limit=1000&after={}",
                http1::percent_encode(group),
                http1::percent_encode(a)
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
    let cpu = Cpu::parse(&a.pids, "xnode")?;
    let ep = endpoint(&a.ws_url)?;
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
                &format!("{prefix}/prod/@connections/{}", http1::percent_encode(id)),
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
                    &format!("{xprefix}/prod/@connections/{}", http1::percent_encode(id)),
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
                let path = format!(
                    "{prefix}/prod/@connections/{}",
                    http1::percent_encode(&ids[idx])
                );
                let t0 = st.now_ns();
                st.pub_ns[seq].store(t0, Ordering::Release);
                match client.post(&path, &[], &body).await {
                    Ok(r) => {
                        let _ = local.record(ns_micros(st.now_ns() - t0));
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
        "http_ms_p50": quantile_ms(&http, 0.5),
        "http_ms_p99": quantile_ms(&http, 0.99),
        "delivery_ms_p50": quantile_ms(&lat, 0.5),
        "delivery_ms_p99": quantile_ms(&lat, 0.99),
        "delivery_ms_max": max_ms(&lat),
        "cpu": cpu.since(&mark),
    }))
}

// ---------------------------------------------------------------------------------------
// fanout: one group over several nodes

struct Fan {
    deliveries: Deliveries,
    nodes: usize,
    /// Per node, members joined and still connected.
    alive: Vec<AtomicUsize>,
    lost: Vec<AtomicUsize>,
    /// Per node and sequence number, as the totals in `deliveries`: deliveries, members
    /// expected, last delivery (when the count reached `expected`). Index
    /// `node * FAN_SEQ_CAP + seq`.
    node_counts: Box<[AtomicU32]>,
    node_expected: Box<[AtomicU32]>,
    node_last_ns: Box<[AtomicU64]>,
    node_delivered: Vec<AtomicU64>,
    unparsed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Audience for Fan {
    fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    fn members(&self) -> usize {
        self.alive.iter().map(|a| a.load(Ordering::Acquire)).sum()
    }

    fn expect(&self, seq: usize) -> u64 {
        let mut total = 0;
        for k in 0..self.nodes {
            let n = self.alive[k].load(Ordering::Acquire) as u32;
            self.node_expected[k * FAN_SEQ_CAP + seq].store(n, Ordering::Release);
            total += n;
        }
        self.deliveries.expect(seq, total)
    }

    fn unexpect(&self, seq: usize) {
        self.deliveries.unexpect(seq);
        for k in 0..self.nodes {
            self.node_expected[k * FAN_SEQ_CAP + seq].store(0, Ordering::Release);
        }
    }
}

impl Fan {
    /// One message `b` delivered to a member on `node`.
    fn deliver(&self, node: usize, b: &[u8], sample: bool) {
        let now = self.deliveries.now_ns();
        let Some(seq) = parse_seq(b).filter(|&s| s > 0 && s < FAN_SEQ_CAP) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.node_delivered[node].fetch_add(1, Ordering::Relaxed);
        let k = node * FAN_SEQ_CAP + seq;
        let nc = self.node_counts[k].fetch_add(1, Ordering::AcqRel) + 1;
        if nc == self.node_expected[k].load(Ordering::Acquire) {
            self.node_last_ns[k].store(now, Ordering::Release);
        }
        self.deliveries.record(seq, now, sample);
    }

    /// When the last member on `node` got `seq`, ns.
    fn node_last_ns(&self, node: usize, seq: usize) -> u64 {
        self.node_last_ns[node * FAN_SEQ_CAP + seq].load(Ordering::Acquire)
    }
}

async fn fan_member(mut ws: Ws, node: usize, fan: Arc<Fan>, sample: bool) {
    let why = loop {
        match ws.next_data().await {
            Ok(b) => fan.deliver(node, &b, sample),
            Err(end) => break end.to_string(),
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
    headers: Vec<String>,
    size: usize,
}

impl GroupPublisher {
    fn new(a: &FanoutArgs) -> Result<Self> {
        let (client, prefix) = new_client(&a.publish_url)?;
        Ok(Self {
            client,
            path: format!(
                "{prefix}/v1/groups/{}/messages",
                http1::percent_encode(&a.group)
            ),
            headers: vec!["Content-Type: text/plain; charset=utf-8".to_string()],
            size: a.size,
        })
    }
}

impl Publish for GroupPublisher {
    async fn publish(&mut self, seq: usize) -> Result<Published> {
        let body = payload(seq, self.size);
        fanout::post_group_message(&mut self.client, &self.path, &self.headers, &body).await
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
    let cpu = Cpu::parse(&a.pids, "xnode")?;
    let eps: Vec<Arc<Endpoint>> = urls.iter().map(|u| endpoint(u)).collect::<Result<_>>()?;
    let nodes = eps.len();
    let fan = Arc::new(Fan {
        deliveries: Deliveries::new(FAN_SEQ_CAP, WAIT_POLL),
        nodes,
        alive: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
        lost: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
        node_counts: atomics32(FAN_SEQ_CAP * nodes),
        node_expected: atomics32(FAN_SEQ_CAP * nodes),
        node_last_ns: atomics64(FAN_SEQ_CAP * nodes),
        node_delivered: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        unparsed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let started = Instant::now();
    let mark = cpu.mark();
    let (socks, failed, err) = open_and_join(&eps, a.per_node, &a.group, a.concurrency).await;
    let setup = cpu.since(&mark);
    let mut joined_per_node = vec![0usize; nodes];
    for (i, (k, ws)) in socks.into_iter().enumerate() {
        joined_per_node[k] += 1;
        fan.alive[k].fetch_add(1, Ordering::AcqRel);
        tokio::spawn(fan_member(ws, k, fan.clone(), i % 50 == 0));
    }
    let joined: usize = joined_per_node.iter().sum();
    eprintln!(
        "fanout: {joined}/{total} members joined {} ({:?} per node) in {:.1}s; {failed} failed",
        a.group,
        joined_per_node,
        started.elapsed().as_secs_f64()
    );
    emit(json!({
        "kind": "fanout-ready",
        "requested": total,
        "joined": joined,
        "joined_per_node": per_node(&names, &joined_per_node),
        "failed": failed,
        "first_error": err,
        "setup_s": round1(started.elapsed().as_secs_f64()),
        "setup_cpu": setup,
    }));
    if joined == 0 {
        bail!("no member joined");
    }
    // Let the work the joins left behind (registry writes) end before measuring.
    let mark = cpu.mark();
    let settle_s = cpu.settle(Duration::from_secs(20)).await;
    let settle = json!({"kind": "settle", "settle_s": settle_s, "cpu": cpu.since(&mark)});
    eprintln!("fanout: nodes quiet {settle_s}s after the joins");
    emit(settle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Single shots.
    let mut publisher = GroupPublisher::new(&a)?;
    let mark = cpu.mark();
    let shots = fanout::shots(&*fan, &mut publisher, a.shots, Duration::from_secs(15)).await?;
    let members = fan.members();
    let median1 = |v: &[f64]| median(v).map(round1);
    let summary = shots.summary(ms, median1);
    let node_medians: Vec<Option<f64>> = (0..nodes)
        .map(|k| {
            let last: Vec<f64> = (shots.shots.iter())
                .filter(|s| s.last_ns().is_some())
                .map(|s| ms(fan.node_last_ns(k, s.seq).saturating_sub(s.t0)))
                .collect();
            median1(&last)
        })
        .collect();
    let mut shot_line = summary.json(members);
    shot_line["kind"] = json!("shots");
    shot_line["members"] = json!(members);
    shot_line["size"] = json!(a.size);
    shot_line["last_delivery_ms_median_per_node"] = per_node(&names, &node_medians);
    shot_line["load_at_end"] = json!(loadavg());
    shot_line["cpu"] = cpu.since(&mark);
    eprintln!(
        "fanout shots: last delivery {:?} ms (median {:?}; per node {}), losses {}",
        shot_line["last_delivery_ms"],
        summary.last_median,
        shot_line["last_delivery_ms_median_per_node"],
        summary.losses
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
                   "expected": fan.members(), "pages": pages.len(), "page_ms": pages,
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

async fn sustained(fan: &Arc<Fan>, a: &FanoutArgs, cpu: &Cpu, names: &[String]) -> Result<Value> {
    let lost0: Vec<usize> = fan.lost.iter().map(|l| l.load(Ordering::Acquire)).collect();
    let mark = cpu.mark();
    let load = loadavg();
    let publishers = (0..a.inflight)
        .map(|_| GroupPublisher::new(a))
        .collect::<Result<Vec<_>>>()?;
    let opts = SustainedOpts {
        secs: a.secs,
        duration: secs(a.secs),
        window: a.window,
        window_grace: DRAIN_MAX,
        drain: DRAIN_MAX,
        size: a.size,
    };
    // Deliveries per node and second while publishing.
    let mut node_timeline: Vec<Vec<u64>> = vec![Vec::new(); fan.nodes];
    let mut node_prev: Vec<u64> = (fan.node_delivered.iter())
        .map(|d| d.load(Ordering::Relaxed))
        .collect();
    let run = fanout::sustained(fan, publishers, &opts, || {
        for k in 0..fan.nodes {
            let d = fan.node_delivered[k].load(Ordering::Relaxed);
            node_timeline[k].push(d - node_prev[k]);
            node_prev[k] = d;
        }
    })
    .await;
    let mut node_losses = vec![0u64; fan.nodes];
    let mut node_deliveries = vec![0u64; fan.nodes];
    let mut partial = vec![0u64; fan.nodes];
    for seq in run.seqs.clone() {
        if fan.deliveries.expected(seq) == 0 {
            // Not published (the call failed), yet perhaps delivered somewhere: a 503
            // "done on this node only" reaches the publishing node's members alone.
            for (k, p) in partial.iter_mut().enumerate() {
                *p += u64::from(fan.node_counts[k * FAN_SEQ_CAP + seq].load(Ordering::Acquire));
            }
            continue;
        }
        for k in 0..fan.nodes {
            let i = k * FAN_SEQ_CAP + seq;
            let e = u64::from(fan.node_expected[i].load(Ordering::Acquire));
            let c = u64::from(fan.node_counts[i].load(Ordering::Acquire));
            node_losses[k] += e.saturating_sub(c);
            node_deliveries[k] += c.min(e);
        }
    }
    let members_lost: Vec<u64> = fan
        .lost
        .iter()
        .zip(&lost0)
        .map(|(l, &l0)| (l.load(Ordering::Acquire) - l0) as u64)
        .collect();
    let mut v = run.json();
    v["load_at_start"] = json!(load);
    v["deliveries_per_node"] = per_node(names, &node_deliveries);
    v["losses_per_node"] = per_node(names, &node_losses);
    v["timeline_per_s_per_node"] = per_node(names, &node_timeline);
    // Deliveries of messages whose publish call failed, per node.
    v["failed_publish_deliveries_per_node"] = per_node(names, &partial);
    v["members_lost"] = json!(members_lost.iter().sum::<u64>());
    v["members_lost_per_node"] = per_node(names, &members_lost);
    v["unparsed_total"] = json!(fan.unparsed.load(Ordering::Relaxed));
    v["first_error"] = json!(fan.first_error.lock().clone());
    v["cpu"] = cpu.since(&mark);
    Ok(v)
}

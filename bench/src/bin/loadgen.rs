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
//! Every subcommand can send extra request headers (`--header 'Origin: ...'`, repeatable)
//! and offer permessage-deflate (`--deflate`, RFC 7692, with the codec of
//! `switchboard-ws`) and the `switchboard.v1` subprotocol (`--switchboard-v1`,
//! docs/protocol.md: the hello is read before a connection counts as open; `echo` then
//! sends `m<n>:` messages and acks the server's every 32). `echo` counts the bytes on the
//! wire both ways, so compressed and plain runs can be compared by bandwidth.
//!
//! Loopback targets only; every loop is bounded in time and count.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use switchboard_bench::fanout::{self, Audience, Deliveries, Publish, Published, SustainedOpts};
use switchboard_bench::stats::{max_ms, median, micros, new_hist, round1, round2};
use switchboard_bench::ws_client::{
    self, ClientOptions, End, Endpoint, Opened, RequestHeader, Ws, WsUrl,
};
use switchboard_bench::{contains, http1, jsonl::emit, parse_decimal};
use switchboard_ws::{close_code, Limits, Message};
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
/// Free space made in a connection's read buffer before each read, bytes.
const READ_RESERVE: usize = 4096;

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
    /// `Name: value`, a request header sent in every handshake (e.g. `Origin: https://a.b`,
    /// `Authorization: Bearer TOKEN`); repeatable. Refused: no colon, a control character
    /// (CR, LF, ...), or a header the client writes itself (Host, Upgrade, Sec-WebSocket-*).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<RequestHeader>,
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
    let about = "WebSocket load generator (loopback targets only)";
    switchboard_bench::main(about, |cmd, nofile| async move {
        match run(cmd, nofile).await {
            Ok(v) => {
                println!("{v}");
                0
            }
            Err(e) => {
                eprintln!("loadgen: error: {e:#}");
                1
            }
        }
    })
}

async fn run(cmd: Cmd, nofile: u64) -> Result<Value> {
    match cmd {
        Cmd::Idle(a) => idle(a, nofile).await,
        Cmd::Echo(a) => echo(a, nofile).await,
        Cmd::ConnectRate(a) => connect_rate(a).await,
        Cmd::Fanout(a) => fanout(a, nofile).await,
    }
}

// ---------------------------------------------------------------------------------------
// Target and connection

/// The server of `--url`: a loopback address (IPv4: connections spread over
/// 127.0.0.1..=127.0.0.K), and what the connections offer.
fn endpoint(t: &Target) -> Result<Arc<Endpoint>> {
    let url = WsUrl::split(&t.url)?;
    let port: u16 = url
        .port
        .unwrap_or("80")
        .parse()
        .with_context(|| format!("bad port in {}", t.url))?;
    let ip = url
        .ip()
        .with_context(|| format!("host must be a loopback IP or localhost: {}", url.host))?;
    if !ip.is_loopback() {
        bail!("refusing non-loopback target {ip}: this tool only loads this machine");
    }
    let sources = match ip {
        IpAddr::V4(_) => Endpoint::loopback_sources(t.sources),
        IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
    };
    let options = ClientOptions {
        limits: CLIENT_LIMITS,
        read_reserve: READ_RESERVE,
        close_timeout: CLOSE_TIMEOUT,
        deflate: t.deflate,
        v1: t.switchboard_v1,
    };
    Ok(Arc::new(
        Endpoint::new(
            SocketAddr::new(ip, port),
            url.authority,
            url.path,
            sources,
            options,
        )
        .with_headers(&t.headers),
    ))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, MAX_SECS))
}

/// Opens `n` connections with at most `concurrency` handshakes in flight, handing each to
/// `on_open`. Stops early when failures pile up.
async fn open_many<F>(ep: &Arc<Endpoint>, n: usize, concurrency: usize, on_open: F) -> Opened
where
    F: Fn(usize, Ws) + Send + Sync + 'static,
{
    let ep = ep.clone();
    let connect = move |_| {
        let ep = ep.clone();
        async move { ep.connect_timeout(HANDSHAKE_TIMEOUT).await }
    };
    ws_client::open_many(n, concurrency, n / 20 + 50, connect, on_open).await
}

// ---------------------------------------------------------------------------------------
// idle

async fn idle(a: IdleArgs, nofile: u64) -> Result<Value> {
    let ep = endpoint(&a.target)?;
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
        let step = {
            let (holders, dropped, rx) = (holders.clone(), dropped.clone(), rx.clone());
            open_many(&ep, target - opened, a.concurrency, move |_, ws| {
                let h = tokio::spawn(hold(ws, rx.clone(), dropped.clone()));
                holders.lock().push(h);
            })
            .await
        };
        let o = step.opened;
        opened += o;
        failed += step.failed;
        if err.is_none() {
            err = step.first_error;
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
        steps.push(json!({"requested": target, "opened": opened, "connect_s": round2(connect_s)}));
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
        "connect_s": round2(connect_s),
        "held_s": round1(held_s),
        "dropped_during_hold": dropped_during_hold,
        "closed_cleanly": clean,
        "close_s": round2(close_s),
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
    let ep = endpoint(&a.target)?;
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
    let Opened {
        opened,
        failed,
        first_error,
    } = {
        let conns = conns.clone();
        open_many(&ep, a.connections, 50, move |_, ws| conns.lock().push(ws)).await
    };
    if opened < a.connections {
        bail!(
            "only {opened}/{} connections opened ({failed} failed): {}",
            a.connections,
            first_error.unwrap_or_default()
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
    let ep = endpoint(&a.target)?;
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
                match ep.connect_timeout(HANDSHAKE_TIMEOUT).await {
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
/// How often a wait for deliveries looks again although no delivery woke it.
const WAIT_POLL: Duration = Duration::from_millis(250);

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
    deliveries: Deliveries,
    /// Counted members joined and still connected.
    alive: AtomicUsize,
    joined: AtomicUsize,
    join_failed: AtomicUsize,
    /// Counted members whose connection ended after they joined.
    lost_members: AtomicUsize,
    /// Deliveries whose sequence number was not above the previous one the member got
    /// from the same publisher.
    out_of_order: AtomicU64,
    /// Data messages without a sequence number (other than Pusher pings).
    unparsed: AtomicU64,
    first_error: parking_lot::Mutex<Option<String>>,
}

impl Audience for Fan {
    fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    fn members(&self) -> usize {
        self.alive.load(Ordering::Acquire)
    }
}

impl Fan {
    fn error(&self, e: String) {
        self.first_error.lock().get_or_insert(e);
    }

    /// One delivery of `seq` from publisher `publisher` to a counted member; `last`: the
    /// member's last sequence number from each publisher.
    fn deliver(&self, seq: u64, publisher: usize, last: &mut [u64; MAX_PUBLISHERS], sample: bool) {
        let now = self.deliveries.now_ns();
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
        self.deliveries.record(i, now, sample);
    }
}

/// The sequence number and publisher of a delivered message: `s=` 10 digits `;p=` 2
/// digits `;`.
fn parse_seq(b: &[u8]) -> Option<(u64, usize)> {
    let i = b.windows(2).position(|w| w == b"s=")?;
    let seq = parse_decimal(b.get(i + 2..i + 12)?)?;
    if b.get(i + 12..i + 15)? != b";p=" {
        return None;
    }
    let publisher = parse_decimal(b.get(i + 15..i + 17)?)?;
    Some((seq, publisher as usize))
}

/// Joins the group / subscribes to the channel and waits for the confirmation.
async fn fan_join(ws: &mut Ws, system: System, group: &str) -> Result<()> {
    match system {
        System::Switchboard => {
            let msg = json!({"action": "join", "group": group}).to_string();
            ws.send(true, msg.as_bytes()).await?;
            let (_, b) = ws.next_message().await?;
            if !contains(&b, b"\"joined\"") {
                bail!("join answered {}", String::from_utf8_lossy(&b));
            }
        }
        System::Sockudo => {
            loop {
                let (_, b) = ws.next_message().await?;
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
                let (_, b) = ws.next_message().await?;
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
        match ws.next_data().await {
            Ok(b) => match parse_seq(&b) {
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
            Err(End::Closed(c)) => {
                break format!("member closed by the server: {:?}", End::close_text(c))
            }
            Err(End::Eof) => break "member connection: EOF".into(),
            Err(End::Error(e)) => break format!("member connection: {e:#}"),
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
    client: http1::Client,
    path: String,
    headers: Vec<String>,
    group: String,
    event: String,
    app_key: String,
    app_secret: String,
    size: usize,
}

impl Publisher {
    fn new(a: &FanoutArgs, id: usize) -> Result<Self> {
        let (addr, host, prefix) = http1::parse_base(&a.publish_url)?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback publish target {addr}");
        }
        let (path, headers) = match a.system {
            System::Switchboard => (
                format!(
                    "{prefix}/v1/groups/{}/messages",
                    http1::percent_encode(&a.group)
                ),
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
            client: http1::Client::new(addr, host, Duration::from_secs(30)),
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
    fn payload(&self, seq: usize) -> String {
        let mut s = format!("s={seq:010};p={:02};", self.id);
        while s.len() < self.size {
            s.push('x');
        }
        s
    }
}

impl Publish for Publisher {
    async fn publish(&mut self, seq: usize) -> Result<Published> {
        let data = self.payload(seq);
        match self.system {
            System::Switchboard => {
                fanout::post_group_message(
                    &mut self.client,
                    &self.path,
                    &self.headers,
                    data.as_bytes(),
                )
                .await
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
                fanout::check_published(&r)?;
                Ok(Published {
                    recipients: 0,
                    dropped: 0,
                })
            }
        }
    }
}

/// `ns` in ms, two decimals.
fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

async fn fanout(a: FanoutArgs, nofile: u64) -> Result<Value> {
    let ep = endpoint(&a.target)?;
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
        deliveries: Deliveries::new(SEQ_CAP, WAIT_POLL),
        alive: AtomicUsize::new(0),
        joined: AtomicUsize::new(0),
        join_failed: AtomicUsize::new(0),
        lost_members: AtomicUsize::new(0),
        out_of_order: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        first_error: parking_lot::Mutex::new(None),
    });
    // Publishing works before anyone joins (a clear error beats a long wait later).
    let mut publisher = Publisher::new(&a, 0)?;

    let started = Instant::now();
    let sample_every = a.sample_every.max(1);
    let Opened {
        opened,
        failed,
        first_error: err,
    } = {
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
        "delivered_total": fan.deliveries.delivered(),
    }))
}

async fn cmd_shots(
    fan: &Fan,
    a: &FanoutArgs,
    publisher: &mut Publisher,
    k: usize,
) -> Result<Value> {
    let members = fan.members();
    let shots = fanout::shots(fan, publisher, k, secs(a.drain_timeout)).await?;
    if !shots.warmup_complete {
        eprintln!("fanout: warm-up shot incomplete");
    }
    let summary = shots.summary(ms, median);
    let mut v = summary.json(members);
    v["cmd"] = json!("shots");
    v["members_at_start"] = json!(members);
    v["size"] = json!(a.size);
    v["dropped_reported"] = json!(summary.dropped);
    Ok(v)
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
                break format!("closed by the server: {:?}", End::close_text(c))
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
    let lost0 = fan.lost_members.load(Ordering::Acquire);
    let ooo0 = fan.out_of_order.load(Ordering::Relaxed);
    let publishers = (0..a.inflight)
        .map(|id| Publisher::new(a, id))
        .collect::<Result<Vec<_>>>()?;
    let drain = secs(a.drain_timeout);
    let opts = SustainedOpts {
        secs: secs_,
        duration: secs(secs_),
        window: a.window,
        window_grace: drain,
        drain,
        size: a.size,
    };
    let run = fanout::sustained(fan, publishers, &opts, || {}).await;
    let stalled_info = match stalled_ws {
        Some(ws) => probe_stalled(ws).await,
        None => Value::Null,
    };
    let mut v = run.json();
    v["cmd"] = json!(if stalled {
        "sustained-stalled"
    } else {
        "sustained"
    });
    v["last_member_ms_max"] = max_ms(run.last_member());
    v["members_lost"] = json!(fan.lost_members.load(Ordering::Acquire) - lost0);
    v["out_of_order"] = json!(fan.out_of_order.load(Ordering::Relaxed) - ooo0);
    v["stalled_member"] = stalled_info;
    Ok(v)
}

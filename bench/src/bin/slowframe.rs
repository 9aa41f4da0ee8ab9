//! `slowframe`: holds N WebSocket connections open against a loopback server, either idle
//! or each in the middle of a frame: the frame header announces `--announce` bytes and
//! only `--send` of them follow, trickled in 512-byte writes. `bench/slowframe.sh` runs
//! it twice against fresh gateways and compares the server's RSS per connection, which
//! shows whether a half-sent frame costs the server what it announced or what it got.
//!
//! Prints `READY <open>` on stderr once every connection is open (and, for `slow`, has
//! sent its bytes), holds until stdin reaches EOF or `--max-hold` seconds pass, checks
//! how many the server closed meanwhile, and prints one JSON line on stdout.
//!
//! Loopback targets only; the hold and the connection count are bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use clap::{Args, Subcommand};
use parking_lot::Mutex;
use serde_json::{json, Value};
use switchboard_bench::ws_client::{self, WsUrl};
use switchboard_ws::{handshake, Encoder, OpCode, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// This process's share of the machine's 20,000 open files per process.
const MAX_CONNECTIONS: usize = 15_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per write while trickling a frame's payload, and the pause between writes.
const TRICKLE_WRITE: usize = 512;
const TRICKLE_PAUSE: Duration = Duration::from_millis(20);

#[derive(Subcommand)]
enum Cmd {
    /// Open N connections and send nothing.
    Idle(Hold),
    /// Open N connections; each announces a frame and sends only part of it.
    Slow(Slow),
}

#[derive(Args)]
struct Hold {
    /// ws://HOST:PORT/PATH; HOST must be a loopback IPv4 address.
    #[arg(long)]
    url: String,
    /// Connections to open (at most 15,000).
    #[arg(long)]
    connections: usize,
    /// Source addresses 127.0.0.1..=127.0.0.K the connections are spread over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Upper bound on the hold, seconds (stdin EOF ends it earlier).
    #[arg(long, default_value_t = 300.0)]
    max_hold: f64,
}

#[derive(Args)]
struct Slow {
    #[command(flatten)]
    hold: Hold,
    /// Payload length the frame header announces, bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    announce: usize,
    /// Payload bytes actually sent (less than --announce), bytes.
    #[arg(long, default_value_t = 3584)]
    send: usize,
}

fn main() {
    let about = "Idle or half-sent-frame WebSocket connections held open (loopback only)";
    switchboard_bench::main(about, |cmd, _nofile| async move {
        match run(cmd).await {
            Ok(v) => {
                println!("{v}");
                0
            }
            Err(e) => {
                eprintln!("slowframe: error: {e:#}");
                1
            }
        }
    })
}

async fn run(cmd: Cmd) -> Result<Value> {
    let (hold, frame) = match cmd {
        Cmd::Idle(h) => (h, None),
        Cmd::Slow(s) => {
            if s.send >= s.announce {
                bail!("--send must be below --announce");
            }
            (s.hold, Some((s.announce, s.send)))
        }
    };
    if hold.connections > MAX_CONNECTIONS {
        bail!("at most {MAX_CONNECTIONS} connections");
    }
    let url = WsUrl::split(&hold.url)?;
    let ip: Ipv4Addr = match url.ip() {
        Ok(IpAddr::V4(ip)) if ip.is_loopback() => ip,
        _ => bail!("the target must be a loopback IPv4 address: {}", hold.url),
    };
    let port: u16 = url.port.unwrap_or("80").parse().context("bad port")?;
    let target = Arc::new(Target {
        addr: SocketAddr::new(IpAddr::V4(ip), port),
        request_head: format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
            url.path, url.authority
        ),
        sources: hold.sources.clamp(1, 254),
        frame,
    });
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let started = tokio::time::Instant::now();
    let opened = {
        let (target, conns) = (target.clone(), conns.clone());
        let open = move |i: usize| {
            let target = target.clone();
            async move {
                tokio::time::timeout(HANDSHAKE_TIMEOUT, target.open(i))
                    .await
                    .context("handshake timed out")?
            }
        };
        let keep = move |_, s| conns.lock().push(s);
        let n = hold.connections;
        ws_client::open_many(n, hold.concurrency, n / 20 + 50, open, keep).await
    };
    let open_s = started.elapsed().as_secs_f64();
    if let Some(e) = &opened.first_error {
        eprintln!("slowframe: {} failed; first error: {e}", opened.failed);
    }
    eprintln!(
        "slowframe: {} connections open in {open_s:.1}s",
        opened.opened
    );
    eprintln!("READY {}", opened.opened);
    // stdin from a plain thread (it may stay blocked there; the process exits anyway).
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for _ in std::io::stdin().lock().lines().map_while(Result::ok) {}
        let _ = eof_tx.send(());
    });
    let max_hold = Duration::from_secs_f64(hold.max_hold.clamp(0.0, 3600.0));
    let _ = tokio::time::timeout(max_hold, eof_rx).await;
    // Still open: the read would block (the server sent nothing and did not close).
    let conns = std::mem::take(&mut *conns.lock());
    let mut closed_by_server = 0;
    for s in &conns {
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed_by_server += 1,
        }
    }
    drop(conns);
    let (announce, send) = target.frame.unwrap_or((0, 0));
    Ok(json!({
        "mode": if target.frame.is_some() { "slow-frame" } else { "idle" },
        "requested": hold.connections,
        "opened": opened.opened,
        "failed": opened.failed,
        "open_s": (open_s * 10.0).round() / 10.0,
        "announced_bytes": announce,
        "sent_payload_bytes": send,
        "closed_by_server": closed_by_server,
    }))
}

struct Target {
    addr: SocketAddr,
    /// The handshake request up to the key.
    request_head: String,
    sources: u8,
    /// (announced, sent) payload bytes of the half-sent frame, for `slow`.
    frame: Option<(usize, usize)>,
}

impl Target {
    /// TCP connect from source 127.0.0.(1 + i % sources), the handshake up to the 101, and
    /// for `slow` the frame header and its first bytes.
    async fn open(&self, i: usize) -> Result<TcpStream> {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(self.sources)) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
        let mut s = socket.connect(self.addr).await?;
        s.set_nodelay(true)?;
        let key = handshake::client_key();
        let request = format!("{}{key}\r\n\r\n", self.request_head);
        s.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut b = [0u8; 512];
        loop {
            let n = s.read(&mut b).await?;
            if n == 0 {
                bail!("closed during the handshake");
            }
            head.extend_from_slice(&b[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            if head.len() > 8192 {
                bail!("handshake answer too long");
            }
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            bail!(
                "handshake answered {:?}",
                String::from_utf8_lossy(&head[..head.len().min(40)])
            );
        }
        if let Some((announce, send)) = self.frame {
            // The frame as a client encoder writes it, cut after `send` payload bytes.
            let mut frame = BytesMut::new();
            Encoder::new(Role::Client, None).frame(
                OpCode::Binary,
                true,
                false,
                &vec![b'x'; announce],
                &mut frame,
            );
            let header_len = frame.len() - announce;
            for piece in frame[..header_len + send].chunks(TRICKLE_WRITE) {
                s.write_all(piece).await?;
                tokio::time::sleep(TRICKLE_PAUSE).await;
            }
        }
        Ok(s)
    }
}

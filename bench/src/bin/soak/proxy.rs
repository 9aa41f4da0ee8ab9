//! The TCP proxy the resumable clients connect through: a load balancer without
//! affinity (each new connection goes to the next node, and to the one after it when a
//! node does not accept) that cuts every connection after a random lifetime, as a
//! flaky network does: both sockets end mid-stream without a close frame, half of them
//! with a reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};

use crate::{Rng, Stop};

/// How long the proxy waits for a node to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the proxy did.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub cuts: AtomicU64,
    /// Connections to a node that failed (the next node was tried).
    pub upstream_failures: AtomicU64,
    /// Clients turned away: no node accepted.
    pub refused: AtomicU64,
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    cutting: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1:<free port> and forwards to `upstreams`; every connection is
    /// cut after a lifetime drawn uniformly from `cut_after` while cutting is on. Stops
    /// accepting at `stop`.
    pub async fn start(
        upstreams: Vec<SocketAddr>,
        cut_after: (Duration, Duration),
        mut stop: Stop,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let cutting = Arc::new(AtomicBool::new(true));
        let (c, on) = (counters.clone(), cutting.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new(0x9e37);
            let mut next = 0usize;
            loop {
                let down = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    },
                    _ = stop.wait() => return,
                };
                c.accepted.fetch_add(1, Ordering::Relaxed);
                let first = next;
                next = next.wrapping_add(1);
                let life = rng.between(cut_after.0, cut_after.1);
                let reset = rng.chance(0.5);
                let (c, on, upstreams) = (c.clone(), on.clone(), upstreams.clone());
                tokio::spawn(async move {
                    let Some(up) = connect_any(&upstreams, first, &c).await else {
                        c.refused.fetch_add(1, Ordering::Relaxed);
                        cut(down, true);
                        return;
                    };
                    pipe(down, up, life, reset, &on, &c).await;
                });
            }
        });
        Ok(Self {
            addr,
            counters,
            cutting,
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Stops cutting: connections open now and later live until an end closes them.
    pub fn stop_cutting(&self) {
        self.cutting.store(false, Ordering::Relaxed);
    }
}

/// Connects to `upstreams[first]`, or the next that accepts.
async fn connect_any(upstreams: &[SocketAddr], first: usize, c: &Counters) -> Option<TcpStream> {
    for k in 0..upstreams.len() {
        let addr = upstreams[(first + k) % upstreams.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Some(s),
            _ => {
                c.upstream_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    None
}

/// Copies both ways until either side ends, or until `life` is over while cutting is
/// on: then both sockets are dropped (with a reset when `reset`).
async fn pipe(
    mut down: TcpStream,
    mut up: TcpStream,
    life: Duration,
    reset: bool,
    cutting: &AtomicBool,
    c: &Counters,
) {
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + life;
    {
        let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
        tokio::pin!(copy);
        loop {
            tokio::select! {
                _ = &mut copy => return,
                _ = tokio::time::sleep_until(deadline), if cutting.load(Ordering::Relaxed) => break,
                // Cutting was off at the deadline: look again now and then (it never
                // comes back on, so this only waits for the copy).
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    c.cuts.fetch_add(1, Ordering::Relaxed);
    cut(down, reset);
    cut(up, reset);
}

/// Drops a socket, with a reset (RST) rather than a FIN when `reset`.
fn cut(s: TcpStream, reset: bool) {
    if reset {
        #[allow(deprecated)] // a reset is the point here
        let _ = s.set_linger(Some(Duration::ZERO));
    }
    drop(s);
}

//! A TCP proxy between the client and a server that misbehaves as a network does: it
//! cuts every connection at random moments (no close frame, the sockets just end),
//! stalls (forwards nothing while the sockets stay open), refuses new connections, or
//! forges the resume token in handshakes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Flags {
    refusing: AtomicBool,
    forging: AtomicBool,
    /// 1 + the upstream every new connection goes to; 0: each to the next in turn.
    pinned: AtomicUsize,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    /// Cuts made so far.
    pub cuts: Arc<AtomicU32>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU32>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    cutter: Mutex<Option<JoinHandle<()>>>,
    flags: Arc<Flags>,
    stalled: watch::Sender<bool>,
}

impl ChaosProxy {
    /// Forwards 127.0.0.1:<random> to `upstream`. Nothing is cut until told.
    pub async fn start(upstream: SocketAddr) -> Arc<Self> {
        Self::start_many(vec![upstream]).await
    }

    /// Forwards 127.0.0.1:<random> to each of `upstreams` in turn, one per accepted
    /// connection (a load balancer without affinity: a reconnect lands on the next one).
    pub async fn start_many(upstreams: Vec<SocketAddr>) -> Arc<Self> {
        assert!(!upstreams.is_empty(), "a proxy needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let flags: Arc<Flags> = Arc::default();
        let accepted: Arc<AtomicU32> = Arc::default();
        let (stalled, _) = watch::channel(false);
        let (p, f, a, st) = (
            pipes.clone(),
            flags.clone(),
            accepted.clone(),
            stalled.clone(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let n = a.fetch_add(1, Ordering::SeqCst) as usize;
                let upstream = match f.pinned.load(Ordering::SeqCst) {
                    0 => upstreams[n % upstreams.len()],
                    p => upstreams[(p - 1) % upstreams.len()],
                };
                if f.refusing.load(Ordering::SeqCst) {
                    reset(down);
                    continue;
                }
                let forge = f.forging.load(Ordering::SeqCst);
                let stall = st.subscribe();
                let pipe = tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::select! {
                        _ = pipe(dr, uw, stall.clone(), forge) => {}
                        _ = pipe(ur, dw, stall, false) => {}
                    }
                });
                let mut pipes = p.lock();
                pipes.retain(|h| !h.is_finished());
                pipes.push(pipe);
            }
        });
        Arc::new(Self {
            addr,
            cuts: Arc::default(),
            accepted,
            pipes,
            accept,
            cutter: Mutex::new(None),
            flags,
            stalled,
        })
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Cuts every open connection now: both sockets are dropped mid-stream.
    pub fn cut_all(&self) {
        let pipes: Vec<_> = self.pipes.lock().drain(..).collect();
        for p in pipes {
            p.abort();
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// While on, new connections are reset at once (the server is unreachable).
    pub fn refuse(&self, on: bool) {
        self.flags.refusing.store(on, Ordering::SeqCst);
    }

    /// While on, nothing is forwarded; the sockets stay open (a silent dead path).
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Sends every new connection to upstream `i` (`None`: each to the next in turn).
    pub fn pin(&self, upstream: Option<usize>) {
        self.flags
            .pinned
            .store(upstream.map_or(0, |i| i + 1), Ordering::SeqCst);
    }

    /// While on, new connections get the `sb_session` value of their handshake replaced
    /// by a forged one of the same length.
    pub fn forge_tokens(&self, on: bool) {
        self.flags.forging.store(on, Ordering::SeqCst);
    }

    /// Cuts everything every `min_ms..=max_ms` (uniformly random), `max_cuts` times,
    /// then stops by itself.
    pub fn start_cutting(self: &Arc<Self>, min_ms: u64, max_ms: u64, max_cuts: u32) {
        let this = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            for _ in 0..max_cuts {
                let ms = min_ms + rand::random::<u64>() % (max_ms - min_ms + 1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let Some(proxy) = this.upgrade() else { return };
                proxy.cut_all();
            }
        });
        *self.cutter.lock() = Some(handle);
    }

    /// Stops cutting (idempotent).
    pub fn stop_cutting(&self) {
        let cutter = self.cutter.lock().take();
        if let Some(h) = cutter {
            h.abort();
        }
    }
}

/// Copies one direction, holding data while stalled; with `forge`, rewrites the
/// `sb_session` value in the first request head.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    mut forge: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *stalled.borrow() {
            // Swallow what arrives while stalled, as a black hole would, and wait.
            let _ = stalled.wait_for(|s| !*s).await;
            continue;
        }
        let mut chunk = &buf[..n];
        if forge {
            head.extend_from_slice(chunk);
            if !head.windows(4).any(|w| w == b"\r\n\r\n") {
                continue;
            }
            forge = false;
            forge_session(&mut head);
            chunk = &head;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
        head.clear();
    }
}

fn forge_session(head: &mut [u8]) {
    let needle = b"sb_session=";
    if let Some(i) = head.windows(needle.len()).position(|w| w == needle) {
        for b in head[i + needle.len()..]
            .iter_mut()
            .take_while(|b| !matches!(b, b'&' | b' '))
        {
            *b = if *b == b'f' { b'e' } else { b'f' };
        }
    }
}

fn reset(s: TcpStream) {
    #[allow(deprecated)] // a reset (RST) is the point here
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop_cutting();
        self.accept.abort();
        for p in self.pipes.lock().drain(..) {
            p.abort();
        }
    }
}

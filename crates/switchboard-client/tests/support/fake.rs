//! A small in-test server implementing docs/protocol.md's `switchboard.v1`, written
//! from the page alone: sessions with tokens, a resume window, replay of unacknowledged
//! server messages above `sb_last`, `lastClientSeq` in the hello, de-duplication of
//! resent client messages, 409 for a token attached elsewhere, `h` answered at once.
//!
//! Each processed client message is recorded (once per sequence number) and, with
//! `echo`, sent back as a server message. `push` sends server-initiated messages.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use switchboard_ws::handshake::accept_key;
use switchboard_ws::{Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Select `switchboard.v1` when offered.
    pub v1: bool,
    pub window: Duration,
    /// Send every processed client message back.
    pub echo: bool,
    /// Only every this many client messages get an ack (plus the hello's count).
    pub ack_every: u64,
    /// Server message numbers never written on a connection's first socket (lost on the
    /// way, as a buggy server or middlebox would); they stay in the replay buffer.
    pub lose_on_first_socket: Vec<u64>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            v1: true,
            window: Duration::from_secs(30),
            echo: true,
            ack_every: 1,
            lose_on_first_socket: Vec::new(),
        }
    }
}

struct Session {
    id: String,
    next_seq: u64,
    replay: VecDeque<(u64, bool, Bytes)>,
    last_client_seq: u64,
    attached: bool,
    detached_at: Option<Instant>,
    wake: Arc<Notify>,
}

#[derive(Default)]
pub struct Stats {
    pub fresh: u32,
    pub resumed: u32,
    pub conflicts: u32,
    /// The request line and headers of every handshake.
    pub requests: Vec<String>,
}

struct State {
    sessions: HashMap<String, Session>,
    /// Connection id → token.
    by_id: HashMap<String, String>,
    next_id: u64,
    /// (connection id, payload) of every processed client message, in order.
    processed: Vec<(String, Bytes)>,
    stats: Stats,
}

pub struct Fake {
    pub addr: SocketAddr,
    cfg: FakeConfig,
    state: Arc<Mutex<State>>,
    /// Bumped to drop every socket without a close frame.
    kill: watch::Sender<u64>,
    /// Set to close every socket cleanly with this code.
    close: watch::Sender<Option<u16>>,
    accept: JoinHandle<()>,
}

impl Fake {
    pub async fn start(cfg: FakeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            sessions: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            processed: Vec::new(),
            stats: Stats::default(),
        }));
        let (kill, _) = watch::channel(0u64);
        let (close, _) = watch::channel(None);
        let (st, c, k, cl) = (state.clone(), cfg.clone(), kill.clone(), close.clone());
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (st, c, k, cl) = (st.clone(), c.clone(), k.subscribe(), cl.subscribe());
                tokio::spawn(async move {
                    let _ = serve(sock, st, c, k, cl).await;
                });
            }
        });
        Self {
            addr,
            cfg,
            state,
            kill,
            close,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends a server message to a connection (buffered while it is detached).
    pub fn push(&self, connection_id: &str, text: &str) -> bool {
        push(
            &mut self.state.lock(),
            connection_id,
            true,
            Bytes::from(text.to_owned()),
        )
    }

    /// Drops every socket without a close frame (sessions stay resumable).
    pub fn drop_sockets(&self) {
        self.kill.send_modify(|g| *g += 1);
    }

    /// Closes every socket cleanly with `code` (sessions end).
    pub fn close_all(&self, code: u16) {
        self.close.send_replace(Some(code));
    }

    /// Payloads of processed client messages (as text).
    pub fn processed(&self) -> Vec<String> {
        self.state
            .lock()
            .processed
            .iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    pub fn stats<R>(&self, f: impl FnOnce(&Stats) -> R) -> R {
        f(&self.state.lock().stats)
    }

    pub fn config(&self) -> &FakeConfig {
        &self.cfg
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_sockets();
    }
}

fn push(st: &mut State, connection_id: &str, text: bool, payload: Bytes) -> bool {
    let Some(token) = st.by_id.get(connection_id) else {
        return false;
    };
    let s = st.sessions.get_mut(token).expect("indexed session");
    let seq = s.next_seq;
    s.next_seq += 1;
    s.replay.push_back((seq, text, payload));
    s.wake.notify_one();
    true
}

fn query_param(target: &str, name: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn serve(
    mut sock: TcpStream,
    state: Arc<Mutex<State>>,
    cfg: FakeConfig,
    mut kill: watch::Receiver<u64>,
    mut close: watch::Receiver<Option<u16>>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = BytesMut::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if sock.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let _ = buf.split_to(head_end);
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let key = header("sec-websocket-key").unwrap_or_default();
    let protocols: Vec<String> = header("sec-websocket-protocol")
        .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default();
    let v1 = cfg.v1 && protocols.iter().any(|p| p == "switchboard.v1");

    // Session decision.
    let mut hello = None;
    let mut sent_upto = 0;
    let mut wake = Arc::new(Notify::new());
    let mut token = String::new();
    let conflict = {
        let mut st = state.lock();
        st.stats.requests.push(head.clone());
        if v1 {
            let offered = query_param(&target, "sb_session");
            let now = Instant::now();
            // Expired sessions are gone.
            let window = cfg.window;
            let expired: Vec<String> = st
                .sessions
                .iter()
                .filter(|(_, s)| s.detached_at.is_some_and(|t| now - t > window))
                .map(|(t, _)| t.clone())
                .collect();
            for t in expired {
                let s = st.sessions.remove(&t).unwrap();
                st.by_id.remove(&s.id);
            }
            let resumable = offered.filter(|t| st.sessions.contains_key(t));
            if let Some(t) = resumable {
                let s = st.sessions.get_mut(&t).unwrap();
                if s.attached {
                    st.stats.conflicts += 1;
                    true
                } else {
                    s.attached = true;
                    s.detached_at = None;
                    let last: u64 = query_param(&target, "sb_last")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    // sb_last acknowledges what the client has.
                    while s.replay.front().is_some_and(|(n, _, _)| *n <= last) {
                        s.replay.pop_front();
                    }
                    sent_upto = last;
                    wake = s.wake.clone();
                    hello = Some(format!(
                        r#"s{{"session":"{t}","connectionId":"{}","resumed":true,"lastClientSeq":{},"resumeWindowSecs":{}}}"#,
                        s.id,
                        s.last_client_seq,
                        window.as_secs()
                    ));
                    token = t;
                    st.stats.resumed += 1;
                    false
                }
            } else {
                let id = format!("conn{}", st.next_id);
                token = format!("tok{}x{:016x}", st.next_id, rand::random::<u64>());
                st.next_id += 1;
                st.sessions.insert(
                    token.clone(),
                    Session {
                        id: id.clone(),
                        next_seq: 1,
                        replay: VecDeque::new(),
                        last_client_seq: 0,
                        attached: true,
                        detached_at: None,
                        wake: wake.clone(),
                    },
                );
                st.by_id.insert(id.clone(), token.clone());
                hello = Some(format!(
                    r#"s{{"session":"{token}","connectionId":"{id}","resumed":false,"lastClientSeq":0,"resumeWindowSecs":{}}}"#,
                    window.as_secs()
                ));
                st.stats.fresh += 1;
                false
            }
        } else {
            st.stats.fresh += 1;
            false
        }
    };
    if conflict {
        sock.write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if v1 {
        resp.push_str("Sec-WebSocket-Protocol: switchboard.v1\r\n");
    }
    resp.push_str("\r\n");
    let mut out = BytesMut::from(resp.as_bytes());
    let mut enc = Encoder::new(Role::Server, None);
    let mut dec = Decoder::new(Role::Server, Limits::default(), None);
    if let Some(h) = &hello {
        enc.message(true, h.as_bytes(), &mut out);
    }
    let first_socket = hello
        .as_deref()
        .is_some_and(|h| h.contains(r#""resumed":false"#));
    let result = run(
        &mut sock,
        &mut buf,
        &mut out,
        &mut enc,
        &mut dec,
        &state,
        &cfg,
        v1,
        &token,
        &wake,
        &mut sent_upto,
        &mut kill,
        &mut close,
        first_socket,
    )
    .await;
    let mut st = state.lock();
    match result {
        // A clean close ends the session.
        Ok(true) => {
            if let Some(s) = st.sessions.remove(&token) {
                st.by_id.remove(&s.id);
            }
        }
        _ => {
            if let Some(s) = st.sessions.get_mut(&token) {
                s.attached = false;
                s.detached_at = Some(Instant::now());
            }
        }
    }
    Ok(())
}

/// Runs the socket. `Ok(true)`: closed cleanly; `Ok(false)` / `Err`: dropped.
#[allow(clippy::too_many_arguments)]
async fn run(
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    enc: &mut Encoder,
    dec: &mut Decoder,
    state: &Mutex<State>,
    cfg: &FakeConfig,
    v1: bool,
    token: &str,
    wake: &Notify,
    sent_upto: &mut u64,
    kill: &mut watch::Receiver<u64>,
    close: &mut watch::Receiver<Option<u16>>,
    first_socket: bool,
) -> std::io::Result<bool> {
    let mut acked_client = 0u64;
    let mut closing = false;
    let (mut rd, mut wr) = sock.split();
    loop {
        // Decode and process everything buffered.
        loop {
            let msg = match dec.decode(buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    enc.close(e.code, e.reason, out);
                    wr.write_all(out).await?;
                    return Ok(true);
                }
            };
            let msg_kind = match &msg {
                Message::Text(_) => Kind::Text,
                _ => Kind::Other,
            };
            match msg {
                Message::Close(c) => {
                    if !closing {
                        enc.close(c.map(|(c, _)| c).unwrap_or(1000), "", out);
                    }
                    wr.write_all(out).await?;
                    return Ok(true);
                }
                Message::Ping(p) => enc.ping_pong(true, &p, out),
                Message::Pong(_) => {}
                Message::Text(_) | Message::Binary(_) if closing => {}
                Message::Text(data) | Message::Binary(data) if !v1 => {
                    let text = matches!(msg_kind, Kind::Text);
                    let mut st = state.lock();
                    st.processed.push((String::new(), data.clone()));
                    drop(st);
                    if cfg.echo {
                        enc.message(text, &data, out);
                    }
                }
                Message::Text(data) => match data.first() {
                    Some(b'h') if data.len() == 1 => enc.message(true, b"h", out),
                    Some(b'a') => {
                        let n: u64 = std::str::from_utf8(&data[1..]).unwrap().parse().unwrap();
                        let mut st = state.lock();
                        if let Some(s) = st.sessions.get_mut(token) {
                            while s.replay.front().is_some_and(|(m, _, _)| *m <= n) {
                                s.replay.pop_front();
                            }
                        }
                    }
                    Some(b'm') => {
                        let colon = data.iter().position(|&b| b == b':').unwrap();
                        let n: u64 = std::str::from_utf8(&data[1..colon])
                            .unwrap()
                            .parse()
                            .unwrap();
                        client_message(state, cfg, token, n, true, data.slice(colon + 1..))?;
                    }
                    _ => panic!("fake: bad client frame {data:?}"),
                },
                Message::Binary(data) => {
                    assert_eq!(data[0], 1, "fake: bad binary client frame");
                    let n = u64::from_be_bytes(data[1..9].try_into().unwrap());
                    client_message(state, cfg, token, n, false, data.slice(9..))?;
                }
            }
        }
        // Acks of client messages, and server messages not yet written.
        if v1 && !closing {
            let st = state.lock();
            if let Some(s) = st.sessions.get(token) {
                if s.last_client_seq >= acked_client + cfg.ack_every {
                    acked_client = s.last_client_seq;
                    enc.message(true, format!("a{acked_client}").as_bytes(), out);
                }
                let upto = *sent_upto;
                for (n, text, p) in s.replay.iter().filter(|(n, _, _)| *n > upto) {
                    let mut frame = Vec::with_capacity(p.len() + 24);
                    if *text {
                        frame.extend_from_slice(format!("m{n}:").as_bytes());
                    } else {
                        frame.push(1);
                        frame.extend_from_slice(&n.to_be_bytes());
                    }
                    frame.extend_from_slice(p);
                    *sent_upto = *n;
                    if first_socket && cfg.lose_on_first_socket.contains(n) {
                        continue;
                    }
                    enc.message(*text, &frame, out);
                }
            }
        }
        tokio::select! {
            r = rd.read_buf(buf) => {
                if r? == 0 {
                    return Ok(false);
                }
            }
            r = wr.write_all_buf(out), if !out.is_empty() => r?,
            _ = wake.notified() => {}
            _ = kill.changed() => return Ok(false),
            _ = close.changed(), if !closing => {
                let code = close.borrow().unwrap_or(1000);
                enc.close(code, "bye", out);
                closing = true;
            }
        }
    }
}

enum Kind {
    Text,
    Other,
}

fn client_message(
    state: &Mutex<State>,
    cfg: &FakeConfig,
    token: &str,
    n: u64,
    text: bool,
    payload: Bytes,
) -> std::io::Result<()> {
    let mut st = state.lock();
    let st = &mut *st;
    let Some(s) = st.sessions.get_mut(token) else {
        return Ok(());
    };
    if n <= s.last_client_seq {
        return Ok(()); // a resend of one already processed
    }
    assert_eq!(
        n,
        s.last_client_seq + 1,
        "fake: the client skipped a number"
    );
    s.last_client_seq = n;
    let id = s.id.clone();
    st.processed.push((id.clone(), payload.clone()));
    if cfg.echo {
        push(st, &id, text, payload);
    }
    Ok(())
}

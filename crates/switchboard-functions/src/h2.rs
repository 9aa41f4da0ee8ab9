//! A small HTTP/2 client for `http` functions configured with `http_version = "2"`:
//! cleartext HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3), many invocations
//! multiplexed as streams over one connection.
//!
//! Why: on HTTP/1.1 every invocation costs the gateway one `send` and one `recv`, and the
//! function server as many; under load those system calls, not the gateway's own work,
//! are most of the cost. Here the requests of all invocations that became ready in the
//! same scheduler pass go out in one write, and one read brings back every answer that
//! has arrived.
//!
//! Shape: each connection has a reader task (parses frames, completes streams, wakes the
//! invocations) and a writer task (writes whatever frames have queued up, after letting
//! the other ready tasks add theirs). Invocations queue their `HEADERS` and `DATA` frames
//! under the connection's lock and wait for their stream to finish.
//!
//! What it speaks: flow control both ways (request bodies wait for window; the answer's
//! window is replenished as it is read), `CONTINUATION`, padding, `1xx` heads skipped,
//! trailers ignored, `SETTINGS`, `PING` answered, `RST_STREAM`, `GOAWAY`. A stream the
//! server refused (`REFUSED_STREAM`, or above a `GOAWAY`'s last stream) was never
//! processed and is retried on another connection. A new connection is opened when every
//! open one is at the server's `SETTINGS_MAX_CONCURRENT_STREAMS`. A connection without
//! streams for [`POOL_IDLE_TIMEOUT`](crate::http::POOL_IDLE_TIMEOUT) is closed with a
//! `GOAWAY`. Server push is refused in the client's `SETTINGS`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::h1::{connect_tcp, too_large, Target};
use crate::hpack::Decoder;
use crate::InvokeError;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

// Error codes.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const COMPRESSION_ERROR: u32 = 0x9;

/// The largest frame payload the client accepts (the protocol's default; not raised).
const MAX_FRAME: usize = 16_384;
/// The receive window of each stream, advertised in `SETTINGS_INITIAL_WINDOW_SIZE`.
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's receive window, raised to this right after the preface.
const CONN_WINDOW: u32 = 16 << 20;
/// The protocol's initial windows, before `SETTINGS` and `WINDOW_UPDATE` change them.
const DEFAULT_WINDOW: i64 = 65_535;
/// Decoded answer headers at most (`SETTINGS_MAX_HEADER_LIST_SIZE`); more fail the stream.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// The HPACK dynamic table the decoder allows (the protocol's default).
const HEADER_TABLE: usize = 4096;
/// How often an idle connection checks whether it has been idle long enough to close.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Invocations retried at most after their stream was refused unprocessed.
const MAX_RETRIES: usize = 3;
/// A guard against picking full connections forever: an invocation that could not get
/// a stream this many times gives up.
const MAX_PICKS: usize = 64;

/// Why a connection failed whose server never started speaking HTTP/2.
const NOT_H2: &str = "the function did not answer in HTTP/2: does it take HTTP/2 with prior \
                      knowledge (http_version = \"2\")?";

/// A pool of HTTP/2 connections to one function.
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    target: Target,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is being opened, so a burst of invocations opens one.
    connecting: tokio::sync::Mutex<()>,
    idle_timeout: Duration,
}

/// Why a request did not get its answer on a connection.
enum Fail {
    /// The connection had no room for a stream (full, closing): nothing was sent.
    Full,
    /// The server refused the stream unprocessed (`REFUSED_STREAM`, or above a
    /// `GOAWAY`'s last stream): safe to send again.
    Refused,
    Error(InvokeError),
}

impl Pool {
    pub fn new(target: Target, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                target,
                conns: Mutex::new(Vec::new()),
                connecting: tokio::sync::Mutex::new(()),
                idle_timeout,
            }),
        }
    }

    /// Sends one request (`block`: its HPACK-encoded header block, pseudo-headers first;
    /// `body`: its body) and reads the answer's body, keeping at most `max_body` bytes. A
    /// status other than 2xx fails with `function answered HTTP <status>`.
    pub async fn send(
        &self,
        block: &[u8],
        body: Bytes,
        max_body: usize,
    ) -> Result<Bytes, InvokeError> {
        let mut retries = 0;
        for _ in 0..MAX_PICKS {
            let conn = self.conn().await?;
            match conn.request(block, body.clone(), max_body).await {
                Ok(answer) => return Ok(answer),
                Err(Fail::Error(e)) => return Err(e),
                Err(Fail::Refused) => {
                    retries += 1;
                    if retries > MAX_RETRIES {
                        return Err(failed("function refused the request"));
                    }
                }
                Err(Fail::Full) => tokio::task::yield_now().await,
            }
        }
        Err(failed("no HTTP/2 stream available"))
    }

    /// An open connection with room for one more stream, or a new one.
    async fn conn(&self) -> Result<Arc<Conn>, InvokeError> {
        if let Some(conn) = self.pick() {
            return Ok(conn);
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(conn) = self.pick() {
            return Ok(conn);
        }
        let stream = connect_tcp(&self.inner.target).await?;
        let conn = Conn::start(stream, Arc::downgrade(&self.inner));
        self.inner.conns.lock().push(Arc::clone(&conn));
        Ok(conn)
    }

    fn pick(&self) -> Option<Arc<Conn>> {
        let conns = self.inner.conns.lock();
        conns.iter().find(|c| c.has_room()).cloned()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The reader and writer tasks hold their connection; tell them to finish.
        for conn in self.inner.conns.lock().drain(..) {
            conn.end("connection closed".into(), Some(NO_ERROR));
        }
    }
}

/// One HTTP/2 connection, shared by the invocations using it and its two tasks.
struct Conn {
    state: Mutex<State>,
    /// Wakes the writer task when frames are queued.
    writable: Notify,
}

struct State {
    /// Frames queued for the writer.
    out: Vec<u8>,
    streams: HashMap<u32, Stream>,
    next_id: u32,
    /// New streams may start (no `GOAWAY`, not closing, ids left).
    open: bool,
    /// Set once the connection failed or was closed: why.
    dead: Option<String>,
    /// The server's first frame (its `SETTINGS`) has arrived.
    started: bool,
    conn_send_window: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    peer_max_streams: usize,
    /// Streams whose request body waits for send window, oldest first.
    blocked: VecDeque<u32>,
    /// Bytes received on the connection not yet given back in a `WINDOW_UPDATE`.
    conn_recv_unacked: u32,
    /// When the last stream ended (or the connection opened).
    idle_since: Instant,
}

struct Stream {
    waker: Option<Waker>,
    /// The final (non-1xx) status, once its head arrived.
    status: Option<u16>,
    body: BytesMut,
    max_body: usize,
    send_window: i64,
    /// Request body not yet sent (waiting for window).
    pending: Bytes,
    recv_unacked: u32,
    /// Set when the stream is over: the answer, or why there is none.
    outcome: Option<Result<(u16, Bytes), Fail>>,
}

impl Conn {
    fn start(stream: tokio::net::TcpStream, pool: Weak<PoolInner>) -> Arc<Self> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(PREFACE);
        frame_head(&mut out, 18, SETTINGS, 0, 0);
        for (id, value) in [
            (0x2, 0), // ENABLE_PUSH
            (0x4, STREAM_WINDOW),
            (0x6, MAX_HEADER_LIST as u32),
        ] {
            out.extend_from_slice(&u16::to_be_bytes(id));
            out.extend_from_slice(&u32::to_be_bytes(value));
        }
        window_update(&mut out, 0, CONN_WINDOW - DEFAULT_WINDOW as u32);
        let conn = Arc::new(Self {
            state: Mutex::new(State {
                out,
                streams: HashMap::new(),
                next_id: 1,
                open: true,
                dead: None,
                started: false,
                conn_send_window: DEFAULT_WINDOW,
                peer_initial_window: DEFAULT_WINDOW,
                peer_max_frame: MAX_FRAME,
                // Unlimited until the server says otherwise (RFC 9113 §6.5.2); it refuses
                // what it cannot take, and that is retried.
                peer_max_streams: usize::MAX,
                blocked: VecDeque::new(),
                conn_recv_unacked: 0,
                idle_since: Instant::now(),
            }),
            writable: Notify::new(),
        });
        let (rd, wr) = stream.into_split();
        tokio::spawn(write_loop(Arc::clone(&conn), wr));
        tokio::spawn(read_loop(Arc::clone(&conn), rd, pool));
        conn.writable.notify_one();
        conn
    }

    fn has_room(&self) -> bool {
        self.state.lock().has_room()
    }

    /// Opens a stream, queues the request, and waits for the answer.
    async fn request(
        self: &Arc<Self>,
        block: &[u8],
        body: Bytes,
        max_body: usize,
    ) -> Result<Bytes, Fail> {
        let id = {
            let mut st = self.state.lock();
            if !st.has_room() {
                return Err(Fail::Full);
            }
            let id = st.next_id;
            if id > (u32::MAX >> 1) - 2 {
                // Stream ids are spent: let this connection finish, use a new one.
                st.open = false;
            }
            st.next_id += 2;
            let was_empty = st.out.is_empty();
            let end_stream = body.is_empty();
            let max_frame = st.peer_max_frame;
            headers_frames(&mut st.out, id, block, end_stream, max_frame);
            let send_window = st.peer_initial_window;
            st.streams.insert(
                id,
                Stream {
                    waker: None,
                    status: None,
                    body: BytesMut::new(),
                    max_body,
                    send_window,
                    pending: body,
                    recv_unacked: 0,
                    outcome: None,
                },
            );
            if !end_stream && !st.send_data(id) {
                st.blocked.push_back(id);
            }
            if was_empty {
                drop(st);
                self.writable.notify_one();
            }
            id
        };
        // Dropped before the answer (a timeout), it cancels the stream.
        let _guard = StreamGuard { conn: self, id };
        let outcome = std::future::poll_fn(|cx| {
            let mut st = self.state.lock();
            let Some(stream) = st.streams.get_mut(&id) else {
                return Poll::Ready(Err(Fail::Error(failed("stream lost"))));
            };
            match stream.outcome.take() {
                Some(outcome) => {
                    st.remove_stream(id);
                    Poll::Ready(outcome)
                }
                None => {
                    if !stream
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        stream.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        match outcome? {
            (status, body) if (200..300).contains(&status) => Ok(body),
            (status, _) => Err(Fail::Error(InvokeError::Failed(format!(
                "function answered HTTP {status}"
            )))),
        }
    }

    /// Marks the connection dead and fails its unfinished streams with `reason`; with
    /// `goaway`, tells the server why first (the code). The writer sends what is queued,
    /// then shuts the socket, and the reader stops.
    fn end(&self, reason: String, goaway_code: Option<u32>) {
        let wakers = {
            let mut st = self.state.lock();
            if st.dead.is_some() {
                return;
            }
            st.open = false;
            if let Some(code) = goaway_code {
                // A client's last stream id counts server-initiated streams: push is off.
                goaway(&mut st.out, 0, code);
            }
            let wakers = st.end_all(|_| Fail::Error(InvokeError::Failed(reason.clone())));
            st.dead = Some(reason);
            wakers
        };
        self.writable.notify_one();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Cancels its stream when the invocation is dropped before the answer (a timeout): a
/// `RST_STREAM` tells the server, and the stream's window and slot are freed.
struct StreamGuard<'a> {
    conn: &'a Conn,
    id: u32,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        let notify = {
            let mut st = self.conn.state.lock();
            // Gone if its answer was taken.
            let Some(stream) = st.remove_stream(self.id) else {
                return;
            };
            let cancel = stream.outcome.is_none() && st.dead.is_none();
            if cancel {
                st.blocked.retain(|&b| b != self.id);
                rst_stream(&mut st.out, self.id, CANCEL);
            }
            cancel
        };
        if notify {
            self.conn.writable.notify_one();
        }
    }
}

impl State {
    /// Whether a new stream may start here.
    fn has_room(&self) -> bool {
        self.open && self.streams.len() < self.peer_max_streams
    }

    /// Queues as much of the stream's pending body as the windows allow. `true`: all
    /// of it is queued (or the stream is gone).
    fn send_data(&mut self, id: u32) -> bool {
        let Self {
            out,
            streams,
            conn_send_window,
            peer_max_frame,
            ..
        } = self;
        let Some(stream) = streams.get_mut(&id) else {
            return true;
        };
        while !stream.pending.is_empty() {
            let room = (*conn_send_window).min(stream.send_window);
            if room <= 0 {
                return false;
            }
            let n = stream.pending.len().min(room as usize).min(*peer_max_frame);
            let chunk = stream.pending.split_to(n);
            let flags = if stream.pending.is_empty() {
                END_STREAM
            } else {
                0
            };
            frame_head(out, n, DATA, flags, id);
            out.extend_from_slice(&chunk);
            *conn_send_window -= n as i64;
            stream.send_window -= n as i64;
        }
        true
    }

    /// Forgets a stream; the connection is idle from when its last stream goes.
    fn remove_stream(&mut self, id: u32) -> Option<Stream> {
        let stream = self.streams.remove(&id)?;
        if self.streams.is_empty() {
            self.idle_since = Instant::now();
        }
        Some(stream)
    }

    /// Sends what the windows now allow of the blocked bodies, oldest first.
    fn unblock(&mut self) {
        let mut still = VecDeque::new();
        while let Some(id) = self.blocked.pop_front() {
            if !self.send_data(id) {
                still.push_back(id);
            }
        }
        self.blocked = still;
    }

    /// Ends every unfinished stream with `why(id)`; returns the wakers to wake once the
    /// lock is released.
    fn end_all(&mut self, why: impl Fn(u32) -> Fail) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for (&id, stream) in self.streams.iter_mut() {
            if stream.outcome.is_none() {
                stream.outcome = Some(Err(why(id)));
                wakers.extend(stream.waker.take());
            }
        }
        self.blocked.clear();
        wakers
    }

    /// Ends one stream; queues a `RST_STREAM` with `reset` if the server must stop too.
    fn finish(
        &mut self,
        id: u32,
        outcome: Result<(u16, Bytes), Fail>,
        reset: Option<u32>,
        wakers: &mut Vec<Waker>,
    ) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.outcome.is_some() {
            return;
        }
        stream.outcome = Some(outcome);
        wakers.extend(stream.waker.take());
        if !stream.pending.is_empty() {
            // The server answered before taking the whole body: stop sending it.
            stream.pending.clear();
            self.blocked.retain(|&b| b != id);
            rst_stream(&mut self.out, id, CANCEL);
        } else if let Some(code) = reset {
            rst_stream(&mut self.out, id, code);
        }
    }
}

/// A connection-level protocol failure: the connection ends with a `GOAWAY` naming
/// `code`, and its streams fail with the reason.
struct ConnError {
    code: u32,
    reason: &'static str,
}

fn conn_error(code: u32, reason: &'static str) -> ConnError {
    ConnError { code, reason }
}

/// A header block being collected across `CONTINUATION` frames.
struct PendingHeaders {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// Reads and handles frames until the connection ends.
async fn read_loop(conn: Arc<Conn>, mut rd: OwnedReadHalf, pool: Weak<PoolInner>) {
    let idle_timeout = pool
        .upgrade()
        .map_or(crate::http::POOL_IDLE_TIMEOUT, |p| p.idle_timeout);
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut decoder = Decoder::new(HEADER_TABLE);
    let mut continuation: Option<PendingHeaders> = None;
    let reason = loop {
        if conn.state.lock().dead.is_some() {
            break None;
        }
        buf.reserve(16 * 1024);
        let read = tokio::time::timeout(IDLE_CHECK, rd.read_buf(&mut buf)).await;
        match read {
            Err(_elapsed) => {
                let idle = {
                    let st = conn.state.lock();
                    st.streams.is_empty() && st.idle_since.elapsed() >= idle_timeout
                };
                if idle {
                    conn.end("connection closed".into(), Some(NO_ERROR));
                    break None;
                }
                continue;
            }
            Ok(Ok(0)) => {
                let reason = if !conn.state.lock().started {
                    NOT_H2
                } else if buf.is_empty() {
                    "connection closed before the response"
                } else {
                    "connection closed mid-frame"
                };
                break Some((reason.to_owned(), None));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                    kind => format!("read error: {kind}"),
                };
                break Some((reason, None));
            }
        }
        let mut wakers = Vec::new();
        let result = {
            let mut st = conn.state.lock();
            if !st.started && buf.starts_with(b"HTTP/") {
                drop(st);
                break Some((NOT_H2.to_owned(), None));
            }
            let before = st.out.len();
            let mut result = Ok(());
            while let Some((kind, flags, id, len)) = frame_ready(&buf) {
                if len > MAX_FRAME {
                    result = Err(conn_error(FRAME_SIZE_ERROR, "frame too large"));
                    break;
                }
                buf.advance(9);
                let payload = buf.split_to(len);
                result = handle_frame(
                    &mut st,
                    &mut decoder,
                    &mut continuation,
                    kind,
                    flags,
                    id,
                    &payload,
                    &mut wakers,
                );
                if result.is_err() {
                    break;
                }
            }
            let queued = st.out.len() > before && before == 0;
            result.map(|()| queued)
        };
        wakers.drain(..).for_each(Waker::wake);
        match result {
            Ok(true) => conn.writable.notify_one(),
            Ok(false) => {}
            Err(ConnError { code, reason }) => {
                break Some((format!("HTTP/2 protocol error: {reason}"), Some(code)));
            }
        }
    };
    if let Some((reason, goaway_code)) = reason {
        conn.end(reason, goaway_code);
    }
    if let Some(pool) = pool.upgrade() {
        pool.conns.lock().retain(|c| !Arc::ptr_eq(c, &conn));
    }
}

/// The next complete frame's type, flags, stream and payload length, if the buffer holds
/// all of it (or at least its head, when its length is over the limit).
fn frame_ready(buf: &[u8]) -> Option<(u8, u8, u32, usize)> {
    if buf.len() < 9 {
        return None;
    }
    let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
    let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
    if len > MAX_FRAME || buf.len() >= 9 + len {
        Some((buf[3], buf[4], id, len))
    } else {
        None
    }
}

/// The payload without its padding (and without the priority fields of `HEADERS`).
fn unpad(flags: u8, payload: &[u8], priority: bool) -> Result<&[u8], ConnError> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or_else(|| conn_error(PROTOCOL_ERROR, "bad padding"))?;
        pad = n as usize;
        p = rest;
    }
    if priority {
        if p.len() < 5 {
            return Err(conn_error(PROTOCOL_ERROR, "bad priority"));
        }
        p = &p[5..];
    }
    if pad > p.len() {
        return Err(conn_error(PROTOCOL_ERROR, "bad padding"));
    }
    Ok(&p[..p.len() - pad])
}

#[allow(clippy::too_many_arguments)]
fn handle_frame(
    st: &mut State,
    decoder: &mut Decoder,
    continuation: &mut Option<PendingHeaders>,
    kind: u8,
    flags: u8,
    id: u32,
    payload: &[u8],
    wakers: &mut Vec<Waker>,
) -> Result<(), ConnError> {
    if !st.started && kind != SETTINGS {
        return Err(conn_error(
            PROTOCOL_ERROR,
            "the server's first frame is not SETTINGS",
        ));
    }
    if continuation.is_some() && kind != CONTINUATION {
        return Err(conn_error(PROTOCOL_ERROR, "expected CONTINUATION"));
    }
    match kind {
        DATA => {
            if id == 0 {
                return Err(conn_error(PROTOCOL_ERROR, "DATA on stream 0"));
            }
            let data = unpad(flags, payload, false)?;
            let len = payload.len() as u32;
            st.conn_recv_unacked += len;
            if st.conn_recv_unacked >= CONN_WINDOW / 2 {
                let n = std::mem::take(&mut st.conn_recv_unacked);
                window_update(&mut st.out, 0, n);
            }
            let Some(stream) = st.streams.get_mut(&id) else {
                // A stream the invocation gave up on: its data is only counted.
                return Ok(());
            };
            if stream.outcome.is_some() {
                return Ok(());
            }
            if stream.status.is_none() {
                st.finish(
                    id,
                    Err(Fail::Error(failed("response body before its head"))),
                    Some(PROTOCOL_ERROR),
                    wakers,
                );
                return Ok(());
            }
            if stream.body.len() + data.len() > stream.max_body {
                st.finish(id, Err(Fail::Error(too_large())), Some(CANCEL), wakers);
                return Ok(());
            }
            stream.body.extend_from_slice(data);
            if flags & END_STREAM != 0 {
                let status = stream.status.unwrap_or_default();
                let body = stream.body.split().freeze();
                st.finish(id, Ok((status, body)), None, wakers);
            } else {
                stream.recv_unacked += len;
                if stream.recv_unacked >= STREAM_WINDOW / 2 {
                    let n = std::mem::take(&mut stream.recv_unacked);
                    window_update(&mut st.out, id, n);
                }
            }
        }
        HEADERS => {
            if id == 0 {
                return Err(conn_error(PROTOCOL_ERROR, "HEADERS on stream 0"));
            }
            let block = unpad(flags, payload, flags & PRIORITY != 0)?;
            let pending = PendingHeaders {
                stream: id,
                end_stream: flags & END_STREAM != 0,
                block: block.to_vec(),
            };
            if flags & END_HEADERS != 0 {
                on_headers(st, decoder, pending, wakers)?;
            } else {
                *continuation = Some(pending);
            }
        }
        CONTINUATION => {
            let Some(mut pending) = continuation.take() else {
                return Err(conn_error(PROTOCOL_ERROR, "unexpected CONTINUATION"));
            };
            if pending.stream != id {
                return Err(conn_error(PROTOCOL_ERROR, "CONTINUATION on another stream"));
            }
            pending.block.extend_from_slice(payload);
            if pending.block.len() > MAX_HEADER_LIST {
                return Err(conn_error(PROTOCOL_ERROR, "header block too large"));
            }
            if flags & END_HEADERS != 0 {
                on_headers(st, decoder, pending, wakers)?;
            } else {
                *continuation = Some(pending);
            }
        }
        RST_STREAM => {
            if payload.len() != 4 {
                return Err(conn_error(FRAME_SIZE_ERROR, "bad RST_STREAM"));
            }
            let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            let outcome = if code == REFUSED_STREAM {
                Fail::Refused
            } else {
                Fail::Error(InvokeError::Failed(format!(
                    "function reset the stream (HTTP/2 error code {code})"
                )))
            };
            st.finish(id, Err(outcome), None, wakers);
        }
        SETTINGS => {
            if id != 0 {
                return Err(conn_error(PROTOCOL_ERROR, "SETTINGS on a stream"));
            }
            if flags & ACK != 0 {
                return Ok(());
            }
            if !payload.len().is_multiple_of(6) {
                return Err(conn_error(FRAME_SIZE_ERROR, "bad SETTINGS"));
            }
            st.started = true;
            for setting in payload.chunks_exact(6) {
                let key = u16::from_be_bytes([setting[0], setting[1]]);
                let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                match key {
                    0x3 => st.peer_max_streams = value as usize,
                    0x4 => {
                        if value > 0x7fff_ffff {
                            return Err(conn_error(FLOW_CONTROL_ERROR, "window too large"));
                        }
                        let delta = value as i64 - st.peer_initial_window;
                        st.peer_initial_window = value as i64;
                        for stream in st.streams.values_mut() {
                            stream.send_window += delta;
                        }
                    }
                    0x5 => {
                        if !(16_384..=16_777_215).contains(&value) {
                            return Err(conn_error(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE"));
                        }
                        st.peer_max_frame = value as usize;
                    }
                    // HEADER_TABLE_SIZE: the encoder uses no dynamic table. Others: no
                    // bearing on a client.
                    _ => {}
                }
            }
            frame_head(&mut st.out, 0, SETTINGS, ACK, 0);
            st.unblock();
        }
        PING => {
            if payload.len() != 8 || id != 0 {
                return Err(conn_error(FRAME_SIZE_ERROR, "bad PING"));
            }
            if flags & ACK == 0 {
                frame_head(&mut st.out, 8, PING, ACK, 0);
                st.out.extend_from_slice(payload);
            }
        }
        GOAWAY => {
            if payload.len() < 8 {
                return Err(conn_error(FRAME_SIZE_ERROR, "bad GOAWAY"));
            }
            let last =
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
            st.open = false;
            // Streams above `last` were not processed: they go to another connection.
            let above: Vec<u32> = st.streams.keys().copied().filter(|&s| s > last).collect();
            for s in above {
                st.finish(s, Err(Fail::Refused), None, wakers);
            }
        }
        WINDOW_UPDATE => {
            if payload.len() != 4 {
                return Err(conn_error(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE"));
            }
            let n =
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
            if id == 0 {
                st.conn_send_window += n as i64;
                if st.conn_send_window > 0x7fff_ffff {
                    return Err(conn_error(FLOW_CONTROL_ERROR, "window too large"));
                }
            } else if let Some(stream) = st.streams.get_mut(&id) {
                stream.send_window += n as i64;
            }
            st.unblock();
        }
        PUSH_PROMISE => return Err(conn_error(PROTOCOL_ERROR, "push was disabled")),
        // PRIORITY and unknown types: ignored.
        _ => {}
    }
    Ok(())
}

/// Decodes a complete header block (always, to keep the HPACK state in step) and
/// applies it to its stream.
fn on_headers(
    st: &mut State,
    decoder: &mut Decoder,
    pending: PendingHeaders,
    wakers: &mut Vec<Waker>,
) -> Result<(), ConnError> {
    let mut status: Option<u16> = None;
    let mut size = 0usize;
    decoder
        .decode(&pending.block, |name, value| {
            size += name.len() + value.len() + 32;
            if name == b":status" {
                status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
        })
        .map_err(|_| conn_error(COMPRESSION_ERROR, "bad header block"))?;
    let id = pending.stream;
    let Some(stream) = st.streams.get_mut(&id) else {
        return Ok(());
    };
    if stream.outcome.is_some() {
        return Ok(());
    }
    if size > MAX_HEADER_LIST {
        st.finish(
            id,
            Err(Fail::Error(failed("response head too large"))),
            Some(CANCEL),
            wakers,
        );
        return Ok(());
    }
    match (stream.status, status) {
        // Trailers: only their end matters.
        (Some(final_status), _) => {
            if pending.end_stream {
                let body = stream.body.split().freeze();
                st.finish(id, Ok((final_status, body)), None, wakers);
            }
        }
        (None, Some(s)) if (100..200).contains(&s) => {
            if pending.end_stream {
                st.finish(
                    id,
                    Err(Fail::Error(failed("response is not valid HTTP"))),
                    None,
                    wakers,
                );
            }
        }
        (None, Some(s)) if (200..600).contains(&s) => {
            stream.status = Some(s);
            if pending.end_stream {
                st.finish(id, Ok((s, Bytes::new())), None, wakers);
            }
        }
        (None, _) => {
            st.finish(
                id,
                Err(Fail::Error(failed("response is not valid HTTP"))),
                Some(PROTOCOL_ERROR),
                wakers,
            );
        }
    }
    Ok(())
}

/// Writes queued frames, batching whatever queued up while it waited its turn.
async fn write_loop(conn: Arc<Conn>, mut wr: OwnedWriteHalf) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let wait = {
            let mut st = conn.state.lock();
            if st.out.is_empty() {
                if st.dead.is_some() {
                    break;
                }
                true
            } else {
                std::mem::swap(&mut st.out, &mut buf);
                false
            }
        };
        if wait {
            conn.writable.notified().await;
            // Let the other ready tasks queue their frames first: one write for all.
            tokio::task::yield_now().await;
            continue;
        }
        if let Err(e) = wr.write_all(&buf).await {
            let reason = match e.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    "connection closed while sending".to_owned()
                }
                kind => format!("write error: {kind}"),
            };
            conn.end(reason, None);
            break;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

fn frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, id: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&id.to_be_bytes());
}

fn window_update(out: &mut Vec<u8>, id: u32, n: u32) {
    frame_head(out, 4, WINDOW_UPDATE, 0, id);
    out.extend_from_slice(&n.to_be_bytes());
}

fn rst_stream(out: &mut Vec<u8>, id: u32, code: u32) {
    frame_head(out, 4, RST_STREAM, 0, id);
    out.extend_from_slice(&code.to_be_bytes());
}

fn goaway(out: &mut Vec<u8>, last: u32, code: u32) {
    frame_head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
}

/// `HEADERS` and, if the block is larger than a frame, `CONTINUATION` frames.
fn headers_frames(out: &mut Vec<u8>, id: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    frame_head(out, first.len(), HEADERS, flags, id);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        frame_head(out, chunk.len(), CONTINUATION, flags, id);
        out.extend_from_slice(chunk);
    }
}

// ---------------------------------------------------------------------------------------
// HPACK encoding of requests: no dynamic table, no Huffman coding (both optional).

/// Appends an HPACK integer with an `n`-bit prefix; `first` holds the bits above it.
pub(crate) fn push_int(out: &mut Vec<u8>, n: u8, first: u8, mut value: usize) {
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

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    push_int(out, 7, 0, s.len());
    out.extend_from_slice(s);
}

/// A header field, literal and not indexed, with its name written out (names must be
/// lowercase).
pub(crate) fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    push_string(out, name.as_bytes());
    push_string(out, value);
}

/// The start of every request's header block: `:method POST`, `:scheme http`, `:path`,
/// `:authority`.
pub(crate) fn request_block(path: &str, authority: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + path.len() + authority.len());
    out.push(0x80 | 3); // :method POST (static table entry 3)
    out.push(0x80 | 6); // :scheme http (static table entry 6)
    push_int(&mut out, 4, 0x00, 4); // :path, name from static table entry 4
    push_string(&mut out, path.as_bytes());
    push_int(&mut out, 4, 0x00, 1); // :authority, name from static table entry 1
    push_string(&mut out, authority);
    out
}

fn failed(reason: &'static str) -> InvokeError {
    InvokeError::Failed(reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_request_block_decodes() {
        let mut block = request_block("/fn?x=1", b"example.test:8080");
        push_field(&mut block, "content-type", b"application/json");
        let long = vec![b'v'; 300];
        push_field(&mut block, "x-long", &long);
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        Decoder::new(4096)
            .decode(&block, |n, v| {
                headers.push((String::from_utf8(n.to_vec()).unwrap(), v.to_vec()))
            })
            .unwrap();
        assert_eq!(
            headers,
            vec![
                (":method".into(), b"POST".to_vec()),
                (":scheme".into(), b"http".to_vec()),
                (":path".into(), b"/fn?x=1".to_vec()),
                (":authority".into(), b"example.test:8080".to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
                ("x-long".into(), long),
            ]
        );
    }

    #[test]
    fn integers_use_continuation_bytes() {
        let mut out = Vec::new();
        push_int(&mut out, 5, 0, 1337);
        assert_eq!(out, [31, 154, 10]); // RFC 7541 C.1.2
        out.clear();
        push_int(&mut out, 7, 0, 126);
        assert_eq!(out, [126]);
        out.clear();
        push_int(&mut out, 7, 0, 127);
        assert_eq!(out, [127, 0]);
    }

    #[test]
    fn large_header_blocks_continue() {
        let block = vec![0u8; 40_000];
        let mut out = Vec::new();
        headers_frames(&mut out, 3, &block, false, 16_384);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while let Some((kind, flags, id, len)) = frame_ready(rest) {
            frames.push((kind, flags, id, len));
            rest = &rest[9 + len..];
        }
        assert_eq!(
            frames,
            vec![
                (HEADERS, 0, 3, 16_384),
                (CONTINUATION, 0, 3, 16_384),
                (CONTINUATION, END_HEADERS, 3, 7_232),
            ]
        );
    }
}

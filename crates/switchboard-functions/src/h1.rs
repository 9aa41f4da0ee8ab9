//! A small HTTP/1.1 client for `http` functions: one POST per pooled keep-alive
//! connection at a time, driven by the invoking task itself.
//!
//! A general client (hyper's) hands each request to a task that owns the connection and
//! passes the answer back through channels: two extra task wake-ups and several
//! allocations per invocation, on the gateway's hottest path. Here the invocation's
//! future checks a connection out of the pool, writes the whole request in one write,
//! reads the answer on the same task, and puts the connection back.
//!
//! What it speaks: responses with `content-length`, `transfer-encoding: chunked`, or a
//! body up to the close (then the connection is not reused); `1xx` interim responses are
//! skipped; `204` and `304` have no body. HTTP/1.0 answers keep the connection only with
//! `connection: keep-alive`. A connection is reused only after a complete `2xx` answer
//! (or an error status whose body fits the same bounds) with nothing after it; anything
//! else drops it.
//!
//! The function is not trusted to frame its answers well (RFC 9112 §6.1, §6.3). An
//! answer whose framing is ambiguous or invalid fails the invocation and its connection
//! is closed, never reused, since the next answer read on it could be bytes the function
//! meant as this one's body: both `content-length` and `transfer-encoding`; several
//! `content-length` values that differ, or one that is not a plain decimal number; any
//! transfer coding other than a single `chunked` (several `transfer-encoding` headers, a
//! list, or a final coding that is not `chunked`: nothing else is decoded here); or
//! `transfer-encoding` on an HTTP/1.0 answer. Every part of an answer is bounded, and
//! the bytes held while reading it never pass the bound: the heads ([`MAX_HEAD`] bytes
//! for the final head and any interim ones together, [`MAX_HEADERS`] fields), each chunk
//! size line ([`MAX_CHUNK_LINE`]), chunk extensions over the whole body
//! ([`MAX_CHUNK_EXTENSIONS`]), the trailer section (like a head) and the body
//! (`max_response_bytes`). The decisions live in [`AnswerDecoder`], which takes bytes
//! and does no I/O, so it is tested (and fuzzed) without sockets.
//!
//! Idle connections: kept newest first, at most `max_idle`, dropped once idle for
//! [`POOL_IDLE_TIMEOUT`](crate::http::POOL_IDLE_TIMEOUT) (by a reaper task while any are
//! idle, and at checkout), and dropped at checkout if the server closed them or sent
//! something meanwhile (the runtime's readiness says so without a system call).

use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::InvokeError;

/// The heads of one answer (the final one and any interim `1xx` ones before it, counted
/// together) may take at most this many bytes, and so may its trailer section; beyond
/// it the invocation fails with `response head too large` (`response trailers too
/// large`), and no more than this is ever buffered for them.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields in one head at most (and in the trailer section); more fail with
/// `response has too many headers` (`response has too many trailer fields`).
const MAX_HEADERS: usize = 64;
/// A chunk-size line (the hex size, optional whitespace and chunk extensions, without
/// its CRLF) at most; a longer one fails with `chunk size line too long`.
const MAX_CHUNK_LINE: usize = 1024;
/// The bytes of a chunk-size line beyond its first [`FREE_CHUNK_LINE`] (extensions,
/// padding), summed over one body, at most: they carry no body but cost reading, and a
/// function could otherwise send a kilobyte of them per body byte. Beyond it: `chunk
/// extensions too large`. (hyper bounds chunk extensions the same way.)
const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;
/// The part of each chunk-size line not counted against [`MAX_CHUNK_EXTENSIONS`]: room
/// for the 16 hex digits of any size.
const FREE_CHUNK_LINE: usize = 16;
/// Free room kept in a connection's read buffer before each read. A read that fills less
/// than this tells the runtime the socket is drained, which the idle check relies on.
const READ_ROOM: usize = 4096;
/// Read buffer an idle connection may keep (one head's worth); a larger one, grown by
/// a large answer, is dropped when the connection goes back to the pool, so idle
/// connections never hold `max_response_bytes` each.
const MAX_IDLE_BUFFER: usize = MAX_HEAD;
/// How often the reaper looks for expired idle connections.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Where requests go: resolved at each new connection, so a DNS change is followed.
pub(crate) struct Target {
    /// Host as written in the URL (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// A pool of keep-alive connections to one function.
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    target: Target,
    idle: Mutex<Idle>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    /// Oldest first; checkout takes the newest.
    conns: Vec<(Conn, Instant)>,
    reaper: bool,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Pool {
    pub fn new(target: Target, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                target,
                idle: Mutex::new(Idle {
                    conns: Vec::new(),
                    reaper: false,
                }),
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// Sends `request` (a complete HTTP/1.1 request: head and body) and reads the
    /// answer's body, keeping at most `max_body` bytes of it. A status other than 2xx
    /// fails with `function answered HTTP <status>`; its body is read and dropped, so
    /// the connection is reused as after a success.
    pub async fn send(&self, request: &[u8], max_body: usize) -> Result<Bytes, InvokeError> {
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        conn.stream
            .write_all(request)
            .await
            .map_err(|e| InvokeError::Failed(send_reason(&e).into()))?;
        let (answer, reusable) = conn.read_answer(max_body).await?;
        if reusable {
            // The buffer a large answer grew is not kept while the connection idles.
            if conn.buf.capacity() > MAX_IDLE_BUFFER {
                conn.buf = BytesMut::new();
            }
            self.checkin(conn);
        }
        answer
    }

    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.inner.idle.lock();
        let now = Instant::now();
        while let Some((mut conn, since)) = idle.conns.pop() {
            if now.duration_since(since) >= self.inner.idle_timeout {
                // The rest are older still.
                idle.conns.clear();
                return None;
            }
            if conn.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.inner.idle.lock();
        if idle.conns.len() >= self.inner.max_idle {
            return;
        }
        idle.conns.push((conn, Instant::now()));
        if !idle.reaper {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                idle.reaper = true;
                runtime.spawn(reap(Arc::downgrade(&self.inner)));
            }
        }
    }

    async fn connect(&self) -> Result<Conn, InvokeError> {
        Ok(Conn {
            stream: connect_tcp(&self.inner.target).await?,
            buf: BytesMut::new(),
        })
    }
}

/// A new TCP connection to the target (each address it resolves to in turn), with
/// Nagle off: requests are whole writes, Nagle would only add latency. Failures are
/// [`InvokeError::Unreachable`].
pub(crate) async fn connect_tcp(target: &Target) -> Result<TcpStream, InvokeError> {
    let Target { host, port } = target;
    let addrs = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(|e| InvokeError::Unreachable(capped(format!("dns error: {e}"))))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(InvokeError::Unreachable(capped(match last {
        Some(e) => format!("tcp connect error: {e}"),
        None => format!("dns error: no addresses for {host}"),
    })))
}

/// Closes connections idle for longer than the timeout; ends when none are idle.
async fn reap(pool: Weak<PoolInner>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock();
        let now = Instant::now();
        let timeout = pool.idle_timeout;
        idle.conns
            .retain(|(_, since)| now.duration_since(*since) < timeout);
        if idle.conns.is_empty() {
            idle.reaper = false;
            return;
        }
    }
}

impl Conn {
    /// Whether nothing arrived while the connection was idle: no close, no stray bytes.
    /// Uses the readiness the runtime already has; a read that drained the socket
    /// cleared it.
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(_) => {
                // Possibly stale readiness: look once.
                let mut byte = [0u8; 1];
                matches!(self.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more bytes into the buffer, at most `room` of them (never 0). `Ok(false)`:
    /// end of stream.
    async fn fill(&mut self, room: usize) -> std::io::Result<bool> {
        self.buf.reserve(READ_ROOM);
        let spare = self.buf.capacity() - self.buf.len();
        let read = if room < spare {
            let limit = room.max(1) as u64;
            (&mut self.stream)
                .take(limit)
                .read_buf(&mut self.buf)
                .await?
        } else {
            self.stream.read_buf(&mut self.buf).await?
        };
        Ok(read > 0)
    }

    /// Reads one answer: its body, or for a status other than 2xx `function answered
    /// HTTP <status>`. The flag says whether the connection may be reused. An answer
    /// that cannot be read (badly framed, beyond a bound, cut short) is the outer error,
    /// and the caller drops the connection.
    async fn read_answer(
        &mut self,
        max_body: usize,
    ) -> Result<(Result<Bytes, InvokeError>, bool), InvokeError> {
        self.buf.clear();
        let mut decoder = AnswerDecoder::new(Limits::new(max_body));
        let answer = loop {
            if let Some(answer) = decoder.decode(&mut self.buf)? {
                break answer;
            }
            match self.fill(decoder.room(self.buf.len())).await {
                Ok(true) => {}
                Ok(false) => break decoder.finish(&mut self.buf)?,
                Err(e) => return Err(decoder.io_failed(&e)),
            }
        };
        // Bytes after the answer were never asked for: do not reuse such a connection.
        let reusable = answer.keep_alive && self.buf.is_empty();
        Ok((answer.into_result(), reusable))
    }
}

/// The bounds one answer is read within: the module's constants, and the invocation's
/// `max_response_bytes` for the body. Tests shrink them to reach every bound cheaply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of all the heads of the answer together; also of its trailer section.
    head: usize,
    /// Fields in one head, or in the trailer section (at most [`MAX_HEADERS`]).
    headers: usize,
    /// Bytes of one chunk-size line, without its CRLF.
    chunk_line: usize,
    /// Bytes of chunk-size lines beyond their first [`FREE_CHUNK_LINE`], over the body.
    chunk_extensions: usize,
    /// Bytes of body.
    body: usize,
}

impl Limits {
    pub(crate) fn new(max_body: usize) -> Self {
        Self {
            head: MAX_HEAD,
            headers: MAX_HEADERS,
            chunk_line: MAX_CHUNK_LINE,
            chunk_extensions: MAX_CHUNK_EXTENSIONS,
            body: max_body,
        }
    }
}

/// A final answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// Whether the answer lets the connection serve another request (its framing ended
    /// it exactly, and it did not ask to close).
    pub keep_alive: bool,
}

impl Answer {
    /// The body of a `2xx` answer; any other status is `function answered HTTP
    /// <status>`, never quoting the body.
    fn into_result(self) -> Result<Bytes, InvokeError> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(answered(self.status))
        }
    }
}

/// Reads one answer from the bytes a connection delivers, without doing I/O: the caller
/// appends what arrives to a buffer (at most [`room`](Self::room) bytes per read) and
/// calls [`decode`](Self::decode) until it yields the answer, or
/// [`finish`](Self::finish) at the end of the stream. It consumes what it has used from
/// the front of the buffer, so what is left after the answer is what followed it.
///
/// The verdict (the answer or the error, and where the answer ends) depends only on the
/// bytes, never on how the reads cut them: each decision is made at a point the bytes
/// fix (a line's end, a bound's last byte), which the fuzz targets below check.
#[derive(Debug)]
pub(crate) struct AnswerDecoder {
    limits: Limits,
    state: State,
    /// Bytes of the interim heads already consumed.
    head_bytes: usize,
    status: u16,
    keep_alive: bool,
    /// A chunked body as it is decoded.
    body: BytesMut,
    chunked: Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// No body (`204`, `304`).
    Empty,
    /// A body of this many bytes (within the bound).
    Length(usize),
    Chunked,
    /// A body up to the close.
    UntilClose,
    Done,
}

impl AnswerDecoder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                headers: limits.headers.min(MAX_HEADERS),
                ..limits
            },
            state: State::Head,
            head_bytes: 0,
            status: 0,
            keep_alive: false,
            body: BytesMut::new(),
            chunked: Chunked::new(),
        }
    }

    /// Decodes what `buf` holds. `Ok(None)`: more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Answer>, InvokeError> {
        if self.state == State::Head && !self.head(buf)? {
            return Ok(None);
        }
        let body = match self.state {
            State::Head | State::Done => return Err(failed("response already read")),
            State::Empty => Bytes::new(),
            State::Length(n) => {
                if buf.len() < n {
                    return Ok(None);
                }
                let body = Bytes::copy_from_slice(&buf[..n]);
                buf.advance(n);
                body
            }
            State::Chunked => {
                let done = self.chunked.decode(buf, &mut self.body, &self.limits);
                if !done.map_err(|e| self.body_failed(e))? {
                    return Ok(None);
                }
                self.body.split().freeze()
            }
            State::UntilClose => {
                if buf.len() > self.limits.body {
                    return Err(self.body_failed(too_large()));
                }
                return Ok(None);
            }
        };
        self.state = State::Done;
        Ok(Some(Answer {
            status: self.status,
            body,
            keep_alive: self.keep_alive,
        }))
    }

    /// The most bytes the next read may add to a buffer holding `buffered` (at least 1
    /// while the answer is incomplete): while a head or the trailers are read, what
    /// keeps them within their bound; otherwise unbounded, since the body's bound is
    /// enforced as it is decoded.
    pub(crate) fn room(&self, buffered: usize) -> usize {
        match self.state {
            State::Head => (self.limits.head - self.head_bytes).saturating_sub(buffered),
            State::Chunked => self.chunked.room(buffered, &self.limits),
            _ => usize::MAX,
        }
    }

    /// The stream ended before [`decode`](Self::decode) yielded the answer: a body up
    /// to the close is complete; anything else was cut short.
    pub(crate) fn finish(mut self, buf: &mut BytesMut) -> Result<Answer, InvokeError> {
        match self.state {
            State::Head if buf.is_empty() => Err(failed("connection closed before the response")),
            State::Head => Err(failed("response is not valid HTTP")),
            State::UntilClose if buf.len() > self.limits.body => Err(self.body_failed(too_large())),
            State::UntilClose => {
                self.state = State::Done;
                Ok(Answer {
                    status: self.status,
                    body: buf.split().freeze(),
                    keep_alive: false,
                })
            }
            State::Empty | State::Length(_) | State::Chunked => {
                Err(self.body_failed(failed("response body truncated")))
            }
            State::Done => Err(failed("response already read")),
        }
    }

    /// The error for a read that failed.
    pub(crate) fn io_failed(&self, e: &std::io::Error) -> InvokeError {
        match self.state {
            State::Head if e.kind() == std::io::ErrorKind::ConnectionReset => {
                failed("connection reset before the response")
            }
            State::Head => failed("request failed"),
            _ => self.body_failed(body_error(e)),
        }
    }

    /// An error status's body is read only so its connection can be reused: when that
    /// fails, the status is the error, not the body's fault.
    fn body_failed(&self, e: InvokeError) -> InvokeError {
        if (200..300).contains(&self.status) {
            e
        } else {
            answered(self.status)
        }
    }

    /// Parses the final head from the front of `buf` and consumes it, with any interim
    /// (`1xx`) heads before it. `Ok(false)`: more bytes are needed.
    fn head(&mut self, buf: &mut BytesMut) -> Result<bool, InvokeError> {
        loop {
            // Only the bytes within the bound are looked at, so an over-long head fails
            // the same way however it arrived.
            let limit = self.limits.head - self.head_bytes;
            let window = &buf[..buf.len().min(limit)];
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers[..self.limits.headers]);
            let len = match response.parse(window) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if window.len() == limit => {
                    return Err(failed("response head too large"))
                }
                Ok(httparse::Status::Partial) => return Ok(false),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(failed("response has too many headers"))
                }
                Err(_) => return Err(failed("response is not valid HTTP")),
            };
            let status = response.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                self.head_bytes += len;
                buf.advance(len);
                continue;
            }
            if status == 101 {
                // An upgrade nobody asked for: the connection speaks something else now.
                return Err(answered(status));
            }
            let http10 = response.version == Some(0);
            let (framing, keep_alive) = framing(http10, response.headers)?;
            self.status = status;
            self.keep_alive = keep_alive;
            self.state = match framing {
                _ if status == 204 || status == 304 => State::Empty,
                Framing::Chunked => State::Chunked,
                Framing::Length(n) if n > self.limits.body as u64 => {
                    return Err(self.body_failed(too_large()))
                }
                Framing::Length(n) => State::Length(n as usize),
                Framing::UntilClose => {
                    // Only the close ends it.
                    self.keep_alive = false;
                    State::UntilClose
                }
            };
            buf.advance(len);
            return Ok(true);
        }
    }
}

/// What frames the body of a final answer, from its headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How a final answer's body is framed and whether it lets the connection be kept, from
/// its version and header fields, by RFC 9112 §6.1 and §6.3. Every ambiguity is an
/// error (see the module docs).
fn framing(http10: bool, headers: &[httparse::Header<'_>]) -> Result<(Framing, bool), InvokeError> {
    // `close` wins wherever it stands; HTTP/1.0 keeps a connection only when asked to.
    let mut close = false;
    let mut keep_alive_asked = false;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut codings = 0usize;
    let mut last_chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            // `42, 42` (or the field repeated) is one length (RFC 9110 §8.6).
            for value in h.value.split(|&b| b == b',') {
                let n = decimal(trim_ows(value))
                    .ok_or_else(|| failed("response has an invalid content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(failed("response has conflicting content-length values"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Empty list elements are no codings (RFC 9110 §5.6.1).
            for coding in h.value.split(|&b| b == b',').map(trim_ows) {
                if !coding.is_empty() {
                    codings += 1;
                    last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim_ows(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = !close && (!http10 || keep_alive_asked);
    if transfer_encoding {
        if length.is_some() {
            return Err(failed(
                "response has both content-length and transfer-encoding",
            ));
        }
        if codings > 1 {
            return Err(failed("response has more than one transfer coding"));
        }
        if !last_chunked {
            return Err(failed("response transfer-encoding is not chunked"));
        }
        if http10 {
            return Err(failed("HTTP/1.0 response with transfer-encoding"));
        }
        return Ok((Framing::Chunked, keep_alive));
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, keep_alive),
    })
}

/// A `content-length` value: one or more ASCII digits that fit a `u64` (no sign, no
/// spaces inside).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// `value` without the spaces and tabs around it (HTTP's optional whitespace).
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A control character, which no line of an HTTP/1.1 message may hold (tab aside).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A `tchar` of RFC 9110 §5.6.2: what a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A chunked body decoder (RFC 9112 §7.1), without I/O: it moves body bytes out of the
/// connection's buffer as they arrive, so the buffer holds back at most one partial size
/// line, the CRLF after a chunk, or one partial trailer line.
///
/// Grammar accepted: each chunk-size line is optional spaces or tabs, hex digits (a size
/// that fits a `u64`), optional spaces or tabs, and optionally `;` and extensions, which
/// are not interpreted but may hold no control character; lines end with CRLF. The last
/// chunk (size 0) is followed by trailer fields (`name: value`, the name a token, no
/// control characters), which are checked and dropped, and an empty line.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// Bytes at the front of the buffer already searched for the end of the current line.
    scanned: usize,
    /// Of [`Limits::chunk_extensions`], spent.
    extensions: usize,
    /// Bytes of the trailer section consumed so far (lines with their CRLF).
    trailer_bytes: usize,
    trailer_fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(usize),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// At a trailer line (or the empty line that ends the body).
    Trailer,
    Done,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Self {
            state: ChunkState::Size,
            scanned: 0,
            extensions: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Decodes what `buf` holds, appending body bytes to `body` (which must not pass
    /// `limits.body`). `Ok(true)`: the body and its trailers are complete, and what is
    /// left in `buf` followed them.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        body: &mut BytesMut,
        limits: &Limits,
    ) -> Result<bool, InvokeError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = self.line(buf, limits.chunk_line) else {
                        return if buf.len() >= limits.chunk_line + 2 {
                            Err(failed("chunk size line too long"))
                        } else {
                            Ok(false)
                        };
                    };
                    let line = &buf[..end];
                    if line.iter().copied().any(is_ctl) {
                        return Err(failed("invalid chunk size line"));
                    }
                    let size = switchboard_core::text::chunk_size(line)
                        .ok_or_else(|| failed("invalid chunk size line"))?;
                    self.extensions += end.saturating_sub(FREE_CHUNK_LINE);
                    if self.extensions > limits.chunk_extensions {
                        return Err(failed("chunk extensions too large"));
                    }
                    if size > (limits.body - body.len()) as u64 {
                        return Err(too_large());
                    }
                    buf.advance(end + 2);
                    self.state = match size {
                        0 => ChunkState::Trailer,
                        n => ChunkState::Data(n as usize),
                    };
                }
                ChunkState::Data(left) => {
                    // Copied as it arrives: the announced size is never reserved ahead.
                    let take = left.min(buf.len());
                    body.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok(false);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    match buf.first().zip(buf.get(1)) {
                        Some((b'\r', b'\n')) => {}
                        Some(_) => return Err(failed("invalid chunked body")),
                        None if buf.first().is_some_and(|&b| b != b'\r') => {
                            return Err(failed("invalid chunked body"))
                        }
                        None => return Ok(false),
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    // The line and its CRLF must fit what is left of the section's bound.
                    let left = limits.head - self.trailer_bytes;
                    let Some(max) = left.checked_sub(2) else {
                        return Err(failed("response trailers too large"));
                    };
                    let Some(end) = self.line(buf, max) else {
                        return if buf.len() >= left {
                            Err(failed("response trailers too large"))
                        } else {
                            Ok(false)
                        };
                    };
                    if end > 0 {
                        if !is_trailer_field(&buf[..end]) {
                            return Err(failed("invalid response trailer"));
                        }
                        self.trailer_fields += 1;
                        if self.trailer_fields > limits.headers {
                            return Err(failed("response has too many trailer fields"));
                        }
                    }
                    self.trailer_bytes += end + 2;
                    buf.advance(end + 2);
                    if end == 0 {
                        self.state = ChunkState::Done;
                        return Ok(true);
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }

    /// The most bytes the next read may add to a buffer holding `buffered`: within a
    /// trailer line, what keeps the section within its bound; otherwise unbounded (a
    /// size line's bound is checked on what arrived, and data is consumed as it comes).
    pub(crate) fn room(&self, buffered: usize, limits: &Limits) -> usize {
        match self.state {
            ChunkState::Trailer => (limits.head - self.trailer_bytes).saturating_sub(buffered),
            _ => usize::MAX,
        }
    }

    /// Where the line at the front of `buf` ends (the index of its CRLF), if it has
    /// ended within `max` bytes. Resumes the search where the last call stopped.
    fn line(&mut self, buf: &[u8], max: usize) -> Option<usize> {
        let window = &buf[..buf.len().min(max + 2)];
        // A CR at the end of the last search may be followed by its LF now.
        let from = self.scanned.saturating_sub(1).min(window.len());
        match window[from..].windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                self.scanned = 0;
                Some(from + i)
            }
            None => {
                self.scanned = window.len();
                None
            }
        }
    }
}

/// A trailer line: `name: value`, the name a token, no control characters.
fn is_trailer_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            colon > 0
                && line[..colon].iter().copied().all(is_tchar)
                && !line[colon + 1..].iter().copied().any(is_ctl)
        }
        None => false,
    }
}

#[cfg(test)]
mod fuzz;

fn failed(reason: &'static str) -> InvokeError {
    InvokeError::Failed(reason.into())
}

/// A status other than `2xx`, or one that cannot be read on (`101`).
fn answered(status: u16) -> InvokeError {
    InvokeError::Failed(format!("function answered HTTP {status}"))
}

pub(crate) fn too_large() -> InvokeError {
    failed("response body exceeds max_response_bytes")
}

fn send_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            "connection closed while sending"
        }
        _ => "request failed",
    }
}

fn body_error(e: &std::io::Error) -> InvokeError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => failed("connection reset mid-response"),
        std::io::ErrorKind::UnexpectedEof => failed("response body truncated"),
        _ => failed("error reading the response body"),
    }
}

/// Connect errors name the cause; at most 160 bytes of it.
fn capped(mut reason: String) -> String {
    switchboard_core::text::truncate_on_char(&mut reason, 160);
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `bytes` delivered in `pieces` cut points, as `Conn::read_answer` does.
    fn read(bytes: &[u8], cuts: &[usize], limits: Limits) -> Result<Answer, InvokeError> {
        let mut decoder = AnswerDecoder::new(limits);
        let mut buf = BytesMut::new();
        for piece in switchboard_fuzz::split_at_points(bytes, cuts) {
            buf.extend_from_slice(piece);
            if let Some(answer) = decoder.decode(&mut buf)? {
                return Ok(answer);
            }
        }
        decoder.finish(&mut buf)
    }

    #[tokio::test]
    async fn a_large_answer_leaves_no_large_buffer_in_the_pool() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request).await;
            let body = vec![b'x'; 1 << 20];
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            // Kept open, as a keep-alive server does.
            let _ = stream.read(&mut request).await;
        });
        let target = Target {
            host: "127.0.0.1".into(),
            port,
        };
        let pool = Pool::new(target, 4, Duration::from_secs(4));
        let request = b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n";
        let body = pool.send(request, 2 << 20).await.unwrap();
        assert_eq!(body.len(), 1 << 20);
        let idle = pool.inner.idle.lock();
        assert_eq!(idle.conns.len(), 1, "the connection went back to the pool");
        assert!(idle.conns[0].0.buf.capacity() <= MAX_IDLE_BUFFER);
    }

    #[test]
    fn close_wins_over_keep_alive_in_any_order() {
        for headers in [
            "connection: close\r\nconnection: keep-alive\r\n",
            "connection: keep-alive\r\nconnection: close\r\n",
            "connection: keep-alive, close\r\n",
        ] {
            for version in ["1.0", "1.1"] {
                let answer =
                    format!("HTTP/{version} 200 OK\r\n{headers}content-length: 2\r\n\r\nhi");
                let read = read(answer.as_bytes(), &[], Limits::new(64)).unwrap();
                assert!(!read.keep_alive, "{answer}");
            }
        }
    }

    #[test]
    fn a_crlf_split_between_reads_ends_the_size_line() {
        let body = b"1\r\na\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let mut chunked = Chunked::new();
            let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
            buf.extend_from_slice(&body[..cut]);
            assert!(!chunked
                .decode(&mut buf, &mut out, &Limits::new(64))
                .unwrap());
            buf.extend_from_slice(&body[cut..]);
            assert!(chunked
                .decode(&mut buf, &mut out, &Limits::new(64))
                .unwrap());
            assert_eq!(&out[..], b"a", "cut at {cut}");
        }
    }

    #[test]
    fn heads_are_never_read_past_their_bound() {
        let limits = Limits {
            head: 100,
            ..Limits::new(64)
        };
        let mut decoder = AnswerDecoder::new(limits);
        let mut buf = BytesMut::new();
        assert_eq!(decoder.room(0), 100);
        // An interim head spends the same budget as the final one.
        buf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx: ");
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 20);
        assert_eq!(decoder.room(buf.len()), 100 - 25 - 20);
        buf.extend_from_slice(&[b'x'; 63][..decoder.room(buf.len())]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(failed("response head too large"))
        );
    }

    #[test]
    fn an_error_status_hides_its_body_errors() {
        let answer = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(read(answer, &[], Limits::new(64)), Err(answered(500)));
        // Framing errors are the head's, and say so.
        let answer =
            b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n";
        assert_eq!(
            read(answer, &[], Limits::new(64)),
            Err(failed(
                "response has both content-length and transfer-encoding"
            ))
        );
    }
}

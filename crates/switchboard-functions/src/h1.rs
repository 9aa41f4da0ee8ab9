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

/// A response head larger than this fails the invocation.
const MAX_HEAD: usize = 64 * 1024;
/// Response headers parsed at most; more fail as a head too large.
const MAX_HEADERS: usize = 64;
/// Free room kept in a connection's read buffer before each read. A read that fills less
/// than this tells the runtime the socket is drained, which the idle check relies on.
const READ_ROOM: usize = 4096;
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

/// What frames the body of an answer.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
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

    /// Reads more bytes into the buffer. `Ok(false)`: end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        self.buf.reserve(READ_ROOM);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads one answer: its body, or for a status other than 2xx `function answered
    /// HTTP <status>`. The flag says whether the connection may be reused.
    async fn read_answer(
        &mut self,
        max_body: usize,
    ) -> Result<(Result<Bytes, InvokeError>, bool), InvokeError> {
        self.buf.clear();
        let (status, framing, keep_alive) = loop {
            match self.parse_head()? {
                Some(head) => break head,
                None => {
                    if self.buf.len() >= MAX_HEAD {
                        return Err(failed("response head too large"));
                    }
                    match self.fill().await {
                        Ok(true) => {}
                        Ok(false) if self.buf.is_empty() => {
                            return Err(failed("connection closed before the response"))
                        }
                        Ok(false) => return Err(failed("response is not valid HTTP")),
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            return Err(failed("connection reset before the response"))
                        }
                        Err(_) => return Err(failed("request failed")),
                    }
                }
            }
        };
        let answered =
            |status: u16| InvokeError::Failed(format!("function answered HTTP {status}"));
        let success = (200..300).contains(&status);
        // An error answer's body is read too (within the same bounds) so that its
        // connection can serve the next invocation; it is never quoted.
        let body = match self.read_body(framing, max_body).await {
            Ok(read) => read,
            Err(_) if !success => return Err(answered(status)),
            Err(e) => return Err(e),
        };
        // A body up to the close left `keep_alive` false. Bytes after the answer were
        // never asked for: do not reuse such a connection either.
        let reusable = keep_alive && self.buf.is_empty();
        Ok((
            success.then_some(body).ok_or_else(|| answered(status)),
            reusable,
        ))
    }

    /// Reads the body the head announced.
    async fn read_body(&mut self, framing: Framing, max_body: usize) -> Result<Bytes, InvokeError> {
        Ok(match framing {
            Framing::None => Bytes::new(),
            Framing::Length(n) => {
                if n > max_body as u64 {
                    return Err(too_large());
                }
                let n = n as usize;
                while self.buf.len() < n {
                    self.fill_body().await?;
                }
                let body = Bytes::copy_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                body
            }
            Framing::Chunked => self.read_chunked(max_body).await?,
            Framing::UntilClose => {
                // The first bytes may have come with the head.
                while self.buf.len() <= max_body && self.fill().await.map_err(body_error)? {}
                if self.buf.len() > max_body {
                    return Err(too_large());
                }
                self.buf.split().freeze()
            }
        })
    }

    /// Parses a final response head from the buffer and consumes it; interim (1xx)
    /// heads are consumed and skipped. `None`: more bytes are needed.
    fn parse_head(&mut self) -> Result<Option<(u16, Framing, bool)>, InvokeError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let len = match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(failed("response head too large"))
                }
                Err(_) => return Err(failed("response is not valid HTTP")),
            };
            let status = response.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                self.buf.advance(len);
                continue;
            }
            let http10 = response.version == Some(0);
            let mut keep_alive = !http10;
            let mut length: Option<u64> = None;
            let mut chunked = false;
            for h in response.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    let n = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| failed("response is not valid HTTP"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(failed("response is not valid HTTP"));
                    }
                    length = Some(n);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    // Chunked must be the last coding; only then is the length known.
                    chunked = h
                        .value
                        .rsplit(|&b| b == b',')
                        .next()
                        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                    if !chunked {
                        keep_alive = false;
                    }
                } else if h.name.eq_ignore_ascii_case("connection") {
                    for token in h.value.split(|&b| b == b',') {
                        let token = token.trim_ascii();
                        if token.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                            keep_alive = true;
                        }
                    }
                }
            }
            let framing = if status == 204 || status == 304 {
                Framing::None
            } else if chunked {
                Framing::Chunked
            } else if let Some(n) = length {
                Framing::Length(n)
            } else {
                keep_alive = false;
                Framing::UntilClose
            };
            self.buf.advance(len);
            return Ok(Some((status, framing, keep_alive)));
        }
    }

    /// Decodes a chunked body (trailers are read and ignored).
    async fn read_chunked(&mut self, max_body: usize) -> Result<Bytes, InvokeError> {
        let mut body = BytesMut::new();
        loop {
            // The size line: hex digits, optional extensions, CRLF.
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.buf.len() > 1024 {
                    return Err(failed("error reading the response body"));
                }
                self.fill_body().await?;
            };
            let size = switchboard_core::text::chunk_size(&self.buf[..line_end])
                .ok_or_else(|| failed("error reading the response body"))?;
            self.buf.advance(line_end + 2);
            if size == 0 {
                // Trailer lines up to an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if self.buf.len() > MAX_HEAD {
                            return Err(failed("error reading the response body"));
                        }
                        self.fill_body().await?;
                    };
                    self.buf.advance(end + 2);
                    if end == 0 {
                        return Ok(body.freeze());
                    }
                }
            }
            if size > (max_body - body.len()) as u64 {
                return Err(too_large());
            }
            let size = size as usize;
            while self.buf.len() < size + 2 {
                self.fill_body().await?;
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(failed("error reading the response body"));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
        }
    }

    /// [`fill`](Self::fill) while a body is read: the end of the stream is a truncation.
    async fn fill_body(&mut self) -> Result<(), InvokeError> {
        match self.fill().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(failed("response body truncated")),
            Err(e) => Err(body_error(e)),
        }
    }
}

fn failed(reason: &'static str) -> InvokeError {
    InvokeError::Failed(reason.into())
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

fn body_error(e: std::io::Error) -> InvokeError {
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

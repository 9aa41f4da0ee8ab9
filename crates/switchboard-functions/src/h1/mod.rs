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
//!
//! The client is generic over the [`Stream`] it speaks over (plain TCP, or TLS over TCP
//! for `https://`), and monomorphic in it, so the plain path pays nothing for TLS.
//!
//! The parts: this file holds the pool and the connection I/O; `decode.rs` the answer's
//! head and framing ([`AnswerDecoder`]); `chunked.rs` the chunked body ([`Chunked`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::tls::TlsFailure;
use crate::InvokeError;

mod chunked;
mod decode;

pub(crate) use self::chunked::Chunked;
#[cfg(test)]
use self::decode::Answer;
pub(crate) use self::decode::{AnswerDecoder, Limits};

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

/// What the client speaks over: a plain TCP stream or a TLS stream over one. The pool
/// is monomorphic in it, so the plain path pays nothing for TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether nothing arrived while the connection was idle: no close, no stray bytes.
    /// Never waits.
    fn is_quiet(&mut self) -> bool;

    /// The TLS cause of an I/O error, if the stream is TLS and the error is one (a
    /// TLS 1.3 server refuses a client certificate after our side of the handshake).
    fn tls_failure(_error: &std::io::Error) -> Option<TlsFailure> {
        None
    }
}

impl Stream for TcpStream {
    /// Uses the readiness the runtime already has; a read that drained the socket
    /// cleared it.
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(_) => {
                // Possibly stale readiness: look once.
                let mut byte = [0u8; 1];
                matches!(self.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

impl Stream for TlsStream<TcpStream> {
    /// A quiet socket is quiet. Otherwise the records that arrived are read through
    /// TLS once: a TLS 1.3 session ticket or key update yields no application byte
    /// (`Pending`) and keeps the connection; close_notify, EOF, a byte or an error drop it.
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if self.get_ref().0.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(self).poll_read(&mut cx, &mut buf).is_pending()
    }

    fn tls_failure(error: &std::io::Error) -> Option<TlsFailure> {
        TlsFailure::from_io(error)
    }
}

/// A pool of keep-alive connections to one function.
pub(crate) struct Pool<S> {
    inner: Arc<PoolInner<S>>,
}

struct PoolInner<S> {
    idle: Mutex<Idle<S>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle<S> {
    /// Oldest first; checkout takes the newest.
    conns: Vec<(Conn<S>, Instant)>,
    reaper: bool,
}

struct Conn<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: Stream> Pool<S> {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(PoolInner {
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
    /// the connection is reused as after a success. Without an idle connection,
    /// `connect` makes a new one.
    pub async fn send<F>(
        &self,
        request: &[u8],
        max_body: usize,
        connect: impl FnOnce() -> F,
    ) -> Result<Bytes, InvokeError>
    where
        F: Future<Output = Result<S, InvokeError>>,
    {
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            None => Conn {
                stream: connect().await?,
                buf: BytesMut::new(),
            },
        };
        // The flush matters for TLS, which may hold records back when the socket would
        // block; on a TcpStream it returns at once.
        let written = match conn.stream.write_all(request).await {
            Ok(()) => conn.stream.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| io_failed::<S>(&e, || InvokeError::Failed(send_reason(&e).into())))?;
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

    fn checkout(&self) -> Option<Conn<S>> {
        let mut idle = self.inner.idle.lock();
        let now = Instant::now();
        while let Some((mut conn, since)) = idle.conns.pop() {
            if now.duration_since(since) >= self.inner.idle_timeout {
                // The rest are older still.
                idle.conns.clear();
                return None;
            }
            if conn.stream.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn<S>) {
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
}

/// Closes connections idle for longer than the timeout; ends when none are idle.
async fn reap<S>(pool: Weak<PoolInner<S>>) {
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

impl<S: Stream> Conn<S> {
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
                Err(e) => return Err(io_failed::<S>(&e, || decoder.io_failed(&e))),
            }
        };
        // Bytes after the answer were never asked for: do not reuse such a connection.
        let reusable = answer.keep_alive && self.buf.is_empty();
        Ok((answer.into_result(), reusable))
    }
}

/// An I/O error: its TLS cause if it has one, else `otherwise`.
fn io_failed<S: Stream>(
    e: &std::io::Error,
    otherwise: impl FnOnce() -> InvokeError,
) -> InvokeError {
    S::tls_failure(e).map_or_else(otherwise, InvokeError::Tls)
}

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

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;

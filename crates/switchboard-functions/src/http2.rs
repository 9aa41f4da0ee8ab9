//! HTTP/2 for `http` functions, from the `h2` crate (hyperium): a pool of connections to
//! one function, each shared by many invocations as streams. Used for cleartext HTTP/2
//! with prior knowledge (h2c, `http_version = "2"`); generic over the stream so a TLS
//! stream that negotiated `h2` can be [adopted](Pool::adopt) the same way.
//!
//! Why the library and not our own client: `h2` is fuzzed upstream and bounds what a
//! hostile server can make us hold (one pending PING and SETTINGS acknowledgement at a
//! time, read no further until it is written; CONTINUATION frames counted; header lists
//! capped), which the earlier in-house client did not.
//!
//! Shape: [`Pool::adopt`] does the handshake and spawns the `Connection` driver task; an
//! invocation clones the connection's `SendRequest` and opens a stream. A new connection
//! opens only when every open one is at the server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
//! A stream the server refused unprocessed (`REFUSED_STREAM`, or a graceful `GOAWAY`
//! below it) is sent again, at most [`MAX_RETRIES`] times. A connection without streams
//! for the idle timeout is closed by dropping its handle: `h2` then says `GOAWAY` and
//! closes. Dropping an invocation (a timeout) resets its stream with `CANCEL`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::Reason;
use hyper::header::CONTENT_LENGTH;
use hyper::{HeaderMap, Method, Request, Uri};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::h1::too_large;
use crate::tls::TlsFailure;
use crate::InvokeError;

/// The receive window of each stream, advertised in `SETTINGS_INITIAL_WINDOW_SIZE`.
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's receive window.
const CONN_WINDOW: u32 = 16 << 20;
/// Decoded answer headers at most (`SETTINGS_MAX_HEADER_LIST_SIZE`); more fail the stream.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// How often idle connections are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Invocations retried at most after their stream was refused unprocessed.
const MAX_RETRIES: usize = 3;

/// Why a connection failed whose server never started speaking HTTP/2.
const NOT_H2: &str = "the function did not answer in HTTP/2: does it take HTTP/2 with prior \
                      knowledge (http_version = \"2\")?";

/// What the server's first bytes were: not yet known, an HTTP/2 `SETTINGS` frame, or
/// something else (an HTTP/1.1 answer to our preface).
const FIRST_UNKNOWN: u8 = 0;
const FIRST_SETTINGS: u8 = 1;
const FIRST_OTHER: u8 = 2;

/// A pool of HTTP/2 connections to one function.
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is being opened, so a burst of invocations opens one.
    connecting: tokio::sync::Mutex<()>,
    builder: h2::client::Builder,
    idle_timeout: Duration,
    /// Set while a reaper task runs; changed only under `conns`' lock.
    reaping: AtomicBool,
}

/// One connection: the handle streams are opened on. The driver task holds only
/// `state`, so dropping the last `Conn` (idle close, pool dropped) ends the connection.
pub(crate) struct Conn {
    send: SendRequest<Bytes>,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    state: Arc<ConnState>,
}

struct ConnState {
    /// The driver finished: the connection is gone.
    dead: AtomicBool,
    /// No new streams: the server said `GOAWAY`, or the connection failed.
    closing: AtomicBool,
    /// `FIRST_*`: how the server's byte stream began.
    first: AtomicU8,
    /// Over TLS: the first TLS error the stream met (a client certificate refused after
    /// a TLS 1.3 handshake arrives as an alert on the first read). `h2` keeps only the
    /// text of I/O errors, so it is caught here, under `h2`, to be reported as itself.
    tls: OnceLock<TlsFailure>,
}

/// Why a request did not get its answer on a connection.
enum Fail {
    /// The server did not process the stream: safe to send again.
    Refused,
    Error(InvokeError),
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        let mut builder = h2::client::Builder::new();
        builder
            .enable_push(false)
            .max_concurrent_streams(0)
            .max_header_list_size(MAX_HEADER_LIST)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW);
        Self {
            inner: Arc::new(PoolInner {
                conns: Mutex::new(Vec::new()),
                connecting: tokio::sync::Mutex::new(()),
                builder,
                idle_timeout,
                reaping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `POST uri` with `headers` and `body`, and reads the answer's body, keeping at
    /// most `max_body` bytes. A status other than 2xx fails with `function answered HTTP
    /// <status>`. `connect` opens a stream to the function when no connection has room.
    pub async fn send<T, F, Fut>(
        &self,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
        max_body: usize,
        connect: F,
    ) -> Result<Bytes, InvokeError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, InvokeError>>,
    {
        let mut retries = 0;
        loop {
            let conn = match self.pick() {
                Some(conn) => conn,
                None => {
                    let _connecting = self.inner.connecting.lock().await;
                    match self.pick() {
                        Some(conn) => conn,
                        None => {
                            let conn = self.adopt(connect().await?).await?;
                            conn.in_flight.fetch_add(1, Ordering::Relaxed);
                            conn
                        }
                    }
                }
            };
            let _stream = InFlight(&conn);
            let mut request = Request::new(());
            *request.method_mut() = Method::POST;
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            match conn.request(request, body.clone(), max_body).await {
                Ok(answer) => return Ok(answer),
                Err(Fail::Error(e)) => return Err(e),
                Err(Fail::Refused) => {
                    retries += 1;
                    if retries > MAX_RETRIES {
                        return Err(failed("function refused the request"));
                    }
                }
            }
        }
    }

    /// Starts HTTP/2 on `io` (the preface and `SETTINGS`), spawns the task that drives
    /// the connection, and adds it to the pool.
    pub async fn adopt<T>(&self, io: T) -> Result<Arc<Conn>, InvokeError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState {
            dead: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            first: AtomicU8::new(FIRST_UNKNOWN),
            tls: OnceLock::new(),
        });
        let io = Sniff::new(io, Arc::clone(&state));
        let (send, connection) = self
            .inner
            .builder
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| failed_owned(format!("HTTP/2 handshake failed: {e}")))?;
        let pool = Arc::downgrade(&self.inner);
        let driver_state = Arc::clone(&state);
        tokio::spawn(async move {
            let result = connection.await;
            driver_state.dead.store(true, Ordering::Release);
            if let Some(pool) = pool.upgrade() {
                pool.conns
                    .lock()
                    .retain(|c| !Arc::ptr_eq(&c.state, &driver_state));
            }
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP/2 connection to the function ended");
            }
        });
        let conn = Arc::new(Conn {
            send,
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            state,
        });
        let mut conns = self.inner.conns.lock();
        conns.push(Arc::clone(&conn));
        if !self.inner.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(&self.inner)));
        }
        Ok(conn)
    }

    /// An open connection with room for one more stream, its stream counted.
    pub fn pick(&self) -> Option<Arc<Conn>> {
        let conns = self.inner.conns.lock();
        let conn = conns.iter().find(|c| c.has_room())?;
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Arc::clone(conn))
    }
}

/// Closes connections idle for longer than the timeout; ends when the pool is empty.
async fn reap(pool: Weak<PoolInner>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut conns = pool.conns.lock();
        conns.retain(|c| {
            !c.state.dead.load(Ordering::Acquire)
                && !c.state.closing.load(Ordering::Relaxed)
                && (c.in_flight.load(Ordering::Relaxed) > 0
                    || c.idle_since.lock().elapsed() < pool.idle_timeout)
        });
        if conns.is_empty() {
            pool.reaping.store(false, Ordering::Relaxed);
            return;
        }
    }
}

/// One stream counted on its connection while the invocation uses it.
struct InFlight<'a>(&'a Conn);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

impl Conn {
    fn has_room(&self) -> bool {
        !self.state.dead.load(Ordering::Acquire)
            && !self.state.closing.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) < self.send.current_max_send_streams()
    }

    /// Opens a stream, sends the request, and reads the answer.
    async fn request(
        &self,
        request: Request<()>,
        body: Bytes,
        max_body: usize,
    ) -> Result<Bytes, Fail> {
        // Nothing has been sent while these fail: the connection is closing or gone.
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| self.unsent(&e))?;
        let end = body.is_empty();
        let (response, mut stream) = send
            .send_request(request, end)
            .map_err(|e| self.unsent(&e))?;
        if !end {
            // Queued inside `h2`, sent as the server's windows allow.
            stream.send_data(body, true).map_err(|e| self.broke(&e))?;
        }
        let response = response.await.map_err(|e| self.broke(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Fail::Error(failed_owned(format!(
                "function answered HTTP {}",
                status.as_u16()
            ))));
        }
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > max_body as u64) {
            return Err(Fail::Error(too_large()));
        }
        let mut body = response.into_body();
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| self.broke(&e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            let held = first.as_ref().map_or(0, Bytes::len) + rest.len();
            if held + chunk.len() > max_body {
                // Dropping the stream resets it.
                return Err(Fail::Error(too_large()));
            }
            match &first {
                None => first = Some(chunk),
                Some(f) => {
                    if rest.is_empty() {
                        rest.extend_from_slice(f);
                    }
                    rest.extend_from_slice(&chunk);
                }
            }
        }
        Ok(if rest.is_empty() {
            first.unwrap_or_default()
        } else {
            rest.freeze()
        })
    }

    /// Whether the server began with `SETTINGS`, as every HTTP/2 server does at once. A
    /// connection that fails before that (closed, or an HTTP/1.1 answer) was never HTTP/2.
    fn spoke_h2(&self) -> bool {
        self.state.first.load(Ordering::Relaxed) == FIRST_SETTINGS
    }

    /// The TLS failure that broke the connection, if that is what happened.
    fn tls_failure(&self) -> Option<Fail> {
        let failure = self.state.tls.get()?.clone();
        Some(Fail::Error(InvokeError::Tls(failure)))
    }

    /// What failed the whole connection, whatever `h2` says of the stream: a TLS error,
    /// or a server that does not speak HTTP/2.
    fn fatal(&self) -> Option<Fail> {
        self.tls_failure()
            .or_else(|| (!self.spoke_h2()).then(|| Fail::Error(failed(NOT_H2))))
    }

    /// A failure before the request went out: a retry is safe, unless the connection
    /// itself failed.
    fn unsent(&self, e: &h2::Error) -> Fail {
        if let Some(f) = self.fatal() {
            return f;
        }
        tracing::debug!(error = %e, "HTTP/2 stream not opened; retrying elsewhere");
        self.state.closing.store(true, Ordering::Relaxed);
        Fail::Refused
    }

    /// A failure once the request may have gone out.
    fn broke(&self, e: &h2::Error) -> Fail {
        if let Some(f) = self.fatal() {
            return f;
        }
        let reason = e.reason();
        if e.is_remote() {
            if e.is_reset() && reason == Some(Reason::REFUSED_STREAM) {
                return Fail::Refused;
            }
            // A graceful GOAWAY fails only the streams above its last stream id, which the
            // server never processed.
            if e.is_go_away() && reason == Some(Reason::NO_ERROR) {
                self.state.closing.store(true, Ordering::Relaxed);
                return Fail::Refused;
            }
            if e.is_reset() {
                return Fail::Error(failed_owned(format!(
                    "function reset the stream (HTTP/2 error code {})",
                    u32::from(reason.unwrap_or(Reason::INTERNAL_ERROR))
                )));
            }
        }
        if e.is_io() {
            return Fail::Error(failed("connection reset mid-response"));
        }
        Fail::Error(match reason {
            Some(reason) => failed_owned(format!("function broke HTTP/2 ({reason:?})")),
            None => failed_owned(format!("HTTP/2 error: {e}")),
        })
    }
}

/// The connection's stream as `h2` sees it: notes how the server's bytes begin, and
/// gathers `h2`'s writes into one buffer that goes out in as few writes as possible.
///
/// `h2` writes and flushes whatever is queued each time its task runs, and with streams
/// opened from many tasks it runs once per request: one `writev` per invocation, where
/// the HTTP/1.1 pool and our earlier HTTP/2 client wrote many requests per system call.
/// So the first flush of a batch yields once (the task is woken again at the back of the
/// run queue) and the invocations scheduled meanwhile add their frames to the same write.
/// What waits is bounded by [`WRITE_BUFFER`]; an idle connection's lone request waits
/// for one turn of the scheduler, not for a timer.
struct Sniff<T> {
    io: T,
    /// Bytes of the server's stream looked at, up to the frame type (the 4th byte).
    seen: u8,
    state: Arc<ConnState>,
    /// Written by `h2`, not yet by us.
    out: Vec<u8>,
    /// How much of `out` has gone out.
    sent: usize,
    /// The pending flush has already yielded once.
    yielded: bool,
}

/// At most this much of `h2`'s output waits in [`Sniff`]: more is written out first.
const WRITE_BUFFER: usize = 64 * 1024;

impl<T> Sniff<T> {
    /// Notes a TLS error (the first one) so the invocations it fails report it as such.
    fn note<V>(&self, poll: Poll<std::io::Result<V>>) -> Poll<std::io::Result<V>> {
        if let Poll::Ready(Err(e)) = &poll {
            if let Some(tls) = TlsFailure::from_io(e) {
                let _ = self.state.tls.set(tls);
            }
        }
        poll
    }

    fn new(io: T, state: Arc<ConnState>) -> Self {
        Self {
            io,
            seen: 0,
            state,
            out: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Sniff<T> {
    /// Writes `out` until it is empty (or the socket is full: `Pending`).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            let poll = Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]);
            match self.note(poll) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniff<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let poll = self.note(poll);
        if self.seen < 4 {
            let new = &buf.filled()[before..];
            let want = 3 - usize::from(self.seen);
            if let Some(&kind) = new.get(want) {
                let first = if kind == 0x4 {
                    FIRST_SETTINGS
                } else {
                    FIRST_OTHER
                };
                self.state.first.store(first, Ordering::Relaxed);
                self.seen = 4;
            } else {
                self.seen += new.len() as u8;
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniff<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.out.len() >= WRITE_BUFFER {
            std::task::ready!(self.poll_drain(cx))?;
        }
        let n = buf.len().min(WRITE_BUFFER - self.out.len());
        self.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.sent < self.out.len() {
            if !self.yielded && self.out.len() < WRITE_BUFFER {
                // Let the tasks already scheduled add their requests to this write.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            std::task::ready!(self.poll_drain(cx))?;
        }
        self.yielded = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn failed(reason: &str) -> InvokeError {
    InvokeError::Failed(reason.to_owned())
}

fn failed_owned(reason: String) -> InvokeError {
    InvokeError::Failed(reason)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sniff<T>(io: T) -> Sniff<T> {
        Sniff::new(
            io,
            Arc::new(ConnState {
                dead: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                first: AtomicU8::new(FIRST_UNKNOWN),
                tls: OnceLock::new(),
            }),
        )
    }

    #[tokio::test]
    async fn writes_before_a_flush_go_out_together_after_one_yield() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = sniff(near);
        io.write_all(b"first frame ").await.unwrap();
        io.write_all(b"second frame").await.unwrap();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        // Nothing has gone out yet; the first flush yields and wakes its task again.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        io.write_all(b" third").await.unwrap();
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut got = vec![0; 64];
        let n = far.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"first frame second frame third");
        // With nothing buffered a flush passes straight through.
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_holds_at_most_the_write_buffer() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut io = sniff(near);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let chunk = vec![7u8; 1000];
        let mut accepted = 0;
        while let Poll::Ready(n) = Pin::new(&mut io).poll_write(&mut cx, &chunk) {
            accepted += n.unwrap();
            assert!(io.out.len() - io.sent <= WRITE_BUFFER);
            assert!(accepted <= WRITE_BUFFER + 4096 + chunk.len(), "unbounded");
        }
        // Stalled: the buffer and the pipe are full. A full buffer flushes without
        // yielding, and stays pending until the peer reads.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        io.shutdown().await.unwrap();
        drop(io);
        let all = reader.await.unwrap();
        assert_eq!(all.len(), accepted);
        assert!(all.iter().all(|&b| b == 7));
    }
}

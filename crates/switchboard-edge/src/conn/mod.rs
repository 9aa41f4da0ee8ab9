//! The per-connection task: one hand-written future per connection that reads frames,
//! invokes functions in order, drains the outbound queue, writes, and keeps time.
//!
//! Why not `select!` over split halves: a single state machine polls the socket for reading
//! and writing in the same `poll`, needs no lock or `Arc` around the stream, and holds no
//! buffer while the connection is idle (the read and write buffers are freed when empty;
//! a read borrows a stack buffer). One timer serves every deadline: it is armed for the
//! earliest and re-checked when it fires, so activity never touches the timer wheel.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchboard_core::event::Payload;
use switchboard_core::limit::TokenBucket;
use switchboard_functions::InvokeFuture;
use switchboard_ws::{close_code, Decoder, Encoder, Message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{debug, info};

use crate::inner::EdgeInner;
use crate::session::{self, Session};
use crate::slot::Slot;
use crate::table::{CloseRequest, ConnHandle, Outbound};
use crate::target::RouteTarget;

mod end;
mod invoke;
mod timers;

use end::End;
use invoke::finish_in_flight;

/// Stop reading from the socket while this much is waiting to be written: the client
/// then feels TCP backpressure instead of the gateway buffering without bound.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Messages read but not yet handed to a function; beyond it reading pauses.
const INBOUND_MAX: usize = 16;
/// Invocations of `parallel` routes in flight at once for one connection.
const PARALLEL_MAX: usize = 16;
/// How long a session waits to acknowledge client messages if 32 have not accumulated.
const ACK_DELAY: Duration = Duration::from_millis(200);
/// How long to wait for the client's close frame after sending ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read per read call when the read buffer has no room.
const READ_CHUNK: usize = 4096;
/// Empty buffers up to this size are kept between messages of a busy connection (no
/// allocation per message); larger ones, and all of them once idle, are freed.
const KEEP_BUFFER: usize = 8 * 1024;

struct Closing {
    deadline: Instant,
    close_received: bool,
}

struct InFlight {
    future: InvokeFuture,
    two_way: bool,
    parallel: bool,
    request_id: String,
    target: RouteTarget,
    started: Instant,
}

pub(crate) struct Conn<S> {
    io: S,
    edge: Arc<EdgeInner>,
    handle: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    decoder: Decoder,
    encoder: Encoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Messages waiting for their invocation, already routed (`None`: no route), with
    /// their session sequence number (0 without a session).
    inbound: VecDeque<(Payload, Option<RouteTarget>, u64)>,
    in_flight: Vec<InFlight>,
    rate: Option<TokenBucket>,
    /// Under `access.messages_per_sec_per_user`: the user's bucket (`None`: no user), as
    /// of the handle's `user_changes` count.
    user_bucket: Option<(u32, Option<crate::door::UserBucket>)>,
    timer: Pin<Box<Sleep>>,
    started: Instant,
    /// When the connection's credential expires (close 1008).
    expires: Option<Instant>,
    last_rx: Instant,
    ping_sent_at: Option<Instant>,
    write_stalled_since: Option<Instant>,
    closing: Option<Closing>,
    /// The close code and reason recorded for metrics and `$disconnect`.
    outcome: Option<(u16, Cow<'static, str>)>,
    /// Held for its `Drop`: the connection's place under `max_connections`.
    _slot: Slot,
    /// The `switchboard.v1` session, if the client negotiated one.
    session: Option<Box<Session>>,
    /// Highest client sequence number queued here (duplicates at or below are dropped).
    highest_queued: u64,
    /// When to acknowledge client messages if 32 have not accumulated first.
    ack_due: Option<Instant>,
    /// The socket died without a close handshake: a session may be parked for resume.
    resumable_end: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(
        io: S,
        leftover: bytes::Bytes,
        edge: Arc<EdgeInner>,
        handle: Arc<ConnHandle>,
        rx: mpsc::Receiver<Outbound>,
        (decoder, encoder): (Decoder, Encoder),
        slot: Slot,
    ) -> Self {
        let now = Instant::now();
        let rate = (edge.settings.messages_per_sec > 0).then(|| {
            TokenBucket::new(
                edge.settings.messages_per_sec,
                edge.settings.messages_burst,
                edge.now_ns(),
            )
        });
        let expires = handle.expires_at_ms().map(|ms| {
            let left = ms.saturating_sub(edge.epoch_ms());
            now + Duration::from_millis(left)
        });
        Self {
            io,
            handle,
            rx,
            decoder,
            encoder,
            read_buf: BytesMut::from(&leftover[..]),
            write_buf: BytesMut::new(),
            inbound: VecDeque::new(),
            in_flight: Vec::new(),
            rate,
            user_bucket: None,
            timer: Box::pin(sleep_until(now + edge.settings.idle_timeout)),
            started: now,
            expires,
            last_rx: now,
            ping_sent_at: None,
            write_stalled_since: None,
            closing: None,
            outcome: None,
            _slot: slot,
            session: None,
            highest_queued: 0,
            ack_due: None,
            resumable_end: false,
            edge,
        }
    }

    /// Starts a `switchboard.v1` session on this socket: the hello frame, and for a resume
    /// (`replay_after` = the client's last received sequence) the replay of what it missed.
    pub(crate) fn attach_session(
        &mut self,
        mut session: Box<Session>,
        replay_after: Option<u64>,
        started: Option<Instant>,
    ) {
        let window = self
            .edge
            .settings
            .resume
            .as_ref()
            .map_or(0, |r| r.window.as_secs());
        let hello = session.hello(
            self.handle.info.id.encode().as_str(),
            replay_after.is_some(),
            window,
        );
        self.encoder
            .message(true, hello.as_bytes(), &mut self.write_buf);
        if let Some(after) = replay_after {
            session.ack(after);
            for (wire, binary) in session.replay_after(after) {
                self.encoder.message(!binary, &wire, &mut self.write_buf);
            }
        }
        if let Some(t) = started {
            self.started = t;
        }
        self.highest_queued = session.last_client_seq;
        self.session = Some(session);
    }

    /// Runs the connection to its end, then unregisters it and invokes `$disconnect`.
    pub(crate) async fn run(mut self) {
        let id = self.handle.info.id;
        poll_fn(|cx| self.poll_conn(cx)).await;
        // Best effort: push out what is buffered (our close frame) and end the stream.
        if !self.write_buf.is_empty() || self.closing.is_some() {
            let io = &mut self.io;
            let buf = &mut self.write_buf;
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                io.write_all_buf(buf).await?;
                io.shutdown().await
            })
            .await;
        }
        let parkable = self.resumable_end
            && self.handle.close_requested().is_none()
            && self.session.as_ref().is_some_and(|s| !s.overflowed)
            && !self.edge.is_shutting_down();
        if parkable {
            self.park();
            return;
        }
        let (code, reason) = self
            .outcome
            .take()
            .unwrap_or((close_code::ABNORMAL, Cow::Borrowed("connection lost")));
        let edge = self.edge.clone();
        if self.session.is_some() {
            edge.forget_session(id);
        }
        let extension = edge.table.extension_of(&self.handle);
        edge.record(&self.handle, false);
        edge.table.remove(&id);
        edge.metrics.connections_open.dec();
        edge.metrics
            .closes
            .get_or_create(&crate::metrics::CodeLabel { code })
            .inc();
        let lived = self.started.elapsed();
        info!(conn = %id, code, reason = %reason, secs = lived.as_secs_f64(), "connection closed");
        let info = self.handle.info.clone();
        let in_flight = std::mem::take(&mut self.in_flight);
        // Gives the connection slot back.
        drop(self);
        if edge.is_shutting_down() {
            // `$disconnect` comes after the connection's other invocations, as always.
            finish_in_flight(&edge, id, in_flight).await;
        } else {
            // The client left: what it started is cancelled with it.
            drop(in_flight);
        }
        edge.invoke_disconnect(info, extension, code, reason.into_owned())
            .await;
    }

    /// The socket died but the session may be resumed: keep the connection's queue,
    /// session and slot on its handle for the window; invocations already running finish
    /// and their answers wait in the queue.
    fn park(self) {
        let Conn {
            edge,
            handle,
            rx,
            in_flight,
            session,
            _slot,
            started,
            ..
        } = self;
        for f in in_flight {
            let (edge, id) = (edge.clone(), handle.info.id);
            tokio::spawn(async move {
                if let (Ok(resp), true) = (f.future.await, f.two_way) {
                    if let Some(body) = resp.body {
                        // The session may have moved to another node meanwhile.
                        edge.deliver(id, body.data, body.binary);
                    }
                }
            });
        }
        let Some(session) = session else { return };
        info!(
            conn = %handle.info.id,
            window_secs = edge
                .settings
                .resume
                .as_ref()
                .map_or(0, |r| r.window.as_secs()),
            "socket lost: session parked for resume"
        );
        *handle.parked.lock() = Some(Box::new(session::Parked {
            session,
            rx,
            slot: _slot,
            started,
            kept: false,
            changed: false,
        }));
        edge.watch_parked(handle);
    }

    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.handle.register_waker(cx.waker());
        for _ in 0..64 {
            let mut progress = false;
            if self.closing.is_none() {
                let req = self.handle.close_requested();
                if let Some(req) = req.filter(|r| !self.holds_for_answer(*r)) {
                    let (code, reason) = req.code_and_reason();
                    self.start_close(code, reason);
                    if req == CloseRequest::SlowConsumer {
                        self.edge.metrics.outbound_queue_drops.inc();
                        // It is not reading: don't wait long for its close frame.
                        if let Some(c) = &mut self.closing {
                            c.deadline = Instant::now() + Duration::from_secs(1);
                        }
                    }
                    progress = true;
                }
            }
            match self.poll_write(cx) {
                Ok(p) => progress |= p,
                Err(end) => return self.end(end),
            }
            if let Some(c) = &self.closing {
                if self.write_buf.is_empty() && c.close_received {
                    return Poll::Ready(());
                }
            }
            match self.poll_read(cx) {
                Ok(p) => progress |= p,
                Err(end) => return self.end(end),
            }
            progress |= self.poll_invocations(cx);
            progress |= self.poll_outbound(cx);
            match self.poll_timers(cx) {
                Ok(p) => progress |= p,
                Err(end) => return self.end(end),
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Give other tasks a turn; we still have work.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes what is buffered. `Err`: the socket failed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        let mut progress = false;
        while !self.write_buf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.write_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(End::WriteFailed),
                Poll::Ready(Ok(n)) => {
                    self.write_buf.advance(n);
                    self.write_stalled_since = None;
                    progress = true;
                }
                Poll::Pending => {
                    self.write_stalled_since.get_or_insert_with(Instant::now);
                    return Ok(progress);
                }
            }
        }
        if progress {
            // TLS buffers internally; a plain socket's flush is a no-op.
            if let Poll::Ready(Err(_)) = Pin::new(&mut self.io).poll_flush(cx) {
                // The peer is gone just as when a write fails: a session may resume.
                return Err(End::WriteFailed);
            }
            // Keep a small buffer for the next message; give a large one back (the idle
            // housekeeping in `poll_timers` frees the small one too).
            if self.write_buf.capacity() > KEEP_BUFFER {
                self.write_buf = BytesMut::new();
            }
        }
        Ok(progress)
    }

    fn can_read(&self) -> bool {
        self.write_buf.len() < WRITE_HIGH_WATER
            && self.inbound.len() < INBOUND_MAX
            && !self.closing.as_ref().is_some_and(|c| c.close_received)
    }

    /// Reads and decodes what the socket has. `Err`: the connection is over.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        let mut progress = false;
        // Bytes may already be buffered (handshake leftovers, or a pause for backpressure).
        if !self.read_buf.is_empty() && self.can_read() {
            progress |= self.decode_buffered();
        }
        while self.can_read() {
            let spare = self.read_buf.capacity() - self.read_buf.len();
            let n = if spare >= READ_CHUNK {
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf)
                {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(_)) => 0,
                    Poll::Pending => break,
                }
            } else {
                // Not zeroed: this runs for every read, including the last one that
                // finds the socket empty.
                let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut rb = ReadBuf::uninit(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        self.read_buf.extend_from_slice(rb.filled());
                        rb.filled().len()
                    }
                    Poll::Ready(Err(_)) => 0,
                    Poll::Pending => break,
                }
            };
            if n == 0 {
                return Err(End::ReadClosed);
            }
            progress = true;
            self.last_rx = Instant::now();
            self.handle
                .set_last_active_ms(self.edge.epoch_ms_at(self.last_rx));
            self.decode_buffered();
        }
        if self.read_buf.is_empty() && self.read_buf.capacity() > KEEP_BUFFER {
            self.read_buf = BytesMut::new();
        }
        Ok(progress)
    }

    /// Decodes and acts on the complete frames buffered; whether any was. A protocol
    /// error starts the close rather than ending the task, so the peer gets our code.
    fn decode_buffered(&mut self) -> bool {
        let mut progress = false;
        while self.can_read() {
            let msg = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    debug!(conn = %self.handle.info.id, error = %e, "protocol error");
                    self.read_buf.clear();
                    self.start_close(e.code, e.reason);
                    // Stop reading: a peer that broke the protocol gets no more of our time.
                    if let Some(c) = &mut self.closing {
                        c.close_received = true;
                    }
                    return true;
                }
            };
            progress = true;
            // Any frame is activity; `last_rx` was set when its bytes were read.
            self.ping_sent_at = None;
            match msg {
                Message::Ping(p) => {
                    if self.closing.is_none() {
                        self.encoder.ping_pong(true, &p, &mut self.write_buf);
                    }
                }
                Message::Pong(_) => {}
                Message::Close(frame) => {
                    let (code, reason) = match &frame {
                        Some((c, r)) => (*c, String::from_utf8_lossy(r).into_owned()),
                        None => (close_code::NO_STATUS, String::new()),
                    };
                    // 4000 from a session client means "detach": it gave up on this
                    // socket (browsers cannot drop one without a close frame) and will
                    // resume on another, so the session is parked, not ended.
                    if code == session::DETACH && self.session.is_some() && self.closing.is_none() {
                        self.resumable_end = true;
                    }
                    match &mut self.closing {
                        Some(c) => c.close_received = true,
                        None => {
                            // Echo the client's code, as RFC 6455 §5.5.1 suggests.
                            self.encoder.close(code, "", &mut self.write_buf);
                            self.set_outcome(code, reason);
                            self.closing = Some(Closing {
                                deadline: Instant::now() + CLOSE_TIMEOUT,
                                close_received: true,
                            });
                        }
                    }
                    return true;
                }
                Message::Text(data) | Message::Binary(data) if self.closing.is_some() => {
                    let _ = data;
                }
                Message::Text(data) => self.on_message(Payload {
                    data,
                    binary: false,
                }),
                Message::Binary(data) => self.on_message(Payload { data, binary: true }),
            }
        }
        progress
    }

    fn send_message(&mut self, data: &[u8], binary: bool) {
        let m = &self.edge.metrics;
        m.messages_out.inc();
        m.bytes_out.inc_by(data.len() as u64);
        match self.session.as_mut() {
            Some(session) => {
                let (wire, binary) = session.frame(data, binary);
                self.encoder.message(!binary, &wire, &mut self.write_buf);
            }
            None => self.encoder.message(!binary, data, &mut self.write_buf),
        }
    }

    /// Acknowledges every client message handed on so far.
    fn send_ack(&mut self) {
        self.ack_due = None;
        if let Some(session) = self.session.as_mut() {
            session.unacked_client = 0;
            let ack = format!("a{}", session.last_client_seq);
            self.encoder
                .message(true, ack.as_bytes(), &mut self.write_buf);
        }
    }

    /// Moves queued messages into the write buffer while there is room.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while self.closing.is_none() && self.write_buf.len() < WRITE_HIGH_WATER {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => {
                    self.handle.dequeued(out.data.len());
                    self.send_message(&out.data, out.binary);
                    progress = true;
                }
                _ => break,
            }
        }
        progress
    }

    fn start_close(&mut self, code: u16, reason: &'static str) {
        if self.closing.is_some() {
            return;
        }
        self.encoder.close(code, reason, &mut self.write_buf);
        self.set_outcome(code, reason);
        self.inbound.clear();
        let mut deadline = Instant::now() + CLOSE_TIMEOUT;
        if let Some(drain) = self.edge.drain.deadline() {
            // On shutdown the client's close frame is awaited only within the grace.
            deadline = deadline.min(drain);
        }
        self.closing = Some(Closing {
            deadline,
            close_received: false,
        });
    }

    /// Whether a close request waits: on shutdown the socket stays open while a two-way
    /// invocation is in flight, so its answer reaches the client before the 1001 close,
    /// until the drain deadline. Reading goes on (pings, the client's own close), but no
    /// new invocation starts.
    fn holds_for_answer(&self, req: CloseRequest) -> bool {
        req == CloseRequest::Shutdown
            && self.in_flight.iter().any(|f| f.two_way)
            && self
                .edge
                .drain
                .deadline()
                .is_some_and(|d| Instant::now() < d)
    }

    fn set_outcome(&mut self, code: u16, reason: impl Into<Cow<'static, str>>) {
        if self.outcome.is_none() {
            self.outcome = Some((code, reason.into()));
        }
    }
}

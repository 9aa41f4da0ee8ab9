//! The I/O shell: one background task per client that connects, runs a socket through
//! the protocol core, and reconnects by the policy. Decisions live in `session`; this
//! file only moves bytes and time.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchboard_ws::{close_code, handshake::client_key, Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Kind};
use crate::event::Event;
use crate::handshake::{self, Target};
use crate::session::{self, Transmit};
use crate::{wire, Options, Shared, State, TokenPlacement};

/// Encoded frames buffered for the socket before the core is asked for more.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// The `switchboard.v1` close code for "detach" (docs/protocol.md).
const DETACH: u16 = 4000;
/// How long the final frames of a socket may take to write.
const LINGER: Duration = Duration::from_millis(500);
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A socket after a successful upgrade.
struct Conn {
    io: Box<dyn Io>,
    /// Bytes read past the response head (frames).
    leftover: BytesMut,
    /// The server selected `switchboard.v1`.
    sequenced: bool,
}

/// Everything needed to open a socket.
pub(crate) struct Connector {
    target: Target,
    pub options: Options,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    pub fn new(target: Target, options: Options) -> Result<Self, Kind> {
        #[cfg(feature = "tls")]
        let tls = match (&options.tls_roots, target.secure) {
            (_, false) => None,
            (None, true) => return Err(Kind::Options("wss:// needs Options::tls_roots")),
            (Some(roots), true) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth();
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
            }
        };
        #[cfg(not(feature = "tls"))]
        if target.secure {
            return Err(Kind::Url("wss:// needs the crate's `tls` feature"));
        }
        Ok(Self {
            target,
            options,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// One attempt: token hook, TCP, TLS, upgrade. Bounded by `connect_timeout` (the
    /// hello is awaited by the link, under the same bound).
    async fn connect(&self, resume: Option<(String, u64)>) -> Result<Conn, Kind> {
        tokio::time::timeout(self.options.connect_timeout, self.connect_inner(resume))
            .await
            .map_err(|_| Kind::Timeout)?
    }

    async fn connect_inner(&self, resume: Option<(String, u64)>) -> Result<Conn, Kind> {
        let opts = &self.options;
        let token = match &opts.token {
            Some(hook) => hook.call().await.map_err(Kind::Token)?,
            None => None,
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        let last;
        if let Some((session, n)) = &resume {
            last = n.to_string();
            query.push(("sb_session", session));
            query.push(("sb_last", &last));
        }
        let mut protocols: Vec<&str> = Vec::new();
        if opts.resume {
            protocols.push(wire::PROTOCOL);
        }
        protocols.extend(opts.protocols.iter().map(String::as_str));
        let mut headers: Vec<(&str, &str)> = opts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let entry;
        let bearer;
        if let Some(token) = &token {
            match &opts.token_placement {
                TokenPlacement::Protocol { prefix } => {
                    entry = format!("{prefix}{token}");
                    if !handshake::is_token(&entry) {
                        return Err(Kind::Handshake(
                            "the token is not a valid subprotocol entry",
                        ));
                    }
                    protocols.push(&entry);
                }
                TokenPlacement::AuthorizationHeader => {
                    bearer = format!("Bearer {token}");
                    if !handshake::is_header_value(&bearer) {
                        return Err(Kind::Handshake("the token is not a valid header value"));
                    }
                    headers.push(("Authorization", &bearer));
                }
                TokenPlacement::Query { name } => query.push((name, token)),
            }
        }
        let path = self.target.request_path(&query);
        let key = client_key();
        let request = handshake::request(&self.target, &path, &key, &protocols, &headers);

        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port)).await?;
        tcp.set_nodelay(true)?;
        let mut io: Box<dyn Io> = self.secure(tcp).await?;
        io.write_all(&request).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let upgraded = loop {
            if let Some(up) = handshake::response(&buf, &key, &protocols)? {
                break up;
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Kind::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        buf.advance(upgraded.head_len);
        Ok(Conn {
            io,
            leftover: buf,
            sequenced: upgraded.protocol.as_deref() == Some(wire::PROTOCOL),
        })
    }

    #[cfg(feature = "tls")]
    async fn secure(&self, tcp: TcpStream) -> Result<Box<dyn Io>, Kind> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls_pki_types::ServerName::try_from(self.target.host.clone())
            .map_err(|_| Kind::Url("the host is not a valid TLS server name"))?;
        Ok(Box::new(tls.connect(name, tcp).await?))
    }

    #[cfg(not(feature = "tls"))]
    async fn secure(&self, tcp: TcpStream) -> Result<Box<dyn Io>, Kind> {
        Ok(Box::new(tcp))
    }
}

/// How a socket ended.
enum Ended {
    /// Without a close handshake: resume if possible.
    Dropped(Kind),
    /// The server closed (code, reason); we answered.
    ServerClosed(u16, String),
    /// For good: our close completed, or a protocol error.
    Finished(u16, String),
}

/// The background task.
pub(crate) async fn run(
    shared: Arc<Shared>,
    connector: Connector,
    opened: oneshot::Sender<Result<(), Error>>,
) {
    let policy = connector.options.reconnect.clone();
    let mut opened = Some(opened);
    let mut attempt: u32 = 0;
    loop {
        let close_request = shared.state.lock().close_request;
        if let Some(code) = close_request {
            return finish(&shared, &mut opened, code, String::new());
        }
        let resume = {
            let st = shared.state.lock();
            st.session
                .resume_offer()
                .filter(|_| connector.options.resume)
                .map(|(t, n)| (t.to_owned(), n))
        };
        let attempt_result = tokio::select! {
            r = connector.connect(resume) => Some(r),
            _ = closing(&shared) => None,
        };
        let failure = match attempt_result {
            None => continue, // close requested: handled at the top
            Some(Err(e)) => e,
            Some(Ok(conn)) => {
                let (ended, was_open) =
                    run_link(&shared, &connector.options, conn, &mut opened).await;
                shared.state.lock().session.link_down();
                if was_open {
                    attempt = 0;
                }
                match ended {
                    Ended::Finished(code, reason) => {
                        return finish(&shared, &mut opened, code, reason);
                    }
                    Ended::ServerClosed(code, reason) => {
                        shared.state.lock().session.end_session();
                        if opened.is_some() || !policy.reconnect_on_close.contains(&code) {
                            return finish(&shared, &mut opened, code, reason);
                        }
                        tracing::debug!(code, %reason, "server closed; reconnecting");
                        Kind::ServerClosed { code, reason }
                    }
                    Ended::Dropped(e) => e,
                }
            }
        };
        if opened.is_some() {
            // The first attempt is the caller's to retry.
            if let Some(tx) = opened.take() {
                let _ = tx.send(Err(failure.into()));
            }
            return finish(&shared, &mut None, close_code::ABNORMAL, String::new());
        }
        if !failure.is_retryable() {
            tracing::debug!(error = %failure, "not retrying");
            return finish(
                &shared,
                &mut opened,
                close_code::ABNORMAL,
                failure.to_string(),
            );
        }
        attempt += 1;
        let Some(delay) = policy.delay(attempt, rand::random::<f64>()) else {
            let reason = format!("gave up reconnecting: {failure}");
            return finish(&shared, &mut opened, close_code::ABNORMAL, reason);
        };
        tracing::debug!(attempt, ?delay, error = %failure, "reconnecting");
        {
            let mut st = shared.state.lock();
            // An application that is behind sees only the latest attempt, so a client
            // left reconnecting forever does not grow its queue.
            if st.events.len() >= st.event_buffer
                && matches!(st.events.back(), Some(Event::Reconnecting { .. }))
            {
                st.events.pop_back();
            }
            shared.push_event(&mut st, Event::Reconnecting { attempt, delay });
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing(&shared) => {}
        }
    }
}

/// Resolves once `close()` was called.
async fn closing(shared: &Shared) {
    loop {
        let notified = shared.wake_driver.notified();
        if shared.state.lock().close_request.is_some() {
            return;
        }
        notified.await;
    }
}

/// The client is done: the final event, and everyone waiting is woken.
fn finish(
    shared: &Shared,
    opened: &mut Option<oneshot::Sender<Result<(), Error>>>,
    code: u16,
    reason: String,
) {
    if let Some(tx) = opened.take() {
        let _ = tx.send(Err(Kind::ClosedBeforeOpen {
            code,
            reason: reason.clone(),
        }
        .into()));
    }
    let mut st = shared.state.lock();
    st.session.end_session();
    let event = Event::Closed { code, reason };
    st.closed = Some(event.clone());
    shared.push_event(&mut st, event);
    drop(st);
    shared.room.notify_waiters();
}

/// Runs one socket until it ends. Returns how, and whether it opened (a hello, or a
/// plain upgrade).
async fn run_link(
    shared: &Shared,
    opts: &Options,
    conn: Conn,
    opened: &mut Option<oneshot::Sender<Result<(), Error>>>,
) -> (Ended, bool) {
    let Conn {
        io,
        leftover: mut inbuf,
        sequenced,
    } = conn;
    let (mut rd, mut wr) = tokio::io::split(io);
    let limits = Limits {
        max_frame_bytes: opts.max_message_bytes,
        max_message_bytes: opts.max_message_bytes,
    };
    let mut dec = Decoder::new(Role::Client, limits, None);
    let mut enc = Encoder::new(Role::Client, None);
    let mut out = BytesMut::new();
    let mut scratch = Vec::new();
    let mut is_open = false;
    let hello_deadline = Instant::now() + opts.connect_timeout;
    // Set once we sent our close frame: (code, give up at).
    let mut closing: Option<(u16, Instant)> = None;
    let sleep = tokio::time::sleep_until(hello_deadline);
    tokio::pin!(sleep);

    {
        let mut st = shared.state.lock();
        if let Some(ev) = st.session.link_up(Instant::now(), sequenced) {
            on_open(shared, &mut st, ev, opened, &mut is_open);
        }
    }

    loop {
        let now = Instant::now();
        let mut paused = false;
        let step = {
            let mut st = shared.state.lock();
            let room_before = st.session.has_room();
            let step = process(
                shared,
                &mut st,
                now,
                &mut dec,
                &mut enc,
                &mut inbuf,
                &mut out,
                &mut scratch,
                &mut closing,
                &mut paused,
                opened,
                &mut is_open,
                opts,
            );
            if !room_before && st.session.has_room() {
                shared.room.notify_waiters();
            }
            step
        };
        let deadline = match step {
            Step::End(ended) => {
                // Best effort: the close frame (ours or the echo) goes out. A dropped
                // path gets no close frame: that would end the session.
                if !matches!(ended, Ended::Dropped(_)) {
                    let _ = tokio::time::timeout(LINGER, async {
                        wr.write_all(&out).await?;
                        wr.shutdown().await
                    })
                    .await;
                }
                return (ended, is_open);
            }
            Step::Wait(deadline) => deadline,
        };
        let deadline = [
            deadline,
            (!is_open).then_some(hello_deadline),
            closing.map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(d) = deadline {
            if sleep.deadline() != d {
                sleep.as_mut().reset(d);
            }
        }
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = rd.read_buf(&mut inbuf), if !paused => match r {
                Ok(0) => return (Ended::Dropped(Kind::Io(std::io::ErrorKind::UnexpectedEof.into())), is_open),
                Ok(_) => {}
                Err(e) => return (Ended::Dropped(Kind::Io(e)), is_open),
            },
            r = wr.write(&out), if !out.is_empty() => match r {
                Ok(0) => return (Ended::Dropped(Kind::Io(std::io::ErrorKind::WriteZero.into())), is_open),
                Ok(n) => out.advance(n),
                Err(e) => return (Ended::Dropped(Kind::Io(e)), is_open),
            },
            _ = shared.wake_driver.notified() => {}
            _ = &mut sleep, if deadline.is_some() => {
                let now = Instant::now();
                if !is_open && now >= hello_deadline {
                    return (Ended::Dropped(Kind::Timeout), is_open);
                }
                if let Some((code, t)) = closing {
                    if now >= t {
                        return (Ended::Finished(code, String::new()), is_open);
                    }
                }
            }
        }
    }
}

enum DataKind {
    Text,
    Other,
}

enum Step {
    End(Ended),
    Wait(Option<Instant>),
}

/// One pass under the lock: decode what arrived, run timers, queue what to write.
#[allow(clippy::too_many_arguments)]
fn process(
    shared: &Shared,
    st: &mut State,
    now: Instant,
    dec: &mut Decoder,
    enc: &mut Encoder,
    inbuf: &mut BytesMut,
    out: &mut BytesMut,
    scratch: &mut Vec<u8>,
    closing: &mut Option<(u16, Instant)>,
    paused: &mut bool,
    opened: &mut Option<oneshot::Sender<Result<(), Error>>>,
    is_open: &mut bool,
    opts: &Options,
) -> Step {
    loop {
        if st.events.len() >= st.event_buffer {
            *paused = true;
            break;
        }
        let msg = match dec.decode(inbuf) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                enc.close(e.code, e.reason, out);
                return Step::End(Ended::Finished(e.code, e.reason.to_owned()));
            }
        };
        let kind = match msg {
            Message::Text(_) => DataKind::Text,
            _ => DataKind::Other,
        };
        match msg {
            Message::Text(b) | Message::Binary(b) if closing.is_some() => drop(b),
            Message::Text(b) | Message::Binary(b) => {
                let text = matches!(kind, DataKind::Text);
                match st.session.on_message(now, text, b) {
                    Ok(ev) => deliver(shared, st, ev, opened, is_open),
                    // Missing messages: resume from the last one delivered.
                    Err(e) if e == session::GAP => {
                        return Step::End(Ended::Dropped(Kind::SequenceGap))
                    }
                    Err(e) => return protocol_error(enc, out, e.0),
                }
            }
            Message::Ping(p) => {
                st.session.on_activity(now);
                enc.ping_pong(true, &p, out);
            }
            Message::Pong(_) => st.session.on_activity(now),
            Message::Close(frame) => {
                let (code, reason) = match &frame {
                    Some((c, r)) => (*c, String::from_utf8_lossy(r).into_owned()),
                    None => (close_code::NO_STATUS, String::new()),
                };
                if let Some((ours, _)) = closing {
                    // The answer to our close.
                    let _ = code;
                    return Step::End(Ended::Finished(*ours, reason));
                }
                // Echo it, then the session is over (docs/protocol.md: a clean close).
                enc.close(code, "", out);
                return Step::End(Ended::ServerClosed(code, reason));
            }
        }
    }
    st.session.pause_reads(now, *paused);
    if st.session.on_timeout(now).is_err() {
        return Step::End(Ended::Dropped(Kind::Timeout));
    }
    if closing.is_none() {
        if let Some(code) = st.close_request {
            // On a session, 4000 means "detach" (park, resume elsewhere): not a close.
            let code = if code == DETACH && st.session.is_sequenced() {
                close_code::NORMAL
            } else {
                code
            };
            enc.close(code, "", out);
            *closing = Some((code, now + opts.close_timeout));
        }
    }
    if closing.is_some() {
        // Only the close timeout matters now.
        return Step::Wait(None);
    }
    {
        while out.len() < OUT_HIGH_WATER {
            scratch.clear();
            match st.session.poll_transmit(now, scratch) {
                None => break,
                Some(Transmit::Text) => enc.message(true, scratch, out),
                Some(Transmit::Binary) => enc.message(false, scratch, out),
                Some(Transmit::Ping) => enc.ping_pong(false, &[], out),
            }
        }
    }
    Step::Wait(st.session.poll_timeout())
}

fn protocol_error(enc: &mut Encoder, out: &mut BytesMut, reason: &'static str) -> Step {
    tracing::warn!(reason, "server broke switchboard.v1; closing");
    enc.close(close_code::PROTOCOL, reason, out);
    Step::End(Ended::Finished(close_code::PROTOCOL, reason.to_owned()))
}

fn deliver(
    shared: &Shared,
    st: &mut State,
    event: Option<Event>,
    opened: &mut Option<oneshot::Sender<Result<(), Error>>>,
    is_open: &mut bool,
) {
    match event {
        None => {}
        Some(ev @ (Event::Open { .. } | Event::Resumed { .. })) => {
            on_open(shared, st, ev, opened, is_open)
        }
        Some(ev) => shared.push_event(st, ev),
    }
}

fn on_open(
    shared: &Shared,
    st: &mut State,
    event: Event,
    opened: &mut Option<oneshot::Sender<Result<(), Error>>>,
    is_open: &mut bool,
) {
    *is_open = true;
    shared.push_event(st, event);
    if let Some(tx) = opened.take() {
        if tx.send(Ok(())).is_err() {
            // `connect` was cancelled: nobody will ever hold this client.
            st.close_request = Some(close_code::GOING_AWAY);
        }
    }
}

//! A reconnecting WebSocket client for switchboard, on tokio.
//!
//! [`Client::connect`] opens a `ws://` (or, with the `tls` feature, `wss://`) connection
//! and keeps one *logical* connection alive across sockets. With
//! [`Options::resume`] (the default) it offers the `switchboard.v1` subprotocol
//! (docs/protocol.md): every message in either direction carries a sequence number, both
//! sides acknowledge, and when the socket drops the client reconnects with its session
//! token and the server resumes the same connection id. The application then sees
//!
//! - every server message exactly once and in order ([`Event::Message`]), across any
//!   number of reconnects: replayed messages it already has are dropped by number;
//! - every message it sent delivered to the server, and processed there once: messages
//!   not yet acknowledged are resent after a resume (the hello's `lastClientSeq` says
//!   which), with their original numbers, and the server ignores numbers it has done.
//!
//! When the session cannot be resumed (its window expired, its buffer overflowed, the
//! server restarted, it closed cleanly) the client opens a fresh one ([`Event::Open`] with
//! a new id) and, by default, resends what the old one never acknowledged
//! ([`Options::resend_unconfirmed`]).
//! Against a server that does not select `switchboard.v1` the client runs in plain mode:
//! raw payloads, reconnects, no sequencing (at most once).
//!
//! Model: a background task owns the socket; the [`Client`] handle shares with it a
//! mutex-guarded sans-IO protocol core (`session`: queues, numbers, acks, heartbeat
//! timers, driven by explicit `now`) and a bounded event queue. Sends never wait for the
//! network: they go into a bounded queue ([`Options::send_queue`]) that holds messages
//! until the server acknowledges them, and fail with [`Error::is_queue_full`] beyond it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_client::Error> {
//! use switchboard_client::{Client, Event, Options};
//!
//! let client = Client::connect("ws://127.0.0.1:8080/", Options::default()).await?;
//! client.send_text(r#"{"action":"join","room":"lobby"}"#)?;
//! loop {
//!     match client.next_event().await {
//!         Event::Message(m) => println!("{:?}", m.as_text()),
//!         Event::Closed { code, reason } => break println!("closed {code} {reason}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod driver;
mod error;
mod event;
mod handshake;
mod session;
mod wire;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

pub use backoff::ReconnectPolicy;
pub use error::{BoxError, Error};
pub use event::{Event, Payload};
pub use session::Heartbeat;
pub use wire::PROTOCOL;

use error::Kind;
use session::Session;

/// The future a [`TokenHook`] returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Option<String>, BoxError>> + Send>>;

/// An async function called before every connection attempt (the first and each
/// reconnect) for a fresh credential; `Ok(None)` sends none. An error counts as a failed
/// attempt (retried by the [`ReconnectPolicy`]).
#[derive(Clone)]
pub struct TokenHook(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenHook {
    /// Wraps an async closure, e.g. `TokenHook::new(|| async { Ok(Some(fetch().await?)) })`.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, BoxError>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }

    pub(crate) fn call(&self) -> TokenFuture {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHook")
    }
}

/// Where the token from the [`TokenHook`] goes in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlacement {
    /// A `Sec-WebSocket-Protocol` entry `<prefix><token>` (what browsers must use; the
    /// gateway's JWT authorizer reads `bearer.<token>` by default). The token must be an
    /// HTTP token (JWTs are).
    Protocol {
        /// Prefix of the entry; default `bearer.`.
        prefix: String,
    },
    /// `Authorization: Bearer <token>`.
    AuthorizationHeader,
    /// A query parameter.
    Query {
        /// The parameter's name (the gateway's default is `token`).
        name: String,
    },
}

impl Default for TokenPlacement {
    fn default() -> Self {
        TokenPlacement::Protocol {
            prefix: "bearer.".to_owned(),
        }
    }
}

/// How the client connects, reconnects and queues. Every field has a default
/// ([`Options::default`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// Offer `switchboard.v1` and resume sessions. Default true. Off (or when the server
    /// does not select it): plain mode.
    pub resume: bool,
    /// Further subprotocols to offer (after `switchboard.v1`). Default none.
    pub protocols: Vec<String>,
    /// Extra handshake headers. Default none.
    pub headers: Vec<(String, String)>,
    /// When to reconnect. Default: see [`ReconnectPolicy`].
    pub reconnect: ReconnectPolicy,
    /// Heartbeat: `h` frames with `switchboard.v1`, WebSocket pings in plain mode.
    /// Default every 15 s of silence, dead after 10 s more. `None`: rely on TCP.
    pub heartbeat: Option<Heartbeat>,
    /// Messages the client holds: queued while disconnected, written and not yet
    /// acknowledged (`switchboard.v1`), or not yet written (plain). A send beyond it
    /// fails with [`Error::is_queue_full`]. Default 1024.
    pub send_queue: usize,
    /// When a reconnect yields a fresh session, resend the messages written to the old
    /// one and never acknowledged (they may or may not have been processed: at least
    /// once for those few). `false`: drop them (at most once) and keep them for
    /// [`Client::take_unconfirmed`]. Messages never written are always sent. Default
    /// true.
    pub resend_unconfirmed: bool,
    /// Events held for the application. When full, the client stops reading the socket
    /// (the server then holds the messages). Default 1024.
    pub event_buffer: usize,
    /// Acknowledge server messages after this many arrived unacknowledged. Default 32.
    pub ack_every: u64,
    /// ... or this long after the first unacknowledged one arrived. Default 100 ms.
    pub ack_delay: Duration,
    /// Limit on one connection attempt: the token hook, TCP, TLS, the upgrade and (with
    /// `switchboard.v1`) the hello. Default 10 s.
    pub connect_timeout: Duration,
    /// How long [`Client::close`] waits for the server's close frame. Default 5 s.
    pub close_timeout: Duration,
    /// Largest message accepted from the server, in bytes (larger: close 1009).
    /// Default 16 MiB.
    pub max_message_bytes: usize,
    /// Called before each connection attempt for a credential. Default none.
    pub token: Option<TokenHook>,
    /// Where the credential goes. Default a `bearer.<token>` subprotocol entry.
    pub token_placement: TokenPlacement,
    /// Root certificates trusted for `wss://` (required for it). Default none.
    #[cfg(feature = "tls")]
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resume: true,
            protocols: Vec::new(),
            headers: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            heartbeat: Some(Heartbeat {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(10),
            }),
            send_queue: 1024,
            resend_unconfirmed: true,
            event_buffer: 1024,
            ack_every: 32,
            ack_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_message_bytes: 16 << 20,
            token: None,
            token_placement: TokenPlacement::default(),
            #[cfg(feature = "tls")]
            tls_roots: None,
        }
    }
}

impl Options {
    /// Sets the token hook (see [`TokenHook::new`]).
    pub fn token_hook<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, BoxError>> + Send + 'static,
    {
        self.token = Some(TokenHook::new(f));
        self
    }

    fn validate(&self) -> Result<(), Kind> {
        if self.send_queue == 0 || self.event_buffer == 0 || self.ack_every == 0 {
            return Err(Kind::Options(
                "send_queue, event_buffer and ack_every must be at least 1",
            ));
        }
        if self.protocols.iter().any(|p| !handshake::is_token(p)) {
            return Err(Kind::Options("a subprotocol is not an HTTP token"));
        }
        if self
            .headers
            .iter()
            .any(|(k, v)| !handshake::is_token(k) || !handshake::is_header_value(v))
        {
            return Err(Kind::Options("invalid header name or value"));
        }
        if self.heartbeat.is_some_and(|h| h.interval.is_zero()) {
            return Err(Kind::Options("heartbeat interval must be above zero"));
        }
        Ok(())
    }
}

/// What the handle and the background task share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// The application queued a message, took an event, or asked to close.
    pub wake_driver: Notify,
    /// An event is ready.
    pub wake_app: Notify,
    /// The send queue has room again, or the client closed (`notify_waiters`).
    pub room: Notify,
}

pub(crate) struct State {
    pub session: Session,
    /// Bounded by `event_buffer` (the driver stops reading when full), plus the final
    /// `Closed`.
    pub events: VecDeque<Event>,
    pub event_buffer: usize,
    /// `close()` was called with this code.
    pub close_request: Option<u16>,
    /// The final event, once the client is closed.
    pub closed: Option<Event>,
}

impl Shared {
    pub(crate) fn push_event(&self, st: &mut State, event: Event) {
        st.events.push_back(event);
        self.wake_app.notify_one();
    }
}

/// A connection to a switchboard gateway (or any WebSocket server). Dropping it closes
/// the connection with 1001.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Client {
    /// Connects to `url` (`ws://host[:port]/path?query`, or `wss://` with
    /// [`Options::tls_roots`]) and returns once the connection is open: the first event
    /// is [`Event::Open`]. The first attempt is not retried: its error is returned (later
    /// drops are retried by [`Options::reconnect`]). Spawns a task on the current tokio
    /// runtime.
    pub async fn connect(url: &str, options: Options) -> Result<Client, Error> {
        let target = handshake::Target::parse(url)?;
        options.validate()?;
        let connector = driver::Connector::new(target, options)?;
        let opts = &connector.options;
        let session = Session::new(session::Config {
            ack_every: opts.ack_every,
            ack_delay: opts.ack_delay,
            heartbeat: opts.heartbeat,
            send_queue: opts.send_queue,
            resend_unconfirmed: opts.resend_unconfirmed,
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session,
                events: VecDeque::new(),
                event_buffer: opts.event_buffer,
                close_request: None,
                closed: None,
            }),
            wake_driver: Notify::new(),
            wake_app: Notify::new(),
            room: Notify::new(),
        });
        let (opened_tx, opened_rx) = oneshot::channel();
        tokio::spawn(driver::run(shared.clone(), connector, opened_tx));
        match opened_rx.await {
            Ok(Ok(())) => Ok(Client { shared }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Kind::Closed.into()),
        }
    }

    /// Queues a text message. With `switchboard.v1` it is delivered (and processed by
    /// the server) once, however often the socket drops.
    ///
    /// Errors: [`Error::is_queue_full`] (see [`Options::send_queue`]),
    /// [`Error::is_closed`].
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.send(true, Bytes::from(text.into()))
    }

    /// Queues a binary message (as [`send_text`](Self::send_text)).
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send(false, data.into())
    }

    fn send(&self, text: bool, payload: Bytes) -> Result<(), Error> {
        {
            let mut st = self.shared.state.lock();
            if st.closed.is_some() || st.close_request.is_some() {
                return Err(Kind::Closed.into());
            }
            st.session
                .enqueue(text, payload)
                .map_err(|_| Error::from(Kind::QueueFull))?;
        }
        self.shared.wake_driver.notify_one();
        Ok(())
    }

    /// Waits until the send queue has room for a message.
    ///
    /// Errors: [`Error::is_closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: it reserves nothing.
    pub async fn writable(&self) -> Result<(), Error> {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.shared.state.lock();
                if st.closed.is_some() || st.close_request.is_some() {
                    return Err(Kind::Closed.into());
                }
                if st.session.has_room() {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// The next event. After [`Event::Closed`], returns it again on every call.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is taken only when the future completes.
    pub async fn next_event(&self) -> Event {
        loop {
            {
                let mut st = self.shared.state.lock();
                if let Some(e) = st.events.pop_front() {
                    if st.events.len() + 1 >= st.event_buffer {
                        // The driver may have stopped reading for want of room.
                        self.shared.wake_driver.notify_one();
                    }
                    return e;
                }
                if let Some(closed) = &st.closed {
                    return closed.clone();
                }
            }
            self.shared.wake_app.notified().await;
        }
    }

    /// The current connection id (`None` before the first hello, in plain mode, and
    /// after the client closed).
    pub fn connection_id(&self) -> Option<String> {
        self.shared
            .state
            .lock()
            .session
            .connection_id()
            .map(str::to_owned)
    }

    /// With [`Options::resend_unconfirmed`] off: messages that were written in a
    /// session that then ended without acknowledging them (the server may or may not
    /// have processed them), oldest first, at most [`Options::send_queue`]. The client
    /// did not resend them into the fresh session; the application decides. Empty with
    /// the default (they were resent).
    pub fn take_unconfirmed(&self) -> Vec<Payload> {
        self.shared.state.lock().session.take_unconfirmed()
    }

    /// Closes the connection with `code` (1000 normal, 1001 going away, 3000–4999 for
    /// the application) and ends the session: no reconnect follows. Messages queued and
    /// not yet written are dropped; the close frame follows what has been written. The
    /// client then yields [`Event::Closed`] (after the server's answer, at most
    /// [`Options::close_timeout`]). Invalid codes are sent as 1000, and so is 4000 on a
    /// `switchboard.v1` connection (there it means "detach": the gateway would park the
    /// session instead of ending it).
    pub fn close(&self, code: u16) {
        let code = if switchboard_ws::close_code::is_valid_on_wire(code) {
            code
        } else {
            switchboard_ws::close_code::NORMAL
        };
        {
            let mut st = self.shared.state.lock();
            if st.closed.is_some() || st.close_request.is_some() {
                return;
            }
            st.close_request = Some(code);
        }
        self.shared.wake_driver.notify_one();
        self.shared.room.notify_waiters();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close(switchboard_ws::close_code::GOING_AWAY);
    }
}

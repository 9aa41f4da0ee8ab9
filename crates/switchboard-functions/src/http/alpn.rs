//! `https://` functions: HTTP/1.1 or HTTP/2 over TLS, as the server chooses by ALPN.
//!
//! `http_version = "auto"` offers `h2` and `http/1.1` and speaks what the server picks:
//! `h2` puts the TLS stream into an [`http2::Pool`], whose connection later invocations
//! share as streams (another opens only at the server's `SETTINGS_MAX_CONCURRENT_STREAMS`);
//! `http/1.1`, or no pick (a server without ALPN), uses pooled keep-alive HTTP/1.1
//! connections ([`h1::Pool`]). The pick is remembered, so later invocations go straight
//! to its pool and only a new connection asks again.
//!
//! The first time, one invocation makes the connection and the others wait for its
//! answer: a burst at start then shares one HTTP/2 connection instead of opening one each.
//!
//! A server may change its pick (a redeploy behind the same name, a new front end). A new
//! connection whose pick belongs to the other pool is handed over to that pool, the pick
//! remembered, and the invocation sent there; it was not sent yet, so that is safe. The
//! old pool's connections are not used again and idle out. An invocation is handed over
//! at most once: a server whose pick changes again within it fails it as unreachable.
//!
//! `"2"` offers only `h2` and fails with [`TlsFailure::AlpnMismatch`] when the server does
//! not pick it; `"1.1"` offers only `http/1.1`.
//!
//! [`TlsFailure::AlpnMismatch`]: crate::tls::TlsFailure::AlpnMismatch

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use hyper::HeaderMap;
use parking_lot::Mutex;
use switchboard_core::config::HttpVersion;
use switchboard_core::event::Invocation;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::{Inner, POOL_IDLE_TIMEOUT};
use crate::dial::{Alpn, Target, TlsDial};
use crate::tls::ClientTls;
use crate::{h1, http2, InvokeError, SetupError};

/// What [`Tls::chose`] holds: no connection made yet, or the server's last pick.
const CHOSE_NOTHING_YET: u8 = 0;
const CHOSE_HTTP1: u8 = 1;
const CHOSE_H2: u8 = 2;

/// Why an invocation was not sent when the server changed its pick twice within it.
const PICK_CHANGED: &str = "the function's server changed its ALPN pick twice while connecting";

/// HTTP over TLS to one function.
pub(super) struct Tls {
    dial: TlsDial,
    target: Target,
    version: HttpVersion,
    h1: h1::Pool<TlsStream<TcpStream>>,
    h2: http2::Pool,
    /// The configured and default headers for HTTP/2, without `host`.
    h2_headers: HeaderMap,
    /// `CHOSE_*`: the server's last ALPN pick.
    chose: AtomicU8,
    /// Held by the invocation that makes the first connection, until its pick is known
    /// (and for `h2`, until the connection is in the pool).
    first: tokio::sync::Mutex<()>,
}

impl Tls {
    /// `tls` holds the roots and client identity; the ALPN offer follows `version`.
    pub(super) fn new(
        function: &str,
        tls: ClientTls,
        version: HttpVersion,
        target: Target,
        max_idle: usize,
        h2_headers: HeaderMap,
    ) -> Result<Self, SetupError> {
        let offer: &[&[u8]] = match version {
            HttpVersion::Auto => &[b"h2", b"http/1.1"],
            HttpVersion::Http1 => &[b"http/1.1"],
            HttpVersion::Http2 => &[b"h2"],
        };
        Ok(Self {
            dial: TlsDial::new(function, tls.alpn(offer).build()?, &target.host)?,
            target,
            version,
            h1: h1::Pool::new(max_idle, POOL_IDLE_TIMEOUT),
            h2: http2::Pool::new(POOL_IDLE_TIMEOUT),
            h2_headers,
            chose: AtomicU8::new(CHOSE_NOTHING_YET),
            first: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends the invocation's `event` and reads the answer's body. TLS failures are
    /// logged once per cause until a success.
    pub(super) async fn send(
        &self,
        inner: &Inner,
        invocation: &Invocation,
        event: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, InvokeError> {
        let sent = match self.version {
            HttpVersion::Http1 => {
                self.send_over(Alpn::Http1, inner, invocation, &event, || {
                    self.dial.connect(&self.target, deadline)
                })
                .await
            }
            HttpVersion::Http2 => {
                self.send_over(Alpn::H2, inner, invocation, &event, || {
                    self.dial.connect_h2(&self.target, deadline)
                })
                .await
            }
            HttpVersion::Auto => self.send_auto(inner, invocation, &event, deadline).await,
        };
        match &sent {
            Ok(_) => self.dial.note_success(),
            Err(InvokeError::Tls(failure)) => self.dial.note_failure(failure),
            Err(_) => {}
        }
        sent
    }

    async fn send_auto(
        &self,
        inner: &Inner,
        invocation: &Invocation,
        event: &Bytes,
        deadline: Instant,
    ) -> Result<Bytes, InvokeError> {
        let handover = Handover(Mutex::new(None));
        let mut pick = match self.chose() {
            Some(pick) => pick,
            None => self.first_pick(&handover, deadline).await?,
        };
        let mut handed_over = false;
        loop {
            let sent = self
                .send_over(pick, inner, invocation, event, || {
                    self.dial_for(pick, &handover, deadline)
                })
                .await;
            match handover.holds() {
                // A new connection was picked for the other pool: the request was not sent.
                Some(other) if other != pick && sent.is_err() && !handed_over => {
                    pick = other;
                    handed_over = true;
                }
                _ => return sent,
            }
        }
    }

    /// Sends over the pool of `pick`; `connect` makes a connection when it has none free.
    async fn send_over<F, Fut>(
        &self,
        pick: Alpn,
        inner: &Inner,
        invocation: &Invocation,
        event: &Bytes,
        connect: F,
    ) -> Result<Bytes, InvokeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<TlsStream<TcpStream>, InvokeError>>,
    {
        let max_body = inner.max_response_bytes;
        match pick {
            Alpn::Http1 => {
                let request = inner.h1_request(invocation, event);
                self.h1.send(&request, max_body, connect).await
            }
            Alpn::H2 => {
                let headers = inner.h2_headers(&self.h2_headers, invocation, event);
                let (uri, body) = (&inner.uri, event.clone());
                self.h2.send(uri, headers, body, max_body, connect).await
            }
        }
    }

    /// The server's last pick, if a connection was ever made.
    fn chose(&self) -> Option<Alpn> {
        match self.chose.load(Ordering::Relaxed) {
            CHOSE_HTTP1 => Some(Alpn::Http1),
            CHOSE_H2 => Some(Alpn::H2),
            _ => None,
        }
    }

    fn remember(&self, pick: Alpn) {
        let code = match pick {
            Alpn::Http1 => CHOSE_HTTP1,
            Alpn::H2 => CHOSE_H2,
        };
        let before = self.chose.swap(code, Ordering::Relaxed);
        if before != code && before != CHOSE_NOTHING_YET {
            tracing::debug!(?pick, "the function's server changed its ALPN pick");
        }
    }

    /// Makes the first connection, one invocation at a time, and learns the server's
    /// pick. An `h2` connection goes into the HTTP/2 pool before the others are let go,
    /// so they share it; an HTTP/1.1 one is left in `handover` for this invocation. The
    /// others find the pick made and make no connection here.
    async fn first_pick(
        &self,
        handover: &Handover,
        deadline: Instant,
    ) -> Result<Alpn, InvokeError> {
        let _first = self.first.lock().await;
        if let Some(pick) = self.chose() {
            return Ok(pick);
        }
        let stream = self.dial.connect(&self.target, deadline).await?;
        let pick = Alpn::of(&stream);
        match pick {
            Alpn::H2 => {
                self.h2.adopt(stream).await?;
            }
            Alpn::Http1 => handover.put(stream),
        }
        self.remember(pick);
        Ok(pick)
    }

    /// A connection for the `want` pool: the one handed over, if it is for that pool,
    /// else a new one. A new one the server picked the other protocol on is remembered and
    /// handed over, and this pool gets an error instead (the invocation then goes to the
    /// other pool; see [`Tls::send_auto`]).
    async fn dial_for(
        &self,
        want: Alpn,
        handover: &Handover,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, InvokeError> {
        if let Some(stream) = handover.take(want) {
            return Ok(stream);
        }
        let stream = self.dial.connect(&self.target, deadline).await?;
        let pick = Alpn::of(&stream);
        self.remember(pick);
        if pick == want {
            return Ok(stream);
        }
        handover.put(stream);
        Err(InvokeError::Unreachable(PICK_CHANGED.into()))
    }
}

/// A new connection on its way from one pool's dial to the pool its ALPN pick belongs
/// to, within one invocation. A lock so the invocation's future stays `Send`; never held
/// across an await.
struct Handover(Mutex<Option<TlsStream<TcpStream>>>);

impl Handover {
    fn put(&self, stream: TlsStream<TcpStream>) {
        *self.0.lock() = Some(stream);
    }

    /// The connection, if there is one and its pick is `want`.
    fn take(&self, want: Alpn) -> Option<TlsStream<TcpStream>> {
        let mut held = self.0.lock();
        if held.as_ref().is_some_and(|s| Alpn::of(s) == want) {
            held.take()
        } else {
            None
        }
    }

    /// The pick of the connection held, if any.
    fn holds(&self) -> Option<Alpn> {
        self.0.lock().as_ref().map(Alpn::of)
    }
}

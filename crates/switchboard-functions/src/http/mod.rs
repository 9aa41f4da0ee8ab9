//! The HTTP function kind: each invocation POSTs the AWS API Gateway WebSocket event to an
//! `http://` URL (HTTP/1.1, or h2c with `http_version = "2"`, see `http2.rs`) or an
//! `https://` URL (HTTP/1.1 or HTTP/2 over TLS as the server picks by ALPN, see `alpn.rs`,
//! `crate::tls` and `crate::dial`) and reads a Lambda-proxy-shaped answer back.
//!
//! # Request
//!
//! `POST <url>` over HTTP/1.1 with keep-alive (a pool of connections per function, see
//! `h1/`) or as a stream of a shared HTTP/2 connection, the body being the event JSON
//! exactly as AWS sends it to a Lambda proxy integration ([`Invocation::to_aws_event`]).
//! Headers:
//!
//! | header | value |
//! | --- | --- |
//! | `content-type` | `application/json` |
//! | `user-agent` | `switchboard/<version>` |
//! | `x-switchboard-request-id` | `requestContext.requestId` |
//! | `x-switchboard-connection-id` | `requestContext.connectionId` |
//! | `x-switchboard-route-key` | `requestContext.routeKey` (left out if it is not a valid header value) |
//! | `x-switchboard-event-type` | `CONNECT`, `MESSAGE` or `DISCONNECT` |
//! | `x-switchboard-signature` | only when `secret` is set, see below |
//!
//! The configured `headers` are added last and replace a default of the same name
//! (`user-agent`, `host`, ...); hop-by-hop headers, `content-length` and `x-switchboard-*`
//! are refused at startup so configuration can neither break framing nor forge a signature.
//!
//! # Signature
//!
//! When the function has a `secret`, every request carries
//!
//! ```text
//! x-switchboard-signature: t=<unix seconds>,v1=<hex>
//! ```
//!
//! where `<hex>` is the lowercase hex encoding of `HMAC-SHA256(key = secret, message =
//! "<t>.<raw body>")`: the decimal timestamp exactly as it appears after `t=`, one `.`,
//! then the request body bytes exactly as received (verify before parsing the JSON). To
//! verify: split the header on `,`, take `t` and `v1`, recompute the HMAC over
//! `t + "." + body`, compare it with `v1` in constant time, and reject a `t` more than a
//! few minutes from your clock so a captured request cannot be replayed later. Only the
//! `v1` scheme exists today; ignore other `key=value` pairs so a later scheme can be sent
//! alongside it during a migration.
//!
//! # Bounds
//!
//! - **Time**: `timeout_ms` bounds the whole invocation, from the first poll of the
//!   returned future (callers await it at once) through waiting for a slot, connecting,
//!   sending and reading the complete response body; past it the invocation ends with
//!   [`InvokeError::Timeout`] and its connection is dropped, not reused.
//! - **Concurrency**: a semaphore with `max_concurrency` permits bounds requests in
//!   flight. A caller that finds no free permit takes a place in the queue, counted by an
//!   atomic, if fewer than `max_queue` callers are already waiting, and waits there (FIFO)
//!   for a permit; otherwise it gets [`InvokeError::Throttled`] at once, without waiting.
//!   The decision is made synchronously in [`Invoker::invoke`], so a throttled caller
//!   never sleeps, and a waiter that times out or is dropped gives its place back.
//! - **Response size**: at most `max_response_bytes` of body are kept; a larger
//!   `content-length` fails before any body is read, and a body without one fails at the
//!   first chunk that crosses the limit. The connection is then dropped, not drained.
//! - **Response head** (HTTP/1.1): 64 KiB and 64 header fields, interim `1xx` heads
//!   counted in; the trailer section likewise; a chunk-size line 1 KiB, and chunk
//!   extensions 16 KiB over a whole body (see `h1/`). Never buffered past the bound.
//! - **Response head** (HTTP/2): a 64 KiB header list, CONTINUATION frames counted, one
//!   pending PING and SETTINGS acknowledgement (the `h2` crate, see `http2.rs`).
//! - **Idle connections**: at most `max_concurrency` per function, closed after
//!   [`POOL_IDLE_TIMEOUT`], each keeping at most 64 KiB of read buffer.
//!
//! # Failures
//!
//! [`InvokeError::Unreachable`] means the function never got the event: no connection
//! could be made (DNS failure, connection refused, connect error); [`InvokeError::Tls`]
//! likewise, when the TLS handshake failed or the server's ALPN pick cannot be spoken
//! (`http_version = "2"` and no `h2`). Once a connection is
//! up, the function may have seen the event and acted on it, so everything that goes
//! wrong afterwards is [`InvokeError::Failed`]: a reset or close before or during the
//! response, a truncated body, a response that is not HTTP, a status other than 2xx
//! (`function answered HTTP 500`), an oversized body or head, an HTTP/1.1 answer whose
//! framing is ambiguous (RFC 9112 §6: both `content-length` and `transfer-encoding`,
//! differing or invalid lengths, a transfer coding other than one `chunked`; its
//! connection is closed, never reused), or an unusable proxy object. Messages are short
//! and never quote the response body.
//!
//! # Response
//!
//! As API Gateway reads a Lambda proxy answer ([`parse_proxy_response`]):
//!
//! - an empty body is `200` with no body;
//! - a JSON object whose `statusCode` is a number is a proxy object: `statusCode` (must
//!   be 100..=599) is the status, `headers` and `multiValueHeaders` (last value wins, and
//!   wins over `headers`) the headers, `body` the body: a string as text, or with
//!   `isBase64Encoded: true` decoded as binary; any other JSON value is sent as its JSON
//!   text; an absent, `null` or empty body sends nothing. Other fields are ignored;
//! - any other body (other JSON, plain text) is `200` with that body as it came: text
//!   if it is valid UTF-8, binary otherwise.
//!
//! The parts: this file holds the invoker and its bounds; `request.rs` writes the
//! request (headers, host, signature); `proxy.rs` reads the answer; `alpn.rs` picks the
//! pool of an `https://` function by the server's ALPN choice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{HeaderMap, Uri};
use sha2::Sha256;
use switchboard_core::config::{HttpFunctionConfig, HttpVersion};
use switchboard_core::event::{ApiIdentity, FunctionResponse, Invocation};
use switchboard_core::text::decimal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use tokio::net::TcpStream;

use crate::dial::{connect_tcp, Target};
use crate::tls::ClientTls;
use crate::{h1, http2};
use crate::{InvokeError, InvokeFuture, Invoker, SetupError};

mod alpn;
mod proxy;
mod request;

pub use self::proxy::parse_proxy_response;
use self::request::{
    default_port, host_header, is_header_value, is_https, parse_url, push_header, push_trusted,
    signature, unix_seconds,
};

/// How long an idle keep-alive connection stays in the pool. Shorter than the 5 s
/// keep-alive of Node.js and uvicorn, common function servers, so the gateway closes an
/// idle connection before the server does and never sends onto one the server is
/// closing (which would fail an invocation that the function never saw).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

const USER_AGENT_VALUE: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// Headers a configuration may not set: they frame the request or the connection
/// (hyper owns those), or belong to the gateway.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Invokes a function over HTTP. Cheap to share: one pooled client and one set of
/// bounds per configured function.
pub struct HttpInvoker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    uri: Uri,
    transport: Transport,
    api: ApiIdentity,
    /// What every HTTP/1.1 request starts with, rendered once: the request line and
    /// headers (empty for h2c, whose headers are in its transport).
    head: Vec<u8>,
    /// Keyed once; cloned per request so the key is not rehashed each time.
    signer: Option<Hmac<Sha256>>,
    timeout: Duration,
    max_response_bytes: usize,
    /// `max_concurrency` permits: one per request in flight.
    slots: Arc<Semaphore>,
    /// Callers waiting for a permit; never above `max_queue`.
    waiting: AtomicUsize,
    max_queue: usize,
}

impl std::fmt::Debug for HttpInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInvoker")
            .field("name", &self.inner.name)
            .field("url", &self.inner.uri)
            .finish_non_exhaustive()
    }
}

impl HttpInvoker {
    /// Builds the invoker. The error names the offending key (`url`, `headers.<name>`,
    /// ...) relative to the function's table. No connection is made until the first
    /// invocation.
    pub fn new(name: &str, cfg: &HttpFunctionConfig, api: ApiIdentity) -> Result<Self, SetupError> {
        let uri = parse_url(&cfg.url)?;
        if cfg.timeout_ms == 0 {
            return Err(SetupError::invalid("timeout_ms", "must be greater than 0"));
        }
        if cfg.max_concurrency == 0 || cfg.max_concurrency > Semaphore::MAX_PERMITS {
            return Err(SetupError::invalid(
                "max_concurrency",
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            ));
        }

        let mut headers: Vec<(HeaderName, HeaderValue)> = vec![
            (HOST, host_header(&uri)?),
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE)),
        ];
        for (key, value) in &cfg.headers {
            let header = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                SetupError::invalid(format!("headers.{key}"), "not a valid header name")
            })?;
            if RESERVED_HEADERS.contains(&header.as_str())
                || header.as_str().starts_with("x-switchboard-")
            {
                return Err(SetupError::invalid(
                    format!("headers.{key}"),
                    "reserved, cannot be configured",
                ));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                SetupError::invalid(format!("headers.{key}"), "not a valid header value")
            })?;
            headers.retain(|(name, _)| *name != header);
            headers.push((header, value));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let head = match cfg.http_version {
            HttpVersion::Auto | HttpVersion::Http1 => {
                let mut head = format!("POST {path} HTTP/1.1\r\n").into_bytes();
                for (name, value) in &headers {
                    push_header(&mut head, name.as_str(), value.as_bytes());
                }
                head
            }
            HttpVersion::Http2 => Vec::new(),
        };
        // For HTTP/2, `:authority`, taken from the URI, replaces `host`.
        let h2_headers = || -> HeaderMap {
            headers
                .iter()
                .filter(|(name, _)| *name != HOST)
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };

        let signer = match &cfg.secret {
            Some(secret) if secret.is_empty() => {
                return Err(SetupError::invalid("secret", "must not be empty"))
            }
            Some(secret) => Some(
                Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| SetupError::invalid("secret", "not usable as an HMAC key"))?,
            ),
            None => None,
        };

        let host = uri.host().unwrap_or_default();
        let target = Target {
            host: host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_owned(),
            port: uri.port_u16().unwrap_or(default_port(&uri)),
        };
        let transport = match (is_https(&uri), cfg.http_version) {
            // Cleartext has no ALPN to ask the server with: "auto" is HTTP/1.1.
            (false, HttpVersion::Auto | HttpVersion::Http1) => Transport::H1 {
                pool: h1::Pool::new(cfg.max_concurrency, POOL_IDLE_TIMEOUT),
                target,
            },
            (false, HttpVersion::Http2) => Transport::H2c {
                pool: http2::Pool::new(POOL_IDLE_TIMEOUT),
                target,
                headers: h2_headers(),
            },
            (true, version) => {
                let mut tls = ClientTls::public_roots();
                if let Some(path) = &cfg.tls_ca_file {
                    tls = tls.extra_roots_pem(path)?;
                }
                if let (Some(cert), Some(key)) = (&cfg.tls_client_cert, &cfg.tls_client_key) {
                    tls = tls.client_identity_pem(cert, key)?;
                }
                Transport::Tls(alpn::Tls::new(
                    name,
                    tls,
                    version,
                    target,
                    cfg.max_concurrency,
                    h2_headers(),
                )?)
            }
        };

        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                uri,
                transport,
                api,
                head,
                signer,
                timeout: Duration::from_millis(cfg.timeout_ms),
                max_response_bytes: cfg.max_response_bytes,
                slots: Arc::new(Semaphore::new(cfg.max_concurrency)),
                waiting: AtomicUsize::new(0),
                max_queue: cfg.max_queue,
            }),
        })
    }
}

impl Invoker for HttpInvoker {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        let admission = match self.inner.admit() {
            Ok(admission) => admission,
            Err(throttled) => return Box::pin(std::future::ready(Err(throttled))),
        };
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            // A deadline rather than a duration: a TLS handshake is bounded by it too,
            // and reports its own timeout when both expire together.
            let deadline = tokio::time::Instant::now() + inner.timeout;
            match tokio::time::timeout_at(deadline, inner.run(admission, invocation, deadline))
                .await
            {
                Ok(result) => result,
                Err(_elapsed) => Err(InvokeError::Timeout),
            }
        })
    }
}

/// How an invocation got past the concurrency bound.
enum Admission {
    /// A permit was free.
    Now(OwnedSemaphorePermit),
    /// A place in the queue; the permit is awaited in [`Inner::run`].
    Queued(QueuePlace),
}

/// A place in the queue, given back on drop (permit acquired, timeout, or the caller
/// dropped the invocation).
struct QueuePlace(Arc<Inner>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    /// Decides, without waiting, whether an invocation may proceed, queue, or is
    /// throttled.
    fn admit(self: &Arc<Self>) -> Result<Admission, InvokeError> {
        // The semaphore is fair: once callers wait, released permits go to them, so this
        // cannot jump the queue.
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Admission::Now(permit));
        }
        // The counter guards no other memory, so relaxed ordering is enough.
        let queued = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_queue).then_some(n + 1)
            })
            .is_ok();
        if queued {
            return Ok(Admission::Queued(QueuePlace(Arc::clone(self))));
        }
        // A permit may have been released since the first try; refusing then would
        // throttle an idle function.
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map(Admission::Now)
            .map_err(|_| InvokeError::Throttled)
    }

    async fn run(
        &self,
        admission: Admission,
        invocation: Invocation,
        deadline: tokio::time::Instant,
    ) -> Result<FunctionResponse, InvokeError> {
        let _permit = match admission {
            Admission::Now(permit) => permit,
            Admission::Queued(place) => {
                let permit = Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| InvokeError::Failed("invoker shut down".into()))?;
                drop(place);
                permit
            }
        };
        // Built only once a slot is held, so a queued invocation does not hold its JSON
        // and its signature timestamp is the time it is sent.
        let event = invocation.to_aws_event(&self.api);
        let body = match &self.transport {
            Transport::H1 { pool, target } => {
                let request = self.h1_request(&invocation, &event);
                pool.send(&request, self.max_response_bytes, || connect_tcp(target))
                    .await?
            }
            Transport::Tls(tls) => {
                Box::pin(tls.send(self, &invocation, Bytes::from(event), deadline)).await?
            }
            Transport::H2c {
                pool,
                target,
                headers,
            } => {
                let headers = self.h2_headers(headers, &invocation, &event);
                Box::pin(pool.send(
                    &self.uri,
                    headers,
                    Bytes::from(event),
                    self.max_response_bytes,
                    || connect_tcp(target),
                ))
                .await?
            }
        };
        parse_proxy_response(body)
    }

    /// An HTTP/2 request's headers: `base` (the configured and default ones, without
    /// `host`) and the per-invocation ones.
    fn h2_headers(&self, base: &HeaderMap, invocation: &Invocation, event: &[u8]) -> HeaderMap {
        let mut headers = base.clone();
        self.fields(invocation, event, |name, value| {
            // The values are valid (checked or written here), so none is dropped.
            if let Ok(mut value) = HeaderValue::from_bytes(value) {
                // Values that differ from one invocation to the next (ids, the signature,
                // the length) are sent as never-indexed literals: HPACK would search its
                // table for them and store each one only to evict it unused, and the
                // signature must not sit in a table that later requests are compressed
                // against. The route key and event type repeat and stay indexed.
                if !matches!(name, "x-switchboard-route-key" | "x-switchboard-event-type") {
                    value.set_sensitive(true);
                }
                headers.append(HeaderName::from_static(name), value);
            }
        });
        headers
    }

    /// An HTTP/1.1 request: the rendered head, the per-invocation headers and the event.
    fn h1_request(&self, invocation: &Invocation, event: &[u8]) -> Vec<u8> {
        let mut request = Vec::with_capacity(self.head.len() + 320 + event.len());
        request.extend_from_slice(&self.head);
        self.fields(invocation, event, |name, value| {
            push_trusted(&mut request, name, value)
        });
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(event);
        request
    }

    /// The per-invocation headers, in order, each as a valid header value: the ids, the
    /// route key (left out if it is not a valid header value), the event type, the
    /// signature when a secret is set, and the body's length.
    fn fields(
        &self,
        invocation: &Invocation,
        body: &[u8],
        mut field: impl FnMut(&'static str, &[u8]),
    ) {
        if is_header_value(invocation.request_id.as_bytes()) {
            field("x-switchboard-request-id", invocation.request_id.as_bytes());
        }
        // Connection ids encode to base64url, event types are constants and signatures
        // and lengths are written here in ASCII: no need to check those.
        let connection_id = invocation.connection.id.encode();
        field(
            "x-switchboard-connection-id",
            connection_id.as_str().as_bytes(),
        );
        // A route key comes from the client's message and may hold bytes a header cannot;
        // the event body carries it in any case.
        if is_header_value(invocation.route_key.as_bytes()) {
            field("x-switchboard-route-key", invocation.route_key.as_bytes());
        }
        field(
            "x-switchboard-event-type",
            invocation.kind.as_aws().as_bytes(),
        );
        if let Some(signer) = &self.signer {
            let value = signature(signer.clone(), unix_seconds(), body);
            field("x-switchboard-signature", value.as_bytes());
        }
        let mut digits = [0u8; 20];
        field("content-length", decimal(body.len() as u64, &mut digits));
    }
}

/// How requests reach the function.
enum Transport {
    H1 {
        pool: h1::Pool<TcpStream>,
        target: Target,
    },
    /// HTTP/2 with prior knowledge.
    H2c {
        pool: http2::Pool,
        target: Target,
        /// The configured and default headers, without `host`.
        headers: HeaderMap,
    },
    /// `https://`: HTTP/1.1 or HTTP/2 over TLS, by ALPN.
    Tls(alpn::Tls),
}

#[cfg(test)]
mod tests;

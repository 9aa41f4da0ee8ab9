//! The HTTP function kind: each invocation POSTs the AWS API Gateway WebSocket event to a
//! plain `http://` URL (HTTP/1.1, or h2c with `http_version = "2"`, see `h2.rs`) and reads a
//! Lambda-proxy-shaped answer back.
//!
//! # Request
//!
//! `POST <url>` over HTTP/1.1 with keep-alive (a pool of connections per function, see
//! `h1.rs`), the body being the event JSON exactly as AWS sends it to a Lambda proxy
//! integration ([`Invocation::to_aws_event`]). Headers:
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
//!   extensions 16 KiB over a whole body (see `h1.rs`). Never buffered past the bound.
//! - **Idle connections**: at most `max_concurrency` per function, closed after
//!   [`POOL_IDLE_TIMEOUT`], each keeping at most 64 KiB of read buffer.
//!
//! # Failures
//!
//! [`InvokeError::Unreachable`] means the function never got the event: no connection
//! could be made (DNS failure, connection refused, connect error). Once a connection is
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

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Uri;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use switchboard_core::config::{HttpFunctionConfig, HttpVersion};
use switchboard_core::event::{ApiIdentity, FunctionResponse, Invocation, Payload};
use switchboard_core::text::decimal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::h1::Target;
use crate::{h1, h2};
use crate::{InvokeError, InvokeFuture, Invoker, SetupError};

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

/// Lambda runtimes differ on base64 padding; API Gateway accepts both forms.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
    /// What every request starts with, rendered once: for HTTP/1.1 the request line and
    /// headers, for HTTP/2 the HPACK block of the pseudo-headers and headers.
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
            HttpVersion::Http1 => {
                let mut head = format!("POST {path} HTTP/1.1\r\n").into_bytes();
                for (name, value) in &headers {
                    push_header(&mut head, name.as_str(), value.as_bytes());
                }
                head
            }
            HttpVersion::Http2 => {
                // `:authority` replaces `host`.
                let authority = headers
                    .iter()
                    .find(|(name, _)| *name == HOST)
                    .map(|(_, value)| value.as_bytes())
                    .unwrap_or_default();
                let mut head = h2::request_block(path, authority);
                for (name, value) in headers.iter().filter(|(name, _)| *name != HOST) {
                    h2::push_field(&mut head, name.as_str(), value.as_bytes());
                }
                head
            }
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
            port: uri.port_u16().unwrap_or(80),
        };
        let transport = match cfg.http_version {
            HttpVersion::Http1 => Transport::H1(h1::Pool::new(
                target,
                cfg.max_concurrency,
                POOL_IDLE_TIMEOUT,
            )),
            HttpVersion::Http2 => Transport::H2(h2::Pool::new(target, POOL_IDLE_TIMEOUT)),
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
            let timeout = inner.timeout;
            match tokio::time::timeout(timeout, inner.run(admission, invocation)).await {
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
            Transport::H1(pool) => {
                let mut request = Vec::with_capacity(self.head.len() + 320 + event.len());
                request.extend_from_slice(&self.head);
                self.fields(&invocation, &event, |name, value| {
                    push_trusted(&mut request, name, value)
                });
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(&event);
                pool.send(&request, self.max_response_bytes).await?
            }
            Transport::H2(pool) => {
                let mut block = Vec::with_capacity(self.head.len() + 320);
                block.extend_from_slice(&self.head);
                self.fields(&invocation, &event, |name, value| {
                    h2::push_field(&mut block, name, value)
                });
                pool.send(&block, Bytes::from(event), self.max_response_bytes)
                    .await?
            }
        };
        parse_proxy_response(body)
    }

    /// The per-invocation headers, in order, each as a valid header value: the ids, the
    /// route key (left out if it is not a valid header value), the event type, the
    /// signature when a secret is set, and the body's length.
    fn fields(&self, invocation: &Invocation, body: &[u8], mut field: impl FnMut(&str, &[u8])) {
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
    H1(h1::Pool),
    H2(h2::Pool),
}

/// `name: value\r\n`, left out when the value holds bytes a header value cannot (CR,
/// LF and other control characters).
fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if is_header_value(value) {
        push_trusted(out, name, value);
    }
}

/// Whether `value` may be sent as a header value, by the rule of
/// [`HeaderValue::from_bytes`] (visible ASCII, space, tab and obs-text; no CR, LF or other
/// control characters), without building one: that copies the bytes.
fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// `name: value\r\n` for a value known to be a valid header value.
fn push_trusted(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `host` header for a URL: its host, and its port unless that is 80.
fn host_header(uri: &Uri) -> Result<HeaderValue, SetupError> {
    let host = uri.host().unwrap_or_default();
    let value = match uri.port_u16() {
        Some(port) if port != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value)
        .map_err(|_| SetupError::invalid("url", "host is not a valid header value"))
}

fn parse_url(url: &str) -> Result<Uri, SetupError> {
    let bad = |problem: &str| SetupError::invalid("url", problem);
    let uri: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => return Err(bad(
            "https is not supported; use http:// (put TLS termination in front of the function)",
        )),
        _ => return Err(bad("must be an http:// URL")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported; use headers"));
    }
    Ok(uri)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `t=<t>,v1=<lowercase hex of HMAC-SHA256(secret, "<t>.<body>")>`.
fn signature(mut mac: Hmac<Sha256>, t: u64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // "t=" + up to 20 digits + ",v1=" + 64 hex digits.
    let mut value = String::with_capacity(2 + 20 + 4 + 64);
    value.push_str("t=");
    let digits_at = value.len();
    // Writing to a String cannot fail.
    let _ = write!(value, "{t}");
    mac.update(&value.as_bytes()[digits_at..]);
    mac.update(b".");
    mac.update(body);
    value.push_str(",v1=");
    for byte in mac.finalize().into_bytes() {
        value.push(char::from(HEX[usize::from(byte >> 4)]));
        value.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    value
}

/// A Lambda proxy answer. Fields the gateway does not read yet land in `extra`, so an
/// extension (a field the gateway starts to honour) is one more field here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyResponse {
    status_code: serde_json::Number,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    multi_value_headers: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
    /// Other top-level fields: switchboard's extensions (`groups`, `userId`, `state`)
    /// are read from here; anything else is ignored.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Reads a function's answer body the way API Gateway reads a Lambda proxy answer (see
/// the module docs). Shared by every kind whose functions answer in that shape.
pub fn parse_proxy_response(body: Bytes) -> Result<FunctionResponse, InvokeError> {
    if body.is_empty() {
        return Ok(FunctionResponse::ok());
    }
    // Only an object can be a proxy answer; skip the JSON parse for anything else.
    let starts_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if starts_object {
        // The common answer in one pass; duplicate keys (last one wins) take the slow path.
        if let Ok(mut fields) = serde_json::from_slice::<ProxyFields>(&body) {
            return match fields.status_code.take() {
                Some(Value::Number(status_code)) => fields.into_proxy(status_code)?.into_response(),
                _ => Ok(as_is(body)),
            };
        }
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) {
            if object.get("statusCode").is_some_and(Value::is_number) {
                let proxy = ProxyResponse::deserialize(Value::Object(object))
                    .map_err(|_| malformed("has a field of the wrong type"))?;
                return proxy.into_response();
            }
        }
    }
    Ok(as_is(body))
}

/// A body that is not a proxy answer: sent as it came, as text if it is UTF-8.
fn as_is(body: Bytes) -> FunctionResponse {
    let binary = std::str::from_utf8(&body).is_err();
    FunctionResponse {
        body: Some(Payload { data: body, binary }),
        ..FunctionResponse::ok()
    }
}

/// The fields of an answer object the gateway reads, untyped, so that any object without
/// duplicate keys parses; [`ProxyFields::into_proxy`] checks the types.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyFields {
    status_code: Option<Value>,
    headers: Option<Value>,
    multi_value_headers: Option<Value>,
    body: Option<Value>,
    is_base64_encoded: Option<Value>,
    groups: Option<Value>,
    user_id: Option<Value>,
    state: Option<Value>,
}

impl ProxyFields {
    fn into_proxy(self, status_code: serde_json::Number) -> Result<ProxyResponse, InvokeError> {
        let wrong = || malformed("has a field of the wrong type");
        let object = |v: Option<Value>| match v {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(wrong()),
        };
        let mut extra = Map::new();
        for (key, value) in [
            ("groups", self.groups),
            ("userId", self.user_id),
            ("state", self.state),
        ] {
            if let Some(value) = value {
                extra.insert(key.to_owned(), value);
            }
        }
        Ok(ProxyResponse {
            status_code,
            headers: object(self.headers)?,
            multi_value_headers: object(self.multi_value_headers)?,
            body: self.body,
            is_base64_encoded: match self.is_base64_encoded {
                None => None,
                Some(Value::Bool(b)) => Some(b),
                Some(_) => return Err(wrong()),
            },
            extra,
        })
    }
}

fn malformed(what: &'static str) -> InvokeError {
    InvokeError::Failed(["malformed proxy response: ", what].concat())
}

impl ProxyResponse {
    fn into_response(self) -> Result<FunctionResponse, InvokeError> {
        let status = self
            .status_code
            .as_u64()
            .filter(|code| (100..=599).contains(code))
            .and_then(|code| u16::try_from(code).ok())
            .ok_or_else(|| malformed("statusCode is not an HTTP status (100..=599)"))?;

        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in self.headers.unwrap_or_default() {
            if let Some(value) = header_text(value)? {
                set_header(&mut headers, name, value)?;
            }
        }
        for (name, values) in self.multi_value_headers.unwrap_or_default() {
            let last = match values {
                Value::Array(mut values) => values.pop(),
                Value::Null => None,
                _ => return Err(malformed("multiValueHeaders value is not an array")),
            };
            if let Some(value) = last.map(header_text).transpose()?.flatten() {
                set_header(&mut headers, name, value)?;
            }
        }

        let body = match self.body {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) if self.is_base64_encoded == Some(true) => {
                let data = BASE64
                    .decode(text.as_bytes())
                    .map_err(|_| malformed("body is not valid base64"))?;
                (!data.is_empty()).then(|| Payload {
                    data: Bytes::from(data),
                    binary: true,
                })
            }
            Some(Value::String(text)) => Some(Payload {
                data: Bytes::from(text),
                binary: false,
            }),
            Some(other) => Some(Payload {
                data: Bytes::from(serde_json::to_vec(&other).unwrap_or_default()),
                binary: false,
            }),
        };

        Ok(FunctionResponse {
            status,
            headers,
            body,
            extension: switchboard_core::event::ResponseExtension::from_json(&self.extra),
        })
    }
}

/// A header value as text: numbers and booleans as written (runtimes emit
/// `"Content-Length": 5`), `null` as absent.
fn header_text(value: Value) -> Result<Option<String>, InvokeError> {
    match value {
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(if b { "true" } else { "false" }.to_owned())),
        Value::Null => Ok(None),
        Value::Array(_) | Value::Object(_) => Err(malformed("header value is not a string")),
    }
}

/// Sets a header, replacing one of the same name in any case. Invalid names or values
/// (a CR or LF would split the handshake response) fail the answer, as API Gateway does.
fn set_header(
    headers: &mut Vec<(String, String)>,
    name: String,
    value: String,
) -> Result<(), InvokeError> {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(malformed("invalid header name"));
    }
    if HeaderValue::from_bytes(value.as_bytes()).is_err() {
        return Err(malformed("invalid header value"));
    }
    match headers
        .iter_mut()
        .find(|(existing, _)| existing.eq_ignore_ascii_case(&name))
    {
        Some(slot) => slot.1 = value,
        None => headers.push((name, value)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<FunctionResponse, InvokeError> {
        parse_proxy_response(Bytes::copy_from_slice(body.as_bytes()))
    }

    fn text(body: &str) -> Option<Payload> {
        Some(Payload {
            data: Bytes::copy_from_slice(body.as_bytes()),
            binary: false,
        })
    }

    #[test]
    fn empty_body_is_ok() {
        assert_eq!(parse("").unwrap(), FunctionResponse::ok());
    }

    #[test]
    fn proxy_object() {
        let r = parse(
            r#"{"statusCode":403,"headers":{"X-A":"1","X-N":5,"X-Null":null},
                "multiValueHeaders":{"x-a":["2","3"],"X-M":["m"]},"body":"no","extra":1}"#,
        )
        .unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(
            r.headers,
            [
                ("X-A".to_owned(), "3".to_owned()),
                ("X-N".to_owned(), "5".to_owned()),
                ("X-M".to_owned(), "m".to_owned())
            ]
        );
        assert_eq!(r.body, text("no"));
    }

    #[test]
    fn proxy_body_forms() {
        let r = parse(r#"{"statusCode":200,"body":"AJ+Slg==","isBase64Encoded":true}"#).unwrap();
        assert_eq!(
            r.body,
            Some(Payload {
                data: Bytes::from_static(&[0, 159, 146, 150]),
                binary: true
            })
        );
        // Unpadded base64 is accepted too.
        let r = parse(r#"{"statusCode":200,"body":"AJ+Slg","isBase64Encoded":true}"#).unwrap();
        assert_eq!(
            r.body.unwrap().data,
            Bytes::from_static(&[0, 159, 146, 150])
        );
        let r = parse(r#"{"statusCode":200,"body":{"a":[1,true]}}"#).unwrap();
        assert_eq!(r.body, text(r#"{"a":[1,true]}"#));
        let r = parse(r#"{"statusCode":204,"body":""}"#).unwrap();
        assert_eq!((r.status, r.body), (204, None));
        let r = parse(r#"{"statusCode":200,"body":null,"isBase64Encoded":false}"#).unwrap();
        assert_eq!(r.body, None);
        // A repeated key: the last one wins, as API Gateway reads it.
        let r = parse(r#"{"statusCode":500,"body":"x","statusCode":201,"body":"dup"}"#).unwrap();
        assert_eq!((r.status, r.body), (201, text("dup")));
        // switchboard's extension fields.
        let r = parse(r#"{"statusCode":200,"groups":["a"],"userId":"u","state":{"k":"v","n":1}}"#)
            .unwrap();
        assert_eq!(r.extension.groups, ["a"]);
        assert_eq!(r.extension.user_id.as_deref(), Some("u"));
        assert_eq!(
            r.extension.state,
            [
                ("k".to_owned(), Some("v".to_owned())),
                ("n".to_owned(), Some("1".to_owned()))
            ]
        );
    }

    #[test]
    fn malformed_proxy_objects_fail() {
        for bad in [
            r#"{"statusCode":99}"#,
            r#"{"statusCode":600}"#,
            r#"{"statusCode":-1}"#,
            r#"{"statusCode":200.5}"#,
            r#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#,
            r#"{"statusCode":200,"headers":{"a":{"b":1}}}"#,
            r#"{"statusCode":200,"headers":"x"}"#,
            r#"{"statusCode":200,"headers":{"bad name":"v"}}"#,
            r#"{"statusCode":200,"headers":{"x":"a\r\nb"}}"#,
            r#"{"statusCode":200,"multiValueHeaders":{"x":"v"}}"#,
            r#"{"statusCode":200,"isBase64Encoded":"yes"}"#,
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, InvokeError::Failed(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn other_bodies_pass_through() {
        for raw in [
            r#"{"hello":"world"}"#,
            r#"{"statusCode":"200","body":"x"}"#,
            r#"[1,2]"#,
            "plain text",
            "{not json",
            "  ",
        ] {
            let r = parse(raw).unwrap();
            assert_eq!((r.status, r.body), (200, text(raw)), "{raw}");
        }
        let r = parse_proxy_response(Bytes::from_static(&[0xff, 0x00])).unwrap();
        assert_eq!(
            r.body,
            Some(Payload {
                data: Bytes::from_static(&[0xff, 0x00]),
                binary: true
            })
        );
    }

    #[test]
    fn header_values_follow_the_http_crate() {
        for b in 0u8..=255 {
            for v in [vec![b], vec![b'a', b, b'z']] {
                assert_eq!(
                    is_header_value(&v),
                    HeaderValue::from_bytes(&v).is_ok(),
                    "{v:?}"
                );
            }
        }
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        let mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        let v = signature(mac, 1_700_000_000, b"{}");
        let mut expect = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        expect.update(b"1700000000.{}");
        let hex: String = expect
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v, format!("t=1700000000,v1={hex}"));
    }

    fn cfg(url: &str) -> HttpFunctionConfig {
        HttpFunctionConfig {
            url: url.into(),
            timeout_ms: 1000,
            max_concurrency: 4,
            max_queue: 4,
            secret: None,
            headers: Default::default(),
            max_response_bytes: 1024,
            http_version: Default::default(),
        }
    }

    fn api() -> ApiIdentity {
        ApiIdentity {
            stage: "s".into(),
            domain_name: "d".into(),
            api_id: "a".into(),
        }
    }

    #[test]
    fn new_validates_the_config() {
        assert!(HttpInvoker::new("f", &cfg("http://127.0.0.1:9/x?y=1"), api()).is_ok());
        assert!(HttpInvoker::new("f", &cfg("HTTP://example.com"), api()).is_ok());
        for (url, want) in [
            ("https://example.com/", "url: https is not supported"),
            ("ftp://example.com/", "url: must be an http:// URL"),
            ("/relative", "url: must be an http:// URL"),
            ("http://", "url: not a valid URL"),
            ("not a url", "url: not a valid URL"),
            ("http://u:p@example.com/", "url: credentials"),
        ] {
            let err = HttpInvoker::new("f", &cfg(url), api())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{url}: {err}");
        }
        let mut c = cfg("http://h/");
        c.headers.insert("Content-Length".into(), "1".into());
        let err = HttpInvoker::new("f", &c, api()).unwrap_err();
        assert_eq!(err.key(), Some("headers.Content-Length"));
        assert_eq!(err.problem(), "reserved, cannot be configured");
        assert_eq!(
            err.to_string(),
            "headers.Content-Length: reserved, cannot be configured"
        );
        let mut c = cfg("http://h/");
        c.headers
            .insert("X-Switchboard-Signature".into(), "t=1".into());
        assert!(HttpInvoker::new("f", &c, api()).is_err());
        let mut c = cfg("http://h/");
        c.headers.insert("x-ok".into(), "a\nb".into());
        let err = HttpInvoker::new("f", &c, api()).unwrap_err();
        assert_eq!(err.to_string(), "headers.x-ok: not a valid header value");
        let mut c = cfg("http://h/");
        c.max_concurrency = 0;
        assert!(HttpInvoker::new("f", &c, api()).is_err());
        let mut c = cfg("http://h/");
        c.secret = Some(String::new());
        assert!(HttpInvoker::new("f", &c, api()).is_err());
    }
}

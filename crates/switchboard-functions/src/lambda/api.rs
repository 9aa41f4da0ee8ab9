//! The Lambda Runtime API one worker polls, served on that worker's own loopback
//! listener, so a request's connection says which worker sent it.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /2018-06-01/runtime/invocation/next` | long poll; 200 with the event JSON and the `Lambda-Runtime-*` headers |
//! | `POST /2018-06-01/runtime/invocation/{id}/response` | 202; 413 past [`MAX_PAYLOAD_BYTES`] (the invocation fails) |
//! | `POST /2018-06-01/runtime/invocation/{id}/error` | 202; the invocation fails with `errorType: errorMessage` |
//! | `POST /2018-06-01/runtime/init/error` | 202; the worker is expected to exit |
//!
//! An `{id}` other than the invocation the worker runs is answered 400
//! (`InvalidRequestID`), as AWS does; other paths 404.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::pool::Take;
use super::worker::{InFlight, Worker};
use crate::InvokeError;

/// Largest response or error payload a runtime may post, as Lambda's synchronous limit.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Connections one worker's API keeps open at once; a runtime needs one or two.
const MAX_CONNECTIONS: usize = 8;
/// Longest failure message built from a runtime's error report.
const MAX_ERROR_CHARS: usize = 300;

const PREFIX: &str = "/2018-06-01/runtime/";

const REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
const DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
const FUNCTION_ARN: HeaderName = HeaderName::from_static("lambda-runtime-invoked-function-arn");
const TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
const ERROR_TYPE: HeaderName = HeaderName::from_static("lambda-runtime-function-error-type");

/// Accepts the worker's connections until the worker ends.
pub(crate) async fn serve(listener: TcpListener, worker: Arc<Worker>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = worker.token.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of descriptors or similar: pause instead of spinning on the error.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        // Small requests and answers; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let guard = ConnectionGuard::new(&open);
        let worker = Arc::clone(&worker);
        tokio::spawn(async move {
            let _guard = guard;
            let token = worker.token.clone();
            let service = service_fn(move |request| {
                let worker = Arc::clone(&worker);
                async move { Ok::<_, Infallible>(route(&worker, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = token.cancelled() => {}
            }
        });
    }
}

struct ConnectionGuard(Arc<AtomicUsize>);

impl ConnectionGuard {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn route(worker: &Arc<Worker>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let Some(rest) = parts.uri.path().strip_prefix(PREFIX) else {
        return not_found();
    };
    let post = parts.method == Method::POST;
    match rest {
        "invocation/next" if parts.method == Method::GET => next(worker).await,
        "init/error" if post => {
            let text = match read_body(&parts.headers, body).await {
                Ok(body) => error_text(&parts.headers, &body),
                Err(_) => error_text(&parts.headers, b""),
            };
            worker.init_failed(text.into());
            accepted()
        }
        _ => match rest
            .strip_prefix("invocation/")
            .and_then(|r| r.split_once('/'))
        {
            Some((id, "response")) if post => response(worker, id, &parts.headers, body).await,
            Some((id, "error")) if post => error(worker, id, &parts.headers, body).await,
            _ => not_found(),
        },
    }
}

/// The long poll: the next queued invocation, or wait for one.
async fn next(worker: &Arc<Worker>) -> Response<Full<Bytes>> {
    loop {
        let (take, first) = worker.pool.state.lock().take(worker.id, Instant::now());
        if first {
            worker.became_ready();
        }
        let job = match take {
            Take::Job(job) => job,
            Take::Wait(rx) => match rx.await {
                Ok(job) => job,
                // The pool dropped the other end: stop this idle worker.
                Err(_) => {
                    worker.token.cancel();
                    return stopping();
                }
            },
            Take::Stop => {
                worker.token.cancel();
                return stopping();
            }
        };
        // The caller gave up while the job was on its way: take the next one.
        if job.started.send(()).is_err() {
            continue;
        }
        let pool = &worker.pool;
        let request_id = pool.request_ids.for_invocation(&job.invocation.request_id);
        let deadline = Instant::now() + pool.timeout;
        let deadline_ms = epoch_ms().saturating_add(pool.timeout.as_millis() as u64);
        let event = job.invocation.to_aws_event(&pool.api);

        let mut response = Response::new(Full::new(Bytes::from(event)));
        let headers = response.headers_mut();
        headers.reserve(5);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, value);
        }
        headers.insert(DEADLINE_MS, HeaderValue::from(deadline_ms));
        headers.insert(FUNCTION_ARN, pool.function_arn.clone());
        headers.insert(TRACE_ID, pool.request_ids.trace_id());
        worker.begin(InFlight {
            request_id,
            deadline,
            result: job.result,
        });
        return response;
    }
}

async fn response(
    worker: &Worker,
    id: &str,
    headers: &HeaderMap,
    body: Incoming,
) -> Response<Full<Bytes>> {
    if !worker.is_current(id) {
        return invalid_request_id();
    }
    match read_body(headers, body).await {
        Ok(body) => match worker.finish(id) {
            Some(result) => {
                let _ = result.send(Ok(body));
                accepted()
            }
            None => invalid_request_id(),
        },
        Err(BodyError::TooLarge) => {
            if let Some(result) = worker.finish(id) {
                let _ = result.send(Err(InvokeError::Failed(
                    "function response exceeds 6 MiB".into(),
                )));
            }
            too_large()
        }
        // The runtime's connection broke mid-body: the invocation is still open, and
        // ends with the worker's next report, its exit, or its deadline.
        Err(BodyError::Read) => bad_request(),
    }
}

async fn error(
    worker: &Worker,
    id: &str,
    headers: &HeaderMap,
    body: Incoming,
) -> Response<Full<Bytes>> {
    if !worker.is_current(id) {
        return invalid_request_id();
    }
    let (text, answer) = match read_body(headers, body).await {
        Ok(body) => (error_text(headers, &body), accepted()),
        Err(BodyError::TooLarge) => (error_text(headers, b""), too_large()),
        Err(BodyError::Read) => return bad_request(),
    };
    match worker.finish(id) {
        Some(result) => {
            let _ = result.send(Err(InvokeError::Failed(text)));
            answer
        }
        None => invalid_request_id(),
    }
}

enum BodyError {
    TooLarge,
    Read,
}

async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_PAYLOAD_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

#[derive(Deserialize)]
struct RuntimeError {
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(rename = "errorMessage", default)]
    error_message: Option<String>,
}

/// `errorType: errorMessage` from a runtime's error report (the header's type when the
/// body has none), cut to [`MAX_ERROR_CHARS`].
fn error_text(headers: &HeaderMap, body: &[u8]) -> String {
    let report: Option<RuntimeError> = serde_json::from_slice(body).ok();
    let header_type = headers.get(ERROR_TYPE).and_then(|v| v.to_str().ok());
    let (error_type, message) = match &report {
        Some(r) => (
            r.error_type.as_deref().or(header_type),
            r.error_message.as_deref(),
        ),
        None => (header_type, None),
    };
    let mut text = String::new();
    text.push_str(error_type.unwrap_or("Unknown"));
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn accepted() -> Response<Full<Bytes>> {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn invalid_request_id() -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
    )
}

fn bad_request() -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Could not read the request body","errorType":"InvalidRequest"}"#,
    )
}

fn too_large() -> Response<Full<Bytes>> {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        r#"{"errorMessage":"Exceeded maximum allowed payload size (6291456 bytes).","errorType":"RequestEntityTooLarge"}"#,
    )
}

fn not_found() -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        r#"{"errorMessage":"Not found","errorType":"NotFound"}"#,
    )
}

fn stopping() -> Response<Full<Bytes>> {
    json(
        StatusCode::GONE,
        r#"{"errorMessage":"This worker is being stopped","errorType":"WorkerStopping"}"#,
    )
}

/// Request and trace ids for the events of one pool.
#[derive(Debug)]
pub(crate) struct RequestIds {
    seed: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // A randomly keyed hasher: random bits without a random-number crate.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(epoch_ms());
        Self {
            seed: hasher.finish(),
            counter: AtomicU64::new(0),
        }
    }

    /// The invocation's own request id when it is safe in a URL path (the gateway's are:
    /// base64url and `=`), so the handler's `aws_request_id`, its log lines and the
    /// gateway's logs share one id; otherwise a fresh UUID-shaped one.
    pub fn for_invocation(&self, id: &str) -> String {
        let safe = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'));
        if safe {
            return id.to_owned();
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (hi, lo) = (self.seed, n ^ self.seed.rotate_left(17));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xfff,
            (lo >> 48) & 0xfff,
            lo & 0xffff_ffff_ffff
        )
    }

    /// `Root=1-<epoch seconds hex>-<24 hex>;Sampled=0`, an X-Ray trace header.
    pub fn trace_id(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        fn hex(out: &mut [u8], mut value: u64) {
            for slot in out.iter_mut().rev() {
                *slot = HEX[(value & 0xf) as usize];
                value >>= 4;
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = *b"Root=1-00000000-000000000000000000000000;Sampled=0";
        hex(&mut buf[7..15], epoch_ms() / 1000);
        hex(&mut buf[16..24], self.seed >> 32);
        hex(&mut buf[24..40], n ^ self.seed);
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| {
            HeaderValue::from_static("Root=1-00000000-000000000000000000000000")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_prefers_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_TYPE, HeaderValue::from_static("Runtime.Header"));
        let body = br#"{"errorMessage":"bad input","errorType":"ValueError","stackTrace":[]}"#;
        assert_eq!(error_text(&headers, body), "ValueError: bad input");
        assert_eq!(error_text(&headers, b"not json"), "Runtime.Header");
        assert_eq!(error_text(&HeaderMap::new(), b"{}"), "Unknown");
        let long = format!(
            r#"{{"errorType":"E","errorMessage":"{}"}}"#,
            "x".repeat(1000)
        );
        assert_eq!(
            error_text(&HeaderMap::new(), long.as_bytes())
                .chars()
                .count(),
            MAX_ERROR_CHARS + 1
        );
    }

    #[test]
    fn request_ids() {
        let ids = RequestIds::new();
        assert_eq!(ids.for_invocation("BFHPhFe3IAMF95g="), "BFHPhFe3IAMF95g=");
        let made = ids.for_invocation("a/b");
        assert_eq!(made.len(), 36);
        assert_ne!(made, ids.for_invocation("a/b"));
        let trace = ids.trace_id();
        let trace = trace.to_str().unwrap();
        assert!(
            trace.starts_with("Root=1-") && trace.ends_with(";Sampled=0"),
            "{trace}"
        );
        assert_ne!(trace, ids.trace_id().to_str().unwrap());
    }
}

//! The management listener: Prometheus `/metrics`, `/healthz`, `/readyz`, and the AWS
//! `@connections` API ([`connections`], authenticated with SigV4 ([`sigv4`]) or a bearer
//! token).
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 while the node
//! accepts connections and its backplane is usable, and 503 once shutdown has begun, so a
//! load balancer stops sending new clients before connections are closed.
//!
//! What the door refuses before any route is matched ([`serve`], [`router`]): a peer
//! outside `[management] allow_ips` or inside `deny_ips` ([`PeerRules`], 403 to every
//! request of its connection), a request head over [`HeadLimits`] (431, from hyper, with
//! no more of it buffered), and a path with a `.` or `..` segment (400); empty path
//! segments are dropped before routing. So a signature can only reach the route its path
//! names. The management handlers then check
//! credentials from the head alone before they read a body ([`connections`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchboard_cluster::Backplane;
use switchboard_core::access::IpRules;
use switchboard_core::config::{ManagementConfig, DEFAULT_MAX_REQUEST_HEADERS};
use switchboard_edge::metrics::ReasonLabel;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub mod connections;
pub mod sigv4;
pub mod v1;

/// What the management endpoints read.
pub struct ApiState {
    /// Every metric of the node.
    pub registry: Registry,
    /// False once shutdown has begun.
    pub accepting: AtomicBool,
    /// The backplane, for readiness.
    pub backplane: Arc<dyn Backplane>,
}

/// Requests the management listener refused before a handler acted on them, by reason
/// (`switchboard_management_refused_total{reason}`).
#[derive(Clone, Default)]
pub struct ManagementMetrics {
    refused: Family<ReasonLabel, Counter>,
}

impl ManagementMetrics {
    /// Registers the metrics under the `switchboard_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("switchboard").register(
            "management_refused",
            "Management requests refused at the door, by reason",
            self.refused.clone(),
        );
    }

    /// Counts one refusal; returns how many of its reason there have been.
    pub fn refuse(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&ReasonLabel { reason }).inc() + 1
    }
}

/// The management router: fixed paths first, everything else is an `@connections` path.
/// Every request passes the door (see the crate docs) before any route is matched.
pub fn router(state: Arc<ApiState>, connections: Arc<connections::ConnectionsApi>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(v1::router(connections.clone()))
        .fallback_service(
            Router::new()
                .fallback(connections::handle)
                .with_state(connections.clone()),
        );
    // A router with no routes of its own: its layer sees every request before `routes`
    // matches one.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(connections, door))
}

/// Makes the path the router matches the one a signature can be checked against.
///
/// A `.` or `..` segment, in any percent-encoding, is refused with 400: SDKs sign the path
/// with such segments resolved, so the route it reaches would not be the one its signature
/// names, and no client of this API needs one. Empty segments are dropped before routing
/// (the JS SDK sends `/prod//@connections/...` for an endpoint with a trailing slash), so
/// that `/v1/groups//messages` cannot reach a route with an empty parameter under a
/// signature for `/v1/groups/messages`; the path as received is kept for signers that
/// sign it as sent.
async fn door(
    State(api): State<Arc<connections::ConnectionsApi>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if sigv4::has_dot_segment(path) {
        api.metrics.refuse("dot_segment_path");
        return connections::aws_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "The request path must not contain '.' or '..' segments",
        );
    }
    if path.contains("//") {
        let mut collapsed = String::with_capacity(path.len());
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            collapsed.push('/');
            collapsed.push_str(segment);
        }
        if collapsed.is_empty() || path.ends_with('/') {
            collapsed.push('/');
        }
        if let Some(query) = req.uri().query() {
            collapsed.push('?');
            collapsed.push_str(query);
        }
        let received = connections::ReceivedPath(path.to_owned());
        let mut parts = req.uri().clone().into_parts();
        match collapsed.parse() {
            Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
            Err(_) => {
                return connections::aws_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "Malformed request path",
                )
            }
        }
        match axum::http::Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return connections::aws_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "Malformed request path",
                )
            }
        }
        req.extensions_mut().insert(received);
    }
    next.run(req).await
}

/// Bounds of a request head on the management listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Request line plus headers, bytes.
    pub max_bytes: usize,
    /// Header lines.
    pub max_headers: usize,
}

impl From<&ManagementConfig> for HeadLimits {
    fn from(m: &ManagementConfig) -> Self {
        Self {
            max_bytes: m.max_request_head_bytes,
            max_headers: m.max_request_headers,
        }
    }
}

/// `[management] allow_ips` and `deny_ips`, matched on the TCP peer's address (the
/// management listener sits behind no proxy whose `X-Forwarded-For` could be believed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRules {
    /// Networks allowed; when not empty, every other address is refused.
    pub allow: Vec<ipnet::IpNet>,
    /// Networks refused, even when in `allow`.
    pub deny: Vec<ipnet::IpNet>,
}

impl From<&ManagementConfig> for PeerRules {
    fn from(m: &ManagementConfig) -> Self {
        Self {
            allow: m.allow_ips.clone(),
            deny: m.deny_ips.clone(),
        }
    }
}

impl PeerRules {
    /// Whether `ip` may use the management listener.
    pub fn permits(&self, ip: IpAddr) -> bool {
        IpRules {
            allow: &self.allow,
            deny: &self.deny,
        }
        .permits(ip)
    }
}

/// How long a refused peer's connection may take to send the request it is refused.
const REFUSED_CONNECTION_BUDGET: Duration = Duration::from_secs(5);

/// Answers 403 to a peer [`PeerRules`] refuses: one request, then the connection closes.
/// Counted once a connection (`management_refused{reason="ip_denied"}`), and logged with the
/// peer at info for the first and then at each power of two of the count, at debug
/// otherwise, so a flood of refused connections writes a few dozen lines.
fn refuse_peer(
    builder: &Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    metrics: &ManagementMetrics,
) {
    let n = metrics.refuse("ip_denied");
    if n.is_power_of_two() {
        info!(%peer, refused_total = n, "management connection refused by [management] allow_ips/deny_ips");
    } else {
        debug!(%peer, "management connection refused by [management] allow_ips/deny_ips");
    }
    let service = hyper::service::service_fn(|_req| async {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            b"connections from this address are not allowed\n",
        )));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok::<_, std::convert::Infallible>(r)
    });
    let mut builder = builder.clone();
    builder.keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSED_CONNECTION_BUDGET, conn).await;
    });
}

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown` completes, then lets the
/// requests in flight finish (idle keep-alive connections close at once) and returns when
/// every connection has ended.
///
/// Each connection's request heads are bounded by `limits`: hyper answers 431 itself once
/// a head passes `max_bytes` or has more than `max_headers` lines, and its read buffer is
/// capped at `max_bytes` (at least hyper's floor of 8 KiB), so no more than that of a head
/// is held. Bodies stream through that buffer in pieces of at most that size. A peer `peers`
/// refuses gets 403 whatever it asks.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HeadLimits,
    peers: PeerRules,
    metrics: ManagementMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new();
    builder
        .max_header_size(limits.max_bytes)
        .max_buf_size(limits.max_bytes.max(8192))
        .keep_alive(true);
    // hyper keeps up to 100 header slots on the stack and allocates per request for any
    // other count, so the default is left as hyper's own.
    if limits.max_headers != DEFAULT_MAX_REQUEST_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    // Dropped by every connection task when it ends; `closed()` then completes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "management accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if !peers.permits(peer.ip()) {
            refuse_peer(&builder, stream, peer, &metrics);
            continue;
        }
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut stopping = false;
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_parse_too_large() => {
                    metrics.refuse("head_too_large");
                    debug!(%peer, "management request head over its limits: 431");
                }
                Err(e) => debug!(%peer, error = %e, "management connection error"),
            }
            drop(stop);
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed\n".to_owned(),
        ),
    }
}

async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    if !state.accepting.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !state.backplane.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "backplane unavailable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

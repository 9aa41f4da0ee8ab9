//! The listener: accept, optional TLS, the HTTP/1.1 handshake (hyper), limits at the door,
//! `$connect`, and the hand-off of the raw stream to a connection task.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use switchboard_core::config::Config;
use switchboard_core::id::IdGenerator;
use switchboard_core::route::{RouteTable, SelectionExpression};
use switchboard_core::schema::MessageSchema;
use switchboard_functions::Function;
use switchboard_ws::deflate::DeflateConfig;
use switchboard_ws::Limits;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::accept::{
    apply_identity, authorize, connection_info, invoke_connect, open, refuse, refuse_access,
    resume, switching, take_session, Opening,
};
use crate::handshake::{self, Decision, Reject};
use crate::inner::{EdgeInner, IpLimiter, ResumeSettings, Settings};
use crate::metrics::EdgeMetrics;
use crate::parked::Take;
use crate::slot::Slot;
use crate::table::{CloseRequest, ConnHandle, ConnectionTable};
use crate::target::RouteTarget;
use crate::EdgeError;

/// How long past the shutdown deadline [`Edge::drained`] waits for connection tasks,
/// which by then only write their close frame and count what they abandoned.
pub const ABANDON_SLACK: Duration = Duration::from_secs(1);

/// The WebSocket edge of one node.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<EdgeInner>,
}

impl Edge {
    /// Builds the edge from a validated config and the configured functions.
    pub fn new(
        config: &Config,
        node_id: &str,
        functions: &HashMap<String, Function>,
        authorizer: Option<Arc<switchboard_auth::Authorizer>>,
        backplane: Arc<dyn switchboard_cluster::Backplane>,
    ) -> Result<Self, EdgeError> {
        let l = &config.limits;
        let k = &config.keepalive;
        let c = &config.compression;
        let secs = Duration::from_secs;
        let settings = Settings {
            idle_timeout: secs(l.idle_timeout_secs),
            max_connection: (l.max_connection_secs > 0).then(|| secs(l.max_connection_secs)),
            handshake_timeout: secs(l.handshake_timeout_secs),
            max_head_bytes: l.max_request_head_bytes,
            max_headers: l.max_request_headers,
            write_timeout: secs(l.write_timeout_secs),
            ping_interval: (k.ping_interval_secs > 0).then(|| secs(k.ping_interval_secs)),
            pong_timeout: secs(k.pong_timeout_secs),
            max_connections: l.max_connections,
            messages_per_sec: l.messages_per_sec,
            messages_burst: l.messages_burst,
            queue_messages: l.outbound_queue_messages,
            queue_bytes: l.outbound_queue_bytes,
            ws_limits: Limits {
                max_frame_bytes: l.max_frame_bytes,
                max_message_bytes: l.max_message_bytes,
            },
            deflate: c.enabled.then_some(DeflateConfig {
                level: c.level,
                context_takeover: c.context_takeover,
                server_max_window_bits: c.server_max_window_bits,
                threshold: c.threshold_bytes,
            }),
            subprotocols: config.server.subprotocols.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            allowed_origins: config.access.allowed_origins.clone(),
            require_origin: config.access.require_origin,
            allow_ips: config.access.allow_ips.clone(),
            deny_ips: config.access.deny_ips.clone(),
            user_limit: (config.access.max_connections_per_user > 0).then_some((
                config.access.max_connections_per_user,
                config.access.on_user_limit,
            )),
            reject_binary: config.router.binary == switchboard_core::config::BinaryMode::Reject,
            connect_budget: secs(30),
            op_timeout: Duration::from_millis(config.cluster.op_timeout_ms.max(1)),
            resume: config.resume.enabled.then(|| ResumeSettings {
                window: secs(config.resume.window_secs),
                buffer_messages: config.resume.buffer_messages,
                buffer_bytes: config.resume.buffer_bytes,
                keep: config.resume.keep_in_backplane
                    && config.cluster.backplane != switchboard_core::config::BackplaneKind::Local,
            }),
        };
        let selection = SelectionExpression::parse(&config.router.selection_expression)
            .map_err(|e| EdgeError::Config(e.to_string()))?;
        let mut routes = Vec::new();
        for (key, route) in &config.routes {
            let function = functions
                .get(&route.function)
                .ok_or_else(|| EdgeError::Config(format!("no function {:?}", route.function)))?
                .clone();
            let schema = match &route.schema {
                None => None,
                Some(path) => Some(Arc::new(MessageSchema::load(path).map_err(|e| {
                    EdgeError::Config(format!(
                        "routes.{}.schema: {e}",
                        switchboard_core::config::table_key(key)
                    ))
                })?)),
            };
            routes.push((
                key.clone(),
                RouteTarget {
                    key: Arc::from(key.as_str()),
                    function,
                    two_way: route.two_way,
                    parallel: route.parallel,
                    function_name: Arc::from(route.function.as_str()),
                    schema,
                },
            ));
        }
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let ip_limiter = (l.connections_per_ip_per_sec > 0).then(|| IpLimiter {
            rate: l.connections_per_ip_per_sec,
            burst: l.connections_per_ip_burst,
            buckets: Mutex::new(HashMap::new()),
        });
        let a = &config.access;
        let metrics = EdgeMetrics::default();
        let drain = crate::drain::Drain::new(metrics.shutdown_abandoned.clone());
        Ok(Self {
            inner: Arc::new(EdgeInner {
                settings,
                metrics,
                table: ConnectionTable::new(l.max_groups_per_connection, l.max_state_bytes),
                ids: IdGenerator::new(node_id),
                routes: RouteTable::new(selection, routes),
                ip_limiter,
                ip_counts: (a.max_connections_per_ip > 0)
                    .then(|| crate::door::IpCounts::new(a.max_connections_per_ip)),
                user_rates: (a.messages_per_sec_per_user > 0).then(|| {
                    crate::door::UserRates::new(
                        a.messages_per_sec_per_user,
                        a.messages_burst_per_user,
                    )
                }),
                slots: Arc::new(AtomicUsize::new(0)),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                drain,
                tls,
                static_files: config.static_files.clone(),
                authorizer,
                refusal_log: Default::default(),
                backplane,
                sessions: Mutex::new(HashMap::new()),
                moves: Mutex::new(crate::away::Moves::default()),
                forwarder: std::sync::OnceLock::new(),
                copy_writer: std::sync::OnceLock::new(),
                registry_writer: std::sync::OnceLock::new(),
                ops: Default::default(),
                origin: Instant::now(),
                origin_epoch_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                local_port: Default::default(),
            }),
        })
    }

    /// Shared state (metrics, connection table).
    pub fn inner(&self) -> &Arc<EdgeInner> {
        &self.inner
    }

    /// Accepts connections until [`Edge::shutdown`] is called.
    pub async fn serve(&self, listener: TcpListener) {
        let edge = &self.inner;
        if let Ok(addr) = listener.local_addr() {
            edge.local_port.store(addr.port(), Ordering::Relaxed);
        }
        loop {
            let accepted = tokio::select! {
                _ = edge.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let edge = self.inner.clone();
                    self.inner.tracker.spawn(async move {
                        match edge.tls.clone() {
                            None => serve_http(edge, stream, peer).await,
                            Some(acceptor) => {
                                let timeout = edge.settings.handshake_timeout;
                                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => serve_http(edge, tls, peer).await,
                                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one stream that is already accepted (and decrypted) as [`Edge::serve`] serves
    /// each TCP connection: the HTTP handshake, then the connection task. Returns once the
    /// HTTP side is done (the WebSocket, if any, goes on in its own task). For tests that
    /// drive the edge over an in-memory pipe under paused time.
    pub async fn serve_io<S>(&self, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve_http(self.inner.clone(), io, peer).await;
    }

    /// Stops accepting and asks every connection to close with 1001, giving in-flight
    /// invocations and `$disconnect` until `grace` from now. A connection waiting for a
    /// two-way answer keeps its socket open until the answer is written (or the grace
    /// runs out), then closes; see docs/config.md `shutdown_grace_secs`.
    pub fn shutdown(&self, grace: Duration) {
        self.inner.drain.start(grace);
        self.inner.shutdown.cancel();
        self.inner.table.close_all(CloseRequest::Shutdown);
    }

    /// Waits until every connection and handshake task has finished: at most the grace
    /// given to [`Edge::shutdown`], plus [`ABANDON_SLACK`] for tasks to record what they
    /// gave up at its deadline. Returns whether everything finished.
    pub async fn drained(&self) -> bool {
        self.inner.tracker.close();
        let deadline = self.inner.drain.deadline().unwrap_or_else(Instant::now);
        tokio::time::timeout_at(deadline + ABANDON_SLACK, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// Invocations given up at the shutdown deadline (each logged at debug).
    pub fn abandoned(&self) -> u64 {
        self.inner.drain.abandoned()
    }
}

async fn serve_http<S>(edge: Arc<EdgeInner>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = edge.settings.handshake_timeout;
    let budget = timeout + edge.settings.connect_budget;
    let service_edge = edge.clone();
    let service = hyper::service::service_fn(move |req| {
        let edge = service_edge.clone();
        async move { Ok::<_, Infallible>(handle::<S>(edge, req, peer).await) }
    });
    let settings = &edge.settings;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        // hyper answers 431 itself once the head passes `max_header_size` or has more
        // lines than `max_headers`. Its read buffer is capped at the same size (hyper's
        // floor is 8 KiB), so no more of a head than the bound is ever buffered; nothing
        // else is read through it here, since an upgraded stream leaves hyper.
        .max_header_size(settings.max_head_bytes)
        .max_buf_size(settings.max_head_bytes.max(8192))
        .keep_alive(true);
    // hyper keeps up to 100 header slots on the stack and allocates per request for any
    // other count, so the default is left as hyper's own.
    if settings.max_headers != switchboard_core::config::DEFAULT_MAX_REQUEST_HEADERS {
        builder.max_headers(settings.max_headers);
    }
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        r = tokio::time::timeout(budget, conn) => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_parse_too_large() => {
                edge.metrics.reject("head_too_large");
                debug!(%peer, "request head over limits.max_request_head_bytes or max_request_headers: 431");
            }
            Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection error"),
            Err(_) => debug!(%peer, "HTTP connection exceeded the handshake budget"),
        },
        _ = edge.shutdown.cancelled() => {}
    }
}

/// The handshake: the pure decision, then the stateful steps in order (per-IP rate, a
/// session's resume, the per-IP count, the connection slot, the authorizer, the per-user
/// count, `$connect`, the per-user count of a user `$connect` named), then the upgrade.
async fn handle<S>(
    edge: Arc<EdgeInner>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let m = &edge.metrics;
    let s = &edge.settings;
    let policy = s.policy(edge.static_files.is_some());
    let accept = match handshake::decide(&req, peer.ip(), &policy, edge.shutdown.is_cancelled()) {
        Decision::Accept(a) => a,
        Decision::Reject(r @ (Reject::IpDenied | Reject::Origin)) => {
            let client = handshake::source_ip(&s.trusted_proxies, peer.ip(), req.headers());
            return refuse_access(m, r, client, req.headers().get(http::header::ORIGIN));
        }
        Decision::Reject(r) => return refuse(m, r),
        Decision::Static { head } => {
            let st = edge.static_files.as_ref().expect("decided with [static]");
            return crate::static_files::serve(st, req.uri().path(), head).await;
        }
    };
    if let Some(limiter) = &edge.ip_limiter {
        if !limiter.allow(accept.source_ip, edge.now_ns()) {
            return refuse(m, Reject::RateLimited);
        }
    }
    if let Some(r) = &accept.resume {
        match take_session(&edge, &r.token, r.after).await {
            Take::InUse => return refuse(m, Reject::SessionInUse),
            Take::Parked(handle, parked) => {
                return resume::<S>(edge.clone(), req, &accept, handle, parked, r.after);
            }
            // Unknown, expired, lost, or not proven: a fresh connection.
            Take::Refused | Take::NotHere => {}
        }
    }
    let ip_place = match &edge.ip_counts {
        Some(counts) => match counts.take(accept.source_ip) {
            Some(place) => Some(place),
            None => return refuse_access(m, Reject::IpLimit, accept.source_ip, None),
        },
        None => None,
    };
    let Some(slot) = Slot::take(&edge.slots, edge.settings.max_connections) else {
        return refuse(m, Reject::MaxConnections);
    };
    let slot = slot.with_ip(ip_place);
    let mut info = Arc::new(connection_info(&edge, &req, &accept));
    let identity = match authorize(&edge, req.headers(), &mut info).await {
        Ok(identity) => identity,
        Err(r) => return r,
    };
    // The handle exists before `$connect` runs, so a management send made from inside
    // `$connect` (a welcome message) is queued and delivered right after the upgrade.
    let (handle, rx) = ConnHandle::new(
        info.clone(),
        s.queue_messages,
        s.queue_bytes,
        s.ws_limits.max_message_bytes,
    );
    edge.table.insert(handle.clone());
    if let Some(id) = &identity {
        apply_identity(&edge, &handle, id);
    }
    let checked = match edge.user_limit_before_connect(&handle).await {
        Ok(checked) => checked,
        Err(r) => {
            edge.table.remove(&info.id);
            return refuse_access(m, r, info.source_ip, None);
        }
    };
    let (extra_headers, accepted_by_function) = match invoke_connect(&edge, &handle).await {
        Ok(Some(headers)) => (headers, true),
        Ok(None) => (Vec::new(), false),
        Err(r) => {
            edge.table.remove(&info.id);
            return r;
        }
    };
    if let Err(r) = edge.user_limit_after_connect(&handle, checked).await {
        // `$connect` named the user: it was told of a connection that will not open.
        let extension = edge.table.extension_of(&handle);
        edge.table.remove(&info.id);
        if accepted_by_function {
            let (code, reason) = CloseRequest::UserLimit.code_and_reason();
            let e = edge.clone();
            let info = info.clone();
            edge.tracker.spawn(async move {
                e.invoke_disconnect(info, extension, code, reason.into())
                    .await;
            });
        }
        return refuse_access(m, r, info.source_ip, None);
    }
    let resp = switching(
        &accept.accept_key,
        info.subprotocol.as_deref(),
        accept.deflate.as_ref().map(|(_, v)| v),
        extra_headers,
    );
    let opening = Opening {
        handle,
        rx,
        slot,
        params: accept.deflate.map(|(p, _)| p),
        session: accept.session,
        accepted_by_function,
    };
    open::<S>(edge, req, opening);
    resp
}

/// Binds a listener (a separate step so callers can learn the port before serving).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| EdgeError::Bind(addr, e))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| EdgeError::Bind(addr, e))?;
    socket.bind(addr).map_err(|e| EdgeError::Bind(addr, e))?;
    let listener = socket.listen(4096).map_err(|e| EdgeError::Bind(addr, e))?;
    info!(addr = %listener.local_addr().map_err(|e| EdgeError::Bind(addr, e))?, "WebSocket listener bound");
    Ok(listener)
}

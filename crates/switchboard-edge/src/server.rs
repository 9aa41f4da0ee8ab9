//! The listener: accept, optional TLS, the HTTP/1.1 handshake (hyper), limits at the door,
//! `$connect`, and the hand-off of the raw stream to a connection task.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use switchboard_core::config::{Config, StaticConfig};
use switchboard_core::event::{ConnectionInfo, EventKind, Invocation};
use switchboard_core::id::IdGenerator;
use switchboard_core::limit::TokenBucket;
use switchboard_core::route::{RouteTable, SelectionExpression};
use switchboard_functions::Function;
use switchboard_ws::deflate::{DeflateConfig, DeflateParams};
use switchboard_ws::{Decoder, Encoder, Limits, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::conn::Conn;
use crate::handshake::{self, Accept, Decision, Policy, Reject};
use crate::metrics::EdgeMetrics;
use crate::moves::TakeAnswer;
use crate::table::{CloseRequest, ConnHandle, ConnectionTable};
use crate::EdgeError;

/// Registry updates waiting for the backplane; beyond it an update is dropped and logged
/// (a burst of 15,000 joins fits twice over).
const REGISTRY_QUEUE: usize = 32_768;

/// How long past the shutdown deadline [`Edge::drained`] waits for connection tasks,
/// which by then only write their close frame and count what they abandoned.
pub const ABANDON_SLACK: Duration = Duration::from_secs(1);

/// Limits and timings, resolved from the config once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub idle_timeout: Duration,
    pub max_connection: Option<Duration>,
    pub handshake_timeout: Duration,
    /// Request head bounds: bytes (request line plus headers) and header lines.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub write_timeout: Duration,
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    pub max_connections: usize,
    pub messages_per_sec: u32,
    pub messages_burst: u32,
    pub queue_messages: usize,
    pub queue_bytes: usize,
    pub ws_limits: Limits,
    pub deflate: Option<DeflateConfig>,
    pub subprotocols: Vec<String>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub reject_binary: bool,
    pub connect_budget: Duration,
    pub resume: Option<ResumeSettings>,
    /// `[cluster] op_timeout_ms`: how long an operation waits for another node.
    pub op_timeout: Duration,
}

impl Settings {
    /// What the handshake decision reads of the settings.
    fn policy(&self, static_files: bool) -> Policy<'_> {
        Policy {
            subprotocols: &self.subprotocols,
            trusted_proxies: &self.trusted_proxies,
            deflate: self.deflate.as_ref(),
            resume: self.resume.is_some(),
            static_files,
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
        }
    }
}

/// `[resume]`, resolved.
#[derive(Debug, Clone)]
pub(crate) struct ResumeSettings {
    pub window: Duration,
    pub buffer_messages: usize,
    pub buffer_bytes: usize,
    /// Keep parked sessions in the backplane too.
    pub keep: bool,
}

/// What a route leads to.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The route key, shared by every event on this route.
    pub key: Arc<str>,
    /// The function.
    pub function: Function,
    /// Whether the function's answer goes back to the caller.
    pub two_way: bool,
    /// Whether this route's invocations may overlap others of the same connection.
    pub parallel: bool,
    /// The function's configured name (for logs).
    pub function_name: Arc<str>,
}

/// One line per finished invocation, at debug level under the `switchboard::invoke`
/// target (`switchboard dev` shows them; production logs don't by default).
pub(crate) fn log_invocation(
    conn: &switchboard_core::ConnectionId,
    target: &RouteTarget,
    request_id: &str,
    started: Instant,
    outcome: Result<u16, &switchboard_functions::InvokeError>,
) {
    // Off by default (`switchboard dev` turns it on): skip the clock read too.
    if !tracing::enabled!(target: "switchboard::invoke", tracing::Level::DEBUG) {
        return;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(status) => tracing::debug!(
            target: "switchboard::invoke",
            conn = %conn,
            route = &*target.key,
            function = &*target.function_name,
            request_id,
            status,
            ms,
            "invoked"
        ),
        Err(e) => tracing::debug!(
            target: "switchboard::invoke",
            conn = %conn,
            route = &*target.key,
            function = &*target.function_name,
            request_id,
            error = %e,
            ms,
            "invocation failed"
        ),
    }
}

/// Per-source-IP connection rate limiting, bounded in memory.
struct IpLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl IpLimiter {
    const MAX_TRACKED: usize = 100_000;

    fn allow(&self, ip: IpAddr, now_ns: u64) -> bool {
        let mut map = self.buckets.lock();
        if map.len() >= Self::MAX_TRACKED {
            // Full buckets carry no information: forget them.
            map.retain(|_, b| !b.is_full(now_ns));
            if map.len() >= Self::MAX_TRACKED {
                return false;
            }
        }
        map.entry(ip)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now_ns))
            .try_take(now_ns)
    }
}

/// State shared by the listener and every connection task.
pub struct EdgeInner {
    pub(crate) settings: Settings,
    /// Metrics.
    pub metrics: EdgeMetrics,
    /// Connections held by this node. Only the operations layer (`ops/local.rs`) changes
    /// memberships and state on behalf of callers; other crates go through `apply_op`.
    pub(crate) table: ConnectionTable,
    /// Id issuer.
    pub ids: IdGenerator,
    pub(crate) routes: RouteTable<RouteTarget>,
    ip_limiter: Option<IpLimiter>,
    /// Connections open or being opened: a slot is taken before `$connect` and given back
    /// when the connection ends, so bursts cannot overshoot `max_connections`.
    slots: AtomicUsize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The deadline in-flight invocations have once shutdown starts.
    pub(crate) drain: crate::drain::Drain,
    tls: Option<tokio_rustls::TlsAcceptor>,
    static_files: Option<StaticConfig>,
    authorizer: Option<Arc<switchboard_auth::Authorizer>>,
    /// How other nodes are reached; `local` on a single node.
    pub(crate) backplane: Arc<dyn switchboard_cluster::Backplane>,
    /// Resumable sessions by connection, each with the proof its token must match.
    pub(crate) sessions: Mutex<
        HashMap<switchboard_core::ConnectionId, (crate::session::TokenProof, Arc<ConnHandle>)>,
    >,
    /// Sessions that moved to other nodes, and requests for other nodes' sessions.
    pub(crate) moves: Mutex<crate::moves::Moves>,
    /// The in-order writer of kept sessions' copies (started on first use).
    pub(crate) copy_writer: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::kept::CopyWrite>>,
    /// The ordered queue of commands forwarded to other nodes (started on first use).
    pub(crate) forwarder:
        std::sync::OnceLock<tokio::sync::mpsc::Sender<(u32, switchboard_cluster::Command)>>,
    /// The in-order writer of registry snapshots (started on first use).
    registry_writer: std::sync::OnceLock<
        tokio::sync::mpsc::Sender<(switchboard_core::ConnectionId, Option<serde_json::Value>)>,
    >,
    /// The operations layer's state.
    pub(crate) ops: crate::ops::OpsState,
    origin: Instant,
    origin_epoch_ms: u64,
    local_port: std::sync::atomic::AtomicU16,
}

impl EdgeInner {
    /// Nanoseconds since the edge started (for token buckets).
    pub(crate) fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Wall-clock epoch milliseconds of a monotonic instant (no clock read).
    pub(crate) fn epoch_ms_at(&self, at: Instant) -> u64 {
        self.origin_epoch_ms + at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Wall-clock epoch milliseconds.
    pub(crate) fn epoch_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Connections this node holds now (open or parked).
    pub fn connections_held(&self) -> usize {
        self.table.len()
    }

    /// The handles of the connections this node holds (for diagnostics and tests: a
    /// handle sends or closes, but memberships and state change only through `apply_op`).
    pub fn held_handles(&self) -> Vec<Arc<ConnHandle>> {
        self.table.all_handles()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Runs `work` (such as the `$disconnect`s of a lost node's connections) as a task
    /// that the shutdown drain waits for, like a connection's.
    pub fn spawn_drained(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    pub(crate) fn forget_session(&self, id: switchboard_core::ConnectionId) {
        self.sessions.lock().remove(&id);
    }

    pub(crate) fn add_session(&self, proof: crate::session::TokenProof, handle: Arc<ConnHandle>) {
        self.sessions.lock().insert(handle.info.id, (proof, handle));
    }

    /// A token named session `id` but did not prove it (`at`: which check refused it). The
    /// request is answered as for an unknown session; the token is not logged.
    pub(crate) fn refuse_proof(&self, id: switchboard_core::ConnectionId, at: &'static str) {
        self.metrics.reject("session_proof");
        warn!(conn = %id, at, "session token with a wrong secret refused");
    }

    /// Waits for a parked session's client, its window, or a close request; ends the
    /// connection (with `$disconnect`) unless the client came back. With
    /// `keep_in_backplane`, also keeps a copy of the session in the backplane, refreshed
    /// whenever something is sent to it.
    pub(crate) fn watch_parked(self: &Arc<Self>, handle: Arc<ConnHandle>) {
        let Some(resume) = self.settings.resume.clone() else {
            return;
        };
        let edge = self.clone();
        self.tracker.spawn(async move {
            enum End {
                Resumed,
                Closed(CloseRequest),
                Expired,
                /// Something to write to the backplane copy.
                Changed,
                /// Another node took the copy: the session lives on there.
                TakenElsewhere,
            }
            let mut deadline = Box::pin(tokio::time::sleep(resume.window));
            let kept_until = edge.epoch_ms() + resume.window.as_millis() as u64;
            let mut dirty = resume.keep;
            let mut stored = false;
            let end = loop {
                let end = std::future::poll_fn(|cx| {
                    handle.register_waker(cx.waker());
                    let mut parked = handle.parked.lock();
                    let Some(p) = parked.as_mut() else {
                        return std::task::Poll::Ready(End::Resumed);
                    };
                    if let Some(req) = handle.close_requested() {
                        return std::task::Poll::Ready(End::Closed(req));
                    }
                    if std::future::Future::poll(deadline.as_mut(), cx).is_ready() {
                        return std::task::Poll::Ready(End::Expired);
                    }
                    if resume.keep {
                        // Number what was sent meanwhile into the replay buffer, so the
                        // copy holds it (and be woken by the next send).
                        match p.frame_queued(&handle, cx) {
                            None => {
                                return std::task::Poll::Ready(End::Closed(
                                    CloseRequest::SlowConsumer,
                                ))
                            }
                            Some(n) => dirty |= n > 0,
                        }
                        dirty |= std::mem::take(&mut p.changed);
                        if dirty {
                            return std::task::Poll::Ready(End::Changed);
                        }
                    }
                    std::task::Poll::Pending
                })
                .await;
                if !matches!(end, End::Changed) {
                    break end;
                }
                dirty = false;
                match edge.keep_copy(&handle, kept_until, !stored).await {
                    crate::kept::Kept::Stored => stored = true,
                    crate::kept::Kept::Failed => {}
                    crate::kept::Kept::TakenElsewhere => break End::TakenElsewhere,
                    crate::kept::Kept::Overflow => break End::Closed(CloseRequest::SlowConsumer),
                }
            };
            let id = handle.info.id;
            let gone = matches!(end, End::TakenElsewhere);
            let (code, reason) = match end {
                End::Resumed => {
                    let here = edge
                        .table
                        .get(&id)
                        .is_some_and(|h| Arc::ptr_eq(&h, &handle));
                    if resume.keep && here && stored {
                        // Resumed here (its copy was taken as it resumed): the registry
                        // entry must stop saying the session is kept.
                        edge.record(&handle, true);
                    }
                    return;
                }
                End::Changed => unreachable!("the loop goes on after a change"),
                End::Expired | End::TakenElsewhere => (1006, "resume window expired"),
                End::Closed(CloseRequest::SlowConsumer) => (1006, "resume buffer overflow"),
                End::Closed(req) => req.code_and_reason(),
            };
            let Some(parked) = handle.parked.lock().take() else {
                return; // resumed at the last moment
            };
            // A copy that another node took meanwhile lives on there: end ours quietly.
            if gone || (stored && !edge.take_copy_back(id, edge.stamp(&parked.session)).await) {
                edge.end_taken_elsewhere(&handle, parked);
                return;
            }
            edge.forget_session(id);
            let extension = edge.table.extension_of(&handle);
            edge.record(&handle, false);
            edge.table.remove(&id);
            edge.metrics.connections_open.dec();
            drop(parked);
            edge.metrics
                .closes
                .get_or_create(&crate::metrics::CodeLabel { code })
                .inc();
            info!(conn = %id, code, reason, "parked session ended");
            edge.invoke_disconnect(handle.info.clone(), extension, code, reason.into())
                .await;
        });
    }

    /// Takes the parked session of `token` for a resume, if the token proves it (the
    /// connection id in it only says which session to check).
    pub(crate) fn take_parked(&self, token: &str, after: u64) -> Take {
        let Some(id) = crate::session::connection_of(token) else {
            return Take::NotHere;
        };
        let Some((proof, handle)) = self.sessions.lock().get(&id).cloned() else {
            return Take::NotHere;
        };
        if !proof.proves(token) {
            // Checked before anything else, so the answer says nothing of the session.
            self.refuse_proof(id, "session held here");
            return Take::Refused;
        }
        let mut slot = handle.parked.lock();
        let Some(mut parked) = slot.take() else {
            return Take::InUse;
        };
        if !parked.session.can_resume_after(after) {
            // Messages the client missed are gone: end the session, start afresh.
            *slot = Some(parked);
            drop(slot);
            handle.request_close(CloseRequest::SlowConsumer);
            return Take::Refused;
        }
        drop(slot);
        // A session that moved here knows only its token's proof until now.
        parked.session.token = token.to_owned();
        handle.wake();
        Take::Parked(handle, parked)
    }

    /// Tells the cluster registry about a connection (opened, or closed with `open`
    /// false). In the background: the hot path never waits for the backplane.
    pub(crate) fn record(self: &Arc<Self>, handle: &Arc<ConnHandle>, open: bool) {
        if !self.backplane.keeps_registry() {
            return;
        }
        if open {
            // A parked session's kept copy carries its memberships and state too: have
            // its watcher write it again.
            if let Some(p) = handle.parked.lock().as_mut() {
                p.changed = true;
                handle.wake();
            }
        }
        let snapshot = open.then(|| {
            switchboard_core::event::snapshot::to_json(
                &handle.info,
                self.table.extension_of(handle).as_ref(),
            )
        });
        self.registry_write(handle.info.id, snapshot);
        if !open {
            self.announce_end(handle.info.id);
        }
    }

    /// Writes (or with `None` deletes) a connection's registry entry, in order.
    pub(crate) fn registry_write(
        &self,
        id: switchboard_core::ConnectionId,
        snapshot: Option<serde_json::Value>,
    ) {
        if !self.backplane.keeps_registry() {
            return;
        }
        // One writer, in order: a snapshot written at connect must never land after the
        // one written at a later join (nor a delete after a stale write).
        let writer = self.registry_writer.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(
                switchboard_core::ConnectionId,
                Option<serde_json::Value>,
            )>(REGISTRY_QUEUE);
            let backplane = self.backplane.clone();
            tokio::spawn(async move {
                while let Some((id, snapshot)) = rx.recv().await {
                    if let Err(e) = backplane.record_connection(id, snapshot).await {
                        debug!(conn = %id, error = %e, "registry update failed");
                    }
                }
            });
            tx
        });
        if writer.try_send((id, snapshot)).is_err() {
            warn!(conn = %id, "registry update queue full: snapshot not recorded");
        }
    }

    /// Applies a command another node sent to this one.
    pub fn apply(self: &Arc<Self>, command: switchboard_cluster::Command) {
        use switchboard_cluster::Command as C;
        match command {
            C::Op { op, req } => self.on_op(op, req),
            // Answers and greetings stay in the backplane, never come here.
            C::Reply { .. } | C::Hello => {}
            C::TakeSession {
                token,
                after,
                from,
                request,
            } => self.on_take_session(token, after, from, request),
            C::SessionTaken { request, outcome } => self.on_session_taken(request, outcome),
            C::Forget { id } => {
                if let Some(id) = switchboard_core::ConnectionId::parse(&id) {
                    self.forget_moved(id);
                }
            }
            C::Adopted { id, holder, proof } => {
                let proof = serde_json::from_value(serde_json::Value::String(proof));
                match (switchboard_core::ConnectionId::parse(&id), proof) {
                    (Some(id), Ok(proof)) => self.on_adopted(id, holder, proof),
                    _ => warn!(conn = %id, "unreadable adoption of a session from another node"),
                }
            }
        }
    }

    /// Invokes `$disconnect` for a connection of a lost node, from its registry snapshot.
    pub async fn disconnect_lost(self: &Arc<Self>, snapshot: &serde_json::Value, node_id: &str) {
        if snapshot.get("movedTo").is_some() {
            return; // its session lives on another node
        }
        let kept_until = snapshot
            .get("keptUntil")
            .and_then(serde_json::Value::as_u64)
            .filter(|_| self.settings.resume.as_ref().is_some_and(|r| r.keep));
        match switchboard_core::event::snapshot::from_json(snapshot) {
            Some((info, ext)) => {
                let kept_by = snapshot
                    .get("keptBy")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                if let (Some(until), Some(owner)) = (kept_until, kept_by) {
                    // Its home hears of its end, or of the node that resumes it, later.
                    info!(conn = %info.id, node = node_id, "a lost node's session is kept in the backplane: $disconnect when its window ends, unless it resumes");
                    self.disconnect_kept_later(Arc::new(info), ext, until, owner);
                    return;
                }
                if info.id.node_tag() != switchboard_core::id::node_tag(node_id) {
                    // It had moved to the lost node: its home forwards no more.
                    self.announce_end(info.id);
                }
                info!(conn = %info.id, node = node_id, "invoking $disconnect for a lost node's connection");
                self.invoke_disconnect(Arc::new(info), ext, 1006, "node lost".into())
                    .await
            }
            None => warn!(
                node = node_id,
                "unreadable connection snapshot of a lost node"
            ),
        }
    }

    /// Invokes `$disconnect` once for a connection that ended.
    pub async fn invoke_disconnect(
        &self,
        info: Arc<ConnectionInfo>,
        extension: Option<serde_json::Map<String, serde_json::Value>>,
        code: u16,
        reason: String,
    ) {
        let Some(target) = self.routes.disconnect() else {
            return;
        };
        let invocation = Invocation {
            kind: EventKind::Disconnect,
            route_key: target.key.clone(),
            connection: info,
            request_id: self.ids.request_id(),
            request_time_ms: self.epoch_ms(),
            body: None,
            disconnect: Some((code, reason)),
            extension,
        };
        let request_id = invocation.request_id.clone();
        let id = invocation.connection.id;
        let started = Instant::now();
        let result = match &target.function {
            Function::Builtin(b) => Ok(b.answer(invocation)),
            // On shutdown, a call not started before the deadline is not started at all.
            Function::Remote(_) if self.drain.is_over() => {
                self.drain.abandon(&id, target, &request_id);
                return;
            }
            Function::Remote(inv) => match self.drain.deadline() {
                None => inv.invoke(invocation).await,
                Some(d) => match tokio::time::timeout_at(d, inv.invoke(invocation)).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.drain.abandon(&id, target, &request_id);
                        return;
                    }
                },
            },
        };
        log_invocation(
            &id,
            target,
            &request_id,
            started,
            result.as_ref().map(|r| r.status),
        );
        if let Err(e) = result {
            self.metrics
                .invoke_errors
                .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                .inc();
            warn!(error = %e, "$disconnect function failed");
        }
    }
}

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
            routes.push((
                key.clone(),
                RouteTarget {
                    key: Arc::from(key.as_str()),
                    function,
                    two_way: route.two_way,
                    parallel: route.parallel,
                    function_name: Arc::from(route.function.as_str()),
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
                slots: AtomicUsize::new(0),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                drain,
                tls,
                static_files: config.static_files.clone(),
                authorizer,
                backplane,
                sessions: Mutex::new(HashMap::new()),
                moves: Mutex::new(crate::moves::Moves::default()),
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

/// Counts a refusal at the door and answers it.
fn refuse(m: &EdgeMetrics, reject: Reject) -> Response<Full<Bytes>> {
    m.reject(reject.label());
    reject.response()
}

/// An empty answer with `status`, or `fallback` when `status` is not a status code.
fn status_only(status: u16, fallback: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(fallback);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The handshake: the pure decision, then the stateful steps in order (per-IP rate, a
/// session's resume, the connection slot, the authorizer, `$connect`), then the upgrade.
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
    let Some(slot) = Slot::take(&edge) else {
        return refuse(m, Reject::MaxConnections);
    };
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
    let (extra_headers, accepted_by_function) = match invoke_connect(&edge, &handle).await {
        Ok(Some(headers)) => (headers, true),
        Ok(None) => (Vec::new(), false),
        Err(r) => {
            edge.table.remove(&info.id);
            return r;
        }
    };
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

/// A session the request asks to resume: parked here, else fetched from the node
/// holding it, and claimed.
async fn take_session(edge: &Arc<EdgeInner>, token: &str, after: u64) -> Take {
    let mut local = edge.take_parked(token, after);
    if let Take::NotHere = local {
        // Perhaps parked on another node: ask it to hand the session over.
        match edge.take_remote(token, after).await {
            Some(TakeAnswer::Here) => local = edge.take_parked(token, after),
            Some(TakeAnswer::InUse) => local = Take::InUse,
            Some(TakeAnswer::Unknown) | None => {} // a fresh connection
        }
    }
    match local {
        Take::Parked(handle, parked) => match edge.claim_parked(handle, parked).await {
            Some((handle, parked)) => Take::Parked(handle, parked),
            None => Take::NotHere,
        },
        other => other,
    }
}

/// What functions and authorizers learn of a new connection.
fn connection_info<B>(edge: &EdgeInner, req: &Request<B>, accept: &Accept) -> ConnectionInfo {
    let headers = req.headers();
    ConnectionInfo {
        id: edge.ids.connection_id(),
        connected_at_ms: edge.epoch_ms(),
        source_ip: accept.source_ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        path: req.uri().path().to_owned(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        query: accept.query.clone(),
        subprotocol: accept.subprotocol.clone(),
        tls: edge.tls.is_some(),
        port: edge.local_port.load(Ordering::Relaxed),
        authorizer: None,
    }
}

/// Runs the authorizer, if any: the identity, with its context recorded in `info`, or
/// the refusal to answer.
async fn authorize(
    edge: &EdgeInner,
    headers: &HeaderMap,
    info: &mut Arc<ConnectionInfo>,
) -> Result<Option<switchboard_auth::Identity>, Response<Full<Bytes>>> {
    let Some(authz) = &edge.authorizer else {
        return Ok(None);
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let request_id = edge.ids.request_id();
    let hs = switchboard_auth::Handshake {
        headers,
        query: &info.query,
        offered_protocols: &offered,
        connection: info,
        request_id: &request_id,
        request_time_ms: edge.epoch_ms(),
    };
    match authz.authorize(&hs).await {
        Ok(id) => {
            let info = Arc::make_mut(info);
            info.authorizer = Some(id.context.clone());
            // A browser that offered protocols fails a handshake that selects none: when
            // the token travelled as a protocol entry and nothing else was chosen, echo
            // that entry.
            if info.subprotocol.is_none() {
                info.subprotocol.clone_from(&id.token_protocol);
            }
            Ok(Some(id))
        }
        Err(e) => {
            edge.metrics.reject(e.label());
            debug!(conn = %info.id, reason = e.reason(), status = e.status(), "handshake refused by the authorizer");
            Err(status_only(e.status(), StatusCode::FORBIDDEN))
        }
    }
}

/// Gives a new connection the groups, user and expiry the authorizer named.
fn apply_identity(
    edge: &Arc<EdgeInner>,
    handle: &Arc<ConnHandle>,
    id: &switchboard_auth::Identity,
) {
    let ext = switchboard_core::event::ResponseExtension {
        groups: id.groups.clone(),
        user_id: id.user_id.clone(),
        state: Vec::new(),
    };
    // Recorded with the connection once it is open.
    for problem in edge.extend_local(handle, &ext).1 {
        warn!(conn = %handle.info.id, %problem, "authorizer identity not fully applied");
    }
    if let (true, Some(exp)) = (
        edge.authorizer
            .as_ref()
            .is_some_and(|a| a.close_on_expiry()),
        id.expires_at,
    ) {
        handle.set_expires_at(exp);
    }
}

/// Invokes `$connect`, if routed: `Some(headers)` for the 101 when the function accepted,
/// `None` without a `$connect` route, or the refusal to answer.
async fn invoke_connect(
    edge: &Arc<EdgeInner>,
    handle: &Arc<ConnHandle>,
) -> Result<Option<Vec<(String, String)>>, Response<Full<Bytes>>> {
    let Some(target) = edge.routes.connect() else {
        return Ok(None);
    };
    let info = &handle.info;
    let m = &edge.metrics;
    let invocation = Invocation {
        kind: EventKind::Connect,
        route_key: target.key.clone(),
        connection: info.clone(),
        request_id: edge.ids.request_id(),
        request_time_ms: edge.epoch_ms(),
        body: None,
        disconnect: None,
        extension: edge.table.extension_of(handle),
    };
    let request_id = invocation.request_id.clone();
    let started = Instant::now();
    let result = match &target.function {
        Function::Builtin(b) => Ok(b.answer(invocation)),
        Function::Remote(inv) => inv.invoke(invocation).await,
    };
    log_invocation(
        &info.id,
        target,
        &request_id,
        started,
        result.as_ref().map(|r| r.status),
    );
    match result {
        Ok(resp) if (200..300).contains(&resp.status) => {
            for problem in edge.extend_local(handle, &resp.extension).1 {
                warn!(conn = %info.id, %problem, "$connect response extension refused");
            }
            Ok(Some(resp.headers))
        }
        Ok(resp) => {
            m.reject("rejected_by_function");
            let mut r = status_only(resp.status, StatusCode::FORBIDDEN);
            if let Some(body) = resp.body {
                *r.body_mut() = Full::new(body.data);
            }
            Err(r)
        }
        Err(e) => {
            m.reject("function_error");
            m.invoke_errors
                .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                .inc();
            warn!(conn = %info.id, error = %e, "$connect function failed");
            Err(status_only(e.handshake_status(), StatusCode::BAD_GATEWAY))
        }
    }
}

/// The 101 answer, with `$connect`'s headers (`extra`; those that are no header skipped).
fn switching(
    accept_key: &HeaderValue,
    subprotocol: Option<&str>,
    extensions: Option<&HeaderValue>,
    extra: Vec<(String, String)>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key.clone());
    if let Some(v) = subprotocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = extensions {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v.clone());
    }
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

/// A new connection, accepted and waiting for its upgrade.
struct Opening {
    handle: Arc<ConnHandle>,
    rx: tokio::sync::mpsc::Receiver<crate::table::Outbound>,
    slot: Slot,
    params: Option<DeflateParams>,
    /// Starts a resumable session.
    session: bool,
    /// `$connect` said yes, so the function may hold state for this id.
    accepted_by_function: bool,
}

/// Runs the connection once hyper hands the socket over.
fn open<S>(edge: Arc<EdgeInner>, mut req: Request<Incoming>, o: Opening)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);
    let task_edge = edge.clone();
    edge.tracker.spawn(async move {
        let edge = task_edge;
        let Opening {
            handle,
            rx,
            slot,
            params,
            session,
            accepted_by_function,
        } = o;
        let info = handle.info.clone();
        let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<S>>()) {
            Ok(Ok(p)) => p,
            failed => {
                debug!(conn = %info.id, ok = failed.is_ok(), "upgrade failed");
                let extension = edge.table.extension_of(&handle);
                edge.table.remove(&info.id);
                drop(slot);
                if accepted_by_function {
                    // Tell the function the connection is gone.
                    edge.invoke_disconnect(info, extension, 1006, "upgrade failed".into())
                        .await;
                }
                return;
            }
        };
        edge.metrics.connections_open.inc();
        edge.metrics.connections_total.inc();
        edge.record(&handle, true);
        info!(conn = %info.id, ip = %info.source_ip, path = %info.path, compressed = params.is_some(), "connection open");
        let s = &edge.settings;
        let conn_handle = handle.clone();
        let mut conn = Conn::new(
            parts.io.into_inner(),
            parts.read_buf,
            edge.clone(),
            handle,
            rx,
            (
                Decoder::new(Role::Server, s.ws_limits, params),
                Encoder::new(Role::Server, params),
            ),
            slot,
        );
        if session {
            if let Some(r) = &edge.settings.resume {
                let token = crate::session::new_token(&conn_handle.info.id);
                let session =
                    crate::session::Session::new(token, r.buffer_messages, r.buffer_bytes);
                edge.add_session(session.proof, conn_handle.clone());
                conn.attach_session(Box::new(session), None, None);
            }
        }
        // No span around the task: entering one on every poll costs more than the echo
        // itself; each log line of the connection names it with a `conn` field instead.
        conn.run().await;
    });
}

/// Answers a resume handshake: the same connection id, no `$connect`, and a connection task
/// that starts with the hello and the replay of what the client missed.
fn resume<S>(
    edge: Arc<EdgeInner>,
    mut req: Request<Incoming>,
    accept: &Accept,
    handle: Arc<ConnHandle>,
    parked: Box<crate::session::Parked>,
    after: u64,
) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = switching(
        &accept.accept_key,
        Some(crate::session::PROTOCOL),
        accept.deflate.as_ref().map(|(_, v)| v),
        Vec::new(),
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);
    let params = accept.deflate.as_ref().map(|(p, _)| *p);
    let task_edge = edge.clone();
    edge.tracker.spawn(async move {
        let edge = task_edge;
        let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<S>>()) {
            Ok(Ok(p)) => p,
            _ => {
                // The client vanished again: back to waiting for it.
                *handle.parked.lock() = Some(parked);
                edge.watch_parked(handle);
                return;
            }
        };
        info!(conn = %handle.info.id, after, "session resumed");
        let s = &edge.settings;
        let crate::session::Parked {
            session,
            rx,
            slot,
            started,
            ..
        } = *parked;
        let mut conn = Conn::new(
            parts.io.into_inner(),
            parts.read_buf,
            edge.clone(),
            handle,
            rx,
            (
                Decoder::new(Role::Server, s.ws_limits, params),
                Encoder::new(Role::Server, params),
            ),
            slot,
        );
        conn.attach_session(session, Some(after), Some(started));
        conn.run().await;
    });
    resp
}

/// What became of a request to take a session held on this node for a resume.
pub(crate) enum Take {
    /// Parked here, and the token proves it: the request resumes it.
    Parked(Arc<ConnHandle>, Box<crate::session::Parked>),
    /// Attached to a live socket (409), and the token proves it.
    InUse,
    /// Held here, but not to be resumed: the token does not prove it, or messages the
    /// client missed are gone. Answered as an unknown session.
    Refused,
    /// No session of that connection here.
    NotHere,
}

/// A reserved place under `max_connections`, given back on drop.
pub(crate) struct Slot(Arc<EdgeInner>);

impl Slot {
    /// A slot beyond `max_connections` if need be: for a session that moved here, which
    /// already holds its place in the cluster.
    pub(crate) fn force(edge: &Arc<EdgeInner>) -> Self {
        edge.slots.fetch_add(1, Ordering::AcqRel);
        Self(edge.clone())
    }

    fn take(edge: &Arc<EdgeInner>) -> Option<Self> {
        let max = edge.settings.max_connections;
        edge.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(edge.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.slots.fetch_sub(1, Ordering::AcqRel);
    }
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

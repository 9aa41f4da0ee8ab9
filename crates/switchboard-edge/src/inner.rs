//! The state every part of the edge shares ([`EdgeInner`]), its settings resolved from the
//! config once, and the routes' targets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use switchboard_core::config::StaticConfig;
use switchboard_core::id::IdGenerator;
use switchboard_core::limit::TokenBucket;
use switchboard_core::route::RouteTable;
use switchboard_ws::deflate::DeflateConfig;
use switchboard_ws::Limits;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::handshake::Policy;
use crate::metrics::EdgeMetrics;
use crate::table::{ConnHandle, ConnectionTable};
use crate::target::RouteTarget;

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
    /// `[access]`: origins and client addresses allowed to connect.
    pub allowed_origins: Vec<switchboard_core::access::OriginPattern>,
    pub require_origin: bool,
    pub allow_ips: Vec<ipnet::IpNet>,
    pub deny_ips: Vec<ipnet::IpNet>,
    /// `access.max_connections_per_user` (when not 0) and `access.on_user_limit`.
    pub user_limit: Option<(u32, switchboard_core::config::OnUserLimit)>,
    pub reject_binary: bool,
    pub connect_budget: Duration,
    pub resume: Option<ResumeSettings>,
    /// `[cluster] op_timeout_ms`: how long an operation waits for another node.
    pub op_timeout: Duration,
}

impl Settings {
    /// What the handshake decision reads of the settings.
    pub(crate) fn policy(&self, static_files: bool) -> Policy<'_> {
        Policy {
            subprotocols: &self.subprotocols,
            trusted_proxies: &self.trusted_proxies,
            deflate: self.deflate.as_ref(),
            resume: self.resume.is_some(),
            static_files,
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            allowed_origins: &self.allowed_origins,
            require_origin: self.require_origin,
            ips: switchboard_core::access::IpRules {
                allow: &self.allow_ips,
                deny: &self.deny_ips,
            },
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
pub(crate) struct IpLimiter {
    pub(crate) rate: u32,
    pub(crate) burst: u32,
    pub(crate) buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl IpLimiter {
    const MAX_TRACKED: usize = 100_000;

    pub(crate) fn allow(&self, ip: IpAddr, now_ns: u64) -> bool {
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
    pub(crate) ip_limiter: Option<IpLimiter>,
    /// `access.max_connections_per_ip`.
    pub(crate) ip_counts: Option<Arc<crate::door::IpCounts>>,
    /// `access.messages_per_sec_per_user`.
    pub(crate) user_rates: Option<crate::door::UserRates>,
    /// Connections open or being opened: a slot is taken before `$connect` and given back
    /// when the connection ends, so bursts cannot overshoot `max_connections`.
    pub(crate) slots: Arc<AtomicUsize>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// The deadline in-flight invocations have once shutdown starts.
    pub(crate) drain: crate::drain::Drain,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) static_files: Option<StaticConfig>,
    pub(crate) authorizer: Option<Arc<switchboard_auth::Authorizer>>,
    /// How often the authorizer's refusals are logged.
    pub(crate) refusal_log: crate::refusal_log::RefusalLog,
    /// How other nodes are reached; `local` on a single node.
    pub(crate) backplane: Arc<dyn switchboard_cluster::Backplane>,
    /// Resumable sessions by connection, each with the proof its token must match.
    pub(crate) sessions: Mutex<
        HashMap<switchboard_core::ConnectionId, (crate::session::TokenProof, Arc<ConnHandle>)>,
    >,
    /// Sessions that moved to other nodes, and requests for other nodes' sessions.
    pub(crate) moves: Mutex<crate::away::Moves>,
    /// The in-order writer of kept sessions' copies (started on first use).
    pub(crate) copy_writer:
        std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::copies::CopyWrite>>,
    /// The ordered queue of commands forwarded to other nodes (started on first use).
    pub(crate) forwarder:
        std::sync::OnceLock<tokio::sync::mpsc::Sender<(u32, switchboard_cluster::Command)>>,
    /// The in-order writer of registry snapshots (started on first use).
    pub(crate) registry_writer: std::sync::OnceLock<
        tokio::sync::mpsc::Sender<(switchboard_core::ConnectionId, Option<serde_json::Value>)>,
    >,
    /// The operations layer's state.
    pub(crate) ops: crate::ops::state::OpsState,
    pub(crate) origin: Instant,
    pub(crate) origin_epoch_ms: u64,
    pub(crate) local_port: std::sync::atomic::AtomicU16,
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
        self.table.all_handles().to_vec()
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
}

//! What the Redis and NATS backplanes share: the node's link to its engine.
//!
//! An [`Engine`] knows how to publish, store and list things in one engine; everything
//! that is protocol rather than engine lives here once:
//!
//! - **Health.** One flag says whether the engine is usable. Any call that finds the
//!   engine unreachable clears it and wakes the supervisor; a call that gets no answer
//!   within `op_timeout_ms` fails and wakes the supervisor, which clears the flag if its
//!   heartbeat gets no answer either; while it is clear every call fails at once with
//!   [`BackplaneError::Unavailable`]. The supervisor probes with the heartbeat (every
//!   `heartbeat_secs` while up, every [`PROBE_INTERVAL`] while down) and sets the flag
//!   again once a heartbeat succeeds, after writing this node's snapshots back (the
//!   engine may have restarted empty, or a survivor may have reaped us meanwhile).
//! - **Envelopes.** A command travels as JSON `{"from": <tag>, "cmd": {...}}`; a node
//!   drops what it receives on the all-nodes channel from itself.
//! - **The inbox.** Received commands go to the gateway with `try_send`: the caller
//!   bounds the channel, and when it is full the command is dropped and counted
//!   ([`Link::dropped`]), so a slow gateway never stalls the engine's reader (which would
//!   stall every other subscription on that connection, and heartbeats with it).
//! - **The mirror.** This node's own snapshots are also kept here, serialized, so that
//!   they can be written back after the engine lost them; `connection()` of a local id is
//!   answered from it. Cost: one JSON string per open connection.
//! - **Reaping.** Every `heartbeat_secs` each node lists the registered nodes whose
//!   heartbeat expired, claims each (a key with a 60 s expiry, so a reaper that dies
//!   mid-way is replaced), checks again under the claim, reads the lost node's
//!   snapshots, emits [`ClusterEvent::NodeLost`], then deletes the node's snapshots and
//!   registry entry and releases the claim. Only the claim holder emits, so one survivor
//!   per lost node. The event is emitted before the deletion: a reaper dying in between
//!   makes the event happen twice (after the claim expires), never zero times.
//! - **Requests.** An operation that waits for another node's answer
//!   ([`Node::request`], [`Node::gather`]) carries a request number; the answer
//!   ([`Command::Reply`]) is handed to the waiting caller here, never through the inbox,
//!   so a full inbox cannot delay answers. At most [`MAX_PENDING`] requests wait at once
//!   (beyond it: [`BackplaneError::Busy`]); an answer nobody waits for any more is
//!   dropped. A gather expects the nodes the reaper last saw alive.
//! - **Leftovers.** A node restarted under the same id before anyone reaped it finds the
//!   previous incarnation's snapshots under its own tag; it claims its own tag, takes
//!   them, and emits `NodeLost` for them to itself.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use switchboard_core::config::{ClusterConfig, ConfigError};
use switchboard_core::ConnectionId;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use switchboard_core::ops::Op;
use tokio::sync::oneshot;

use crate::{
    Backplane, BackplaneError, BoxFuture, ClusterEvent, Command, ConnectError, ConnectionSnapshot,
    CopyGuard, CopyStamp, Gathered, OpResult, RequestRef,
};

/// Requests waiting for answers from other nodes, at most.
pub(crate) const MAX_PENDING: usize = 16_384;

/// A caller waiting for answers.
enum Waiter {
    /// One answer ([`Node::request`]).
    One(oneshot::Sender<OpResult>),
    /// Any number of answers ([`Node::gather`]).
    Many(mpsc::UnboundedSender<(u32, OpResult)>),
}

/// Takes a waiter out of the table when its caller stops waiting (answered, timed out or
/// cancelled).
struct PendingGuard {
    link: Arc<Link>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.link.pending.lock().remove(&self.id);
    }
}

/// How often a node whose engine is down probes it.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a reap claim holds if its holder dies before releasing it.
pub(crate) const CLAIM_SECS: u64 = 60;
/// Bulk operations (reading or rewriting every snapshot of a node) get this many
/// `op_timeout`s: they are off the request path and may carry thousands of entries.
const BULK_FACTOR: u32 = 10;
/// Snapshots written back per engine call after an outage.
pub(crate) const RESTORE_CHUNK: usize = 256;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fault {
    /// The engine cannot be reached: connection lost or refused. Marks the link down.
    #[error("engine unreachable: {0}")]
    Down(String),
    /// The engine answered, with an error. The link stays up.
    #[error("engine error: {0}")]
    Failed(String),
}

/// Where a published command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One node, by tag.
    Node(u32),
    /// Every node (receivers drop their own).
    All,
}

/// What an engine must provide. Every method is one short exchange with the engine;
/// the link bounds each by `op_timeout_ms`.
pub(crate) trait Engine: Send + Sync + 'static {
    /// For logs (`redis`, `nats`).
    const KIND: &'static str;

    /// Publishes an envelope. `Ok(false)` if the engine knows nobody received it.
    fn publish(
        &self,
        to: Target,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Stores snapshots of this node's connections (id, JSON).
    fn put_snapshots(
        &self,
        items: &[(String, Arc<str>)],
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    /// Deletes one snapshot of this node.
    fn delete_snapshot(&self, id: &str) -> impl Future<Output = Result<(), Fault>> + Send;
    /// A snapshot held for node `tag`, or `None` if that node is not alive or the id unknown.
    fn snapshot(
        &self,
        tag: u32,
        id: &str,
    ) -> impl Future<Output = Result<Option<String>, Fault>> + Send;
    /// Refreshes this node's heartbeat and registry entry. `Ok(true)` if the registry
    /// entry was missing (first start, engine restarted empty, or we were reaped).
    fn heartbeat(&self) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Registered nodes: (tag, node id).
    fn registered_nodes(&self) -> impl Future<Output = Result<Vec<(u32, String)>, Fault>> + Send;
    /// Whether node `tag` has a live heartbeat.
    fn is_alive(&self, tag: u32) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Whether node `tag` is still in the registry.
    fn is_registered(&self, tag: u32) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Takes the reap claim on node `tag` for [`CLAIM_SECS`]; `Ok(false)` if another holds it.
    fn claim(&self, tag: u32) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Releases our reap claim on node `tag`.
    fn release(&self, tag: u32) -> impl Future<Output = Result<(), Fault>> + Send;
    /// Every snapshot stored for node `tag` (JSON).
    fn snapshots_of(&self, tag: u32) -> impl Future<Output = Result<Vec<String>, Fault>> + Send;
    /// Deletes node `tag`'s snapshots and registry entry (not its heartbeat).
    fn forget(&self, tag: u32) -> impl Future<Output = Result<(), Fault>> + Send;
    /// Deletes this node's heartbeat (a graceful leave).
    fn stop_heartbeat(&self) -> impl Future<Output = Result<(), Fault>> + Send;
    /// Stores `value` (a stamped copy, [`crate::CopyStamp::encode`]) under `key` for at
    /// least `ttl_secs` if `guard` admits the copy stored there now, atomically; `Ok(false)`
    /// if it does not.
    fn store_session(
        &self,
        key: &str,
        value: String,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> impl Future<Output = Result<bool, Fault>> + Send;
    /// Reads a stored session (stamped), leaving it in place.
    fn read_session(&self, key: &str)
        -> impl Future<Output = Result<Option<String>, Fault>> + Send;
    /// Reads and deletes a stored session (stamped) if `guard` admits it, atomically; of
    /// two concurrent takers, one gets it.
    fn take_session(
        &self,
        key: &str,
        guard: CopyGuard,
    ) -> impl Future<Output = Result<Option<String>, Fault>> + Send;
}

/// A stored copy's stamp and copy; a value without a readable stamp is nobody's copy.
fn stamped(raw: &str) -> Option<(CopyStamp, String)> {
    CopyStamp::decode(raw).map(|(stamp, json)| (stamp, json.to_owned()))
}

/// The 8 hex digits naming a node in keys and subjects.
pub(crate) fn tag_hex(tag: u32) -> String {
    format!("{tag:08x}")
}

/// Parses [`tag_hex`] back.
pub(crate) fn parse_tag(s: &str) -> Option<u32> {
    // `from_str_radix` alone would also take a leading `+`.
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// The namespace prefixing every name in the engine: `[cluster] namespace`, or (unset)
/// the one derived from the default `[api]`. The gateway fills it from its own `[api]`
/// (`ClusterConfig::namespace_for`) before connecting.
pub(crate) fn namespace(
    cfg: &ClusterConfig,
    backplane: &'static str,
) -> Result<String, ConnectError> {
    let ns = cfg.namespace_for(&switchboard_core::config::ApiConfig::default());
    if !switchboard_core::config::is_valid_namespace(&ns) {
        return Err(ConnectError::Config {
            backplane,
            source: ConfigError {
                key: "cluster.namespace".into(),
                problem: format!("{ns:?}: must be 1-48 characters of a-z, 0-9, '_' or '-'"),
            },
        });
    }
    Ok(ns)
}

#[derive(Serialize)]
struct Outgoing<'a> {
    from: u32,
    cmd: &'a Command,
}

#[derive(Deserialize)]
struct Incoming {
    from: u32,
    cmd: Command,
}

/// The state one node's backplane shares between its calls, its engine callbacks and
/// its background tasks. Holds nothing of the engine, so callbacks stored inside the
/// engine's client may hold it without a cycle.
pub(crate) struct Link {
    kind: &'static str,
    /// This node's tag.
    pub tag: u32,
    /// This node's tag as written in keys and subjects.
    pub tag_hex: String,
    /// This node's id.
    pub node_id: String,
    /// `op_timeout_ms`.
    pub op_timeout: Duration,
    /// `heartbeat_secs`.
    pub heartbeat: Duration,
    /// `node_ttl_secs`.
    pub ttl_secs: u64,
    ready: AtomicBool,
    /// Set when the node is dropped: late deliveries from the engine are ignored.
    closed: AtomicBool,
    /// Wakes the supervisor early (the data path saw the engine fail, or it came back).
    wake: Notify,
    inbox: mpsc::Sender<Command>,
    dropped: AtomicU64,
    events: mpsc::Sender<ClusterEvent>,
    mirror: Mutex<HashMap<ConnectionId, Arc<str>>>,
    /// Callers waiting for answers, by request number.
    pending: Mutex<HashMap<u64, Waiter>>,
    next_request: AtomicU64,
    /// Answers that came after their caller stopped waiting.
    late_replies: AtomicU64,
    /// The other nodes alive at the reaper's latest round.
    peers: Mutex<Vec<u32>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("kind", &self.kind)
            .field("node_id", &self.node_id)
            .field("tag", &self.tag_hex)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link, down until the first heartbeat succeeds.
    pub fn new(
        kind: &'static str,
        cfg: &ClusterConfig,
        node_id: &str,
        inbox: mpsc::Sender<Command>,
        events: mpsc::Sender<ClusterEvent>,
    ) -> Self {
        let tag = switchboard_core::id::node_tag(node_id);
        Self {
            kind,
            tag,
            tag_hex: tag_hex(tag),
            node_id: node_id.to_owned(),
            op_timeout: Duration::from_millis(cfg.op_timeout_ms.max(1)),
            heartbeat: Duration::from_secs(cfg.heartbeat_secs.max(1)),
            ttl_secs: cfg.node_ttl_secs.max(1),
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            inbox,
            dropped: AtomicU64::new(0),
            events,
            mirror: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
            late_replies: AtomicU64::new(0),
            peers: Mutex::new(Vec::new()),
        }
    }

    /// Registers a waiter; `Busy` when too many wait already.
    fn expect(self: &Arc<Self>, waiter: Waiter) -> Result<PendingGuard, BackplaneError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            return Err(BackplaneError::Busy);
        }
        pending.insert(id, waiter);
        Ok(PendingGuard {
            link: self.clone(),
            id,
        })
    }

    /// Hands an answer to its waiting caller.
    fn answered(&self, req: u64, from: u32, result: OpResult) {
        let mut pending = self.pending.lock();
        let late = match pending.get(&req) {
            Some(Waiter::Many(tx)) => tx.send((from, result)).is_err(),
            Some(Waiter::One(_)) => match pending.remove(&req) {
                Some(Waiter::One(tx)) => tx.send(result).is_err(),
                _ => true,
            },
            None => true,
        };
        drop(pending);
        if late {
            let n = self.late_replies.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::debug!(
                    backplane = self.kind,
                    late_total = n,
                    "answers after their caller stopped waiting"
                );
            }
        }
    }

    /// The other nodes alive at the reaper's latest round, or heard from since.
    pub fn peers(&self) -> Vec<u32> {
        self.peers.lock().clone()
    }

    /// How many other nodes [`Link::peers`] names (without copying them).
    pub fn peer_count(&self) -> usize {
        self.peers.lock().len()
    }

    /// A node was heard from: it is alive.
    fn saw_peer(&self, tag: u32) {
        let mut peers = self.peers.lock();
        if !peers.contains(&tag) {
            peers.push(tag);
        }
    }

    /// Whether the engine is usable.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether the node was dropped or left: its tasks stop.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Commands dropped because the inbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Fails fast while the engine is down.
    pub fn gate(&self) -> Result<(), BackplaneError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(BackplaneError::Unavailable)
        }
    }

    /// Records a state change, reporting only actual changes.
    pub fn set_ready(&self, up: bool) {
        if self.ready.swap(up, Ordering::AcqRel) == up || self.closed.load(Ordering::Acquire) {
            return;
        }
        let event = if up {
            tracing::info!(backplane = self.kind, node = %self.node_id, "backplane up");
            ClusterEvent::BackplaneUp
        } else {
            tracing::warn!(backplane = self.kind, node = %self.node_id, "backplane down");
            ClusterEvent::BackplaneDown
        };
        // A state change is also visible through is_ready(); a full event channel loses
        // the event rather than stalling the engine callback that noticed the change.
        if self.events.try_send(event).is_err() {
            tracing::debug!(
                backplane = self.kind,
                "event channel full: state change not sent"
            );
        }
    }

    /// The engine was found unreachable.
    pub fn lost(&self, what: &'static str, why: &dyn fmt::Display) {
        if self.is_ready() {
            tracing::warn!(backplane = self.kind, op = what, error = %why, "backplane unreachable");
        }
        self.set_ready(false);
        self.wake.notify_one();
    }

    /// Asks the supervisor to probe now (the engine client reports it reconnected).
    pub fn probe_now(&self) {
        self.wake.notify_one();
    }

    /// Runs one engine call bounded by `op_timeout`.
    pub async fn run<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, Fault>>,
    ) -> Result<T, BackplaneError> {
        self.run_for(self.op_timeout, what, fut).await
    }

    /// Runs one bulk engine call, bounded by a multiple of `op_timeout`.
    pub async fn run_bulk<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, Fault>>,
    ) -> Result<T, BackplaneError> {
        self.run_for(self.op_timeout * BULK_FACTOR, what, fut).await
    }

    async fn run_for<T>(
        &self,
        limit: Duration,
        what: &'static str,
        fut: impl Future<Output = Result<T, Fault>>,
    ) -> Result<T, BackplaneError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Fault::Failed(e))) => {
                tracing::warn!(backplane = self.kind, op = what, error = %e, "backplane operation failed");
                Err(BackplaneError::Unavailable)
            }
            Ok(Err(Fault::Down(e))) => {
                self.lost(what, &e);
                Err(BackplaneError::Unavailable)
            }
            Err(_) => {
                // One slow answer is not an outage (a loaded engine, a big reply): this
                // call fails, and the supervisor probes at once. The heartbeat failing
                // too is what marks the backplane down.
                tracing::warn!(
                    backplane = self.kind,
                    op = what,
                    "backplane operation timed out; probing"
                );
                self.wake.notify_one();
                Err(BackplaneError::Unavailable)
            }
        }
    }

    /// The envelope for a command from this node.
    pub fn encode(&self, cmd: &Command) -> Vec<u8> {
        serde_json::to_vec(&Outgoing {
            from: self.tag,
            cmd,
        })
        .expect("a Command always serializes")
    }

    /// Hands a received envelope to the gateway. Never blocks: called from engine readers.
    pub fn deliver(&self, payload: &[u8], via_all: bool) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let envelope: Incoming = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(backplane = self.kind, error = %e, "undecodable command from the backplane");
                return;
            }
        };
        if via_all && envelope.from == self.tag {
            return;
        }
        if envelope.from != self.tag {
            self.saw_peer(envelope.from);
        }
        match envelope.cmd {
            Command::Reply { req, from, result } => return self.answered(req, from, result),
            Command::Hello => return,
            _ => {}
        }
        match self.inbox.try_send(envelope.cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then ever more rarely, not once per command.
                if n.is_power_of_two() {
                    tracing::warn!(
                        backplane = self.kind,
                        dropped_total = n,
                        "inbox full: dropping commands from other nodes"
                    );
                }
            }
            // The gateway is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Sends an event the gateway must not miss (waits for room in the channel).
    async fn emit(&self, event: ClusterEvent) {
        if self.events.send(event).await.is_err() {
            tracing::debug!(backplane = self.kind, "event channel closed");
        }
    }

    /// Updates the mirror; returns the id's text form and the JSON to store (None: delete).
    pub fn remember(
        &self,
        id: ConnectionId,
        snapshot: Option<&ConnectionSnapshot>,
    ) -> (String, Option<Arc<str>>) {
        let json: Option<Arc<str>> = snapshot.map(|s| Arc::from(s.to_string()));
        let mut mirror = self.mirror.lock();
        match &json {
            Some(j) => {
                mirror.insert(id, j.clone());
            }
            None => {
                mirror.remove(&id);
            }
        }
        (id.to_string(), json)
    }

    /// This node's snapshot of a connection it holds.
    pub fn local_snapshot(&self, id: &ConnectionId) -> Option<ConnectionSnapshot> {
        let json = self.mirror.lock().get(id).cloned()?;
        serde_json::from_str(&json).ok()
    }

    fn mirror_entries(&self) -> Vec<(ConnectionId, Arc<str>)> {
        self.mirror
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    fn holds(&self, id: &ConnectionId) -> bool {
        self.mirror.lock().contains_key(id)
    }
}

mod backed;
mod node;
mod tasks;
#[cfg(test)]
mod tests;

pub(crate) use backed::NodeBacked;
pub(crate) use node::{Node, Tasks};

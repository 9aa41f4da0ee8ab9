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
    if s.len() != 8 {
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

/// Background tasks of one node, stopped when the node is dropped.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Adds a task.
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }

    /// Stops every task and waits until each has (so none is mid-request afterwards).
    async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.0);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One node's backplane over engine `E`: the protocol, shared by the kinds.
pub(crate) struct Node<E: Engine> {
    pub link: Arc<Link>,
    pub engine: Arc<E>,
    /// Taken by `leave`; dropping it (with the node) stops them.
    tasks: Mutex<Tasks>,
}

impl<E: Engine> fmt::Debug for Node<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("link", &self.link).finish()
    }
}

impl<E: Engine> Drop for Node<E> {
    fn drop(&mut self) {
        self.link.closed.store(true, Ordering::Release);
    }
}

impl<E: Engine> Node<E> {
    /// Registers the node (taking over a previous incarnation's leftovers), marks it up
    /// and starts its supervisor and reaper. `tasks` are the engine's own (readers).
    pub async fn start(
        link: Arc<Link>,
        engine: Arc<E>,
        mut tasks: Tasks,
    ) -> Result<Self, ConnectError> {
        let leftovers =
            adopt_leftovers(&link, &*engine)
                .await
                .map_err(|source| ConnectError::Register {
                    backplane: E::KIND,
                    node_id: link.node_id.clone(),
                    source,
                })?;
        link.set_ready(true);
        if !leftovers.is_empty() {
            tracing::info!(
                backplane = E::KIND,
                node = %link.node_id,
                connections = leftovers.len(),
                "taking over the connections of this node's previous run"
            );
            let event = ClusterEvent::NodeLost {
                node_tag: link.tag,
                node_id: link.node_id.clone(),
                connections: parse_snapshots(leftovers),
            };
            // Not awaited here: the gateway may start reading events only after connect.
            let l = link.clone();
            tokio::spawn(async move { l.emit(event).await });
        }
        hello(&link, &*engine).await;
        tasks.push(tokio::spawn(supervise(link.clone(), engine.clone())));
        tasks.push(tokio::spawn(reap(link.clone(), engine.clone())));
        Ok(Self {
            link,
            engine,
            tasks: Mutex::new(tasks),
        })
    }

    /// [`crate::Backplane::to_node`].
    pub async fn to_node(&self, node_tag: u32, command: Command) -> Result<(), BackplaneError> {
        self.link.gate()?;
        let payload = self.link.encode(&command);
        match self
            .link
            .run(
                "publish",
                self.engine.publish(Target::Node(node_tag), payload),
            )
            .await?
        {
            true => Ok(()),
            false => Err(BackplaneError::NotInCluster),
        }
    }

    /// [`crate::Backplane::expect_reply`].
    pub fn expect_reply(&self) -> Result<crate::Pending, BackplaneError> {
        self.link.gate()?;
        let (tx, rx) = oneshot::channel();
        let guard = self.link.expect(Waiter::One(tx))?;
        Ok(crate::Pending {
            req: RequestRef {
                from: self.link.tag,
                id: guard.id,
            },
            rx,
            _guard: Box::new(guard),
        })
    }

    /// [`crate::Backplane::request`]: the publish and the answer share one
    /// `op_timeout`.
    pub async fn request(&self, node_tag: u32, op: Op) -> Result<OpResult, BackplaneError> {
        let deadline = Instant::now() + self.link.op_timeout;
        let pending = self.expect_reply()?;
        let command = Command::Op {
            op,
            req: Some(pending.req()),
        };
        tokio::time::timeout_at(deadline, self.to_node(node_tag, command))
            .await
            .map_err(|_| BackplaneError::Timeout)??;
        pending.answer(deadline).await
    }

    /// [`crate::Backplane::gather`].
    pub async fn gather(&self, op: Op) -> Result<Gathered, BackplaneError> {
        self.link.gate()?;
        let deadline = Instant::now() + self.link.op_timeout;
        let peers = self.link.peers();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let guard = self.link.expect(Waiter::Many(tx))?;
        let req = RequestRef {
            from: self.link.tag,
            id: guard.id,
        };
        let payload = self.link.encode(&Command::Op { op, req: Some(req) });
        tokio::time::timeout_at(
            deadline,
            self.link
                .run("publish", self.engine.publish(Target::All, payload)),
        )
        .await
        .map_err(|_| BackplaneError::Timeout)??;
        let mut out = Gathered {
            replies: Vec::with_capacity(peers.len()),
            expected: u32::try_from(peers.len()).unwrap_or(u32::MAX),
        };
        let mut waiting: std::collections::HashSet<u32> = peers.into_iter().collect();
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((from, result))) => {
                    waiting.remove(&from);
                    out.replies.push((from, result));
                }
                Ok(None) | Err(_) => break,
            }
        }
        drop(guard);
        Ok(out)
    }

    /// [`crate::Backplane::reply`].
    pub async fn reply(&self, to: RequestRef, result: OpResult) -> Result<(), BackplaneError> {
        let command = Command::Reply {
            req: to.id,
            from: self.link.tag,
            result,
        };
        self.to_node(to.from, command).await
    }

    /// [`crate::Backplane::store_session`].
    pub async fn store_session(
        &self,
        key: &str,
        stamp: CopyStamp,
        json: &str,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, BackplaneError> {
        self.link.gate()?;
        let value = stamp.encode(json);
        self.link
            .run(
                "store session",
                self.engine.store_session(key, value, ttl_secs, guard),
            )
            .await
    }

    /// [`crate::Backplane::read_session`].
    pub async fn read_session(
        &self,
        key: &str,
    ) -> Result<Option<(CopyStamp, String)>, BackplaneError> {
        self.link.gate()?;
        let raw = self
            .link
            .run("read session", self.engine.read_session(key))
            .await?;
        Ok(raw.as_deref().and_then(stamped))
    }

    /// [`crate::Backplane::take_session`].
    pub async fn take_session(
        &self,
        key: &str,
        guard: CopyGuard,
    ) -> Result<Option<(CopyStamp, String)>, BackplaneError> {
        self.link.gate()?;
        let raw = self
            .link
            .run("take session", self.engine.take_session(key, guard))
            .await?;
        Ok(raw.as_deref().and_then(stamped))
    }

    /// [`crate::Backplane::to_all`].
    pub async fn to_all(&self, command: Command) -> Result<(), BackplaneError> {
        self.link.gate()?;
        let payload = self.link.encode(&command);
        self.link
            .run("publish", self.engine.publish(Target::All, payload))
            .await
            .map(|_| ())
    }

    /// [`crate::Backplane::record_connection`]. The mirror is updated even while the
    /// engine is down (the call still fails), and written back when it returns.
    pub async fn record_connection(
        &self,
        id: ConnectionId,
        snapshot: Option<ConnectionSnapshot>,
    ) -> Result<(), BackplaneError> {
        let (id, json) = self.link.remember(id, snapshot.as_ref());
        self.link.gate()?;
        match json {
            Some(json) => {
                self.link
                    .run("record", self.engine.put_snapshots(&[(id, json)]))
                    .await
            }
            None => {
                self.link
                    .run("forget", self.engine.delete_snapshot(&id))
                    .await
            }
        }
    }

    /// [`crate::Backplane::connection`].
    pub async fn connection(
        &self,
        id: ConnectionId,
    ) -> Result<Option<ConnectionSnapshot>, BackplaneError> {
        if id.node_tag() == self.link.tag {
            return Ok(self.link.local_snapshot(&id));
        }
        self.link.gate()?;
        let json = self
            .link
            .run(
                "read",
                self.engine.snapshot(id.node_tag(), id.encode().as_str()),
            )
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Leaves the cluster on purpose: deletes this node's heartbeat, snapshots and
    /// registry entry, so nobody reaps it. Call after closing the connections it held.
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        self.link.gate()?;
        // Stop the supervisor (and everything else) first, or a heartbeat of its would
        // register us again.
        self.link.closed.store(true, Ordering::Release);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        tasks.stop().await;
        // Left: calls fail fast from now on (quietly: no BackplaneDown for a choice).
        self.link.ready.store(false, Ordering::Release);
        self.link
            .run("leave", self.engine.forget(self.link.tag))
            .await?;
        self.link.run("leave", self.engine.stop_heartbeat()).await
    }
}

fn parse_snapshots(items: Vec<String>) -> Vec<ConnectionSnapshot> {
    items
        .into_iter()
        .filter_map(|j| match serde_json::from_str(&j) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an undecodable connection snapshot");
                None
            }
        })
        .collect()
}

/// At start: claims our own tag (waiting a little for a survivor that is reaping a
/// previous incarnation of us), takes whatever snapshots are stored under it, and
/// registers. Returns the previous incarnation's snapshots.
async fn adopt_leftovers<E: Engine>(
    link: &Link,
    engine: &E,
) -> Result<Vec<String>, BackplaneError> {
    let deadline = Instant::now() + link.op_timeout * 5;
    let claimed = loop {
        if link.run("claim", engine.claim(link.tag)).await? {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leftovers = link
        .run_bulk("read leftovers", engine.snapshots_of(link.tag))
        .await?;
    if !leftovers.is_empty() {
        link.run_bulk("forget leftovers", engine.forget(link.tag))
            .await?;
    }
    link.run("heartbeat", engine.heartbeat()).await?;
    if claimed {
        let _ = link.run("release", engine.release(link.tag)).await;
    }
    Ok(leftovers)
}

/// Heartbeats while up; probes while down; writes the snapshots back on the way up.
async fn supervise<E: Engine>(link: Arc<Link>, engine: Arc<E>) {
    while !link.is_closed() {
        let pause = if link.is_ready() {
            link.heartbeat
        } else {
            PROBE_INTERVAL.min(link.heartbeat)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = link.wake.notified() => {}
        }
        let was_ready = link.is_ready();
        let Ok(missing) = link.run("heartbeat", engine.heartbeat()).await else {
            // Even an engine that answers with errors is down for us: without a
            // heartbeat this node would soon be reaped by the others.
            link.set_ready(false);
            ignore_own_wake(&link);
            continue;
        };
        if (!was_ready || missing) && restore(&link, &*engine).await.is_err() {
            ignore_own_wake(&link);
            continue;
        }
        link.set_ready(true);
        if !was_ready || missing {
            // Back (or registered again): the others count us in their gathers at once
            // rather than at their next heartbeat.
            hello(&link, &*engine).await;
        }
    }
}

/// Tells every other node this one is here (best effort: they also see it at their next
/// heartbeat).
async fn hello<E: Engine>(link: &Link, engine: &E) {
    let payload = link.encode(&Command::Hello);
    if let Err(e) = link
        .run("hello", engine.publish(Target::All, payload))
        .await
    {
        tracing::debug!(backplane = E::KIND, error = %e, "hello not published");
    }
}

/// Drops the wake-up the supervisor's own failed call left ([`Link::lost`]), so that it
/// probes again after [`PROBE_INTERVAL`] rather than at once: an engine that refuses at
/// once would otherwise be probed in a hot loop (and paused test time never advance).
fn ignore_own_wake(link: &Link) {
    use futures::FutureExt;
    let _ = link.wake.notified().now_or_never();
}

/// Writes every snapshot of the mirror to the engine, then deletes those the gateway
/// forgot meanwhile (a delete racing the rewrite must win).
async fn restore<E: Engine>(link: &Link, engine: &E) -> Result<(), BackplaneError> {
    let entries = link.mirror_entries();
    if !entries.is_empty() {
        tracing::info!(node = %link.node_id, connections = entries.len(), "writing this node's connection snapshots back");
    }
    for chunk in entries.chunks(RESTORE_CHUNK) {
        let items: Vec<(String, Arc<str>)> = chunk
            .iter()
            .map(|(id, j)| (id.to_string(), j.clone()))
            .collect();
        link.run("restore", engine.put_snapshots(&items)).await?;
    }
    for (id, _) in &entries {
        if !link.holds(id) {
            link.run("restore", engine.delete_snapshot(&id.to_string()))
                .await?;
        }
    }
    Ok(())
}

/// Every `heartbeat_secs`: reaps registered nodes whose heartbeat expired.
async fn reap<E: Engine>(link: Arc<Link>, engine: Arc<E>) {
    let mut tick = tokio::time::interval(link.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if link.is_closed() {
            return;
        }
        if !link.is_ready() {
            continue;
        }
        let Ok(nodes) = link.run("list nodes", engine.registered_nodes()).await else {
            continue;
        };
        let mut alive = Vec::with_capacity(nodes.len());
        for (tag, node_id) in nodes {
            if tag == link.tag {
                continue;
            }
            match link.run("check heartbeat", engine.is_alive(tag)).await {
                Ok(true) => alive.push(tag),
                Ok(false) => reap_node(&link, &*engine, tag, node_id).await,
                Err(_) => {}
            }
        }
        *link.peers.lock() = alive;
    }
}

async fn reap_node<E: Engine>(link: &Link, engine: &E, tag: u32, node_id: String) {
    if !matches!(link.run("claim", engine.claim(tag)).await, Ok(true)) {
        return;
    }
    let taken = async {
        // Under the claim, look again: another survivor may have finished reaping it
        // between our listing and our claim, or the node may have come back.
        if !link
            .run("check registry", engine.is_registered(tag))
            .await?
            || link.run("check heartbeat", engine.is_alive(tag)).await?
        {
            return Ok(None);
        }
        link.run_bulk("read snapshots", engine.snapshots_of(tag))
            .await
            .map(Some)
    }
    .await;
    if let Ok(Some(snapshots)) = taken {
        tracing::warn!(
            backplane = E::KIND,
            lost = %node_id,
            connections = snapshots.len(),
            "node lost: taking over its connections"
        );
        link.emit(ClusterEvent::NodeLost {
            node_tag: tag,
            node_id,
            connections: parse_snapshots(snapshots),
        })
        .await;
        let _ = link.run_bulk("forget node", engine.forget(tag)).await;
    }
    let _ = link.run("release", engine.release(tag)).await;
}

/// A backplane made of a [`Node`] (Redis, NATS): the [`Backplane`] calls are the node's.
pub(crate) trait NodeBacked: Send + Sync + 'static {
    /// The engine under the node.
    type Engine: Engine;
    /// The node.
    fn node(&self) -> &Node<Self::Engine>;
}

impl<T: NodeBacked> Backplane for T {
    fn kind(&self) -> &'static str {
        T::Engine::KIND
    }
    fn is_ready(&self) -> bool {
        self.node().link.is_ready()
    }
    fn to_node(
        &self,
        node_tag: u32,
        command: Command,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().to_node(node_tag, command))
    }
    fn to_all(&self, command: Command) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().to_all(command))
    }
    fn record_connection(
        &self,
        id: ConnectionId,
        snapshot: Option<ConnectionSnapshot>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().record_connection(id, snapshot))
    }
    fn connection(
        &self,
        id: ConnectionId,
    ) -> BoxFuture<'_, Result<Option<ConnectionSnapshot>, BackplaneError>> {
        Box::pin(self.node().connection(id))
    }
    fn dropped_commands(&self) -> u64 {
        self.node().link.dropped()
    }
    fn has_peers(&self) -> bool {
        true
    }
    fn keeps_registry(&self) -> bool {
        true
    }
    fn request(&self, node_tag: u32, op: Op) -> BoxFuture<'_, Result<OpResult, BackplaneError>> {
        Box::pin(self.node().request(node_tag, op))
    }
    fn gather(&self, op: Op) -> BoxFuture<'_, Result<Gathered, BackplaneError>> {
        Box::pin(self.node().gather(op))
    }
    fn expect_reply(&self) -> Result<crate::Pending, BackplaneError> {
        self.node().expect_reply()
    }
    fn reply(&self, to: RequestRef, result: OpResult) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().reply(to, result))
    }
    fn store_session(
        &self,
        key: &str,
        stamp: CopyStamp,
        json: String,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move {
            self.node()
                .store_session(&key, stamp, &json, ttl_secs, guard)
                .await
        })
    }
    fn read_session(
        &self,
        key: &str,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move { self.node().read_session(&key).await })
    }
    fn take_session(
        &self,
        key: &str,
        guard: CopyGuard,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move { self.node().take_session(&key, guard).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn link(
        node: &str,
        inbox: usize,
    ) -> (Link, mpsc::Receiver<Command>, mpsc::Receiver<ClusterEvent>) {
        let (itx, irx) = mpsc::channel(inbox);
        let (etx, erx) = mpsc::channel(8);
        let l = Link::new("test", &ClusterConfig::default(), node, itx, etx);
        (l, irx, erx)
    }

    fn broadcast(n: u8) -> Command {
        Command::Op {
            op: Op::Send {
                to: switchboard_core::ops::Target::All,
                data: Bytes::from(vec![n]),
                binary: true,
            },
            req: None,
        }
    }

    #[test]
    fn tags_print_as_eight_hex_digits_and_parse_back() {
        assert_eq!(tag_hex(0xab), "000000ab");
        assert_eq!(parse_tag("000000ab"), Some(0xab));
        assert_eq!(parse_tag("ab"), None);
        assert_eq!(parse_tag("zzzzzzzz"), None);
    }

    #[tokio::test]
    async fn a_node_drops_its_own_messages_on_the_all_channel_only() {
        let (a, mut inbox, _) = link("a", 8);
        let own = a.encode(&broadcast(1));
        a.deliver(&own, true);
        assert!(inbox.try_recv().is_err());
        a.deliver(&own, false);
        assert_eq!(inbox.try_recv().unwrap(), broadcast(1));
        let (b, _, _) = link("b", 8);
        a.deliver(&b.encode(&broadcast(2)), true);
        assert_eq!(inbox.try_recv().unwrap(), broadcast(2));
    }

    #[tokio::test]
    async fn a_full_inbox_drops_and_counts_instead_of_blocking() {
        let (a, mut inbox, _) = link("a", 2);
        let (b, _, _) = link("b", 1);
        for n in 0..5 {
            a.deliver(&b.encode(&broadcast(n)), false);
        }
        assert_eq!(a.dropped(), 3);
        assert_eq!(inbox.try_recv().unwrap(), broadcast(0));
        assert_eq!(inbox.try_recv().unwrap(), broadcast(1));
        a.deliver(b"not json", false);
        assert!(inbox.try_recv().is_err());
    }

    #[tokio::test]
    async fn answers_go_to_their_caller_never_to_the_inbox() {
        use switchboard_core::ops::{OpError, Outcome};
        let (a, mut inbox, _) = link("a", 1);
        let a = Arc::new(a);
        let (b, _, _) = link("b", 1);
        // Fill the inbox: answers must still arrive.
        a.deliver(&b.encode(&broadcast(0)), false);
        let (tx, rx) = oneshot::channel();
        let one = a.expect(Waiter::One(tx)).unwrap();
        let (mtx, mut mrx) = mpsc::unbounded_channel();
        let many = a.expect(Waiter::Many(mtx)).unwrap();
        let reply = |req, result| {
            b.encode(&Command::Reply {
                req,
                from: b.tag,
                result,
            })
        };
        a.deliver(&reply(one.id, Ok(Outcome::Accepted)), false);
        a.deliver(&reply(many.id, Err(OpError::Gone)), true);
        a.deliver(&reply(many.id, Ok(Outcome::Accepted)), false);
        assert_eq!(rx.await.unwrap(), Ok(Outcome::Accepted));
        assert_eq!(mrx.recv().await.unwrap(), (b.tag, Err(OpError::Gone)));
        assert_eq!(mrx.recv().await.unwrap(), (b.tag, Ok(Outcome::Accepted)));
        assert_eq!(a.dropped(), 0);
        assert_eq!(inbox.try_recv().unwrap(), broadcast(0));
        // A caller that stopped waiting leaves nothing behind; its late answer is dropped.
        let id = many.id;
        drop(one);
        drop(many);
        assert!(a.pending.lock().is_empty());
        a.deliver(&reply(id, Ok(Outcome::Accepted)), false);
        assert_eq!(a.late_replies.load(Ordering::Relaxed), 1);
        assert!(inbox.try_recv().is_err());
    }

    #[tokio::test]
    async fn too_many_waiting_requests_are_refused_as_busy() {
        let (a, _, _) = link("a", 1);
        let a = Arc::new(a);
        let mut guards = Vec::new();
        for _ in 0..MAX_PENDING {
            let (tx, _rx) = oneshot::channel();
            guards.push(a.expect(Waiter::One(tx)).unwrap());
        }
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            a.expect(Waiter::One(tx)),
            Err(BackplaneError::Busy)
        ));
        guards.pop();
        let (tx, _rx) = oneshot::channel();
        assert!(a.expect(Waiter::One(tx)).is_ok());
    }

    #[tokio::test]
    async fn state_changes_are_reported_once() {
        let (a, _, mut events) = link("a", 1);
        assert!(a.gate().is_err());
        a.set_ready(true);
        a.set_ready(true);
        assert!(a.gate().is_ok());
        a.lost("test", &"gone");
        a.lost("test", &"gone");
        assert_eq!(events.try_recv().unwrap(), ClusterEvent::BackplaneUp);
        assert_eq!(events.try_recv().unwrap(), ClusterEvent::BackplaneDown);
        assert!(events.try_recv().is_err());
        assert_eq!(a.gate(), Err(BackplaneError::Unavailable));
    }

    fn arbitrary_id() -> impl switchboard_fuzz::proptest::strategy::Strategy<Value = ConnectionId> {
        use base64::Engine;
        use switchboard_fuzz::proptest::prelude::*;
        any::<[u8; 16]>().prop_map(|b| {
            ConnectionId::parse(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
                .expect("16 bytes are an id")
        })
    }

    fn arbitrary_op() -> impl switchboard_fuzz::proptest::strategy::Strategy<Value = Op> {
        use switchboard_core::ops::Target;
        use switchboard_fuzz::proptest::prelude::*;
        let text = || ".{0,24}";
        let target = prop_oneof![
            arbitrary_id().prop_map(|id| Target::Connection { id }),
            (text(), prop::collection::vec(arbitrary_id(), 0..3))
                .prop_map(|(group, exclude)| Target::Group { group, exclude }),
            text().prop_map(|user| Target::User { user }),
            Just(Target::All),
        ];
        prop_oneof![
            (target.clone(), any::<Vec<u8>>(), any::<bool>()).prop_map(|(to, data, binary)| {
                Op::Send {
                    to,
                    data: Bytes::from(data),
                    binary,
                }
            }),
            target.prop_map(|to| Op::Close { to }),
            (arbitrary_id(), text()).prop_map(|(id, group)| Op::Join { id, group }),
            (arbitrary_id(), text()).prop_map(|(id, group)| Op::Leave { id, group }),
            (
                arbitrary_id(),
                prop::collection::vec((text(), prop::option::of(text())), 0..3)
            )
                .prop_map(|(id, changes)| Op::SetState { id, changes }),
            (arbitrary_id(), prop::option::of(text()))
                .prop_map(|(id, user)| Op::SetUser { id, user }),
            arbitrary_id().prop_map(|id| Op::Get { id }),
            (text(), prop::option::of(arbitrary_id()), any::<u32>()).prop_map(
                |(group, after, limit)| Op::Members {
                    group,
                    after,
                    limit
                }
            ),
        ]
    }

    fn arbitrary_result() -> impl switchboard_fuzz::proptest::strategy::Strategy<Value = OpResult> {
        use switchboard_core::ops::{ConnectionView, Counts, Coverage, OpError, Outcome};
        use switchboard_fuzz::proptest::prelude::*;
        let text = || ".{0,24}";
        let nodes = (any::<u32>(), any::<u32>())
            .prop_map(|(answered, expected)| Coverage { answered, expected });
        prop_oneof![
            Just(Ok(Outcome::Accepted)),
            (any::<[u64; 3]>(), nodes.clone()).prop_map(|(c, nodes)| Ok(Outcome::Sent {
                counts: Counts {
                    recipients: c[0],
                    delivered: c[1],
                    dropped: c[2]
                },
                nodes
            })),
            (any::<u64>(), nodes.clone())
                .prop_map(|(closed, nodes)| Ok(Outcome::Closed { closed, nodes })),
            any::<bool>().prop_map(|added| Ok(Outcome::Joined { added })),
            prop::collection::vec((text(), text()), 0..3)
                .prop_map(|state| Ok(Outcome::State { state })),
            prop::option::of(text()).prop_map(|user| Ok(Outcome::User { user })),
            (
                arbitrary_id(),
                any::<u64>(),
                text(),
                prop::collection::vec(text(), 0..3)
            )
                .prop_map(|(id, at, ip, groups)| Ok(Outcome::Connection {
                    view: Box::new(ConnectionView {
                        id,
                        connected_at_ms: at,
                        last_active_at_ms: at,
                        source_ip: ip,
                        user_agent: None,
                        user_id: None,
                        groups,
                        state: vec![],
                        subprotocol: None,
                    })
                })),
            (
                prop::collection::vec(arbitrary_id(), 0..4),
                any::<u64>(),
                nodes
            )
                .prop_map(|(ids, size, nodes)| Ok(Outcome::Members {
                    ids,
                    size,
                    nodes
                })),
            any::<u64>().prop_map(|limit| Err(OpError::TooManyGroups { limit })),
            Just(Err(OpError::Gone)),
            Just(Err(OpError::Timeout)),
        ]
    }

    /// What another node publishes is hostile until decoded: arbitrary bytes, commands
    /// with one byte changed, and deeply nested handovers are refused (or decoded) without
    /// a panic, and every command this node can write decodes back to itself.
    #[test]
    fn fuzz_cluster_command_envelopes() {
        use crate::{Command, SessionOutcome};
        use switchboard_fuzz::proptest::prelude::*;

        let text = || ".{0,24}";
        let op = arbitrary_op;
        let outcome = arbitrary_result;
        let command = prop_oneof![
            (op(), prop::option::of((any::<u32>(), any::<u64>()))).prop_map(|(op, req)| {
                Command::Op {
                    op,
                    req: req.map(|(from, id)| crate::RequestRef { from, id }),
                }
            }),
            (any::<u64>(), any::<u32>(), outcome())
                .prop_map(|(req, from, result)| { Command::Reply { req, from, result } }),
            (text(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
                |(token, after, from, request)| Command::TakeSession {
                    token,
                    after,
                    from,
                    request
                }
            ),
            (any::<u64>(), 0u8..3, text()).prop_map(|(request, kind, note)| {
                let outcome = match kind {
                    0 => SessionOutcome::Moved {
                        handover: serde_json::json!({ "note": note, "n": [1, 2.5, null] }),
                    },
                    1 => SessionOutcome::InUse,
                    _ => SessionOutcome::Unknown,
                };
                Command::SessionTaken { request, outcome }
            }),
            text().prop_map(|id| Command::Forget { id }),
            (text(), any::<u32>(), text()).prop_map(|(id, holder, proof)| Command::Adopted {
                id,
                holder,
                proof
            }),
        ];
        let input = (
            command,
            any::<u32>(),
            any::<Vec<u8>>(),
            any::<usize>(),
            any::<u8>(),
            0u8..4,
        );
        switchboard_fuzz::run(
            "fuzz_cluster_command_envelopes",
            60_000,
            input,
            |(cmd, from, garbage, at, byte, mode)| {
                let encoded = serde_json::to_vec(&Outgoing { from, cmd: &cmd }).unwrap();
                match mode {
                    0 => {
                        let back: Incoming = serde_json::from_slice(&encoded)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(back.from, from);
                        prop_assert_eq!(back.cmd, cmd);
                    }
                    1 => {
                        let mut mutated = encoded;
                        let i = at % mutated.len();
                        mutated[i] = byte;
                        let _ = serde_json::from_slice::<Incoming>(&mutated);
                    }
                    2 => {
                        let _ = serde_json::from_slice::<Incoming>(&garbage);
                    }
                    _ => {
                        // A handover nested far deeper than serde_json's recursion limit
                        // is an error, not a stack overflow.
                        let depth = 1_000 + at % 50_000;
                        let mut doc = String::from(
                            r#"{"from":1,"cmd":{"op":"sessionTaken","request":1,"outcome":{"kind":"moved","handover":"#,
                        );
                        doc.push_str(&"[".repeat(depth));
                        doc.push_str(&"]".repeat(depth));
                        doc.push_str("}}}");
                        prop_assert!(serde_json::from_str::<Incoming>(&doc).is_err());
                    }
                }
                Ok(())
            },
        );
    }
}

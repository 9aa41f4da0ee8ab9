//! The backplane: how a node reaches connections it does not hold, and how the nodes of a
//! cluster know about each other.
//!
//! A send first looks in the node's own connection table; only a miss goes to the
//! [`Backplane`]. Connection ids carry their node's tag, so a send to one connection is
//! published to exactly that node; group, user and broadcast sends are published to every
//! node, and each delivers to its own members (so every member gets it exactly once).
//!
//! The backplane also keeps a registry: node heartbeats with a TTL, and for each node a
//! snapshot of its connections (what a `$disconnect` event needs), so that when a node
//! stops heartbeating a survivor can clean up after it and invoke `$disconnect` for each
//! of its connections.
//!
//! Kinds: [`Local`] (single node, the default: remote sends fail fast), and `redis` /
//! `nats` (in their own modules). [`memory`] simulates an engine in one process, for
//! tests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_core::config::{BackplaneKind, ClusterConfig, ConfigError};
use switchboard_core::ops::{Op, OpError, Outcome};
use switchboard_core::ConnectionId;
use tokio::sync::mpsc;

mod link;
pub mod memory;
pub mod nats;
pub mod redis;

/// Why the backplane could not carry a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// The id names a node this backplane does not know (or the node is gone).
    #[error("connection belongs to no known node")]
    NotInCluster,
    /// The backplane engine is down; cross-node operations fail fast.
    #[error("backplane unavailable")]
    Unavailable,
    /// A request to another node got no answer in time.
    #[error("no answer from node")]
    Timeout,
    /// Too many requests are waiting for answers from other nodes.
    #[error("too many requests waiting for other nodes")]
    Busy,
}

/// Why [`connect`] (or [`memory::Hub::connect`]) could not join the cluster. The
/// message starts with the backplane's kind and names the key or the URLs at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration cannot work (caught before anything is dialed; `check-config`
    /// reports the same [`ConfigError`]).
    #[error("{backplane} backplane: {source}")]
    Config {
        /// `redis`, `nats` or `memory`.
        backplane: &'static str,
        /// The key and what is wrong with it.
        source: ConfigError,
    },
    /// The engine did not answer within the startup timeout (a few `op_timeout_ms`).
    #[error("{backplane} backplane: no answer from {urls:?}")]
    NoAnswer {
        /// `redis`, `nats` or `memory`.
        backplane: &'static str,
        /// `cluster.urls`.
        urls: Vec<String>,
    },
    /// The engine refused the connection or the setup (a bucket, a subscription).
    #[error("{backplane} backplane: {urls:?}: {source}")]
    Engine {
        /// `redis`, `nats` or `memory`.
        backplane: &'static str,
        /// `cluster.urls`.
        urls: Vec<String>,
        /// The engine client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connected, but registering this node failed.
    #[error("{backplane}: registering node {node_id}: {source}")]
    Register {
        /// `redis`, `nats` or `memory`.
        backplane: &'static str,
        /// This node's id.
        node_id: String,
        /// What the engine answered.
        source: BackplaneError,
    },
}

impl ConnectError {
    /// Whether the configuration alone decided this (retrying cannot help); otherwise the
    /// engine was unreachable or failed, and a later start may succeed.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }
}

/// What an operation did on one node.
pub type OpResult = Result<Outcome, OpError>;

/// Where the answer to an operation goes: the asking node and its request number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef {
    /// The asking node's tag.
    pub from: u32,
    /// The asker's request number.
    pub id: u64,
}

/// A caller waiting for another node's answer to an operation it sends itself (in order
/// behind others, see [`Backplane::expect_reply`]). Dropping it stops the wait.
pub struct Pending {
    req: RequestRef,
    rx: tokio::sync::oneshot::Receiver<OpResult>,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("req", &self.req).finish()
    }
}

impl Pending {
    /// Where the answer goes: put it in the operation's [`Command::Op`].
    pub fn req(&self) -> RequestRef {
        self.req
    }

    /// Waits for the answer until `deadline`.
    pub async fn answer(self, deadline: tokio::time::Instant) -> Result<OpResult, BackplaneError> {
        match tokio::time::timeout_at(deadline, self.rx).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(BackplaneError::Unavailable),
            Err(_) => Err(BackplaneError::Timeout),
        }
    }
}

/// The other nodes' answers to an operation sent to all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// Each answer, with the answering node's tag.
    pub replies: Vec<(u32, OpResult)>,
    /// How many nodes were expected to answer: the other nodes live at the latest
    /// heartbeat (a node that joined since may answer too).
    pub expected: u32,
}

/// A future returned by the backplane.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one node asks of another (or of all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    /// Apply an operation here (docs/architecture.md, "Operations"): a send, close,
    /// membership or state change for a connection this node holds (or, as its home,
    /// forwards to where it moved), or this node's part of a fan-out or listing.
    Op {
        /// The operation.
        op: Op,
        /// Where to send the answer; `None`: nobody waits for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestRef>,
    },
    /// A node joined the cluster: the others count it in their gathers from now on (they
    /// would otherwise learn of it at their next heartbeat). Never reaches the inbox.
    Hello,
    /// The answer to an [`Command::Op`] that carried a [`RequestRef`]. Never reaches the
    /// inbox: the link hands it to the waiting caller.
    Reply {
        /// The request number of the asker.
        req: u64,
        /// The answering node's tag.
        from: u32,
        /// What the operation did there.
        result: OpResult,
    },
    /// Hand the parked resumable session with `token` over to node `from`, whose client
    /// came back there (docs/protocol.md, "Resuming on another node"). Answered with
    /// [`Command::SessionTaken`] to `from`.
    TakeSession {
        /// The session token the client presented. The session is handed over (and the
        /// home relays the request) only if the token proves the session's secret.
        token: String,
        /// The highest server sequence number the client received.
        after: u64,
        /// The asking node's tag.
        from: u32,
        /// The asker's request number, echoed in the answer.
        request: u64,
    },
    /// The answer to [`Command::TakeSession`].
    SessionTaken {
        /// The asker's request number.
        request: u64,
        /// What became of the session.
        outcome: SessionOutcome,
    },
    /// A connection that moved off its first node ended: forget where it went.
    Forget {
        /// The connection.
        id: String,
    },
    /// A session opened on the receiving node went on at `holder` without the receiver
    /// relaying the move (from its kept copy, or handed over by the node that kept it):
    /// sends by id go there now.
    Adopted {
        /// The connection.
        id: String,
        /// The node that holds it now.
        holder: u32,
        /// The proof of the session's token (as the session's handover spells it), which
        /// the home checks requests for the session against.
        proof: String,
    },
}

/// What a node answers when asked to hand a session over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionOutcome {
    /// The session is the asker's now: everything it needs to go on, as the gateway
    /// serializes it (the connection, its memberships, the session's sequence numbers
    /// and unacknowledged messages, and what was queued for it).
    Moved {
        /// The handover.
        handover: serde_json::Value,
    },
    /// The session is attached to a live socket elsewhere (the resume gets HTTP 409).
    InUse,
    /// No such session (ended, expired, or not resumable without loss), or the token
    /// does not prove it: start afresh.
    Unknown,
}

/// What the backplane tells the gateway about the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    /// A node stopped heartbeating; this node was chosen (by a claim in the engine) to
    /// clean up after it, and should invoke `$disconnect` for each connection. Each lost
    /// node is reported to one survivor (a node restarted under the same id reports its
    /// previous run's connections to itself).
    NodeLost {
        /// The lost node's tag.
        node_tag: u32,
        /// The lost node's id.
        node_id: String,
        /// The snapshots it had recorded.
        connections: Vec<ConnectionSnapshot>,
    },
    /// The backplane became usable (also sent once when it first connects).
    BackplaneUp,
    /// The backplane became unusable: cross-node calls fail fast until `BackplaneUp`.
    BackplaneDown,
}

/// A snapshot of one connection, kept in the registry so a survivor can invoke
/// `$disconnect` for it if its node dies. JSON of `ConnectionInfo` plus extensions.
pub type ConnectionSnapshot = serde_json::Value;

/// Carries commands between nodes and keeps the registry.
pub trait Backplane: Send + Sync + 'static {
    /// A name for logs and metrics (`local`, `redis`, `nats`).
    fn kind(&self) -> &'static str;
    /// Whether the backplane is currently usable (drives `/readyz`).
    fn is_ready(&self) -> bool;
    /// Sends a command to the node with `node_tag`.
    fn to_node(&self, node_tag: u32, command: Command)
        -> BoxFuture<'_, Result<(), BackplaneError>>;
    /// Sends a command to every other node.
    fn to_all(&self, command: Command) -> BoxFuture<'_, Result<(), BackplaneError>>;
    /// Records a connection this node holds (on accept) or forgets it (`None`, on close).
    fn record_connection(
        &self,
        id: ConnectionId,
        snapshot: Option<ConnectionSnapshot>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;
    /// The snapshot of a connection held by any node, if it is alive.
    fn connection(
        &self,
        id: ConnectionId,
    ) -> BoxFuture<'_, Result<Option<ConnectionSnapshot>, BackplaneError>>;
    /// Whether other nodes can hold connections (a cluster): operations on connections
    /// this node does not hold go to them.
    fn has_peers(&self) -> bool {
        false
    }
    /// How many other nodes were live at the latest heartbeat (or heard from since).
    fn peers(&self) -> u32 {
        0
    }
    /// Whether connection snapshots are kept for other nodes (worth writing).
    fn keeps_registry(&self) -> bool {
        false
    }
    /// Sends `op` to node `node_tag` and waits (at most `op_timeout_ms`) for its answer.
    /// [`BackplaneError::NotInCluster`]: the engine knows that node is gone.
    fn request(&self, _node_tag: u32, _op: Op) -> BoxFuture<'_, Result<OpResult, BackplaneError>> {
        Box::pin(std::future::ready(Err(BackplaneError::NotInCluster)))
    }
    /// Sends `op` to every other node and gathers their answers until each expected node
    /// answered or `op_timeout_ms` passed.
    fn gather(&self, _op: Op) -> BoxFuture<'_, Result<Gathered, BackplaneError>> {
        Box::pin(std::future::ready(Ok(Gathered::default())))
    }
    /// Registers a caller for an answer to an operation the caller sends itself (through
    /// [`Backplane::to_node`]) with [`Pending::req`] as its `req`.
    fn expect_reply(&self) -> Result<Pending, BackplaneError> {
        Err(BackplaneError::NotInCluster)
    }
    /// Answers a request from another node.
    fn reply(
        &self,
        _to: RequestRef,
        _result: OpResult,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(std::future::ready(Err(BackplaneError::NotInCluster)))
    }
    /// Commands from other nodes dropped because this node's inbox was full.
    fn dropped_commands(&self) -> u64 {
        0
    }
    /// Keeps a parked resumable session (`[resume] keep_in_backplane`) under `key` for at
    /// least `ttl_secs`, stamped `stamp`, if `guard` admits the copy there now (replacing
    /// it). `Ok(false)`: the guard refused (see [`CopyGuard`]).
    fn store_session(
        &self,
        _key: &str,
        _stamp: CopyStamp,
        _json: String,
        _ttl_secs: u64,
        _guard: CopyGuard,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>> {
        Box::pin(std::future::ready(Err(BackplaneError::NotInCluster)))
    }
    /// Reads a kept session and its stamp without taking it: a taker checks that the
    /// request may take it (its token's proof) and who holds it before it removes it for
    /// everyone else. A value without a readable stamp reads as none.
    fn read_session(
        &self,
        _key: &str,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Reads and deletes a kept session if `guard` admits it; of two concurrent takers,
    /// one gets it.
    fn take_session(
        &self,
        _key: &str,
        _guard: CopyGuard,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Who wrote a kept session's copy: the node process that held the session (its node tag
/// and incarnation, see [`switchboard_core::id::IdGenerator::owner`]) and how many times
/// the session had changed nodes by then. A session is held by one node at a time and
/// every change of node adds a hop, so of two copies of one session the one with more
/// hops is the newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStamp {
    /// The writing node process.
    pub owner: u64,
    /// Changes of node before this stay.
    pub hops: u32,
}

/// Bytes of the stamp in front of a stored copy: `<owner, 16 hex> <hops, 8 hex>\n`.
pub const STAMP_LEN: usize = 26;

impl CopyStamp {
    /// The stored form of a copy: its stamp, then the copy.
    pub fn encode(&self, json: &str) -> String {
        let mut s = String::with_capacity(STAMP_LEN + json.len());
        s.push_str(&format!("{:016x} {:08x}\n", self.owner, self.hops));
        s.push_str(json);
        s
    }

    /// The stamp and the copy of a stored value; `None` if it has no readable stamp.
    pub fn decode(raw: &str) -> Option<(CopyStamp, &str)> {
        let head = raw.as_bytes().get(..STAMP_LEN)?;
        if head[16] != b' ' || head[25] != b'\n' {
            return None;
        }
        fn hex(b: &[u8]) -> Option<u64> {
            b.iter().try_fold(0u64, |n, &c| {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => return None,
                };
                Some(n << 4 | u64::from(d))
            })
        }
        let owner = hex(&head[..16])?;
        let hops = u32::try_from(hex(&head[17..25])?).ok()?;
        Some((CopyStamp { owner, hops }, &raw[STAMP_LEN..]))
    }

    /// The owner as the stamp spells it (what a guard compares).
    pub fn owner_hex(owner: u64) -> String {
        format!("{owner:016x}")
    }
}

/// When an operation on a kept session's copy goes ahead, judged atomically against the
/// copy stored at that moment (its stamp, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyGuard {
    /// There is no copy, or it is this stamp's owner's, or it was written by a node the
    /// session has since left (fewer hops): what the holder of a session may replace or
    /// clean up. Never a copy written by a node the session moved to after this one.
    NotNewer(CopyStamp),
    /// The copy is this owner's: a holder refreshing its own copy (absent means another
    /// node took it), or a survivor ending a dead node's copy (not one a live node wrote
    /// since).
    Owner(u64),
}

impl CopyGuard {
    /// Whether the guard admits an operation when the stored copy's stamp is `current`
    /// (`None`: no copy, or one without a readable stamp, which is nobody's and may be
    /// replaced). The Redis engine runs the same rule in a script (`redis.rs`,
    /// `COPY_SCRIPT`); the tests of both engines hold them to it.
    pub fn admits(&self, current: Option<CopyStamp>) -> bool {
        match (self, current) {
            (CopyGuard::NotNewer(_), None) => true,
            (CopyGuard::NotNewer(mine), Some(c)) => c.owner == mine.owner || c.hops < mine.hops,
            (CopyGuard::Owner(owner), Some(c)) => c.owner == *owner,
            (CopyGuard::Owner(_), None) => false,
        }
    }
}

/// Connects the backplane `cfg` names. `inbox` receives the commands other nodes send to
/// this node, `events` the cluster's [`ClusterEvent`]s; both channels are bounded by the
/// caller (see [`redis::RedisBackplane::connect`] for what happens when they are full).
/// `local` needs neither.
pub async fn connect(
    cfg: &ClusterConfig,
    node_id: &str,
    inbox: mpsc::Sender<Command>,
    events: mpsc::Sender<ClusterEvent>,
) -> Result<Arc<dyn Backplane>, ConnectError> {
    Ok(match cfg.backplane {
        BackplaneKind::Local => Arc::new(Local),
        BackplaneKind::Redis => redis::RedisBackplane::connect(cfg, node_id, inbox, events).await?,
        BackplaneKind::Nats => nats::NatsBackplane::connect(cfg, node_id, inbox, events).await?,
    })
}

/// The single-node backplane: there is nobody else.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Backplane for Local {
    fn kind(&self) -> &'static str {
        "local"
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn to_node(
        &self,
        _node_tag: u32,
        _command: Command,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(std::future::ready(Err(BackplaneError::NotInCluster)))
    }
    fn to_all(&self, _command: Command) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn record_connection(
        &self,
        _id: ConnectionId,
        _snapshot: Option<ConnectionSnapshot>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn connection(
        &self,
        _id: ConnectionId,
    ) -> BoxFuture<'_, Result<Option<ConnectionSnapshot>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

pub use switchboard_core::b64 as bytes_b64;

#[cfg(test)]
mod tests;

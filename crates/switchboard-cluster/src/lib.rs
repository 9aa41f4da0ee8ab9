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
//! `nats` (in their own modules).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_core::config::{BackplaneKind, ClusterConfig};
use switchboard_core::ConnectionId;
use tokio::sync::mpsc;

mod link;
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
}

/// A future returned by the backplane.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one node asks of another (or of all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Command {
    /// Deliver to one connection held by the receiving node.
    Send {
        /// The connection.
        id: String,
        /// Payload.
        #[serde(with = "bytes_b64")]
        data: Bytes,
        /// Binary frame.
        binary: bool,
    },
    /// Deliver to the receiving node's members of a group.
    SendGroup {
        /// The group.
        group: String,
        /// Connection ids not to deliver to.
        exclude: Vec<String>,
        /// Payload.
        #[serde(with = "bytes_b64")]
        data: Bytes,
        /// Binary frame.
        binary: bool,
    },
    /// Deliver to the receiving node's connections of a user.
    SendUser {
        /// The user.
        user: String,
        /// Payload.
        #[serde(with = "bytes_b64")]
        data: Bytes,
        /// Binary frame.
        binary: bool,
    },
    /// Deliver to every connection of the receiving node.
    Broadcast {
        /// Payload.
        #[serde(with = "bytes_b64")]
        data: Bytes,
        /// Binary frame.
        binary: bool,
    },
    /// Close one connection (1000).
    Close {
        /// The connection.
        id: String,
    },
    /// Close the receiving node's members of a group, or connections of a user.
    CloseMany {
        /// The group, if closing a group.
        group: Option<String>,
        /// The user, if closing a user's connections.
        user: Option<String>,
    },
    /// Join or leave a group for a connection held by the receiving node.
    Membership {
        /// The connection.
        id: String,
        /// The group.
        group: String,
        /// Join (true) or leave.
        join: bool,
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
}

/// What a node answers when asked to hand a session over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
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
    /// Every connection held by the other live nodes (their latest snapshots).
    fn snapshots(&self) -> BoxFuture<'_, Result<Vec<ConnectionSnapshot>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Commands from other nodes dropped because this node's inbox was full.
    fn dropped_commands(&self) -> u64 {
        0
    }
    /// Keeps a parked resumable session (`[resume] keep_in_backplane`) under `key` for at
    /// least `ttl_secs`, replacing any; `None` deletes it.
    fn store_session(
        &self,
        _key: &str,
        _json: Option<String>,
        _ttl_secs: u64,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(std::future::ready(Err(BackplaneError::NotInCluster)))
    }
    /// Reads a kept session without taking it: a taker checks that the request may take
    /// it (its token's proof) before it removes it for everyone else.
    fn read_session(&self, _key: &str) -> BoxFuture<'_, Result<Option<String>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Reads and deletes a kept session; of two concurrent takers, one gets it.
    fn take_session(&self, _key: &str) -> BoxFuture<'_, Result<Option<String>, BackplaneError>> {
        Box::pin(std::future::ready(Ok(None)))
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
) -> Result<Arc<dyn Backplane>, String> {
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

/// Serde for `Bytes` as standard base64 (`#[serde(with = "switchboard_cluster::bytes_b64")]`):
/// how payloads travel in commands and handovers.
#[allow(missing_docs)]
pub mod bytes_b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_as_json() {
        let c = Command::SendGroup {
            group: "room:1".into(),
            exclude: vec!["x".into()],
            data: Bytes::from_static(&[0, 1, 255]),
            binary: true,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"op\":\"sendGroup\""), "{text}");
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
    }
}

//! The NATS backplane: core subjects for commands, JetStream key-value buckets for the
//! registry.
//!
//! async-nats reconnects by itself (to any of `cluster.urls`) and replays our
//! subscriptions before it reports the connection back; on that report the supervisor
//! heartbeats at once and the backplane is ready again. While the client is
//! disconnected it would queue publishes and deliver them late; the backplane refuses
//! instead ([`BackplaneError::Unavailable`]), like the Redis one.
//!
//! Names (`<ns>` is the `[cluster] namespace`, `<tag>` the node tag as 8 lowercase hex
//! digits):
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `sb.<ns>.node.<tag>` | subject | commands for one node |
//! | `sb.<ns>.all` | subject | commands for every node (senders ignore their own) |
//! | `sb-<ns>-alive` | KV bucket, `max_age = node_ttl_secs`, history 1 | `<tag>` → node id, put every `heartbeat_secs` |
//! | `sb-<ns>-nodes` | KV bucket, history 1 | `<tag>` → node id: every node that has not left or been reaped |
//! | `sb-<ns>-conns` | KV bucket, history 1 | `<tag>.<connection id>` → snapshot JSON |
//! | `sb-<ns>-reap` | KV bucket, `max_age = 60 s`, history 1 | `<tag>` → the reaper's node id while it reaps `<tag>` |
//! | `sb-<ns>-sessions` | KV bucket, `max_age = 24 h`, history 1 | `<connection id>` → a parked session kept in the backplane (`[resume] keep_in_backplane`), stamped with its holder ([`crate::CopyStamp`]; writes and takes compare-and-set on the revision) |
//!
//! Heartbeats expire through the bucket's `max_age`, which every nats-server with
//! JetStream supports; per-key TTLs need nats-server 2.11 (Debian 12 ships 2.9). The
//! first node to start creates the buckets, so its `node_ttl_secs` is the one in force
//! (keep it the same on every node). Buckets use file storage with one replica: they
//! survive a restart of a single server; on a NATS cluster, create them beforehand
//! with the replication you want (`nats kv add`), and the nodes use them as they are.
//!
//! Deleting a key purges its subject from the bucket's stream instead of writing a
//! delete marker: on nats-server before 2.11 markers are never removed, and one per
//! closed connection would grow without bound.
//!
//! The parts: this file holds the names and the public face ([`NatsBackplane`]);
//! `client.rs` the connection, the subscriptions and the buckets; `engine.rs` the
//! backplane's operations on them.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Event, ServerAddr};
use switchboard_core::config::{ClusterConfig, ConfigError};
use tokio::sync::mpsc;

use crate::link::{self, Link, Node, NodeBacked, CLAIM_SECS};
use crate::{BackplaneError, ClusterEvent, Command, ConnectError};

mod client;
mod engine;

use self::client::NatsEngine;

/// Rounds of read, judge, compare-and-set on a kept session before giving up: each lost
/// round means another node changed the copy in between.
const CAS_TRIES: usize = 8;
/// How long a kept session can stay in `sb-<ns>-sessions` if nobody takes or deletes it (the
/// bucket's `max_age`; `[resume] window_secs` may not exceed it with `keep_in_backplane`).
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Messages the client buffers per subscription between its socket reader and our
/// reader task; beyond that the client drops them and reports a slow consumer. Our
/// reader only decodes and `try_send`s, so this absorbs bursts, not a stalled gateway.
const SUBSCRIPTION_CAPACITY: usize = 8192;
/// Longest pause between reconnect attempts, so recovery takes at most about this long
/// once the server is back.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Every subject and bucket of one namespace (see the [module docs](self)), built once
/// at connect.
#[derive(Debug)]
struct Names {
    /// `sb.<ns>.node.`, followed by a tag.
    node: String,
    /// `sb.<ns>.all`
    all: String,
    /// `sb-<ns>-alive`
    alive: String,
    /// `sb-<ns>-nodes`
    nodes: String,
    /// `sb-<ns>-conns`
    conns: String,
    /// `sb-<ns>-reap`
    reap: String,
    /// `sb-<ns>-sessions`
    sessions: String,
}

impl Names {
    fn new(ns: &str) -> Self {
        Self {
            node: format!("sb.{ns}.node."),
            all: format!("sb.{ns}.all"),
            alive: format!("sb-{ns}-alive"),
            nodes: format!("sb-{ns}-nodes"),
            conns: format!("sb-{ns}-conns"),
            reap: format!("sb-{ns}-reap"),
            sessions: format!("sb-{ns}-sessions"),
        }
    }

    fn node_subject(&self, tag: u32) -> String {
        format!("{}{tag:08x}", self.node)
    }

    /// Every bucket with its `max_age` (`ttl`: the heartbeat's).
    fn buckets(&self, ttl: Duration) -> [(&str, Duration); 5] {
        [
            (&self.alive, ttl),
            (&self.nodes, Duration::ZERO),
            (&self.conns, Duration::ZERO),
            (&self.reap, Duration::from_secs(CLAIM_SECS)),
            (&self.sessions, SESSION_MAX_AGE),
        ]
    }
}

/// A NATS backplane. See the [module docs](self).
#[derive(Debug)]
pub struct NatsBackplane {
    node: Node<NatsEngine>,
}

/// Refuses an empty `cluster.urls`, or one that is not a NATS server address (`nats://host:port`), as
/// `connect` does before it dials anything; the error names the key
/// (`cluster.urls[1]`). For `switchboard check-config`.
pub fn check_urls(urls: &[String]) -> Result<(), ConfigError> {
    if urls.is_empty() {
        return Err(ConfigError {
            key: "cluster.urls".into(),
            problem: "is empty".into(),
        });
    }
    for (i, url) in urls.iter().enumerate() {
        url.parse::<ServerAddr>()
            .map(drop)
            .map_err(|e| ConfigError {
                key: format!("cluster.urls[{i}]"),
                problem: format!("{url:?}: {e}"),
            })?;
    }
    Ok(())
}

impl NatsBackplane {
    /// Connects to `cfg.urls` (any servers of one NATS cluster, with JetStream),
    /// creates the buckets if they are missing, registers this node and starts its
    /// heartbeat and reaper. Fails if NATS cannot be reached within a few
    /// `op_timeout_ms`.
    ///
    /// `inbox` gets the commands other nodes send to this node. Bound it (a few thousand
    /// is plenty): commands are handed over with `try_send`, so when it is full they are
    /// dropped and counted ([`Self::dropped_commands`]) rather than stalling the reader.
    ///
    /// `events` gets [`ClusterEvent`]s. `NodeLost` waits for room (the reaper task
    /// pauses; the gateway must keep reading); `BackplaneUp`/`BackplaneDown` are dropped
    /// when it is full ([`crate::Backplane::is_ready`] still tells the state).
    pub async fn connect(
        cfg: &ClusterConfig,
        node_id: &str,
        inbox: mpsc::Sender<Command>,
        events: mpsc::Sender<ClusterEvent>,
    ) -> Result<Arc<Self>, ConnectError> {
        check_urls(&cfg.urls).map_err(|source| ConnectError::Config {
            backplane: "nats",
            source,
        })?;
        let names = Names::new(&link::namespace(cfg, "nats")?);
        let link = Arc::new(Link::new("nats", cfg, node_id, inbox, events));
        let startup = link.op_timeout * 5;
        let (engine, tasks) = tokio::time::timeout(startup, NatsEngine::open(cfg, names, &link))
            .await
            .map_err(|_| ConnectError::NoAnswer {
                backplane: "nats",
                urls: cfg.urls.clone(),
            })?
            .map_err(|e| ConnectError::Engine {
                backplane: "nats",
                urls: cfg.urls.clone(),
                source: e,
            })?;
        let node = Node::start(link, Arc::new(engine), tasks).await?;
        Ok(Arc::new(Self { node }))
    }

    /// Commands from other nodes dropped because the inbox was full.
    pub fn dropped_commands(&self) -> u64 {
        self.node.link.dropped()
    }

    /// Leaves the cluster on purpose: deletes this node's heartbeat, registry entry and
    /// snapshots (so no survivor reaps it) and stops heartbeating and receiving; calls
    /// fail with `Unavailable` afterwards. For a graceful shutdown, after the node closed
    /// its connections. If it fails (engine down), the others reap this node as lost.
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        self.node.leave().await
    }
}

impl NodeBacked for NatsBackplane {
    type Engine = NatsEngine;
    fn node(&self) -> &Node<Self::Engine> {
        &self.node
    }
}

fn on_event(link: &Link, event: Event) {
    match event {
        Event::Disconnected => link.lost("connection", &"disconnected"),
        // Subscriptions are replayed before this is reported: heartbeat now.
        Event::Connected => link.probe_now(),
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                backplane = "nats",
                subscription = sid,
                "slow consumer: the client dropped messages"
            );
        }
        other => tracing::debug!(backplane = "nats", event = %other, "nats client event"),
    }
}

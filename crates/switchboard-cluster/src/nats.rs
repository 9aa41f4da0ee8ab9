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

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures::StreamExt;
use switchboard_core::config::{ClusterConfig, ConfigError};
use tokio::sync::mpsc;

use crate::link::{
    self, tag_hex, Engine, Fault, Link, Node, NodeBacked, Target, Tasks, CLAIM_SECS,
};
use crate::{BackplaneError, ClusterEvent, Command, ConnectError, CopyGuard, CopyStamp};

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

pub(crate) struct NatsEngine {
    client: Client,
    names: Names,
    js: jetstream::Context,
    alive: Store,
    nodes: Store,
    conns: Store,
    reap: Store,
    sessions: Store,
    tag: u32,
    node_id: String,
    ttl: Duration,
}

impl NatsEngine {
    async fn open(
        cfg: &ClusterConfig,
        names: Names,
        link: &Arc<Link>,
    ) -> Result<(Self, Tasks), BoxError> {
        // `check_urls` accepted them all.
        let addrs = cfg
            .urls
            .iter()
            .map(|u| u.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let events = link.clone();
        let client = ConnectOptions::new()
            .name(format!("switchboard {}", link.node_id))
            .connection_timeout(link.op_timeout)
            .request_timeout(Some(link.op_timeout))
            .ping_interval(link.heartbeat)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .reconnect_delay_callback(|attempts| {
                (Duration::from_millis(100) * attempts as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let link = events.clone();
                async move { on_event(&link, event) }
            })
            .connect(addrs)
            .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(link.op_timeout)
            .build(client.clone());
        let ttl = Duration::from_secs(link.ttl_secs);
        let mut stores = Vec::with_capacity(5);
        for (name, max_age) in names.buckets(ttl) {
            stores.push(bucket(&js, name, max_age).await?);
        }
        // In the order of `buckets` (fields are evaluated in the order written).
        let mut stores = stores.into_iter();
        let mut next = || stores.next().expect("a store per bucket");
        let engine = Self {
            alive: next(),
            nodes: next(),
            conns: next(),
            reap: next(),
            sessions: next(),
            names,
            client,
            js,
            tag: link.tag,
            node_id: link.node_id.clone(),
            ttl,
        };

        let mut tasks = Tasks::default();
        let mine = [
            (engine.names.node_subject(link.tag), false),
            (engine.names.all.clone(), true),
        ];
        for (subject, via_all) in mine {
            let mut sub = engine
                .client
                .subscribe(subject)
                .await
                .map_err(|e| e.to_string())?;
            let link = link.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    link.deliver(&msg.payload, via_all);
                }
            }));
        }
        // The subscriptions must be at the server before connect returns, or commands
        // sent to this node right after would be lost.
        engine.client.flush().await.map_err(|e| e.to_string())?;
        Ok((engine, tasks))
    }

    /// Classifies an error by the connection: disconnected means down; otherwise the
    /// server answered (or JetStream did not), which says nothing about the link.
    fn fault(&self, e: impl std::fmt::Display) -> Fault {
        if self.client.connection_state() == State::Connected {
            Fault::Failed(e.to_string())
        } else {
            Fault::Down(e.to_string())
        }
    }

    /// A kept session's entry: its revision (a delete marker's too, so a store can replace
    /// it) and its value, if it holds one.
    async fn session_entry(&self, key: &str) -> Result<(Option<u64>, Option<String>), Fault> {
        let Some(entry) = self.sessions.entry(key).await.map_err(|e| self.fault(e))? else {
            return Ok((None, None));
        };
        let value = (entry.operation == Operation::Put)
            .then(|| String::from_utf8_lossy(&entry.value).into_owned());
        Ok((Some(entry.revision).filter(|_| value.is_some()), value))
    }

    /// After a compare-and-set on a kept session failed: `Ok` if the entry changed since
    /// `revision` (judge it again), the failure itself if it did not.
    async fn session_changed(&self, key: &str, revision: Option<u64>) -> Result<(), Fault> {
        let (now, _) = self.session_entry(key).await?;
        if now == revision {
            return Err(self.fault("a kept session's copy could not be written"));
        }
        Ok(())
    }

    async fn get(&self, store: &Store, key: &str) -> Result<Option<Bytes>, Fault> {
        store.get(key).await.map_err(|e| self.fault(e))
    }

    /// Removes every message of `subject` (a key, or keys by wildcard) from `store`.
    async fn purge(&self, store: &Store, key: &str) -> Result<(), Fault> {
        store
            .stream
            .purge()
            .filter(format!("{}{key}", store.prefix))
            .await
            .map(drop)
            .map_err(|e| self.fault(e))
    }

    /// The current value of every key of `store` matching `filter` (may hold wildcards),
    /// through an ordered consumer (the server drops it 30 s after we stop reading).
    async fn list(&self, store: &Store, filter: &str) -> Result<Vec<(String, Bytes)>, Fault> {
        let consumer = store
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("{}{filter}", store.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| self.fault(e))?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| self.fault(e))?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| self.fault(e))?;
            let left = msg.info().map_err(|e| self.fault(e))?.pending;
            let marker = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some();
            if !marker {
                if let Some(key) = msg.subject.strip_prefix(store.prefix.as_str()) {
                    out.push((key.to_owned(), msg.payload.clone()));
                }
            }
            if left == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Creates any bucket that went missing (a server that lost its JetStream store).
    async fn ensure_buckets(&self) -> Result<(), Fault> {
        for (name, max_age) in self.names.buckets(self.ttl) {
            bucket(&self.js, name, max_age)
                .await
                .map_err(|e| self.fault(e))?;
        }
        Ok(())
    }
}

/// Opens a bucket, creating it if it does not exist.
///
/// The bucket's stream is created here with the settings async-nats gives a KV bucket
/// (`create_key_value` first reads the account info, which async-nats 0.46 cannot parse
/// from nats-server before 2.10).
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<Store, BucketError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: StorageType::File,
            num_replicas: 1,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    // On error another node may have created it meanwhile (with its own settings): use that.
    js.get_key_value(name).await.map_err(|e| BucketError {
        name: name.to_owned(),
        source: match created {
            Err(c) => c.into(),
            Ok(_) => e.into(),
        },
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bucket that could not be opened or created.
#[derive(Debug, thiserror::Error)]
#[error("bucket {name}: {source}")]
struct BucketError {
    name: String,
    source: BoxError,
}

impl Engine for NatsEngine {
    const KIND: &'static str = "nats";

    async fn publish(&self, to: Target, payload: Vec<u8>) -> Result<bool, Fault> {
        let subject = match to {
            Target::Node(tag) => self.names.node_subject(tag),
            Target::All => self.names.all.clone(),
        };
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| self.fault(e))?;
        // Core NATS does not say whether anyone listened.
        Ok(true)
    }

    async fn put_snapshots(&self, items: &[(String, Arc<str>)]) -> Result<(), Fault> {
        let me = tag_hex(self.tag);
        let puts = items.iter().map(|(id, json)| {
            self.conns.put(
                format!("{me}.{id}"),
                Bytes::copy_from_slice(json.as_bytes()),
            )
        });
        futures::future::try_join_all(puts)
            .await
            .map(drop)
            .map_err(|e| self.fault(e))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), Fault> {
        let key = format!("{}.{id}", tag_hex(self.tag));
        self.purge(&self.conns, &key).await
    }

    async fn snapshot(&self, tag: u32, id: &str) -> Result<Option<String>, Fault> {
        let hex = tag_hex(tag);
        let key = format!("{hex}.{id}");
        let (alive, stored) =
            tokio::try_join!(self.get(&self.alive, &hex), self.get(&self.conns, &key))?;
        Ok(stored
            .filter(|_| alive.is_some())
            .and_then(|b| String::from_utf8(b.to_vec()).ok()))
    }

    async fn heartbeat(&self) -> Result<bool, Fault> {
        let me = tag_hex(self.tag);
        let id = Bytes::from(self.node_id.clone());
        if let Err(e) = self.alive.put(&me, id.clone()).await {
            // Connected but the put failed: the buckets may be gone; make them again.
            let fault = self.fault(e);
            if let Fault::Down(_) = fault {
                return Err(fault);
            }
            self.ensure_buckets().await?;
            self.alive
                .put(&me, id.clone())
                .await
                .map_err(|e| self.fault(e))?;
        }
        match self.nodes.create(&me, id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.fault(e)),
        }
    }

    async fn registered_nodes(&self) -> Result<Vec<(u32, String)>, Fault> {
        // Subject names only (one request; no consumer per heartbeat), then the few ids.
        let filter = format!("{}>", self.nodes.prefix);
        let mut subjects = self
            .nodes
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| self.fault(e))?;
        let mut tags = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.map_err(|e| self.fault(e))?;
            if let Some(tag) = subject
                .strip_prefix(self.nodes.prefix.as_str())
                .and_then(link::parse_tag)
            {
                tags.push(tag);
            }
        }
        let mut nodes = Vec::with_capacity(tags.len());
        for tag in tags {
            if let Some(id) = self.get(&self.nodes, &tag_hex(tag)).await? {
                nodes.push((tag, String::from_utf8_lossy(&id).into_owned()));
            }
        }
        Ok(nodes)
    }

    async fn is_alive(&self, tag: u32) -> Result<bool, Fault> {
        Ok(self.get(&self.alive, &tag_hex(tag)).await?.is_some())
    }

    async fn is_registered(&self, tag: u32) -> Result<bool, Fault> {
        Ok(self.get(&self.nodes, &tag_hex(tag)).await?.is_some())
    }

    async fn claim(&self, tag: u32) -> Result<bool, Fault> {
        let id = Bytes::from(self.node_id.clone());
        match self.reap.create(tag_hex(tag), id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.fault(e)),
        }
    }

    async fn release(&self, tag: u32) -> Result<(), Fault> {
        let hex = tag_hex(tag);
        // Only our own claim (it may have expired and been taken by another reaper).
        // Not atomic, but a claim lasts far longer than the reap it guards.
        if self.get(&self.reap, &hex).await?.as_deref() == Some(self.node_id.as_bytes()) {
            self.purge(&self.reap, &hex).await?;
        }
        Ok(())
    }

    async fn snapshots_of(&self, tag: u32) -> Result<Vec<String>, Fault> {
        let filter = format!("{}.>", tag_hex(tag));
        Ok(self
            .list(&self.conns, &filter)
            .await?
            .into_iter()
            .filter_map(|(_, json)| String::from_utf8(json.to_vec()).ok())
            .collect())
    }

    async fn forget(&self, tag: u32) -> Result<(), Fault> {
        let hex = tag_hex(tag);
        self.purge(&self.conns, &format!("{hex}.>")).await?;
        self.purge(&self.nodes, &hex).await
    }

    async fn stop_heartbeat(&self) -> Result<(), Fault> {
        self.purge(&self.alive, &tag_hex(self.tag)).await
    }

    async fn store_session(
        &self,
        key: &str,
        value: String,
        _ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, Fault> {
        // The bucket's max_age bounds how long a leaked entry lives (see SESSION_MAX_AGE).
        let value = Bytes::from(value);
        for _ in 0..CAS_TRIES {
            let (revision, current) = self.session_entry(key).await?;
            if !guard.admits(
                current
                    .as_deref()
                    .and_then(CopyStamp::decode)
                    .map(|(s, _)| s),
            ) {
                return Ok(false);
            }
            // Only if nobody changed it since we judged it: else judge again.
            let written = match revision {
                Some(rev) => self.sessions.update(key, value.clone(), rev).await.is_ok(),
                None => self.sessions.create(key, value.clone()).await.is_ok(),
            };
            if written {
                return Ok(true);
            }
            self.session_changed(key, revision).await?;
        }
        Err(self.fault("a kept session's copy kept changing under a store"))
    }

    async fn read_session(&self, key: &str) -> Result<Option<String>, Fault> {
        Ok(self.session_entry(key).await?.1)
    }

    async fn take_session(&self, key: &str, guard: CopyGuard) -> Result<Option<String>, Fault> {
        for _ in 0..CAS_TRIES {
            let (Some(revision), Some(current)) = self.session_entry(key).await? else {
                return Ok(None);
            };
            let stamp = CopyStamp::decode(&current).map(|(s, _)| s);
            if !guard.admits(stamp) {
                return Ok(None);
            }
            // Only if nobody changed or took it since we read it: one of two takers wins.
            if self
                .sessions
                .purge_expect_revision(key, Some(revision))
                .await
                .is_ok()
            {
                // The purge left a marker; remove it (markers are never removed before 2.11).
                self.purge(&self.sessions, key).await?;
                return Ok(Some(current));
            }
            self.session_changed(key, Some(revision)).await?;
        }
        Err(self.fault("a kept session's copy kept changing under a take"))
    }
}

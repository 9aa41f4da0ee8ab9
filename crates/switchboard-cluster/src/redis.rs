//! The Redis backplane: pub/sub for commands, keys for the registry.
//!
//! One URL: a single Redis, through redis-rs's connection manager over RESP3. Pub/sub
//! messages arrive as pushes on the same multiplexed connection as commands; the manager
//! reconnects by itself and replays our `SUBSCRIBE`s before the new connection serves
//! anything, so a heartbeat that succeeds after an outage means the subscriptions are
//! back too. Several URLs: a Redis Cluster (seed nodes), through `cluster_async`, with
//! sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`), which the cluster client resubscribes
//! after reconnects and slot moves. Give a cluster at least two seed URLs: one URL always
//! means a single Redis.
//!
//! Names (`<ns>` is the `[cluster] namespace`, `<tag>` the node tag as 8 lowercase hex
//! digits):
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `sb:<ns>:node:<tag>` | channel | commands for one node |
//! | `sb:<ns>:all` | channel | commands for every node (senders ignore their own) |
//! | `sb:<ns>:alive:<tag>` | string, `EX node_ttl_secs` | the node id; refreshed every `heartbeat_secs` |
//! | `sb:<ns>:nodes` | hash | `<tag>` → node id: every node that has not left or been reaped |
//! | `sb:<ns>:conns:<tag>` | hash | connection id → snapshot JSON |
//! | `sb:<ns>:reap:<tag>` | string, `NX EX 60` | the reaper's node id while it reaps `<tag>` |
//! | `sb:<ns>:session:<connection id>` | string, `EX` its window + 60 s | a parked session kept in the backplane (`[resume] keep_in_backplane`), stamped with its holder ([`crate::CopyStamp`]) |
//!
//! No command touches two keys at once, so the names need no hash tags on a cluster.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, PushKind, RedisError,
    RedisFuture, Value,
};
use switchboard_core::config::{ClusterConfig, ConfigError};
use tokio::sync::mpsc;

use crate::link::{
    self, tag_hex, Engine, Fault, Link, Node, NodeBacked, Target, Tasks, CLAIM_SECS,
};
use crate::{BackplaneError, ClusterEvent, Command, ConnectError, CopyGuard, CopyStamp};

/// Cluster mode: failed heartbeats in a row before the connection is opened anew from the
/// seeds (about 0.75 s of probing while down), then again every few probes after that.
const REOPEN_AFTER: u32 = 3;
const REOPEN_EVERY: u32 = 4;

/// Deletes the reap claim only if we still hold it (it may have expired and been taken).
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// An operation on a kept session's copy, if its guard admits the copy stored now: the
/// rule of [`CopyGuard::admits`], on the stamp in the value's first 26 bytes
/// ([`crate::CopyStamp::encode`]). KEYS[1]: the copy. ARGV: `store` or `take`; the guard,
/// `notnewer` or `owner`; the guard's owner (16 hex digits) and hops (decimal); for a
/// store, the value and its TTL in seconds. A store answers 1, or nil if refused; a take
/// answers the value, or nil.
const COPY_SCRIPT: &str = r"
local x = '[0-9a-f]'
local owner, hops = string.match(redis.call('GETRANGE', KEYS[1], 0, 25),
  '^(' .. string.rep(x, 16) .. ') (' .. string.rep(x, 8) .. ')\n$')
local ok
if owner == nil then ok = ARGV[2] == 'notnewer'
elseif ARGV[2] == 'owner' then ok = owner == ARGV[3]
else ok = owner == ARGV[3] or tonumber(hops, 16) < tonumber(ARGV[4]) end
if not ok then return false end
if ARGV[1] == 'store' then
  redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[6])
  return 1
end
return redis.call('GETDEL', KEYS[1])
";

/// The `EVAL` of [`COPY_SCRIPT`] for `op` on `key` under `guard` (then any further
/// arguments).
fn copy_script(names: &Names, op: &str, key: &str, guard: CopyGuard) -> Cmd {
    let (kind, owner, hops) = match guard {
        CopyGuard::NotNewer(s) => ("notnewer", s.owner, s.hops),
        CopyGuard::Owner(owner) => ("owner", owner, 0),
    };
    redis::cmd("EVAL")
        .arg(COPY_SCRIPT)
        .arg(1)
        .arg(names.session_key(key))
        .arg(op)
        .arg(kind)
        .arg(CopyStamp::owner_hex(owner))
        .arg(hops)
        .to_owned()
}

/// Every key and channel of one namespace (see the [module docs](self)), built once at
/// connect. The per-node names cost one `format!` each, as a key built per call must.
#[derive(Debug)]
struct Names {
    /// `sb:<ns>:`
    prefix: String,
    /// `sb:<ns>:all`
    all: String,
    /// `sb:<ns>:nodes`
    nodes: String,
}

impl Names {
    fn new(namespace: &str) -> Self {
        let prefix = format!("sb:{namespace}:");
        Self {
            all: format!("{prefix}all"),
            nodes: format!("{prefix}nodes"),
            prefix,
        }
    }
    fn node_channel(&self, tag: u32) -> String {
        format!("{}node:{tag:08x}", self.prefix)
    }
    fn alive_key(&self, tag: u32) -> String {
        format!("{}alive:{tag:08x}", self.prefix)
    }
    fn conns_key(&self, tag: u32) -> String {
        format!("{}conns:{tag:08x}", self.prefix)
    }
    fn session_key(&self, key: &str) -> String {
        format!("{}session:{key}", self.prefix)
    }
    fn reap_key(&self, tag: u32) -> String {
        format!("{}reap:{tag:08x}", self.prefix)
    }
}

/// A Redis backplane. See the [module docs](self).
#[derive(Debug)]
pub struct RedisBackplane {
    node: Node<RedisEngine>,
}

/// Refuses an empty `cluster.urls`, or one that is not a Redis URL (`redis://host:port`, `rediss://`, `redis+unix://`), as
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
        url.as_str()
            .into_connection_info()
            .map(drop)
            .map_err(|e| ConfigError {
                key: format!("cluster.urls[{i}]"),
                problem: format!("{url:?}: {e}"),
            })?;
    }
    Ok(())
}

impl RedisBackplane {
    /// Connects to `cfg.urls` (one: single Redis; several: Redis Cluster), registers
    /// this node and starts its heartbeat and reaper. Fails if Redis cannot be reached
    /// within a few `op_timeout_ms`.
    ///
    /// `inbox` gets the commands other nodes send to this node. Bound it (a few thousand
    /// is plenty): commands are handed over with `try_send`, so when it is full they are
    /// dropped and counted ([`Self::dropped_commands`]) rather than stalling the Redis
    /// reader, which also carries every other node's messages and our heartbeats.
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
            backplane: "redis",
            source,
        })?;
        let names = Names::new(&link::namespace(cfg, "redis")?);
        let link = Arc::new(Link::new("redis", cfg, node_id, inbox, events));
        let push_link = link.clone();
        let all = names.all.clone().into_bytes();
        // Runs on the connection's reader: must not block (Link::deliver only try_sends).
        let on_push = move |info: PushInfo| -> Result<(), Infallible> {
            on_push(&push_link, &all, info);
            Ok(())
        };
        let startup = link.op_timeout * 5;
        let engine = tokio::time::timeout(startup, RedisEngine::open(cfg, names, &link, on_push))
            .await
            .map_err(|_| ConnectError::NoAnswer {
                backplane: "redis",
                urls: cfg.urls.clone(),
            })?
            .map_err(|e| ConnectError::Engine {
                backplane: "redis",
                urls: cfg.urls.clone(),
                source: e.into(),
            })?;
        let node = Node::start(link, Arc::new(engine), Tasks::default()).await?;
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

    /// Whether this backplane talks to a Redis Cluster (several URLs).
    pub fn is_cluster(&self) -> bool {
        self.node.engine.cluster
    }
}

impl NodeBacked for RedisBackplane {
    type Engine = RedisEngine;
    fn node(&self) -> &Node<Self::Engine> {
        &self.node
    }
}

/// `all`: the name of the all-nodes channel.
fn on_push(link: &Link, all: &[u8], info: PushInfo) {
    match info.kind {
        PushKind::Message | PushKind::SMessage => {
            let [Value::BulkString(channel), Value::BulkString(payload)] = &info.data[..] else {
                return;
            };
            link.deliver(payload, channel.as_slice() == all);
        }
        // The socket closed: calls fail fast from now on, and the supervisor probes
        // (which also makes the connection manager reconnect if it gave up).
        PushKind::Disconnection => link.lost("connection", &"connection closed"),
        _ => {}
    }
}

/// One client for both deployments; both are cheap handles onto multiplexed connections.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub(crate) struct RedisEngine {
    /// Swapped only by [`RedisEngine::reopen`]; every call clones the handle out.
    conn: parking_lot::RwLock<Conn>,
    /// Cluster mode: the client, to open a fresh connection when the one in use is stuck.
    client: Option<redis::cluster::ClusterClient>,
    /// Heartbeats started since the last one that succeeded (a heartbeat cut off by the
    /// op timeout counts as failed: it never resets this).
    failing: AtomicU32,
    names: Names,
    cluster: bool,
    tag: u32,
    node_id: String,
    ttl_secs: u64,
}

fn fault(e: RedisError) -> Fault {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        Fault::Down(e.to_string())
    } else {
        Fault::Failed(e.to_string())
    }
}

impl RedisEngine {
    async fn open(
        cfg: &ClusterConfig,
        names: Names,
        link: &Link,
        on_push: impl redis::aio::AsyncPushSender,
    ) -> Result<Self, RedisError> {
        let timeout = link.op_timeout;
        let me = names.node_channel(link.tag);
        let (conn, cluster) = if let [url] = &cfg.urls[..] {
            let info = url.as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            // A few quick retries per reconnect; after that the supervisor's probes start
            // new reconnects, so a manager dropped during an outage does not retry forever.
            let config = ConnectionManagerConfig::new()
                .set_push_sender(on_push)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
                .set_number_of_retries(4);
            let mut manager = ConnectionManager::new_with_config(client, config).await?;
            manager
                .subscribe(&[me.as_str(), names.all.as_str()])
                .await?;
            (Conn::Single(manager), None)
        } else {
            let client = redis::cluster::ClusterClientBuilder::new(cfg.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(on_push)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            // Sharded channels live on the shard owning their slot: one call each.
            conn.ssubscribe(me.as_str()).await?;
            conn.ssubscribe(names.all.as_str()).await?;
            (Conn::Cluster(conn), Some(client))
        };
        Ok(Self {
            conn: parking_lot::RwLock::new(conn),
            cluster: cluster.is_some(),
            client: cluster,
            failing: AtomicU32::new(0),
            names,
            tag: link.tag,
            node_id: link.node_id.clone(),
            ttl_secs: link.ttl_secs,
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Fault> {
        let mut conn = self.conn.read().clone();
        cmd.query_async(&mut conn).await.map_err(fault)
    }

    /// Cluster mode: replaces a connection that has stopped healing by itself.
    ///
    /// redis-rs (1.8) is meant to reconnect to the seed nodes after a complete outage,
    /// but after every shard restarted at once we have seen it answer
    /// `ClusterConnectionNotFound`, or broken-pipe and timeout errors from connections it
    /// still believes in (redis-rs#2277), to every request for minutes. A fresh
    /// connection starts from the seeds; the heartbeat that follows subscribes again.
    /// Called by the supervisor's heartbeat only, so one at a time; bounded by the link's
    /// `op_timeout` around the heartbeat.
    async fn reopen(&self) -> Result<(), Fault> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let conn = client.get_async_connection().await.map_err(fault)?;
        tracing::info!(
            backplane = "redis",
            "opened a new Redis Cluster connection from the seed nodes"
        );
        *self.conn.write() = Conn::Cluster(conn);
        Ok(())
    }
}

impl Engine for RedisEngine {
    const KIND: &'static str = "redis";

    async fn publish(&self, to: Target, payload: Vec<u8>) -> Result<bool, Fault> {
        let channel = match to {
            Target::Node(tag) => self.names.node_channel(tag),
            Target::All => self.names.all.clone(),
        };
        let verb = if self.cluster { "SPUBLISH" } else { "PUBLISH" };
        let receivers: i64 = self
            .query(redis::cmd(verb).arg(channel).arg(payload))
            .await?;
        // Zero receivers on a node channel: no such node is subscribed.
        Ok(receivers > 0 || to == Target::All)
    }

    async fn put_snapshots(&self, items: &[(String, Arc<str>)]) -> Result<(), Fault> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.names.conns_key(self.tag));
        for (id, json) in items {
            cmd.arg(id.as_str()).arg(json.as_ref());
        }
        self.query::<()>(&cmd).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), Fault> {
        self.query::<()>(
            redis::cmd("HDEL")
                .arg(self.names.conns_key(self.tag))
                .arg(id),
        )
        .await
    }

    async fn snapshot(&self, tag: u32, id: &str) -> Result<Option<String>, Fault> {
        let alive = redis::cmd("EXISTS")
            .arg(self.names.alive_key(tag))
            .to_owned();
        let stored = redis::cmd("HGET")
            .arg(self.names.conns_key(tag))
            .arg(id)
            .to_owned();
        // Two keys, possibly on two shards: two commands, sent together.
        let (alive, stored): (bool, Option<String>) =
            tokio::try_join!(self.query(&alive), self.query(&stored))?;
        Ok(stored.filter(|_| alive))
    }

    async fn heartbeat(&self) -> Result<bool, Fault> {
        let beat = redis::cmd("SET")
            .arg(self.names.alive_key(self.tag))
            .arg(&self.node_id)
            .arg("EX")
            .arg(self.ttl_secs)
            .to_owned();
        let register = redis::cmd("HSET")
            .arg(&self.names.nodes)
            .arg(tag_hex(self.tag))
            .arg(&self.node_id)
            .to_owned();
        let failed = self.failing.fetch_add(1, Ordering::Relaxed);
        if self.cluster
            && failed >= REOPEN_AFTER
            && (failed - REOPEN_AFTER).is_multiple_of(REOPEN_EVERY)
        {
            // Still failing after a few probes, whatever the error: start again from the
            // seeds (an engine still down refuses this at once).
            self.reopen().await?;
        }
        let beaten: Result<((), i64), RedisError> = {
            let (mut c1, mut c2) = (self.conn.read().clone(), self.conn.read().clone());
            tokio::try_join!(beat.query_async(&mut c1), register.query_async(&mut c2))
        };
        let ((), added) = beaten.map_err(fault)?;
        let conn = self.conn.read().clone();
        if let Conn::Cluster(mut conn) = conn {
            // The cluster client replays sharded subscriptions only on connections it
            // re-opens, and it re-opens a shard's connection only when a request goes
            // there: after the shard holding one of our channels restarts, nothing may.
            // Subscribing again is a no-op on a live subscription and heals a lost one.
            conn.ssubscribe(self.names.node_channel(self.tag))
                .await
                .map_err(fault)?;
            conn.ssubscribe(self.names.all.as_str())
                .await
                .map_err(fault)?;
        }
        self.failing.store(0, Ordering::Relaxed);
        Ok(added > 0)
    }

    async fn registered_nodes(&self) -> Result<Vec<(u32, String)>, Fault> {
        let all: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(&self.names.nodes))
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(tag, id)| Some((link::parse_tag(&tag)?, id)))
            .collect())
    }

    async fn is_alive(&self, tag: u32) -> Result<bool, Fault> {
        self.query(redis::cmd("EXISTS").arg(self.names.alive_key(tag)))
            .await
    }

    async fn is_registered(&self, tag: u32) -> Result<bool, Fault> {
        self.query(
            redis::cmd("HEXISTS")
                .arg(&self.names.nodes)
                .arg(tag_hex(tag)),
        )
        .await
    }

    async fn claim(&self, tag: u32) -> Result<bool, Fault> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.names.reap_key(tag))
                    .arg(&self.node_id)
                    .arg("NX")
                    .arg("EX")
                    .arg(CLAIM_SECS),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, tag: u32) -> Result<(), Fault> {
        self.query::<i64>(
            redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(self.names.reap_key(tag))
                .arg(&self.node_id),
        )
        .await
        .map(drop)
    }

    async fn snapshots_of(&self, tag: u32) -> Result<Vec<String>, Fault> {
        self.query(redis::cmd("HVALS").arg(self.names.conns_key(tag)))
            .await
    }

    async fn forget(&self, tag: u32) -> Result<(), Fault> {
        self.query::<()>(redis::cmd("DEL").arg(self.names.conns_key(tag)))
            .await?;
        self.query::<()>(redis::cmd("HDEL").arg(&self.names.nodes).arg(tag_hex(tag)))
            .await
    }

    async fn stop_heartbeat(&self) -> Result<(), Fault> {
        self.query::<()>(redis::cmd("DEL").arg(self.names.alive_key(self.tag)))
            .await
    }

    async fn store_session(
        &self,
        key: &str,
        value: String,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, Fault> {
        let cmd = copy_script(&self.names, "store", key, guard)
            .arg(value)
            .arg(ttl_secs.max(1))
            .to_owned();
        Ok(self.query::<Option<i64>>(&cmd).await?.is_some())
    }

    async fn read_session(&self, key: &str) -> Result<Option<String>, Fault> {
        self.query(redis::cmd("GET").arg(self.names.session_key(key)))
            .await
    }

    async fn take_session(&self, key: &str, guard: CopyGuard) -> Result<Option<String>, Fault> {
        // GETDEL (Redis 6.2) in the script: atomic, so one of two takers gets it.
        self.query(&copy_script(&self.names, "take", key, guard))
            .await
    }
}

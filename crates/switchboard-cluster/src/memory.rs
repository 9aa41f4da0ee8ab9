//! An in-memory backplane: several nodes in one process share a [`Hub`], which plays the
//! engine (Redis or NATS) with injectable faults. For deterministic tests of everything
//! across nodes, under paused tokio time.
//!
//! Only the engine is simulated: a [`MemoryBackplane`] is the same node protocol as the
//! Redis and NATS backplanes (health flag, envelopes, inbox, mirror, reaping, leftovers;
//! `link.rs`), over a [`MemoryEngine`] that keeps in the hub what Redis keeps in keys:
//!
//! - deliveries go to one FIFO task per receiving node, each scheduled `now + delay`, so
//!   they arrive in order per receiver and at a time paused tokio time makes exact;
//! - heartbeats, reap claims and kept sessions expire by [`tokio::time::Instant`];
//! - kept sessions obey [`CopyGuard::admits`], atomically (one lock), like both engines;
//! - `publish` to a node nobody subscribes answers "nobody received it", as Redis does;
//! - every name lives under its `[cluster] namespace`, so two deployments on one hub do
//!   not see each other.
//!
//! Faults ([`Faults`], [`Hub::faults`]): a delay on every delivery; a share of deliveries
//! lost (drawn from a seeded generator, so a run is reproducible); isolated nodes (every
//! call of theirs fails as if the engine were unreachable, nothing is delivered to them,
//! their heartbeat lapses); silently dropped links from one node to another; the whole
//! engine down. [`Hub::crash`] kills a node like `kill -9`, [`Hub::engine_restart`]
//! empties the engine like a Redis restart without persistence. Dropping a
//! [`MemoryBackplane`] is a crash too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_core::config::ClusterConfig;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::link::{self, Engine, Fault, Link, Node, NodeBacked, Target, Tasks, CLAIM_SECS};
use crate::{BackplaneError, ClusterEvent, Command, ConnectError, CopyGuard, CopyStamp};

/// Faults injected into a [`Hub`]. Change them with [`Hub::faults`]; they apply from the
/// next engine call or publish on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to every delivery. Deliveries stay in order per receiver.
    pub delay: Duration,
    /// Share of deliveries dropped, 0.0 to 1.0 (what a full inbox or a lossy link does).
    /// Drawn from the hub's seeded generator: the same seed and calls lose the same ones.
    pub loss: f64,
    /// Nodes (by tag) cut off from the engine: their calls fail as unreachable, nothing is
    /// delivered to them, and so their heartbeat lapses.
    pub isolated: HashSet<u32>,
    /// Links (from tag, to tag) whose deliveries are silently lost; the sender is told
    /// they were delivered.
    pub dropped_between: HashSet<(u32, u32)>,
    /// The engine is unreachable for every node (what a stopped Redis is).
    pub down: bool,
}

/// The simulated engine that [`MemoryBackplane`]s share. Cheap to clone (one handle).
#[derive(Debug, Clone)]
pub struct Hub(Arc<Mutex<HubState>>);

#[derive(Debug)]
struct HubState {
    spaces: HashMap<String, Space>,
    faults: Faults,
    /// Draws the lost deliveries.
    rng: Rng,
    /// Engines killed by [`Hub::crash`]: their calls fail from then on.
    dead: HashSet<u64>,
}

/// What one namespace holds: the engine's keys and subscriptions.
#[derive(Debug, Default)]
struct Space {
    /// By tag. Ordered, so that loss is drawn for receivers in the same order every run.
    subscribers: BTreeMap<u32, Subscriber>,
    /// Heartbeats: tag → (node id, expiry).
    alive: HashMap<u32, (String, Instant)>,
    /// The registry: tag → node id.
    nodes: HashMap<u32, String>,
    /// Snapshots: tag → connection id → JSON.
    conns: HashMap<u32, HashMap<String, String>>,
    /// Reap claims: tag → (claimer's node id, expiry).
    reap: HashMap<u32, (String, Instant)>,
    /// Kept sessions: key → (stamped copy, expiry).
    sessions: HashMap<String, (String, Instant)>,
}

#[derive(Debug)]
struct Subscriber {
    /// The engine that subscribed (a node restarted under its id subscribes anew).
    engine: u64,
    /// Unbounded: it holds what was published to one node within one `delay` (the
    /// receiving task drains it as the deliveries fall due), which tests bound.
    tx: mpsc::UnboundedSender<Delivery>,
}

#[derive(Debug)]
struct Delivery {
    at: Instant,
    payload: Bytes,
    via_all: bool,
}

impl Space {
    fn alive(&self, tag: u32, now: Instant) -> bool {
        self.alive.get(&tag).is_some_and(|(_, until)| *until > now)
    }

    fn session(&self, key: &str, now: Instant) -> Option<&str> {
        self.sessions
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.as_str())
    }
}

/// xorshift64: small, and the same sequence for the same seed on every machine.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // xorshift must not start at 0.
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// A number in [0, 1).
    fn roll(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Engines ever made by any hub: tells a restarted node's engine from its predecessor.
static ENGINES: AtomicU64 = AtomicU64::new(1);

impl Hub {
    /// An empty hub without faults; `seed` drives the loss of deliveries.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(HubState {
            spaces: HashMap::new(),
            faults: Faults::default(),
            rng: Rng::new(seed),
            dead: HashSet::new(),
        })))
    }

    /// Connects a node to the hub: registers it (taking over a previous run's leftovers
    /// under the same `node_id`), marks it up and starts its heartbeat and reaper, like
    /// [`crate::connect`] does for a real engine (same arguments; `cfg.backplane` and
    /// `cfg.urls` are ignored). `inbox` and `events` are bounded by the caller, as there.
    pub async fn connect(
        &self,
        cfg: &ClusterConfig,
        node_id: &str,
        inbox: mpsc::Sender<Command>,
        events: mpsc::Sender<ClusterEvent>,
    ) -> Result<Arc<MemoryBackplane>, ConnectError> {
        let namespace = link::namespace(cfg, MemoryEngine::KIND)?;
        let link = Arc::new(Link::new(MemoryEngine::KIND, cfg, node_id, inbox, events));
        let id = ENGINES.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .lock()
            .spaces
            .entry(namespace.clone())
            .or_default()
            .subscribers
            .insert(link.tag, Subscriber { engine: id, tx });
        let mut tasks = Tasks::default();
        tasks.push(tokio::spawn(receive(link.clone(), rx)));
        let engine = MemoryEngine {
            hub: self.clone(),
            id,
            namespace,
            tag: link.tag,
            node_id: node_id.to_owned(),
            ttl: Duration::from_secs(link.ttl_secs),
        };
        let node = Node::start(link, Arc::new(engine), tasks).await?;
        Ok(Arc::new(MemoryBackplane { node }))
    }

    /// Changes the faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.0.lock().faults);
    }

    /// Kills the nodes with `tag` like `kill -9`: they no longer receive, and every call
    /// of theirs fails, so their heartbeats stop; what they stored stays (until a survivor
    /// reaps them). A node connected again under the same id afterwards is a new run.
    pub fn crash(&self, tag: u32) {
        let mut state = self.0.lock();
        let mut killed = Vec::new();
        for space in state.spaces.values_mut() {
            if let Some(s) = space.subscribers.remove(&tag) {
                killed.push(s.engine);
            }
        }
        state.dead.extend(killed);
    }

    /// Empties every key (what a Redis restart without persistence does). Subscriptions
    /// stay, as the real clients resubscribe by themselves; nodes find their registry
    /// entries gone at their next heartbeat and write their snapshots back.
    pub fn engine_restart(&self) {
        for space in self.0.lock().spaces.values_mut() {
            space.alive.clear();
            space.nodes.clear();
            space.conns.clear();
            space.reap.clear();
            space.sessions.clear();
        }
    }

    /// The registered nodes of `namespace` (tag, node id), sorted by tag.
    pub fn registered(&self, namespace: &str) -> Vec<(u32, String)> {
        let state = self.0.lock();
        let mut nodes: Vec<(u32, String)> = state
            .spaces
            .get(namespace)
            .map(|s| s.nodes.iter().map(|(t, id)| (*t, id.clone())).collect())
            .unwrap_or_default();
        nodes.sort();
        nodes
    }
}

/// Hands one node's deliveries to its link, in order, each when it falls due.
async fn receive(link: Arc<Link>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    while let Some(d) = rx.recv().await {
        if d.at > Instant::now() {
            tokio::time::sleep_until(d.at).await;
        }
        link.deliver(&d.payload, d.via_all);
    }
}

/// An in-memory backplane node. See the [module docs](self).
#[derive(Debug)]
pub struct MemoryBackplane {
    node: Node<MemoryEngine>,
}

impl MemoryBackplane {
    /// This node's tag (what connection ids and [`Hub::crash`] name it by).
    pub fn tag(&self) -> u32 {
        self.node.link.tag
    }

    /// Leaves the cluster on purpose, as [`crate::redis::RedisBackplane::leave`] does.
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        self.node.leave().await
    }
}

impl NodeBacked for MemoryBackplane {
    type Engine = MemoryEngine;
    fn node(&self) -> &Node<Self::Engine> {
        &self.node
    }
}

/// One node's handle on the [`Hub`].
#[derive(Debug)]
pub(crate) struct MemoryEngine {
    hub: Hub,
    /// This engine (a restarted node gets another).
    id: u64,
    namespace: String,
    tag: u32,
    node_id: String,
    ttl: Duration,
}

impl Drop for MemoryEngine {
    /// A node dropped without leaving is gone like a crashed one: its subscription goes
    /// (a publish to it finds nobody), its keys stay.
    fn drop(&mut self) {
        let mut state = self.hub.0.lock();
        if let Some(space) = state.spaces.get_mut(&self.namespace) {
            if space
                .subscribers
                .get(&self.tag)
                .is_some_and(|s| s.engine == self.id)
            {
                space.subscribers.remove(&self.tag);
            }
        }
    }
}

impl MemoryEngine {
    /// Whether this engine can reach the hub.
    fn reachable(&self, state: &HubState) -> Result<(), Fault> {
        if state.faults.down || state.faults.isolated.contains(&self.tag) {
            return Err(Fault::Down("the hub is unreachable".into()));
        }
        if state.dead.contains(&self.id) {
            return Err(Fault::Down("this node crashed".into()));
        }
        Ok(())
    }

    /// Runs `f` on this engine's namespace, unless the engine is unreachable for it.
    fn with<T>(&self, f: impl FnOnce(&mut Space, Instant) -> T) -> Result<T, Fault> {
        let mut state = self.hub.0.lock();
        self.reachable(&state)?;
        let space = state.spaces.entry(self.namespace.clone()).or_default();
        Ok(f(space, Instant::now()))
    }

    /// Whether `guard` admits the copy stored under `key` now.
    fn admits(space: &Space, key: &str, guard: CopyGuard, now: Instant) -> bool {
        let current = space
            .session(key, now)
            .and_then(CopyStamp::decode)
            .map(|(s, _)| s);
        guard.admits(current)
    }
}

impl Engine for MemoryEngine {
    const KIND: &'static str = "memory";

    async fn publish(&self, to: Target, payload: Vec<u8>) -> Result<bool, Fault> {
        let mut state = self.hub.0.lock();
        self.reachable(&state)?;
        let now = Instant::now();
        let HubState {
            spaces,
            faults,
            rng,
            ..
        } = &mut *state;
        let space = spaces.entry(self.namespace.clone()).or_default();
        let receivers: Vec<u32> = match to {
            Target::Node(tag) => vec![tag],
            Target::All => space.subscribers.keys().copied().collect(),
        };
        let payload = Bytes::from(payload);
        let mut reached = false;
        let mut gone = Vec::new();
        for tag in receivers {
            let Some(sub) = space.subscribers.get(&tag) else {
                continue;
            };
            if faults.isolated.contains(&tag) {
                continue;
            }
            reached = true;
            if faults.dropped_between.contains(&(self.tag, tag)) {
                continue;
            }
            if faults.loss > 0.0 && tag != self.tag && rng.roll() < faults.loss {
                continue;
            }
            let delivery = Delivery {
                at: now + faults.delay,
                payload: payload.clone(),
                via_all: to == Target::All,
            };
            if sub.tx.send(delivery).is_err() {
                // Its receiving task ended (the node was dropped): nobody listens there.
                gone.push(tag);
            }
        }
        for tag in gone {
            space.subscribers.remove(&tag);
        }
        Ok(reached || to == Target::All)
    }

    async fn put_snapshots(&self, items: &[(String, Arc<str>)]) -> Result<(), Fault> {
        self.with(|space, _| {
            let mine = space.conns.entry(self.tag).or_default();
            for (id, json) in items {
                mine.insert(id.clone(), json.to_string());
            }
        })
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), Fault> {
        self.with(|space, _| {
            if let Some(mine) = space.conns.get_mut(&self.tag) {
                mine.remove(id);
            }
        })
    }

    async fn snapshot(&self, tag: u32, id: &str) -> Result<Option<String>, Fault> {
        self.with(|space, now| {
            if !space.alive(tag, now) {
                return None;
            }
            space.conns.get(&tag)?.get(id).cloned()
        })
    }

    async fn heartbeat(&self) -> Result<bool, Fault> {
        self.with(|space, now| {
            space
                .alive
                .insert(self.tag, (self.node_id.clone(), now + self.ttl));
            space.nodes.insert(self.tag, self.node_id.clone()).is_none()
        })
    }

    async fn registered_nodes(&self) -> Result<Vec<(u32, String)>, Fault> {
        self.with(|space, _| {
            let mut nodes: Vec<(u32, String)> =
                space.nodes.iter().map(|(t, id)| (*t, id.clone())).collect();
            nodes.sort();
            nodes
        })
    }

    async fn is_alive(&self, tag: u32) -> Result<bool, Fault> {
        self.with(|space, now| space.alive(tag, now))
    }

    async fn is_registered(&self, tag: u32) -> Result<bool, Fault> {
        self.with(|space, _| space.nodes.contains_key(&tag))
    }

    async fn claim(&self, tag: u32) -> Result<bool, Fault> {
        self.with(|space, now| {
            if space.reap.get(&tag).is_some_and(|(_, until)| *until > now) {
                return false;
            }
            let until = now + Duration::from_secs(CLAIM_SECS);
            space.reap.insert(tag, (self.node_id.clone(), until));
            true
        })
    }

    async fn release(&self, tag: u32) -> Result<(), Fault> {
        self.with(|space, _| {
            if space
                .reap
                .get(&tag)
                .is_some_and(|(holder, _)| *holder == self.node_id)
            {
                space.reap.remove(&tag);
            }
        })
    }

    async fn snapshots_of(&self, tag: u32) -> Result<Vec<String>, Fault> {
        self.with(|space, _| {
            space
                .conns
                .get(&tag)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn forget(&self, tag: u32) -> Result<(), Fault> {
        self.with(|space, _| {
            space.conns.remove(&tag);
            space.nodes.remove(&tag);
        })
    }

    async fn stop_heartbeat(&self) -> Result<(), Fault> {
        self.with(|space, _| {
            space.alive.remove(&self.tag);
        })
    }

    async fn store_session(
        &self,
        key: &str,
        value: String,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, Fault> {
        self.with(|space, now| {
            if !Self::admits(space, key, guard, now) {
                return false;
            }
            let until = now + Duration::from_secs(ttl_secs.max(1));
            space.sessions.insert(key.to_owned(), (value, until));
            true
        })
    }

    async fn read_session(&self, key: &str) -> Result<Option<String>, Fault> {
        self.with(|space, now| space.session(key, now).map(str::to_owned))
    }

    async fn take_session(&self, key: &str, guard: CopyGuard) -> Result<Option<String>, Fault> {
        self.with(|space, now| {
            if space.session(key, now).is_none() || !Self::admits(space, key, guard, now) {
                return None;
            }
            space.sessions.remove(key).map(|(v, _)| v)
        })
    }
}

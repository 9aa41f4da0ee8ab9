//! The backplane kinds against their engines: one suite, run for each kind. Redis and
//! NATS run against real servers (a `redis-server` / `nats-server` on a free port, see
//! `support`); the in-memory hub runs the same suite under paused tokio time, plus tests
//! of its injected faults. Nodes (a, b, c) live in this process, each with its own inbox
//! and events.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchboard_cluster::memory::{Hub, MemoryBackplane};
use switchboard_cluster::redis::RedisBackplane;
use switchboard_cluster::{Backplane, BackplaneError, ClusterEvent, Command, CopyGuard, CopyStamp};
use switchboard_core::config::ClusterConfig;
use switchboard_core::id::IdGenerator;
use switchboard_core::ops::{Op, Target};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Slack on top of `op_timeout` for a call to count as failing fast.
const FAST: Duration = Duration::from_millis(400);
/// How long a command published to a live node may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(5);

/// An engine the suite runs against, and how its nodes connect to it.
trait Server: support::Engine {
    /// Connects node `id` (real engines: through [`switchboard_cluster::connect`]).
    async fn connect(
        &self,
        cfg: &ClusterConfig,
        id: &str,
        inbox: mpsc::Sender<Command>,
        events: mpsc::Sender<ClusterEvent>,
    ) -> Result<Arc<dyn Backplane>, switchboard_cluster::ConnectError> {
        switchboard_cluster::connect(cfg, id, inbox, events).await
    }
}

impl Server for support::Redis {}
impl Server for support::Nats {}
impl Server for support::RedisCluster {}

/// The in-memory hub as an engine: `stop` takes it down for every node, `start` brings
/// it back empty (like Redis without persistence).
struct Memory(Hub);

impl support::Engine for Memory {
    fn launch() -> Self {
        Self(Hub::new(1))
    }
    fn stop(&mut self) {
        self.0.faults(|f| f.down = true);
    }
    fn start(&mut self) {
        self.0.engine_restart();
        self.0.faults(|f| f.down = false);
    }
    fn config(&self) -> ClusterConfig {
        ClusterConfig {
            heartbeat_secs: 1,
            node_ttl_secs: 3,
            op_timeout_ms: 500,
            ..ClusterConfig::default()
        }
    }
}

impl Server for Memory {
    async fn connect(
        &self,
        cfg: &ClusterConfig,
        id: &str,
        inbox: mpsc::Sender<Command>,
        events: mpsc::Sender<ClusterEvent>,
    ) -> Result<Arc<dyn Backplane>, switchboard_cluster::ConnectError> {
        let bp: Arc<dyn Backplane> = self.0.connect(cfg, id, inbox, events).await?;
        Ok(bp)
    }
}

struct Member {
    id: &'static str,
    tag: u32,
    ids: IdGenerator,
    bp: Arc<dyn Backplane>,
    inbox: mpsc::Receiver<Command>,
    events: mpsc::Receiver<ClusterEvent>,
}

async fn join<S: Server>(server: &S, cfg: &ClusterConfig, id: &'static str) -> Member {
    let (itx, inbox) = mpsc::channel(1024);
    let (etx, events) = mpsc::channel(64);
    let bp = server
        .connect(cfg, id, itx, etx)
        .await
        .unwrap_or_else(|e| panic!("node {id}: {e}"));
    assert!(bp.is_ready());
    Member {
        id,
        tag: switchboard_core::id::node_tag(id),
        ids: IdGenerator::new(id),
        bp,
        inbox,
        events,
    }
}

/// A command numbered `n` (a send to user `user-n`).
fn send(n: u32) -> Command {
    Command::Op {
        op: Op::Send {
            to: Target::User {
                user: format!("user-{n}"),
            },
            data: Bytes::from(n.to_string()),
            binary: false,
        },
        req: None,
    }
}

fn broadcast(text: &str) -> Command {
    Command::Op {
        op: Op::Send {
            to: Target::All,
            data: Bytes::from(text.to_owned()),
            binary: false,
        },
        req: None,
    }
}

/// The next command within `window`; `None` if none came (or the inbox closed).
async fn next_within(rx: &mut mpsc::Receiver<Command>, window: Duration) -> Option<Command> {
    tokio::time::timeout(window, rx.recv()).await.ok().flatten()
}

/// Whether `want` arrives within `window` (skipping anything else).
async fn arrives(rx: &mut mpsc::Receiver<Command>, want: &Command, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if c == *want {
            return true;
        }
    }
    false
}

/// The next command, which must come (markers left by [`pending`] skipped).
async fn next(rx: &mut mpsc::Receiver<Command>) -> Command {
    loop {
        let c = next_within(rx, ARRIVAL).await.expect("no command arrived");
        if !is_marker(&c) {
            return c;
        }
    }
}

fn marker(n: u64) -> Command {
    Command::Forget {
        id: format!("marker-{n}"),
    }
}

fn is_marker(c: &Command) -> bool {
    matches!(c, Command::Forget { id } if id.starts_with("marker-"))
}

/// Everything `from` published that is still on its way to `to`: `from` sends a marker
/// on each of `to`'s channels (its own and the all-nodes one), and what arrives before
/// both markers is returned (other markers skipped). Each channel keeps one publisher's
/// order, so nothing `from` published before can arrive after them.
async fn pending(from: &Arc<dyn Backplane>, to: &mut Member) -> Vec<Command> {
    let n = MARKERS.fetch_add(2, Ordering::Relaxed);
    from.to_node(to.tag, marker(n)).await.unwrap();
    from.to_all(marker(n + 1)).await.unwrap();
    until_markers(to, vec![marker(n), marker(n + 1)]).await
}

/// [`pending`] for what a node published that would come back to itself: a node's own
/// all-nodes messages are dropped, so only its own channel carries the marker.
async fn pending_own(m: &mut Member) -> Vec<Command> {
    let n = MARKERS.fetch_add(1, Ordering::Relaxed);
    m.bp.to_node(m.tag, marker(n)).await.unwrap();
    until_markers(m, vec![marker(n)]).await
}

static MARKERS: AtomicU64 = AtomicU64::new(0);

async fn until_markers(to: &mut Member, mut waiting: Vec<Command>) -> Vec<Command> {
    let mut got = Vec::new();
    while !waiting.is_empty() {
        let c = next_within(&mut to.inbox, ARRIVAL)
            .await
            .expect("a marker did not arrive");
        if let Some(i) = waiting.iter().position(|m| *m == c) {
            waiting.remove(i);
        } else if !is_marker(&c) {
            got.push(c);
        }
    }
    got
}

/// The next `NodeLost` within `window`, skipping state changes.
async fn next_lost(
    events: &mut mpsc::Receiver<ClusterEvent>,
    window: Duration,
) -> Option<ClusterEvent> {
    let deadline = Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e @ ClusterEvent::NodeLost { .. })) => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Waits until `f` holds, polling; false if it did not within `window`.
async fn eventually(window: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

fn snapshot(id: &str, node: &str) -> serde_json::Value {
    json!({ "connectionId": id, "node": node, "identity": { "sourceIp": "127.0.0.1" } })
}

async fn commands_reach_their_nodes<S: Server>() {
    let server = S::launch();
    let cfg = server.config();
    let mut a = join(&server, &cfg, "a").await;
    let mut b = join(&server, &cfg, "b").await;
    let mut c = join(&server, &cfg, "c").await;

    a.bp.to_node(b.tag, send(1)).await.unwrap();
    c.bp.to_node(a.tag, send(2)).await.unwrap();
    assert_eq!(next(&mut b.inbox).await, send(1));
    assert_eq!(next(&mut a.inbox).await, send(2));
    assert_eq!(pending(&a.bp, &mut b).await, vec![]);
    assert_eq!(pending(&c.bp, &mut a).await, vec![]);
    assert_eq!(pending(&a.bp, &mut c).await, vec![]);

    a.bp.to_all(broadcast("hello")).await.unwrap();
    assert_eq!(next(&mut b.inbox).await, broadcast("hello"));
    assert_eq!(next(&mut c.inbox).await, broadcast("hello"));
    // The marker a sends itself comes after its own broadcast would have.
    assert_eq!(
        pending_own(&mut a).await,
        vec![],
        "a node hears its own to_all"
    );

    // A node nobody runs: Redis knows nobody received it; core NATS cannot tell.
    let nobody = switchboard_core::id::node_tag("nobody");
    let r = a.bp.to_node(nobody, send(3)).await;
    match a.bp.kind() {
        "redis" | "memory" => assert_eq!(r, Err(BackplaneError::NotInCluster)),
        _ => assert_eq!(r, Ok(())),
    }
    for m in [&mut b, &mut c] {
        assert_eq!(pending(&a.bp, m).await, vec![], "{}", m.id);
    }
    assert_eq!(pending(&b.bp, &mut a).await, vec![]);
}

async fn snapshots_round_trip<S: Server>() {
    let server = S::launch();
    let cfg = server.config();
    let a = join(&server, &cfg, "a").await;
    let b = join(&server, &cfg, "b").await;

    let id = a.ids.connection_id();
    let snap = snapshot(&id.to_string(), "a");
    a.bp.record_connection(id, Some(snap.clone()))
        .await
        .unwrap();
    assert_eq!(b.bp.connection(id).await.unwrap(), Some(snap.clone()));
    assert_eq!(a.bp.connection(id).await.unwrap(), Some(snap.clone()));

    let updated = json!({ "connectionId": id.to_string(), "groups": ["room"] });
    a.bp.record_connection(id, Some(updated.clone()))
        .await
        .unwrap();
    assert_eq!(b.bp.connection(id).await.unwrap(), Some(updated));

    a.bp.record_connection(id, None).await.unwrap();
    assert_eq!(b.bp.connection(id).await.unwrap(), None);
    assert_eq!(a.bp.connection(id).await.unwrap(), None);

    // Unknown id of a live node, and an id of a node that never ran.
    assert_eq!(b.bp.connection(a.ids.connection_id()).await.unwrap(), None);
    let ghost = IdGenerator::new("ghost").connection_id();
    assert_eq!(a.bp.connection(ghost).await.unwrap(), None);
}

/// Kept sessions: stamped copies, every write and take judged atomically by its guard
/// (`CopyGuard::admits`), the same rule on every engine.
async fn kept_sessions_obey_their_guards<S: Server>() {
    let server = S::launch();
    let cfg = server.config();
    let a = join(&server, &cfg, "a").await;
    let b = join(&server, &cfg, "b").await;
    let key = a.ids.connection_id().to_string();
    let (na, nb) = (0xa000_0000_0000_0001, 0xb000_0000_0000_0002);
    let at = |owner: u64, hops: u32| CopyStamp { owner, hops };
    let store = |m: &Member, stamp: CopyStamp, json: &str, guard: CopyGuard| {
        let (bp, key, json) = (m.bp.clone(), key.clone(), json.to_owned());
        async move {
            bp.store_session(&key, stamp, json, 60, guard)
                .await
                .unwrap()
        }
    };
    let read = |m: &Member| {
        let (bp, key) = (m.bp.clone(), key.clone());
        async move { bp.read_session(&key).await.unwrap() }
    };
    let take = |m: &Member, guard: CopyGuard| {
        let (bp, key) = (m.bp.clone(), key.clone());
        async move { bp.take_session(&key, guard).await.unwrap() }
    };

    // A first store (no copy yet) and refreshes by its owner; a read leaves it in place.
    assert!(store(&a, at(na, 0), "v1", CopyGuard::NotNewer(at(na, 0))).await);
    assert!(store(&a, at(na, 0), "v2", CopyGuard::Owner(na)).await);
    for _ in 0..2 {
        assert_eq!(read(&b).await, Some((at(na, 0), "v2".to_owned())));
    }
    // Nobody else's refresh, nor a survivor's take for another owner, touches it.
    assert!(!store(&b, at(nb, 0), "x", CopyGuard::Owner(nb)).await);
    assert_eq!(take(&b, CopyGuard::Owner(nb)).await, None);
    // A node the session left (fewer hops) cannot replace the copy of the node it went
    // to, nor clean it up; the newer holder replaces the older one's.
    assert!(store(&b, at(nb, 1), "b1", CopyGuard::NotNewer(at(nb, 1))).await);
    assert!(!store(&a, at(na, 0), "stale", CopyGuard::NotNewer(at(na, 0))).await);
    assert!(!store(&a, at(na, 0), "stale", CopyGuard::Owner(na)).await);
    assert_eq!(take(&a, CopyGuard::NotNewer(at(na, 0))).await, None);
    assert_eq!(read(&a).await, Some((at(nb, 1), "b1".to_owned())));
    // Its owner takes it back; then it is gone for everyone, and a refresh by the owner
    // that lost it does not bring it back.
    assert_eq!(
        take(&b, CopyGuard::NotNewer(at(nb, 1))).await,
        Some((at(nb, 1), "b1".to_owned()))
    );
    assert_eq!(read(&a).await, None);
    assert_eq!(take(&a, CopyGuard::Owner(nb)).await, None);
    assert!(!store(&b, at(nb, 1), "b2", CopyGuard::Owner(nb)).await);
    assert_eq!(read(&a).await, None);
    // Of two takers, one wins.
    for round in 0..20 {
        let v = format!("r{round}");
        assert!(store(&a, at(na, 2), &v, CopyGuard::NotNewer(at(na, 2))).await);
        let (x, y) = tokio::join!(
            take(&a, CopyGuard::Owner(na)),
            take(&b, CopyGuard::Owner(na))
        );
        let won: Vec<String> = [x, y].into_iter().flatten().map(|(_, j)| j).collect();
        assert_eq!(won, [v], "round {round}");
    }
    // A refresh and a take racing: the take gets the refreshed copy, or the refresh finds
    // it taken; never a copy left behind for a session that lives elsewhere now.
    for round in 0..20 {
        assert!(store(&a, at(na, 3), "base", CopyGuard::NotNewer(at(na, 3))).await);
        let (stored, taken) = tokio::join!(
            store(&a, at(na, 3), "refresh", CopyGuard::Owner(na)),
            take(&b, CopyGuard::Owner(na))
        );
        let taken = taken.map(|(_, j)| j);
        let left = read(&a).await.map(|(_, j)| j);
        match (stored, taken.as_deref(), left.as_deref()) {
            (true, Some("refresh"), None) | (false, Some("base"), None) => {}
            other => panic!("round {round}: {other:?}"),
        }
        let _ = take(&a, CopyGuard::Owner(na)).await;
    }
}

async fn a_lost_node_is_reaped_by_one_survivor<S: Server>() {
    let server = S::launch();
    let cfg = server.config();
    let mut a = join(&server, &cfg, "a").await;
    let mut b = join(&server, &cfg, "b").await;
    let c = join(&server, &cfg, "c").await;

    let mut expected = Vec::new();
    for _ in 0..2 {
        let id = c.ids.connection_id();
        let snap = snapshot(&id.to_string(), "c");
        c.bp.record_connection(id, Some(snap.clone()))
            .await
            .unwrap();
        expected.push(snap);
    }
    let c_conn = c.ids.connection_id();
    c.bp.record_connection(c_conn, Some(snapshot(&c_conn.to_string(), "c")))
        .await
        .unwrap();
    c.bp.record_connection(c_conn, None).await.unwrap();
    let probe = expected[0]["connectionId"].as_str().unwrap().to_owned();
    let probe = switchboard_core::ConnectionId::parse(&probe).unwrap();
    assert!(a.bp.connection(probe).await.unwrap().is_some());

    // Like kill -9: no goodbye, the heartbeat just stops.
    let c_tag = c.tag;
    drop(c);
    let killed = Instant::now();
    let bound =
        Duration::from_secs(cfg.node_ttl_secs + cfg.heartbeat_secs) + Duration::from_secs(2);

    let lost = tokio::select! {
        e = next_lost(&mut a.events, bound + Duration::from_secs(2)) => e.map(|e| ("a", e)),
        e = next_lost(&mut b.events, bound + Duration::from_secs(2)) => e.map(|e| ("b", e)),
    };
    let (reaper, event) = lost.expect("nobody reaped c");
    let took = killed.elapsed();
    assert!(took <= bound, "reaped after {took:?}, bound {bound:?}");
    let ClusterEvent::NodeLost {
        node_tag,
        node_id,
        connections,
    } = event
    else {
        unreachable!()
    };
    assert_eq!((node_tag, node_id.as_str()), (c_tag, "c"));
    let got: HashSet<String> = connections.iter().map(|v| v.to_string()).collect();
    let want: HashSet<String> = expected.iter().map(|v| v.to_string()).collect();
    assert_eq!(got, want);
    eprintln!("c reaped by {reaper} after {took:?}");

    // Nobody else reaps it, not even later.
    let quiet = Duration::from_secs(3 * cfg.heartbeat_secs);
    let (again_a, again_b) = tokio::join!(
        next_lost(&mut a.events, quiet),
        next_lost(&mut b.events, quiet)
    );
    assert_eq!(again_a, None);
    assert_eq!(again_b, None);
    assert_eq!(a.bp.connection(probe).await.unwrap(), None);
}

async fn a_restarted_node_takes_over_its_previous_run<S: Server>() {
    let server = S::launch();
    let cfg = server.config();
    let mut a = join(&server, &cfg, "a").await;
    let c = join(&server, &cfg, "c").await;
    let old = c.ids.connection_id();
    let snap = snapshot(&old.to_string(), "c");
    c.bp.record_connection(old, Some(snap.clone()))
        .await
        .unwrap();
    drop(c);

    // Back under the same id before its heartbeat expired: nobody else reaps it, and the
    // new run reports its previous run's connections to itself.
    let mut c = join(&server, &cfg, "c").await;
    let Some(ClusterEvent::NodeLost {
        node_id,
        connections,
        ..
    }) = next_lost(&mut c.events, Duration::from_secs(2)).await
    else {
        panic!("no NodeLost for the previous run")
    };
    assert_eq!((node_id.as_str(), connections), ("c", vec![snap]));
    assert_eq!(a.bp.connection(old).await.unwrap(), None);
    let quiet = Duration::from_secs(cfg.node_ttl_secs + 2 * cfg.heartbeat_secs);
    let (lost_a, lost_c) = tokio::join!(
        next_lost(&mut a.events, quiet),
        next_lost(&mut c.events, quiet)
    );
    assert_eq!((lost_a, lost_c), (None, None));
    assert!(c.bp.is_ready());
}

async fn an_outage_fails_fast_and_heals<S: Server>() {
    let mut server = S::launch();
    // An outage longer than the heartbeat TTL is a node loss, tested elsewhere; on a
    // loaded machine an engine restart (JetStream recovering its streams, a Redis
    // Cluster re-forming) can take longer than the 3 s the other tests use, and then a
    // node that came back first would rightly reap the other one.
    let cfg = ClusterConfig {
        node_ttl_secs: 120,
        ..server.config()
    };
    let op = Duration::from_millis(cfg.op_timeout_ms);
    let mut a = join(&server, &cfg, "a").await;
    let mut b = join(&server, &cfg, "b").await;
    let a_conn = a.ids.connection_id();
    a.bp.record_connection(a_conn, Some(snapshot(&a_conn.to_string(), "a")))
        .await
        .unwrap();
    a.bp.to_node(b.tag, send(0)).await.unwrap();
    assert_eq!(next(&mut b.inbox).await, send(0));

    server.stop();
    // Mid-traffic: whatever this first call meets, it returns in time.
    let t = Instant::now();
    let r = a.bp.to_node(b.tag, send(1)).await;
    assert!(t.elapsed() < op + FAST, "took {:?}: {r:?}", t.elapsed());
    assert!(
        eventually(Duration::from_secs(2), || !a.bp.is_ready()
            && !b.bp.is_ready())
        .await,
        "still ready with the engine down"
    );
    let b_conn = b.ids.connection_id();
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(
            a.bp.to_node(b.tag, send(2)).await,
            Err(BackplaneError::Unavailable)
        );
        assert_eq!(
            a.bp.to_all(broadcast("x")).await,
            Err(BackplaneError::Unavailable)
        );
        assert_eq!(
            a.bp.connection(b_conn).await,
            Err(BackplaneError::Unavailable)
        );
        // Recorded while down: fails, but is written once the engine is back.
        assert_eq!(
            b.bp.record_connection(b_conn, Some(snapshot(&b_conn.to_string(), "b")))
                .await,
            Err(BackplaneError::Unavailable)
        );
        assert!(t.elapsed() < op + FAST, "took {:?}", t.elapsed());
    }
    // Its own connections a node still knows.
    assert!(a.bp.connection(a_conn).await.unwrap().is_some());

    server.start();
    let back = Instant::now();
    assert!(
        // Generous: a Redis Cluster restart (three shards re-forming) on a loaded 2-core
        // machine has taken more than 30 s while the other engines' tests ran beside it;
        // healing by itself is what is tested, not how fast.
        eventually(Duration::from_secs(90), || a.bp.is_ready()
            && b.bp.is_ready())
        .await,
        "not ready again"
    );
    // Subscriptions are back without anyone subscribing again.
    // (A retried send whose first try got through late is skipped.)
    let mut delivered = false;
    for n in 10..160 {
        if a.bp.to_node(b.tag, send(n)).await.is_ok()
            && arrives(&mut b.inbox, &send(n), Duration::from_millis(200)).await
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no delivery after the engine came back");
    let mut delivered = false;
    for n in 0..150 {
        let back = broadcast(&format!("back {n}"));
        if b.bp.to_all(back.clone()).await.is_ok()
            && arrives(&mut a.inbox, &back, Duration::from_millis(200)).await
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no to_all delivery after the engine came back");
    // Healed subscriptions are not doubled, also after the heartbeats that heal them
    // (a Redis Cluster node subscribes again at each): let two pass, clear what is
    // still on its way, then every command arrives once.
    tokio::time::sleep(Duration::from_secs(2 * cfg.heartbeat_secs)).await;
    pending(&b.bp, &mut a).await;
    pending(&a.bp, &mut b).await;
    b.bp.to_all(broadcast("once")).await.unwrap();
    a.bp.to_node(b.tag, send(99)).await.unwrap();
    assert_eq!(pending(&b.bp, &mut a).await, vec![broadcast("once")]);
    assert_eq!(pending(&a.bp, &mut b).await, vec![send(99)]);
    eprintln!("delivering again {:?} after the restart", back.elapsed());

    // The registry is whole again: snapshots from before the outage and from during it.
    assert!(a.bp.connection(b_conn).await.unwrap().is_some());
    assert!(b.bp.connection(a_conn).await.unwrap().is_some());

    // Up, down, and up again at the end; a Redis Cluster still re-forming may refuse a
    // heartbeat after the first one succeeded, so more down/up pairs may sit in between,
    // but every change is reported once (no two in a row alike). Both nodes.
    for m in [&mut a, &mut b] {
        let mut seen = Vec::new();
        while let Ok(e) = m.events.try_recv() {
            seen.push(e);
        }
        assert!(
            seen.len() >= 3
                && seen.len() % 2 == 1
                && seen[..2] == [ClusterEvent::BackplaneUp, ClusterEvent::BackplaneDown]
                && seen.last() == Some(&ClusterEvent::BackplaneUp)
                && seen.windows(2).all(|w| w[0] != w[1]),
            "{}: {seen:?}",
            m.id
        );
    }
}

/// The kinds' own types, for what the `Backplane` trait does not cover.
trait Kind: Server {
    type Node: Backplane;
    async fn connect_node(&self, cfg: &ClusterConfig, id: &str) -> Arc<Self::Node>;
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError>;
}

async fn redis_node(cfg: &ClusterConfig, id: &str) -> Arc<RedisBackplane> {
    let (itx, _) = mpsc::channel(1);
    let (etx, _) = mpsc::channel(1);
    RedisBackplane::connect(cfg, id, itx, etx).await.unwrap()
}

impl Kind for support::Redis {
    type Node = RedisBackplane;
    async fn connect_node(&self, cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        redis_node(cfg, id).await
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

impl Kind for support::RedisCluster {
    type Node = RedisBackplane;
    async fn connect_node(&self, cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let node = redis_node(cfg, id).await;
        assert!(node.is_cluster());
        node
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

impl Kind for support::Nats {
    type Node = switchboard_cluster::nats::NatsBackplane;
    async fn connect_node(&self, cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let (itx, _) = mpsc::channel(1);
        let (etx, _) = mpsc::channel(1);
        Self::Node::connect(cfg, id, itx, etx).await.unwrap()
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

impl Kind for Memory {
    type Node = MemoryBackplane;
    async fn connect_node(&self, cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let (itx, _) = mpsc::channel(1);
        let (etx, _) = mpsc::channel(1);
        self.0.connect(cfg, id, itx, etx).await.unwrap()
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

async fn a_node_that_leaves_is_not_reaped<K: Kind>() {
    let server = K::launch();
    let cfg = server.config();
    let mut a = join(&server, &cfg, "a").await;
    let c = server.connect_node(&cfg, "c").await;
    let ids = IdGenerator::new("c");
    let id = ids.connection_id();
    c.record_connection(id, Some(snapshot(&id.to_string(), "c")))
        .await
        .unwrap();
    assert!(a.bp.connection(id).await.unwrap().is_some());
    K::leave(&c).await.unwrap();
    assert_eq!(a.bp.connection(id).await.unwrap(), None);
    // Its tasks have stopped: nothing registers it again while it is still around.
    let wait = Duration::from_secs(cfg.node_ttl_secs + 2 * cfg.heartbeat_secs);
    assert_eq!(next_lost(&mut a.events, wait).await, None);
    drop(c);
}

/// Two deployments on one engine, told apart only by `[cluster] namespace` (and with the
/// same node ids): neither hears the other's commands, reads the other's connections,
/// nor reaps the other's lost node; the nodes of one namespace do all three.
async fn namespaces_keep_deployments_apart<S: Server>() {
    let server = S::launch();
    let base = server.config();
    let space = |ns: &str| ClusterConfig {
        namespace: Some(ns.to_owned()),
        ..base.clone()
    };
    let (blue, green) = (space("blue"), space("green"));
    let mut b1 = join(&server, &blue, "n1").await;
    let mut b2 = join(&server, &blue, "n2").await;
    let b3 = join(&server, &blue, "n3").await;
    let mut g1 = join(&server, &green, "n1").await;
    let mut g2 = join(&server, &green, "n2").await;

    // Commands: to one node (the same tag in both), and to all.
    b2.bp.to_node(b1.tag, send(1)).await.unwrap();
    g2.bp.to_node(g1.tag, send(2)).await.unwrap();
    b2.bp.to_all(broadcast("blue")).await.unwrap();
    g2.bp.to_all(broadcast("green")).await.unwrap();
    let sorted = |mut v: Vec<Command>| {
        v.sort_by_key(|c| format!("{c:?}"));
        v
    };
    assert_eq!(
        sorted(pending(&b2.bp, &mut b1).await),
        sorted(vec![send(1), broadcast("blue")])
    );
    assert_eq!(
        sorted(pending(&g2.bp, &mut g1).await),
        sorted(vec![send(2), broadcast("green")])
    );
    assert_eq!(pending(&g1.bp, &mut g2).await, vec![], "green heard blue");
    assert_eq!(pending(&b1.bp, &mut b2).await, vec![], "blue heard green");

    // Connections: recorded by blue's n1, read by blue's nodes only.
    let id = b1.ids.connection_id();
    let snap = snapshot(&id.to_string(), "n1");
    b1.bp
        .record_connection(id, Some(snap.clone()))
        .await
        .unwrap();
    assert_eq!(b2.bp.connection(id).await.unwrap(), Some(snap.clone()));
    assert_eq!(g2.bp.connection(id).await.unwrap(), None);

    // Lost nodes: blue's n3 dies; a blue survivor reaps it, green never hears of it.
    let b3_conn = b3.ids.connection_id();
    let b3_snap = snapshot(&b3_conn.to_string(), "n3");
    b3.bp
        .record_connection(b3_conn, Some(b3_snap.clone()))
        .await
        .unwrap();
    drop(b3);
    let bound = Duration::from_secs(base.node_ttl_secs + base.heartbeat_secs + 4);
    let lost = tokio::select! {
        e = next_lost(&mut b1.events, bound) => e,
        e = next_lost(&mut b2.events, bound) => e,
        e = next_lost(&mut g1.events, bound) => e.map(|e| panic!("green reaped {e:?}")),
        e = next_lost(&mut g2.events, bound) => e.map(|e| panic!("green reaped {e:?}")),
    };
    let Some(ClusterEvent::NodeLost {
        node_id,
        connections,
        ..
    }) = lost
    else {
        panic!("blue did not reap n3")
    };
    assert_eq!((node_id.as_str(), connections), ("n3", vec![b3_snap]));
    let quiet = Duration::from_secs(2 * base.heartbeat_secs);
    let (g1_lost, g2_lost) = tokio::join!(
        next_lost(&mut g1.events, quiet),
        next_lost(&mut g2.events, quiet)
    );
    assert_eq!((g1_lost, g2_lost), (None, None));
    // Blue's own node is untouched by it all.
    assert_eq!(g2.bp.connection(id).await.unwrap(), None);
    assert_eq!(b2.bp.connection(id).await.unwrap(), Some(snap));
}

/// The in-memory hub's own tests: its faults, deterministic under paused time.
mod memory_faults {
    use super::*;

    async fn hub_with(hub: &Hub, ids: [&'static str; 3]) -> [Member; 3] {
        let server = Memory(hub.clone());
        let cfg = support::Engine::config(&server);
        let mut out = Vec::new();
        for id in ids {
            out.push(join(&server, &cfg, id).await);
        }
        out.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// A crashed node (its process gone, its backplane handle still around) is reaped
    /// exactly once, by one survivor, between `node_ttl - heartbeat` and
    /// `node_ttl + heartbeat` after its last heartbeat; nothing more happens later.
    #[tokio::test(start_paused = true)]
    async fn a_crashed_node_is_reaped_once_after_the_ttl() {
        let hub = Hub::new(1);
        let [mut a, mut b, c] = hub_with(&hub, ["a", "b", "c"]).await;
        let cfg = support::Engine::config(&Memory(hub.clone()));
        let (ttl, beat) = (
            Duration::from_secs(cfg.node_ttl_secs),
            Duration::from_secs(cfg.heartbeat_secs),
        );
        let id = c.ids.connection_id();
        let snap = snapshot(&id.to_string(), "c");
        c.bp.record_connection(id, Some(snap.clone()))
            .await
            .unwrap();
        hub.crash(c.tag);
        let crashed = Instant::now();
        assert_eq!(
            a.bp.to_node(c.tag, send(1)).await,
            Err(BackplaneError::NotInCluster)
        );

        let lost = tokio::select! {
            e = next_lost(&mut a.events, 10 * ttl) => e,
            e = next_lost(&mut b.events, 10 * ttl) => e,
        };
        let took = crashed.elapsed();
        assert!(
            took >= ttl - beat && took <= ttl + beat,
            "reaped after {took:?}"
        );
        let Some(ClusterEvent::NodeLost {
            node_tag,
            connections,
            ..
        }) = lost
        else {
            panic!("c was not reaped")
        };
        assert_eq!((node_tag, connections), (c.tag, vec![snap]));
        let (again_a, again_b) = tokio::join!(
            next_lost(&mut a.events, 10 * ttl),
            next_lost(&mut b.events, 10 * ttl)
        );
        assert_eq!((again_a, again_b), (None, None));
        assert_eq!(a.bp.connection(id).await, Ok(None));
        let tags: Vec<u32> = hub
            .registered("switchboard-prod")
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert!(!tags.contains(&c.tag) && tags.len() == 2, "{tags:?}");
        // The crashed run's handle can do nothing any more.
        assert_eq!(
            c.bp.to_all(broadcast("x")).await,
            Err(BackplaneError::Unavailable)
        );
    }

    /// A node cut off from the engine fails fast, hears nothing, and (once its heartbeat
    /// lapsed) is reaped as lost although it lives; healed, it comes back by itself:
    /// registered again, its connections written back, reachable.
    #[tokio::test(start_paused = true)]
    async fn an_isolated_node_is_lost_and_heals() {
        let hub = Hub::new(1);
        let [mut a, mut b, mut c] = hub_with(&hub, ["a", "b", "c"]).await;
        let id = b.ids.connection_id();
        let snap = snapshot(&id.to_string(), "b");
        b.bp.record_connection(id, Some(snap.clone()))
            .await
            .unwrap();

        hub.faults(|f| {
            f.isolated.insert(b.tag);
        });
        assert_eq!(
            b.bp.to_all(broadcast("x")).await,
            Err(BackplaneError::Unavailable)
        );
        assert!(!b.bp.is_ready());
        assert_eq!(
            a.bp.to_node(b.tag, send(1)).await,
            Err(BackplaneError::NotInCluster)
        );
        a.bp.to_all(broadcast("while cut off")).await.unwrap();
        assert_eq!(next(&mut c.inbox).await, broadcast("while cut off"));
        let lost = tokio::select! {
            e = next_lost(&mut a.events, Duration::from_secs(30)) => e,
            e = next_lost(&mut c.events, Duration::from_secs(30)) => e,
        };
        assert!(
            matches!(&lost, Some(ClusterEvent::NodeLost { node_tag, connections, .. })
                if *node_tag == b.tag && *connections == vec![snap.clone()]),
            "{lost:?}"
        );
        assert_eq!(a.bp.connection(id).await, Ok(None));

        hub.faults(|f| f.isolated.clear());
        assert!(eventually(Duration::from_secs(5), || b.bp.is_ready()).await);
        assert_eq!(a.bp.connection(id).await, Ok(Some(snap)));
        a.bp.to_node(b.tag, send(2)).await.unwrap();
        assert_eq!(
            next(&mut b.inbox).await,
            send(2),
            "nothing from the cut-off time"
        );
        let mut seen = Vec::new();
        while let Ok(e) = b.events.try_recv() {
            seen.push(e);
        }
        assert_eq!(
            seen,
            [
                ClusterEvent::BackplaneUp,
                ClusterEvent::BackplaneDown,
                ClusterEvent::BackplaneUp
            ]
        );
    }

    /// What `n` sends from a to b delivered under `loss`, by number.
    async fn delivered(seed: u64, loss: f64, n: u32) -> Vec<u32> {
        let hub = Hub::new(seed);
        let [a, mut b, _c] = hub_with(&hub, ["a", "b", "c"]).await;
        hub.faults(|f| f.loss = loss);
        for i in 0..n {
            a.bp.to_node(b.tag, send(i)).await.unwrap();
        }
        hub.faults(|f| f.loss = 0.0);
        pending(&a.bp, &mut b)
            .await
            .into_iter()
            .map(|c| match c {
                Command::Op {
                    op: Op::Send { data, .. },
                    ..
                } => std::str::from_utf8(&data).unwrap().parse().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Loss drops about its share of deliveries, the same ones for the same seed, and
    /// keeps the order of the others.
    #[tokio::test(start_paused = true)]
    async fn loss_is_reproducible_by_seed() {
        let got = delivered(7, 0.25, 2000).await;
        assert!((1350..=1650).contains(&got.len()), "{}", got.len());
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
        assert_eq!(delivered(7, 0.25, 2000).await, got);
        assert_ne!(delivered(8, 0.25, 2000).await, got);
        assert_eq!(delivered(7, 0.0, 100).await, (0..100).collect::<Vec<_>>());
    }

    /// A delay holds every delivery that long and keeps them in order; a dropped link
    /// loses one direction only, silently.
    #[tokio::test(start_paused = true)]
    async fn delays_keep_order_and_dropped_links_lose_one_way() {
        let hub = Hub::new(1);
        let [mut a, mut b, c] = hub_with(&hub, ["a", "b", "c"]).await;
        let delay = Duration::from_millis(300);
        hub.faults(|f| f.delay = delay);
        let sent = Instant::now();
        for i in 0..5 {
            a.bp.to_node(b.tag, send(i)).await.unwrap();
        }
        assert_eq!(next(&mut b.inbox).await, send(0));
        assert_eq!(sent.elapsed(), delay);
        for i in 1..5 {
            assert_eq!(next(&mut b.inbox).await, send(i));
        }

        hub.faults(|f| {
            f.delay = Duration::ZERO;
            f.dropped_between.insert((a.tag, b.tag));
        });
        a.bp.to_node(b.tag, send(10)).await.unwrap();
        a.bp.to_all(broadcast("a")).await.unwrap();
        b.bp.to_node(a.tag, send(11)).await.unwrap();
        c.bp.to_node(b.tag, send(12)).await.unwrap();
        assert_eq!(next(&mut a.inbox).await, send(11));
        assert_eq!(pending(&c.bp, &mut b).await, vec![send(12)]);
        hub.faults(|f| f.dropped_between.clear());
        assert_eq!(pending(&a.bp, &mut b).await, vec![], "lost, not held back");
    }

    /// An engine restart empties it: every node notices at its next heartbeat and writes
    /// its registry entry and connections back.
    #[tokio::test(start_paused = true)]
    async fn an_engine_restart_is_repaired_by_the_nodes() {
        let hub = Hub::new(1);
        let [a, b, _c] = hub_with(&hub, ["a", "b", "c"]).await;
        let id = a.ids.connection_id();
        let snap = snapshot(&id.to_string(), "a");
        a.bp.record_connection(id, Some(snap.clone()))
            .await
            .unwrap();
        hub.engine_restart();
        assert_eq!(b.bp.connection(id).await, Ok(None));
        assert!(hub.registered("switchboard-prod").is_empty());
        let cfg = support::Engine::config(&Memory(hub.clone()));
        tokio::time::sleep(Duration::from_secs(cfg.heartbeat_secs)).await;
        assert!(
            eventually(Duration::from_secs(cfg.heartbeat_secs), || hub
                .registered("switchboard-prod")
                .len()
                == 3)
            .await
        );
        assert_eq!(b.bp.connection(id).await, Ok(Some(snap)));
    }
}

macro_rules! suite {
    ($kind:ident, $engine:ty, #[$test:meta]) => {
        mod $kind {
            suite!(@tests $engine, #[$test], an_outage_fails_fast_and_heals,
                commands_reach_their_nodes, snapshots_round_trip, kept_sessions_obey_their_guards,
                a_lost_node_is_reaped_by_one_survivor, a_node_that_leaves_is_not_reaped,
                a_restarted_node_takes_over_its_previous_run, namespaces_keep_deployments_apart);
        }
    };
    (@tests $engine:ty, #[$test:meta], $($name:ident),*) => {
        $(
            #[$test]
            async fn $name() {
                super::$name::<$engine>().await
            }
        )*
    };
}

suite!(redis, crate::support::Redis, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);
suite!(nats, crate::support::Nats, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);
suite!(redis_cluster, crate::support::RedisCluster, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);
// The same contract, in one process under paused time.
suite!(memory, crate::Memory, #[tokio::test(start_paused = true)]);

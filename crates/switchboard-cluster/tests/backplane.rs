//! The Redis and NATS backplanes against real servers: one suite, run for each kind.
//! Three nodes (a, b, c) live in this process, each with its own inbox and events; the
//! engine is a real `redis-server` / `nats-server` on a free port (see `support`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchboard_cluster::{Backplane, BackplaneError, ClusterEvent, Command, CopyGuard, CopyStamp};
use switchboard_core::config::ClusterConfig;
use switchboard_core::id::IdGenerator;
use switchboard_core::ops::{Op, Target};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use support::Engine;

/// Slack on top of `op_timeout` for a call to count as failing fast.
const FAST: Duration = Duration::from_millis(400);

struct Member {
    id: &'static str,
    tag: u32,
    ids: IdGenerator,
    bp: Arc<dyn Backplane>,
    inbox: mpsc::Receiver<Command>,
    events: mpsc::Receiver<ClusterEvent>,
}

async fn join(cfg: &ClusterConfig, id: &'static str) -> Member {
    let (itx, inbox) = mpsc::channel(64);
    let (etx, events) = mpsc::channel(64);
    let bp = switchboard_cluster::connect(cfg, id, itx, etx)
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

/// Everything that arrives within `window`.
async fn drain(rx: &mut mpsc::Receiver<Command>, window: Duration) -> Vec<Command> {
    let mut got = Vec::new();
    let deadline = Instant::now() + window;
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        got.push(c);
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

async fn commands_reach_their_nodes<E: Engine>() {
    let server = E::launch();
    let cfg = server.config();
    let mut a = join(&cfg, "a").await;
    let mut b = join(&cfg, "b").await;
    let mut c = join(&cfg, "c").await;

    a.bp.to_node(b.tag, send(1)).await.unwrap();
    c.bp.to_node(a.tag, send(2)).await.unwrap();
    let window = Duration::from_millis(500);
    assert_eq!(drain(&mut b.inbox, window).await, vec![send(1)]);
    assert_eq!(drain(&mut a.inbox, window).await, vec![send(2)]);
    assert_eq!(drain(&mut c.inbox, window).await, vec![]);

    a.bp.to_all(broadcast("hello")).await.unwrap();
    assert_eq!(drain(&mut b.inbox, window).await, vec![broadcast("hello")]);
    assert_eq!(drain(&mut c.inbox, window).await, vec![broadcast("hello")]);
    assert_eq!(
        drain(&mut a.inbox, window).await,
        vec![],
        "a node hears its own to_all"
    );

    // A node nobody runs: Redis knows nobody received it; core NATS cannot tell.
    let nobody = switchboard_core::id::node_tag("nobody");
    let r = a.bp.to_node(nobody, send(3)).await;
    match a.bp.kind() {
        "redis" => assert_eq!(r, Err(BackplaneError::NotInCluster)),
        _ => assert_eq!(r, Ok(())),
    }
    for m in [&mut a, &mut b, &mut c] {
        assert_eq!(
            drain(&mut m.inbox, Duration::from_millis(100)).await,
            vec![],
            "{}",
            m.id
        );
    }
}

async fn snapshots_round_trip<E: Engine>() {
    let server = E::launch();
    let cfg = server.config();
    let a = join(&cfg, "a").await;
    let b = join(&cfg, "b").await;

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
async fn kept_sessions_obey_their_guards<E: Engine>() {
    let server = E::launch();
    let cfg = server.config();
    let a = join(&cfg, "a").await;
    let b = join(&cfg, "b").await;
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

async fn a_lost_node_is_reaped_by_one_survivor<E: Engine>() {
    let server = E::launch();
    let cfg = server.config();
    let mut a = join(&cfg, "a").await;
    let mut b = join(&cfg, "b").await;
    let c = join(&cfg, "c").await;

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

async fn a_restarted_node_takes_over_its_previous_run<E: Engine>() {
    let server = E::launch();
    let cfg = server.config();
    let mut a = join(&cfg, "a").await;
    let c = join(&cfg, "c").await;
    let old = c.ids.connection_id();
    let snap = snapshot(&old.to_string(), "c");
    c.bp.record_connection(old, Some(snap.clone()))
        .await
        .unwrap();
    drop(c);

    // Back under the same id before its heartbeat expired: nobody else reaps it, and the
    // new run reports its previous run's connections to itself.
    let mut c = join(&cfg, "c").await;
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

async fn an_outage_fails_fast_and_heals<E: Engine>() {
    let mut server = E::launch();
    let cfg = server.config();
    let op = Duration::from_millis(cfg.op_timeout_ms);
    let mut a = join(&cfg, "a").await;
    let mut b = join(&cfg, "b").await;
    let a_conn = a.ids.connection_id();
    a.bp.record_connection(a_conn, Some(snapshot(&a_conn.to_string(), "a")))
        .await
        .unwrap();
    a.bp.to_node(b.tag, send(0)).await.unwrap();
    assert_eq!(
        drain(&mut b.inbox, Duration::from_millis(300)).await,
        vec![send(0)]
    );

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

    tokio::time::sleep(Duration::from_secs(1)).await;
    server.start();
    let back = Instant::now();
    assert!(
        // Generous: a Redis Cluster restart (three shards re-forming) on a loaded 2-core
        // machine has taken more than 10 s; healing by itself is what is tested.
        eventually(Duration::from_secs(30), || a.bp.is_ready()
            && b.bp.is_ready())
        .await,
        "not ready again"
    );
    // Subscriptions are back without anyone subscribing again.
    let mut delivered = false;
    for n in 10..160 {
        if a.bp.to_node(b.tag, send(n)).await.is_ok()
            && drain(&mut b.inbox, Duration::from_millis(200))
                .await
                .contains(&send(n))
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no delivery after the engine came back");
    let mut delivered = false;
    for _ in 0..150 {
        if b.bp.to_all(broadcast("back")).await.is_ok()
            && drain(&mut a.inbox, Duration::from_millis(200))
                .await
                .contains(&broadcast("back"))
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no to_all delivery after the engine came back");
    // Healed subscriptions are not doubled.
    tokio::time::sleep(Duration::from_secs(2 * cfg.heartbeat_secs)).await;
    drain(&mut a.inbox, Duration::from_millis(100)).await;
    drain(&mut b.inbox, Duration::from_millis(100)).await;
    b.bp.to_all(broadcast("once")).await.unwrap();
    a.bp.to_node(b.tag, send(99)).await.unwrap();
    assert_eq!(
        drain(&mut a.inbox, Duration::from_millis(500)).await,
        vec![broadcast("once")]
    );
    assert_eq!(
        drain(&mut b.inbox, Duration::from_millis(100)).await,
        vec![send(99)]
    );
    eprintln!("delivering again {:?} after the restart", back.elapsed());

    // The registry is whole again: snapshots from before the outage and from during it.
    assert!(a.bp.connection(b_conn).await.unwrap().is_some());
    assert!(b.bp.connection(a_conn).await.unwrap().is_some());

    let mut seen = Vec::new();
    while let Ok(e) = a.events.try_recv() {
        seen.push(e);
    }
    // Up, down, and up again at the end; a Redis Cluster still re-forming may refuse a
    // heartbeat after the first one succeeded, so more down/up pairs may sit in between,
    // but every change is reported once (no two in a row alike).
    assert!(
        seen.len() >= 3
            && seen.len() % 2 == 1
            && seen[..2] == [ClusterEvent::BackplaneUp, ClusterEvent::BackplaneDown]
            && seen.last() == Some(&ClusterEvent::BackplaneUp)
            && seen.windows(2).all(|w| w[0] != w[1]),
        "{seen:?}"
    );
    assert!(timeout(Duration::from_millis(10), b.events.recv())
        .await
        .is_ok());
}

/// The kinds' own types, for what the `Backplane` trait does not cover.
trait Kind: Engine {
    type Node: Backplane;
    async fn connect(cfg: &ClusterConfig, id: &str) -> Arc<Self::Node>;
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError>;
}

impl Kind for support::Redis {
    type Node = switchboard_cluster::redis::RedisBackplane;
    async fn connect(cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let (itx, _) = mpsc::channel(1);
        let (etx, _) = mpsc::channel(1);
        Self::Node::connect(cfg, id, itx, etx).await.unwrap()
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

impl Kind for support::RedisCluster {
    type Node = switchboard_cluster::redis::RedisBackplane;
    async fn connect(cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let node = support::Redis::connect(cfg, id).await;
        assert!(node.is_cluster());
        node
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

impl Kind for support::Nats {
    type Node = switchboard_cluster::nats::NatsBackplane;
    async fn connect(cfg: &ClusterConfig, id: &str) -> Arc<Self::Node> {
        let (itx, _) = mpsc::channel(1);
        let (etx, _) = mpsc::channel(1);
        Self::Node::connect(cfg, id, itx, etx).await.unwrap()
    }
    async fn leave(node: &Self::Node) -> Result<(), BackplaneError> {
        node.leave().await
    }
}

async fn a_node_that_leaves_is_not_reaped<K: Kind>() {
    let server = K::launch();
    let cfg = server.config();
    let mut a = join(&cfg, "a").await;
    let c = K::connect(&cfg, "c").await;
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

macro_rules! suite {
    ($kind:ident, $engine:ty) => {
        mod $kind {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_outage_fails_fast_and_heals() {
                super::an_outage_fails_fast_and_heals::<$engine>().await
            }
            suite!(@common $engine);
        }
    };
    (@common $engine:ty) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commands_reach_their_nodes() {
                super::commands_reach_their_nodes::<$engine>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshots_round_trip() {
                super::snapshots_round_trip::<$engine>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kept_sessions_obey_their_guards() {
                super::kept_sessions_obey_their_guards::<$engine>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lost_node_is_reaped_by_one_survivor() {
                super::a_lost_node_is_reaped_by_one_survivor::<$engine>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_node_that_leaves_is_not_reaped() {
                super::a_node_that_leaves_is_not_reaped::<$engine>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restarted_node_takes_over_its_previous_run() {
                super::a_restarted_node_takes_over_its_previous_run::<$engine>().await
            }
    };
}

suite!(redis, crate::support::Redis);
suite!(nats, crate::support::Nats);

suite!(redis_cluster, crate::support::RedisCluster);

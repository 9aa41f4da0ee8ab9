//! The operations layer on a 3-node cluster in one process: three `Edge`s over one
//! in-memory hub (`switchboard_cluster::memory`), each node's inbox applied as the binary
//! applies it, and one WebSocket client per node over `tokio::io::duplex`. Every operation
//! is applied through every node for a connection held by every node, and must answer
//! the same and do the same to the client; then partitions and crashes, under paused
//! time so that timeouts are exact.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_cluster::memory::{Hub, MemoryBackplane};
use switchboard_cluster::{Backplane, ClusterEvent, Command};
use switchboard_core::config::{ClusterConfig, Config};
use switchboard_core::ops::{Counts, Coverage, Op, OpError, Outcome, Target};
use switchboard_core::ConnectionId;
use switchboard_edge::Edge;
use switchboard_ws::{Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const OP_TIMEOUT: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_TTL: Duration = Duration::from_secs(3);
/// How long a client must hear nothing to count as having received nothing more. Every
/// delivery in a healthy cluster takes no (paused) time, so any span would do.
const QUIET: Duration = Duration::from_millis(50);
/// Every node answers: the coverage of a complete fan-out.
const ALL: Coverage = Coverage {
    answered: 3,
    expected: 3,
};
const GROUP: &str = "room";
const USER: &str = "alice";

fn config() -> Config {
    let mut c = Config::default();
    // The test client answers no pings and sends nothing between operations.
    c.keepalive.ping_interval_secs = 0;
    c.limits.idle_timeout_secs = 30 * 24 * 3600;
    c.limits.max_connection_secs = 0;
    c.cluster = ClusterConfig {
        heartbeat_secs: HEARTBEAT.as_secs(),
        node_ttl_secs: NODE_TTL.as_secs(),
        op_timeout_ms: OP_TIMEOUT.as_millis() as u64,
        ..ClusterConfig::default()
    };
    c
}

/// A WebSocket client over an in-memory stream.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
    decoder: Decoder,
    id: ConnectionId,
}

impl Client {
    /// Opens a connection to `edge` and learns its id from the edge's table.
    async fn open(edge: &Edge) -> Client {
        let before: Vec<ConnectionId> = ids_in(edge);
        let (mut io, server) = tokio::io::duplex(64 * 1024);
        let e = edge.clone();
        let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        tokio::spawn(async move { e.serve_io(server, peer).await });
        io.write_all(
            b"GET / HTTP/1.1\r\nHost: sb\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = BytesMut::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                io.read_buf(&mut buf).await.unwrap() > 0,
                "closed in handshake"
            );
        };
        let head = buf.split_to(head_end);
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let id = ids_in(edge)
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("the new connection is in the table");
        Client {
            io,
            buf,
            decoder: Decoder::new(Role::Client, Limits::default(), None),
            id,
        }
    }

    /// The next message; panics if the server closed the stream first.
    async fn next(&mut self) -> Message {
        loop {
            if let Some(m) = self.decoder.decode(&mut self.buf).unwrap() {
                return m;
            }
            let n = self.io.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "stream closed");
        }
    }

    async fn expect_text(&mut self, text: &str) {
        match tokio::time::timeout(Duration::from_secs(5), self.next()).await {
            Ok(Message::Text(t)) => assert_eq!(t, text.as_bytes(), "client {}", self.id),
            other => panic!("client {}: {other:?} instead of {text:?}", self.id),
        }
    }

    /// Nothing arrives within [`QUIET`].
    async fn expect_nothing(&mut self) {
        if let Ok(m) = tokio::time::timeout(QUIET, self.next()).await {
            panic!("client {}: unexpected {m:?}", self.id);
        }
    }

    /// The server closes with 1000 (deleted through the API); the client answers the
    /// close and the stream ends.
    async fn expect_deleted(&mut self) {
        match tokio::time::timeout(Duration::from_secs(5), self.next()).await {
            Ok(Message::Close(Some((1000, _)))) => {}
            other => panic!("client {}: {other:?} instead of close 1000", self.id),
        }
        let mut out = BytesMut::new();
        Encoder::new(Role::Client, None).close(1000, "", &mut out);
        let _ = self.io.write_all(&out).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.read_to_end(&mut rest)).await;
    }
}

fn ids_in(edge: &Edge) -> Vec<ConnectionId> {
    edge.inner()
        .held_handles()
        .iter()
        .map(|h| h.info.id)
        .collect()
}

struct Node {
    edge: Edge,
    backplane: Arc<MemoryBackplane>,
    client: Client,
}

struct Cluster {
    hub: Hub,
    nodes: Vec<Node>,
}

/// Waits (in paused time) until `cond` holds; panics naming `what` after a minute.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let hub = Hub::new(1);
        let cfg = config();
        let mut nodes = Vec::new();
        for n in 0..3 {
            let node_id = format!("node-{n}");
            let (inbox_tx, mut inbox) = mpsc::channel::<Command>(1024);
            let (events_tx, mut events) = mpsc::channel::<ClusterEvent>(64);
            let backplane = hub
                .connect(&cfg.cluster, &node_id, inbox_tx, events_tx)
                .await
                .unwrap();
            let edge =
                Edge::new(&cfg, &node_id, &HashMap::new(), None, backplane.clone()).expect("edge");
            // As the binary does: commands from other nodes go to the edge, lost nodes'
            // connections get their `$disconnect` (none configured here).
            let inner = edge.inner().clone();
            tokio::spawn(async move {
                while let Some(cmd) = inbox.recv().await {
                    inner.apply(cmd);
                }
            });
            let inner = edge.inner().clone();
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    if let ClusterEvent::NodeLost {
                        node_id,
                        connections,
                        ..
                    } = ev
                    {
                        for snap in &connections {
                            inner.disconnect_lost(snap, &node_id).await;
                        }
                    }
                }
            });
            let client = Client::open(&edge).await;
            nodes.push(Node {
                edge,
                backplane,
                client,
            });
        }
        let c = Cluster { hub, nodes };
        // Every node knows the other two (from their greetings or its reaper), and every
        // client is in the registry.
        until("every node sees the other two", || async {
            for n in 0..3 {
                let members = c
                    .op(
                        n,
                        Op::Members {
                            group: GROUP.into(),
                            after: None,
                            limit: 1000,
                        },
                    )
                    .await;
                if !matches!(members, Ok(Outcome::Members { nodes, .. }) if nodes == ALL) {
                    return false;
                }
            }
            true
        })
        .await;
        for n in 0..3 {
            c.registered(c.nodes[n].client.id).await;
        }
        c
    }

    fn tag(&self, n: usize) -> u32 {
        self.nodes[n].backplane.tag()
    }

    async fn op(&self, entry: usize, op: Op) -> Result<Outcome, OpError> {
        self.nodes[entry].edge.inner().apply_op(op).await
    }

    /// Applies `op` through `entry`, asserting it took no time: a healthy cluster answers
    /// at once, never after a timeout.
    async fn op_now(&self, entry: usize, op: Op) -> Result<Outcome, OpError> {
        let started = Instant::now();
        let what = format!("{op:?} via node {entry}");
        let out = self.op(entry, op).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "{what}");
        out
    }

    /// Waits until every node's registry read finds `id`.
    async fn registered(&self, id: ConnectionId) {
        until("the connection is in the registry", || async {
            for n in &self.nodes {
                if !matches!(n.backplane.connection(id).await, Ok(Some(_))) {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Waits until node `holder` dropped `id` and no registry read finds it.
    async fn forgotten(&self, holder: usize, id: ConnectionId) {
        until(
            "the connection is gone from its node and the registry",
            || async {
                if ids_in(&self.nodes[holder].edge).contains(&id) {
                    return false;
                }
                for n in &self.nodes {
                    if !matches!(n.backplane.connection(id).await, Ok(None)) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Opens a new client on node `n` (its previous one was closed).
    async fn reconnect(&mut self, n: usize) {
        let old = self.nodes[n].client.id;
        self.forgotten(n, old).await;
        self.nodes[n].client = Client::open(&self.nodes[n].edge).await;
        self.registered(self.nodes[n].client.id).await;
    }

    async fn expect_quiet(&mut self) {
        for n in &mut self.nodes {
            n.client.expect_nothing().await;
        }
    }
}

fn send(to: Target, text: &str) -> Op {
    Op::Send {
        to,
        data: Bytes::from(text.to_owned()),
        binary: false,
    }
}

fn group() -> Target {
    Target::Group {
        group: GROUP.into(),
        exclude: vec![],
    }
}

fn user() -> Target {
    Target::User { user: USER.into() }
}

fn sent(n: u64, nodes: Coverage) -> Result<Outcome, OpError> {
    Ok(Outcome::Sent {
        counts: Counts {
            recipients: n,
            delivered: n,
            dropped: 0,
        },
        nodes,
    })
}

/// Every operation on the connection held by `holder`, applied through `entry`.
async fn every_operation(c: &mut Cluster, entry: usize, holder: usize) {
    let id = c.nodes[holder].client.id;
    let at = format!("via node {entry}, held by node {holder}");
    let text = format!("to {holder} via {entry}");

    // Send by id.
    let to_id = Target::Connection { id };
    let got = c.op_now(entry, send(to_id.clone(), &text)).await;
    assert_eq!(got, Ok(Outcome::Accepted), "{at}");
    c.nodes[holder].client.expect_text(&text).await;

    // Join, twice; the group lists it from every node's view.
    let join = Op::Join {
        id,
        group: GROUP.into(),
    };
    let got = c.op_now(entry, join.clone()).await;
    assert_eq!(got, Ok(Outcome::Joined { added: true }), "{at}");
    let got = c.op_now(entry, join.clone()).await;
    assert_eq!(got, Ok(Outcome::Joined { added: false }), "{at}");
    let members = Op::Members {
        group: GROUP.into(),
        after: None,
        limit: 1000,
    };
    let got = c.op_now(entry, members.clone()).await;
    let want = Ok(Outcome::Members {
        ids: vec![id],
        size: 1,
        nodes: ALL,
    });
    assert_eq!(got, want, "{at}");

    // Group sends, with and without the member excluded.
    let got = c.op_now(entry, send(group(), &text)).await;
    assert_eq!(got, sent(1, ALL), "{at}");
    c.nodes[holder].client.expect_text(&text).await;
    let but_it = Target::Group {
        group: GROUP.into(),
        exclude: vec![id],
    };
    let got = c.op_now(entry, send(but_it, &text)).await;
    assert_eq!(got, sent(0, ALL), "{at}");

    // State and user.
    let value = format!("v{entry}");
    let set_state = Op::SetState {
        id,
        changes: vec![("k".into(), Some(value.clone()))],
    };
    let got = c.op_now(entry, set_state).await;
    let want = Ok(Outcome::State {
        state: vec![("k".into(), value.clone())],
    });
    assert_eq!(got, want, "{at}");
    let set_user = Op::SetUser {
        id,
        user: Some(USER.into()),
    };
    let got = c.op_now(entry, set_user).await;
    assert_eq!(
        got,
        Ok(Outcome::User {
            user: Some(USER.into())
        }),
        "{at}"
    );

    // Get answers what the holder itself answers.
    let got = c.op_now(entry, Op::Get { id }).await;
    let local = c.op_now(holder, Op::Get { id }).await;
    assert_eq!(got, local, "{at}");
    let Ok(Outcome::Connection { view }) = got else {
        panic!("{at}: {got:?}")
    };
    assert_eq!(view.id, id);
    assert_eq!(view.user_id.as_deref(), Some(USER));
    assert_eq!(view.groups, vec![GROUP.to_owned()]);
    assert_eq!(view.state, vec![("k".to_owned(), value)]);

    // User sends, then the user cleared.
    let got = c.op_now(entry, send(user(), &text)).await;
    assert_eq!(got, sent(1, ALL), "{at}");
    c.nodes[holder].client.expect_text(&text).await;
    let clear_user = Op::SetUser { id, user: None };
    let got = c.op_now(entry, clear_user).await;
    assert_eq!(got, Ok(Outcome::User { user: None }), "{at}");
    let got = c.op_now(entry, send(user(), &text)).await;
    assert_eq!(got, sent(0, ALL), "{at}");

    // State key removed.
    let unset = Op::SetState {
        id,
        changes: vec![("k".into(), None)],
    };
    let got = c.op_now(entry, unset).await;
    assert_eq!(got, Ok(Outcome::State { state: vec![] }), "{at}");

    // Leave, twice; the group is empty everywhere.
    let leave = Op::Leave {
        id,
        group: GROUP.into(),
    };
    let got = c.op_now(entry, leave.clone()).await;
    assert_eq!(got, Ok(Outcome::Left { removed: true }), "{at}");
    let got = c.op_now(entry, leave).await;
    assert_eq!(got, Ok(Outcome::Left { removed: false }), "{at}");
    let got = c.op_now(entry, members.clone()).await;
    let want = Ok(Outcome::Members {
        ids: vec![],
        size: 0,
        nodes: ALL,
    });
    assert_eq!(got, want, "{at}");

    // A broadcast reaches every node's client.
    let got = c.op_now(entry, send(Target::All, &text)).await;
    assert_eq!(got, sent(3, ALL), "{at}");
    for n in &mut c.nodes {
        n.client.expect_text(&text).await;
    }
    c.expect_quiet().await;

    // Closes: by group, by user, by id; each closes this client with 1000 only.
    let got = c.op_now(entry, join).await;
    assert_eq!(got, Ok(Outcome::Joined { added: true }), "{at}");
    let got = c.op_now(entry, Op::close(group())).await;
    let want = Ok(Outcome::Closed {
        closed: 1,
        nodes: ALL,
    });
    assert_eq!(got, want, "{at}");
    c.nodes[holder].client.expect_deleted().await;
    c.reconnect(holder).await;

    let id = c.nodes[holder].client.id;
    let set_user = Op::SetUser {
        id,
        user: Some(USER.into()),
    };
    c.op_now(entry, set_user).await.unwrap();
    let count = Op::UserConnections {
        user: USER.into(),
        oldest: 5,
        rank_of: None,
    };
    match c.op_now(entry, count).await {
        Ok(Outcome::UserConnections {
            count: 1,
            older: 0,
            oldest,
            nodes,
        }) => {
            assert_eq!(nodes, ALL, "{at}");
            assert_eq!(
                oldest.iter().map(|o| o.id).collect::<Vec<_>>(),
                [id],
                "{at}"
            );
        }
        other => panic!("{at}: {other:?}"),
    }
    let got = c.op_now(entry, Op::close(user())).await;
    assert_eq!(got, want, "{at}");
    c.nodes[holder].client.expect_deleted().await;
    c.reconnect(holder).await;

    let id = c.nodes[holder].client.id;
    let to_id = Target::Connection { id };
    let got = c.op_now(entry, Op::close(to_id.clone())).await;
    assert_eq!(got, Ok(Outcome::Accepted), "{at}");
    c.nodes[holder].client.expect_deleted().await;
    c.reconnect(holder).await;
    c.expect_quiet().await;

    // The closed connection is gone for every operation, from every node, once the
    // remote-connection cache (which accepts sends for a second) has expired.
    tokio::time::sleep(switchboard_edge::ops::REMOTE_CACHE_TTL).await;
    let closed = [
        send(to_id.clone(), &text),
        Op::close(to_id),
        Op::Join {
            id,
            group: GROUP.into(),
        },
        Op::Leave {
            id,
            group: GROUP.into(),
        },
        Op::SetState {
            id,
            changes: vec![],
        },
        Op::SetUser { id, user: None },
        Op::Get { id },
    ];
    for op in closed {
        let what = format!("{op:?} {at}");
        assert_eq!(c.op_now(entry, op).await, Err(OpError::Gone), "{what}");
    }
    c.expect_quiet().await;
}

/// Every operation × every entry node × every holder: the same answer and the same
/// effect on the client, at once, with every node counted.
#[tokio::test(start_paused = true)]
async fn every_operation_answers_the_same_through_every_node() {
    let mut c = Cluster::start().await;
    for holder in 0..3 {
        for entry in 0..3 {
            every_operation(&mut c, entry, holder).await;
        }
    }
    // Closing everyone, through each node in turn.
    for entry in 0..3 {
        let got = c.op_now(entry, Op::close(Target::All)).await;
        let want = Ok(Outcome::Closed {
            closed: 3,
            nodes: ALL,
        });
        assert_eq!(got, want, "via node {entry}");
        for n in 0..3 {
            c.nodes[n].client.expect_deleted().await;
        }
        for n in 0..3 {
            c.reconnect(n).await;
        }
    }
}

fn nodes(answered: u32, expected: u32) -> Coverage {
    Coverage { answered, expected }
}

/// Applies `op` through `entry` and returns its answer and how long it took.
async fn timed(c: &Cluster, entry: usize, op: Op) -> (Result<Outcome, OpError>, Duration) {
    let started = Instant::now();
    let out = c.op(entry, op).await;
    (out, started.elapsed())
}

/// Puts node `n`'s client in the group, through its own node.
async fn join_group(c: &Cluster, n: usize) {
    let id = c.nodes[n].client.id;
    let join = Op::Join {
        id,
        group: GROUP.into(),
    };
    assert_eq!(c.op_now(n, join).await, Ok(Outcome::Joined { added: true }));
}

/// A peer that gets nothing from the asking node (or whose answers are lost) leaves a
/// fan-out incomplete: answered at exactly `op_timeout`, counting the nodes that
/// answered. A node that reaches everyone answers complete at once.
#[tokio::test(start_paused = true)]
async fn a_partitioned_peer_leaves_fan_outs_incomplete_at_exactly_op_timeout() {
    let mut c = Cluster::start().await;
    join_group(&c, 1).await;
    join_group(&c, 2).await;
    let (id1, tag0, tag2) = (c.nodes[1].client.id, c.tag(0), c.tag(2));

    // Node 0's commands to node 2 are lost.
    c.hub.faults(|f| {
        f.dropped_between.insert((tag0, tag2));
    });
    let (got, took) = timed(&c, 0, send(group(), "partial")).await;
    assert_eq!(took, OP_TIMEOUT);
    assert_eq!(got, sent(1, nodes(2, 3)));
    c.nodes[1].client.expect_text("partial").await;
    c.nodes[2].client.expect_nothing().await;
    let (got, took) = timed(
        &c,
        0,
        Op::Members {
            group: GROUP.into(),
            after: None,
            limit: 1000,
        },
    )
    .await;
    assert_eq!(took, OP_TIMEOUT);
    let want = Ok(Outcome::Members {
        ids: vec![id1],
        size: 1,
        nodes: nodes(2, 3),
    });
    assert_eq!(got, want);
    let (got, took) = timed(&c, 0, Op::close(user())).await;
    assert_eq!(took, OP_TIMEOUT);
    let want = Ok(Outcome::Closed {
        closed: 0,
        nodes: nodes(2, 3),
    });
    assert_eq!(got, want);
    // Through node 1, which reaches everyone: complete, at once.
    assert_eq!(c.op_now(1, send(group(), "full")).await, sent(2, ALL));
    c.nodes[1].client.expect_text("full").await;
    c.nodes[2].client.expect_text("full").await;

    // Node 2's answers to node 0 are lost: its part is applied (its client gets the
    // message) but not counted, and the answer says so.
    c.hub.faults(|f| {
        f.dropped_between.clear();
        f.dropped_between.insert((tag2, tag0));
    });
    let (got, took) = timed(&c, 0, send(group(), "unanswered")).await;
    assert_eq!(took, OP_TIMEOUT);
    assert_eq!(got, sent(1, nodes(2, 3)));
    let Ok(Outcome::Sent { nodes, .. }) = got else {
        unreachable!()
    };
    assert!(!nodes.complete());
    c.nodes[1].client.expect_text("unanswered").await;
    c.nodes[2].client.expect_text("unanswered").await;

    c.hub.faults(|f| f.dropped_between.clear());
    assert_eq!(c.op_now(0, send(group(), "healed")).await, sent(2, ALL));
    c.nodes[1].client.expect_text("healed").await;
    c.nodes[2].client.expect_text("healed").await;
    c.expect_quiet().await;
}

/// An operation on one connection whose node does not answer: 503 (`Timeout`) at
/// exactly `op_timeout`, whether the request or the answer was lost (then it was
/// applied: the answer is all that is missing).
#[tokio::test(start_paused = true)]
async fn an_unanswered_ask_times_out_at_exactly_op_timeout() {
    let c = Cluster::start().await;
    let (id2, tag0, tag2) = (c.nodes[2].client.id, c.tag(0), c.tag(2));
    let join = Op::Join {
        id: id2,
        group: GROUP.into(),
    };
    c.hub.faults(|f| {
        f.dropped_between.insert((tag0, tag2));
    });
    let (got, took) = timed(&c, 0, join.clone()).await;
    assert_eq!((got, took), (Err(OpError::Timeout), OP_TIMEOUT));
    assert_eq!(OpError::Timeout.status(), 503);
    let members = Op::Members {
        group: GROUP.into(),
        after: None,
        limit: 1000,
    };
    let none = Ok(Outcome::Members {
        ids: vec![],
        size: 0,
        nodes: ALL,
    });
    assert_eq!(c.op_now(1, members.clone()).await, none, "not applied");

    c.hub.faults(|f| {
        f.dropped_between.clear();
        f.dropped_between.insert((tag2, tag0));
    });
    let (got, took) = timed(&c, 0, join.clone()).await;
    assert_eq!((got, took), (Err(OpError::Timeout), OP_TIMEOUT));
    let one = Ok(Outcome::Members {
        ids: vec![id2],
        size: 1,
        nodes: ALL,
    });
    assert_eq!(c.op_now(1, members).await, one, "applied, answer lost");
    c.hub.faults(|f| f.dropped_between.clear());
    assert_eq!(
        c.op_now(0, join).await,
        Ok(Outcome::Joined { added: false })
    );
}

/// A crashed holder: operations on its connection answer 503 while the registry still
/// lists it (its heartbeat has not lapsed), 410 once a survivor reaped it; fan-outs wait
/// `op_timeout` for it until then, and are complete over the survivors after.
#[tokio::test(start_paused = true)]
async fn a_crashed_holder_answers_unavailable_then_gone() {
    let mut c = Cluster::start().await;
    join_group(&c, 1).await;
    join_group(&c, 2).await;
    let id2 = c.nodes[2].client.id;
    c.hub.crash(c.tag(2));
    let crashed = Instant::now();
    let asks = || {
        [
            Op::Join {
                id: id2,
                group: "other".into(),
            },
            Op::Leave {
                id: id2,
                group: GROUP.into(),
            },
            Op::SetState {
                id: id2,
                changes: vec![],
            },
            Op::SetUser {
                id: id2,
                user: None,
            },
            Op::Get { id: id2 },
        ]
    };
    for entry in [0, 1] {
        for op in asks() {
            let what = format!("{op:?} via node {entry}");
            let (got, took) = timed(&c, entry, op).await;
            assert_eq!(got, Err(OpError::Timeout), "{what}");
            assert!(took <= OP_TIMEOUT, "{what}: {took:?}");
        }
    }
    let (got, took) = timed(&c, 0, send(group(), "without 2")).await;
    assert_eq!((got, took), (sent(1, nodes(2, 3)), OP_TIMEOUT));
    c.nodes[1].client.expect_text("without 2").await;

    // Once reaped, node 2 is neither waited for nor asked.
    until("node 2 is reaped", || async {
        let got = c
            .op(
                0,
                Op::Members {
                    group: GROUP.into(),
                    after: None,
                    limit: 1000,
                },
            )
            .await;
        matches!(got, Ok(Outcome::Members { nodes: n, .. }) if n == nodes(2, 2))
    })
    .await;
    let took = crashed.elapsed();
    assert!(took >= NODE_TTL - HEARTBEAT, "reaped after {took:?}");
    assert!(
        took <= NODE_TTL + 2 * HEARTBEAT + 2 * OP_TIMEOUT,
        "reaped after {took:?}"
    );
    for entry in [0, 1] {
        for op in asks() {
            let what = format!("{op:?} via node {entry}");
            assert_eq!(c.op_now(entry, op).await, Err(OpError::Gone), "{what}");
        }
        let got = c
            .op_now(entry, send(Target::Connection { id: id2 }, "x"))
            .await;
        assert_eq!(got, Err(OpError::Gone));
        assert_eq!(
            c.op_now(entry, send(group(), "after")).await,
            sent(1, nodes(2, 2))
        );
        c.nodes[1].client.expect_text("after").await;
    }
    c.nodes[0].client.expect_nothing().await;
    c.nodes[1].client.expect_nothing().await;
}

/// A node cut off from the engine: its own cross-node operations answer 503 once it
/// noticed; the others answer 503 for its connections and wait `op_timeout` for it in
/// fan-outs until it is reaped, then leave it out. Healed, it is counted and asked again.
#[tokio::test(start_paused = true)]
async fn an_isolated_node_is_left_out_until_it_heals() {
    let mut c = Cluster::start().await;
    join_group(&c, 1).await;
    join_group(&c, 2).await;
    let (id1, id2) = (c.nodes[1].client.id, c.nodes[2].client.id);
    let tag2 = c.tag(2);
    c.hub.faults(|f| {
        f.isolated.insert(tag2);
    });
    let members = || Op::Members {
        group: GROUP.into(),
        after: None,
        limit: 1000,
    };
    let (got, took) = timed(&c, 0, members()).await;
    let want = Ok(Outcome::Members {
        ids: vec![id1],
        size: 1,
        nodes: nodes(2, 3),
    });
    assert_eq!((got, took), (want, OP_TIMEOUT));
    assert_eq!(
        c.op_now(0, Op::Get { id: id2 }).await,
        Err(OpError::Timeout)
    );
    until("node 2 notices it is cut off", || async {
        c.op(2, members()).await == Err(OpError::Unavailable)
    })
    .await;
    assert_eq!(
        c.op_now(2, Op::Get { id: id1 }).await,
        Err(OpError::Unavailable)
    );
    // A group send through the cut-off node is refused before it delivers anything, so
    // a caller that retries later sends nobody the message twice.
    let send = Op::Send {
        to: Target::Group {
            group: GROUP.into(),
            exclude: vec![],
        },
        data: Bytes::from_static(b"while cut off"),
        binary: false,
    };
    assert_eq!(c.op_now(2, send).await, Err(OpError::Unavailable));
    c.nodes[2].client.expect_nothing().await;

    until("node 2 is reaped", || async {
        let got = c.op(0, members()).await;
        matches!(got, Ok(Outcome::Members { nodes: n, .. }) if n == nodes(2, 2))
    })
    .await;
    assert_eq!(c.op_now(0, Op::Get { id: id2 }).await, Err(OpError::Gone));

    // Healed, it is back in every node's count as soon as its link is: it answers the
    // next gather (an answer from a node outside the view counts), and it says hello
    // when it comes back; nobody waits for a reaper round.
    c.hub.faults(|f| f.isolated.clear());
    let healed = Instant::now();
    // (Asked through the other nodes only: a gather through node 2 would itself tell
    // them node 2 is alive.)
    until("node 2 is back everywhere", || async {
        for entry in 0..2 {
            let got = c.op(entry, members()).await;
            if !matches!(got, Ok(Outcome::Members { nodes: n, .. }) if n == ALL) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(healed.elapsed() < HEARTBEAT / 2, "{:?}", healed.elapsed());
    let want = Ok(Outcome::Members {
        ids: {
            let mut ids = vec![id1, id2];
            ids.sort();
            ids
        },
        size: 2,
        nodes: ALL,
    });
    for entry in 0..3 {
        assert_eq!(c.op_now(entry, members()).await, want, "via node {entry}");
        let got = c.op_now(entry, Op::Get { id: id2 }).await;
        assert!(matches!(got, Ok(Outcome::Connection { .. })), "{got:?}");
    }
}

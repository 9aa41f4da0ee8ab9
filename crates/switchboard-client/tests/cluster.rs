//! The client against three real gateway processes sharing a real Redis, behind a proxy
//! that sends every new connection to the next node: each resume lands on a different
//! node, and the session moves there through the backplane (docs/protocol.md, "Resuming
//! on another node").

#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod cluster_support;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_support::{Engine, Nats, Redis};
use support::gateway::Gateway;
use support::http::{HttpClient, RecordingFunction};
use support::proxy::ChaosProxy;
use support::*;
use switchboard_client::{Client, Event};
use tokio::time::Instant;

/// Three nodes over `engine`, each with `[resume]` on and `$default` going to `function`.
async fn cluster(engine: &impl Engine, function: &RecordingFunction) -> Vec<Gateway> {
    cluster_with(engine, function, "window_secs = 60").await
}

/// The same, with `resume` added to the `[resume]` section (which must set
/// `window_secs`).
async fn cluster_with(
    engine: &impl Engine,
    function: &RecordingFunction,
    resume: &str,
) -> Vec<Gateway> {
    let c = engine.config();
    let backplane = format!("{:?}", c.backplane).to_lowercase();
    let url = &c.urls[0];
    let nodes: Vec<Gateway> = (1..=3)
        .map(|i| {
            Gateway::start(&format!(
                r#"
[server]
node_id = "node-{i}"
[cluster]
backplane = "{backplane}"
urls = ["{url}"]
heartbeat_secs = 1
node_ttl_secs = 3
op_timeout_ms = 1000
[resume]
enabled = true
buffer_messages = 16384
buffer_bytes = 16777216
{resume}
[management]
auth = "none"
[functions.rec]
kind = "http"
url = "{}"
[routes."$default"]
function = "rec"
[routes."$disconnect"]
function = "rec"
"#,
                function.url()
            ))
        })
        .collect();
    for gw in &nodes {
        assert!(
            gw.speaks_v1().await,
            "{} does not speak switchboard.v1",
            gw.ws
        );
        let mut http = HttpClient::new(gw.mgmt);
        let deadline = Instant::now() + Duration::from_secs(10);
        while http.request("GET", "/readyz", b"").await.0 != 200 {
            assert!(Instant::now() < deadline, "{} never became ready", gw.mgmt);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes
}

/// 10,000 numbered messages each way while the proxy cuts the connection every
/// 100–400 ms and every reconnect lands on the next node. Server→client through the
/// management API of one fixed node (so each send travels one path: to the connection's
/// home node, then on to wherever the session is); client→server through a route to an
/// HTTP function. Every number arrives exactly once, in order, on one connection id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_across_three_nodes_over_redis() {
    chaos_across_three_nodes::<Redis>("window_secs = 60").await;
}

/// The same over Redis with every parked session also kept in the backplane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_across_three_nodes_keeping_sessions_in_redis() {
    chaos_across_three_nodes::<Redis>("window_secs = 60\nkeep_in_backplane = true").await;
}

/// The same over NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_across_three_nodes_over_nats() {
    chaos_across_three_nodes::<Nats>("window_secs = 60").await;
}

async fn chaos_across_three_nodes<E: Engine>(resume: &str) {
    const N: usize = 10_000;
    const PACE: Duration = Duration::from_micros(800);
    let test_deadline = Instant::now() + Duration::from_secs(100);
    let engine = E::launch();
    let function = RecordingFunction::start().await;
    let nodes = cluster_with(&engine, &function, resume).await;
    let proxy = ChaosProxy::start_many(nodes.iter().map(|g| g.ws).collect()).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    proxy.start_cutting(100, 400, 200);
    // Through the third node's management API: each send travels one path, to the
    // connection's home node and on to wherever the session is.
    let resumes = chaos::exchange(
        &client,
        &proxy,
        nodes[2].mgmt,
        &function,
        &id,
        chaos::Plan {
            n: N,
            pace: PACE,
            deadline: test_deadline,
        },
    )
    .await;
    let (cuts, accepted) = (
        proxy.cuts.load(Ordering::SeqCst),
        proxy.accepted.load(Ordering::SeqCst),
    );
    eprintln!("{cuts} cuts, {resumes} resumes on {accepted} sockets across 3 nodes");
    assert!(
        cuts >= 10 && resumes >= 5,
        "{cuts} cuts, {resumes} resumes: the chaos did not bite"
    );
}

/// A session moves from node 1 to node 2 with its groups and what was sent to it while it
/// was away; sends through node 3 by id and by group, and through its home by id, reach
/// it there once; any node reads it; when it ends, its home forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_session_keeps_its_groups_and_is_reached_from_every_node() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let nodes = cluster(&redis, &function).await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws, nodes[1].ws]).await;
    proxy.pin(Some(0));
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    let mut api: Vec<HttpClient> = nodes.iter().map(|g| HttpClient::new(g.mgmt)).collect();
    let (status, body) = api[0]
        .request("PUT", &format!("/v1/groups/room/members/{id}"), b"")
        .await;
    assert_eq!(status, 200, "join: {body}");
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { .. }
    ));
    // Sent to the session parked on node 1: it travels with the session.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = api[2]
        .request("POST", &format!("/@connections/{id}"), b"while away")
        .await;
    assert_eq!(status, 200, "{body}");
    proxy.pin(Some(1));
    proxy.refuse(false);
    assert_eq!(
        significant_event(&client, 10).await,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    assert_eq!(next_text(&client, 5).await, "while away");
    // By id, through a node that neither holds it nor opened it.
    let (status, body) = api[2]
        .request("POST", &format!("/@connections/{id}"), b"by id")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "by id");
    // By group: the membership moved with the session, and it arrives once.
    let (status, body) = api[2]
        .request("POST", "/v1/groups/room/messages", b"to the room")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "to the room");
    // By id through its home, which forwards.
    let (status, body) = api[0]
        .request("POST", &format!("/@connections/{id}"), b"via home")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "via home");
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.next_event()).await;
    assert!(quiet.is_err(), "a duplicate or stray event: {quiet:?}");
    // Any node reads it, with its group.
    for (i, a) in api.iter_mut().enumerate() {
        let (status, body) = a
            .request("GET", &format!("/v1/connections/{id}"), b"")
            .await;
        assert_eq!(status, 200, "node {}: {body}", i + 1);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["groups"],
            serde_json::json!(["room"]),
            "node {}: {body}",
            i + 1
        );
        let (status, body) = a.request("GET", "/v1/groups/room/members", b"").await;
        assert_eq!(status, 200, "node {}: {body}", i + 1);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["members"],
            serde_json::json!([id.clone()]),
            "node {}: {body}",
            i + 1
        );
    }
    // It ends on node 2: its home stops answering for it.
    client.close(1000);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = api[0]
            .request("GET", &format!("/@connections/{id}"), b"")
            .await;
        if status == 410 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the home node still answers {status} for an ended connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node holding a parked session dies: a survivor ends the session (its registry
/// entry goes), and the client's resume on a survivor starts a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_a_lost_node_ends_and_the_client_starts_afresh() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster(&redis, &function).await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws, nodes[1].ws]).await;
    proxy.pin(Some(0));
    let opts = patient_options(400);
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    proxy.refuse(true);
    proxy.cut_all();
    let _ = nodes.remove(0).stop();
    // A survivor reaps the lost node (node_ttl_secs = 3) and `$disconnect`s its
    // connections: the id stops resolving anywhere.
    let mut http = HttpClient::new(nodes[0].mgmt);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = http
            .request("GET", &format!("/@connections/{first}"), b"")
            .await;
        if status == 410 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost node's connection still answers {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.pin(Some(1));
    proxy.refuse(false);
    let second = open_id(&significant_event(&client, 15).await);
    assert_ne!(first, second, "a fresh connection id, not a resume");
    let (status, body) = http
        .request("POST", &format!("/@connections/{second}"), b"hello again")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "hello again");
}

/// With `keep_in_backplane`, a session parked on a node that dies lives on: the client
/// resumes it on a survivor with what was sent meanwhile, and nobody gets `$disconnect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_survives_the_loss_of_its_node() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster_with(
        &redis,
        &function,
        "window_secs = 60\nkeep_in_backplane = true",
    )
    .await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws, nodes[1].ws]).await;
    proxy.pin(Some(0));
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    let mut home = HttpClient::new(nodes[0].mgmt);
    let (status, body) = home
        .request("PUT", &format!("/v1/groups/room/members/{id}"), b"")
        .await;
    assert_eq!(status, 200, "join: {body}");
    let (status, _) = home
        .request("POST", &format!("/@connections/{id}"), b"one")
        .await;
    assert_eq!(status, 200);
    assert_eq!(next_text(&client, 5).await, "one");
    proxy.refuse(true);
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for text in ["two", "three"] {
        let (status, body) = home
            .request("POST", &format!("/@connections/{id}"), text.as_bytes())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // The copy is refreshed in the background after each send.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = nodes.remove(0).stop();
    proxy.pin(Some(1));
    proxy.refuse(false);
    assert_eq!(
        significant_event(&client, 15).await,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    assert_eq!(next_text(&client, 5).await, "two");
    assert_eq!(next_text(&client, 5).await, "three");
    // Its group came along: a group send through the other survivor reaches it.
    let mut other = HttpClient::new(nodes[1].mgmt);
    let (status, body) = other
        .request("POST", "/v1/groups/room/messages", b"room")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "room");
    // Past the lost node's reaping (node_ttl_secs = 3): no `$disconnect` for it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        function.disconnects.lock().iter().all(|(c, _)| *c != id),
        "{:?}",
        function.disconnects.lock()
    );
    client.send_text("still here").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !function.bodies.lock().contains(&"still here".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the resumed session's message never reached its function"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A parked session's kept copy follows changes made through the management API (not only
/// sends): a group joined and state set while it is parked survive the loss of its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_copy_follows_memberships_changed_while_parked() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster_with(
        &redis,
        &function,
        "window_secs = 60\nkeep_in_backplane = true",
    )
    .await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws, nodes[1].ws]).await;
    proxy.pin(Some(0));
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    let mut home = HttpClient::new(nodes[0].mgmt);
    proxy.refuse(true);
    proxy.cut_all();
    copy_kept(&redis, &id).await;
    // Changed while parked, with nothing sent to it.
    let (status, body) = home
        .request("PUT", &format!("/v1/groups/later/members/{id}"), b"")
        .await;
    assert_eq!(status, 200, "join: {body}");
    let (status, body) = home
        .request(
            "PATCH",
            &format!("/v1/connections/{id}/state"),
            br#"{"nick": "ada"}"#,
        )
        .await;
    assert_eq!(status, 200, "state: {body}");
    copy_holds(&redis, &id, "later").await;
    copy_holds(&redis, &id, "ada").await;
    let _ = nodes.remove(0).stop();
    proxy.pin(Some(1));
    proxy.refuse(false);
    assert_eq!(
        significant_event(&client, 15).await,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    let mut other = HttpClient::new(nodes[0].mgmt);
    let (status, body) = other
        .request("GET", &format!("/v1/connections/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["groups"], serde_json::json!(["later"]), "{body}");
    assert_eq!(v["state"], serde_json::json!({"nick": "ada"}), "{body}");
}

/// With `keep_in_backplane`, a session parked on a node that dies and never resumed gets
/// one `$disconnect` when its window ends, from a survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_of_a_lost_node_ends_with_its_window() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster_with(
        &redis,
        &function,
        "window_secs = 8\nkeep_in_backplane = true",
    )
    .await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws]).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    proxy.refuse(true);
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parked_at = Instant::now();
    let _ = nodes.remove(0).stop();
    // window_secs = 8 (below): the survivor reaps the node after ~3 s and waits for the
    // rest of the window.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !function.disconnects.lock().iter().any(|(c, _)| *c == id) {
        assert!(
            Instant::now() < deadline,
            "no $disconnect for the kept session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = parked_at.elapsed();
    let ours: Vec<_> = function
        .disconnects
        .lock()
        .iter()
        .filter(|(c, _)| *c == id)
        .cloned()
        .collect();
    assert_eq!(ours, [(id.clone(), "resume window expired".to_owned())]);
    assert!(
        waited >= Duration::from_secs(7),
        "$disconnect after {waited:?}: before the window ended"
    );
    drop(client);
}

/// Waits until the kept copy of `id` is in `redis` (each node writes it in the background
/// once the session parks).
async fn copy_kept(redis: &Redis, id: &str) {
    let url = redis.config().urls[0].clone();
    let key = format!("sb:switchboard-prod:session:{id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "EXISTS", &key])
            .output()
            .expect("redis-cli runs");
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return;
        }
        assert!(Instant::now() < deadline, "no kept copy of {id} in Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the kept copy of `id` in Redis contains `needle`.
async fn copy_holds(redis: &Redis, id: &str, needle: &str) {
    let url = redis.config().urls[0].clone();
    let key = format!("sb:switchboard-prod:session:{id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "GET", &key])
            .output()
            .expect("redis-cli runs");
        if String::from_utf8_lossy(&out.stdout).contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the kept copy of {id} never held {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The open-connection gauge of a node (parked sessions count).
async fn open_on(http: &mut HttpClient) -> u64 {
    let (status, body) = http.request("GET", "/metrics", b"").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("switchboard_connections_open "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no switchboard_connections_open in {body}"))
}

/// Its home died while the session was parked on a live node that kept a copy: a resume
/// on a third node asks the node that wrote the copy, which hands the session over. It
/// used to take the copy from under the live node, which kept a ghost of the session
/// (it took sends, wrote its copy again, and a later resume there went on from a stale
/// state: `1002 switchboard.v1 sequence gap`, then a second `$disconnect`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_whose_home_died_moves_from_the_live_node_that_holds_it() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster_with(
        &redis,
        &function,
        "window_secs = 60\nkeep_in_backplane = true",
    )
    .await;
    let proxy = ChaosProxy::start_many(nodes.iter().map(|n| n.ws).collect()).await;
    let mut api: Vec<HttpClient> = nodes.iter().map(|g| HttpClient::new(g.mgmt)).collect();
    // What node 2 holds without this test's session (the start-up probe's, parked).
    let others_on_2 = open_on(&mut api[1]).await;
    proxy.pin(Some(0));
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    let (status, body) = api[0]
        .request("PUT", &format!("/v1/groups/room/members/{id}"), b"")
        .await;
    assert_eq!(status, 200, "join: {body}");
    // To node 2 (a move through its home, node 1), then parked there, with a copy.
    proxy.pin(Some(1));
    proxy.cut_all();
    let resumed = Event::Resumed {
        connection_id: id.clone(),
    };
    assert_eq!(significant_event(&client, 10).await, resumed);
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { .. }
    ));
    let (status, body) = api[1]
        .request("POST", "/v1/groups/room/messages", b"while parked")
        .await;
    assert_eq!(status, 200, "{body}");
    copy_kept(&redis, &id).await;
    let _ = nodes.remove(0).stop();
    api.remove(0);
    // Its home is gone: the resume on node 3 finds the copy node 2 wrote, and node 2,
    // alive, hands the session over.
    proxy.pin(Some(2));
    proxy.refuse(false);
    assert_eq!(significant_event(&client, 15).await, resumed);
    assert_eq!(next_text(&client, 5).await, "while parked");
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_on(&mut api[0]).await != others_on_2 {
        assert!(
            Instant::now() < deadline,
            "node 2 still holds the session that went on at node 3"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = api[1]
        .request("POST", "/v1/groups/room/messages", b"at node 3")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_text(&client, 5).await, "at node 3");
    // Back to node 2: the session comes from node 3 whole, nothing lost or repeated.
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { .. }
    ));
    let (status, body) = api[0]
        .request("POST", "/v1/groups/room/messages", b"while parked again")
        .await;
    assert_eq!(status, 200, "{body}");
    copy_kept(&redis, &id).await;
    proxy.pin(Some(1));
    proxy.refuse(false);
    assert_eq!(significant_event(&client, 15).await, resumed);
    assert_eq!(next_text(&client, 5).await, "while parked again");
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.next_event()).await;
    assert!(quiet.is_err(), "a duplicate or stray event: {quiet:?}");
    assert!(
        function.disconnects.lock().iter().all(|(c, _)| *c != id),
        "{:?}",
        function.disconnects.lock()
    );
}

/// A session parked on a node that dies is resumed on a survivor from its copy, then
/// parked there again (a new copy, the survivor's). When the dead node's window for it
/// ends, the survivor cleaning up after the dead node leaves that copy alone: no
/// `$disconnect`, and the client resumes. The clean-up used to take any copy under the
/// id, `$disconnect` the live session, and leave its holder to end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_s_window_does_not_end_its_session_kept_again_elsewhere() {
    let redis = Redis::launch();
    let function = RecordingFunction::start().await;
    let mut nodes = cluster_with(
        &redis,
        &function,
        "window_secs = 10\nkeep_in_backplane = true",
    )
    .await;
    let proxy = ChaosProxy::start_many(vec![nodes[0].ws, nodes[1].ws]).await;
    proxy.pin(Some(0));
    let client = Client::connect(&proxy.url(), patient_options(400))
        .await
        .unwrap();
    let id = open_id(&event_within(&client, 5).await);
    proxy.refuse(true);
    proxy.cut_all();
    let parked_at = Instant::now();
    copy_kept(&redis, &id).await;
    let _ = nodes.remove(0).stop();
    proxy.pin(Some(1));
    proxy.refuse(false);
    let resumed = Event::Resumed {
        connection_id: id.clone(),
    };
    assert_eq!(significant_event(&client, 15).await, resumed);
    // Parked again on the survivor halfway through the dead node's window for it, so the
    // survivor's own window for it outlasts the dead node's (and its clean-up, 1 s after).
    tokio::time::sleep_until(parked_at + Duration::from_secs(5)).await;
    proxy.refuse(true);
    proxy.cut_all();
    let window_ends = parked_at + Duration::from_secs(10 + 2);
    tokio::time::sleep_until(window_ends).await;
    assert!(
        Instant::now() < parked_at + Duration::from_secs(5 + 10),
        "too slow to test: the survivor's own window for it has ended"
    );
    assert!(
        function.disconnects.lock().iter().all(|(c, _)| *c != id),
        "{:?}",
        function.disconnects.lock()
    );
    proxy.refuse(false);
    assert_eq!(significant_event(&client, 15).await, resumed);
    client.send_text("still the same session").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !function
        .bodies
        .lock()
        .contains(&"still the same session".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the message never reached its function"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        function.disconnects.lock().iter().all(|(c, _)| *c != id),
        "{:?}",
        function.disconnects.lock()
    );
}

//! Three real gateway processes sharing a real Redis or NATS: sends through any node reach
//! connections on every node exactly once, a killed node's connections get `$disconnect`
//! through a survivor, and a backplane outage fails fast and heals by itself.

mod common;
#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::time::Duration;

use common::function_server::{FunctionServer, Reply};
use common::*;
use support::Engine;

/// `$connect` puts every connection in group `g` and reports its id; `$disconnect` is
/// recorded.
async fn functions() -> FunctionServer {
    FunctionServer::start(|e| match e["requestContext"]["eventType"].as_str() {
        Some("CONNECT") => Reply::Body(r#"{"statusCode":200,"groups":["g"]}"#.into()),
        _ => Reply::Body(r#"{"statusCode":200}"#.into()),
    })
    .await
}

fn node(name: &str, engine: &impl Engine, fs: &FunctionServer) -> Gateway {
    let c = engine.config();
    let urls: Vec<String> = c.urls.iter().map(|u| format!("{u:?}")).collect();
    let backplane = format!("{:?}", c.backplane).to_lowercase();
    Gateway::start(&format!(
        r#"
[server]
node_id = "{name}"
[cluster]
backplane = "{backplane}"
urls = [{}]
heartbeat_secs = 1
node_ttl_secs = 3
op_timeout_ms = 500
[management]
auth = "none"
[functions.f]
kind = "http"
url = "{}"
[routes."$connect"]
function = "f"
[routes."$disconnect"]
function = "f"
"#,
        urls.join(", "),
        fs.url()
    ))
}

async fn post(gw: &Gateway, path: &str, body: &str) -> (u16, String) {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    parse_status(&raw_request(gw.mgmt, raw.as_bytes()).await)
}

/// Answers `GET /prod/@connections/{id}` through `gw`: 200 once the registry has it.
async fn get_status(gw: &Gateway, id: &str) -> u16 {
    let raw =
        format!("GET /prod/@connections/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    parse_status(&raw_request(gw.mgmt, raw.as_bytes()).await).0
}

/// Whether group `g`'s listing through `gw` names connection `id`.
async fn listed(gw: &Gateway, id: &str) -> bool {
    http_get(gw.mgmt, "/v1/groups/g/members")
        .await
        .1
        .contains(id)
}

async fn quiet(c: &mut Client) {
    let r = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(r.is_err(), "expected nothing more, got {r:?}");
}

async fn suite<E: Engine + 'static>() {
    let mut engine = E::launch();
    let fs = functions().await;
    let nodes = [
        node("node-a", &engine, &fs),
        node("node-b", &engine, &fs),
        node("node-c", &engine, &fs),
    ];
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        clients.push(connect(n.ws).await);
        ids.push(
            fs.wait_for("CONNECT", i + 1).await[i]["requestContext"]["connectionId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Registry writes are asynchronous: wait until every node knows every connection.
    eventually(
        Duration::from_secs(10),
        "every connection in the registry",
        || async {
            for n in &nodes {
                for id in &ids {
                    if get_status(n, id).await != 200 {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;

    // A send through each node's management API to a connection on every other node.
    for (from, n) in nodes.iter().enumerate() {
        for (to, id) in ids.iter().enumerate() {
            let (s, _) = post(
                n,
                &format!("/prod/@connections/{id}"),
                &format!("{from}->{to}"),
            )
            .await;
            assert_eq!(s, 200, "node {from} to a connection of node {to}");
            assert_eq!(
                text(&clients[to].recv_within(5).await.unwrap()),
                format!("{from}->{to}")
            );
        }
    }
    // Group fan-out across nodes: every member exactly once.
    for (round, n) in nodes.iter().enumerate() {
        let (s, _) = post(n, "/v1/groups/g/messages", &format!("group {round}")).await;
        assert_eq!(s, 200);
        for c in clients.iter_mut() {
            assert_eq!(
                text(&c.recv_within(5).await.unwrap()),
                format!("group {round}")
            );
        }
    }
    for c in clients.iter_mut() {
        quiet(c).await;
    }
    // Group listings from any node show every member of every node.
    let mut expected = ids.clone();
    expected.sort();
    for n in &nodes {
        let (s, body) = http_get(n.mgmt, "/v1/groups/g/members").await;
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut got: Vec<String> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got, expected);
    }

    // Backplane outage: local delivery goes on, cross-node fails fast, then heals.
    engine.stop();
    // The nodes notice on their next call or heartbeat.
    eventually(
        Duration::from_secs(10),
        "/readyz to show the outage",
        || async { http_get(nodes[0].mgmt, "/readyz").await.0 == 503 },
    )
    .await;
    let t = tokio::time::Instant::now();
    let (s, _) = post(&nodes[0], &format!("/prod/@connections/{}", ids[1]), "x").await;
    assert_eq!(s, 503, "cross-node while the backplane is down");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "fails fast: {:?}",
        t.elapsed()
    );
    let (s, _) = post(
        &nodes[0],
        &format!("/prod/@connections/{}", ids[0]),
        "local",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(text(&clients[0].recv_within(5).await.unwrap()), "local");
    let (_, metrics) = http_get(nodes[0].mgmt, "/metrics").await;
    assert!(metrics.contains("switchboard_backplane_up 0"), "{metrics}");
    assert!(
        metrics.contains("switchboard_backplane_inbox_dropped_total 0"),
        "{metrics}"
    );
    engine.start();
    let healed = format!("/prod/@connections/{}", ids[1]);
    eventually(
        Duration::from_secs(20),
        "cross-node delivery to recover by itself",
        || async { post(&nodes[0], &healed, "healed").await.0 == 200 },
    )
    .await;
    assert_eq!(text(&clients[1].recv_within(5).await.unwrap()), "healed");
    eventually(Duration::from_secs(5), "/readyz to recover", || async {
        http_get(nodes[0].mgmt, "/readyz").await.0 == 200
    })
    .await;

    // kill -9 node c: its connection's $disconnect arrives through a survivor.
    let [a, b, mut c] = nodes;
    let killed = c.child.id();
    std::process::Command::new("kill")
        .args(["-9", &killed.to_string()])
        .status()
        .unwrap();
    let _ = c.child.wait();
    let t = tokio::time::Instant::now();
    let lost = |fs: &FunctionServer| {
        fs.events_of("DISCONNECT")
            .into_iter()
            .filter(|d| d["requestContext"]["connectionId"] == ids[2].as_str())
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(10),
        "$disconnect for the lost node's connection",
        || async { !lost(&fs).is_empty() },
    )
    .await;
    assert_eq!(
        lost(&fs)[0]["requestContext"]["disconnectReason"],
        "node lost"
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "within the TTL: {:?}",
        t.elapsed()
    );
    // The reaper forgets the lost node after emitting it: no group lists its connection
    // any more, through either survivor.
    eventually(
        Duration::from_secs(5),
        "the lost node to be forgotten",
        || async { !listed(&a, &ids[2]).await && !listed(&b, &ids[2]).await },
    )
    .await;
    // The lost connection is gone for every node.
    let (s, _) = post(&a, &format!("/prod/@connections/{}", ids[2]), "x").await;
    assert_eq!(s, 410);
    // The group still reaches the survivors, once each.
    let (s, _) = post(&b, "/v1/groups/g/messages", "after").await;
    assert_eq!(s, 200);
    for cl in clients.iter_mut().take(2) {
        assert_eq!(text(&cl.recv_within(5).await.unwrap()), "after");
    }
    // Exactly once: a forgotten node is reaped by nobody again, and stopping the
    // survivors drains every `$disconnect` they had started, so after their exit nothing
    // more can arrive.
    let (a, b) = tokio::task::spawn_blocking(move || (a.terminate(), b.terminate()))
        .await
        .unwrap();
    assert!(a.0.success() && b.0.success(), "{}\n{}", a.1, b.1);
    assert_eq!(lost(&fs).len(), 1, "exactly once");
}

#[tokio::test]
async fn three_nodes_over_redis() {
    suite::<support::Redis>().await;
}

#[tokio::test]
async fn three_nodes_over_nats() {
    suite::<support::Nats>().await;
}

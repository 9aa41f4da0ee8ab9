//! Real gateway processes sharing a real Redis or NATS: sends through any node reach
//! connections on every node exactly once, a killed node's connections get `$disconnect`
//! through a survivor, a backplane outage fails fast and heals by itself, and every
//! management operation answers the same whichever node is asked.

mod common;
#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::time::Duration;

use common::function_server::{FunctionServer, Reply};
use common::*;
use serde_json::{json, Value};
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
[limits]
max_groups_per_connection = 4
[cluster]
backplane = "{backplane}"
urls = [{}]
heartbeat_secs = 1
node_ttl_secs = 3
op_timeout_ms = 1000
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

/// One management request: (status, error type header, JSON body or `null`).
async fn call(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_request(gw.mgmt, raw.as_bytes()).await;
    let (status, body) = parse_status(&resp);
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    let kind = header(head, "x-amzn-errortype").unwrap_or_default();
    (
        status,
        kind,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// Two nodes, a connection held by node B, every call made through node A (issue 15:
/// before the operations layer, `/v1/batch`, the user and state routes answered 410 for
/// a live connection on B, fan-out answers counted node A only, and a remote join always
/// answered `joined: true`).
async fn ops_suite<E: Engine + 'static>() {
    let engine = E::launch();
    let fs = functions().await;
    let a = node("node-a", &engine, &fs);
    let b = node("node-b", &engine, &fs);
    // One after the other, so the order of `$connect`s says whose id is whose.
    let id_of = |e: &Value| {
        e["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut on_a = connect(a.ws).await;
    let id_a = id_of(&fs.wait_for("CONNECT", 1).await[0]);
    let mut on_b = connect(b.ws).await;
    let id_b = id_of(&fs.wait_for("CONNECT", 2).await[1]);
    // Both nodes see each other before fan-outs are counted.
    eventually(Duration::from_secs(10), "node A counts node B", || async {
        let (s, _, v) = call(&a, "POST", "/v1/groups/nobody/messages?wait=true", "x").await;
        s == 200 && v["nodes"] == 2
    })
    .await;

    // /v1/batch through A for the connection on B: every item as if B were asked.
    let ops = json!({"operations": [
        {"op": "send", "connectionId": id_b, "data": "batched"},
        {"op": "join", "connectionId": id_b, "group": "g2"},
        {"op": "join", "connectionId": id_b, "group": "g2"},
        {"op": "setState", "connectionId": id_b, "state": {"nick": "ada"}},
        {"op": "setUser", "connectionId": id_b, "userId": "ada"},
        {"op": "leave", "connectionId": id_b, "group": "g2"},
        {"op": "join", "connectionId": id_b, "group": "g3"},
    ]});
    let (s, _, v) = call(&a, "POST", "/v1/batch", &ops.to_string()).await;
    assert_eq!(s, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert!(r.iter().all(|x| x["ok"] == true), "{v}");
    assert_eq!(r[1]["joined"], true, "{v}");
    assert_eq!(
        r[2]["joined"], false,
        "a second join answers like a local one: {v}"
    );
    assert_eq!(r[3]["state"], json!({"nick": "ada"}), "{v}");
    assert_eq!(r[4]["userId"], "ada", "{v}");
    assert_eq!(r[5]["left"], true, "{v}");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "batched");

    // What node B holds, read live through A.
    let (s, _, v) = call(&a, "GET", &format!("/v1/connections/{id_b}"), "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"], json!(["g", "g3"]), "{v}");
    assert_eq!(v["state"], json!({"nick": "ada"}), "{v}");
    assert_eq!(v["userId"], "ada", "{v}");

    // The user and state routes through A.
    let (s, _, v) = call(
        &a,
        "PATCH",
        &format!("/v1/connections/{id_b}/state"),
        r#"{"nick": null, "room": "7"}"#,
    )
    .await;
    assert_eq!((s, v["state"].clone()), (200, json!({"room": "7"})));
    let (s, _, v) = call(&a, "DELETE", &format!("/v1/connections/{id_b}/user"), "").await;
    assert_eq!((s, v["userId"].clone()), (200, Value::Null));
    let (s, _, v) = call(
        &a,
        "PUT",
        &format!("/v1/connections/{id_b}/user"),
        r#"{"userId": "grace"}"#,
    )
    .await;
    assert_eq!((s, v["userId"].clone()), (200, json!("grace")));
    // Errors of the node that holds the connection reach the caller: over the bound of
    // groups (g, g3, x1, x2 fill 4) and an invalid name.
    for (g, want) in [("x1", 200), ("x2", 200), ("x3", 409)] {
        let (s, kind, v) = call(&a, "PUT", &format!("/v1/groups/{g}/members/{id_b}"), "").await;
        assert_eq!(s, want, "join {g}: {kind} {v}");
        if want == 409 {
            assert_eq!(kind, "LimitExceededException");
        }
    }
    let long = "x".repeat(129);
    let (s, kind, _) = call(&a, "PUT", &format!("/v1/groups/{long}/members/{id_b}"), "").await;
    assert_eq!(
        (s, kind.as_str()),
        (400, "BadRequestException"),
        "invalid group on join"
    );
    let (s, kind, _) = call(&a, "POST", &format!("/v1/groups/{long}/messages"), "x").await;
    assert_eq!(
        (s, kind.as_str()),
        (400, "BadRequestException"),
        "invalid group on send"
    );

    // Fan-out answers count every node when asked to wait for them...
    let (s, _, v) = call(&a, "POST", "/v1/groups/g/messages?wait=true", "to g").await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            v["recipients"].clone(),
            v["nodes"].clone(),
            v["complete"].clone()
        ),
        (json!(2), json!(2), json!(true)),
        "{v}"
    );
    assert_eq!(text(&on_a.recv_within(5).await.unwrap()), "to g");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "to g");
    let (_, _, v) = call(&a, "POST", "/v1/users/grace/messages?wait=true", "to grace").await;
    assert_eq!(v["recipients"], 1, "{v}");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "to grace");
    let (_, _, v) = call(&a, "POST", "/v1/broadcast?wait=true", "all").await;
    assert_eq!(v["delivered"], 2, "{v}");
    assert_eq!(text(&on_a.recv_within(5).await.unwrap()), "all");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "all");
    // ...and by default count this node's part only, and say so, while every node
    // still delivers.
    let (s, _, v) = call(&a, "POST", "/v1/groups/g/messages", "quick").await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            v["recipients"].clone(),
            v["nodes"].clone(),
            v["complete"].clone()
        ),
        (json!(1), json!(1), json!(false)),
        "{v}"
    );
    assert_eq!(text(&on_a.recv_within(5).await.unwrap()), "quick");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "quick");

    // Listings through A show B's memberships at once (no registry lag).
    let (s, _, v) = call(&a, "GET", "/v1/groups/x1/members", "").await;
    assert_eq!((s, v["members"].clone()), (200, json!([id_b])), "{v}");
    let mut both = [id_a.clone(), id_b.clone()];
    both.sort();
    let (_, _, v) = call(&a, "GET", "/v1/groups/g/members?limit=1", "").await;
    assert_eq!(
        (v["size"].clone(), v["members"].clone()),
        (json!(2), json!([both[0]]))
    );
    let next = v["next"].as_str().unwrap().to_string();
    let (_, _, v) = call(
        &a,
        "GET",
        &format!("/v1/groups/g/members?limit=1&after={next}"),
        "",
    )
    .await;
    assert_eq!(
        (v["members"].clone(), v["next"].clone()),
        (json!([both[1]]), Value::Null)
    );

    // Closing a user's connections through A closes B's and counts it.
    let (s, _, v) = call(&a, "DELETE", "/v1/users/grace/connections?wait=true", "").await;
    assert_eq!(
        (s, v["closed"].clone(), v["complete"].clone()),
        (200, json!(1), json!(true)),
        "{v}"
    );
    assert_eq!(on_b.expect_close(5).await, Some(1000));
    // A batch close by group through B reaches A's member.
    let ops = json!({"operations": [{"op": "close", "group": "g", "wait": true}]});
    let (_, _, v) = call(&b, "POST", "/v1/batch", &ops.to_string()).await;
    assert_eq!(v["results"][0]["closed"], 1, "{v}");
    assert_eq!(on_a.expect_close(5).await, Some(1000));
    // Gone everywhere once closed.
    eventually(
        Duration::from_secs(10),
        "B's connection is gone through A",
        || async {
            call(&a, "GET", &format!("/v1/connections/{id_b}"), "")
                .await
                .0
                == 410
        },
    )
    .await;
    let ops = json!({"operations": [{"op": "join", "connectionId": id_b, "group": "g"}]});
    let (_, _, v) = call(&a, "POST", "/v1/batch", &ops.to_string()).await;
    assert_eq!(v["results"][0]["status"], 410, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_the_same_over_redis() {
    ops_suite::<support::Redis>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_the_same_over_nats() {
    ops_suite::<support::Nats>().await;
}

/// Management errors keep the AWS shape: a status, `x-amzn-ErrorType` and a JSON message.
#[tokio::test]
async fn bad_requests_are_aws_shaped() {
    let fs = functions().await;
    let gw = Gateway::start(&format!(
        r#"
[management]
auth = "none"
[functions.f]
kind = "http"
url = "{}"
[routes."$connect"]
function = "f"
"#,
        fs.url()
    ));
    for (method, path, want) in [
        ("GET", "/v1/groups/g/members?limit=abc", 400),
        ("GET", "/v1/groups/g/members?limit=0", 400),
        ("GET", "/v1/groups/g/members?limit=5000", 400),
        ("GET", "/v1/groups/g/members?after=nope", 400),
        ("GET", "/v1/groups/g/members?color=red", 400),
        ("POST", "/v1/groups/g/messages?exclude=nope", 400),
        ("DELETE", "/v1/broadcast", 405),
        ("GET", "/v1/batch", 405),
    ] {
        let (s, kind, v) = call(&gw, method, path, "").await;
        assert_eq!(s, want, "{method} {path}: {v}");
        assert!(kind.ends_with("Exception"), "{method} {path}: {kind:?}");
        assert!(v["message"].is_string(), "{method} {path}: {v}");
    }
    let (s, _, v) = call(&gw, "GET", "/v1/groups/g/members?limit=1000", "").await;
    assert_eq!((s, v["size"].clone()), (200, json!(0)));
}

//! Every management operation answers the same whichever node is asked: two real gateway
//! processes on a real Redis (and NATS), a connection held by node B, every call made
//! through node A (issue 15: before the operations layer, `/v1/batch`, the user and state
//! routes answered 410 for a live connection on B, fan-out answers counted node A only,
//! and a remote join always answered `joined: true`).

mod common;
#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use common::function_server::{FunctionServer, Reply};
use common::*;
use serde_json::{json, Value};
use support::Engine;

/// `$connect` puts every connection in group `g`.
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

/// Waits until `f` holds (each try is a request to a node), or fails after 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::task::yield_now().await;
    }
}

async fn suite<E: Engine + 'static>() {
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
    eventually("node A counts node B", || async {
        let (s, _, v) = call(&a, "POST", "/v1/groups/nobody/messages", "x").await;
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

    // Fan-out answers count every node.
    let (s, _, v) = call(&a, "POST", "/v1/groups/g/messages", "to g").await;
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
    let (_, _, v) = call(&a, "POST", "/v1/users/grace/messages", "to grace").await;
    assert_eq!(v["recipients"], 1, "{v}");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "to grace");
    let (_, _, v) = call(&a, "POST", "/v1/broadcast", "all").await;
    assert_eq!(v["delivered"], 2, "{v}");
    assert_eq!(text(&on_a.recv_within(5).await.unwrap()), "all");
    assert_eq!(text(&on_b.recv_within(5).await.unwrap()), "all");

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
    let (s, _, v) = call(&a, "DELETE", "/v1/users/grace/connections", "").await;
    assert_eq!(
        (s, v["closed"].clone(), v["complete"].clone()),
        (200, json!(1), json!(true)),
        "{v}"
    );
    assert_eq!(on_b.expect_close(5).await, Some(1000));
    // A batch close by group through B reaches A's member.
    let ops = json!({"operations": [{"op": "close", "group": "g"}]});
    let (_, _, v) = call(&b, "POST", "/v1/batch", &ops.to_string()).await;
    assert_eq!(v["results"][0]["closed"], 1, "{v}");
    assert_eq!(on_a.expect_close(5).await, Some(1000));
    // Gone everywhere once closed.
    eventually("B's connection is gone through A", || async {
        call(&a, "GET", &format!("/v1/connections/{id_b}"), "")
            .await
            .0
            == 410
    })
    .await;
    let ops = json!({"operations": [{"op": "join", "connectionId": id_b, "group": "g"}]});
    let (_, _, v) = call(&a, "POST", "/v1/batch", &ops.to_string()).await;
    assert_eq!(v["results"][0]["status"], 410, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_the_same_over_redis() {
    suite::<support::Redis>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_the_same_over_nats() {
    suite::<support::Nats>().await;
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

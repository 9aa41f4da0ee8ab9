//! A session token is `<connection id>.<secret>`, and connection ids are no secret
//! (functions and other users see them). These tests present tokens with a parked
//! session's id and a wrong secret, on the session's home node, through other nodes after
//! it moved, and after its node died with a copy kept in the backplane (real gateway
//! processes over a real Redis): each is answered as an unknown session, and the session
//! is neither moved, copied, ended nor disturbed. The real client then resumes it with
//! everything sent to it meanwhile.

mod common;
#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use common::function_server::{proxy, FunctionServer};
use common::*;
use support::{Engine, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const REFUSED: &str = r#"switchboard_handshakes_rejected_total{reason="session_proof"}"#;

/// Gateway `name` of a cluster over `redis` with parked sessions kept in the backplane.
fn node(name: &str, redis: &Redis, fs: &FunctionServer) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
node_id = "{name}"
[cluster]
backplane = "redis"
urls = ["{}"]
heartbeat_secs = 1
node_ttl_secs = 3
op_timeout_ms = 1000
[resume]
enabled = true
window_secs = 60
keep_in_backplane = true
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
        redis.config().urls[0],
        fs.url()
    ))
}

async fn cluster(names: &[&str]) -> (Redis, FunctionServer, Vec<Gateway>) {
    let redis = Redis::launch();
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let nodes: Vec<Gateway> = names.iter().map(|n| node(n, &redis, &fs)).collect();
    for gw in &nodes {
        eventually(10, "the node to join the cluster", || async {
            http_get(gw.mgmt, "/readyz").await.0 == 200
        })
        .await;
    }
    (redis, fs, nodes)
}

/// Polls `check` until it holds; panics naming `what` after `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hello(c: &str) -> serde_json::Value {
    assert!(c.starts_with('s'), "expected a hello, got {c:?}");
    serde_json::from_str(&c[1..]).unwrap()
}

fn session_hs(path: String) -> Handshake<'static> {
    Handshake {
        path: Box::leak(path.into_boxed_str()),
        headers: vec![("Sec-WebSocket-Protocol", "switchboard.v1")],
    }
}

/// A new session on `gw`: (client, token, connection id).
async fn open(gw: &Gateway) -> (Client, String, String) {
    let mut c = connect_with(gw.ws, session_hs("/".into())).await.unwrap();
    let h = hello(text(&c.recv_within(5).await.unwrap()));
    assert_eq!(h["resumed"], false);
    let token = h["session"].as_str().unwrap().to_owned();
    let id = h["connectionId"].as_str().unwrap().to_owned();
    (c, token, id)
}

/// Resumes `token` on `gw` after server message `last`; the client and its hello.
async fn resume(gw: &Gateway, token: &str, last: u64) -> (Client, serde_json::Value) {
    let mut c = connect_with(
        gw.ws,
        session_hs(format!("/?sb_session={token}&sb_last={last}")),
    )
    .await
    .unwrap();
    let h = hello(text(&c.recv_within(5).await.unwrap()));
    (c, h)
}

/// Tokens naming connection `id` with secrets other than the one in `token`: one made up,
/// one a character away from the real one.
fn forgeries(token: &str, id: &str) -> Vec<String> {
    let (_, secret) = token.split_once('.').unwrap();
    let mut near = secret.to_owned();
    let last = near.pop().unwrap();
    near.push(if last == 'A' { 'B' } else { 'A' });
    let forged = [format!("{id}.{}", "Q".repeat(22)), format!("{id}.{near}")];
    for f in &forged {
        assert_ne!(f, token);
    }
    forged.to_vec()
}

async fn post(gw: &Gateway, id: &str, body: &str) {
    let raw = format!(
        "POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = parse_status(&raw_request(gw.mgmt, raw.as_bytes()).await);
    assert_eq!(status, 200, "send to {id}: {answer}");
}

/// `GET key` on Redis, over its own protocol.
async fn redis_get(redis: &Redis, key: &str) -> Option<String> {
    let url = &redis.config().urls[0];
    let addr: SocketAddr = url.trim_start_matches("redis://").parse().unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let cmd = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    s.write_all(cmd.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "redis closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..eol]).unwrap();
        let len: i64 = head
            .strip_prefix('$')
            .unwrap_or_else(|| panic!("redis answered {head}"))
            .parse()
            .unwrap();
        if len < 0 {
            return None;
        }
        let end = eol + 2 + len as usize;
        if buf.len() >= end {
            return Some(String::from_utf8(buf[eol + 2..end].to_vec()).unwrap());
        }
    }
}

/// The kept copy of connection `id`'s session, once it holds every one of `sent`.
async fn copy_holding(redis: &Redis, id: &str, sent: &[&str]) -> String {
    let key = format!("sb:switchboard-prod:session:{id}");
    let b64: Vec<String> = sent
        .iter()
        .map(|m| base64::engine::general_purpose::STANDARD.encode(m))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(copy) = redis_get(redis, &key).await {
            if b64.iter().all(|m| copy.contains(&format!("\"{m}\""))) {
                return copy;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no kept copy of {id} holding {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presents each of `forged` on `gw`: each is answered as an unknown session would be (a
/// fresh connection), and the kept copy of the session is exactly as it was.
async fn forge_on(gw: &Gateway, redis: &Redis, id: &str, forged: &[String], copy: &str) {
    for token in forged {
        let (mut c, h) = resume(gw, token, 0).await;
        assert_eq!(h["resumed"], false, "a forged token resumed: {h}");
        assert_ne!(h["connectionId"].as_str(), Some(id), "{h}");
        c.close(1000).await;
        assert_eq!(
            redis_get(redis, &format!("sb:switchboard-prod:session:{id}"))
                .await
                .as_deref(),
            Some(copy),
            "a forged token moved or took the kept copy"
        );
    }
}

/// The answer to a token for a session that never existed, for comparison: a fresh
/// connection, exactly what a forged token gets.
async fn unknown_is_fresh(gw: &Gateway) {
    let (mut c, h) = resume(gw, "x.QQQQQQQQQQQQQQQQQQQQQQ", 0).await;
    assert_eq!(h["resumed"], false);
    c.close(1000).await;
}

fn no_disconnect(fs: &FunctionServer, id: &str) {
    let ours: Vec<_> = fs
        .events_of("DISCONNECT")
        .into_iter()
        .filter(|e| e["requestContext"]["connectionId"] == id)
        .collect();
    assert!(ours.is_empty(), "the session ended: {ours:?}");
}

/// The resumed client gets `expected` (server messages numbered from `first`), in order.
async fn receives(c: &mut Client, first: u64, expected: &[&str]) {
    for (i, m) in expected.iter().enumerate() {
        assert_eq!(
            text(&c.recv_within(5).await.unwrap()),
            format!("m{}:{m}", first + i as u64)
        );
    }
}

/// Stops a node with SIGTERM and checks its log: refusals are logged, tokens are not.
fn log_names_refusals_not_tokens(gw: Gateway, tokens: &[&str]) {
    let (_, log) = gw.terminate();
    assert!(
        log.contains("session token with a wrong secret refused"),
        "{log}"
    );
    for t in tokens {
        let (_, secret) = t.split_once('.').unwrap();
        assert!(!log.contains(secret), "a token's secret is in the log");
    }
}

/// On the node holding the session (its home): the forged tokens resume nothing and take
/// nothing, and the real client resumes there afterwards with what was sent meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_on_the_home_node_leave_the_session_alone() {
    let (redis, fs, mut nodes) = cluster(&["home", "other"]).await;
    let home = &nodes[0];
    let (mut c, token, id) = open(home).await;
    let forged = forgeries(&token, &id);
    // While the session is attached: a fresh connection (a 409 would say the id is live),
    // and the attached client goes on undisturbed.
    for f in &forged {
        let (mut other, h) = resume(home, f, 0).await;
        assert_eq!(h["resumed"], false, "{h}");
        other.close(1000).await;
    }
    post(home, &id, "zero").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "m1:zero");
    c.send_text("a1").await;
    drop(c); // parked, without a close frame
    post(home, &id, "one").await;
    let copy = copy_holding(&redis, &id, &["one"]).await;

    forge_on(home, &redis, &id, &forged, &copy).await;
    unknown_is_fresh(home).await;
    assert!(home.metric(REFUSED).await >= 2.0 * forged.len() as f64);
    no_disconnect(&fs, &id);

    post(home, &id, "two").await;
    copy_holding(&redis, &id, &["one", "two"]).await;
    let (mut c, h) = resume(home, &token, 1).await;
    assert_eq!(h["resumed"], true, "{h}");
    assert_eq!(h["connectionId"], id.as_str());
    receives(&mut c, 2, &["one", "two"]).await;
    no_disconnect(&fs, &id);
    let mut all = vec![token.as_str()];
    all.extend(forged.iter().map(String::as_str));
    log_names_refusals_not_tokens(nodes.remove(0), &all);
}

/// Through every node of a cluster, while the session is parked at home and again after
/// it moved away (so its home relays requests for it): the forged tokens never move it,
/// never take its copy, and never end it; the real client resumes it each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_through_other_nodes_leave_the_session_alone() {
    let (redis, fs, nodes) = cluster(&["home", "second", "third"]).await;
    let (c, token, id) = open(&nodes[0]).await;
    let forged = forgeries(&token, &id);
    drop(c);
    post(&nodes[0], &id, "one").await;
    let copy = copy_holding(&redis, &id, &["one"]).await;
    for gw in &nodes[1..] {
        forge_on(gw, &redis, &id, &forged, &copy).await;
    }
    // Checked by the home, and by each node that read the copy.
    assert!(nodes[0].metric(REFUSED).await >= 2.0 * forged.len() as f64);
    assert!(nodes[1].metric(REFUSED).await >= forged.len() as f64);
    no_disconnect(&fs, &id);

    // The real client: the session moves to the second node.
    let (mut c, h) = resume(&nodes[1], &token, 0).await;
    assert_eq!(h["resumed"], true, "{h}");
    receives(&mut c, 1, &["one"]).await;
    drop(c);
    // Sent through its home, which forwards to the second node, which keeps the copy now.
    post(&nodes[0], &id, "two").await;
    let copy = copy_holding(&redis, &id, &["two"]).await;
    // Through the third node (which asks the home) and the home itself: the home refuses
    // without relaying the request, so the holder never hears of it.
    let holder_refused = nodes[1].metric(REFUSED).await;
    for gw in [&nodes[2], &nodes[0]] {
        forge_on(gw, &redis, &id, &forged, &copy).await;
    }
    assert_eq!(nodes[1].metric(REFUSED).await, holder_refused);
    // And through the holder.
    forge_on(&nodes[1], &redis, &id, &forged, &copy).await;
    assert!(nodes[1].metric(REFUSED).await > holder_refused);
    no_disconnect(&fs, &id);
    // Sends by id still go where the session is, as before the forgeries.
    post(&nodes[2], &id, "three").await;
    copy_holding(&redis, &id, &["two", "three"]).await;

    let (mut c, h) = resume(&nodes[2], &token, 1).await;
    assert_eq!(h["resumed"], true, "{h}");
    assert_eq!(h["connectionId"], id.as_str());
    receives(&mut c, 2, &["two", "three"]).await;
    no_disconnect(&fs, &id);
    assert_eq!(
        fs.events_of("CONNECT")
            .iter()
            .filter(|e| e["requestContext"]["connectionId"] == id.as_str())
            .count(),
        1,
        "the session was opened once"
    );
}

/// The session's node dies with the session parked: its copy in the backplane holds the
/// proof of its token, not the token, and forged tokens on the survivor leave the copy
/// in place; the real client then takes it and resumes with what was sent meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_cannot_take_the_copy_of_a_lost_node() {
    let (redis, fs, mut nodes) = cluster(&["home", "survivor"]).await;
    let (c, token, id) = open(&nodes[0]).await;
    drop(c);
    post(&nodes[0], &id, "one").await;
    post(&nodes[0], &id, "two").await;
    let copy = copy_holding(&redis, &id, &["one", "two"]).await;
    let (_, secret) = token.split_once('.').unwrap();
    assert!(!copy.contains(secret), "the copy holds the token's secret");
    drop(nodes.remove(0)); // SIGKILL
    let survivor = &nodes[0];

    let forged = forgeries(&token, &id);
    forge_on(survivor, &redis, &id, &forged, &copy).await;
    assert!(survivor.metric(REFUSED).await >= forged.len() as f64);
    no_disconnect(&fs, &id);

    let (mut c, h) = resume(survivor, &token, 0).await;
    assert_eq!(h["resumed"], true, "{h}");
    assert_eq!(h["connectionId"], id.as_str());
    receives(&mut c, 1, &["one", "two"]).await;
    no_disconnect(&fs, &id);
    let mut all = vec![token.as_str()];
    all.extend(forged.iter().map(String::as_str));
    log_names_refusals_not_tokens(nodes.remove(0), &all);
}

/// A resume that falls through to a fresh connection does not pass its resume parameters
/// on: the token (which might be that of a session still parked elsewhere) reaches
/// neither the `$connect` function nor the connection's snapshot and kept copy; the
/// client's own query parameters do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_parameters_reach_neither_functions_nor_the_backplane() {
    let (redis, fs, nodes) = cluster(&["home", "other"]).await;
    let (c, token, id) = open(&nodes[0]).await;
    drop(c);
    copy_holding(&redis, &id, &[]).await;
    let forged = &forgeries(&token, &id)[0];
    let (_, forged_secret) = forged.split_once('.').unwrap();
    let mut fresh = connect_with(
        nodes[1].ws,
        session_hs(format!("/?room=lobby&sb_session={forged}&sb_last=4")),
    )
    .await
    .unwrap();
    let h = hello(text(&fresh.recv_within(5).await.unwrap()));
    assert_eq!(h["resumed"], false);
    let fresh_id = h["connectionId"].as_str().unwrap().to_owned();
    let connect = fs
        .events_of("CONNECT")
        .into_iter()
        .find(|e| e["requestContext"]["connectionId"] == fresh_id.as_str())
        .expect("$connect of the fresh connection");
    assert_eq!(
        connect["queryStringParameters"],
        serde_json::json!({ "room": "lobby" }),
        "{connect}"
    );
    drop(fresh);
    let copy = copy_holding(&redis, &fresh_id, &[]).await;
    assert!(copy.contains("lobby"), "{copy}");
    assert!(
        !copy.contains("sb_session") && !copy.contains(forged_secret),
        "{copy}"
    );
}

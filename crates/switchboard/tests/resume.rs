//! Resumable sessions (`switchboard.v1`, docs/protocol.md) at the wire level; the SDKs'
//! chaos tests cover long runs.

mod common;

use std::time::Duration;

use common::function_server::{proxy, FunctionServer};
use common::*;

fn hello(c: &str) -> serde_json::Value {
    assert!(c.starts_with('s'), "expected a hello, got {c:?}");
    serde_json::from_str(&c[1..]).unwrap()
}

async fn gateway(window: u64) -> (Gateway, FunctionServer) {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = Gateway::start(&format!(
        r#"
[resume]
enabled = true
window_secs = {window}
[management]
auth = "none"
[functions.echo]
kind = "builtin"
name = "echo"
[functions.f]
kind = "http"
url = "{}"
[routes."$default"]
function = "echo"
two_way = true
[routes."$connect"]
function = "f"
[routes."$disconnect"]
function = "f"
"#,
        fs.url()
    ));
    (gw, fs)
}

fn session_hs(path: String) -> Handshake<'static> {
    Handshake {
        path: Box::leak(path.into_boxed_str()),
        headers: vec![("Sec-WebSocket-Protocol", "switchboard.v1")],
    }
}

#[tokio::test]
async fn a_dropped_socket_resumes_the_same_connection_and_replays_what_was_missed() {
    let (gw, fs) = gateway(30).await;
    let mut c = connect_with(gw.ws, session_hs("/".into())).await.unwrap();
    assert_eq!(
        header(&c.response, "sec-websocket-protocol").as_deref(),
        Some("switchboard.v1")
    );
    let h = hello(text(&c.recv_within(5).await.unwrap()));
    assert_eq!(h["resumed"], false);
    let token = h["session"].as_str().unwrap().to_string();
    let id = h["connectionId"].as_str().unwrap().to_string();

    c.send_text("m1:first").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "m1:first");
    c.send_text("a1").await;
    // Heartbeats are answered and not numbered.
    c.send_text("h").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "h");
    // Drop the socket without a close frame.
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While detached, a management send is kept for the client.
    let (s, _) = http_post(gw.mgmt, &format!("/@connections/{id}"), "while away").await;
    assert_eq!(s, 200);

    let mut c = connect_with(gw.ws, session_hs(format!("/?sb_session={token}&sb_last=1")))
        .await
        .unwrap();
    let h = hello(text(&c.recv_within(5).await.unwrap()));
    assert_eq!(
        (h["resumed"].as_bool(), h["connectionId"].as_str()),
        (Some(true), Some(id.as_str()))
    );
    assert_eq!(h["lastClientSeq"], 1);
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "m2:while away");
    // A resent client message already handed on is not invoked again: only an ack comes.
    c.send_text("m1:first").await;
    c.send_text("m2:second").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(text(&c.recv_within(5).await.unwrap()).to_string());
    }
    assert!(got.contains(&"m3:second".to_string()), "{got:?}");
    assert!(!got.iter().any(|m| m.contains("first")), "{got:?}");
    assert_eq!(
        fs.events_of("CONNECT").len(),
        1,
        "a resume does not invoke $connect"
    );
    assert!(
        fs.events_of("DISCONNECT").is_empty(),
        "$disconnect waits while detached"
    );
    // A clean close ends the session for good.
    c.close(1000).await;
    let d = fs.wait_for("DISCONNECT", 1).await;
    assert_eq!(d[0]["requestContext"]["disconnectStatusCode"], 1000);
}

#[tokio::test]
async fn forged_expired_and_doubly_used_tokens() {
    let (gw, fs) = gateway(1).await;
    // Forged: a fresh connection.
    let mut c = connect_with(gw.ws, session_hs("/?sb_session=forged&sb_last=5".into()))
        .await
        .unwrap();
    let h = hello(text(&c.recv_within(5).await.unwrap()));
    assert_eq!(h["resumed"], false);
    let token = h["session"].as_str().unwrap().to_string();
    // Used while attached: 409.
    let err = connect_with(gw.ws, session_hs(format!("/?sb_session={token}&sb_last=0")))
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("HTTP/1.1 409"), "{err}");
    // Expired: $disconnect says so, and the token starts a fresh connection.
    drop(c);
    let d = fs.wait_for("DISCONNECT", 1).await;
    assert_eq!(
        d[0]["requestContext"]["disconnectReason"],
        "resume window expired"
    );
    let mut c = connect_with(gw.ws, session_hs(format!("/?sb_session={token}&sb_last=0")))
        .await
        .unwrap();
    let h2 = hello(text(&c.recv_within(5).await.unwrap()));
    assert_eq!(h2["resumed"], false);
    assert_ne!(h2["connectionId"], h["connectionId"]);
    // Plain clients are unaffected: raw payloads.
    let mut p = connect(gw.ws).await;
    p.send_text("raw").await;
    assert_eq!(text(&p.recv_within(5).await.unwrap()), "raw");
}

async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    parse_status(&raw_request(addr, raw.as_bytes()).await)
}

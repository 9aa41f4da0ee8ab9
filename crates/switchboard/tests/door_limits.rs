//! `[access]` limits on what one address or one user may hold, against the real gateway:
//! open connections per client address (real sockets bound to 127.0.0.2 and 127.0.0.3),
//! open connections per user (named by a JWT authorizer or by `$connect`'s answer, on
//! one node and across two nodes sharing a real Redis) with both `on_user_limit` modes,
//! and messages per second per user.

mod common;
#[path = "../../switchboard-cluster/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::function_server::{FunctionServer, Reply};
use common::*;
use support::Engine;
use switchboard_ws::Message;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const IP_LIMIT: &str = "switchboard_handshakes_rejected_total{reason=\"ip_limit\"}";
const USER_LIMIT: &str = "switchboard_handshakes_rejected_total{reason=\"user_limit\"}";
const USER_CLOSED: &str = "switchboard_user_limit_closed_total";
const USER_RATE: &str = "switchboard_messages_rejected_total{reason=\"user_rate_limit\"}";
const POLICY: u16 = 1008;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn token(user: &str) -> String {
    hs256_jwt(
        serde_json::json!({"sub": user, "exp": unix_now() + 600}),
        SECRET,
    )
}

/// A gateway whose users come from a JWT's `sub`, echoing every message.
fn jwt_gateway(access: &str) -> Gateway {
    Gateway::start(&format!(
        "[access]\n{access}\n[authorizer]\nkind = \"jwt\"\nsecret = \"{SECRET}\"\nalgorithms = [\"HS256\"]\n{ECHO_ROUTES}"
    ))
}

/// A handshake as `user` (by `?token=`): the client, or the refusal's status and body.
async fn as_user(addr: SocketAddr, user: &str) -> Result<Client, (u16, String)> {
    let path = format!("/?token={}", token(user));
    connect_with(
        addr,
        Handshake {
            path: &path,
            headers: vec![],
        },
    )
    .await
    .map_err(|head| parse_status(&head))
}

/// Echoes `msg` through `c`.
async fn echoes(c: &mut Client, msg: &str) {
    c.send_text(msg).await;
    assert_eq!(text(&c.recv().await.expect("echo")), msg);
}

/// The close a client gets: its code and reason.
async fn closed_with(c: &mut Client) -> (u16, String) {
    loop {
        match c.recv_within(10).await {
            Some(Message::Close(Some((code, reason)))) => {
                return (code, String::from_utf8_lossy(&reason).into_owned())
            }
            Some(Message::Close(None)) => return (1005, String::new()),
            Some(_) => continue,
            None => panic!("no close frame"),
        }
    }
}

#[tokio::test]
async fn connections_per_address() {
    let gw = Gateway::start(&format!(
        "[access]\nmax_connections_per_ip = 2\n{ECHO_ROUTES}"
    ));
    let to = SocketAddr::new(ip("127.0.0.1"), gw.ws.port());
    let from = |a: &'static str| async move {
        let io = connect_from(ip(a), to).await;
        connect_io(io, Handshake::default()).await
    };
    let mut a1 = from("127.0.0.2").await.unwrap();
    let _a2 = from("127.0.0.2").await.unwrap();
    let Err(head) = from("127.0.0.2").await else {
        panic!("a third connection from 127.0.0.2 was accepted");
    };
    assert_eq!(parse_status(&head).0, 429, "{head}");
    // Another address has its own count.
    let mut b = from("127.0.0.3").await.unwrap();
    echoes(&mut b, "b").await;
    echoes(&mut a1, "still open").await;
    gw.wait_metric(IP_LIMIT, 1.0).await;
    // A place is given back when its connection ends.
    a1.close(1000).await;
    eventually(Duration::from_secs(10), "a place freed", || async {
        match from("127.0.0.2").await {
            Ok(_) => true,
            Err(head) => {
                assert_eq!(parse_status(&head).0, 429, "{head}");
                false
            }
        }
    })
    .await;
    let (_, log) = gw.terminate();
    assert!(
        log.lines()
            .any(|l| l.contains("ip_limit") && l.contains("127.0.0.2")),
        "{log}"
    );
}

#[tokio::test]
async fn connections_per_user_refused() {
    let gw = jwt_gateway("max_connections_per_user = 2");
    let mut a1 = as_user(gw.ws, "alice").await.unwrap();
    let _a2 = as_user(gw.ws, "alice").await.unwrap();
    assert_eq!(as_user(gw.ws, "alice").await.err().map(|e| e.0), Some(429));
    let refused = raw_request(
        gw.ws,
        format!(
            "GET /?token={} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            token("alice")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        parse_status(&refused),
        (429, "too many connections for this user\n".into()),
        "{refused}"
    );
    let mut b = as_user(gw.ws, "bob").await.unwrap();
    echoes(&mut b, "bob's").await;
    // Nothing happened to the open ones.
    echoes(&mut a1, "alice's").await;
    gw.wait_metric(USER_LIMIT, 2.0).await;
    a1.close(1000).await;
    eventually(Duration::from_secs(10), "alice's place freed", || async {
        as_user(gw.ws, "alice").await.is_ok()
    })
    .await;
    assert_eq!(gw.metric(USER_CLOSED).await, 0.0);
}

#[tokio::test]
async fn connections_per_user_close_the_oldest() {
    let gw = jwt_gateway("max_connections_per_user = 2\non_user_limit = \"close_oldest\"");
    let mut a1 = as_user(gw.ws, "alice").await.unwrap();
    let mut a2 = as_user(gw.ws, "alice").await.unwrap();
    let mut a3 = as_user(gw.ws, "alice").await.unwrap();
    assert_eq!(
        closed_with(&mut a1).await,
        (POLICY, "too many connections for this user".into())
    );
    echoes(&mut a2, "2").await;
    echoes(&mut a3, "3").await;
    let mut a4 = as_user(gw.ws, "alice").await.unwrap();
    assert_eq!(closed_with(&mut a2).await.0, POLICY);
    echoes(&mut a3, "3").await;
    echoes(&mut a4, "4").await;
    gw.wait_metric(USER_CLOSED, 2.0).await;
    assert_eq!(gw.metric(USER_LIMIT).await, 0.0);
}

/// A user named by `$connect`'s answer (`?user=`) is counted once `$connect` accepted; a
/// connection refused then gets its `$disconnect`, since the function was told of it.
#[tokio::test]
async fn a_user_named_by_connect_is_counted_too() {
    let fs = FunctionServer::start(|e| match e["requestContext"]["eventType"].as_str() {
        Some("CONNECT") => {
            let user = e["queryStringParameters"]["user"].as_str().unwrap_or("x");
            Reply::Body(format!(r#"{{"statusCode":200,"userId":"{user}"}}"#))
        }
        _ => Reply::Body(r#"{"statusCode":200}"#.into()),
    })
    .await;
    let gw = Gateway::start(&format!(
        "[access]\nmax_connections_per_user = 1\n[functions.f]\nkind = \"http\"\nurl = \"{}\"\n\
         [routes.\"$connect\"]\nfunction = \"f\"\n[routes.\"$disconnect\"]\nfunction = \"f\"\n",
        fs.url()
    ));
    let hs = |path| Handshake {
        path,
        headers: vec![],
    };
    let _a1 = connect_with(gw.ws, hs("/?user=alice")).await.unwrap();
    let Err(refused) = connect_with(gw.ws, hs("/?user=alice")).await else {
        panic!("a second connection of alice was accepted");
    };
    assert_eq!(parse_status(&refused).0, 429, "{refused}");
    let _b = connect_with(gw.ws, hs("/?user=bob")).await.unwrap();
    let gone = fs.wait_for("DISCONNECT", 1).await;
    let ctx = &gone[0]["requestContext"];
    assert_eq!(ctx["disconnectStatusCode"], POLICY);
    assert_eq!(
        ctx["disconnectReason"],
        "too many connections for this user"
    );
    assert_eq!(fs.wait_for("CONNECT", 3).await.len(), 3);
    gw.wait_metric(USER_LIMIT, 1.0).await;
}

/// One allowance per user, shared by the user's connections: a second connection cannot
/// send what the first already used.
#[tokio::test]
async fn messages_per_user() {
    let gw = jwt_gateway("messages_per_sec_per_user = 1\nmessages_burst_per_user = 5");
    let mut a1 = as_user(gw.ws, "alice").await.unwrap();
    let mut a2 = as_user(gw.ws, "alice").await.unwrap();
    let mut b = as_user(gw.ws, "bob").await.unwrap();
    for i in 0..5 {
        echoes(&mut a1, &format!("a{i}")).await;
    }
    // On its own, a2 would have 5 more: it gets what was refilled since (1 a second).
    let mut sent = 0;
    let close = loop {
        a2.send_text("more").await;
        sent += 1;
        match a2.recv_within(10).await {
            Some(Message::Text(_)) => assert!(sent < 5, "a2 had an allowance of its own"),
            Some(Message::Close(c)) => break c,
            other => panic!("{other:?}"),
        }
    };
    let close = close.map(|(code, r)| (code, String::from_utf8_lossy(&r).into_owned()));
    assert_eq!(close, Some((POLICY, "rate limit exceeded".into())));
    // Another user's allowance is untouched.
    for i in 0..5 {
        echoes(&mut b, &format!("b{i}")).await;
    }
    gw.wait_metric(USER_RATE, 1.0).await;
}

/// Two nodes sharing a real Redis count a user's connections on both.
#[tokio::test]
async fn connections_per_user_across_two_nodes() {
    let engine = support::Redis::launch();
    let node = |name: &str, mode: &str| {
        let c = engine.config();
        Gateway::start(&format!(
            "[server]\nnode_id = \"{name}\"\n[cluster]\nbackplane = \"redis\"\nurls = [{:?}]\n\
             namespace = \"door-{mode}\"\nheartbeat_secs = 1\nnode_ttl_secs = 3\nop_timeout_ms = 2000\n\
             [management]\nauth = \"none\"\n\
             [access]\nmax_connections_per_user = 2\non_user_limit = \"{mode}\"\n\
             [authorizer]\nkind = \"jwt\"\nsecret = \"{SECRET}\"\nalgorithms = [\"HS256\"]\n{ECHO_ROUTES}",
            c.urls[0]
        ))
    };
    let (a, b) = (node("node-a", "reject"), node("node-b", "reject"));
    // Each node counts the other once it has heard from it.
    let _x1 = as_user(a.ws, "xavier").await.unwrap();
    let _x2 = as_user(b.ws, "xavier").await.unwrap();
    eventually(
        Duration::from_secs(15),
        "node-b refusing a third",
        || async {
            match as_user(b.ws, "xavier").await {
                Err((429, _)) => true,
                Ok(mut extra) => {
                    extra.close(1000).await;
                    false
                }
                Err(other) => panic!("{other:?}"),
            }
        },
    )
    .await;
    assert_eq!(as_user(a.ws, "xavier").await.err().map(|e| e.0), Some(429));
    drop((a, b));

    let (a, b) = (
        node("node-c", "close_oldest"),
        node("node-d", "close_oldest"),
    );
    // Each node counts the other's connections once it has heard from it.
    for n in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the other node heard of",
            || async {
                http_get(n.mgmt, "/v1/groups/g/members")
                    .await
                    .1
                    .contains(r#""nodes":2"#)
            },
        )
        .await;
    }
    let mut y1 = as_user(a.ws, "yvonne").await.unwrap();
    let mut y2 = as_user(b.ws, "yvonne").await.unwrap();
    echoes(&mut y1, "1").await;
    // The third, on node-d, closes the oldest, on node-c.
    let mut y3 = as_user(b.ws, "yvonne").await.unwrap();
    let (code, reason) = closed_with(&mut y1).await;
    assert_eq!(
        (code, reason.as_str()),
        (POLICY, "too many connections for this user")
    );
    echoes(&mut y2, "2").await;
    echoes(&mut y3, "3").await;
}

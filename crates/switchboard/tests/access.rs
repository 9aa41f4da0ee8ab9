//! `[access]` and `[management] allow_ips`/`deny_ips` against the real gateway: origins
//! from a browser's point of view, and client addresses from real sockets bound to
//! different loopback addresses (127.0.0.2, 127.0.0.3, ::1).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REJECTED_ORIGIN: &str = "switchboard_handshakes_rejected_total{reason=\"origin\"}";
const REJECTED_IP: &str = "switchboard_handshakes_rejected_total{reason=\"ip_denied\"}";
const MGMT_REFUSED_IP: &str = "switchboard_management_refused_total{reason=\"ip_denied\"}";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The handshake's answer: 101, or the refusal's status and body.
async fn handshake(gw: &Gateway, origin: Option<&str>) -> (u16, String) {
    let headers = origin.map(|o| vec![("Origin", o)]).unwrap_or_default();
    answer(connect_with(gw.ws, Handshake { path: "/", headers }).await)
}

fn answer<S>(r: Result<Client<S>, String>) -> (u16, String) {
    match r {
        Ok(_) => (101, String::new()),
        Err(head) => parse_status(&head),
    }
}

/// A handshake from the local address `from` to the gateway's port at `to`.
async fn handshake_from(gw: &Gateway, from: &str, to: &str, xff: Option<&str>) -> u16 {
    let io = connect_from(ip(from), SocketAddr::new(ip(to), gw.ws.port())).await;
    let headers = xff
        .map(|x| vec![("X-Forwarded-For", x)])
        .unwrap_or_default();
    answer(connect_io(io, Handshake { path: "/", headers }).await).0
}

/// `GET path` on the management listener from the local address `from`: status and body.
async fn mgmt_get_from(gw: &Gateway, from: &str, to: &str, path: &str) -> (u16, String) {
    let mut s = connect_from(ip(from), SocketAddr::new(ip(to), gw.mgmt.port())).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    parse_status(&String::from_utf8_lossy(&out))
}

#[tokio::test]
async fn listed_origins_and_the_rest() {
    let gw = Gateway::start(&format!(
        "[access]\nallowed_origins = [\"https://chat.example.com\", \"https://*.example.org\"]\n{ECHO_ROUTES}"
    ));
    assert_eq!(
        handshake(&gw, Some("https://chat.example.com")).await.0,
        101
    );
    assert_eq!(handshake(&gw, Some("https://a.example.org")).await.0, 101);
    // Requests without Origin are not from browsers: allowed.
    assert_eq!(handshake(&gw, None).await.0, 101);
    assert_eq!(handshake(&gw, Some("https://evil.example")).await.0, 403);
    let refused = raw_request(
        gw.ws,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Origin: https://chat.example.com.evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, body) = parse_status(&refused);
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        body,
        "WebSocket connections from this origin are not allowed\n"
    );
    assert_eq!(handshake(&gw, Some("https://example.org")).await.0, 403);
    // A listed page still talks once connected.
    let mut c = connect_with(
        gw.ws,
        Handshake {
            path: "/",
            headers: vec![("Origin", "https://b.example.org")],
        },
    )
    .await
    .unwrap();
    c.send_text("hi").await;
    assert_eq!(text(&c.recv().await.unwrap()), "hi");
    gw.wait_metric(REJECTED_ORIGIN, 3.0).await;
    assert_eq!(gw.metric(REJECTED_IP).await, 0.0);
}

#[tokio::test]
async fn same_origin_by_default_and_bounded_logs() {
    let gw = Gateway::start(ECHO_ROUTES);
    // The harness sends `Host: localhost`.
    assert_eq!(handshake(&gw, Some("http://localhost")).await.0, 101);
    assert_eq!(handshake(&gw, None).await.0, 101);
    for _ in 0..5 {
        assert_eq!(handshake(&gw, Some("http://evil.example")).await.0, 403);
    }
    assert_eq!(handshake(&gw, Some("http://localhost:8080")).await.0, 403);
    gw.wait_metric(REJECTED_ORIGIN, 6.0).await;
    let (_, log) = gw.terminate();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("handshake refused by [access]"))
        .collect();
    // Each refusal logged once, with the client address; at info only the 1st, 2nd and
    // 4th, so a flood writes a line per doubling.
    assert_eq!(refusals.len(), 6, "{log}");
    assert!(refusals.iter().all(|l| l.contains("127.0.0.1")), "{log}");
    let at_info = refusals
        .iter()
        .filter(|l| l.contains("refused_total"))
        .count();
    assert_eq!(at_info, 3, "{log}");
}

#[tokio::test]
async fn require_origin_refuses_clients_without_one() {
    let gw = Gateway::start(&format!("[access]\nrequire_origin = true\n{ECHO_ROUTES}"));
    assert_eq!(handshake(&gw, None).await.0, 403);
    assert_eq!(handshake(&gw, Some("http://localhost")).await.0, 101);
    gw.wait_metric(REJECTED_ORIGIN, 1.0).await;
}

#[tokio::test]
async fn ip_lists_on_real_source_addresses() {
    // On [::]:0 the gateway sees IPv4 clients as ::ffff:127.0.0.x; the lists are written
    // in IPv4 and must match them still.
    let gw = Gateway::start_listening(
        &format!(
            "[access]\nallow_ips = [\"127.0.0.2/32\", \"127.0.0.3/32\", \"::1/128\"]\n\
             deny_ips = [\"127.0.0.3/32\"]\n{ECHO_ROUTES}"
        ),
        "[::]:0",
        "127.0.0.1:0",
        &[],
    );
    assert_eq!(
        handshake_from(&gw, "127.0.0.2", "127.0.0.1", None).await,
        101
    );
    assert_eq!(handshake_from(&gw, "::1", "::1", None).await, 101);
    // Deny wins over allow.
    assert_eq!(
        handshake_from(&gw, "127.0.0.3", "127.0.0.1", None).await,
        403
    );
    // Outside the allow list.
    assert_eq!(
        handshake_from(&gw, "127.0.0.4", "127.0.0.1", None).await,
        403
    );
    gw.wait_metric(REJECTED_IP, 2.0).await;

    let gw = Gateway::start_listening(
        &format!("[access]\ndeny_ips = [\"::1/128\", \"127.0.0.3/32\"]\n{ECHO_ROUTES}"),
        "[::]:0",
        "127.0.0.1:0",
        &[],
    );
    assert_eq!(handshake_from(&gw, "::1", "::1", None).await, 403);
    assert_eq!(
        handshake_from(&gw, "127.0.0.3", "127.0.0.1", None).await,
        403
    );
    assert_eq!(
        handshake_from(&gw, "127.0.0.2", "127.0.0.1", None).await,
        101
    );
    gw.wait_metric(REJECTED_IP, 2.0).await;
    let (_, log) = gw.terminate();
    assert!(
        log.lines()
            .any(|l| l.contains("refused by [access]") && l.contains("::1")),
        "{log}"
    );
}

#[tokio::test]
async fn ip_lists_behind_a_trusted_proxy() {
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [access]\nallow_ips = [\"198.51.100.0/24\"]\ndeny_ips = [\"198.51.100.66/32\"]\n{ECHO_ROUTES}"
    ));
    let through_proxy = |xff| handshake_from(&gw, "127.0.0.1", "127.0.0.1", Some(xff));
    assert_eq!(through_proxy("198.51.100.7").await, 101);
    assert_eq!(through_proxy("198.51.100.66").await, 403);
    assert_eq!(through_proxy("203.0.113.9").await, 403);
    // What the client wrote left of the proxy's entry is not believed.
    assert_eq!(through_proxy("198.51.100.7, 203.0.113.9").await, 403);
    // A peer that is no trusted proxy is judged by its own address.
    assert_eq!(
        handshake_from(&gw, "127.0.0.2", "127.0.0.1", Some("198.51.100.7")).await,
        403
    );
    gw.wait_metric(REJECTED_IP, 4.0).await;
}

#[tokio::test]
async fn management_allow_and_deny() {
    let gw = Gateway::start_listening(
        &format!(
            "[management]\nallow_ips = [\"127.0.0.0/8\"]\n\
             deny_ips = [\"127.0.0.3/32\"]\n{ECHO_ROUTES}"
        ),
        "127.0.0.1:0",
        "[::]:0",
        &[],
    );
    assert_eq!(
        mgmt_get_from(&gw, "127.0.0.2", "127.0.0.1", "/healthz")
            .await
            .0,
        200
    );
    assert_eq!(
        mgmt_get_from(&gw, "127.0.0.3", "127.0.0.1", "/healthz")
            .await
            .0,
        403
    );
    assert_eq!(mgmt_get_from(&gw, "::1", "::1", "/metrics").await.0, 403);
    // The WebSocket listener is not governed by the management lists.
    assert_eq!(
        handshake_from(&gw, "127.0.0.3", "127.0.0.1", None).await,
        101
    );
    // The refused peer gets the refusal's text, nothing of what it asked for.
    let (status, body) = mgmt_get_from(&gw, "127.0.0.3", "127.0.0.1", "/metrics").await;
    assert_eq!(
        (status, body.as_str()),
        (403, "connections from this address are not allowed\n")
    );
    let refused = || async {
        let (_, body) = mgmt_get_from(&gw, "127.0.0.2", "127.0.0.1", "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(MGMT_REFUSED_IP)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eventually(
        Duration::from_secs(10),
        "three management refusals counted",
        || async { refused().await == 3.0 },
    )
    .await;
}

//! Groups, users, per-connection state and the `/v1` management API, end to end.

mod common;

use std::time::Duration;

use common::function_server::{FunctionServer, Reply};
use common::*;

const TOKEN: &str = "test-token-0123456789";

/// `$connect` goes to a function that puts every connection in the groups and user named
/// in its query (`?groups=a,b&user=u&k=v`), with state `{"k": v}`.
async fn setup(limits: &str) -> (Gateway, FunctionServer) {
    let fs = FunctionServer::start(|e| {
        let q = &e["queryStringParameters"];
        let groups: Vec<&str> = q["groups"].as_str().map(|g| g.split(',').collect()).unwrap_or_default();
        let mut out = serde_json::json!({"statusCode": 200, "groups": groups});
        if let Some(u) = q["user"].as_str() {
            out["userId"] = u.into();
        }
        if let Some(k) = q["k"].as_str() {
            out["state"] = serde_json::json!({"k": k});
        }
        if e["requestContext"]["eventType"] == "MESSAGE" {
            // Echo back what the event says about this connection.
            return Reply::Body(serde_json::json!({"statusCode": 200, "body": e["requestContext"]["switchboard"].to_string()}).to_string());
        }
        Reply::Body(out.to_string())
    })
    .await;
    let gw = Gateway::start(&format!(
        r#"
[management]
bearer_tokens = ["{TOKEN}"]
[limits]
max_groups_per_connection = 3
max_state_bytes = 64
{limits}
[functions.f]
kind = "http"
url = "{}"
[functions.join]
kind = "builtin"
name = "join_group"
groups = ["room:*"]
[functions.leave]
kind = "builtin"
name = "leave_group"
groups = ["room:*"]
[routes."$connect"]
function = "f"
[routes."$disconnect"]
function = "f"
[routes."$default"]
function = "f"
two_way = true
[routes.join]
function = "join"
two_way = true
[routes.leave]
function = "leave"
two_way = true
"#,
        fs.url()
    ));
    (gw, fs)
}

async fn client(gw: &Gateway, fs: &FunctionServer, query: &str) -> (Client, String) {
    let n = fs.events_of("CONNECT").len();
    let path: &'static str = Box::leak(format!("/?{query}").into_boxed_str());
    let c = connect_with(
        gw.ws,
        Handshake {
            path,
            headers: vec![],
        },
    )
    .await
    .unwrap();
    let id = fs.wait_for("CONNECT", n + 1).await[n]["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_string();
    (c, id)
}

async fn api(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: &str,
    content_type: &str,
) -> (u16, serde_json::Value) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_request(gw.mgmt, raw.as_bytes()).await;
    let (status, body) = parse_status(&resp);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

async fn quiet(c: &mut Client) {
    let r = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(r.is_err(), "expected nothing, got {r:?}");
}

#[tokio::test]
async fn group_user_and_broadcast_sends_with_exclude() {
    let (gw, fs) = setup("").await;
    let (mut a, ida) = client(&gw, &fs, "groups=room:1,room:2&user=ada").await;
    let (mut b, _idb) = client(&gw, &fs, "groups=room:1&user=bob").await;
    let (mut c, _idc) = client(&gw, &fs, "groups=room:2&user=ada").await;

    let (s, r) = api(
        &gw,
        "POST",
        "/v1/groups/room:1/messages",
        "to room 1",
        "text/plain",
    )
    .await;
    assert_eq!(
        (s, r["recipients"].as_u64(), r["delivered"].as_u64()),
        (200, Some(2), Some(2))
    );
    assert_eq!(text(&a.recv_within(5).await.unwrap()), "to room 1");
    assert_eq!(text(&b.recv_within(5).await.unwrap()), "to room 1");
    quiet(&mut c).await;

    let (_, r) = api(
        &gw,
        "POST",
        &format!("/v1/groups/room:2/messages?exclude={ida}"),
        "not to ada's first",
        "text/plain",
    )
    .await;
    assert_eq!(r["delivered"], 1);
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "not to ada's first");
    quiet(&mut a).await;

    let (_, r) = api(
        &gw,
        "POST",
        "/v1/users/ada/messages",
        "to ada",
        "text/plain",
    )
    .await;
    assert_eq!(r["delivered"], 2);
    assert_eq!(text(&a.recv_within(5).await.unwrap()), "to ada");
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "to ada");
    quiet(&mut b).await;

    let (_, r) = api(
        &gw,
        "POST",
        "/v1/broadcast",
        "\u{1}\u{2}",
        "application/octet-stream",
    )
    .await;
    assert_eq!(r["delivered"], 3);
    for cl in [&mut a, &mut b, &mut c] {
        assert_eq!(
            cl.recv_within(5).await.unwrap(),
            switchboard_ws::Message::Binary(bytes::Bytes::from_static(&[1, 2]))
        );
    }
    // Invalid UTF-8 as text is refused.
    let raw = format!(
        "POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(parse_status(&raw_request(gw.mgmt, &bytes).await).0, 400);
}

#[tokio::test]
async fn membership_ends_with_the_connection_and_listing_pages() {
    let (gw, fs) = setup("").await;
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (c, id) = client(&gw, &fs, "groups=room:x").await;
        ids.push(id);
        clients.push(c);
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (s, r) = api(
            &gw,
            "GET",
            &format!("/v1/groups/room:x/members?limit=2&after={after}"),
            "",
            "text/plain",
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(r["size"], 5);
        seen.extend(
            r["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        match r["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    // Closing two connections removes them from the group.
    let mut c0 = clients.remove(0);
    c0.close(1000).await;
    c0.expect_close(5).await;
    drop(clients.remove(0));
    fs.wait_for("DISCONNECT", 2).await;
    let (_, r) = api(&gw, "GET", "/v1/groups/room:x/members", "", "text/plain").await;
    assert_eq!(r["size"], 3);
    assert!(!r["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == ids[0].as_str() || m == ids[1].as_str()));
    // $disconnect still saw the groups the connection had.
    let d = &fs.events_of("DISCONNECT")[0];
    assert_eq!(
        d["requestContext"]["switchboard"]["groups"],
        serde_json::json!(["room:x"])
    );
}

#[tokio::test]
async fn bounds_are_enforced_with_clear_errors() {
    let (gw, fs) = setup("").await;
    let (mut a, ida) = client(&gw, &fs, "groups=g1,g2,g3").await;
    let (s, r) = api(
        &gw,
        "PUT",
        &format!("/v1/groups/g4/members/{ida}"),
        "",
        "text/plain",
    )
    .await;
    assert_eq!(s, 409);
    assert!(
        r["message"].as_str().unwrap().contains("too many groups"),
        "{r}"
    );
    let (s, _) = api(
        &gw,
        "PATCH",
        &format!("/v1/connections/{ida}/state"),
        &format!("{{\"big\":\"{}\"}}", "x".repeat(100)),
        "application/json",
    )
    .await;
    assert_eq!(s, 413);
    let (s, r) = api(
        &gw,
        "PATCH",
        &format!("/v1/connections/{ida}/state"),
        r#"{"mood":"ok"}"#,
        "application/json",
    )
    .await;
    assert_eq!((s, r["state"]["mood"].as_str()), (200, Some("ok")));
    let (s, _) = api(
        &gw,
        "PUT",
        "/v1/groups/g1/members/AAAAAAAAAAAAAAAAAAAAAA",
        "",
        "text/plain",
    )
    .await;
    assert_eq!(s, 410);
    // The message events carry user, groups and state.
    a.send_text("who am i").await;
    let ext: serde_json::Value =
        serde_json::from_str(text(&a.recv_within(5).await.unwrap())).unwrap();
    assert_eq!(ext["groups"], serde_json::json!(["g1", "g2", "g3"]));
    assert_eq!(ext["state"]["mood"], "ok");
}

#[tokio::test]
async fn clients_join_and_leave_only_allowed_groups() {
    let (gw, fs) = setup("").await;
    let (mut a, ida) = client(&gw, &fs, "").await;
    a.send_text(r#"{"action":"join","group":"room:7"}"#).await;
    assert_eq!(
        text(&a.recv_within(5).await.unwrap()),
        r#"{"joined":"room:7"}"#
    );
    a.send_text(r#"{"action":"join","group":"admin"}"#).await;
    let r: serde_json::Value =
        serde_json::from_str(text(&a.recv_within(5).await.unwrap())).unwrap();
    assert_eq!(r["message"], "Forbidden");
    let (_, r) = api(&gw, "GET", "/v1/groups/room:7/members", "", "text/plain").await;
    assert_eq!(r["members"], serde_json::json!([ida]));
    let (_, r) = api(&gw, "GET", "/v1/groups/admin/members", "", "text/plain").await;
    assert_eq!(r["size"], 0);
    a.send_text(r#"{"action":"leave","group":"room:7"}"#).await;
    assert_eq!(
        text(&a.recv_within(5).await.unwrap()),
        r#"{"left":"room:7"}"#
    );
    let (_, r) = api(&gw, "GET", "/v1/groups/room:7/members", "", "text/plain").await;
    assert_eq!(r["size"], 0);
}

#[tokio::test]
async fn close_every_connection_of_a_user_or_group() {
    let (gw, fs) = setup("").await;
    let (mut a, _) = client(&gw, &fs, "user=ada&groups=room:1").await;
    let (mut b, _) = client(&gw, &fs, "user=ada").await;
    let (mut c, _) = client(&gw, &fs, "user=bob&groups=room:1").await;
    let (_, r) = api(&gw, "DELETE", "/v1/users/ada/connections", "", "text/plain").await;
    assert_eq!(r["closed"], 2);
    assert_eq!(a.expect_close(5).await, Some(1000));
    assert_eq!(b.expect_close(5).await, Some(1000));
    let (_, r) = api(
        &gw,
        "DELETE",
        "/v1/groups/room:1/connections",
        "",
        "text/plain",
    )
    .await;
    assert_eq!(r["closed"], 1, "ada's connection is already closing");
    assert_eq!(c.expect_close(5).await, Some(1000));
}

#[tokio::test]
async fn batch_reports_per_item_and_partially_fails() {
    let (gw, fs) = setup("").await;
    let (mut a, ida) = client(&gw, &fs, "").await;
    let body = serde_json::json!({"operations": [
        {"op": "join", "group": "room:b", "connectionId": ida},
        {"op": "send", "group": "room:b", "data": "hi group"},
        {"op": "send", "connectionId": "AAAAAAAAAAAAAAAAAAAAAA", "data": "nobody"},
        {"op": "setState", "connectionId": ida, "state": {"a": "1"}},
        {"op": "frobnicate"},
        {"op": "send", "connectionId": ida, "dataBase64": "AAE="},
    ]})
    .to_string();
    let (s, r) = api(&gw, "POST", "/v1/batch", &body, "application/json").await;
    assert_eq!(s, 200);
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 6);
    assert_eq!(res[0]["ok"], true);
    assert_eq!(
        (res[1]["ok"].as_bool(), res[1]["delivered"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(
        (res[2]["ok"].as_bool(), res[2]["status"].as_u64()),
        (Some(false), Some(410))
    );
    assert_eq!(res[3]["state"]["a"], "1");
    assert_eq!(
        (res[4]["ok"].as_bool(), res[4]["status"].as_u64()),
        (Some(false), Some(400))
    );
    assert_eq!(res[5]["ok"], true);
    assert_eq!(text(&a.recv_within(5).await.unwrap()), "hi group");
    assert_eq!(
        a.recv_within(5).await.unwrap(),
        switchboard_ws::Message::Binary(bytes::Bytes::from_static(&[0, 1]))
    );
    let (s, r) = api(
        &gw,
        "GET",
        &format!("/v1/connections/{ida}"),
        "",
        "text/plain",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(r["groups"], serde_json::json!(["room:b"]));
    assert_eq!(r["state"]["a"], "1");
}

#[tokio::test]
async fn a_stalled_member_costs_the_others_nothing() {
    let (gw, fs) = setup("outbound_queue_messages = 16\nmax_message_bytes = 65536\nmax_frame_bytes = 65536\noutbound_queue_bytes = 1048576\n").await;
    let (stalled, _) = client(&gw, &fs, "groups=room:s").await;
    let (mut ok, _) = client(&gw, &fs, "groups=room:s").await;
    let payload = "y".repeat(60_000);
    let mut dropped = 0;
    for i in 0..200 {
        let (s, r) = api(
            &gw,
            "POST",
            "/v1/groups/room:s/messages",
            &payload,
            "text/plain",
        )
        .await;
        assert_eq!(s, 200);
        dropped += r["dropped"].as_u64().unwrap();
        let m = ok
            .recv_within(5)
            .await
            .unwrap_or_else(|| panic!("healthy member missed message {i}"));
        assert_eq!(text(&m).len(), 60_000);
    }
    assert!(dropped >= 1, "the stalled member's queue overflowed");
    let mut closes = 0.0;
    for _ in 0..50 {
        closes = gw.metric("switchboard_closes_total{code=\"1013\"}").await;
        if closes > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closes, 1.0, "the stalled member is closed with 1013");
    drop(stalled);
}

#[tokio::test]
async fn the_management_api_v1_requires_auth() {
    let (gw, _fs) = setup("").await;
    let resp = raw_request(gw.mgmt, b"POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").await;
    assert_eq!(parse_status(&resp).0, 403);
    assert_eq!(
        header(&resp, "x-amzn-errortype").as_deref(),
        Some("ForbiddenException")
    );
}

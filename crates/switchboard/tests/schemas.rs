//! Per-route message schemas, end to end: a message that is not JSON or does not pass its
//! route's schema gets the error frame and never reaches the function (the function
//! server records every event it receives).

mod common;

use common::function_server::{proxy, FunctionServer};
use common::*;

const METRIC: &str = "switchboard_messages_rejected_total{reason=\"schema\"}";

/// `send` takes a chat message (draft 2020-12); `$default` takes `{"kind": string}`
/// (draft 7); `free` has no schema.
fn gateway(url: &str, dir: &std::path::Path) -> Gateway {
    std::fs::write(
        dir.join("send.json"),
        r#"{
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["action", "text"],
            "properties": {
                "action": {"const": "send"},
                "text": {"type": "string", "maxLength": 500}
            },
            "additionalProperties": false
        }"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("default.json"),
        r#"{
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string"},
                "n": {"type": "integer"},
                "m": {"type": "integer"},
                "o": {"type": "integer"}
            }
        }"#,
    )
    .unwrap();
    let d = dir.display();
    Gateway::start(&format!(
        r#"
[functions.f]
kind = "http"
url = "{url}"
timeout_ms = 2000

[routes."$default"]
function = "f"
two_way = true
schema = "{d}/default.json"
[routes.send]
function = "f"
two_way = true
schema = "{d}/send.json"
[routes.free]
function = "f"
two_way = true
"#
    ))
}

/// The error frame's JSON, checked for the AWS shape; its `errors`.
fn refusal(m: &switchboard_ws::Message, connection_id: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(text(m)).unwrap();
    assert_eq!(v["message"], "Invalid request body", "{v}");
    assert_eq!(v["connectionId"], connection_id, "{v}");
    assert!(
        v["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    let errors = v["errors"].as_array().expect("errors").clone();
    assert!(!errors.is_empty() && errors.len() <= 3, "{v}");
    for e in &errors {
        assert!(e["instancePath"].is_string(), "{v}");
        assert!(e["message"].is_string(), "{v}");
    }
    errors
}

#[tokio::test]
async fn messages_that_fail_their_schema_never_reach_the_function() {
    let fs = FunctionServer::start(|e| {
        let body = e["body"].as_str().unwrap_or("");
        proxy(200, &format!("ok {body}"))
    })
    .await;
    let dir = std::env::temp_dir().join(format!("sb-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gw = gateway(&fs.url(), &dir);
    let mut c = connect(gw.ws).await;
    let messages = || fs.events_of("MESSAGE").len();

    // Valid on both schemas: invoked.
    c.send_text(r#"{"action":"send","text":"hello"}"#).await;
    let m = c.recv_within(5).await.expect("answer");
    assert_eq!(text(&m), r#"ok {"action":"send","text":"hello"}"#);
    let id = fs.events_of("MESSAGE")[0]["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send_text(r#"{"kind":"note"}"#).await;
    let m = c.recv_within(5).await.expect("answer");
    assert_eq!(text(&m), r#"ok {"kind":"note"}"#);
    assert_eq!(messages(), 2);

    // Not JSON: no route can be read, so `$default`, whose schema refuses it.
    c.send_text(r#"{"action":"send","#).await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert_eq!(e[0]["instancePath"], "");
    assert!(e[0]["message"].as_str().unwrap().starts_with("not JSON"));

    // Wrong type.
    c.send_text(r#"{"action":"send","text":5}"#).await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["instancePath"], "/text");

    // Missing field.
    c.send_text(r#"{"action":"send"}"#).await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert!(e[0]["message"].as_str().unwrap().contains("\"text\""));

    // Extra property under `additionalProperties: false`.
    c.send_text(r#"{"action":"send","text":"hi","admin":true}"#)
        .await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert!(e[0]["message"].as_str().unwrap().contains("admin"));

    // `$default`'s draft 7 schema; four faults, three reported.
    c.send_text(r#"{"kind":1}"#).await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert_eq!(e[0]["instancePath"], "/kind");
    c.send_text(r#"{"kind":1,"n":"x","m":"x","o":"x"}"#).await;
    let e = refusal(&c.recv_within(5).await.expect("refusal"), &id);
    assert_eq!(e.len(), 3);

    // A binary frame is not JSON text.
    c.send_binary(br#"{"kind":"note"}"#).await;
    refusal(&c.recv_within(5).await.expect("refusal"), &id);

    // A route without a schema takes anything; answered after the refusals, in order.
    c.send_text(r#"{"action":"free","x":[1,2]}"#).await;
    let m = c.recv_within(5).await.expect("answer");
    assert_eq!(text(&m), r#"ok {"action":"free","x":[1,2]}"#);
    assert_eq!(messages(), 3, "refused messages reached the function");
    gw.wait_metric(METRIC, 7.0).await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! Managed functions through the gateway: an unmodified AWS-style handler run by the
//! real `awslambdaric`, calling `boto3.client("apigatewaymanagementapi")` with no
//! endpoint or keys in its code (the gateway injects them).

mod common;

use common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

const HANDLER: &str = r#"
import json
import boto3

# As on AWS: no endpoint, no keys in the code.
client = boto3.client("apigatewaymanagementapi")

def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "MESSAGE":
        client.post_to_connection(ConnectionId=ctx["connectionId"],
                                  Data=("pushed:" + event["body"]).encode())
        return {"statusCode": 200, "body": json.dumps({"route": ctx["routeKey"], "requestId": context.aws_request_id})}
    return {"statusCode": 200}
"#;

#[tokio::test]
async fn an_unmodified_boto3_handler_under_awslambdaric_talks_back_through_the_gateway() {
    let dir = std::env::temp_dir().join(format!("sb-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.py"), HANDLER).unwrap();
    let python = format!("{ROOT}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "run scripts/install-deps.sh first"
    );
    let gw = Gateway::start(&format!(
        r#"
[functions.f]
kind = "lambda"
command = ["{python}", "-m", "awslambdaric", "app.handler"]
handler = "app.handler"
dir = {dir:?}
timeout_ms = 20000
[routes."$connect"]
function = "f"
[routes."$default"]
function = "f"
two_way = true
"#,
        dir = dir.display().to_string()
    ));
    let mut c = connect_with(gw.ws, Handshake::default())
        .await
        .expect("$connect through a cold worker");
    c.send_text("hello").await;
    // Two frames: the boto3 post (during the invocation) and the two-way answer.
    let got = [
        text(&c.recv_within(20).await.unwrap()).to_string(),
        text(&c.recv_within(20).await.unwrap()).to_string(),
    ];
    assert!(got.iter().any(|m| m == "pushed:hello"), "{got:?}");
    let answer = got
        .iter()
        .find(|m| m.starts_with('{'))
        .expect("the two-way answer");
    let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
    assert_eq!(answer["route"], "$default");
    assert!(answer["requestId"].as_str().unwrap().len() > 8);
    let _ = std::fs::remove_dir_all(dir);
}

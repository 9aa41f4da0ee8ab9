//! The real AWS SDK clients against the `@connections` API: boto3 (Python) and the AWS JS
//! SDK v3 (Node), both signing with SigV4. `scripts/install-deps.sh` installs them.

mod common;

use std::process::Command;

use common::function_server::{proxy, FunctionServer};
use common::*;

const AKID: &str = "AKIDSWITCHBOARDTEST";
const SECRET: &str = "switchboard/test/secret/key/0123456789";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[derive(Clone, Copy)]
enum Sdk {
    Boto3,
    JsV3,
}

impl Sdk {
    fn command(self) -> Command {
        match self {
            Sdk::Boto3 => {
                let mut c = Command::new(format!("{ROOT}/.venv/bin/python"));
                c.arg(format!("{ROOT}/tests/compat/boto3_client.py"));
                c
            }
            Sdk::JsV3 => {
                let mut c = Command::new("node");
                c.arg(format!("{ROOT}/tests/compat/awssdk_client.mjs"));
                c
            }
        }
    }

    /// Runs commands (`post ID DATA`, `get ID`, `delete ID`); one JSON result each.
    fn run(self, gw: &Gateway, secret: &str, commands: &[&[&str]]) -> Vec<serde_json::Value> {
        let mut cmd = self.command();
        for (i, c) in commands.iter().enumerate() {
            if i > 0 {
                cmd.arg("--");
            }
            cmd.args(*c);
        }
        let out = cmd
            .env("SWITCHBOARD_ENDPOINT", format!("http://{}/prod", gw.mgmt))
            .env("AWS_REGION", "eu-west-3")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .expect("SDK client missing: run scripts/install-deps.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn exercise(sdk: Sdk) {
    // A $connect function tells the test its connection id.
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = Gateway::start(&format!(
        r#"
[[management.credentials]]
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"

[functions.f]
kind = "http"
url = "{}"

[routes."$connect"]
function = "f"
"#,
        fs.url()
    ));
    let mut c = connect(gw.ws).await;
    let id = fs.wait_for("CONNECT", 1).await[0]["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_string();

    let r = sdk.run(
        &gw,
        SECRET,
        &[&["post", &id, "hello from the SDK"], &["get", &id]],
    );
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "hello from the SDK");
    assert_eq!(r[1]["ok"], true, "{r:?}");
    assert_eq!(r[1]["body"]["Identity"]["SourceIp"], "127.0.0.1", "{r:?}");
    assert!(r[1]["body"]["ConnectedAt"].is_string(), "{r:?}");
    assert!(r[1]["body"]["LastActiveAt"].is_string(), "{r:?}");

    let r = sdk.run(&gw, SECRET, &[&["delete", &id]]);
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert_eq!(c.expect_close(5).await, Some(1000));

    let r = sdk.run(
        &gw,
        SECRET,
        &[&["post", &id, "too late"], &["get", &id], &["delete", &id]],
    );
    for item in &r {
        assert_eq!(
            (item["status"].as_u64(), item["error"].as_str()),
            (Some(410), Some("GoneException")),
            "{r:?}"
        );
    }
    // A wrong secret: ForbiddenException.
    let r = sdk.run(&gw, "not-the-secret", &[&["get", &id]]);
    assert_eq!(
        (r[0]["status"].as_u64(), r[0]["error"].as_str()),
        (Some(403), Some("ForbiddenException")),
        "{r:?}"
    );
}

#[tokio::test]
async fn boto3_posts_gets_deletes_and_sees_gone() {
    exercise(Sdk::Boto3).await;
}

#[tokio::test]
async fn aws_js_sdk_v3_posts_gets_deletes_and_sees_gone() {
    exercise(Sdk::JsV3).await;
}

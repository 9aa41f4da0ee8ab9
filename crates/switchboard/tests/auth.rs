//! Authorizers at the handshake, end to end: JWT (HS256 here; RS256/ES256/JWKS are covered
//! in switchboard-auth's own tests) and a REQUEST authorizer function.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::function_server::{proxy, FunctionServer, Reply};
use common::*;
use hmac::{Hmac, Mac};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const TOKEN: &str = "test-token-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

fn good_claims() -> serde_json::Value {
    serde_json::json!({"sub": "user-42", "exp": now() + 600, "aud": "chat", "iss": "tests", "roles": ["room:a", "room:b"], "email": "ada@example.com"})
}

async fn jwt_gateway(fs: &FunctionServer, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[management]
bearer_tokens = ["{TOKEN}"]
[authorizer]
kind = "jwt"
secret = "{SECRET}"
algorithms = ["HS256"]
issuer = "tests"
audience = ["chat"]
groups_claim = "roles"
leeway_secs = 0
{extra}
[functions.f]
kind = "http"
url = "{}"
[routes."$connect"]
function = "f"
[routes."$default"]
function = "f"
two_way = true
"#,
        fs.url()
    ))
}

fn status_of(r: Result<Client, String>) -> u16 {
    match r {
        Ok(_) => 101,
        Err(head) => head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

#[tokio::test]
async fn jwt_tokens_from_every_position_and_every_refusal() {
    let fs = FunctionServer::start(|e| {
        if e["requestContext"]["eventType"] == "MESSAGE" {
            return Reply::Body(
                serde_json::json!({"statusCode": 200, "body": e["requestContext"].to_string()})
                    .to_string(),
            );
        }
        proxy(200, "")
    })
    .await;
    let gw = jwt_gateway(&fs, "").await;
    let good = jwt(good_claims(), SECRET);
    let bearer = format!("Bearer {good}");
    let hs = |headers: Vec<(&'static str, String)>, path: String| {
        let headers: Vec<(&'static str, &'static str)> = headers
            .into_iter()
            .map(|(k, v)| (k, &*Box::leak(v.into_boxed_str())))
            .collect();
        Handshake {
            path: Box::leak(path.into_boxed_str()),
            headers,
        }
    };
    // Header, query and subprotocol.
    let mut c = connect_with(
        gw.ws,
        hs(vec![("Authorization", bearer.clone())], "/".into()),
    )
    .await
    .unwrap();
    assert_eq!(
        status_of(connect_with(gw.ws, hs(vec![], format!("/?token={good}"))).await),
        101
    );
    let via_protocol = connect_with(
        gw.ws,
        hs(
            vec![("Sec-WebSocket-Protocol", format!("bearer.{good}"))],
            "/".into(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        header(&via_protocol.response, "sec-websocket-protocol").as_deref(),
        Some(format!("bearer.{good}").as_str()),
        "the token entry is echoed so browsers accept the handshake"
    );
    // The authorizer's context is on later events; claims set user and groups.
    c.send_text("hi").await;
    let rc: serde_json::Value =
        serde_json::from_str(text(&c.recv_within(5).await.unwrap())).unwrap();
    assert_eq!(rc["authorizer"]["principalId"], "user-42");
    assert_eq!(rc["authorizer"]["email"], "ada@example.com");
    assert_eq!(rc["switchboard"]["userId"], "user-42");
    assert_eq!(
        rc["switchboard"]["groups"],
        serde_json::json!(["room:a", "room:b"])
    );
    assert_eq!(
        fs.events_of("CONNECT")[0]["requestContext"]["authorizer"]["principalId"],
        "user-42"
    );

    // Refusals.
    let mut expired = good_claims();
    expired["exp"] = (now() - 10).into();
    let mut early = good_claims();
    early["nbf"] = (now() + 300).into();
    let mut wrong_aud = good_claims();
    wrong_aud["aud"] = "other".into();
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let cases: Vec<(String, u16)> = vec![
        (String::new(), 401),
        (jwt(expired, SECRET), 403),
        (jwt(early, SECRET), 403),
        (jwt(wrong_aud, SECRET), 403),
        (
            jwt(good_claims(), "a-different-secret-of-32-bytes-or-more"),
            403,
        ),
        (none_alg, 403),
        ("not.a.jwt".into(), 403),
    ];
    for (token, want) in cases {
        let headers = if token.is_empty() {
            vec![]
        } else {
            vec![("Authorization", format!("Bearer {token}"))]
        };
        assert_eq!(
            status_of(connect_with(gw.ws, hs(headers, "/".into())).await),
            want,
            "{token}"
        );
    }
    assert_eq!(
        fs.events_of("CONNECT").len(),
        3,
        "refused handshakes never reach $connect"
    );
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_with_1008() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = jwt_gateway(&fs, "close_on_expiry = true").await;
    let mut claims = good_claims();
    claims["exp"] = (now() + 2).into();
    let auth: &'static str = Box::leak(format!("Bearer {}", jwt(claims, SECRET)).into_boxed_str());
    let mut c = connect_with(
        gw.ws,
        Handshake {
            path: "/",
            headers: vec![("Authorization", auth)],
        },
    )
    .await
    .unwrap();
    assert_eq!(c.expect_close(5).await, Some(1008));
}

#[tokio::test]
async fn request_authorizer_allows_denies_fails_and_caches() {
    let fs = FunctionServer::start(|e| {
        if e["type"] == "REQUEST" {
            return match e["headers"]["X-Key"].as_str() {
                Some("good") => Reply::Body(
                    serde_json::json!({"principalId": "p-1", "policyDocument": {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": e["methodArn"]}]}, "context": {"tier": "gold", "n": 3, "nested": {"dropped": true}}}).to_string(),
                ),
                Some("bad") => Reply::Body(
                    serde_json::json!({"principalId": "p-2", "policyDocument": {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": e["methodArn"]}]}}).to_string(),
                ),
                Some("slow") => Reply::Delay(Duration::from_secs(3), Box::new(proxy(200, ""))),
                _ => Reply::Status(500, "broken".into()),
            };
        }
        if e["requestContext"]["eventType"] == "MESSAGE" {
            return Reply::Body(serde_json::json!({"statusCode": 200, "body": e["requestContext"]["authorizer"].to_string()}).to_string());
        }
        proxy(200, "")
    })
    .await;
    let gw = Gateway::start(&format!(
        r#"
[authorizer]
kind = "request"
function = "auth"
identity_sources = ["header:X-Key"]
cache_ttl_secs = 60
[functions.auth]
kind = "http"
url = "{0}"
timeout_ms = 1000
[functions.f]
kind = "http"
url = "{0}"
[routes."$connect"]
function = "f"
[routes."$default"]
function = "f"
two_way = true
"#,
        fs.url()
    ));
    let with_key = |k: &'static str| Handshake {
        path: "/",
        headers: vec![("X-Key", k)],
    };
    let mut c = connect_with(gw.ws, with_key("good")).await.unwrap();
    c.send_text("x").await;
    let auth: serde_json::Value =
        serde_json::from_str(text(&c.recv_within(5).await.unwrap())).unwrap();
    assert_eq!(auth["principalId"], "p-1");
    assert_eq!(auth["tier"], "gold");
    assert_eq!(auth["n"], 3);
    assert!(
        auth.get("nested").is_none(),
        "only strings, numbers and booleans pass"
    );
    assert_eq!(status_of(connect_with(gw.ws, with_key("bad")).await), 403);
    assert_eq!(
        status_of(connect_with(gw.ws, with_key("broken")).await),
        500
    );
    assert_eq!(status_of(connect_with(gw.ws, with_key("slow")).await), 500);
    assert_eq!(
        status_of(connect_with(gw.ws, Handshake::default()).await),
        401
    );
    // Cache: a second "good" handshake does not ask the function again.
    let asked = fs
        .events
        .lock()
        .iter()
        .filter(|e| e["type"] == "REQUEST")
        .count();
    let _c2 = connect_with(gw.ws, with_key("good")).await.unwrap();
    let asked_again = fs
        .events
        .lock()
        .iter()
        .filter(|e| e["type"] == "REQUEST")
        .count();
    assert_eq!(asked, asked_again, "cached by identity source");
    let req = fs
        .events
        .lock()
        .iter()
        .find(|e| e["type"] == "REQUEST")
        .cloned()
        .unwrap();
    assert!(req["methodArn"]
        .as_str()
        .unwrap()
        .ends_with("/prod/$connect"));
    assert_eq!(req["requestContext"]["eventType"], "CONNECT");
}

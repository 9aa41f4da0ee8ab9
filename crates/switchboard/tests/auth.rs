//! Authorizers at the handshake, end to end: JWT (HS256 here; RS256/ES256/JWKS are covered
//! in switchboard-auth's own tests) and a REQUEST authorizer function.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::function_server::{proxy, FunctionServer, Reply};
use common::*;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const TOKEN: &str = "test-token-0123456789";

fn good_claims() -> serde_json::Value {
    serde_json::json!({"sub": "user-42", "exp": unix_now() + 600, "aud": "chat", "iss": "tests", "roles": ["room:a", "room:b"], "email": "ada@example.com"})
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

/// Extra request headers.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A refused handshake's answer: (status, Content-Type, body). The request asks the
/// gateway to close after answering, so the body is read to its end.
async fn refusal(addr: std::net::SocketAddr, headers: Headers<'_>) -> (u16, String, String) {
    let mut req = String::from(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let resp = raw_request(addr, req.as_bytes()).await;
    let (status, body) = parse_status(&resp);
    let content_type = header(resp.split("\r\n\r\n").next().unwrap(), "content-type");
    (status, content_type.unwrap_or_default(), body)
}

fn rejected(label: &str) -> String {
    format!("switchboard_handshakes_rejected_total{{reason=\"{label}\"}}")
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
    let good = hs256_jwt(good_claims(), SECRET);
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
    expired["exp"] = (unix_now() - 10).into();
    let mut early = good_claims();
    early["nbf"] = (unix_now() + 300).into();
    let mut wrong_aud = good_claims();
    wrong_aud["aud"] = "other".into();
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let bad_signature = hs256_jwt(good_claims(), "a-different-secret-of-32-bytes-or-more");
    let expired = hs256_jwt(expired, SECRET);
    // Each refusal: its status, AWS's message for it, its metric label and its log reason.
    let cases: Vec<(String, u16, &str, &str, &str)> = vec![
        (
            String::new(),
            401,
            "Unauthorized",
            "auth_missing",
            "no_token",
        ),
        (expired.clone(), 403, "Forbidden", "auth_expired", "expired"),
        (
            hs256_jwt(early, SECRET),
            403,
            "Forbidden",
            "auth_claims",
            "not_yet_valid",
        ),
        (
            hs256_jwt(wrong_aud, SECRET),
            403,
            "Forbidden",
            "auth_claims",
            "wrong_audience",
        ),
        (
            bad_signature.clone(),
            403,
            "Forbidden",
            "auth_bad_signature",
            "bad_signature",
        ),
        (
            none_alg.clone(),
            403,
            "Forbidden",
            "auth_alg_none",
            "alg_none",
        ),
        (
            "not.a.jwt".into(),
            403,
            "Forbidden",
            "auth_malformed",
            "malformed",
        ),
    ];
    for (token, status, message, label, _) in &cases {
        let before = gw.metric(&rejected(label)).await;
        let bearer = format!("Bearer {token}");
        let headers: Headers = if token.is_empty() {
            &[]
        } else {
            &[("Authorization", &bearer)]
        };
        let (got, content_type, body) = refusal(gw.ws, headers).await;
        assert_eq!(got, *status, "{token}");
        assert_eq!(content_type, "application/json", "{token}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "message": message }),
            "{token}"
        );
        assert_eq!(gw.metric(&rejected(label)).await, before + 1.0, "{label}");
    }
    let metrics = gw.metrics().await;
    for old in ["denied", "missing_identity", "failed"] {
        assert!(!metrics.contains(&rejected(old)), "{old}");
    }
    assert_eq!(
        fs.events_of("CONNECT").len(),
        3,
        "refused handshakes never reach $connect"
    );

    // Each refusal is logged once with its reason and the client's address, at INFO for
    // the first of its label (the second `auth_claims` within a second drops to DEBUG);
    // no token is logged.
    drop((c, via_protocol));
    let (_, log) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    let mut labels_seen = Vec::new();
    for (token, _, _, label, reason) in &cases {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("handshake refused by the authorizer")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .collect();
        assert_eq!(lines.len(), 1, "one line for {reason}:\n{log}");
        assert!(lines[0].contains("client=127.0.0.1"), "{}", lines[0]);
        if !labels_seen.contains(label) {
            assert!(lines[0].contains(" INFO "), "{}", lines[0]);
            labels_seen.push(label);
        }
        if !token.is_empty() {
            assert!(
                !log.contains(token.as_str()),
                "the token is in the log:\n{log}"
            );
        }
    }
    // The signature is what makes a token a credential: no part of one is logged either,
    // nor of the good one that travelled in the query string.
    for token in [&expired, &bad_signature, &good] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a signature is in the log");
    }
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_with_1008() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = jwt_gateway(&fs, "close_on_expiry = true").await;
    let mut claims = good_claims();
    claims["exp"] = (unix_now() + 2).into();
    let auth: &'static str =
        Box::leak(format!("Bearer {}", hs256_jwt(claims, SECRET)).into_boxed_str());
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
    // Deny, a failing function, a slow one and no identity source, as AWS answers them.
    let cases: [(Headers, u16, &str, &str); 4] = [
        (&[("X-Key", "bad")], 403, "Forbidden", "auth_denied"),
        (
            &[("X-Key", "broken")],
            500,
            "Internal server error",
            "auth_error",
        ),
        (
            &[("X-Key", "slow")],
            500,
            "Internal server error",
            "auth_error",
        ),
        (&[], 401, "Unauthorized", "auth_missing"),
    ];
    for (headers, status, message, label) in cases {
        let before = gw.metric(&rejected(label)).await;
        let (got, content_type, body) = refusal(gw.ws, headers).await;
        assert_eq!(
            (got, content_type.as_str()),
            (status, "application/json"),
            "{headers:?}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "message": message })
        );
        assert_eq!(gw.metric(&rejected(label)).await, before + 1.0, "{label}");
    }
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

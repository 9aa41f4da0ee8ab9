//! `kind = "request"` against a real HTTP function (`HttpInvoker` and a tiny server).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchboard_auth::{AnswerError, AuthError, Authorizer, Failure, Missing, Refusal};
use switchboard_core::config::{AuthorizerConfig, HttpFunctionConfig};
use switchboard_core::event::ApiIdentity;
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::{InvokeError, Invoker};

fn invoker(url: &str, timeout_ms: u64) -> Arc<dyn Invoker> {
    let cfg: HttpFunctionConfig =
        serde_json::from_value(json!({"url": url, "timeout_ms": timeout_ms})).unwrap();
    let api = ApiIdentity {
        stage: "prod".into(),
        domain_name: "localhost".into(),
        api_id: "api1".into(),
    };
    Arc::new(HttpInvoker::new("auth", &cfg, api).unwrap())
}

async fn request_authorizer(server: &Server, extra: Value) -> Authorizer {
    let mut cfg = json!({"kind": "request", "function": "auth",
                         "identity_sources": ["header:Authorization"]});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let timeout = cfg
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(2000);
    cfg.as_object_mut().unwrap().remove("timeout_ms");
    let cfg: AuthorizerConfig = serde_json::from_value(cfg).unwrap();
    Authorizer::new(&cfg, Some(invoker(&server.url, timeout)))
        .await
        .unwrap()
}

fn allow(principal: &str, context: Value) -> String {
    json!({"principalId": principal,
           "policyDocument": {"Version": "2012-10-17", "Statement": [
               {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:aws:execute-api:*"}]},
           "context": context})
    .to_string()
}

fn deny() -> String {
    json!({"principalId": "x", "policyDocument": {"Statement": [
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "*"}]}})
    .to_string()
}

/// Allows `Bearer good*` tokens, denies everything else.
async fn policy_server() -> Server {
    Server::start(|event| {
        let auth = event["headers"]["Authorization"]
            .as_str()
            .unwrap_or_default();
        if auth.starts_with("Bearer good") {
            Reply::ok(allow(
                "user-7",
                json!({"userId": "ada", "groups": "admins, beta", "plan": "pro", "n": 3,
                       "flag": true, "obj": {"a": 1}, "list": [1], "nil": null}),
            ))
        } else {
            Reply::ok(deny())
        }
    })
    .await
}

#[tokio::test]
async fn allow_maps_the_answer_and_the_function_gets_the_request_event() {
    let server = policy_server().await;
    let a = request_authorizer(&server, json!({})).await;
    let hs = Hs::bearer("good-1").query("room", "lobby");
    let id = check(&a, &hs).await.unwrap();
    assert_eq!(id.principal_id, "user-7");
    assert_eq!(id.user_id.as_deref(), Some("ada"));
    assert_eq!(id.groups, ["admins", "beta"]);
    assert_eq!(id.expires_at, None);
    assert_eq!(id.token_protocol, None);
    let mut keys: Vec<_> = id.context.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "flag",
            "groups",
            "integrationLatency",
            "n",
            "plan",
            "principalId",
            "userId"
        ],
        "objects, arrays and nulls are dropped"
    );
    assert_eq!(id.context["principalId"], "user-7");
    assert_eq!(id.context["plan"], "pro");

    let event = server.last_request();
    assert_eq!(event["type"], "REQUEST");
    assert!(
        event["methodArn"]
            .as_str()
            .unwrap()
            .ends_with(":api1/prod/$connect"),
        "{}",
        event["methodArn"]
    );
    assert_eq!(event["headers"]["Authorization"], "Bearer good-1");
    assert_eq!(
        event["multiValueHeaders"]["Authorization"],
        json!(["Bearer good-1"])
    );
    assert_eq!(event["queryStringParameters"]["room"], "lobby");
    assert_eq!(event["stageVariables"], json!({}));
    let rc = &event["requestContext"];
    assert_eq!(rc["routeKey"], "$connect");
    assert_eq!(rc["eventType"], "CONNECT");
    assert_eq!(rc["requestId"], "req-1");
    assert_eq!(rc["connectionId"], hs.conn.id.to_string());
    assert_eq!(rc["identity"]["sourceIp"], "10.1.2.3");
}

#[tokio::test]
async fn deny_is_403_and_cached() {
    let server = policy_server().await;
    let a = request_authorizer(&server, json!({})).await;
    let hs = Hs::bearer("bad");
    let err = check(&a, &hs).await.unwrap_err();
    assert_eq!(err, AuthError::Denied(Refusal::DeniedByFunction));
    assert_eq!(err.status(), 403);
    assert_eq!(check(&a, &hs).await.unwrap_err().status(), 403);
    assert_eq!(server.hits(), 1, "the denial was cached");
}

#[tokio::test]
async fn simple_answers() {
    let server = Server::start(|event| {
        let ok = event["queryStringParameters"]["token"] == "yes";
        Reply::ok(json!({"isAuthorized": ok, "context": {"userId": "u1"}}).to_string())
    })
    .await;
    let a = request_authorizer(&server, json!({"identity_sources": ["query:token"]})).await;
    let id = check(&a, &Hs::new().query("token", "yes")).await.unwrap();
    assert_eq!(id.user_id.as_deref(), Some("u1"));
    assert_eq!(
        check(&a, &Hs::new().query("token", "no"))
            .await
            .unwrap_err(),
        AuthError::Denied(Refusal::DeniedByFunction)
    );
}

#[tokio::test]
async fn function_errors_are_500_and_not_cached() {
    let server = Server::start(|_| Reply {
        status: 500,
        body: "boom".into(),
        delay: Duration::ZERO,
    })
    .await;
    let a = request_authorizer(&server, json!({})).await;
    let hs = Hs::bearer("good");
    for expected_hits in [1, 2] {
        let err = check(&a, &hs).await.unwrap_err();
        assert!(matches!(err, AuthError::Failed(_)), "{err:?}");
        assert_eq!(err.status(), 500);
        assert!(
            matches!(err, AuthError::Failed(Failure::Function(_))),
            "{err:?}"
        );
        assert_eq!(err.reason(), "function_error");
        assert!(err.to_string().contains("HTTP 500"), "{err}");
        assert_eq!(server.hits(), expected_hits);
    }

    // An answer that is not an authorizer answer.
    let server = Server::start(|_| Reply::ok("{\"hello\": \"world\"}")).await;
    let a = request_authorizer(&server, json!({})).await;
    let err = check(&a, &hs).await.unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(
        err,
        AuthError::Failed(Failure::Answer(AnswerError::NeitherForm))
    );
}

#[tokio::test]
async fn function_timeout_is_500() {
    let server = Server::start(|_| Reply {
        status: 200,
        body: allow("late", json!({})),
        delay: Duration::from_secs(2),
    })
    .await;
    let a = request_authorizer(&server, json!({"timeout_ms": 200})).await;
    let started = tokio::time::Instant::now();
    let err = check(&a, &Hs::bearer("good")).await.unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(
        err,
        AuthError::Failed(Failure::Function(InvokeError::Timeout))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn cache_hits_ttl_and_bound() {
    let server = policy_server().await;
    let a = request_authorizer(&server, json!({"cache_ttl_secs": 1})).await;
    let (one, two) = (Hs::bearer("good-1"), Hs::bearer("good-2"));
    check(&a, &one).await.unwrap();
    let cached = check(&a, &one).await.unwrap();
    assert_eq!(cached.principal_id, "user-7");
    assert_eq!(server.hits(), 1, "second call answered from the cache");
    check(&a, &two).await.unwrap();
    assert_eq!(server.hits(), 2, "another identity is another entry");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    check(&a, &one).await.unwrap();
    assert_eq!(server.hits(), 3, "expired after cache_ttl_secs");

    // One entry at most: the older identity is evicted.
    let a = request_authorizer(&server, json!({"cache_max_entries": 1})).await;
    let before = server.hits();
    for hs in [&one, &two, &two, &one] {
        check(&a, hs).await.unwrap();
    }
    assert_eq!(server.hits() - before, 3);

    // No cache at all.
    let a = request_authorizer(&server, json!({"cache_ttl_secs": 0})).await;
    let before = server.hits();
    check(&a, &one).await.unwrap();
    check(&a, &one).await.unwrap();
    assert_eq!(server.hits() - before, 2);
}

#[tokio::test]
async fn every_identity_source_is_required_and_part_of_the_key() {
    let server = policy_server().await;
    let a = request_authorizer(
        &server,
        json!({"identity_sources": ["header:authorization", "query:room"]}),
    )
    .await;
    for hs in [Hs::new(), Hs::bearer("good"), Hs::new().query("room", "a")] {
        let err = check(&a, &hs).await.unwrap_err();
        assert_eq!(err, AuthError::MissingIdentity(Missing::IdentitySource));
        assert_eq!(err.status(), 401);
    }
    assert_eq!(
        server.hits(),
        0,
        "the function is not asked without an identity"
    );
    check(&a, &Hs::bearer("good").query("room", "a"))
        .await
        .unwrap();
    check(&a, &Hs::bearer("good").query("room", "b"))
        .await
        .unwrap();
    check(&a, &Hs::bearer("good").query("room", "a"))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn configuration_errors() {
    let cfg: AuthorizerConfig = serde_json::from_value(json!({"kind": "request",
        "function": "auth", "identity_sources": ["header:Authorization"]}))
    .unwrap();
    let e = Authorizer::new(&cfg, None).await.unwrap_err();
    assert_eq!(e.key, "authorizer.function", "{e}");
    let inv = invoker("http://127.0.0.1:9/", 100);
    let cfg: AuthorizerConfig = serde_json::from_value(json!({"kind": "request",
        "function": "auth", "identity_sources": ["cookie:session"]}))
    .unwrap();
    let e = Authorizer::new(&cfg, Some(Arc::clone(&inv)))
        .await
        .unwrap_err();
    assert_eq!(e.key, "authorizer.identity_sources[0]", "{e}");
    let cfg: AuthorizerConfig = serde_json::from_value(json!({"kind": "request",
        "function": "auth", "identity_sources": []}))
    .unwrap();
    let e = Authorizer::new(&cfg, Some(Arc::clone(&inv)))
        .await
        .unwrap_err();
    assert_eq!(e.key, "authorizer.identity_sources", "{e}");
    // Unreachable function: 500, not 401/403.
    let cfg: AuthorizerConfig = serde_json::from_value(json!({"kind": "request",
        "function": "auth", "identity_sources": ["header:Authorization"]}))
    .unwrap();
    let a = Authorizer::new(&cfg, Some(inv)).await.unwrap();
    assert_eq!(check(&a, &Hs::bearer("x")).await.unwrap_err().status(), 500);
}

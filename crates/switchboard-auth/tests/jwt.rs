//! `kind = "jwt"` against real tokens signed in the test with ring, real key files and a
//! real HTTP JWKS server.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use switchboard_auth::{AuthError, Failure, Missing, Refusal};

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

fn hs() -> Signer {
    Signer::Hs256(SECRET.as_bytes().to_vec())
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "user-1", "exp": now() + 600, "iat": now()});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn hs_authorizer(extra: Value) -> switchboard_auth::Authorizer {
    let mut cfg = json!({"kind": "jwt", "secret": SECRET});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    authorizer(cfg).await
}

fn denied(r: Result<switchboard_auth::Identity, AuthError>) -> Refusal {
    match r {
        Err(AuthError::Denied(why)) => why,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_hs256_token_gives_an_identity() {
    let a = hs_authorizer(json!({})).await;
    let exp = now() + 600;
    let token = hs().token(
        None,
        &json!({"sub": "user-1", "exp": exp, "email": "a@b.c", "admin": true,
                "score": 7, "aud": ["x", "y"], "meta": {"a": 1}}),
    );
    let id = check(&a, &Hs::bearer(&token)).await.unwrap();
    assert_eq!(id.principal_id, "user-1");
    assert_eq!(id.user_id.as_deref(), Some("user-1"));
    assert!(id.groups.is_empty());
    assert_eq!(id.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
    assert_eq!(id.token_protocol, None);
    assert_eq!(id.context["principalId"], "user-1");
    assert_eq!(id.context["email"], "a@b.c");
    assert_eq!(id.context["admin"], true);
    assert_eq!(id.context["score"], 7);
    assert!(id.context["integrationLatency"].is_u64());
    // Arrays and objects are not allowed in an authorizer context.
    assert!(id.context.get("aud").is_none());
    assert!(id.context.get("meta").is_none());
    assert!(!a.close_on_expiry());
    let a = hs_authorizer(json!({"close_on_expiry": true})).await;
    assert!(a.close_on_expiry());
}

#[tokio::test]
async fn token_in_each_position() {
    let a = hs_authorizer(json!({})).await;
    let token = hs().token(None, &claims(json!({})));

    let id = check(&a, &Hs::bearer(&token)).await.unwrap();
    assert_eq!(id.token_protocol, None);

    let id = check(&a, &Hs::new().query("token", &token)).await.unwrap();
    assert_eq!(id.principal_id, "user-1");
    assert_eq!(id.token_protocol, None);

    let entry = format!("bearer.{token}");
    let hs_proto = Hs::new().protocol("chat.v1").protocol(&entry);
    let id = check(&a, &hs_proto).await.unwrap();
    assert_eq!(id.token_protocol.as_deref(), Some(entry.as_str()));

    // Configured names and order.
    let a = hs_authorizer(json!({"token_sources": ["protocol", "query"],
                                 "query_param": "access_token", "protocol_prefix": "jwt."}))
    .await;
    assert_eq!(
        check(&a, &Hs::bearer(&token)).await.unwrap_err(),
        AuthError::MissingIdentity(Missing::NoToken)
    );
    assert!(check(&a, &Hs::new().query("token", &token)).await.is_err());
    assert!(check(&a, &Hs::new().query("access_token", &token))
        .await
        .is_ok());
    let id = check(&a, &Hs::new().protocol(&format!("jwt.{token}")))
        .await
        .unwrap();
    assert_eq!(id.token_protocol, Some(format!("jwt.{token}")));
}

#[tokio::test]
async fn missing_token_is_401() {
    let a = hs_authorizer(json!({})).await;
    for hs in [
        Hs::new(),
        Hs::new().header("authorization", "Basic dXNlcjpwYXNz"),
        Hs::new().query("token", ""),
        Hs::new().protocol("chat").protocol("bearer."),
    ] {
        let err = check(&a, &hs).await.unwrap_err();
        assert_eq!(err, AuthError::MissingIdentity(Missing::NoToken));
        assert_eq!(err.status(), 401);
    }
}

#[tokio::test]
async fn time_claims_and_leeway() {
    let a = hs_authorizer(json!({"leeway_secs": 60})).await;
    let t = |c: Value| Hs::bearer(&hs().token(None, &c));
    let n = now();
    let err = check(&a, &t(json!({"sub": "u", "exp": n - 120})))
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::Denied(Refusal::Expired));
    assert_eq!(err.status(), 403);
    // Expired 30 s ago, within the 60 s leeway.
    assert!(check(&a, &t(json!({"sub": "u", "exp": n - 30})))
        .await
        .is_ok());
    // Valid from 30 s in the future: within leeway; 300 s: not yet.
    assert!(
        check(&a, &t(json!({"sub": "u", "exp": n + 600, "nbf": n + 30})))
            .await
            .is_ok()
    );
    assert_eq!(
        denied(check(&a, &t(json!({"sub": "u", "exp": n + 600, "nbf": n + 300}))).await),
        Refusal::NotYetValid
    );
    assert_eq!(
        denied(check(&a, &t(json!({"sub": "u"}))).await),
        Refusal::MissingExp
    );
    // No leeway: 30 s past exp is expired.
    let strict = hs_authorizer(json!({"leeway_secs": 0})).await;
    assert_eq!(
        denied(check(&strict, &t(json!({"sub": "u", "exp": n - 30}))).await),
        Refusal::Expired
    );
}

#[tokio::test]
async fn bad_signatures() {
    let a = hs_authorizer(json!({})).await;
    let other = Signer::Hs256(b"another-secret-another-secret-xx".to_vec());
    let token = other.token(None, &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&token)).await),
        Refusal::BadSignature
    );

    // A genuine token with its payload swapped.
    let good = hs().token(None, &claims(json!({})));
    let forged_payload = b64url(claims(json!({"sub": "admin"})).to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        denied(check(&a, &Hs::bearer(&forged)).await),
        Refusal::BadSignature
    );

    // Not a JWS at all.
    for junk in ["abc", "a.b.c", "x.y.z.w", "e30.e30.c2ln"] {
        assert_eq!(
            denied(check(&a, &Hs::bearer(junk)).await),
            Refusal::Malformed,
            "{junk}"
        );
    }
}

#[tokio::test]
async fn issuer_and_audience() {
    let a = hs_authorizer(json!({"issuer": "https://idp.test/", "audience": ["ws", "api"]})).await;
    let t = |c: Value| Hs::bearer(&hs().token(None, &claims(c)));
    assert!(
        check(&a, &t(json!({"iss": "https://idp.test/", "aud": "ws"})))
            .await
            .is_ok()
    );
    assert!(check(
        &a,
        &t(json!({"iss": "https://idp.test/", "aud": ["other", "api"]}))
    )
    .await
    .is_ok());
    assert_eq!(
        denied(check(&a, &t(json!({"iss": "https://idp.test/", "aud": "other"}))).await),
        Refusal::WrongAudience
    );
    assert_eq!(
        denied(check(&a, &t(json!({"iss": "https://idp.test/"}))).await),
        Refusal::WrongAudience
    );
    assert_eq!(
        denied(check(&a, &t(json!({"iss": "https://evil.test/", "aud": "ws"}))).await),
        Refusal::WrongIssuer
    );
}

#[tokio::test]
async fn alg_none_and_disallowed_algs_are_refused() {
    let a = hs_authorizer(json!({})).await;
    let payload = b64url(claims(json!({})).to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert_eq!(
                denied(check(&a, &Hs::bearer(&token)).await),
                Refusal::AlgNone,
                "{alg}"
            );
        }
    }

    // HS256 not allowed, although a secret is configured.
    let rs_only = hs_authorizer(json!({"algorithms": ["RS256"],
        "public_keys": [keys_dir().join("rsa2048.pub.pem")]}))
    .await;
    let token = hs().token(None, &claims(json!({})));
    assert_eq!(
        denied(check(&rs_only, &Hs::bearer(&token)).await),
        Refusal::UnsupportedAlg
    );
    // The key-confusion attack: HS256 keyed with the RSA public key's PEM text.
    let pem = std::fs::read(keys_dir().join("rsa2048.pub.pem")).unwrap();
    let confused = Signer::Hs256(pem).token(None, &claims(json!({})));
    let rs = authorizer(json!({"kind": "jwt",
        "public_keys": [keys_dir().join("rsa2048.pub.pem")]}))
    .await;
    assert_eq!(
        denied(check(&rs, &Hs::bearer(&confused)).await),
        Refusal::UnknownKey
    );
    // An algorithm switchboard does not implement.
    let header = b64url(json!({"alg": "HS512"}).to_string().as_bytes());
    let token = format!("{header}.{payload}.c2ln");
    assert_eq!(
        denied(check(&a, &Hs::bearer(&token)).await),
        Refusal::UnsupportedAlg
    );
}

#[tokio::test]
async fn rs256_and_es256_from_pem_files() {
    let ec_key = ec();
    let ec_pem = TempFile::new("ec.pub.pem", &ec_public_pem(&ec_key));
    let a = authorizer(json!({"kind": "jwt", "public_keys": [
        keys_dir().join("rsa2048.pub.pem"), ec_pem.path]}))
    .await;
    let rs_token = rsa("rsa2048").token(None, &claims(json!({})));
    assert!(check(&a, &Hs::bearer(&rs_token)).await.is_ok());
    let es_token = ec_key.token(Some("any-kid"), &claims(json!({})));
    assert!(check(&a, &Hs::bearer(&es_token)).await.is_ok());
    // Right algorithm, wrong key.
    let other_rs = rsa("rsa2048-b").token(None, &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&other_rs)).await),
        Refusal::BadSignature
    );
    let other_es = ec().token(None, &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&other_es)).await),
        Refusal::BadSignature
    );
    // An HS256 token where no secret is configured.
    let token = hs().token(None, &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&token)).await),
        Refusal::UnknownKey
    );
}

#[tokio::test]
async fn jwks_file_selects_by_kid() {
    let (rs, es) = (rsa("rsa2048"), ec());
    let jwks = json!({"keys": [rs.jwk("rsa-1"), es.jwk("ec-1"),
        {"kty": "RSA", "use": "enc", "kid": "enc-1", "n": "AQAB", "e": "AQAB"}]});
    let file = TempFile::new("jwks.json", &jwks.to_string());
    let a = authorizer(json!({"kind": "jwt", "jwks_file": file.path})).await;
    assert!(check(
        &a,
        &Hs::bearer(&rs.token(Some("rsa-1"), &claims(json!({}))))
    )
    .await
    .is_ok());
    assert!(
        check(&a, &Hs::bearer(&es.token(Some("ec-1"), &claims(json!({})))))
            .await
            .is_ok()
    );
    // No kid: every key for the algorithm is tried.
    assert!(check(&a, &Hs::bearer(&es.token(None, &claims(json!({})))))
        .await
        .is_ok());
    // A kid nobody has, and a kid of a key of another type.
    let t = rs.token(Some("rsa-2"), &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&t)).await),
        Refusal::UnknownKey
    );
    let t = rs.token(Some("ec-1"), &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&t)).await),
        Refusal::UnknownKey
    );
    // The right kid, signed by someone else.
    let t = rsa("rsa2048-b").token(Some("rsa-1"), &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&t)).await),
        Refusal::BadSignature
    );
}

fn jwks_server_doc(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

#[tokio::test]
async fn jwks_url_rotation_refreshes_once() {
    let (k1, k2, k3) = (ec(), ec(), ec());
    let doc = std::sync::Arc::new(parking_lot::Mutex::new(jwks_server_doc(&[k1.jwk("k1")])));
    let served = std::sync::Arc::clone(&doc);
    let server = Server::start(move |_| Reply::ok(served.lock().clone())).await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    assert_eq!(server.hits(), 1, "fetched once at start");
    assert!(
        check(&a, &Hs::bearer(&k1.token(Some("k1"), &claims(json!({})))))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 1);

    // The identity provider rotates in k2. Concurrent tokens naming it share one fetch.
    *doc.lock() = jwks_server_doc(&[k1.jwk("k1"), k2.jwk("k2")]);
    let hs = Hs::bearer(&k2.token(Some("k2"), &claims(json!({}))));
    let results = futures_join_all((0..8).map(|_| check(&a, &hs))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.hits(), 2, "one refresh for the unknown kid");

    // Another unknown kid within 10 s: no second fetch, and the token is refused.
    *doc.lock() = jwks_server_doc(&[k1.jwk("k1"), k2.jwk("k2"), k3.jwk("k3")]);
    let t = k3.token(Some("k3"), &claims(json!({})));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&t)).await),
        Refusal::UnknownKey
    );
    assert_eq!(server.hits(), 2, "rate-limited");
    // Known kids still work without fetching.
    assert!(
        check(&a, &Hs::bearer(&k2.token(Some("k2"), &claims(json!({})))))
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_cancelled_caller_does_not_cancel_the_shared_fetch() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (k1, k2) = (ec(), ec());
    let doc = std::sync::Arc::new(parking_lot::Mutex::new(jwks_server_doc(&[k1.jwk("k1")])));
    let delay_ms = std::sync::Arc::new(AtomicU64::new(0));
    let (served, delay) = (
        std::sync::Arc::clone(&doc),
        std::sync::Arc::clone(&delay_ms),
    );
    let server = Server::start(move |_| Reply {
        delay: Duration::from_millis(delay.load(Ordering::SeqCst)),
        ..Reply::ok(served.lock().clone())
    })
    .await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;

    *doc.lock() = jwks_server_doc(&[k1.jwk("k1"), k2.jwk("k2")]);
    delay_ms.store(500, Ordering::SeqCst);
    let hs = Hs::bearer(&k2.token(Some("k2"), &claims(json!({}))));
    // The first caller starts the fetch and gives up after 100 ms; the second waits for
    // that same fetch.
    let impatient = tokio::time::timeout(Duration::from_millis(100), check(&a, &hs));
    let patient = async {
        // Once the first caller's fetch is on the wire.
        wait_for_hits(&server, 2).await;
        check(&a, &hs).await
    };
    let (first, second) = tokio::join!(impatient, patient);
    assert!(first.is_err(), "the first caller timed out");
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(server.hits(), 2);
}

/// Waits until the server has seen `n` requests (5 s max).
async fn wait_for_hits(server: &Server, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.hits() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests, expected {n}",
            server.hits()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls all futures together on this task (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in handles.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn jwks_url_down_at_start_answers_500_then_recovers() {
    let key = ec();
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, doc) = (std::sync::Arc::clone(&up), jwks_server_doc(&[key.jwk("k")]));
    let server = Server::start(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok(doc.clone())
        } else {
            Reply {
                status: 503,
                body: "down".into(),
                delay: Duration::ZERO,
            }
        }
    })
    .await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    let hs = Hs::bearer(&key.token(Some("k"), &claims(json!({}))));
    let err = check(&a, &hs).await.unwrap_err();
    assert_eq!(err, AuthError::Failed(Failure::KeysNotLoaded));
    assert_eq!(err.status(), 500);

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    // The background retry (1 s, then 2 s...) loads the keys.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        match check(&a, &hs).await {
            Ok(id) => {
                assert_eq!(id.principal_id, "user-1");
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.status(), 500);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("keys never loaded: {e}"),
        }
    }
}

#[tokio::test]
async fn jwks_url_refreshes_periodically_and_stops_on_drop() {
    let key = ec();
    let doc = jwks_server_doc(&[key.jwk("k")]);
    let server = Server::start(move |_| Reply::ok(doc.clone())).await;
    let a =
        authorizer(json!({"kind": "jwt", "jwks_url": server.url, "jwks_refresh_secs": 1})).await;
    // Start and two refreshes.
    wait_for_hits(&server, 3).await;
    drop(a);
    let at_drop = server.hits();
    // A negative check, so time has to pass: two refresh periods without a fetch (one
    // already on the wire when the task was aborted may still be counted).
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(
        server.hits() <= at_drop + 1,
        "the refresh task ended with the authorizer: {at_drop} requests at the drop, {} now",
        server.hits()
    );
}

#[tokio::test]
async fn jwks_url_body_is_bounded() {
    let big = format!(
        "{{\"keys\":[],\"pad\":\"{}\"}}",
        "x".repeat(switchboard_auth::JWKS_MAX_BYTES)
    );
    let server = Server::start(move |_| Reply::ok(big.clone())).await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    let key = ec();
    let hs = Hs::bearer(&key.token(Some("k"), &claims(json!({}))));
    assert_eq!(check(&a, &hs).await.unwrap_err().status(), 500);
}

#[tokio::test]
async fn groups_and_user_claims() {
    let a = hs_authorizer(json!({"groups_claim": "roles", "user_id_claim": "uid"})).await;
    let many: Vec<String> = (0..70).map(|i| format!("g{i}")).collect();
    let token = hs().token(
        None,
        &claims(json!({"uid": "ada", "roles": ["admins", 5, "", "beta"]})),
    );
    let id = check(&a, &Hs::bearer(&token)).await.unwrap();
    assert_eq!(id.principal_id, "ada");
    assert_eq!(id.user_id.as_deref(), Some("ada"));
    assert_eq!(id.groups, ["admins", "beta"]);
    assert_eq!(id.context["principalId"], "ada");

    let token = hs().token(None, &claims(json!({"roles": many})));
    let id = check(&a, &Hs::bearer(&token)).await.unwrap();
    assert_eq!(id.groups.len(), switchboard_auth::MAX_GROUPS);
    // No `uid` claim: the principal falls back to `sub`, and there is no user id.
    assert_eq!(id.principal_id, "user-1");
    assert_eq!(id.user_id, None);

    let token = hs().token(None, &json!({"exp": now() + 60}));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&token)).await),
        Refusal::NoSubject
    );
}

#[tokio::test]
async fn configuration_errors_name_the_key() {
    let err = |cfg: Value| async move { try_authorizer(cfg).await.unwrap_err() };
    let e = err(json!({"kind": "jwt"})).await;
    assert!(
        e.problem.contains("no key for any allowed algorithm"),
        "{e}"
    );
    let e = err(json!({"kind": "jwt", "secret": SECRET, "algorithms": ["HS256", "none"]})).await;
    assert_eq!(e.key, "authorizer.algorithms", "{e}");
    let e = err(json!({"kind": "jwt", "secret": SECRET, "algorithms": ["PS256"]})).await;
    assert_eq!(e.key, "authorizer.algorithms", "{e}");
    let e = err(json!({"kind": "jwt", "secret": SECRET, "algorithms": ["RS256"]})).await;
    assert!(
        e.problem.contains("no key for any allowed algorithm"),
        "{e}"
    );
    let e = err(json!({"kind": "jwt", "jwks_file": "/nonexistent/jwks.json"})).await;
    assert_eq!(e.key, "authorizer.jwks_file", "{e}");
    let bad = TempFile::new("jwks.json", r#"{"keys": [{"kty": "OKP"}]}"#);
    let e = err(json!({"kind": "jwt", "jwks_file": bad.path})).await;
    assert!(e.problem.contains("no usable signing key"), "{e}");
    let e = err(json!({"kind": "jwt", "public_keys": [keys_dir().join("rsa2048.pem")]})).await;
    assert_eq!(e.key, "authorizer.public_keys[0]", "{e}");
    let e = err(json!({"kind": "jwt", "jwks_url": "ftp://x/jwks"})).await;
    assert_eq!(e.key, "authorizer.jwks_url", "{e}");
    let e = err(json!({"kind": "jwt", "secret": SECRET, "token_sources": []})).await;
    assert_eq!(e.key, "authorizer.token_sources", "{e}");
    let e = err(json!({"kind": "jwt", "secret": SECRET, "protocol_prefix": ""})).await;
    assert_eq!(e.key, "authorizer.protocol_prefix", "{e}");
}

//! What the authorizer logs when it refuses a key. This is its own test binary, with one
//! test: `tracing` caches per call site whether anyone listens, and a test in the same
//! process that reaches the same `warn!` first, on another thread, while this test's
//! subscriber is being installed, can leave that cache saying "nobody" (it failed CI
//! once that way, with the warning missing).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn refused_jwks_keys_are_logged_with_their_reason_once_per_change() {
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let good = ec();
    let mut bad = rsa_jwk_with("n", "");
    bad["kid"] = json!("bad");
    let enc = json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"});
    let doc = json!({"keys": [bad, good.jwk("ok"), enc]}).to_string();
    let server = Server::start(move |_| Reply::ok(doc.clone())).await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    let warned = || -> Vec<String> {
        logs.lines()
            .into_iter()
            .filter(|l| l.starts_with("WARN") && l.contains("JWK"))
            .collect()
    };
    let w = warned();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("RSA modulus is empty or zero") && w[0].contains("\"bad\""),
        "{}",
        w[0]
    );
    // The encryption key is normal in a shared set: debug, not a warning.
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.starts_with("DEBUG") && l.contains("is not \"sig\"")));
    // A token naming an unknown kid refreshes the same set: no second warning.
    let t = good.token(Some("new"), &json!({"sub": "u", "exp": now() + 60}));
    let _ = check(&a, &Hs::bearer(&t)).await;
    assert_eq!(server.hits(), 2);
    assert_eq!(warned().len(), 1, "{:?}", logs.lines());
}

/// A `tracing` subscriber that keeps every event as `LEVEL field=value ...`.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<parking_lot::Mutex<Vec<String>>>);

impl Logs {
    fn lines(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, " {}={:?}", field.name(), value);
            }
        }
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

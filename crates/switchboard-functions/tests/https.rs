//! `https://` functions against a real rustls server on 127.0.0.1, with a CA made at
//! test time (`switchboard-test-tls`): HTTP/1.1 over TLS and pooled reuse, HTTP/2 by ALPN
//! shared as streams, session resumption, and each refusal with its reason.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::config::{HttpFunctionConfig, HttpVersion};
use switchboard_core::event::{ApiIdentity, EventKind};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::tls::TlsFailure;
use switchboard_functions::{InvokeError, Invoker};
use switchboard_test_tls::{Leaf, TestCa, TlsFunction};
use tokio::net::TcpListener;

/// A server that offers only `http/1.1` by ALPN, as the HTTP/1.1 cases need.
async fn h1_server(leaf: &Leaf, client_ca: Option<&TestCa>) -> TlsFunction {
    let builder = TlsFunction::builder(leaf).alpn(&[b"http/1.1"]);
    match client_ca {
        Some(ca) => builder.client_ca(ca).start().await,
        None => builder.start().await,
    }
}

/// The function's table for `server`, trusting `ca`.
fn trusting(ca: &TestCa, server: &TlsFunction) -> HttpFunctionConfig {
    let mut cfg = common::http_config(server.url());
    cfg.tls_ca_file = Some(ca.ca_file());
    cfg
}

fn invoker(cfg: &HttpFunctionConfig) -> HttpInvoker {
    let api = ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    };
    HttpInvoker::new("fn", cfg, api).unwrap()
}

async fn call(invoker: &HttpInvoker) -> Result<String, InvokeError> {
    spawn_call(invoker).await.unwrap()
}

/// A CA for `case`, and the certificate it signed for `localhost`.
fn localhost_ca(case: &str) -> (TestCa, Leaf) {
    let ca = TestCa::new(case);
    let leaf = ca.server_leaf(&["localhost"]);
    (ca, leaf)
}

/// `n` invocations one after the other, each of which must succeed.
async fn call_n(invoker: &HttpInvoker, n: usize) {
    for _ in 0..n {
        call(invoker).await.unwrap();
    }
}

/// An invocation on a task of its own, so that several are in flight at once; the text
/// of its answer's body.
fn spawn_call(invoker: &HttpInvoker) -> tokio::task::JoinHandle<Result<String, InvokeError>> {
    let invocation = common::invocation(EventKind::Message, Some(Bytes::from_static(b"hi")));
    let answer = invoker.invoke(invocation);
    tokio::spawn(async move {
        let body = answer.await?.body.expect("the function answered a body");
        Ok(String::from_utf8(body.data.to_vec()).unwrap())
    })
}

fn tls_label(result: Result<String, InvokeError>) -> &'static str {
    match result {
        Err(e @ InvokeError::Tls(_)) => e.label(),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn http1_over_tls_round_trips_on_one_pooled_connection() {
    let ca = TestCa::new("pooled");
    let server = h1_server(&ca.server_leaf(&["localhost"]), None).await;
    let cfg = trusting(&ca, &server);
    let invoker = invoker(&cfg);
    for _ in 0..10 {
        let host = call(&invoker).await.unwrap();
        assert_eq!(host, format!("localhost:{}", server.port));
    }
    assert_eq!(
        server.counts.get(|c| &c.accepts),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let ca = TestCa::new("untrusted");
    let server = h1_server(&ca.server_leaf(&["localhost"]), None).await;
    let invoker = invoker(&common::http_config(server.url()));
    let result = call(&invoker).await;
    assert!(
        matches!(
            result,
            Err(InvokeError::Tls(TlsFailure::UntrustedCertificate(_)))
        ),
        "{result:?}"
    );
    assert_eq!(tls_label(call(&invoker).await), "tls_untrusted_certificate");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = TestCa::new("hostname");
    let server = h1_server(&ca.server_leaf(&["other.example"]), None).await;
    let cfg = trusting(&ca, &server);
    let result = call(&invoker(&cfg)).await;
    assert_eq!(tls_label(result), "tls_hostname_mismatch");
}

/// Without a client certificate each `versions` call is refused with its cause; with one
/// the call goes through.
async fn mutual_tls(server: &TlsFunction, ca: &TestCa, versions: &[HttpVersion]) {
    let client = ca.client_leaf();
    let mut cfg = trusting(ca, server);
    for &version in versions {
        cfg.http_version = version;
        let without = call(&invoker(&cfg)).await;
        assert_eq!(tls_label(without), "tls_client_certificate_refused");
    }
    cfg.tls_client_cert = Some(client.cert_file.clone());
    cfg.tls_client_key = Some(client.key_file.clone());
    let host = call(&invoker(&cfg)).await.unwrap();
    assert_eq!(host, format!("localhost:{}", server.port));
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("mtls");
    let server = h1_server(&ca.server_leaf(&["localhost"]), Some(&ca)).await;
    mutual_tls(&server, &ca, &[HttpVersion::Auto]).await;
    assert_eq!(server.counts.get(|c| &c.h1_requests), 1);
}

/// Over HTTP/2 too (the server picks `h2`): under TLS 1.3 the refusal is an alert that
/// arrives after the handshake, on `h2`'s first read, and is still reported as itself.
#[tokio::test]
async fn mutual_tls_over_h2_needs_the_client_certificate() {
    let ca = TestCa::new("mtls-h2");
    let server = TlsFunction::builder(&ca.server_leaf(&["localhost"]))
        .client_ca(&ca)
        .start()
        .await;
    mutual_tls(&server, &ca, &[HttpVersion::Auto, HttpVersion::Http2]).await;
    assert_eq!(server.counts.get(|c| &c.h2_requests), 1);
}

#[tokio::test]
async fn a_silent_server_times_the_handshake_out_at_the_deadline() {
    let ca = TestCa::new("silent");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never answering the ClientHello.
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut cfg = common::http_config(format!("https://localhost:{port}/"));
    cfg.tls_ca_file = Some(ca.ca_file());
    cfg.timeout_ms = 300;
    let started = tokio::time::Instant::now();
    let result = call(&invoker(&cfg)).await;
    assert_eq!(tls_label(result), "tls_handshake_timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    held.abort();
}

/// Log lines written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct Log(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// The log lines of this thread while the guard lives.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock())
            .matches(needle)
            .count()
    }
}

/// A cause is logged once however often it recurs, and again once it comes back after a
/// success. The test runtime is single-threaded, so the invoker runs under this thread's
/// subscriber.
#[tokio::test]
async fn each_tls_failure_cause_is_logged_once_until_a_success() {
    let (log, _default) = Log::capture();
    let line = "TLS connection to the function failed";

    let ca = TestCa::new("logged");
    let server = h1_server(&ca.server_leaf(&["localhost"]), Some(&ca)).await;
    let cfg = trusting(&ca, &server);
    let refused = invoker(&cfg);
    for _ in 0..3 {
        assert_eq!(
            tls_label(call(&refused).await),
            "tls_client_certificate_refused"
        );
    }
    assert_eq!(log.count(line), 1, "three failures of one cause, one line");
    assert_eq!(log.count("reason=\"tls_client_certificate_refused\""), 1);

    // The server stops asking; the connection the failure left is gone, so the next
    // call handshakes anew and succeeds.
    server.strict.store(false, Ordering::SeqCst);
    call(&refused).await.unwrap();
    assert_eq!(log.count(line), 1, "a success logs nothing");
    server.strict.store(true, Ordering::SeqCst);
    // The success left one pooled connection: of two calls at once, one reuses it and
    // the other handshakes anew and is refused, the first refusal since the success.
    let (reused, dialled) = tokio::join!(call(&refused), call(&refused));
    reused.unwrap();
    assert_eq!(tls_label(dialled), "tls_client_certificate_refused");
    assert_eq!(log.count(line), 2, "logged again after a success");
}

/// `auto` over TLS: the server picks `h2`, and invocations in flight together are
/// streams of one connection. The server holds every answer until all have arrived, so
/// they are in flight at once.
#[tokio::test]
async fn h2_by_alpn_carries_concurrent_invocations_on_one_connection() {
    const AT_ONCE: usize = 24;
    let (ca, leaf) = localhost_ca("h2-shared");
    let server = TlsFunction::builder(&leaf)
        .hold_until(AT_ONCE)
        .start()
        .await;
    let mut cfg = trusting(&ca, &server);
    cfg.max_concurrency = 32;
    assert_eq!(cfg.http_version, HttpVersion::Auto, "the default");
    let invoker = invoker(&cfg);
    let calls: Vec<_> = (0..AT_ONCE).map(|_| spawn_call(&invoker)).collect();
    for call in calls {
        let host = call.await.unwrap().unwrap();
        assert_eq!(host, format!("localhost:{}", server.port));
    }
    call_n(&invoker, 3).await;
    let counts = &server.counts;
    assert_eq!(counts.get(|c| &c.accepts), 1, "one TLS connection");
    assert_eq!(counts.get(|c| &c.h2_connections), 1);
    assert_eq!(counts.get(|c| &c.h2_requests), AT_ONCE + 3);
    assert_eq!(counts.get(|c| &c.h1_requests), 0);
}

/// `auto` against servers that do not pick `h2` (one offering only `http/1.1`, one
/// without ALPN): HTTP/1.1, pooled. Four calls in flight together take four
/// connections, which the next calls reuse.
#[tokio::test]
async fn auto_speaks_pooled_http1_to_a_server_that_does_not_pick_h2() {
    let only_http1: &[&[u8]] = &[b"http/1.1"];
    for (case, alpn) in [("auto-http1", only_http1), ("auto-no-alpn", &[])] {
        let (ca, leaf) = localhost_ca(case);
        let server = TlsFunction::builder(&leaf)
            .alpn(alpn)
            .hold_until(4)
            .start()
            .await;
        let invoker = invoker(&trusting(&ca, &server));
        let calls: Vec<_> = (0..4).map(|_| spawn_call(&invoker)).collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        call_n(&invoker, 6).await;
        let counts = &server.counts;
        assert_eq!(counts.get(|c| &c.accepts), 4, "{case}: pooled");
        assert_eq!(counts.get(|c| &c.h1_requests), 10, "{case}");
        assert_eq!(counts.get(|c| &c.h2_connections), 0, "{case}");
    }
}

/// `"1.1"` offers only `http/1.1`, so a server preferring `h2` speaks HTTP/1.1.
#[tokio::test]
async fn http_version_1_1_offers_only_http1() {
    let (ca, leaf) = localhost_ca("only-1-1");
    let server = TlsFunction::builder(&leaf).start().await;
    let mut cfg = trusting(&ca, &server);
    cfg.http_version = HttpVersion::Http1;
    let invoker = invoker(&cfg);
    call_n(&invoker, 3).await;
    assert_eq!(server.counts.get(|c| &c.h1_requests), 3);
    assert_eq!(server.counts.get(|c| &c.h2_connections), 0);
}

/// `"2"` offers only `h2`: a server that cannot pick it (it offers only `http/1.1` and
/// refuses the handshake, or has no ALPN and picks nothing) fails the invocation with
/// `tls_alpn_mismatch`, logged once; one that picks it is spoken to in HTTP/2.
#[tokio::test]
async fn http_version_2_needs_the_server_to_pick_h2() {
    let (log, _default) = Log::capture();

    let only_http1: &[&[u8]] = &[b"http/1.1"];
    let h2: &[&[u8]] = &[b"h2", b"http/1.1"];
    for (case, alpn, picks_h2) in [
        ("h2-refused", only_http1, false),
        ("h2-no-alpn", &[], false),
        ("h2-picked", h2, true),
    ] {
        let (ca, leaf) = localhost_ca(case);
        let server = TlsFunction::builder(&leaf).alpn(alpn).start().await;
        let mut cfg = trusting(&ca, &server);
        cfg.http_version = HttpVersion::Http2;
        let invoker = invoker(&cfg);
        for _ in 0..3 {
            let result = call(&invoker).await;
            if picks_h2 {
                assert_eq!(result.unwrap(), format!("localhost:{}", server.port));
            } else {
                assert!(
                    matches!(result, Err(InvokeError::Tls(TlsFailure::AlpnMismatch(_)))),
                    "{case}: {result:?}"
                );
            }
        }
        let h1_requests = server.counts.get(|c| &c.h1_requests);
        assert_eq!(h1_requests, 0, "{case}: nothing sent in HTTP/1.1");
    }
    assert_eq!(
        log.count("reason=\"tls_alpn_mismatch\""),
        2,
        "once per function"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_as_expired() {
    let ca = TestCa::new("expired");
    let leaf = ca.expired_server_leaf(&["localhost"]);
    let server = TlsFunction::builder(&leaf).start().await;
    let result = call(&invoker(&trusting(&ca, &server))).await;
    assert!(
        matches!(
            result,
            Err(InvokeError::Tls(TlsFailure::CertificateExpired(_)))
        ),
        "{result:?}"
    );
    assert_eq!(result.unwrap_err().label(), "tls_certificate_expired");
}

/// A server that closes each connection after one answer makes every call connect
/// anew; the handshakes after the first resume the TLS session (over HTTP/1.1, where
/// the answer says `connection: close`, and over HTTP/2, where a `GOAWAY` does).
#[tokio::test]
async fn a_new_connection_resumes_the_tls_session() {
    let only_http1: &[&[u8]] = &[b"http/1.1"];
    let h2: &[&[u8]] = &[b"h2"];
    for (case, alpn) in [("resume-http1", only_http1), ("resume-h2", h2)] {
        let (ca, leaf) = localhost_ca(case);
        let server = TlsFunction::builder(&leaf)
            .alpn(alpn)
            .close_after_each_answer()
            .start()
            .await;
        let invoker = invoker(&trusting(&ca, &server));
        call_n(&invoker, 3).await;
        let counts = &server.counts;
        assert_eq!(counts.get(|c| &c.handshakes), 3, "{case}: one per call");
        assert_eq!(counts.get(|c| &c.resumed), 2, "{case}: all but the first");
    }
}

/// The server's pick is remembered, and followed when it changes: `h2` first, then
/// (new connections picking `http/1.1`) HTTP/1.1, then `h2` again; no invocation fails
/// on the way. The server closes each connection after one answer, so each call needs
/// a new one.
#[tokio::test]
async fn a_changed_alpn_pick_is_followed() {
    let (ca, leaf) = localhost_ca("changed-pick");
    let server = TlsFunction::builder(&leaf)
        .close_after_each_answer()
        .start()
        .await;
    let invoker = invoker(&trusting(&ca, &server));
    let counts = &server.counts;
    let host = format!("localhost:{}", server.port);

    assert_eq!(call(&invoker).await.unwrap(), host);
    assert_eq!(counts.get(|c| &c.h2_requests), 1);

    server.picks_h2.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(call(&invoker).await.unwrap(), host);
    }
    assert_eq!(counts.get(|c| &c.h1_requests), 2);

    server.picks_h2.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(call(&invoker).await.unwrap(), host);
    }
    assert_eq!(counts.get(|c| &c.h2_requests), 3);
    assert_eq!(counts.get(|c| &c.h1_requests), 2);
}

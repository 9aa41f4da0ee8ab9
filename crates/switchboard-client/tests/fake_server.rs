//! The client against a small fake `switchboard.v1` server written from
//! docs/protocol.md (tests/support/fake.rs), behind a chaos proxy: resume, replay,
//! de-duplication, fresh sessions, plain mode, heartbeats, close, token hook, wss.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::fake::{Fake, FakeConfig};
use support::proxy::ChaosProxy;
use support::*;
use switchboard_client::{Client, Event, Options, Payload, ReconnectPolicy};

fn fast_options() -> Options {
    Options {
        reconnect: ReconnectPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
            max_attempts: Some(50),
            ..Default::default()
        },
        connect_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

/// Sends `n` numbered messages, at most `per_ms` a millisecond, as the send queue allows
/// while reading events; returns the texts received, in order, once `expect` arrived.
async fn pump(client: &Client, prefix: &str, n: usize, per_ms: usize, secs: u64) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    let mut next = 1;
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while got.len() < n {
        let allowed = (start.elapsed().as_millis() as usize + 1) * per_ms;
        while next <= n.min(allowed) {
            match client.send_text(format!("{prefix}{next}")) {
                Ok(()) => next += 1,
                Err(e) if e.is_queue_full() => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        let ev = tokio::select! {
            ev = client.next_event() => ev,
            _ = tick.tick(), if next <= n => continue,
            _ = tokio::time::sleep_until(deadline) => panic!(
                "timed out: sent {} of {n}, received {}", next - 1, got.len()
            ),
        };
        match ev {
            Event::Message(Payload::Text(t)) => got.push(t),
            Event::Reconnecting { .. } | Event::Resumed { .. } => {}
            other => panic!("unexpected {other:?} after {} messages", got.len()),
        }
    }
    got
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn chaos_every_message_once_and_in_order_both_ways() {
    let fake = Fake::start(FakeConfig {
        ack_every: 16,
        ..Default::default()
    })
    .await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let opts = Options {
        send_queue: 256,
        ..fast_options()
    };
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    proxy.start_cutting(2, 15, 2000);
    const N: usize = 10_000;
    let got = pump(&client, "c", N, 10, 60).await;
    proxy.stop_cutting();
    assert_eq!(got, numbered("c", N), "echoes: exactly once, in order");
    assert_eq!(
        fake.processed(),
        numbered("c", N),
        "processed: exactly once, in order"
    );
    assert_eq!(client.connection_id().as_deref(), Some(id.as_str()));
    let resumed = fake.stats(|s| s.resumed);
    eprintln!(
        "{resumed} resumes, {} cuts",
        proxy.cuts.load(Ordering::SeqCst)
    );
    // Under load a cut may land on a reconnect in progress; a few resumes prove the point.
    assert!(
        resumed >= 5,
        "only {resumed} resumes: the chaos did not bite"
    );
    assert_eq!(fake.stats(|s| s.fresh), 1, "never a fresh session");
    assert!(client.take_unconfirmed().is_empty());
}

#[tokio::test]
async fn a_dropped_socket_resumes_and_replays_what_was_missed() {
    let fake = Fake::start(FakeConfig::default()).await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let client = Client::connect(&proxy.url(), fast_options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    assert_eq!(client.connection_id().as_deref(), Some(id.as_str()));
    for i in 1..=3 {
        assert!(fake.push(&id, &format!("s{i}")));
    }
    for i in 1..=3 {
        assert_eq!(next_text(&client, 5).await, format!("s{i}"));
    }
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { .. }
    ));
    // Sent while detached: kept by the server, replayed after the resume.
    fake.push(&id, "s4");
    fake.push(&id, "s5");
    proxy.refuse(false);
    let ev = significant_event(&client, 5).await;
    assert_eq!(
        ev,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    assert_eq!(next_text(&client, 5).await, "s4");
    assert_eq!(next_text(&client, 5).await, "s5");
    // The resume handshake carried the token and the last sequence number seen.
    let last = fake.stats(|s| {
        s.requests
            .last()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    });
    assert!(
        last.contains("sb_session=tok1x") && last.contains("sb_last=3"),
        "{last}"
    );
    assert_eq!(fake.stats(|s| (s.fresh, s.resumed)), (1, 1));
}

#[tokio::test]
async fn messages_sent_while_disconnected_are_queued_bounded_and_delivered() {
    let fake = Fake::start(FakeConfig::default()).await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let opts = Options {
        send_queue: 5,
        ..fast_options()
    };
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { attempt: 1, .. }
    ));
    for i in 1..=5 {
        client.send_text(format!("q{i}")).unwrap();
    }
    let err = client.send_text("q6").unwrap_err();
    assert!(err.is_queue_full(), "{err}");
    proxy.refuse(false);
    tokio::time::timeout(Duration::from_secs(5), client.writable())
        .await
        .expect("room once the server acknowledged")
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        if let Event::Message(Payload::Text(t)) = significant_event(&client, 5).await {
            got.push(t);
        }
    }
    assert_eq!(got, numbered("q", 5));
    assert_eq!(fake.processed(), numbered("q", 5));
}

async fn expire_after_sending(opts: Options) -> (Fake, Arc<ChaosProxy>, Client) {
    let fake = Fake::start(FakeConfig {
        window: Duration::from_millis(200),
        ack_every: 1000, // never acknowledged: written messages stay unconfirmed
        ..Default::default()
    })
    .await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    client.send_text("before").unwrap();
    assert_eq!(next_text(&client, 5).await, "before");
    proxy.refuse(true);
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.send_text("after").unwrap();
    proxy.refuse(false);
    let second = open_id(&significant_event(&client, 5).await);
    assert_ne!(first, second, "a new connection id");
    (fake, proxy, client)
}

#[tokio::test]
async fn an_expired_window_opens_a_fresh_session_and_resends_unconfirmed() {
    let (fake, _proxy, client) = expire_after_sending(fast_options()).await;
    // Written and never acknowledged: resent into the new session (at least once).
    assert_eq!(next_text(&client, 5).await, "before");
    assert_eq!(next_text(&client, 5).await, "after");
    assert_eq!(fake.processed(), ["before", "before", "after"]);
    assert!(client.take_unconfirmed().is_empty());
}

#[tokio::test]
async fn an_expired_window_without_resending_reports_unconfirmed() {
    let opts = Options {
        resend_unconfirmed: false,
        ..fast_options()
    };
    let (fake, _proxy, client) = expire_after_sending(opts).await;
    assert_eq!(client.take_unconfirmed(), [Payload::Text("before".into())]);
    assert_eq!(next_text(&client, 5).await, "after");
    assert_eq!(fake.processed(), ["before", "after"]);
}

#[tokio::test]
async fn a_gap_in_server_numbers_resumes_from_the_last_delivered() {
    let fake = Fake::start(FakeConfig {
        lose_on_first_socket: vec![2],
        ..Default::default()
    })
    .await;
    let client = Client::connect(&fake.url(), fast_options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    for i in 1..=3 {
        fake.push(&id, &format!("s{i}"));
    }
    assert_eq!(next_text(&client, 5).await, "s1");
    // s2 never came on this socket; s3 did: the client abandons it and resumes.
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    assert_eq!(next_text(&client, 5).await, "s2");
    assert_eq!(next_text(&client, 5).await, "s3");
    let last = fake.stats(|s| {
        s.requests
            .last()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    });
    assert!(last.contains("sb_last=1"), "{last}");
}

#[tokio::test]
async fn a_forged_token_opens_a_fresh_session() {
    let fake = Fake::start(FakeConfig::default()).await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let client = Client::connect(&proxy.url(), fast_options()).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    proxy.forge_tokens(true);
    proxy.cut_all();
    let second = open_id(&significant_event(&client, 5).await);
    assert_ne!(first, second);
    assert_eq!(fake.stats(|s| (s.fresh, s.resumed)), (2, 0));
    // The new session's token works for the next resume.
    proxy.forge_tokens(false);
    proxy.cut_all();
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Resumed {
            connection_id: second
        }
    );
}

#[tokio::test]
async fn plain_mode_against_a_server_without_the_subprotocol() {
    let fake = Fake::start(FakeConfig {
        v1: false,
        ..Default::default()
    })
    .await;
    let client = Client::connect(&fake.url(), fast_options()).await.unwrap();
    assert_eq!(
        event_within(&client, 5).await,
        Event::Open {
            connection_id: None
        }
    );
    client.send_text("m1:raw").unwrap();
    client.send_binary(vec![1u8, 2, 3]).unwrap();
    assert_eq!(next_text(&client, 5).await, "m1:raw");
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Message(Payload::Binary(vec![1u8, 2, 3].into()))
    );
    fake.drop_sockets();
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Open {
            connection_id: None
        }
    );
    client.send_text("again").unwrap();
    assert_eq!(next_text(&client, 5).await, "again");
    // Resume off: the subprotocol is not even offered.
    let opts = Options {
        resume: false,
        protocols: vec!["chat".into()],
        ..fast_options()
    };
    let v1 = Fake::start(FakeConfig::default()).await;
    let c2 = Client::connect(&v1.url(), opts).await.unwrap();
    assert_eq!(
        event_within(&c2, 5).await,
        Event::Open {
            connection_id: None
        }
    );
    let req = v1.stats(|s| s.requests[0].clone());
    assert!(req.contains("Sec-WebSocket-Protocol: chat\r\n"), "{req}");
}

#[tokio::test]
async fn binary_messages_are_sequenced_too() {
    let fake = Fake::start(FakeConfig::default()).await;
    let client = Client::connect(&fake.url(), fast_options()).await.unwrap();
    open_id(&event_within(&client, 5).await);
    client.send_binary(vec![0u8, 255]).unwrap();
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Message(Payload::Binary(vec![0u8, 255].into()))
    );
}

#[tokio::test]
async fn a_silent_path_is_detected_by_the_heartbeat() {
    let fake = Fake::start(FakeConfig::default()).await;
    chaos::heartbeat_finds_a_silent_path(
        fake.addr,
        fast_options(),
        Duration::from_millis(200),
        Duration::from_millis(600),
    )
    .await;
}

#[tokio::test]
async fn close_is_clean_and_final() {
    let fake = Fake::start(FakeConfig::default()).await;
    let client = Client::connect(&fake.url(), fast_options()).await.unwrap();
    open_id(&event_within(&client, 5).await);
    client.close(4001);
    let ev = event_within(&client, 5).await;
    assert!(matches!(ev, Event::Closed { code: 4001, .. }), "{ev:?}");
    assert_eq!(event_within(&client, 1).await, ev, "Closed repeats");
    assert!(client.send_text("x").unwrap_err().is_closed());
    assert!(client.writable().await.unwrap_err().is_closed());
    // 4000 is switchboard.v1's "detach" (the gateway would park the session): a close
    // sends 1000 instead.
    let c2 = Client::connect(&fake.url(), fast_options()).await.unwrap();
    open_id(&event_within(&c2, 5).await);
    c2.close(4000);
    let ev = event_within(&c2, 5).await;
    assert!(matches!(ev, Event::Closed { code: 1000, .. }), "{ev:?}");
}

#[tokio::test]
async fn server_close_codes_reconnect_fresh_or_close() {
    let fake = Fake::start(FakeConfig::default()).await;
    let client = Client::connect(&fake.url(), fast_options()).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    // 1012 (restart) asks for a reconnect; a clean close ended the session.
    fake.close_all(1012);
    let second = open_id(&significant_event(&client, 5).await);
    assert_ne!(first, second);
    // 1000 is final.
    let fake2 = Fake::start(FakeConfig::default()).await;
    let c2 = Client::connect(&fake2.url(), fast_options()).await.unwrap();
    open_id(&event_within(&c2, 5).await);
    fake2.close_all(1000);
    assert_eq!(
        event_within(&c2, 5).await,
        Event::Closed {
            code: 1000,
            reason: "bye".into()
        }
    );
}

#[tokio::test]
async fn token_hook_runs_before_every_connect() {
    let fake = Fake::start(FakeConfig::default()).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let opts = fast_options().token_hook(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Some(format!("jwt{n}"))) }
    });
    let client = Client::connect(&fake.url(), opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    fake.drop_sockets();
    assert!(matches!(
        significant_event(&client, 5).await,
        Event::Resumed { .. }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let reqs = fake.stats(|s| s.requests.clone());
    assert!(
        reqs[0].contains("Sec-WebSocket-Protocol: switchboard.v1, bearer.jwt1\r\n"),
        "{}",
        reqs[0]
    );
    assert!(reqs[1].contains("bearer.jwt2"), "{}", reqs[1]);
}

#[tokio::test]
async fn the_first_attempt_fails_fast_and_reconnects_give_up() {
    // Nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(&format!("ws://127.0.0.1:{port}/"), fast_options())
        .await
        .unwrap_err();
    assert!(err.is_io(), "{err}");
    assert!(Client::connect("http://x/", fast_options())
        .await
        .unwrap_err()
        .is_invalid());
    // Gives up after max_attempts.
    let fake = Fake::start(FakeConfig::default()).await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let opts = Options {
        reconnect: ReconnectPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_attempts: Some(3),
            ..Default::default()
        },
        ..fast_options()
    };
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    proxy.refuse(true);
    proxy.cut_all();
    for attempt in 1..=3 {
        let ev = event_within(&client, 5).await;
        assert!(
            matches!(ev, Event::Reconnecting { attempt: a, .. } if a == attempt),
            "{ev:?}"
        );
    }
    let ev = event_within(&client, 5).await;
    assert!(matches!(ev, Event::Closed { code: 1006, .. }), "{ev:?}");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn wss_with_a_caller_provided_root_store() {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let fake = Fake::start(FakeConfig::default()).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    // A TLS terminator in front of the fake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = fake.addr;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let url = format!("wss://localhost:{port}/");
    // Without roots: refused up front.
    assert!(Client::connect(&url, fast_options())
        .await
        .unwrap_err()
        .is_invalid());
    let opts = Options {
        tls_roots: Some(Arc::new(roots)),
        ..fast_options()
    };
    let client = Client::connect(&url, opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    client.send_text("secure").unwrap();
    assert_eq!(next_text(&client, 5).await, "secure");
}

#[tokio::test]
async fn close_while_reconnecting_ends_at_once() {
    let fake = Fake::start(FakeConfig::default()).await;
    let proxy = ChaosProxy::start(fake.addr).await;
    let opts = Options {
        reconnect: ReconnectPolicy {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(5),
            ..Default::default()
        },
        ..fast_options()
    };
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { attempt: 1, .. }
    ));
    client.close(1000);
    assert_eq!(
        event_within(&client, 1).await,
        Event::Closed {
            code: 1000,
            reason: String::new()
        }
    );
    // Dropping a client mid-reconnect does not hang the runtime either.
    let c2 = Client::connect(&fake.url(), fast_options()).await.unwrap();
    fake.drop_sockets();
    drop(c2);
}

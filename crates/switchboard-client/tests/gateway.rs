//! The client against the real gateway binary (`cargo build -p switchboard` first; see
//! tests/support/gateway.rs for how it is found), with `[resume] enabled = true`, through
//! a chaos proxy that cuts the connection at random moments.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::gateway::Gateway;
use support::http::{HttpClient, RecordingFunction};
use support::proxy::ChaosProxy;
use support::*;
use switchboard_client::{Client, Event, Options, Payload};
use tokio::time::Instant;

const ECHO: &str = r#"
[functions.echo]
kind = "builtin"
name = "echo"

[routes."$default"]
function = "echo"
two_way = true
"#;

fn config(window_secs: u64, routes: &str) -> String {
    format!(
        r#"
[resume]
enabled = true
window_secs = {window_secs}

[management]
auth = "none"
{routes}
"#
    )
}

/// Starts the gateway and checks it speaks `switchboard.v1`.
async fn gateway(config: &str) -> Gateway {
    let gw = Gateway::start(config);
    assert!(
        gw.speaks_v1().await,
        "the gateway at {} does not answer a `switchboard.v1` handshake with a hello frame: \
         is the gateway side of docs/protocol.md built into target/debug/switchboard?",
        gw.ws
    );
    gw
}

/// 10,000 numbered messages each way while a proxy cuts the connection every 50–400 ms:
/// server→client through the management API, client→server through a route to an HTTP
/// function that records what it is invoked with. Each side sees every number exactly
/// once, in order, on one connection id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_ten_thousand_each_way_exactly_once_in_order() {
    const N: usize = 10_000;
    const PACE: Duration = Duration::from_micros(800);
    let test_deadline = Instant::now() + Duration::from_secs(85);
    let function = RecordingFunction::start().await;
    let routes = format!(
        r#"
[functions.rec]
kind = "http"
url = "{}"

[routes."$default"]
function = "rec"
"#,
        function.url()
    );
    // A replay buffer above N: the gateway currently gives up a session whose buffer
    // overflowed even while attached (see the burst test below); this test is about the
    // client's exactly-once delivery under cuts.
    let gw = gateway(&config(60, &routes).replace(
        "window_secs = 60",
        "window_secs = 60\nbuffer_messages = 16384\nbuffer_bytes = 16777216",
    ))
    .await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    proxy.start_cutting(50, 400, 250);
    // Both directions are paced to about 8 s, so the cuts land all along the run.
    let resumes = chaos::exchange(
        &client,
        &proxy,
        gw.mgmt,
        &function,
        &id,
        chaos::Plan {
            n: N,
            pace: PACE,
            deadline: test_deadline,
        },
    )
    .await;
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    eprintln!(
        "{cuts} cuts, {resumes} resumes, {:.1} s",
        (Instant::now() + Duration::from_secs(85) - test_deadline).as_secs_f64()
    );
    assert!(
        cuts >= 10 && resumes >= 5,
        "{cuts} cuts, {resumes} resumes: the chaos did not bite"
    );
}

#[tokio::test]
async fn a_drop_resumes_the_same_connection_and_replays_sends_made_meanwhile() {
    let gw = gateway(&config(30, ECHO)).await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    client.send_text("one").unwrap();
    assert_eq!(next_text(&client, 5).await, "one");
    proxy.refuse(true);
    proxy.cut_all();
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Reconnecting { .. }
    ));
    // While detached: a management send is kept, a client send is queued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut http = HttpClient::new(gw.mgmt);
    let (status, body) = http
        .request("POST", &format!("/@connections/{id}"), b"while away")
        .await;
    assert_eq!(status, 200, "{body}");
    client.send_text("two").unwrap();
    proxy.refuse(false);
    assert_eq!(
        significant_event(&client, 10).await,
        Event::Resumed {
            connection_id: id.clone()
        }
    );
    // Two sources: their relative order is the server's to choose.
    let mut got = [next_text(&client, 5).await, next_text(&client, 5).await];
    got.sort();
    assert_eq!(got, ["two", "while away"]);
    assert_eq!(client.connection_id(), Some(id));
}

#[tokio::test]
async fn a_session_survives_repeated_drops() {
    let gw = gateway(&config(30, ECHO)).await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    for round in 1..=5 {
        client.send_text(format!("r{round}")).unwrap();
        assert_eq!(next_text(&client, 5).await, format!("r{round}"));
        proxy.cut_all();
        let ev = significant_event(&client, 10).await;
        assert_eq!(
            ev,
            Event::Resumed {
                connection_id: id.clone()
            },
            "drop {round}"
        );
    }
}

#[tokio::test]
async fn an_expired_window_gives_a_fresh_connection() {
    let gw = gateway(&config(1, ECHO)).await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let opts = patient_options(200);
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    client.send_text("before").unwrap();
    assert_eq!(next_text(&client, 5).await, "before");
    proxy.refuse(true);
    proxy.cut_all();
    // Past the 1 s window (the gateway may sweep expired sessions coarsely).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    proxy.refuse(false);
    let second = open_id(&significant_event(&client, 10).await);
    assert_ne!(first, second, "a fresh connection id, not a resume");
    client.send_text("after").unwrap();
    // "before" was echoed, but its ack may not have reached the client before the cut:
    // then it is resent into the new session (`resend_unconfirmed`, at least once).
    let mut got = vec![next_text(&client, 5).await];
    if got[0] == "before" {
        got.push(next_text(&client, 5).await);
    }
    assert_eq!(got.last().map(String::as_str), Some("after"), "{got:?}");
    // The management API no longer knows the old id.
    let mut http = HttpClient::new(gw.mgmt);
    let (status, _) = http
        .request("POST", &format!("/@connections/{first}"), b"x")
        .await;
    assert_eq!(status, 410);
}

#[tokio::test]
async fn a_forged_token_gives_a_fresh_connection() {
    let gw = gateway(&config(30, ECHO)).await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let first = open_id(&event_within(&client, 5).await);
    proxy.forge_tokens(true);
    proxy.cut_all();
    let second = open_id(&significant_event(&client, 10).await);
    assert_ne!(first, second);
    client.send_text("fresh").unwrap();
    assert_eq!(next_text(&client, 5).await, "fresh");
    // The new session's own token resumes.
    proxy.forge_tokens(false);
    proxy.cut_all();
    assert_eq!(
        significant_event(&client, 10).await,
        Event::Resumed {
            connection_id: second
        }
    );
}

#[tokio::test]
async fn plain_mode_works_against_the_gateway() {
    // The client does not offer switchboard.v1.
    let gw = gateway(&config(30, ECHO)).await;
    let opts = Options {
        resume: false,
        ..options()
    };
    let client = Client::connect(&gw.url(), opts).await.unwrap();
    assert_eq!(
        event_within(&client, 5).await,
        Event::Open {
            connection_id: None
        }
    );
    client.send_text("m1:raw").unwrap();
    assert_eq!(next_text(&client, 5).await, "m1:raw");
    // A gateway without [resume] does not select it: the client falls back to plain.
    let plain = Gateway::start(&format!("[management]\nauth = \"none\"\n{ECHO}"));
    let client = Client::connect(&plain.url(), options()).await.unwrap();
    assert_eq!(
        event_within(&client, 5).await,
        Event::Open {
            connection_id: None
        }
    );
    client.send_binary(vec![7u8, 8]).unwrap();
    assert_eq!(
        significant_event(&client, 5).await,
        Event::Message(Payload::Binary(vec![7u8, 8].into()))
    );
    client.close(1000);
    assert!(matches!(
        event_within(&client, 5).await,
        Event::Closed { code: 1000, .. }
    ));
}

/// A burst beyond `buffer_messages` while the socket is up: the oldest unacknowledged
/// messages leave the gateway's buffer, so (docs/protocol.md) the session can no longer
/// be resumed losslessly and a drop ends it. The client gets a fresh connection, and the
/// messages it had were each delivered once.
#[tokio::test]
async fn a_burst_beyond_the_buffer_then_a_drop_gives_a_fresh_connection() {
    let gw = gateway(&config(30, ECHO)).await;
    let proxy = ChaosProxy::start(gw.ws).await;
    let client = Client::connect(&proxy.url(), options()).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    let mut http = HttpClient::new(gw.mgmt);
    // 3,000 sends before the application reads any: the client holds 1,024 events
    // (`event_buffer`), then stops reading, so the gateway's 1,024-message buffer
    // overflows.
    for i in 1..=3000 {
        let (status, body) = http
            .request(
                "POST",
                &format!("/@connections/{id}"),
                format!("s{i}").as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for i in 1..=3000 {
        // Generous: on a loaded 2-core machine the client may fall far behind.
        assert_eq!(next_text(&client, 15).await, format!("s{i}"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut_all();
    let fresh = open_id(&significant_event(&client, 10).await);
    assert_ne!(fresh, id);
    client.send_text("still here").unwrap();
    assert_eq!(next_text(&client, 5).await, "still here");
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_and_find_a_dead_path() {
    // The gateway answers `h`: a quiet connection stays up, and a silent path is found.
    let gw = gateway(&config(30, ECHO)).await;
    chaos::heartbeat_finds_a_silent_path(
        gw.ws,
        options(),
        Duration::from_millis(300),
        Duration::from_millis(800),
    )
    .await;
}

/// docs/protocol.md: the server acknowledges a client message "whenever it has been idle
/// for 200 ms after receiving one" — with no other traffic to carry it.
#[tokio::test]
async fn the_gateway_acknowledges_a_lone_message_when_idle() {
    let gw = gateway(&config(30, ECHO)).await;
    let opts = Options {
        send_queue: 1,
        ..options()
    };
    let client = Client::connect(&gw.url(), opts).await.unwrap();
    open_id(&event_within(&client, 5).await);
    client.send_text("x").unwrap();
    assert_eq!(next_text(&client, 5).await, "x");
    // With a send queue of 1, room comes back only with the ack.
    tokio::time::timeout(Duration::from_secs(2), client.writable())
        .await
        .expect("no ack within 2 s of an idle connection")
        .unwrap();
}

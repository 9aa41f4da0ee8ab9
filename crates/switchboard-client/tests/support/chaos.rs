//! The exchange the chaos tests share: numbered messages each way while a proxy cuts the
//! connection, checked for exactly once and in order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_client::{Client, Event, Payload};
use tokio::time::Instant;

use super::http::{HttpClient, RecordingFunction};
use super::proxy::ChaosProxy;

/// How many messages, how fast, and until when.
pub struct Plan {
    pub n: usize,
    pub pace: Duration,
    pub deadline: Instant,
}

/// Sends `n` numbered messages each way, both directions paced at one per `pace`:
/// `s1..sN` POSTed one after another to `@connections/{id}` through the management API
/// at `mgmt`, `c1..cN` sent by `client` (as its send queue allows) to a route that
/// invokes `function`. Panics unless the client receives every `s` and the function
/// every `c` exactly once, in order, on connection `id`, before `deadline`. Returns the
/// number of resumes.
pub async fn exchange(
    client: &Client,
    proxy: &ChaosProxy,
    mgmt: SocketAddr,
    function: &RecordingFunction,
    id: &str,
    Plan { n, pace, deadline }: Plan,
) -> u32 {
    let start = Instant::now();
    let due = move |i: usize| start + pace * i as u32;
    let path = format!("/@connections/{id}");
    let poster = tokio::spawn(async move {
        let mut http = HttpClient::new(mgmt);
        for i in 1..=n {
            tokio::time::sleep_until(due(i)).await;
            let (status, body) = http
                .request("POST", &path, format!("s{i}").as_bytes())
                .await;
            assert_eq!(status, 200, "POST s{i}: {body}");
        }
    });

    let mut received = Vec::with_capacity(n);
    let (mut next, mut resumes) = (1, 0u32);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while received.len() < n || next <= n {
        let now = Instant::now();
        while next <= n && due(next) <= now {
            match client.send_text(format!("c{next}")) {
                Ok(()) => next += 1,
                Err(e) if e.is_queue_full() => break,
                Err(e) => panic!("send c{next}: {e}"),
            }
        }
        let ev = tokio::select! {
            ev = client.next_event() => ev,
            _ = tick.tick(), if next <= n => continue,
            _ = tokio::time::sleep_until(deadline) => panic!(
                "timed out: sent {} of {n}, received {}, function invoked {} times, {} cuts, {resumes} resumes",
                next - 1, received.len(), function.bodies.lock().len(),
                proxy.cuts.load(Ordering::SeqCst)
            ),
        };
        match ev {
            Event::Message(Payload::Text(t)) => received.push(t),
            Event::Resumed { connection_id } => {
                assert_eq!(connection_id, id);
                resumes += 1;
            }
            Event::Reconnecting { .. } => {}
            other => panic!("unexpected {other:?} after {} messages", received.len()),
        }
    }
    poster.await.unwrap();
    // The last client messages may still be on their way to the function.
    while function.bodies.lock().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop_cutting();
    let expected_s: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
    let expected_c: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    assert!(
        received == expected_s,
        "client: {}",
        first_difference(&received, &expected_s)
    );
    let bodies = function.bodies.lock().clone();
    assert!(
        bodies == expected_c,
        "function: {}",
        first_difference(&bodies, &expected_c)
    );
    assert_eq!(client.connection_id().as_deref(), Some(id));
    assert!(client.take_unconfirmed().is_empty());
    resumes
}

/// Heartbeats every 100 ms (`timeout` to answer) keep a quiet connection to `upstream`
/// up for `quiet`; a silent path (the proxy forwards nothing, sockets open) is found
/// dead; once the path is back and the old socket is cut, the session resumes.
pub async fn heartbeat_finds_a_silent_path(
    upstream: SocketAddr,
    base: switchboard_client::Options,
    timeout: Duration,
    quiet: Duration,
) {
    use super::{event_within, open_id, significant_event};
    let proxy = ChaosProxy::start(upstream).await;
    let opts = switchboard_client::Options {
        heartbeat: Some(switchboard_client::Heartbeat {
            interval: Duration::from_millis(100),
            timeout,
        }),
        connect_timeout: Duration::from_millis(500),
        ..base
    };
    let client = Client::connect(&proxy.url(), opts).await.unwrap();
    let id = open_id(&event_within(&client, 5).await);
    tokio::time::sleep(quiet).await;
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1);
    proxy.stall(true);
    let ev = event_within(&client, 5).await;
    assert!(
        matches!(ev, Event::Reconnecting { attempt: 1, .. }),
        "{ev:?}"
    );
    proxy.stall(false);
    proxy.cut_all();
    assert_eq!(
        significant_event(&client, 10).await,
        Event::Resumed { connection_id: id }
    );
}

pub fn first_difference(got: &[String], want: &[String]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} items (want {}); first difference at {i}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(i),
        want.get(i)
    )
}

//! Test harness for the client: a chaos TCP proxy, a recording HTTP function server, a
//! keep-alive HTTP client for the management API, the real gateway binary, and a small
//! fake `switchboard.v1` server written from docs/protocol.md.
#![allow(dead_code)]

pub mod chaos;
pub mod fake;
pub mod gateway;
pub mod http;
pub mod proxy;

use std::time::Duration;

use switchboard_client::{Client, Event, Options, Payload, ReconnectPolicy};

/// Quick reconnects (10–200 ms, up to 100 attempts) for tests against a real gateway.
pub fn options() -> Options {
    Options {
        reconnect: ReconnectPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(200),
            max_attempts: Some(100),
            ..Default::default()
        },
        connect_timeout: Duration::from_secs(5),
        close_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

/// [`options`] retrying every 50–100 ms up to `attempts` times: for a client that must
/// outlast a gateway down for seconds.
pub fn patient_options(attempts: u32) -> Options {
    Options {
        reconnect: ReconnectPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(100),
            max_attempts: Some(attempts),
            ..Default::default()
        },
        ..options()
    }
}

/// The next event, or a panic naming what was expected after `secs`.
pub async fn event_within(client: &Client, secs: u64) -> Event {
    tokio::time::timeout(Duration::from_secs(secs), client.next_event())
        .await
        .unwrap_or_else(|_| panic!("no event within {secs} s"))
}

/// The next event that is not `Reconnecting`.
pub async fn significant_event(client: &Client, secs: u64) -> Event {
    loop {
        match event_within(client, secs).await {
            Event::Reconnecting { .. } => continue,
            other => return other,
        }
    }
}

/// The next message's text, skipping reconnect events; panics on anything else.
pub async fn next_text(client: &Client, secs: u64) -> String {
    match significant_event(client, secs).await {
        Event::Message(Payload::Text(t)) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

pub fn open_id(ev: &Event) -> String {
    match ev {
        Event::Open {
            connection_id: Some(id),
        } => id.clone(),
        other => panic!("expected Open with an id, got {other:?}"),
    }
}

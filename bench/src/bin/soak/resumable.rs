//! Resumable clients (the Rust SDK, `switchboard.v1`) through the cutting proxy, with
//! numbered messages both ways, checked for exactly once.
//!
//! Client `k` sends `{"action":"rec","c":k,"n":n}` (n = 1, 2, ...) to the `rec` route,
//! whose function counts them ([`crate::events`]); a poster sends `s<k>:<n>` to the
//! client's current connection id through `POST /@connections/{id}` of one node's
//! management API, the next message only after the previous answered, and the client
//! counts what arrives. The [`Ledger`] (sans-IO) holds one client's view: which
//! connection each message was accepted for, what arrived how often, and the client's
//! logical connections in order. A message accepted for a connection that was later
//! replaced by a fresh one (the session could not be resumed, e.g. its node was killed)
//! is lost *with its session*; any other loss, and any repeat, is a finding.
//!
//! A client the gateway closes for good (a close code the SDK does not reconnect on, e.g.
//! 1002) is a finding too; the application here then does what an app would, connects a
//! new client and goes on numbering, and the messages lost with the closed client are
//! counted apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use switchboard_client::{Client, Event, Options, Payload};
use tokio::sync::Notify;

use crate::api::{Api, Failure};
use crate::{now_ms, Failures, Stop, Window};

/// A logical connection of the client (a fresh session opens a new one).
#[derive(Debug, Clone)]
struct Span {
    id: String,
    opened_ms: u64,
    /// Opened by a new client after the previous one was closed for good.
    replacement: bool,
}

/// One message the poster got a 2xx for.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The span whose connection id it was sent to.
    span: u32,
    /// An earlier attempt got no answer (it may have been processed: a repeat of this
    /// message is the sender's retry, not the gateway's).
    retried_unanswered: bool,
}

/// One client's record of the server → client direction and of its sessions.
#[derive(Debug, Default)]
pub struct Ledger {
    spans: Vec<Span>,
    /// Index n - 1.
    sent: Vec<Sent>,
    /// Unanswered attempts of the message being posted now.
    pending_unanswered: bool,
    /// Index n - 1: how often message n arrived.
    received: Vec<u32>,
    last_received: u64,
    out_of_order: u64,
    resumes: u64,
    reconnects: u64,
    /// Messages that are not `s<k>:<n>` (user sends, broadcasts, group batch sends).
    other: u64,
    /// The client was closed for good before the end: when, code and reason.
    closed_early: Vec<(u64, u16, String)>,
    closed: Option<(u16, String)>,
}

impl Ledger {
    /// The client opened logical connection `id`: its first, a fresh session, or
    /// (`replacement`) the first of a new client after the last one was closed for good.
    pub fn open(&mut self, id: String, at_ms: u64, replacement: bool) {
        self.spans.push(Span {
            id,
            opened_ms: at_ms,
            replacement,
        });
    }

    /// The current connection id.
    pub fn current(&self) -> Option<(u32, &str)> {
        self.spans
            .last()
            .map(|s| (self.spans.len() as u32 - 1, s.id.as_str()))
    }

    /// The message being posted got no answer.
    pub fn unanswered(&mut self) {
        self.pending_unanswered = true;
    }

    /// The next message (n = sent + 1) was accepted for span `span`.
    pub fn sent(&mut self, span: u32) {
        self.sent.push(Sent {
            span,
            retried_unanswered: std::mem::take(&mut self.pending_unanswered),
        });
    }

    /// Message `n` arrived.
    pub fn received(&mut self, n: u64) {
        if n == 0 || n > 10_000_000 {
            self.other += 1;
            return;
        }
        let i = (n - 1) as usize;
        if self.received.len() <= i {
            self.received.resize(i + 1, 0);
        }
        self.received[i] += 1;
        if n < self.last_received {
            self.out_of_order += 1;
        }
        self.last_received = self.last_received.max(n);
    }

    /// How the client closed for good, once it has.
    pub fn closed(&self) -> Option<&(u16, String)> {
        self.closed.as_ref()
    }

    /// Every accepted message arrived at least once.
    pub fn complete(&self) -> bool {
        (0..self.sent.len()).all(|i| self.received.get(i).copied().unwrap_or(0) > 0)
    }

    /// The figures; fresh sessions opened inside `window` are counted apart.
    pub fn report(&self, window: Option<Window>) -> ServerToClient {
        let mut r = ServerToClient {
            sent: self.sent.len() as u64,
            resumes: self.resumes,
            reconnects: self.reconnects,
            out_of_order: self.out_of_order,
            other_messages: self.other,
            ..ServerToClient::default()
        };
        for (i, s) in self.sent.iter().enumerate() {
            let next = self.spans.get(s.span as usize + 1);
            match self.received.get(i).copied().unwrap_or(0) {
                0 if next.is_some_and(|n| n.replacement) => r.lost_with_closed_client += 1,
                0 if next.is_some() => r.lost_with_session += 1,
                0 => {
                    r.lost_in_session += 1;
                    if r.lost_examples.len() < 10 {
                        r.lost_examples.push(i as u64 + 1);
                    }
                }
                1 => r.delivered += 1,
                k => {
                    r.delivered += 1;
                    let extra = u64::from(k - 1);
                    if s.retried_unanswered {
                        r.doubled_after_unanswered_retry += extra;
                    } else {
                        r.doubled += extra;
                    }
                }
            }
        }
        r.delivered_unaccepted = self
            .received
            .iter()
            .skip(self.sent.len())
            .filter(|&&c| c > 0)
            .count() as u64;
        r.lost = r.lost_with_session + r.lost_in_session + r.lost_with_closed_client;
        r.closed_early = self.closed_early.len() as u64;
        r.closed_early_examples = self
            .closed_early
            .iter()
            .take(5)
            .map(|(ms, code, reason)| format!("{ms}: {code} {reason}"))
            .collect();
        for s in self.spans.iter().skip(1) {
            if s.replacement {
                continue;
            }
            if window.is_some_and(|w| w.contains(s.opened_ms)) {
                r.fresh_sessions_around_kill += 1;
            } else {
                r.fresh_sessions_elsewhere += 1;
                if r.fresh_session_times_ms.len() < 10 {
                    r.fresh_session_times_ms.push(s.opened_ms);
                }
            }
        }
        r
    }
}

/// The server → client figures of one client (or summed over all).
#[derive(Serialize, Default, Debug, Clone)]
pub struct ServerToClient {
    /// Messages the management API accepted (2xx).
    pub sent: u64,
    /// Accepted messages that arrived (at least once).
    pub delivered: u64,
    pub lost: u64,
    /// Lost because their session was replaced by a fresh one.
    pub lost_with_session: u64,
    /// Lost although their session lived on: a finding.
    pub lost_in_session: u64,
    /// Lost because the gateway closed the client for good: a finding.
    pub lost_with_closed_client: u64,
    /// Clients the gateway closed for good before the end (each replaced by a new
    /// client): a finding.
    pub closed_early: u64,
    pub closed_early_examples: Vec<String>,
    pub lost_examples: Vec<u64>,
    /// Extra arrivals of a message: a finding.
    pub doubled: u64,
    /// Extra arrivals of a message the sender had to send again after an attempt got no
    /// answer (the sender's at-least-once, not the gateway's).
    pub doubled_after_unanswered_retry: u64,
    /// Messages that arrived although their last attempt got no 2xx.
    pub delivered_unaccepted: u64,
    pub out_of_order: u64,
    pub other_messages: u64,
    pub resumes: u64,
    pub reconnects: u64,
    /// Fresh sessions (the old one could not be resumed) opened while a node was down.
    pub fresh_sessions_around_kill: u64,
    /// Fresh sessions at any other time: a finding.
    pub fresh_sessions_elsewhere: u64,
    pub fresh_session_times_ms: Vec<u64>,
}

impl ServerToClient {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &ServerToClient) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.lost_with_session += o.lost_with_session;
        self.lost_in_session += o.lost_in_session;
        self.lost_with_closed_client += o.lost_with_closed_client;
        self.closed_early += o.closed_early;
        for x in &o.closed_early_examples {
            if self.closed_early_examples.len() < 10 {
                self.closed_early_examples.push(format!("client {}", x));
            }
        }
        self.doubled += o.doubled;
        self.doubled_after_unanswered_retry += o.doubled_after_unanswered_retry;
        self.delivered_unaccepted += o.delivered_unaccepted;
        self.out_of_order += o.out_of_order;
        self.other_messages += o.other_messages;
        self.resumes += o.resumes;
        self.reconnects += o.reconnects;
        self.fresh_sessions_around_kill += o.fresh_sessions_around_kill;
        self.fresh_sessions_elsewhere += o.fresh_sessions_elsewhere;
        for &x in &o.lost_examples {
            if self.lost_examples.len() < 10 {
                self.lost_examples.push(x);
            }
        }
        for &x in &o.fresh_session_times_ms {
            if self.fresh_session_times_ms.len() < 10 {
                self.fresh_session_times_ms.push(x);
            }
        }
    }
}

/// What the poster of one client saw.
#[derive(Default)]
pub struct PostCounters {
    pub ok: AtomicU64,
    /// 410: the connection id is gone (the poster waits for the next one).
    pub gone: AtomicU64,
    pub other_status: AtomicU64,
    pub refused: AtomicU64,
    pub unanswered: AtomicU64,
    /// When each failure (other than 410) happened.
    pub failures: Failures,
}

/// One resumable client and its two senders.
pub struct Resumable {
    pub k: u64,
    url: String,
    /// The current client (replaced when the gateway closes one for good).
    client: Mutex<Arc<Client>>,
    pub ledger: Mutex<Ledger>,
    changed: Notify,
    /// Messages queued in any of the clients (client → server).
    pub queued: AtomicU64,
    pub posts: PostCounters,
}

fn client_options() -> Options {
    Options {
        // Long enough for a node's restart, short enough to notice a dead path.
        connect_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

impl Resumable {
    /// Connects client `k` to `url` (the proxy).
    pub async fn connect(k: u64, url: &str) -> anyhow::Result<Arc<Self>> {
        let client = Client::connect(url, client_options()).await?;
        Ok(Arc::new(Self {
            k,
            url: url.to_owned(),
            client: Mutex::new(Arc::new(client)),
            ledger: Mutex::new(Ledger::default()),
            changed: Notify::new(),
            queued: AtomicU64::new(0),
            posts: PostCounters::default(),
        }))
    }

    /// The current client.
    pub fn client(&self) -> Arc<Client> {
        self.client.lock().clone()
    }

    /// Reads the clients' events until the current one is closed by us (code 1000), or
    /// closed by the gateway once `stop` is set. A client the gateway closes for good
    /// before is recorded and replaced by a new one.
    pub async fn read_events(self: Arc<Self>, stop: Stop) {
        let mut replacement = false;
        loop {
            let client = self.client();
            loop {
                let ev = client.next_event().await;
                let mut l = self.ledger.lock();
                match ev {
                    Event::Open { connection_id } => {
                        l.open(connection_id.unwrap_or_default(), now_ms(), replacement);
                        replacement = false;
                        drop(l);
                        self.changed.notify_waiters();
                    }
                    Event::Resumed { .. } => l.resumes += 1,
                    Event::Reconnecting { .. } => l.reconnects += 1,
                    Event::Message(Payload::Text(t)) => match parse_numbered(&t, self.k) {
                        Some(n) => l.received(n),
                        None => l.other += 1,
                    },
                    Event::Message(Payload::Binary(_)) => l.other += 1,
                    Event::Closed { code, reason } => {
                        if code == 1000 || stop.is_set() {
                            l.closed = Some((code, reason));
                            return;
                        }
                        l.closed_early.push((now_ms(), code, reason));
                        break;
                    }
                }
            }
            // Closed for good by the gateway: a new client, as an application would.
            let next = loop {
                if stop.is_set() {
                    self.ledger.lock().closed = Some((1006, "not replaced".into()));
                    return;
                }
                match Client::connect(&self.url, client_options()).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            };
            *self.client.lock() = Arc::new(next);
            replacement = true;
        }
    }

    /// Queues `{"action":"rec","c":k,"n":n}` at `per_sec` until `stop`.
    pub async fn send_numbered(self: Arc<Self>, per_sec: f64, mut stop: Stop) {
        let mut tick = crate::pacer(per_sec);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            n += 1;
            let msg = format!(r#"{{"action":"rec","c":{},"n":{n}}}"#, self.k);
            loop {
                let client = self.client();
                match client.send_text(msg.clone()) {
                    Ok(()) => break,
                    Err(e) if e.is_queue_full() => {
                        tokio::select! {
                            _ = client.writable() => {}
                            _ = stop.wait() => return,
                        }
                    }
                    // Closed for good: wait for its replacement.
                    Err(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            _ = stop.wait() => return,
                        }
                    }
                }
            }
            self.queued.store(n, Ordering::Relaxed);
        }
    }

    /// Posts `s<k>:<n>` to the client's current connection at `per_sec`, through
    /// `apis[first]` (and the next node's API while that one fails), until `stop`.
    pub async fn post_numbered(
        self: Arc<Self>,
        mut apis: Vec<Api>,
        first: usize,
        per_sec: f64,
        mut stop: Stop,
    ) {
        let mut tick = crate::pacer(per_sec);
        let mut node = first % apis.len();
        let mut n = 0u64;
        'next: loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            n += 1;
            let body = format!("s{}:{n}", self.k);
            loop {
                if stop.is_set() {
                    return;
                }
                let (span, id) = match self.ledger.lock().current() {
                    Some((s, id)) => (s, id.to_owned()),
                    None => (0, String::new()),
                };
                let changed = self.changed.notified();
                let path = format!("/@connections/{id}");
                let failed = match apis[node].request("POST", &path, body.as_bytes()).await {
                    Ok(a) if (200..300).contains(&a.status) => {
                        self.posts.ok.fetch_add(1, Ordering::Relaxed);
                        self.ledger.lock().sent(span);
                        continue 'next;
                    }
                    Ok(a) if a.status == 410 => {
                        // The id is gone (its session ended, or its home node died):
                        // the message goes to the client's next connection.
                        self.posts.gone.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            _ = changed => {}
                            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                            _ = stop.wait() => return,
                        }
                        continue;
                    }
                    Ok(_) => {
                        self.posts.other_status.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(Failure::Refused) => {
                        self.posts.refused.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(Failure::Unanswered(_)) => {
                        self.posts.unanswered.fetch_add(1, Ordering::Relaxed);
                        self.ledger.lock().unanswered();
                        true
                    }
                };
                if failed {
                    self.posts.failures.record();
                    node = (node + 1) % apis.len();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.wait() => return,
                    }
                }
            }
        }
    }
}

/// `s<k>:<n>` for client `k`: n.
fn parse_numbered(t: &str, k: u64) -> Option<u64> {
    let (c, n) = t.strip_prefix('s')?.split_once(':')?;
    (c.parse::<u64>().ok()? == k).then_some(())?;
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_messages_are_read_for_their_client_only() {
        assert_eq!(parse_numbered("s3:17", 3), Some(17));
        assert_eq!(parse_numbered("s4:17", 3), None);
        assert_eq!(parse_numbered("u12", 3), None);
        assert_eq!(parse_numbered("s3:x", 3), None);
    }

    #[test]
    fn losses_are_told_apart_by_whether_the_session_lived_on() {
        let mut l = Ledger::default();
        l.open("a".into(), 100, false);
        l.sent(0); // 1: arrives
        l.sent(0); // 2: lost with session a
        l.open("b".into(), 5_000, false);
        l.sent(1); // 3: arrives twice
        l.unanswered();
        l.sent(1); // 4: arrives twice after an unanswered attempt
        l.sent(1); // 5: lost although b lives on
        for n in [1, 3, 3, 4, 4, 6] {
            l.received(n);
        }
        l.received(2 + 10_000_000);
        assert!(!l.complete());
        let w = Window {
            from_ms: 4_000,
            to_ms: 6_000,
        };
        let r = l.report(Some(w));
        assert_eq!((r.sent, r.delivered, r.lost), (5, 3, 2));
        assert_eq!((r.lost_with_session, r.lost_in_session), (1, 1));
        assert_eq!(r.lost_examples, vec![5]);
        assert_eq!((r.doubled, r.doubled_after_unanswered_retry), (1, 1));
        assert_eq!(r.delivered_unaccepted, 1);
        assert_eq!(r.other_messages, 1);
        assert_eq!(
            (r.fresh_sessions_around_kill, r.fresh_sessions_elsewhere),
            (1, 0)
        );
        let r = l.report(None);
        assert_eq!(r.fresh_sessions_elsewhere, 1);
        assert_eq!(r.fresh_session_times_ms, vec![5_000]);
    }

    #[test]
    fn losses_with_a_client_closed_for_good_are_counted_apart() {
        let mut l = Ledger::default();
        l.open("a".into(), 0, false);
        l.sent(0); // 1: lost when the client was closed
        l.closed_early.push((10, 1002, "gap".into()));
        l.open("b".into(), 20, true);
        l.sent(1); // 2: arrives
        l.received(2);
        let r = l.report(None);
        assert_eq!(
            (r.lost, r.lost_with_closed_client, r.lost_with_session),
            (1, 1, 0)
        );
        assert_eq!((r.closed_early, r.fresh_sessions_elsewhere), (1, 0));
        assert_eq!(r.closed_early_examples, vec!["10: 1002 gap".to_owned()]);
    }

    #[test]
    fn out_of_order_arrivals_are_counted() {
        let mut l = Ledger::default();
        l.open("a".into(), 0, false);
        for _ in 0..3 {
            l.sent(0);
        }
        for n in [1, 3, 2] {
            l.received(n);
        }
        assert!(l.complete());
        let r = l.report(None);
        assert_eq!(
            (r.delivered, r.lost, r.doubled, r.out_of_order),
            (3, 0, 0, 1)
        );
    }
}

//! Plain WebSocket traffic straight to the nodes (no proxy): echo connections that live
//! for the whole run, connection churn, and group fan-out members with their publisher.
//!
//! Every connection goes to a node in turn and, when that node does not answer, to the
//! next one (a node may be down: the cluster run kills one). Failures are counted with
//! their times ([`Failures`]) so the report can tell those around the kill from the rest.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use serde::Serialize;
use switchboard_bench::ws_client::{ClientOptions, End, Endpoint, Ws, WsUrl};
use switchboard_ws::Limits;

use crate::api::{Api, Failure};
use crate::{pacer, Failures, Rng, Stop};

/// Longest wait for a handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for an echo or a join answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Churn connections in flight at most (a slow node must not pile them up).
const CHURN_IN_FLIGHT: usize = 400;

fn options(deflate: bool) -> ClientOptions {
    ClientOptions {
        limits: Limits {
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
        },
        read_reserve: 4096,
        close_timeout: Duration::from_secs(2),
        deflate,
        v1: false,
    }
}

/// The WebSocket endpoints of every node, without and with permessage-deflate.
pub struct Nodes {
    plain: Vec<Endpoint>,
    deflate: Vec<Endpoint>,
}

impl Nodes {
    /// Endpoints for the nodes' `ws://` URLs.
    pub fn new(urls: &[String]) -> Result<Self> {
        let mut plain = Vec::new();
        let mut deflate = Vec::new();
        for url in urls {
            let u = WsUrl::split(url)?;
            let ip = u.ip().map_err(|e| anyhow!("{url}: {e}"))?;
            if !ip.is_loopback() {
                return Err(anyhow!("{url}: loopback only"));
            }
            let port: u16 = u
                .port
                .ok_or_else(|| anyhow!("{url}: a port is required"))?
                .parse()?;
            let addr = std::net::SocketAddr::new(ip, port);
            let sources = Endpoint::loopback_sources(4);
            plain.push(Endpoint::new(
                addr,
                u.authority,
                u.path,
                sources.clone(),
                options(false),
            ));
            deflate.push(Endpoint::new(
                addr,
                u.authority,
                u.path,
                sources,
                options(true),
            ));
        }
        Ok(Self { plain, deflate })
    }

    pub fn len(&self) -> usize {
        self.plain.len()
    }

    /// A connection to node `first`, or the next node that accepts; the node used.
    async fn connect_any(&self, first: usize, deflate: bool) -> Result<(Ws, usize)> {
        let eps = if deflate { &self.deflate } else { &self.plain };
        let mut last = None;
        for k in 0..eps.len() {
            let i = (first + k) % eps.len();
            match eps[i].connect_timeout(HANDSHAKE_TIMEOUT).await {
                Ok(ws) => return Ok((ws, i)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no node")))
    }
}

/// Sleeps `d` unless `stop` comes first; `false` when it did.
async fn pause(d: Duration, stop: &mut Stop) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait() => false,
    }
}

// ---------------------------------------------------------------------------------------
// echo

/// What the echo connections saw.
#[derive(Default)]
pub struct EchoCounters {
    pub connects: AtomicU64,
    pub sent: AtomicU64,
    pub echoed: AtomicU64,
    /// An answer that was not the message sent: a finding.
    pub mismatched: AtomicU64,
    /// Messages that are not echoes (broadcasts).
    pub other: AtomicU64,
    /// No echo within the timeout (the connection is dropped and opened again).
    pub timeouts: AtomicU64,
    /// The connection ended with a message in flight.
    pub dropped: AtomicU64,
    pub failures: Failures,
}

/// One echo connection for the whole run (opened again whenever it ends): numbered JSON
/// messages to the `echo` route at `per_sec`, each answer checked byte for byte.
pub async fn echo(i: usize, nodes: Arc<Nodes>, per_sec: f64, c: Arc<EchoCounters>, mut stop: Stop) {
    let deflate = i % 2 == 1;
    let mut node = i;
    let mut n = 0u64;
    'conn: while !stop.is_set() {
        let mut ws = match nodes.connect_any(node, deflate).await {
            Ok((ws, used)) => {
                node = used;
                ws
            }
            Err(_) => {
                c.failures.record();
                if !pause(Duration::from_millis(250), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        c.connects.fetch_add(1, Ordering::Relaxed);
        let mut tick = pacer(per_sec);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => {
                    ws.close().await;
                    return;
                }
            }
            n += 1;
            let msg = format!(r#"{{"action":"echo","e":{i},"n":{n}}}"#);
            if ws.send(true, msg.as_bytes()).await.is_err() {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                c.failures.record();
                node += 1;
                continue 'conn;
            }
            c.sent.fetch_add(1, Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
            loop {
                match tokio::time::timeout_at(deadline, ws.next_data()).await {
                    Ok(Ok(b)) if b == msg.as_bytes() => {
                        c.echoed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Ok(b)) if b.starts_with(br#"{"action":"echo""#) => {
                        c.mismatched.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        c.other.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                        c.failures.record();
                        node += 1;
                        continue 'conn;
                    }
                    Err(_) => {
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                        c.failures.record();
                        continue 'conn;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// churn

/// What the churn connections did.
#[derive(Default)]
pub struct ChurnCounters {
    pub attempts: AtomicU64,
    pub opened: AtomicU64,
    /// Handshakes that failed.
    pub failed: AtomicU64,
    pub echoed: AtomicU64,
    /// No echo (wrong answer, timeout or the connection ended first).
    pub echo_failed: AtomicU64,
    /// Closed with a close handshake that completed.
    pub closed_clean: AtomicU64,
    /// A close handshake that did not complete in time.
    pub close_unanswered: AtomicU64,
    /// Dropped without a close frame (the gateway sees 1006).
    pub dropped: AtomicU64,
    /// Ticks skipped because too many were in flight.
    pub skipped: AtomicU64,
    pub failures: Failures,
}

/// Opens `per_sec` short-lived connections a second until `stop`: each sends one echo,
/// lives up to 1.5 s, and ends with a close handshake (70 %) or by dropping TCP.
pub async fn churn(nodes: Arc<Nodes>, per_sec: f64, c: Arc<ChurnCounters>, mut stop: Stop) {
    let mut tick = pacer(per_sec);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait() => break,
        }
        if in_flight.load(Ordering::Relaxed) >= CHURN_IN_FLIGHT {
            c.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        i += 1;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (nodes, c, f) = (nodes.clone(), c.clone(), in_flight.clone());
        tokio::spawn(async move {
            churn_one(i, &nodes, &c).await;
            f.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Let the ones in flight finish (each is bounded: handshake, answer, life, close).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn churn_one(i: u64, nodes: &Nodes, c: &ChurnCounters) {
    let mut rng = Rng::new(i);
    c.attempts.fetch_add(1, Ordering::Relaxed);
    let node = (i as usize) % nodes.len();
    let eps = if i.is_multiple_of(5) {
        &nodes.deflate
    } else {
        &nodes.plain
    };
    let mut ws = match eps[node].connect_timeout(HANDSHAKE_TIMEOUT).await {
        Ok(ws) => ws,
        Err(_) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            c.failures.record();
            return;
        }
    };
    c.opened.fetch_add(1, Ordering::Relaxed);
    let msg = format!(r#"{{"action":"echo","churn":{i}}}"#);
    let echoed = async {
        ws.send(true, msg.as_bytes()).await.ok()?;
        loop {
            let b = ws.next_data().await.ok()?;
            if b == msg.as_bytes() {
                return Some(());
            }
        }
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, echoed).await {
        Ok(Some(())) => c.echoed.fetch_add(1, Ordering::Relaxed),
        _ => {
            c.echo_failed.fetch_add(1, Ordering::Relaxed);
            c.failures.record();
            return;
        }
    };
    tokio::time::sleep(rng.between(Duration::ZERO, Duration::from_millis(1500))).await;
    if rng.chance(0.7) {
        if ws.close().await {
            c.closed_clean.fetch_add(1, Ordering::Relaxed);
        } else {
            c.close_unanswered.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        c.dropped.fetch_add(1, Ordering::Relaxed);
        drop(ws);
    }
}

// ---------------------------------------------------------------------------------------
// fan-out

/// The group the fan-out members join.
pub const FAN_GROUP: &str = "soak-fan";

/// Message numbers as a bit set.
#[derive(Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// Sets `n`; whether it was set before.
    pub fn set(&mut self, n: u64) -> bool {
        let (w, b) = ((n / 64) as usize, n % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }

    pub fn has(&self, n: u64) -> bool {
        self.0
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }
}

/// One connection of a fan-out member: the group messages it received.
#[derive(Default, Clone)]
pub struct Life {
    first: Option<u64>,
    last: u64,
    got: Bits,
    pub received: u64,
    pub doubled: u64,
    pub out_of_order: u64,
}

impl Life {
    /// Group message `n` arrived.
    pub fn record(&mut self, n: u64) {
        self.received += 1;
        if self.got.set(n) {
            self.doubled += 1;
            return;
        }
        if n < self.last {
            self.out_of_order += 1;
        }
        self.first = Some(self.first.map_or(n, |f| f.min(n)));
        self.last = self.last.max(n);
    }

    /// Between its first and last message: accepted messages it never got, and messages
    /// it got that were never accepted (their publish got no answer).
    pub fn gaps(&self, accepted: &Bits) -> (u64, u64) {
        let Some(first) = self.first else {
            return (0, 0);
        };
        let (mut missing, mut unaccepted) = (0, 0);
        for n in first..=self.last {
            match (accepted.has(n), self.got.has(n)) {
                (true, false) => missing += 1,
                (false, true) => unaccepted += 1,
                _ => {}
            }
        }
        (missing, unaccepted)
    }
}

/// What the fan-out members saw.
#[derive(Default)]
pub struct FanCounters {
    pub joins: AtomicU64,
    pub join_failures: AtomicU64,
    /// Members closed through the API (`DELETE @connections`, close 1000).
    pub deleted: AtomicU64,
    /// Member connections that ended otherwise.
    pub dropped: AtomicU64,
    pub other: AtomicU64,
    pub failures: Failures,
    pub lives: Mutex<Vec<Life>>,
    /// Members joined at least once.
    pub members_up: AtomicU64,
}

/// One group member for the whole run: joins `FAN_GROUP` through the `join` route and
/// records the numbered group messages (`f<n>`) of each connection; opened and joined
/// again whenever it ends.
pub async fn fan_member(i: usize, nodes: Arc<Nodes>, c: Arc<FanCounters>, mut stop: Stop) {
    let mut node = i;
    let mut up = false;
    while !stop.is_set() {
        let (mut ws, used) = match nodes.connect_any(node, i.is_multiple_of(3)).await {
            Ok(x) => x,
            Err(_) => {
                c.failures.record();
                if !pause(Duration::from_millis(250), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        node = used;
        let join = format!(r#"{{"action":"join","group":"{FAN_GROUP}"}}"#);
        let joined = async {
            ws.send(true, join.as_bytes()).await.ok()?;
            loop {
                let b = ws.next_data().await.ok()?;
                if switchboard_bench::contains(&b, b"\"joined\"") {
                    return Some(());
                }
            }
        };
        if !matches!(
            tokio::time::timeout(ANSWER_TIMEOUT, joined).await,
            Ok(Some(()))
        ) {
            c.join_failures.fetch_add(1, Ordering::Relaxed);
            c.failures.record();
            node += 1;
            continue;
        }
        c.joins.fetch_add(1, Ordering::Relaxed);
        if !up {
            up = true;
            c.members_up.fetch_add(1, Ordering::Relaxed);
        }
        let mut life = Life::default();
        loop {
            let r = tokio::select! {
                r = ws.next_data() => r,
                _ = stop.wait() => {
                    ws.close().await;
                    c.lives.lock().push(life);
                    return;
                }
            };
            match r {
                Ok(b) => match b
                    .strip_prefix(b"f")
                    .and_then(switchboard_bench::parse_decimal)
                {
                    Some(n) => life.record(n),
                    None => {
                        c.other.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Err(End::Closed(Some((1000, _)))) => {
                    c.deleted.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    c.failures.record();
                    node += 1;
                    break;
                }
            }
        }
        c.lives.lock().push(life);
    }
}

/// What the publisher did.
#[derive(Default)]
pub struct PublishCounters {
    pub published: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub unanswered: AtomicU64,
    pub other_status: AtomicU64,
    /// Sums of the answers' fields.
    pub recipients: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: Failures,
    /// Message numbers the API accepted.
    pub accepted_set: Mutex<Bits>,
}

/// Publishes `f<n>` to `FAN_GROUP` at `per_sec` through each node's `POST
/// /v1/groups/{group}/messages` in turn, until `stop`.
pub async fn publish(mut apis: Vec<Api>, per_sec: f64, c: Arc<PublishCounters>, mut stop: Stop) {
    let mut tick = pacer(per_sec);
    let path = format!("/v1/groups/{FAN_GROUP}/messages");
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait() => return,
        }
        n += 1;
        let node = (n as usize) % apis.len();
        c.published.fetch_add(1, Ordering::Relaxed);
        match apis[node]
            .request("POST", &path, format!("f{n}").as_bytes())
            .await
        {
            Ok(a) if (200..300).contains(&a.status) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                c.accepted_set.lock().set(n);
                let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                let field = |k: &str| v[k].as_u64().unwrap_or(0);
                c.recipients
                    .fetch_add(field("recipients"), Ordering::Relaxed);
                c.delivered.fetch_add(field("delivered"), Ordering::Relaxed);
                c.dropped.fetch_add(field("dropped"), Ordering::Relaxed);
            }
            Ok(_) => {
                c.other_status.fetch_add(1, Ordering::Relaxed);
                c.failures.record();
            }
            Err(Failure::Refused) => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                c.failures.record();
            }
            Err(Failure::Unanswered(_)) => {
                c.unanswered.fetch_add(1, Ordering::Relaxed);
                c.failures.record();
            }
        }
    }
}

/// The fan-out figures at the end.
#[derive(Serialize, Default)]
pub struct FanReport {
    /// Member connections (joins) checked.
    pub connections: u64,
    pub received: u64,
    /// Accepted messages a member never got between its first and last message: a finding.
    pub missing: u64,
    /// Messages a member got whose publish got no answer.
    pub delivered_unaccepted: u64,
    /// Repeats: a finding.
    pub doubled: u64,
    pub out_of_order: u64,
}

/// Sums the members' connections against the accepted messages.
pub fn fan_report(lives: &[Life], accepted: &Bits) -> FanReport {
    let mut r = FanReport::default();
    for l in lives {
        r.connections += 1;
        r.received += l.received;
        r.doubled += l.doubled;
        r.out_of_order += l.out_of_order;
        let (m, u) = l.gaps(accepted);
        r.missing += m;
        r.delivered_unaccepted += u;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_gaps_count_only_accepted_messages() {
        let mut accepted = Bits::default();
        for n in [1, 2, 3, 5, 6, 7, 8] {
            accepted.set(n);
        }
        let mut l = Life::default();
        for n in [2, 4, 3, 6, 6, 8] {
            l.record(n);
        }
        // 2..=8: 5 and 7 accepted and missing; 4 arrived though unaccepted.
        assert_eq!(l.gaps(&accepted), (2, 1));
        assert_eq!((l.received, l.doubled, l.out_of_order), (6, 1, 1));
        let r = fan_report(&[l, Life::default()], &accepted);
        assert_eq!((r.connections, r.missing, r.doubled), (2, 2, 1));
    }

    #[test]
    fn bits() {
        let mut b = Bits::default();
        assert!(!b.set(130));
        assert!(b.set(130));
        assert!(b.has(130) && !b.has(129) && !b.has(100_000));
    }
}

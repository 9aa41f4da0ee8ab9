//! `soak events`: the HTTP function every gateway of the soak invokes for `$connect`,
//! `$disconnect` and the `rec` route, and the tally it keeps.
//!
//! The [`Tally`] is sans-IO: it counts `$connect` and `$disconnect` per connection id (a
//! connection id carries its node's tag and the node process's incarnation, so every
//! connection is attributed to a node and to a run of that node: `node-b#2` is node-b
//! after its restart), and the numbered messages each resumable client sends
//! (`{"action":"rec","c":K,"n":N}`), per message number: how often it arrived and whether
//! a repeat came on the same connection (a de-duplication failure) or on another one (a
//! resend into a fresh session). The server around it is a minimal HTTP/1.1 keep-alive
//! server; `GET /stats` answers the tally as JSON.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Result};
use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use switchboard_core::ConnectionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::now_ms;

/// Largest request head, bytes; beyond it the connection is closed.
const MAX_HEAD: usize = 64 << 10;
/// Largest request body, bytes (events of the soak's messages are far smaller).
const MAX_BODY: usize = 1 << 20;
/// Missing `$disconnect`s listed by id in the stats.
const MISSING_LISTED: usize = 50;
/// Gaps in a resumable client's message numbers listed in the stats.
const GAPS_LISTED: usize = 20;
/// Highest message number accepted from a resumable client (the table is per number).
const MAX_REC: u64 = 10_000_000;

/// One connection id's events.
#[derive(Default)]
struct Conn {
    id: Box<str>,
    /// Index into [`Tally::runs`].
    run: usize,
    connects: u32,
    disconnects: u32,
    connected_ms: u64,
    /// The first `$disconnect`s' `"<code> <reason>"` (kept for listing repeats).
    reasons: Vec<Box<str>>,
}

/// One node process, told apart by the node tag and incarnation in its connection ids.
struct Run {
    node: String,
    /// 1 for the first process of that node seen, 2 after a restart, ...
    ordinal: u32,
    reasons: BTreeMap<String, u64>,
}

/// One message number of a resumable client.
#[derive(Clone, Copy, Default)]
struct Slot {
    count: u32,
    /// Index into [`Tally::conns`] of the connection that delivered it first.
    first_conn: u32,
    /// A repeat arrived on another connection (a resend into a fresh session).
    repeat_elsewhere: u32,
    /// A repeat arrived on the same connection (de-duplication failed).
    repeat_same: u32,
}

/// What the function has seen.
pub struct Tally {
    /// `(name, tag)` of every node the soak runs.
    nodes: Vec<(String, u32)>,
    index: HashMap<Box<str>, u32>,
    conns: Vec<Conn>,
    runs: Vec<Run>,
    run_index: HashMap<(u32, u32), usize>,
    connect_events: u64,
    disconnect_events: u64,
    disconnect_without_connect: u64,
    unreadable: u64,
    rec: BTreeMap<u64, Vec<Slot>>,
}

impl Tally {
    /// A tally for the nodes named `nodes`.
    pub fn new(nodes: &[String]) -> Self {
        Self {
            nodes: nodes
                .iter()
                .map(|n| (n.clone(), switchboard_core::id::node_tag(n)))
                .collect(),
            index: HashMap::new(),
            conns: Vec::new(),
            runs: Vec::new(),
            run_index: HashMap::new(),
            connect_events: 0,
            disconnect_events: 0,
            disconnect_without_connect: 0,
            unreadable: 0,
            rec: BTreeMap::new(),
        }
    }

    /// The index of connection `id`, added on first sight.
    fn conn(&mut self, id: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i as usize;
        }
        let key = match ConnectionId::parse(id) {
            Some(c) => {
                let b = c.as_bytes();
                (c.node_tag(), u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
            }
            None => (0, 0),
        };
        let run = match self.run_index.get(&key) {
            Some(&r) => r,
            None => {
                let node = self
                    .nodes
                    .iter()
                    .find(|(_, tag)| *tag == key.0)
                    .map_or_else(|| "unknown".to_owned(), |(n, _)| n.clone());
                let ordinal = 1 + self.runs.iter().filter(|r| r.node == node).count() as u32;
                self.runs.push(Run {
                    node,
                    ordinal,
                    reasons: BTreeMap::new(),
                });
                self.run_index.insert(key, self.runs.len() - 1);
                self.runs.len() - 1
            }
        };
        let i = self.conns.len();
        self.conns.push(Conn {
            id: id.into(),
            run,
            ..Conn::default()
        });
        self.index.insert(id.into(), i as u32);
        i
    }

    /// A `$connect` for `id` at `at_ms`.
    pub fn connect(&mut self, id: &str, at_ms: u64) {
        self.connect_events += 1;
        let i = self.conn(id);
        let c = &mut self.conns[i];
        c.connects += 1;
        if c.connects == 1 {
            c.connected_ms = at_ms;
        }
    }

    /// A `$disconnect` for `id` with its status code and reason.
    pub fn disconnect(&mut self, id: &str, code: u64, reason: &str) {
        self.disconnect_events += 1;
        let i = self.conn(id);
        let c = &mut self.conns[i];
        c.disconnects += 1;
        if c.connects == 0 {
            self.disconnect_without_connect += 1;
        }
        let label = format!("{code} {reason}").trim_end().to_owned();
        if c.reasons.len() < 3 {
            c.reasons.push(label.as_str().into());
        }
        let run = c.run;
        *self.runs[run].reasons.entry(label).or_default() += 1;
    }

    /// Message `n` (from 1) of resumable client `client`, delivered on connection `id`.
    pub fn rec(&mut self, client: u64, n: u64, id: &str) {
        if n == 0 || n > MAX_REC {
            self.unreadable += 1;
            return;
        }
        let conn = self.conn(id) as u32;
        let slots = self.rec.entry(client).or_default();
        let i = (n - 1) as usize;
        if slots.len() <= i {
            slots.resize(i + 1, Slot::default());
        }
        let s = &mut slots[i];
        if s.count == 0 {
            s.first_conn = conn;
        } else if s.first_conn == conn {
            s.repeat_same += 1;
        } else {
            s.repeat_elsewhere += 1;
        }
        s.count += 1;
    }

    /// An event the function could not read.
    pub fn unreadable(&mut self) {
        self.unreadable += 1;
    }

    /// Everything counted so far.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            connect_events: self.connect_events,
            disconnect_events: self.disconnect_events,
            disconnect_without_connect: self.disconnect_without_connect,
            unreadable_events: self.unreadable,
            ..Stats::default()
        };
        let mut runs: Vec<RunStats> = self
            .runs
            .iter()
            .map(|r| RunStats {
                node: r.node.clone(),
                run: r.ordinal,
                reasons: r.reasons.clone(),
                ..RunStats::default()
            })
            .collect();
        for c in &self.conns {
            let r = &mut runs[c.run];
            if c.connects == 0 {
                continue;
            }
            s.connections += 1;
            r.connections += 1;
            if c.connects > 1 {
                s.doubled_connect += 1;
            }
            match c.disconnects {
                0 => {
                    s.missing_disconnect += 1;
                    r.missing_disconnect += 1;
                    if s.missing.len() < MISSING_LISTED {
                        s.missing.push(Missing {
                            id: c.id.to_string(),
                            node: r.node.clone(),
                            run: r.run,
                            connected_ms: c.connected_ms,
                        });
                    }
                }
                1 => s.disconnected += 1,
                _ => {
                    s.disconnected += 1;
                    s.doubled_disconnect += 1;
                    r.doubled_disconnect += 1;
                    if s.doubled.len() < MISSING_LISTED {
                        s.doubled.push(Doubled {
                            id: c.id.to_string(),
                            node: r.node.clone(),
                            run: r.run,
                            reasons: c.reasons.iter().map(|x| x.to_string()).collect(),
                        });
                    }
                }
            }
        }
        for r in &runs {
            for (k, v) in &r.reasons {
                *s.reasons.entry(k.clone()).or_default() += v;
            }
        }
        s.runs = runs;
        for (&client, slots) in &self.rec {
            let mut r = RecStats {
                max: slots.len() as u64,
                ..RecStats::default()
            };
            let mut gap_start = None;
            for (i, slot) in slots.iter().enumerate() {
                let n = i as u64 + 1;
                r.receipts += u64::from(slot.count);
                r.doubled_same_connection += u64::from(slot.repeat_same);
                r.doubled_other_connection += u64::from(slot.repeat_elsewhere);
                if slot.count > 0 {
                    r.unique += 1;
                    if let Some(a) = gap_start.take() {
                        if r.gaps.len() < GAPS_LISTED {
                            r.gaps.push((a, n - 1));
                        }
                    }
                } else if gap_start.is_none() {
                    gap_start = Some(n);
                }
            }
            s.rec.insert(client, r);
        }
        s
    }
}

/// The tally as `GET /stats` answers it.
#[derive(Serialize, Default, Debug)]
pub struct Stats {
    /// `$connect` invocations.
    pub connect_events: u64,
    /// Connection ids with a `$connect`.
    pub connections: u64,
    /// `$disconnect` invocations.
    pub disconnect_events: u64,
    /// Connections with at least one `$disconnect`.
    pub disconnected: u64,
    /// Connections with a `$connect` and no `$disconnect`.
    pub missing_disconnect: u64,
    /// Connections with more than one `$disconnect`.
    pub doubled_disconnect: u64,
    /// Connections with more than one `$connect`.
    pub doubled_connect: u64,
    /// `$disconnect`s for an id that never had a `$connect`.
    pub disconnect_without_connect: u64,
    /// Events that could not be read.
    pub unreadable_events: u64,
    /// `$disconnect`s by `"<code> <reason>"`.
    pub reasons: BTreeMap<String, u64>,
    /// The same per node run.
    pub runs: Vec<RunStats>,
    /// The first connections without `$disconnect`.
    pub missing: Vec<Missing>,
    /// The first connections with more than one `$disconnect`.
    pub doubled: Vec<Doubled>,
    /// Per resumable client: its numbered messages.
    pub rec: BTreeMap<u64, RecStats>,
}

/// One node process's connections.
#[derive(Serialize, Default, Debug)]
pub struct RunStats {
    pub node: String,
    pub run: u32,
    pub connections: u64,
    pub missing_disconnect: u64,
    pub doubled_disconnect: u64,
    pub reasons: BTreeMap<String, u64>,
}

/// A connection without `$disconnect`.
#[derive(Serialize, Debug)]
pub struct Missing {
    pub id: String,
    pub node: String,
    pub run: u32,
    /// When its `$connect` arrived (Unix ms).
    pub connected_ms: u64,
}

/// A connection with more than one `$disconnect`.
#[derive(Serialize, Debug)]
pub struct Doubled {
    pub id: String,
    pub node: String,
    pub run: u32,
    /// `"<code> <reason>"` of each, in order.
    pub reasons: Vec<String>,
}

/// One resumable client's messages as the function received them.
#[derive(Serialize, Default, Debug)]
pub struct RecStats {
    /// Highest message number received.
    pub max: u64,
    /// Invocations.
    pub receipts: u64,
    /// Message numbers received at least once.
    pub unique: u64,
    /// Repeats on the connection that delivered the message first (a de-duplication
    /// failure: the gateway invoked the route twice for one sequence number).
    pub doubled_same_connection: u64,
    /// Repeats on another connection (resent into a fresh session after the old one was
    /// lost: at least once for those, as docs/protocol.md says).
    pub doubled_other_connection: u64,
    /// The first runs of numbers below `max` never received, `(from, to)` inclusive.
    pub gaps: Vec<(u64, u64)>,
}

/// Serves the function on `listen` until SIGTERM/SIGINT; prints `listening on ADDR`.
pub async fn serve(listen: SocketAddr, nodes: Vec<String>) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!("refusing to listen on {listen}: loopback only");
    }
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let tally = Arc::new(Mutex::new(Tally::new(&nodes)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, tally.clone()));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

/// A request the server understood.
struct Request {
    head_len: usize,
    body_len: usize,
    get_stats: bool,
    event_type: Option<String>,
    connection_id: Option<String>,
    close: bool,
}

/// Parses a request head at the start of `buf`; `Ok(None)`: more bytes needed.
fn parse_request(buf: &[u8]) -> Result<Option<Request>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > MAX_HEAD => bail!("request head too large"),
        httparse::Status::Partial => return Ok(None),
    };
    let mut r = Request {
        head_len,
        body_len: 0,
        get_stats: req.method == Some("GET") && req.path == Some("/stats"),
        event_type: None,
        connection_id: None,
        close: false,
    };
    for h in req.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).trim().to_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            r.body_len = switchboard_bench::parse_decimal(h.value.trim_ascii())
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= MAX_BODY)
                .ok_or_else(|| anyhow::anyhow!("bad or too large content-length"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked request bodies are not served here");
        } else if h.name.eq_ignore_ascii_case("x-switchboard-event-type") {
            r.event_type = Some(value());
        } else if h.name.eq_ignore_ascii_case("x-switchboard-connection-id") {
            r.connection_id = Some(value());
        } else if h.name.eq_ignore_ascii_case("connection") {
            r.close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(r))
}

/// Applies one event to the tally.
fn apply(tally: &Mutex<Tally>, event_type: &str, id: &str, body: &[u8]) {
    match event_type {
        "CONNECT" => tally.lock().connect(id, now_ms()),
        "DISCONNECT" => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let rc = &v["requestContext"];
            let code = rc["disconnectStatusCode"].as_u64().unwrap_or(0);
            let reason = rc["disconnectReason"].as_str().unwrap_or("");
            tally.lock().disconnect(id, code, reason);
        }
        "MESSAGE" => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let msg: Value = v["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            match (msg["c"].as_u64(), msg["n"].as_u64()) {
                (Some(c), Some(n)) => tally.lock().rec(c, n, id),
                _ => tally.lock().unreadable(),
            }
        }
        _ => tally.lock().unreadable(),
    }
}

async fn serve_connection(mut stream: TcpStream, tally: Arc<Mutex<Tally>>) {
    let mut buf = BytesMut::with_capacity(8 << 10);
    let mut out = Vec::with_capacity(512);
    loop {
        let req = loop {
            match parse_request(&buf) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(_) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        buf.advance(req.head_len);
        while buf.len() < req.body_len {
            buf.reserve(req.body_len - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = buf.split_to(req.body_len);
        let answer = if req.get_stats {
            serde_json::to_vec(&tally.lock().stats()).unwrap_or_default()
        } else {
            match (&req.event_type, &req.connection_id) {
                (Some(t), Some(id)) => apply(&tally, t, id, &body),
                _ => tally.lock().unreadable(),
            }
            br#"{"statusCode":200}"#.to_vec()
        };
        out.clear();
        out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ",
        );
        out.extend_from_slice(answer.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&answer);
        if stream.write_all(&out).await.is_err() || req.close {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use switchboard_core::id::IdGenerator;

    /// Connection ids as a node process issues them (each generator is one run).
    fn ids(g: &IdGenerator, n: usize) -> Vec<String> {
        (0..n).map(|_| g.connection_id().to_string()).collect()
    }

    #[test]
    fn connects_and_disconnects_are_paired_per_node_run() {
        let nodes = vec!["node-a".to_owned(), "node-b".to_owned()];
        let mut t = Tally::new(&nodes);
        let a = IdGenerator::new("node-a");
        let (b_first, b_second) = (IdGenerator::new("node-b"), IdGenerator::new("node-b"));
        let (a1, stranger) = (a.connection_id().to_string(), a.connection_id().to_string());
        let b = ids(&b_first, 2);
        let (b1, b2, b3) = (&b[0], &b[1], &b_second.connection_id().to_string());
        for c in [&a1, b1, b2, b3] {
            t.connect(c, 5);
        }
        t.disconnect(&a1, 1000, "");
        t.disconnect(b1, 1006, "node lost");
        t.disconnect(b1, 1006, "node lost");
        t.disconnect(&stranger, 1001, "going away");
        let s = t.stats();
        assert_eq!(s.connections, 4);
        assert_eq!(s.disconnected, 2);
        assert_eq!(s.missing_disconnect, 2);
        assert_eq!(s.doubled_disconnect, 1);
        assert_eq!(s.disconnect_without_connect, 1);
        assert_eq!(s.reasons["1006 node lost"], 2);
        assert_eq!(s.reasons["1000"], 1);
        let b_runs: Vec<_> = s.runs.iter().filter(|r| r.node == "node-b").collect();
        assert_eq!(b_runs.len(), 2, "a restarted node is a second run");
        assert_eq!((b_runs[0].run, b_runs[0].missing_disconnect), (1, 1));
        assert_eq!((b_runs[1].run, b_runs[1].missing_disconnect), (2, 1));
        assert_eq!(s.missing[0].connected_ms, 5);
        assert_eq!(s.doubled.len(), 1);
        assert_eq!(s.doubled[0].id, *b1);
        assert_eq!(s.doubled[0].reasons, ["1006 node lost", "1006 node lost"]);
    }

    #[test]
    fn repeats_are_told_apart_by_connection() {
        let mut t = Tally::new(&["node-a".to_owned()]);
        let c = ids(&IdGenerator::new("node-a"), 2);
        let (c1, c2) = (&c[0], &c[1]);
        for n in [1, 2, 3, 6] {
            t.rec(4, n, c1);
        }
        t.rec(4, 3, c2);
        t.rec(4, 2, c1);
        t.rec(4, 0, c1);
        let s = t.stats();
        let r = &s.rec[&4];
        assert_eq!((r.max, r.unique, r.receipts), (6, 4, 6));
        assert_eq!(r.doubled_same_connection, 1);
        assert_eq!(r.doubled_other_connection, 1);
        assert_eq!(r.gaps, vec![(4, 5)]);
        assert_eq!(s.unreadable_events, 1);
    }

    #[test]
    fn request_heads() {
        let r = parse_request(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nX-Switchboard-Event-Type: CONNECT\r\nX-Switchboard-Connection-Id: abc\r\n\r\nxyz",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body_len, 3);
        assert_eq!(r.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(r.connection_id.as_deref(), Some("abc"));
        assert!(parse_request(b"GET /stats HTTP/1.1\r\n").unwrap().is_none());
        assert!(
            parse_request(b"GET /stats HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .get_stats
        );
        assert!(parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_request(b"POST / HTTP/1.1\r\nContent-Length: 9999999999\r\n\r\n").is_err());
    }
}

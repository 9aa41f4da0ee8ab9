//! The protocol core, sans-IO: one logical connection across any number of sockets.
//!
//! [`Session`] owns the client's send queue, the sequence numbers of both directions,
//! the ack and heartbeat timers, and the resume token. The I/O shell tells it what
//! happened (`link_up`, `on_message`, `on_timeout`, `link_down`) with the current time,
//! and asks it what to write (`poll_transmit`) and when to wake up (`poll_timeout`). It
//! never touches a socket or a clock, so every rule of docs/protocol.md is tested here
//! with simulated time.
//!
//! Sequence numbers: client messages are numbered when queued and keep their number
//! until acknowledged, so a resend after a resume is the same message to the server
//! (which ignores numbers it has processed). Server messages are delivered only when
//! their number is exactly one above the last delivered; lower numbers are replay
//! overlap and dropped, higher ones mean the server lost messages (a protocol error).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::event::{Event, Payload};
use crate::wire::{self, FrameError, Hello, ServerFrame};

/// Heartbeat timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Quiet time (nothing received) after which the client sends a heartbeat (`h` with
    /// `switchboard.v1`, a WebSocket ping otherwise).
    pub interval: Duration,
    /// How long the client then waits for anything from the server before it takes the
    /// path for dead, drops the socket and reconnects.
    pub timeout: Duration,
}

/// The core's settings (a subset of [`Options`](crate::Options)).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub ack_every: u64,
    pub ack_delay: Duration,
    pub heartbeat: Option<Heartbeat>,
    pub send_queue: usize,
    pub resend_unconfirmed: bool,
}

/// A gap in the server's sequence numbers: messages are missing, so the socket is
/// abandoned and the session resumed from the last delivered message (the server replays
/// from there, or, if it no longer can, starts a fresh session).
pub(crate) const GAP: FrameError = FrameError("gap in the server's sequence numbers");

/// A client message waiting to be written or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub seq: u64,
    pub text: bool,
    pub payload: Bytes,
}

/// One WebSocket frame to write; its payload was appended to the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transmit {
    Text,
    Binary,
    Ping,
}

/// The send queue is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

/// The heartbeat went unanswered: the path is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dead;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No socket.
    Down,
    /// A `switchboard.v1` socket whose hello has not arrived yet.
    AwaitingHello,
    /// Messages flow.
    Up,
}

#[derive(Debug)]
pub(crate) struct Session {
    cfg: Config,

    // The logical connection; survives sockets.
    /// The resume token of the current session, if it is a `switchboard.v1` one.
    token: Option<String>,
    connection_id: Option<String>,
    /// Highest server sequence number delivered.
    last_server_seq: u64,
    /// Client messages not yet acknowledged (sequenced) or not yet written (plain), in
    /// sequence order with consecutive numbers. Bounded by `cfg.send_queue`.
    outbox: VecDeque<Outgoing>,
    /// The number the next queued message gets.
    next_seq: u64,
    /// Highest client sequence number written to any socket of this session.
    written_max: u64,
    /// Messages written in an earlier session and never acknowledged (bounded by
    /// `cfg.send_queue`, oldest dropped first).
    unconfirmed: VecDeque<Outgoing>,

    // The current socket.
    link: Link,
    sequenced: bool,
    /// Highest client sequence number written on this socket.
    written_upto: u64,
    /// Highest server sequence number acknowledged on this socket.
    acked_server: u64,
    ack_at: Option<Instant>,
    heartbeat_at: Option<Instant>,
    heartbeat_deadline: Option<Instant>,
    reads_paused: bool,
}

impl Session {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            token: None,
            connection_id: None,
            last_server_seq: 0,
            outbox: VecDeque::new(),
            next_seq: 1,
            written_max: 0,
            unconfirmed: VecDeque::new(),
            link: Link::Down,
            sequenced: false,
            written_upto: 0,
            acked_server: 0,
            ack_at: None,
            heartbeat_at: None,
            heartbeat_deadline: None,
            reads_paused: false,
        }
    }

    /// Queues a client message. It is written as soon as a socket is up (and, with
    /// `switchboard.v1`, kept until the server acknowledges it).
    pub fn enqueue(&mut self, text: bool, payload: Bytes) -> Result<(), QueueFull> {
        if self.outbox.len() >= self.cfg.send_queue {
            return Err(QueueFull);
        }
        self.outbox.push_back(Outgoing {
            seq: self.next_seq,
            text,
            payload,
        });
        self.next_seq += 1;
        Ok(())
    }

    /// Messages queued and not yet acknowledged (or, in plain mode, not yet written).
    #[cfg(test)]
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Whether another message fits in the send queue.
    pub fn has_room(&self) -> bool {
        self.outbox.len() < self.cfg.send_queue
    }

    /// The resume query parameters for the next handshake: the token and the highest
    /// server sequence number received.
    pub fn resume_offer(&self) -> Option<(&str, u64)> {
        self.token.as_deref().map(|t| (t, self.last_server_seq))
    }

    /// Whether the current (or last) socket runs `switchboard.v1`.
    pub fn is_sequenced(&self) -> bool {
        self.sequenced
    }

    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// Takes the messages dropped by fresh sessions (see `start_fresh`).
    pub fn take_unconfirmed(&mut self) -> Vec<Payload> {
        self.unconfirmed
            .drain(..)
            .map(|o| Payload::from_wire(o.text, o.payload))
            .collect()
    }

    /// A socket completed its upgrade. `sequenced`: the server selected
    /// `switchboard.v1` (the hello comes next); otherwise the connection is plain and
    /// opens at once.
    pub fn link_up(&mut self, now: Instant, sequenced: bool) -> Option<Event> {
        self.sequenced = sequenced;
        self.written_upto = 0;
        self.acked_server = 0;
        self.ack_at = None;
        self.heartbeat_at = None;
        self.heartbeat_deadline = None;
        self.reads_paused = false;
        if sequenced {
            self.link = Link::AwaitingHello;
            return None;
        }
        // A plain server has no sessions: whatever the last one was, this is new.
        self.start_fresh();
        self.token = None;
        self.connection_id = None;
        self.up(now);
        Some(Event::Open {
            connection_id: None,
        })
    }

    /// The socket is gone. The session stays for a resume.
    pub fn link_down(&mut self) {
        self.link = Link::Down;
        self.ack_at = None;
        self.heartbeat_at = None;
        self.heartbeat_deadline = None;
    }

    /// The session ended (a clean close): the next socket starts a fresh one.
    pub fn end_session(&mut self) {
        self.link_down();
        self.token = None;
    }

    /// Read pausing (the application is behind on events). While paused, the server's
    /// answers cannot be seen, so the heartbeat stops; it restarts on resume.
    pub fn pause_reads(&mut self, now: Instant, paused: bool) {
        if paused == self.reads_paused {
            return;
        }
        self.reads_paused = paused;
        self.heartbeat_deadline = None;
        self.heartbeat_at = None;
        if !paused && self.link == Link::Up {
            self.arm_heartbeat(now);
        }
    }

    /// A data message arrived on the socket.
    pub fn on_message(
        &mut self,
        now: Instant,
        text: bool,
        data: Bytes,
    ) -> Result<Option<Event>, FrameError> {
        self.on_activity(now);
        if !self.sequenced {
            return Ok(Some(Event::Message(Payload::from_wire(text, data))));
        }
        let frame = if text {
            wire::parse_text(data)?
        } else {
            wire::parse_binary(data)?
        };
        match frame {
            ServerFrame::Hello(hello) => self.on_hello(now, hello).map(Some),
            _ if self.link != Link::Up => Err(FrameError("frame before the hello")),
            ServerFrame::Message { seq, text, payload } => {
                if seq <= self.last_server_seq {
                    // Replay overlap: already delivered. Make sure the server hears
                    // that, so it can trim its buffer.
                    self.schedule_ack(now);
                    return Ok(None);
                }
                if seq != self.last_server_seq + 1 {
                    return Err(GAP);
                }
                self.last_server_seq = seq;
                self.schedule_ack(now);
                Ok(Some(Event::Message(Payload::from_wire(text, payload))))
            }
            ServerFrame::Ack(n) => {
                if n > self.written_max {
                    return Err(FrameError("ack of a message never sent"));
                }
                self.trim(n);
                Ok(None)
            }
            ServerFrame::Heartbeat => Ok(None),
        }
    }

    /// A control frame (ping, pong) arrived: the path is alive.
    pub fn on_activity(&mut self, now: Instant) {
        self.heartbeat_deadline = None;
        if self.link == Link::Up && !self.reads_paused {
            self.arm_heartbeat(now);
        }
    }

    fn on_hello(&mut self, now: Instant, hello: Hello) -> Result<Event, FrameError> {
        if self.link != Link::AwaitingHello {
            return Err(FrameError("a second hello"));
        }
        let event = if hello.resumed {
            if self.token.is_none() {
                return Err(FrameError("resumed a session the client did not offer"));
            }
            if hello.last_client_seq > self.written_max {
                return Err(FrameError("hello acknowledges messages never sent"));
            }
            Event::Resumed {
                connection_id: hello.connection_id.clone(),
            }
        } else {
            self.start_fresh();
            if hello.last_client_seq > 0 {
                return Err(FrameError("a fresh session acknowledges messages"));
            }
            Event::Open {
                connection_id: Some(hello.connection_id.clone()),
            }
        };
        self.trim(hello.last_client_seq);
        // Resend everything the server has not processed, in order, with the same
        // numbers; it ignores any it processed after all.
        self.written_upto = hello.last_client_seq;
        self.token = Some(hello.session);
        self.connection_id = Some(hello.connection_id);
        self.up(now);
        Ok(event)
    }

    /// A new session begins: the old one's server messages are gone. Its written but
    /// unacknowledged messages may or may not have been processed: with
    /// `resend_unconfirmed` they are sent again (at least once for those few), otherwise
    /// set aside for `take_unconfirmed` (at most once). All is renumbered from 1.
    fn start_fresh(&mut self) {
        while !self.cfg.resend_unconfirmed
            && self
                .outbox
                .front()
                .is_some_and(|o| o.seq <= self.written_max)
        {
            let o = self.outbox.pop_front().expect("front checked");
            if self.unconfirmed.len() >= self.cfg.send_queue {
                self.unconfirmed.pop_front();
            }
            self.unconfirmed.push_back(o);
        }
        for (i, o) in self.outbox.iter_mut().enumerate() {
            o.seq = i as u64 + 1;
        }
        self.next_seq = self.outbox.len() as u64 + 1;
        self.written_max = 0;
        self.last_server_seq = 0;
    }

    fn up(&mut self, now: Instant) {
        self.link = Link::Up;
        self.arm_heartbeat(now);
        // A replayed overlap or a resume may leave something to acknowledge.
        if self.last_server_seq > 0 {
            self.schedule_ack(now);
        }
    }

    fn arm_heartbeat(&mut self, now: Instant) {
        if let Some(hb) = self.cfg.heartbeat {
            if self.heartbeat_deadline.is_none() {
                self.heartbeat_at = Some(now + hb.interval);
            }
        }
    }

    fn schedule_ack(&mut self, now: Instant) {
        if self.last_server_seq - self.acked_server >= self.cfg.ack_every {
            self.ack_at = Some(now);
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.cfg.ack_delay);
        }
    }

    /// Drops client messages up to `n` (acknowledged).
    fn trim(&mut self, n: u64) {
        while self.outbox.front().is_some_and(|o| o.seq <= n) {
            self.outbox.pop_front();
        }
    }

    /// The next frame to write, its payload appended to `out`; `None` when there is
    /// nothing to write now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Transmit> {
        if self.link != Link::Up {
            return None;
        }
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
            if self.last_server_seq > self.acked_server {
                self.acked_server = self.last_server_seq;
                wire::ack(self.last_server_seq, out);
                return Some(Transmit::Text);
            }
        }
        if self.heartbeat_at.is_some_and(|t| t <= now) {
            let hb = self.cfg.heartbeat.expect("armed only with a heartbeat");
            self.heartbeat_at = None;
            self.heartbeat_deadline = Some(now + hb.timeout);
            if self.sequenced {
                out.extend_from_slice(wire::HEARTBEAT);
                return Some(Transmit::Text);
            }
            return Some(Transmit::Ping);
        }
        if !self.sequenced {
            let o = self.outbox.pop_front()?;
            self.written_max = o.seq;
            out.extend_from_slice(&o.payload);
            return Some(if o.text {
                Transmit::Text
            } else {
                Transmit::Binary
            });
        }
        let first = self.outbox.front()?.seq;
        let index = (self.written_upto + 1).saturating_sub(first) as usize;
        let o = self.outbox.get(index)?;
        self.written_upto = o.seq;
        self.written_max = self.written_max.max(o.seq);
        wire::message(o.seq, o.text, &o.payload, out);
        Some(if o.text {
            Transmit::Text
        } else {
            Transmit::Binary
        })
    }

    /// When the shell must call `on_timeout` / `poll_transmit` next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.link != Link::Up {
            return None;
        }
        let ack = self
            .ack_at
            .filter(|_| self.last_server_seq > self.acked_server);
        [ack, self.heartbeat_at, self.heartbeat_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed. `Err(Dead)`: the heartbeat went unanswered; drop the socket.
    pub fn on_timeout(&mut self, now: Instant) -> Result<(), Dead> {
        if self.heartbeat_deadline.is_some_and(|t| t <= now) {
            self.heartbeat_deadline = None;
            return Err(Dead);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> Config {
        Config {
            ack_every: 32,
            ack_delay: 100 * MS,
            heartbeat: Some(Heartbeat {
                interval: 1000 * MS,
                timeout: 500 * MS,
            }),
            send_queue: 8,
            resend_unconfirmed: false,
        }
    }

    fn hello(session: &str, id: &str, resumed: bool, last_client: u64) -> Bytes {
        Bytes::from(format!(
            r#"s{{"session":"{session}","connectionId":"{id}","resumed":{resumed},"lastClientSeq":{last_client},"resumeWindowSecs":120}}"#
        ))
    }

    fn msg(seq: u64, body: &str) -> Bytes {
        Bytes::from(format!("m{seq}:{body}"))
    }

    fn text(s: &str) -> Option<Event> {
        Some(Event::Message(Payload::Text(s.into())))
    }

    /// Everything the session wants to write now, as strings (binary shown as hex).
    fn drain(s: &mut Session, now: Instant) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            let mut out = Vec::new();
            match s.poll_transmit(now, &mut out) {
                None => return frames,
                Some(Transmit::Ping) => frames.push("PING".into()),
                Some(Transmit::Text) => frames.push(String::from_utf8(out).unwrap()),
                Some(Transmit::Binary) => {
                    frames.push(out.iter().map(|b| format!("{b:02x}")).collect())
                }
            }
        }
    }

    fn open(s: &mut Session, now: Instant) {
        assert_eq!(s.link_up(now, true), None);
        assert_eq!(
            s.on_message(now, true, hello("tok1", "c1", false, 0)),
            Ok(Some(Event::Open {
                connection_id: Some("c1".into())
            }))
        );
    }

    #[test]
    fn queued_while_down_then_sent_after_hello() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        s.enqueue(true, Bytes::from_static(b"one")).unwrap();
        s.enqueue(false, Bytes::from_static(b"\x07")).unwrap();
        assert_eq!(s.resume_offer(), None);
        assert!(drain(&mut s, t0).is_empty());
        s.link_up(t0, true);
        // Nothing before the hello: the server may have processed some already.
        assert!(drain(&mut s, t0).is_empty());
        assert_eq!(
            s.on_message(t0, true, msg(1, "x")),
            Err(FrameError("frame before the hello"))
        );
        s.on_message(t0, true, hello("tok1", "c1", false, 0))
            .unwrap();
        assert_eq!(drain(&mut s, t0), ["m1:one", "01000000000000000207"]);
        assert_eq!(s.connection_id(), Some("c1"));
        assert_eq!(s.resume_offer(), Some(("tok1", 0)));
        // Written but unacknowledged: still queued.
        assert_eq!(s.outbox_len(), 2);
        s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
        assert_eq!(s.outbox_len(), 1);
        s.on_message(t0, true, Bytes::from_static(b"a2")).unwrap();
        assert_eq!(s.outbox_len(), 0);
        assert_eq!(
            s.on_message(t0, true, Bytes::from_static(b"a3")),
            Err(FrameError("ack of a message never sent"))
        );
    }

    #[test]
    fn server_messages_delivered_once_in_order_and_acked_in_batches() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        assert_eq!(s.on_message(t0, true, msg(1, "a")), Ok(text("a")));
        assert_eq!(s.on_message(t0, true, msg(1, "a")), Ok(None));
        // The ack waits for 100 ms of batching.
        assert!(drain(&mut s, t0).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + 100 * MS));
        assert_eq!(s.on_message(t0 + 50 * MS, true, msg(2, "b")), Ok(text("b")));
        assert!(drain(&mut s, t0 + 99 * MS).is_empty());
        assert_eq!(drain(&mut s, t0 + 100 * MS), ["a2"]);
        // 32 unacknowledged messages: acked at once.
        let t1 = t0 + 200 * MS;
        for n in 3..=33 {
            s.on_message(t1, true, msg(n, "x")).unwrap();
            assert!(drain(&mut s, t1).is_empty(), "{n}");
        }
        s.on_message(t1, true, msg(34, "x")).unwrap();
        assert_eq!(drain(&mut s, t1), ["a34"]);
        // A gap means the server lost messages.
        assert_eq!(s.on_message(t1, true, msg(36, "x")), Err(GAP));
    }

    #[test]
    fn binary_server_messages() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        let mut frame = vec![1u8];
        frame.extend_from_slice(&1u64.to_be_bytes());
        frame.push(0xfe);
        assert_eq!(
            s.on_message(t0, false, Bytes::from(frame)),
            Ok(Some(Event::Message(Payload::Binary(Bytes::from_static(
                b"\xfe"
            )))))
        );
    }

    #[test]
    fn resume_resends_unprocessed_and_dedupes_replay() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        for i in 1..=4 {
            s.enqueue(true, Bytes::from(format!("c{i}"))).unwrap();
        }
        assert_eq!(drain(&mut s, t0), ["m1:c1", "m2:c2", "m3:c3", "m4:c4"]);
        s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
        s.on_message(t0, true, msg(1, "s1")).unwrap();
        s.on_message(t0, true, msg(2, "s2")).unwrap();
        // The socket drops before the ack of s1..s2 went out.
        s.link_down();
        s.enqueue(true, Bytes::from_static(b"c5")).unwrap();
        assert_eq!(s.resume_offer(), Some(("tok1", 2)));
        assert!(drain(&mut s, t0).is_empty());

        let t1 = t0 + 300 * MS;
        s.link_up(t1, true);
        // The server had processed up to 3.
        assert_eq!(
            s.on_message(t1, true, hello("tok1", "c1", true, 3)),
            Ok(Some(Event::Resumed {
                connection_id: "c1".into()
            }))
        );
        // The ack of what we have is due at once (the old socket's ack may be lost),
        // then the unprocessed messages, with their original numbers.
        assert_eq!(drain(&mut s, t1 + 100 * MS), ["a2", "m4:c4", "m5:c5"]);
        // The server replays from 3; an overlap would be dropped.
        assert_eq!(s.on_message(t1, true, msg(2, "s2")), Ok(None));
        assert_eq!(s.on_message(t1, true, msg(3, "s3")), Ok(text("s3")));
        assert_eq!(s.outbox_len(), 2);
        assert!(s.take_unconfirmed().is_empty());
    }

    #[test]
    fn fresh_session_sets_aside_unconfirmed_and_renumbers() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        s.enqueue(true, Bytes::from_static(b"sent")).unwrap();
        assert_eq!(drain(&mut s, t0), ["m1:sent"]);
        s.on_message(t0, true, msg(1, "s1")).unwrap();
        s.link_down();
        s.enqueue(true, Bytes::from_static(b"later")).unwrap();
        s.link_up(t0, true);
        // The window expired: the server starts over.
        assert_eq!(
            s.on_message(t0, true, hello("tok2", "c2", false, 0)),
            Ok(Some(Event::Open {
                connection_id: Some("c2".into())
            }))
        );
        assert_eq!(drain(&mut s, t0 + 100 * MS), ["m1:later"]);
        assert_eq!(s.resume_offer(), Some(("tok2", 0)));
        assert_eq!(s.on_message(t0, true, msg(1, "new")), Ok(text("new")));
        assert_eq!(s.take_unconfirmed(), [Payload::Text("sent".into())]);
        // A resumed hello for a session never offered is a server bug.
        let mut s = Session::new(cfg());
        s.link_up(t0, true);
        assert!(s.on_message(t0, true, hello("x", "c", true, 0)).is_err());
        // So is an ack beyond what was written.
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        s.link_down();
        s.link_up(t0, true);
        assert_eq!(
            s.on_message(t0, true, hello("tok1", "c1", true, 1)),
            Err(FrameError("hello acknowledges messages never sent"))
        );
    }

    #[test]
    fn fresh_session_resends_unconfirmed_by_default() {
        let t0 = Instant::now();
        let mut s = Session::new(Config {
            resend_unconfirmed: true,
            ..cfg()
        });
        open(&mut s, t0);
        s.enqueue(true, Bytes::from_static(b"a")).unwrap();
        s.enqueue(true, Bytes::from_static(b"b")).unwrap();
        assert_eq!(drain(&mut s, t0), ["m1:a", "m2:b"]);
        s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
        s.link_down();
        s.enqueue(true, Bytes::from_static(b"c")).unwrap();
        s.link_up(t0, true);
        s.on_message(t0, true, hello("tok2", "c2", false, 0))
            .unwrap();
        // "a" was acknowledged: gone. "b" may or may not have been processed: resent,
        // first, renumbered with the never-written "c".
        assert_eq!(drain(&mut s, t0), ["m1:b", "m2:c"]);
        assert!(s.take_unconfirmed().is_empty());
    }

    #[test]
    fn clean_close_ends_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        s.end_session();
        assert_eq!(s.resume_offer(), None);
    }

    #[test]
    fn send_queue_is_bounded_by_unacknowledged_messages() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        for _ in 0..8 {
            s.enqueue(true, Bytes::new()).unwrap();
        }
        assert_eq!(s.enqueue(true, Bytes::new()), Err(QueueFull));
        open(&mut s, t0);
        assert_eq!(drain(&mut s, t0).len(), 8);
        // Written is not enough: only an ack makes room.
        assert!(!s.has_room());
        s.on_message(t0, true, Bytes::from_static(b"a3")).unwrap();
        assert!(s.has_room());
        for _ in 0..3 {
            s.enqueue(true, Bytes::new()).unwrap();
        }
        assert_eq!(s.enqueue(true, Bytes::new()), Err(QueueFull));
    }

    #[test]
    fn heartbeat_detects_a_dead_path() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        assert_eq!(s.poll_timeout(), Some(t0 + 1000 * MS));
        // Traffic postpones it.
        s.on_message(t0 + 500 * MS, true, Bytes::from_static(b"h"))
            .unwrap();
        assert!(drain(&mut s, t0 + 1000 * MS).is_empty());
        let t1 = t0 + 1500 * MS;
        assert_eq!(drain(&mut s, t1), ["h"]);
        assert_eq!(s.poll_timeout(), Some(t1 + 500 * MS));
        assert_eq!(s.on_timeout(t1 + 499 * MS), Ok(()));
        // The answer arrives: alive; the next heartbeat after another interval.
        s.on_message(t1 + 100 * MS, true, Bytes::from_static(b"h"))
            .unwrap();
        assert_eq!(s.on_timeout(t1 + 600 * MS), Ok(()));
        let t2 = t1 + 1100 * MS;
        assert_eq!(drain(&mut s, t2), ["h"]);
        assert_eq!(s.on_timeout(t2 + 500 * MS), Err(Dead));
        // Paused reads stop the heartbeat; resuming re-arms it.
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        s.pause_reads(t0, true);
        assert_eq!(s.poll_timeout(), None);
        s.pause_reads(t0 + 5000 * MS, false);
        assert_eq!(s.poll_timeout(), Some(t0 + 6000 * MS));
    }

    #[test]
    fn plain_mode_is_raw_and_at_most_once() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        s.enqueue(true, Bytes::from_static(b"{\"a\":1}")).unwrap();
        assert_eq!(
            s.link_up(t0, false),
            Some(Event::Open {
                connection_id: None
            })
        );
        assert_eq!(
            s.on_message(t0, true, Bytes::from_static(b"m1:x")),
            Ok(text("m1:x"))
        );
        assert_eq!(drain(&mut s, t0), ["{\"a\":1}"]);
        assert_eq!(s.outbox_len(), 0);
        assert_eq!(drain(&mut s, t0 + 1000 * MS), ["PING"]);
        assert_eq!(s.resume_offer(), None);
    }

    #[test]
    fn sequenced_then_plain_server_starts_fresh() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg());
        open(&mut s, t0);
        s.enqueue(true, Bytes::from_static(b"x")).unwrap();
        drain(&mut s, t0);
        s.link_down();
        // The server no longer selects switchboard.v1.
        s.link_up(t0, false);
        assert_eq!(s.connection_id(), None);
        assert_eq!(s.resume_offer(), None);
        assert_eq!(s.take_unconfirmed(), [Payload::Text("x".into())]);
    }
}

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
mod tests;

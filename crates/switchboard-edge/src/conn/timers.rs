//! A connection's clocks: idle, lifetime, ping and pong, acknowledgement delay, close
//! handshake and write stall deadlines.

use std::future::Future;
use std::task::Context;
use std::time::Duration;

use bytes::BytesMut;
use switchboard_ws::close_code;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Arms the one timer for the earliest deadline and acts on any that passed. `Err`:
    /// a deadline ends the connection now.
    pub(super) fn poll_timers(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        // An ack written here must count as progress, or nothing would flush it.
        let acked = self.ack_due.is_some_and(|d| Instant::now() >= d) && self.closing.is_none();
        if acked {
            self.send_ack();
        }
        let s = &self.edge.settings;
        let now = Instant::now();
        let mut progress = acked;
        if let Some(c) = &self.closing {
            if now >= c.deadline {
                return Err(End::CloseTimedOut);
            }
        }
        if let Some(since) = self.write_stalled_since {
            if now >= since + s.write_timeout {
                return Err(End::WriteStalled);
            }
        }
        if self.closing.is_none() {
            if now >= self.last_rx + s.idle_timeout {
                self.start_close(close_code::GOING_AWAY, "idle timeout");
                progress = true;
            } else if self.expires.is_some_and(|e| now >= e) {
                self.start_close(close_code::POLICY, "credentials expired");
                progress = true;
            } else if s.max_connection.is_some_and(|d| now >= self.started + d) {
                self.start_close(close_code::GOING_AWAY, "connection duration limit");
                progress = true;
            } else if let Some(interval) = s.ping_interval {
                match self.ping_sent_at {
                    Some(sent) if now >= sent + s.pong_timeout => {
                        self.start_close(close_code::GOING_AWAY, "ping timeout");
                        self.resumable_end = true;
                        // The peer is unresponsive: don't wait for its close frame.
                        if let Some(c) = &mut self.closing {
                            c.deadline = now + Duration::from_millis(500);
                        }
                        progress = true;
                    }
                    None if now >= self.last_rx + interval => {
                        // Idle: give back the buffers kept for a busy connection.
                        if self.read_buf.is_empty() {
                            self.read_buf = BytesMut::new();
                        }
                        if self.write_buf.is_empty() {
                            self.write_buf = BytesMut::new();
                        }
                        self.encoder.ping_pong(false, b"", &mut self.write_buf);
                        self.ping_sent_at = Some(now);
                        progress = true;
                    }
                    _ => {}
                }
            }
        }
        let deadline = self.next_deadline();
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            // A deadline passed: loop again so the checks above act on it.
            self.timer
                .as_mut()
                .reset(deadline + Duration::from_secs(3600));
            progress = true;
        }
        Ok(progress)
    }

    pub(super) fn next_deadline(&self) -> Instant {
        let s = &self.edge.settings;
        if let Some(c) = &self.closing {
            return c.deadline;
        }
        let mut d = self.last_rx + s.idle_timeout;
        if let Some(drain) = self.edge.drain.deadline() {
            // The socket held open for an answer closes when the grace runs out.
            d = d.min(drain);
        }
        if let Some(max) = s.max_connection {
            d = d.min(self.started + max);
        }
        if let Some(e) = self.expires {
            d = d.min(e);
        }
        if let Some(interval) = s.ping_interval {
            d = d.min(match self.ping_sent_at {
                Some(sent) => sent + s.pong_timeout,
                None => self.last_rx + interval,
            });
        }
        if let Some(since) = self.write_stalled_since {
            d = d.min(since + s.write_timeout);
        }
        if let Some(a) = self.ack_due {
            d = d.min(a);
        }
        d
    }
}

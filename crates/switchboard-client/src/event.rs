//! What the application sees: events and message payloads.

use std::time::Duration;

use bytes::Bytes;

/// A message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Payload {
    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(s) => Some(s),
            Payload::Binary(_) => None,
        }
    }

    /// The bytes of either kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(s) => s.as_bytes(),
            Payload::Binary(b) => b,
        }
    }

    pub(crate) fn from_wire(text: bool, payload: Bytes) -> Self {
        if text {
            // The WebSocket decoder validated the whole frame as UTF-8, and the
            // switchboard.v1 prefix is ASCII, so the rest is valid too.
            match String::from_utf8(payload.to_vec()) {
                Ok(s) => Payload::Text(s),
                Err(e) => Payload::Binary(Bytes::from(e.into_bytes())),
            }
        } else {
            Payload::Binary(payload)
        }
    }
}

/// Something that happened on the client's logical connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new logical connection: the first one, or a fresh one after a reconnect whose
    /// session could not be resumed (window expired, token unknown, the server closed
    /// cleanly, or the server does not speak `switchboard.v1`). Server messages of the
    /// previous connection that had not arrived are lost; client messages of the
    /// previous connection that were written but never acknowledged are resent (see
    /// [`Options::resend_unconfirmed`](crate::Options::resend_unconfirmed)).
    ///
    /// `connection_id` is the gateway's id (from the hello frame); `None` in plain mode,
    /// where the server does not tell it.
    Open {
        /// The gateway's connection id.
        connection_id: Option<String>,
    },
    /// A message from the server. With `switchboard.v1`, each server message arrives
    /// exactly once and in order, across reconnects.
    Message(Payload),
    /// The socket dropped (or a connect attempt failed); attempt number `attempt`
    /// (1, 2, ...) starts after `delay`.
    Reconnecting {
        /// Consecutive attempt number, from 1.
        attempt: u32,
        /// How long the client waits before the attempt.
        delay: Duration,
    },
    /// The socket was replaced and the session resumed: same connection id, missed
    /// server messages follow, unacknowledged client messages are being resent.
    Resumed {
        /// The (unchanged) connection id.
        connection_id: String,
    },
    /// The client is closed for good: by [`Client::close`](crate::Client::close), by the
    /// server with a code that does not ask for a reconnect, after a protocol error
    /// (1002), or when reconnecting gave up (1006). Every later
    /// [`next_event`](crate::Client::next_event) returns this event again.
    Closed {
        /// The close code (the server's, ours, or 1006 when the socket just ended).
        code: u16,
        /// The close reason.
        reason: String,
    },
}

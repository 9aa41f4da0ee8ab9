//! A sans-IO WebSocket protocol: RFC 6455 framing and RFC 7692 permessage-deflate.
//!
//! The crate never touches a socket. The caller reads bytes into a `BytesMut` and asks a
//! [`Decoder`] for the next complete [`Message`]; it asks an [`Encoder`] to append frames to
//! an output buffer and writes that buffer out itself. Every protocol violation comes back
//! as a [`ProtocolError`] carrying the close code the peer must be sent (1002 protocol,
//! 1007 invalid UTF-8, 1009 too big), so the I/O shell needs no protocol knowledge.
//!
//! Memory model: the decoder holds no buffer of its own between messages (a fragmented
//! message is the only thing it keeps, at most `max_message_bytes`), it never reserves room
//! in the caller's buffer ahead of the bytes that arrived (a frame header's length is only
//! checked against the limits), an inflated message holds at most `max_message_bytes`,
//! and with `no_context_takeover` the deflate state is borrowed per message from a
//! per-thread cache instead of living in every connection.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decode;
pub mod deflate;
mod encode;
mod frame;
pub mod handshake;

pub use decode::Decoder;
pub use encode::Encoder;
pub use frame::{OpCode, Role};

use bytes::Bytes;

/// Close codes used by the protocol layer (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown or drain).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Unsupported data (e.g. binary where only text is accepted).
    pub const UNSUPPORTED: u16 = 1003;
    /// No status code was present (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// Abnormal closure: the TCP connection ended without a close frame (never sent).
    pub const ABNORMAL: u16 = 1006;
    /// Invalid payload data (bad UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation (rate limit, expired credentials).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal server error.
    pub const INTERNAL: u16 = 1011;
    /// Service restart.
    pub const RESTART: u16 = 1012;
    /// Try again later (overload, slow consumer).
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4 plus the IANA
    /// registrations 1012–1014).
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A violation of the protocol by the peer. The connection must be closed with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close {code})")]
pub struct ProtocolError {
    /// The close code to send.
    pub code: u16,
    /// A static description, safe to send as the close reason.
    pub reason: &'static str,
}

impl ProtocolError {
    pub(crate) const fn protocol(reason: &'static str) -> Self {
        Self {
            code: close_code::PROTOCOL,
            reason,
        }
    }
    pub(crate) const fn too_big(reason: &'static str) -> Self {
        Self {
            code: close_code::TOO_BIG,
            reason,
        }
    }
    pub(crate) const fn invalid_utf8() -> Self {
        Self {
            code: close_code::INVALID_PAYLOAD,
            reason: "invalid UTF-8",
        }
    }
}

/// Size limits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single frame payload accepted, in bytes (exceeded: 1009).
    pub max_frame_bytes: usize,
    /// Largest message (all fragments, after decompression), in bytes (exceeded: 1009).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 128 * 1024,
            max_message_bytes: 128 * 1024,
        }
    }
}

/// A complete message or control frame received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the caller should answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: the code (if any) and the reason.
    Close(Option<(u16, Bytes)>),
}

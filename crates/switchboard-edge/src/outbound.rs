//! What a connection's queue holds.

use bytes::Bytes;

/// A message queued for a connection.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The payload, shared (a fan-out clones this `Bytes`, never the bytes).
    pub data: Bytes,
    /// Binary frame rather than text.
    pub binary: bool,
}

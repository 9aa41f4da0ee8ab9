//! `[resume]`: resumable sessions of the `switchboard.v1` subprotocol.

use serde::{Deserialize, Serialize};

/// `[resume]` (see docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeConfig {
    /// Offer the `switchboard.v1` subprotocol. Default false.
    pub enabled: bool,
    /// Seconds a dropped session waits for its client. Default 120.
    pub window_secs: u64,
    /// Unacknowledged server messages kept for replay. Default 1024.
    pub buffer_messages: usize,
    /// The same bound in bytes. Default 1048576.
    pub buffer_bytes: usize,
    /// Keep each parked session in the cluster backplane too, so it survives the loss of
    /// the node holding it (docs/protocol.md). Needs a `redis` or `nats` backplane.
    /// Default false.
    pub keep_in_backplane: bool,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window_secs: 120,
            buffer_messages: 1024,
            buffer_bytes: 1024 * 1024,
            keep_in_backplane: false,
        }
    }
}

//! The operations layer's own state (kept apart so the edge's shared state can hold it
//! without importing the layer).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use switchboard_core::ConnectionId;
use tokio::time::Instant;

/// How long a connection of another node, seen alive in the registry, is trusted without
/// asking the registry again before a send or close by id is handed to its node. A send
/// to a remote connection that closed within this window is accepted (its node drops
/// it) instead of answered 410.
pub const REMOTE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most before the cache is cleared.
pub(crate) const REMOTE_CACHE_MAX: usize = 100_000;

/// The operations layer's own state.
#[derive(Default)]
pub(crate) struct OpsState {
    /// Connections of other nodes recently seen alive in the registry.
    pub(crate) seen: Mutex<HashMap<ConnectionId, Instant>>,
}

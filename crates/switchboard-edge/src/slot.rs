//! Places under `max_connections` (and `access.max_connections_per_ip`): one is taken
//! before `$connect` and given back when the connection ends, so bursts cannot overshoot
//! the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A reserved place under `max_connections`, given back on drop, with the connection's
/// place under `access.max_connections_per_ip` if one was taken.
pub(crate) struct Slot(Arc<AtomicUsize>, Option<crate::door::IpPlace>);

impl Slot {
    /// A slot beyond `max_connections` if need be: for a session that moved here, which
    /// already holds its place in the cluster.
    pub(crate) fn force(slots: &Arc<AtomicUsize>) -> Self {
        slots.fetch_add(1, Ordering::AcqRel);
        Self(slots.clone(), None)
    }

    /// A slot, if fewer than `max` are taken.
    pub(crate) fn take(slots: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(slots.clone(), None))
    }

    /// Holds the connection's place under `access.max_connections_per_ip` too.
    pub(crate) fn with_ip(mut self, place: Option<crate::door::IpPlace>) -> Self {
        self.1 = place;
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

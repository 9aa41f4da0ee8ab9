//! The cluster registry's view of this node's connections: one ordered writer of their
//! snapshots (what a survivor needs for `$disconnect` if this node dies).

use std::sync::Arc;

use tracing::{debug, warn};

use crate::inner::EdgeInner;
use crate::table::ConnHandle;

/// Registry updates waiting for the backplane; beyond it an update is dropped and logged
/// (a burst of 15,000 joins fits twice over).
const REGISTRY_QUEUE: usize = 32_768;

impl EdgeInner {
    /// Tells the cluster registry about a connection (opened, or closed with `open`
    /// false). In the background: the hot path never waits for the backplane.
    pub(crate) fn record(self: &Arc<Self>, handle: &Arc<ConnHandle>, open: bool) {
        if !self.backplane.keeps_registry() {
            return;
        }
        if open {
            // A parked session's kept copy carries its memberships and state too: have
            // its watcher write it again.
            if let Some(p) = handle.parked.lock().as_mut() {
                p.changed = true;
                handle.wake();
            }
        }
        let snapshot = open.then(|| {
            switchboard_core::event::snapshot::to_json(
                &handle.info,
                self.table.extension_of(handle).as_ref(),
            )
        });
        self.registry_write(handle.info.id, snapshot);
        if !open {
            self.announce_end(handle.info.id);
        }
    }

    /// Writes (or with `None` deletes) a connection's registry entry, in order.
    pub(crate) fn registry_write(
        &self,
        id: switchboard_core::ConnectionId,
        snapshot: Option<serde_json::Value>,
    ) {
        if !self.backplane.keeps_registry() {
            return;
        }
        // One writer, in order: a snapshot written at connect must never land after the
        // one written at a later join (nor a delete after a stale write).
        let writer = self.registry_writer.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(
                switchboard_core::ConnectionId,
                Option<serde_json::Value>,
            )>(REGISTRY_QUEUE);
            let backplane = self.backplane.clone();
            tokio::spawn(async move {
                while let Some((id, snapshot)) = rx.recv().await {
                    if let Err(e) = backplane.record_connection(id, snapshot).await {
                        debug!(conn = %id, error = %e, "registry update failed");
                    }
                }
            });
            tx
        });
        if writer.try_send((id, snapshot)).is_err() {
            warn!(conn = %id, "registry update queue full: snapshot not recorded");
        }
    }
}

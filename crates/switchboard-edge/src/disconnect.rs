//! `$disconnect`: invoked once for every connection that ends, here or on a lost node.

use std::sync::Arc;

use switchboard_core::event::{ConnectionInfo, EventKind, Invocation};
use switchboard_functions::Function;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::inner::{log_invocation, EdgeInner};

impl EdgeInner {
    /// Invokes `$disconnect` for a connection of a lost node, from its registry snapshot.
    pub async fn disconnect_lost(self: &Arc<Self>, snapshot: &serde_json::Value, node_id: &str) {
        if snapshot.get("movedTo").is_some() {
            return; // its session lives on another node
        }
        let kept_until = snapshot
            .get("keptUntil")
            .and_then(serde_json::Value::as_u64)
            .filter(|_| self.settings.resume.as_ref().is_some_and(|r| r.keep));
        match switchboard_core::event::snapshot::from_json(snapshot) {
            Some((info, ext)) => {
                let kept_by = snapshot
                    .get("keptBy")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                if let (Some(until), Some(owner)) = (kept_until, kept_by) {
                    // Its home hears of its end, or of the node that resumes it, later.
                    info!(conn = %info.id, node = node_id, "a lost node's session is kept in the backplane: $disconnect when its window ends, unless it resumes");
                    self.disconnect_kept_later(Arc::new(info), ext, until, owner);
                    return;
                }
                if info.id.node_tag() != switchboard_core::id::node_tag(node_id) {
                    // It had moved to the lost node: its home forwards no more.
                    self.announce_end(info.id);
                }
                info!(conn = %info.id, node = node_id, "invoking $disconnect for a lost node's connection");
                self.invoke_disconnect(Arc::new(info), ext, 1006, "node lost".into())
                    .await
            }
            None => warn!(
                node = node_id,
                "unreadable connection snapshot of a lost node"
            ),
        }
    }

    /// Invokes `$disconnect` once for a connection that ended.
    pub async fn invoke_disconnect(
        &self,
        info: Arc<ConnectionInfo>,
        extension: Option<serde_json::Map<String, serde_json::Value>>,
        code: u16,
        reason: String,
    ) {
        let Some(target) = self.routes.disconnect() else {
            return;
        };
        let invocation = Invocation {
            kind: EventKind::Disconnect,
            route_key: target.key.clone(),
            connection: info,
            request_id: self.ids.request_id(),
            request_time_ms: self.epoch_ms(),
            body: None,
            disconnect: Some((code, reason)),
            extension,
        };
        let request_id = invocation.request_id.clone();
        let id = invocation.connection.id;
        let started = Instant::now();
        let result = match &target.function {
            Function::Builtin(b) => Ok(b.answer(invocation)),
            // On shutdown, a call not started before the deadline is not started at all.
            Function::Remote(_) if self.drain.is_over() => {
                self.drain.abandon(&id, target, &request_id);
                return;
            }
            Function::Remote(inv) => match self.drain.deadline() {
                None => inv.invoke(invocation).await,
                Some(d) => match tokio::time::timeout_at(d, inv.invoke(invocation)).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.drain.abandon(&id, target, &request_id);
                        return;
                    }
                },
            },
        };
        log_invocation(
            &id,
            target,
            &request_id,
            started,
            result.as_ref().map(|r| r.status),
        );
        if let Err(e) = result {
            self.metrics
                .invoke_errors
                .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                .inc();
            warn!(error = %e, "$disconnect function failed");
        }
    }
}

//! The edge's Prometheus metrics. Handles are created once and cloned into tasks; the
//! per-message counters are plain atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label for handshake rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// Label for closes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The close code.
    pub code: u16,
}

/// Every metric the edge records.
#[derive(Clone, Default)]
pub struct EdgeMetrics {
    /// Connections open now.
    pub connections_open: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Handshakes refused, by reason.
    pub handshakes_rejected: Family<ReasonLabel, Counter>,
    /// Messages received from clients.
    pub messages_in: Counter,
    /// Messages sent to clients.
    pub messages_out: Counter,
    /// Payload bytes received from clients (after decompression).
    pub bytes_in: Counter,
    /// Payload bytes sent to clients (before compression).
    pub bytes_out: Counter,
    /// Connections closed, by close code.
    pub closes: Family<CodeLabel, Counter>,
    /// Messages dropped because a connection's outbound queue was full.
    pub outbound_queue_drops: Counter,
    /// Messages refused before their function was invoked, by reason (`schema`,
    /// `rate_limit`, `user_rate_limit`).
    pub messages_rejected: Family<ReasonLabel, Counter>,
    /// Function invocations that failed, by reason.
    pub invoke_errors: Family<ReasonLabel, Counter>,
    /// Operations (management API, other nodes' requests) that failed, by reason.
    pub operations_failed: Family<ReasonLabel, Counter>,
    /// Invocations (messages and `$disconnect`) given up at the shutdown deadline.
    pub shutdown_abandoned: Counter,
    /// Connections closed because a newer one of their user went over
    /// `access.max_connections_per_user` (`on_user_limit = "close_oldest"`).
    pub user_limit_closed: Counter,
}

impl EdgeMetrics {
    /// Counts an operation that failed.
    pub fn op_failed(&self, reason: &'static str) {
        self.operations_failed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Registers every metric under the `switchboard_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("switchboard");
        r.register(
            "connections_open",
            "WebSocket connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "connections",
            "WebSocket connections accepted",
            self.connections_total.clone(),
        );
        r.register(
            "handshakes_rejected",
            "Handshakes refused, by reason",
            self.handshakes_rejected.clone(),
        );
        r.register(
            "messages_in",
            "Messages received from clients",
            self.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Messages sent to clients",
            self.messages_out.clone(),
        );
        r.register(
            "bytes_in",
            "Message payload bytes received",
            self.bytes_in.clone(),
        );
        r.register(
            "bytes_out",
            "Message payload bytes sent",
            self.bytes_out.clone(),
        );
        r.register(
            "closes",
            "Connections closed, by close code",
            self.closes.clone(),
        );
        r.register(
            "outbound_queue_drops",
            "Messages dropped because a connection's outbound queue was full",
            self.outbound_queue_drops.clone(),
        );
        r.register(
            "messages_rejected",
            "Messages refused before their function was invoked, by reason",
            self.messages_rejected.clone(),
        );
        r.register(
            "invoke_errors",
            "Function invocations that failed, by reason",
            self.invoke_errors.clone(),
        );
        r.register(
            "operations_failed",
            "Operations on connections (management API, builtins, other nodes) that failed, by reason",
            self.operations_failed.clone(),
        );
        r.register(
            "shutdown_abandoned_invocations",
            "Invocations (messages and $disconnect) still running when the shutdown grace ran out",
            self.shutdown_abandoned.clone(),
        );
        r.register(
            "user_limit_closed",
            "Connections closed because a newer one of their user went over access.max_connections_per_user",
            self.user_limit_closed.clone(),
        );
    }

    /// Counts a message refused before its function was invoked.
    pub fn message_rejected(&self, reason: &'static str) {
        self.messages_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a refused handshake; the count of its reason so far, this one included.
    pub fn reject(&self, reason: &'static str) -> u64 {
        self.handshakes_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc()
            + 1
    }
}

//! The shutdown drain: one deadline, set when the node stops, by which in-flight
//! invocations and `$disconnect` must finish, and the record of what was abandoned at it.
//!
//! Connection tasks hold their own invocations, so each task honours the deadline itself
//! (its socket's close handshake included) and reports what it gives up; the binary
//! waits for the tasks and then reads the count. Nothing here runs before shutdown: the
//! hot path pays one load of an unset `OnceLock` where it asks for the deadline.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use switchboard_core::ConnectionId;
use tokio::time::Instant;
use tracing::debug;

use crate::target::RouteTarget;

/// The node's drain deadline and the count of what it abandoned.
pub(crate) struct Drain {
    deadline: OnceLock<Instant>,
    /// Shared with the `switchboard_shutdown_abandoned_invocations` metric.
    abandoned: Counter,
}

impl Drain {
    pub(crate) fn new(abandoned: Counter) -> Self {
        Self {
            deadline: OnceLock::new(),
            abandoned,
        }
    }

    /// Starts the drain (the first call wins); returns its deadline.
    pub(crate) fn start(&self, grace: Duration) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + grace)
    }

    /// The deadline, once shutdown started.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Whether the deadline has passed.
    pub(crate) fn is_over(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Records an invocation given up at the deadline: one debug line naming it (the
    /// binary logs the count once), and the metric.
    pub(crate) fn abandon(&self, conn: &ConnectionId, target: &RouteTarget, request_id: &str) {
        self.abandoned.inc();
        debug!(
            conn = %conn,
            route = &*target.key,
            function = &*target.function_name,
            request_id,
            "invocation abandoned at the shutdown deadline"
        );
    }

    /// Invocations abandoned so far.
    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned.get()
    }
}

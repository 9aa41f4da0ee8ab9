//! The cluster applier: what other nodes send this one.

use std::sync::Arc;

use tracing::warn;

use crate::inner::EdgeInner;

impl EdgeInner {
    /// Applies a command another node sent to this one.
    pub fn apply(self: &Arc<Self>, command: switchboard_cluster::Command) {
        use switchboard_cluster::Command as C;
        match command {
            C::Op { op, req } => self.on_op(op, req),
            // Answers and greetings stay in the backplane, never come here.
            C::Reply { .. } | C::Hello => {}
            C::TakeSession {
                token,
                after,
                from,
                request,
            } => self.on_take_session(token, after, from, request),
            C::SessionTaken { request, outcome } => self.on_session_taken(request, outcome),
            C::Forget { id } => {
                if let Some(id) = switchboard_core::ConnectionId::parse(&id) {
                    self.forget_moved(id);
                }
            }
            C::Adopted { id, holder, proof } => {
                let proof = serde_json::from_value(serde_json::Value::String(proof));
                match (switchboard_core::ConnectionId::parse(&id), proof) {
                    (Some(id), Ok(proof)) => self.on_adopted(id, holder, proof),
                    _ => warn!(conn = %id, "unreadable adoption of a session from another node"),
                }
            }
        }
    }
}

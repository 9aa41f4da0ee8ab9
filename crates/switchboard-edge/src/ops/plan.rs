//! Where an operation is applied: a pure decision, tested as a table.

use switchboard_core::ops::Op;

/// Where the connection an operation addresses is, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// Held by this node (and not closing), opened here.
    Here,
    /// Held by this node (and not closing), opened on the node with this tag: its session
    /// moved here.
    Visiting(u32),
    /// Opened here, its session moved to another node (or is moving).
    Away,
    /// Opened on the node with this tag, not held here.
    Elsewhere(u32),
    /// Closed, closing, or never known here (opened here, not held, not away).
    Nowhere,
}

/// How to apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Here, now.
    Local,
    /// This node is the home of a session that moved: through its ordered forwarder, so
    /// the operation follows every earlier one (and waits while the session moves); the
    /// holder answers.
    ForwardInOrder,
    /// Ask the connection's home and wait for the answer (`op_timeout_ms`).
    Ask(u32),
    /// Hand it to the connection's home without waiting for it to be applied: a send or
    /// close by id, accepted as AWS's `@connections` accepts it.
    Tell(u32),
    /// Here and on every other node, answers summed.
    Gather,
    /// Nobody holds it.
    Gone,
}

/// Decides where `op` is applied. `has_peers`: other nodes can hold connections.
pub(crate) fn plan(op: &Op, at: At, has_peers: bool) -> Plan {
    if op.connection().is_none() {
        return if has_peers { Plan::Gather } else { Plan::Local };
    }
    let by_id = matches!(op, Op::Send { .. } | Op::Close { .. });
    match at {
        At::Here => Plan::Local,
        // Sends and closes by id take one path, through the home, whichever node is
        // asked: so they stay in order while the session moves between nodes.
        At::Visiting(home) if by_id && has_peers => Plan::Tell(home),
        At::Visiting(_) => Plan::Local,
        At::Away => Plan::ForwardInOrder,
        At::Elsewhere(home) if has_peers => match by_id {
            true => Plan::Tell(home),
            false => Plan::Ask(home),
        },
        At::Elsewhere(_) | At::Nowhere => Plan::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchboard_core::ops::Target;
    use switchboard_core::ConnectionId;

    #[test]
    fn every_operation_everywhere() {
        let id: ConnectionId = switchboard_core::id::IdGenerator::new("n").connection_id();
        let by_id = Target::Connection { id };
        let send = Op::Send {
            to: by_id.clone(),
            data: Bytes::new(),
            binary: false,
        };
        let close = Op::close(by_id);
        let join = Op::Join {
            id,
            group: "g".into(),
        };
        let get = Op::Get { id };
        let group_send = Op::Send {
            to: Target::Group {
                group: "g".into(),
                exclude: vec![],
            },
            data: Bytes::new(),
            binary: false,
        };
        let close_user = Op::close(Target::User { user: "u".into() });
        let members = Op::Members {
            group: "g".into(),
            after: None,
            limit: 100,
        };
        use At::*;
        use Plan as P;
        #[rustfmt::skip]
        let table: &[(&Op, At, bool, Plan)] = &[
            (&send, Here, true, P::Local),
            (&send, Here, false, P::Local),
            (&send, Away, true, P::ForwardInOrder),
            (&send, Visiting(7), true, P::Tell(7)),
            (&send, Visiting(7), false, P::Local),
            (&close, Visiting(7), true, P::Tell(7)),
            (&join, Visiting(7), true, P::Local),
            (&get, Visiting(7), true, P::Local),
            (&send, Elsewhere(7), true, P::Tell(7)),
            (&send, Elsewhere(7), false, P::Gone),
            (&send, Nowhere, true, P::Gone),
            (&close, Elsewhere(7), true, P::Tell(7)),
            (&close, Away, true, P::ForwardInOrder),
            (&join, Here, true, P::Local),
            (&join, Away, true, P::ForwardInOrder),
            (&join, Elsewhere(7), true, P::Ask(7)),
            (&join, Elsewhere(7), false, P::Gone),
            (&join, Nowhere, true, P::Gone),
            (&get, Elsewhere(3), true, P::Ask(3)),
            (&group_send, Nowhere, true, P::Gather),
            (&group_send, Nowhere, false, P::Local),
            (&close_user, Nowhere, true, P::Gather),
            (&members, Nowhere, true, P::Gather),
            (&members, Nowhere, false, P::Local),
        ];
        for (op, at, peers, want) in table {
            assert_eq!(
                plan(op, *at, *peers),
                *want,
                "{op:?} at {at:?}, peers {peers}"
            );
        }
    }
}

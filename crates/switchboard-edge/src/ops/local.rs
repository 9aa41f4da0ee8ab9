//! Operations applied on this node: the only code that changes the connection table on
//! behalf of an operation, and writes the registry snapshot after each change.

use std::sync::Arc;

use switchboard_cluster::OpResult;
use switchboard_core::event::ResponseExtension;
use switchboard_core::ops::{ConnectionView, Counts, Coverage, Op, OpError, Outcome, Target};

use crate::inner::EdgeInner;
use crate::table::{ConnHandle, ConnectionTable, SendError};

impl EdgeInner {
    /// Applies an operation for one connection to its handle, held here.
    pub(crate) fn apply_on(self: &Arc<Self>, h: &Arc<ConnHandle>, op: Op) -> OpResult {
        let id = h.info.id;
        match op {
            Op::Send { data, binary, .. } => match h.send(data.clone(), binary) {
                Ok(()) => Ok(Outcome::Accepted),
                // Its session may have moved to another node just now.
                Err(SendError::Gone) if self.send_moved(id, data, binary) => Ok(Outcome::Accepted),
                Err(SendError::Gone) => Err(OpError::Gone),
                Err(SendError::QueueFull) => Err(OpError::QueueFull),
                Err(SendError::TooLarge) => Err(OpError::PayloadTooLarge),
            },
            Op::Close { why, .. } => {
                if h.close_requested().is_some() {
                    return Err(OpError::Gone);
                }
                h.request_close(why.into());
                Ok(Outcome::Accepted)
            }
            Op::Join { group, .. } => {
                let added = self.table.join(id, &group)?;
                if added {
                    self.record(h, true);
                }
                Ok(Outcome::Joined { added })
            }
            Op::Leave { group, .. } => {
                let removed = self.table.leave(id, &group);
                if removed {
                    self.record(h, true);
                }
                Ok(Outcome::Left { removed })
            }
            Op::SetState { changes, .. } => {
                let max = self.table.max_state_bytes();
                h.merge_state(&changes, max)
                    .map_err(|_| OpError::StateTooLarge { limit: max as u64 })?;
                if !changes.is_empty() {
                    self.record(h, true);
                }
                Ok(Outcome::State { state: h.state() })
            }
            Op::SetUser { user, .. } => {
                let before = self.table.user_of(id);
                self.table.set_user(id, user.as_deref())?;
                if before.as_deref() != user.as_deref() {
                    self.record(h, true);
                }
                Ok(Outcome::User { user })
            }
            Op::Get { .. } => Ok(Outcome::Connection {
                view: Box::new(self.view(h)),
            }),
            Op::Members { .. } | Op::UserConnections { .. } => Err(OpError::Gone),
        }
    }

    /// This node's part of an operation on many connections (or, for one connection, its
    /// part if it holds it).
    pub(crate) fn apply_here(self: &Arc<Self>, op: &Op) -> OpResult {
        let handles = |to: &Target| match to {
            Target::Connection { id } => self.table.get(id).into_iter().collect(),
            Target::Group { group, exclude } => self.table.group_handles(group, exclude),
            Target::User { user } => self.table.user_handles(user),
            Target::All => self.table.all_handles(),
        };
        match op {
            Op::Send { to, data, binary } => {
                let f = ConnectionTable::fanout(&handles(to), data, *binary);
                Ok(Outcome::Sent {
                    counts: Counts {
                        recipients: f.recipients as u64,
                        delivered: f.delivered as u64,
                        dropped: f.dropped as u64,
                    },
                    nodes: Coverage::ONE,
                })
            }
            Op::Close { to, why } => {
                let mut closed = 0;
                for h in handles(to).iter().filter(|h| h.close_requested().is_none()) {
                    h.request_close((*why).into());
                    closed += 1;
                }
                Ok(Outcome::Closed {
                    closed,
                    nodes: Coverage::ONE,
                })
            }
            Op::Members {
                group,
                after,
                limit,
            } => Ok(Outcome::Members {
                ids: self.table.group_page(group, *after, *limit as usize),
                size: self.table.group_len(group) as u64,
                nodes: Coverage::ONE,
            }),
            Op::UserConnections { user, rank_of, .. } => {
                let limit = op.listed().unwrap_or(0);
                let (count, older, oldest) = self.table.user_connections(user, *rank_of, limit);
                Ok(Outcome::UserConnections {
                    count,
                    older,
                    oldest,
                    nodes: Coverage::ONE,
                })
            }
            other => match other.connection().and_then(|id| self.table.get(&id)) {
                Some(h) => self.apply_on(&h, other.clone()),
                None => Err(OpError::Gone),
            },
        }
    }

    /// Groups, user and state from a function's answer, applied here; whether anything
    /// changed, and the problems.
    pub(crate) fn extend_local(
        self: &Arc<Self>,
        h: &Arc<ConnHandle>,
        ext: &ResponseExtension,
    ) -> (bool, Vec<String>) {
        let id = h.info.id;
        let mut problems = Vec::new();
        let mut changed = false;
        for g in &ext.groups {
            match self.table.join(id, g) {
                Ok(added) => changed |= added,
                Err(e) => problems.push(format!("group {g:?}: {e}")),
            }
        }
        if let Some(u) = &ext.user_id {
            match self.table.set_user(id, Some(u)) {
                Ok(()) => changed = true,
                Err(e) => problems.push(format!("userId: {e}")),
            }
        }
        if !ext.state.is_empty() {
            match h.merge_state(&ext.state, self.table.max_state_bytes()) {
                Ok(()) => changed = true,
                Err(e) => problems.push(e.to_string()),
            }
        }
        (changed, problems)
    }

    /// What the management API shows of a connection held here.
    fn view(&self, h: &ConnHandle) -> ConnectionView {
        let info = &h.info;
        let mut groups: Vec<String> = self
            .table
            .groups_of(info.id)
            .iter()
            .map(|g| g.to_string())
            .collect();
        groups.sort();
        ConnectionView {
            id: info.id,
            connected_at_ms: info.connected_at_ms,
            last_active_at_ms: h.last_active_ms(),
            source_ip: info.source_ip.to_string(),
            user_agent: info.user_agent.clone(),
            user_id: self.table.user_of(info.id).map(|u| u.to_string()),
            groups,
            state: h.state(),
            subprotocol: info.subprotocol.clone(),
        }
    }
}

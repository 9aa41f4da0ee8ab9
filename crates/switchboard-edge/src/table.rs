//! The node's connection table, and (in `handle`) the handle through which anything
//! outside a connection's task talks to it.
//!
//! A handle is the only shared state of a connection: a bounded queue of outbound
//! messages (bounded in count by the channel and in bytes by a counter), and a close
//! request that wakes the task. Senders never wait: a full queue closes the connection
//! with 1013 instead, so one slow reader cannot hold up a fan-out.
//!
//! The membership index holds the handles themselves, not just ids: a group send takes
//! the group's shared snapshot of member handles under one read lock and queues to each,
//! with no per-member lookup in the sharded table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use switchboard_core::groups::{Membership, MembershipError};
use switchboard_core::ops::UserConnection;
use switchboard_core::ConnectionId;

mod handle;

pub use crate::outbound::Outbound;
pub use handle::{CloseRequest, ConnHandle, SendError, StateTooLarge};

/// What a fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Connections addressed.
    pub recipients: usize,
    /// Messages queued.
    pub delivered: usize,
    /// Recipients whose queue was full (they are being closed with 1013) or that were
    /// already closing.
    pub dropped: usize,
}

/// The recipients of a fan-out. Shared: a group's or user's are the index's snapshot,
/// one reference count away.
pub type Handles = Arc<[Arc<ConnHandle>]>;

const SHARDS: usize = 16;

/// Every connection this node holds, sharded to keep lock hold times short.
pub struct ConnectionTable {
    shards: Vec<RwLock<HashMap<ConnectionId, Arc<ConnHandle>>>>,
    len: AtomicUsize,
    /// Groups and users, with every connection's handle. Held only for index updates and
    /// to collect recipients, never across a send or an await. Taken before a shard lock
    /// (insert, remove), so a join sees a connection either in both or in neither.
    membership: RwLock<Membership<ConnectionId, Arc<ConnHandle>>>,
    max_state_bytes: usize,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        Self::new(32, 4096)
    }
}

impl ConnectionTable {
    /// A table whose connections may be in `max_groups` groups and hold
    /// `max_state_bytes` of state each.
    pub fn new(max_groups: usize, max_state_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            membership: RwLock::new(Membership::new(max_groups)),
            max_state_bytes,
        }
    }

    fn shard(&self, id: &ConnectionId) -> &RwLock<HashMap<ConnectionId, Arc<ConnHandle>>> {
        // The last byte is the low byte of the node's counter: evenly spread.
        &self.shards[id.as_bytes()[15] as usize % SHARDS]
    }

    pub(crate) fn insert(&self, handle: Arc<ConnHandle>) {
        let id = handle.info.id;
        let mut membership = self.membership.write();
        membership.add_connection(id, handle.clone());
        let replaced = self.shard(&id).write().insert(id, handle);
        drop(membership);
        if replaced.is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets a connection and its memberships: from here no fan-out gets its handle and
    /// a join for it is refused.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        let mut membership = self.membership.write();
        membership.remove_connection(*id);
        let removed = self.shard(id).write().remove(id);
        drop(membership);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The handle of a connection held by this node.
    pub fn get(&self, id: &ConnectionId) -> Option<Arc<ConnHandle>> {
        self.shard(id).read().get(id).cloned()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every connection to close.
    pub fn close_all(&self, why: CloseRequest) {
        for shard in &self.shards {
            for handle in shard.read().values() {
                handle.request_close(why);
            }
        }
    }

    /// Adds a connection held by this node to a group (`NotHeld` for any other).
    pub fn join(&self, id: ConnectionId, group: &str) -> Result<bool, MembershipError> {
        self.membership.write().join(id, group)
    }

    /// Removes a connection from a group; returns whether it was a member.
    pub fn leave(&self, id: ConnectionId, group: &str) -> bool {
        self.membership.write().leave(id, group)
    }

    /// Sets or clears a connection's user.
    pub fn set_user(&self, id: ConnectionId, user: Option<&str>) -> Result<(), MembershipError> {
        self.membership.write().set_user(id, user)?;
        if let Some(h) = self.get(&id) {
            h.user_changed();
        }
        Ok(())
    }

    /// A connection's user.
    pub fn user_of(&self, id: ConnectionId) -> Option<Arc<str>> {
        self.membership.read().user_of(id)
    }

    /// A connection's groups.
    pub fn groups_of(&self, id: ConnectionId) -> Vec<Arc<str>> {
        self.membership.read().groups_of(id)
    }

    /// Members of a group, paged in a stable order.
    pub fn group_page(
        &self,
        group: &str,
        after: Option<ConnectionId>,
        limit: usize,
    ) -> Vec<ConnectionId> {
        self.membership.read().page(group, after, limit)
    }

    /// Number of members of a group.
    pub fn group_len(&self, group: &str) -> usize {
        self.membership.read().group_len(group)
    }

    /// Bytes of state one connection may hold.
    pub fn max_state_bytes(&self) -> usize {
        self.max_state_bytes
    }

    /// The members of a group (minus `exclude`), as handles in id order. Without an
    /// excluded member this is the group's shared snapshot; with one, a filtered copy.
    pub fn group_handles(&self, group: &str, exclude: &[ConnectionId]) -> Handles {
        let (members, excluding) = {
            let m = self.membership.read();
            let Some(members) = m.group_values(group) else {
                return Handles::default();
            };
            (members, exclude.iter().any(|id| m.is_member(group, id)))
        };
        if !excluding {
            return members;
        }
        members
            .iter()
            .filter(|h| !exclude.contains(&h.info.id))
            .cloned()
            .collect()
    }

    /// A user's connections, as handles (the user's shared snapshot).
    pub fn user_handles(&self, user: &str) -> Handles {
        self.membership.read().user_values(user).unwrap_or_default()
    }

    /// A user's connections not closing: how many, how many of them are older than
    /// `rank_of`, and the `oldest` oldest, oldest first. Reads the index in place: no
    /// snapshot is built, and nothing is allocated when `oldest` is 0.
    pub fn user_connections(
        &self,
        user: &str,
        rank_of: Option<UserConnection>,
        oldest: usize,
    ) -> (u64, u64, Vec<UserConnection>) {
        let (mut count, mut older) = (0, 0);
        let mut first: Vec<UserConnection> = Vec::new();
        let m = self.membership.read();
        for h in m.user_values_iter(user) {
            if h.close_requested().is_some() {
                continue;
            }
            let c = UserConnection {
                connected_at_ms: h.info.connected_at_ms,
                id: h.info.id,
            };
            count += 1;
            older += u64::from(rank_of.is_some_and(|me| c < me));
            if oldest == 0 || (first.len() == oldest && first[oldest - 1] <= c) {
                continue;
            }
            // Kept sorted and at most `oldest` long.
            let at = first.partition_point(|x| *x < c);
            first.insert(at, c);
            first.truncate(oldest);
        }
        (count, older, first)
    }

    /// Every connection, as handles.
    pub fn all_handles(&self) -> Handles {
        let mut out = Vec::with_capacity(self.len());
        for shard in &self.shards {
            out.extend(shard.read().values().cloned());
        }
        out.into()
    }

    /// Queues one shared payload for every handle. Never waits: a full queue drops that
    /// recipient (which is closed with 1013) and the others go on.
    pub fn fanout(handles: &[Arc<ConnHandle>], data: &Bytes, binary: bool) -> Fanout {
        let mut f = Fanout {
            recipients: handles.len(),
            ..Fanout::default()
        };
        for h in handles {
            match h.send(data.clone(), binary) {
                Ok(()) => f.delivered += 1,
                Err(_) => f.dropped += 1,
            }
        }
        f
    }

    /// `requestContext.switchboard` for a connection: its user, groups and state, or
    /// `None` when it has none of them.
    pub fn extension_of(
        &self,
        handle: &ConnHandle,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let id = handle.info.id;
        let (user, groups) = {
            let m = self.membership.read();
            (m.user_of(id), m.groups_of(id))
        };
        let state = handle.state();
        if user.is_none() && groups.is_empty() && state.is_empty() {
            return None;
        }
        let mut ext = serde_json::Map::new();
        if let Some(u) = user {
            ext.insert("userId".into(), serde_json::Value::String(u.to_string()));
        }
        if !groups.is_empty() {
            let mut g: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            g.sort();
            ext.insert("groups".into(), g.into());
        }
        if !state.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> =
                state.into_iter().map(|(k, v)| (k, v.into())).collect();
            ext.insert("state".into(), map.into());
        }
        Some(ext)
    }
}

#[cfg(test)]
mod tests;

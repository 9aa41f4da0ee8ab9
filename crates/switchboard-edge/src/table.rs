//! The node's connection table, and the handle through which anything outside a
//! connection's task talks to it.
//!
//! A handle is the only shared state of a connection: a bounded queue of outbound
//! messages (bounded in count by the channel and in bytes by a counter), and a close
//! request that wakes the task. Senders never wait: a full queue closes the connection
//! with 1013 instead, so one slow reader cannot hold up a fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use switchboard_core::event::ConnectionInfo;
use switchboard_core::groups::{Membership, MembershipError};
use switchboard_core::ConnectionId;
use tokio::sync::mpsc;

pub use crate::outbound::Outbound;

/// Why something outside the task asked a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseRequest {
    /// The server is shutting down (1001).
    Shutdown = 1,
    /// Its outbound queue overflowed (1013).
    SlowConsumer = 2,
    /// Deleted through the management API (1000).
    Deleted = 3,
}

impl CloseRequest {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Shutdown,
            2 => Self::SlowConsumer,
            3 => Self::Deleted,
            _ => return None,
        })
    }

    /// The close code and reason sent to the client.
    pub fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Self::Shutdown => (1001, "server shutting down"),
            Self::SlowConsumer => (1013, "slow consumer"),
            Self::Deleted => (1000, "closed by the server"),
        }
    }
}

/// Why a send to a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is closed or closing.
    #[error("connection gone")]
    Gone,
    /// The outbound queue is full; the connection is being closed with 1013.
    #[error("outbound queue full")]
    QueueFull,
    /// The message exceeds the size limit.
    #[error("message too large")]
    TooLarge,
}

/// The shared side of one connection.
pub struct ConnHandle {
    /// Handshake facts.
    pub info: Arc<ConnectionInfo>,
    tx: mpsc::Sender<Outbound>,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    max_message_bytes: usize,
    close: AtomicU8,
    waker: AtomicWaker,
    last_active_ms: AtomicU64,
    /// Small key/values a function attached to the connection; bounded by `max_state_bytes`.
    state: Mutex<Vec<(String, String)>>,
    /// When the connection's credential expires, epoch ms (0: never); the task closes it
    /// with 1008 then.
    expires_at_ms: AtomicU64,
    /// A resumable session whose socket dropped: here until its client comes back.
    pub(crate) parked: Mutex<Option<Box<crate::session::Parked>>>,
}

/// Why per-connection state could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection state would exceed {0} bytes")]
pub struct StateTooLarge(pub usize);

impl ConnHandle {
    pub(crate) fn new(
        info: Arc<ConnectionInfo>,
        queue_messages: usize,
        max_queued_bytes: usize,
        max_message_bytes: usize,
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue_messages);
        let last = info.connected_at_ms;
        (
            Arc::new(Self {
                info,
                tx,
                queued_bytes: AtomicUsize::new(0),
                max_queued_bytes,
                max_message_bytes,
                close: AtomicU8::new(0),
                waker: AtomicWaker::new(),
                last_active_ms: AtomicU64::new(last),
                state: Mutex::new(Vec::new()),
                expires_at_ms: AtomicU64::new(0),
                parked: Mutex::new(None),
            }),
            rx,
        )
    }

    /// Queues a message without waiting. A full queue closes the connection (1013).
    pub fn send(&self, data: Bytes, binary: bool) -> Result<(), SendError> {
        let len = data.len();
        if len > self.max_message_bytes {
            return Err(SendError::TooLarge);
        }
        if self.close_requested().is_some() {
            return Err(SendError::Gone);
        }
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.request_close(CloseRequest::SlowConsumer);
            return Err(SendError::QueueFull);
        }
        match self.tx.try_send(Outbound { data, binary }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.request_close(CloseRequest::SlowConsumer);
                Err(SendError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(SendError::Gone)
            }
        }
    }

    /// Asks the task to close the connection. The first request wins.
    pub fn request_close(&self, why: CloseRequest) {
        let _ = self
            .close
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    /// The pending close request, if any.
    pub fn close_requested(&self) -> Option<CloseRequest> {
        CloseRequest::from_u8(self.close.load(Ordering::Acquire))
    }

    /// When the client last sent a frame, epoch milliseconds.
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn set_last_active_ms(&self, ms: u64) {
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    pub(crate) fn register_waker(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Wakes whatever task watches this connection.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Sets when the connection's credential expires.
    pub fn set_expires_at(&self, at: std::time::SystemTime) {
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            .max(1);
        self.expires_at_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection's credential expires, epoch ms.
    pub(crate) fn expires_at_ms(&self) -> Option<u64> {
        Some(self.expires_at_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// Merges state changes (`None` removes a key); all or nothing.
    pub fn merge_state(
        &self,
        changes: &[(String, Option<String>)],
        max_bytes: usize,
    ) -> Result<(), StateTooLarge> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        for (k, v) in changes {
            next.retain(|(key, _)| key != k);
            if let Some(v) = v {
                next.push((k.clone(), v.clone()));
            }
        }
        let size: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > max_bytes {
            return Err(StateTooLarge(max_bytes));
        }
        next.sort();
        *state = next;
        Ok(())
    }

    /// The connection's state.
    pub fn state(&self) -> Vec<(String, String)> {
        self.state.lock().clone()
    }
}

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

const SHARDS: usize = 16;

/// Every connection this node holds, sharded to keep lock hold times short.
pub struct ConnectionTable {
    shards: Vec<RwLock<HashMap<ConnectionId, Arc<ConnHandle>>>>,
    len: AtomicUsize,
    /// Groups and users. Held only for index updates and to collect recipients, never
    /// across a send or an await.
    membership: RwLock<Membership<ConnectionId>>,
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
        if self.shard(&id).write().insert(id, handle).is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn remove(&self, id: &ConnectionId) {
        if self.shard(id).write().remove(id).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        self.membership.write().remove_connection(*id);
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

    /// Adds a connection (held by this node) to a group.
    pub fn join(&self, id: ConnectionId, group: &str) -> Result<bool, MembershipError> {
        self.membership.write().join(id, group)
    }

    /// Removes a connection from a group; returns whether it was a member.
    pub fn leave(&self, id: ConnectionId, group: &str) -> bool {
        self.membership.write().leave(id, group)
    }

    /// Sets or clears a connection's user.
    pub fn set_user(&self, id: ConnectionId, user: Option<&str>) -> Result<(), MembershipError> {
        self.membership.write().set_user(id, user)
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

    fn handles(&self, ids: Vec<ConnectionId>) -> Vec<Arc<ConnHandle>> {
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    /// The members of a group (minus `exclude`), as handles.
    pub fn group_handles(&self, group: &str, exclude: &[ConnectionId]) -> Vec<Arc<ConnHandle>> {
        let ids: Vec<ConnectionId> = self
            .membership
            .read()
            .members(group)
            .filter(|id| !exclude.contains(id))
            .collect();
        self.handles(ids)
    }

    /// A user's connections, as handles.
    pub fn user_handles(&self, user: &str) -> Vec<Arc<ConnHandle>> {
        let ids: Vec<ConnectionId> = self.membership.read().user_connections(user).collect();
        self.handles(ids)
    }

    /// Every connection, as handles.
    pub fn all_handles(&self) -> Vec<Arc<ConnHandle>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in &self.shards {
            out.extend(shard.read().values().cloned());
        }
        out
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
mod tests {
    use super::*;
    use switchboard_core::id::IdGenerator;

    fn handle(queue: usize, bytes: usize) -> (Arc<ConnHandle>, mpsc::Receiver<Outbound>) {
        let info = Arc::new(ConnectionInfo {
            id: IdGenerator::new("t").connection_id(),
            connected_at_ms: 0,
            source_ip: [127, 0, 0, 1].into(),
            user_agent: None,
            path: "/".into(),
            headers: vec![],
            query: vec![],
            subprotocol: None,
            tls: false,
            port: 0,
            authorizer: None,
        });
        ConnHandle::new(info, queue, bytes, 100)
    }

    #[test]
    fn a_full_queue_closes_with_1013_instead_of_growing() {
        let (h, mut rx) = handle(2, 1000);
        h.send(Bytes::from_static(b"a"), false).unwrap();
        h.send(Bytes::from_static(b"b"), false).unwrap();
        assert_eq!(
            h.send(Bytes::from_static(b"c"), false),
            Err(SendError::QueueFull)
        );
        assert_eq!(h.close_requested(), Some(CloseRequest::SlowConsumer));
        assert_eq!(
            h.send(Bytes::from_static(b"d"), false),
            Err(SendError::Gone)
        );
        assert_eq!(rx.try_recv().unwrap().data, "a");
    }

    #[test]
    fn the_byte_bound_counts_too() {
        let (h, mut rx) = handle(100, 150);
        let big = Bytes::from(vec![0u8; 80]);
        h.send(big.clone(), true).unwrap();
        assert_eq!(h.send(big.clone(), true), Err(SendError::QueueFull));
        let (h, _rx2) = handle(100, 1000);
        assert_eq!(
            h.send(Bytes::from(vec![0u8; 101]), true),
            Err(SendError::TooLarge)
        );
        // Dequeuing gives the budget back.
        let m = rx.try_recv().unwrap();
        assert_eq!(m.data.len(), 80);
    }

    #[test]
    fn the_table_counts_and_finds() {
        let t = ConnectionTable::default();
        let (a, _ra) = handle(1, 10);
        let (b, _rb) = handle(1, 10);
        t.insert(a.clone());
        t.insert(b.clone());
        assert_eq!(t.len(), 2);
        assert!(t.get(&a.info.id).is_some());
        t.remove(&a.info.id);
        t.remove(&a.info.id);
        assert_eq!(t.len(), 1);
        t.close_all(CloseRequest::Shutdown);
        assert_eq!(b.close_requested(), Some(CloseRequest::Shutdown));
    }
}

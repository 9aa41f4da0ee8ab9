//! The node's connection table, and the handle through which anything outside a
//! connection's task talks to it.
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
mod tests {
    use super::*;
    use switchboard_core::id::IdGenerator;

    type Conn = (Arc<ConnHandle>, mpsc::Receiver<Outbound>);

    fn handle(queue: usize, bytes: usize) -> Conn {
        handle_from(&IdGenerator::new("t"), queue, bytes)
    }

    fn handle_from(ids: &IdGenerator, queue: usize, bytes: usize) -> Conn {
        let info = Arc::new(ConnectionInfo {
            id: ids.connection_id(),
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

    /// `n` connections of one table, all in group `g`.
    fn group_of(n: usize) -> (ConnectionTable, Vec<Conn>) {
        let t = ConnectionTable::default();
        let ids = IdGenerator::new("t");
        let conns: Vec<_> = (0..n).map(|_| handle_from(&ids, 4, 1000)).collect();
        for (h, _) in &conns {
            t.insert(h.clone());
            assert_eq!(t.join(h.info.id, "g"), Ok(true));
        }
        (t, conns)
    }

    fn ids_of(handles: &[Arc<ConnHandle>]) -> Vec<ConnectionId> {
        handles.iter().map(|h| h.info.id).collect()
    }

    #[test]
    fn a_member_removed_on_close_is_never_returned() {
        let (t, conns) = group_of(3);
        let [a, b, c] = [0, 1, 2].map(|i| conns[i].0.clone());
        t.set_user(b.info.id, Some("ada")).unwrap();
        t.set_user(c.info.id, Some("ada")).unwrap();
        t.remove(&b.info.id);
        assert_eq!(ids_of(&t.group_handles("g", &[])), [a.info.id, c.info.id]);
        assert_eq!(ids_of(&t.user_handles("ada")), [c.info.id]);
        assert!(!ids_of(&t.all_handles()).contains(&b.info.id));
        assert_eq!(t.group_len("g"), 2);
        // A join or user change that lost the race with the close is refused.
        assert_eq!(t.join(b.info.id, "g"), Err(MembershipError::NotHeld));
        assert_eq!(
            t.set_user(b.info.id, Some("ada")),
            Err(MembershipError::NotHeld)
        );
        assert_eq!(ids_of(&t.group_handles("g", &[])), [a.info.id, c.info.id]);
        assert!(t.groups_of(b.info.id).is_empty());
        // Closing everyone ends the group.
        t.remove(&a.info.id);
        t.remove(&c.info.id);
        assert!(t.group_handles("g", &[]).is_empty());
        assert!(t.user_handles("ada").is_empty());
        assert_eq!(t.group_page("g", None, 10), []);
    }

    #[test]
    fn group_sends_reach_the_current_handle() {
        let (t, mut conns) = group_of(2);
        let f =
            ConnectionTable::fanout(&t.group_handles("g", &[]), &Bytes::from_static(b"1"), false);
        assert_eq!((f.recipients, f.delivered), (2, 2));
        assert_eq!(conns[1].1.try_recv().unwrap().data, "1");
        // The same connection under a new handle (a session come back): sends go there.
        let (h, mut rx) = ConnHandle::new(conns[1].0.info.clone(), 4, 1000, 100);
        t.insert(h.clone());
        assert_eq!(t.len(), 2);
        let hs = t.group_handles("g", &[]);
        assert!(Arc::ptr_eq(&hs[1], &h));
        ConnectionTable::fanout(&hs, &Bytes::from_static(b"2"), false);
        assert_eq!(rx.try_recv().unwrap().data, "2");
        assert!(conns[1].1.try_recv().is_err());
    }

    #[test]
    fn join_leave_and_close_interleaved() {
        let (t, conns) = group_of(4);
        let id = |i: usize| conns[i].0.info.id;
        assert!(t.leave(id(1), "g"));
        assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(2), id(3)]);
        assert_eq!(t.join(id(1), "g"), Ok(true));
        assert_eq!(t.join(id(1), "h"), Ok(true));
        assert_eq!(
            ids_of(&t.group_handles("g", &[])),
            [id(0), id(1), id(2), id(3)]
        );
        t.remove(&id(1));
        assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(2), id(3)]);
        assert!(t.group_handles("h", &[]).is_empty());
        assert!(!t.leave(id(1), "g"));
        assert_eq!(t.join(id(1), "h"), Err(MembershipError::NotHeld));
        // Paging stays in id order across the changes.
        assert_eq!(t.group_page("g", Some(id(0)), 1), [id(2)]);
        assert_eq!(t.group_page("g", Some(id(2)), 5), [id(3)]);
    }

    #[test]
    fn the_exclude_list() {
        let (t, conns) = group_of(3);
        let id = |i: usize| conns[i].0.info.id;
        let outsider = handle(1, 10).0.info.id;
        assert_eq!(ids_of(&t.group_handles("g", &[id(1)])), [id(0), id(2)]);
        assert_eq!(
            ids_of(&t.group_handles("g", &[outsider])),
            [id(0), id(1), id(2)]
        );
        assert_eq!(
            ids_of(&t.group_handles("g", &[id(2), outsider, id(0)])),
            [id(1)]
        );
        assert!(t.group_handles("g", &[id(0), id(1), id(2)]).is_empty());
        assert!(t.group_handles("nobody", &[id(0)]).is_empty());
        // Excluding does not change the group.
        assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(1), id(2)]);
    }

    #[test]
    fn a_fan_out_racing_closes_never_gets_a_closed_member() {
        // Closes in order, joins and leaves beside them, and fan-outs: a fan-out that
        // starts after close i finished never returns connection i or an earlier one.
        let (t, conns) = group_of(200);
        let handles: Vec<Arc<ConnHandle>> = conns.iter().map(|(h, _)| h.clone()).collect();
        let position: HashMap<ConnectionId, usize> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| (h.info.id, i))
            .collect();
        let closed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, h) in handles.iter().enumerate() {
                    t.remove(&h.info.id);
                    closed.store(i + 1, Ordering::Release);
                }
            });
            s.spawn(|| {
                for round in 0.. {
                    let done = closed.load(Ordering::Acquire);
                    if done == handles.len() {
                        break;
                    }
                    let h = &handles[(round * 7) % handles.len()];
                    t.leave(h.info.id, "g");
                    let joined = t.join(h.info.id, "g");
                    if position[&h.info.id] < done {
                        assert_eq!(joined, Err(MembershipError::NotHeld));
                    }
                }
            });
            loop {
                let done = closed.load(Ordering::Acquire);
                for h in t.group_handles("g", &[]).iter() {
                    assert!(position[&h.info.id] >= done, "closed member returned");
                }
                if done == handles.len() {
                    break;
                }
            }
        });
        assert!(t.group_handles("g", &[]).is_empty());
        assert_eq!(t.group_len("g"), 0);
    }

    /// ns per member of a group send to 15,000: recipients collected through the index's
    /// handles vs looked up one by one in the sharded table (the way it was done before
    /// the index held handles), then queued. Run with
    /// `cargo test --release -p switchboard-edge --lib fanout_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: prints figures"]
    fn fanout_cost() {
        const N: usize = 15_000;
        const ROUNDS: u32 = 200;
        let t = ConnectionTable::default();
        let ids = IdGenerator::new("bench");
        let mut conns = Vec::with_capacity(N);
        for _ in 0..N {
            let (h, rx) = handle_from(&ids, 4, 1 << 20);
            t.insert(h.clone());
            t.join(h.info.id, "g").unwrap();
            conns.push((h, rx));
        }
        let data = Bytes::from(vec![b'x'; 64]);
        let per_member = |ns: u128| ns as f64 / f64::from(ROUNDS) / N as f64;
        let by_lookup = |exclude: &[ConnectionId]| -> Vec<Arc<ConnHandle>> {
            t.group_page("g", None, usize::MAX)
                .iter()
                .filter(|id| !exclude.contains(id))
                .filter_map(|id| t.get(id))
                .collect()
        };
        let first = conns[0].0.info.id;
        for (name, exclude) in [("no exclude", vec![]), ("exclude 1", vec![first])] {
            // [index, lookup per member]
            let mut collect = [0u128; 2];
            let mut send = [0u128; 2];
            for _ in 0..ROUNDS {
                for (k, total) in collect.iter_mut().enumerate() {
                    let start = tokio::time::Instant::now();
                    let n = match k {
                        0 => t.group_handles("g", &exclude).len(),
                        _ => by_lookup(&exclude).len(),
                    };
                    *total += start.elapsed().as_nanos();
                    assert_eq!(n, N - exclude.len());
                }
                for (k, total) in send.iter_mut().enumerate() {
                    let start = tokio::time::Instant::now();
                    let f = match k {
                        0 => ConnectionTable::fanout(&t.group_handles("g", &exclude), &data, false),
                        _ => ConnectionTable::fanout(&by_lookup(&exclude), &data, false),
                    };
                    *total += start.elapsed().as_nanos();
                    assert_eq!(f.dropped, 0);
                    for (h, rx) in &mut conns {
                        while let Ok(o) = rx.try_recv() {
                            h.dequeued(o.data.len());
                        }
                    }
                }
            }
            println!(
                "fanout_cost {name}: {N} members, {ROUNDS} rounds: collect {:.1} ns/member \
                 (group_handles) vs {:.1} (lookup per member); collect+queue {:.1} vs {:.1}",
                per_member(collect[0]),
                per_member(collect[1]),
                per_member(send[0]),
                per_member(send[1]),
            );
        }
    }
}

//! A connection's handle: its bounded outbound queue and its close request, shared
//! between the connection's task and everything that sends to it or closes it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use switchboard_core::event::ConnectionInfo;
use tokio::sync::mpsc;

use crate::outbound::Outbound;

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
    /// A newer connection of its user went over `access.max_connections_per_user` (1008).
    UserLimit = 4,
}

impl From<switchboard_core::ops::CloseWhy> for CloseRequest {
    fn from(why: switchboard_core::ops::CloseWhy) -> Self {
        match why {
            switchboard_core::ops::CloseWhy::Deleted => Self::Deleted,
            switchboard_core::ops::CloseWhy::UserLimit => Self::UserLimit,
        }
    }
}

impl CloseRequest {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Shutdown,
            2 => Self::SlowConsumer,
            3 => Self::Deleted,
            4 => Self::UserLimit,
            _ => return None,
        })
    }

    /// The close code and reason sent to the client.
    pub fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Self::Shutdown => (1001, "server shutting down"),
            Self::SlowConsumer => (1013, "slow consumer"),
            Self::Deleted => (1000, "closed by the server"),
            Self::UserLimit => (1008, "too many connections for this user"),
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
    /// Bumped each time the connection's user is set or cleared, so the connection task
    /// can keep what it derived from the user (its per-user message bucket) without
    /// reading the membership index for every message.
    user_changes: AtomicU32,
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
                user_changes: AtomicU32::new(0),
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

    /// How many times the connection's user was set or cleared.
    pub(crate) fn user_changes(&self) -> u32 {
        self.user_changes.load(Ordering::Acquire)
    }

    pub(crate) fn user_changed(&self) {
        self.user_changes.fetch_add(1, Ordering::AcqRel);
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

//! What the kept-copy writer is asked to do (its state type, apart from the writer in
//! `kept.rs` so the shared state can hold its queue).

use switchboard_cluster::{CopyGuard, CopyStamp};
use switchboard_core::ConnectionId;
use tokio::sync::oneshot;

/// What the copy writer does with a session's copy, if `guard` admits the copy stored
/// at that moment.
pub(crate) enum CopyOp {
    /// Write it, stamped, to expire after `ttl` seconds.
    Store {
        copy: String,
        stamp: CopyStamp,
        ttl: u64,
        guard: CopyGuard,
    },
    /// Read and delete it at once.
    Take { guard: CopyGuard },
}

/// One operation on a copy: the session's connection, the operation, and who waits for
/// the outcome (`Ok(true)`: stored, or taken; `Ok(false)`: the guard refused, or there
/// was nothing to take; `Err`: it was not done).
pub(crate) type CopyWrite = (
    ConnectionId,
    CopyOp,
    Option<oneshot::Sender<Result<bool, CopyWriteError>>>,
);

/// Why an operation on a kept copy was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CopyWriteError {
    /// The backplane failed it.
    #[error(transparent)]
    Backplane(#[from] switchboard_cluster::BackplaneError),
    /// The node's queue of copy writes was full: dropped without trying.
    #[error("kept-session write queue full")]
    QueueFull,
}

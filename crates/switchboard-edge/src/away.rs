//! Where this node's connections went: the state of sessions that moved away (the logic
//! is in `moves.rs`).

use std::collections::HashMap;

use switchboard_cluster::Command;
use switchboard_core::ConnectionId;
use tokio::sync::oneshot;

use crate::session::TokenProof;

/// What became of a request for a session held by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeAnswer {
    /// The session is parked on this node now: take it as a local one.
    Here,
    /// Attached to a live socket elsewhere (409).
    InUse,
    /// Gone, or no answer: start a fresh connection.
    Unknown,
}

/// Where a connection opened on this node went, with the proof of its session's token.
pub(crate) enum Away {
    /// Held by the node with tag `holder`.
    At { holder: u32, proof: TokenProof },
    /// Being handed from `holder` to `to`, which asked with request number `request`;
    /// this node relayed the request as `relay`. Sends wait in `held` for the answer.
    Moving {
        holder: u32,
        to: u32,
        request: u64,
        held: Vec<Command>,
        proof: TokenProof,
    },
}

impl Away {
    pub(crate) fn proof(&self) -> &TokenProof {
        match self {
            Away::At { proof, .. } | Away::Moving { proof, .. } => proof,
        }
    }
}

/// Where this node's connections went, and its requests for sessions.
#[derive(Default)]
pub(crate) struct Moves {
    /// Connections opened here whose session is on another node.
    pub(crate) away: HashMap<ConnectionId, Away>,
    /// Requests this node relayed for others: which connection each is about.
    pub(crate) relays: HashMap<u64, ConnectionId>,
    /// This node's own requests (resume handshakes) waiting for their answer.
    pub(crate) waiting: HashMap<u64, oneshot::Sender<TakeAnswer>>,
    pub(crate) next_request: u64,
}

impl Moves {
    pub(crate) fn request_number(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }
}

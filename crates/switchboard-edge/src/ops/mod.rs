//! The operations layer: the one place that applies an [`Op`] (send, close, join, leave,
//! set state or user, read, list) for the whole cluster.
//!
//! Every entry point calls it: `@connections`, every `/v1` route and `/v1/batch` item
//! ([`EdgeInner::apply_op`]); builtins and function answers, for their own connection
//! ([`EdgeInner::apply_held`], [`EdgeInner::extend`]); and operations other nodes send
//! ([`EdgeInner::on_op`]). Only `local.rs` touches the connection table, and it writes the
//! registry snapshot after every change it makes, so no caller can forget to.
//!
//! Where an operation goes is decided by [`plan::plan`] from where the connection is:
//! held here → applied here; opened here and moved → forwarded in order to its holder;
//! opened on another node → asked of that node (sends and closes by id are handed over
//! without waiting, as AWS's `PostToConnection` is); group, user and broadcast sends,
//! closes of many and listings → applied here and on every other node, the answers summed
//! with the nodes they cover ([`Coverage`]).

mod inbound;
mod local;
pub(crate) mod plan;
pub(crate) mod state;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use switchboard_cluster::{BackplaneError, Command, OpResult, RequestRef};
use switchboard_core::event::ResponseExtension;
use switchboard_core::ops::{Coverage, Op, OpError, Outcome};
use switchboard_core::ConnectionId;
use tokio::time::Instant;
use tracing::debug;

use crate::inner::EdgeInner;
use crate::table::ConnHandle;
use plan::{At, Plan};

pub(crate) use state::REMOTE_CACHE_MAX;
pub use state::REMOTE_CACHE_TTL;

/// What the answer to a send or close to many connections counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Every node's part: the other nodes are asked and their answers awaited (at most
    /// `op_timeout_ms`).
    Cluster,
    /// This node's part; the others get the operation without being waited for.
    Here,
}

fn from_backplane(e: BackplaneError) -> OpError {
    match e {
        BackplaneError::NotInCluster => OpError::Gone,
        BackplaneError::Unavailable => OpError::Unavailable,
        BackplaneError::Timeout => OpError::Timeout,
        BackplaneError::Busy => OpError::Busy,
    }
}

impl EdgeInner {
    /// Applies `op` for the whole cluster and answers for it: the management API's one
    /// way in.
    ///
    /// Cancel safety: what was applied here stays applied; an operation already sent to
    /// another node may still be applied there, its answer then dropped.
    pub async fn apply_op(self: &Arc<Self>, op: Op) -> Result<Outcome, OpError> {
        self.apply_op_with(op, Counted::Cluster).await
    }

    /// [`EdgeInner::apply_op`], choosing what a send or close to many connections waits
    /// for: every node's count ([`Counted::Cluster`]) or only this node's, the operation
    /// being handed to the others without waiting for them ([`Counted::Here`]: the answer
    /// then covers this node, and says so). Listings always wait for every node.
    pub async fn apply_op_with(
        self: &Arc<Self>,
        op: Op,
        counted: Counted,
    ) -> Result<Outcome, OpError> {
        op.validate()?;
        let (at, held) = self.locate(&op);
        let outcome = match plan::plan(&op, at, self.backplane.has_peers()) {
            Plan::Local => match held {
                Some(h) => self.apply_on(&h, op),
                None => self.apply_here(&op),
            },
            Plan::ForwardInOrder => self.forward_and_wait(op).await,
            Plan::Ask(home) => self.ask_home(home, op).await,
            Plan::Tell(home) => match self.tell(home, op.clone()).await {
                // Its home is gone, and with it the path sends took: this node holds
                // the session now, so it orders them.
                Err(OpError::Gone) => match held {
                    Some(h) => self.apply_on(&h, op),
                    None => Err(OpError::Gone),
                },
                other => other,
            },
            Plan::Gather
                if counted == Counted::Here
                    && !matches!(op, Op::Members { .. } | Op::UserConnections { .. }) =>
            {
                self.fan_out_here(op).await
            }
            Plan::Gather => self.gather(op).await,
            Plan::Gone => Err(OpError::Gone),
        };
        if let Err(e) = &outcome {
            self.metrics.op_failed(e.label());
        }
        outcome
    }

    /// Applies `op` to a connection this node holds, from its own task (builtins): never
    /// waits, never forwards.
    pub(crate) fn apply_held(self: &Arc<Self>, handle: &Arc<ConnHandle>, op: Op) -> OpResult {
        op.validate()?;
        self.apply_on(handle, op)
    }

    /// Applies what a function answer (or an authorizer's identity, or a moved session's
    /// record) asks for beside its status: groups, user and state, with one registry
    /// write. Returns the problems; the rest is applied.
    pub(crate) fn extend(
        self: &Arc<Self>,
        handle: &Arc<ConnHandle>,
        ext: &ResponseExtension,
    ) -> Vec<String> {
        if ext.is_empty() {
            return Vec::new();
        }
        let (changed, problems) = self.extend_local(handle, ext);
        if changed {
            self.record(handle, true);
        }
        problems
    }

    /// An operation another node sent: applies this node's part, or forwards it in order
    /// if this is the home of a session that moved (its holder answers then), and answers
    /// `req`.
    pub(crate) fn on_op(self: &Arc<Self>, op: Op, req: Option<RequestRef>) {
        let result = match op.connection() {
            None => self.apply_here(&op),
            Some(id) => match self.table.get(&id) {
                Some(h) if h.close_requested().is_none() => self.apply_on(&h, op),
                Some(_) => Err(OpError::Gone),
                None => match self.forward_if_moved(Command::Op { op, req }) {
                    // The holder answers.
                    Ok(()) => return,
                    Err(_) => Err(OpError::Gone),
                },
            },
        };
        if let Some(req) = req {
            self.answer_op(req, result);
        }
    }

    /// Sends the answer to another node's request, in the background.
    pub(crate) fn answer_op(&self, req: RequestRef, result: OpResult) {
        let backplane = self.backplane.clone();
        tokio::spawn(async move {
            if let Err(e) = backplane.reply(req, result).await {
                debug!(node_tag = req.from, error = %e, "answer to another node not sent");
            }
        });
    }

    /// Where the connection `op` addresses is, and its handle if it is here.
    fn locate(&self, op: &Op) -> (At, Option<Arc<ConnHandle>>) {
        let Some(id) = op.connection() else {
            return (At::Nowhere, None);
        };
        if let Some(h) = self.table.get(&id) {
            return match (h.close_requested(), id.node_tag()) {
                (Some(_), _) => (At::Nowhere, None),
                (None, home) if home == self.ids.node_tag() => (At::Here, Some(h)),
                (None, home) => (At::Visiting(home), Some(h)),
            };
        }
        if id.node_tag() != self.ids.node_tag() {
            (At::Elsewhere(id.node_tag()), None)
        } else if self.moved_to(&id).is_some() {
            (At::Away, None)
        } else {
            (At::Nowhere, None)
        }
    }

    /// Forwards an operation for a session opened here that moved, behind everything
    /// forwarded before it, and waits for its holder's answer.
    async fn forward_and_wait(self: &Arc<Self>, op: Op) -> OpResult {
        let id = op.connection().expect("planned for one connection");
        if matches!(op, Op::Send { .. } | Op::Close { .. }) {
            // Accepted once queued behind the session's handover, as `Tell` is.
            return match self.forward_if_moved(Command::Op { op, req: None }) {
                Ok(()) => Ok(Outcome::Accepted),
                Err(Command::Op { op, .. }) => match self.table.get(&id) {
                    Some(h) => self.apply_on(&h, op),
                    None => Err(OpError::Gone),
                },
                Err(_) => Err(OpError::Gone),
            };
        }
        let deadline = Instant::now() + self.op_timeout();
        let pending = self.backplane.expect_reply().map_err(from_backplane)?;
        if let Err(Command::Op { op, .. }) = self.forward_if_moved(Command::Op {
            op,
            req: Some(pending.req()),
        }) {
            // It came back meanwhile.
            return match self.table.get(&id) {
                Some(h) => self.apply_on(&h, op),
                None => Err(OpError::Gone),
            };
        }
        pending.answer(deadline).await.map_err(from_backplane)?
    }

    /// Asks the connection's home (which applies it, or forwards it to where the session
    /// moved) and waits for the answer.
    ///
    /// Without an answer, the registry decides: 410 once it no longer lists the
    /// connection, 503 while it does. Whether the engine itself can tell that nobody
    /// listens at the home (Redis, the in-memory hub) or not (NATS, where the request
    /// times out) then makes no difference, and a node cut off from the engine for a
    /// moment does not have its live connections answered as gone.
    async fn ask_home(self: &Arc<Self>, home: u32, op: Op) -> OpResult {
        let id = op.connection().expect("planned for one connection");
        match self.backplane.request(home, op).await {
            Ok(result) => result,
            Err(BackplaneError::Timeout | BackplaneError::NotInCluster) => {
                // No answer: gone with its node, or cut off, or just slow?
                match self.backplane.connection(id).await {
                    Ok(None) | Err(BackplaneError::NotInCluster) => Err(OpError::Gone),
                    _ => Err(OpError::Timeout),
                }
            }
            Err(e) => Err(from_backplane(e)),
        }
    }

    /// Hands a send or close by id to the connection's home after checking (at most once
    /// per [`REMOTE_CACHE_TTL`]) that the registry knows the connection; one the registry
    /// does not know is asked of its home instead.
    async fn tell(self: &Arc<Self>, home: u32, op: Op) -> OpResult {
        let id = op.connection().expect("planned for one connection");
        let now = Instant::now();
        let closing = matches!(op, Op::Close { .. });
        let fresh = !closing
            && self
                .ops
                .seen
                .lock()
                .get(&id)
                .is_some_and(|seen| now.duration_since(*seen) < REMOTE_CACHE_TTL);
        if !fresh {
            match self.backplane.connection(id).await {
                Ok(Some(_)) if !closing => {
                    let mut seen = self.ops.seen.lock();
                    if seen.len() >= REMOTE_CACHE_MAX {
                        seen.clear();
                    }
                    seen.insert(id, now);
                }
                Ok(Some(_)) => {
                    self.ops.seen.lock().remove(&id);
                }
                Ok(None) => {
                    // Not in the registry: gone, or opened a moment ago and not recorded
                    // yet (a function answering `$connect` may post at once). Its home
                    // knows: ask it, and wait for the answer this once.
                    self.ops.seen.lock().remove(&id);
                    return self.ask_home(home, op).await;
                }
                Err(BackplaneError::NotInCluster) => {
                    self.ops.seen.lock().remove(&id);
                    return Err(OpError::Gone);
                }
                Err(e) => return Err(from_backplane(e)),
            }
        }
        self.backplane
            .to_node(home, Command::Op { op, req: None })
            .await
            .map_err(from_backplane)?;
        Ok(Outcome::Accepted)
    }

    /// Applies a fan-out here and hands it to every other node without waiting for them:
    /// the answer counts this node, of all the nodes live at the latest heartbeat.
    async fn fan_out_here(self: &Arc<Self>, op: Op) -> OpResult {
        if !self.backplane.is_ready() {
            return Err(OpError::Unavailable);
        }
        let here = self.apply_here(&op)?;
        let others = self.backplane.peers();
        self.backplane
            .to_all(Command::Op { op, req: None })
            .await
            .map_err(from_backplane)?;
        Ok(with_nodes(
            here,
            Coverage {
                answered: 1,
                expected: 1 + others,
            },
        ))
    }

    /// Applies a fan-out or listing here and on every other node, and sums the answers.
    async fn gather(self: &Arc<Self>, op: Op) -> OpResult {
        if !self.backplane.is_ready() {
            // Refused before anything is delivered here, so a caller that retries does
            // not send this node's members the message twice.
            return Err(OpError::Unavailable);
        }
        let here = self.apply_here(&op)?;
        // Each node answers its first `limit`; the page is the first `limit` of them all.
        let page = op.listed();
        let gathered = self.backplane.gather(op).await.map_err(from_backplane)?;
        let mut nodes = Coverage {
            answered: 1,
            expected: 1 + gathered.expected,
        };
        let mut total = here;
        for (from, reply) in gathered.replies {
            match reply {
                Ok(part) => {
                    if merge(&mut total, part) {
                        nodes.answered += 1;
                    }
                }
                Err(e) => debug!(node_tag = from, error = %e, "a node refused its part"),
            }
        }
        nodes.expected = nodes.expected.max(nodes.answered);
        match (page, &mut total) {
            (Some(limit), Outcome::Members { ids, .. }) => ids.truncate(limit),
            (Some(limit), Outcome::UserConnections { oldest, .. }) => oldest.truncate(limit),
            _ => {}
        }
        Ok(with_nodes(total, nodes))
    }

    fn op_timeout(&self) -> Duration {
        self.settings.op_timeout
    }
}

/// Adds another node's part to a fan-out's answer; `false` if it is not a part of it.
fn merge(total: &mut Outcome, part: Outcome) -> bool {
    match (total, part) {
        (Outcome::Sent { counts, .. }, Outcome::Sent { counts: c, .. }) => {
            counts.add(c);
            true
        }
        (Outcome::Closed { closed, .. }, Outcome::Closed { closed: c, .. }) => {
            *closed += c;
            true
        }
        (
            Outcome::Members { ids, size, .. },
            Outcome::Members {
                ids: more, size: s, ..
            },
        ) => {
            let all: BTreeSet<ConnectionId> = ids.drain(..).chain(more).collect();
            ids.extend(all);
            *size = size.saturating_add(s);
            true
        }
        (
            Outcome::UserConnections {
                count,
                older,
                oldest,
                ..
            },
            Outcome::UserConnections {
                count: c,
                older: o,
                oldest: more,
                ..
            },
        ) => {
            *count = count.saturating_add(c);
            *older = older.saturating_add(o);
            // A peer's list is not trusted to be sorted or bounded.
            oldest.extend(more.into_iter().take(Op::MAX_OLDEST as usize));
            oldest.sort_unstable();
            oldest.dedup();
            true
        }
        _ => false,
    }
}

fn with_nodes(outcome: Outcome, nodes: Coverage) -> Outcome {
    match outcome {
        Outcome::Sent { counts, .. } => Outcome::Sent { counts, nodes },
        Outcome::Closed { closed, .. } => Outcome::Closed { closed, nodes },
        Outcome::Members { ids, size, .. } => Outcome::Members { ids, size, nodes },
        Outcome::UserConnections {
            count,
            older,
            oldest,
            ..
        } => Outcome::UserConnections {
            count,
            older,
            oldest,
            nodes,
        },
        other => other,
    }
}

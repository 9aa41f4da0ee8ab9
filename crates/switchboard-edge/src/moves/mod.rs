//! Sessions that move between nodes (docs/protocol.md, "Resuming on another node").
//!
//! A client whose socket dropped may come back through another node of the cluster. Its
//! session token names the connection, and the connection id names the node it was opened
//! on: its **home**. Every move goes through the home, which is also where every send
//! addressed to the connection arrives first, so the home can keep them in order:
//!
//! - The new node asks the home for the session ([`Command::TakeSession`]).
//! - If the home holds it parked, it serializes it ([`Handover`]), gives it up without a
//!   `$disconnect`, notes where it went, and answers ([`Command::SessionTaken`]).
//! - If it is parked on a third node, the home relays the request there and holds every
//!   send for the connection until the answer comes back; it then passes the answer on,
//!   followed by the held sends, and forwards later sends to the new holder.
//! - The new node installs the session as a parked session of its own, and the waiting
//!   handshake resumes it as if it had always been there.
//!
//! Everything the home sends on leaves through one ordered queue, so a handover and every
//! send after it arrive in the order they were made. A connection that ends away from
//! home tells the home to forget it ([`Command::Forget`]).
//!
//! The token's connection id only says whom to ask. The holder hands a session over, and
//! the home relays a request (and holds sends for it), only when the token proves the
//! session ([`TokenProof`]): the home keeps the proof of each session that left it. A
//! request that does not prove it is answered as for an unknown session.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use switchboard_cluster::{BackplaneError, Command};
use switchboard_core::ops::{Op, Target};
use switchboard_core::ConnectionId;
use tokio::sync::mpsc;
use tracing::warn;

use crate::inner::EdgeInner;

/// How long a resume handshake waits for the session it asked for.
mod take;

const TAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Forwarded commands waiting for the backplane; beyond it one is dropped and logged.
const FORWARD_QUEUE: usize = 65_536;
/// Sends held for one connection while its session is being handed between two other
/// nodes; beyond it one is dropped and logged.
const HELD_MAX: usize = 16_384;

pub(crate) use crate::away::{Away, Moves, TakeAnswer};

/// The connection a command addresses by id, if it addresses one.
fn addressed(command: &Command) -> Option<ConnectionId> {
    match command {
        Command::Op { op, .. } => op.connection(),
        _ => None,
    }
}

impl EdgeInner {
    /// The node holding a connection that was opened here and moved away.
    pub fn moved_to(&self, id: &ConnectionId) -> Option<u32> {
        match self.moves.lock().away.get(id)? {
            Away::At { holder, .. } | Away::Moving { holder, .. } => Some(*holder),
        }
    }

    fn is_home_of(&self, id: &ConnectionId) -> bool {
        id.node_tag() == self.ids.node_tag()
    }

    /// Sends `command` to node `tag` through the one ordered forwarding queue.
    pub(crate) fn forward(self: &Arc<Self>, tag: u32, command: Command) {
        let tx = self.forwarder.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<(u32, Command)>(FORWARD_QUEUE);
            let backplane = self.backplane.clone();
            let edge: Weak<EdgeInner> = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some((tag, command)) = rx.recv().await {
                    match backplane.to_node(tag, command).await {
                        Ok(()) => {}
                        Err(BackplaneError::NotInCluster) => {
                            // The node is gone, and with it whatever moved there.
                            if let Some(edge) = edge.upgrade() {
                                edge.forget_moves_to(tag);
                            }
                        }
                        Err(e) => warn!(node_tag = tag, error = %e, "forward failed"),
                    }
                }
            });
            tx
        });
        if tx.try_send((tag, command)).is_err() {
            warn!(node_tag = tag, "forward queue full: command dropped");
        }
    }

    /// A command for a connection opened here whose session is on another node is
    /// forwarded there, or held while the session moves (`Ok`); any other command is
    /// given back. (A connection in this node's table is never away: moves take it out
    /// of the table and put it back under the same lock as `away`.)
    pub(crate) fn forward_if_moved(self: &Arc<Self>, command: Command) -> Result<(), Command> {
        let Some(id) = addressed(&command).filter(|id| self.is_home_of(id)) else {
            return Err(command);
        };
        // Under the lock a handover holds while it queues its answer: a forward queued
        // here can only follow that answer.
        let mut moves = self.moves.lock();
        match moves.away.get_mut(&id) {
            Some(Away::At { holder, .. }) => {
                self.forward(*holder, command);
                Ok(())
            }
            Some(Away::Moving { held, .. }) => {
                if held.len() < HELD_MAX {
                    held.push(command);
                } else {
                    warn!(conn = %id, "too many sends held for a moving session: one dropped");
                }
                Ok(())
            }
            None => Err(command),
        }
    }

    fn forget_moves_to(&self, tag: u32) {
        let gone: Vec<ConnectionId> = {
            let mut m = self.moves.lock();
            let gone = m
                .away
                .iter()
                .filter(|(_, a)| matches!(a, Away::At { holder, .. } if *holder == tag))
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                m.away.remove(id);
            }
            gone
        };
        for id in gone {
            self.forget_moved(id);
        }
    }

    /// A connection opened here that moved away ended (or its node is gone): stop
    /// forwarding, and drop the registry entry that pointed at it.
    pub(crate) fn forget_moved(&self, id: ConnectionId) {
        if !self.is_home_of(&id) {
            return;
        }
        let was_away = matches!(self.moves.lock().away.remove(&id), Some(Away::At { .. }));
        if was_away && self.table.get(&id).is_none() {
            self.registry_write(id, None);
        }
    }

    /// A connection ended (here, or on a lost node): its home forgets where it went.
    pub(crate) fn announce_end(self: &Arc<Self>, id: ConnectionId) {
        if self.is_home_of(&id) {
            self.forget_moved(id);
        } else if self.backplane.has_peers() {
            self.forward(id.node_tag(), Command::Forget { id: id.to_string() });
        }
    }

    /// Delivers to a connection held here, or forwards to where it is (for answers of
    /// invocations that finish after their socket dropped and the session moved).
    pub(crate) fn deliver(self: &Arc<Self>, id: ConnectionId, data: Bytes, binary: bool) {
        if let Some(h) = self.table.get(&id) {
            if h.send(data.clone(), binary).is_ok() {
                return;
            }
        }
        if self.is_home_of(&id) {
            self.send_moved(id, data, binary);
        } else if self.backplane.has_peers() {
            let op = Op::Send {
                to: Target::Connection { id },
                data,
                binary,
            };
            self.forward(id.node_tag(), Command::Op { op, req: None });
        }
    }

    /// Forwards a send for a connection opened here whose session moved away (or hands
    /// it to the connection, if it came back meanwhile); `false` if there is none.
    pub(crate) fn send_moved(
        self: &Arc<Self>,
        id: ConnectionId,
        data: Bytes,
        binary: bool,
    ) -> bool {
        let op = Op::Send {
            to: Target::Connection { id },
            data,
            binary,
        };
        match self.forward_if_moved(Command::Op { op, req: None }) {
            Ok(()) => true,
            Err(Command::Op {
                op: Op::Send { data, binary, .. },
                ..
            }) => self
                .table
                .get(&id)
                .is_some_and(|h| h.send(data, binary).is_ok()),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commands_for_one_connection_are_forwarded() {
        let id = switchboard_core::id::IdGenerator::new("n").connection_id();
        let op = |to| Command::Op {
            op: Op::Send {
                to,
                data: Bytes::new(),
                binary: false,
            },
            req: None,
        };
        assert_eq!(addressed(&op(Target::Connection { id })), Some(id));
        let close = Command::Op {
            op: Op::close(Target::Connection { id }),
            req: None,
        };
        assert_eq!(addressed(&close), Some(id));
        assert_eq!(addressed(&op(Target::All)), None);
        assert_eq!(addressed(&Command::Forget { id: id.to_string() }), None);
    }
}

//! Taking a session from the node that holds it: asking its home (which relays to the
//! holder), answering such requests, handing a session over, installing one handed over,
//! and taking a kept copy when no node can hand the session over.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use switchboard_cluster::{Command, SessionOutcome};
use switchboard_core::event::{snapshot, ResponseExtension};
use switchboard_core::ops::Op;
use switchboard_core::ConnectionId;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::inner::EdgeInner;
use crate::parked::Take;
use crate::session::{self, Handover, Kept, Parked, Session, TokenProof};
use crate::slot::Slot;
use crate::table::ConnHandle;

use super::*;

impl EdgeInner {
    /// Asks for the session of `token`, parked on another node. `None`: the token does not
    /// name a session that may be elsewhere (so there is nobody to ask).
    pub(crate) async fn take_remote(
        self: &Arc<Self>,
        token: &str,
        after: u64,
    ) -> Option<TakeAnswer> {
        if !self.backplane.has_peers() {
            return None;
        }
        let id = session::connection_of(token)?;
        let home = id.node_tag();
        let asked = if self.is_home_of(&id) && self.moved_to(&id).is_none() {
            None
        } else {
            // Its home knows where it went (and relays the request there).
            match self.ask(home, token, after).await {
                a @ (TakeAnswer::Here | TakeAnswer::InUse) => return Some(a),
                TakeAnswer::Unknown => Some(home),
            }
        };
        // Nobody could hand it over: perhaps its node is gone and a copy was kept.
        Some(
            self.from_copy(token, after, asked)
                .await
                .unwrap_or(TakeAnswer::Unknown),
        )
    }

    /// Asks node `node` (this one: its own relay) to hand the session of `token` over.
    async fn ask(self: &Arc<Self>, node: u32, token: &str, after: u64) -> TakeAnswer {
        let (tx, rx) = oneshot::channel();
        let request = {
            let mut m = self.moves.lock();
            let n = m.request_number();
            m.waiting.insert(n, tx);
            n
        };
        let me = self.ids.node_tag();
        let asked = if node == me {
            self.on_take_session(token.to_owned(), after, me, request);
            true
        } else {
            let cmd = Command::TakeSession {
                token: token.to_owned(),
                after,
                from: me,
                request,
            };
            self.backplane.to_node(node, cmd).await.is_ok()
        };
        let answer = if asked {
            tokio::time::timeout(TAKE_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.moves.lock().waiting.remove(&request);
        answer.unwrap_or(TakeAnswer::Unknown)
    }

    /// Goes on from the kept copy of the session of `token` (if there is one and the token
    /// proves it): the node process that wrote it is asked first, unless it was asked
    /// already (`asked`) or is this one; if it does not hand the session over, the copy
    /// is taken (only if that node is still its writer) and installed here.
    async fn from_copy(
        self: &Arc<Self>,
        token: &str,
        after: u64,
        asked: Option<u32>,
    ) -> Option<TakeAnswer> {
        let stamp = self.read_copy(token).await?;
        let id = session::connection_of(token)?;
        let writer = (stamp.owner >> 32) as u32;
        let me = self.ids.node_tag();
        if writer != me && Some(writer) != asked {
            // Alive, it holds the session parked: a move, not a take, so it never goes
            // on in two places.
            match self.ask(writer, token, after).await {
                TakeAnswer::Here => {
                    self.adopted(id, writer);
                    return Some(TakeAnswer::Here);
                }
                TakeAnswer::InUse => return Some(TakeAnswer::InUse),
                TakeAnswer::Unknown => {}
            }
        }
        let handover = self.take_copy(token, stamp.owner).await?;
        let mut moves = self.moves.lock();
        Some(match self.install(handover, Vec::new(), &mut moves) {
            Ok(()) => {
                drop(moves);
                self.adopted(id, writer);
                TakeAnswer::Here
            }
            Err(e) => {
                warn!(conn = %id, error = %e, "a kept session could not be installed");
                TakeAnswer::Unknown
            }
        })
    }

    /// A session that came here other than through its home (from a kept copy `writer`
    /// wrote, or handed over by `writer` directly): tell the home, so sends by id that
    /// reach it come here, and the writer, which may still hold a stale parked session
    /// of it (alive but too slow to answer).
    fn adopted(self: &Arc<Self>, id: ConnectionId, writer: u32) {
        let Some((proof, _)) = self.sessions.lock().get(&id).cloned() else {
            return;
        };
        let Ok(serde_json::Value::String(proof)) = serde_json::to_value(proof) else {
            return;
        };
        let me = self.ids.node_tag();
        let mut tell = vec![id.node_tag()];
        if writer != id.node_tag() {
            tell.push(writer);
        }
        for node in tell.into_iter().filter(|n| *n != me) {
            let command = Command::Adopted {
                id: id.to_string(),
                holder: me,
                proof: proof.clone(),
            };
            self.forward(node, command);
        }
    }

    /// `Command::Adopted`: a session went on at `holder` from its kept copy (or moved
    /// there without this node relaying). A parked session of it here is stale: it ends
    /// quietly. At its home, sends by id go to `holder` now.
    pub(crate) fn on_adopted(&self, id: ConnectionId, holder: u32, proof: TokenProof) {
        if let Some(handle) = self.table.get(&id) {
            let parked = handle.parked.lock().take();
            match parked {
                Some(parked) => self.end_taken_elsewhere(&handle, parked),
                // Attached here: the client is here, whatever that node says.
                None => return,
            }
        }
        if !self.is_home_of(&id) {
            return;
        }
        let mut moves = self.moves.lock();
        if matches!(moves.away.get(&id), Some(Away::Moving { .. })) {
            return; // a move in flight settles it
        }
        moves.away.insert(id, Away::At { holder, proof });
    }

    /// Sends the answer to a request for a session: queued to another node, or (`Err`)
    /// given back when the request is this node's own.
    fn answer(
        self: &Arc<Self>,
        to: u32,
        request: u64,
        outcome: SessionOutcome,
    ) -> Result<(), (u64, SessionOutcome)> {
        if to == self.ids.node_tag() {
            return Err((request, outcome));
        }
        self.forward(to, Command::SessionTaken { request, outcome });
        Ok(())
    }

    /// A node asks for a session (`Command::TakeSession`): hand it over if it is parked
    /// here; relay the request if this is its home and it is parked elsewhere.
    pub(crate) fn on_take_session(
        self: &Arc<Self>,
        token: String,
        after: u64,
        from: u32,
        request: u64,
    ) {
        let mine = {
            // The lock is held from the moment a connection leaves the table (or its
            // sends start being held) until the answer is queued: a send that finds it
            // gone queues its forward after.
            let mut moves = self.moves.lock();
            match self.answer_take(&token, after, from, &mut moves) {
                Ok(outcome) => self.answer(from, request, outcome).err(),
                Err((id, holder, proof)) => {
                    // Parked on a third node: relay the request there.
                    let relay = moves.request_number();
                    moves.relays.insert(relay, id);
                    moves.away.insert(
                        id,
                        Away::Moving {
                            holder,
                            to: from,
                            request,
                            held: Vec::new(),
                            proof,
                        },
                    );
                    let me = self.ids.node_tag();
                    let cmd = Command::TakeSession {
                        token,
                        after,
                        from: me,
                        request: relay,
                    };
                    self.forward(holder, cmd);
                    let edge = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(TAKE_TIMEOUT).await;
                        // No answer from the holder: give up the move.
                        if edge.moves.lock().relays.contains_key(&relay) {
                            edge.on_session_taken(relay, SessionOutcome::Unknown);
                        }
                    });
                    None
                }
            }
        };
        if let Some((request, outcome)) = mine {
            self.on_session_taken(request, outcome);
        }
    }

    /// What to answer a request for a session, or (`Err`) the connection, the node
    /// holding it (to relay the request to) and the proof of its token.
    fn answer_take(
        &self,
        token: &str,
        after: u64,
        from: u32,
        moves: &mut Moves,
    ) -> Result<SessionOutcome, (ConnectionId, u32, TokenProof)> {
        let Some(id) = session::connection_of(token) else {
            return Ok(SessionOutcome::Unknown);
        };
        match self.take_parked(token, after) {
            Take::Parked(handle, parked) => {
                return Ok(SessionOutcome::Moved {
                    handover: self.hand_over(handle, *parked, from, moves),
                })
            }
            Take::InUse => return Ok(SessionOutcome::InUse),
            Take::Refused => return Ok(SessionOutcome::Unknown),
            Take::NotHere => {}
        }
        if !self.is_home_of(&id) {
            return Ok(SessionOutcome::Unknown);
        }
        let Some(away) = moves.away.get(&id) else {
            return Ok(SessionOutcome::Unknown);
        };
        if !away.proof().proves(token) {
            // Checked before anything else: nothing is relayed or held, and the answer
            // says nothing of where the session is or whether it is moving.
            self.refuse_proof(id, "home of a moved session");
            return Ok(SessionOutcome::Unknown);
        }
        match away {
            Away::At { holder, proof } if *holder != from => Err((id, *holder, *proof)),
            // Already on its way somewhere: the client is racing itself.
            Away::Moving { .. } => Ok(SessionOutcome::InUse),
            Away::At { .. } => Ok(SessionOutcome::Unknown),
        }
    }

    /// Gives a parked session up to node `to`: its handover, and (at home) where it went.
    fn hand_over(
        &self,
        handle: Arc<ConnHandle>,
        parked: Parked,
        to: u32,
        moves: &mut Moves,
    ) -> serde_json::Value {
        let id = handle.info.id;
        let Parked {
            session,
            mut rx,
            slot,
            started,
            ..
        } = parked;
        let mut handover = self.handover_of(&handle, &session, started);
        self.table.remove(&id);
        // From here a send to the old handle fails and goes the way of a moved
        // connection; what was queued before travels with the handover.
        rx.close();
        while let Ok(o) = rx.try_recv() {
            handover.queued.push(Kept {
                seq: 0,
                data: o.data,
                binary: o.binary,
            });
        }
        self.forget_session(id);
        self.metrics.connections_open.dec();
        if self.is_home_of(&id) {
            moves.away.insert(
                id,
                Away::At {
                    holder: to,
                    proof: session.proof,
                },
            );
            // Sends by id come here first: keep the registry entry, saying where it went
            // (a survivor cleaning up after this node must not `$disconnect` it).
            let mut entry = handover.connection.clone();
            entry["movedTo"] = to.into();
            self.registry_write(id, Some(entry));
        } else {
            self.registry_write(id, None);
        }
        drop(slot);
        handle.wake();
        info!(conn = %id, node_tag = to, "session moved to another node");
        serde_json::to_value(&handover).unwrap_or_default()
    }

    /// The handover of a parked session as it stands (nothing queued in it yet): what a
    /// move carries and what a kept copy holds.
    pub(crate) fn handover_of(
        &self,
        handle: &ConnHandle,
        session: &Session,
        started: Instant,
    ) -> Handover {
        let extension = self.table.extension_of(handle);
        let connection = snapshot::to_json(&handle.info, extension.as_ref());
        Handover {
            age_ms: started.elapsed().as_millis() as u64,
            last_active_ms: handle.last_active_ms(),
            expires_at_ms: handle.expires_at_ms(),
            ..session.handover(connection, Vec::new())
        }
    }

    /// The answer to a request for a session (`Command::SessionTaken`): this node's own,
    /// or one it relayed for another node (or for itself) as the connection's home.
    pub(crate) fn on_session_taken(self: &Arc<Self>, request: u64, outcome: SessionOutcome) {
        let me = self.ids.node_tag();
        let mut moves = self.moves.lock();
        let Some(id) = moves.relays.remove(&request) else {
            // This node's own request.
            let answer = self.settle(outcome, Vec::new(), &mut moves);
            if let Some(w) = moves.waiting.remove(&request) {
                let _ = w.send(answer);
            }
            return;
        };
        let Some(Away::Moving {
            holder,
            to,
            request: asked,
            held,
            proof,
        }) = moves.away.remove(&id)
        else {
            return; // a stale relay (cannot happen: only the relay's answer clears it)
        };
        let moved = matches!(outcome, SessionOutcome::Moved { .. });
        if to == me {
            // Asked for by this node: the session comes home.
            let held = if moved {
                held
            } else {
                moves.away.insert(id, Away::At { holder, proof });
                for c in held {
                    self.forward(holder, c);
                }
                Vec::new()
            };
            let answer = self.settle(outcome, held, &mut moves);
            if let Some(w) = moves.waiting.remove(&asked) {
                let _ = w.send(answer);
            }
            return;
        }
        let now_at = match &outcome {
            SessionOutcome::Moved { handover } => {
                if let Some(mut entry) = handover.get("connection").cloned() {
                    entry["movedTo"] = to.into();
                    self.registry_write(id, Some(entry));
                }
                to
            }
            _ => holder,
        };
        moves.away.insert(
            id,
            Away::At {
                holder: now_at,
                proof,
            },
        );
        self.forward(
            to,
            Command::SessionTaken {
                request: asked,
                outcome,
            },
        );
        // Behind the answer: the sends held meanwhile, to the new holder (or back to the
        // old one, if the session did not move).
        for c in held {
            self.forward(now_at, c);
        }
    }

    /// Installs a session handed over (`held`: sends that waited for it, in order).
    /// Under the moves lock, so no send can slip between the held ones.
    fn settle(
        self: &Arc<Self>,
        outcome: SessionOutcome,
        held: Vec<Command>,
        moves: &mut Moves,
    ) -> TakeAnswer {
        match outcome {
            SessionOutcome::Moved { handover } => match self.install(handover, held, moves) {
                Ok(()) => TakeAnswer::Here,
                Err(e) => {
                    warn!(error = %e, "a session handed over could not be installed");
                    TakeAnswer::Unknown
                }
            },
            SessionOutcome::InUse => TakeAnswer::InUse,
            SessionOutcome::Unknown => TakeAnswer::Unknown,
        }
    }

    /// Makes a handed-over session a parked session of this node: what was queued for it,
    /// then `held`, then whatever comes next.
    fn install(
        self: &Arc<Self>,
        handover: serde_json::Value,
        held: Vec<Command>,
        moves: &mut Moves,
    ) -> Result<(), InstallError> {
        let h: Handover = serde_json::from_value(handover)?;
        let Some(resume) = self.settings.resume.as_ref() else {
            return Err(InstallError::ResumeOff);
        };
        let (info, extension) = snapshot::from_json(&h.connection).ok_or(InstallError::Snapshot)?;
        let id = info.id;
        let s = &self.settings;
        let (handle, rx) = ConnHandle::new(
            Arc::new(info),
            s.queue_messages,
            s.queue_bytes,
            s.ws_limits.max_message_bytes,
        );
        handle.set_last_active_ms(h.last_active_ms);
        if let Some(ms) = h.expires_at_ms {
            handle.set_expires_at(UNIX_EPOCH + Duration::from_millis(ms));
        }
        // Queued before it is findable: nothing sent after can overtake these.
        for k in &h.queued {
            let _ = handle.send(k.data.clone(), k.binary);
        }
        let mut later = Vec::new();
        let mut answered = Vec::new();
        for c in held {
            match c {
                // Every send in order, before anything sent later can overtake it.
                Command::Op {
                    op: Op::Send { data, binary, .. },
                    req,
                } => {
                    let _ = handle.send(data, binary);
                    if let Some(req) = req {
                        answered.push(req);
                    }
                }
                Command::Op { op, req } => later.push((op, req)),
                _ => {}
            }
        }
        self.table.insert(handle.clone());
        moves.away.remove(&id);
        if let Some(ext) = extension {
            // Recorded below, with the rest of the session.
            for problem in self
                .extend_local(&handle, &ResponseExtension::from_json(&ext))
                .1
            {
                warn!(conn = %id, %problem, "moved session's memberships not fully restored");
            }
        }
        let session = Session::restore(&h, resume.buffer_messages, resume.buffer_bytes);
        let started = Instant::now()
            .checked_sub(Duration::from_millis(h.age_ms))
            .unwrap_or_else(Instant::now);
        *handle.parked.lock() = Some(Box::new(Parked {
            session: Box::new(session),
            rx,
            slot: Slot::force(&self.slots),
            started,
            kept: false,
            changed: false,
        }));
        self.add_session(h.token_proof, handle.clone());
        self.metrics.connections_open.inc();
        self.record(&handle, true);
        info!(conn = %id, "session moved here from another node");
        self.watch_parked(handle);
        // Group changes and closes held meanwhile (the connection is in the table now,
        // so they apply locally, and their askers get their answers).
        for (op, req) in later {
            self.on_op(op, req);
        }
        for req in answered {
            self.answer_op(req, Ok(switchboard_core::ops::Outcome::Accepted));
        }
        Ok(())
    }
}

/// Why a session handed over by another node could not become a parked session here.
#[derive(Debug, thiserror::Error)]
enum InstallError {
    /// The handover is not one this version reads.
    #[error(transparent)]
    Handover(#[from] serde_json::Error),
    /// This node does not keep sessions.
    #[error("[resume] is off on this node")]
    ResumeOff,
    /// The connection's snapshot inside the handover is unreadable.
    #[error("unreadable connection snapshot")]
    Snapshot,
}

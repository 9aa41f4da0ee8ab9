//! Parked sessions kept in the backplane (`[resume] keep_in_backplane`, docs/protocol.md).
//!
//! A node holding a parked session writes a copy of it (the same [`Handover`] a move
//! carries) to the backplane when it parks, and again whenever something is sent to it;
//! messages sent while it is parked are numbered into its replay buffer first, so the copy
//! holds everything. The copy is taken back (read and deleted at once) before the client's
//! resume here completes, and when the session ends here. All of a node's operations on
//! copies go through one writer, in order.
//!
//! If the node dies, the copy outlives it: the client's resume on another node, finding
//! neither the session's node nor its home able to hand it over, takes the copy and goes
//! on from it. The survivor that cleans up after the dead node does not `$disconnect` a
//! kept session at once but when its window ends, and only if nobody took the copy.
//!
//! A copy is taken by one node only (the take is atomic). A node that still holds a
//! parked session whose copy another node took (it was cut off, not dead) ends its own
//! quietly: the session lives on where the copy went.
//!
//! A copy holds the proof of the session's token ([`TokenProof`]), never the token. A
//! client's resume takes a copy only after reading it and checking that the token it
//! presented proves it: a request that names the connection without its secret leaves
//! the copy in place.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use switchboard_core::event::snapshot;
use switchboard_core::ConnectionId;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::inner::EdgeInner;
use crate::session::{self, Handover, Parked, TokenProof};
use crate::table::ConnHandle;
use switchboard_cluster::{CopyGuard, CopyStamp};

/// What became of an attempt to refresh a session's copy.
pub(crate) enum Kept {
    /// Written.
    Stored,
    /// Not written (backplane down, or the session resumed meanwhile); tried again on the
    /// next change.
    Failed,
    /// Another node took the copy (or holds a newer stay of the session): the session
    /// lives on there, and ends here quietly.
    TakenElsewhere,
    /// Messages sent while it was parked overflowed its replay buffer: it must end.
    Overflow,
}

/// Slack on the backplane's own expiry of a copy, beyond the session's window.
const TTL_SLACK_SECS: u64 = 60;
/// Copy writes waiting for the backplane; beyond it a write fails.
const COPY_QUEUE: usize = 16_384;

/// A copy as stored: the session's handover and when its window ends (epoch ms).
fn copy_json(handover: &Handover, kept_until: u64) -> String {
    json!({ "keptUntil": kept_until, "handover": handover }).to_string()
}

/// The part of a stored copy a taker checks before it takes the copy.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CopyHead {
    kept_until: u64,
    handover: HandoverHead,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandoverHead {
    token_proof: TokenProof,
}

/// The backplane's expiry for a copy valid until `kept_until` (epoch ms), at `now`.
fn copy_ttl(kept_until: u64, now: u64) -> u64 {
    kept_until.saturating_sub(now) / 1000 + TTL_SLACK_SECS
}

pub(crate) use crate::copies::{CopyOp, CopyWrite, CopyWriteError};

impl Parked {
    /// Numbers every message queued for a parked session into its replay buffer (the
    /// copy holds the buffer, not the queue); registers `cx` for the next one. The count,
    /// or `None` if the buffer overflowed (the session can no longer be resumed whole).
    pub(crate) fn frame_queued(
        &mut self,
        handle: &ConnHandle,
        cx: &mut std::task::Context<'_>,
    ) -> Option<usize> {
        let mut n = 0;
        while let std::task::Poll::Ready(Some(o)) = self.rx.poll_recv(cx) {
            handle.dequeued(o.data.len());
            let was = self.session.overflowed;
            self.session.frame(&o.data, o.binary);
            if self.session.overflowed && !was {
                return None;
            }
            n += 1;
        }
        Some(n)
    }
}

impl EdgeInner {
    /// Numbers what was sent to a parked session since the last copy, and writes the
    /// copy, valid until `kept_until` (epoch ms). `first`: also mark the session as kept
    /// in the registry, so a survivor of this node knows to wait for its window.
    pub(crate) async fn keep_copy(
        self: &Arc<Self>,
        handle: &Arc<ConnHandle>,
        kept_until: u64,
        first: bool,
    ) -> Kept {
        let id = handle.info.id;
        let (copy, entry, stamp) = {
            let mut slot = handle.parked.lock();
            let Some(p) = slot.as_mut() else {
                return Kept::Failed;
            };
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if p.frame_queued(handle, &mut cx).is_none() {
                return Kept::Overflow;
            }
            let handover = self.handover_of(handle, &p.session, p.started);
            let mut entry = handover.connection.clone();
            entry["keptUntil"] = kept_until.into();
            entry["keptBy"] = CopyStamp::owner_hex(self.ids.owner()).into();
            (
                copy_json(&handover, kept_until),
                entry,
                self.stamp(&p.session),
            )
        };
        let ttl = copy_ttl(kept_until, self.epoch_ms());
        // The first copy of this stay replaces what a node the session left wrote (a
        // move's old copy); later ones only our own: if ours is gone, another node took it.
        let guard = if first {
            CopyGuard::NotNewer(stamp)
        } else {
            CopyGuard::Owner(stamp.owner)
        };
        let (tx, rx) = oneshot::channel();
        let op = CopyOp::Store {
            copy,
            stamp,
            ttl,
            guard,
        };
        self.write_copy((id, op, Some(tx)));
        match rx.await {
            Ok(Ok(false)) => Kept::TakenElsewhere,
            Ok(Ok(true)) => {
                if let Some(p) = handle.parked.lock().as_mut() {
                    p.kept = true;
                }
                if first {
                    self.registry_write(id, Some(entry));
                }
                Kept::Stored
            }
            _ => Kept::Failed,
        }
    }

    /// Queues an operation on a copy. One writer per node, in order: a take queued after a
    /// store never lands before it.
    fn write_copy(&self, write: CopyWrite) {
        let writer = self.copy_writer.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<CopyWrite>(COPY_QUEUE);
            let backplane = self.backplane.clone();
            tokio::spawn(async move {
                while let Some((id, op, done)) = rx.recv().await {
                    let key = id.to_string();
                    let result = match op {
                        CopyOp::Store {
                            copy,
                            stamp,
                            ttl,
                            guard,
                        } => backplane.store_session(&key, stamp, copy, ttl, guard).await,
                        CopyOp::Take { guard } => backplane
                            .take_session(&key, guard)
                            .await
                            .map(|c| c.is_some()),
                    };
                    if let Err(e) = &result {
                        warn!(conn = %id, error = %e, "a kept session's copy: backplane failed");
                    }
                    if let Some(done) = done {
                        let _ = done.send(result.map_err(CopyWriteError::from));
                    }
                }
            });
            tx
        });
        if let Err(e) = writer.try_send(write) {
            warn!("kept-session write queue full: an operation is dropped");
            if let mpsc::error::TrySendError::Full((_, _, Some(done))) = e {
                let _ = done.send(Err(CopyWriteError::QueueFull));
            }
        }
    }

    /// The stamp of this node's copies of `session`.
    pub(crate) fn stamp(&self, session: &session::Session) -> CopyStamp {
        CopyStamp {
            owner: self.ids.owner(),
            hops: session.hops,
        }
    }

    /// Takes a session's copy back (through the writer, after this node's own pending
    /// writes) before this node resumes or ends it; a copy left by a node the session
    /// came from goes too, never one of a node it went to. `false`: there was none this
    /// node may take, so (if it wrote one) another node took it and the session lives on
    /// there. (An unreachable backplane counts as taken: the session goes on here.)
    pub(crate) async fn take_copy_back(&self, id: ConnectionId, stamp: CopyStamp) -> bool {
        let (tx, rx) = oneshot::channel();
        let op = CopyOp::Take {
            guard: CopyGuard::NotNewer(stamp),
        };
        self.write_copy((id, op, Some(tx)));
        !matches!(rx.await, Ok(Ok(false)))
    }

    /// A parked session about to resume here: `None` if its copy was taken by another
    /// node meanwhile (then it is ended here quietly, and the client starts afresh).
    pub(crate) async fn claim_parked(
        self: &Arc<Self>,
        handle: Arc<ConnHandle>,
        parked: Box<Parked>,
    ) -> Option<(Arc<ConnHandle>, Box<Parked>)> {
        if !self.settings.resume.as_ref().is_some_and(|r| r.keep) {
            return Some((handle, parked));
        }
        // Taken before the resume completes, so no copy of an earlier stay (this node's,
        // or the one of the node it moved from) outlives it: a delete that landed later
        // could remove the copy of a node the session moves to next.
        let present = self
            .take_copy_back(handle.info.id, self.stamp(&parked.session))
            .await;
        if !parked.kept || present {
            return Some((handle, parked));
        }
        self.end_taken_elsewhere(&handle, parked);
        None
    }

    /// A parked session whose copy another node took: it lives on there, so it ends here
    /// quietly (no `$disconnect`, and its home is not told that it ended: the node that
    /// took it tells the home where it is).
    pub(crate) fn end_taken_elsewhere(&self, handle: &Arc<ConnHandle>, parked: Box<Parked>) {
        let id = handle.info.id;
        info!(conn = %id, "parked session ended here: another node took its kept copy");
        self.forget_session(id);
        self.registry_write(id, None);
        self.table.remove(&id);
        self.metrics.connections_open.dec();
        drop(parked);
        handle.wake();
    }

    /// The stamp of the kept copy of the session of `token`, if there is one and the token
    /// proves it (a request that names the connection without its secret learns nothing
    /// and changes nothing).
    pub(crate) async fn read_copy(&self, token: &str) -> Option<CopyStamp> {
        if !self.settings.resume.as_ref().is_some_and(|r| r.keep) {
            return None;
        }
        let id = session::connection_of(token)?;
        let (stamp, raw) = self.backplane.read_session(&id.to_string()).await.ok()??;
        self.copy_proven(id, &raw, token).then_some(stamp)
    }

    /// Takes the copy of the session of `token` that nobody could hand over, if `owner`
    /// still wrote it last and the token proves it. Expired copies are ended here
    /// (`$disconnect`). The handover, or `None`.
    pub(crate) async fn take_copy(
        self: &Arc<Self>,
        token: &str,
        owner: u64,
    ) -> Option<serde_json::Value> {
        let id = session::connection_of(token)?;
        let key = id.to_string();
        let (stamp, raw) = self
            .backplane
            .take_session(&key, CopyGuard::Owner(owner))
            .await
            .ok()??;
        let Ok(head) = serde_json::from_str::<CopyHead>(&raw) else {
            warn!(conn = %id, "unreadable kept session copy dropped");
            return None;
        };
        if !head.handover.token_proof.proves(token) {
            // Every copy under an id is of that one connection's session, so this copy
            // was written by something else meanwhile: it goes back as it was.
            warn!(conn = %id, "a kept session copy changed between its read and its take: put back");
            let ttl = copy_ttl(head.kept_until, self.epoch_ms());
            let _ = self
                .backplane
                .store_session(&key, stamp, raw, ttl, CopyGuard::NotNewer(stamp))
                .await;
            return None;
        }
        let mut copy: serde_json::Value = serde_json::from_str(&raw).ok()?;
        let until = head.kept_until;
        let mut handover = copy.get_mut("handover").map(serde_json::Value::take)?;
        if until < self.epoch_ms() {
            // Its window passed before the survivor's sweep: we took it, so we end it.
            if let Some((info, ext)) = handover.get("connection").and_then(snapshot::from_json) {
                let edge = self.clone();
                tokio::spawn(async move {
                    edge.invoke_disconnect(
                        Arc::new(info),
                        ext,
                        1006,
                        "resume window expired".into(),
                    )
                    .await;
                });
            }
            return None;
        }
        // The copy says how many moves its writer's stay had behind it.
        handover["hops"] = stamp.hops.into();
        info!(conn = %id, "took a kept session whose node is gone");
        Some(handover)
    }

    /// Whether `token` proves the session of the copy `raw` (of connection `id`); a
    /// refusal is counted and logged.
    fn copy_proven(&self, id: ConnectionId, raw: &str, token: &str) -> bool {
        match serde_json::from_str::<CopyHead>(raw) {
            Ok(head) if head.handover.token_proof.proves(token) => true,
            Ok(_) => {
                self.refuse_proof(id, "kept copy");
                false
            }
            Err(e) => {
                warn!(conn = %id, error = %e, "unreadable kept session copy");
                false
            }
        }
    }

    /// A lost node's connection whose session is kept in the backplane: `$disconnect`
    /// when its window ends, unless a client resumed it elsewhere (took the copy the lost
    /// node process, `owner`, wrote; a copy written since by a node that holds the session
    /// now is that node's to end).
    pub(crate) fn disconnect_kept_later(
        self: &Arc<Self>,
        info: Arc<switchboard_core::event::ConnectionInfo>,
        extension: Option<serde_json::Map<String, serde_json::Value>>,
        kept_until: u64,
        owner: u64,
    ) {
        let edge = self.clone();
        tokio::spawn(async move {
            let wait = kept_until.saturating_sub(edge.epoch_ms()) + 1000;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let (tx, rx) = oneshot::channel();
            let op = CopyOp::Take {
                guard: CopyGuard::Owner(owner),
            };
            edge.write_copy((info.id, op, Some(tx)));
            // Taken, or the backplane failed: nobody resumed it from that copy.
            if !matches!(rx.await, Ok(Ok(false))) {
                info!(conn = %info.id, "a lost node's kept session expired");
                edge.announce_end(info.id);
                edge.invoke_disconnect(info, extension, 1006, "resume window expired".into())
                    .await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{new_token, Kept as Message, Session};

    /// A copy in the backplane holds the proof of the token, never the token or its secret:
    /// whoever reads the backplane cannot resume the session.
    #[test]
    fn a_copy_holds_the_proof_of_the_token_not_its_secret() {
        let id = switchboard_core::id::IdGenerator::new("n").connection_id();
        let token = new_token(&id);
        let (_, secret) = token.split_once('.').unwrap();
        let mut s = Session::new(token.clone(), 8, 1000);
        s.frame(b"sent while parked", false);
        let queued = vec![Message {
            seq: 0,
            data: bytes::Bytes::from_static(b"not numbered yet"),
            binary: false,
        }];
        let snapshot = json!({ "connectionId": id.to_string() });
        let copy = copy_json(&s.handover(snapshot, queued), 7);
        assert!(!copy.contains(secret), "{copy}");

        // It is still the whole session...
        let mut value: serde_json::Value = serde_json::from_str(&copy).unwrap();
        let h: Handover = serde_json::from_value(value["handover"].take()).unwrap();
        assert_eq!(&h.replay[0].data[..], b"sent while parked");
        assert_eq!(&h.queued[0].data[..], b"not numbered yet");
        // ...whose proof a taker reads first, and which proves the real token only.
        let head: CopyHead = serde_json::from_str(&copy).unwrap();
        assert_eq!(head.kept_until, 7);
        assert!(head.handover.token_proof.proves(&token));
        let mut last_changed = token.clone();
        let last = last_changed.pop().unwrap();
        last_changed.push(if last == 'A' { 'B' } else { 'A' });
        for forged in [format!("{id}.{}", "A".repeat(22)), last_changed] {
            assert_eq!(session::connection_of(&forged), Some(id), "{forged}");
            assert!(!head.handover.token_proof.proves(&forged), "{forged}");
        }
        // The session restored from it knows no token until a client proves one.
        let back = Session::restore(&h, 8, 1000);
        assert!(back.token.is_empty());
        assert!(back.proof.proves(&token));
    }

    /// Session tokens come from clients and copies from the backplane: both are hostile.
    /// On any string, `connection_of` never panics and names a connection only for the
    /// `<id>.<22 characters>` shape; a proof proves exactly its own token, however the
    /// token is changed; any text read as a copy is refused cleanly or read whole.
    #[test]
    fn fuzz_edge_session_proof() {
        use switchboard_fuzz::proptest::prelude::*;
        let ids = switchboard_core::id::IdGenerator::new("fuzz");
        let input = (
            any::<String>(),
            any::<usize>(),
            any::<char>(),
            prop_oneof![
                any::<String>(),
                "\\{\"keptUntil\":[0-9]{1,20},\"handover\":\\{\"tokenProof\":\"[A-Za-z0-9_=-]{0,50}\"\\}\\}",
            ],
        );
        switchboard_fuzz::run(
            "fuzz_edge_session_proof",
            50_000,
            input,
            |(text, at, c, copy)| {
                let token = new_token(&ids.connection_id());
                let (id_part, _) = token.split_once('.').unwrap();
                let proof = TokenProof::of(&token);
                let mut changed: Vec<char> = token.chars().collect();
                let i = at % changed.len();
                changed[i] = c;
                let changed: String = changed.into_iter().collect();
                let candidates = [
                    text.clone(),
                    changed,
                    token[..at % token.len()].to_owned(),
                    format!("{token}{text}"),
                    format!("{id_part}.{text}"),
                ];
                for s in &candidates {
                    prop_assert_eq!(proof.proves(s), *s == token, "{:?}", s);
                    if let Some(id) = session::connection_of(s) {
                        let (head, secret) = s.split_once('.').unwrap();
                        prop_assert_eq!(head, id.to_string());
                        prop_assert_eq!(secret.len(), 22);
                    }
                }
                prop_assert!(proof.proves(&token));
                // Whatever a copy holds, reading it never panics, and its proof proves
                // only the token it was made from.
                if let Ok(head) = serde_json::from_str::<CopyHead>(&copy) {
                    let text = serde_json::to_string(&head.handover.token_proof).unwrap();
                    let back: TokenProof = serde_json::from_str(&text).unwrap();
                    prop_assert!(!back.proves(&token));
                }
                Ok(())
            },
        );
    }
}

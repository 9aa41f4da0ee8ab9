//! Parked resumable sessions: the watcher that ends one whose client does not come back
//! (keeping its copy in the backplane meanwhile, when configured), and taking one for a
//! resume.

use std::sync::Arc;

use tracing::info;

use crate::inner::EdgeInner;
use crate::table::{CloseRequest, ConnHandle};

impl EdgeInner {
    /// Waits for a parked session's client, its window, or a close request; ends the
    /// connection (with `$disconnect`) unless the client came back. With
    /// `keep_in_backplane`, also keeps a copy of the session in the backplane, refreshed
    /// whenever something is sent to it.
    pub(crate) fn watch_parked(self: &Arc<Self>, handle: Arc<ConnHandle>) {
        let Some(resume) = self.settings.resume.clone() else {
            return;
        };
        let edge = self.clone();
        self.tracker.spawn(async move {
            enum End {
                Resumed,
                Closed(CloseRequest),
                Expired,
                /// Something to write to the backplane copy.
                Changed,
                /// Another node took the copy: the session lives on there.
                TakenElsewhere,
            }
            let mut deadline = Box::pin(tokio::time::sleep(resume.window));
            let kept_until = edge.epoch_ms() + resume.window.as_millis() as u64;
            let mut dirty = resume.keep;
            let mut stored = false;
            let end = loop {
                let end = std::future::poll_fn(|cx| {
                    handle.register_waker(cx.waker());
                    let mut parked = handle.parked.lock();
                    let Some(p) = parked.as_mut() else {
                        return std::task::Poll::Ready(End::Resumed);
                    };
                    if let Some(req) = handle.close_requested() {
                        return std::task::Poll::Ready(End::Closed(req));
                    }
                    if std::future::Future::poll(deadline.as_mut(), cx).is_ready() {
                        return std::task::Poll::Ready(End::Expired);
                    }
                    if resume.keep {
                        // Number what was sent meanwhile into the replay buffer, so the
                        // copy holds it (and be woken by the next send).
                        match p.frame_queued(&handle, cx) {
                            None => {
                                return std::task::Poll::Ready(End::Closed(
                                    CloseRequest::SlowConsumer,
                                ))
                            }
                            Some(n) => dirty |= n > 0,
                        }
                        dirty |= std::mem::take(&mut p.changed);
                        if dirty {
                            return std::task::Poll::Ready(End::Changed);
                        }
                    }
                    std::task::Poll::Pending
                })
                .await;
                if !matches!(end, End::Changed) {
                    break end;
                }
                dirty = false;
                match edge.keep_copy(&handle, kept_until, !stored).await {
                    crate::kept::Kept::Stored => stored = true,
                    crate::kept::Kept::Failed => {}
                    crate::kept::Kept::TakenElsewhere => break End::TakenElsewhere,
                    crate::kept::Kept::Overflow => break End::Closed(CloseRequest::SlowConsumer),
                }
            };
            let id = handle.info.id;
            let gone = matches!(end, End::TakenElsewhere);
            let (code, reason) = match end {
                End::Resumed => {
                    let here = edge
                        .table
                        .get(&id)
                        .is_some_and(|h| Arc::ptr_eq(&h, &handle));
                    if resume.keep && here && stored {
                        // Resumed here (its copy was taken as it resumed): the registry
                        // entry must stop saying the session is kept.
                        edge.record(&handle, true);
                    }
                    return;
                }
                End::Changed => unreachable!("the loop goes on after a change"),
                End::Expired | End::TakenElsewhere => (1006, "resume window expired"),
                End::Closed(CloseRequest::SlowConsumer) => (1006, "resume buffer overflow"),
                End::Closed(req) => req.code_and_reason(),
            };
            let Some(parked) = handle.parked.lock().take() else {
                return; // resumed at the last moment
            };
            // A copy that another node took meanwhile lives on there: end ours quietly.
            if gone || (stored && !edge.take_copy_back(id, edge.stamp(&parked.session)).await) {
                edge.end_taken_elsewhere(&handle, parked);
                return;
            }
            edge.forget_session(id);
            let extension = edge.table.extension_of(&handle);
            edge.record(&handle, false);
            edge.table.remove(&id);
            edge.metrics.connections_open.dec();
            drop(parked);
            edge.metrics
                .closes
                .get_or_create(&crate::metrics::CodeLabel { code })
                .inc();
            info!(conn = %id, code, reason, "parked session ended");
            edge.invoke_disconnect(handle.info.clone(), extension, code, reason.into())
                .await;
        });
    }

    /// Takes the parked session of `token` for a resume, if the token proves it (the
    /// connection id in it only says which session to check).
    pub(crate) fn take_parked(&self, token: &str, after: u64) -> Take {
        let Some(id) = crate::session::connection_of(token) else {
            return Take::NotHere;
        };
        let Some((proof, handle)) = self.sessions.lock().get(&id).cloned() else {
            return Take::NotHere;
        };
        if !proof.proves(token) {
            // Checked before anything else, so the answer says nothing of the session.
            self.refuse_proof(id, "session held here");
            return Take::Refused;
        }
        let mut slot = handle.parked.lock();
        let Some(mut parked) = slot.take() else {
            return Take::InUse;
        };
        if !parked.session.can_resume_after(after) {
            // Messages the client missed are gone: end the session, start afresh.
            *slot = Some(parked);
            drop(slot);
            handle.request_close(CloseRequest::SlowConsumer);
            return Take::Refused;
        }
        drop(slot);
        // A session that moved here knows only its token's proof until now.
        parked.session.token = token.to_owned();
        handle.wake();
        Take::Parked(handle, parked)
    }
}

/// What became of a request to take a session held on this node for a resume.
pub(crate) enum Take {
    /// Parked here, and the token proves it: the request resumes it.
    Parked(Arc<ConnHandle>, Box<crate::session::Parked>),
    /// Attached to a live socket (409), and the token proves it.
    InUse,
    /// Held here, but not to be resumed: the token does not prove it, or messages the
    /// client missed are gone. Answered as an unknown session.
    Refused,
    /// No session of that connection here.
    NotHere,
}

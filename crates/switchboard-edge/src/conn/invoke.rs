//! A connection's invocations: routing each message to its function, in order (or in
//! parallel where the route allows), and applying the answers.

use std::future::poll_fn;
use std::task::{Context, Poll};

use switchboard_core::config::BuiltinName;
use switchboard_core::event::{EventKind, FunctionResponse, Invocation, Payload};
use switchboard_core::groups::pattern_matches;
use switchboard_core::schema::{MessageSchema, SchemaError};
use switchboard_functions::{Builtin, Function, InvokeError};
use switchboard_ws::close_code;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::warn;

use crate::inner::EdgeInner;
use crate::session::{self, ClientFrame};

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn on_message(&mut self, payload: Payload) {
        let mut seq = 0;
        let payload = match self.session.as_mut() {
            None => payload,
            Some(session) => match session::parse(&payload.data, payload.binary) {
                ClientFrame::Message {
                    seq: s,
                    data,
                    binary,
                } => {
                    if s <= self.highest_queued {
                        // A resent message already handed on: acknowledge, don't invoke.
                        self.ack_due.get_or_insert_with(Instant::now);
                        return;
                    }
                    if s > self.highest_queued + 1 {
                        // Messages in between were never sent: the client lost track.
                        self.start_close(close_code::PROTOCOL, "switchboard.v1 sequence gap");
                        return;
                    }
                    self.highest_queued = s;
                    seq = s;
                    Payload { data, binary }
                }
                ClientFrame::Ack(n) => {
                    session.ack(n);
                    return;
                }
                ClientFrame::Heartbeat => {
                    self.encoder.message(true, b"h", &mut self.write_buf);
                    return;
                }
                ClientFrame::Invalid => {
                    self.start_close(close_code::PROTOCOL, "bad switchboard.v1 frame");
                    return;
                }
            },
        };
        let m = &self.edge.metrics;
        m.messages_in.inc();
        m.bytes_in.inc_by(payload.data.len() as u64);
        if let Err(reason) = self.take_allowance() {
            self.edge.metrics.message_rejected(reason);
            self.start_close(close_code::POLICY, "rate limit exceeded");
            return;
        }
        if payload.binary && self.edge.settings.reject_binary {
            self.start_close(close_code::UNSUPPORTED, "binary messages are not accepted");
            return;
        }
        let target = self
            .edge
            .routes
            .select(&payload.data, !payload.binary)
            .map(|sel| sel.target.clone());
        self.inbound.push_back((payload, target, seq));
    }

    /// Takes one message from the connection's allowance (`limits.messages_per_sec`) and
    /// its user's (`access.messages_per_sec_per_user`): the metric label of the one that
    /// ran out, if one did. The clock is read once, and only when a limit is set.
    fn take_allowance(&mut self) -> Result<(), &'static str> {
        if self.rate.is_none() && self.edge.user_rates.is_none() {
            return Ok(());
        }
        let now = self.edge.now_ns();
        if let Some(rate) = &mut self.rate {
            if !rate.try_take(now) {
                return Err("rate_limit");
            }
        }
        if let Some(rates) = &self.edge.user_rates {
            // The user's bucket, kept until the handle says its user changed.
            let changes = self.handle.user_changes();
            if self.user_bucket.as_ref().map(|(n, _)| *n) != Some(changes) {
                let user = self.edge.table.user_of(self.handle.info.id);
                self.user_bucket = Some((changes, user.map(|u| rates.bucket(&u, now))));
            }
            if let Some((_, Some(bucket))) = &self.user_bucket {
                if !bucket.lock().try_take(now) {
                    return Err("user_rate_limit");
                }
            }
        }
        Ok(())
    }

    /// Finishes invocations in flight and starts the next ones: in arrival order, one at a
    /// time, except that consecutive messages on `parallel` routes may overlap.
    pub(super) fn poll_invocations(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            let mut i = 0;
            while i < self.in_flight.len() {
                if let Poll::Ready(result) = self.in_flight[i].future.as_mut().poll(cx) {
                    let f = self.in_flight.swap_remove(i);
                    crate::inner::log_invocation(
                        &self.handle.info.id,
                        &f.target,
                        &f.request_id,
                        f.started,
                        result.as_ref().map(|r| r.status),
                    );
                    self.on_response(result, f.two_way, &f.request_id);
                    progress = true;
                } else {
                    i += 1;
                }
            }
            // Closing, or holding the socket open for answers at shutdown: start nothing new.
            if self.closing.is_some() || self.handle.close_requested().is_some() {
                self.inbound.clear();
                return progress;
            }
            let Some((_, target, _)) = self.inbound.front() else {
                return progress;
            };
            let parallel = target.as_ref().is_some_and(|t| t.parallel);
            let may_start = if parallel {
                self.in_flight.len() < PARALLEL_MAX && self.in_flight.iter().all(|f| f.parallel)
            } else {
                self.in_flight.is_empty()
            };
            if !may_start {
                return progress;
            }
            let (payload, target, seq) = self.inbound.pop_front().expect("front exists");
            progress = true;
            if let Some(session) = self.session.as_mut().filter(|_| seq > 0) {
                // Handed on: a resend of this message after a reconnect is a duplicate.
                session.last_client_seq = seq;
                session.unacked_client += 1;
                if session.unacked_client >= 32 {
                    self.send_ack();
                } else {
                    self.ack_due
                        .get_or_insert_with(|| Instant::now() + ACK_DELAY);
                }
            }
            let Some(target) = target else {
                let rid = self.edge.ids.request_id();
                self.error_frame("Forbidden", &rid);
                continue;
            };
            if let Some(schema) = &target.schema {
                if let Err(errors) = check_schema(schema, &payload) {
                    self.refuse_invalid(&errors);
                    continue;
                }
            }
            match &target.function {
                Function::Builtin(b)
                    if matches!(b.0, BuiltinName::JoinGroup | BuiltinName::LeaveGroup) =>
                {
                    self.client_group_op(b, &payload, target.two_way);
                }
                Function::Builtin(b) => {
                    // Builtins answer synchronously: no request id, no event, no box.
                    let logged =
                        tracing::enabled!(target: "switchboard::invoke", tracing::Level::DEBUG)
                            .then(Instant::now);
                    let resp = b.answer(Invocation {
                        kind: EventKind::Message,
                        route_key: target.key.clone(),
                        connection: self.handle.info.clone(),
                        request_id: String::new(),
                        request_time_ms: 0,
                        body: Some(payload),
                        disconnect: None,
                        extension: None,
                    });
                    if let Some(started) = logged {
                        crate::inner::log_invocation(
                            &self.handle.info.id,
                            &target,
                            "",
                            started,
                            Ok(resp.status),
                        );
                    }
                    self.on_response(Ok(resp), target.two_way, "");
                }
                Function::Remote(invoker) => {
                    let request_id = self.edge.ids.request_id();
                    let future = invoker.invoke(Invocation {
                        kind: EventKind::Message,
                        route_key: target.key.clone(),
                        connection: self.handle.info.clone(),
                        request_id: request_id.clone(),
                        request_time_ms: self.edge.epoch_ms(),
                        body: Some(payload),
                        disconnect: None,
                        extension: self.edge.table.extension_of(&self.handle),
                    });
                    self.in_flight.push(InFlight {
                        future,
                        two_way: target.two_way,
                        parallel,
                        request_id,
                        started: Instant::now(),
                        target,
                    });
                }
            }
        }
    }

    /// The `join_group` / `leave_group` builtins: the client names a group in its
    /// message (`{"group": "room:1"}`) and may change only groups the function allows.
    pub(super) fn client_group_op(&mut self, b: &Builtin, payload: &Payload, two_way: bool) {
        let group = serde_json::from_slice::<serde_json::Value>(&payload.data)
            .ok()
            .and_then(|v| v.get("group").and_then(|g| g.as_str()).map(str::to_owned));
        let rid = self.edge.ids.request_id();
        let Some(group) = group.filter(|g| b.1.iter().any(|p| pattern_matches(p, g))) else {
            self.error_frame("Forbidden", &rid);
            return;
        };
        let id = self.handle.info.id;
        let joining = b.0 == BuiltinName::JoinGroup;
        let op = if joining {
            switchboard_core::ops::Op::Join {
                id,
                group: group.clone(),
            }
        } else {
            switchboard_core::ops::Op::Leave {
                id,
                group: group.clone(),
            }
        };
        match self.edge.apply_held(&self.handle, op) {
            Ok(_) if two_way => {
                let key = if joining { "joined" } else { "left" };
                let body = serde_json::json!({ key: group }).to_string();
                self.send_message(body.as_bytes(), false);
            }
            Ok(_) => {}
            Err(e) => {
                let body = serde_json::json!({
                    "message": e.to_string(),
                    "connectionId": id.encode().as_str(),
                    "requestId": rid,
                });
                self.send_message(body.to_string().as_bytes(), false);
            }
        }
    }

    pub(super) fn on_response(
        &mut self,
        result: Result<FunctionResponse, InvokeError>,
        two_way: bool,
        rid: &str,
    ) {
        match result {
            Ok(resp) => {
                for problem in self.edge.extend(&self.handle, &resp.extension) {
                    warn!(conn = %self.handle.info.id, request_id = rid, %problem, "response extension refused");
                }
                if let (true, Some(body)) = (two_way, resp.body) {
                    self.send_message(&body.data, body.binary);
                }
            }
            Err(e) => {
                self.edge
                    .metrics
                    .invoke_errors
                    .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                    .inc();
                warn!(conn = %self.handle.info.id, request_id = rid, error = %e, "function failed");
                self.error_frame("Internal server error", rid);
            }
        }
    }

    /// The AWS-shaped error frame.
    pub(super) fn error_frame(&mut self, message: &str, request_id: &str) {
        let body = self.error_body(message, request_id);
        self.send_message(body.to_string().as_bytes(), false);
    }

    fn error_body(&self, message: &str, request_id: &str) -> serde_json::Value {
        serde_json::json!({
            "message": message,
            "connectionId": self.handle.info.id.encode().as_str(),
            "requestId": request_id,
        })
    }

    /// A message its route's schema refused: counted, and answered with the error frame
    /// plus where and why (at most [`MAX_ERRORS`]); the function is not invoked.
    ///
    /// [`MAX_ERRORS`]: switchboard_core::schema::MAX_ERRORS
    fn refuse_invalid(&mut self, errors: &[SchemaError]) {
        self.edge.metrics.message_rejected("schema");
        let rid = self.edge.ids.request_id();
        let mut body = self.error_body("Invalid request body", &rid);
        body["errors"] = errors
            .iter()
            .map(|e| serde_json::json!({"instancePath": e.instance_path, "message": e.message}))
            .collect();
        self.send_message(body.to_string().as_bytes(), false);
    }
}

/// Whether a message passes its route's schema. A schema describes JSON text: a binary
/// frame is refused whatever its bytes.
fn check_schema(schema: &MessageSchema, payload: &Payload) -> Result<(), Vec<SchemaError>> {
    if payload.binary {
        return Err(vec![SchemaError {
            instance_path: String::new(),
            message: "a binary message; this route takes JSON text".into(),
        }]);
    }
    schema.check(&payload.data)
}

/// On shutdown, waits for a closed connection's invocations still in flight until the
/// drain deadline (their answers have no socket left to go to), and records those that
/// do not finish by then as abandoned.
pub(super) async fn finish_in_flight(
    edge: &EdgeInner,
    id: switchboard_core::ConnectionId,
    mut in_flight: Vec<InFlight>,
) {
    let Some(deadline) = edge.drain.deadline() else {
        return;
    };
    if in_flight.is_empty() {
        return;
    }
    let all_done = poll_fn(|cx| {
        in_flight.retain_mut(|f| {
            let Poll::Ready(result) = f.future.as_mut().poll(cx) else {
                return true;
            };
            crate::inner::log_invocation(
                &id,
                &f.target,
                &f.request_id,
                f.started,
                result.as_ref().map(|r| r.status),
            );
            if let Err(e) = result {
                edge.metrics
                    .invoke_errors
                    .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                    .inc();
                warn!(conn = %id, request_id = f.request_id, error = %e, "function failed");
            }
            false
        });
        if in_flight.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let _ = tokio::time::timeout_at(deadline, all_done).await;
    for f in &in_flight {
        edge.drain.abandon(&id, &f.target, &f.request_id);
    }
}

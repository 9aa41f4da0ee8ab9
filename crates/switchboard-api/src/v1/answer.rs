//! From an operation's [`Outcome`] or [`OpError`] to the HTTP answer: the JSON every route
//! and batch item answers with, and the AWS-shaped error of a refused request.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use switchboard_core::event::iso8601;
use switchboard_core::ops::{Coverage, Op, OpError, Outcome};
use switchboard_edge::ops::Counted;

use crate::connections::{aws_error, ConnectionsApi};

/// A refused request or batch item: AWS-shaped on the wire.
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        aws_error(self.status, self.kind, &self.message)
    }
}

impl ApiError {
    pub(super) fn to_json(&self) -> Value {
        json!({"ok": false, "status": self.status.as_u16(), "error": self.kind, "message": self.message})
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind: e.aws_type(),
            message: match e {
                OpError::Gone => "Connection is gone".to_owned(),
                e => e.to_string(),
            },
        }
    }
}

pub(super) fn bad_request(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "BadRequestException",
        message: message.to_owned(),
    }
}

pub(super) fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(super) fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

pub(super) fn coverage(v: &mut serde_json::Map<String, Value>, nodes: Coverage) {
    v.insert("nodes".into(), nodes.answered.into());
    v.insert("complete".into(), nodes.complete().into());
}

/// The JSON of an outcome, as every route and batch item answers it.
pub(super) fn outcome_json(o: Outcome) -> Value {
    let mut m = serde_json::Map::new();
    match o {
        // A send to one connection: queued on (or handed to) the node that holds it.
        Outcome::Accepted => {
            m.insert("recipients".into(), 1.into());
            m.insert("delivered".into(), 1.into());
            m.insert("dropped".into(), 0.into());
        }
        Outcome::Sent { counts, nodes } => {
            m.insert("recipients".into(), counts.recipients.into());
            m.insert("delivered".into(), counts.delivered.into());
            m.insert("dropped".into(), counts.dropped.into());
            coverage(&mut m, nodes);
        }
        Outcome::Closed { closed, nodes } => {
            m.insert("closed".into(), closed.into());
            coverage(&mut m, nodes);
        }
        Outcome::Joined { added } => {
            m.insert("joined".into(), added.into());
        }
        Outcome::Left { removed } => {
            m.insert("left".into(), removed.into());
        }
        Outcome::State { state } => {
            m.insert("state".into(), state_json(state));
        }
        Outcome::User { user } => {
            m.insert("userId".into(), user.map_or(Value::Null, Value::String));
        }
        Outcome::Connection { view } => {
            return json!({
                "connectionId": view.id.to_string(),
                "connectedAt": iso8601(view.connected_at_ms),
                "lastActiveAt": iso8601(view.last_active_at_ms),
                "identity": {"sourceIp": view.source_ip, "userAgent": view.user_agent},
                "userId": view.user_id,
                "groups": view.groups,
                "state": state_json(view.state),
                "subprotocol": view.subprotocol,
            })
        }
        Outcome::Members { size, nodes, .. } => {
            m.insert("size".into(), size.into());
            coverage(&mut m, nodes);
        }
        Outcome::UserConnections {
            count,
            oldest,
            nodes,
            ..
        } => {
            m.insert("count".into(), count.into());
            let oldest = oldest
                .into_iter()
                .map(|c| json!({"connectionId": c.id.to_string(), "connectedAt": iso8601(c.connected_at_ms)}))
                .collect();
            m.insert("oldest".into(), Value::Array(oldest));
            coverage(&mut m, nodes);
        }
    }
    Value::Object(m)
}

pub(super) fn state_json(state: Vec<(String, String)>) -> Value {
    Value::Object(
        state
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

pub(super) async fn run(api: &ConnectionsApi, op: Op) -> Result<Value, ApiError> {
    run_counted(api, op, Counted::Here).await
}

/// `counted` says what a send or close to many connections waits for (`?wait=true`:
/// every node's count).
pub(super) async fn run_counted(
    api: &ConnectionsApi,
    op: Op,
    counted: Counted,
) -> Result<Value, ApiError> {
    Ok(outcome_json(api.edge.apply_op_with(op, counted).await?))
}

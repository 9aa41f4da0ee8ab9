//! switchboard's own management API, beside the AWS-compatible `@connections`: groups,
//! users, broadcast, per-connection state, closing many connections, and a batch.
//! Documented in docs/management-api.md and docs/management-api.yaml (OpenAPI).
//!
//! Every route authenticates like `@connections` (SigV4 or a bearer token). Payloads are
//! the raw request body: `Content-Type: application/octet-stream` sends a binary frame,
//! anything else a text frame (which must then be UTF-8).
//!
//! The handlers only translate: a request (or batch item) becomes an [`Op`], applied for
//! the whole cluster by the edge's operations layer, and its [`Outcome`] or [`OpError`]
//! becomes the answer. Nothing here touches a connection or the backplane.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_core::event::iso8601;
use switchboard_core::ops::{Coverage, Op, OpError, Outcome, Target};
use switchboard_core::ConnectionId;
use switchboard_edge::ops::Counted;

use crate::connections::{admit, aws_error, read_body, ConnectionsApi};

/// Largest batch accepted.
const MAX_BATCH: usize = 100;
/// Largest page of a member listing.
const MAX_PAGE: usize = 1000;

type Api = Arc<ConnectionsApi>;

/// The `/v1` routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/broadcast", post(broadcast))
        .route("/v1/groups/{group}/messages", post(send_group))
        .route("/v1/groups/{group}/members", get(list_members))
        .route("/v1/groups/{group}/members/{id}", put(join).delete(leave))
        .route("/v1/groups/{group}/connections", delete(close_group))
        .route("/v1/users/{user}/messages", post(send_user))
        .route("/v1/users/{user}/connections", delete(close_user))
        .route("/v1/connections/{id}", get(get_connection))
        .route("/v1/connections/{id}/state", patch(patch_state))
        .route(
            "/v1/connections/{id}/user",
            put(put_user).delete(delete_user),
        )
        .route("/v1/batch", post(batch))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
}

async fn method_not_allowed() -> Response {
    aws_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        "This method is not allowed on this path (docs/management-api.md lists each route's methods)",
    )
}

/// Authenticates every `/v1` request from its head, before any of the body is read; the
/// body is then read once here (bounded, checked against its signature) and put back.
async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let admission = match admit(&api, &parts) {
        Ok(a) => a,
        Err(refused) => return refused.respond(&api.metrics),
    };
    // A batch may carry many messages; everything else at most one.
    let limit = api
        .max_message_bytes
        .saturating_mul(if parts.uri.path() == "/v1/batch" {
            4
        } else {
            1
        });
    let bytes = match read_body(&parts.headers, body, limit, admission).await {
        Ok(b) => b,
        Err(refused) => return refused.respond(&api.metrics),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A refused request or batch item: AWS-shaped on the wire.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        aws_error(self.status, self.kind, &self.message)
    }
}

impl ApiError {
    fn to_json(&self) -> Value {
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

fn bad_request(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "BadRequestException",
        message: message.to_owned(),
    }
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

fn coverage(v: &mut serde_json::Map<String, Value>, nodes: Coverage) {
    v.insert("nodes".into(), nodes.answered.into());
    v.insert("complete".into(), nodes.complete().into());
}

/// The JSON of an outcome, as every route and batch item answers it.
fn outcome_json(o: Outcome) -> Value {
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
    }
    Value::Object(m)
}

fn state_json(state: Vec<(String, String)>) -> Value {
    Value::Object(
        state
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

async fn run(api: &ConnectionsApi, op: Op) -> Result<Value, ApiError> {
    run_counted(api, op, Counted::Here).await
}

/// `counted` says what a send or close to many connections waits for (`?wait=true`:
/// every node's count).
async fn run_counted(api: &ConnectionsApi, op: Op, counted: Counted) -> Result<Value, ApiError> {
    Ok(outcome_json(api.edge.apply_op_with(op, counted).await?))
}

/// What a query string that may only carry `wait` asks the answer to count.
fn counted_query(q: Option<String>) -> Result<Counted, ApiError> {
    counted(&query(q, &["wait"])?)
}

/// `?wait=true` (or `1`): count every node's part; `false`, `0` or absent: this node's.
fn counted(pairs: &[(String, String)]) -> Result<Counted, ApiError> {
    match param(pairs, "wait") {
        None | Some("false") | Some("0") => Ok(Counted::Here),
        Some("true") | Some("1") => Ok(Counted::Cluster),
        Some(_) => Err(bad_request("`wait` must be true or false")),
    }
}

/// The payload of a send: binary for `application/octet-stream`, else UTF-8 text.
fn payload(headers: &HeaderMap, body: Bytes) -> Result<(Bytes, bool), ApiError> {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/octet-stream"));
    if !binary && std::str::from_utf8(&body).is_err() {
        return Err(bad_request(
            "text payloads must be UTF-8 (send binary with Content-Type: application/octet-stream)",
        ));
    }
    Ok((body, binary))
}

/// A connection id from a path or a body: one that cannot be parsed names no connection.
fn connection_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(id).ok_or_else(|| OpError::Gone.into())
}

/// The query string's parameters; `allowed` names the only keys accepted.
fn query(raw: Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = match raw {
        None => Vec::new(),
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|_| bad_request("the query string is not valid"))?,
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(bad_request(&format!("unknown query parameter {k:?}")));
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Comma-separated connection ids; one that cannot be parsed is refused.
fn parse_ids(list: Option<&str>) -> Result<Vec<ConnectionId>, ApiError> {
    list.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ConnectionId::parse(s)
                .ok_or_else(|| bad_request(&format!("`exclude`: {s:?} is not a connection id")))
        })
        .collect()
}

async fn send_to(
    api: &ConnectionsApi,
    to: Target,
    counted: Counted,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (data, binary) = match payload(headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    respond(run_counted(api, Op::Send { to, data, binary }, counted).await)
}

async fn broadcast(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counted = match counted_query(q) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    send_to(&api, Target::All, counted, &headers, body).await
}

async fn send_group(
    State(api): State<Api>,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = query(q, &["exclude", "wait"])
        .and_then(|p| Ok((parse_ids(param(&p, "exclude"))?, counted(&p)?)));
    let (exclude, counted) = match parsed {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    send_to(
        &api,
        Target::Group { group, exclude },
        counted,
        &headers,
        body,
    )
    .await
}

async fn send_user(
    State(api): State<Api>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counted = match counted_query(q) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    send_to(&api, Target::User { user }, counted, &headers, body).await
}

async fn list_members(
    State(api): State<Api>,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond(members_page(&api, group, q).await)
}

async fn members_page(
    api: &ConnectionsApi,
    group: String,
    q: Option<String>,
) -> Result<Value, ApiError> {
    let pairs = query(q, &["limit", "after"])?;
    let limit = match param(&pairs, "limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(bad_request("`limit` must be an integer from 1 to 1000")),
        },
    };
    let after = match param(&pairs, "after") {
        None | Some("") => None,
        Some(a) => Some(
            ConnectionId::parse(a).ok_or_else(|| bad_request("`after` is not a connection id"))?,
        ),
    };
    // One more than the page, to know whether another page follows.
    let op = Op::Members {
        group: group.clone(),
        after,
        limit: limit as u32 + 1,
    };
    let (mut page, size, nodes) = match api.edge.apply_op(op).await? {
        Outcome::Members { ids, size, nodes } => (ids, size, nodes),
        other => unreachable!("a listing answers with members, not {other:?}"),
    };
    if !nodes.complete() {
        // A page with holes would mislead: refuse it.
        return Err(OpError::Timeout.into());
    }
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|id| id.to_string())
    } else {
        None
    };
    Ok(json!({
        "group": group,
        "size": size,
        "members": page.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "next": next,
        "nodes": nodes.answered,
    }))
}

async fn join(State(api): State<Api>, Path((group, id)): Path<(String, String)>) -> Response {
    respond(membership(&api, group, &id, true).await)
}

async fn leave(State(api): State<Api>, Path((group, id)): Path<(String, String)>) -> Response {
    respond(membership(&api, group, &id, false).await)
}

async fn membership(
    api: &ConnectionsApi,
    group: String,
    id: &str,
    join: bool,
) -> Result<Value, ApiError> {
    let id = connection_id(id)?;
    let op = if join {
        Op::Join { id, group }
    } else {
        Op::Leave { id, group }
    };
    run(api, op).await
}

async fn close_group(
    State(api): State<Api>,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let to = Target::Group {
        group,
        exclude: Vec::new(),
    };
    close_many(&api, to, q).await
}

async fn close_user(
    State(api): State<Api>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    close_many(&api, Target::User { user }, q).await
}

async fn close_many(api: &ConnectionsApi, to: Target, q: Option<String>) -> Response {
    respond(
        async {
            let counted = counted_query(q)?;
            run_counted(api, Op::Close { to }, counted).await
        }
        .await,
    )
}

async fn get_connection(State(api): State<Api>, Path(id): Path<String>) -> Response {
    respond(
        async {
            run(
                &api,
                Op::Get {
                    id: connection_id(&id)?,
                },
            )
            .await
        }
        .await,
    )
}

/// A state patch: an object of strings, `null` removing a key.
fn state_changes(v: &Value) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let Value::Object(m) = v else {
        return Err(bad_request(
            "state must be a JSON object of strings (null removes a key)",
        ));
    };
    m.iter()
        .map(|(k, v)| match v {
            Value::Null => Ok((k.clone(), None)),
            Value::String(s) => Ok((k.clone(), Some(s.clone()))),
            _ => Err(bad_request(
                "state values must be strings (null removes a key)",
            )),
        })
        .collect()
}

async fn patch_state(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    respond(
        async {
            let id = connection_id(&id)?;
            let v = serde_json::from_slice::<Value>(&body)
                .map_err(|_| bad_request("body must be JSON"))?;
            let changes = state_changes(&v)?;
            run(&api, Op::SetState { id, changes }).await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct UserBody {
    #[serde(rename = "userId")]
    user_id: String,
}

async fn put_user(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    respond(
        async {
            let id = connection_id(&id)?;
            let u = serde_json::from_slice::<UserBody>(&body)
                .map_err(|_| bad_request(r#"body must be {"userId": "..."}"#))?;
            run(
                &api,
                Op::SetUser {
                    id,
                    user: Some(u.user_id),
                },
            )
            .await
        }
        .await,
    )
}

async fn delete_user(State(api): State<Api>, Path(id): Path<String>) -> Response {
    respond(
        async {
            run(
                &api,
                Op::SetUser {
                    id: connection_id(&id)?,
                    user: None,
                },
            )
            .await
        }
        .await,
    )
}

/// One batch operation.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
enum BatchOp {
    Send {
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
        group: Option<String>,
        user: Option<String>,
        #[serde(default)]
        exclude: Vec<String>,
        data: Option<String>,
        #[serde(rename = "dataBase64")]
        data_base64: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Broadcast {
        data: Option<String>,
        #[serde(rename = "dataBase64")]
        data_base64: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Join {
        group: String,
        #[serde(rename = "connectionId")]
        connection_id: String,
    },
    Leave {
        group: String,
        #[serde(rename = "connectionId")]
        connection_id: String,
    },
    Close {
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
        group: Option<String>,
        user: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    SetState {
        #[serde(rename = "connectionId")]
        connection_id: String,
        state: Value,
    },
    SetUser {
        #[serde(rename = "connectionId")]
        connection_id: String,
        /// `null` clears it.
        #[serde(rename = "userId")]
        user_id: Option<String>,
    },
}

#[derive(Deserialize)]
struct Batch {
    operations: Vec<Value>,
}

fn op_payload(data: Option<String>, b64: Option<String>) -> Result<(Bytes, bool), ApiError> {
    use base64::Engine;
    match (data, b64) {
        (Some(d), None) => Ok((Bytes::from(d), false)),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(|d| (Bytes::from(d), true))
            .map_err(|_| bad_request("dataBase64 is not base64")),
        _ => Err(bad_request("give exactly one of data or dataBase64")),
    }
}

/// A batch item as the operation it names.
fn to_op(max_message_bytes: usize, item: BatchOp) -> Result<(Op, Counted), ApiError> {
    let wait = match &item {
        BatchOp::Send { wait, .. }
        | BatchOp::Broadcast { wait, .. }
        | BatchOp::Close { wait, .. } => *wait,
        _ => false,
    };
    let counted = if wait {
        Counted::Cluster
    } else {
        Counted::Here
    };
    let too_big = |d: &Bytes| d.len() > max_message_bytes;
    let one_of =
        |c: Option<String>, g: Option<String>, u: Option<String>, ex: Vec<String>, what| {
            Ok(match (c, g, u) {
                (Some(id), None, None) if ex.is_empty() => Target::Connection {
                    id: connection_id(&id)?,
                },
                (None, Some(group), None) => Target::Group {
                    group,
                    exclude: parse_ids(Some(&ex.join(",")))?,
                },
                (None, None, Some(user)) if ex.is_empty() => Target::User { user },
                _ => return Err(bad_request(what)),
            })
        };
    let op = match item {
        BatchOp::Send {
            connection_id,
            group,
            user,
            exclude,
            data,
            data_base64,
            ..
        } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(OpError::PayloadTooLarge.into());
            }
            let to = one_of(
                connection_id,
                group,
                user,
                exclude,
                "send needs exactly one of connectionId, group (with optional exclude), user",
            )?;
            Op::Send { to, data, binary }
        }
        BatchOp::Broadcast {
            data, data_base64, ..
        } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(OpError::PayloadTooLarge.into());
            }
            Op::Send {
                to: Target::All,
                data,
                binary,
            }
        }
        BatchOp::Join {
            group,
            connection_id: id,
        } => Op::Join {
            id: connection_id(&id)?,
            group,
        },
        BatchOp::Leave {
            group,
            connection_id: id,
        } => Op::Leave {
            id: connection_id(&id)?,
            group,
        },
        BatchOp::Close {
            connection_id,
            group,
            user,
            ..
        } => Op::Close {
            to: one_of(
                connection_id,
                group,
                user,
                Vec::new(),
                "close needs exactly one of connectionId, group, user",
            )?,
        },
        BatchOp::SetState {
            connection_id: id,
            state,
        } => Op::SetState {
            id: connection_id(&id)?,
            changes: state_changes(&state)?,
        },
        BatchOp::SetUser {
            connection_id: id,
            user_id,
        } => Op::SetUser {
            id: connection_id(&id)?,
            user: user_id,
        },
    };
    Ok((op, counted))
}

async fn batch(State(api): State<Api>, body: Bytes) -> Response {
    // (Each item's failure becomes its entry; the batch itself succeeds.)
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return bad_request(r#"body must be {"operations": [...]}"#).into_response();
    };
    if batch.operations.len() > MAX_BATCH {
        return bad_request("at most 100 operations per batch").into_response();
    }
    let mut results = Vec::with_capacity(batch.operations.len());
    for raw in batch.operations {
        let result = match serde_json::from_value::<BatchOp>(raw) {
            Ok(item) => match to_op(api.max_message_bytes, item) {
                Ok((op, counted)) => run_counted(&api, op, counted).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(bad_request(&format!("invalid operation: {e}"))),
        };
        results.push(match result {
            Ok(mut v) => {
                if let Value::Object(m) = &mut v {
                    m.insert("ok".into(), Value::Bool(true));
                }
                v
            }
            Err(e) => e.to_json(),
        });
    }
    json_ok(json!({ "results": results }))
}

#[cfg(test)]
mod tests;

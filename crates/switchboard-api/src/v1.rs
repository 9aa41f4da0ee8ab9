//! switchboard's own management API, beside the AWS-compatible `@connections`: groups,
//! users, broadcast, per-connection state, closing many connections, and a batch.
//! Documented in docs/management-api.md and docs/management-api.yaml (OpenAPI).
//!
//! Every route authenticates like `@connections` (SigV4 or a bearer token). Payloads are
//! the raw request body: `Content-Type: application/octet-stream` sends a binary frame,
//! anything else a text frame (which must then be UTF-8).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_core::event::iso8601;
use switchboard_core::ConnectionId;
use switchboard_edge::table::{CloseRequest, ConnHandle, ConnectionTable, Fanout};

use switchboard_cluster::Command;

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
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
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

fn error(status: StatusCode, kind: &'static str, message: &str) -> ApiError {
    ApiError {
        status,
        kind,
        message: message.to_owned(),
    }
}

fn bad_request(message: &str) -> ApiError {
    error(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn fanout_json(f: Fanout) -> Value {
    json!({"recipients": f.recipients, "delivered": f.delivered, "dropped": f.dropped})
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

fn handle_of(table: &ConnectionTable, id: &str) -> Result<Arc<ConnHandle>, ApiError> {
    ConnectionId::parse(id)
        .and_then(|cid| table.get(&cid))
        .filter(|h| h.close_requested().is_none())
        .ok_or_else(|| error(StatusCode::GONE, "GoneException", "Connection is gone"))
}

#[derive(Deserialize, Default)]
struct ExcludeQuery {
    /// Comma-separated connection ids.
    exclude: Option<String>,
}

fn parse_ids(list: Option<&str>) -> Vec<ConnectionId> {
    list.unwrap_or("")
        .split(',')
        .filter_map(|s| ConnectionId::parse(s.trim()))
        .collect()
}

async fn broadcast(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let (data, binary) = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let handles = api.edge.table.all_handles();
    let local = fanout_json(ConnectionTable::fanout(&handles, &data, binary));
    respond(forward(&api, Command::Broadcast { data, binary }, local).await)
}

/// Sends a command to every other node. A failure means other nodes may have missed it:
/// 503, with what this node did in the message.
async fn forward(api: &ConnectionsApi, cmd: Command, local: Value) -> Result<Value, ApiError> {
    match api.edge.backplane.to_all(cmd).await {
        Ok(()) => Ok(local),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            &format!("{e}: done on this node only ({local})"),
        )),
    }
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

async fn send_group(
    State(api): State<Api>,
    Path(group): Path<String>,
    Query(q): Query<ExcludeQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (data, binary) = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let exclude = parse_ids(q.exclude.as_deref());
    let handles = api.edge.table.group_handles(&group, &exclude);
    let local = fanout_json(ConnectionTable::fanout(&handles, &data, binary));
    let cmd = Command::SendGroup {
        group,
        exclude: exclude.iter().map(|id| id.to_string()).collect(),
        data,
        binary,
    };
    respond(forward(&api, cmd, local).await)
}

async fn send_user(
    State(api): State<Api>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (data, binary) = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let handles = api.edge.table.user_handles(&user);
    let local = fanout_json(ConnectionTable::fanout(&handles, &data, binary));
    respond(forward(&api, Command::SendUser { user, data, binary }, local).await)
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_members(
    State(api): State<Api>,
    Path(group): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => match ConnectionId::parse(a) {
            Some(id) => Some(id),
            None => return bad_request("`after` is not a connection id").into_response(),
        },
    };
    let local = api.edge.table.group_page(&group, None, usize::MAX);
    // Members on other nodes, from their registry snapshots (empty on a single node).
    let remote: Vec<ConnectionId> = match api.edge.backplane.snapshots().await {
        Ok(snaps) => snaps
            .iter()
            // An entry left where a session moved from: the node it went to lists it.
            .filter(|s| s.get("movedTo").is_none())
            .filter(|s| {
                s.pointer("/extension/groups")
                    .and_then(Value::as_array)
                    .is_some_and(|g| g.iter().any(|v| v.as_str() == Some(group.as_str())))
            })
            .filter_map(|s| {
                s.get("id")
                    .and_then(Value::as_str)
                    .and_then(ConnectionId::parse)
            })
            .collect(),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                &format!("{e}: members on other nodes cannot be listed"),
            )
            .into_response()
        }
    };
    let all: std::collections::BTreeSet<ConnectionId> = local.into_iter().chain(remote).collect();
    let size = all.len();
    let page: Vec<ConnectionId> = match after {
        Some(a) => all
            .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            .take(limit)
            .copied()
            .collect(),
        None => all.iter().take(limit).copied().collect(),
    };
    let next = if page.len() == limit {
        page.last().map(|id| id.to_string())
    } else {
        None
    };
    json_ok(json!({
        "group": group,
        "size": size,
        "members": page.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "next": next,
    }))
}

fn join_one(table: &ConnectionTable, group: &str, id: &str) -> Result<Value, ApiError> {
    let h = handle_of(table, id)?;
    match table.join(h.info.id, group) {
        Ok(added) => Ok(json!({"joined": added})),
        Err(e) => Err(error(
            StatusCode::CONFLICT,
            "LimitExceededException",
            &e.to_string(),
        )),
    }
}

/// The node to ask about a connection this node does not hold: the one it was opened on,
/// or, for a connection opened here whose session moved on, the one it went to. `None`:
/// this node is the one that knows (it holds the connection, or nobody does).
fn remote_node(api: &ConnectionsApi, cid: ConnectionId) -> Option<u32> {
    if cid.node_tag() != api.edge.ids.node_tag() {
        return Some(cid.node_tag());
    }
    if api.edge.table.get(&cid).is_some() {
        return None;
    }
    api.edge.moved_to(&cid)
}

/// Join or leave for a connection another node holds: `None` if `id` is local.
async fn remote_membership(
    api: &ConnectionsApi,
    group: &str,
    id: &str,
    join: bool,
) -> Option<Response> {
    let cid = ConnectionId::parse(id)?;
    let node = remote_node(api, cid)?;
    let bp = &api.edge.backplane;
    Some(match bp.connection(cid).await {
        Ok(Some(_)) => {
            let cmd = Command::Membership {
                id: id.to_owned(),
                group: group.to_owned(),
                join,
            };
            let sent = if cid.node_tag() == api.edge.ids.node_tag() {
                // Opened here, moved on: in order behind its handover.
                match api.edge.membership_moved(cid, group, join) {
                    true => Ok(()),
                    false => Err(switchboard_cluster::BackplaneError::NotInCluster),
                }
            } else {
                bp.to_node(node, cmd).await
            };
            match sent {
                Ok(()) => json_ok(if join {
                    json!({"joined": true})
                } else {
                    json!({"left": true})
                }),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    &e.to_string(),
                )
                .into_response(),
            }
        }
        Ok(None) | Err(switchboard_cluster::BackplaneError::NotInCluster) => {
            error(StatusCode::GONE, "GoneException", "Connection is gone").into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            &e.to_string(),
        )
        .into_response(),
    })
}

async fn join(State(api): State<Api>, Path((group, id)): Path<(String, String)>) -> Response {
    if let Some(r) = remote_membership(&api, &group, &id, true).await {
        return r;
    }
    match join_one(&api.edge.table, &group, &id) {
        Ok(v) => {
            if let Ok(h) = handle_of(&api.edge.table, &id) {
                api.edge.membership_changed(&h);
            }
            json_ok(v)
        }
        Err(r) => r.into_response(),
    }
}

async fn leave(State(api): State<Api>, Path((group, id)): Path<(String, String)>) -> Response {
    if let Some(r) = remote_membership(&api, &group, &id, false).await {
        return r;
    }
    match handle_of(&api.edge.table, &id) {
        Ok(h) => {
            let left = api.edge.table.leave(h.info.id, &group);
            api.edge.membership_changed(&h);
            json_ok(json!({ "left": left }))
        }
        Err(r) => r.into_response(),
    }
}

/// Closes every handle not already closing; counts those it closed.
fn close_all(handles: &[Arc<ConnHandle>]) -> Value {
    let mut closed = 0;
    for h in handles.iter().filter(|h| h.close_requested().is_none()) {
        h.request_close(CloseRequest::Deleted);
        closed += 1;
    }
    json!({ "closed": closed })
}

async fn close_group(State(api): State<Api>, Path(group): Path<String>) -> Response {
    let local = close_all(&api.edge.table.group_handles(&group, &[]));
    let cmd = Command::CloseMany {
        group: Some(group),
        user: None,
    };
    respond(forward(&api, cmd, local).await)
}

async fn close_user(State(api): State<Api>, Path(user): Path<String>) -> Response {
    let local = close_all(&api.edge.table.user_handles(&user));
    let cmd = Command::CloseMany {
        group: None,
        user: Some(user),
    };
    respond(forward(&api, cmd, local).await)
}

fn connection_json(table: &ConnectionTable, h: &ConnHandle) -> Value {
    let info = &h.info;
    let mut groups: Vec<String> = table
        .groups_of(info.id)
        .iter()
        .map(|g| g.to_string())
        .collect();
    groups.sort();
    json!({
        "connectionId": info.id.to_string(),
        "connectedAt": iso8601(info.connected_at_ms),
        "lastActiveAt": iso8601(h.last_active_ms()),
        "identity": {"sourceIp": info.source_ip.to_string(), "userAgent": info.user_agent},
        "userId": table.user_of(info.id).map(|u| u.to_string()),
        "groups": groups,
        "state": h.state().into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<String, Value>>(),
        "subprotocol": info.subprotocol,
    })
}

async fn get_connection(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match handle_of(&api.edge.table, &id) {
        Ok(h) => json_ok(connection_json(&api.edge.table, &h)),
        Err(r) => match remote_connection_json(&api, &id).await {
            Ok(Some(v)) => json_ok(v),
            Ok(None) => r.into_response(),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                &e.to_string(),
            )
            .into_response(),
        },
    }
}

/// A connection another node holds, from its registry snapshot (so `lastActiveAt` is
/// when it opened, and the memberships are as last recorded).
async fn remote_connection_json(
    api: &ConnectionsApi,
    id: &str,
) -> Result<Option<Value>, switchboard_cluster::BackplaneError> {
    let Some(cid) = ConnectionId::parse(id) else {
        return Ok(None);
    };
    if remote_node(api, cid).is_none() {
        return Ok(None);
    }
    let snap = match api.edge.backplane.connection(cid).await {
        Ok(Some(s)) => s,
        Ok(None) | Err(switchboard_cluster::BackplaneError::NotInCluster) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((info, ext)) = switchboard_core::event::snapshot::from_json(&snap) else {
        return Ok(None);
    };
    let ext = ext.unwrap_or_default();
    Ok(Some(json!({
        "connectionId": info.id.to_string(),
        "connectedAt": iso8601(info.connected_at_ms),
        "lastActiveAt": iso8601(info.connected_at_ms),
        "identity": {"sourceIp": info.source_ip.to_string(), "userAgent": info.user_agent},
        "userId": ext.get("userId").cloned().unwrap_or(Value::Null),
        "groups": ext.get("groups").cloned().unwrap_or_else(|| json!([])),
        "state": ext.get("state").cloned().unwrap_or_else(|| json!({})),
        "subprotocol": info.subprotocol,
    })))
}

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

fn patch_one(table: &ConnectionTable, id: &str, v: &Value) -> Result<Value, ApiError> {
    let h = handle_of(table, id)?;
    let changes = state_changes(v)?;
    h.merge_state(&changes, table.max_state_bytes())
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                &e.to_string(),
            )
        })?;
    Ok(Value::Object(
        h.state()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    ))
}

async fn patch_state(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("body must be JSON").into_response();
    };
    match patch_one(&api.edge.table, &id, &v) {
        Ok(state) => {
            if let Ok(h) = handle_of(&api.edge.table, &id) {
                api.edge.membership_changed(&h);
            }
            json_ok(json!({ "state": state }))
        }
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct UserBody {
    #[serde(rename = "userId")]
    user_id: String,
}

async fn put_user(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(u) = serde_json::from_slice::<UserBody>(&body) else {
        return bad_request(r#"body must be {"userId": "..."}"#).into_response();
    };
    let h = match handle_of(&api.edge.table, &id) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    match api.edge.table.set_user(h.info.id, Some(&u.user_id)) {
        Ok(()) => {
            api.edge.membership_changed(&h);
            json_ok(json!({"userId": u.user_id}))
        }
        Err(e) => bad_request(&e.to_string()).into_response(),
    }
}

async fn delete_user(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match handle_of(&api.edge.table, &id) {
        Ok(h) => {
            let _ = api.edge.table.set_user(h.info.id, None);
            json_ok(json!({"userId": null}))
        }
        Err(r) => r.into_response(),
    }
}

/// One batch operation.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
enum Op {
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
    },
    Broadcast {
        data: Option<String>,
        #[serde(rename = "dataBase64")]
        data_base64: Option<String>,
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
    },
    SetState {
        #[serde(rename = "connectionId")]
        connection_id: String,
        state: Value,
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

async fn run_op(api: &ConnectionsApi, op: Op) -> Result<Value, ApiError> {
    let table = &api.edge.table;
    let too_big = |d: &Bytes| d.len() > api.max_message_bytes;
    match op {
        Op::Send {
            connection_id,
            group,
            user,
            exclude,
            data,
            data_base64,
        } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    "message too large",
                ));
            }
            let (handles, cmd) = match (connection_id, group, user) {
                (Some(id), None, None) => (vec![handle_of(table, &id)?], None),
                (None, Some(g), None) => {
                    let ex: Vec<ConnectionId> = exclude
                        .iter()
                        .filter_map(|s| ConnectionId::parse(s))
                        .collect();
                    let handles = table.group_handles(&g, &ex);
                    let cmd = Command::SendGroup {
                        group: g,
                        exclude,
                        data: data.clone(),
                        binary,
                    };
                    (handles, Some(cmd))
                }
                (None, None, Some(u)) => {
                    let handles = table.user_handles(&u);
                    let cmd = Command::SendUser {
                        user: u,
                        data: data.clone(),
                        binary,
                    };
                    (handles, Some(cmd))
                }
                _ => {
                    return Err(bad_request(
                        "send needs exactly one of connectionId, group, user",
                    ))
                }
            };
            let local = fanout_json(ConnectionTable::fanout(&handles, &data, binary));
            match cmd {
                Some(cmd) => forward(api, cmd, local).await,
                None => Ok(local),
            }
        }
        Op::Broadcast { data, data_base64 } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    "message too large",
                ));
            }
            let local = fanout_json(ConnectionTable::fanout(&table.all_handles(), &data, binary));
            forward(api, Command::Broadcast { data, binary }, local).await
        }
        Op::Join {
            group,
            connection_id,
        } => join_one(table, &group, &connection_id),
        Op::Leave {
            group,
            connection_id,
        } => {
            let h = handle_of(table, &connection_id)?;
            Ok(json!({"left": table.leave(h.info.id, &group)}))
        }
        Op::Close {
            connection_id,
            group,
            user,
        } => match (connection_id, group, user) {
            (Some(id), None, None) => Ok(close_all(&[handle_of(table, &id)?])),
            (None, Some(g), None) => Ok(close_all(&table.group_handles(&g, &[]))),
            (None, None, Some(u)) => Ok(close_all(&table.user_handles(&u))),
            _ => Err(bad_request(
                "close needs exactly one of connectionId, group, user",
            )),
        },
        Op::SetState {
            connection_id,
            state,
        } => patch_one(table, &connection_id, &state).map(|s| json!({"state": s})),
    }
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
        let result = match serde_json::from_value::<Op>(raw) {
            Ok(op) => run_op(&api, op).await,
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

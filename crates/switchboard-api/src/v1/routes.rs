//! One handler per `/v1` route: each turns its request into an [`Op`] and answers with
//! the outcome.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_core::ops::{Op, OpError, Outcome, Target};
use switchboard_core::ConnectionId;
use switchboard_edge::ops::Counted;

use super::answer::{bad_request, respond, run, run_counted, ApiError};
use super::parse::{
    connection_id, counted, counted_query, param, parse_ids, payload, query, state_changes,
};
use super::Api;
use crate::connections::ConnectionsApi;

/// Largest page of a member listing.
const MAX_PAGE: usize = 1000;

pub(super) async fn send_to(
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

pub(super) async fn broadcast(
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

pub(super) async fn send_group(
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

pub(super) async fn send_user(
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

pub(super) async fn list_members(
    State(api): State<Api>,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond(members_page(&api, group, q).await)
}

pub(super) async fn members_page(
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

pub(super) async fn join(
    State(api): State<Api>,
    Path((group, id)): Path<(String, String)>,
) -> Response {
    respond(membership(&api, group, &id, true).await)
}

pub(super) async fn leave(
    State(api): State<Api>,
    Path((group, id)): Path<(String, String)>,
) -> Response {
    respond(membership(&api, group, &id, false).await)
}

pub(super) async fn membership(
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

pub(super) async fn close_group(
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

pub(super) async fn close_user(
    State(api): State<Api>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    close_many(&api, Target::User { user }, q).await
}

pub(super) async fn close_many(api: &ConnectionsApi, to: Target, q: Option<String>) -> Response {
    respond(
        async {
            let counted = counted_query(q)?;
            run_counted(api, Op::close(to), counted).await
        }
        .await,
    )
}

pub(super) async fn get_connection(State(api): State<Api>, Path(id): Path<String>) -> Response {
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

pub(super) async fn patch_state(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
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
pub(super) struct UserBody {
    #[serde(rename = "userId")]
    user_id: String,
}

pub(super) async fn put_user(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
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

pub(super) async fn delete_user(State(api): State<Api>, Path(id): Path<String>) -> Response {
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

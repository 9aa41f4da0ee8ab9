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
//!
//! The parts: `routes.rs` (one handler per route), `batch.rs` (`/v1/batch`), `parse.rs`
//! (query strings, payloads, ids and state patches from a request), `answer.rs` (an
//! [`Outcome`] or [`OpError`] as JSON or an AWS-shaped error).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

use crate::connections::{admit, aws_error, read_body, ConnectionsApi};

mod answer;
mod batch;
mod parse;
mod routes;

use self::batch::batch;
use self::routes::{
    broadcast, close_group, close_user, delete_user, get_connection, join, leave, list_members,
    patch_state, put_user, send_group, send_user,
};

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

#[cfg(test)]
mod tests;

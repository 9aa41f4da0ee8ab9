//! The management listener: Prometheus `/metrics`, `/healthz`, `/readyz`, and the AWS
//! `@connections` API ([`connections`], authenticated with SigV4 ([`sigv4`]) or a bearer
//! token).
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 while the node
//! accepts connections and its backplane is usable, and 503 once shutdown has begun, so a
//! load balancer stops sending new clients before connections are closed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use switchboard_cluster::Backplane;

pub mod connections;
pub mod sigv4;
pub mod v1;

/// What the management endpoints read.
pub struct ApiState {
    /// Every metric of the node.
    pub registry: Registry,
    /// False once shutdown has begun.
    pub accepting: AtomicBool,
    /// The backplane, for readiness.
    pub backplane: Arc<dyn Backplane>,
}

/// The management router: fixed paths first, everything else is an `@connections` path.
pub fn router(state: Arc<ApiState>, connections: Arc<connections::ConnectionsApi>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(v1::router(connections.clone()))
        .fallback_service(
            Router::new()
                .fallback(connections::handle)
                .with_state(connections),
        )
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed\n".to_owned(),
        ),
    }
}

async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    if !state.accepting.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !state.backplane.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "backplane unavailable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

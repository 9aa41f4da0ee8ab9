//! Who may connect: the `[authorizer]` of the configuration, run on each handshake
//! before `$connect`.
//!
//! An [`Authorizer`] looks at a [`Handshake`] and answers an [`Identity`] (which becomes
//! `requestContext.authorizer` on every later event of the connection) or an
//! [`AuthError`], whose [`status`](AuthError::status) and [`body`](AuthError::body) the
//! handshake answers with: 401 `{"message":"Unauthorized"}` when no credential was
//! presented, 403 `{"message":"Forbidden"}` when it was refused, 500
//! `{"message":"Internal server error"}` when the authorizer itself could not decide.
//!
//! Two kinds:
//!
//! - **`jwt`**: a token from `Authorization: Bearer`, a query parameter or a
//!   `Sec-WebSocket-Protocol` entry, verified on `ring` (HS256, RS256, ES256) with keys
//!   from a secret, PEM files, a JWKS file or a JWKS URL kept fresh in the background
//!   (see the `jwks` module for when it is fetched). The checks themselves are sans-IO
//!   (`jwt`, `keys`, `source`) and take the clock as an argument.
//! - **`request`**: AWS's REQUEST authorizer: a configured function gets the handshake
//!   as AWS's REQUEST authorizer event and answers a policy; answers are cached per
//!   identity (the identity sources' values), bounded in time and count.
//!
//! A JWKS URL that cannot be fetched at start is not fatal: the gateway starts, retries
//! in the background, and meanwhile answers 500 to tokens that need those keys (it is
//! the gateway's failure, not the client's). A JWKS file or PEM key that cannot be read
//! fails the start.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use switchboard_core::config::{AuthorizerConfig, ConfigError};
use switchboard_core::event::ConnectionInfo;
use switchboard_functions::Invoker;

mod cache;
mod error;
mod fetch;
mod jwks;
mod jwt;
mod jwt_authorizer;
mod keys;
mod request;
mod source;

pub use error::{AuthError, Failure, Missing, Refusal};
pub use fetch::{JWKS_FETCH_TIMEOUT, JWKS_MAX_BYTES};
pub use jwks::UNKNOWN_KID_REFRESH_INTERVAL;
pub use jwt::{MAX_GROUPS, MAX_NUMERIC_DATE, MAX_TOKEN_BYTES};
pub use keys::{MAX_JWKS_KEYS, MAX_KID_BYTES};
pub use request::AnswerError;

/// What an authorizer sees of a handshake.
#[derive(Debug, Clone, Copy)]
pub struct Handshake<'a> {
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The query parameters, percent-decoded, in order.
    pub query: &'a [(String, String)],
    /// The `Sec-WebSocket-Protocol` entries offered, trimmed, in order.
    pub offered_protocols: &'a [String],
    /// The connection as the `$connect` event will describe it (the REQUEST event's
    /// headers and `requestContext` come from it).
    pub connection: &'a Arc<ConnectionInfo>,
    /// The request id of this handshake.
    pub request_id: &'a str,
    /// When the handshake arrived, epoch milliseconds.
    pub request_time_ms: u64,
}

/// Who connected, as the authorizer established it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The principal: the user id claim, else `sub` (JWT); `principalId` (REQUEST).
    pub principal_id: String,
    /// The connection's user id, if the credential names one.
    pub user_id: Option<String>,
    /// Groups the connection joins (at most [`MAX_GROUPS`]).
    pub groups: Vec<String>,
    /// Becomes `requestContext.authorizer` on every event:
    /// `{principalId, integrationLatency, ...context}`. Values are strings, numbers or
    /// booleans only, as AWS allows.
    pub context: Map<String, Value>,
    /// When the credential expires (JWT `exp`), for the optional close with 1008.
    pub expires_at: Option<SystemTime>,
    /// The `Sec-WebSocket-Protocol` entry that carried the token, if any. The gateway
    /// echoes it when it selects no other protocol, since browsers fail a handshake whose
    /// offered protocols get no answer.
    pub token_protocol: Option<String>,
}

/// A configured authorizer. Cheap to share behind an `Arc`; dropping it stops its
/// background JWKS refresh.
pub struct Authorizer {
    kind: Kind,
}

enum Kind {
    Jwt(jwt_authorizer::JwtAuthorizer),
    Request(request::RequestAuthorizer),
}

impl std::fmt::Debug for Authorizer {
    // Keys and secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Jwt(_) => "jwt",
            Kind::Request(_) => "request",
        };
        f.debug_struct("Authorizer")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Builds the authorizer; the error names the configuration key.
    ///
    /// `request_function`: for `kind = "request"`, the invoker of the configured
    /// function (required there, ignored for `jwt`). For `jwt`, PEM and JWKS files are
    /// read now and a JWKS URL fetched once (a fetch failure is a warning, see the crate
    /// docs); the background refresh is spawned on the current tokio runtime.
    pub async fn new(
        cfg: &AuthorizerConfig,
        request_function: Option<Arc<dyn Invoker>>,
    ) -> Result<Self, ConfigError> {
        let kind = match cfg {
            AuthorizerConfig::Jwt(jwt) => Kind::Jwt(jwt_authorizer::JwtAuthorizer::new(jwt).await?),
            AuthorizerConfig::Request(req) => {
                Kind::Request(request::RequestAuthorizer::new(req, request_function)?)
            }
        };
        Ok(Self { kind })
    }

    /// What [`Authorizer::new`] refuses, decided without fetching or spawning anything:
    /// the settings, the key files (read and parsed), the identity sources. Whether a
    /// REQUEST authorizer's function exists is the caller's to check (it holds the
    /// functions). For `switchboard check-config`, and for `serve` before it binds.
    pub fn check(cfg: &AuthorizerConfig) -> Result<(), ConfigError> {
        match cfg {
            AuthorizerConfig::Jwt(jwt) => jwt_authorizer::JwtAuthorizer::prepare(jwt).map(drop),
            AuthorizerConfig::Request(req) => request::RequestAuthorizer::sources(req).map(drop),
        }
    }

    /// Authorizes one handshake. The future ends within the REQUEST function's own
    /// timeout, or [`JWKS_FETCH_TIMEOUT`] when an unknown `kid` triggers a JWKS fetch.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is harmless: a JWKS fetch it started runs on in its own task
    /// for the callers waiting on it, and a REQUEST invocation it started is abandoned
    /// without caching anything.
    pub async fn authorize(&self, hs: &Handshake<'_>) -> Result<Identity, AuthError> {
        let started = tokio::time::Instant::now();
        let mut identity = match &self.kind {
            Kind::Jwt(jwt) => jwt.authorize(hs).await?,
            Kind::Request(req) => req.authorize(hs).await?,
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        identity
            .context
            .insert("integrationLatency".into(), Value::from(latency_ms));
        Ok(identity)
    }

    /// Whether connections close with 1008 when their credential expires
    /// ([`Identity::expires_at`]).
    pub fn close_on_expiry(&self) -> bool {
        match &self.kind {
            Kind::Jwt(jwt) => jwt.close_on_expiry(),
            Kind::Request(_) => false,
        }
    }
}

/// The entries AWS allows in an authorizer context: strings, numbers and booleans.
/// `principalId` and `integrationLatency` are the gateway's to set.
fn scalar_context(source: Map<String, Value>) -> Map<String, Value> {
    source
        .into_iter()
        .filter(|(k, v)| {
            matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                && k != "principalId"
                && k != "integrationLatency"
        })
        .collect()
}

#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    use switchboard_core::event::ConnectionInfo;
    use switchboard_core::id::IdGenerator;

    /// An empty header map and a connection whose CONNECT headers carry
    /// `Authorization: Bearer abc`.
    pub(crate) fn handshake_parts() -> (http::HeaderMap, Arc<ConnectionInfo>) {
        let conn = ConnectionInfo {
            id: IdGenerator::new("t").connection_id(),
            connected_at_ms: 1_731_324_924_553,
            source_ip: "1.2.3.4".parse().expect("an address"),
            user_agent: Some("test".into()),
            path: "/".into(),
            headers: vec![
                ("host".into(), "example".into()),
                ("authorization".into(), "Bearer abc".into()),
            ],
            query: Vec::new(),
            subprotocol: None,
            tls: false,
            port: 8080,
            authorizer: None,
        };
        (http::HeaderMap::new(), Arc::new(conn))
    }
}

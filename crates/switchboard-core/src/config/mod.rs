//! The configuration tree. Every field has a default; `docs/config.md` documents each one.
//!
//! Parsing (TOML, environment overrides) lives in the binary; this module holds the types
//! and [`Config::validate`], which names the offending key in every error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod access;
mod authorizer;
mod cluster;
mod functions;
mod limits;
mod management;
mod resume;
mod routes;
mod server;
mod validate;

pub use self::access::{AccessConfig, OnUserLimit};
pub use self::authorizer::{AuthorizerConfig, JwtConfig, RequestAuthorizerConfig, TokenSource};
pub use self::cluster::{
    derive_namespace, is_valid_namespace, BackplaneKind, ClusterConfig, NAMESPACE_MAX,
};
pub use self::functions::{
    BuiltinName, FunctionConfig, HttpFunctionConfig, HttpVersion, LambdaFunctionConfig,
};
pub use self::limits::{
    CompressionConfig, KeepaliveConfig, LimitsConfig, DEFAULT_MAX_REQUEST_HEADERS,
    DEFAULT_MAX_REQUEST_HEAD_BYTES,
};
pub use self::management::{Credential, ManagementAuth, ManagementConfig};
pub use self::resume::ResumeConfig;
pub use self::routes::{BinaryMode, RouteConfig, RouterConfig};
pub use self::server::{ApiConfig, LogFormat, ServerConfig, StaticConfig, TlsConfig};
pub use self::validate::{
    MAX_DURATION_MS, MAX_DURATION_SECS, MAX_HTTP_CONCURRENCY, MAX_LAMBDA_WORKERS,
    MAX_QUEUE_MESSAGES,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners, identity, logging, shutdown.
    pub server: ServerConfig,
    /// Size, time and rate limits.
    pub limits: LimitsConfig,
    /// Server pings.
    pub keepalive: KeepaliveConfig,
    /// permessage-deflate.
    pub compression: CompressionConfig,
    /// Optional TLS for the WebSocket listener.
    pub tls: Option<TlsConfig>,
    /// Optional static files served on the WebSocket listener.
    #[serde(rename = "static")]
    pub static_files: Option<StaticConfig>,
    /// The API identity that appears in events (`stage`, `domainName`, `apiId`).
    pub api: ApiConfig,
    /// Route selection.
    pub router: RouterConfig,
    /// Route key → route. Keys: `$connect`, `$disconnect`, `$default`, or custom keys
    /// (which must not start with `$`).
    pub routes: BTreeMap<String, RouteConfig>,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// The management API (`@connections`) and its authentication.
    pub management: ManagementConfig,
    /// Authentication of connections at the handshake. Default: none.
    pub authorizer: Option<AuthorizerConfig>,
    /// Several nodes acting as one gateway.
    pub cluster: ClusterConfig,
    /// Resumable sessions for clients of the `switchboard.v1` subprotocol.
    pub resume: ResumeConfig,
    /// Which origins and client addresses may open a WebSocket.
    pub access: AccessConfig,
}

/// A configuration that does not make sense; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `limits.max_message_bytes`.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// `name` as one segment of a dotted key: as it is when TOML allows it bare, else quoted.
/// The form [`ConfigError::key`] uses for names of functions and routes.
pub fn table_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_owned()
    } else {
        quoted_key(name)
    }
}

/// `name` as a quoted TOML key (a basic string).
fn quoted_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 7230 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;

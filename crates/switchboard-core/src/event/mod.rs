//! What a function is invoked with, and what it answers.
//!
//! These are the gateway's own types; each function kind turns them into its wire form
//! (the AWS API Gateway event JSON for HTTP and Lambda functions, nothing at all for the
//! builtins), so a builtin on the hot path never builds JSON.
//!
//! The AWS wire form is in `aws.rs`; the snapshot the cluster registry keeps of a
//! connection in `snapshot.rs`.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::id::ConnectionId;

mod aws;
pub mod snapshot;

pub use self::aws::{aws_header_case, aws_request_time, iso8601};

/// What the gateway knows about a connection from its handshake. Shared by every event of
/// the connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The connection id.
    pub id: ConnectionId,
    /// When the handshake was accepted, epoch milliseconds.
    pub connected_at_ms: u64,
    /// The client's address (from `X-Forwarded-For` only when the peer is a trusted proxy).
    pub source_ip: IpAddr,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The handshake's request path (without the query).
    pub path: String,
    /// The handshake's headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The query string's parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<String>,
    /// Whether the client connected over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    /// The listener's port (`X-Forwarded-Port`).
    pub port: u16,
    /// `requestContext.authorizer` of every event after an authorizer allowed the
    /// connection.
    pub authorizer: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The three kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The handshake (`$connect`); the answer decides whether the upgrade happens.
    Connect,
    /// A message from the client.
    Message,
    /// The connection ended (`$disconnect`).
    Disconnect,
    /// A REQUEST authorizer is asked about a handshake (before `$connect`).
    Authorize,
}

impl EventKind {
    /// The AWS `eventType` string.
    pub fn as_aws(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Message => "MESSAGE",
            Self::Disconnect => "DISCONNECT",
            Self::Authorize => "CONNECT",
        }
    }
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The bytes.
    pub data: Bytes,
    /// Whether it came (or goes) as a binary frame.
    pub binary: bool,
}

/// One invocation of a function.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Which event.
    pub kind: EventKind,
    /// The selected route key.
    pub route_key: Arc<str>,
    /// The connection.
    pub connection: Arc<ConnectionInfo>,
    /// A request id, unique per invocation.
    pub request_id: String,
    /// When the event happened, epoch milliseconds.
    pub request_time_ms: u64,
    /// The message (MESSAGE only).
    pub body: Option<Payload>,
    /// Close code and reason (DISCONNECT only).
    pub disconnect: Option<(u16, String)>,
    /// switchboard's additions for this connection (user, groups, state), shown as
    /// `requestContext.switchboard` when any is set.
    pub extension: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A function's answer, Lambda-proxy shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionResponse {
    /// HTTP-like status: 2xx accepts a `$connect`.
    pub status: u16,
    /// Headers (for `$connect`, added to the handshake response).
    pub headers: Vec<(String, String)>,
    /// A body (sent back to the caller on two-way routes).
    pub body: Option<Payload>,
    /// switchboard's extension fields beside `statusCode`.
    pub extension: ResponseExtension,
}

/// Fields a function may return beside `statusCode` to change its connection:
/// `{"statusCode": 200, "groups": ["room:lobby"], "userId": "ada", "state": {"k": "v"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseExtension {
    /// Groups to join.
    pub groups: Vec<String>,
    /// The connection's user.
    pub user_id: Option<String>,
    /// State to merge (`None` removes the key).
    pub state: Vec<(String, Option<String>)>,
}

impl ResponseExtension {
    /// Whether the function asked for nothing.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.user_id.is_none() && self.state.is_empty()
    }

    /// Reads the extension fields from a response object's top level.
    pub fn from_json(obj: &serde_json::Map<String, serde_json::Value>) -> Self {
        use serde_json::Value;
        let groups = match obj.get("groups") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let user_id = obj.get("userId").and_then(Value::as_str).map(str::to_owned);
        let state = match obj.get("state") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    };
                    (k.clone(), v)
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            groups,
            user_id,
            state,
        }
    }
}

impl FunctionResponse {
    /// 200 with no body.
    pub fn ok() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: None,
            extension: ResponseExtension::default(),
        }
    }
}

/// The fields of `requestContext` that come from configuration.
#[derive(Debug, Clone)]
pub struct ApiIdentity {
    /// `stage`.
    pub stage: String,
    /// `domainName`.
    pub domain_name: String,
    /// `apiId`.
    pub api_id: String,
}

#[cfg(test)]
mod tests;

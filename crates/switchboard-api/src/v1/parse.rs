//! The pieces of a request: its query string, payload, connection ids and state patch,
//! each refused with a 400 (or, for an id that names no connection, a 410) when it is not
//! valid.

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde_json::Value;
use switchboard_core::ops::OpError;
use switchboard_core::ConnectionId;
use switchboard_edge::ops::Counted;

use super::answer::{bad_request, ApiError};

/// What a query string that may only carry `wait` asks the answer to count.
pub(super) fn counted_query(q: Option<String>) -> Result<Counted, ApiError> {
    counted(&query(q, &["wait"])?)
}

/// `?wait=true` (or `1`): count every node's part; `false`, `0` or absent: this node's.
pub(super) fn counted(pairs: &[(String, String)]) -> Result<Counted, ApiError> {
    match param(pairs, "wait") {
        None | Some("false") | Some("0") => Ok(Counted::Here),
        Some("true") | Some("1") => Ok(Counted::Cluster),
        Some(_) => Err(bad_request("`wait` must be true or false")),
    }
}

/// The payload of a send: binary for `application/octet-stream`, else UTF-8 text.
pub(super) fn payload(headers: &HeaderMap, body: Bytes) -> Result<(Bytes, bool), ApiError> {
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
pub(super) fn connection_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(id).ok_or_else(|| OpError::Gone.into())
}

/// The query string's parameters; `allowed` names the only keys accepted.
pub(super) fn query(
    raw: Option<String>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
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

pub(super) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Comma-separated connection ids; one that cannot be parsed is refused.
pub(super) fn parse_ids(list: Option<&str>) -> Result<Vec<ConnectionId>, ApiError> {
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

/// A state patch: an object of strings, `null` removing a key.
pub(super) fn state_changes(v: &Value) -> Result<Vec<(String, Option<String>)>, ApiError> {
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

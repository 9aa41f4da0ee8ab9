//! The AWS `@connections` management API, wire compatible with API Gateway's
//! (`apigatewaymanagementapi`, service model 2018-11-29), so boto3 and the AWS JS SDK work
//! against it unmodified.
//!
//! Paths: `/{stage}/@connections/{id}` and `/@connections/{id}`, with `@` also accepted as
//! `%40` and `=` in ids as `%3D`. Errors carry `x-amzn-ErrorType` (which botocore reads
//! first) and a JSON `{"message": ...}` body.
//!
//! Authentication is decided from the request head before any of the body is read
//! ([`admit`]): a missing or wrong bearer token, and a missing, malformed, stale or unknown
//! SigV4 credential, are refused with 403 while the body is still unsent. A SigV4 body is
//! then hashed as it streams in, at most the route's body limit ([`read_body`]), and the
//! signature or declared payload hash checked at its end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use switchboard_core::config::{ManagementAuth, ManagementConfig};
use switchboard_core::event::iso8601;
use switchboard_core::ops::{Op, OpError, Outcome, Target};
use switchboard_core::ConnectionId;
use switchboard_edge::EdgeInner;

use crate::{sigv4, ManagementMetrics};

/// What the `@connections` handlers need.
pub struct ConnectionsApi {
    /// The node's edge (its connection table).
    pub edge: Arc<EdgeInner>,
    /// Authentication settings.
    pub auth: ManagementConfig,
    /// The configured stage; other stages are 404.
    pub stage: String,
    /// Largest message a POST may carry.
    pub max_message_bytes: usize,
    /// Refusals, by reason.
    pub metrics: ManagementMetrics,
}

/// An AWS-shaped error response.
pub(crate) fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert("x-amzn-errortype", HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn gone(id: &str) -> Response {
    aws_error(
        StatusCode::GONE,
        "GoneException",
        &format!("Connection {id} is gone"),
    )
}

/// The AWS-shaped answer for a failed operation: its status and type decided in one place
/// ([`OpError`]).
pub(crate) fn op_error(e: &OpError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    aws_error(status, e.aws_type(), &e.to_string())
}

/// Why a path names no connection of this API: both answer 404 `NotFoundException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum PathError {
    /// Not an `@connections` path (or not percent-decodable).
    #[error("Not Found")]
    NotConnections,
    /// An `@connections` path of another stage.
    #[error("Unknown stage")]
    OtherStage,
}

impl PathError {
    fn respond(self) -> Response {
        aws_error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            &self.to_string(),
        )
    }
}

/// The connection id a management path names, if it is an `@connections` path of our
/// stage.
fn parse_path(raw: &str, stage: &str) -> Result<String, PathError> {
    // Empty segments are skipped: the JS SDK sends `/prod//@connections/...` for an
    // endpoint configured with a trailing slash.
    let segs: Vec<String> = raw
        .split('/')
        .filter(|s| !s.is_empty())
        .map(switchboard_core::text::percent_decode)
        .collect::<Option<_>>()
        .ok_or(PathError::NotConnections)?;
    match segs.as_slice() {
        [c, id] if c == "@connections" && !id.is_empty() => Ok(id.clone()),
        [s, c, id] if c == "@connections" && !id.is_empty() => {
            if s == stage {
                Ok(id.clone())
            } else {
                Err(PathError::OtherStage)
            }
        }
        _ => Err(PathError::NotConnections),
    }
}

/// A caller whose request head passed authentication.
pub(crate) enum Admission {
    /// Nothing left to check: `auth = "none"`, or a bearer token.
    Open,
    /// SigV4: the body must still match what was signed.
    Signed(Box<sigv4::PendingBody>),
}

/// Why a management request was refused before its handler ran. Picks the answer and
/// the metric label in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credentials, or a bearer token that is not configured (403).
    Forbidden(&'static str),
    /// A SigV4 credential refused from the head: missing, malformed, stale, unknown, or
    /// a signature that does not match (403).
    Signature(sigv4::Error),
    /// The body is not what was signed (403).
    BodyNotSigned(sigv4::Error),
    /// The body is over the route's limit, declared or as it arrived (413).
    BodyTooLarge,
    /// The body could not be read (400).
    BodyUnreadable,
}

impl Refusal {
    /// The AWS-shaped answer, counted in `switchboard_management_refused_total`.
    pub(crate) fn respond(self, metrics: &ManagementMetrics) -> Response {
        let (reason, status, kind, message) = match self {
            Refusal::Forbidden(m) => (
                "forbidden",
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                m.to_owned(),
            ),
            Refusal::Signature(e) => (
                "forbidden",
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                e.to_string(),
            ),
            Refusal::BodyNotSigned(e) => (
                "body_not_signed",
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                e.to_string(),
            ),
            Refusal::BodyTooLarge => (
                "body_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                "Request entity too large".to_owned(),
            ),
            Refusal::BodyUnreadable => (
                "body_unreadable",
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                "The request body could not be read".to_owned(),
            ),
        };
        metrics.refuse(reason);
        aws_error(status, kind, &message)
    }
}

/// The path exactly as received, kept by the door when it drops empty segments before
/// routing: some signers sign it as sent.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedPath(pub String);

/// Checks the caller from the request head alone, before any of the body is read.
pub(crate) fn admit(api: &ConnectionsApi, parts: &Parts) -> Result<Admission, Refusal> {
    let headers = &parts.headers;
    if api.auth.auth == ManagementAuth::None {
        return Ok(Admission::Open);
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Refusal::Forbidden("Missing Authentication Token"));
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let ok = api
            .auth
            .bearer_tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), token.trim().as_bytes()));
        return if ok {
            Ok(Admission::Open)
        } else {
            Err(Refusal::Forbidden("Invalid bearer token"))
        };
    }
    let head = sigv4::Head {
        method: parts.method.as_str(),
        raw_path: parts
            .extensions
            .get::<ReceivedPath>()
            .map_or(parts.uri.path(), |p| p.0.as_str()),
        raw_query: parts.uri.query(),
        headers,
    };
    let creds = &api.auth.credentials;
    let secret_for = |akid: &str| {
        creds
            .iter()
            .find(|c| c.access_key_id == akid)
            .map(|c| c.secret_access_key.clone())
    };
    sigv4::verify_head(
        &head,
        secret_for,
        SystemTime::now(),
        Duration::from_secs(api.auth.clock_skew_secs),
    )
    .map(|pending| Admission::Signed(Box::new(pending)))
    .map_err(Refusal::Signature)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a body of at most `max` bytes, feeding it to the signature check as it arrives;
/// a `Content-Length` over `max` is refused before a byte is read.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    max: usize,
    admission: Admission,
) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    let mut pending = match admission {
        Admission::Open => None,
        Admission::Signed(p) => Some(p),
    };
    // The first piece is kept as it came; only a body in several pieces is copied.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BodyUnreadable)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // `rest` holds the first piece too, once there is more than one.
        let len = match &first {
            Some(f) if rest.is_empty() => f.len(),
            _ => rest.len(),
        };
        if data.len() > max - len {
            return Err(Refusal::BodyTooLarge);
        }
        if let Some(p) = pending.as_mut() {
            p.update(&data);
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if rest.is_empty() {
                    // At most `max`: a larger declared length was refused above.
                    let expected = declared.map_or(0, |n| n as usize);
                    rest.reserve(expected.max(f.len() + data.len()));
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    if let Some(p) = pending {
        p.finish().map_err(Refusal::BodyNotSigned)?;
    }
    Ok(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    })
}

/// Handles every request the other management routes did not match.
pub async fn handle(State(api): State<Arc<ConnectionsApi>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let (method, headers) = (parts.method.clone(), &parts.headers);
    let id_text = match parse_path(parts.uri.path(), &api.stage) {
        Ok(id) => id,
        Err(e) => return e.respond(),
    };
    let admission = match admit(&api, &parts) {
        Ok(a) => a,
        Err(refused) => return refused.respond(&api.metrics),
    };
    let body = match read_body(headers, body, api.max_message_bytes, admission).await {
        Ok(b) => b,
        Err(refused) => return refused.respond(&api.metrics),
    };
    let Some(id) = ConnectionId::parse(&id_text) else {
        return gone(&id_text);
    };
    let op = match method {
        Method::POST => {
            if body.len() > api.max_message_bytes {
                return aws_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    "Request entity too large",
                );
            }
            let binary = match headers.get("x-switchboard-frame").map(|v| v.as_bytes()) {
                Some(b"binary") => true,
                Some(b"text") => false,
                _ => std::str::from_utf8(&body).is_err(),
            };
            Op::Send {
                to: Target::Connection { id },
                data: body,
                binary,
            }
        }
        Method::GET => Op::Get { id },
        Method::DELETE => Op::close(Target::Connection { id }),
        _ => {
            return aws_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "Use POST, GET or DELETE",
            )
        }
    };
    match api.edge.apply_op(op).await {
        Ok(Outcome::Connection { view }) => {
            let mut identity = serde_json::Map::new();
            identity.insert("sourceIp".into(), view.source_ip.into());
            if let Some(ua) = view.user_agent {
                identity.insert("userAgent".into(), ua.into());
            }
            let body = serde_json::json!({
                "connectedAt": iso8601(view.connected_at_ms),
                "identity": identity,
                "lastActiveAt": iso8601(view.last_active_at_ms),
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Ok(_) if method == Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => StatusCode::OK.into_response(),
        Err(OpError::Gone) => gone(&id_text),
        Err(OpError::PayloadTooLarge) => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Request entity too large",
        ),
        Err(e) => op_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_every_encoding() {
        for p in [
            "/prod/@connections/abc=",
            "/prod/%40connections/abc%3D",
            "/@connections/abc%3D",
            "/%40connections/abc=",
            "/prod//@connections/abc%3D",
        ] {
            assert_eq!(parse_path(p, "prod"), Ok("abc=".to_string()), "{p}");
        }
        let missing = Err(PathError::NotConnections);
        assert_eq!(
            parse_path("/dev/@connections/abc", "prod"),
            Err(PathError::OtherStage)
        );
        assert_eq!(parse_path("/prod/@connections/", "prod"), missing);
        assert_eq!(parse_path("/prod/other/abc", "prod"), missing);
        assert_eq!(parse_path("/prod/@connections/%zz", "prod"), missing);
        for (e, message) in [
            (PathError::OtherStage, "Unknown stage"),
            (PathError::NotConnections, "Not Found"),
        ] {
            let r = e.respond();
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert_eq!(r.headers()["x-amzn-ErrorType"], "NotFoundException");
            assert_eq!(e.to_string(), message);
        }
    }
}

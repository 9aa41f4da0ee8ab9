//! The handshake decision: whether a request opens a WebSocket, and on which terms.
//!
//! [`decide`] is a pure function of the request head, the peer address, the edge's
//! [`Policy`] and whether the edge is shutting down: no I/O, no clock, no shared state.
//! It answers [`Decision::Accept`] with everything negotiated (accept key, source address,
//! subprotocol, permessage-deflate, resume token), [`Decision::Static`] for a page under
//! `[static]`, or [`Decision::Reject`]. Access control comes first: a client address
//! outside `[access] allow_ips`/`deny_ips` is refused before anything else is read, and a
//! handshake from an origin `[access] allowed_origins` does not allow (by default, one
//! other than the request's `Host`) before any stateful step. The stateful steps at the
//! door run after it in `server::handle`, in this order: the per-IP token bucket, a
//! session's resume, the per-IP connection count, the connection slot, the authorizer,
//! the per-user connection count and `$connect`; all but the authorizer and `$connect`
//! refuse with a [`Reject`] too, and the authorizer's refusals are answered by
//! [`auth_refusal`], so every status, body and metric label the gateway picks for a
//! refusal at the door is chosen here (`$connect` refuses with the function's own).

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use switchboard_core::access::{origin_allowed, IpRules, OriginPattern};
use switchboard_ws::deflate::{self, DeflateConfig, DeflateParams};
use switchboard_ws::handshake as ws;

use crate::session::PROTOCOL as SESSION_PROTOCOL;

/// What the decision needs of the configuration, borrowed from the edge's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// `server.subprotocols`, most preferred first.
    pub subprotocols: &'a [String],
    /// `server.trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: &'a [ipnet::IpNet],
    /// `[compression]`, when enabled.
    pub deflate: Option<&'a DeflateConfig>,
    /// `[resume] enabled`: a client offering the session protocol gets a session.
    pub resume: bool,
    /// `[static]` is configured: plain GET and HEAD requests are pages.
    pub static_files: bool,
    /// `limits.max_request_head_bytes` and `limits.max_request_headers`.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// `access.allowed_origins` (empty: same origin only) and `access.require_origin`.
    pub allowed_origins: &'a [OriginPattern],
    pub require_origin: bool,
    /// `access.allow_ips` and `access.deny_ips`, on the client address.
    pub ips: IpRules<'a>,
}

/// What to do with a request.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// A WebSocket handshake to answer with 101, once the stateful steps agree.
    Accept(Accept),
    /// Not a handshake: serve the request path from `[static]` (`head`: a HEAD request).
    Static { head: bool },
    /// Refused.
    Reject(Reject),
}

/// The terms of an accepted handshake.
#[derive(Debug, PartialEq)]
pub(crate) struct Accept {
    /// `Sec-WebSocket-Accept`.
    pub accept_key: HeaderValue,
    /// The client's address (the peer, or from `X-Forwarded-For` through trusted proxies).
    pub source_ip: IpAddr,
    /// The chosen subprotocol: the session protocol for a session, else the server's most
    /// preferred one the client offered.
    pub subprotocol: Option<String>,
    /// The agreed permessage-deflate parameters and the `Sec-WebSocket-Extensions` value.
    pub deflate: Option<(DeflateParams, HeaderValue)>,
    /// The client offered the session protocol and `[resume]` is on.
    pub session: bool,
    /// A session the client asks to resume (only with `session`).
    pub resume: Option<Resume>,
    /// The query parameters functions and authorizers see: with `session`, the resume
    /// parameters (a credential) are left out.
    pub query: Vec<(String, String)>,
}

/// `?sb_session=<token>&sb_last=<seq>` of a resume.
#[derive(Debug, PartialEq)]
pub(crate) struct Resume {
    pub token: String,
    /// The last sequence number the client received (0 when absent or unreadable).
    pub after: u64,
}

/// Why a handshake is refused at the door (the authorizer and `$connect` refuse with
/// their own statuses and labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not an upgrade to WebSocket (and not a page): 426.
    NotWebSocket,
    /// An upgrade with a method other than GET: 405.
    Method,
    /// An upgrade over HTTP/1.0: 400 (RFC 6455 §4.1 needs HTTP/1.1; hyper would not
    /// upgrade the connection anyway).
    HttpVersion,
    /// `Sec-WebSocket-Version` other than 13: 426 naming the one spoken.
    WsVersion,
    /// `Sec-WebSocket-Key` missing or not base64 of 16 bytes: 400.
    Key,
    /// Request head over `limits.max_request_head_bytes` or `max_request_headers`: 431.
    HeadTooLarge,
    /// The edge is shutting down: 503.
    ShuttingDown,
    /// Over `limits.connections_per_ip_per_sec`: 429.
    RateLimited,
    /// `limits.max_connections` reached: 503.
    MaxConnections,
    /// A resume of a session attached to another connection: 409.
    SessionInUse,
    /// The client address is outside `access.allow_ips` or inside `access.deny_ips`: 403.
    IpDenied,
    /// A handshake from an origin `access.allowed_origins` does not allow, or without
    /// `Origin` under `access.require_origin`: 403.
    Origin,
    /// The client address holds `access.max_connections_per_ip` connections: 429.
    IpLimit,
    /// The user holds `access.max_connections_per_user` connections (with
    /// `on_user_limit = "reject"`): 429.
    UserLimit,
}

impl Reject {
    /// Every refusal, for tests.
    #[cfg(test)]
    pub const ALL: [Reject; 14] = [
        Reject::NotWebSocket,
        Reject::Method,
        Reject::HttpVersion,
        Reject::WsVersion,
        Reject::Key,
        Reject::HeadTooLarge,
        Reject::ShuttingDown,
        Reject::RateLimited,
        Reject::MaxConnections,
        Reject::SessionInUse,
        Reject::IpDenied,
        Reject::Origin,
        Reject::IpLimit,
        Reject::UserLimit,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            Reject::NotWebSocket | Reject::WsVersion => StatusCode::UPGRADE_REQUIRED,
            Reject::Method => StatusCode::METHOD_NOT_ALLOWED,
            Reject::HttpVersion | Reject::Key => StatusCode::BAD_REQUEST,
            Reject::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::ShuttingDown | Reject::MaxConnections => StatusCode::SERVICE_UNAVAILABLE,
            Reject::RateLimited | Reject::IpLimit | Reject::UserLimit => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Reject::SessionInUse => StatusCode::CONFLICT,
            Reject::IpDenied | Reject::Origin => StatusCode::FORBIDDEN,
        }
    }

    /// The `reason` label of `switchboard_handshakes_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reject::NotWebSocket => "not_websocket",
            Reject::Method | Reject::HttpVersion | Reject::Key => "bad_request",
            Reject::WsVersion => "bad_version",
            Reject::HeadTooLarge => "head_too_large",
            Reject::ShuttingDown => "shutting_down",
            Reject::RateLimited => "rate_limited",
            Reject::MaxConnections => "max_connections",
            Reject::SessionInUse => "session_in_use",
            Reject::IpDenied => "ip_denied",
            Reject::Origin => "origin",
            Reject::IpLimit => "ip_limit",
            Reject::UserLimit => "user_limit",
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Reject::NotWebSocket => {
                "this endpoint speaks WebSocket: send an Upgrade: websocket request\n"
            }
            Reject::Method => "WebSocket handshakes use GET\n",
            Reject::HttpVersion => "WebSocket handshakes need HTTP/1.1\n",
            Reject::WsVersion => "unsupported Sec-WebSocket-Version\n",
            Reject::Key => "missing or malformed Sec-WebSocket-Key\n",
            Reject::HeadTooLarge => "request head too large\n",
            Reject::ShuttingDown => "server shutting down\n",
            Reject::RateLimited => "too many new connections from this address\n",
            Reject::MaxConnections => "connection limit reached\n",
            Reject::SessionInUse => "session is attached to another connection\n",
            Reject::IpDenied => "connections from this address are not allowed\n",
            Reject::Origin => "WebSocket connections from this origin are not allowed\n",
            Reject::IpLimit => "too many connections from this address\n",
            Reject::UserLimit => "too many connections for this user\n",
        }
    }

    /// Headers beyond `Content-Type` (names in lower case).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Reject::NotWebSocket => &[("upgrade", "websocket"), ("connection", "Upgrade")],
            Reject::WsVersion => &[("sec-websocket-version", "13")],
            _ => &[],
        }
    }

    /// The plain-text answer.
    pub fn response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from_static(self.body().as_bytes())));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in self.headers() {
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        r
    }
}

/// The answer to a handshake the authorizer refused, shaped as API Gateway's: 401
/// `{"message":"Unauthorized"}` without a credential, 403 `{"message":"Forbidden"}` for a
/// refused one, 500 `{"message":"Internal server error"}` when the authorizer could not
/// decide. The body never says why: the log line and the metric label do.
pub(crate) fn auth_refusal(e: &switchboard_auth::AuthError) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(e.body().as_bytes())));
    *r.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Decides a request. `shutting_down` is the edge's state, read by the caller.
pub(crate) fn decide<B>(
    req: &Request<B>,
    peer: IpAddr,
    policy: &Policy<'_>,
    shutting_down: bool,
) -> Decision {
    let headers = req.headers();
    // hyper answers 431 itself before a handler sees such a head; this is the same bound,
    // measured from below, so the decision stands alone.
    if head_over(req, policy) {
        return Decision::Reject(Reject::HeadTooLarge);
    }
    // Pages under `[static]` too: a refused address is refused everything.
    let source_ip = source_ip(policy.trusted_proxies, peer, headers);
    if !policy.ips.permits(source_ip) {
        return Decision::Reject(Reject::IpDenied);
    }
    let is_upgrade = has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket");
    let method = req.method();
    if !is_upgrade {
        if policy.static_files && (method == Method::GET || method == Method::HEAD) {
            return Decision::Static {
                head: method == Method::HEAD,
            };
        }
        return Decision::Reject(Reject::NotWebSocket);
    }
    if method != Method::GET {
        return Decision::Reject(Reject::Method);
    }
    if req.version() < http::Version::HTTP_11 {
        return Decision::Reject(Reject::HttpVersion);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Decision::Reject(Reject::WsVersion);
    }
    let accept_key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if ws::is_valid_key(k.as_bytes()) => {
            HeaderValue::from_str(&ws::accept_key(k.as_bytes())).expect("base64 is a header value")
        }
        _ => return Decision::Reject(Reject::Key),
    };
    if !origin_allowed(
        policy.allowed_origins,
        policy.require_origin,
        // An `Origin` that is not text names no origin, so it is refused like `null`.
        headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("")),
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str())),
    ) {
        return Decision::Reject(Reject::Origin);
    }
    if shutting_down {
        return Decision::Reject(Reject::ShuttingDown);
    }
    let offered = || {
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
    };
    let session = policy.resume && ws::select_subprotocol(&[SESSION_PROTOCOL], offered()).is_some();
    let subprotocol = if session {
        Some(SESSION_PROTOCOL.to_owned())
    } else {
        ws::select_subprotocol(policy.subprotocols, offered()).map(str::to_owned)
    };
    let deflate = policy.deflate.and_then(|cfg| {
        let values = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let (params, value) = deflate::negotiate(values, cfg)?;
        Some((params, HeaderValue::from_str(&value).ok()?))
    });
    let mut query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut resume = None;
    if session {
        // The last of a repeated parameter counts.
        let last = |name: &str| query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        resume = last("sb_session")
            .filter(|t| !t.is_empty())
            .map(|token| Resume {
                token: token.clone(),
                after: last("sb_last").and_then(|v| v.parse().ok()).unwrap_or(0),
            });
        // A session's resume parameters are the protocol's own, and the token is a
        // credential: neither reaches authorizers, functions, snapshots or kept copies.
        query.retain(|(k, _)| k != "sb_session" && k != "sb_last");
    }
    Decision::Accept(Accept {
        accept_key,
        source_ip,
        subprotocol,
        deflate,
        session,
        resume,
        query,
    })
}

/// Whether the head is over the bounds, measured at its smallest possible spelling
/// (one-byte line ends, no spaces after colons), so it never refuses a head hyper took.
fn head_over<B>(req: &Request<B>, policy: &Policy<'_>) -> bool {
    let headers = req.headers();
    if headers.len() > policy.max_headers {
        return true;
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    // "METHOD target HTTP/1.1\n" and the final "\n".
    let mut bytes = req.method().as_str().len() + 1 + target + 1 + 8 + 1 + 1;
    for (name, value) in headers {
        bytes += name.as_str().len() + 1 + value.len() + 1;
    }
    bytes > policy.max_head_bytes
}

/// Whether a comma-separated header holds `token` (any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The client's address: the peer, or from `X-Forwarded-For` when the peer is a trusted
/// proxy: the rightmost address that is not itself a trusted proxy (the leftmost if all
/// are). An entry that is not an address ends the walk at the nearest trusted hop, since
/// whatever lies left of it may have been written by the client.
pub(crate) fn source_ip(
    trusted_proxies: &[ipnet::IpNet],
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        // An unreadable line is an entry that is not an address.
        .map(|v| v.to_str().unwrap_or("?"))
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut nearest = peer;
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            return nearest;
        };
        if !trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

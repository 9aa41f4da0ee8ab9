//! After the handshake decision: the authorizer, `$connect`, the 101 and the hand-off of
//! the raw stream to a connection task (or to a resumed session).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use switchboard_core::event::{ConnectionInfo, EventKind, Invocation};
use switchboard_functions::Function;
use switchboard_ws::deflate::DeflateParams;
use switchboard_ws::{Decoder, Encoder, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::conn::Conn;
use crate::handshake::{auth_refusal, Accept, Reject};
use crate::inner::{log_invocation, EdgeInner};
use crate::metrics::EdgeMetrics;
use crate::moves::TakeAnswer;
use crate::parked::Take;
use crate::slot::Slot;
use crate::table::ConnHandle;

/// A session the request asks to resume: parked here, else fetched from the node
/// holding it, and claimed.
pub(crate) async fn take_session(edge: &Arc<EdgeInner>, token: &str, after: u64) -> Take {
    let mut local = edge.take_parked(token, after);
    if let Take::NotHere = local {
        // Perhaps parked on another node: ask it to hand the session over.
        match edge.take_remote(token, after).await {
            Some(TakeAnswer::Here) => local = edge.take_parked(token, after),
            Some(TakeAnswer::InUse) => local = Take::InUse,
            Some(TakeAnswer::Unknown) | None => {} // a fresh connection
        }
    }
    match local {
        Take::Parked(handle, parked) => match edge.claim_parked(handle, parked).await {
            Some((handle, parked)) => Take::Parked(handle, parked),
            None => Take::NotHere,
        },
        other => other,
    }
}

/// What functions and authorizers learn of a new connection.
pub(crate) fn connection_info<B>(
    edge: &EdgeInner,
    req: &Request<B>,
    accept: &Accept,
) -> ConnectionInfo {
    let headers = req.headers();
    ConnectionInfo {
        id: edge.ids.connection_id(),
        connected_at_ms: edge.epoch_ms(),
        source_ip: accept.source_ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        path: req.uri().path().to_owned(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        query: accept.query.clone(),
        subprotocol: accept.subprotocol.clone(),
        tls: edge.tls.is_some(),
        port: edge.local_port.load(Ordering::Relaxed),
        authorizer: None,
    }
}

/// Runs the authorizer, if any: the identity, with its context recorded in `info`, or
/// the refusal to answer.
pub(crate) async fn authorize(
    edge: &EdgeInner,
    headers: &HeaderMap,
    info: &mut Arc<ConnectionInfo>,
) -> Result<Option<switchboard_auth::Identity>, Response<Full<Bytes>>> {
    let Some(authz) = &edge.authorizer else {
        return Ok(None);
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let request_id = edge.ids.request_id();
    let hs = switchboard_auth::Handshake {
        headers,
        query: &info.query,
        offered_protocols: &offered,
        connection: info,
        request_id: &request_id,
        request_time_ms: edge.epoch_ms(),
    };
    match authz.authorize(&hs).await {
        Ok(id) => {
            let info = Arc::make_mut(info);
            info.authorizer = Some(id.context.clone());
            // A browser that offered protocols fails a handshake that selects none: when
            // the token travelled as a protocol entry and nothing else was chosen, echo
            // that entry.
            if info.subprotocol.is_none() {
                info.subprotocol.clone_from(&id.token_protocol);
            }
            Ok(Some(id))
        }
        Err(e) => {
            edge.metrics.reject(e.label());
            log_refusal(edge, &e, info);
            Err(auth_refusal(&e))
        }
    }
}

/// One line for a refused handshake: at `info` (`warn` when the authorizer could not
/// decide: the operator's problem, not the client's) for the first refusal of its label
/// and then at most one per label per second, with the count not logged since; the others
/// at `debug`. It names the reason and the client's address, never the credential (an
/// [`AuthError`](switchboard_auth::AuthError) holds none).
fn log_refusal(edge: &EdgeInner, e: &switchboard_auth::AuthError, info: &ConnectionInfo) {
    let (reason, status, client) = (e.reason(), e.status(), info.source_ip);
    match edge.refusal_log.admit(e.label(), Instant::now()) {
        Some(suppressed) if status >= 500 => {
            warn!(%client, reason, status, error = %e, suppressed, "handshake refused: the authorizer could not decide");
        }
        Some(suppressed) => {
            info!(%client, reason, status, suppressed, "handshake refused by the authorizer");
        }
        None => {
            debug!(conn = %info.id, %client, reason, status, error = %e, "handshake refused by the authorizer");
        }
    }
}

/// Gives a new connection the groups, user and expiry the authorizer named.
pub(crate) fn apply_identity(
    edge: &Arc<EdgeInner>,
    handle: &Arc<ConnHandle>,
    id: &switchboard_auth::Identity,
) {
    let ext = switchboard_core::event::ResponseExtension {
        groups: id.groups.clone(),
        user_id: id.user_id.clone(),
        state: Vec::new(),
    };
    // Recorded with the connection once it is open.
    for problem in edge.extend_local(handle, &ext).1 {
        warn!(conn = %handle.info.id, %problem, "authorizer identity not fully applied");
    }
    if let (true, Some(exp)) = (
        edge.authorizer
            .as_ref()
            .is_some_and(|a| a.close_on_expiry()),
        id.expires_at,
    ) {
        handle.set_expires_at(exp);
    }
}

/// Invokes `$connect`, if routed: `Some(headers)` for the 101 when the function accepted,
/// `None` without a `$connect` route, or the refusal to answer.
pub(crate) async fn invoke_connect(
    edge: &Arc<EdgeInner>,
    handle: &Arc<ConnHandle>,
) -> Result<Option<Vec<(String, String)>>, Response<Full<Bytes>>> {
    let Some(target) = edge.routes.connect() else {
        return Ok(None);
    };
    let info = &handle.info;
    let m = &edge.metrics;
    let invocation = Invocation {
        kind: EventKind::Connect,
        route_key: target.key.clone(),
        connection: info.clone(),
        request_id: edge.ids.request_id(),
        request_time_ms: edge.epoch_ms(),
        body: None,
        disconnect: None,
        extension: edge.table.extension_of(handle),
    };
    let request_id = invocation.request_id.clone();
    let started = Instant::now();
    let result = match &target.function {
        Function::Builtin(b) => Ok(b.answer(invocation)),
        Function::Remote(inv) => inv.invoke(invocation).await,
    };
    log_invocation(
        &info.id,
        target,
        &request_id,
        started,
        result.as_ref().map(|r| r.status),
    );
    match result {
        Ok(resp) if (200..300).contains(&resp.status) => {
            for problem in edge.extend_local(handle, &resp.extension).1 {
                warn!(conn = %info.id, %problem, "$connect response extension refused");
            }
            Ok(Some(resp.headers))
        }
        Ok(resp) => {
            m.reject("rejected_by_function");
            let mut r = status_only(resp.status, StatusCode::FORBIDDEN);
            if let Some(body) = resp.body {
                *r.body_mut() = Full::new(body.data);
            }
            Err(r)
        }
        Err(e) => {
            m.reject("function_error");
            m.invoke_errors
                .get_or_create(&crate::metrics::ReasonLabel { reason: e.label() })
                .inc();
            warn!(conn = %info.id, error = %e, "$connect function failed");
            Err(status_only(e.handshake_status(), StatusCode::BAD_GATEWAY))
        }
    }
}

/// The 101 answer, with `$connect`'s headers (`extra`; those that are no header skipped).
pub(crate) fn switching(
    accept_key: &HeaderValue,
    subprotocol: Option<&str>,
    extensions: Option<&HeaderValue>,
    extra: Vec<(String, String)>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key.clone());
    if let Some(v) = subprotocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = extensions {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v.clone());
    }
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

/// A new connection, accepted and waiting for its upgrade.
pub(crate) struct Opening {
    pub(crate) handle: Arc<ConnHandle>,
    pub(crate) rx: tokio::sync::mpsc::Receiver<crate::outbound::Outbound>,
    pub(crate) slot: Slot,
    pub(crate) params: Option<DeflateParams>,
    /// Starts a resumable session.
    pub(crate) session: bool,
    /// `$connect` said yes, so the function may hold state for this id.
    pub(crate) accepted_by_function: bool,
}

/// Runs the connection once hyper hands the socket over.
pub(crate) fn open<S>(edge: Arc<EdgeInner>, mut req: Request<Incoming>, o: Opening)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);
    let task_edge = edge.clone();
    edge.tracker.spawn(async move {
        let edge = task_edge;
        let Opening {
            handle,
            rx,
            slot,
            params,
            session,
            accepted_by_function,
        } = o;
        let info = handle.info.clone();
        let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<S>>()) {
            Ok(Ok(p)) => p,
            failed => {
                debug!(conn = %info.id, ok = failed.is_ok(), "upgrade failed");
                let extension = edge.table.extension_of(&handle);
                edge.table.remove(&info.id);
                drop(slot);
                if accepted_by_function {
                    // Tell the function the connection is gone.
                    edge.invoke_disconnect(info, extension, 1006, "upgrade failed".into())
                        .await;
                }
                return;
            }
        };
        edge.metrics.connections_open.inc();
        edge.metrics.connections_total.inc();
        edge.record(&handle, true);
        info!(conn = %info.id, ip = %info.source_ip, path = %info.path, compressed = params.is_some(), "connection open");
        let s = &edge.settings;
        let conn_handle = handle.clone();
        let mut conn = Conn::new(
            parts.io.into_inner(),
            parts.read_buf,
            edge.clone(),
            handle,
            rx,
            (
                Decoder::new(Role::Server, s.ws_limits, params),
                Encoder::new(Role::Server, params),
            ),
            slot,
        );
        if session {
            if let Some(r) = &edge.settings.resume {
                let token = crate::session::new_token(&conn_handle.info.id);
                let session =
                    crate::session::Session::new(token, r.buffer_messages, r.buffer_bytes);
                edge.add_session(session.proof, conn_handle.clone());
                conn.attach_session(Box::new(session), None, None);
            }
        }
        // No span around the task: entering one on every poll costs more than the echo
        // itself; each log line of the connection names it with a `conn` field instead.
        conn.run().await;
    });
}

/// Answers a resume handshake: the same connection id, no `$connect`, and a connection task
/// that starts with the hello and the replay of what the client missed.
pub(crate) fn resume<S>(
    edge: Arc<EdgeInner>,
    mut req: Request<Incoming>,
    accept: &Accept,
    handle: Arc<ConnHandle>,
    parked: Box<crate::session::Parked>,
    after: u64,
) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = switching(
        &accept.accept_key,
        Some(crate::session::PROTOCOL),
        accept.deflate.as_ref().map(|(_, v)| v),
        Vec::new(),
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);
    let params = accept.deflate.as_ref().map(|(p, _)| *p);
    let task_edge = edge.clone();
    edge.tracker.spawn(async move {
        let edge = task_edge;
        let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<S>>()) {
            Ok(Ok(p)) => p,
            _ => {
                // The client vanished again: back to waiting for it.
                *handle.parked.lock() = Some(parked);
                edge.watch_parked(handle);
                return;
            }
        };
        info!(conn = %handle.info.id, after, "session resumed");
        let s = &edge.settings;
        let crate::session::Parked {
            session,
            rx,
            slot,
            started,
            ..
        } = *parked;
        let mut conn = Conn::new(
            parts.io.into_inner(),
            parts.read_buf,
            edge.clone(),
            handle,
            rx,
            (
                Decoder::new(Role::Server, s.ws_limits, params),
                Encoder::new(Role::Server, params),
            ),
            slot,
        );
        conn.attach_session(session, Some(after), Some(started));
        conn.run().await;
    });
    resp
}

/// Counts a refusal at the door and answers it.
pub(crate) fn refuse(m: &EdgeMetrics, reject: Reject) -> Response<Full<Bytes>> {
    m.reject(reject.label());
    reject.response()
}

/// Counts a refusal by `[access]` and answers it. Logged with the client address (and the
/// `Origin`): at info for the first of its reason and then at each power of two of the
/// count, so a flood from a refused address writes a few dozen lines, not one a request;
/// every other one at debug.
pub(crate) fn refuse_access(
    m: &EdgeMetrics,
    reject: Reject,
    client: IpAddr,
    origin: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    let reason = reject.label();
    let n = m.reject(reason);
    if n.is_power_of_two() {
        info!(%client, ?origin, reason, refused_total = n, "handshake refused by [access]");
    } else {
        debug!(%client, ?origin, reason, "handshake refused by [access]");
    }
    reject.response()
}

/// An empty answer with `status`, or `fallback` when `status` is not a status code.
pub(crate) fn status_only(status: u16, fallback: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(fallback);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

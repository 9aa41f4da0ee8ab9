//! What the invoker tests share: an invocation as the edge would build it, and an http
//! function's table.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::config::HttpFunctionConfig;
use switchboard_core::event::{ConnectionInfo, EventKind, Invocation, Payload};
use switchboard_core::id::IdGenerator;

/// An invocation of `kind` on a fresh connection from 127.0.0.1, with a text `body`;
/// message routes are `sendmessage`, a DISCONNECT carries `1000 bye`.
pub fn invocation(kind: EventKind, body: Option<Bytes>) -> Invocation {
    let ids = IdGenerator::new("test-node");
    Invocation {
        kind,
        route_key: Arc::from(match kind {
            EventKind::Connect | EventKind::Authorize => "$connect",
            EventKind::Message => "sendmessage",
            EventKind::Disconnect => "$disconnect",
        }),
        connection: Arc::new(ConnectionInfo {
            id: ids.connection_id(),
            connected_at_ms: 1_731_324_924_553,
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: Some("test".into()),
            path: "/".into(),
            headers: vec![("host".into(), "gw.example".into())],
            query: vec![],
            subprotocol: None,
            tls: false,
            port: 80,
            authorizer: None,
        }),
        request_id: ids.request_id(),
        request_time_ms: 1_731_324_924_561,
        body: body.map(|data| Payload {
            data,
            binary: false,
        }),
        disconnect: (kind == EventKind::Disconnect).then(|| (1000, "bye".to_owned())),
        extension: None,
    }
}

/// An http function's table for `url`: 5 s timeout, 8 in flight and 8 queued, 64 KiB
/// answers, HTTP/1.1, no secret, no TLS files.
#[allow(dead_code)] // The Lambda tests configure no http function.
pub fn http_config(url: String) -> HttpFunctionConfig {
    HttpFunctionConfig {
        url,
        timeout_ms: 5_000,
        max_concurrency: 8,
        max_queue: 8,
        secret: None,
        headers: Default::default(),
        max_response_bytes: 64 * 1024,
        http_version: Default::default(),
        tls_ca_file: None,
        tls_client_cert: None,
        tls_client_key: None,
    }
}

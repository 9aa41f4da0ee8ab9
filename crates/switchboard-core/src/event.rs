//! What a function is invoked with, and what it answers.
//!
//! These are the gateway's own types; each function kind turns them into its wire form
//! (the AWS API Gateway event JSON for HTTP and Lambda functions, nothing at all for the
//! builtins), so a builtin on the hot path never builds JSON.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::id::ConnectionId;

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

/// How AWS spells a header name it received lowercased.
pub fn aws_header_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split('-').enumerate() {
        if i > 0 {
            out.push('-');
        }
        if part.eq_ignore_ascii_case("websocket") {
            out.push_str("WebSocket");
            continue;
        }
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.extend(chars.flat_map(|c| c.to_lowercase()));
        }
    }
    out
}

/// `dd/Mon/yyyy:HH:MM:SS +0000`, as AWS's `requestTime`.
pub fn aws_request_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time::OffsetDateTime::from_unix_timestamp((epoch_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Built from the parts: `time`'s general formatter costs more than the rest of the
    // event on the function hot path.
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second) = t.to_hms();
    format!(
        "{day:02}/{}/{year:04}:{hour:02}:{minute:02}:{second:02} +0000",
        MONTHS[usize::from(u8::from(month)) - 1]
    )
}

/// ISO-8601 with milliseconds, as `GetConnection`'s `connectedAt`.
pub fn iso8601(epoch_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(epoch_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

impl Invocation {
    /// The API Gateway WebSocket event (Lambda proxy integration) for this invocation, as JSON:
    /// exactly the fields AWS sends for its event type (see docs/functions.md).
    pub fn to_aws_event(&self, api: &ApiIdentity) -> Vec<u8> {
        use serde_json::Map;
        let c = &self.connection;
        let id = c.id.encode();
        let authorize = self.kind == EventKind::Authorize;
        let context = RequestContext {
            route_key: &self.route_key,
            message_id: (self.kind == EventKind::Message).then(|| self.message_id()),
            event_type: self.kind.as_aws(),
            extended_request_id: &self.request_id,
            request_time: aws_request_time(self.request_time_ms),
            message_direction: "IN",
            stage: &api.stage,
            connected_at: c.connected_at_ms,
            request_time_epoch: self.request_time_ms,
            identity: Identity {
                source_ip: c.source_ip,
                user_agent: c.user_agent.as_deref(),
            },
            request_id: &self.request_id,
            domain_name: &api.domain_name,
            connection_id: id.as_str(),
            api_id: &api.api_id,
            disconnect_status_code: self.disconnect.as_ref().map(|d| d.0),
            disconnect_reason: self.disconnect.as_ref().map(|d| d.1.as_str()),
            authorizer: c.authorizer.as_ref(),
            switchboard: self.extension.as_ref(),
        };
        let mut event = AwsEvent {
            kind: authorize.then_some("REQUEST"),
            // AWS's REQUEST authorizer input for WebSocket APIs.
            method_arn: authorize.then(|| {
                format!(
                    "arn:aws:execute-api:local:000000000000:{}/{}/$connect",
                    api.api_id, api.stage
                )
            }),
            stage_variables: authorize.then(Map::new),
            headers: None,
            multi_value_headers: None,
            query_string_parameters: None,
            multi_value_query_string_parameters: None,
            request_context: context,
            body: None,
            is_base64_encoded: (!authorize).then_some(false),
        };
        if matches!(self.kind, EventKind::Connect | EventKind::Authorize) {
            let (single, multi) = connect_headers(c);
            event.headers = Some(single);
            event.multi_value_headers = Some(multi);
            // A REQUEST authorizer may read `event.queryStringParameters.x` without a
            // guard, so it always gets the (possibly empty) objects.
            if !c.query.is_empty() || authorize {
                let mut query = SingleAndMulti::default();
                for (k, v) in &c.query {
                    query.add(k.clone(), v);
                }
                event.query_string_parameters = Some(query.single);
                event.multi_value_query_string_parameters = Some(query.multi);
            }
        }
        if let (false, Some(body)) = (authorize, &self.body) {
            if body.binary {
                use base64::Engine;
                event.body = Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(&body.data)
                        .into(),
                );
                event.is_base64_encoded = Some(true);
            } else {
                event.body = Some(String::from_utf8_lossy(&body.data));
            }
        }
        let body_len = self.body.as_ref().map_or(0, |b| b.data.len());
        let mut out = Vec::with_capacity(EVENT_JSON_BASE + body_len + body_len / 3);
        // Writing these types to memory cannot fail: every map key is a string.
        let _ = serde_json::to_writer(&mut out, &event);
        out
    }

    /// AWS gives every message its own id; ours is derived from the request id.
    fn message_id(&self) -> String {
        let mut s: String = self.request_id.chars().rev().collect();
        if let Some(stripped) = s.strip_prefix('=') {
            s = stripped.to_owned();
            s.push('=');
        }
        s
    }
}

/// Room for an event's JSON without its body: a MESSAGE event is about 700 bytes.
const EVENT_JSON_BASE: usize = 1024;

/// The event JSON, written straight from the invocation's fields (no intermediate
/// `serde_json::Value`): fields that an event type does not have are `None` and left out.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsEvent<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage_variables: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_query_string_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_base64_encoded: Option<bool>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    route_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    event_type: &'static str,
    extended_request_id: &'a str,
    request_time: String,
    message_direction: &'static str,
    stage: &'a str,
    connected_at: u64,
    request_time_epoch: u64,
    identity: Identity<'a>,
    request_id: &'a str,
    domain_name: &'a str,
    connection_id: &'a str,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switchboard: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    source_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

/// The handshake's headers as AWS presents them, with the `X-Forwarded-*` headers its
/// load balancer would add.
fn connect_headers(
    c: &ConnectionInfo,
) -> (
    serde_json::Map<String, serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut headers = SingleAndMulti::default();
    let mut seen_xff = false;
    let mut seen_proto = false;
    let mut seen_port = false;
    for (k, v) in &c.headers {
        let name = aws_header_case(k);
        seen_xff |= name == "X-Forwarded-For";
        seen_proto |= name == "X-Forwarded-Proto";
        seen_port |= name == "X-Forwarded-Port";
        headers.add(name, v);
    }
    if !seen_xff {
        headers.add("X-Forwarded-For".into(), &c.source_ip.to_string());
    }
    if !seen_port {
        headers.add("X-Forwarded-Port".into(), &c.port.to_string());
    }
    if !seen_proto {
        headers.add(
            "X-Forwarded-Proto".into(),
            if c.tls { "https" } else { "http" },
        );
    }
    (headers.single, headers.multi)
}

/// AWS's two views of repeated names (headers, query parameters): the last value in
/// `single`, every value in order in `multi`.
#[derive(Default)]
struct SingleAndMulti {
    single: serde_json::Map<String, serde_json::Value>,
    multi: serde_json::Map<String, serde_json::Value>,
}

impl SingleAndMulti {
    fn add(&mut self, name: String, value: &str) {
        use serde_json::{json, Value};
        self.single.insert(name.clone(), json!(value));
        match self.multi.get_mut(&name) {
            Some(Value::Array(a)) => a.push(json!(value)),
            _ => {
                self.multi.insert(name, json!([value]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;

    fn info(query: Vec<(String, String)>) -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo {
            id: IdGenerator::new("n").connection_id(),
            connected_at_ms: 1_731_324_924_553,
            source_ip: "1.2.3.4".parse().unwrap(),
            user_agent: Some("test-agent".into()),
            path: "/".into(),
            headers: vec![
                ("host".into(), "abc.example".into()),
                ("sec-websocket-key".into(), "k".into()),
                ("sec-websocket-version".into(), "13".into()),
            ],
            query,
            subprotocol: None,
            tls: true,
            port: 443,
            authorizer: None,
        })
    }

    fn api() -> ApiIdentity {
        ApiIdentity {
            stage: "prod".into(),
            domain_name: "abc.execute-api.us-east-1.amazonaws.com".into(),
            api_id: "abc".into(),
        }
    }

    impl Invocation {
        /// The event as a JSON value, to check its fields.
        fn event(&self, api: &ApiIdentity) -> serde_json::Value {
            serde_json::from_slice(&self.to_aws_event(api)).expect("the event is JSON")
        }
    }

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    fn invocation(kind: EventKind, c: Arc<ConnectionInfo>) -> Invocation {
        Invocation {
            kind,
            route_key: Arc::from(match kind {
                EventKind::Connect | EventKind::Authorize => "$connect",
                EventKind::Message => "$default",
                EventKind::Disconnect => "$disconnect",
            }),
            connection: c,
            request_id: "BFHPhFe3IAMF95g=".into(),
            request_time_ms: 1_731_324_924_561,
            body: None,
            disconnect: None,
            extension: None,
        }
    }

    /// The CONNECT event of aws-compat.md §1, field for field.
    #[test]
    fn connect_event_matches_aws() {
        let c = info(vec![("room".into(), "lobby".into())]);
        let e = invocation(EventKind::Connect, c.clone()).event(&api());
        assert_eq!(
            keys(&e),
            [
                "headers",
                "isBase64Encoded",
                "multiValueHeaders",
                "multiValueQueryStringParameters",
                "queryStringParameters",
                "requestContext"
            ]
        );
        assert_eq!(
            keys(&e["requestContext"]),
            [
                "apiId",
                "connectedAt",
                "connectionId",
                "domainName",
                "eventType",
                "extendedRequestId",
                "identity",
                "messageDirection",
                "requestId",
                "requestTime",
                "requestTimeEpoch",
                "routeKey",
                "stage"
            ]
        );
        let rc = &e["requestContext"];
        assert_eq!(rc["eventType"], "CONNECT");
        assert_eq!(rc["routeKey"], "$connect");
        assert_eq!(rc["requestTime"], "11/Nov/2024:11:35:24 +0000");
        assert_eq!(rc["requestTimeEpoch"], 1_731_324_924_561u64);
        assert_eq!(rc["connectedAt"], 1_731_324_924_553u64);
        assert_eq!(rc["requestId"], rc["extendedRequestId"]);
        assert_eq!(rc["identity"]["sourceIp"], "1.2.3.4");
        assert_eq!(rc["identity"]["userAgent"], "test-agent");
        assert_eq!(rc["stage"], "prod");
        assert_eq!(rc["connectionId"], c.id.to_string());
        assert_eq!(e["headers"]["Host"], "abc.example");
        assert_eq!(e["headers"]["Sec-WebSocket-Key"], "k");
        assert_eq!(e["headers"]["Sec-WebSocket-Version"], "13");
        assert_eq!(e["headers"]["X-Forwarded-For"], "1.2.3.4");
        assert_eq!(e["headers"]["X-Forwarded-Port"], "443");
        assert_eq!(e["headers"]["X-Forwarded-Proto"], "https");
        assert_eq!(
            e["multiValueHeaders"]["Host"],
            serde_json::json!(["abc.example"])
        );
        assert_eq!(e["queryStringParameters"]["room"], "lobby");
        assert_eq!(
            e["multiValueQueryStringParameters"]["room"],
            serde_json::json!(["lobby"])
        );
        assert_eq!(e["isBase64Encoded"], false);
        // No query string: no query fields at all.
        let e = invocation(EventKind::Connect, info(vec![])).event(&api());
        assert!(e.get("queryStringParameters").is_none());
        assert!(e.get("multiValueQueryStringParameters").is_none());
    }

    #[test]
    fn message_event_matches_aws() {
        let mut inv = invocation(EventKind::Message, info(vec![("a".into(), "b".into())]));
        inv.body = Some(Payload {
            data: Bytes::from_static(b"{\"action\":\"x\"}"),
            binary: false,
        });
        let e = inv.event(&api());
        assert_eq!(keys(&e), ["body", "isBase64Encoded", "requestContext"]);
        assert_eq!(e["body"], "{\"action\":\"x\"}");
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["eventType"], "MESSAGE");
        assert!(e["requestContext"]["messageId"].is_string());
        assert_ne!(
            e["requestContext"]["messageId"],
            e["requestContext"]["requestId"]
        );
        inv.body = Some(Payload {
            data: Bytes::from_static(&[0, 159, 146, 150]),
            binary: true,
        });
        let e = inv.event(&api());
        assert_eq!(e["body"], "AJ+Slg==");
        assert_eq!(e["isBase64Encoded"], true);
    }

    #[test]
    fn disconnect_event_matches_aws() {
        let mut inv = invocation(EventKind::Disconnect, info(vec![]));
        inv.disconnect = Some((1005, "Client-side close frame status not set".into()));
        let e = inv.event(&api());
        assert_eq!(keys(&e), ["isBase64Encoded", "requestContext"]);
        let rc = &e["requestContext"];
        assert_eq!(rc["eventType"], "DISCONNECT");
        assert_eq!(rc["disconnectStatusCode"], 1005);
        assert_eq!(
            rc["disconnectReason"],
            "Client-side close frame status not set"
        );
        assert!(rc.get("messageId").is_none());
    }

    #[test]
    fn authorizer_context_appears_on_events() {
        let mut c = (*info(vec![])).clone();
        let mut auth = serde_json::Map::new();
        auth.insert("principalId".into(), "user-1".into());
        c.authorizer = Some(auth);
        let e = invocation(EventKind::Message, Arc::new(c)).event(&api());
        assert_eq!(e["requestContext"]["authorizer"]["principalId"], "user-1");
    }

    #[test]
    fn request_authorizer_event_matches_aws() {
        let mut inv = invocation(
            EventKind::Authorize,
            info(vec![("token".into(), "t".into())]),
        );
        inv.route_key = Arc::from("$connect");
        let e = inv.event(&api());
        assert_eq!(
            keys(&e),
            [
                "headers",
                "methodArn",
                "multiValueHeaders",
                "multiValueQueryStringParameters",
                "queryStringParameters",
                "requestContext",
                "stageVariables",
                "type"
            ]
        );
        assert_eq!(e["type"], "REQUEST");
        assert!(e["methodArn"]
            .as_str()
            .unwrap()
            .ends_with(":abc/prod/$connect"));
        assert_eq!(e["requestContext"]["eventType"], "CONNECT");
        assert_eq!(e["requestContext"]["routeKey"], "$connect");
    }

    #[test]
    fn header_case_and_times() {
        assert_eq!(
            aws_header_case("sec-websocket-extensions"),
            "Sec-WebSocket-Extensions"
        );
        assert_eq!(aws_header_case("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(aws_header_case("user-agent"), "User-Agent");
        assert_eq!(iso8601(1_731_324_924_553), "2024-11-11T11:35:24.553Z");
        assert_eq!(
            aws_request_time(1_704_067_199_999),
            "31/Dec/2023:23:59:59 +0000"
        );
        assert_eq!(
            aws_request_time(1_709_251_200_000),
            "01/Mar/2024:00:00:00 +0000"
        );
    }
}

/// A connection as the cluster registry stores it: enough for another node to answer
/// `GetConnection` and to invoke `$disconnect` for it if its node is lost.
pub mod snapshot {
    use serde_json::{json, Map, Value};

    use super::ConnectionInfo;
    use crate::id::ConnectionId;

    /// The snapshot JSON of a connection, with its extension (user, groups, state).
    pub fn to_json(c: &ConnectionInfo, extension: Option<&Map<String, Value>>) -> Value {
        json!({
            "id": c.id.to_string(),
            "connectedAt": c.connected_at_ms,
            "sourceIp": c.source_ip.to_string(),
            "userAgent": c.user_agent,
            "path": c.path,
            "headers": c.headers,
            "query": c.query,
            "subprotocol": c.subprotocol,
            "tls": c.tls,
            "port": c.port,
            "authorizer": c.authorizer,
            "extension": extension,
        })
    }

    /// Reads a snapshot back. `None` if it is not one.
    pub fn from_json(v: &Value) -> Option<(ConnectionInfo, Option<Map<String, Value>>)> {
        let pairs = |v: &Value| -> Vec<(String, String)> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            let p = p.as_array()?;
                            Some((
                                p.first()?.as_str()?.to_owned(),
                                p.get(1)?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let info = ConnectionInfo {
            id: ConnectionId::parse(v.get("id")?.as_str()?)?,
            connected_at_ms: v.get("connectedAt")?.as_u64()?,
            source_ip: v.get("sourceIp")?.as_str()?.parse().ok()?,
            user_agent: v
                .get("userAgent")
                .and_then(Value::as_str)
                .map(str::to_owned),
            path: v
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_owned(),
            headers: pairs(v.get("headers").unwrap_or(&Value::Null)),
            query: pairs(v.get("query").unwrap_or(&Value::Null)),
            subprotocol: v
                .get("subprotocol")
                .and_then(Value::as_str)
                .map(str::to_owned),
            tls: v.get("tls").and_then(Value::as_bool).unwrap_or(false),
            port: v.get("port").and_then(Value::as_u64).unwrap_or(0) as u16,
            authorizer: v.get("authorizer").and_then(Value::as_object).cloned(),
        };
        let ext = v.get("extension").and_then(Value::as_object).cloned();
        Some((info, ext))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::id::IdGenerator;

        #[test]
        fn round_trip() {
            let c = ConnectionInfo {
                id: IdGenerator::new("n").connection_id(),
                connected_at_ms: 5,
                source_ip: "10.0.0.1".parse().unwrap(),
                user_agent: Some("ua".into()),
                path: "/p".into(),
                headers: vec![("host".into(), "h".into())],
                query: vec![("a".into(), "b".into())],
                subprotocol: Some("chat".into()),
                tls: true,
                port: 443,
                authorizer: None,
            };
            let mut ext = Map::new();
            ext.insert("userId".into(), "u".into());
            let (back, e) = from_json(&to_json(&c, Some(&ext))).unwrap();
            assert_eq!(back.id, c.id);
            assert_eq!(back.headers, c.headers);
            assert_eq!(back.query, c.query);
            assert_eq!(back.source_ip, c.source_ip);
            assert_eq!(e.unwrap()["userId"], "u");
            assert!(from_json(&json!({"id": "x"})).is_none());
        }
    }
}

//! What a function is invoked with, and what it answers.
//!
//! These are the gateway's own types; each function kind turns them into its wire form
//! (the AWS API Gateway event JSON for HTTP and Lambda functions, nothing at all for the
//! builtins), so a builtin on the hot path never builds JSON.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::id::ConnectionId;
use crate::json;

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
    let mut out = Vec::with_capacity(26);
    push_request_time(&mut out, epoch_ms);
    String::from_utf8(out).expect("ASCII")
}

/// [`aws_request_time`] written into `out`, digit by digit: `fmt` cost more than the
/// rest of the event on the function hot path.
fn push_request_time(out: &mut Vec<u8>, epoch_ms: u64) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Out of `time`'s range (past year 9999) reads as the epoch, so the year has 4 digits.
    let t = time::OffsetDateTime::from_unix_timestamp((epoch_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second) = t.to_hms();
    let two = |out: &mut Vec<u8>, n: u8| out.extend_from_slice(&[b'0' + n / 10, b'0' + n % 10]);
    two(out, day);
    out.push(b'/');
    out.extend_from_slice(MONTHS[usize::from(u8::from(month)) - 1]);
    out.push(b'/');
    let year = year.clamp(0, 9999) as u16;
    two(out, (year / 100) as u8);
    two(out, (year % 100) as u8);
    for (sep, n) in [(b':', hour), (b':', minute), (b':', second)] {
        out.push(sep);
        two(out, n);
    }
    out.extend_from_slice(b" +0000");
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
    /// exactly the fields AWS sends for its event type (see docs/functions.md), in the
    /// order AWS writes them. Written by hand ([`crate::json`]): this runs once per
    /// invocation.
    pub fn to_aws_event(&self, api: &ApiIdentity) -> Vec<u8> {
        let c = &self.connection;
        let authorize = self.kind == EventKind::Authorize;
        let body_len = self.body.as_ref().map_or(0, |b| b.data.len());
        // Base64 grows a binary body by a third; escapes rarely grow a text one.
        let mut out = Vec::with_capacity(EVENT_JSON_BASE + body_len + body_len / 3);
        let mut event = json::Object::begin(&mut out);
        if authorize {
            // AWS's REQUEST authorizer input for WebSocket APIs.
            event.str("type", "REQUEST");
            let arn = event.key("methodArn");
            arn.extend_from_slice(b"\"arn:aws:execute-api:local:000000000000:");
            json::push_escaped(arn, api.api_id.as_bytes());
            arn.push(b'/');
            json::push_escaped(arn, api.stage.as_bytes());
            arn.extend_from_slice(b"/$connect\"");
            event.key("stageVariables").extend_from_slice(b"{}");
        }
        if matches!(self.kind, EventKind::Connect | EventKind::Authorize) {
            let (single, multi) = connect_headers(c);
            event.serde("headers", &single);
            event.serde("multiValueHeaders", &multi);
            // A REQUEST authorizer may read `event.queryStringParameters.x` without a
            // guard, so it always gets the (possibly empty) objects.
            if !c.query.is_empty() || authorize {
                let mut query = SingleAndMulti::default();
                for (k, v) in &c.query {
                    query.add(k.clone(), v);
                }
                event.serde("queryStringParameters", &query.single);
                event.serde("multiValueQueryStringParameters", &query.multi);
            }
        }
        event.object("requestContext", |rc| self.request_context(rc, api));
        let body = self.body.as_ref().filter(|_| !authorize);
        match body {
            Some(body) if body.binary => {
                use base64::Engine;
                let out = event.key("body");
                out.push(b'"');
                let at = out.len();
                out.resize(
                    at + base64::encoded_len(body.data.len(), true).unwrap_or(0),
                    0,
                );
                let n = base64::engine::general_purpose::STANDARD
                    .encode_slice(&body.data, &mut out[at..])
                    .unwrap_or(0);
                out.truncate(at + n);
                out.push(b'"');
            }
            Some(body) => match std::str::from_utf8(&body.data) {
                Ok(text) => event.str("body", text),
                Err(_) => event.str("body", &String::from_utf8_lossy(&body.data)),
            },
            None => {}
        }
        if !authorize {
            event.bool("isBase64Encoded", body.is_some_and(|b| b.binary));
        }
        event.end();
        out
    }

    /// The members of `requestContext`.
    fn request_context(&self, rc: &mut json::Object<'_>, api: &ApiIdentity) {
        let c = &self.connection;
        rc.str("routeKey", &self.route_key);
        if self.kind == EventKind::Message {
            self.push_message_id(rc.key("messageId"));
        }
        rc.str("eventType", self.kind.as_aws());
        rc.str("extendedRequestId", &self.request_id);
        let time = rc.key("requestTime");
        time.push(b'"');
        push_request_time(time, self.request_time_ms);
        time.push(b'"');
        rc.str("messageDirection", "IN");
        rc.str("stage", &api.stage);
        rc.u64("connectedAt", c.connected_at_ms);
        rc.u64("requestTimeEpoch", self.request_time_ms);
        rc.object("identity", |identity| {
            json::push_ip(identity.key("sourceIp"), c.source_ip);
            if let Some(user_agent) = &c.user_agent {
                identity.str("userAgent", user_agent);
            }
        });
        rc.str("requestId", &self.request_id);
        rc.str("domainName", &api.domain_name);
        rc.str("connectionId", c.id.encode().as_str());
        rc.str("apiId", &api.api_id);
        if let Some((code, reason)) = &self.disconnect {
            rc.u64("disconnectStatusCode", u64::from(*code));
            rc.str("disconnectReason", reason);
        }
        if let Some(authorizer) = &c.authorizer {
            rc.serde("authorizer", authorizer);
        }
        if let Some(extension) = &self.extension {
            rc.serde("switchboard", extension);
        }
    }

    /// AWS gives every message its own id; ours is the request id reversed, with a
    /// trailing `=` kept at the end so it still looks like one of AWS's ids.
    fn push_message_id(&self, out: &mut Vec<u8>) {
        let id = &self.request_id;
        let (body, pad) = id.strip_suffix('=').map_or((id.as_str(), ""), |b| (b, "="));
        let mut reversed = String::with_capacity(id.len());
        reversed.extend(body.chars().rev());
        reversed.push_str(pad);
        json::push_str(out, &reversed);
    }
}

/// Room for an event's JSON without its body: a MESSAGE event is about 700 bytes.
const EVENT_JSON_BASE: usize = 1024;

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

    /// The whole text of a MESSAGE event, member order and escapes included, as
    /// serde_json wrote it before the event was written by hand.
    #[test]
    fn message_event_text_is_exact() {
        let mut c = (*info(vec![])).clone();
        c.id = ConnectionId::parse("6ww0MeV2iAYAAAAAAAAAAQ").unwrap();
        c.user_agent = Some("ua \"quoted\" \\ \u{1}".into());
        let mut inv = invocation(EventKind::Message, Arc::new(c));
        inv.route_key = Arc::from("send");
        inv.body = Some(Payload {
            data: Bytes::from_static("{\"action\":\"send\",\"t\":\"\u{2028}é\\n\"}".as_bytes()),
            binary: false,
        });
        let text = String::from_utf8(inv.to_aws_event(&api())).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"requestContext":{"routeKey":"send","messageId":"g59FMAI3eFhPHFB=","#,
                r#""eventType":"MESSAGE","extendedRequestId":"BFHPhFe3IAMF95g=","#,
                r#""requestTime":"11/Nov/2024:11:35:24 +0000","messageDirection":"IN","#,
                r#""stage":"prod","connectedAt":1731324924553,"requestTimeEpoch":1731324924561,"#,
                r#""identity":{"sourceIp":"1.2.3.4","userAgent":"ua \"quoted\" \\ \u0001"},"#,
                r#""requestId":"BFHPhFe3IAMF95g=","#,
                r#""domainName":"abc.execute-api.us-east-1.amazonaws.com","#,
                r#""connectionId":"6ww0MeV2iAYAAAAAAAAAAQ","apiId":"abc"},"#,
                "\"body\":\"{\\\"action\\\":\\\"send\\\",\\\"t\\\":\\\"\u{2028}é\\\\n\\\"}\",",
                r#""isBase64Encoded":false}"#
            )
        );
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

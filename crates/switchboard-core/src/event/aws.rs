//! The AWS API Gateway WebSocket event an `http` or `lambda` function receives
//! ([`Invocation::to_aws_event`]), written by hand with [`crate::json`], and the AWS
//! spellings of header names and times.

use super::{ApiIdentity, ConnectionInfo, EventKind, Invocation};
use crate::json;

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

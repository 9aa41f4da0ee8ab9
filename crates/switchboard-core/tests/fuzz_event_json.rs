//! Fuzz target: the hand-written event JSON (`Invocation::to_aws_event`, `core::json`)
//! against serde_json, byte for byte.
//!
//! The reference is the serde-derived event the writer replaced (commit d8aaa4e), kept
//! here field for field: the same members in the same order, serialized by serde_json.
//! Every field a client, a function or the configuration controls is generated: strings
//! from all of Unicode with control characters, quotes, backslashes and U+2028/2029 made
//! common; text bodies that are not UTF-8 (written as serde_json writes their lossy
//! decoding); binary bodies; header names and values that collide after AWS's casing;
//! query values; authorizer and extension maps of any JSON value; IPv4 and IPv6
//! addresses; every event kind.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_core::event::{
    aws_header_case, ApiIdentity, ConnectionInfo, EventKind, Invocation, Payload,
};
use switchboard_core::ConnectionId;
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;

/// Characters a JSON escaper can get wrong, made common.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => (0x20u8..0x7f).prop_map(char::from),
        3 => (0u8..0x20).prop_map(char::from),
        2 => Just('"'),
        2 => Just('\\'),
        1 => Just('\u{7f}'),
        1 => Just('\u{2028}'),
        1 => Just('\u{2029}'),
        1 => Just('\u{feff}'),
        1 => Just('é'),
        1 => Just('🎉'),
        1 => Just('/'),
        1 => Just('='),
        1 => Just('-'),
    ]
}

/// A string of up to `max` tricky characters (long enough to cross the escaper's
/// eight-byte words), or a plain arbitrary one.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(tricky_char(), 0..=max).prop_map(|c| c.into_iter().collect()),
        1 => any::<String>(),
        1 => "[a-z0-9]{0,24}",
    ]
}

/// Header names: mostly the ones a handshake carries, in any case, so that AWS's casing
/// makes some collide; some arbitrary.
fn header_name() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        Just("host"),
        Just("user-agent"),
        Just("sec-websocket-key"),
        Just("sec-websocket-version"),
        Just("sec-websocket-protocol"),
        Just("x-forwarded-for"),
        Just("x-forwarded-port"),
        Just("x-forwarded-proto"),
        Just("origin"),
    ];
    prop_oneof![
        3 => (known, any::<u32>()).prop_map(|(name, case)| {
            // Flip the case of some letters: `X-FORWARDED-For` is still X-Forwarded-For.
            name.chars()
                .enumerate()
                .map(|(i, c)| if case >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect()
        }),
        2 => text(16),
    ]
}

fn pairs(
    names: impl Strategy<Value = String>,
    max: usize,
) -> impl Strategy<Value = Vec<(String, String)>> {
    vec((names, text(40)), 0..=max)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
        // Runs of zero segments (the `::` forms) and IPv4-mapped/compatible addresses.
        (any::<[u16; 8]>(), any::<u8>()).prop_map(|(mut s, zeros)| {
            for (i, seg) in s.iter_mut().enumerate() {
                if zeros >> i & 1 == 1 {
                    *seg = 0;
                }
            }
            IpAddr::V6(Ipv6Addr::from(s))
        }),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_compatible())),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text(24).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((text(12), inner), 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_map() -> impl Strategy<Value = Map<String, Value>> {
    vec((text(16), json_value()), 0..6).prop_map(|m| m.into_iter().collect())
}

/// Epoch milliseconds: within `time`'s range (to year 9999) mostly, and far beyond it,
/// where the request time reads as the epoch whatever `time`'s features.
fn epoch_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..253_402_300_800_000,
        1 => 40_000_000_000_000_000u64..=u64::MAX,
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        Just(EventKind::Connect),
        Just(EventKind::Message),
        Just(EventKind::Disconnect),
        Just(EventKind::Authorize),
    ]
}

fn body() -> impl Strategy<Value = Option<Payload>> {
    let data = prop_oneof![
        2 => text(64).prop_map(String::into_bytes),
        // Not UTF-8 (in a text frame it cannot happen, but the writer must not care).
        1 => vec(any::<u8>(), 0..64),
    ];
    prop::option::weighted(0.8, (data, any::<bool>())).prop_map(|b| {
        b.map(|(data, binary)| Payload {
            data: Bytes::from(data),
            binary,
        })
    })
}

#[derive(Debug, Clone)]
struct Case {
    invocation: Invocation,
    api: ApiIdentity,
}

fn case() -> impl Strategy<Value = Case> {
    let connection = (
        any::<[u8; 16]>(),
        epoch_ms(),
        ip(),
        prop::option::of(text(40)),
        pairs(header_name(), 8),
        pairs(text(12), 4),
        any::<bool>(),
        any::<u16>(),
        prop::option::weighted(0.3, json_map()),
    )
        .prop_map(
            |(
                id,
                connected_at_ms,
                source_ip,
                user_agent,
                headers,
                query,
                tls,
                port,
                authorizer,
            )| {
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
                ConnectionInfo {
                    id: ConnectionId::parse(&id).expect("22 base64url characters are an id"),
                    connected_at_ms,
                    source_ip,
                    user_agent,
                    path: "/".into(),
                    headers,
                    query,
                    subprotocol: None,
                    tls,
                    port,
                    authorizer,
                }
            },
        );
    let invocation = (
        kind(),
        text(24),
        connection,
        text(24),
        epoch_ms(),
        body(),
        prop::option::weighted(0.3, (any::<u16>(), text(40))),
        prop::option::weighted(0.3, json_map()),
    )
        .prop_map(
            |(
                kind,
                route_key,
                connection,
                request_id,
                request_time_ms,
                body,
                disconnect,
                extension,
            )| {
                Invocation {
                    kind,
                    route_key: Arc::from(route_key),
                    connection: Arc::new(connection),
                    request_id,
                    request_time_ms,
                    body,
                    disconnect,
                    extension,
                }
            },
        );
    let api = (text(16), text(24), text(16)).prop_map(|(stage, domain_name, api_id)| ApiIdentity {
        stage,
        domain_name,
        api_id,
    });
    (invocation, api).prop_map(|(invocation, api)| Case { invocation, api })
}

#[test]
fn fuzz_core_event_json() {
    switchboard_fuzz::run("fuzz_core_event_json", 8000, case(), |c| {
        let ours = c.invocation.to_aws_event(&c.api);
        let reference = reference_event(&c.invocation, &c.api);
        if ours != reference {
            return Err(TestCaseError::fail(format!(
                "event JSON differs from serde_json's\n  ours:      {}\n  serde_json: {}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference)
            )));
        }
        Ok(())
    });
}

// The reference: the serde-derived event, as the gateway wrote it before d8aaa4e.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsEvent<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage_variables: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_query_string_parameters: Option<Map<String, Value>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_base64_encoded: Option<bool>,
}

#[derive(Serialize)]
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
    connection_id: String,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switchboard: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    source_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

fn reference_event(inv: &Invocation, api: &ApiIdentity) -> Vec<u8> {
    let c = &inv.connection;
    let authorize = inv.kind == EventKind::Authorize;
    let connect = matches!(inv.kind, EventKind::Connect | EventKind::Authorize);
    let (headers, multi_value_headers) = if connect {
        let (single, multi) = reference_headers(c);
        (Some(single), Some(multi))
    } else {
        (None, None)
    };
    let (query, multi_query) = if connect && (!c.query.is_empty() || authorize) {
        let (single, multi) = single_and_multi(c.query.iter().cloned());
        (Some(single), Some(multi))
    } else {
        (None, None)
    };
    let body = inv.body.as_ref().filter(|_| !authorize);
    let event = AwsEvent {
        kind: authorize.then_some("REQUEST"),
        method_arn: authorize.then(|| {
            format!(
                "arn:aws:execute-api:local:000000000000:{}/{}/$connect",
                api.api_id, api.stage
            )
        }),
        stage_variables: authorize.then(Map::new),
        headers,
        multi_value_headers,
        query_string_parameters: query,
        multi_value_query_string_parameters: multi_query,
        request_context: RequestContext {
            route_key: &inv.route_key,
            message_id: (inv.kind == EventKind::Message).then(|| message_id(&inv.request_id)),
            event_type: match inv.kind {
                EventKind::Connect | EventKind::Authorize => "CONNECT",
                EventKind::Message => "MESSAGE",
                EventKind::Disconnect => "DISCONNECT",
            },
            extended_request_id: &inv.request_id,
            request_time: request_time(inv.request_time_ms),
            message_direction: "IN",
            stage: &api.stage,
            connected_at: c.connected_at_ms,
            request_time_epoch: inv.request_time_ms,
            identity: Identity {
                source_ip: c.source_ip,
                user_agent: c.user_agent.as_deref(),
            },
            request_id: &inv.request_id,
            domain_name: &api.domain_name,
            connection_id: c.id.to_string(),
            api_id: &api.api_id,
            disconnect_status_code: inv.disconnect.as_ref().map(|d| d.0),
            disconnect_reason: inv.disconnect.as_ref().map(|d| d.1.as_str()),
            authorizer: c.authorizer.as_ref(),
            switchboard: inv.extension.as_ref(),
        },
        body: body.map(|b| {
            if b.binary {
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&b.data))
            } else {
                String::from_utf8_lossy(&b.data)
            }
        }),
        is_base64_encoded: (!authorize).then(|| body.is_some_and(|b| b.binary)),
    };
    serde_json::to_vec(&event).expect("string-keyed maps serialize")
}

/// The handshake headers as AWS's load balancer passes them on: names in AWS's casing,
/// the last value of a repeated name in `headers` and all of them in
/// `multiValueHeaders`, and `X-Forwarded-*` added when the client sent none.
fn reference_headers(c: &ConnectionInfo) -> (Map<String, Value>, Map<String, Value>) {
    let mut all: Vec<(String, String)> = c
        .headers
        .iter()
        .map(|(k, v)| (aws_header_case(k), v.clone()))
        .collect();
    let sent = |all: &[(String, String)], name: &str| all.iter().any(|(k, _)| k == name);
    let mut added = Vec::new();
    if !sent(&all, "X-Forwarded-For") {
        added.push(("X-Forwarded-For".to_owned(), c.source_ip.to_string()));
    }
    if !sent(&all, "X-Forwarded-Port") {
        added.push(("X-Forwarded-Port".to_owned(), c.port.to_string()));
    }
    if !sent(&all, "X-Forwarded-Proto") {
        let proto = if c.tls { "https" } else { "http" };
        added.push(("X-Forwarded-Proto".to_owned(), proto.to_owned()));
    }
    all.extend(added);
    single_and_multi(all.into_iter())
}

fn single_and_multi(
    pairs: impl Iterator<Item = (String, String)>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut single = Map::new();
    let mut multi = Map::new();
    for (k, v) in pairs {
        single.insert(k.clone(), Value::String(v.clone()));
        match multi.entry(k).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(a) => a.push(Value::String(v)),
            _ => unreachable!("only arrays are inserted"),
        }
    }
    (single, multi)
}

/// The request id reversed, a trailing `=` kept at the end.
fn message_id(request_id: &str) -> String {
    let mut s: String = request_id.chars().rev().collect();
    if let Some(stripped) = s.strip_prefix('=') {
        s = stripped.to_owned();
        s.push('=');
    }
    s
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` by the civil-from-days algorithm (H. Hinnant), the
/// epoch for instants past year 9999.
fn request_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut secs = epoch_ms / 1000;
    if secs >= 253_402_300_800 {
        secs = 0;
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The reference itself, on cases whose text is known (so a wrong reference cannot
/// make the target pass).
#[test]
fn reference_dates_and_ids_are_right() {
    assert_eq!(
        request_time(1_731_324_924_561),
        "11/Nov/2024:11:35:24 +0000"
    );
    assert_eq!(
        request_time(1_709_251_200_000),
        "01/Mar/2024:00:00:00 +0000"
    );
    assert_eq!(request_time(951_782_400_000), "29/Feb/2000:00:00:00 +0000");
    assert_eq!(
        request_time(253_402_300_799_000),
        "31/Dec/9999:23:59:59 +0000"
    );
    assert_eq!(request_time(u64::MAX), "01/Jan/1970:00:00:00 +0000");
    assert_eq!(message_id("BFHPhFe3IAMF95g="), "g59FMAI3eFhPHFB=");
    assert_eq!(message_id("ab"), "ba");
}

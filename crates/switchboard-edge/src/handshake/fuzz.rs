//! Fuzz target: the handshake decision over arbitrary requests.
//!
//! Header maps drawn from the names the decision reads (with values near the valid ones
//! and arbitrary bytes) plus noise, any method, HTTP/1.0 or 1.1, query strings with resume
//! parameters, any peer and any policy. The decision never panics; every refusal is a 4xx
//! (503 only when shutting down) with a label of `switchboard_handshakes_rejected_total`;
//! and an accept keeps the protocol's promises: GET over HTTP/1.1 with version 13 and a
//! valid key answered with its accept value, a subprotocol the client offered, a source
//! address that is the peer or one the header named, and no resume parameter in the query;
//! an address the IP lists refuse, or an origin the origin rules refuse, is never accepted.

use std::net::IpAddr;

use switchboard_core::access::{IpRules, Origin, OriginPattern};
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;
use switchboard_ws::deflate::DeflateConfig;
use switchboard_ws::handshake as ws;

use super::{decide, Decision, Policy, Reject};

/// The documented `reason` labels (docs/config.md).
const LABELS: &[&str] = &[
    "not_websocket",
    "bad_request",
    "bad_version",
    "max_connections",
    "rate_limited",
    "shutting_down",
    "rejected_by_function",
    "function_error",
    "session_in_use",
    "session_proof",
    "head_too_large",
    "ip_denied",
    "origin",
];

const NAMES: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-version",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-forwarded-for",
    "host",
    "origin",
    "x-noise",
];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Upgrade".to_vec()),
        Just(b"keep-alive, upgrade".to_vec()),
        Just(b"websocket".to_vec()),
        Just(b"13".to_vec()),
        Just(b"8".to_vec()),
        Just(b"dGhlIHNhbXBsZSBub25jZQ==".to_vec()),
        Just(b"chat, switchboard.v1".to_vec()),
        Just(b"permessage-deflate; client_max_window_bits".to_vec()),
        Just(b"permessage-deflate; server_max_window_bits=9, x".to_vec()),
        Just(b"10.0.0.2, 198.51.100.1".to_vec()),
        Just(b"::1, unknown, 10.1.2.3".to_vec()),
        Just(b"https://chat.example.com".to_vec()),
        Just(b"https://a.example.org:8443".to_vec()),
        Just(b"http://example.com".to_vec()),
        Just(b"example.com".to_vec()),
        Just(b"null".to_vec()),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..40),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    method: &'static str,
    http10: bool,
    /// Start from a valid handshake, so the extra headers decide.
    valid: bool,
    query: String,
    headers: Vec<(usize, Vec<u8>)>,
    peer: IpAddr,
    resume: bool,
    static_files: bool,
    deflate: bool,
    max_head_bytes: usize,
    max_headers: usize,
    shutting_down: bool,
    /// 0: same origin only, 1: a list, 2: `*`.
    origins: u8,
    require_origin: bool,
    ip_lists: bool,
}

fn input() -> impl Strategy<Value = Input> {
    let peer = prop_oneof![
        Just("10.0.0.1".parse::<IpAddr>().unwrap()),
        Just("198.51.100.9".parse().unwrap()),
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    (
        (
            prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "POST", "OPTIONS"]),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.7),
            "(sb_session=[a-z]{0,4}&|sb_last=[0-9x]{0,3}&|a=[%&=+a-z0-9]{0,4}){0,5}",
            vec((0..NAMES.len(), value()), 0..12),
            peer,
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![0usize..1200, Just(16 * 1024)],
            prop_oneof![0usize..20, Just(100)],
            prop::bool::weighted(0.1),
        ),
        (0u8..3, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (method, http10, valid, query, headers, peer),
                (resume, static_files, deflate, max_head_bytes, max_headers, shutting_down),
                (origins, require_origin, ip_lists),
            )| Input {
                method,
                http10,
                valid,
                query,
                headers,
                peer,
                resume,
                static_files,
                deflate,
                max_head_bytes,
                max_headers,
                shutting_down,
                origins,
                require_origin,
                ip_lists,
            },
        )
}

#[test]
fn fuzz_edge_handshake_decision() {
    switchboard_fuzz::run("fuzz_edge_handshake_decision", 60_000, input(), |i| {
        let mut req = http::Request::builder()
            .method(i.method)
            .uri(format!("/ws?{}", i.query))
            .version(if i.http10 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            })
            .body(())
            .expect("a valid request line");
        if i.valid {
            let h = req.headers_mut();
            h.insert("connection", "Upgrade".parse().unwrap());
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("sec-websocket-version", "13".parse().unwrap());
            h.insert(
                "sec-websocket-key",
                "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
            );
        }
        for (name, value) in &i.headers {
            if let Ok(v) = http::HeaderValue::from_bytes(value) {
                req.headers_mut().append(NAMES[*name], v);
            }
        }
        let subprotocols = vec!["chat".to_owned(), "switchboard.v1".to_owned()];
        let trusted = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let deflate = DeflateConfig::default();
        let origins: Vec<OriginPattern> = match i.origins {
            0 => Vec::new(),
            1 => ["https://chat.example.com", "https://*.example.org:8443"]
                .iter()
                .map(|o| OriginPattern::parse(o).unwrap())
                .collect(),
            _ => vec![OriginPattern::parse("*").unwrap()],
        };
        let (allow, deny): (Vec<ipnet::IpNet>, Vec<ipnet::IpNet>) = if i.ip_lists {
            (
                vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                vec!["10.1.0.0/16".parse().unwrap()],
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let ips = IpRules {
            allow: &allow,
            deny: &deny,
        };
        let policy = Policy {
            subprotocols: &subprotocols,
            trusted_proxies: &trusted,
            deflate: i.deflate.then_some(&deflate),
            resume: i.resume,
            static_files: i.static_files,
            max_head_bytes: i.max_head_bytes,
            max_headers: i.max_headers,
            allowed_origins: &origins,
            require_origin: i.require_origin,
            ips,
        };
        let h = req.headers();
        match decide(&req, i.peer, &policy, i.shutting_down) {
            Decision::Reject(r) => {
                let status = r.status();
                prop_assert!(
                    status.is_client_error()
                        || (r == Reject::ShuttingDown && status == 503 && i.shutting_down),
                    "{r:?} answers {status}"
                );
                prop_assert!(LABELS.contains(&r.label()), "{r:?}");
                prop_assert_eq!(r.response().status(), status);
            }
            Decision::Static { head } => {
                prop_assert!(i.static_files);
                prop_assert_eq!(head, i.method == "HEAD");
            }
            Decision::Accept(a) => {
                prop_assert!(!i.shutting_down && !i.http10 && i.method == "GET");
                prop_assert!(h.len() <= i.max_headers);
                prop_assert_eq!(h.get("sec-websocket-version").unwrap(), "13");
                let key = h.get("sec-websocket-key").unwrap().as_bytes();
                prop_assert!(ws::is_valid_key(key));
                prop_assert_eq!(a.accept_key.to_str().unwrap(), ws::accept_key(key));
                let offered = |p: &str| {
                    h.get_all("sec-websocket-protocol")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| v.split(',').any(|t| t.trim() == p))
                };
                if let Some(p) = &a.subprotocol {
                    prop_assert!(offered(p) && subprotocols.contains(p), "{p}");
                }
                prop_assert_eq!(a.session, i.resume && offered("switchboard.v1"));
                prop_assert!(a.session || a.resume.is_none());
                if a.session {
                    prop_assert!(a
                        .query
                        .iter()
                        .all(|(k, _)| k != "sb_session" && k != "sb_last"));
                }
                prop_assert!(i.deflate || a.deflate.is_none());
                let named = h
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|e| e.trim().parse() == Ok(a.source_ip));
                prop_assert!(a.source_ip == i.peer || named, "{}", a.source_ip);
                prop_assert!(ips.permits(a.source_ip), "{}", a.source_ip);
                let origin = h.get("origin").map(|v| v.to_str().unwrap_or(""));
                prop_assert!(origin.is_some() || !i.require_origin);
                if let Some(o) = origin {
                    let host = h.get("host").and_then(|v| v.to_str().ok());
                    prop_assert!(
                        origins.iter().any(|p| p.allows(o))
                            || (origins.is_empty()
                                && host.is_some_and(|host| {
                                    Origin::parse(o).is_some_and(|o| o.is_host(host))
                                })),
                        "{} from {:?}",
                        o,
                        host
                    );
                }
            }
        }
        Ok(())
    });
}

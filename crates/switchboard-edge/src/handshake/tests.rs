//! The decision, request by request: each row is a request and what the edge must answer.

use std::net::IpAddr;

use http::{request::Builder, Request, StatusCode, Version};
use switchboard_core::access::{IpRules, OriginPattern};
use switchboard_ws::deflate::DeflateConfig;

use super::{decide, Accept, Decision, Policy, Reject, Resume};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3's accept value for [`KEY`].
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const PEER: &str = "203.0.113.7";

/// A valid handshake, to be spoiled one header at a time.
fn ws() -> Builder {
    Request::get("/chat")
        .header("host", "example.com")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", KEY)
}

/// A request without one of its headers.
fn without(name: &str) -> Request<()> {
    let mut r = ws().body(()).unwrap();
    r.headers_mut().remove(name);
    r
}

/// A request with one header replaced.
fn with(name: &'static str, value: &str) -> Request<()> {
    let mut r = ws().body(()).unwrap();
    r.headers_mut().insert(name, value.parse().unwrap());
    r
}

/// Owned configuration a [`Policy`] borrows.
struct Conf {
    subprotocols: Vec<String>,
    trusted: Vec<ipnet::IpNet>,
    deflate: Option<DeflateConfig>,
    resume: bool,
    static_files: bool,
    max_head_bytes: usize,
    max_headers: usize,
    origins: Vec<OriginPattern>,
    require_origin: bool,
    allow_ips: Vec<ipnet::IpNet>,
    deny_ips: Vec<ipnet::IpNet>,
}

impl Default for Conf {
    fn default() -> Self {
        Self {
            subprotocols: Vec::new(),
            trusted: Vec::new(),
            deflate: None,
            resume: false,
            static_files: false,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            origins: Vec::new(),
            require_origin: false,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
        }
    }
}

impl Conf {
    fn policy(&self) -> Policy<'_> {
        Policy {
            subprotocols: &self.subprotocols,
            trusted_proxies: &self.trusted,
            deflate: self.deflate.as_ref(),
            resume: self.resume,
            static_files: self.static_files,
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            allowed_origins: &self.origins,
            require_origin: self.require_origin,
            ips: IpRules {
                allow: &self.allow_ips,
                deny: &self.deny_ips,
            },
        }
    }

    fn decide(&self, req: &Request<()>) -> Decision {
        decide(req, PEER.parse().unwrap(), &self.policy(), false)
    }

    fn accept(&self, req: Request<()>) -> Accept {
        match self.decide(&req) {
            Decision::Accept(a) => a,
            other => panic!("expected an accept, got {other:?}"),
        }
    }
}

#[test]
fn the_door() {
    use Decision::{Reject as R, Static};
    let plain = Conf::default();
    let with_pages = Conf {
        static_files: true,
        ..Conf::default()
    };
    let small_head = Conf {
        max_head_bytes: 200,
        ..Conf::default()
    };
    let few_headers = Conf {
        max_headers: 5,
        ..Conf::default()
    };
    let mut http10 = ws().body(()).unwrap();
    *http10.version_mut() = Version::HTTP_10;
    let cases: Vec<(&str, &Conf, Request<()>, Option<Decision>)> = vec![
        ("a valid handshake", &plain, ws().body(()).unwrap(), None),
        (
            "no Upgrade",
            &plain,
            without("upgrade"),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "no Connection",
            &plain,
            without("connection"),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "Upgrade names another protocol",
            &plain,
            with("upgrade", "h2c"),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "Connection: keep-alive only",
            &plain,
            with("connection", "keep-alive"),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "Connection: keep-alive, Upgrade and any case",
            &plain,
            {
                let mut r = ws().body(()).unwrap();
                r.headers_mut()
                    .insert("connection", "keep-alive, UPGRADE".parse().unwrap());
                r.headers_mut()
                    .insert("upgrade", "WebSocket".parse().unwrap());
                r
            },
            None,
        ),
        (
            "Connection tokens split over two lines",
            &plain,
            {
                let mut r = without("connection");
                r.headers_mut()
                    .append("connection", "keep-alive".parse().unwrap());
                r.headers_mut()
                    .append("connection", "upgrade".parse().unwrap());
                r
            },
            None,
        ),
        (
            "a token is not a substring",
            &plain,
            with("connection", "upgraded"),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "a plain GET without [static]",
            &plain,
            Request::get("/").body(()).unwrap(),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "a plain GET with [static]",
            &with_pages,
            Request::get("/index.html").body(()).unwrap(),
            Some(Static { head: false }),
        ),
        (
            "a HEAD with [static]",
            &with_pages,
            Request::head("/").body(()).unwrap(),
            Some(Static { head: true }),
        ),
        (
            "a POST with [static] is no page",
            &with_pages,
            Request::post("/").body(()).unwrap(),
            Some(R(Reject::NotWebSocket)),
        ),
        (
            "a handshake with [static] is still a handshake",
            &with_pages,
            ws().body(()).unwrap(),
            None,
        ),
        (
            "an upgrade by POST",
            &plain,
            ws().method("POST").body(()).unwrap(),
            Some(R(Reject::Method)),
        ),
        (
            "an upgrade by HEAD",
            &plain,
            ws().method("HEAD").body(()).unwrap(),
            Some(R(Reject::Method)),
        ),
        (
            "an upgrade over HTTP/1.0",
            &plain,
            http10,
            Some(R(Reject::HttpVersion)),
        ),
        (
            "no Sec-WebSocket-Version",
            &plain,
            without("sec-websocket-version"),
            Some(R(Reject::WsVersion)),
        ),
        (
            "Sec-WebSocket-Version 8",
            &plain,
            with("sec-websocket-version", "8"),
            Some(R(Reject::WsVersion)),
        ),
        (
            "Sec-WebSocket-Version 13, 8",
            &plain,
            with("sec-websocket-version", "13, 8"),
            Some(R(Reject::WsVersion)),
        ),
        (
            "no Sec-WebSocket-Key",
            &plain,
            without("sec-websocket-key"),
            Some(R(Reject::Key)),
        ),
        (
            "a key of 15 bytes",
            &plain,
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA"),
            Some(R(Reject::Key)),
        ),
        (
            "a key that is not base64",
            &plain,
            with("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ!!"),
            Some(R(Reject::Key)),
        ),
        (
            "a head over max_request_head_bytes",
            &small_head,
            ws().header("x-padding", "p".repeat(120)).body(()).unwrap(),
            Some(R(Reject::HeadTooLarge)),
        ),
        (
            "a head just under it",
            &small_head,
            ws().body(()).unwrap(),
            None,
        ),
        (
            "more header lines than max_request_headers",
            &few_headers,
            ws().header("x-one", "1").body(()).unwrap(),
            Some(R(Reject::HeadTooLarge)),
        ),
        (
            "exactly max_request_headers",
            &few_headers,
            ws().body(()).unwrap(),
            None,
        ),
        (
            "an over-long head is refused before anything else",
            &small_head,
            Request::post("/")
                .header("x-padding", "p".repeat(300))
                .body(())
                .unwrap(),
            Some(R(Reject::HeadTooLarge)),
        ),
    ];
    for (name, conf, req, want) in cases {
        let got = conf.decide(&req);
        match want {
            None => match got {
                Decision::Accept(a) => assert_eq!(a.accept_key, ACCEPT, "{name}"),
                other => panic!("{name}: expected an accept, got {other:?}"),
            },
            Some(want) => assert_eq!(got, want, "{name}"),
        }
    }
}

#[test]
fn shutting_down_refuses_only_valid_handshakes() {
    let conf = Conf::default();
    let peer = PEER.parse().unwrap();
    let valid = ws().body(()).unwrap();
    assert_eq!(
        decide(&valid, peer, &conf.policy(), true),
        Decision::Reject(Reject::ShuttingDown)
    );
    // A malformed request is told what is wrong with it, shutdown or not.
    assert_eq!(
        decide(&without("sec-websocket-key"), peer, &conf.policy(), true),
        Decision::Reject(Reject::Key)
    );
}

#[test]
fn refusals_keep_their_statuses_labels_and_headers() {
    let cases = [
        (Reject::NotWebSocket, 426, "not_websocket"),
        (Reject::Method, 405, "bad_request"),
        (Reject::HttpVersion, 400, "bad_request"),
        (Reject::WsVersion, 426, "bad_version"),
        (Reject::Key, 400, "bad_request"),
        (Reject::HeadTooLarge, 431, "head_too_large"),
        (Reject::ShuttingDown, 503, "shutting_down"),
        (Reject::RateLimited, 429, "rate_limited"),
        (Reject::MaxConnections, 503, "max_connections"),
        (Reject::SessionInUse, 409, "session_in_use"),
        (Reject::IpDenied, 403, "ip_denied"),
        (Reject::Origin, 403, "origin"),
        (Reject::IpLimit, 429, "ip_limit"),
        (Reject::UserLimit, 429, "user_limit"),
    ];
    assert_eq!(cases.len(), Reject::ALL.len());
    for (reject, status, label) in cases {
        assert_eq!(
            reject.status(),
            StatusCode::from_u16(status).unwrap(),
            "{reject:?}"
        );
        assert_eq!(reject.label(), label, "{reject:?}");
        let r = reject.response();
        assert_eq!(r.status(), status, "{reject:?}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    }
    let r = Reject::WsVersion.response();
    assert_eq!(r.headers()["sec-websocket-version"], "13");
    let r = Reject::NotWebSocket.response();
    assert_eq!(r.headers()["upgrade"], "websocket");
    assert_eq!(r.headers()["connection"], "Upgrade");
    assert!(Reject::Key.response().headers().get("upgrade").is_none());
}

#[test]
fn subprotocol_by_server_preference() {
    let conf = Conf {
        subprotocols: vec!["chat.v2".into(), "chat.v1".into()],
        ..Conf::default()
    };
    let offer = |values: &[&str]| {
        let mut b = ws();
        for v in values {
            b = b.header("sec-websocket-protocol", *v);
        }
        conf.accept(b.body(()).unwrap()).subprotocol
    };
    let cases: [(&[&str], Option<&str>); 7] = [
        (&[], None),
        (&["chat.v1"], Some("chat.v1")),
        (&["chat.v1, chat.v2"], Some("chat.v2")),
        (&["chat.v1", "chat.v2"], Some("chat.v2")),
        (&["other"], None),
        (&["CHAT.V1"], None),
        (&["switchboard.v1"], None),
    ];
    for (values, want) in cases {
        assert_eq!(offer(values).as_deref(), want, "{values:?}");
    }
}

#[test]
fn deflate_offers() {
    let sparing = Conf {
        deflate: Some(DeflateConfig::default()),
        ..Conf::default()
    };
    let keeping = Conf {
        deflate: Some(DeflateConfig {
            context_takeover: true,
            ..DeflateConfig::default()
        }),
        ..Conf::default()
    };
    let off = Conf::default();
    let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let cases: [(&Conf, &str, Option<&str>); 10] = [
        (&sparing, "permessage-deflate", Some(both)),
        (
            &sparing,
            "permessage-deflate; client_max_window_bits",
            Some(both),
        ),
        (
            &keeping,
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate"),
        ),
        (
            &keeping,
            "permessage-deflate; server_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            &keeping,
            "permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &keeping,
            "permessage-deflate; server_max_window_bits=16",
            None,
        ),
        (
            &keeping,
            "permessage-deflate; server_max_window_bits=010",
            None,
        ),
        (&keeping, "permessage-deflate; unknown_param", None),
        (
            &keeping,
            "permessage-deflate; bogus, permessage-deflate",
            Some("permessage-deflate"),
        ),
        (&off, "permessage-deflate", None),
    ];
    for (conf, offer, want) in cases {
        let a = conf.accept(
            ws().header("sec-websocket-extensions", offer)
                .body(())
                .unwrap(),
        );
        let got = a.deflate.as_ref().map(|(_, v)| v.to_str().unwrap());
        assert_eq!(got, want, "{offer}");
    }
    let a = keeping.accept(
        ws().header(
            "sec-websocket-extensions",
            "permessage-deflate; server_max_window_bits=9",
        )
        .body(())
        .unwrap(),
    );
    assert_eq!(a.deflate.unwrap().0.server_max_window_bits, 9);
    let a = sparing.accept(ws().body(()).unwrap());
    assert_eq!(a.deflate, None, "nothing offered, nothing agreed");
}

#[test]
fn source_address_through_trusted_proxies() {
    let conf = Conf {
        trusted: vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ],
        ..Conf::default()
    };
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let cases: [(&str, &[&str], &str); 9] = [
        // An untrusted peer's header is ignored.
        (PEER, &["198.51.100.1"], PEER),
        ("10.0.0.1", &[], "10.0.0.1"),
        ("10.0.0.1", &["198.51.100.1"], "198.51.100.1"),
        // The rightmost untrusted entry: what the client wrote on the left is not believed.
        ("10.0.0.1", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        (
            "10.0.0.1",
            &["6.6.6.6, 198.51.100.1, 10.0.0.2"],
            "198.51.100.1",
        ),
        (
            "10.0.0.1",
            &["6.6.6.6", "198.51.100.1, 127.0.0.1"],
            "198.51.100.1",
        ),
        // All trusted: the leftmost.
        ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        // An entry that is no address ends the walk at the nearest trusted hop.
        ("10.0.0.1", &["6.6.6.6, unknown, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", &["6.6.6.6, 198.51.100.1:4711"], "10.0.0.1"),
    ];
    for (peer, xff, want) in cases {
        let mut b = ws();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let got = decide(&b.body(()).unwrap(), ip(peer), &conf.policy(), false);
        let Decision::Accept(a) = got else {
            panic!("{peer} {xff:?}: {got:?}")
        };
        assert_eq!(a.source_ip, ip(want), "{peer} {xff:?}");
    }
}

#[test]
fn sessions_and_resume_tokens() {
    let on = Conf {
        resume: true,
        subprotocols: vec!["chat".into()],
        ..Conf::default()
    };
    let off = Conf {
        subprotocols: vec!["chat".into()],
        ..Conf::default()
    };
    let req = |uri: &str, protocols: &str| {
        ws().uri(uri)
            .header("sec-websocket-protocol", protocols)
            .body(())
            .unwrap()
    };
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    let a = on.accept(req(
        "/?sb_session=tok&sb_last=7&room=1",
        "chat, switchboard.v1",
    ));
    assert!(a.session);
    assert_eq!(
        a.subprotocol.as_deref(),
        Some("switchboard.v1"),
        "the session protocol wins"
    );
    assert_eq!(
        a.resume,
        Some(Resume {
            token: "tok".into(),
            after: 7
        })
    );
    assert_eq!(
        a.query,
        q(&[("room", "1")]),
        "the credential stays out of the query"
    );

    let a = on.accept(req("/?room=1", "switchboard.v1"));
    assert!(a.session && a.resume.is_none(), "a new session");

    let a = on.accept(req("/?sb_session=&sb_last=3", "switchboard.v1"));
    assert_eq!(a.resume, None, "an empty token is none");
    assert_eq!(a.query, q(&[]));

    let a = on.accept(req("/?sb_session=tok&sb_last=x", "switchboard.v1"));
    assert_eq!(
        a.resume.unwrap().after,
        0,
        "an unreadable sb_last counts as 0"
    );

    let a = on.accept(req("/?sb_session=a&sb_session=b", "switchboard.v1"));
    assert_eq!(
        a.resume.unwrap().token,
        "b",
        "the last of a repeated parameter"
    );

    let a = on.accept(req("/?sb_session=tok", "chat"));
    assert!(
        !a.session && a.resume.is_none(),
        "no session without its protocol"
    );
    assert_eq!(a.subprotocol.as_deref(), Some("chat"));
    assert_eq!(
        a.query,
        q(&[("sb_session", "tok")]),
        "then it is an ordinary parameter"
    );

    let a = off.accept(req("/?sb_session=tok", "switchboard.v1"));
    assert!(!a.session && a.resume.is_none(), "[resume] off: no session");
    assert_eq!(a.subprotocol, None);
    assert_eq!(a.query, q(&[("sb_session", "tok")]));
}

#[tokio::test]
async fn authorizer_refusals_answer_as_api_gateway() {
    use http_body_util::BodyExt;
    use switchboard_auth::{AuthError, Failure, Missing, Refusal};
    let cases = [
        (
            AuthError::MissingIdentity(Missing::NoToken),
            401,
            r#"{"message":"Unauthorized"}"#,
        ),
        (
            AuthError::Denied(Refusal::Expired),
            403,
            r#"{"message":"Forbidden"}"#,
        ),
        (
            AuthError::Denied(Refusal::AlgNone),
            403,
            r#"{"message":"Forbidden"}"#,
        ),
        (
            AuthError::Failed(Failure::KeysNotLoaded),
            500,
            r#"{"message":"Internal server error"}"#,
        ),
    ];
    for (e, status, body) in cases {
        let r = super::auth_refusal(&e);
        assert_eq!(r.status(), status, "{e:?}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let got = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], body.as_bytes(), "{e:?}");
    }
}

/// Every `reason` label of `switchboard_handshakes_rejected_total` decided here or by the
/// authorizer has a row in docs/config.md's table of them.
#[test]
fn every_refusal_label_is_documented() {
    let docs = include_str!("../../../../docs/config.md");
    let table = docs
        .split_once("### Why handshakes are refused")
        .expect("the section")
        .1;
    let labels = Reject::ALL
        .iter()
        .map(|r| r.label())
        .chain(switchboard_auth::AuthError::LABELS);
    for label in labels {
        let row = format!("\n| `{label}` |");
        assert!(table.contains(&row), "{label} undocumented");
    }
}

/// A valid handshake to `example.com` with an `Origin` (none when `origin` is empty).
fn from_origin(origin: &str) -> Request<()> {
    if origin.is_empty() {
        without("origin")
    } else {
        with("origin", origin)
    }
}

#[test]
fn origins_at_the_door() {
    use Decision::Reject as R;
    let same_origin = Conf::default();
    let listed = Conf {
        origins: ["https://chat.example.net", "https://*.example.org"]
            .iter()
            .map(|o| OriginPattern::parse(o).unwrap())
            .collect(),
        ..Conf::default()
    };
    let required = Conf {
        require_origin: true,
        ..Conf::default()
    };
    let any = Conf {
        origins: vec![OriginPattern::parse("*").unwrap()],
        ..Conf::default()
    };
    let refused = Some(Reject::Origin);
    let cases: Vec<(&str, &Conf, &str, Option<Reject>)> = vec![
        ("same origin", &same_origin, "https://example.com", None),
        (
            "same origin, any case",
            &same_origin,
            "HTTPS://Example.COM",
            None,
        ),
        (
            "same host, another port",
            &same_origin,
            "http://example.com:8080",
            refused,
        ),
        (
            "another host",
            &same_origin,
            "https://evil.example",
            refused,
        ),
        ("a sandboxed page", &same_origin, "null", refused),
        ("no Origin", &same_origin, "", None),
        ("listed", &listed, "https://chat.example.net", None),
        ("wildcard-listed", &listed, "https://a.example.org", None),
        (
            "the wildcard's own host",
            &listed,
            "https://example.org",
            refused,
        ),
        ("unlisted", &listed, "https://evil.example", refused),
        // A list replaces the same-origin rule.
        (
            "same origin, unlisted",
            &listed,
            "https://example.com",
            refused,
        ),
        ("no Origin with a list", &listed, "", None),
        ("no Origin, required", &required, "", refused),
        (
            "same origin, required",
            &required,
            "https://example.com",
            None,
        ),
        ("any origin", &any, "https://evil.example", None),
    ];
    for (name, conf, origin, want) in cases {
        match (conf.decide(&from_origin(origin)), want) {
            (Decision::Accept(_), None) => {}
            (got, Some(want)) => assert_eq!(got, R(want), "{name}"),
            (got, None) => panic!("{name}: expected an accept, got {got:?}"),
        }
    }
    // An Origin that is not text names no origin.
    let mut r = ws().body(()).unwrap();
    r.headers_mut().insert(
        "origin",
        http::HeaderValue::from_bytes(b"https://ex\xffample.com").unwrap(),
    );
    assert_eq!(same_origin.decide(&r), R(Reject::Origin));
    // Pages are not handshakes: `[static]` answers them whatever their Origin.
    let pages = Conf {
        static_files: true,
        ..Conf::default()
    };
    let mut page = Request::get("/app.js")
        .header("host", "example.com")
        .header("origin", "https://evil.example")
        .body(())
        .unwrap();
    assert_eq!(pages.decide(&page), Decision::Static { head: false });
    // A malformed handshake is told what is wrong with it first.
    page.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    page.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    assert_eq!(pages.decide(&page), R(Reject::WsVersion));
}

#[test]
fn ip_lists_at_the_door() {
    use Decision::Reject as R;
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let conf = Conf {
        trusted: vec![net("10.0.0.0/8")],
        allow_ips: vec![net("198.51.100.0/24"), net("2001:db8::/32")],
        deny_ips: vec![net("198.51.100.66/32"), net("10.9.0.0/16")],
        static_files: true,
        ..Conf::default()
    };
    let denied = Some(Reject::IpDenied);
    let cases: [(&str, &[&str], Option<Reject>); 9] = [
        ("198.51.100.7", &[], None),
        ("2001:db8::1", &[], None),
        // Outside a non-empty allow list.
        ("203.0.113.7", &[], denied),
        ("2001:db9::1", &[], denied),
        // Deny wins over allow.
        ("198.51.100.66", &[], denied),
        // Evaluated on the client address, after the trusted proxy.
        ("10.0.0.1", &["198.51.100.7"], None),
        ("10.0.0.1", &["198.51.100.66"], denied),
        ("10.0.0.1", &["203.0.113.7"], denied),
        // An untrusted peer's header does not buy it an allowed address.
        ("203.0.113.7", &["198.51.100.7"], denied),
    ];
    for (peer, forwarded, want) in cases {
        let mut b = ws();
        for f in forwarded {
            b = b.header("x-forwarded-for", *f);
        }
        let got = decide(
            &b.body(()).unwrap(),
            peer.parse().unwrap(),
            &conf.policy(),
            false,
        );
        match (got, want) {
            (Decision::Accept(_), None) => {}
            (got, Some(want)) => assert_eq!(got, R(want), "{peer} {forwarded:?}"),
            (got, None) => panic!("{peer} {forwarded:?}: expected an accept, got {got:?}"),
        }
    }
    // Refused before anything else is read: pages and malformed requests too.
    let page = Request::get("/")
        .header("host", "example.com")
        .body(())
        .unwrap();
    let peer: IpAddr = "203.0.113.7".parse().unwrap();
    assert_eq!(
        decide(&page, peer, &conf.policy(), false),
        R(Reject::IpDenied)
    );
    assert_eq!(
        decide(&without("sec-websocket-key"), peer, &conf.policy(), true),
        R(Reject::IpDenied)
    );
}

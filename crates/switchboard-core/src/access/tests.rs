//! Origin matching and IP rules, case by case, and a property over generated origins.

use std::net::IpAddr;

use switchboard_fuzz::proptest::prelude::*;

use super::{origin_allowed, IpRules, Origin, OriginPattern};

fn patterns(list: &[&str]) -> Vec<OriginPattern> {
    list.iter()
        .map(|p| OriginPattern::parse(p).unwrap())
        .collect()
}

#[test]
fn patterns_parse_or_are_refused() {
    for ok in [
        "*",
        "https://chat.example.com",
        "HTTPS://Chat.Example.COM:443",
        "http://localhost:8080",
        "https://*.example.com",
        "https://*.example.com:8443",
        "http://[::1]:8080",
        "http://127.0.0.1",
    ] {
        assert!(OriginPattern::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "chat.example.com",
        "https://",
        "https://chat.example.com/",
        "https://chat.example.com/path",
        "https://user@chat.example.com",
        "https://chat.example.com:99999",
        "https://chat.example.com:",
        "https://*.*.example.com",
        "https://a.*.example.com",
        "https://*example.com",
        "https://*.[::1]",
        "**",
        "null",
        "https://chat example.com",
    ] {
        assert!(OriginPattern::parse(bad).is_err(), "{bad:?}");
    }
    // Written back in canonical form (the default port left out).
    assert_eq!(
        OriginPattern::parse("HTTPS://Chat.Example.COM:443")
            .unwrap()
            .to_string(),
        "https://chat.example.com"
    );
    assert_eq!(
        OriginPattern::parse("https://*.Example.com:8443")
            .unwrap()
            .to_string(),
        "https://*.example.com:8443"
    );
}

#[test]
fn origins_against_lists() {
    let list = patterns(&["https://chat.example.com", "https://*.example.org"]);
    let cases: &[(&str, bool)] = &[
        ("https://chat.example.com", true),
        ("https://CHAT.example.com:443", true),
        ("http://chat.example.com", false),
        ("https://chat.example.com:8443", false),
        ("https://evil.example.com", false),
        ("https://chat.example.com.evil.net", false),
        ("https://a.example.org", true),
        ("https://a.b.example.org", true),
        ("https://example.org", false),
        ("https://aexample.org", false),
        ("http://a.example.org", false),
        ("null", false),
        ("", false),
        ("https://chat.example.com/", false),
    ];
    for (origin, allowed) in cases {
        assert_eq!(
            origin_allowed(&list, false, Some(origin), Some("gateway.internal")),
            *allowed,
            "{origin}"
        );
    }
    let any = patterns(&["*"]);
    assert!(origin_allowed(&any, false, Some("null"), None));
    assert!(origin_allowed(&any, false, Some("https://x.y"), None));
}

#[test]
fn same_origin_by_default() {
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("http://localhost:8080", Some("localhost:8080"), true),
        ("http://LOCALHOST:8080", Some("localhost:8080"), true),
        ("http://localhost:8081", Some("localhost:8080"), false),
        ("https://chat.example.com", Some("chat.example.com"), true),
        (
            "https://chat.example.com",
            Some("chat.example.com:443"),
            true,
        ),
        ("http://chat.example.com", Some("chat.example.com:80"), true),
        (
            "https://chat.example.com",
            Some("chat.example.com:80"),
            false,
        ),
        ("https://evil.example", Some("chat.example.com"), false),
        ("http://[::1]:8080", Some("[::1]:8080"), true),
        ("http://127.0.0.1:8080", Some("[::1]:8080"), false),
        ("null", Some("chat.example.com"), false),
        ("https://chat.example.com", None, false),
        (
            "https://chat.example.com",
            Some("chat.example.com:x"),
            false,
        ),
    ];
    for (origin, host, allowed) in cases {
        assert_eq!(
            origin_allowed(&[], false, Some(origin), *host),
            *allowed,
            "{origin} against {host:?}"
        );
    }
}

#[test]
fn absent_origin_passes_unless_required() {
    let list = patterns(&["https://chat.example.com"]);
    assert!(origin_allowed(&[], false, None, Some("h")));
    assert!(origin_allowed(&list, false, None, None));
    assert!(!origin_allowed(&[], true, None, Some("h")));
    assert!(!origin_allowed(&patterns(&["*"]), true, None, None));
}

#[test]
fn ip_rules() {
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let allow = vec![net("10.0.0.0/8"), net("2001:db8::/32")];
    let deny = vec![net("10.1.0.0/16"), net("192.0.2.1/32")];
    let open = IpRules {
        allow: &[],
        deny: &[],
    };
    assert!(open.permits(ip("203.0.113.1")));
    let deny_only = IpRules {
        allow: &[],
        deny: &deny,
    };
    assert!(deny_only.permits(ip("203.0.113.1")));
    assert!(!deny_only.permits(ip("192.0.2.1")));
    // The IPv4 address of a dual-stack listener's peer.
    assert!(!deny_only.permits(ip("::ffff:192.0.2.1")));
    let both = IpRules {
        allow: &allow,
        deny: &deny,
    };
    assert!(both.permits(ip("10.2.3.4")));
    assert!(!both.permits(ip("10.1.3.4")), "deny wins over allow");
    assert!(
        !both.permits(ip("203.0.113.1")),
        "outside a non-empty allow list"
    );
    assert!(both.permits(ip("2001:db8::7")));
    assert!(!both.permits(ip("2001:db9::7")));
    assert!(both.permits(ip("::ffff:10.2.3.4")));
}

/// An origin built from parts, and the same origin spelled another way.
fn origin() -> impl Strategy<Value = (String, String, Option<u16>)> {
    (
        prop::sample::select(vec!["http", "https", "ws", "wss", "app"]),
        "[a-z0-9-]{1,6}(\\.[a-z0-9-]{1,6}){0,3}",
        prop::option::of(prop_oneof![Just(80u16), Just(443), any::<u16>()]),
    )
        .prop_map(|(s, h, p)| (s.to_owned(), h, p))
}

fn spell(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

#[test]
fn fuzz_core_origin_matching() {
    let input = (origin(), origin(), "[ -~]{0,30}", any::<bool>());
    switchboard_fuzz::run(
        "fuzz_core_origin_matching",
        20_000,
        input,
        |((s, h, p), (s2, h2, p2), noise, upper)| {
            let text = spell(&s, &h, p);
            let pattern = OriginPattern::parse(&text).expect("a built origin parses");
            // Case and the default port do not change what an origin is.
            let respelled = if upper {
                text.to_ascii_uppercase()
            } else {
                text.clone()
            };
            prop_assert!(pattern.allows(&respelled), "{respelled} against {text}");
            let canonical = pattern.to_string();
            prop_assert_eq!(
                OriginPattern::parse(&canonical).unwrap().to_string(),
                canonical.clone()
            );
            prop_assert!(pattern.allows(&canonical));
            // An exact entry allows only its own origin.
            let other = spell(&s2, &h2, p2);
            let same = Origin::parse(&other) == Origin::parse(&text);
            prop_assert_eq!(pattern.allows(&other), same, "{} against {}", other, text);
            // A wildcard entry allows subdomains and never the bare host.
            let wild = OriginPattern::parse(&spell(&s, &format!("*.{h}"), p)).unwrap();
            let below = spell(&s, &format!("{h2}.{h}"), p);
            let glued = spell(&s, &format!("{h2}{h}"), p);
            prop_assert!(!wild.allows(&text));
            prop_assert!(wild.allows(&below), "{}", below);
            prop_assert!(!wild.allows(&glued), "{}", glued);
            // Same-origin: an origin names its own host and port.
            let host = match p {
                Some(p) => format!("{h}:{p}"),
                None => h.clone(),
            };
            prop_assert!(origin_allowed(&[], false, Some(&text), Some(&host)));
            // Arbitrary text never panics, and matches an exact entry only as that origin.
            if pattern.allows(&noise) {
                prop_assert_eq!(Origin::parse(&noise), Origin::parse(&text));
            }
            let _ = origin_allowed(&[], true, Some(&noise), Some(&noise));
            // An arbitrary entry either parses to a pattern that re-parses to itself, or
            // is refused; never a panic.
            if let Ok(p) = OriginPattern::parse(&noise) {
                let again = OriginPattern::parse(&p.to_string()).expect("canonical re-parses");
                prop_assert_eq!(again.to_string(), p.to_string());
            }
            Ok(())
        },
    );
}

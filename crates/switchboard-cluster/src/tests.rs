use super::*;
use bytes::Bytes;

/// The configuration's faults are told from the engine's, and each message names the
/// backplane and the key or URLs, as the start's error says them.
#[tokio::test]
async fn connect_errors_name_the_key_or_the_urls() {
    let bad_urls = |kind, urls: &[&str]| {
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        match kind {
            BackplaneKind::Redis => redis::check_urls(&urls),
            _ => nats::check_urls(&urls),
        }
        .unwrap_err()
    };
    let e = bad_urls(BackplaneKind::Redis, &[]);
    assert_eq!(
        (e.key.as_str(), e.problem.as_str()),
        ("cluster.urls", "is empty")
    );
    let e = bad_urls(BackplaneKind::Redis, &["redis://a:1", "http://b"]);
    assert_eq!(e.key, "cluster.urls[1]");
    assert!(e.problem.starts_with("\"http://b\": "), "{}", e.problem);
    let e = bad_urls(BackplaneKind::Nats, &["nats://a:1", "nats://b:x"]);
    assert_eq!(e.key, "cluster.urls[1]");

    let (inbox, _) = mpsc::channel(1);
    let (events, _) = mpsc::channel(1);
    let cfg = ClusterConfig {
        backplane: BackplaneKind::Redis,
        ..ClusterConfig::default()
    };
    let Err(e) = connect(&cfg, "n", inbox.clone(), events.clone()).await else {
        panic!("connected without URLs");
    };
    assert!(e.is_config());
    assert_eq!(e.to_string(), "redis backplane: cluster.urls: is empty");
    let cfg = ClusterConfig {
        namespace: Some("Not Valid".into()),
        ..ClusterConfig::default()
    };
    let e = memory::Hub::new(1)
        .connect(&cfg, "n", inbox, events)
        .await
        .unwrap_err();
    assert!(e.is_config());
    assert!(
        e.to_string()
            .starts_with("memory backplane: cluster.namespace: \"Not Valid\": must be"),
        "{e}"
    );

    let e = ConnectError::NoAnswer {
        backplane: "nats",
        urls: vec!["nats://a:1".into()],
    };
    assert!(!e.is_config());
    assert_eq!(
        e.to_string(),
        "nats backplane: no answer from [\"nats://a:1\"]"
    );
    let e = ConnectError::Register {
        backplane: "redis",
        node_id: "n1".into(),
        source: BackplaneError::Unavailable,
    };
    assert!(!e.is_config());
    assert_eq!(
        e.to_string(),
        "redis: registering node n1: backplane unavailable"
    );
    assert!(std::error::Error::source(&e).is_some());
}

/// A stored copy's stamp comes from the backplane, written by any node: arbitrary
/// bytes, stamps with one byte changed and short values decode to a stamp only when
/// they hold one exactly as written, never a panic; every stamp round-trips with any
/// copy after it; and the guard rule is the documented one.
#[test]
fn fuzz_cluster_copy_stamp() {
    use switchboard_fuzz::proptest::prelude::*;
    let stamp = (any::<u64>(), any::<u32>()).prop_map(|(owner, hops)| CopyStamp { owner, hops });
    let input = (
        stamp.clone(),
        stamp,
        ".{0,40}",
        any::<Vec<u8>>(),
        any::<usize>(),
        any::<u8>(),
        0u8..3,
    );
    switchboard_fuzz::run(
        "fuzz_cluster_copy_stamp",
        40_000,
        input,
        |(a, b, json, garbage, at, byte, mode)| {
            let encoded = a.encode(&json);
            match mode {
                0 => {
                    prop_assert_eq!(CopyStamp::decode(&encoded), Some((a, json.as_str())));
                }
                1 => {
                    let mut bytes = encoded.into_bytes();
                    let i = at % STAMP_LEN;
                    let was = bytes[i];
                    bytes[i] = byte;
                    if let Ok(text) = String::from_utf8(bytes) {
                        if let Some((s, rest)) = CopyStamp::decode(&text) {
                            // Only another valid stamp spelled the canonical way.
                            prop_assert_eq!(s.encode(rest), text.clone());
                            prop_assert!(was == byte || s != a);
                        }
                    }
                }
                _ => {
                    let text = String::from_utf8_lossy(&garbage);
                    if let Some((s, rest)) = CopyStamp::decode(&text) {
                        prop_assert_eq!(s.encode(rest), text.as_ref());
                    }
                }
            }
            // The guard rule.
            let not_newer = CopyGuard::NotNewer(a);
            prop_assert!(not_newer.admits(None));
            prop_assert_eq!(
                not_newer.admits(Some(b)),
                b.owner == a.owner || b.hops < a.hops
            );
            prop_assert!(!CopyGuard::Owner(a.owner).admits(None));
            prop_assert_eq!(
                CopyGuard::Owner(a.owner).admits(Some(b)),
                b.owner == a.owner
            );
            Ok(())
        },
    );
}

#[test]
fn commands_round_trip_as_json() {
    use switchboard_core::ops::{Counts, Coverage, Target};
    let c = Command::Op {
        op: Op::Send {
            to: Target::Group {
                group: "room:1".into(),
                exclude: vec![],
            },
            data: Bytes::from_static(&[0, 1, 255]),
            binary: true,
        },
        req: Some(RequestRef { from: 7, id: 9 }),
    };
    let text = serde_json::to_string(&c).unwrap();
    // Externally tagged (serde's default) all the way down: a decoder reads the variant
    // first and then its fields, where internally tagged enums buffer the whole value
    // once per level (measured: 0.6 µs against 1.15 µs to decode a 100-byte send).
    assert_eq!(
        text,
        r#"{"op":{"op":{"send":{"to":{"group":{"group":"room:1"}},"data":"AAH/","binary":true}},"req":{"from":7,"id":9}}}"#
    );
    assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
    let r = Command::Reply {
        req: 9,
        from: 3,
        result: Ok(Outcome::Sent {
            counts: Counts::default(),
            nodes: Coverage::ONE,
        }),
    };
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), r);
}

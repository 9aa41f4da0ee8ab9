use super::*;

#[test]
fn empty_config_is_valid_defaults() {
    let c: Config = toml::from_str("").unwrap();
    c.validate().unwrap();
    assert_eq!(c.limits.max_message_bytes, 131072);
    assert_eq!(c.limits.idle_timeout_secs, 600);
    assert_eq!(c.keepalive.ping_interval_secs, 30);
}

#[test]
fn unknown_keys_are_refused() {
    let e = toml::from_str::<Config>("[limits]\nmax_mesage_bytes = 1\n").unwrap_err();
    assert!(e.to_string().contains("max_mesage_bytes"), "{e}");
}

#[test]
fn validation_names_the_key() {
    let c: Config = toml::from_str(
        r#"
        [limits]
        max_message_bytes = 0
        [routes."$default"]
        function = "missing"
        [routes."$bad"]
        function = "missing"
        "#,
    )
    .unwrap();
    let errs = c.validate().unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"limits.max_message_bytes"), "{keys:?}");
    assert!(keys.contains(&"routes.\"$default\".function"), "{keys:?}");
    assert!(keys.contains(&"routes.\"$bad\""), "{keys:?}");
}

#[test]
fn the_cluster_namespace_is_checked_and_derived_from_the_api() {
    let keys = refused;
    for bad in ["", "Prod", "a.b", "a*", "a>", "a b", &"x".repeat(49)] {
        let text = format!("[cluster]\nnamespace = {bad:?}\n");
        assert_eq!(keys(&text), ["cluster.namespace"], "{bad:?}");
    }
    for good in ["a", "prod_eu-1", &"x".repeat(48)] {
        assert!(keys(&format!("[cluster]\nnamespace = {good:?}\n")).is_empty());
    }

    assert_eq!(derive_namespace("switchboard", "prod"), "switchboard-prod");
    assert_eq!(derive_namespace("chat", "staging"), "chat-staging");
    // Changed by sanitising or cut: a hash of the original keeps them apart.
    let mixed = derive_namespace("MyApi", "prod");
    assert!(
        mixed.starts_with("myapi-prod-") && mixed.len() == 19,
        "{mixed}"
    );
    assert_ne!(mixed, derive_namespace("myapi", "prod"));
    assert_ne!(derive_namespace("a.b", "x"), derive_namespace("a-b", "x"));
    let long = derive_namespace(&"a".repeat(60), "prod");
    assert_eq!(long.len(), 48);
    assert_ne!(long, derive_namespace(&"a".repeat(61), "prod"));
    for (id, stage) in [
        ("", "é"),
        ("x/y", "z"),
        ("API", "Prod"),
        ("a", &"b".repeat(100)),
    ] {
        assert!(
            is_valid_namespace(&derive_namespace(id, stage)),
            "{id} {stage}"
        );
    }

    let c: Config = toml::from_str("[api]\napi_id = \"chat\"\nstage = \"dev\"\n").unwrap();
    assert_eq!(c.cluster.namespace_for(&c.api), "chat-dev");
    assert!(c.warnings().is_empty(), "a single node shares nothing");
    let clustered =
        "[server]\nnode_id = \"a\"\n[cluster]\nbackplane = \"redis\"\nurls = [\"redis://x\"]\n";
    let c: Config = toml::from_str(clustered).unwrap();
    assert_eq!(c.warnings().len(), 1);
    assert!(
        c.warnings()[0].contains("\"switchboard-prod\""),
        "{:?}",
        c.warnings()
    );
    let c: Config = toml::from_str(&format!("{clustered}namespace = \"chat\"\n")).unwrap();
    assert!(c.warnings().is_empty());
    assert_eq!(c.cluster.namespace_for(&c.api), "chat");
}

#[test]
fn keeping_sessions_needs_a_backplane_and_a_bounded_window() {
    let keys = |toml_text: &str| -> Vec<String> {
        let c: Config = toml::from_str(toml_text).unwrap();
        c.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    let local = "[resume]\nenabled = true\nkeep_in_backplane = true\n";
    assert_eq!(keys(local), ["resume.keep_in_backplane"]);
    let cluster = "[server]\nnode_id = \"a\"\n[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\n";
    let long = format!("{local}window_secs = 86401\n{cluster}backplane = \"nats\"\n");
    assert_eq!(keys(&long), ["resume.window_secs"]);
    let ok = format!("{local}{cluster}backplane = \"nats\"\n");
    assert!(keys(&ok).is_empty());
}

#[test]
fn request_head_bounds_are_checked_on_both_listeners() {
    let keys = |toml_text: &str| -> Vec<String> {
        let c: Config = toml::from_str(toml_text).unwrap();
        c.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    let c: Config = toml::from_str("").unwrap();
    assert_eq!(c.limits.max_request_head_bytes, 16384);
    assert_eq!(c.management.max_request_headers, 100);
    assert_eq!(
        keys("[limits]\nmax_request_head_bytes = 1023\nmax_request_headers = 7\n"),
        [
            "limits.max_request_head_bytes",
            "limits.max_request_headers"
        ]
    );
    assert_eq!(
        keys("[management]\nmax_request_head_bytes = 1048577\nmax_request_headers = 1001\n"),
        [
            "management.max_request_head_bytes",
            "management.max_request_headers"
        ]
    );
    assert!(keys("[limits]\nmax_request_head_bytes = 1024\nmax_request_headers = 8\n[management]\nmax_request_head_bytes = 1048576\nmax_request_headers = 1000\n").is_empty());
}

#[test]
fn routes_and_functions_parse() {
    let c: Config = toml::from_str(
        r#"
        [functions.echo]
        kind = "builtin"
        name = "echo"
        [router]
        selection_expression = "$request.body.type"
        [routes."$default"]
        function = "echo"
        two_way = true
        "#,
    )
    .unwrap();
    c.validate().unwrap();
    assert!(c.routes["$default"].two_way);
}

/// The keys validation names for `toml_text`, in order.
fn refused(toml_text: &str) -> Vec<String> {
    let c: Config = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    c.validate()
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

/// Accepted before, these panicked every connection: `now + idle_timeout` overflowed
/// the clock ("overflow when adding duration to instant" in the connection task).
/// Every duration is bounded, seconds and milliseconds alike.
#[test]
fn durations_beyond_a_year_are_refused() {
    let huge = i64::MAX;
    let text = format!(
        "[server]\nshutdown_grace_secs = {huge}\n\
         [limits]\nidle_timeout_secs = {huge}\nmax_connection_secs = {huge}\n\
         handshake_timeout_secs = {huge}\nwrite_timeout_secs = {huge}\n\
         [keepalive]\nping_interval_secs = {huge}\npong_timeout_secs = {huge}\n\
         [resume]\nwindow_secs = {huge}\n\
         [cluster]\nheartbeat_secs = {huge}\nnode_ttl_secs = {huge}\nop_timeout_ms = {huge}\n\
         [management]\nclock_skew_secs = {huge}\n\
         [functions.h]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\ntimeout_ms = {huge}\n\
         [functions.l]\nkind = \"lambda\"\nhandler = \"a.b\"\ntimeout_ms = {huge}\nidle_secs = {huge}\n\
         [authorizer]\nkind = \"jwt\"\nsecret = \"s\"\njwks_refresh_secs = {huge}\nleeway_secs = {huge}\n"
    );
    assert_eq!(
        refused(&text),
        [
            "server.shutdown_grace_secs",
            "limits.idle_timeout_secs",
            "limits.max_connection_secs",
            "limits.handshake_timeout_secs",
            "limits.write_timeout_secs",
            "keepalive.ping_interval_secs",
            "keepalive.pong_timeout_secs",
            "resume.window_secs",
            "cluster.heartbeat_secs",
            "cluster.node_ttl_secs",
            "management.clock_skew_secs",
            "authorizer.jwks_refresh_secs",
            "authorizer.leeway_secs",
            "functions.l.idle_secs",
            "functions.h.timeout_ms",
            "functions.l.timeout_ms",
            "cluster.op_timeout_ms",
        ]
    );
    let year = MAX_DURATION_SECS;
    let ok = format!(
        "[limits]\nidle_timeout_secs = {year}\n[functions.h]\nkind = \"http\"\n\
         url = \"http://127.0.0.1:1/\"\ntimeout_ms = {}\n",
        year * 1000
    );
    assert!(refused(&ok).is_empty());
}

/// Accepted before, this panicked every handshake: the outbound queue is a tokio
/// channel, which refuses more than 2^61 - 1 slots ("a semaphore may not have more
/// than MAX_PERMITS permits").
#[test]
fn an_outbound_queue_too_long_to_build_is_refused() {
    assert_eq!(
        refused("[limits]\noutbound_queue_messages = 4611686018427387904\n"),
        ["limits.outbound_queue_messages"]
    );
    assert_eq!(
        refused("[limits]\noutbound_queue_messages = 1048577\n"),
        ["limits.outbound_queue_messages"]
    );
    assert!(refused("[limits]\noutbound_queue_messages = 1048576\n").is_empty());
}

/// A zero where the gateway would do nothing useful: a SigV4 skew of 0 refuses
/// nearly every signature (X-Amz-Date has whole seconds); a resumable session that
/// cannot wait or keep a message never resumes; a clustered operation with no time
/// fails at once.
#[test]
fn zeros_that_leave_a_feature_useless_are_refused() {
    assert_eq!(
        refused("[management]\nclock_skew_secs = 0\n"),
        ["management.clock_skew_secs"]
    );
    assert_eq!(
        refused(
            "[resume]\nenabled = true\nwindow_secs = 0\nbuffer_messages = 0\nbuffer_bytes = 0\n"
        ),
        [
            "resume.window_secs",
            "resume.buffer_messages",
            "resume.buffer_bytes"
        ]
    );
    // Unused while resume is off.
    assert!(refused("[resume]\nwindow_secs = 0\nbuffer_messages = 0\n").is_empty());
    assert_eq!(
        refused("[server]\nnode_id = \"a\"\n[cluster]\nbackplane = \"redis\"\nurls = [\"redis://127.0.0.1\"]\nop_timeout_ms = 0\n"),
        ["cluster.op_timeout_ms"]
    );
    assert!(refused("[cluster]\nop_timeout_ms = 0\n").is_empty());
}

/// `static.index` is joined to the directory being served: an absolute path replaced
/// it (`GET /` served `/etc/passwd`), and `..` climbed out of `static.dir`.
#[test]
fn static_index_must_be_a_file_name() {
    for bad in [
        "/etc/passwd",
        "../secret.txt",
        "a/b.html",
        "..",
        ".",
        "",
        "a\\\\b",
    ] {
        let text = format!("[static]\ndir = \"www\"\nindex = \"{bad}\"\n");
        assert_eq!(refused(&text), ["static.index"], "{bad:?}");
    }
    assert!(refused("[static]\ndir = \"www\"\nindex = \"home.html\"\n").is_empty());
}

/// `https://` is accepted; the TLS files make sense only with it, and a client
/// certificate only with its key.
#[test]
fn tls_keys_need_https_and_each_other() {
    let f = |url: &str, extra: &str| {
        refused(&format!(
            "[functions.h]\nkind = \"http\"\nurl = \"{url}\"\n{extra}"
        ))
    };
    assert!(f("https://fn.example/x", "tls_ca_file = \"ca.pem\"\n").is_empty());
    assert_eq!(f("ftp://fn.example/", ""), ["functions.h.url"]);
    assert_eq!(
        f("http://fn.example/", "tls_ca_file = \"ca.pem\"\n"),
        ["functions.h.tls_ca_file"]
    );
    assert_eq!(
        f("https://fn.example/", "tls_client_cert = \"c.pem\"\n"),
        ["functions.h.tls_client_cert"]
    );
    assert_eq!(
        f("https://fn.example/", "tls_client_key = \"k.pem\"\n"),
        ["functions.h.tls_client_key"]
    );
    let both = "tls_client_cert = \"c.pem\"\ntls_client_key = \"k.pem\"\n";
    assert!(f("https://fn.example/", both).is_empty());
}

/// `http_version` is `"auto"` unless set; every version goes with either scheme (`"2"`
/// over `https://` is HTTP/2 by ALPN), and anything else is refused with the choices.
#[test]
fn http_versions_parse_with_either_scheme() {
    let http = |url: &str, extra: &str| -> Result<HttpVersion, String> {
        let text = format!("[functions.h]\nkind = \"http\"\nurl = \"{url}\"\n{extra}");
        let c: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| format!("{e:?}"))?;
        match &c.functions["h"] {
            FunctionConfig::Http(h) => Ok(h.http_version),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(http("https://fn.example/", ""), Ok(HttpVersion::Auto));
    for (value, version) in [
        ("auto", HttpVersion::Auto),
        ("1.1", HttpVersion::Http1),
        ("2", HttpVersion::Http2),
    ] {
        for url in ["http://fn.example/", "https://fn.example/"] {
            let set = format!("http_version = \"{value}\"\n");
            assert_eq!(http(url, &set), Ok(version), "{url} {value}");
        }
    }
    let e = http("https://fn.example/", "http_version = \"3\"\n").unwrap_err();
    assert!(e.contains("expected one of `auto`, `1.1`, `2`"), "{e}");
}

/// What the HTTP and Lambda invokers refused (or crashed on) at start is refused by
/// `check-config` too: a Lambda pool of 2^62 workers reserved its slots up front
/// (capacity overflow at start); 0 workers or a 0 ms timeout could run nothing.
#[test]
fn function_bounds_are_checked_before_start() {
    let http = "[functions.h]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n";
    assert_eq!(
        refused(&format!(
            "{http}max_concurrency = 65537\nmax_response_bytes = 0\n"
        )),
        [
            "functions.h.max_concurrency",
            "functions.h.max_response_bytes"
        ]
    );
    assert_eq!(
        refused(&format!("{http}max_response_bytes = 1073741825\n")),
        ["functions.h.max_response_bytes"]
    );
    let lambda = "[functions.\"my fn\"]\nkind = \"lambda\"\nhandler = \"a.b\"\n";
    assert_eq!(
        refused(&format!("{lambda}timeout_ms = 0\nmax_concurrency = 0\n")),
        [
            "functions.\"my fn\".timeout_ms",
            "functions.\"my fn\".max_concurrency"
        ]
    );
    assert_eq!(
        refused(&format!("{lambda}max_concurrency = 4611686018427387904\n")),
        ["functions.\"my fn\".max_concurrency"]
    );
    assert_eq!(
        refused(&format!("{lambda}max_concurrency = 2\nmin_warm = 3\n")),
        ["functions.\"my fn\".min_warm"]
    );
    assert!(refused(&format!(
        "{lambda}max_concurrency = 4096\nmin_warm = 4096\n"
    ))
    .is_empty());
}

/// The authorizer's own checks at start, made by `check-config` too.
#[test]
fn authorizer_checks_made_at_start_are_made_by_validation() {
    let jwt = "[authorizer]\nkind = \"jwt\"\nsecret = \"s\"\n";
    assert_eq!(
        refused(&format!("{jwt}token_sources = []\nalgorithms = []\n")),
        ["authorizer.token_sources", "authorizer.algorithms"]
    );
    assert_eq!(
        refused(&format!("{jwt}query_param = \"\"\nprotocol_prefix = \"\"\nalgorithms = [\"hs256\", \"none\", \"HS512\"]\n")),
        [
            "authorizer.query_param",
            "authorizer.protocol_prefix",
            "authorizer.algorithms",
            "authorizer.algorithms",
        ]
    );
    assert_eq!(
        refused(&format!(
            "{jwt}jwks_url = \"https://idp.example/jwks\"\njwks_refresh_secs = 0\n"
        )),
        ["authorizer.jwks_refresh_secs"]
    );
    // Sources that are not used need no parameter.
    assert!(refused(&format!(
        "{jwt}token_sources = [\"header\"]\nquery_param = \"\"\n"
    ))
    .is_empty());
    let request = "[authorizer]\nkind = \"request\"\nfunction = \"auth\"\nidentity_sources = []\n";
    assert_eq!(
        refused(request),
        ["authorizer.function", "authorizer.identity_sources"]
    );
    let with_function = format!("{request}cache_ttl_secs = 0\n[functions.auth]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n");
    assert!(refused(&with_function).is_empty());
}

/// Function and route names that are not bare TOML keys are quoted in the key an
/// error names, so the loader can find their line (a name with a dot read as two).
#[test]
fn odd_names_are_quoted_in_error_keys() {
    let text = "[functions.\"a.b\"]\nkind = \"http\"\nurl = \"ftp://x\"\n\
                [routes.\"say \\\"hi\\\"\"]\nfunction = \"nope\"\n";
    assert_eq!(
        refused(text),
        [
            "routes.\"say \\\"hi\\\"\".function",
            "functions.\"a.b\".url",
        ]
    );
}

#[test]
fn access_lists_parse_and_bad_entries_name_their_line() {
    let c: Config = toml::from_str(
        "[access]\nallowed_origins = [\"https://chat.example.com\", \"https://*.example.org\"]\n\
         require_origin = true\nallow_ips = [\"10.0.0.0/8\", \"::1/128\"]\ndeny_ips = [\"10.1.0.0/16\"]\n\
         [management]\nallow_ips = [\"127.0.0.1/32\"]\ndeny_ips = [\"127.0.0.2/32\"]\n",
    )
    .unwrap();
    c.validate().unwrap();
    let a = &c.access;
    assert_eq!(a.allowed_origins.len(), 2);
    assert!(a.require_origin);
    assert_eq!(a.allow_ips.len(), 2);
    assert_eq!(a.deny_ips.len(), 1);
    assert_eq!(c.management.allow_ips.len(), 1);
    assert_eq!(c.management.deny_ips.len(), 1);
    let d: Config = toml::from_str("").unwrap();
    assert!(d.access.allowed_origins.is_empty() && !d.access.require_origin);
    assert!(d.access.allow_ips.is_empty() && d.management.deny_ips.is_empty());
    // A path after the origin is a mistake browsers never send: refused at load.
    let text = "[access]\n\nallowed_origins = [\"https://chat.example.com/\"]\n";
    let e = toml::from_str::<Config>(text).unwrap_err();
    assert!(e.to_string().contains("is not an origin"), "{e}");
    let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
    assert_eq!(line, Some(3), "{e}");
    let e = toml::from_str::<Config>("[management]\ndeny_ips = [\"10.0.0.0/33\"]\n").unwrap_err();
    assert!(e.to_string().contains("deny_ips"), "{e}");
}

#[test]
fn access_limits_parse_with_their_defaults() {
    let d: Config = toml::from_str("").unwrap();
    let a = &d.access;
    assert_eq!(
        (a.max_connections_per_ip, a.max_connections_per_user),
        (0, 0)
    );
    assert_eq!(a.on_user_limit, OnUserLimit::Reject);
    assert_eq!(
        (a.messages_per_sec_per_user, a.messages_burst_per_user),
        (0, 100)
    );
    let c: Config = toml::from_str(
        "[access]\nmax_connections_per_ip = 20\nmax_connections_per_user = 3\n\
         on_user_limit = \"close_oldest\"\nmessages_per_sec_per_user = 10\nmessages_burst_per_user = 5\n",
    )
    .unwrap();
    c.validate().unwrap();
    let a = &c.access;
    assert_eq!(
        (a.max_connections_per_ip, a.max_connections_per_user),
        (20, 3)
    );
    assert_eq!(a.on_user_limit, OnUserLimit::CloseOldest);
    assert_eq!(
        (a.messages_per_sec_per_user, a.messages_burst_per_user),
        (10, 5)
    );
    let e = toml::from_str::<Config>("[access]\non_user_limit = \"kick\"\n").unwrap_err();
    assert!(e.to_string().contains("close_oldest"), "{e}");
    assert_eq!(
        refused("[access]\nmessages_per_sec_per_user = 10\nmessages_burst_per_user = 0\n"),
        ["access.messages_burst_per_user"]
    );
}

/// `$connect` and `$disconnect` carry no client message: a schema there would never be
/// checked, so it is refused rather than silently ignored.
#[test]
fn schemas_belong_to_message_routes() {
    let keys = refused(
        r#"
        [functions.f]
        kind = "builtin"
        name = "echo"
        [routes."$connect"]
        function = "f"
        schema = "c.json"
        [routes."$default"]
        function = "f"
        schema = "d.json"
        [routes.send]
        function = "f"
        schema = "s.json"
        "#,
    );
    assert_eq!(keys, ["routes.\"$connect\".schema"]);
}

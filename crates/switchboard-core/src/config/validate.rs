//! [`Config::validate`] and [`Config::warnings`]: the checks on values that parse but
//! cannot work (alone or together), and the bounds that keep every value usable.

use super::{
    err, is_token_byte, is_valid_namespace, quoted_key, table_key, AuthorizerConfig, BackplaneKind,
    Config, ConfigError, FunctionConfig, ManagementAuth, TokenSource,
};

/// What validation accepts for the request head bounds: below these a browser's
/// handshake no longer fits; above, one connection could hold a megabyte of head.
const REQUEST_HEAD_BYTES: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
const REQUEST_HEADERS: std::ops::RangeInclusive<usize> = 8..=1000;

/// The longest duration any key accepts, 365 days (in seconds). Nothing in a gateway
/// needs longer, and near the top of `u64` a deadline computed as `now + duration`
/// overflows the clock: a panic in every connection or invocation task that computes it.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;
/// The same bound for the keys in milliseconds.
pub const MAX_DURATION_MS: u64 = MAX_DURATION_SECS * 1000;
/// Most messages `limits.outbound_queue_messages` accepts: the queue is a tokio channel,
/// which panics when asked for more than 2^61 - 1 slots, and `outbound_queue_bytes` is
/// what bounds its memory anyway.
pub const MAX_QUEUE_MESSAGES: usize = 1 << 20;
/// Most invocations in flight an `http` function accepts.
pub const MAX_HTTP_CONCURRENCY: usize = 65_536;
/// Most workers a `lambda` function accepts (each is a process; the pool reserves a
/// slot per worker up front).
pub const MAX_LAMBDA_WORKERS: usize = 4096;
/// Largest `max_response_bytes` an `http` function accepts (as `limits.max_message_bytes`).
const MAX_BODY_BYTES: usize = 1 << 30;
/// The JWT algorithms the authorizer knows (switchboard-auth's `Alg`).
const JWT_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];

impl Config {
    /// Advice about values that work but are probably not what was meant: `check-config`
    /// prints each, `serve` logs each as a warning.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster.backplane != BackplaneKind::Local && self.cluster.namespace.is_none() {
            out.push(format!(
                "cluster.namespace is not set: using {:?}, derived from api.api_id and api.stage; \
                 another deployment with the same two values on this backplane would share it",
                self.cluster.namespace_for(&self.api)
            ));
        }
        out
    }

    /// Checks values that parse but cannot work together. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let l = &self.limits;
        let positive = [
            ("limits.max_message_bytes", l.max_message_bytes as u64),
            ("limits.max_frame_bytes", l.max_frame_bytes as u64),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.handshake_timeout_secs", l.handshake_timeout_secs),
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.outbound_queue_messages",
                l.outbound_queue_messages as u64,
            ),
            ("limits.outbound_queue_bytes", l.outbound_queue_bytes as u64),
            ("limits.write_timeout_secs", l.write_timeout_secs),
        ];
        for (key, v) in positive {
            if v == 0 {
                errors.push(err(key, "must be greater than 0"));
            }
        }
        if l.max_message_bytes > 1 << 30 {
            errors.push(err("limits.max_message_bytes", "must be at most 1 GiB"));
        }
        if l.max_frame_bytes > l.max_message_bytes {
            errors.push(err(
                "limits.max_frame_bytes",
                "must not exceed limits.max_message_bytes",
            ));
        }
        if l.outbound_queue_bytes < l.max_message_bytes {
            errors.push(err(
                "limits.outbound_queue_bytes",
                "must be at least limits.max_message_bytes, or a maximum-size message could never be queued",
            ));
        }
        if l.connections_per_ip_per_sec > 0 && l.connections_per_ip_burst == 0 {
            errors.push(err("limits.connections_per_ip_burst", "must be at least 1"));
        }
        if l.messages_per_sec > 0 && l.messages_burst == 0 {
            errors.push(err("limits.messages_burst", "must be at least 1"));
        }
        let a = &self.access;
        if a.messages_per_sec_per_user > 0 && a.messages_burst_per_user == 0 {
            errors.push(err("access.messages_burst_per_user", "must be at least 1"));
        }
        let k = &self.keepalive;
        if k.ping_interval_secs > 0 && k.pong_timeout_secs == 0 {
            errors.push(err("keepalive.pong_timeout_secs", "must be greater than 0"));
        }
        let c = &self.compression;
        if c.level > 9 {
            errors.push(err("compression.level", "must be between 0 and 9"));
        }
        if !(9..=15).contains(&c.server_max_window_bits) {
            errors.push(err(
                "compression.server_max_window_bits",
                "must be between 9 and 15",
            ));
        }
        if let Some(id) = &self.server.node_id {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errors.push(err(
                    "server.node_id",
                    "must be 1-64 characters of letters, digits, '-' or '_'",
                ));
            }
        }
        for p in &self.server.subprotocols {
            if p.is_empty() || !p.bytes().all(is_token_byte) {
                errors.push(err(
                    "server.subprotocols",
                    format!("{p:?} is not a valid HTTP token"),
                ));
            }
        }
        let r = &self.resume;
        if r.enabled && r.keep_in_backplane {
            if self.cluster.backplane == BackplaneKind::Local {
                errors.push(err(
                    "resume.keep_in_backplane",
                    "needs a cluster backplane: set cluster.backplane to \"redis\" or \"nats\"",
                ));
            }
            if r.window_secs > 24 * 3600 {
                errors.push(err(
                    "resume.window_secs",
                    "must be at most 86400 (24 h) with keep_in_backplane",
                ));
            }
        }
        if self.api.stage.is_empty() || self.api.stage.contains('/') {
            errors.push(err("api.stage", "must be non-empty and contain no '/'"));
        }
        if let Err(e) = crate::route::SelectionExpression::parse(&self.router.selection_expression)
        {
            errors.push(err("router.selection_expression", e.to_string()));
        }
        for (key, route) in &self.routes {
            let path = format!("routes.{}", quoted_key(key));
            if key.starts_with('$')
                && !["$connect", "$disconnect", "$default"].contains(&key.as_str())
            {
                errors.push(err(
                    &path,
                    "custom route keys must not start with '$' (only $connect, $disconnect, $default)",
                ));
            }
            if key.is_empty() {
                errors.push(err(&path, "route key must not be empty"));
            }
            if !self.functions.contains_key(&route.function) {
                errors.push(err(
                    format!("{path}.function"),
                    format!("no function named {:?} in [functions]", route.function),
                ));
            }
            if route.schema.is_some() && (key == "$connect" || key == "$disconnect") {
                errors.push(err(
                    format!("{path}.schema"),
                    "only message routes ($default and custom keys) carry messages to check",
                ));
            }
        }
        for (name, f) in &self.functions {
            if let FunctionConfig::Http(h) = f {
                let key = format!("functions.{}", table_key(name));
                let https = h.url.starts_with("https://");
                if !https && !h.url.starts_with("http://") {
                    errors.push(err(
                        format!("{key}.url"),
                        "must be an http:// or https:// URL",
                    ));
                }
                let tls = [
                    ("tls_ca_file", h.tls_ca_file.is_some()),
                    ("tls_client_cert", h.tls_client_cert.is_some()),
                    ("tls_client_key", h.tls_client_key.is_some()),
                ];
                if !https {
                    // A mistyped scheme must not silently go cleartext.
                    for (tls_key, _) in tls.iter().filter(|(_, set)| *set) {
                        errors.push(err(format!("{key}.{tls_key}"), "only for https:// URLs"));
                    }
                }
                // Named at the key that is there, so the message points at its line.
                match (h.tls_client_cert.is_some(), h.tls_client_key.is_some()) {
                    (true, false) => errors.push(err(
                        format!("{key}.tls_client_cert"),
                        "needs tls_client_key",
                    )),
                    (false, true) => errors.push(err(
                        format!("{key}.tls_client_key"),
                        "needs tls_client_cert",
                    )),
                    _ => {}
                }
                if h.timeout_ms == 0 {
                    errors.push(err(format!("{key}.timeout_ms"), "must be greater than 0"));
                }
                if h.max_concurrency == 0 {
                    errors.push(err(
                        format!("{key}.max_concurrency"),
                        "must be greater than 0",
                    ));
                }
            }
        }
        let cl = &self.cluster;
        if let Some(ns) = &cl.namespace {
            if !is_valid_namespace(ns) {
                errors.push(err(
                    "cluster.namespace",
                    "must be 1-48 characters of a-z, 0-9, '_' or '-'",
                ));
            }
        }
        if cl.backplane != BackplaneKind::Local {
            if cl.urls.is_empty() {
                errors.push(err(
                    "cluster.urls",
                    "a redis or nats backplane needs at least one URL",
                ));
            }
            if self.server.node_id.is_none() {
                errors.push(err(
                    "server.node_id",
                    "a clustered node needs a stable node_id (ids and the registry are keyed by it)",
                ));
            }
            if cl.heartbeat_secs == 0 || cl.node_ttl_secs <= cl.heartbeat_secs {
                errors.push(err(
                    "cluster.node_ttl_secs",
                    "must be greater than cluster.heartbeat_secs (which must be at least 1)",
                ));
            }
        }
        let m = &self.management;
        if m.auth == ManagementAuth::None && !self.server.management_listen.ip().is_loopback() {
            errors.push(err(
                "management.auth",
                "\"none\" is allowed only when server.management_listen is a loopback address",
            ));
        }
        for (i, c) in m.credentials.iter().enumerate() {
            if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
                errors.push(err(
                    format!("management.credentials[{i}]"),
                    "access_key_id and secret_access_key must not be empty",
                ));
            }
        }
        if m.bearer_tokens.iter().any(|t| t.len() < 16) {
            errors.push(err(
                "management.bearer_tokens",
                "tokens must be at least 16 characters",
            ));
        }
        for (section, bytes, headers) in [
            ("limits", l.max_request_head_bytes, l.max_request_headers),
            (
                "management",
                m.max_request_head_bytes,
                m.max_request_headers,
            ),
        ] {
            if !REQUEST_HEAD_BYTES.contains(&bytes) {
                errors.push(err(
                    format!("{section}.max_request_head_bytes"),
                    "must be between 1024 and 1048576",
                ));
            }
            if !REQUEST_HEADERS.contains(&headers) {
                errors.push(err(
                    format!("{section}.max_request_headers"),
                    "must be between 8 and 1000",
                ));
            }
        }
        self.check_bounds(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Bounds that keep every value usable: no duration so long that a deadline
    /// overflows the clock, no count so large that a queue or a pool cannot be built, no
    /// zero where the gateway would do nothing useful, and the checks the components make
    /// at start (so `check-config` finds them too).
    fn check_bounds(&self, errors: &mut Vec<ConfigError>) {
        let mut secs = |key: String, v: u64| {
            if v > MAX_DURATION_SECS {
                errors.push(err(
                    key,
                    format!("must be at most {MAX_DURATION_SECS} (365 days)"),
                ));
            }
        };
        let l = &self.limits;
        secs(
            "server.shutdown_grace_secs".into(),
            self.server.shutdown_grace_secs,
        );
        secs("limits.idle_timeout_secs".into(), l.idle_timeout_secs);
        secs("limits.max_connection_secs".into(), l.max_connection_secs);
        secs(
            "limits.handshake_timeout_secs".into(),
            l.handshake_timeout_secs,
        );
        secs("limits.write_timeout_secs".into(), l.write_timeout_secs);
        secs(
            "keepalive.ping_interval_secs".into(),
            self.keepalive.ping_interval_secs,
        );
        secs(
            "keepalive.pong_timeout_secs".into(),
            self.keepalive.pong_timeout_secs,
        );
        secs("resume.window_secs".into(), self.resume.window_secs);
        secs("cluster.heartbeat_secs".into(), self.cluster.heartbeat_secs);
        secs("cluster.node_ttl_secs".into(), self.cluster.node_ttl_secs);
        secs(
            "management.clock_skew_secs".into(),
            self.management.clock_skew_secs,
        );
        match &self.authorizer {
            Some(AuthorizerConfig::Jwt(j)) => {
                secs("authorizer.jwks_refresh_secs".into(), j.jwks_refresh_secs);
                secs("authorizer.leeway_secs".into(), j.leeway_secs);
            }
            Some(AuthorizerConfig::Request(r)) => {
                secs("authorizer.cache_ttl_secs".into(), r.cache_ttl_secs);
            }
            None => {}
        }
        for (name, f) in &self.functions {
            if let FunctionConfig::Lambda(la) = f {
                secs(
                    format!("functions.{}.idle_secs", table_key(name)),
                    la.idle_secs,
                );
            }
        }
        let mut ms = |key: String, v: u64, zero_ok: bool| {
            if v == 0 && !zero_ok {
                errors.push(err(key, "must be greater than 0"));
            } else if v > MAX_DURATION_MS {
                errors.push(err(
                    key,
                    format!("must be at most {MAX_DURATION_MS} (365 days)"),
                ));
            }
        };
        // 0 is refused for HTTP functions above, with the other HTTP checks.
        for (name, f) in &self.functions {
            let key = format!("functions.{}.timeout_ms", table_key(name));
            match f {
                FunctionConfig::Http(h) => ms(key, h.timeout_ms, true),
                FunctionConfig::Lambda(la) => ms(key, la.timeout_ms, false),
                FunctionConfig::Builtin { .. } => {}
            }
        }
        // With `.max(1)` in the backplane link, 0 meant every cross-node operation failed
        // after a millisecond.
        let clustered = self.cluster.backplane != BackplaneKind::Local;
        ms(
            "cluster.op_timeout_ms".into(),
            self.cluster.op_timeout_ms,
            !clustered,
        );

        if l.outbound_queue_messages > MAX_QUEUE_MESSAGES {
            errors.push(err(
                "limits.outbound_queue_messages",
                format!("must be at most {MAX_QUEUE_MESSAGES}"),
            ));
        }
        if self.management.clock_skew_secs == 0 {
            // X-Amz-Date has whole seconds: a skew of 0 refuses nearly every signature.
            errors.push(err("management.clock_skew_secs", "must be at least 1"));
        }
        let r = &self.resume;
        if r.enabled {
            for (key, v) in [
                ("resume.window_secs", r.window_secs as usize),
                ("resume.buffer_messages", r.buffer_messages),
                ("resume.buffer_bytes", r.buffer_bytes),
            ] {
                if v == 0 {
                    // A session that cannot wait, or keep one message, can never resume.
                    errors.push(err(key, "must be greater than 0 while resume is enabled"));
                }
            }
        }
        if let Some(st) = &self.static_files {
            let index = st.index.as_str();
            if index.is_empty()
                || index == "."
                || index == ".."
                || index.contains(['/', '\\', '\0'])
            {
                // Joined to every directory served: `/etc/passwd` or `../x` would serve a
                // file outside `static.dir`.
                errors.push(err(
                    "static.index",
                    "must be a file name (no '/', '\\', and not '.' or '..')",
                ));
            }
        }
        for (name, f) in &self.functions {
            let key = format!("functions.{}", table_key(name));
            match f {
                FunctionConfig::Http(h) => {
                    if h.max_concurrency > MAX_HTTP_CONCURRENCY {
                        errors.push(err(
                            format!("{key}.max_concurrency"),
                            format!("must be at most {MAX_HTTP_CONCURRENCY}"),
                        ));
                    }
                    if !(1..=MAX_BODY_BYTES).contains(&h.max_response_bytes) {
                        errors.push(err(
                            format!("{key}.max_response_bytes"),
                            format!("must be between 1 and {MAX_BODY_BYTES}"),
                        ));
                    }
                }
                FunctionConfig::Lambda(la) => {
                    if !(1..=MAX_LAMBDA_WORKERS).contains(&la.max_concurrency) {
                        errors.push(err(
                            format!("{key}.max_concurrency"),
                            format!("must be between 1 and {MAX_LAMBDA_WORKERS}"),
                        ));
                    }
                    if la.min_warm > la.max_concurrency {
                        errors.push(err(
                            format!("{key}.min_warm"),
                            "must not exceed max_concurrency",
                        ));
                    }
                }
                FunctionConfig::Builtin { .. } => {}
            }
        }
        match &self.authorizer {
            Some(AuthorizerConfig::Jwt(j)) => {
                if j.token_sources.is_empty() {
                    errors.push(err(
                        "authorizer.token_sources",
                        "must name at least one source",
                    ));
                }
                if j.token_sources.contains(&TokenSource::Query) && j.query_param.is_empty() {
                    errors.push(err("authorizer.query_param", "must not be empty"));
                }
                if j.token_sources.contains(&TokenSource::Protocol) && j.protocol_prefix.is_empty()
                {
                    errors.push(err("authorizer.protocol_prefix", "must not be empty"));
                }
                if j.algorithms.is_empty() {
                    errors.push(err(
                        "authorizer.algorithms",
                        "must name at least one algorithm",
                    ));
                }
                for a in &j.algorithms {
                    if !JWT_ALGORITHMS.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                        errors.push(err(
                            "authorizer.algorithms",
                            format!("{a:?} is not one of HS256, RS256, ES256"),
                        ));
                    }
                }
                if j.jwks_url.is_some() && j.jwks_refresh_secs == 0 {
                    errors.push(err("authorizer.jwks_refresh_secs", "must be at least 1"));
                }
            }
            Some(AuthorizerConfig::Request(ra)) => {
                if !self.functions.contains_key(&ra.function) {
                    errors.push(err(
                        "authorizer.function",
                        format!("no function named {:?} in [functions]", ra.function),
                    ));
                }
                if ra.identity_sources.is_empty()
                    && ra.cache_ttl_secs > 0
                    && ra.cache_max_entries > 0
                {
                    // One cache entry for everyone: the first answer would decide for all.
                    errors.push(err(
                        "authorizer.identity_sources",
                        "required while answers are cached (cache_ttl_secs > 0)",
                    ));
                }
            }
            None => {}
        }
    }
}

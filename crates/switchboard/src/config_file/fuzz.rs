//! Fuzz target: the config loader ([`super::from_text`]) on generated TOML.
//!
//! Documents are built from the configuration tree's own keys, each with a value drawn
//! from the edges of its range (0, 1, the bounds and one past them, `i64::MAX`,
//! negatives) or of the wrong type, laid out every way TOML allows (`[section]` lines,
//! dotted keys, inline tables), with functions, routes, credentials and an authorizer;
//! some are then damaged, or replaced by arbitrary text, and some get environment
//! overrides. Whatever the input, loading must not panic, and then either
//!
//! - succeed with a configuration every value of which lies in its documented range
//!   (the model below: docs/config.md's bounds, written out independently of
//!   `Config::validate`), or
//! - fail with an error that names the file and a line (TOML errors), the variable
//!   (overrides), or for each invalid value its key, with the line the generator wrote
//!   that key on, and no line for a key the file does not set.

use std::collections::BTreeMap;
use std::path::Path;

use switchboard_core::config::{
    AuthorizerConfig, BackplaneKind, Config, FunctionConfig, ManagementAuth, TokenSource,
};
use switchboard_core::route::SelectionExpression;
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;

use super::{from_text, overrides};

const YEAR_SECS: u64 = 365 * 24 * 3600;
const YEAR_MS: u64 = YEAR_SECS * 1000;
const GIB: usize = 1 << 30;

/// What a key holds, which picks the values it is tried with.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Secs,
    Ms,
    Count,
    Small,
    Bool,
    Text,
    Addr,
    Enum(&'static [&'static str]),
    Texts,
    Cidrs,
    Origins,
    Expression,
}

use Kind::*;

/// The plain sections and their keys (tables of their own come from their generators).
const SECTIONS: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("listen", Addr),
            ("management_listen", Addr),
            ("node_id", Text),
            ("trusted_proxies", Cidrs),
            ("subprotocols", Texts),
            ("shutdown_grace_secs", Secs),
            ("log_format", Enum(&["pretty", "json"])),
            ("log_level", Text),
        ],
    ),
    (
        "limits",
        &[
            ("max_message_bytes", Count),
            ("max_frame_bytes", Count),
            ("idle_timeout_secs", Secs),
            ("max_connection_secs", Secs),
            ("handshake_timeout_secs", Secs),
            ("max_connections", Count),
            ("connections_per_ip_per_sec", Count),
            ("connections_per_ip_burst", Count),
            ("messages_per_sec", Count),
            ("messages_burst", Count),
            ("outbound_queue_messages", Count),
            ("outbound_queue_bytes", Count),
            ("write_timeout_secs", Secs),
            ("max_groups_per_connection", Count),
            ("max_state_bytes", Count),
            ("max_request_head_bytes", Count),
            ("max_request_headers", Count),
        ],
    ),
    (
        "keepalive",
        &[("ping_interval_secs", Secs), ("pong_timeout_secs", Secs)],
    ),
    (
        "compression",
        &[
            ("enabled", Bool),
            ("level", Small),
            ("context_takeover", Bool),
            ("server_max_window_bits", Small),
            ("threshold_bytes", Count),
        ],
    ),
    (
        "api",
        &[("stage", Text), ("domain_name", Text), ("api_id", Text)],
    ),
    (
        "router",
        &[
            ("selection_expression", Expression),
            ("binary", Enum(&["base64", "reject"])),
        ],
    ),
    (
        "management",
        &[
            ("auth", Enum(&["keys", "none"])),
            ("bearer_tokens", Texts),
            ("clock_skew_secs", Secs),
            ("max_request_head_bytes", Count),
            ("max_request_headers", Count),
            ("allow_ips", Cidrs),
            ("deny_ips", Cidrs),
        ],
    ),
    (
        "access",
        &[
            ("allowed_origins", Origins),
            ("require_origin", Bool),
            ("allow_ips", Cidrs),
            ("deny_ips", Cidrs),
        ],
    ),
    (
        "cluster",
        &[
            ("backplane", Enum(&["local", "redis", "nats"])),
            ("urls", Texts),
            ("heartbeat_secs", Secs),
            ("node_ttl_secs", Secs),
            ("op_timeout_ms", Ms),
        ],
    ),
    (
        "resume",
        &[
            ("enabled", Bool),
            ("window_secs", Secs),
            ("buffer_messages", Count),
            ("buffer_bytes", Count),
            ("keep_in_backplane", Bool),
        ],
    ),
    ("static", &[("dir", Text), ("index", Text)]),
    ("tls", &[("cert", Text), ("key", Text)]),
];

const HTTP_KEYS: &[(&str, Kind)] = &[
    ("url", Text),
    ("timeout_ms", Ms),
    ("max_concurrency", Count),
    ("max_queue", Count),
    ("secret", Text),
    ("max_response_bytes", Count),
    ("http_version", Enum(&["auto", "1.1", "2"])),
    ("tls_ca_file", Text),
    ("tls_client_cert", Text),
    ("tls_client_key", Text),
];
const LAMBDA_KEYS: &[(&str, Kind)] = &[
    ("handler", Text),
    ("runtime", Enum(&["python", "node"])),
    ("command", Texts),
    ("timeout_ms", Ms),
    ("max_concurrency", Count),
    ("min_warm", Count),
    ("idle_secs", Secs),
    ("memory_mb", Count),
    ("max_queue", Count),
];
const BUILTIN_KEYS: &[(&str, Kind)] = &[
    (
        "name",
        Enum(&["echo", "accept", "join_group", "leave_group"]),
    ),
    ("groups", Texts),
];
const JWT_KEYS: &[(&str, Kind)] = &[
    ("secret", Text),
    (
        "token_sources",
        Enum(&["[]", "[\"header\"]", "[\"query\", \"protocol\"]"]),
    ),
    ("query_param", Text),
    ("protocol_prefix", Text),
    (
        "algorithms",
        Enum(&[
            "[]",
            "[\"HS256\"]",
            "[\"rs256\", \"ES256\"]",
            "[\"none\"]",
            "[\"HS512\"]",
        ]),
    ),
    ("jwks_url", Text),
    ("jwks_refresh_secs", Secs),
    ("issuer", Text),
    ("leeway_secs", Secs),
    ("user_id_claim", Text),
    ("close_on_expiry", Bool),
];
const REQUEST_KEYS: &[(&str, Kind)] = &[
    ("function", Text),
    ("identity_sources", Texts),
    ("cache_ttl_secs", Secs),
    ("cache_max_entries", Count),
];

/// A TOML literal for a value of `kind`: mostly of the right type, at the edges of the
/// range, sometimes of the wrong type.
fn value(kind: Kind) -> BoxedStrategy<String> {
    let edge = prop_oneof![
        Just(0i64),
        Just(1),
        Just(2),
        Just(8),
        Just(9),
        Just(15),
        Just(16),
        Just(60),
        Just(1023),
        Just(1024),
        Just(4096),
        Just(4097),
        Just(65_536),
        Just(65_537),
        Just(86_400),
        Just(86_401),
        Just(1 << 20),
        Just((1 << 20) + 1),
        Just(GIB as i64),
        Just(GIB as i64 + 1),
        Just(YEAR_SECS as i64),
        Just(YEAR_SECS as i64 + 1),
        Just(YEAR_MS as i64),
        Just(YEAR_MS as i64 + 1),
        Just(1 << 61),
        Just(1 << 62),
        Just(i64::MAX),
        Just(-1),
        any::<u32>().prop_map(i64::from),
    ];
    let number = prop_oneof![5 => 1i64..=600, 2 => edge].prop_map(|n| n.to_string());
    let wrong = prop_oneof![
        Just("\"10\"".to_owned()),
        Just("1.5".to_owned()),
        Just("true".to_owned()),
        Just("[1]".to_owned()),
        Just("{}".to_owned()),
        Just("1979-05-27".to_owned()),
        Just("0x10".to_owned()),
        Just("1_000".to_owned()),
        Just("inf".to_owned()),
    ];
    let text = prop_oneof![
        3 => "[a-z0-9._:/-]{0,12}".prop_map(|s| toml_string(&s)),
        1 => any::<String>().prop_map(|s| toml_string(&s)),
        1 => "[a-z /.]{0,8}".prop_map(|s| format!("'{s}'")),
        1 => Just("\"http://127.0.0.1:9/\"".to_owned()),
        1 => Just("\"0123456789abcdefXYZ\"".to_owned()),
        1 => Just("\"\"\"\n[limits]\nmax_message_bytes = 0\n\"\"\"".to_owned()),
    ];
    match kind {
        Secs | Ms | Count => prop_oneof![40 => number, 1 => wrong].boxed(),
        Small => prop_oneof![
            6 => (0i64..20).prop_map(|n| n.to_string()),
            1 => Just("256".to_owned()),
            1 => Just("-1".to_owned()),
            1 => wrong.clone(),
        ]
        .boxed(),
        Bool => prop_oneof![
            20 => any::<bool>().prop_map(|b| b.to_string()),
            1 => wrong,
        ]
        .boxed(),
        Text => prop_oneof![30 => text, 1 => wrong].boxed(),
        Addr => prop_oneof![
            6 => Just("\"127.0.0.1:8080\"".to_owned()),
            3 => Just("\"0.0.0.0:9090\"".to_owned()),
            3 => Just("\"[::1]:0\"".to_owned()),
            1 => Just("\"localhost:80\"".to_owned()),
            1 => Just("\"127.0.0.1\"".to_owned()),
            1 => wrong,
        ]
        .boxed(),
        Enum(names) => prop_oneof![
            20 => prop::sample::select(names).prop_map(|n| if n.starts_with('[') { n.to_owned() } else { format!("\"{n}\"") }),
            1 => Just("\"bogus\"".to_owned()),
            1 => wrong,
        ]
        .boxed(),
        Texts => prop_oneof![
            20 => vec(text, 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => Just("[\"a\", 1]".to_owned()),
            1 => wrong,
        ]
        .boxed(),
        Cidrs => prop_oneof![
            Just("[\"10.0.0.0/8\", \"::1/128\"]".to_owned()),
            Just("[\"10.0.0.0/33\"]".to_owned()),
            Just("[]".to_owned()),
            wrong,
        ]
        .boxed(),
        Origins => prop_oneof![
            Just("[\"https://chat.example.com\", \"https://*.example.org:8443\"]".to_owned()),
            Just("[\"*\"]".to_owned()),
            Just("[]".to_owned()),
            Just("[\"https://chat.example.com/\"]".to_owned()),
            Just("[\"https://*.*.example.org\"]".to_owned()),
            Just("[\"chat.example.com\"]".to_owned()),
            vec(text, 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            wrong,
        ]
        .boxed(),
        Expression => prop_oneof![
            Just("\"$request.body.action\"".to_owned()),
            Just("\"${request.body.a}/${request.body.b}\"".to_owned()),
            Just("\"$request.body.a/${request.body.b}\"".to_owned()),
            Just("\"${request.body.a\"".to_owned()),
            Just("\"\"".to_owned()),
            text,
        ]
        .boxed(),
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `name` as validation names it within a dotted key (bare when TOML allows it).
fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_owned()
    } else {
        toml_string(name)
    }
}

/// How a table's members are written.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `[section]` and a line per member.
    Header,
    /// `section.key = value` lines before any header.
    Dotted,
    /// `section = { key = value, ... }` on one line before any header.
    Inline,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => Just(Layout::Header),
        1 => Just(Layout::Dotted),
        1 => Just(Layout::Inline),
    ]
}

/// A table to write: its dotted name (as validation names it) and its members.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    layout: Layout,
    members: Vec<(String, String)>,
    /// `[[name]]`: one element of an array of tables, always written with a header.
    array: bool,
}

fn members(keys: &'static [(&'static str, Kind)]) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::sample::subsequence(keys, 0..=keys.len().min(4)).prop_flat_map(|chosen| {
        chosen
            .into_iter()
            .map(|(k, kind)| value(kind).prop_map(move |v| (k.to_owned(), v)))
            .collect::<Vec<_>>()
    })
}

fn sections() -> impl Strategy<Value = Vec<Table>> {
    let one = |(name, keys): (&'static str, &'static [(&'static str, Kind)])| {
        (members(keys), layout()).prop_map(move |(mut members, layout)| {
            let required: &[(&str, &str)] = match name {
                "static" => &[("dir", "\"www\"")],
                "tls" => &[("cert", "\"c.pem\""), ("key", "\"k.pem\"")],
                _ => &[],
            };
            for (k, v) in required {
                if !members.iter().any(|(m, _)| m == k) {
                    members.push((k.to_string(), v.to_string()));
                }
            }
            Table {
                name: name.to_owned(),
                layout,
                members,
                array: false,
            }
        })
    };
    prop::sample::subsequence(SECTIONS, 0..=4)
        .prop_flat_map(move |chosen| chosen.into_iter().map(one).collect::<Vec<_>>())
}

fn function_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("echo".to_owned()),
        Just("auth".to_owned()),
        Just("a.b".to_owned()),
        Just("my fn".to_owned()),
        Just("say \"hi\"".to_owned()),
    ]
}

fn functions() -> impl Strategy<Value = Vec<Table>> {
    let function = (
        function_name(),
        prop_oneof![
            3 => Just(("builtin", BUILTIN_KEYS)),
            3 => Just(("http", HTTP_KEYS)),
            3 => Just(("lambda", LAMBDA_KEYS)),
            1 => Just(("queue", BUILTIN_KEYS)),
        ],
    )
        .prop_flat_map(|(name, (kind, keys))| {
            members(keys).prop_map(move |mut members| {
                // Required members, usually present.
                let required: &[(&str, &str)] = match kind {
                    "builtin" => &[("name", "\"echo\"")],
                    "http" => &[("url", "\"http://127.0.0.1:9/\"")],
                    "lambda" => &[("handler", "\"app.handler\"")],
                    _ => &[],
                };
                for (k, v) in required {
                    if !members.iter().any(|(m, _)| m == k) {
                        members.push((k.to_string(), v.to_string()));
                    }
                }
                members.insert(0, ("kind".to_owned(), format!("\"{kind}\"")));
                Table {
                    name: format!("functions.{}", key_segment(&name)),
                    layout: Layout::Header,
                    members,
                    array: false,
                }
            })
        });
    vec(function, 0..3).prop_map(|mut fs| {
        // TOML refuses a table defined twice: keep the first of each name.
        let mut seen = std::collections::HashSet::new();
        fs.retain(|t| seen.insert(t.name.clone()));
        fs
    })
}

fn routes() -> impl Strategy<Value = Vec<Table>> {
    let route = (
        prop_oneof![
            Just("$default"),
            Just("$connect"),
            Just("send"),
            Just("$bad"),
            Just("")
        ],
        prop_oneof![function_name(), Just("missing".to_owned())],
        prop::option::of(value(Bool)),
    )
        .prop_map(|(key, function, two_way)| {
            let mut members = vec![("function".to_owned(), toml_string(&function))];
            if let Some(b) = two_way {
                members.push(("two_way".to_owned(), b));
            }
            Table {
                name: format!("routes.{}", toml_string(key)),
                layout: Layout::Header,
                members,
                array: false,
            }
        });
    vec(route, 0..3).prop_map(|mut rs| {
        let mut seen = std::collections::HashSet::new();
        rs.retain(|t| seen.insert(t.name.clone()));
        rs
    })
}

fn authorizer() -> impl Strategy<Value = Option<Table>> {
    let table = prop_oneof![
        members(JWT_KEYS).prop_map(|m| ("jwt", m)),
        members(REQUEST_KEYS).prop_map(|m| ("request", m)),
    ]
    .prop_map(|(kind, mut members)| {
        if kind == "request" {
            for (k, v) in [
                ("function", "\"auth\""),
                ("identity_sources", "[\"header:Authorization\"]"),
            ] {
                if !members.iter().any(|(m, _)| m == k) {
                    members.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        members.insert(0, ("kind".to_owned(), format!("\"{kind}\"")));
        Table {
            name: "authorizer".to_owned(),
            layout: Layout::Header,
            members,
            array: false,
        }
    });
    prop::option::weighted(0.3, table)
}

fn credentials() -> impl Strategy<Value = Vec<Table>> {
    let one = (value(Text), value(Text)).prop_map(|(id, secret)| Table {
        name: "management.credentials".to_owned(),
        layout: Layout::Header,
        members: vec![
            ("access_key_id".to_owned(), id),
            ("secret_access_key".to_owned(), secret),
        ],
        array: true,
    });
    vec(one, 0..3)
}

/// A generated document: its text, and the line each key it sets is on, by the dotted
/// key validation would name (`None` when damage makes the lines unknown).
#[derive(Debug, Clone)]
struct Document {
    text: String,
    lines: Option<BTreeMap<String, usize>>,
}

fn render(tables: &[Table], comments: u32) -> Document {
    let mut text = String::new();
    let mut lines = BTreeMap::new();
    let mut line = 1;
    let push = |text: &mut String, s: &str, line: &mut usize| {
        text.push_str(s);
        text.push('\n');
        *line += s.matches('\n').count() + 1;
    };
    // The line a member's key is on: a multi-line value starts on it.
    let note = |lines: &mut BTreeMap<String, usize>, key: String, at: usize| {
        lines.insert(key, at);
    };
    // Members before any header: dotted keys and inline tables.
    for t in tables.iter().filter(|t| !t.array) {
        match t.layout {
            Layout::Dotted => {
                if t.members.is_empty() {
                    continue;
                }
                note(&mut lines, t.name.clone(), line);
                for (k, v) in &t.members {
                    note(&mut lines, format!("{}.{k}", t.name), line);
                    push(&mut text, &format!("{}.{k} = {v}", t.name), &mut line);
                }
            }
            Layout::Inline => {
                note(&mut lines, t.name.clone(), line);
                // A multi-line value moves the members after it down.
                let mut at = line;
                let mut body = Vec::new();
                for (k, v) in &t.members {
                    note(&mut lines, format!("{}.{k}", t.name), at);
                    at += v.matches('\n').count();
                    body.push(format!("{k} = {v}"));
                }
                push(
                    &mut text,
                    &format!("{} = {{ {} }}", t.name, body.join(", ")),
                    &mut line,
                );
            }
            Layout::Header => {}
        }
    }
    let mut array_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in tables.iter().enumerate() {
        if !t.array && !matches!(t.layout, Layout::Header) {
            continue;
        }
        if comments >> (i % 32) & 1 == 1 {
            push(
                &mut text,
                "# a comment [limits] max_message_bytes = 0",
                &mut line,
            );
            push(&mut text, "", &mut line);
        }
        if t.array {
            let n = array_index.entry(t.name.clone()).or_default();
            note(&mut lines, format!("{}[{n}]", t.name), line);
            *n += 1;
            push(&mut text, &format!("[[{}]]", t.name), &mut line);
        } else {
            note(&mut lines, t.name.clone(), line);
            push(&mut text, &format!("[{}]", t.name), &mut line);
        }
        for (k, v) in &t.members {
            if !t.array {
                note(&mut lines, format!("{}.{k}", t.name), line);
            }
            push(&mut text, &format!("{k} = {v}"), &mut line);
        }
    }
    Document {
        text,
        lines: Some(lines),
    }
}

fn document() -> impl Strategy<Value = Document> {
    let tables = (
        sections(),
        functions(),
        routes(),
        authorizer(),
        credentials(),
    )
        .prop_map(|(mut all, functions, routes, authorizer, credentials)| {
            all.extend(functions);
            all.extend(routes);
            all.extend(authorizer);
            all.extend(credentials);
            all
        });
    let damage = prop_oneof![
        6 => Just(None),
        1 => (any::<usize>(), any::<u8>()).prop_map(Some),
    ];
    prop_oneof![
        8 => (tables, any::<u32>(), damage).prop_map(|(tables, comments, damage)| {
            let mut doc = render(&tables, comments);
            if let Some((at, byte)) = damage {
                let mut bytes = doc.text.into_bytes();
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    if byte % 3 == 0 {
                        bytes.truncate(at);
                    } else {
                        bytes[at] = byte;
                    }
                }
                doc = Document {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    lines: None,
                };
            }
            doc
        }),
        1 => any::<String>().prop_map(|text| Document { text, lines: None }),
        1 => "(\\[[a-z.\"$ ]{0,12}\\]\n|[a-z_.]{1,10} = [0-9\"a-z\\[\\]{},.-]{0,10}\n){0,8}"
            .prop_map(|text| Document { text, lines: None }),
    ]
}

/// Environment overrides, as `SWITCHBOARD_<SECTION>__<KEY>` variables.
fn environment() -> impl Strategy<Value = Vec<(String, String)>> {
    let var = prop::sample::select(SECTIONS).prop_flat_map(|(section, keys)| {
        (prop::sample::select(keys), Just(section)).prop_flat_map(|((key, kind), section)| {
            let name = format!(
                "SWITCHBOARD_{}__{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            prop_oneof![
                value(kind),
                Just("lots".to_owned()),
                Just("[\"a\"".to_owned())
            ]
            .prop_map(move |v| (name.clone(), v))
        })
    });
    prop_oneof![
        6 => Just(Vec::new()),
        1 => vec(var, 1..3),
        1 => Just(vec![("SWITCHBOARD_LIMITS__MAX_MESSAGE_BYTES__X".to_owned(), "1".to_owned())]),
    ]
}

#[test]
fn fuzz_switchboard_config_file() {
    let path = Path::new("/etc/sb/test.toml");
    switchboard_fuzz::run(
        "fuzz_switchboard_config_file",
        25_000,
        (document(), environment()),
        |(doc, env)| {
            let env = overrides(env.into_iter());
            match from_text(&doc.text, path, &env) {
                Ok(config) => {
                    prop_assert!(config.validate().is_ok());
                    if let Err(why) = in_documented_ranges(&config) {
                        return Err(TestCaseError::fail(format!(
                            "accepted a value out of its range: {why}\n{}",
                            doc.text
                        )));
                    }
                }
                Err(e) => check_error(&format!("{e:#}"), &doc, &env)?,
            }
            Ok(())
        },
    );
}

fn check_error(
    message: &str,
    doc: &Document,
    env: &[super::Override],
) -> Result<(), TestCaseError> {
    let path = "/etc/sb/test.toml";
    if let Some(list) = message.strip_prefix("invalid configuration:\n") {
        for item in list.lines() {
            let item = item.trim_start();
            // `file:<line>:<col>: key: problem`, `VAR: key: problem` or `file: key: problem`.
            let (line, rest) = if let Some(var) = env.iter().find(|o| {
                item.strip_prefix(o.var.as_str())
                    .is_some_and(|r| r.starts_with(": "))
            }) {
                (None, &item[var.var.len() + 2..])
            } else {
                let rest = item
                    .strip_prefix(path)
                    .ok_or_else(|| TestCaseError::fail(format!("no file in {item:?}")))?;
                if let Some(r) = rest.strip_prefix(": ") {
                    (None, r)
                } else {
                    let (line, _col, r) = line_col(rest)
                        .ok_or_else(|| TestCaseError::fail(format!("bad place in {item:?}")))?;
                    (Some(line), r)
                }
            };
            let (key, problem) = rest
                .split_once(": ")
                .ok_or_else(|| TestCaseError::fail(format!("no problem in {item:?}")))?;
            prop_assert!(!problem.is_empty(), "{item}");
            let section = key.split(['.', '[']).next().unwrap_or_default();
            prop_assert!(
                SECTIONS.iter().any(|(s, _)| *s == section)
                    || ["functions", "routes", "authorizer"].contains(&section),
                "{key} is no key of the configuration"
            );
            if let (Some(lines), true) = (&doc.lines, env.is_empty()) {
                // An element of a one-line array is on its array's line.
                let element_of = key
                    .strip_suffix(']')
                    .and_then(|k| k.rsplit_once('['))
                    .map(|(array, _)| array);
                let want = lines
                    .get(key)
                    .or_else(|| element_of.and_then(|a| lines.get(a)))
                    .copied();
                prop_assert_eq!(line, want, "the line of {} in\n{}", key, doc.text);
            }
        }
    } else if let Some(rest) = message.strip_prefix(path) {
        prop_assert!(
            line_col(rest).is_some(),
            "a TOML error without its line and column: {message}"
        );
    } else {
        prop_assert!(
            message.starts_with("environment overrides (")
                || env
                    .iter()
                    .any(|o| message.starts_with(&format!("{}: ", o.var))),
            "an error naming nothing: {message}"
        );
    }
    Ok(())
}

/// `:<line>:<col>: rest` as the line, the column and the rest.
fn line_col(s: &str) -> Option<(usize, usize, &str)> {
    let s = s.strip_prefix(':')?;
    let (line, s) = s.split_once(':')?;
    let (col, rest) = s.split_once(": ")?;
    Some((line.parse().ok()?, col.parse().ok()?, rest))
}

/// The documented range of every bounded key (docs/config.md), checked on an accepted
/// configuration.
fn in_documented_ranges(c: &Config) -> Result<(), String> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_owned());
        }
    };
    let l = &c.limits;
    let secs = |v: u64| v <= YEAR_SECS;
    let ms = |v: u64| (1..=YEAR_MS).contains(&v);
    check(
        secs(c.server.shutdown_grace_secs),
        "server.shutdown_grace_secs",
    );
    check(
        (1..=GIB).contains(&l.max_message_bytes),
        "limits.max_message_bytes",
    );
    check(
        (1..=l.max_message_bytes).contains(&l.max_frame_bytes),
        "limits.max_frame_bytes",
    );
    check(
        (1..=YEAR_SECS).contains(&l.idle_timeout_secs),
        "limits.idle_timeout_secs",
    );
    check(secs(l.max_connection_secs), "limits.max_connection_secs");
    check(
        (1..=YEAR_SECS).contains(&l.handshake_timeout_secs),
        "limits.handshake_timeout_secs",
    );
    check(l.max_connections >= 1, "limits.max_connections");
    check(
        (1..=1 << 20).contains(&l.outbound_queue_messages),
        "limits.outbound_queue_messages",
    );
    check(
        l.outbound_queue_bytes >= l.max_message_bytes,
        "limits.outbound_queue_bytes",
    );
    check(
        (1..=YEAR_SECS).contains(&l.write_timeout_secs),
        "limits.write_timeout_secs",
    );
    check(
        l.connections_per_ip_per_sec == 0 || l.connections_per_ip_burst >= 1,
        "limits.connections_per_ip_burst",
    );
    check(
        l.messages_per_sec == 0 || l.messages_burst >= 1,
        "limits.messages_burst",
    );
    for (section, bytes, headers) in [
        ("limits", l.max_request_head_bytes, l.max_request_headers),
        (
            "management",
            c.management.max_request_head_bytes,
            c.management.max_request_headers,
        ),
    ] {
        check((1024..=1 << 20).contains(&bytes), section);
        check((8..=1000).contains(&headers), section);
    }
    let k = &c.keepalive;
    check(secs(k.ping_interval_secs), "keepalive.ping_interval_secs");
    check(secs(k.pong_timeout_secs), "keepalive.pong_timeout_secs");
    check(
        k.ping_interval_secs == 0 || k.pong_timeout_secs >= 1,
        "keepalive.pong_timeout_secs",
    );
    check(c.compression.level <= 9, "compression.level");
    check(
        (9..=15).contains(&c.compression.server_max_window_bits),
        "compression.server_max_window_bits",
    );
    if let Some(id) = &c.server.node_id {
        check(
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "server.node_id",
        );
    }
    check(
        c.server.subprotocols.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        }),
        "server.subprotocols",
    );
    check(
        !c.api.stage.is_empty() && !c.api.stage.contains('/'),
        "api.stage",
    );
    check(
        SelectionExpression::parse(&c.router.selection_expression).is_ok(),
        "router.selection_expression",
    );
    let r = &c.resume;
    check(secs(r.window_secs), "resume.window_secs");
    if r.enabled {
        check(r.window_secs >= 1, "resume.window_secs");
        check(r.buffer_messages >= 1, "resume.buffer_messages");
        check(r.buffer_bytes >= 1, "resume.buffer_bytes");
        if r.keep_in_backplane {
            check(r.window_secs <= 86_400, "resume.window_secs");
            check(
                c.cluster.backplane != BackplaneKind::Local,
                "resume.keep_in_backplane",
            );
        }
    }
    let cl = &c.cluster;
    check(secs(cl.heartbeat_secs), "cluster.heartbeat_secs");
    check(secs(cl.node_ttl_secs), "cluster.node_ttl_secs");
    check(cl.op_timeout_ms <= YEAR_MS, "cluster.op_timeout_ms");
    if cl.backplane != BackplaneKind::Local {
        check(!cl.urls.is_empty(), "cluster.urls");
        check(c.server.node_id.is_some(), "server.node_id");
        check(
            cl.heartbeat_secs >= 1 && cl.node_ttl_secs > cl.heartbeat_secs,
            "cluster.node_ttl_secs",
        );
        check(cl.op_timeout_ms >= 1, "cluster.op_timeout_ms");
    }
    let m = &c.management;
    check(
        (1..=YEAR_SECS).contains(&m.clock_skew_secs),
        "management.clock_skew_secs",
    );
    check(
        m.auth == ManagementAuth::Keys || c.server.management_listen.ip().is_loopback(),
        "management.auth",
    );
    check(
        m.bearer_tokens.iter().all(|t| t.len() >= 16),
        "management.bearer_tokens",
    );
    check(
        m.credentials
            .iter()
            .all(|k| !k.access_key_id.is_empty() && !k.secret_access_key.is_empty()),
        "management.credentials",
    );
    if let Some(s) = &c.static_files {
        let i = s.index.as_str();
        check(
            !i.is_empty() && i != "." && i != ".." && !i.contains(['/', '\\', '\0']),
            "static.index",
        );
    }
    for (key, route) in &c.routes {
        check(!key.is_empty(), "routes: empty key");
        check(
            !key.starts_with('$')
                || ["$connect", "$disconnect", "$default"].contains(&key.as_str()),
            "routes: $ key",
        );
        check(
            c.functions.contains_key(&route.function),
            "routes: function",
        );
    }
    for f in c.functions.values() {
        match f {
            FunctionConfig::Http(h) => {
                check(h.url.starts_with("http://"), "http url");
                check(ms(h.timeout_ms), "http timeout_ms");
                check(
                    (1..=65_536).contains(&h.max_concurrency),
                    "http max_concurrency",
                );
                check(
                    (1..=GIB).contains(&h.max_response_bytes),
                    "http max_response_bytes",
                );
            }
            FunctionConfig::Lambda(la) => {
                check(ms(la.timeout_ms), "lambda timeout_ms");
                check(
                    (1..=4096).contains(&la.max_concurrency),
                    "lambda max_concurrency",
                );
                check(la.min_warm <= la.max_concurrency, "lambda min_warm");
                check(secs(la.idle_secs), "lambda idle_secs");
            }
            FunctionConfig::Builtin { .. } => {}
        }
    }
    match &c.authorizer {
        Some(AuthorizerConfig::Jwt(j)) => {
            check(!j.token_sources.is_empty(), "authorizer.token_sources");
            check(
                !j.token_sources.contains(&TokenSource::Query) || !j.query_param.is_empty(),
                "authorizer.query_param",
            );
            check(
                !j.token_sources.contains(&TokenSource::Protocol) || !j.protocol_prefix.is_empty(),
                "authorizer.protocol_prefix",
            );
            check(
                !j.algorithms.is_empty()
                    && j.algorithms.iter().all(|a| {
                        ["HS256", "RS256", "ES256"]
                            .iter()
                            .any(|k| k.eq_ignore_ascii_case(a))
                    }),
                "authorizer.algorithms",
            );
            check(
                j.jwks_url.is_none() || j.jwks_refresh_secs >= 1,
                "authorizer.jwks_refresh_secs",
            );
            check(
                secs(j.jwks_refresh_secs) && secs(j.leeway_secs),
                "authorizer durations",
            );
        }
        Some(AuthorizerConfig::Request(ra)) => {
            check(
                c.functions.contains_key(&ra.function),
                "authorizer.function",
            );
            check(
                !ra.identity_sources.is_empty()
                    || ra.cache_ttl_secs == 0
                    || ra.cache_max_entries == 0,
                "authorizer.identity_sources",
            );
            check(secs(ra.cache_ttl_secs), "authorizer.cache_ttl_secs");
        }
        None => {}
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

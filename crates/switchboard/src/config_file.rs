//! Loading the configuration: TOML file, then `SWITCHBOARD_SECTION__KEY` environment
//! overrides, then validation. Errors name the key, and the file line where one exists.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use switchboard_core::config::{Config, ConfigError};

/// The prefix of override variables: `SWITCHBOARD_LIMITS__MAX_CONNECTIONS=20000` sets
/// `limits.max_connections`. Variables without a `__` (like `SWITCHBOARD_CONFIG`) are not
/// overrides.
const PREFIX: &str = "SWITCHBOARD_";

/// One environment override.
#[derive(Debug)]
pub struct Override {
    pub var: String,
    pub path: Vec<String>,
    pub value: toml::Value,
}

/// The overrides present in `vars`.
pub fn overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = vars
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(PREFIX)?;
            if !rest.contains("__") {
                return None;
            }
            let path = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            Some(Override {
                var: k.clone(),
                path,
                value: parse_value(&v),
            })
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// A TOML literal when the text is one (`20000`, `true`, `["a"]`), else a string.
fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Reads, overrides and validates: the one decision `check-config` and `serve` share
/// (see [`crate::preflight`]).
pub fn load(path: &Path, overrides: &[Override]) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    from_text(&text, path, overrides)
}

/// [`load`] on the text of the file at `path` (which names the file in errors and is the
/// base of relative paths; it is not read).
///
/// Every error says where: `file:line:col: key: problem` for a key the file sets (the
/// line and column of the key itself), `VARIABLE: key: problem` for a value an
/// environment override set, `file: key: problem` for a default that does not fit.
pub fn from_text(text: &str, path: &Path, overrides: &[Override]) -> Result<Config> {
    let mut config: Config =
        toml::from_str(text).map_err(|e| anyhow!("{}", file_error(text, path, &e)))?;
    if !overrides.is_empty() {
        config = with_overrides(text, overrides)?;
    }
    resolve_paths(&mut config, path.parent().unwrap_or(Path::new(".")));
    if let Err(errors) = crate::preflight::check(&config) {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| {
                // One line per error, whatever text a value holds.
                let e = ConfigError {
                    key: e.key.clone(),
                    problem: e.problem.replace('\n', "\\n").replace('\r', "\\r"),
                };
                match (overridden_by(overrides, &e.key), position_of(text, &e.key)) {
                    (Some(var), _) => format!("{var}: {e}"),
                    (None, Some(at)) => {
                        let (line, col) = line_col(text, at);
                        format!("{}:{line}:{col}: {e}", path.display())
                    }
                    (None, None) => format!("{}: {e}", path.display()),
                }
            })
            .collect();
        return Err(anyhow!("invalid configuration:\n  {}", lines.join("\n  ")));
    }
    Ok(config)
}

/// The file with the overrides applied. A value the configuration cannot take is
/// named by its variable: each override is tried alone on the file to find it.
fn with_overrides(text: &str, overrides: &[Override]) -> Result<Config> {
    let table: toml::Table = toml::from_str(text)?;
    let apply = |overrides: &[&Override]| -> Result<Config> {
        let mut table = table.clone();
        for o in overrides {
            let mut t = &mut table;
            for seg in &o.path[..o.path.len() - 1] {
                let entry = t
                    .entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                t = entry
                    .as_table_mut()
                    .ok_or_else(|| anyhow!("{}: {} is not a table", o.var, seg))?;
            }
            t.insert(o.path[o.path.len() - 1].clone(), o.value.clone());
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow!("{}", e.message().trim_end()))
    };
    let all: Vec<&Override> = overrides.iter().collect();
    apply(&all).map_err(|together| {
        for o in overrides {
            if let Err(e) = apply(&[o]) {
                let e = format!("{e:#}");
                return if e.starts_with(&o.var) {
                    anyhow!("{e}")
                } else {
                    anyhow!("{}: {e}", o.var)
                };
            }
        }
        // Each is fine alone; only together do they fail.
        let vars: Vec<_> = overrides.iter().map(|o| o.var.as_str()).collect();
        anyhow!("environment overrides ({}): {together:#}", vars.join(", "))
    })
}

/// A TOML or type error of the file as `file:line:col: key: problem`, at the key the
/// error is about when one is found.
fn file_error(text: &str, path: &Path, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return format!("{}: {message}", path.display());
    };
    let (span, message) = refine(text, &span, message).unwrap_or((span, message.to_owned()));
    let (key, at) = match key_at(text, &span) {
        Some((key, at)) => (Some(key), at),
        None => (None, span.start),
    };
    let (line, col) = line_col(text, at);
    match key {
        Some(key) => format!("{}:{line}:{col}: {key}: {message}", path.display()),
        None => format!("{}:{line}:{col}: {message}", path.display()),
    }
}

/// The 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// A function or authorizer is an internally tagged enum (`kind = ...`): serde reads
/// its table whole before it knows the kind, so an error inside it carries the span of
/// the table (its `[header]`). Reading the table again as the kind's own type finds the
/// key at fault.
fn refine(
    text: &str,
    span: &std::ops::Range<usize>,
    message: &str,
) -> Option<(std::ops::Range<usize>, String)> {
    use serde::de::IntoDeserializer;
    use switchboard_core::config::{
        BuiltinName, HttpFunctionConfig, JwtConfig, LambdaFunctionConfig, RequestAuthorizerConfig,
    };
    use toml::de::{DeTable, DeValue};

    /// `kind = "builtin"`, whose fields are the enum variant's own.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Builtin {
        name: BuiltinName,
        #[serde(default)]
        groups: Vec<String>,
    }
    fn read<'de, T: Deserialize<'de>>(
        value: toml::Spanned<DeValue<'de>>,
    ) -> Result<(), toml::de::Error> {
        T::deserialize(value.into_deserializer()).map(drop)
    }

    let doc = DeTable::parse(text).ok()?;
    let root = doc.get_ref();
    let functions = root
        .get("functions")
        .and_then(|f| f.get_ref().as_table())
        .into_iter()
        .flat_map(|t| t.values())
        .map(|v| (true, v));
    let authorizer = root.get("authorizer").map(|v| (false, v));
    let (is_function, tagged) = functions
        .chain(authorizer)
        .find(|(_, v)| v.span() == *span)?;
    let table = tagged.get_ref().as_table()?;
    let kind = table.get("kind")?;
    let mut fields = table.clone();
    fields.remove("kind");
    let value = toml::Spanned::new(tagged.span(), DeValue::Table(fields));
    let result = match (is_function, kind.get_ref().as_str()) {
        (true, Some("builtin")) => read::<Builtin>(value),
        (true, Some("http")) => read::<HttpFunctionConfig>(value),
        (true, Some("lambda")) => read::<LambdaFunctionConfig>(value),
        (false, Some("jwt")) => read::<JwtConfig>(value),
        (false, Some("request")) => read::<RequestAuthorizerConfig>(value),
        // An unknown kind: the error is the kind's.
        _ => return Some((kind.span(), message.to_owned())),
    };
    let e = result.err()?;
    Some((e.span()?, e.message().trim_end().to_owned()))
}

/// Relative file paths in the config are relative to the config file's directory.
fn resolve_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(s) = &mut config.static_files {
        fix(&mut s.dir);
    }
    if let Some(t) = &mut config.tls {
        fix(&mut t.cert);
        fix(&mut t.key);
    }
    for f in config.functions.values_mut() {
        match f {
            switchboard_core::config::FunctionConfig::Lambda(l) => fix(&mut l.dir),
            switchboard_core::config::FunctionConfig::Http(h) => {
                for path in [
                    &mut h.tls_ca_file,
                    &mut h.tls_client_cert,
                    &mut h.tls_client_key,
                ]
                .into_iter()
                .flatten()
                {
                    fix(path);
                }
            }
            _ => {}
        }
    }
    for r in config.routes.values_mut() {
        if let Some(s) = &mut r.schema {
            fix(s);
        }
    }
    if let Some(switchboard_core::config::AuthorizerConfig::Jwt(j)) = &mut config.authorizer {
        for k in &mut j.public_keys {
            fix(k);
        }
        if let Some(f) = &mut j.jwks_file {
            fix(f);
        }
    }
}

/// One segment of the key a validation error names: a table key, and an index into an
/// array of tables (`management.credentials[0]`).
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    name: String,
    index: Option<usize>,
}

/// The segments of a key as validation names it: dotted, with quoted segments where the
/// name is not a bare key (`routes."$default".function`, `functions."a.b".url`).
fn key_path(key: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut rest = key;
    loop {
        let name;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i + 1,
                    '\\' => match chars.next()?.1 {
                        '"' => s.push('"'),
                        '\\' => s.push('\\'),
                        'u' => {
                            let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                            s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        _ => return None,
                    },
                    c => s.push(c),
                }
            };
            name = s;
            rest = &quoted[end..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            name = rest[..end].to_owned();
            rest = &rest[end..];
        }
        let mut index = None;
        if let Some(bracketed) = rest.strip_prefix('[') {
            let close = bracketed.find(']')?;
            index = Some(bracketed[..close].parse().ok()?);
            rest = &bracketed[close + 1..];
        }
        out.push(Segment { name, index });
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None if rest.is_empty() => return Some(out),
            None => return None,
        }
    }
}

/// The environment override that set the key an error names (or a table above it).
fn overridden_by<'a>(overrides: &'a [Override], key: &str) -> Option<&'a str> {
    let path = key_path(key)?;
    overrides
        .iter()
        .find(|o| o.path.len() <= path.len() && o.path.iter().zip(&path).all(|(a, b)| *a == b.name))
        .map(|o| o.var.as_str())
}

/// The byte offset where the key an error names is set in the file, if it is set there.
/// Read from the spans of the parsed document, so a key is found however it is written:
/// under its `[section]`, as a dotted key, in an inline table or an array of tables.
fn position_of(text: &str, key: &str) -> Option<usize> {
    let path = key_path(key)?;
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut at = 0;
    for (i, seg) in path.iter().enumerate() {
        let (k, mut v) = table.iter().find(|(k, _)| k.get_ref() == &seg.name)?;
        at = k.span().start;
        if let Some(index) = seg.index {
            v = v.get_ref().as_array()?.get(index)?;
            at = v.span().start;
        }
        if i + 1 < path.len() {
            table = v.get_ref().as_table()?;
        }
    }
    Some(at)
}

/// The key a TOML error's `span` falls in (dotted, as [`ConfigError`] names keys) and the
/// offset of that key: the innermost entry whose key or value holds the span. A table
/// under its own `[header]` has the header as its span, so an error about the table
/// itself (a missing field) lands on the header.
///
/// [`ConfigError`]: switchboard_core::config::ConfigError
fn key_at(text: &str, span: &std::ops::Range<usize>) -> Option<(String, usize)> {
    use toml::de::{DeTable, DeValue};
    type Found = Option<(Vec<String>, usize)>;

    fn holds(outer: std::ops::Range<usize>, inner: &std::ops::Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }
    fn in_value(value: &toml::Spanned<DeValue<'_>>, span: &std::ops::Range<usize>) -> Found {
        match value.get_ref() {
            DeValue::Table(t) => in_table(t, span),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let inner = in_value(item, span);
                let here = (item.get_ref().is_table() && holds(item.span(), span))
                    .then(|| (Vec::new(), item.span().start));
                inner.or(here).map(|(mut path, at)| {
                    // The caller joins `[i]` to the array's name.
                    path.insert(0, format!("[{i}]"));
                    (path, at)
                })
            }),
            _ => None,
        }
    }
    fn in_table(table: &DeTable<'_>, span: &std::ops::Range<usize>) -> Found {
        table.iter().find_map(|(k, v)| {
            let here = (holds(k.span(), span) || holds(v.span(), span))
                .then(|| (Vec::new(), k.span().start));
            in_value(v, span).or(here).map(|(mut path, at)| {
                let name = switchboard_core::config::table_key(k.get_ref());
                match path.first_mut() {
                    Some(first) if first.starts_with('[') => first.insert_str(0, &name),
                    _ => path.insert(0, name),
                }
                (path, at)
            })
        })
    }

    let doc = DeTable::parse(text).ok()?;
    let (path, at) = in_table(doc.get_ref(), span)?;
    Some((path.join("."), at))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_parse_values() {
        let o = overrides(
            [
                ("SWITCHBOARD_LIMITS__MAX_CONNECTIONS".into(), "20000".into()),
                ("SWITCHBOARD_SERVER__LOG_FORMAT".into(), "json".into()),
                ("SWITCHBOARD_CONFIG".into(), "x.toml".into()),
                ("OTHER__X".into(), "1".into()),
            ]
            .into_iter(),
        );
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].path, ["limits", "max_connections"]);
        assert_eq!(o[0].value, toml::Value::Integer(20000));
        assert_eq!(o[1].value, toml::Value::String("json".into()));
    }

    /// The line of the key `key` as the errors give it.
    fn line_of(text: &str, key: &str) -> Option<usize> {
        position_of(text, key).map(|at| line_col(text, at).0)
    }

    /// The whole error of loading `text` as `x.toml` with `env`.
    fn error(text: &str, env: &[(&str, &str)]) -> String {
        let env = overrides(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        format!(
            "{:#}",
            from_text(text, Path::new("x.toml"), &env).unwrap_err()
        )
    }

    #[test]
    fn lines_are_found() {
        let text = "[server]\nlisten = \"x\"\n[limits]\n# c\nmax_message_bytes = 0\n[routes.\"$default\"]\nfunction = \"f\"\n";
        assert_eq!(line_of(text, "limits.max_message_bytes"), Some(5));
        assert_eq!(line_of(text, "routes.\"$default\".function"), Some(7));
        assert_eq!(line_of(text, "routes.\"$default\""), Some(6));
        assert_eq!(line_of(text, "limits.idle_timeout_secs"), None);
    }

    #[test]
    fn columns_count_characters_from_one() {
        let text = "a = 1\n  é = 2\nb";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 8), (2, 3));
        assert_eq!(line_col(text, 10), (2, 4), "é is one column");
        assert_eq!(line_col(text, text.len()), (3, 2));
    }

    /// The old reader matched `[section]` and `key =` lines as text: a multi-line string
    /// holding such lines sent the error to a line inside the string.
    #[test]
    fn a_key_is_found_on_its_own_line_not_inside_a_string() {
        let text = "[api]\ndomain_name = \"\"\"\n[limits]\nmax_message_bytes = 0\n\"\"\"\n\n[limits]\nmax_message_bytes = 0\n";
        assert_eq!(line_of(text, "limits.max_message_bytes"), Some(8));
        let e = from_text(text, Path::new("/etc/sb.toml"), &[]).unwrap_err();
        assert!(
            format!("{e:#}")
                .contains("/etc/sb.toml:8:1: limits.max_message_bytes: must be greater than 0"),
            "{e:#}"
        );
    }

    /// Keys written as dotted keys, in inline tables, in arrays of tables, or under names
    /// that need quotes had no line in the error before.
    #[test]
    fn lines_are_found_however_the_key_is_written() {
        let text = concat!(
            "limits.idle_timeout_secs = 0\n",          // 1
            "keepalive = { ping_interval_secs = 1,\n", // 2
            "  pong_timeout_secs = 0 }\n",             // 3
            "[functions.\"a.b\"]\n",                   // 4
            "kind = \"http\"\n",                       // 5
            "url = \"ftp://x\"\n",                     // 6
            "[[management.credentials]]\n",            // 7
            "access_key_id = \"k\"\n",                 // 8
            "secret_access_key = \"s\"\n",             // 9
            "[[management.credentials]]\n",            // 10
            "access_key_id = \"\"\n",                  // 11
            "secret_access_key = \"s\"\n",             // 12
        );
        assert_eq!(line_of(text, "limits.idle_timeout_secs"), Some(1));
        assert_eq!(line_of(text, "keepalive.pong_timeout_secs"), Some(3));
        assert_eq!(line_of(text, "functions.\"a.b\".url"), Some(6));
        assert_eq!(line_of(text, "management.credentials[1]"), Some(10));
        let e = error(text, &[]);
        for want in [
            "x.toml:1:8: limits.idle_timeout_secs",
            "x.toml:3:3: keepalive.pong_timeout_secs",
            "x.toml:6:1: functions.\"a.b\".url",
            "x.toml:10:1: management.credentials[1]",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }

    /// A value of the wrong type inside a function or the authorizer (tables that serde
    /// reads whole, to find their `kind`) was reported at the table's header line.
    #[test]
    fn type_errors_name_the_key_and_its_line_not_the_table() {
        let text = concat!(
            "[functions.f]\n",           // 1
            "kind = \"http\"\n",         // 2
            "url = \"http://x/\"\n",     // 3
            "\n",                        // 4
            "  timeout_ms = \"fast\"\n", // 5
        );
        assert_eq!(
            error(text, &[]),
            "x.toml:5:3: functions.f.timeout_ms: invalid type: string \"fast\", expected u64"
        );
        let text = "[authorizer]\nkind = \"jwt\"\nsecret = \"s\"\nalgorithms = \"HS256\"\n";
        let e = error(text, &[]);
        assert!(
            e.starts_with("x.toml:4:1: authorizer.algorithms: invalid type"),
            "{e}"
        );
        let text = "[functions.f]\nkind = \"lambda\"\nhandler = \"a.b\"\nrutime = \"python\"\n";
        let e = error(text, &[]);
        assert!(
            e.starts_with("x.toml:4:1: functions.f.rutime: unknown field `rutime`"),
            "{e}"
        );
        let text = "[functions.f]\nurl = \"http://x/\"\nkind = \"htp\"\n";
        let e = error(text, &[]);
        assert!(
            e.starts_with("x.toml:3:1: functions.f.kind: unknown variant `htp`"),
            "{e}"
        );
    }

    #[test]
    fn errors_in_sections_name_the_key_line_and_column() {
        let e = error("[limits]\n\nmax_connections = -5\n", &[]);
        assert!(
            e.starts_with("x.toml:3:1: limits.max_connections: invalid value"),
            "{e}"
        );
        let e = error("[limits]\nmax_mesage_bytes = 1\n", &[]);
        assert!(
            e.starts_with("x.toml:2:1: limits.max_mesage_bytes: unknown field `max_mesage_bytes`"),
            "{e}"
        );
        let e = error("[limits\n", &[]);
        assert!(e.starts_with("x.toml:1:"), "{e}");
    }

    /// A value that came from the environment is named by its variable, not by the line
    /// the file set it on.
    #[test]
    fn errors_in_overridden_values_name_the_variable() {
        let text = "[limits]\nidle_timeout_secs = 600\n";
        let e = error(text, &[("SWITCHBOARD_LIMITS__IDLE_TIMEOUT_SECS", "0")]);
        assert_eq!(
            e,
            "invalid configuration:\n  SWITCHBOARD_LIMITS__IDLE_TIMEOUT_SECS: limits.idle_timeout_secs: must be greater than 0"
        );
    }

    /// A value of the wrong type from the environment was reported as "environment
    /// overrides (every variable set)" without saying which.
    #[test]
    fn type_errors_in_overrides_name_the_variable() {
        let env = [
            ("SWITCHBOARD_LIMITS__IDLE_TIMEOUT_SECS", "60"),
            ("SWITCHBOARD_LIMITS__MAX_CONNECTIONS", "12x"),
            ("SWITCHBOARD_SERVER__LOG_FORMAT", "json"),
        ];
        assert_eq!(
            error("", &env),
            "SWITCHBOARD_LIMITS__MAX_CONNECTIONS: invalid type: string \"12x\", expected usize"
        );
        let e = error("", &[("SWITCHBOARD_LIMITS__MAX_MESAGE_BYTES", "1")]);
        assert!(
            e.starts_with("SWITCHBOARD_LIMITS__MAX_MESAGE_BYTES: unknown field `max_mesage_bytes`"),
            "{e}"
        );
    }

    #[test]
    fn keys_split_into_segments() {
        let seg = |name: &str, index: Option<usize>| Segment {
            name: name.to_owned(),
            index,
        };
        assert_eq!(
            key_path("routes.\"say \\\"hi\\\" \\u00e9\".function"),
            Some(vec![
                seg("routes", None),
                seg("say \"hi\" é", None),
                seg("function", None)
            ])
        );
        assert_eq!(
            key_path("management.credentials[2]"),
            Some(vec![seg("management", None), seg("credentials", Some(2))])
        );
        for bad in ["a.\"open", "a[x]", "a[1", "\"\\q\""] {
            assert_eq!(key_path(bad), None, "{bad}");
        }
    }
}

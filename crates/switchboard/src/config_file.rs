//! Loading the configuration: TOML file, then `SWITCHBOARD_SECTION__KEY` environment
//! overrides, then validation. Errors name the key, and the file line where one exists.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use switchboard_core::config::Config;

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

/// Reads, overrides and validates.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    from_text(&text, path, overrides)
}

/// [`load`] on the text of the file at `path` (which names the file in errors and is the
/// base of relative paths; it is not read).
pub fn from_text(text: &str, path: &Path, overrides: &[Override]) -> Result<Config> {
    let mut config: Config = toml::from_str(text)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    if !overrides.is_empty() {
        let mut table: toml::Table = toml::from_str(text)?;
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
        config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            let vars: Vec<_> = overrides.iter().map(|o| o.var.as_str()).collect();
            anyhow!(
                "environment overrides ({}): {}",
                vars.join(", "),
                e.to_string().trim_end()
            )
        })?;
    }
    resolve_paths(&mut config, path.parent().unwrap_or(Path::new(".")));
    if let Err(errors) = config.validate() {
        let lines: Vec<String> = errors
            .iter()
            .map(
                |e| match (overridden_by(overrides, &e.key), line_of(text, &e.key)) {
                    (Some(var), _) => format!("{} ({var}): {e}", path.display()),
                    (None, Some(n)) => format!("{}:{}: {}", path.display(), n, e),
                    (None, None) => format!("{}: {}", path.display(), e),
                },
            )
            .collect();
        return Err(anyhow!("invalid configuration:\n  {}", lines.join("\n  ")));
    }
    Ok(config)
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
        if let switchboard_core::config::FunctionConfig::Lambda(l) = f {
            fix(&mut l.dir);
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

/// The 1-based line where the key an error names is set in the file, if it is set there.
/// Read from the spans of the parsed document, so a key is found however it is written:
/// under its `[section]`, as a dotted key, in an inline table or an array of tables.
fn line_of(text: &str, key: &str) -> Option<usize> {
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
    Some(text[..at].matches('\n').count() + 1)
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

    #[test]
    fn lines_are_found() {
        let text = "[server]\nlisten = \"x\"\n[limits]\n# c\nmax_message_bytes = 0\n[routes.\"$default\"]\nfunction = \"f\"\n";
        assert_eq!(line_of(text, "limits.max_message_bytes"), Some(5));
        assert_eq!(line_of(text, "routes.\"$default\".function"), Some(7));
        assert_eq!(line_of(text, "routes.\"$default\""), Some(6));
        assert_eq!(line_of(text, "limits.idle_timeout_secs"), None);
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
                .contains("/etc/sb.toml:8: limits.max_message_bytes: must be greater than 0"),
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
        let e = format!(
            "{:#}",
            from_text(text, Path::new("x.toml"), &[]).unwrap_err()
        );
        for want in [
            "x.toml:1: limits.idle_timeout_secs",
            "x.toml:3: keepalive.pong_timeout_secs",
            "x.toml:6: functions.\"a.b\".url",
            "x.toml:10: management.credentials[1]",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }

    /// A value that came from the environment is named by its variable, not by the line
    /// the file set it on.
    #[test]
    fn errors_in_overridden_values_name_the_variable() {
        let text = "[limits]\nidle_timeout_secs = 600\n";
        let o = overrides(
            [(
                "SWITCHBOARD_LIMITS__IDLE_TIMEOUT_SECS".to_owned(),
                "0".to_owned(),
            )]
            .into_iter(),
        );
        let e = format!(
            "{:#}",
            from_text(text, Path::new("x.toml"), &o).unwrap_err()
        );
        assert!(
            e.contains("x.toml (SWITCHBOARD_LIMITS__IDLE_TIMEOUT_SECS): limits.idle_timeout_secs"),
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

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
    let mut config: Config = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    if !overrides.is_empty() {
        let mut table: toml::Table = toml::from_str(&text)?;
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
            .map(|e| match line_of(&text, &e.key) {
                Some(n) => format!("{}:{}: {}", path.display(), n, e),
                None => format!("{}: {}", path.display(), e),
            })
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

/// The 1-based line where a dotted key is set in the file, if it is.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = match key.rsplit_once('.') {
        Some((s, l)) if !l.ends_with('"') => (s.to_owned(), l.to_owned()),
        _ => (key.to_owned(), String::new()),
    };
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[').trim_end_matches(']').trim();
            in_section = name == section;
            if in_section && leaf.is_empty() {
                return Some(i + 1);
            }
            continue;
        }
        if in_section && !leaf.is_empty() {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

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
}

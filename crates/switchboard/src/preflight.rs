//! The checks `serve` makes at start that the configuration alone decides, made without
//! starting anything: [`Config::validate`], then what each component's constructor would
//! refuse — functions (HTTP URLs and headers, a lambda's directory, runtime, command and
//! environment), the authorizer (key files read and parsed, identity sources), the TLS
//! certificate and key (read, parsed, matched), the static directory and the backplane
//! URLs. `check-config` and `serve` both run it (through [`crate::config_file::load`]),
//! so they accept and refuse the same files with the same messages. Neither binds a
//! listener, dials the backplane or starts a worker here.

use switchboard_core::config::{
    table_key, AuthorizerConfig, BackplaneKind, Config, ConfigError, FunctionConfig,
};

/// Every problem found, each naming its key (paths are already resolved against the
/// config file's directory).
pub fn check(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut errors = config.validate().err().unwrap_or_default();
    let mut found = Vec::new();
    for (name, e) in switchboard_functions::check(&config.functions, crate::WORKER_REGION) {
        found.push(keyed(&format!("functions.{}", table_key(&name)), true, &e));
    }
    if let Some(authorizer) = &config.authorizer {
        if let AuthorizerConfig::Request(r) = authorizer {
            // A missing function is `validate`'s to report.
            if let Some(FunctionConfig::Builtin { .. }) = config.functions.get(&r.function) {
                found.push(error(
                    "authorizer.function",
                    format!(
                        "{:?} is a builtin; a REQUEST authorizer needs an http or lambda function",
                        r.function
                    ),
                ));
            }
        }
        if let Err(e) = switchboard_auth::Authorizer::check(authorizer) {
            found.push(keyed("authorizer", false, &e));
        }
    }
    if let Some(tls) = &config.tls {
        if let Err((file, e)) = switchboard_edge::check_tls(&tls.cert, &tls.key) {
            let key = match file {
                switchboard_edge::TlsFile::Cert => "tls.cert",
                switchboard_edge::TlsFile::Key => "tls.key",
            };
            let problem = match e {
                switchboard_edge::EdgeError::Tls(why) => why,
                other => other.to_string(),
            };
            found.push(error(key, problem));
        }
    }
    if let Some(st) = &config.static_files {
        if let Err(e) = switchboard_edge::check_static(st) {
            found.push(error("static.dir", e));
        }
    }
    let urls = match config.cluster.backplane {
        BackplaneKind::Local => Ok(()),
        BackplaneKind::Redis => switchboard_cluster::redis::check_urls(&config.cluster.urls),
        BackplaneKind::Nats => switchboard_cluster::nats::check_urls(&config.cluster.urls),
    };
    if let Err(e) = urls {
        found.push(keyed("cluster", false, &e));
    }
    // A component repeats some of `validate`'s checks: one message per key.
    for e in found {
        if !errors.iter().any(|seen| related(&seen.key, &e.key)) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn error(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A component's `"key: problem"` message as an error of that key: relative to `base`
/// (`functions.f` + `headers.x`) or, if not `relative`, as it is (`authorizer.secret`).
/// A message that names no key is an error of `base` itself.
fn keyed(base: &str, relative: bool, message: &str) -> ConfigError {
    let Some((key, problem)) = message.split_once(": ") else {
        return error(base, message);
    };
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]\"$".contains(&b));
    match (is_key, relative) {
        (false, _) => error(base, message),
        (true, true) => error(format!("{base}.{key}"), problem),
        (true, false) => error(key, problem),
    }
}

/// Whether one key is the other or holds it.
fn related(a: &str, b: &str) -> bool {
    let holds = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    holds(a, b) || holds(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_messages_become_keys() {
        let e = keyed(
            "functions.f",
            true,
            "headers.Content-Length: reserved, cannot be configured",
        );
        assert_eq!(e.key, "functions.f.headers.Content-Length");
        assert_eq!(e.problem, "reserved, cannot be configured");
        let e = keyed(
            "functions.\"a b\"",
            true,
            "runtime: set \"python\" or \"node\", or set command",
        );
        assert_eq!(e.key, "functions.\"a b\".runtime");
        let e = keyed(
            "authorizer",
            false,
            "authorizer.public_keys[0]: /k.pem: No such file",
        );
        assert_eq!(e.key, "authorizer.public_keys[0]");
        assert_eq!(e.problem, "/k.pem: No such file");
        let e = keyed(
            "authorizer",
            false,
            "authorizer: no key for any allowed algorithm",
        );
        assert_eq!(e.key, "authorizer");
        let e = keyed("cluster", false, "cluster.urls[1]: x: invalid");
        assert_eq!(e.key, "cluster.urls[1]");
        let e = keyed(
            "functions.f",
            true,
            "the function name or region cannot appear in a header",
        );
        assert_eq!(e.key, "functions.f");
    }

    #[test]
    fn keys_relate_by_whole_segments() {
        assert!(related("functions.f.url", "functions.f.url"));
        assert!(related("functions.f", "functions.f.url"));
        assert!(related(
            "management.credentials[0]",
            "management.credentials"
        ));
        assert!(!related("functions.f.url", "functions.f.urls"));
        assert!(!related("functions.f", "functions.fg"));
    }
}

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
        let base = format!("functions.{}", table_key(&name));
        let key = match e.key() {
            Some(key) => format!("{base}.{key}"),
            None => base,
        };
        found.push(error(key, e.problem()));
    }
    for (key, route) in &config.routes {
        if let Some(path) = &route.schema {
            if let Err(why) = switchboard_core::schema::MessageSchema::load(path) {
                found.push(error(format!("routes.{}.schema", table_key(key)), why));
            }
        }
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
            found.push(e);
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
            found.push(e);
        }
    }
    let urls = match config.cluster.backplane {
        BackplaneKind::Local => Ok(()),
        BackplaneKind::Redis => switchboard_cluster::redis::check_urls(&config.cluster.urls),
        BackplaneKind::Nats => switchboard_cluster::nats::check_urls(&config.cluster.urls),
    };
    if let Err(e) = urls {
        found.push(e);
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

    /// Each component's typed error becomes the error of its own key: relative to the
    /// function's table for functions, as it is for the authorizer and the cluster.
    #[test]
    fn component_errors_keep_their_keys() {
        let config: Config = toml::from_str(
            r#"
            [functions.f]
            kind = "http"
            url = "http://127.0.0.1:9/"
            headers = { Content-Length = "1" }

            [functions."a b"]
            kind = "lambda"
            dir = "."
            handler = "h"

            [authorizer]
            kind = "jwt"
            public_keys = ["/definitely/not/here.pem"]

            [cluster]
            backplane = "redis"
            urls = ["redis://a:1", "http://b"]
            "#,
        )
        .unwrap();
        let errors = check(&config).unwrap_err();
        let problem = |key: &str| {
            errors
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.problem.as_str())
                .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"))
        };
        assert_eq!(
            problem("functions.f.headers.Content-Length"),
            "reserved, cannot be configured"
        );
        assert_eq!(
            problem("functions.\"a b\".runtime"),
            "set \"python\" or \"node\", or set command"
        );
        assert!(problem("authorizer.public_keys[0]").starts_with("/definitely/not/here.pem: "));
        assert!(problem("cluster.urls[1]").starts_with("\"http://b\": "));
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

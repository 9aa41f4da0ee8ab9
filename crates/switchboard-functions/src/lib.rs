//! Functions: the [`Invoker`] seam and its kinds.
//!
//! The router hands an [`Invocation`] to an invoker and awaits a [`FunctionResponse`].
//! Kinds differ only in where the function runs: compiled in ([`Builtin`]), behind an HTTP
//! endpoint, or in worker processes speaking the Lambda Runtime API. Each kind owns its
//! bounds (timeouts, concurrency) and reports failures as an [`InvokeError`], whose
//! variant decides the client-visible outcome (handshake status or error frame).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use switchboard_core::config::{BuiltinName, FunctionConfig};
use switchboard_core::event::{ApiIdentity, EventKind, FunctionResponse, Invocation};

mod dial;
mod h1;
pub mod http;
mod http2;
pub mod lambda;
pub mod tls;

/// The future an invoker returns.
pub type InvokeFuture =
    Pin<Box<dyn Future<Output = Result<FunctionResponse, InvokeError>> + Send + 'static>>;

/// Why an invocation produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function could not be reached (handshake: 502).
    #[error("function unreachable: {0}")]
    Unreachable(String),
    /// The function did not answer in time (handshake: 504).
    #[error("function timed out")]
    Timeout,
    /// Too many invocations in flight and queued (handshake: 429).
    #[error("function throttled")]
    Throttled,
    /// The function answered with an error or an unusable response (handshake: 502).
    #[error("function failed: {0}")]
    Failed(String),
    /// No TLS connection to an `https://` function (handshake: 502); the function never
    /// got the event. Its label is the cause's (`tls_untrusted_certificate`, ...).
    #[error("function unreachable: {0}")]
    Tls(tls::TlsFailure),
}

impl InvokeError {
    /// The HTTP status a failed `$connect` answers with.
    pub fn handshake_status(&self) -> u16 {
        match self {
            Self::Unreachable(_) | Self::Failed(_) | Self::Tls(_) => 502,
            Self::Timeout => 504,
            Self::Throttled => 429,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout => "timeout",
            Self::Throttled => "throttled",
            Self::Failed(_) => "failed",
            Self::Tls(failure) => failure.label(),
        }
    }
}

/// Why a function cannot be built from its table of the configuration. The message is
/// `key: problem`, the key relative to the function's table (`url`, `headers.x-a`), or the
/// problem alone when it is the function's as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A key holds a value that cannot work.
    #[error("{key}: {problem}")]
    Invalid {
        /// Relative to the function's table.
        key: String,
        /// What is wrong with the value.
        problem: String,
    },
    /// A file the key names could not be used (the function's directory, the bundled
    /// bootstrap written for `runtime`).
    #[error("{key}: {what}: {source}")]
    Io {
        /// Relative to the function's table.
        key: &'static str,
        /// The path, or what was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The function's name (or the region) cannot appear in the function-ARN header.
    #[error("the function name or region cannot appear in a header")]
    NameNotInHeader,
    /// A TLS file (`tls_ca_file`, `tls_client_cert`, `tls_client_key`) cannot be used.
    #[error("{key}: {0}", key = .0.key())]
    Tls(#[from] tls::TlsSetupError),
    /// Lambda workers need a tokio runtime to run on.
    #[error("lambda functions must be started inside a tokio runtime")]
    NoRuntime,
}

impl SetupError {
    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key at fault, relative to the function's table; `None` when the problem is the
    /// function's as a whole.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Io { key, .. } => Some(key),
            Self::Tls(e) => Some(e.key()),
            Self::NameNotInHeader | Self::NoRuntime => None,
        }
    }

    /// The message without its key.
    pub fn problem(&self) -> String {
        match self {
            Self::Invalid { problem, .. } => problem.clone(),
            Self::Io { what, source, .. } => format!("{what}: {source}"),
            Self::Tls(e) => e.to_string(),
            Self::NameNotInHeader | Self::NoRuntime => self.to_string(),
        }
    }
}

/// Why [`build`] failed: which function, and why.
#[derive(Debug, thiserror::Error)]
#[error("functions.{function}: {source}")]
pub struct BuildError {
    /// The function's name.
    pub function: String,
    /// What its table holds that cannot work.
    pub source: SetupError,
}

/// Invokes one function. Implementations must bound their own waiting (timeouts) so the
/// returned future always completes.
pub trait Invoker: Send + Sync + 'static {
    /// Starts an invocation.
    fn invoke(&self, invocation: Invocation) -> InvokeFuture;

    /// Picks up changed function code (`switchboard dev`): managed workers are replaced;
    /// kinds without local code ignore it.
    fn reload(&self) {}

    /// Local files whose change calls for [`Invoker::reload`].
    fn watched_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// A function compiled into the gateway. `groups`: for `join_group`/`leave_group`, the
/// groups a client may join or leave itself.
#[derive(Debug, Clone)]
pub struct Builtin(pub BuiltinName, pub Arc<[String]>);

impl Builtin {
    /// The answer, computed synchronously (the builtins never wait).
    pub fn answer(&self, invocation: Invocation) -> FunctionResponse {
        match (self.0, invocation.kind) {
            (BuiltinName::Echo, EventKind::Message) => FunctionResponse {
                body: invocation.body,
                ..FunctionResponse::ok()
            },
            _ => FunctionResponse::ok(),
        }
    }
}

impl Invoker for Builtin {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        let answer = self.answer(invocation);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

/// A configured function: a builtin is kept as a value so the hot path can answer it
/// without boxing a future; every other kind goes through the [`Invoker`] seam.
#[derive(Clone)]
pub enum Function {
    /// Compiled in.
    Builtin(Builtin),
    /// Anything else.
    Remote(Arc<dyn Invoker>),
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(b) => write!(f, "Builtin({:?})", b.0),
            Self::Remote(_) => f.write_str("Remote"),
        }
    }
}

/// What managed workers need to reach this gateway's management API (injected into their
/// environment so `boto3.client("apigatewaymanagementapi")` works unmodified).
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    /// `http://127.0.0.1:PORT/STAGE`, for `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`.
    pub management_url: String,
    /// A SigV4 key the management API accepts.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// A bearer token the management API accepts (for the `/v1` API).
    pub bearer_token: String,
    /// The region handlers see (`AWS_REGION`).
    pub region: String,
}

/// The checks [`build`] makes, without starting anything (no worker, no connection): for
/// `switchboard check-config`, and for `serve` before it binds. `region` is the one
/// managed workers will see. Each error comes with its function's name.
pub fn check(
    configs: &std::collections::BTreeMap<String, FunctionConfig>,
    region: &str,
) -> Vec<(String, SetupError)> {
    let api = ApiIdentity {
        stage: String::new(),
        domain_name: String::new(),
        api_id: String::new(),
    };
    configs
        .iter()
        .filter_map(|(name, cfg)| {
            let checked = match cfg {
                FunctionConfig::Builtin { .. } => Ok(()),
                // Building an HTTP invoker reads its TLS files but opens no connection:
                // connections are made on demand.
                FunctionConfig::Http(h) => http::HttpInvoker::new(name, h, api.clone()).map(|_| ()),
                FunctionConfig::Lambda(l) => lambda::LambdaInvoker::check(name, l, region),
            };
            checked.err().map(|e| (name.clone(), e))
        })
        .collect()
}

/// Builds every configured function by name.
pub fn build(
    configs: &std::collections::BTreeMap<String, FunctionConfig>,
    api: &ApiIdentity,
    runtime: &RuntimeContext,
) -> Result<HashMap<String, Function>, BuildError> {
    let mut out = HashMap::new();
    for (name, cfg) in configs {
        let f = match cfg {
            FunctionConfig::Builtin { name, groups } => {
                Function::Builtin(Builtin(*name, groups.clone().into()))
            }
            FunctionConfig::Http(h) => Function::Remote(Arc::new(
                http::HttpInvoker::new(name, h, api.clone()).map_err(|source| BuildError {
                    function: name.clone(),
                    source,
                })?,
            )),
            FunctionConfig::Lambda(l) => Function::Remote(Arc::new(
                lambda::LambdaInvoker::start(name, l, api.clone(), runtime).map_err(|source| {
                    BuildError {
                        function: name.clone(),
                        source,
                    }
                })?,
            )),
        };
        out.insert(name.clone(), f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn http(url: &str) -> FunctionConfig {
        serde_json::from_value(serde_json::json!({"kind": "http", "url": url})).unwrap()
    }

    /// `check` and `build` refuse the same table with the same message; the key is
    /// relative to the function's table in `check`, under `functions.<name>` in `build`.
    #[test]
    fn setup_errors_name_the_key() {
        let configs = BTreeMap::from([
            ("good".to_owned(), http("http://127.0.0.1:9/")),
            (
                "bad".to_owned(),
                serde_json::from_value(serde_json::json!({
                    "kind": "http",
                    "url": "https://example.com/",
                    "tls_ca_file": "/nonexistent/ca.pem",
                }))
                .unwrap(),
            ),
        ]);
        let found = check(&configs, "us-east-1");
        assert_eq!(found.len(), 1);
        let (name, e) = &found[0];
        assert_eq!(name, "bad");
        assert_eq!(e.key(), Some("tls_ca_file"));
        assert!(e.problem().starts_with("/nonexistent/ca.pem: "), "{e}");
        assert_eq!(e.to_string(), format!("tls_ca_file: {}", e.problem()));

        let api = ApiIdentity {
            stage: "dev".into(),
            domain_name: "localhost".into(),
            api_id: "api".into(),
        };
        let runtime = RuntimeContext {
            management_url: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            bearer_token: String::new(),
            region: "us-east-1".into(),
        };
        let e = build(&configs, &api, &runtime).unwrap_err();
        assert_eq!(e.function, "bad");
        assert_eq!(e.source.key(), Some("tls_ca_file"));
        assert!(
            e.to_string()
                .starts_with("functions.bad: tls_ca_file: /nonexistent/ca.pem: "),
            "{e}"
        );

        let e = SetupError::NameNotInHeader;
        assert_eq!(e.key(), None);
        assert_eq!(e.problem(), e.to_string());
        let e = SetupError::Io {
            key: "dir",
            what: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(e.key(), Some("dir"));
        assert_eq!(e.to_string(), format!("dir: {}", e.problem()));
        assert!(std::error::Error::source(&e).is_some());
    }
}

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

mod h1;
mod h2;
mod hpack;
pub mod http;
pub mod lambda;

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
}

impl InvokeError {
    /// The HTTP status a failed `$connect` answers with.
    pub fn handshake_status(&self) -> u16 {
        match self {
            Self::Unreachable(_) | Self::Failed(_) => 502,
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
        }
    }
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
/// managed workers will see. Each error is `(function name, "key: problem")`, the key
/// relative to the function's table.
pub fn check(
    configs: &std::collections::BTreeMap<String, FunctionConfig>,
    region: &str,
) -> Vec<(String, String)> {
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
                // Building an HTTP invoker opens nothing: connections are made on demand.
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
) -> Result<HashMap<String, Function>, String> {
    let mut out = HashMap::new();
    for (name, cfg) in configs {
        let f = match cfg {
            FunctionConfig::Builtin { name, groups } => {
                Function::Builtin(Builtin(*name, groups.clone().into()))
            }
            FunctionConfig::Http(h) => Function::Remote(Arc::new(
                http::HttpInvoker::new(name, h, api.clone())
                    .map_err(|e| format!("functions.{name}: {e}"))?,
            )),
            FunctionConfig::Lambda(l) => Function::Remote(Arc::new(
                lambda::LambdaInvoker::start(name, l, api.clone(), runtime)
                    .map_err(|e| format!("functions.{name}: {e}"))?,
            )),
        };
        out.insert(name.clone(), f);
    }
    Ok(out)
}

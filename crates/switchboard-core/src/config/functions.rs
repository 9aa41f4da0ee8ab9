//! `[functions]`: builtins, `http` webhooks and `lambda` worker pools.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A function, by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FunctionConfig {
    /// A function compiled into the gateway.
    Builtin {
        /// Which one: `echo`, `accept`, `join_group`, `leave_group`.
        name: BuiltinName,
        /// For `join_group`/`leave_group`: the groups a client may join or leave itself
        /// (exact names or prefixes ending in `*`). Default: none.
        #[serde(default)]
        groups: Vec<String>,
    },
    /// An HTTP endpoint that receives the event JSON by POST.
    Http(HttpFunctionConfig),
    /// Worker processes that switchboard runs itself, speaking the AWS Lambda Runtime API.
    Lambda(Box<LambdaFunctionConfig>),
}

/// `kind = "lambda"`: a pool of worker processes polling a Lambda Runtime API that
/// switchboard serves on a loopback port of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaFunctionConfig {
    /// The worker command and its arguments, e.g. `["python3", "-m", "awslambdaric",
    /// "app.handler"]`. Default: the bundled bootstrap for `runtime`.
    #[serde(default)]
    pub command: Vec<String>,
    /// `python` or `node`: picks the bundled bootstrap when `command` is empty.
    #[serde(default)]
    pub runtime: Option<String>,
    /// The handler, `module.function` (`_HANDLER`).
    pub handler: String,
    /// Working directory and `LAMBDA_TASK_ROOT`. Relative to the config file.
    #[serde(default = "default_dot")]
    pub dir: PathBuf,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Per-invocation timeout, milliseconds. The worker is killed and replaced when it is
    /// exceeded. Default 29000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Workers at most (one invocation each at a time). Default 4.
    #[serde(default = "default_lambda_concurrency")]
    pub max_concurrency: usize,
    /// Workers kept running while idle; 0 = scale to zero. Default 0.
    #[serde(default)]
    pub min_warm: usize,
    /// Seconds a worker may sit idle before it is stopped (down to `min_warm`). Default 300.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// Address-space limit per worker, MiB (`ulimit -v`), 0 = none. Default 0.
    #[serde(default)]
    pub memory_mb: u64,
    /// Invocations waiting for a worker; beyond it: throttled. Default 256.
    #[serde(default = "default_lambda_queue")]
    pub max_queue: usize,
}

fn default_dot() -> PathBuf {
    PathBuf::from(".")
}
fn default_lambda_concurrency() -> usize {
    4
}
fn default_idle_secs() -> u64 {
    300
}
fn default_lambda_queue() -> usize {
    256
}

/// `kind = "http"`: POST the event JSON to `url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFunctionConfig {
    /// `http://` or `https://` URL the event is POSTed to. An `https://` server's
    /// certificate is verified against the Mozilla roots (webpki-roots) and `tls_ca_file`.
    pub url: String,
    /// Per-invocation timeout, milliseconds. Default 29000 (AWS's integration timeout).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Invocations in flight at once. Default 64.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Invocations waiting for a free slot; beyond it: throttled. Default 1024.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Secret for the `X-Switchboard-Signature` HMAC-SHA256 header. Default: none (no header).
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Largest response body accepted, bytes. Default 6291456 (6 MiB, as Lambda).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// `"auto"` (default): for `http://`, HTTP/1.1; for `https://`, `h2` or `http/1.1`
    /// offered by ALPN and the server's choice spoken. `"1.1"`: pooled keep-alive HTTP/1.1
    /// connections (over TLS, only `http/1.1` offered). `"2"`: HTTP/2, invocations
    /// multiplexed over one connection: with prior knowledge (h2c) for `http://`, only
    /// `h2` offered for `https://`.
    #[serde(default)]
    pub http_version: HttpVersion,
    /// PEM file of extra root certificates trusted for an `https://` url (a private CA),
    /// besides the Mozilla roots. Relative to the config file. Default: none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM certificate chain presented when an `https://` server asks for a client
    /// certificate (mutual TLS); needs `tls_client_key`. Relative to the config file.
    /// Default: none.
    #[serde(default)]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of `tls_client_cert`. Relative to the config file. Default: none.
    #[serde(default)]
    pub tls_client_key: Option<PathBuf>,
}

/// The HTTP version an `http` function is spoken to with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// `"auto"`: HTTP/1.1 for `http://` (cleartext has no ALPN); for `https://`, the
    /// server's ALPN choice of `h2` and `http/1.1`.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// `"1.1"`: HTTP/1.1 with keep-alive.
    #[serde(rename = "1.1")]
    Http1,
    /// `"2"`: HTTP/2; with prior knowledge (h2c) for `http://`, `h2` by ALPN for `https://`.
    #[serde(rename = "2")]
    Http2,
}

fn default_timeout_ms() -> u64 {
    29_000
}
fn default_max_concurrency() -> usize {
    64
}
fn default_max_queue() -> usize {
    1024
}
fn default_max_response_bytes() -> usize {
    6 * 1024 * 1024
}

/// The builtin functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinName {
    /// Answers with the message it was given (text stays text, binary stays binary).
    Echo,
    /// Answers 200 with no body.
    Accept,
    /// The client joins the group named by the message's `group` field (if allowed).
    JoinGroup,
    /// The client leaves the group named by the message's `group` field.
    LeaveGroup,
}

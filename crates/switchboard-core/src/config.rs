//! The configuration tree. Every field has a default; `docs/config.md` documents each one.
//!
//! Parsing (TOML, environment overrides) lives in the binary; this module holds the types
//! and [`Config::validate`], which names the offending key in every error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners, identity, logging, shutdown.
    pub server: ServerConfig,
    /// Size, time and rate limits.
    pub limits: LimitsConfig,
    /// Server pings.
    pub keepalive: KeepaliveConfig,
    /// permessage-deflate.
    pub compression: CompressionConfig,
    /// Optional TLS for the WebSocket listener.
    pub tls: Option<TlsConfig>,
    /// Optional static files served on the WebSocket listener.
    #[serde(rename = "static")]
    pub static_files: Option<StaticConfig>,
    /// The API identity that appears in events (`stage`, `domainName`, `apiId`).
    pub api: ApiConfig,
    /// Route selection.
    pub router: RouterConfig,
    /// Route key → route. Keys: `$connect`, `$disconnect`, `$default`, or custom keys
    /// (which must not start with `$`).
    pub routes: BTreeMap<String, RouteConfig>,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// The management API (`@connections`) and its authentication.
    pub management: ManagementConfig,
    /// Authentication of connections at the handshake. Default: none.
    pub authorizer: Option<AuthorizerConfig>,
    /// Several nodes acting as one gateway.
    pub cluster: ClusterConfig,
    /// Resumable sessions for clients of the `switchboard.v1` subprotocol.
    pub resume: ResumeConfig,
}

/// `[resume]` (see docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeConfig {
    /// Offer the `switchboard.v1` subprotocol. Default false.
    pub enabled: bool,
    /// Seconds a dropped session waits for its client. Default 120.
    pub window_secs: u64,
    /// Unacknowledged server messages kept for replay. Default 1024.
    pub buffer_messages: usize,
    /// The same bound in bytes. Default 1048576.
    pub buffer_bytes: usize,
    /// Keep each parked session in the cluster backplane too, so it survives the loss of
    /// the node holding it (docs/protocol.md). Needs a `redis` or `nats` backplane.
    /// Default false.
    pub keep_in_backplane: bool,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window_secs: 120,
            buffer_messages: 1024,
            buffer_bytes: 1024 * 1024,
            keep_in_backplane: false,
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `local` (one node, nothing shared), `redis` or `nats`. Default `local`.
    pub backplane: BackplaneKind,
    /// Engine URLs: `redis://host:port` (several for Redis Cluster) or `nats://host:port`.
    pub urls: Vec<String>,
    /// Seconds between this node's heartbeats. Default 2.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a node counts as lost and a survivor
    /// invokes `$disconnect` for its connections. Default 10.
    pub node_ttl_secs: u64,
    /// Milliseconds a cross-node operation may wait for the backplane before failing
    /// with 503. Default 1000.
    pub op_timeout_ms: u64,
    /// Prefix of every key, channel, subject and bucket this deployment uses in the
    /// backplane, so that deployments sharing one Redis or NATS do not see each other:
    /// 1-48 of `a-z`, `0-9`, `_`, `-`. Default: derived from `[api] api_id` and
    /// `[api] stage` ([`derive_namespace`], `switchboard-prod` with both defaults).
    pub namespace: Option<String>,
}

impl ClusterConfig {
    /// The namespace in force: `namespace`, or the one derived from `api`.
    pub fn namespace_for(&self, api: &ApiConfig) -> String {
        match &self.namespace {
            Some(ns) => ns.clone(),
            None => derive_namespace(&api.api_id, &api.stage),
        }
    }
}

/// Longest `[cluster] namespace`.
pub const NAMESPACE_MAX: usize = 48;

/// Whether `ns` is a valid `[cluster] namespace`: 1-48 of `a-z`, `0-9`, `_`, `-`, which
/// are valid in Redis keys, NATS subjects (no `.`, `*`, `>`) and KV bucket names.
pub fn is_valid_namespace(ns: &str) -> bool {
    (1..=NAMESPACE_MAX).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The default namespace of a deployment: `<api_id>-<stage>`, lowercased, with every
/// other character than `a-z0-9_-` made `-`. If that changed anything or is longer than
/// 48, it is cut to 39 characters and followed by `-` and 8 hex digits of a hash of the
/// original (so `MyApi` and `myapi` still differ). Stable across versions and machines.
pub fn derive_namespace(api_id: &str, stage: &str) -> String {
    let raw = format!("{api_id}-{stage}");
    let clean: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            l @ ('a'..='z' | '0'..='9' | '_' | '-') => l,
            _ => '-',
        })
        .collect();
    if clean == raw && clean.len() <= NAMESPACE_MAX {
        return clean;
    }
    // FNV-1a, the node tag's hash: fixed, unlike std's hashers.
    let hash = crate::id::node_tag(&raw);
    let head: String = clean.chars().take(NAMESPACE_MAX - 9).collect();
    format!("{head}-{hash:08x}")
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            backplane: BackplaneKind::Local,
            urls: Vec::new(),
            heartbeat_secs: 2,
            node_ttl_secs: 10,
            op_timeout_ms: 1000,
            namespace: None,
        }
    }
}

/// The backplane engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackplaneKind {
    /// Single node.
    Local,
    /// Redis pub/sub (sharded pub/sub on Redis Cluster) and keys for the registry.
    Redis,
    /// NATS subjects and a JetStream key-value bucket for the registry.
    Nats,
}

/// `[authorizer]`: who may connect. Missing identity: 401; denied: 403; the authorizer
/// failing: 500 — all at the handshake, before `$connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthorizerConfig {
    /// Verify a JSON Web Token.
    Jwt(Box<JwtConfig>),
    /// Ask a function, AWS REQUEST-authorizer style.
    Request(RequestAuthorizerConfig),
}

/// Where a token may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// A query parameter (`query_param`).
    Query,
    /// A `Sec-WebSocket-Protocol` entry `<protocol_prefix><token>` (browsers cannot set headers).
    Protocol,
}

/// `kind = "jwt"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Where to look for the token, in order. Default: header, query, protocol.
    #[serde(default = "default_token_sources")]
    pub token_sources: Vec<TokenSource>,
    /// Query parameter holding the token. Default `token`.
    #[serde(default = "default_query_param")]
    pub query_param: String,
    /// Prefix marking the subprotocol entry that carries the token. Default `bearer.`.
    #[serde(default = "default_protocol_prefix")]
    pub protocol_prefix: String,
    /// Accepted algorithms among HS256, RS256, ES256. Default: all three (only those with
    /// a key configured can verify). `none` is always refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// HS256 shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM public keys (RSA or P-256 SubjectPublicKeyInfo) for RS256/ES256.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// A JWKS file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (http or https), fetched at start and every `jwks_refresh_secs`, and once
    /// (rate-limited) when a token names an unknown `kid`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between JWKS refreshes. Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; if set, the token's `aud` must contain one.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Leeway for `exp` and `nbf`, seconds. Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Claim giving the connection's `userId`. Default `sub`.
    #[serde(default = "default_user_claim")]
    pub user_id_claim: String,
    /// Claim (array of strings) giving groups the connection joins. Default: none.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Close the connection with 1008 when the token expires. Default false.
    #[serde(default)]
    pub close_on_expiry: bool,
}

fn default_token_sources() -> Vec<TokenSource> {
    vec![
        TokenSource::Header,
        TokenSource::Query,
        TokenSource::Protocol,
    ]
}
fn default_query_param() -> String {
    "token".into()
}
fn default_protocol_prefix() -> String {
    "bearer.".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["HS256".into(), "RS256".into(), "ES256".into()]
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_leeway() -> u64 {
    60
}
fn default_user_claim() -> String {
    "sub".into()
}

/// `kind = "request"`: an AWS REQUEST authorizer function.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestAuthorizerConfig {
    /// The function (a name from `[functions]`).
    pub function: String,
    /// Identity sources, e.g. `["header:Authorization", "query:token"]`. All must be
    /// present (else 401); together they are the cache key.
    pub identity_sources: Vec<String>,
    /// Seconds an answer is cached per identity, 0 = no cache. Default 300.
    #[serde(default = "default_auth_cache")]
    pub cache_ttl_secs: u64,
    /// Cached identities kept at most. Default 10000.
    #[serde(default = "default_auth_cache_entries")]
    pub cache_max_entries: usize,
}

fn default_auth_cache() -> u64 {
    300
}
fn default_auth_cache_entries() -> usize {
    10_000
}

/// `[management]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementConfig {
    /// `keys` (SigV4 with `credentials`, or a bearer token from `bearer_tokens`) or `none`
    /// (allowed only when `server.management_listen` is a loopback address). Default `keys`.
    pub auth: ManagementAuth,
    /// SigV4 access-key pairs (what AWS SDK clients sign with).
    pub credentials: Vec<Credential>,
    /// Tokens accepted as `Authorization: Bearer <token>`.
    pub bearer_tokens: Vec<String>,
    /// Allowed clock skew for SigV4 signatures, seconds. Default 300.
    pub clock_skew_secs: u64,
    /// Largest request head (request line plus headers) on the management listener,
    /// bytes; beyond it: HTTP 431, and no more of it is buffered. Default 16384.
    pub max_request_head_bytes: usize,
    /// Most header lines in a request head on the management listener; beyond it: HTTP
    /// 431. Default 100.
    pub max_request_headers: usize,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self {
            auth: ManagementAuth::Keys,
            credentials: Vec::new(),
            bearer_tokens: Vec::new(),
            clock_skew_secs: 300,
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
        }
    }
}

/// How management calls authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagementAuth {
    /// SigV4 or bearer token required.
    Keys,
    /// No authentication (loopback listeners only).
    None,
}

/// One SigV4 access key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// WebSocket listener address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Management listener (metrics, health, management API). Default `127.0.0.1:9090`.
    pub management_listen: SocketAddr,
    /// This node's id; appears in connection ids. Default: generated at start.
    pub node_id: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs). Default: none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// WebSocket subprotocols accepted, in the server's order of preference. Default: none.
    pub subprotocols: Vec<String>,
    /// Seconds to wait for connections and in-flight work on shutdown. Default 10.
    pub shutdown_grace_secs: u64,
    /// `pretty` or `json`. Default `pretty`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `switchboard=debug`. Default `info`.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            management_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            node_id: None,
            trusted_proxies: Vec::new(),
            subprotocols: Vec::new(),
            shutdown_grace_secs: 10,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message, in bytes, after reassembly and decompression (over it: close 1009).
    /// Default 131072 (128 KiB, as AWS).
    pub max_message_bytes: usize,
    /// Largest single frame, in bytes (over it: close 1009). Default 131072.
    pub max_frame_bytes: usize,
    /// Seconds without any frame from the client (pongs count) before close 1001. Default 600.
    pub idle_timeout_secs: u64,
    /// Maximum connection lifetime in seconds, 0 = unlimited (reached: close 1001). Default 7200.
    pub max_connection_secs: u64,
    /// Seconds allowed for the HTTP request head of the handshake. Default 10.
    pub handshake_timeout_secs: u64,
    /// Open WebSocket connections per node (over it: HTTP 503 at the handshake). Default 10000.
    pub max_connections: usize,
    /// New connections per second per source IP, 0 = off (over it: HTTP 429). Default 0.
    pub connections_per_ip_per_sec: u32,
    /// Burst allowed above `connections_per_ip_per_sec`. Default 20.
    pub connections_per_ip_burst: u32,
    /// Messages per second per connection, 0 = off (over it: close 1008). Default 0.
    pub messages_per_sec: u32,
    /// Burst allowed above `messages_per_sec`. Default 50.
    pub messages_burst: u32,
    /// Messages queued for sending to one connection (a reader too slow: close 1013). Default 1024.
    pub outbound_queue_messages: usize,
    /// Bytes queued for sending to one connection (a reader too slow: close 1013). Default 4194304.
    pub outbound_queue_bytes: usize,
    /// Seconds a single socket write may stall before the connection is dropped. Default 30.
    pub write_timeout_secs: u64,
    /// Groups one connection may be in. Default 32.
    pub max_groups_per_connection: usize,
    /// Bytes of per-connection state (keys plus values). Default 4096.
    pub max_state_bytes: usize,
    /// Largest request head (request line plus headers) of a handshake or static GET,
    /// bytes; beyond it: HTTP 431, and no more of it is buffered. Default 16384.
    pub max_request_head_bytes: usize,
    /// Most header lines in a handshake or static GET; beyond it: HTTP 431. Default 100.
    pub max_request_headers: usize,
}

/// Default of `limits.max_request_head_bytes` and `management.max_request_head_bytes`
/// (16 KiB, as common proxies).
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Default of `limits.max_request_headers` and `management.max_request_headers`.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
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

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 128 * 1024,
            max_frame_bytes: 128 * 1024,
            idle_timeout_secs: 600,
            max_connection_secs: 7200,
            handshake_timeout_secs: 10,
            max_connections: 10_000,
            connections_per_ip_per_sec: 0,
            connections_per_ip_burst: 20,
            messages_per_sec: 0,
            messages_burst: 50,
            outbound_queue_messages: 1024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            write_timeout_secs: 30,
            max_groups_per_connection: 32,
            max_state_bytes: 4096,
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
        }
    }
}

/// `[keepalive]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepaliveConfig {
    /// Seconds between server pings, 0 = never ping. Default 30.
    pub ping_interval_secs: u64,
    /// Seconds to wait for any frame after a ping before the peer counts as dead. Default 30.
    pub pong_timeout_secs: u64,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            ping_interval_secs: 30,
            pong_timeout_secs: 30,
        }
    }
}

/// `[compression]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Negotiate permessage-deflate when the client offers it. Default true.
    pub enabled: bool,
    /// zlib level 0–9. Default 2: zlib-rs's level 1 is a static-Huffman quick mode that
    /// saves little on short messages; its level 2 is what zlib calls level 1.
    pub level: u32,
    /// Keep compression windows between messages (better ratio, ~300 KiB per connection).
    /// Default false: no per-connection compression memory.
    pub context_takeover: bool,
    /// Server compression window, 9–15 bits. Default 15.
    pub server_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed. Default 32.
    pub threshold_bytes: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: 2,
            context_takeover: false,
            server_max_window_bits: 15,
            threshold_bytes: 32,
        }
    }
}

/// `[tls]`: both files are PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// `[static]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// Directory whose files are served by plain GET on the WebSocket listener.
    pub dir: PathBuf,
    /// File served for `/`. Default `index.html`.
    #[serde(default = "default_index")]
    pub index: String,
}

fn default_index() -> String {
    "index.html".into()
}

/// `[api]`: values that appear in events' `requestContext`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `requestContext.stage`. Default `prod`.
    pub stage: String,
    /// `requestContext.domainName`. Default `localhost`.
    pub domain_name: String,
    /// `requestContext.apiId`. Default `switchboard`.
    pub api_id: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            stage: "prod".into(),
            domain_name: "localhost".into(),
            api_id: "switchboard".into(),
        }
    }
}

/// `[router]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Route selection expression. Default `$request.body.action`.
    pub selection_expression: String,
    /// Binary frames: `base64` (delivered base64-encoded with `isBase64Encoded: true`) or
    /// `reject` (close 1003, as AWS). Default `base64`.
    pub binary: BinaryMode,
}

/// What happens to binary frames from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryMode {
    /// Delivered base64-encoded.
    Base64,
    /// Close 1003.
    Reject,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            selection_expression: "$request.body.action".into(),
            binary: BinaryMode::Base64,
        }
    }
}

/// One route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The function invoked, by name (a key of `[functions]`).
    pub function: String,
    /// Send the function's response body back to the caller. Default false (as AWS).
    #[serde(default)]
    pub two_way: bool,
    /// Invoke this route's messages without waiting for the previous invocation of the
    /// connection to finish. Default false: a connection's messages are invoked in order.
    #[serde(default)]
    pub parallel: bool,
}

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
    /// `http://` URL the event is POSTed to.
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
    /// `"1.1"` (default): pooled keep-alive HTTP/1.1 connections. `"2"`: cleartext
    /// HTTP/2 with prior knowledge (h2c), invocations multiplexed over one connection.
    #[serde(default)]
    pub http_version: HttpVersion,
}

/// The HTTP version an `http` function is spoken to with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// `"1.1"`: HTTP/1.1 with keep-alive.
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    /// `"2"`: cleartext HTTP/2 with prior knowledge.
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

/// A configuration that does not make sense; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `limits.max_message_bytes`.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

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
        }
        for (name, f) in &self.functions {
            if let FunctionConfig::Http(h) = f {
                let key = format!("functions.{}", table_key(name));
                if !h.url.starts_with("http://") {
                    errors.push(err(
                        format!("{key}.url"),
                        "must be an http:// URL (put TLS termination in front of the function)",
                    ));
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

/// `name` as one segment of a dotted key: as it is when TOML allows it bare, else quoted.
/// The form [`ConfigError::key`] uses for names of functions and routes.
pub fn table_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_owned()
    } else {
        quoted_key(name)
    }
}

/// `name` as a quoted TOML key (a basic string).
fn quoted_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
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

/// RFC 7230 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;

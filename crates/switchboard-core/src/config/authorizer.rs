//! `[authorizer]`: who may connect (a JWT, or a REQUEST authorizer function).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

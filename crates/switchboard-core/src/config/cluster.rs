//! `[cluster]`: the backplane shared by several nodes, and the namespace that keeps
//! deployments on one engine apart.

use serde::{Deserialize, Serialize};

use super::ApiConfig;

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

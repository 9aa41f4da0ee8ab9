//! `[server]`, `[tls]`, `[static]` and `[api]`: the listeners, their identity and logging,
//! and the values that appear in events.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

//! `[access]`: who may open a WebSocket, by the page's origin and the client's address.

use serde::{Deserialize, Serialize};

use crate::access::OriginPattern;

/// `[access]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Origins whose pages may open a WebSocket: exact (`https://chat.example.com`),
    /// every subdomain (`https://*.example.com`), or `"*"` for any. A handshake whose
    /// `Origin` is not listed is refused with 403. Default: empty, meaning same origin
    /// only (the `Origin` must name the request's `Host`).
    pub allowed_origins: Vec<OriginPattern>,
    /// Refuse handshakes without an `Origin` header (clients other than browsers send
    /// none). Default false.
    pub require_origin: bool,
    /// Client addresses allowed to connect (CIDRs, after `server.trusted_proxies`); when
    /// not empty, every other address is refused with 403. Default: empty (all).
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Client addresses refused with 403 (CIDRs), even when in `allow_ips`. Default: none.
    pub deny_ips: Vec<ipnet::IpNet>,
    /// Open connections from one client address on this node, 0 = off (over it: HTTP 429).
    /// Default 0.
    pub max_connections_per_ip: u32,
    /// Open connections of one `userId` (from the authorizer or `$connect`'s answer), on
    /// every node of the cluster, 0 = off. Default 0.
    pub max_connections_per_user: u32,
    /// What a connection beyond `max_connections_per_user` does: `"reject"` the new one
    /// (HTTP 429) or `"close_oldest"` (the oldest gets close 1008). Default `"reject"`.
    pub on_user_limit: OnUserLimit,
    /// Messages per second one user may send on this node, over all its connections, 0 =
    /// off (over it: the connection that sent the message is closed with 1008). Default 0.
    pub messages_per_sec_per_user: u32,
    /// Burst allowed above `messages_per_sec_per_user`. Default 100.
    pub messages_burst_per_user: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            require_origin: false,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            max_connections_per_ip: 0,
            max_connections_per_user: 0,
            on_user_limit: OnUserLimit::Reject,
            messages_per_sec_per_user: 0,
            messages_burst_per_user: 100,
        }
    }
}

/// `access.on_user_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUserLimit {
    /// Refuse the new connection with HTTP 429.
    #[default]
    Reject,
    /// Accept the new connection and close the user's oldest with 1008.
    CloseOldest,
}

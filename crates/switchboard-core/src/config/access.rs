//! `[access]`: who may open a WebSocket, by the page's origin and the client's address.

use serde::{Deserialize, Serialize};

use crate::access::OriginPattern;

/// `[access]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
}

//! `[management]`: how calls to the management API authenticate, who may call it, and its
//! request bounds.

use serde::{Deserialize, Serialize};

use super::{DEFAULT_MAX_REQUEST_HEADERS, DEFAULT_MAX_REQUEST_HEAD_BYTES};

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
    /// Client addresses allowed on the management listener (CIDRs, the TCP peer); when not
    /// empty, every other address is refused with 403. Default: empty (all).
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Addresses refused with 403 on the management listener (CIDRs), even when in
    /// `allow_ips`. Default: none.
    pub deny_ips: Vec<ipnet::IpNet>,
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
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
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

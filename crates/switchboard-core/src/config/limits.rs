//! `[limits]`, `[keepalive]` and `[compression]`: the bounds of each connection.

use serde::{Deserialize, Serialize};

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

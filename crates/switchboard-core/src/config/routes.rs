//! `[router]` and `[routes]`: how a message picks its route, and what each route invokes.

use serde::{Deserialize, Serialize};

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
    /// A JSON Schema file (draft 2020-12 or 7; relative to the config file) that every
    /// message on this route must pass before the function is invoked. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<std::path::PathBuf>,
}

//! What a route leads to.

use std::sync::Arc;

use switchboard_core::schema::MessageSchema;
use switchboard_functions::Function;

/// What a route leads to.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The route key, shared by every event on this route.
    pub key: Arc<str>,
    /// The function.
    pub function: Function,
    /// Whether the function's answer goes back to the caller.
    pub two_way: bool,
    /// Whether this route's invocations may overlap others of the same connection.
    pub parallel: bool,
    /// The function's configured name (for logs).
    pub function_name: Arc<str>,
    /// The schema a message must pass before the function is invoked, compiled at start.
    pub schema: Option<Arc<MessageSchema>>,
}

//! switchboard's sans-IO model: everything the gateway decides, without sockets.
//!
//! - [`access`]: which origins and client addresses may connect;
//! - [`config`]: the configuration tree and its validation;
//! - [`id`]: connection and request ids (a connection id names its node);
//! - [`event`]: what a function is invoked with and answers;
//! - [`json`]: JSON written by hand for the per-invocation event;
//! - [`route`]: route selection and the route table;
//! - [`schema`]: per-route message schemas, compiled at start and checked per message;
//! - [`groups`]: group and user membership;
//! - [`limit`]: rate limiting, told the time by the caller;
//! - [`ops`]: the operations on connections, as data (what every entry point asks for).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod b64;
pub mod config;
pub mod event;
pub mod groups;
pub mod id;
pub mod json;
pub mod limit;
pub mod ops;
pub mod route;
pub mod schema;
pub mod text;

pub use id::ConnectionId;

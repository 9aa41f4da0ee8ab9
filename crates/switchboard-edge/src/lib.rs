//! The WebSocket edge: everything between a client's socket and the router.
//!
//! - `handshake`: the pure handshake decision (upgrade checks, head bounds, subprotocol,
//!   permessage-deflate, source address, resume token) and every refusal's status and label;
//! - [`server`]: the listener, TLS, the stateful steps of the handshake (connection
//!   count, per-IP rate, resume, authorizer, `$connect`), and the hand-off of the raw stream;
//! - `conn`: the per-connection task (decode, invoke in order, drain the outbound queue,
//!   write, keepalive, idle and lifetime deadlines, close codes);
//! - `drain`: the shutdown deadline for in-flight invocations and what was abandoned;
//! - [`table`]: the connection table and the handle others use to send or close;
//! - [`metrics`]: the edge's Prometheus metrics.
#![forbid(unsafe_code)]

mod accept;
mod away;
mod conn;
mod copies;
mod disconnect;
mod door;
mod drain;
#[cfg(test)]
mod fuzz_frames;
mod handshake;
pub mod inner;
mod kept;
pub mod metrics;
mod moves;
pub mod ops;
mod outbound;
mod parked;
mod refusal_log;
mod registry;
pub mod server;
mod session;
mod slot;
mod static_files;
pub mod table;
mod target;
mod tls;

pub use inner::EdgeInner;
pub use server::{bind, Edge};
/// The start-up checks of the parts [`Edge::new`] builds from files, callable alone.
pub use static_files::check as check_static;
pub use target::RouteTarget;
pub use tls::{check as check_tls, TlsFile};

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
}

//! Making new connections to a function: where it is ([`Target`]) and a TCP connection
//! to it. The pools (HTTP/1.1 and HTTP/2) only decide when to dial.

use tokio::net::TcpStream;

use crate::InvokeError;

/// Where requests go: resolved at each new connection, so a DNS change is followed.
pub(crate) struct Target {
    /// Host as written in the URL (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// A new TCP connection to the target (each address it resolves to in turn), with
/// Nagle off: requests are whole writes, Nagle would only add latency. Failures are
/// [`InvokeError::Unreachable`].
pub(crate) async fn connect_tcp(target: &Target) -> Result<TcpStream, InvokeError> {
    let Target { host, port } = target;
    let addrs = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(|e| InvokeError::Unreachable(capped(format!("dns error: {e}"))))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(InvokeError::Unreachable(capped(match last {
        Some(e) => format!("tcp connect error: {e}"),
        None => format!("dns error: no addresses for {host}"),
    })))
}

/// Connect errors name the cause; at most 160 bytes of it.
fn capped(mut reason: String) -> String {
    switchboard_core::text::truncate_on_char(&mut reason, 160);
    reason
}

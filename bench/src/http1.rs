//! A minimal HTTP/1.1 keep-alive client for loopback benchmark calls (publishing to
//! switchboard's management API or a Pusher HTTP API): one request at a time per
//! connection, `Content-Length` or chunked responses, reconnects when the server closed
//! an idle keep-alive connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 << 20;

/// `http://HOST:PORT[/PREFIX]` split into a socket address, the Host header and a path
/// prefix (without a trailing `/`). HOST must be an IP address or `localhost`.
pub fn parse_base(url: &str) -> Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{url}: a port is required"))?;
    let host = if host.eq_ignore_ascii_case("localhost") {
        "127.0.0.1"
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("{url}: host must be an IP address"))?;
    let port: u16 = port.parse().with_context(|| format!("{url}: bad port"))?;
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        prefix.to_string(),
    ))
}

/// `s` percent-encoded for a path segment or query value: ASCII letters, digits and
/// `-_.~:` stay as they are.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One keep-alive connection to one server.
pub struct Client {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    timeout: Duration,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Client {
    pub fn new(addr: SocketAddr, host: String, timeout: Duration) -> Self {
        Self {
            addr,
            host,
            stream: None,
            buf: BytesMut::with_capacity(4096),
            timeout,
        }
    }

    /// `POST path` with extra headers (`Name: value` lines without CRLF) and a body.
    pub async fn post(&mut self, path: &str, headers: &[String], body: &[u8]) -> Result<Response> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let mut wire = req.into_bytes();
        wire.extend_from_slice(body);
        // A reused connection may have been closed by the server meanwhile: retry once on
        // a fresh one when nothing at all came back.
        let reused = self.stream.is_some();
        match tokio::time::timeout(self.timeout, self.exchange(&wire)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if reused && e.downcast_ref::<Stale>().is_some() => {
                self.stream = None;
                tokio::time::timeout(self.timeout, self.exchange(&wire))
                    .await
                    .map_err(|_| anyhow!("HTTP request timed out"))?
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                bail!("HTTP request timed out after {:?}", self.timeout)
            }
        }
    }

    async fn exchange(&mut self, wire: &[u8]) -> Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        if stream.write_all(wire).await.is_err() {
            return Err(Stale.into());
        }
        // Head.
        let (status, head_len, body_len, chunked, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf)? {
                httparse::Status::Complete(n) => {
                    let status = resp.code.unwrap_or(0);
                    let mut len = None;
                    let mut chunked = false;
                    let mut close = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (status, n, len, chunked, close);
                }
                httparse::Status::Partial => {
                    if self.buf.len() > MAX_HEAD {
                        bail!("response head too long");
                    }
                    self.buf.reserve(4096);
                    let n = stream.read_buf(&mut self.buf).await?;
                    if n == 0 {
                        if self.buf.is_empty() {
                            return Err(Stale.into());
                        }
                        bail!("connection closed in the response head");
                    }
                }
            }
        };
        self.buf.advance(head_len);
        let body = if chunked {
            let mut body = BytesMut::new();
            loop {
                // Chunk size line.
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_str = std::str::from_utf8(&self.buf[..line_end])?;
                let size =
                    usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                        .context("bad chunk size")?;
                self.buf.advance(line_end + 2);
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            let empty = i == 0;
                            self.buf.advance(i + 2);
                            if empty {
                                break;
                            }
                        } else {
                            read_more(stream, &mut self.buf).await?;
                        }
                    }
                    break;
                }
                if body.len() + size > MAX_BODY {
                    bail!("response body too large");
                }
                while self.buf.len() < size + 2 {
                    read_more(stream, &mut self.buf).await?;
                }
                body.extend_from_slice(&self.buf[..size]);
                self.buf.advance(size + 2);
            }
            body.freeze()
        } else {
            let len = body_len.unwrap_or(0);
            if len > MAX_BODY {
                bail!("response body too large");
            }
            while self.buf.len() < len {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf.split_to(len).freeze()
        };
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        bail!("connection closed in the response body");
    }
    Ok(())
}

/// The server closed a kept-alive connection before answering.
#[derive(Debug)]
struct Stale;

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before a response")
    }
}

impl std::error::Error for Stale {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        let (a, h, p) = parse_base("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            (a.to_string(), h.as_str(), p.as_str()),
            ("127.0.0.1:9090".into(), "127.0.0.1:9090", "")
        );
        let (_, _, p) = parse_base("http://localhost:6001/x/").unwrap();
        assert_eq!(p, "/x");
        assert!(parse_base("https://127.0.0.1:1").is_err());
        assert!(parse_base("http://127.0.0.1").is_err());
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("bench-b"), "bench-b");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}

//! A keep-alive HTTP/1.1 client for the gateways' management API (any method, a bearer
//! token), that says whether a failed request may have been processed: a sender that
//! retries must know whether the retry can make a duplicate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 16 << 20;

/// Why a request has no answer.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was sent: the node did not accept the connection.
    Refused,
    /// The request was sent (in part or whole) and no complete answer came: the node may
    /// or may not have processed it.
    Unanswered(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused => f.write_str("connection refused"),
            Failure::Unanswered(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// One answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// One keep-alive connection to one node's management listener.
pub struct Api {
    addr: SocketAddr,
    host: String,
    token: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    timeout: Duration,
}

impl Api {
    /// A client of the management API at `base` (`http://IP:PORT`), authenticating with
    /// the bearer `token`.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self> {
        let (addr, host, _) = switchboard_bench::http1::parse_base(base)?;
        Ok(Self {
            addr,
            host,
            token: token.to_owned(),
            stream: None,
            buf: BytesMut::with_capacity(4096),
            timeout,
        })
    }

    /// `METHOD path` with `body` (JSON unless empty).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, Failure> {
        if self.stream.is_none() {
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.stream = Some(s);
                    self.buf.clear();
                }
                _ => return Err(Failure::Refused),
            }
        }
        let mut wire = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n",
            self.host,
            self.token,
            body.len()
        );
        if !body.is_empty() && (body[0] == b'{' || body[0] == b'[') {
            wire.push_str("Content-Type: application/json\r\n");
        }
        wire.push_str("\r\n");
        let mut wire = wire.into_bytes();
        wire.extend_from_slice(body);
        match tokio::time::timeout(self.timeout, self.exchange(&wire)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.stream = None;
                Err(Failure::Unanswered(format!("{e:#}")))
            }
            Err(_) => {
                self.stream = None;
                Err(Failure::Unanswered(format!(
                    "timed out after {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn exchange(&mut self, wire: &[u8]) -> Result<Answer> {
        let stream = self.stream.as_mut().expect("connected by the caller");
        stream.write_all(wire).await?;
        let (status, head_len, len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf)? {
                httparse::Status::Complete(n) => {
                    let mut len = 0;
                    let mut close = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = switchboard_bench::parse_decimal(h.value.trim_ascii())
                                .and_then(|n| usize::try_from(n).ok())
                                .ok_or_else(|| anyhow!("bad content-length"))?;
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            bail!("chunked answers are not read here");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (resp.code.unwrap_or(0), n, len, close);
                }
                httparse::Status::Partial if self.buf.len() > MAX_HEAD => {
                    bail!("answer head too long")
                }
                httparse::Status::Partial => read_more(stream, &mut self.buf).await?,
            }
        };
        if len > MAX_BODY {
            bail!("answer body too large");
        }
        self.buf.advance(head_len);
        while self.buf.len() < len {
            read_more(stream, &mut self.buf).await?;
        }
        let body = self.buf.split_to(len).freeze();
        if close {
            self.stream = None;
        }
        Ok(Answer { status, body })
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        bail!("connection closed before a complete answer");
    }
    Ok(())
}

//! The benchmark's WebSocket client, on `switchboard-ws` (Role::Client) and tokio.
//!
//! An [`Endpoint`] is one loopback server: each [`Endpoint::connect`] binds the next of
//! several loopback source addresses (so one process can hold more connections than one
//! source address has ephemeral ports), sends the opening handshake, checks the 101, and
//! returns a [`Ws`]. A connection may offer permessage-deflate (RFC 7692) and the
//! `switchboard.v1` subprotocol (docs/protocol.md: the hello is read before a connection
//! counts as open; messages are numbered and acknowledged), and carry extra request
//! headers ([`RequestHeader`], e.g. `Origin` or `Authorization`). [`open_many`] opens many
//! connections with a bounded number of handshakes in flight.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use serde_json::Value;
use switchboard_ws::deflate::{DeflateConfig, DeflateParams};
use switchboard_ws::{close_code, handshake, Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::parse_decimal;

/// The `switchboard.v1` subprotocol name (docs/protocol.md).
const V1_PROTOCOL: &str = "switchboard.v1";
/// The client acknowledges the server's messages at least this often (as the server does).
const V1_ACK_EVERY: u64 = 32;
/// First byte of a sequenced binary message.
const V1_BINARY_TAG: u8 = 0x01;
/// Longest handshake response head accepted, bytes.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// `ws://HOST[:PORT][/PATH]` split into its parts (nothing resolved or checked yet).
pub struct WsUrl<'a> {
    /// `HOST[:PORT]` as written: the `Host` header.
    pub authority: &'a str,
    /// The host without the brackets of an IPv6 literal.
    pub host: &'a str,
    /// The port as written, when there is one.
    pub port: Option<&'a str>,
    /// The path and query, `/` when the URL has none.
    pub path: &'a str,
}

impl<'a> WsUrl<'a> {
    /// Splits a `ws://` URL; any other scheme is an error.
    pub fn split(url: &'a str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("only ws:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let end = v6
                    .find(']')
                    .ok_or_else(|| anyhow!("bad IPv6 host in {url}"))?;
                (&v6[..end], v6[end + 1..].strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        Ok(Self {
            authority,
            host,
            port,
            path,
        })
    }

    /// The host as an IP address (`localhost` is 127.0.0.1).
    pub fn ip(&self) -> std::result::Result<IpAddr, std::net::AddrParseError> {
        if self.host.eq_ignore_ascii_case("localhost") {
            Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            self.host.parse()
        }
    }
}

/// How the connections to an endpoint are opened, read and closed.
#[derive(Clone, Copy)]
pub struct ClientOptions {
    /// Largest frame and message accepted from the server.
    pub limits: Limits,
    /// Free space made in the read buffer before each socket read, bytes.
    pub read_reserve: usize,
    /// Bound on our close handshake, and on sending the answer to the server's close.
    pub close_timeout: Duration,
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`); when the
    /// server agrees, messages of 32 bytes or more are compressed at zlib level 1.
    pub deflate: bool,
    /// Offer `switchboard.v1`, require it, and read the hello.
    pub v1: bool,
}

/// Headers the client writes or checks itself: one given again would contradict it.
const CLIENT_HEADERS: [&str; 7] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

/// A request header added to every opening handshake, parsed from `Name: value`: a name
/// of token characters (RFC 9110) other than the headers the client writes itself, and a
/// value without control characters (tabs aside), so no argument can split the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    name: String,
    value: String,
}

impl FromStr for RequestHeader {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, value) = s
            .split_once(':')
            .ok_or_else(|| format!("header {s:?} is not `Name: value` (no colon)"))?;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!(
                "header name {name:?} is empty or has a character other than letters, digits and !#$%&'*+-.^_`|~"
            ));
        }
        if CLIENT_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(format!(
                "header {name} is written by the client itself and cannot be given"
            ));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "header {name} has a control character (CR, LF, NUL, ...) in its value"
            ));
        }
        Ok(Self {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for RequestHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// One loopback server and the source addresses to connect from.
pub struct Endpoint {
    /// Where the connections go.
    pub addr: SocketAddr,
    host: String,
    path: String,
    /// Source addresses, used in turn.
    pub sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    options: ClientOptions,
    /// Extra request header lines, each ending in CRLF.
    extra_headers: String,
}

impl Endpoint {
    /// An endpoint at `addr`, with `host` as the `Host` header and `path` as the request
    /// target. `sources` must not be empty.
    pub fn new(
        addr: SocketAddr,
        host: &str,
        path: &str,
        sources: Vec<IpAddr>,
        options: ClientOptions,
    ) -> Self {
        assert!(!sources.is_empty(), "an endpoint needs a source address");
        Self {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            sources,
            next_source: AtomicUsize::new(0),
            options,
            extra_headers: String::new(),
        }
    }

    /// The endpoint, sending `headers` in every opening handshake too.
    pub fn with_headers(mut self, headers: &[RequestHeader]) -> Self {
        for h in headers {
            self.extra_headers.push_str(&format!("{h}\r\n"));
        }
        self
    }

    /// The source addresses 127.0.0.1..=127.0.0.`count` (`count` clamped to 1..=254).
    pub fn loopback_sources(count: u8) -> Vec<IpAddr> {
        (1..=count.clamp(1, 254))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    }

    /// TCP connect from the next source address, then the opening handshake up to the 101
    /// (and, with `switchboard.v1`, the hello).
    pub async fn connect(&self) -> Result<Ws> {
        self.connect_opts(None).await
    }

    /// `connect`, giving up after `timeout` with "handshake timed out".
    pub async fn connect_timeout(&self, timeout: Duration) -> Result<Ws> {
        tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| anyhow!("handshake timed out"))?
    }

    /// `connect`, with the socket's receive buffer set to `rcvbuf` bytes when given (set
    /// before connecting, so the advertised window stays that small).
    pub async fn connect_opts(&self, rcvbuf: Option<u32>) -> Result<Ws> {
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        let src = self.sources[i % self.sources.len()];
        let socket = match src {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if src.is_ipv4() {
            // Pick the ephemeral port at connect time, per 4-tuple, not at bind time.
            let one: libc::c_int = 1;
            // SAFETY: a valid fd and a c_int option of the right size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size)?;
        }
        socket.bind(SocketAddr::new(src, 0))?;
        let mut stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let key = handshake::client_key();
        stream.write_all(self.request(&key).as_bytes()).await?;
        let expected = handshake::accept_key(key.as_bytes());
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("connection closed during the handshake");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf)? {
                httparse::Status::Complete(n) => {
                    let (deflate, v1) = self.check_response(&resp, &expected)?;
                    buf.advance(n);
                    let mut ws = Ws {
                        stream,
                        wire_in: buf.len() as u64,
                        wire_out: 0,
                        rbuf: buf,
                        wbuf: BytesMut::with_capacity(256),
                        decoder: Decoder::new(Role::Client, self.options.limits, deflate),
                        encoder: Encoder::new(Role::Client, deflate),
                        deflate: deflate.is_some(),
                        v1: None,
                        scratch: Vec::new(),
                        read_reserve: self.options.read_reserve,
                        close_timeout: self.options.close_timeout,
                    };
                    if v1 {
                        ws.read_hello().await?;
                    }
                    return Ok(ws);
                }
                httparse::Status::Partial if buf.len() < MAX_RESPONSE_HEAD => {}
                httparse::Status::Partial => bail!("handshake response head too long"),
            }
        }
    }

    /// The opening handshake request with client key `key`.
    fn request(&self, key: &str) -> String {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, key
        );
        if self.options.deflate {
            request.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
        }
        if self.options.v1 {
            request.push_str("Sec-WebSocket-Protocol: ");
            request.push_str(V1_PROTOCOL);
            request.push_str("\r\n");
        }
        request.push_str(&self.extra_headers);
        request.push_str("\r\n");
        request
    }

    /// Checks the handshake response; returns the deflate parameters agreed and whether
    /// `switchboard.v1` was selected.
    fn check_response(
        &self,
        resp: &httparse::Response<'_, '_>,
        expected_accept: &str,
    ) -> Result<(Option<DeflateParams>, bool)> {
        if resp.code != Some(101) {
            bail!("handshake answered {:?}, not 101", resp.code);
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if header("sec-websocket-accept") != Some(expected_accept.as_bytes()) {
            bail!("wrong or missing Sec-WebSocket-Accept");
        }
        let deflate = match header("sec-websocket-extensions") {
            Some(v) if self.options.deflate => Some(client_deflate_params(v)?),
            Some(v) => bail!(
                "extension {:?} selected but none offered",
                String::from_utf8_lossy(v)
            ),
            None => None,
        };
        let v1 = match header("sec-websocket-protocol") {
            Some(p) if self.options.v1 && p == V1_PROTOCOL.as_bytes() => true,
            None if self.options.v1 => {
                bail!("the server did not select {V1_PROTOCOL} (is [resume] enabled?)")
            }
            None => false,
            Some(p) => bail!(
                "subprotocol {:?} selected, not offered",
                String::from_utf8_lossy(p)
            ),
        };
        Ok((deflate, v1))
    }
}

/// Our side of the permessage-deflate the server answered with. `switchboard-ws` names
/// the parameters from the server's side (`server_*` is the compressor, the inflater
/// follows `client_no_context_takeover`), so a client swaps them: it compresses as the
/// `client_*` parameters say and inflates what the server compressed.
fn client_deflate_params(value: &[u8]) -> Result<DeflateParams> {
    let value = std::str::from_utf8(value).context("Sec-WebSocket-Extensions is not UTF-8")?;
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("permessage-deflate"))
        || value.contains(',')
    {
        bail!("unexpected Sec-WebSocket-Extensions: {value}");
    }
    let defaults = DeflateConfig::default();
    let mut params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        level: defaults.level,
        threshold: defaults.threshold,
    };
    for part in parts {
        let (name, arg) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        match (name, arg) {
            // The server resets its compressor: our inflater may too (shared per thread).
            ("server_no_context_takeover", None) => params.client_no_context_takeover = true,
            // We must reset ours after every message.
            ("client_no_context_takeover", None) => params.server_no_context_takeover = true,
            // Our 15-bit inflater reads any smaller window.
            ("server_max_window_bits", Some(_)) => {}
            ("client_max_window_bits", Some(bits)) => {
                params.server_max_window_bits = bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| (8..=15).contains(b))
                    .ok_or_else(|| anyhow!("bad client_max_window_bits in {value}"))?;
            }
            _ => bail!("unexpected permessage-deflate parameter {part:?} in {value}"),
        }
    }
    Ok(params)
}

/// A client's `switchboard.v1` numbers.
pub struct V1 {
    /// Sequence number of our last message.
    sent: u64,
    /// Sequence number of the server's last message.
    received: u64,
    /// What we last acknowledged.
    acked: u64,
    /// Ack frames from the server.
    pub acks_received: u64,
}

/// Why a connection stopped delivering messages (see [`Ws::next_data`]).
pub enum End {
    /// The server sent a close frame (code and reason); it has been answered.
    Closed(Option<(u16, Bytes)>),
    /// The server closed TCP without a close frame.
    Eof,
    /// A read, decode or write failed.
    Error(anyhow::Error),
}

impl End {
    /// The close frame's code and reason, the reason as text, for messages.
    pub fn close_text(c: Option<(u16, Bytes)>) -> Option<(u16, String)> {
        c.map(|(code, r)| (code, String::from_utf8_lossy(&r).into_owned()))
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(c) => write!(f, "closed by the server: {:?}", End::close_text(c.clone())),
            End::Eof => f.write_str("EOF"),
            End::Error(e) => write!(f, "{e:#}"),
        }
    }
}

/// One client connection.
pub struct Ws {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    /// Bytes read from the socket after the handshake: frames as on the wire.
    pub wire_in: u64,
    /// Bytes written to the socket after the handshake.
    pub wire_out: u64,
    /// permessage-deflate agreed.
    pub deflate: bool,
    /// `switchboard.v1` selected (and its hello read).
    pub v1: Option<V1>,
    /// Builds `switchboard.v1` frames without allocating per message.
    scratch: Vec<u8>,
    read_reserve: usize,
    close_timeout: Duration,
}

impl Ws {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wire_out += self.wbuf.len() as u64;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends one text or binary message as it is.
    pub async fn send(&mut self, text: bool, payload: &[u8]) -> std::io::Result<()> {
        self.encoder.message(text, payload, &mut self.wbuf);
        self.flush().await
    }

    /// Sends one application message: as it is, or on `switchboard.v1` numbered (`m<n>:`
    /// or the binary tag), after an ack of the server's messages when one is due.
    pub async fn send_data(&mut self, text: bool, payload: &[u8]) -> std::io::Result<()> {
        let Some(v1) = self.v1.as_mut() else {
            return self.send(text, payload).await;
        };
        use std::io::Write;
        if v1.received >= v1.acked + V1_ACK_EVERY {
            self.scratch.clear();
            let _ = write!(self.scratch, "a{}", v1.received);
            v1.acked = v1.received;
            self.encoder.message(true, &self.scratch, &mut self.wbuf);
        }
        v1.sent += 1;
        self.scratch.clear();
        if text {
            let _ = write!(self.scratch, "m{}:", v1.sent);
        } else {
            self.scratch.push(V1_BINARY_TAG);
            self.scratch.extend_from_slice(&v1.sent.to_be_bytes());
        }
        self.scratch.extend_from_slice(payload);
        self.encoder.message(text, &self.scratch, &mut self.wbuf);
        self.flush().await
    }

    /// The next text or binary message (`true`: text) as it came; pongs skipped, pings
    /// answered; an error on close or EOF.
    pub async fn next_message(&mut self) -> Result<(bool, Bytes)> {
        loop {
            match self.recv().await? {
                Some(Message::Text(b)) => return Ok((true, b)),
                Some(Message::Binary(b)) => return Ok((false, b)),
                Some(Message::Pong(_)) | Some(Message::Ping(_)) => {}
                Some(Message::Close(c)) => bail!("server closed: {c:?}"),
                None => bail!("server closed the TCP connection"),
            }
        }
    }

    /// The next application message's payload (`switchboard.v1`: its frame checked and
    /// stripped, acks and heartbeats counted and skipped); pongs skipped, pings answered.
    pub async fn recv_data(&mut self) -> Result<Bytes> {
        loop {
            let (text, data) = self.next_message().await?;
            let Some(v1) = self.v1.as_mut() else {
                return Ok(data);
            };
            let (seq, payload) = match (text, data.first()) {
                (true, Some(b'm')) => {
                    let colon = data
                        .iter()
                        .position(|&b| b == b':')
                        .ok_or_else(|| anyhow!("switchboard.v1: message frame without ':'"))?;
                    (parse_decimal(&data[1..colon]), data.slice(colon + 1..))
                }
                (true, Some(b'a')) => {
                    parse_decimal(&data[1..])
                        .ok_or_else(|| anyhow!("switchboard.v1: malformed ack"))?;
                    v1.acks_received += 1;
                    continue;
                }
                (true, Some(b'h')) if data.len() == 1 => continue,
                (false, Some(&V1_BINARY_TAG)) if data.len() >= 9 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&data[1..9]);
                    (Some(u64::from_be_bytes(n)), data.slice(9..))
                }
                _ => bail!(
                    "switchboard.v1: unexpected frame {:?}",
                    String::from_utf8_lossy(&data[..data.len().min(40)])
                ),
            };
            match seq {
                Some(n) if n == v1.received + 1 => v1.received = n,
                Some(n) => bail!(
                    "switchboard.v1: message {n} after {} (gap or repeat)",
                    v1.received
                ),
                None => bail!("switchboard.v1: malformed message number"),
            }
            return Ok(payload);
        }
    }

    /// Reads the `switchboard.v1` hello (`s{json}` with a session token), the first frame.
    async fn read_hello(&mut self) -> Result<()> {
        let b = match self.recv().await? {
            Some(Message::Text(b)) => b,
            other => bail!("expected the switchboard.v1 hello, got {other:?}"),
        };
        let hello: Value = match b.strip_prefix(b"s") {
            Some(json) => serde_json::from_slice(json).context("switchboard.v1 hello")?,
            None => bail!(
                "expected the switchboard.v1 hello, got {:?}",
                String::from_utf8_lossy(&b[..b.len().min(40)])
            ),
        };
        if !hello["session"].is_string() {
            bail!("switchboard.v1 hello without a session: {hello}");
        }
        self.v1 = Some(V1 {
            sent: 0,
            received: 0,
            acked: 0,
            acks_received: 0,
        });
        Ok(())
    }

    /// The next data, pong or close message; pings are answered here. `None`: EOF.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.decoder.decode(&mut self.rbuf)? {
                Some(Message::Ping(p)) => {
                    self.encoder.ping_pong(true, &p, &mut self.wbuf);
                    self.flush().await?;
                }
                Some(m) => return Ok(Some(m)),
                None => {
                    self.rbuf.reserve(self.read_reserve);
                    let n = self.stream.read_buf(&mut self.rbuf).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.wire_in += n as u64;
                }
            }
        }
    }

    /// The next text or binary message as it came (pings answered, pongs skipped), or why
    /// there will be none: a close from the server is answered with its code.
    pub async fn next_data(&mut self) -> std::result::Result<Bytes, End> {
        loop {
            match self.recv().await {
                Ok(Some(Message::Text(b))) | Ok(Some(Message::Binary(b))) => return Ok(b),
                Ok(Some(Message::Close(c))) => {
                    let code = c.as_ref().map_or(close_code::NORMAL, |(code, _)| *code);
                    self.answer_close(code).await;
                    return Err(End::Closed(c));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(End::Eof),
                Err(e) => return Err(End::Error(e)),
            }
        }
    }

    /// Close handshake from our side: send 1000, read until the peer's close, then wait
    /// for the peer to close TCP. `true` when all of that happened in time.
    pub async fn close(mut self) -> bool {
        let timeout = self.close_timeout;
        let fut = async {
            self.encoder.close(close_code::NORMAL, "", &mut self.wbuf);
            self.flush().await?;
            loop {
                match self.recv().await? {
                    Some(Message::Close(_)) => break,
                    Some(_) => {}
                    None => return Ok::<bool, anyhow::Error>(false),
                }
            }
            let mut scratch = [0u8; 256];
            while self.stream.read(&mut scratch).await? > 0 {}
            Ok(true)
        };
        matches!(tokio::time::timeout(timeout, fut).await, Ok(Ok(true)))
    }

    /// Answers a close the peer started.
    pub async fn answer_close(&mut self, code: u16) {
        self.encoder.close(code, "", &mut self.wbuf);
        let _ = tokio::time::timeout(self.close_timeout, self.flush()).await;
    }
}

/// What [`open_many`] did.
pub struct Opened {
    /// Connections handed to `on_open`.
    pub opened: usize,
    /// Attempts that failed.
    pub failed: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// Runs `open(i)` for every `i` in `0..n` with at most `concurrency` in flight, handing
/// each success to `on_open(i, conn)`. Stops early once more than `max_failures` failed.
pub async fn open_many<T, O, Fut, F>(
    n: usize,
    concurrency: usize,
    max_failures: usize,
    open: O,
    on_open: F,
) -> Opened
where
    T: Send + 'static,
    O: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
    F: Fn(usize, T) + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_err = Arc::new(parking_lot::Mutex::new(None::<String>));
    let open = Arc::new(open);
    let on_open = Arc::new(on_open);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, opened, failed, first_err, open, on_open) = (
            next.clone(),
            opened.clone(),
            failed.clone(),
            first_err.clone(),
            open.clone(),
            on_open.clone(),
        );
        workers.spawn(async move {
            loop {
                if failed.load(Ordering::Relaxed) > max_failures {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match open(i).await {
                    Ok(conn) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        on_open(i, conn);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_err.lock().get_or_insert(format!("{e:#}"));
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let first_error = first_err.lock().take();
    Opened {
        opened: opened.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WsUrl::split("ws://127.0.0.1:9000/chat?x=1").unwrap();
        assert_eq!(
            (u.authority, u.host, u.port, u.path),
            ("127.0.0.1:9000", "127.0.0.1", Some("9000"), "/chat?x=1")
        );
        let u = WsUrl::split("ws://[::1]:80").unwrap();
        assert_eq!((u.host, u.port, u.path), ("::1", Some("80"), "/"));
        let u = WsUrl::split("ws://localhost").unwrap();
        assert_eq!(u.port, None);
        assert_eq!(u.ip().unwrap(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(WsUrl::split("http://127.0.0.1:1/").is_err());
    }

    #[test]
    fn deflate_answer_is_swapped_to_our_side() {
        let p = client_deflate_params(
            b"permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        )
        .unwrap();
        assert!(p.client_no_context_takeover);
        assert!(!p.server_no_context_takeover);
        assert_eq!(p.server_max_window_bits, 10);
        assert!(client_deflate_params(b"x-webkit-deflate-frame").is_err());
    }

    #[test]
    fn request_headers_parse_and_refuse_hostile_input() {
        let h: RequestHeader = "Origin:  https://bench.example.com ".parse().unwrap();
        assert_eq!(h.to_string(), "Origin: https://bench.example.com");
        let h: RequestHeader = "X-Empty:".parse().unwrap();
        assert_eq!(h.to_string(), "X-Empty: ");
        // The value may hold colons; only the first one splits.
        let h: RequestHeader = "Authorization: Bearer a:b".parse().unwrap();
        assert_eq!(h.to_string(), "Authorization: Bearer a:b");
        for bad in [
            "Origin",
            "Origin https://x",
            ": value",
            "Bad Name: x",
            "X-Split: a\r\nHost: evil",
            "X-Lf: a\nb",
            "X-Cr: a\rb",
            "X-Nul: a\0b",
            "X\r\nInjected: x",
            "host: other",
            "Sec-WebSocket-Protocol: bearer.x",
        ] {
            let e = bad.parse::<RequestHeader>();
            assert!(e.is_err(), "{bad:?} accepted");
        }
        assert!("Authorization Bearer t"
            .parse::<RequestHeader>()
            .unwrap_err()
            .contains("no colon"));
        assert!("X-Split: a\r\nb"
            .parse::<RequestHeader>()
            .unwrap_err()
            .contains("control character"));
    }

    /// The headers reach the server: a real listener reads the request head of a real
    /// handshake (answered with 403, so the client reports the refusal).
    #[tokio::test]
    async fn extra_headers_are_sent_in_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before the end of its head");
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let options = ClientOptions {
            limits: Limits {
                max_frame_bytes: 1 << 16,
                max_message_bytes: 1 << 16,
            },
            read_reserve: 4096,
            close_timeout: Duration::from_secs(5),
            deflate: false,
            v1: false,
        };
        let headers: Vec<RequestHeader> = [
            "Origin: https://bench.example.com",
            "Authorization: Bearer t",
        ]
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
        let ep =
            Endpoint::new(addr, "127.0.0.1", "/", vec![addr.ip()], options).with_headers(&headers);
        let err = ep.connect().await.err().expect("a 403 is not a connection");
        assert!(format!("{err:#}").contains("403"), "{err:#}");
        let head = server.await.unwrap();
        assert!(
            head.contains("\r\nOrigin: https://bench.example.com\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nAuthorization: Bearer t\r\n"), "{head}");
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    }
}

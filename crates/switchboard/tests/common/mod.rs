//! Test harness: starts the real `switchboard` binary on 127.0.0.1:0 with a given config
//! and talks to it with real clients (a raw client built on switchboard-ws, so tests can
//! also send what well-behaved libraries refuse to).
#![allow(dead_code)]

pub mod function_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use switchboard_ws::deflate::DeflateParams;
use switchboard_ws::{handshake, Decoder, Encoder, Limits, Message, OpCode, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ECHO_ROUTES: &str = r#"
[functions.echo]
kind = "builtin"
name = "echo"

[routes."$default"]
function = "echo"
two_way = true
"#;

const LOOPBACK: &str = "127.0.0.1:0";

pub struct Gateway {
    pub child: Child,
    pub ws: SocketAddr,
    pub mgmt: SocketAddr,
    pub dir: PathBuf,
    stderr_thread: Option<std::thread::JoinHandle<String>>,
}

impl Gateway {
    /// Starts the gateway with `config` (TOML; listeners are forced to 127.0.0.1:0).
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_listening(config, LOOPBACK, LOOPBACK, env)
    }

    /// Starts the gateway with `config`, its listeners on `listen` and `management`
    /// (`[::]:0` takes IPv4 and IPv6 clients alike).
    pub fn start_listening(
        config: &str,
        listen: &str,
        management: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_path(&path, dir, (listen, management), env)
    }

    /// Starts the gateway with an existing config file (e.g. an example's).
    pub fn start_file(path: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_path(path, dir, (LOOPBACK, LOOPBACK), env)
    }

    fn start_path(
        path: &std::path::Path,
        dir: PathBuf,
        (listen, management): (&str, &str),
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["serve", "--config"])
            .arg(path)
            .args(["--listen", listen, "--management-listen", management])
            .env("SWITCHBOARD_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn switchboard");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr_thread = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "switchboard X listening on ws://ADDR/ (management http://ADDR/)"
        let ws = between(&line, "://", "/ (").parse().unwrap_or_else(|_| {
            panic!("gateway did not start: {line:?}");
        });
        let mgmt = between(&line, "management http://", "/)").parse().unwrap();
        Self {
            child,
            ws,
            mgmt,
            dir,
            stderr_thread: Some(stderr_thread),
        }
    }

    /// Sends SIGTERM and waits for the exit status; returns (status, stderr log).
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id() as i32;
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        let log = self.stderr_thread.take().unwrap().join().unwrap();
        (status, log)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.mgmt, "/metrics").await.1
    }

    /// The value of one metric line (exact name including labels), 0 if absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    /// Waits until a metric line has `value` (10 s max): counters that tasks record as
    /// they end trail what a client sees.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.metric(name).await;
            if got == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {got}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after {within:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let start = s.find(a).map(|i| i + a.len()).unwrap_or(0);
    let rest = &s[start..];
    &rest[..rest.find(b).unwrap_or(rest.len())]
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = raw_request(addr, raw.as_bytes()).await;
    parse_status(&resp)
}

/// A TCP connection to `addr` from the local address `from` (port chosen by the system),
/// so a test can be a client at 127.0.0.2 or ::1.
pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends raw bytes, returns everything the server answers until it closes (5 s max).
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_status(resp: &str) -> (u16, String) {
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A WebSocket client on our own codec.
pub struct Client<S = TcpStream> {
    pub io: S,
    pub response: String,
    dec: Decoder,
    pub enc: Encoder,
    buf: BytesMut,
}

pub struct Handshake<'a> {
    pub path: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Default for Handshake<'_> {
    fn default() -> Self {
        Self {
            path: "/",
            headers: Vec::new(),
        }
    }
}

/// Opens a handshake; returns the status line + headers, and the client if it was 101.
pub async fn connect_with(addr: SocketAddr, hs: Handshake<'_>) -> Result<Client, String> {
    let io = TcpStream::connect(addr).await.unwrap();
    connect_io(io, hs).await
}

pub async fn connect(addr: SocketAddr) -> Client {
    connect_with(addr, Handshake::default())
        .await
        .expect("handshake")
}

pub async fn connect_io<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    hs: Handshake<'_>,
) -> Result<Client<S>, String> {
    let key = handshake::client_key();
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        hs.path
    );
    for (k, v) in &hs.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), io.read_buf(&mut buf))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .unwrap();
        if n == 0 {
            return Err(String::from_utf8_lossy(&buf).into_owned());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let _ = buf.split_to(head_end);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(head);
    }
    let accept = header(&head, "sec-websocket-accept").unwrap_or_default();
    assert_eq!(accept, handshake::accept_key(key.as_bytes()));
    let deflate = header(&head, "sec-websocket-extensions").map(|e| DeflateParams {
        server_no_context_takeover: e.contains("server_no_context_takeover"),
        client_no_context_takeover: e.contains("client_no_context_takeover"),
        server_max_window_bits: 15,
        level: 6,
        threshold: 0,
    });
    let limits = Limits {
        max_frame_bytes: 1 << 26,
        max_message_bytes: 1 << 26,
    };
    Ok(Client {
        io,
        response: head,
        dec: Decoder::new(Role::Client, limits, deflate),
        enc: Encoder::new(Role::Client, deflate),
        buf,
    })
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub async fn send_text(&mut self, s: &str) {
        let mut out = BytesMut::new();
        self.enc.message(true, s.as_bytes(), &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        let mut out = BytesMut::new();
        self.enc.message(false, b, &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mut out = BytesMut::new();
        self.enc.frame(opcode, fin, false, payload, &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    pub async fn close(&mut self, code: u16) {
        let mut out = BytesMut::new();
        self.enc.close(code, "", &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    /// The next message, or `None` when the stream ended; panics after `secs`.
    pub async fn recv_within(&mut self, secs: u64) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(secs), self.recv())
            .await
            .expect("timed out waiting for a message")
    }

    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(m)) => return Some(m),
                Ok(None) => {}
                Err(e) => panic!("server sent bad frames: {e}"),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a close frame arrives (skipping other frames); returns its code.
    pub async fn expect_close(&mut self, secs: u64) -> Option<u16> {
        loop {
            match self.recv_within(secs).await {
                Some(Message::Close(c)) => return Some(c.map(|(c, _)| c).unwrap_or(1005)),
                Some(_) => continue,
                None => return None,
            }
        }
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 JWT of `claims`, signed with `secret`.
pub fn hs256_jwt(claims: serde_json::Value, secret: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

pub fn text(m: &Message) -> &str {
    match m {
        Message::Text(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

//! Minimal HTTP/1.1 over tokio for tests: a keep-alive client (management API calls in
//! a loop) and a function server that records the message bodies it is invoked with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Reads one request or response: (head, body), by Content-Length. `None` at EOF.
async fn read_one<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((head, body))
}

/// A keep-alive HTTP/1.1 client to one address (reconnects when the server closes).
pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: None,
            buf: Vec::new(),
        }
    }

    /// Sends a request; returns (status, body). Panics after 10 s.
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        for _ in 0..2 {
            if self.conn.is_none() {
                let s = TcpStream::connect(self.addr).await.expect("connect");
                s.set_nodelay(true).unwrap();
                self.conn = Some(s);
                self.buf.clear();
            }
            let s = self.conn.as_mut().unwrap();
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(body);
            if s.write_all(&req).await.is_err() {
                self.conn = None;
                continue;
            }
            let resp = tokio::time::timeout(Duration::from_secs(10), read_one(s, &mut self.buf))
                .await
                .expect("HTTP response within 10 s");
            let Some((head, body)) = resp else {
                self.conn = None;
                continue;
            };
            if head.to_ascii_lowercase().contains("connection: close") {
                self.conn = None;
            }
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return (status, String::from_utf8_lossy(&body).into_owned());
        }
        panic!("HTTP request to {} failed twice", self.addr);
    }
}

/// An HTTP function for the gateway (`kind = "http"`) that records the `body` of every
/// MESSAGE event and the connection id and reason of every DISCONNECT event, and answers
/// 200 with an empty body.
pub struct RecordingFunction {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<String>>>,
    pub disconnects: Arc<Mutex<Vec<(String, String)>>>,
    accept: JoinHandle<()>,
}

impl RecordingFunction {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let disconnects: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (b, d) = (bodies.clone(), disconnects.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (b, d) = (b.clone(), d.clone());
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let mut buf = Vec::new();
                    while let Some((_, body)) = read_one(&mut s, &mut buf).await {
                        let event: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let rc = &event["requestContext"];
                        match rc["eventType"].as_str() {
                            Some("MESSAGE") => b
                                .lock()
                                .push(event["body"].as_str().unwrap_or_default().to_owned()),
                            Some("DISCONNECT") => d.lock().push((
                                rc["connectionId"].as_str().unwrap_or_default().to_owned(),
                                rc["disconnectReason"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                            )),
                            _ => {}
                        }
                        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            bodies,
            disconnects,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for RecordingFunction {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

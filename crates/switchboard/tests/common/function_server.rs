//! A real HTTP function server for tests: it records every event it receives and answers
//! as the test's closure says (status, body, delay, or a reset mid-response).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the function answers one event.
#[derive(Clone, Debug)]
pub enum Reply {
    /// HTTP 200 with this body.
    Body(String),
    /// This HTTP status and body.
    Status(u16, String),
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// Send half a response, then reset the connection.
    ResetMidResponse,
    /// Answer with a body of this many bytes.
    Huge(usize),
}

pub type Behaviour = Arc<dyn Fn(&serde_json::Value) -> Reply + Send + Sync>;

pub struct FunctionServer {
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Signature headers seen, in order.
    pub signatures: Arc<Mutex<Vec<String>>>,
}

impl FunctionServer {
    pub async fn start(
        behaviour: impl Fn(&serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let signatures = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Behaviour = Arc::new(behaviour);
        let (ev, sig) = (events.clone(), signatures.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (ev, sig, behaviour) = (ev.clone(), sig.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // One request: head, then Content-Length bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
                        buf.drain(..head_end + len);
                        if let Some(s) = head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("x-switchboard-signature")
                                .then(|| v.trim().to_string())
                        }) {
                            sig.lock().push(s);
                        }
                        let event: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        ev.lock().push(event.clone());
                        let mut reply = behaviour(&event);
                        while let Reply::Delay(d, r) = reply {
                            tokio::time::sleep(d).await;
                            reply = *r;
                        }
                        let (status, body) = match reply {
                            Reply::Body(b) => (200, b),
                            Reply::Status(s, b) => (s, b),
                            Reply::Huge(n) => (200, "x".repeat(n)),
                            Reply::ResetMidResponse => {
                                let _ = sock
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"statusCode\":")
                                    .await;
                                #[allow(deprecated)] // a reset (RST) is the point here
                                let _ = sock.set_linger(Some(Duration::ZERO));
                                return;
                            }
                            Reply::Delay(..) => unreachable!(),
                        };
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            events,
            signatures,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn events_of(&self, event_type: &str) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .iter()
            .filter(|e| e["requestContext"]["eventType"] == event_type)
            .cloned()
            .collect()
    }

    /// Waits until `n` events of a type have arrived (5 s max).
    pub async fn wait_for(&self, event_type: &str, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let e = self.events_of(event_type);
            if e.len() >= n {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} {event_type} events, got {:?}",
            self.events_of(event_type)
        );
    }
}

/// A proxy-shaped answer.
pub fn proxy(status: u16, body: &str) -> Reply {
    Reply::Body(serde_json::json!({"statusCode": status, "body": body}).to_string())
}

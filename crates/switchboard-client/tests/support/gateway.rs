//! Starts the real `switchboard` binary (built beforehand with `cargo build -p
//! switchboard`) on 127.0.0.1:0 with a temporary config.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use switchboard_ws::handshake::client_key;
use switchboard_ws::{Decoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Gateway {
    child: Child,
    pub ws: SocketAddr,
    pub mgmt: SocketAddr,
    dir: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// The gateway binary: `$SWITCHBOARD_BIN`, else `<target dir>/debug/switchboard` of this
/// workspace (`$CARGO_TARGET_DIR` honoured). Panics with instructions when missing.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHBOARD_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SWITCHBOARD_BIN={} is not a file", p.display());
        return p;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .expect("the workspace root above this crate");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => root.join(t),
        None => root.join("target"),
    };
    let exe = format!("switchboard{}", std::env::consts::EXE_SUFFIX);
    let candidates = [
        target.join("debug").join(&exe),
        target.join("release").join(&exe),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the switchboard gateway binary is missing (looked at {}): build it first with \
                 `cargo build -p switchboard`, or point SWITCHBOARD_BIN at it",
                candidates[0].display()
            )
        })
}

impl Gateway {
    /// Starts the gateway with `config` (listeners forced to 127.0.0.1:0).
    pub fn start(config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-client-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--management-listen",
                "127.0.0.1:0",
            ])
            .env(
                "SWITCHBOARD_LOG",
                std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
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
        let parse = |a: &str, b: &str| -> Option<SocketAddr> {
            let start = line.find(a)? + a.len();
            let rest = &line[start..];
            rest[..rest.find(b)?].parse().ok()
        };
        let (Some(ws), Some(mgmt)) = (parse("ws://", "/ ("), parse("management http://", "/)"))
        else {
            let _ = child.kill();
            let log = stderr.join().unwrap_or_default();
            panic!("the gateway did not start: {line:?}\n{log}");
        };
        Self {
            child,
            ws,
            mgmt,
            dir,
            stderr: Some(stderr),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    /// Whether the gateway speaks `switchboard.v1`: a handshake offering it is answered
    /// with the subprotocol and an `s{` hello frame.
    pub async fn speaks_v1(&self) -> bool {
        probe_v1(self.ws).await
    }

    /// Stops the gateway; returns its log.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The gateway's side of a failure.
            if let Some(log) = self.stderr.take().and_then(|t| t.join().ok()) {
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                let path = std::env::temp_dir()
                    .join(format!("switchboard-client-gateway-{}.log", self.ws.port()));
                let _ = std::fs::write(&path, &log);
                eprintln!(
                    "--- gateway log (all of it in {}; last {} lines) ---\n{}",
                    path.display(),
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw handshake offering `switchboard.v1`; true when the first frame is a hello.
pub async fn probe_v1(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let key = client_key();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: switchboard.v1\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = BytesMut::new();
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 101") || !head.contains("switchboard.v1") {
                    return Some(false);
                }
                let _ = buf.split_to(i + 4);
                let mut dec = Decoder::new(Role::Client, Limits::default(), None);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(Message::Text(t))) => return Some(t.starts_with(b"s{")),
                        Ok(Some(_)) | Err(_) => return Some(false),
                        Ok(None) => {}
                    }
                    if s.read_buf(&mut buf).await.ok()? == 0 {
                        return Some(false);
                    }
                }
            }
            if s.read_buf(&mut buf).await.ok()? == 0 {
                return Some(false);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

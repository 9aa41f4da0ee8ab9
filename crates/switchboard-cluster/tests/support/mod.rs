//! Real engine processes for the backplane tests: a `redis-server` or `nats-server` on a
//! free loopback port with its own temporary directory, killed (and the directory
//! removed) on drop. `stop` kills the process the way a crash would; `start` brings it
//! back on the same port (and, for NATS, the same JetStream directory).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_core::config::{BackplaneKind, ClusterConfig};
use tokio::time::Instant;

/// One engine under test.
pub trait Engine: Sized + Send {
    /// Starts a fresh server.
    fn launch() -> Self;
    /// Kills it (SIGKILL) and waits for it to exit.
    fn stop(&mut self);
    /// Starts it again on the same port.
    fn start(&mut self);
    /// A config pointing at it.
    fn config(&self) -> ClusterConfig;
}

/// A server process on a fixed port.
struct Proc {
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, dir_name: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Self {
        let program = find(name);
        let dir = temp_dir(dir_name);
        // Another process may take the port between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut p = Self {
                program: program.clone(),
                args: args(port, &dir),
                port,
                dir: dir.clone(),
                child: None,
            };
            if p.try_start() {
                return p;
            }
        }
        panic!("{name} did not start");
    }

    fn try_start(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The old socket may linger a moment.
        while !self.try_start() {
            assert!(
                Instant::now() < deadline,
                "could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-deps.sh"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sb-cluster-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Timings short enough for tests: heartbeat 1 s, lost after 3 s, calls bounded by 500 ms.
fn config(kind: BackplaneKind, urls: Vec<String>) -> ClusterConfig {
    ClusterConfig {
        backplane: kind,
        urls,
        heartbeat_secs: 1,
        node_ttl_secs: 3,
        op_timeout_ms: 500,
        namespace: None,
    }
}

/// `redis-server` without persistence: a restart comes back empty.
pub struct Redis(Proc);

impl Engine for Redis {
    fn launch() -> Self {
        Self(Proc::new("redis-server", "redis", |port, dir| {
            [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.display().to_string(),
            ]
            .map(String::from)
            .to_vec()
        }))
    }
    fn stop(&mut self) {
        self.0.kill();
    }
    fn start(&mut self) {
        self.0.restart();
    }
    fn config(&self) -> ClusterConfig {
        config(
            BackplaneKind::Redis,
            vec![format!("redis://127.0.0.1:{}", self.0.port)],
        )
    }
}

/// `nats-server` with JetStream in its own store directory (kept across restarts).
pub struct Nats(Proc);

impl Engine for Nats {
    fn launch() -> Self {
        Self(Proc::new("nats-server", "nats", |port, dir| {
            [
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-js",
                "-sd",
                &dir.join("js").display().to_string(),
            ]
            .map(String::from)
            .to_vec()
        }))
    }
    fn stop(&mut self) {
        self.0.kill();
    }
    fn start(&mut self) {
        self.0.restart();
    }
    fn config(&self) -> ClusterConfig {
        config(
            BackplaneKind::Nats,
            vec![format!("nats://127.0.0.1:{}", self.0.port)],
        )
    }
}

/// A Redis Cluster of three masters (no replicas), made with `redis-cli --cluster create`.
pub struct RedisCluster(Vec<Proc>);

impl RedisCluster {
    /// Starts the three servers and joins them into a cluster.
    pub fn launch() -> Self {
        let shards: Vec<Proc> = (0..3)
            .map(|_| {
                Proc::new("redis-server", "redis-cluster", |port, dir| {
                    [
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &dir.join(format!("nodes-{port}.conf")).display().to_string(),
                        "--dir",
                        &dir.display().to_string(),
                    ]
                    .map(String::from)
                    .to_vec()
                })
            })
            .collect();
        let addrs: Vec<String> = shards
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        let out = Command::new(find("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every shard must agree the cluster is up before clients route by slot.
        let deadline = Instant::now() + Duration::from_secs(15);
        for p in &shards {
            loop {
                let info = Command::new(find("redis-cli"))
                    .args(["-p", &p.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster did not come up");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self(shards)
    }

    /// A config naming every shard (several URLs: Redis Cluster mode).
    pub fn config(&self) -> ClusterConfig {
        config(
            BackplaneKind::Redis,
            self.0
                .iter()
                .map(|p| format!("redis://127.0.0.1:{}", p.port))
                .collect(),
        )
    }
}

impl Engine for RedisCluster {
    fn launch() -> Self {
        RedisCluster::launch()
    }
    /// Kills every shard.
    fn stop(&mut self) {
        for p in &mut self.0 {
            p.kill();
        }
    }
    /// Restarts every shard; they find each other again through their nodes.conf.
    fn start(&mut self) {
        for p in &mut self.0 {
            p.restart();
        }
    }
    fn config(&self) -> ClusterConfig {
        RedisCluster::config(self)
    }
}

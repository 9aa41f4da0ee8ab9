//! `soak`: the function and the client side of `bench/soak.sh`, a bounded soak of
//! switchboard (one node, or a cluster sharing a Redis) under mixed traffic. Loopback
//! only; every wait is bounded.
//!
//! - `soak events`: the HTTP function the gateways invoke for `$connect`, `$disconnect`
//!   and the `rec` route; it tallies them ([`events`]) and answers `GET /stats`.
//! - `soak load`: for `--secs`, at once: connection churn and long-lived echo
//!   connections ([`plain`]), group fan-out members and their publisher, resumable
//!   clients (the Rust SDK) through a proxy that cuts their sockets ([`proxy`]) with
//!   numbered messages both ways ([`resumable`]), and a mix of management calls
//!   ([`mix`]). Then it stops the senders, waits for the numbered messages to drain,
//!   closes every connection, waits for the `$disconnect`s to settle, and prints one JSON
//!   line with every figure. Failures are split into those inside the kill window (read
//!   from `--kill-file`, which the script writes when it kills and restarts a node) and
//!   the rest, which are findings.

mod api;
mod events;
mod mix;
mod plain;
mod proxy;
mod resumable;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use api::Api;
use plain::{ChurnCounters, EchoCounters, FanCounters, Nodes, PublishCounters};
use resumable::{Resumable, ServerToClient};

const API_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand)]
enum Cmd {
    /// The HTTP function: tallies `$connect`, `$disconnect` and numbered messages.
    Events(EventsArgs),
    /// The traffic, then the report (one JSON line on stdout).
    Load(LoadArgs),
}

#[derive(Args)]
struct EventsArgs {
    /// Address to listen on (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Node ids, comma-separated (connection ids are attributed to them by their tag).
    #[arg(long)]
    nodes: String,
}

#[derive(Args)]
struct LoadArgs {
    /// A node: `NAME,WS_URL,MANAGEMENT_URL` (repeat for each).
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// Base URL of `soak events`.
    #[arg(long)]
    events_url: String,
    /// Bearer token of the management API.
    #[arg(long)]
    token: String,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 600.0)]
    secs: f64,
    /// Churn connections opened a second.
    #[arg(long, default_value_t = 20.0)]
    churn_per_sec: f64,
    /// Long-lived echo connections.
    #[arg(long, default_value_t = 40)]
    echo_conns: usize,
    /// Echo messages a second per echo connection.
    #[arg(long, default_value_t = 10.0)]
    echo_per_sec: f64,
    /// Fan-out group members.
    #[arg(long, default_value_t = 150)]
    fan_members: usize,
    /// Group messages a second.
    #[arg(long, default_value_t = 5.0)]
    fan_per_sec: f64,
    /// Resumable clients (through the cutting proxy).
    #[arg(long, default_value_t = 24)]
    resumable: usize,
    /// Numbered messages a second per resumable client, each way.
    #[arg(long, default_value_t = 8.0)]
    resumable_per_sec: f64,
    /// Shortest life of a proxied connection before its cut, ms.
    #[arg(long, default_value_t = 300)]
    cut_min_ms: u64,
    /// Longest life of a proxied connection before its cut, ms.
    #[arg(long, default_value_t = 5000)]
    cut_max_ms: u64,
    /// Management calls a second (the mix).
    #[arg(long, default_value_t = 5.0)]
    mix_per_sec: f64,
    /// Longest wait for the numbered messages to drain after the senders stop, s.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Longest wait for every `$connect` to have its `$disconnect` after the clients
    /// closed, s (parked sessions end with their resume window).
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// JSON `{"killed_ms": .., "ready_ms": ..}` the script writes around the kill.
    #[arg(long)]
    kill_file: Option<PathBuf>,
    /// Failures up to this long after the killed node was ready again count as around
    /// the kill, s.
    #[arg(long, default_value_t = 30)]
    kill_grace_secs: u64,
}

fn main() {
    let about = "Soak driver for bench/soak.sh: the events function and the mixed traffic";
    switchboard_bench::main(about, |cmd: Cmd, _nofile| async move {
        let r = match cmd {
            Cmd::Events(a) => {
                let nodes = a.nodes.split(',').map(str::to_owned).collect();
                events::serve(a.listen, nodes).await
            }
            Cmd::Load(a) => load(a).await.map(switchboard_bench::jsonl::emit),
        };
        match r {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("soak: {e:#}");
                1
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// shared bits

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A small xorshift64* generator: jitter, not cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Self((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.next_u64() % (span + 1))
    }
}

/// The end of the traffic, seen by every task.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the stop is set (at once if it is).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// A ticker at `per_sec` (never ticks for 0).
pub fn pacer(per_sec: f64) -> tokio::time::Interval {
    let period = if per_sec > 0.0 {
        Duration::from_secs_f64(1.0 / per_sec)
    } else {
        Duration::from_secs(1 << 30)
    };
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// A span of Unix time, ms.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Window {
    pub fn contains(&self, ms: u64) -> bool {
        (self.from_ms..=self.to_ms).contains(&ms)
    }
}

/// Times of failures (Unix ms), to split them by the kill window at the end.
#[derive(Default)]
pub struct Failures {
    times: Mutex<Vec<u64>>,
    count: AtomicU64,
}

impl Failures {
    /// Bound on the times kept (the count goes on).
    const KEPT: usize = 100_000;

    pub fn record(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut t = self.times.lock();
        if t.len() < Self::KEPT {
            t.push(now_ms());
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `{"total", "around_kill", "elsewhere", "elsewhere_first_ms"}`.
    pub fn split(&self, w: Option<Window>) -> Value {
        let t = self.times.lock();
        let around = t
            .iter()
            .filter(|&&x| w.is_some_and(|w| w.contains(x)))
            .count();
        let elsewhere: Vec<u64> = t
            .iter()
            .copied()
            .filter(|&x| !w.is_some_and(|w| w.contains(x)))
            .collect();
        json!({
            "total": self.count(),
            "around_kill": around,
            "elsewhere": elsewhere.len() as u64 + self.count().saturating_sub(t.len() as u64),
            "elsewhere_first_ms": elsewhere.iter().take(5).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// load

struct NodeSpec {
    name: String,
    ws: String,
    mgmt: String,
}

fn parse_nodes(specs: &[String]) -> Result<Vec<NodeSpec>> {
    specs
        .iter()
        .map(|s| {
            let mut p = s.split(',');
            match (p.next(), p.next(), p.next(), p.next()) {
                (Some(name), Some(ws), Some(mgmt), None) => Ok(NodeSpec {
                    name: name.to_owned(),
                    ws: ws.to_owned(),
                    mgmt: mgmt.to_owned(),
                }),
                _ => bail!("--node: expected NAME,WS_URL,MANAGEMENT_URL, got {s}"),
            }
        })
        .collect()
}

fn ws_addr(url: &str) -> Result<SocketAddr> {
    let u = switchboard_bench::ws_client::WsUrl::split(url)?;
    let ip = u.ip().map_err(|e| anyhow!("{url}: {e}"))?;
    if !ip.is_loopback() {
        bail!("{url}: loopback only");
    }
    let port = u.port.ok_or_else(|| anyhow!("{url}: no port"))?.parse()?;
    Ok(SocketAddr::new(ip, port))
}

fn apis(nodes: &[NodeSpec], token: &str) -> Result<Vec<Api>> {
    nodes
        .iter()
        .map(|n| Api::new(&n.mgmt, token, API_TIMEOUT))
        .collect()
}

/// `GET /stats` of the events function.
async fn fetch_stats(events: &mut Api) -> Result<Value> {
    let a = events
        .request("GET", "/stats", b"")
        .await
        .map_err(|e| anyhow!("events function: {e}"))?;
    serde_json::from_slice(&a.body).context("events function stats")
}

fn read_kill_window(path: &Option<PathBuf>, grace: Duration) -> Option<Window> {
    let v: Value = serde_json::from_slice(&std::fs::read(path.as_ref()?).ok()?).ok()?;
    let killed = v["killed_ms"].as_u64()?;
    let ready = v["ready_ms"]
        .as_u64()
        .unwrap_or(u64::MAX - grace.as_millis() as u64);
    Some(Window {
        from_ms: killed,
        to_ms: ready + grace.as_millis() as u64,
    })
}

fn load_u64(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

async fn load(a: LoadArgs) -> Result<Value> {
    let nodes = parse_nodes(&a.nodes)?;
    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let ws_urls: Vec<String> = nodes.iter().map(|n| n.ws.clone()).collect();
    let upstreams = ws_urls
        .iter()
        .map(|u| ws_addr(u))
        .collect::<Result<Vec<_>>>()?;
    let plain_nodes = Arc::new(Nodes::new(&ws_urls)?);
    let mut events = Api::new(&a.events_url, &a.token, API_TIMEOUT)?;
    let started = Instant::now();
    let started_ms = now_ms();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    let (proxy_stop_tx, proxy_stop_rx) = watch::channel(false);
    let proxy = proxy::Proxy::start(
        upstreams,
        (
            Duration::from_millis(a.cut_min_ms),
            Duration::from_millis(a.cut_max_ms),
        ),
        Stop(proxy_stop_rx),
    )
    .await?;
    let mut tasks = tokio::task::JoinSet::new();

    // Resumable clients, through the proxy; each posted to through node k % nodes.
    let mut clients = Vec::new();
    for k in 0..a.resumable {
        let r = Resumable::connect(k as u64, &proxy.url())
            .await
            .with_context(|| format!("resumable client {k}"))?;
        tokio::spawn(r.clone().read_events(stop.clone()));
        clients.push(r);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients.iter().any(|c| c.ledger.lock().current().is_none()) {
        if Instant::now() > deadline {
            bail!("a resumable client never saw its hello");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clients = Arc::new(clients);
    for (k, c) in clients.iter().enumerate() {
        tasks.spawn(c.clone().send_numbered(a.resumable_per_sec, stop.clone()));
        tasks.spawn(c.clone().post_numbered(
            apis(&nodes, &a.token)?,
            k,
            a.resumable_per_sec,
            stop.clone(),
        ));
    }

    let echo = Arc::new(EchoCounters::default());
    for i in 0..a.echo_conns {
        tasks.spawn(plain::echo(
            i,
            plain_nodes.clone(),
            a.echo_per_sec,
            echo.clone(),
            stop.clone(),
        ));
    }
    let fan = Arc::new(FanCounters::default());
    for i in 0..a.fan_members {
        tasks.spawn(plain::fan_member(
            i,
            plain_nodes.clone(),
            fan.clone(),
            stop.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (load_u64(&fan.members_up) as usize) < a.fan_members && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = Arc::new(PublishCounters::default());
    tasks.spawn(plain::publish(
        apis(&nodes, &a.token)?,
        a.fan_per_sec,
        publish.clone(),
        stop.clone(),
    ));
    let churn = Arc::new(ChurnCounters::default());
    tasks.spawn(plain::churn(
        plain_nodes.clone(),
        a.churn_per_sec,
        churn.clone(),
        stop.clone(),
    ));
    let mixc = Arc::new(mix::MixCounters::default());
    tasks.spawn(mix::run(
        apis(&nodes, &a.token)?,
        clients.clone(),
        a.mix_per_sec,
        mixc.clone(),
        stop.clone(),
    ));
    eprintln!(
        "READY {} resumable, {} echo, {}/{} fan-out members, churn {}/s, mix {}/s ({:.1}s)",
        clients.len(),
        a.echo_conns,
        load_u64(&fan.members_up),
        a.fan_members,
        a.churn_per_sec,
        a.mix_per_sec,
        started.elapsed().as_secs_f64()
    );

    // The run, with a progress line every 10 s.
    let traffic_start = Instant::now();
    let run_for = Duration::from_secs_f64(a.secs);
    while traffic_start.elapsed() < run_for {
        let left = run_for.saturating_sub(traffic_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        let (sent, got): (u64, u64) = clients.iter().fold((0, 0), |(s, g), c| {
            let r = c.ledger.lock().report(None);
            (s + r.sent, g + r.delivered)
        });
        eprintln!(
            "[{:4.0}s] churn {} opened / {} failed; echo {} ok; fan {} joins, {} published; resumable s->c {got}/{sent}, proxy cuts {}; mix failures {}",
            traffic_start.elapsed().as_secs_f64(),
            load_u64(&churn.opened),
            load_u64(&churn.failed),
            load_u64(&echo.echoed),
            load_u64(&fan.joins),
            load_u64(&publish.accepted),
            load_u64(&proxy.counters.cuts),
            mixc.failures.count(),
        );
    }
    let traffic_secs = traffic_start.elapsed().as_secs_f64();

    // Stop the senders; let the numbered messages drain (no more cuts).
    let _ = stop_tx.send(true);
    proxy.stop_cutting();
    eprintln!("stopped the senders; draining");
    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs(a.drain_secs);
    loop {
        let s2c_done = clients.iter().all(|c| c.ledger.lock().complete());
        let stats = fetch_stats(&mut events).await.unwrap_or(Value::Null);
        let c2s_done = clients.iter().all(|c| {
            stats["rec"][c.k.to_string()]["unique"]
                .as_u64()
                .unwrap_or(0)
                >= load_u64(&c.queued)
        });
        if (s2c_done && c2s_done) || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();

    // Close everything.
    for c in clients.iter() {
        c.client().close(1000);
    }
    let close_deadline = Instant::now() + Duration::from_secs(10);
    while clients.iter().any(|c| c.ledger.lock().closed().is_none())
        && Instant::now() < close_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_deadline = Instant::now() + Duration::from_secs(30);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(join_deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "warning: {} tasks still running; aborting them",
                    tasks.len()
                );
                tasks.abort_all();
                break;
            }
        }
    }
    let _ = proxy_stop_tx.send(true);

    // Every `$connect` should now get its `$disconnect` (parked sessions with their
    // window).
    eprintln!("closed every connection; waiting for the $disconnects to settle");
    let settle_start = Instant::now();
    let settle_deadline = settle_start + Duration::from_secs(a.settle_secs);
    let mut stats;
    loop {
        stats = fetch_stats(&mut events).await?;
        if stats["missing_disconnect"].as_u64() == Some(0) || Instant::now() > settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_secs = settle_start.elapsed().as_secs_f64();

    // The report.
    let window = read_kill_window(&a.kill_file, Duration::from_secs(a.kill_grace_secs));
    let mut s2c = ServerToClient::default();
    let mut per_client = Vec::new();
    let mut c2s = json!({
        "sent": 0, "delivered": 0, "lost": 0, "doubled_same_connection": 0,
        "doubled_other_connection": 0, "lost_examples": [],
    });
    let mut post_failures = Vec::new();
    for c in clients.iter() {
        let l = c.ledger.lock();
        let mut r = l.report(window);
        drop(l);
        for e in &mut r.closed_early_examples {
            *e = format!("{} at {e}", c.k);
        }
        s2c.add(&r);
        let rec = &stats["rec"][c.k.to_string()];
        let queued = load_u64(&c.queued);
        let unique = rec["unique"].as_u64().unwrap_or(0);
        let lost = queued.saturating_sub(unique);
        let add = |v: &mut Value, k: &str, x: u64| {
            v[k] = json!(v[k].as_u64().unwrap_or(0) + x);
        };
        add(&mut c2s, "sent", queued);
        add(&mut c2s, "delivered", unique.min(queued));
        add(&mut c2s, "lost", lost);
        add(
            &mut c2s,
            "doubled_same_connection",
            rec["doubled_same_connection"].as_u64().unwrap_or(0),
        );
        add(
            &mut c2s,
            "doubled_other_connection",
            rec["doubled_other_connection"].as_u64().unwrap_or(0),
        );
        if lost > 0 {
            if let Some(ex) = c2s["lost_examples"].as_array_mut() {
                if ex.len() < 10 {
                    ex.push(json!({"client": c.k, "queued": queued, "max": rec["max"], "gaps": rec["gaps"]}));
                }
            }
        }
        post_failures.push(c.posts.failures.split(window));
        per_client.push(json!({
            "client": c.k, "sent": r.sent, "delivered": r.delivered, "lost": r.lost,
            "doubled": r.doubled, "resumes": r.resumes,
            "fresh_sessions": r.fresh_sessions_around_kill + r.fresh_sessions_elsewhere,
            "posts": {
                "ok": load_u64(&c.posts.ok), "gone": load_u64(&c.posts.gone),
                "other_status": load_u64(&c.posts.other_status),
                "refused": load_u64(&c.posts.refused),
                "unanswered": load_u64(&c.posts.unanswered),
            },
            "c2s_sent": queued, "c2s_delivered": unique,
        }));
    }
    let sum_split = |v: &[Value]| {
        let f = |k: &str| v.iter().map(|x| x[k].as_u64().unwrap_or(0)).sum::<u64>();
        json!({"total": f("total"), "around_kill": f("around_kill"), "elsewhere": f("elsewhere"),
               "elsewhere_first_ms": v.iter().flat_map(|x| x["elsewhere_first_ms"].as_array().cloned().unwrap_or_default()).take(5).collect::<Vec<_>>()})
    };
    let lives = fan.lives.lock().clone();
    let fan_report = plain::fan_report(&lives, &publish.accepted_set.lock());

    Ok(json!({
        "kind": "soak",
        "nodes": node_names,
        "started_ms": started_ms,
        "traffic_secs": traffic_secs,
        "drain_secs": drain_secs,
        "settle_secs": settle_secs,
        "kill_window": window.map(|w| json!({"from_ms": w.from_ms, "to_ms": w.to_ms})),
        "resumable": {
            "clients": clients.len(),
            "per_sec_each_way": a.resumable_per_sec,
            "server_to_client": s2c,
            "client_to_server": c2s,
            "post_failures": sum_split(&post_failures),
            "proxy": {
                "accepted": load_u64(&proxy.counters.accepted),
                "cuts": load_u64(&proxy.counters.cuts),
                "upstream_failures": load_u64(&proxy.counters.upstream_failures),
                "refused": load_u64(&proxy.counters.refused),
            },
            "per_client": per_client,
        },
        "echo": {
            "connections": a.echo_conns,
            "connects": load_u64(&echo.connects),
            "sent": load_u64(&echo.sent),
            "echoed": load_u64(&echo.echoed),
            "mismatched": load_u64(&echo.mismatched),
            "timeouts": load_u64(&echo.timeouts),
            "dropped_in_flight": load_u64(&echo.dropped),
            "other_messages": load_u64(&echo.other),
            "failures": echo.failures.split(window),
        },
        "churn": {
            "attempts": load_u64(&churn.attempts),
            "opened": load_u64(&churn.opened),
            "failed": load_u64(&churn.failed),
            "echoed": load_u64(&churn.echoed),
            "echo_failed": load_u64(&churn.echo_failed),
            "closed_clean": load_u64(&churn.closed_clean),
            "close_unanswered": load_u64(&churn.close_unanswered),
            "dropped": load_u64(&churn.dropped),
            "skipped": load_u64(&churn.skipped),
            "failures": churn.failures.split(window),
        },
        "fanout": {
            "members": a.fan_members,
            "joins": load_u64(&fan.joins),
            "join_failures": load_u64(&fan.join_failures),
            "deleted_by_api": load_u64(&fan.deleted),
            "dropped": load_u64(&fan.dropped),
            "other_messages": load_u64(&fan.other),
            "published": load_u64(&publish.published),
            "accepted": load_u64(&publish.accepted),
            "publish_refused": load_u64(&publish.refused),
            "publish_unanswered": load_u64(&publish.unanswered),
            "publish_other_status": load_u64(&publish.other_status),
            "api_recipients": load_u64(&publish.recipients),
            "api_delivered": load_u64(&publish.delivered),
            "api_dropped": load_u64(&publish.dropped),
            "check": fan_report,
            "failures": fan.failures.split(window),
            "publish_failures": publish.failures.split(window),
        },
        "mix": {
            "ops": &*mixc.ops.lock(),
            "failures": mixc.failures.split(window),
            "examples": &*mixc.examples.lock(),
        },
        "events": stats,
    }))
}

//! The `switchboard` binary: command line, config loading, wiring, graceful shutdown.
#![forbid(unsafe_code)]

mod config_file;
mod dev;
mod preflight;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use switchboard_api::ApiState;
use switchboard_cluster::Backplane;
use switchboard_core::config::{Config, LogFormat};
use switchboard_edge::Edge;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A self-hostable serverless WebSocket gateway",
    long_about = "switchboard holds client WebSocket connections and turns their life into \
                  events ($connect, messages, $disconnect) that invoke stateless functions.\n\n\
                  Configuration is one TOML file (see docs/config.md). Any key can be \
                  overridden from the environment: SWITCHBOARD_<SECTION>__<KEY>, e.g. \
                  SWITCHBOARD_LIMITS__MAX_CONNECTIONS=20000."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The TOML configuration file.
        #[arg(short, long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// WebSocket listener address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Management listener address (overrides server.management_listen).
        #[arg(long)]
        management_listen: Option<SocketAddr>,
        /// Log format (overrides server.log_format).
        #[arg(long, value_parser = ["json", "pretty"])]
        log_format: Option<String>,
    },
    /// Local development: run DIR/switchboard.toml, print every connection and invocation
    /// readably, and restart a managed function's workers when its files change.
    Dev {
        /// The app directory holding switchboard.toml.
        dir: PathBuf,
        /// WebSocket listener address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Management listener address (overrides server.management_listen).
        #[arg(long)]
        management_listen: Option<SocketAddr>,
    },
    /// Validate a configuration file and exit (0: valid, 2: invalid).
    CheckConfig {
        /// The TOML configuration file.
        #[arg(short, long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
}

/// The region managed workers see (`AWS_REGION`); it is part of their function ARN,
/// which `check-config` checks too.
const WORKER_REGION: &str = "us-east-1";

fn load(path: &std::path::Path) -> Result<Config> {
    let overrides = config_file::overrides(std::env::vars());
    config_file::load(path, &overrides)
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(c) => {
                println!(
                    "{}: configuration OK ({} routes, {} functions)",
                    config.display(),
                    c.routes.len(),
                    c.functions.len()
                );
                for w in c.warnings() {
                    eprintln!("warning: {w}");
                }
                0
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Command::Dev {
            dir,
            listen,
            management_listen,
        } => {
            let config = dir.join("switchboard.toml");
            let mut cfg = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2);
                }
            };
            if let Some(a) = listen {
                cfg.server.listen = a;
            }
            if let Some(a) = management_listen {
                cfg.server.management_listen = a;
            }
            cfg.server.log_format = LogFormat::Pretty;
            if std::env::var_os("SWITCHBOARD_LOG").is_none() {
                cfg.server.log_level = "warn,switchboard=info,switchboard_edge=info,\
                                        switchboard_functions=info,switchboard::invoke=debug,\
                                        switchboard::dev=info"
                    .into();
            }
            init_logging(&cfg);
            run(cfg, Some(config))
        }
        Command::Serve {
            config,
            listen,
            management_listen,
            log_format,
        } => {
            let mut cfg = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2);
                }
            };
            if let Some(a) = listen {
                cfg.server.listen = a;
            }
            if let Some(a) = management_listen {
                cfg.server.management_listen = a;
            }
            if let Some(f) = log_format {
                cfg.server.log_format = if f == "json" {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                };
            }
            init_logging(&cfg);
            run(cfg, None)
        }
    };
    std::process::exit(code);
}

/// Runs the gateway to completion; the process exit code.
fn run(cfg: Config, dev: Option<PathBuf>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(cfg, dev)) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| EnvFilter::try_new(&cfg.server.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.server.log_format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Pretty => builder.with_ansi(false).init(),
    }
}

async fn serve(cfg: Config, dev: Option<PathBuf>) -> Result<()> {
    let node_id = cfg
        .server
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
    let api_identity = switchboard_core::event::ApiIdentity {
        stage: cfg.api.stage.clone(),
        domain_name: cfg.api.domain_name.clone(),
        api_id: cfg.api.api_id.clone(),
    };
    // Listeners first: managed functions need the management address.
    let ws_listener = switchboard_edge::bind(cfg.server.listen).await?;
    let ws_addr = ws_listener.local_addr()?;
    let mgmt_listener = tokio::net::TcpListener::bind(cfg.server.management_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.management_listen))?;
    let mgmt_addr = mgmt_listener.local_addr()?;

    // Managed workers get a credential of their own for the management API, valid for
    // this process's life only.
    let runtime = switchboard_functions::RuntimeContext {
        management_url: format!("http://{mgmt_addr}/{}", cfg.api.stage),
        access_key_id: format!("SBWORKER{:012X}", rand::random::<u64>() >> 16),
        secret_access_key: random_secret(),
        bearer_token: random_secret(),
        region: WORKER_REGION.into(),
    };
    let mut management = cfg.management.clone();
    management
        .credentials
        .push(switchboard_core::config::Credential {
            access_key_id: runtime.access_key_id.clone(),
            secret_access_key: runtime.secret_access_key.clone(),
        });
    management.bearer_tokens.push(runtime.bearer_token.clone());

    let functions = switchboard_functions::build(&cfg.functions, &api_identity, &runtime)
        .map_err(anyhow::Error::msg)?;
    let authorizer = match &cfg.authorizer {
        None => None,
        Some(a) => {
            let function = match a {
                switchboard_core::config::AuthorizerConfig::Request(r) => match functions.get(&r.function) {
                    Some(switchboard_functions::Function::Remote(inv)) => Some(inv.clone()),
                    Some(_) => anyhow::bail!(
                        "authorizer.function: {:?} is a builtin; a REQUEST authorizer needs an http or lambda function",
                        r.function
                    ),
                    None => anyhow::bail!("authorizer.function: no function named {:?}", r.function),
                },
                _ => None,
            };
            let authz = switchboard_auth::Authorizer::new(a, function)
                .await
                .map_err(|e| anyhow::anyhow!("authorizer: {e}"))?;
            Some(Arc::new(authz))
        }
    };
    // Bounded: a node that cannot keep up with commands from others drops them (counted
    // and logged by the backplane) rather than growing without limit. 65,536 commands
    // absorb bursts of many concurrent cross-node sends on a busy machine (8,192 lost
    // messages in the cluster bench); each holds at most one shared payload.
    let (inbox_tx, mut inbox) = tokio::sync::mpsc::channel(65_536);
    let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
    for w in cfg.warnings() {
        warn!("{w}");
    }
    // The namespace in force, derived from [api] unless set.
    let mut cluster = cfg.cluster.clone();
    cluster.namespace = Some(cfg.cluster.namespace_for(&cfg.api));
    let backplane: Arc<dyn Backplane> =
        switchboard_cluster::connect(&cluster, &node_id, inbox_tx, events_tx)
            .await
            .map_err(|e| anyhow::anyhow!("cluster backplane: {e}"))?;
    let edge = Edge::new(&cfg, &node_id, &functions, authorizer, backplane.clone())
        .context("building the edge")?;
    let backplane_up = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    backplane_up.set(1);
    let inbox_dropped = prometheus_client::metrics::counter::Counter::<u64>::default();
    {
        // The backplane counts what it drops (a single node drops nothing); the metric
        // follows it once a second.
        let (bp, counter) = (backplane.clone(), inbox_dropped.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let total = bp.dropped_commands();
                let seen = counter.get();
                if total > seen {
                    counter.inc_by(total - seen);
                }
            }
        });
    }
    {
        let inner = edge.inner().clone();
        tokio::spawn(async move {
            while let Some(cmd) = inbox.recv().await {
                inner.apply(cmd);
            }
        });
        let inner = edge.inner().clone();
        let up = backplane_up.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    switchboard_cluster::ClusterEvent::NodeLost {
                        node_id,
                        connections,
                        ..
                    } => {
                        info!(node = %node_id, connections = connections.len(), "node lost: cleaning up after it");
                        // A task of its own, which shutdown drains like a connection's.
                        let edge = inner.clone();
                        inner.spawn_drained(async move {
                            for snap in &connections {
                                edge.disconnect_lost(snap, &node_id).await;
                            }
                        });
                    }
                    switchboard_cluster::ClusterEvent::BackplaneUp => {
                        up.set(1);
                        info!("backplane up");
                    }
                    switchboard_cluster::ClusterEvent::BackplaneDown => {
                        up.set(0);
                        tracing::warn!(
                            "backplane down: cross-node operations fail fast until it returns"
                        );
                    }
                }
            }
        });
    }

    let mut registry = prometheus_client::registry::Registry::default();
    edge.inner().metrics.register(&mut registry);
    registry.register(
        "switchboard_backplane_up",
        "1 while the cluster backplane is usable (always 1 for local)",
        backplane_up,
    );
    registry.register(
        "switchboard_backplane_inbox_dropped",
        "Commands from other nodes dropped because this node's inbox was full",
        inbox_dropped,
    );
    let mgmt_metrics = switchboard_api::ManagementMetrics::default();
    mgmt_metrics.register(&mut registry);
    let api = Arc::new(ApiState {
        registry,
        accepting: true.into(),
        backplane,
    });

    let scheme = if cfg.tls.is_some() { "wss" } else { "ws" };
    info!(node = %node_id, ws = %ws_addr, management = %mgmt_addr, "switchboard ready");
    println!(
        "switchboard {} listening on {scheme}://{ws_addr}/ (management http://{mgmt_addr}/)",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(config_path) = dev {
        if cfg.static_files.is_some() {
            let http = if cfg.tls.is_some() { "https" } else { "http" };
            println!("open {http}://{ws_addr}/ in a browser");
        }
        tokio::spawn(dev::watch(config_path, functions.clone()));
    }

    let (mgmt_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mgmt = {
        let connections = Arc::new(switchboard_api::connections::ConnectionsApi {
            edge: edge.inner().clone(),
            auth: management,
            stage: cfg.api.stage.clone(),
            max_message_bytes: cfg.limits.max_message_bytes,
            metrics: mgmt_metrics.clone(),
        });
        let router = switchboard_api::router(api.clone(), connections);
        let limits = switchboard_api::HeadLimits::from(&cfg.management);
        tokio::spawn(switchboard_api::serve(
            mgmt_listener,
            router,
            limits,
            switchboard_api::PeerRules::from(&cfg.management),
            mgmt_metrics,
            async move {
                let _ = stopped.await;
            },
        ))
    };
    let edge_task = {
        let edge = edge.clone();
        tokio::spawn(async move { edge.serve(ws_listener).await })
    };

    shutdown_signal().await;
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    info!(
        grace_secs = grace.as_secs(),
        "shutting down: closing connections with 1001, in-flight invocations get the grace"
    );
    api.accepting.store(false, Ordering::Release);
    // The management API stays up meanwhile: functions finishing their work may still
    // call it. Managed workers live until `functions` is dropped after the drain.
    edge.shutdown(grace);
    let _ = edge_task.await;
    let finished = edge.drained().await;
    let abandoned = edge.abandoned();
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            grace_secs = grace.as_secs(),
            "shutdown grace over: abandoned in-flight invocations (debug lines name each)"
        );
    }
    if finished {
        info!("all connections closed");
    } else {
        info!(
            remaining = edge.inner().connections_held(),
            "grace period over; exiting with connections still open"
        );
    }
    let _ = mgmt_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), mgmt).await;
    Ok(())
}

/// 32 random bytes as hex.
fn random_secret() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

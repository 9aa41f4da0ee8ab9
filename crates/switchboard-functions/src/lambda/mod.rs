//! The Lambda function kind: switchboard runs the function's handler itself, in a pool of
//! worker processes that speak the AWS Lambda Runtime API, so unmodified handlers (and
//! AWS's own runtime clients, such as `python -m awslambdaric app.handler`) work locally.
//!
//! # Model
//!
//! Each worker is one process with **its own runtime API listener** on `127.0.0.1:0`
//! (its `AWS_LAMBDA_RUNTIME_API`), as each AWS sandbox has its own API: the connection a
//! request arrives on says which worker sent it, so no request has to be matched to a
//! process and a worker can only answer the invocation it was given. A worker runs one
//! invocation at a time: its `next` long poll gets one, its `response` or `error` post
//! ends it. See `api` for the endpoints.
//!
//! The pool (`pool`, decisions only) starts workers on demand: an invocation goes to
//! the most recently idle worker if one is polling; otherwise it queues, and a worker is
//! started for it if fewer than `max_concurrency` exist and fewer are already starting
//! than invocations wait. `min_warm` workers are kept running; a worker idle for
//! `idle_secs` stops (down to `min_warm`). [`LambdaInvoker::restart_workers`] replaces
//! every worker gracefully, for `switchboard dev` after a code change.
//!
//! # Bounds
//!
//! - **Queue**: invocations waiting for a worker beyond those a starting worker will take
//!   are at most `max_queue`; past it, [`InvokeError::Throttled`] at once.
//! - **Time**: two phases, each bounded by `timeout_ms`. Waiting for a worker (queue and
//!   cold start) ends in [`InvokeError::Timeout`] after `timeout_ms` from the call. Once
//!   a worker takes the event, the handler has the full `timeout_ms` as on AWS (which
//!   counts from the handler's start; `Lambda-Runtime-Deadline-Ms` says the same); past
//!   it the worker's process group is SIGKILLed, the caller gets `Timeout`, and a new
//!   worker is started when needed. So `invoke` completes within `2 × timeout_ms`.
//! - **Init**: a worker must poll `next` within `max(10 s, timeout_ms)` of starting (AWS
//!   allows 10 s) or it is killed as an init failure.
//! - **Payload**: responses and error reports over 6 MiB are refused with 413 and fail the
//!   invocation.
//!
//! # Failures
//!
//! - The handler raised (`/error`): [`InvokeError::Failed`]`("ErrorType: message")`.
//! - The process exited or was killed mid-invocation: `Failed("worker crashed")`.
//! - Init failed (`/init/error`, an exit before the first `next`, a command that cannot
//!   start): logged with the error text; waiting invocations fail with
//!   `Failed("init error: ...")` unless a ready worker remains; new workers are started
//!   only after a backoff of 1 s, doubling to 30 s, reset by a successful init or a
//!   restart. While backing off with no worker alive, invocations fail at once with the
//!   same message rather than wait for their timeout.
//!
//! # Processes
//!
//! Started with `cfg.command` (or `python3 runtimes/python/bootstrap.py` /
//! `node runtimes/node/bootstrap.mjs` for `runtime`; see `command`) in `cfg.dir`, in
//! their own process group, with `kill_on_drop`, and the environment a handler expects
//! (`_HANDLER`, `LAMBDA_TASK_ROOT`, `AWS_LAMBDA_*`, `AWS_REGION`, credentials and
//! endpoint of the gateway's management API, `SWITCHBOARD_MANAGEMENT_URL`,
//! `SWITCHBOARD_TOKEN`, then `cfg.env`). Their stdout and stderr are logged line by line
//! (info and warn) with the fields `function` and `request_id`; lifecycle events
//! (`worker started`, `worker ready`, `worker init failed`, `worker stopped`, ...) carry
//! `function`, `worker` and `pid`.
//!
//! The runtime API trusts whatever connects to a worker's loopback port, as the worker
//! does; it is not reachable from other hosts.

mod api;
mod command;
mod pool;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper::header::HeaderValue;
use parking_lot::Mutex;
use switchboard_core::config::LambdaFunctionConfig;
use switchboard_core::event::{ApiIdentity, Invocation};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;

pub use api::MAX_PAYLOAD_BYTES;
pub use command::RUNTIMES_DIR_ENV;
pub use pool::LambdaStats;

use self::api::RequestIds;
use self::command::Launch;
use self::pool::{Admit, Job, Limits, Spawn, State};
use crate::http::parse_proxy_response;
use crate::{InvokeError, InvokeFuture, Invoker, RuntimeContext, SetupError};

/// AWS's limit on a sandbox's init phase; the floor of ours.
const MIN_INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause of the idle reaper; shorter for short `idle_secs`.
const MAX_UPKEEP_PERIOD: Duration = Duration::from_secs(1);
const MIN_UPKEEP_PERIOD: Duration = Duration::from_millis(100);

/// Runs a function in managed worker processes (see the module docs). Dropping it stops
/// every worker.
pub struct LambdaInvoker {
    pool: Arc<Pool>,
}

/// A handle on a running pool for `switchboard dev`: restart its workers, read its
/// counts. Does not keep the workers alive: once the [`LambdaInvoker`] is dropped, the
/// handle's calls do nothing.
#[derive(Clone)]
pub struct LambdaHandle {
    pool: Arc<Pool>,
}

/// What every worker of a function shares.
pub(crate) struct Pool {
    launch: Launch,
    api: ApiIdentity,
    function_arn: HeaderValue,
    timeout: Duration,
    init_timeout: Duration,
    request_ids: RequestIds,
    state: Mutex<State>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for LambdaInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaInvoker")
            .field("function", &self.pool.launch.function())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LambdaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaHandle")
            .field("function", &self.pool.launch.function())
            .finish_non_exhaustive()
    }
}

impl LambdaInvoker {
    /// The checks [`LambdaInvoker::start`] makes, without starting anything: for
    /// `switchboard check-config`. `region` is the one workers will see. The error names
    /// the offending key relative to the function's table.
    pub fn check(name: &str, cfg: &LambdaFunctionConfig, region: &str) -> Result<(), SetupError> {
        if cfg.timeout_ms == 0 {
            return Err(SetupError::invalid("timeout_ms", "must be greater than 0"));
        }
        if cfg.max_concurrency == 0 {
            return Err(SetupError::invalid("max_concurrency", "must be at least 1"));
        }
        if cfg.min_warm > cfg.max_concurrency {
            return Err(SetupError::invalid(
                "min_warm",
                "must not exceed max_concurrency",
            ));
        }
        function_arn(name, region)?;
        Launch::check(cfg)
    }

    /// Validates the configuration and starts the pool (and its `min_warm` workers).
    /// Must be called inside a tokio runtime, whose tasks then run the pool. The error
    /// names the offending key relative to the function's table.
    pub fn start(
        name: &str,
        cfg: &LambdaFunctionConfig,
        api: ApiIdentity,
        rt: &RuntimeContext,
    ) -> Result<Self, SetupError> {
        Self::check(name, cfg, &rt.region)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
        let launch = Launch::new(name, cfg, rt)?;
        let function_arn = function_arn(name, &rt.region)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let idle = Duration::from_secs(cfg.idle_secs);
        let pool = Arc::new(Pool {
            launch,
            api,
            function_arn,
            timeout,
            init_timeout: timeout.max(MIN_INIT_TIMEOUT),
            request_ids: RequestIds::new(),
            state: Mutex::new(State::new(Limits {
                max_concurrency: cfg.max_concurrency,
                min_warm: cfg.min_warm,
                idle,
                max_queue: cfg.max_queue,
            })),
            runtime,
        });
        let warm = pool.state.lock().reap(Instant::now());
        pool.launch_all(warm);
        let period = (idle / 4).clamp(MIN_UPKEEP_PERIOD, MAX_UPKEEP_PERIOD);
        pool.runtime.spawn(upkeep(Arc::downgrade(&pool), period));
        Ok(Self { pool })
    }

    /// Replaces every worker gracefully: idle and starting workers stop now, busy ones
    /// once their invocation ends; new invocations get fresh workers (which load the
    /// handler's code anew). Also ends an init-failure backoff.
    pub fn restart_workers(&self) {
        self.pool.restart_workers();
    }

    /// Current counts.
    pub fn stats(&self) -> LambdaStats {
        self.pool.state.lock().stats()
    }

    /// A handle for restarting and observing the pool from elsewhere.
    pub fn handle(&self) -> LambdaHandle {
        LambdaHandle {
            pool: Arc::clone(&self.pool),
        }
    }
}

/// The function's ARN, as the `Lambda-Runtime-Invoked-Function-Arn` header.
fn function_arn(name: &str, region: &str) -> Result<HeaderValue, SetupError> {
    HeaderValue::from_str(&format!(
        "arn:aws:lambda:{region}:000000000000:function:{name}"
    ))
    .map_err(|_| SetupError::NameNotInHeader)
}

impl LambdaHandle {
    /// See [`LambdaInvoker::restart_workers`].
    pub fn restart_workers(&self) {
        self.pool.restart_workers();
    }

    /// See [`LambdaInvoker::stats`].
    pub fn stats(&self) -> LambdaStats {
        self.pool.state.lock().stats()
    }
}

impl Drop for LambdaInvoker {
    fn drop(&mut self) {
        self.pool.state.lock().shutdown();
    }
}

impl Pool {
    fn launch(self: &Arc<Self>, spawn: Spawn) {
        self.runtime.spawn(worker::run(Arc::clone(self), spawn));
    }

    fn launch_all(self: &Arc<Self>, spawns: Vec<Spawn>) {
        for spawn in spawns {
            self.launch(spawn);
        }
    }

    fn restart_workers(self: &Arc<Self>) {
        let spawns = {
            let mut state = self.state.lock();
            if state.is_closed() {
                return;
            }
            state.restart(Instant::now())
        };
        info!(function = self.launch.function(), "restarting workers");
        self.launch_all(spawns);
    }
}

/// Stops idle workers and starts owed ones, until the pool is shut down.
async fn upkeep(pool: Weak<Pool>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let spawns = {
            let mut state = pool.state.lock();
            if state.is_closed() {
                return;
            }
            state.reap(Instant::now())
        };
        pool.launch_all(spawns);
    }
}

impl Invoker for LambdaInvoker {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        let (started, started_rx) = oneshot::channel();
        let (result, result_rx) = oneshot::channel();
        let job = Job {
            invocation,
            started,
            result,
        };
        let now = Instant::now();
        let admit = self.pool.state.lock().admit(job, now);
        match admit {
            Admit::Refused(error) => return Box::pin(std::future::ready(Err(error))),
            Admit::Queued(Some(spawn)) => self.pool.launch(spawn),
            Admit::Queued(None) | Admit::Dispatched => {}
        }
        let timeout = self.pool.timeout;
        Box::pin(async move {
            // Waiting for a worker. An error here means the job ended before it started
            // (init failure, shutdown): the result channel says why.
            if tokio::time::timeout_at(now + timeout, started_rx)
                .await
                .is_err()
            {
                return Err(InvokeError::Timeout);
            }
            // Running. The worker's supervisor kills it at its own deadline, set when it
            // took the event, a moment before this one.
            match tokio::time::timeout(timeout, result_rx).await {
                Ok(Ok(Ok(body))) => parse_proxy_response(body),
                Ok(Ok(Err(error))) => Err(error),
                Ok(Err(_)) => Err(InvokeError::Failed("worker crashed".into())),
                Err(_elapsed) => Err(InvokeError::Timeout),
            }
        })
    }

    /// `switchboard dev` after a code change: [`LambdaInvoker::restart_workers`].
    fn reload(&self) {
        self.restart_workers();
    }

    /// The function's directory (`dir`, absolute), where its code lives.
    fn watched_dir(&self) -> Option<PathBuf> {
        Some(self.pool.launch.dir().to_path_buf())
    }
}

//! One worker: its process, its runtime API listener, and the supervisor task that ends
//! it. The supervisor is the only place a worker's process is killed or reaped, and the
//! only place its exit is reported to the pool, so every way a worker can end (exit,
//! crash, timeout, stop, init failure) is handled once, here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pool::{Exit, Outcome, Spawn, WorkerId};
use super::Pool;
use crate::InvokeError;

/// How long a worker that reported an init error may take to exit by itself.
const INIT_ERROR_EXIT_GRACE: Duration = Duration::from_secs(2);
/// Longest log line forwarded as one event; longer lines are split.
const MAX_LOG_LINE: usize = 16 * 1024;
/// How much of the last stderr line an init failure message quotes.
const STDERR_HINT_CHARS: usize = 240;
/// How long an exited worker's stderr is given to drain before its init failure is
/// reported, so the message can quote the last line it printed.
const STDERR_DRAIN: Duration = Duration::from_millis(300);

/// The invocation a worker is running.
pub(crate) struct InFlight {
    pub request_id: String,
    pub deadline: Instant,
    pub result: oneshot::Sender<Outcome>,
}

enum Phase {
    /// Spawned; has not polled `next` yet.
    Starting {
        deadline: Instant,
    },
    /// Polling or about to poll `next`. Keeps the id of the invocation it ran last: its
    /// output may still be on the way to the log.
    Ready {
        last: Option<String>,
    },
    Busy(InFlight),
    /// Posted to `/init/error`; should exit by itself before `deadline`.
    InitFailed {
        deadline: Instant,
        message: Arc<str>,
    },
}

/// How the supervisor saw the worker end.
enum End {
    Exited(std::process::ExitStatus),
    /// Stopped by the pool (idle, restart, shutdown) or by the runtime API (told to stop).
    Stopped,
    TimedOut,
    InitTimedOut,
    /// Reported an init error and did not exit in time.
    InitErrorLingered,
    CouldNotStart(String),
}

/// A worker as its runtime API and its supervisor share it.
pub(crate) struct Worker {
    pub pool: Arc<Pool>,
    pub id: WorkerId,
    /// Cancelled when the worker is to stop, and once it has stopped (ending its API
    /// connections).
    pub token: CancellationToken,
    phase: Mutex<Phase>,
    /// Tells the supervisor the phase changed (a new deadline).
    wake: Notify,
    spawned_at: Instant,
    pid: AtomicU32,
    last_stderr: Mutex<String>,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// The request id of the running (or last) invocation, for log lines.
    fn request_id(&self) -> Option<String> {
        match &*self.phase.lock() {
            Phase::Busy(f) => Some(f.request_id.clone()),
            Phase::Ready { last } => last.clone(),
            _ => None,
        }
    }

    /// Its first `next`: init succeeded.
    pub fn became_ready(&self) {
        {
            let mut phase = self.phase.lock();
            if matches!(*phase, Phase::Starting { .. }) {
                *phase = Phase::Ready { last: None };
            }
        }
        self.wake.notify_one();
        info!(
            function = self.pool.launch.function(),
            worker = self.id,
            pid = self.pid(),
            init_ms = self.spawned_at.elapsed().as_millis() as u64,
            "worker ready"
        );
    }

    /// Hands an invocation to the worker; the supervisor enforces its deadline.
    pub fn begin(&self, flight: InFlight) {
        let previous = std::mem::replace(&mut *self.phase.lock(), Phase::Busy(flight));
        if let Phase::Busy(stale) = previous {
            // The runtime polled again without answering the invocation it had.
            let _ = stale.result.send(Err(InvokeError::Failed(
                "runtime asked for the next event without answering the current one".into(),
            )));
        }
        self.wake.notify_one();
    }

    /// Whether `request_id` is the invocation this worker runs.
    pub fn is_current(&self, request_id: &str) -> bool {
        matches!(&*self.phase.lock(), Phase::Busy(f) if f.request_id == request_id)
    }

    /// Ends the running invocation if it is `request_id`, returning its channel.
    pub fn finish(&self, request_id: &str) -> Option<oneshot::Sender<Outcome>> {
        let mut phase = self.phase.lock();
        match &*phase {
            Phase::Busy(f) if f.request_id == request_id => {}
            _ => return None,
        }
        match std::mem::replace(&mut *phase, Phase::Ready { last: None }) {
            Phase::Busy(f) => {
                *phase = Phase::Ready {
                    last: Some(f.request_id),
                };
                Some(f.result)
            }
            _ => None,
        }
    }

    /// The runtime posted to `/init/error`: it is expected to exit now.
    pub fn init_failed(&self, message: Arc<str>) {
        warn!(
            function = self.pool.launch.function(),
            worker = self.id,
            pid = self.pid(),
            error = &*message,
            "worker init error"
        );
        *self.phase.lock() = Phase::InitFailed {
            deadline: Instant::now() + INIT_ERROR_EXIT_GRACE,
            message,
        };
        self.wake.notify_one();
    }

    fn is_starting(&self) -> bool {
        matches!(*self.phase.lock(), Phase::Starting { .. })
    }

    fn deadline(&self) -> Option<Instant> {
        match &*self.phase.lock() {
            Phase::Starting { deadline } | Phase::InitFailed { deadline, .. } => Some(*deadline),
            Phase::Busy(f) => Some(f.deadline),
            Phase::Ready { .. } => None,
        }
    }

    /// What ends the worker if a deadline has passed.
    fn expired(&self, now: Instant) -> Option<End> {
        match &*self.phase.lock() {
            Phase::Busy(f) if f.deadline <= now => Some(End::TimedOut),
            Phase::Starting { deadline } if *deadline <= now => Some(End::InitTimedOut),
            Phase::InitFailed { deadline, .. } if *deadline <= now => Some(End::InitErrorLingered),
            _ => None,
        }
    }
}

/// Starts a worker and supervises it until it ends; then reports to the pool and starts
/// whatever the pool owes.
pub(crate) async fn run(pool: Arc<Pool>, spawn: Spawn) {
    let worker = Arc::new(Worker {
        pool: Arc::clone(&pool),
        id: spawn.id,
        token: spawn.token,
        phase: Mutex::new(Phase::Starting {
            deadline: Instant::now() + pool.init_timeout,
        }),
        wake: Notify::new(),
        spawned_at: Instant::now(),
        pid: AtomicU32::new(0),
        last_stderr: Mutex::new(String::new()),
    });
    let end = supervise(&worker).await;
    worker.token.cancel();

    let phase = std::mem::replace(&mut *worker.phase.lock(), Phase::Ready { last: None });
    let function = pool.launch.function();
    let (id, pid) = (worker.id, worker.pid());
    let mut init_failure = None;
    match phase {
        Phase::Busy(flight) => {
            let error = match &end {
                End::TimedOut => {
                    warn!(function, worker = id, pid, request_id = %flight.request_id,
                        "invocation timed out; worker killed");
                    InvokeError::Timeout
                }
                End::Stopped => {
                    info!(function, worker = id, pid, "worker stopped");
                    InvokeError::Failed("function shut down".into())
                }
                End::Exited(status) => {
                    warn!(function, worker = id, pid, request_id = %flight.request_id,
                        %status, "worker crashed during an invocation");
                    InvokeError::Failed("worker crashed".into())
                }
                _ => InvokeError::Failed("worker crashed".into()),
            };
            let _ = flight.result.send(Err(error));
        }
        Phase::Ready { .. } => match &end {
            End::Exited(status) => warn!(function, worker = id, pid, %status, "worker exited"),
            _ => info!(function, worker = id, pid, "worker stopped"),
        },
        Phase::Starting { .. } => {
            init_failure = match &end {
                End::Stopped => None,
                End::Exited(status) => {
                    let hint = worker.last_stderr.lock().clone();
                    let mut message =
                        format!("process exited ({status}) before polling for an event");
                    if !hint.is_empty() {
                        message.push_str(": ");
                        message.push_str(&hint);
                    }
                    Some(message)
                }
                End::InitTimedOut => Some(format!(
                    "no poll for an event within {} ms of starting; killed",
                    pool.init_timeout.as_millis()
                )),
                End::CouldNotStart(message) => Some(message.clone()),
                _ => Some("worker ended before its init finished".to_owned()),
            }
            .map(Arc::from);
            match &init_failure {
                Some(error) => warn!(
                    function,
                    worker = id,
                    pid,
                    error = &**error,
                    "worker init failed"
                ),
                None => info!(
                    function,
                    worker = id,
                    pid,
                    "worker stopped before it was ready"
                ),
            }
        }
        Phase::InitFailed { message, .. } => {
            info!(
                function,
                worker = id,
                pid,
                "worker exited after its init error"
            );
            init_failure = Some(message);
        }
    }

    let spawns = pool
        .state
        .lock()
        .exited(id, &Exit { init_failure }, Instant::now());
    pool.launch_all(spawns);
}

async fn supervise(worker: &Arc<Worker>) -> End {
    let pool = &worker.pool;
    let listener = match bind_loopback() {
        Ok(listener) => listener,
        Err(e) => return End::CouldNotStart(format!("cannot listen on 127.0.0.1: {e}")),
    };
    let port = listener.local_addr().map_or(0, |a| a.port());
    let mut child = match pool.launch.command(port, worker.id).spawn() {
        Ok(child) => child,
        Err(e) => {
            return End::CouldNotStart(format!(
                "cannot start {}: {e}",
                pool.launch.program().display()
            ))
        }
    };
    let pid = child.id();
    worker.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
    info!(
        function = pool.launch.function(),
        worker = worker.id,
        pid = worker.pid(),
        port,
        "worker started"
    );
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_output(Arc::clone(worker), stdout, false));
    }
    let stderr = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(forward_output(Arc::clone(worker), stderr, true)));
    tokio::spawn(super::api::serve(listener, Arc::clone(worker)));

    loop {
        let deadline = worker.deadline();
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) => {
                        // Only an init failure quotes stderr; a crash is reported at once.
                        if worker.is_starting() {
                            drain(stderr).await;
                        }
                        End::Exited(status)
                    }
                    // Waiting itself failed: the child is unusable, make sure it is gone.
                    Err(_) => {
                        kill(pid, &mut child).await;
                        End::Stopped
                    }
                };
            }
            () = worker.token.cancelled() => {
                kill(pid, &mut child).await;
                return End::Stopped;
            }
            () = worker.wake.notified() => {}
            () = sleep_until_opt(deadline) => {
                if let Some(end) = worker.expired(Instant::now()) {
                    kill(pid, &mut child).await;
                    return end;
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Gives the stderr forwarder a moment to log what the process printed last.
async fn drain(stderr: Option<JoinHandle<()>>) {
    if let Some(task) = stderr {
        let _ = tokio::time::timeout(STDERR_DRAIN, task).await;
    }
}

fn bind_loopback() -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// SIGKILLs the worker's process group (it leads its own), then the child itself in case
/// it left the group, and reaps it.
async fn kill(pid: Option<u32>, child: &mut Child) {
    let group = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        // The child is not reaped until the wait below, so its pid (the group's id)
        // cannot have been reused by an unrelated process.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Logs a worker's output line by line, tagged with the function and the request id of
/// the invocation it is running: stdout at info, stderr at warn.
async fn forward_output(worker: Arc<Worker>, pipe: impl AsyncRead + Unpin, stderr: bool) {
    let mut reader = BufReader::with_capacity(8 * 1024, pipe);
    let mut line = Vec::with_capacity(256);
    let function = worker.pool.launch.function();
    while let Ok(true) = read_line_bounded(&mut reader, &mut line, MAX_LOG_LINE).await {
        let text = String::from_utf8_lossy(trim_line(&line));
        // awslambdaric writes multi-line records with `\r` between lines.
        let text = if text.contains('\r') {
            text.replace('\r', "\n").into()
        } else {
            text
        };
        let request_id = worker.request_id();
        if stderr {
            warn!(function, request_id, "{text}");
            if !text.trim().is_empty() {
                let mut last = worker.last_stderr.lock();
                last.clear();
                last.extend(text.trim().chars().take(STDERR_HINT_CHARS));
            }
        } else {
            info!(function, request_id, "{text}");
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads up to and without the next `\n` into `line`, at most `max` bytes (a longer line
/// comes out in pieces). False at end of input with nothing read.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = max - line.len();
        let scan = &buf[..buf.len().min(room)];
        if let Some(i) = scan.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&scan[..i]);
            reader.consume(i + 1);
            return Ok(true);
        }
        let n = scan.len();
        line.extend_from_slice(scan);
        reader.consume(n);
        if line.len() >= max {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let input: &[u8] = b"one\r\ntwo\nabcdefghij\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        while read_line_bounded(&mut reader, &mut line, 6).await.unwrap() {
            out.push(String::from_utf8(trim_line(&line).to_vec()).unwrap());
        }
        assert_eq!(out, ["one", "two", "abcdef", "ghij", "last"]);
    }
}

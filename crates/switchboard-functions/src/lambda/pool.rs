//! The pool's decisions, kept apart from processes and sockets: who gets an invocation
//! (an idle worker, the queue, or nobody), when a worker is started or stopped, and how
//! init failures back off. [`State`] only moves values and channel ends around; the
//! caller acts on what it returns ([`Spawn`]s to launch) after releasing the lock, so the
//! rules are unit-tested here without starting anything.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::event::Invocation;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::InvokeError;

/// First wait after an init failure.
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait after repeated init failures.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A worker's number within its pool, for logs and bookkeeping.
pub(crate) type WorkerId = u64;

/// What a worker answers: the handler's raw response body (parsed by the caller, so the
/// runtime API can acknowledge the worker sooner), or why there is none.
pub(crate) type Outcome = Result<Bytes, InvokeError>;

/// The bounds the pool enforces, from the function's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_concurrency: usize,
    pub min_warm: usize,
    pub idle: Duration,
    pub max_queue: usize,
}

/// One invocation on its way to a worker.
pub(crate) struct Job {
    pub invocation: Invocation,
    /// Fired when a worker takes the job: the caller switches from its queue deadline to
    /// its execution deadline.
    pub started: oneshot::Sender<()>,
    pub result: oneshot::Sender<Outcome>,
}

impl Job {
    /// The caller stopped waiting (timed out in the queue, or dropped the future).
    pub fn is_abandoned(&self) -> bool {
        self.result.is_closed()
    }

    pub fn fail(self, error: InvokeError) {
        // The caller may be gone; then nobody needs to hear about it.
        let _ = self.result.send(Err(error));
    }
}

/// A worker to start: the caller launches its process after releasing the lock.
#[derive(Debug)]
pub(crate) struct Spawn {
    pub id: WorkerId,
    pub token: CancellationToken,
}

/// What [`State::admit`] did with an invocation.
pub(crate) enum Admit {
    /// Handed to an idle worker already waiting in `next`.
    Dispatched,
    /// Queued; `Some` when a worker was added for it.
    Queued(Option<Spawn>),
    /// Refused at once.
    Refused(InvokeError),
}

/// What a worker polling `next` gets.
pub(crate) enum Take {
    /// An invocation to run now.
    Job(Job),
    /// Nothing queued: the long poll waits here for [`State::admit`] to hand one over.
    /// The sender is dropped when the worker is to stop while idle.
    Wait(oneshot::Receiver<Job>),
    /// The worker is to stop (idle timeout, restart, shutdown).
    Stop,
}

/// How a worker ended, as its supervisor saw it.
#[derive(Debug)]
pub(crate) struct Exit {
    /// Set when the worker never became ready and was not stopped by the pool: the
    /// message for the logs and for the invocations that were waiting.
    pub init_failure: Option<Arc<str>>,
}

/// A worker waiting in `next` with nothing to do.
struct Idle {
    id: WorkerId,
    since: Instant,
    tx: oneshot::Sender<Job>,
}

struct Entry {
    generation: u64,
    /// Has polled `next` at least once (its init succeeded).
    ready: bool,
    /// Told to stop; still counted against `max_concurrency` until its process is gone.
    stopping: bool,
    token: CancellationToken,
}

/// Exponential backoff between init attempts after failures.
#[derive(Debug)]
struct Backoff {
    next_delay: Duration,
    until: Option<Instant>,
    error: Option<Arc<str>>,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next_delay: BACKOFF_INITIAL,
            until: None,
            error: None,
        }
    }

    fn failed(&mut self, now: Instant, error: Arc<str>) {
        self.until = Some(now + self.next_delay);
        self.next_delay = (self.next_delay * 2).min(BACKOFF_MAX);
        self.error = Some(error);
    }

    fn blocks(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

/// Counts for `switchboard dev` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LambdaStats {
    /// Worker processes alive (starting, idle, busy or stopping).
    pub workers: usize,
    /// Started but not yet polling for events.
    pub starting: usize,
    /// Waiting for an event.
    pub idle: usize,
    /// Invocations waiting for a worker.
    pub queued: usize,
}

/// The pool's bookkeeping, behind one lock that is never held across an `.await`.
pub(crate) struct State {
    limits: Limits,
    queue: VecDeque<Job>,
    /// Most recently idle last: dispatch takes from the end (LIFO) so the warmest worker
    /// keeps the traffic and the others age out; the idle reaper looks at the front.
    idle: Vec<Idle>,
    workers: HashMap<WorkerId, Entry>,
    /// Workers in `workers` that are not yet `ready`.
    starting: usize,
    generation: u64,
    next_id: WorkerId,
    backoff: Backoff,
    closed: bool,
    /// Cancelling it stops every worker (shutdown); each worker's token is a child.
    root: CancellationToken,
}

impl State {
    pub fn new(limits: Limits) -> Self {
        Self {
            queue: VecDeque::with_capacity(limits.max_queue.min(64)),
            idle: Vec::with_capacity(limits.max_concurrency),
            workers: HashMap::with_capacity(limits.max_concurrency),
            limits,
            starting: 0,
            generation: 0,
            next_id: 1,
            backoff: Backoff::new(),
            closed: false,
            root: CancellationToken::new(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn stats(&self) -> LambdaStats {
        LambdaStats {
            workers: self.workers.len(),
            starting: self.starting,
            idle: self.idle.iter().filter(|i| !i.tx.is_closed()).count(),
            queued: self.queue.iter().filter(|j| !j.is_abandoned()).count(),
        }
    }

    fn active(&self) -> usize {
        self.workers.values().filter(|e| !e.stopping).count()
    }

    fn new_worker(&mut self) -> Spawn {
        let id = self.next_id;
        self.next_id += 1;
        let token = self.root.child_token();
        self.workers.insert(
            id,
            Entry {
                generation: self.generation,
                ready: false,
                stopping: false,
                token: token.clone(),
            },
        );
        self.starting += 1;
        Spawn { id, token }
    }

    fn can_spawn(&self, now: Instant) -> bool {
        !self.closed
            && self.workers.len() < self.limits.max_concurrency
            && !self.backoff.blocks(now)
    }

    /// Decides, without waiting, what happens to an invocation.
    pub fn admit(&mut self, mut job: Job, now: Instant) -> Admit {
        if self.closed {
            return Admit::Refused(InvokeError::Failed("function shut down".into()));
        }
        while let Some(idle) = self.idle.pop() {
            match idle.tx.send(job) {
                Ok(()) => return Admit::Dispatched,
                // That worker's long poll ended (its process died): try the next one.
                Err(returned) => job = returned,
            }
        }
        // Scale up while invocations outnumber the workers already starting for them.
        if self.can_spawn(now) && self.queue.len() >= self.starting {
            self.queue.push_back(job);
            return Admit::Queued(Some(self.new_worker()));
        }
        if self.backoff.blocks(now) && self.active() == 0 {
            // Nothing could serve it before the backoff ends: fail fast with the cause
            // rather than leave the caller waiting for its timeout.
            let error = self
                .backoff
                .error
                .as_deref()
                .unwrap_or("worker failed to start");
            return Admit::Refused(init_error(error));
        }
        // Invocations a starting worker will take are not "waiting for a worker".
        let room = self.limits.max_queue + self.starting;
        if self.queue.len() >= room {
            self.queue.retain(|j| !j.is_abandoned());
            if self.queue.len() >= room {
                return Admit::Refused(InvokeError::Throttled);
            }
        }
        self.queue.push_back(job);
        Admit::Queued(None)
    }

    /// A worker polls `next`. The flag is true on its first poll (its init succeeded).
    pub fn take(&mut self, id: WorkerId, now: Instant) -> (Take, bool) {
        let generation = self.generation;
        let closed = self.closed;
        let Some(entry) = self.workers.get_mut(&id) else {
            return (Take::Stop, false);
        };
        let first = !entry.ready;
        if first {
            entry.ready = true;
            self.starting -= 1;
            self.backoff = Backoff::new();
        }
        if entry.stopping || closed || entry.generation != generation {
            entry.stopping = true;
            entry.token.cancel();
            return (Take::Stop, first);
        }
        while let Some(job) = self.queue.pop_front() {
            if !job.is_abandoned() {
                return (Take::Job(job), first);
            }
        }
        let (tx, rx) = oneshot::channel();
        self.idle.push(Idle { id, since: now, tx });
        (Take::Wait(rx), first)
    }

    /// A worker's process is gone. Fails the waiting invocations if its init failed and
    /// no ready worker is left to serve them; returns the workers to start in its place.
    pub fn exited(&mut self, id: WorkerId, exit: &Exit, now: Instant) -> Vec<Spawn> {
        let Some(entry) = self.workers.remove(&id) else {
            return Vec::new();
        };
        self.idle.retain(|i| i.id != id);
        if !entry.ready {
            self.starting -= 1;
        }
        if let Some(error) = &exit.init_failure {
            if !entry.ready && !entry.stopping {
                self.backoff.failed(now, Arc::clone(error));
                let served = self
                    .workers
                    .values()
                    .any(|e| e.ready && !e.stopping && e.generation == self.generation);
                if !served {
                    for job in self.queue.drain(..) {
                        job.fail(init_error(error));
                    }
                }
            }
        }
        self.top_up(now)
    }

    /// Periodic upkeep: stops workers idle longer than the limit (down to `min_warm`),
    /// forgets channel ends nobody listens to, and starts workers that are owed (after a
    /// backoff ended, or to reach `min_warm`).
    pub fn reap(&mut self, now: Instant) -> Vec<Spawn> {
        self.idle.retain(|i| !i.tx.is_closed());
        self.queue.retain(|j| !j.is_abandoned());
        let mut active = self.active();
        while active > self.limits.min_warm {
            let Some(oldest) = self.idle.first() else {
                break;
            };
            if now.saturating_duration_since(oldest.since) < self.limits.idle {
                break;
            }
            let idle = self.idle.remove(0);
            self.stop(idle.id);
            active -= 1;
        }
        self.top_up(now)
    }

    /// Idle and starting workers stop now, busy ones once their invocation ends; the
    /// backoff is forgotten (the code may have been fixed). Returns replacements to start.
    pub fn restart(&mut self, now: Instant) -> Vec<Spawn> {
        self.generation += 1;
        self.backoff = Backoff::new();
        for idle in std::mem::take(&mut self.idle) {
            self.stop(idle.id);
        }
        let starting: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, e)| !e.ready)
            .map(|(id, _)| *id)
            .collect();
        for id in starting {
            self.stop(id);
        }
        self.top_up(now)
    }

    /// Stops everything and fails whatever waits.
    pub fn shutdown(&mut self) {
        self.closed = true;
        self.root.cancel();
        self.idle.clear();
        for job in self.queue.drain(..) {
            job.fail(InvokeError::Failed("function shut down".into()));
        }
    }

    fn stop(&mut self, id: WorkerId) {
        if let Some(entry) = self.workers.get_mut(&id) {
            entry.stopping = true;
            entry.token.cancel();
        }
    }

    /// Workers owed: enough to reach `min_warm`, and one per queued invocation beyond
    /// those already starting, within `max_concurrency` and outside a backoff.
    fn top_up(&mut self, now: Instant) -> Vec<Spawn> {
        let mut spawns = Vec::new();
        let mut queued = None;
        while self.can_spawn(now) {
            let queued = *queued.get_or_insert_with(|| {
                self.queue.retain(|j| !j.is_abandoned());
                self.queue.len()
            });
            if self.active() >= self.limits.min_warm && queued <= self.starting {
                break;
            }
            spawns.push(self.new_worker());
        }
        spawns
    }
}

fn init_error(error: &str) -> InvokeError {
    InvokeError::Failed(["init error: ", error].concat())
}

#[cfg(test)]
mod tests;

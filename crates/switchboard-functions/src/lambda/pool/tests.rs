use super::*;
use std::net::{IpAddr, Ipv4Addr};
use switchboard_core::event::{ConnectionInfo, EventKind};
use switchboard_core::id::IdGenerator;

fn limits(max_concurrency: usize, max_queue: usize) -> Limits {
    Limits {
        max_concurrency,
        min_warm: 0,
        idle: Duration::from_secs(10),
        max_queue,
    }
}

fn job() -> (Job, oneshot::Receiver<()>, oneshot::Receiver<Outcome>) {
    let ids = IdGenerator::new("t");
    let invocation = Invocation {
        kind: EventKind::Message,
        route_key: Arc::from("$default"),
        connection: Arc::new(ConnectionInfo {
            id: ids.connection_id(),
            connected_at_ms: 0,
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: None,
            path: "/".into(),
            headers: Vec::new(),
            query: Vec::new(),
            subprotocol: None,
            tls: false,
            port: 80,
            authorizer: None,
        }),
        request_id: ids.request_id(),
        request_time_ms: 0,
        body: None,
        disconnect: None,
        extension: None,
    };
    let (started, started_rx) = oneshot::channel();
    let (result, result_rx) = oneshot::channel();
    (
        Job {
            invocation,
            started,
            result,
        },
        started_rx,
        result_rx,
    )
}

fn queued_spawn(admit: Admit) -> Option<Spawn> {
    match admit {
        Admit::Queued(spawn) => spawn,
        Admit::Dispatched => panic!("dispatched"),
        Admit::Refused(e) => panic!("refused: {e}"),
    }
}

#[test]
fn scales_from_zero_then_queues_then_throttles() {
    let now = Instant::now();
    let mut s = State::new(limits(2, 1));
    let mut keep = Vec::new();
    // Two invocations, two workers started for them.
    for _ in 0..2 {
        let (j, a, b) = job();
        keep.push((a, b));
        assert!(queued_spawn(s.admit(j, now)).is_some());
    }
    // At the cap: one more may wait...
    let (j, a, b) = job();
    keep.push((a, b));
    assert!(queued_spawn(s.admit(j, now)).is_none());
    // ...and the next is throttled at once.
    let (j, _a, _b) = job();
    assert!(matches!(
        s.admit(j, now),
        Admit::Refused(InvokeError::Throttled)
    ));
    assert_eq!(
        s.stats(),
        LambdaStats {
            workers: 2,
            starting: 2,
            idle: 0,
            queued: 3
        }
    );
}

#[test]
fn abandoned_jobs_give_their_place_back() {
    let now = Instant::now();
    let mut s = State::new(limits(1, 1));
    let (j, _a, _b) = job();
    assert!(queued_spawn(s.admit(j, now)).is_some());
    let (j, a, b) = job();
    assert!(queued_spawn(s.admit(j, now)).is_none());
    drop((a, b));
    let (j, _a2, _b2) = job();
    assert!(queued_spawn(s.admit(j, now)).is_none());
}

#[test]
fn idle_worker_takes_the_next_job_directly() {
    let now = Instant::now();
    let mut s = State::new(limits(1, 0));
    let (j, _a, _b) = job();
    let spawn = queued_spawn(s.admit(j, now)).unwrap();
    let (take, first) = s.take(spawn.id, now);
    assert!(first);
    assert!(matches!(take, Take::Job(_)));
    let (take, first) = s.take(spawn.id, now);
    assert!(!first);
    let Take::Wait(mut rx) = take else {
        panic!("expected a wait")
    };
    let (j, _a, _b) = job();
    assert!(matches!(s.admit(j, now), Admit::Dispatched));
    assert!(rx.try_recv().is_ok());
}

#[test]
fn idle_workers_stop_after_the_idle_time_down_to_min_warm() {
    let now = Instant::now();
    let mut l = limits(3, 0);
    l.min_warm = 1;
    let mut s = State::new(l);
    let spawns = s.top_up(now);
    assert_eq!(spawns.len(), 1, "min_warm is started at once");
    let mut ids = vec![spawns[0].id];
    // The starting worker is owed the first invocation; the next two add workers.
    let mut keep = Vec::new();
    for expect_spawn in [false, true, true] {
        let (j, a, b) = job();
        keep.push((a, b));
        let spawn = queued_spawn(s.admit(j, now));
        assert_eq!(spawn.is_some(), expect_spawn);
        ids.extend(spawn.map(|s| s.id));
    }
    drop(keep);
    let waits: Vec<Take> = ids.iter().map(|id| s.take(*id, now).0).collect();
    assert!(waits.iter().all(|t| matches!(t, Take::Wait(_))));
    assert!(s.reap(now + Duration::from_secs(5)).is_empty());
    assert_eq!(s.stats().idle, 3);
    assert!(s.reap(now + Duration::from_secs(11)).is_empty());
    assert_eq!(s.stats().idle, 1, "stopped down to min_warm");
    let stopped = ids
        .iter()
        .filter(|id| s.workers[id].token.is_cancelled())
        .count();
    assert_eq!(stopped, 2);
}

#[test]
fn init_failure_fails_waiters_and_backs_off_exponentially() {
    let t0 = Instant::now();
    let mut s = State::new(limits(2, 4));
    let (j, _a, mut result) = job();
    let spawn = queued_spawn(s.admit(j, t0)).unwrap();
    let exit = Exit {
        init_failure: Some(Arc::from("boom")),
    };
    assert!(s.exited(spawn.id, &exit, t0).is_empty());
    assert_eq!(
        result.try_recv().unwrap(),
        Err(InvokeError::Failed("init error: boom".into()))
    );
    // During the backoff: refused at once, nothing started.
    let (j, _a, _b) = job();
    assert!(matches!(
        s.admit(j, t0 + Duration::from_millis(900)),
        Admit::Refused(InvokeError::Failed(m)) if m == "init error: boom"
    ));
    // After 1 s a new attempt; it fails too, and the next wait is 2 s.
    let t1 = t0 + Duration::from_millis(1001);
    let (j, _a, _b) = job();
    let spawn = queued_spawn(s.admit(j, t1)).unwrap();
    s.exited(spawn.id, &exit, t1);
    let (j, _a, _b) = job();
    assert!(matches!(
        s.admit(j, t1 + Duration::from_millis(1500)),
        Admit::Refused(_)
    ));
    let t2 = t1 + Duration::from_millis(2001);
    let (j, _a, _b) = job();
    let spawn = queued_spawn(s.admit(j, t2)).unwrap();
    // A successful init resets the delay to 1 s.
    let _ = s.take(spawn.id, t2);
    assert_eq!(s.backoff.next_delay, BACKOFF_INITIAL);
    for _ in 0..10 {
        s.backoff.failed(t2, Arc::from("x"));
    }
    assert_eq!(s.backoff.next_delay, BACKOFF_MAX);
}

#[test]
fn restart_stops_idle_and_starting_workers_and_retires_busy_ones() {
    let now = Instant::now();
    let mut s = State::new(limits(3, 0));
    let mut ids = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..3 {
        let (j, a, b) = job();
        keep.push((a, b));
        ids.push(queued_spawn(s.admit(j, now)).unwrap().id);
    }
    // ids[0] busy; the other invocations are abandoned, so ids[1] goes idle;
    // ids[2] is still starting.
    keep.truncate(1);
    let (busy, _) = s.take(ids[0], now);
    assert!(matches!(busy, Take::Job(_)));
    let (idle, _) = s.take(ids[1], now);
    assert!(matches!(idle, Take::Wait(_)));
    assert!(s.restart(now).is_empty(), "at the cap until they exit");
    assert!(!s.workers[&ids[0]].token.is_cancelled());
    assert!(s.workers[&ids[1]].token.is_cancelled());
    assert!(s.workers[&ids[2]].token.is_cancelled());
    // The busy one finishes and polls again: told to stop.
    assert!(matches!(s.take(ids[0], now).0, Take::Stop));
    // Exits free the slots; nothing is owed (queue empty, min_warm 0).
    let clean = Exit { init_failure: None };
    for id in &ids {
        assert!(s.exited(*id, &clean, now).is_empty());
    }
    assert_eq!(s.stats(), LambdaStats::default());
}

#[test]
fn shutdown_fails_the_queue_and_refuses() {
    let now = Instant::now();
    let mut s = State::new(limits(1, 4));
    let (j, _a, mut result) = job();
    let _ = s.admit(j, now);
    s.shutdown();
    assert!(matches!(result.try_recv(), Ok(Err(InvokeError::Failed(_)))));
    let (j, _a, _b) = job();
    assert!(matches!(s.admit(j, now), Admit::Refused(_)));
}

//! Group fan-out measured at the members. Every published message carries a sequence
//! number; each delivery is counted per number ([`Deliveries`]), so the time the *last*
//! member got a message, and every loss, are known exactly.
//!
//! A binary holds the members and says how many expect a message ([`Audience`]), and
//! publishes through its API ([`Publish`]); [`shots`] (single publishes, each waited for)
//! and [`sustained`] (publishers in a closed loop, then a drain) drive the measurement
//! and summarise it under the keys the reports read.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::http1;
use crate::stats::{new_hist, ns_micros, quantile_ms, round1};

/// A wait for deliveries gives up when no delivery at all happened for this long.
pub const QUIET_GIVE_UP: Duration = Duration::from_secs(3);
/// The pause after each single shot, so one shot's tail does not overlap the next.
const SHOT_GAP: Duration = Duration::from_millis(200);
/// The pause after a failed publish call, so a failing server is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Per sequence number: the deliveries counted, the members expected, when the first and
/// the last delivery happened and when the publish call started. Sequence numbers start
/// at 1 and are bounded by the table's capacity (the table is preallocated).
pub struct Deliveries {
    /// Times are ns since this.
    base: Instant,
    /// Sequence numbers are below this.
    cap: usize,
    /// How often a waiter looks again although nobody woke it.
    poll: Duration,
    /// Indexed by sequence number.
    slots: Box<[Slot]>,
    /// The next sequence number to publish.
    next_seq: AtomicUsize,
    /// Deliveries counted, all sequence numbers.
    delivered: AtomicU64,
    /// Woken when a message completes.
    notify: Notify,
    /// Latency (publish call -> received) of the deliveries recorded with `sample`, µs.
    sampled: Mutex<Histogram<u64>>,
}

impl Deliveries {
    /// A table for sequence numbers below `cap`; waiters look again every `poll`.
    pub fn new(cap: usize, poll: Duration) -> Self {
        Self {
            base: Instant::now(),
            cap,
            poll,
            slots: (0..cap).map(|_| Slot::default()).collect(),
            next_seq: AtomicUsize::new(1),
            delivered: AtomicU64::new(0),
            notify: Notify::new(),
            sampled: Mutex::new(new_hist()),
        }
    }

    /// The clock of the table, ns.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Deliveries counted so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Members expected to get `seq` (0: not published).
    pub fn expected(&self, seq: usize) -> u32 {
        self.slots[seq].expected.load(Ordering::Acquire)
    }

    /// The next sequence number to publish.
    fn take_seq(&self) -> Result<usize> {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        if seq >= self.cap {
            bail!("sequence numbers exhausted ({})", self.cap);
        }
        Ok(seq)
    }

    /// The sequence number `take_seq` would give next (or the capacity, when exhausted).
    fn peek_seq(&self) -> usize {
        self.next_seq.load(Ordering::Acquire).min(self.cap)
    }

    /// Marks `seq` as expected at `members` members and its publish call as starting now;
    /// returns that time.
    pub fn expect(&self, seq: usize, members: u32) -> u64 {
        self.slots[seq].expected.store(members, Ordering::Release);
        let t0 = self.now_ns();
        self.slots[seq].pub_ns.store(t0, Ordering::Release);
        t0
    }

    /// `seq` was not published after all: expected nowhere.
    pub fn unexpect(&self, seq: usize) {
        self.slots[seq].expected.store(0, Ordering::Release);
    }

    /// Counts one delivery of `seq` (1..cap) at `now` (ns); `sample`: its latency goes
    /// into the sampled histogram.
    pub fn record(&self, seq: usize, now: u64, sample: bool) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let c = self.slots[seq].count.fetch_add(1, Ordering::AcqRel) + 1;
        if c == 1 {
            self.slots[seq].first_ns.store(now, Ordering::Release);
        }
        if c == self.slots[seq].expected.load(Ordering::Acquire) {
            self.slots[seq].last_ns.store(now, Ordering::Release);
            self.notify.notify_waiters();
        }
        if sample {
            let p = self.slots[seq].pub_ns.load(Ordering::Acquire);
            if p > 0 && now > p {
                let _ = self.sampled.lock().record(ns_micros(now - p));
            }
        }
    }

    /// Every expected member has `seq`.
    fn complete(&self, seq: usize) -> bool {
        self.slots[seq].count.load(Ordering::Acquire)
            >= self.slots[seq].expected.load(Ordering::Acquire)
    }

    /// Expected members that have not got `seq` (yet).
    fn missing(&self, seq: usize) -> u64 {
        u64::from(
            self.slots[seq]
                .expected
                .load(Ordering::Acquire)
                .saturating_sub(self.slots[seq].count.load(Ordering::Acquire)),
        )
    }

    /// Waits until every expected member has `seq`; gives up at `deadline` or after
    /// QUIET_GIVE_UP without any delivery. `true`: complete.
    async fn wait_complete(&self, seq: usize, deadline: Instant) -> bool {
        let mut seen = self.delivered.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.complete(seq) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let d = self.delivered.load(Ordering::Relaxed);
            if d != seen {
                seen = d;
                quiet_since = now;
            } else if now >= quiet_since + QUIET_GIVE_UP {
                return false;
            }
            let _ = tokio::time::timeout_at(deadline.min(now + self.poll), notified).await;
        }
    }

    /// Waits until every expected member has every message of `seqs`, or a wait gives up.
    /// `true`: complete.
    async fn drain(&self, seqs: Range<usize>, deadline: Instant) -> bool {
        for seq in seqs {
            if !self.wait_complete(seq, deadline).await {
                return false;
            }
        }
        true
    }

    /// The deliveries of `seqs` (those published), and when the last complete one was.
    fn tally(&self, seqs: Range<usize>, t_start_ns: u64) -> Tally {
        let mut t = Tally {
            published: 0,
            deliveries: 0,
            losses: 0,
            extra: 0,
            last_member: new_hist(),
            t_last: t_start_ns,
        };
        for seq in seqs {
            let exp = u64::from(self.slots[seq].expected.load(Ordering::Acquire));
            if exp == 0 {
                continue;
            }
            t.published += 1;
            let c = u64::from(self.slots[seq].count.load(Ordering::Acquire));
            t.deliveries += c.min(exp);
            t.extra += c.saturating_sub(exp);
            t.losses += exp.saturating_sub(c);
            if c >= exp {
                let l = self.slots[seq].last_ns.load(Ordering::Acquire);
                t.t_last = t.t_last.max(l);
                let p = self.slots[seq].pub_ns.load(Ordering::Acquire);
                let _ = t.last_member.record(ns_micros(l.saturating_sub(p)));
            }
        }
        t
    }
}

/// One sequence number's counts and times, side by side: a delivery touches them all.
#[derive(Default)]
struct Slot {
    /// Deliveries counted.
    count: AtomicU32,
    /// Members expected to get it (0: not published).
    expected: AtomicU32,
    /// The first delivery, ns.
    first_ns: AtomicU64,
    /// The delivery that completed `expected`, ns.
    last_ns: AtomicU64,
    /// When its publish call started, ns.
    pub_ns: AtomicU64,
}

/// What [`Deliveries::tally`] counted.
struct Tally {
    /// Messages published (expected somewhere).
    published: u64,
    /// Deliveries up to the members expected, per message, summed.
    deliveries: u64,
    /// Deliveries missing.
    losses: u64,
    /// Deliveries beyond the members expected.
    extra: u64,
    /// Publish call -> last member, per complete message, µs.
    last_member: Histogram<u64>,
    /// The last delivery of a complete message (ns), at least the run's start.
    t_last: u64,
}

/// The members of a group: who expects a message published now.
pub trait Audience: Send + Sync + 'static {
    /// The delivery counts.
    fn deliveries(&self) -> &Deliveries;

    /// Members that get a message published now.
    fn members(&self) -> usize;

    /// Marks `seq` as expected at every member connected now and its publish as starting
    /// now; returns that time (ns on the table's clock).
    fn expect(&self, seq: usize) -> u64 {
        self.deliveries().expect(seq, self.members() as u32)
    }

    /// `seq` was not published after all.
    fn unexpect(&self, seq: usize) {
        self.deliveries().unexpect(seq);
    }
}

/// What one publish call answered.
pub struct Published {
    /// Members the server counted (0 when the API does not say).
    pub recipients: u64,
    /// Members whose queue was full or that were closing (0 when the API does not say).
    pub dropped: u64,
}

/// Publishes the message with a sequence number, one call at a time.
pub trait Publish: Send + 'static {
    /// Publishes message `seq` and waits for the answer.
    fn publish(&mut self, seq: usize) -> impl Future<Output = Result<Published>> + Send;
}

/// `POST` to switchboard's `/v1/groups/G/messages` through `client`; the answer must be
/// 200 with `recipients` and `dropped`.
pub async fn post_group_message(
    client: &mut http1::Client,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> Result<Published> {
    let r = client.post(path, headers, body).await?;
    check_published(&r)?;
    let v: Value = serde_json::from_slice(&r.body).context("publish answer")?;
    Ok(Published {
        recipients: v["recipients"].as_u64().unwrap_or(0),
        dropped: v["dropped"].as_u64().unwrap_or(0),
    })
}

/// A publish call's answer must be 200.
pub fn check_published(r: &http1::Response) -> Result<()> {
    if r.status != 200 {
        bail!(
            "publish answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(())
}

/// One counted single publish.
pub struct Shot {
    /// Its sequence number.
    pub seq: usize,
    /// When its publish call started (ns on the table's clock).
    pub t0: u64,
    /// How long the publish call took, ns.
    pub http_ns: u64,
    /// What the call answered.
    pub published: Published,
    /// Whether every member got it.
    pub reach: Reach,
}

/// How far a shot's message got.
pub enum Reach {
    /// Every member had it: the first and the last delivery, ns after the call's start.
    All { first_ns: u64, last_ns: u64 },
    /// The wait gave up with this many members still without it.
    Missing(u64),
}

impl Shot {
    /// From the call's start to the first member's delivery, ns, when every member had it.
    pub fn first_ns(&self) -> Option<u64> {
        match self.reach {
            Reach::All { first_ns, .. } => Some(first_ns),
            Reach::Missing(_) => None,
        }
    }

    /// From the call's start to the last member's delivery, ns, when every member had it.
    pub fn last_ns(&self) -> Option<u64> {
        match self.reach {
            Reach::All { last_ns, .. } => Some(last_ns),
            Reach::Missing(_) => None,
        }
    }

    /// Members that did not get it in time.
    pub fn missing(&self) -> u64 {
        match self.reach {
            Reach::All { .. } => 0,
            Reach::Missing(n) => n,
        }
    }
}

/// Single publishes, each waited for: see [`shots`].
pub struct Shots {
    /// The warm-up shot reached every member.
    pub warmup_complete: bool,
    /// The counted shots, in order.
    pub shots: Vec<Shot>,
}

/// One warm-up publish (connection, caches; not counted), then `k` single publishes,
/// each waiting until every member has it (at most `wait`).
pub async fn shots<A: Audience, P: Publish>(
    aud: &A,
    publisher: &mut P,
    k: usize,
    wait: Duration,
) -> Result<Shots> {
    let d = aud.deliveries();
    let mut out = Shots {
        warmup_complete: true,
        shots: Vec::with_capacity(k),
    };
    for shot in 0..=k {
        let seq = d.take_seq()?;
        let t0 = aud.expect(seq);
        let r = publisher.publish(seq).await;
        let t1 = d.now_ns();
        let published = match r {
            Ok(p) => p,
            Err(e) => {
                aud.unexpect(seq);
                return Err(e.context(format!("publish of shot {shot}")));
            }
        };
        let ok = d.wait_complete(seq, Instant::now() + wait).await;
        if shot == 0 {
            out.warmup_complete = ok;
        } else {
            out.shots.push(Shot {
                seq,
                t0,
                http_ns: t1 - t0,
                published,
                reach: if ok {
                    let slot = &d.slots[seq];
                    Reach::All {
                        first_ns: slot.first_ns.load(Ordering::Acquire).saturating_sub(t0),
                        last_ns: slot.last_ns.load(Ordering::Acquire) - t0,
                    }
                } else {
                    Reach::Missing(d.missing(seq))
                },
            });
        }
        tokio::time::sleep(SHOT_GAP).await;
    }
    Ok(out)
}

/// The figures of [`Shots`], times in ms.
pub struct ShotSummary {
    /// Last delivery per complete shot, in shot order.
    pub last_ms: Vec<f64>,
    /// Median of `last_ms`.
    pub last_median: Option<f64>,
    /// Median first delivery of the complete shots.
    pub first_median: Option<f64>,
    /// Median publish call.
    pub http_median: Option<f64>,
    /// Shots that did not reach every member in time.
    pub incomplete: usize,
    /// Deliveries missing from those.
    pub losses: u64,
    /// `recipients` each call answered.
    pub recipients: Vec<u64>,
    /// `dropped` the calls answered, summed.
    pub dropped: u64,
}

impl Shots {
    /// The figures, ns turned into ms by `to_ms`, medians taken by `median`.
    pub fn summary(
        &self,
        to_ms: impl Fn(u64) -> f64,
        median: impl Fn(&[f64]) -> Option<f64>,
    ) -> ShotSummary {
        let ms_of = |pick: fn(&Shot) -> Option<u64>| -> Vec<f64> {
            self.shots.iter().filter_map(pick).map(&to_ms).collect()
        };
        let last_ms = ms_of(Shot::last_ns);
        ShotSummary {
            last_median: median(&last_ms),
            first_median: median(&ms_of(Shot::first_ns)),
            http_median: median(&ms_of(|s| Some(s.http_ns))),
            last_ms,
            incomplete: self.shots.iter().filter(|s| s.last_ns().is_none()).count(),
            losses: self.shots.iter().map(Shot::missing).sum(),
            recipients: self.shots.iter().map(|s| s.published.recipients).collect(),
            dropped: self.shots.iter().map(|s| s.published.dropped).sum(),
        }
    }
}

impl ShotSummary {
    /// `shots`, `last_delivery_ms` (list and median), `first_delivery_ms_median`,
    /// `http_ms_median`, `deliveries_per_s` (`members` over the median last delivery),
    /// `incomplete_shots`, `losses`, `recipients_reported`.
    pub fn json(&self, members: usize) -> Value {
        json!({
            "shots": self.recipients.len(),
            "last_delivery_ms": self.last_ms,
            "last_delivery_ms_median": self.last_median,
            "first_delivery_ms_median": self.first_median,
            "http_ms_median": self.http_median,
            "deliveries_per_s": self.last_median.map(|m| (members as f64 / (m / 1000.0)).round()),
            "incomplete_shots": self.incomplete,
            "losses": self.losses,
            "recipients_reported": self.recipients,
        })
    }
}

/// How a [`sustained`] run goes.
pub struct SustainedOpts {
    /// The run's length as asked for, s (reported).
    pub secs: f64,
    /// The run's length, bounded.
    pub duration: Duration,
    /// >0: at most this many messages published but not yet at every member.
    pub window: usize,
    /// How long after the run's end a publisher held by the window still waits.
    pub window_grace: Duration,
    /// Upper bound of the drain after the run.
    pub drain: Duration,
    /// Bytes per message (reported).
    pub size: usize,
}

/// What a [`sustained`] run measured.
pub struct Sustained {
    /// The settings reported: `secs`, `window`, `size`, publishers, members at the start.
    secs: f64,
    window: usize,
    size: usize,
    inflight: usize,
    members_at_start: usize,
    /// The sequence numbers the run used.
    pub seqs: Range<usize>,
    tally: Tally,
    /// Deliveries counted while publishing, and per second of the run.
    in_window: u64,
    timeline: Vec<u64>,
    /// The drain ended with every message at every member.
    complete: bool,
    /// When the run started and when the last publish call returned, ns.
    t_start_ns: u64,
    publish_end_ns: u64,
    /// Failed publish calls, and the first one's error.
    publish_errors: u64,
    publish_error: Option<String>,
    /// `dropped` the publish calls answered, summed.
    dropped: u64,
    /// Publish call -> sampled member, µs.
    sampled: Histogram<u64>,
    /// Publish call durations, µs.
    http: Histogram<u64>,
}

/// One publisher per element of `publishers` in a closed loop (the next publish when the
/// previous call returned) for the run's duration, then a drain until every member has
/// every message (or the wait gives up). `each_second` runs at every full second of the
/// run, after the run's own per-second count.
pub async fn sustained<A: Audience, P: Publish>(
    aud: &Arc<A>,
    publishers: Vec<P>,
    opts: &SustainedOpts,
    mut each_second: impl FnMut(),
) -> Sustained {
    let d = aud.deliveries();
    let members_at_start = aud.members();
    *d.sampled.lock() = new_hist();
    let start_seq = d.peek_seq();
    let delivered0 = d.delivered();
    let t_start_ns = d.now_ns();
    let t_start = Instant::now();
    let end = t_start + opts.duration;

    let http_hist = Arc::new(Mutex::new(new_hist()));
    let publish_errors = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let inflight = publishers.len();
    let mut workers = tokio::task::JoinSet::new();
    for mut p in publishers {
        let (aud, http_hist, publish_errors, dropped) = (
            aud.clone(),
            http_hist.clone(),
            publish_errors.clone(),
            dropped.clone(),
        );
        let (window, window_end) = (opts.window, end + opts.window_grace);
        workers.spawn(async move {
            let d = aud.deliveries();
            let mut first_err = None;
            while Instant::now() < end {
                let seq = match d.take_seq() {
                    Ok(s) => s,
                    Err(e) => {
                        first_err.get_or_insert(format!("{e:#}"));
                        break;
                    }
                };
                if window > 0 && seq >= start_seq + window {
                    d.wait_complete(seq - window, window_end).await;
                }
                let t0 = aud.expect(seq);
                match p.publish(seq).await {
                    Ok(r) => {
                        let _ = http_hist.lock().record(ns_micros(d.now_ns() - t0));
                        dropped.fetch_add(r.dropped, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Not sent: not expected anywhere.
                        aud.unexpect(seq);
                        publish_errors.fetch_add(1, Ordering::Relaxed);
                        first_err.get_or_insert(format!("{e:#}"));
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            first_err
        });
    }
    // Deliveries per second while publishing.
    let mut timeline = Vec::new();
    let mut prev = delivered0;
    let mut tick = t_start;
    loop {
        tick += Duration::from_secs(1);
        if tick > end {
            break;
        }
        tokio::time::sleep_until(tick).await;
        let now = d.delivered();
        timeline.push(now - prev);
        prev = now;
        each_second();
    }
    let mut publish_error = None;
    while let Some(r) = workers.join_next().await {
        if let Ok(Some(e)) = r {
            publish_error.get_or_insert(e);
        }
    }
    let publish_end_ns = d.now_ns();
    let in_window = d.delivered() - delivered0;
    let seqs = start_seq..d.peek_seq();

    // Drain: every message to every member, or give up.
    let complete = d.drain(seqs.clone(), Instant::now() + opts.drain).await;
    let drained_ns = d.now_ns();
    let mut tally = d.tally(seqs.clone(), t_start_ns);
    if !complete {
        tally.t_last = drained_ns;
    }
    let sampled = d.sampled.lock().clone();
    let http = http_hist.lock().clone();
    Sustained {
        secs: opts.secs,
        window: opts.window,
        size: opts.size,
        inflight,
        members_at_start,
        seqs,
        tally,
        in_window,
        timeline,
        complete,
        t_start_ns,
        publish_end_ns,
        publish_errors: publish_errors.load(Ordering::Relaxed),
        publish_error,
        dropped: dropped.load(Ordering::Relaxed),
        sampled,
        http,
    }
}

impl Sustained {
    /// Publish call -> last member, per complete message, µs.
    pub fn last_member(&self) -> &Histogram<u64> {
        &self.tally.last_member
    }

    /// The run's figures: its settings (`secs`, `inflight`, `window`, `size`,
    /// `members_at_start`), publishing (`published`, `publishes_per_s`, `publish_errors`,
    /// `publish_error`, `dropped_reported`), deliveries (`deliveries`, `deliveries_per_s`,
    /// `deliveries_per_s_in_window`, `timeline_per_s`, `drain_ms`, `complete`, `losses`,
    /// `extra_deliveries`) and latencies (`last_member_ms_*`, `member_latency_ms_*`,
    /// `http_ms_*`, p50 and p99).
    pub fn json(&self) -> Value {
        let t = &self.tally;
        let total_s = (t.t_last.saturating_sub(self.t_start_ns)) as f64 / 1e9;
        let pub_s = (self.publish_end_ns - self.t_start_ns) as f64 / 1e9;
        json!({
            "secs": self.secs,
            "inflight": self.inflight,
            "window": self.window,
            "size": self.size,
            "members_at_start": self.members_at_start,
            "published": t.published,
            "publishes_per_s": round1(t.published as f64 / pub_s.max(1e-9)),
            "publish_errors": self.publish_errors,
            "publish_error": self.publish_error,
            "deliveries": t.deliveries,
            // Every delivery of every message published in the run, over the time from the
            // first publish call to the last delivery (drain included): the headline figure.
            "deliveries_per_s": round1(t.deliveries as f64 / total_s.max(1e-9)),
            // Deliveries counted while publishing, over the publishing time.
            "deliveries_per_s_in_window": round1(self.in_window as f64 / pub_s.max(1e-9)),
            "timeline_per_s": self.timeline,
            "drain_ms": round1((t.t_last.saturating_sub(self.publish_end_ns)) as f64 / 1e6),
            "complete": self.complete,
            "losses": t.losses,
            "extra_deliveries": t.extra,
            "dropped_reported": self.dropped,
            "last_member_ms_p50": quantile_ms(&t.last_member, 0.5),
            "last_member_ms_p99": quantile_ms(&t.last_member, 0.99),
            "member_latency_ms_p50": quantile_ms(&self.sampled, 0.5),
            "member_latency_ms_p99": quantile_ms(&self.sampled, 0.99),
            "http_ms_p50": quantile_ms(&self.http, 0.5),
            "http_ms_p99": quantile_ms(&self.http, 0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Members(Deliveries, usize);

    impl Audience for Members {
        fn deliveries(&self) -> &Deliveries {
            &self.0
        }
        fn members(&self) -> usize {
            self.1
        }
    }

    #[tokio::test]
    async fn a_message_completes_when_every_member_has_it() {
        let m = Members(Deliveries::new(16, Duration::from_millis(10)), 2);
        let seq = m.0.take_seq().unwrap();
        assert_eq!(seq, 1);
        let t0 = m.expect(seq);
        m.0.record(seq, t0 + 1_000, true);
        assert!(!m.0.complete(seq));
        assert_eq!(m.0.missing(seq), 1);
        m.0.record(seq, t0 + 5_000, false);
        assert!(m.0.complete(seq));
        assert!(m.0.wait_complete(seq, Instant::now()).await);
        let t = m.0.tally(1..2, t0);
        assert_eq!((t.published, t.deliveries, t.losses, t.extra), (1, 2, 0, 0));
        assert_eq!(t.t_last, t0 + 5_000);
        assert_eq!(m.0.sampled.lock().len(), 1);
    }

    #[tokio::test]
    async fn an_unpublished_message_is_not_counted() {
        let m = Members(Deliveries::new(4, Duration::from_millis(10)), 3);
        let seq = m.0.take_seq().unwrap();
        m.expect(seq);
        m.unexpect(seq);
        assert_eq!(m.0.tally(1..2, 0).published, 0);
        for _ in 2..4 {
            m.0.take_seq().unwrap();
        }
        assert!(m.0.take_seq().is_err());
        assert_eq!(m.0.peek_seq(), 4);
    }

    #[test]
    fn shot_figures() {
        let shot = |last: Option<u64>, missing| Shot {
            seq: 1,
            t0: 0,
            http_ns: 2_000_000,
            published: Published {
                recipients: 10,
                dropped: 1,
            },
            reach: match last {
                Some(l) => Reach::All {
                    first_ns: l / 2,
                    last_ns: l,
                },
                None => Reach::Missing(missing),
            },
        };
        let s = Shots {
            warmup_complete: true,
            shots: vec![
                shot(Some(4_000_000), 0),
                shot(None, 3),
                shot(Some(6_000_000), 0),
            ],
        };
        let sum = s.summary(|ns| ns as f64 / 1e6, crate::stats::median);
        assert_eq!(sum.last_ms, [4.0, 6.0]);
        assert_eq!(sum.last_median, Some(5.0));
        assert_eq!((sum.incomplete, sum.losses, sum.dropped), (1, 3, 3));
        let v = sum.json(10);
        assert_eq!(v["shots"], 3);
        assert_eq!(v["deliveries_per_s"], 2000.0);
    }
}

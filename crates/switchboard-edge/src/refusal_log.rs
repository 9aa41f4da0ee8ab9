//! How often a refused handshake is logged: the first refusal of each metric label, then at
//! most one line per label per [`INTERVAL`], which carries the count of those not logged.
//!
//! A client (or a botnet) retrying with a bad token would otherwise write a line per
//! attempt; the metric still counts every refusal. Sans-IO: the caller passes `now`.

use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

/// At most one line per label in this time.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// The log sampler, one per edge.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// One entry per label seen; labels are static strings from a fixed set (the
    /// authorizer's eight), so this stays that small.
    by_label: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    label: &'static str,
    /// When the next line of this label may be written.
    next: Instant,
    /// Refusals of this label not logged since its last line.
    suppressed: u64,
}

impl RefusalLog {
    /// Whether to log a refusal counted under `label` at `now`: `Some(n)` to log it, with
    /// `n` refusals of that label not logged since the last line; `None` to stay quiet.
    pub(crate) fn admit(&self, label: &'static str, now: Instant) -> Option<u64> {
        let mut by_label = self.by_label.lock();
        let Some(e) = by_label.iter_mut().find(|e| e.label == label) else {
            by_label.push(Entry {
                label,
                next: now + INTERVAL,
                suppressed: 0,
            });
            return Some(0);
        };
        if now < e.next {
            e.suppressed += 1;
            return None;
        }
        e.next = now + INTERVAL;
        Some(std::mem::take(&mut e.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_of_each_label_then_one_per_interval_with_the_count_suppressed() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(log.admit("auth_expired", t0), Some(0));
        // Another label is not held back by the first.
        assert_eq!(log.admit("auth_missing", ms(1)), Some(0));
        for i in 0..100 {
            assert_eq!(log.admit("auth_expired", ms(2 + i)), None);
        }
        assert_eq!(log.admit("auth_missing", ms(999)), None);
        // The interval is measured from the last line written.
        assert_eq!(log.admit("auth_expired", ms(1000)), Some(100));
        assert_eq!(log.admit("auth_missing", ms(1001)), Some(1));
        assert_eq!(log.admit("auth_expired", ms(1999)), None);
        assert_eq!(log.admit("auth_expired", ms(2000)), Some(1));
        // A quiet label logs its next refusal at once, with nothing left out.
        assert_eq!(log.admit("auth_expired", ms(60_000)), Some(0));
    }
}

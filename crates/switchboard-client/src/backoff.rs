//! Reconnect timing: exponential backoff with jitter.

use std::time::Duration;

/// When and how often the client reconnects after its socket drops.
///
/// The delay before attempt `n` (1, 2, ...) is drawn uniformly from
/// `[d/2, d]` where `d = min(cap, base * 2^(n-1))` ("equal jitter": never a burst at
/// the same instant from many clients, never much shorter than planned). The count starts
/// over once a connection is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt, before jitter. Default 250 ms.
    pub base: Duration,
    /// Largest delay, before jitter. Default 10 s.
    pub cap: Duration,
    /// Consecutive failed attempts after which the client gives up with
    /// [`Event::Closed`](crate::Event::Closed) 1006. `Some(0)`: never reconnect.
    /// `None`: forever. Default `None`.
    pub max_attempts: Option<u32>,
    /// Close codes from the server after which the client reconnects (with a fresh
    /// session: a clean close ends the old one) instead of closing. Default 1001 (going
    /// away: shutdown, idle or ping timeout), 1005 (no code), 1011 (internal error), 1012
    /// (restart), 1013 (try again later), 1014 (bad gateway). Not 1008 (rate limit,
    /// credentials expired): add it when the token hook can fetch a fresh credential.
    pub reconnect_on_close: Vec<u16>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            max_attempts: None,
            reconnect_on_close: vec![1001, 1005, 1011, 1012, 1013, 1014],
        }
    }
}

impl ReconnectPolicy {
    /// No reconnects: the first drop closes the client.
    pub fn never() -> Self {
        Self {
            max_attempts: Some(0),
            reconnect_on_close: Vec::new(),
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt` (from 1), or `None` when the policy gives up.
    /// `unit` in `[0, 1]` picks the point in the jitter range (random in use, fixed in
    /// tests).
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(32);
        let d = self
            .base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = d / 2;
        Some(half + half.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_gives_up() {
        let p = ReconnectPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: Some(6),
            ..Default::default()
        };
        let ms = |a, u| p.delay(a, u).map(|d| d.as_millis());
        assert_eq!(ms(1, 1.0), Some(100));
        assert_eq!(ms(1, 0.0), Some(50));
        assert_eq!(ms(2, 1.0), Some(200));
        assert_eq!(ms(4, 1.0), Some(800));
        assert_eq!(ms(5, 1.0), Some(1000));
        assert_eq!(ms(6, 0.5), Some(750));
        assert_eq!(ms(7, 1.0), None);
        let forever = ReconnectPolicy {
            max_attempts: None,
            ..p
        };
        assert_eq!(forever.delay(1000, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(ReconnectPolicy::never().delay(1, 1.0), None);
    }
}

//! Rate limiting as a token bucket that is told the time instead of reading a clock.

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns` (nanoseconds from any fixed origin).
    pub fn new(rate: u32, burst: u32, now_ns: u64) -> Self {
        Self {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last_ns: now_ns,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ns` (an idle client; its state can be dropped).
    pub fn is_full(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.tokens >= self.burst
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last_ns = now_ns.max(self.last_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 5, 0);
        assert!((0..5).all(|_| b.try_take(0)));
        assert!(!b.try_take(0));
        assert!(b.try_take(S / 10));
        assert!(!b.try_take(S / 10));
        assert!(b.is_full(10 * S));
        assert!((0..5).all(|_| b.try_take(10 * S)));
        assert!(!b.try_take(10 * S));
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut b = TokenBucket::new(1, 1, 5 * S);
        assert!(b.try_take(5 * S));
        assert!(!b.try_take(S));
        assert!(b.try_take(6 * S));
    }
}

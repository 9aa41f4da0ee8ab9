//! Latency histograms and the rounding of the figures the binaries print.
//!
//! Latencies are recorded in microseconds, 1 µs to 120 s, 3 significant digits.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Largest latency a histogram holds, µs.
const MAX_MICROS: u64 = 120_000_000;

/// An empty latency histogram (µs).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("histogram bounds")
}

/// `d` in whole µs, clamped into the histograms' range.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// `ns` nanoseconds in whole µs, clamped into the histograms' range.
pub fn ns_micros(ns: u64) -> u64 {
    (ns / 1000).clamp(1, MAX_MICROS)
}

/// `x` rounded to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to two decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `q` quantile of a µs histogram in ms, one decimal; `null` when it is empty.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        json!(round1(h.value_at_quantile(q) as f64 / 1000.0))
    }
}

/// The maximum of a µs histogram in ms, one decimal; `null` when it is empty.
pub fn max_ms(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        json!(round1(h.max() as f64 / 1000.0))
    }
}

/// The median (the mean of the middle two for an even count); `None` when `v` is empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// `n` zeroed counters.
pub fn atomics32(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

/// `n` zeroed counters.
pub fn atomics64(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn clamps_into_the_histogram_range() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(ns_micros(2_500), 2);
        assert_eq!(micros(Duration::from_secs(1000)), MAX_MICROS);
        let mut h = new_hist();
        assert_eq!(quantile_ms(&h, 0.5), Value::Null);
        h.record(1500).unwrap();
        assert_eq!(quantile_ms(&h, 0.5), json!(1.5));
        assert_eq!(max_ms(&h), json!(1.5));
    }
}

//! The one driver for switchboard's fuzz and property targets, on the stable toolchain.
//!
//! Why proptest rather than cargo-fuzz or bolero: cargo-fuzz (libFuzzer) needs nightly,
//! which this project cannot install; bolero's stable mode is a random-input loop with
//! no shrinking. proptest gives structure-aware generators (frames, heads, JSON, TOML)
//! composed from combinators, and shrinks a failure to a minimal input, which becomes
//! the named regression test.
//!
//! A target is a `#[test]` whose name starts with `fuzz_` and calls [`run`]. How long it
//! runs comes from the environment, so the same target serves CI and long hunts:
//!
//! - `FUZZ_SECS=n`: run new random cases until `n` seconds have passed (the long mode,
//!   `FUZZ_SECS=600 scripts/fuzz.sh`); the count is printed as
//!   `fuzz <name>: <cases> cases in <secs> s`.
//! - otherwise a fixed budget of cases: the target's own `cases` times `FUZZ_SCALE`
//!   (default 1), from a seed derived from the target's name, so CI is reproducible.
//! - `FUZZ_SEED=<hex>` replays one seed (printed with every failure).
//!
//! A failure panics with the shrunk input and the seed.
#![forbid(unsafe_code)]
// The time budget is wall-clock time of a synchronous loop with no runtime to pause, so
// the project's ban on std's Instant (there to let tokio tests pause time) does not apply.
#![allow(clippy::disallowed_types)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

pub use proptest;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// What a target's body returns: `Err` (via `prop_assert!` and friends) fails the case.
pub type Outcome = Result<(), TestCaseError>;

/// Runs `test` on inputs drawn from `strategy`: `cases` of them in the fixed mode
/// (scaled by `FUZZ_SCALE`), or as many as fit in `FUZZ_SECS` seconds.
pub fn run<S, F>(name: &str, cases: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Outcome,
{
    let secs = env_u64("FUZZ_SECS");
    let fixed_seed = std::env::var("FUZZ_SEED").ok().map(|s| parse_seed(&s));
    let scale = env_u64("FUZZ_SCALE").unwrap_or(1).max(1);
    let started = Instant::now();
    let mut total: u64 = 0;
    let mut round: u64 = 0;
    loop {
        let seed = match (fixed_seed, secs) {
            (Some(seed), _) => seed,
            (None, Some(_)) => fresh_seed(round),
            (None, None) => name_seed(name),
        };
        // In the timed mode, batches of a few thousand so the clock is checked often.
        let batch = match secs {
            Some(_) if fixed_seed.is_none() => cases.clamp(256, 4096),
            _ => cases
                .saturating_mul(scale.min(u32::MAX as u64) as u32)
                .max(1),
        };
        let config = Config {
            cases: batch,
            failure_persistence: None,
            max_shrink_iters: 4096,
            max_global_rejects: batch.saturating_mul(4),
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
        let mut runner = TestRunner::new_with_rng(config, rng);
        match runner.run(&strategy, &test) {
            Ok(()) => {}
            Err(TestError::Fail(reason, input)) => panic!(
                "fuzz {name}: failed after {total} cases: {reason}\n  minimal input: {input:#?}\n  replay: FUZZ_SEED={} cargo test {name}",
                hex(&seed)
            ),
            Err(TestError::Abort(reason)) => {
                panic!("fuzz {name}: aborted ({reason}); seed {}", hex(&seed))
            }
        }
        total += u64::from(batch);
        round += 1;
        match secs {
            Some(s) if fixed_seed.is_none() && started.elapsed() < Duration::from_secs(s) => {}
            _ => break,
        }
    }
    println!(
        "fuzz {name}: {total} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// A stable seed per target, so a CI failure replays exactly.
fn name_seed(name: &str) -> [u8; 32] {
    let mut seed = [0u8; 32];
    // FNV-1a over the name, spread across the seed; not cryptographic, only stable.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        for b in name.bytes().chain(std::iter::once(i as u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    seed
}

/// A new seed per round of the timed mode, from the clock and the round number.
fn fresh_seed(round: u64) -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    name_seed(&format!("{nanos}:{round}:{}", std::process::id()))
}

fn hex(seed: &[u8; 32]) -> String {
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_seed(s: &str) -> [u8; 32] {
    let s = s.trim();
    let mut seed = [0u8; 32];
    assert!(
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "FUZZ_SEED must be 64 hex digits"
    );
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digit");
    }
    seed
}

/// Splits `data` at the given cut points (taken modulo the length, sorted, deduplicated):
/// the pieces a stream delivers when the network cuts it there. Targets use it to check
/// that a parser agrees with itself however its input is split.
pub fn split_at_points<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    if data.is_empty() {
        return vec![data];
    }
    let mut points: Vec<usize> = cuts.iter().map(|c| c % data.len()).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for p in points {
        if p > start {
            pieces.push(&data[start..p]);
            start = p;
        }
    }
    pieces.push(&data[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_pieces_rejoin_to_the_input() {
        let data = b"hello world";
        let pieces = split_at_points(data, &[3, 3, 40, 0, 10]);
        assert_eq!(pieces.concat(), data);
        assert!(pieces.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn seeds_are_stable_per_name_and_differ_between_names() {
        assert_eq!(name_seed("a"), name_seed("a"));
        assert_ne!(name_seed("a"), name_seed("b"));
        assert_eq!(parse_seed(&hex(&name_seed("x"))), name_seed("x"));
    }

    #[test]
    #[should_panic(expected = "minimal input")]
    fn a_failing_property_panics_with_its_input() {
        run("always_fails_above_ten", 64, 0u32..1000, |n| {
            prop_assert!(n < 10);
            Ok(())
        });
    }

    #[test]
    fn fuzz_harness_counts_its_cases() {
        run("fuzz_harness_counts_its_cases", 32, any::<u8>(), |_| Ok(()));
    }
}

//! `schema_check`: the CPU cost of checking one message against a route's schema, as the
//! gateway does before invoking the function (`switchboard_core::schema`: parse the
//! message as JSON, validate it). A timing loop on one thread, no sockets: a 200-byte
//! chat message (or `--message`) against a small chat schema (or `--schema`), `--iters`
//! checks per round, `--rounds` rounds; prints one JSON line with the ns per check of
//! every round and their median. `bench/schema.sh` builds and runs it.

use std::hint::black_box;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use switchboard_core::schema::MessageSchema;
use tokio::time::Instant;

/// The schema of a chat `send` route: the kind of schema the target (≤ 2 µs) is about.
const CHAT_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["action", "room", "text"],
  "properties": {
    "action": {"const": "send"},
    "room": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    "text": {"type": "string", "minLength": 1, "maxLength": 1000},
    "replyTo": {"type": "string", "maxLength": 64},
    "mentions": {"type": "array", "items": {"type": "string"}, "maxItems": 16}
  },
  "additionalProperties": false
}"#;

/// A 200-byte message that passes [`CHAT_SCHEMA`].
const CHAT_MESSAGE: &str = r#"{"action":"send","room":"general-42","text":"Hello everyone, the deploy finished a minute ago; reload the dashboard and tell me if anything looks off.","replyTo":"m-7f3a9c","mentions":["alice","bob"]}"#;

#[derive(Parser)]
struct Opt {
    /// Schema file (default: a small chat schema).
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Message file, which must pass the schema (default: a 200-byte chat message).
    #[arg(long)]
    message: Option<PathBuf>,
    /// Checks per round (at most 100,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    iters: u64,
    /// Rounds (at most 100).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() -> Result<()> {
    let opt = Opt::parse();
    if opt.iters == 0 || opt.iters > 100_000_000 || opt.rounds == 0 || opt.rounds > 100 {
        bail!("--iters is 1..=100000000 and --rounds 1..=100");
    }
    let schema = match &opt.schema {
        Some(path) => MessageSchema::load(path).map_err(anyhow::Error::msg)?,
        None => MessageSchema::from_slice(CHAT_SCHEMA.as_bytes()).map_err(anyhow::Error::msg)?,
    };
    let message = match &opt.message {
        Some(path) => std::fs::read(path).with_context(|| path.display().to_string())?,
        None => CHAT_MESSAGE.as_bytes().to_vec(),
    };
    if let Err(errors) = schema.check(&message) {
        bail!("the message does not pass the schema: {errors:?}");
    }
    // Warm caches and the branch predictor before timing.
    for _ in 0..opt.iters.min(10_000) {
        black_box(schema.check(black_box(&message)).is_ok());
    }
    let mut per_check_ns: Vec<f64> = (0..opt.rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..opt.iters {
                black_box(schema.check(black_box(&message)).is_ok());
            }
            start.elapsed().as_nanos() as f64 / opt.iters as f64
        })
        .collect();
    let rounds = per_check_ns.clone();
    per_check_ns.sort_by(f64::total_cmp);
    let median = per_check_ns[per_check_ns.len() / 2];
    println!(
        "{}",
        json!({
            "message_bytes": message.len(),
            "iters": opt.iters,
            "ns_per_check": rounds.iter().map(|n| (n * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "median_ns_per_check": (median * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

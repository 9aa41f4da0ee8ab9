//! A measurement, not an assertion: the warm round trip of an invocation through a
//! Lambda worker whose handler returns at once, against the handler's own running time.
//! The difference is what the pool, the runtime API and the runtime's loop add (budget:
//! 300 µs at p50 through the bundled Python bootstrap, in a release build). A test binary
//! of its own, so other tests' processes do not share the CPU while it runs. See it with
//!
//! ```text
//! cargo test --release -p switchboard-functions --test lambda_overhead -- --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::config::LambdaFunctionConfig;
use switchboard_core::event::{ApiIdentity, ConnectionInfo, EventKind, Invocation, Payload};
use switchboard_core::id::IdGenerator;
use switchboard_functions::lambda::LambdaInvoker;
use switchboard_functions::{Invoker, RuntimeContext};
use tokio::time::Instant;

const WARMUP: usize = 200;
const SAMPLES: usize = 1000;

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lambda")
        .join(kind)
}

fn config(runtime: &str, handler: &str) -> LambdaFunctionConfig {
    LambdaFunctionConfig {
        command: Vec::new(),
        runtime: Some(runtime.to_owned()),
        handler: handler.to_owned(),
        dir: fixtures(runtime),
        env: Default::default(),
        timeout_ms: 10_000,
        max_concurrency: 1,
        min_warm: 0,
        idle_secs: 300,
        memory_mb: 0,
        max_queue: 16,
    }
}

fn invocation(ids: &IdGenerator, connection: &Arc<ConnectionInfo>) -> Invocation {
    Invocation {
        kind: EventKind::Message,
        route_key: Arc::from("$default"),
        connection: Arc::clone(connection),
        request_id: ids.request_id(),
        request_time_ms: 1_731_324_924_561,
        body: Some(Payload {
            data: Bytes::from_static(b"{\"action\":\"fast\"}"),
            binary: false,
        }),
        disconnect: None,
        extension: None,
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Runs the measurement for one runtime and prints one line.
async fn measure(label: &str, cfg: LambdaFunctionConfig) {
    let runtime = RuntimeContext {
        management_url: "http://127.0.0.1:9/prod".into(),
        access_key_id: "AK".into(),
        secret_access_key: "SK".into(),
        bearer_token: "T".into(),
        region: "us-east-1".into(),
    };
    let api = ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    };
    let invoker = LambdaInvoker::start("overhead", &cfg, api, &runtime).unwrap();
    let ids = IdGenerator::new("overhead");
    let connection = common::invocation(EventKind::Message, None).connection;

    for _ in 0..WARMUP {
        invoker
            .invoke(invocation(&ids, &connection))
            .await
            .expect("warm-up invocation");
    }
    let mut round_trips = Vec::with_capacity(SAMPLES);
    let mut handler_times = Vec::with_capacity(SAMPLES);
    let mut overheads = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let inv = invocation(&ids, &connection);
        let begun = Instant::now();
        let response = invoker.invoke(inv).await.expect("invocation");
        let round_trip = begun.elapsed();
        let body = response.body.expect("the handler's time");
        let handler_ns: u64 = std::str::from_utf8(&body.data).unwrap().parse().unwrap();
        let handler = Duration::from_nanos(handler_ns);
        round_trips.push(round_trip);
        handler_times.push(handler);
        overheads.push(round_trip.saturating_sub(handler));
    }
    round_trips.sort();
    handler_times.sort();
    overheads.sort();
    println!(
        "lambda warm round trip [{label}, {} build, {SAMPLES} invocations]: \
         p50 {:?} p90 {:?} p99 {:?}; handler p50 {:?}; added p50 {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        percentile(&round_trips, 50),
        percentile(&round_trips, 90),
        percentile(&round_trips, 99),
        percentile(&handler_times, 50),
        percentile(&overheads, 50),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_round_trip_overhead() {
    measure("python bootstrap", config("python", "app.fast")).await;
    measure("node bootstrap", config("node", "app.fast")).await;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if python.exists() {
        let mut cfg = config("python", "app.fast");
        cfg.runtime = None;
        cfg.command = vec![
            python.to_string_lossy().into_owned(),
            "-m".into(),
            "awslambdaric".into(),
            "app.fast".into(),
        ];
        measure("awslambdaric", cfg).await;
    }
}

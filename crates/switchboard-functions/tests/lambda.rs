//! The Lambda invoker with real worker processes: the real `awslambdaric` (from the
//! repo's `.venv`, installed by `scripts/install-deps.sh`) and both bundled bootstraps
//! against the runtime API, then the pool's behaviour (scaling, queueing, timeouts,
//! crashes, idle stop, init failures, restarts) with the Python bootstrap. Handlers are
//! in `tests/fixtures/lambda/`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_core::config::LambdaFunctionConfig;
use switchboard_core::event::{ApiIdentity, EventKind, FunctionResponse, Invocation};
use switchboard_functions::lambda::LambdaInvoker;
use switchboard_functions::{InvokeError, Invoker, RuntimeContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lambda")
        .join(kind)
}

/// The repo's venv Python with awslambdaric, or a failure saying how to get it.
fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import awslambdaric"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with awslambdaric is missing: run scripts/install-deps.sh",
        python.display()
    );
    python
}

fn config(runtime: &str, handler: &str) -> LambdaFunctionConfig {
    let mut env = std::collections::BTreeMap::new();
    env.insert("FIXTURE_EXTRA".to_owned(), "extra-value".to_owned());
    LambdaFunctionConfig {
        command: Vec::new(),
        runtime: Some(runtime.to_owned()),
        handler: handler.to_owned(),
        dir: fixtures(runtime),
        env,
        timeout_ms: 10_000,
        max_concurrency: 2,
        min_warm: 0,
        idle_secs: 300,
        memory_mb: 0,
        max_queue: 16,
    }
}

fn awslambdaric(handler: &str) -> LambdaFunctionConfig {
    let mut cfg = config("python", handler);
    cfg.runtime = None;
    cfg.command = vec![
        venv_python().to_string_lossy().into_owned(),
        "-m".into(),
        "awslambdaric".into(),
        handler.into(),
    ];
    cfg
}

fn runtime_context() -> RuntimeContext {
    RuntimeContext {
        management_url: "http://127.0.0.1:9/prod".into(),
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret-test".into(),
        bearer_token: "token-test".into(),
        region: "eu-west-3".into(),
    }
}

fn api() -> ApiIdentity {
    ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc123".into(),
    }
}

fn start(name: &str, cfg: &LambdaFunctionConfig) -> LambdaInvoker {
    init_logs();
    LambdaInvoker::start(name, cfg, api(), &runtime_context()).expect("the pool starts")
}

fn invocation(body: &Value) -> Invocation {
    common::invocation(EventKind::Message, Some(Bytes::from(body.to_string())))
}

async fn call(invoker: &LambdaInvoker, body: Value) -> Result<FunctionResponse, InvokeError> {
    invoker.invoke(invocation(&body)).await
}

fn body_json(response: &FunctionResponse) -> Value {
    let body = response.body.as_ref().expect("a body");
    serde_json::from_slice(&body.data).expect("a JSON body")
}

fn pid_of(response: &FunctionResponse) -> u64 {
    body_json(response)["pid"].as_u64().expect("a pid")
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `what` every 50 ms for up to `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < end, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-lambda-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One raw HTTP/1.1 request to a worker's runtime API; the status code.
async fn raw_status(api_addr: &str, method: &str, path: &str, body: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(api_addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api_addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

/// The runtime API contract, through whichever runtime `cfg` starts.
async fn check_runtime_api(cfg: LambdaFunctionConfig, error_type: &str) {
    let invoker = start("fixture-fn", &cfg);

    // next + response: the event, the context and the environment the handler saw.
    let sent = json!({"action": "echo", "n": 1});
    let inv = invocation(&sent);
    let request_id = inv.request_id.clone();
    let response = invoker.invoke(inv).await.expect("echo answers");
    assert_eq!(response.status, 200);
    assert!(response
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-fixture")));
    let seen = body_json(&response);
    let event = &seen["event"];
    assert_eq!(event["requestContext"]["routeKey"], "sendmessage");
    assert_eq!(event["requestContext"]["requestId"], request_id.as_str());
    assert_eq!(event["requestContext"]["stage"], "prod");
    assert_eq!(event["body"], sent.to_string());
    let ctx = &seen["context"];
    assert_eq!(ctx["aws_request_id"], request_id.as_str());
    assert_eq!(ctx["function_name"], "fixture-fn");
    assert_eq!(ctx["memory_limit_in_mb"], "128");
    assert_eq!(
        ctx["invoked_function_arn"],
        "arn:aws:lambda:eu-west-3:000000000000:function:fixture-fn"
    );
    let remaining = ctx["remaining_ms"].as_i64().unwrap();
    assert!(
        remaining > 0 && remaining <= 10_000,
        "remaining {remaining}"
    );
    let dir = std::fs::canonicalize(&cfg.dir).unwrap();
    assert_eq!(
        std::fs::canonicalize(seen["cwd"].as_str().unwrap()).unwrap(),
        dir
    );
    let env = &seen["env"];
    assert_eq!(
        std::fs::canonicalize(env["LAMBDA_TASK_ROOT"].as_str().unwrap()).unwrap(),
        dir
    );
    assert_eq!(env["_HANDLER"], cfg.handler.as_str());
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "fixture-fn");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_REGION"], "eu-west-3");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-3");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/fixture-fn");
    assert!(env["AWS_LAMBDA_LOG_STREAM_NAME"]
        .as_str()
        .unwrap()
        .contains("[$LATEST]"));
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIDTEST");
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "secret-test");
    assert_eq!(
        env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"],
        "http://127.0.0.1:9/prod"
    );
    assert_eq!(env["SWITCHBOARD_MANAGEMENT_URL"], "http://127.0.0.1:9/prod");
    assert_eq!(env["SWITCHBOARD_TOKEN"], "token-test");
    assert_eq!(env["FIXTURE_EXTRA"], "extra-value");
    let api_addr = env["AWS_LAMBDA_RUNTIME_API"].as_str().unwrap().to_owned();
    assert!(api_addr.starts_with("127.0.0.1:"), "{api_addr}");
    let pid = pid_of(&response);

    // Posts for a request id the worker is not running: 400, as AWS; unknown paths 404.
    let bogus = "/2018-06-01/runtime/invocation/not-a-request/response";
    assert_eq!(raw_status(&api_addr, "POST", bogus, "{}").await, 400);
    let bogus = "/2018-06-01/runtime/invocation/not-a-request/error";
    assert_eq!(raw_status(&api_addr, "POST", bogus, "{}").await, 400);
    assert_eq!(raw_status(&api_addr, "GET", "/nope", "").await, 404);

    // error: the handler raised.
    let err = call(&invoker, json!({"action": "fail"})).await.unwrap_err();
    let expected = format!("{error_type}: bad input");
    assert_eq!(err, InvokeError::Failed(expected));

    // The same warm worker answered everything so far.
    let again = call(&invoker, json!({"action": "echo"})).await.unwrap();
    assert_eq!(pid_of(&again), pid, "the warm worker is reused");

    // A response over 6 MiB: 413 to the runtime, a failure to the caller; the function
    // keeps working (on this worker or a fresh one, depending on the runtime).
    let err = call(&invoker, json!({"action": "big"})).await.unwrap_err();
    assert_eq!(
        err,
        InvokeError::Failed("function response exceeds 6 MiB".into())
    );
    let after = call(&invoker, json!({"action": "echo"})).await.unwrap();
    assert_eq!(after.status, 200);
}

/// An init failure through whichever runtime `cfg` starts.
async fn check_init_error(cfg: LambdaFunctionConfig) {
    let invoker = start("broken-fn", &cfg);
    let err = call(&invoker, json!({})).await.unwrap_err();
    let InvokeError::Failed(message) = err else {
        panic!("expected a failure, got {err:?}")
    };
    assert!(message.starts_with("init error: "), "{message}");
    assert!(message.contains("broken at import"), "{message}");
    eventually(Duration::from_secs(3), "the broken worker is gone", || {
        invoker.stats().workers == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awslambdaric_runtime_api() {
    check_runtime_api(awslambdaric("app.main"), "ValueError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awslambdaric_init_error() {
    check_init_error(awslambdaric("broken.main")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bootstrap_runtime_api() {
    check_runtime_api(config("python", "app.main"), "ValueError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bootstrap_init_error() {
    check_init_error(config("python", "broken.main")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bootstrap_runtime_api() {
    check_runtime_api(config("node", "app.main"), "Error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bootstrap_init_error() {
    check_init_error(config("node", "broken.main")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bootstrap_commonjs_callback_handler() {
    let invoker = start("cjs-fn", &config("node", "callback.handler"));
    let inv = invocation(&json!({}));
    let request_id = inv.request_id.clone();
    let response = invoker.invoke(inv).await.unwrap();
    assert_eq!(response.status, 201);
    let body = response.body.unwrap();
    assert_eq!(&body.data[..], format!("callback {request_id}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_from_zero() {
    let invoker = start("scale-fn", &config("python", "app.main"));
    // A negative check, so it has to let time pass: nothing starts by itself meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        invoker.stats().workers,
        0,
        "no worker before the first invocation"
    );
    let response = call(&invoker, json!({"action": "echo"})).await.unwrap();
    assert!(alive(pid_of(&response)));
    assert_eq!(invoker.stats().workers, 1);
    // It polls for the next event right after answering.
    eventually(Duration::from_secs(2), "the worker waits for more", || {
        invoker.stats().idle == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_capped() {
    let mut cfg = config("python", "app.main");
    cfg.max_concurrency = 2;
    let invoker = Arc::new(start("cap-fn", &cfg));
    let calls: Vec<_> = (0..5)
        .map(|_| invoker.invoke(invocation(&json!({"action": "sleep", "secs": 0.4}))))
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (invoker, done) = (Arc::clone(&invoker), Arc::clone(&done));
        // Samples the worker count every 25 ms until every call has answered.
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                most = most.max(invoker.stats().workers);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            most
        })
    };
    let mut pids = BTreeSet::new();
    for call in calls {
        pids.insert(pid_of(&call.await.expect("queued invocations run")));
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(
        pids.len(),
        2,
        "N+1 invocations ran on exactly N workers: {pids:?}"
    );
    assert!(watcher.await.unwrap() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_throttles_at_once() {
    let mut cfg = config("python", "app.main");
    cfg.max_concurrency = 1;
    cfg.max_queue = 1;
    let invoker = start("queue-fn", &cfg);
    let slow = json!({"action": "sleep", "secs": 0.3});
    // The first starts a worker; the second waits for it; the third finds the queue full.
    let first = invoker.invoke(invocation(&slow));
    let second = invoker.invoke(invocation(&slow));
    let begun = Instant::now();
    let third = invoker.invoke(invocation(&slow)).await;
    assert_eq!(third.unwrap_err(), InvokeError::Throttled);
    assert!(
        begun.elapsed() < Duration::from_millis(50),
        "throttled without waiting"
    );
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(pid_of(&a), pid_of(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_worker() {
    let mut cfg = config("python", "app.main");
    cfg.timeout_ms = 1500;
    let invoker = start("timeout-fn", &cfg);
    // Warm first, so the timed invocation is all handler time.
    let warm = call(&invoker, json!({"action": "echo"})).await.unwrap();
    let dir = scratch("timeout");
    let pidfile = dir.join("pid");
    let begun = Instant::now();
    let err = call(
        &invoker,
        json!({"action": "sleep", "secs": 30, "pidfile": pidfile}),
    )
    .await
    .unwrap_err();
    let took = begun.elapsed();
    assert_eq!(err, InvokeError::Timeout);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    let pid: u64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(pid, pid_of(&warm));
    eventually(
        Duration::from_secs(3),
        "the timed-out worker is killed",
        || !alive(pid),
    )
    .await;
    let next = call(&invoker, json!({"action": "echo"})).await.unwrap();
    assert_ne!(pid_of(&next), pid, "a fresh worker took over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_fails_the_invocation_and_respawns() {
    let invoker = start("crash-fn", &config("python", "app.main"));
    let first = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    let err = call(&invoker, json!({"action": "crash"}))
        .await
        .unwrap_err();
    assert_eq!(err, InvokeError::Failed("worker crashed".into()));
    let next = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    assert_ne!(next, first);
    assert!(!alive(first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_stop() {
    let mut cfg = config("python", "app.main");
    cfg.idle_secs = 1;
    let invoker = start("idle-fn", &cfg);
    let pid = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    assert_eq!(invoker.stats().workers, 1);
    eventually(Duration::from_secs(4), "the idle worker stops", || {
        invoker.stats().workers == 0 && !alive(pid)
    })
    .await;
    // And the next invocation scales from zero again.
    call(&invoker, json!({"action": "echo"})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_warm_workers_start_at_once_and_stay() {
    let mut cfg = config("python", "app.main");
    cfg.idle_secs = 1;
    cfg.min_warm = 1;
    let invoker = start("warm-fn", &cfg);
    eventually(Duration::from_secs(5), "a warm worker is ready", || {
        invoker.stats().idle == 1
    })
    .await;
    // The time passing is what is tested: well past idle_secs (1 s) and its upkeep.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(invoker.stats().workers, 1, "min_warm outlives idle_secs");
    assert_eq!(invoker.stats().idle, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_before_polling_is_an_init_error() {
    let mut cfg = config("python", "app.main");
    cfg.runtime = None;
    cfg.command = vec![
        "sh".into(),
        "-c".into(),
        "echo no such runtime >&2; exit 3".into(),
    ];
    let invoker = start("exit-fn", &cfg);
    let err = call(&invoker, json!({})).await.unwrap_err();
    assert_eq!(
        err,
        InvokeError::Failed(
            "init error: process exited (exit status: 3) before polling for an event: \
             no such runtime"
                .into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_is_an_init_error() {
    let mut cfg = config("python", "app.main");
    cfg.runtime = None;
    cfg.command = vec!["/nonexistent/worker".into()];
    let invoker = start("missing-fn", &cfg);
    let err = call(&invoker, json!({})).await.unwrap_err();
    let InvokeError::Failed(message) = err else {
        panic!("expected a failure, got {err:?}")
    };
    assert!(
        message.starts_with("init error: cannot start /nonexistent/worker: "),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_errors_back_off_until_restart() {
    let dir = scratch("backoff");
    let log = dir.join("attempts");
    std::fs::copy(fixtures("python").join("broken.py"), dir.join("handler.py")).unwrap();
    let mut cfg = config("python", "handler.main");
    cfg.dir = dir.clone();
    cfg.env
        .insert("BROKEN_LOG".into(), log.to_string_lossy().into_owned());
    let invoker = start("backoff-fn", &cfg);
    let attempts = || {
        std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let is_init_error = |r: Result<FunctionResponse, InvokeError>| {
        matches!(r, Err(InvokeError::Failed(m)) if m.starts_with("init error: ")
            && m.contains("broken at import"))
    };

    // First failure: the invocation fails; a backoff of 1 s begins.
    assert!(is_init_error(call(&invoker, json!({})).await));
    let failed_at = Instant::now();
    assert_eq!(attempts(), 1);
    // During the backoff: failed at once, no new process.
    let begun = Instant::now();
    assert!(is_init_error(call(&invoker, json!({})).await));
    assert!(begun.elapsed() < Duration::from_millis(100));
    assert_eq!(attempts(), 1);
    // Calls fail at once until the backoff ends; then one new attempt, which fails and
    // doubles the backoff to 2 s.
    let retried = retry_until_attempt(&invoker, &attempts, 2).await;
    assert!(
        // The pool's clock started a moment before ours.
        retried >= failed_at + Duration::from_millis(900),
        "a new attempt after {:?} of a 1 s backoff",
        retried - failed_at
    );
    let retried_again = retry_until_attempt(&invoker, &attempts, 3).await;
    assert!(
        retried_again >= retried + Duration::from_millis(1800),
        "a new attempt after {:?} of a 2 s backoff",
        retried_again - retried
    );

    // Fixed code and a restart: no waiting for the backoff, and it works.
    std::fs::copy(fixtures("python").join("app.py"), dir.join("handler.py")).unwrap();
    invoker.restart_workers();
    let response = call(&invoker, json!({"action": "echo"})).await.unwrap();
    assert_eq!(response.status, 200);
}

/// Calls (each failing with the init error) until the broken handler has been started
/// `n` times; returns when that attempt's call failed.
async fn retry_until_attempt(
    invoker: &LambdaInvoker,
    attempts: &impl Fn() -> usize,
    n: usize,
) -> Instant {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(invoker, json!({})).await;
        assert!(
            matches!(&r, Err(InvokeError::Failed(m)) if m.starts_with("init error: ")),
            "{r:?}"
        );
        if attempts() >= n {
            assert_eq!(attempts(), n, "one attempt per backoff");
            return Instant::now();
        }
        assert!(Instant::now() < end, "no attempt {n} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_idle_workers_and_lets_busy_ones_finish() {
    let invoker = Arc::new(start("restart-fn", &config("python", "app.main")));
    // One worker busy for a while, a second one idle.
    let busy = tokio::spawn(invoker.invoke(invocation(&json!({"action": "sleep", "secs": 1.0}))));
    eventually(
        Duration::from_secs(10),
        "a worker takes the slow call",
        || {
            let s = invoker.stats();
            s.workers == 1 && s.starting == 0 && s.queued == 0 && s.idle == 0
        },
    )
    .await;
    let idle_pid = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    assert_eq!(invoker.stats().workers, 2);

    invoker.restart_workers();
    eventually(
        Duration::from_secs(3),
        "the idle worker stops at once",
        || !alive(idle_pid),
    )
    .await;
    let busy_response = busy
        .await
        .unwrap()
        .expect("the busy worker finishes its invocation");
    let busy_pid = pid_of(&busy_response);
    assert_ne!(busy_pid, idle_pid);
    eventually(
        Duration::from_secs(3),
        "the busy worker stops after it",
        || !alive(busy_pid),
    )
    .await;

    let fresh = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    assert!(fresh != idle_pid && fresh != busy_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_invoker_stops_its_workers() {
    let invoker = start("drop-fn", &config("python", "app.main"));
    let pid = pid_of(&call(&invoker, json!({"action": "echo"})).await.unwrap());
    drop(invoker);
    eventually(
        Duration::from_secs(3),
        "workers stop with their invoker",
        || !alive(pid),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_applies_to_the_worker() {
    let mut cfg = config("python", "app.main");
    cfg.memory_mb = 512;
    let invoker = start("mem-fn", &cfg);
    let response = call(&invoker, json!({"action": "echo"})).await.unwrap();
    let pid = pid_of(&response);
    assert_eq!(
        body_json(&response)["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        "512"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .unwrap();
    assert!(line.contains(&(512u64 * 1024 * 1024).to_string()), "{line}");
}

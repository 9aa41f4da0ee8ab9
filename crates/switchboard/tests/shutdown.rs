//! SIGTERM drains: in-flight invocations get `server.shutdown_grace_secs`, a two-way
//! answer reaches its client before the 1001 close, `$disconnect` is invoked within the
//! grace, and what the grace cuts off is logged. The real gateway, a real function server.

mod common;

use std::time::Duration;

use common::function_server::{proxy, FunctionServer, Reply};
use common::*;
use switchboard_ws::Message;
use tokio::time::Instant;

/// A gateway whose routes all go to the function server at `url`, with this grace.
fn gateway(url: &str, grace_secs: u64) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
shutdown_grace_secs = {grace_secs}

[functions.f]
kind = "http"
url = "{url}"
timeout_ms = 30000

[routes."$connect"]
function = "f"
[routes."$disconnect"]
function = "f"
[routes.work]
function = "f"
two_way = true
"#
    ))
}

/// Messages (`action: work`) are answered after `delay`; every other event at once.
async fn slow_function(delay: Duration) -> FunctionServer {
    FunctionServer::start(move |e| {
        if e["requestContext"]["eventType"] == "MESSAGE" {
            Reply::Delay(delay, Box::new(proxy(200, "done")))
        } else {
            proxy(200, "")
        }
    })
    .await
}

/// Everything the client receives until the server's close frame (which it answers, as
/// a polite client does), and that close code.
async fn frames_until_close(mut c: Client) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    loop {
        match c.recv_within(30).await {
            Some(Message::Text(t)) => texts.push(String::from_utf8_lossy(&t).into_owned()),
            Some(Message::Close(frame)) => {
                c.close(1001).await;
                return (texts, Some(frame.map_or(1005, |(code, _)| code)));
            }
            Some(_) => {}
            None => return (texts, None),
        }
    }
}

/// SIGTERM while a two-way invocation runs, with grace to spare: the answer is written
/// before the 1001 close, `$disconnect` reaches the function, and the exit is clean.
#[tokio::test]
async fn sigterm_lets_a_two_way_answer_reach_its_client_before_1001() {
    let fs = slow_function(Duration::from_millis(1500)).await;
    let gw = gateway(&fs.url(), 5);
    let mut c = connect(gw.ws).await;
    c.send_text(r#"{"action":"work"}"#).await;
    fs.wait_for("MESSAGE", 1).await;
    let client = tokio::spawn(frames_until_close(c));

    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();

    let (texts, code) = client.await.unwrap();
    assert_eq!(texts, ["done"], "{log}");
    assert_eq!(code, Some(1001), "{log}");
    assert!(status.success(), "exit status {status:?}\n{log}");
    // The process has exited, so everything it sent has arrived.
    let disconnects = fs.events_of("DISCONNECT");
    assert_eq!(disconnects.len(), 1, "{log}");
    assert_eq!(
        disconnects[0]["requestContext"]["disconnectStatusCode"],
        1001
    );
    assert!(!log.contains("abandoned"), "{log}");
    assert!(log.contains("all connections closed"), "{log}");
}

/// SIGTERM while an invocation runs longer than the grace: the client still gets 1001,
/// the process exits 0 within the grace and a little slack, and logs what it abandoned
/// (the message's invocation, and the `$disconnect` no time was left for).
#[tokio::test]
async fn sigterm_abandons_what_outlives_the_grace_and_says_so() {
    let fs = slow_function(Duration::from_secs(20)).await;
    let gw = gateway(&fs.url(), 1);
    let mut c = connect(gw.ws).await;
    let id = fs.events_of("CONNECT")[0]["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send_text(r#"{"action":"work"}"#).await;
    fs.wait_for("MESSAGE", 1).await;
    let client = tokio::spawn(frames_until_close(c));

    let signalled = Instant::now();
    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    let took = signalled.elapsed();

    assert!(status.success(), "exit status {status:?}\n{log}");
    // It waited for the grace (1 s), and not much longer (the drain's slack is 1 s).
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}\n{log}"
    );
    assert!(
        took < Duration::from_secs(3),
        "exited after {took:?}\n{log}"
    );
    let (texts, code) = client.await.unwrap();
    assert!(texts.is_empty(), "{texts:?}");
    assert_eq!(code, Some(1001), "{log}");
    let warn = log
        .lines()
        .find(|l| l.contains("abandoned in-flight invocations"))
        .unwrap_or_else(|| panic!("no abandoned warning in\n{log}"));
    assert!(
        warn.contains("WARN") && warn.contains("abandoned=2"),
        "{warn}"
    );
    let abandoned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("invocation abandoned at the shutdown deadline"))
        .collect();
    assert_eq!(abandoned.len(), 2, "{log}");
    for route in ["work", "$disconnect"] {
        assert!(
            abandoned.iter().any(|l| l.contains(&id)
                && l.contains(&format!("route={route:?}"))
                && l.contains("function=\"f\"")),
            "no abandoned line for {route} of {id} in\n{log}"
        );
    }
    assert!(fs.events_of("DISCONNECT").is_empty());
}

/// The same for a managed (lambda) function: its worker process is not stopped before
/// the invocation it runs has answered.
#[tokio::test]
async fn sigterm_keeps_managed_workers_until_their_invocations_answer() {
    let dir = std::env::temp_dir().join(format!("sb-drain-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("sleeping");
    std::fs::write(
        dir.join("app.py"),
        format!(
            r#"
import pathlib, time

def handler(event, context):
    if event["requestContext"]["eventType"] == "MESSAGE":
        pathlib.Path({marker:?}).touch()
        time.sleep(1.5)
        return {{"statusCode": 200, "body": "managed done"}}
    return {{"statusCode": 200}}
"#,
            marker = marker.display().to_string()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&format!(
        r#"
[server]
shutdown_grace_secs = 5

[functions.f]
kind = "lambda"
runtime = "python"
handler = "app.handler"
dir = {dir:?}
timeout_ms = 20000

[routes."$default"]
function = "f"
two_way = true
"#,
        dir = dir.display().to_string()
    ));
    let mut c = connect(gw.ws).await;
    c.send_text("work").await;
    // The handler is asleep inside its worker (a cold start comes first).
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the handler never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = tokio::spawn(frames_until_close(c));

    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();

    let (texts, code) = client.await.unwrap();
    assert_eq!(texts, ["managed done"], "{log}");
    assert_eq!(code, Some(1001), "{log}");
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(!log.contains("abandoned"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

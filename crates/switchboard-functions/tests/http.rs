//! The HTTP invoker against a real HTTP server on 127.0.0.1: a raw TCP listener that
//! answers with canned bytes, so tests can also reset, truncate, stall and flood.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_core::config::HttpFunctionConfig;
use switchboard_core::event::{ApiIdentity, EventKind, FunctionResponse, Invocation, Payload};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::{InvokeError, Invoker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Captured {
    request_line: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// What the server does with a request.
enum Action {
    /// Write these bytes and keep serving the connection.
    Reply(Vec<u8>),
    /// Wait, then reply.
    ReplyAfter(Duration, Vec<u8>),
    /// Write these bytes, wait a little so the client reads them, then close (FIN).
    ReplyClose(Vec<u8>),
    /// Write these bytes, wait a little so the client reads them, then reset (RST).
    ReplyReset(Vec<u8>),
    /// Write the head, then up to `total` body bytes (chunk-encoded if `chunked`),
    /// reporting how many body bytes were written before the client went away.
    Flood {
        head: Vec<u8>,
        total: usize,
        chunked: bool,
    },
    /// Write each part with a pause between, so the client sees separate reads.
    Trickle(Vec<Vec<u8>>),
}

type Handler = Arc<dyn Fn(&Captured) -> Action + Send + Sync>;

struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    // Unbounded: a test sends a handful of requests.
    requests: mpsc::UnboundedReceiver<Captured>,
    flooded: mpsc::UnboundedReceiver<usize>,
}

impl Server {
    async fn start(handler: impl Fn(&Captured) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (flood_tx, flooded) = mpsc::unbounded_channel();
        let handler: Handler = Arc::new(handler);
        let task_accepts = Arc::clone(&accepts);
        let task_max = Arc::clone(&max_in_flight);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                task_accepts.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    handler: Arc::clone(&handler),
                    in_flight: Arc::clone(&in_flight),
                    max_in_flight: Arc::clone(&task_max),
                    requests: req_tx.clone(),
                    flooded: flood_tx.clone(),
                };
                tokio::spawn(conn.serve(stream));
            }
        });
        Self {
            addr,
            accepts,
            max_in_flight,
            requests,
            flooded,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/fn?x=1", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

struct Conn {
    handler: Handler,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    requests: mpsc::UnboundedSender<Captured>,
    flooded: mpsc::UnboundedSender<usize>,
}

impl Conn {
    async fn serve(self, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        while let Some(request) = read_request(&mut stream).await {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let action = (self.handler)(&request);
            let _ = self.requests.send(request);
            let keep = self.act(stream.get_mut(), action).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !keep {
                return;
            }
        }
    }

    /// Returns whether the connection stays open.
    async fn act(&self, stream: &mut TcpStream, action: Action) -> bool {
        let pause = Duration::from_millis(100);
        match action {
            Action::Reply(bytes) => stream.write_all(&bytes).await.is_ok(),
            Action::ReplyAfter(delay, bytes) => {
                tokio::time::sleep(delay).await;
                stream.write_all(&bytes).await.is_ok()
            }
            Action::ReplyClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(pause).await;
                false
            }
            Action::ReplyReset(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(pause).await;
                stream.set_zero_linger().unwrap();
                false
            }
            Action::Flood {
                head,
                total,
                chunked,
            } => {
                let _ = stream.write_all(&head).await;
                let chunk = vec![b'x'; 16 * 1024];
                let mut written = 0;
                while written < total {
                    let ok = if chunked {
                        let size = format!("{:x}\r\n", chunk.len());
                        stream.write_all(size.as_bytes()).await.is_ok()
                            && stream.write_all(&chunk).await.is_ok()
                            && stream.write_all(b"\r\n").await.is_ok()
                    } else {
                        stream.write_all(&chunk).await.is_ok()
                    };
                    if !ok {
                        break;
                    }
                    written += chunk.len();
                }
                let _ = self.flooded.send(written);
                false
            }
            Action::Trickle(parts) => {
                for part in parts {
                    if stream.write_all(&part).await.is_err() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                true
            }
        }
    }
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Captured> {
    let mut request_line = String::new();
    if stream.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Captured {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
    })
}

fn http(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn ok(body: &str) -> Vec<u8> {
    http(200, body.as_bytes())
}

fn config(url: String) -> HttpFunctionConfig {
    common::http_config(url)
}

fn api() -> ApiIdentity {
    ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    }
}

fn invoker(server: &Server, tweak: impl FnOnce(&mut HttpFunctionConfig)) -> HttpInvoker {
    let mut cfg = config(server.url());
    tweak(&mut cfg);
    HttpInvoker::new("fn", &cfg, api()).unwrap()
}

fn invocation(kind: EventKind, body: Option<&str>) -> Invocation {
    common::invocation(kind, body.map(|b| Bytes::copy_from_slice(b.as_bytes())))
}

fn message(body: &str) -> Invocation {
    invocation(EventKind::Message, Some(body))
}

fn text(body: &str) -> Option<Payload> {
    Some(Payload {
        data: Bytes::copy_from_slice(body.as_bytes()),
        binary: false,
    })
}

fn failed(result: Result<FunctionResponse, InvokeError>) -> String {
    match result {
        Err(InvokeError::Failed(reason)) => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn proxy_response_sets_status_headers_and_body() {
    let server = Server::start(|_| {
        Action::Reply(ok(r#"{"statusCode":401,"headers":{"X-Why":"nope"},
                "multiValueHeaders":{"Set-Cookie":["a=1","b=2"]},"body":"denied","userId":"u"}"#))
    })
    .await;
    let r = invoker(&server, |_| {})
        .invoke(invocation(EventKind::Connect, None))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers,
        [
            ("X-Why".to_owned(), "nope".to_owned()),
            ("Set-Cookie".to_owned(), "b=2".to_owned())
        ]
    );
    assert_eq!(r.body, text("denied"));
}

#[tokio::test]
async fn base64_proxy_body_is_binary() {
    let server = Server::start(|_| {
        Action::Reply(ok(
            r#"{"statusCode":200,"body":"AJ+Slg==","isBase64Encoded":true}"#,
        ))
    })
    .await;
    let r = invoker(&server, |_| {}).invoke(message("x")).await.unwrap();
    assert_eq!(
        r.body,
        Some(Payload {
            data: Bytes::from_static(&[0, 159, 146, 150]),
            binary: true
        })
    );
}

#[tokio::test]
async fn non_proxy_bodies_are_sent_as_they_came() {
    let server = Server::start(|req| {
        let event = req.event();
        match event["body"].as_str().unwrap() {
            "json" => Action::Reply(ok(r#"{"hello":"world"}"#)),
            "text" => Action::Reply(ok("just text")),
            "bytes" => Action::Reply(http(200, &[0xff, 0xfe, 0x00])),
            "json-body" => Action::Reply(ok(r#"{"statusCode":200,"body":{"n":1}}"#)),
            _ => Action::Reply(ok("")),
        }
    })
    .await;
    let inv = invoker(&server, |_| {});
    let r = inv.invoke(message("json")).await.unwrap();
    assert_eq!((r.status, r.body), (200, text(r#"{"hello":"world"}"#)));
    let r = inv.invoke(message("text")).await.unwrap();
    assert_eq!((r.status, r.body), (200, text("just text")));
    let r = inv.invoke(message("bytes")).await.unwrap();
    assert_eq!(
        r.body,
        Some(Payload {
            data: Bytes::from_static(&[0xff, 0xfe, 0x00]),
            binary: true
        })
    );
    let r = inv.invoke(message("json-body")).await.unwrap();
    assert_eq!(r.body, text(r#"{"n":1}"#));
    let r = inv.invoke(message("empty")).await.unwrap();
    assert_eq!(r, FunctionResponse::ok());
}

#[tokio::test]
async fn chunked_body_in_several_reads_is_joined() {
    let server = Server::start(|_| {
        Action::Trickle(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            b"f\r\n{\"statusCode\":2\r\n".to_vec(),
            b"13\r\n01,\"body\":\"joined\"}\r\n".to_vec(),
            b"0\r\n\r\n".to_vec(),
        ])
    })
    .await;
    let r = invoker(&server, |_| {}).invoke(message("x")).await.unwrap();
    assert_eq!((r.status, r.body), (201, text("joined")));
}

#[tokio::test]
async fn http_error_status_fails_without_quoting_the_body() {
    let server = Server::start(|_| Action::Reply(http(500, b"stack trace with a password"))).await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert_eq!(reason, "function answered HTTP 500");
}

#[tokio::test]
async fn invalid_status_code_fails() {
    let server = Server::start(|_| Action::Reply(ok(r#"{"statusCode":700,"body":"x"}"#))).await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert!(reason.contains("statusCode"), "{reason}");
}

#[tokio::test]
async fn garbage_response_fails() {
    let server =
        Server::start(|_| Action::ReplyClose(b"this is not http at all\r\n\r\n".to_vec())).await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert_eq!(reason, "response is not valid HTTP");
}

#[tokio::test]
async fn declared_oversized_body_fails_before_reading_it() {
    let total = 64 * 1024 * 1024;
    let mut server = Server::start(move |_| Action::Flood {
        head: format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n").into_bytes(),
        total,
        chunked: false,
    })
    .await;
    let started = Instant::now();
    let reason = failed(
        invoker(&server, |c| c.max_response_bytes = 1024)
            .invoke(message("x"))
            .await,
    );
    assert_eq!(reason, "response body exceeds max_response_bytes");
    assert!(started.elapsed() < Duration::from_secs(2));
    let written = server.flooded.recv().await.unwrap();
    assert!(written < total, "the client read the whole body");
}

#[tokio::test]
async fn undeclared_oversized_body_fails_at_the_limit() {
    let total = 64 * 1024 * 1024;
    let mut server = Server::start(move |_| Action::Flood {
        head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
        total,
        chunked: true,
    })
    .await;
    let started = Instant::now();
    let reason = failed(
        invoker(&server, |c| c.max_response_bytes = 100 * 1024)
            .invoke(message("x"))
            .await,
    );
    assert_eq!(reason, "response body exceeds max_response_bytes");
    assert!(started.elapsed() < Duration::from_secs(2));
    let written = server.flooded.recv().await.unwrap();
    assert!(written < total, "the client read the whole body");
}

#[tokio::test]
async fn slow_function_times_out_on_time() {
    let server = Server::start(|_| Action::ReplyAfter(Duration::from_secs(10), ok("late"))).await;
    let inv = invoker(&server, |c| c.timeout_ms = 300);
    let started = Instant::now();
    let result = inv.invoke(message("x")).await;
    let took = started.elapsed();
    assert_eq!(result, Err(InvokeError::Timeout));
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let inv = HttpInvoker::new("fn", &config(format!("http://{addr}/")), api()).unwrap();
    match inv.invoke(message("x")).await {
        Err(InvokeError::Unreachable(reason)) => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
            assert!(reason.len() <= 160);
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn reset_mid_response_fails() {
    let server = Server::start(|_| {
        let mut partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec();
        partial.extend_from_slice(b"{\"statusC");
        Action::ReplyReset(partial)
    })
    .await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert_eq!(reason, "connection reset mid-response");
}

#[tokio::test]
async fn truncated_body_fails() {
    let server = Server::start(|_| {
        let mut partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec();
        partial.extend_from_slice(b"{\"statusC");
        Action::ReplyClose(partial)
    })
    .await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert_eq!(reason, "response body truncated");
}

#[tokio::test]
async fn closed_before_the_response_fails() {
    let server = Server::start(|_| Action::ReplyClose(Vec::new())).await;
    let reason = failed(invoker(&server, |_| {}).invoke(message("x")).await);
    assert_eq!(reason, "connection closed before the response");
}

#[tokio::test]
async fn beyond_the_queue_is_throttled_at_once() {
    let server = Server::start(|_| {
        Action::ReplyAfter(Duration::from_millis(300), ok(r#"{"statusCode":200}"#))
    })
    .await;
    let inv = invoker(&server, |c| {
        c.max_concurrency = 1;
        c.max_queue = 1;
    });
    let first = inv.invoke(message("1"));
    let second = inv.invoke(message("2"));
    let started = Instant::now();
    assert_eq!(inv.invoke(message("3")).await, Err(InvokeError::Throttled));
    assert!(started.elapsed() < Duration::from_millis(50));
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().status, 200);
    assert_eq!(second.unwrap().status, 200);
    // The queued call waited for the first: never two at the function at once.
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() >= Duration::from_millis(590));
    // Both places are free again.
    assert_eq!(inv.invoke(message("4")).await.unwrap().status, 200);
}

#[tokio::test]
async fn timed_out_waiters_give_their_place_back() {
    let server = Server::start(|req| {
        if req.event()["body"] == "slow" {
            Action::ReplyAfter(Duration::from_secs(10), ok(""))
        } else {
            Action::Reply(ok(""))
        }
    })
    .await;
    let inv = invoker(&server, |c| {
        c.max_concurrency = 1;
        c.max_queue = 1;
        c.timeout_ms = 300;
    });
    let (a, b) = tokio::join!(inv.invoke(message("slow")), inv.invoke(message("slow")));
    assert_eq!(a, Err(InvokeError::Timeout));
    assert_eq!(b, Err(InvokeError::Timeout));
    assert_eq!(
        inv.invoke(message("fast")).await,
        Ok(FunctionResponse::ok())
    );
}

#[tokio::test]
async fn request_carries_the_event_and_a_valid_signature() {
    let mut server = Server::start(|_| Action::Reply(ok(""))).await;
    let inv = invoker(&server, |c| {
        c.secret = Some("s3cret".into());
        c.headers.insert("X-Api-Key".into(), "key-1".into());
    });
    for (kind, body) in [
        (EventKind::Connect, None),
        (EventKind::Message, Some("hello")),
        (EventKind::Disconnect, None),
    ] {
        let invocation = invocation(kind, body);
        let request_id = invocation.request_id.clone();
        let connection_id = invocation.connection.id.to_string();
        let route_key = invocation.route_key.to_string();
        inv.invoke(invocation).await.unwrap();
        let req = server.requests.recv().await.unwrap();

        assert_eq!(req.request_line, "POST /fn?x=1 HTTP/1.1");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert!(req
            .header("user-agent")
            .unwrap()
            .starts_with("switchboard/"));
        assert_eq!(req.header("x-api-key"), Some("key-1"));
        assert_eq!(req.header("x-switchboard-request-id"), Some(&*request_id));
        assert_eq!(
            req.header("x-switchboard-connection-id"),
            Some(&*connection_id)
        );
        assert_eq!(req.header("x-switchboard-route-key"), Some(&*route_key));
        assert_eq!(req.header("x-switchboard-event-type"), Some(kind.as_aws()));

        let event = req.event();
        let ctx = &event["requestContext"];
        assert_eq!(ctx["eventType"], kind.as_aws());
        assert_eq!(ctx["routeKey"], *route_key);
        assert_eq!(ctx["connectionId"], *connection_id);
        assert_eq!(ctx["requestId"], *request_id);
        assert_eq!(ctx["stage"], "prod");
        assert_eq!(event.get("body").and_then(|b| b.as_str()), body);

        let signature = req.header("x-switchboard-signature").unwrap();
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(&req.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(t.parse::<u64>().unwrap().abs_diff(now) < 60);
    }
}

#[tokio::test]
async fn no_secret_no_signature() {
    let mut server = Server::start(|_| Action::Reply(ok(""))).await;
    invoker(&server, |_| {}).invoke(message("x")).await.unwrap();
    let req = server.requests.recv().await.unwrap();
    assert_eq!(req.header("x-switchboard-signature"), None);
}

#[tokio::test]
async fn sequential_invocations_reuse_one_connection() {
    let server = Server::start(|_| Action::Reply(ok(r#"{"statusCode":200}"#))).await;
    let inv = invoker(&server, |_| {});
    for _ in 0..3 {
        assert_eq!(inv.invoke(message("x")).await.unwrap().status, 200);
    }
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn an_error_answer_leaves_its_connection_reusable() {
    let server = Server::start(|req| {
        if req.event()["body"] == "fail" {
            Action::Reply(http(500, b"secret details"))
        } else {
            Action::Reply(ok(r#"{"statusCode":200,"body":"fine"}"#))
        }
    })
    .await;
    let inv = invoker(&server, |_| {});
    for _ in 0..2 {
        assert_eq!(
            failed(inv.invoke(message("fail")).await),
            "function answered HTTP 500"
        );
        assert_eq!(inv.invoke(message("x")).await.unwrap().body, text("fine"));
    }
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_reused() {
    // Each answer keeps the connection alive, then the server closes it 100 ms later.
    let server =
        Server::start(|_| Action::ReplyClose(ok(r#"{"statusCode":200,"body":"a"}"#))).await;
    let inv = invoker(&server, |_| {});
    for _ in 0..3 {
        let r = inv.invoke(message("x")).await.unwrap();
        assert_eq!(r.body, text("a"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(server.accepts(), 3);
}

#[tokio::test]
async fn answers_framed_every_way_are_read_and_reused_only_when_they_may_be() {
    // (answer, whether the server keeps the connection, whether the client may reuse it)
    let cases: [(&[u8], bool, bool); 5] = [
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi", true, true),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;ext=1\r\nh\r\n1\r\ni\r\n0\r\ntrailer: x\r\n\r\n", true, true),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi", true, false),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi", true, false),
        (b"HTTP/1.0 200 OK\r\n\r\nhi", false, false),
    ];
    for (answer, keep, reusable) in cases {
        let bytes = answer.to_vec();
        let server = Server::start(move |_| {
            if keep {
                Action::Reply(bytes.clone())
            } else {
                Action::ReplyClose(bytes.clone())
            }
        })
        .await;
        let inv = invoker(&server, |_| {});
        for _ in 0..2 {
            let r = inv.invoke(message("x")).await.unwrap();
            assert_eq!(
                (r.status, r.body),
                (200, text("hi")),
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
        let expected = if reusable { 1 } else { 2 };
        assert_eq!(
            server.accepts(),
            expected,
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
}

//! The HTTP invoker with `http_version = "2"` against a real HTTP/2 server (hyper's, on
//! 127.0.0.1): multiplexing, flow control both ways, errors, cancellation, GOAWAY, and a
//! server that only speaks HTTP/1.1.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchboard_core::config::{HttpFunctionConfig, HttpVersion};
use switchboard_core::event::{ApiIdentity, EventKind, Invocation};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::{InvokeError, Invoker};
use tokio::net::TcpListener;

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: hyper::Version,
    authority: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Seen {
    /// The event JSON the request carried.
    fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync>;

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
struct Opts {
    /// Speak HTTP/1.1 only.
    http1: bool,
    /// The server's stream and connection windows (small ones force flow control).
    window: u32,
    /// Send a GOAWAY (graceful shutdown) after this many requests on a connection.
    goaway_after: Option<usize>,
}

const DEFAULT: Opts = Opts {
    http1: false,
    window: 1 << 20,
    goaway_after: None,
};

async fn server(opts: Opts, handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            let requests = Arc::clone(&r);
            let served = Arc::new(AtomicUsize::new(0));
            let shutdown = Arc::new(tokio::sync::Notify::new());
            let (served2, shutdown2) = (Arc::clone(&served), Arc::clone(&shutdown));
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                requests.fetch_add(1, Ordering::SeqCst);
                let n = served2.fetch_add(1, Ordering::SeqCst) + 1;
                if opts.goaway_after == Some(n) {
                    shutdown2.notify_one();
                }
                async move {
                    let version = req.version();
                    let authority = req
                        .uri()
                        .authority()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(
                        handler(Seen {
                            version,
                            authority,
                            headers,
                            body,
                        })
                        .await,
                    )
                }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                if opts.http1 {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                    return;
                }
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .initial_stream_window_size(opts.window)
                    .initial_connection_window_size(opts.window)
                    .serve_connection(io, svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = shutdown.notified() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
    }
}

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    Arc::new(move |seen| Box::pin(f(seen)))
}

/// Answers with the event's body as a proxy result, so the client gets its message back.
fn echo() -> Handler {
    handler(|seen: Seen| async move {
        let event = seen.event();
        let out = serde_json::json!({"statusCode": 200, "body": event["body"]});
        Response::new(Full::new(Bytes::from(out.to_string())))
    })
}

fn status(code: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
    r
}

fn invoker(addr: SocketAddr, tweak: impl FnOnce(&mut HttpFunctionConfig)) -> HttpInvoker {
    let mut cfg = HttpFunctionConfig {
        url: format!("http://{addr}/fn"),
        timeout_ms: 5_000,
        max_concurrency: 256,
        max_queue: 256,
        secret: None,
        headers: BTreeMap::new(),
        max_response_bytes: 64 * 1024,
        http_version: HttpVersion::Http2,
        tls_ca_file: None,
        tls_client_cert: None,
        tls_client_key: None,
    };
    tweak(&mut cfg);
    HttpInvoker::new("fn", &cfg, api()).unwrap()
}

fn api() -> ApiIdentity {
    ApiIdentity {
        stage: "prod".into(),
        domain_name: "gw.example".into(),
        api_id: "abc".into(),
    }
}

fn message(body: &str) -> Invocation {
    common::invocation(
        EventKind::Message,
        Some(Bytes::copy_from_slice(body.as_bytes())),
    )
}

async fn body_of(inv: &HttpInvoker, body: &str) -> Result<Bytes, InvokeError> {
    let response = inv.invoke(message(body)).await?;
    Ok(response.body.map(|p| p.data).unwrap_or_default())
}

#[tokio::test]
async fn a_request_goes_out_as_http2_with_the_gateway_headers() {
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let keep = Arc::clone(&seen);
    let srv = server(
        DEFAULT,
        handler(move |s: Seen| {
            *keep.lock() = Some(s);
            async {
                Response::new(Full::new(Bytes::from_static(
                    br#"{"statusCode":200,"body":"hi"}"#,
                )))
            }
        }),
    )
    .await;
    let inv = invoker(srv.addr, |c| {
        c.secret = Some("s3cret".into());
        c.headers.insert("X-Api-Key".into(), "k".into());
    });
    assert_eq!(body_of(&inv, "hello").await.unwrap(), "hi");
    let s = seen.lock().clone().unwrap();
    assert_eq!(s.version, hyper::Version::HTTP_2);
    assert_eq!(s.authority, srv.addr.to_string());
    let header = |n: &str| {
        s.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-api-key").as_deref(), Some("k"));
    assert_eq!(
        header("x-switchboard-event-type").as_deref(),
        Some("MESSAGE")
    );
    assert_eq!(
        header("x-switchboard-route-key").as_deref(),
        Some("sendmessage")
    );
    assert_eq!(header("content-length"), Some(s.body.len().to_string()));
    assert!(header("x-switchboard-signature").unwrap().contains(",v1="));
    assert_eq!(header("host"), None, ":authority replaces host");
    let event = s.event();
    assert_eq!(event["body"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_share_one_connection() {
    let srv = server(
        DEFAULT,
        handler(|s: Seen| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let event = s.event();
            let out = serde_json::json!({"statusCode": 200, "body": event["body"]});
            Response::new(Full::new(Bytes::from(out.to_string())))
        }),
    )
    .await;
    let inv = Arc::new(invoker(srv.addr, |_| {}));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let inv = Arc::clone(&inv);
            tokio::spawn(async move { (i, body_of(&inv, &format!("m{i}")).await) })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.unwrap(), format!("m{i}"));
    }
    assert_eq!(srv.requests.load(Ordering::SeqCst), 100);
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_larger_than_the_windows_flow_both_ways() {
    // The server's windows are the protocol's minimum, so the 200 kB request waits for
    // WINDOW_UPDATEs; the 3 MB answer is larger than the client's 1 MiB stream window.
    let srv = server(
        Opts {
            window: 65_535,
            ..DEFAULT
        },
        handler(|s: Seen| async move {
            let event = s.event();
            let big = event["body"].as_str().unwrap().repeat(15);
            let out = serde_json::json!({"statusCode": 200, "body": big});
            Response::new(Full::new(Bytes::from(out.to_string())))
        }),
    )
    .await;
    let inv = Arc::new(invoker(srv.addr, |c| c.max_response_bytes = 8 << 20));
    let msg: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (inv, msg) = (Arc::clone(&inv), msg.clone());
            tokio::spawn(async move { body_of(&inv, &msg).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), msg.repeat(15));
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn error_answers_fail_and_the_connection_keeps_serving() {
    let srv = server(
        DEFAULT,
        handler(|s: Seen| async move {
            let event = s.event();
            match event["body"].as_str().unwrap() {
                "500" => status(500, "internal details"),
                "big" => Response::new(Full::new(Bytes::from(vec![b'x'; 100_000]))),
                "empty" => status(204, ""),
                _ => Response::new(Full::new(Bytes::from_static(b"plain"))),
            }
        }),
    )
    .await;
    let inv = invoker(srv.addr, |c| c.max_response_bytes = 10_000);
    match body_of(&inv, "500").await {
        Err(InvokeError::Failed(reason)) => assert_eq!(reason, "function answered HTTP 500"),
        other => panic!("{other:?}"),
    }
    match body_of(&inv, "big").await {
        Err(InvokeError::Failed(reason)) => {
            assert_eq!(reason, "response body exceeds max_response_bytes")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(body_of(&inv, "empty").await.unwrap(), "");
    assert_eq!(body_of(&inv, "ok").await.unwrap(), "plain");
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_timed_out_stream_is_cancelled_and_the_connection_reused() {
    let srv = server(
        DEFAULT,
        handler(|s: Seen| async move {
            let event = s.event();
            if event["body"] == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Response::new(Full::new(Bytes::from_static(b"done")))
        }),
    )
    .await;
    let inv = invoker(srv.addr, |c| c.timeout_ms = 300);
    let started = tokio::time::Instant::now();
    assert!(matches!(
        body_of(&inv, "slow").await,
        Err(InvokeError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(body_of(&inv, "fast").await.unwrap(), "done");
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_a_goaway_the_next_invocation_opens_a_new_connection() {
    let srv = server(
        Opts {
            goaway_after: Some(1),
            ..DEFAULT
        },
        echo(),
    )
    .await;
    let inv = invoker(srv.addr, |_| {});
    assert_eq!(body_of(&inv, "one").await.unwrap(), "one");
    // Give the GOAWAY time to arrive; either way the second invocation must succeed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(body_of(&inv, "two").await.unwrap(), "two");
    assert_eq!(body_of(&inv, "three").await.unwrap(), "three");
    // Every connection says GOAWAY after its first request.
    assert_eq!(srv.connections.load(Ordering::SeqCst), 3);
    assert_eq!(srv.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_server_without_http2_gets_a_clear_error() {
    let srv = server(
        Opts {
            http1: true,
            ..DEFAULT
        },
        echo(),
    )
    .await;
    let inv = invoker(srv.addr, |_| {});
    match body_of(&inv, "x").await {
        Err(InvokeError::Failed(reason)) => {
            assert!(reason.contains("HTTP/2 with prior knowledge"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let inv = invoker(addr, |_| {});
    assert!(matches!(
        body_of(&inv, "x").await,
        Err(InvokeError::Unreachable(_))
    ));
}

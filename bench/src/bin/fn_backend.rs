//! `fn-backend`: the trivial function behind both systems in the function round-trip
//! benchmark (`bench/functions.sh`). tokio + hyper 1, HTTP/1.1 keep-alive or cleartext
//! HTTP/2 (prior knowledge, told apart by the connection preface), TCP_NODELAY, loopback
//! only.
//!
//! - `--mode lambda`: switchboard's `kind = "http"` functions. The request body is an AWS
//!   API Gateway WebSocket event; the answer is `{"statusCode":200,"body":<event.body>}`
//!   (plus `"isBase64Encoded":true` when the event had it), so a two-way route echoes the
//!   message byte for byte. Events without a body (`$connect`, `$disconnect`) get
//!   `{"statusCode":200}`.
//! - `--mode pushpin`: Pushpin's WebSocket-over-HTTP. The request body is a list of events
//!   `TYPE[ SIZE_HEX]\r\n[CONTENT\r\n]`; the answer (200, `application/websocket-events`)
//!   holds `OPEN` for `OPEN`, the same event for `TEXT`/`BINARY` (echo), `PONG` for `PING`
//!   and `CLOSE` with the same code for `CLOSE`; `PONG` and `DISCONNECT` get nothing.
//!
//! Prints `listening on ADDR` once bound; on SIGTERM/SIGINT prints
//! `served N requests on M connections` and exits.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Largest request body accepted (both modes); beyond it: 413.
const MAX_BODY: usize = 8 << 20;
const WS_EVENTS: &str = "application/websocket-events";

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// switchboard HTTP function: AWS event JSON in, Lambda proxy result out.
    Lambda,
    /// Pushpin WebSocket-over-HTTP: websocket-events in and out.
    Pushpin,
}

#[derive(Parser)]
#[command(about = "Trivial echo function for the function round-trip benchmark (loopback only)")]
struct Cli {
    /// Address to listen on (a loopback address; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        bail!("refusing to listen on {}: loopback only", cli.listen);
    }
    let _ = switchboard_bench::raise_nofile_limit();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n);
    }
    rt.build()?.block_on(serve(cli.listen, cli.mode))
}

async fn serve(listen: SocketAddr, mode: Mode) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let served = Arc::new(AtomicU64::new(0));
    let mut accepted = 0u64;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    accepted += 1;
                    let _ = stream.set_nodelay(true);
                    let served = served.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            served.fetch_add(1, Ordering::Relaxed);
                            handle(mode, req)
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // EMFILE and friends: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!(
        "served {} requests on {accepted} connections",
        served.load(Ordering::Relaxed)
    );
    Ok(())
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn error(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    reply(status, "text/plain", Bytes::from_static(msg.as_bytes()))
}

async fn handle(mode: Mode, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or broken\n",
            ))
        }
    };
    Ok(match mode {
        Mode::Lambda => lambda(&body),
        Mode::Pushpin => {
            let ct = parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
            if ct.is_some_and(|v| v.starts_with(WS_EVENTS.as_bytes())) {
                pushpin(&body)
            } else {
                error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected application/websocket-events\n",
                )
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// lambda

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "isBase64Encoded", default)]
    is_base64_encoded: bool,
}

#[derive(Serialize)]
struct ProxyResult<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(rename = "isBase64Encoded", skip_serializing_if = "std::ops::Not::not")]
    is_base64_encoded: bool,
}

fn lambda(body: &[u8]) -> Response<Full<Bytes>> {
    let event: Event<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) => return error(StatusCode::BAD_REQUEST, "not an event JSON object\n"),
    };
    let out = ProxyResult {
        status_code: 200,
        body: event.body.as_deref(),
        is_base64_encoded: event.is_base64_encoded,
    };
    match serde_json::to_vec(&out) {
        Ok(v) => reply(StatusCode::OK, "application/json", Bytes::from(v)),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

// ---------------------------------------------------------------------------------------
// pushpin

/// One WebSocket-over-HTTP event: its type and, when it has a size, its content.
type WsEvent<'a> = (&'a [u8], Option<&'a [u8]>);

/// Parses `TYPE[ SIZE_HEX]\r\n[CONTENT\r\n]...`, or `None` if the framing is broken.
fn parse_events(mut b: &[u8]) -> Option<Vec<WsEvent<'_>>> {
    let mut events = Vec::with_capacity(1);
    while !b.is_empty() {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let line = &b[..eol];
        b = &b[eol + 2..];
        let (kind, content) = match line.iter().position(|&c| c == b' ') {
            None => (line, None),
            Some(sp) => {
                let size = std::str::from_utf8(&line[sp + 1..]).ok()?;
                let size = usize::from_str_radix(size, 16).ok()?;
                if b.len() < size + 2 || &b[size..size + 2] != b"\r\n" {
                    return None;
                }
                let content = &b[..size];
                b = &b[size + 2..];
                (&line[..sp], Some(content))
            }
        };
        events.push((kind, content));
    }
    Some(events)
}

fn push_event(out: &mut Vec<u8>, kind: &[u8], content: Option<&[u8]>) {
    out.extend_from_slice(kind);
    if let Some(c) = content {
        out.extend_from_slice(format!(" {:X}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(b"\r\n");
}

fn pushpin(body: &[u8]) -> Response<Full<Bytes>> {
    let Some(events) = parse_events(body) else {
        return error(StatusCode::BAD_REQUEST, "bad websocket-events framing\n");
    };
    let mut out = Vec::with_capacity(body.len() + 16);
    for (kind, content) in events {
        match kind {
            b"OPEN" => push_event(&mut out, b"OPEN", None),
            b"TEXT" | b"BINARY" => push_event(&mut out, kind, Some(content.unwrap_or_default())),
            b"PING" => push_event(&mut out, b"PONG", content),
            b"CLOSE" => push_event(&mut out, b"CLOSE", content),
            // PONG, DISCONNECT and anything newer: nothing to say.
            _ => {}
        }
    }
    reply(StatusCode::OK, WS_EVENTS, Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_echoes_events() {
        let ev = parse_events(b"OPEN\r\nTEXT 5\r\nhello\r\nTEXT 0\r\n\r\n").unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[1], (&b"TEXT"[..], Some(&b"hello"[..])));
        assert_eq!(ev[2], (&b"TEXT"[..], Some(&b""[..])));
        assert!(parse_events(b"TEXT 6\r\nhello\r\n").is_none());
        let mut out = Vec::new();
        push_event(&mut out, b"TEXT", Some(&[b'x'; 26]));
        assert_eq!(out, b"TEXT 1A\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    }

    #[test]
    fn lambda_echoes_body() {
        let r = lambda(
            br#"{"requestContext":{"routeKey":"$default"},"body":"a\"b","isBase64Encoded":false}"#,
        );
        assert_eq!(r.status(), StatusCode::OK);
        let r = lambda(b"[1]");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}

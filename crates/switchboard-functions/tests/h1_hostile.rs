//! Hostile HTTP/1.1 answers from a function (RFC 9112 §6): ambiguous or invalid framing,
//! oversized heads, endless interim answers, trailers and chunk extensions. A raw TCP
//! listener on 127.0.0.1 writes each crafted answer to the first request it gets and a
//! good answer to every later one; each bad answer must fail the invocation as a
//! function error, and the next invocation must open a new connection (the server sees
//! a second accept), never reuse the one the bad answer came on.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::event::{ApiIdentity, EventKind, FunctionResponse, Payload};
use switchboard_functions::http::HttpInvoker;
use switchboard_functions::{InvokeError, Invoker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server writes for the first request it reads.
#[derive(Clone)]
enum First {
    /// These bytes; the connection then stays open and silent.
    Answer(Vec<u8>),
    /// `head`, then `unit` again and again until the client goes away (or 64 MiB).
    Flood { head: Vec<u8>, unit: Vec<u8> },
}

/// The good answer to every request after the first.
const GOOD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 32\r\n\r\n{\"statusCode\":200,\"body\":\"fine\"}";

struct Function {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

impl Function {
    async fn start(first: First) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let task_accepts = Arc::clone(&accepts);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                task_accepts.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, first.clone(), Arc::clone(&requests)));
            }
        });
        Self { addr, accepts }
    }

    fn invoker(&self) -> HttpInvoker {
        let mut cfg = common::http_config(format!("http://{}/fn", self.addr));
        // Long enough never to be what ends a refused answer: a refusal must come
        // from the parser, not from the clock.
        cfg.timeout_ms = 10_000;
        cfg.max_concurrency = 4;
        cfg.max_queue = 4;
        let api = ApiIdentity {
            stage: "prod".into(),
            domain_name: "gw.example".into(),
            api_id: "abc".into(),
        };
        HttpInvoker::new("fn", &cfg, api).unwrap()
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn serve(stream: TcpStream, first: First, requests: Arc<AtomicUsize>) {
    let mut stream = BufReader::new(stream);
    while read_request(&mut stream).await {
        let answer = if requests.fetch_add(1, Ordering::SeqCst) == 0 {
            first.clone()
        } else {
            First::Answer(GOOD.to_vec())
        };
        let stream = stream.get_mut();
        match answer {
            First::Answer(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            First::Flood { head, unit } => {
                let _ = stream.write_all(&head).await;
                let mut written = 0;
                while written < 64 << 20 && stream.write_all(&unit).await.is_ok() {
                    written += unit.len();
                }
                return;
            }
        }
    }
}

/// Reads one request (head and `content-length` body); `false` at the end of the stream.
async fn read_request(stream: &mut BufReader<TcpStream>) -> bool {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.is_ok()
}

fn message() -> switchboard_core::event::Invocation {
    common::invocation(EventKind::Message, Some(Bytes::from_static(b"hi")))
}

fn fine() -> FunctionResponse {
    FunctionResponse {
        body: Some(Payload {
            data: Bytes::from_static(b"fine"),
            binary: false,
        }),
        ..FunctionResponse::ok()
    }
}

/// The first invocation fails as a function error whose reason is `reason`; the second
/// succeeds on a new connection.
async fn refused(first: First, reason: &str, what: &str) {
    let function = Function::start(first).await;
    let invoker = function.invoker();
    match invoker.invoke(message()).await {
        Err(InvokeError::Failed(got)) => assert_eq!(got, reason, "{what}"),
        other => panic!("{what}: expected a function error ({reason}), got {other:?}"),
    }
    assert_eq!(invoker.invoke(message()).await, Ok(fine()), "{what}");
    assert_eq!(
        function.accepts(),
        2,
        "{what}: the refused answer's connection was used again"
    );
}

/// A 200 answer with these header lines and this body.
fn answer(headers: &str, body: &str) -> First {
    First::Answer(format!("HTTP/1.1 200 OK\r\n{headers}\r\n{body}").into_bytes())
}

/// A proxy answer the client would accept, chunked into two chunks.
const CHUNKED_BODY: &str = "11\r\n{\"statusCode\":200\r\n1\r\n}\r\n0\r\n\r\n";

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    for headers in [
        "content-length: 31\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 31\r\n",
        // A length of 0 would make the chunks look like the next answer.
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ] {
        refused(
            answer(headers, CHUNKED_BODY),
            "response has both content-length and transfer-encoding",
            headers,
        )
        .await;
    }
}

#[tokio::test]
async fn several_transfer_codings_are_refused() {
    for headers in [
        "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: gzip, chunked\r\n",
        "transfer-encoding: chunked, chunked\r\n",
        "transfer-encoding: identity\r\ntransfer-encoding: chunked\r\n",
    ] {
        refused(
            answer(headers, CHUNKED_BODY),
            "response has more than one transfer coding",
            headers,
        )
        .await;
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    // The old reading: a body up to the close, which this server never sends.
    for headers in [
        "transfer-encoding: gzip\r\n",
        "transfer-encoding: identity\r\n",
        "transfer-encoding: chunked-not\r\n",
        "transfer-encoding: \r\n",
    ] {
        refused(
            answer(headers, "{\"statusCode\":200}"),
            "response transfer-encoding is not chunked",
            headers,
        )
        .await;
    }
}

#[tokio::test]
async fn invalid_content_lengths_are_refused() {
    let body = "{\"statusCode\":200}"; // 18 bytes
    for headers in [
        "content-length: +18\r\n",
        "content-length: 0x12\r\n",
        "content-length: 18 18\r\n",
        "content-length: 18,\r\n",
        "content-length: \r\n",
        "content-length: 99999999999999999999999\r\n",
    ] {
        refused(
            answer(headers, body),
            "response has an invalid content-length",
            headers,
        )
        .await;
    }
    for headers in [
        "content-length: 18\r\ncontent-length: 17\r\n",
        "content-length: 18, 17\r\n",
    ] {
        refused(
            answer(headers, body),
            "response has conflicting content-length values",
            headers,
        )
        .await;
    }
}

#[tokio::test]
async fn an_http10_answer_with_transfer_encoding_is_refused() {
    let answer = format!(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n{CHUNKED_BODY}"
    );
    refused(
        First::Answer(answer.into_bytes()),
        "HTTP/1.0 response with transfer-encoding",
        "HTTP/1.0",
    )
    .await;
}

#[tokio::test]
async fn identical_content_lengths_and_plain_chunked_answers_are_still_reused() {
    // Repeated identical values are one length (RFC 9110 §8.6); a lone `chunked` with
    // empty list elements around it is one coding (RFC 9110 §5.6.1).
    for headers in [
        "content-length: 18\r\ncontent-length: 18\r\n",
        "content-length: 18, 18\r\n",
        "transfer-encoding: chunked\r\n",
        "Transfer-Encoding: , Chunked ,\r\n",
    ] {
        let body = if headers.contains("chunked") || headers.contains("Chunked") {
            "12\r\n{\"statusCode\":200}\r\n0\r\n\r\n"
        } else {
            "{\"statusCode\":200}"
        };
        let function = Function::start(answer(headers, body)).await;
        let invoker = function.invoker();
        assert_eq!(
            invoker.invoke(message()).await,
            Ok(FunctionResponse::ok()),
            "{headers}"
        );
        assert_eq!(invoker.invoke(message()).await, Ok(fine()), "{headers}");
        assert_eq!(function.accepts(), 1, "{headers}");
    }
}

#[tokio::test]
async fn too_many_answer_headers_are_refused() {
    let headers: String = (0..65).map(|i| format!("x-h{i}: v\r\n")).collect();
    refused(
        answer(&format!("{headers}content-length: 0\r\n"), ""),
        "response has too many headers",
        "65 headers",
    )
    .await;
    // 64 headers in all are fine.
    let headers: String = (0..63).map(|i| format!("x-h{i}: v\r\n")).collect();
    let function = Function::start(answer(&format!("{headers}content-length: 0\r\n"), "")).await;
    assert_eq!(
        function.invoker().invoke(message()).await,
        Ok(FunctionResponse::ok())
    );
}

#[tokio::test]
async fn an_answer_head_is_bounded_at_64_kib() {
    // A head of exactly 64 KiB is read; one byte more is refused.
    let head = |len: usize| {
        let fixed = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-pad: \r\n\r\n".len();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-pad: {}\r\n\r\n",
            "a".repeat(len - fixed)
        )
        .into_bytes()
    };
    let function = Function::start(First::Answer(head(64 * 1024))).await;
    assert_eq!(
        function.invoker().invoke(message()).await,
        Ok(FunctionResponse::ok())
    );
    refused(
        First::Answer(head(64 * 1024 + 1)),
        "response head too large",
        "64 KiB + 1",
    )
    .await;
    // A head that never ends.
    refused(
        First::Flood {
            head: b"HTTP/1.1 200 OK\r\nx-pad: ".to_vec(),
            unit: vec![b'a'; 4096],
        },
        "response head too large",
        "endless head",
    )
    .await;
}

#[tokio::test]
async fn endless_interim_answers_are_refused() {
    refused(
        First::Flood {
            head: Vec::new(),
            unit: b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        },
        "response head too large",
        "endless 100 Continue",
    )
    .await;
}

#[tokio::test]
async fn trailers_are_bounded_like_a_head() {
    let mut unit = b"x-trailer: ".to_vec();
    unit.extend_from_slice(&[b'v'; 4096]);
    unit.extend_from_slice(b"\r\n");
    refused(
        First::Flood {
            head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n".to_vec(),
            unit,
        },
        "response trailers too large",
        "endless trailers",
    )
    .await;
    let fields: String = (0..65).map(|i| format!("x-t{i}: v\r\n")).collect();
    refused(
        answer(
            "transfer-encoding: chunked\r\n",
            &format!("0\r\n{fields}\r\n"),
        ),
        "response has too many trailer fields",
        "65 trailer fields",
    )
    .await;
}

#[tokio::test]
async fn chunk_extensions_are_bounded_per_answer() {
    // One body byte per chunk, each chunk with 1000 bytes of extensions: 17 chunks pass
    // the 16 KiB budget while the body stays far below max_response_bytes.
    let mut unit = format!("1;{}\r\n", "e".repeat(998)).into_bytes();
    unit.extend_from_slice(b" \r\n");
    refused(
        First::Flood {
            head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            unit,
        },
        "chunk extensions too large",
        "extension flood",
    )
    .await;
}

#[tokio::test]
async fn malformed_chunked_bodies_are_refused() {
    for (body, reason) in [
        ("zz\r\nab\r\n0\r\n\r\n", "invalid chunk size line"),
        ("2;a\nb\r\nab\r\n0\r\n\r\n", "invalid chunk size line"),
        ("-2\r\nab\r\n0\r\n\r\n", "invalid chunk size line"),
        ("2\r\nabX\r\n0\r\n\r\n", "invalid chunked body"),
        ("0\r\nbad trailer\r\n\r\n", "invalid response trailer"),
        ("0\r\n: empty name\r\n\r\n", "invalid response trailer"),
    ] {
        refused(answer("transfer-encoding: chunked\r\n", body), reason, body).await;
    }
    let long_line = format!("{}1\r\na\r\n0\r\n\r\n", "0".repeat(1024));
    refused(
        answer("transfer-encoding: chunked\r\n", &long_line),
        "chunk size line too long",
        "1025-byte size line",
    )
    .await;
}

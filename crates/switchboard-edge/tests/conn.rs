//! The per-connection task without sockets: a client speaks to [`Edge::serve_io`] over
//! `tokio::io::duplex` under paused time. The handshake goes through hyper as in
//! production, then every deadline (idle, lifetime, ping and pong, write stall, close
//! handshake, resume window) is reached on tokio's clock, never the wall's, and each case
//! asserts the exact frames, close codes and the instant they came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_core::config::{BuiltinName, Config, RouteConfig};
use switchboard_core::event::{FunctionResponse, Invocation, Payload};
use switchboard_edge::metrics::CodeLabel;
use switchboard_edge::table::{CloseRequest, ConnHandle, SendError};
use switchboard_edge::Edge;
use switchboard_functions::{Builtin, Function, InvokeFuture, Invoker};
use switchboard_ws::{close_code, Decoder, Encoder, Limits, Message, OpCode, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

/// How long the `slow` function takes.
const SLOW: Duration = Duration::from_secs(2);
/// The close timeout of the connection task (conn.rs `CLOSE_TIMEOUT`).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers `done <message>` after [`SLOW`], on tokio's (paused) clock.
struct Slow;

impl Invoker for Slow {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        Box::pin(async move {
            sleep(SLOW).await;
            let data = invocation.body.map(|p| p.data).unwrap_or_default();
            let mut answer = b"done ".to_vec();
            answer.extend_from_slice(&data);
            Ok(FunctionResponse {
                body: Some(Payload {
                    data: answer.into(),
                    binary: false,
                }),
                ..FunctionResponse::ok()
            })
        })
    }
}

/// A `$disconnect` seen by the function: close code, reason, and when.
#[derive(Debug)]
struct Disconnect {
    code: u16,
    reason: String,
    at: Instant,
}

/// Records every `$disconnect`.
struct Record(mpsc::UnboundedSender<Disconnect>);

impl Invoker for Record {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        let (code, reason) = invocation.disconnect.expect("a $disconnect event");
        let _ = self.0.send(Disconnect {
            code,
            reason,
            at: Instant::now(),
        });
        Box::pin(std::future::ready(Ok(FunctionResponse::ok())))
    }
}

/// One edge with the routes the cases use: `$default` echoes (two-way), `slow` and
/// `slow_parallel` take [`SLOW`], `$disconnect` is recorded.
struct Harness {
    edge: Edge,
    disconnects: mpsc::UnboundedReceiver<Disconnect>,
}

fn harness(tune: impl FnOnce(&mut Config)) -> Harness {
    let mut config = Config::default();
    // Nothing ends a connection unless the case asks for it.
    config.keepalive.ping_interval_secs = 0;
    config.limits.max_connection_secs = 0;
    for (key, function, parallel) in [
        ("$default", "echo", false),
        ("$disconnect", "record", false),
        ("slow", "slow", false),
        ("slow_parallel", "slow", true),
    ] {
        config.routes.insert(
            key.to_owned(),
            RouteConfig {
                function: function.to_owned(),
                two_way: true,
                parallel,
                schema: None,
            },
        );
    }
    tune(&mut config);
    let (tx, disconnects) = mpsc::unbounded_channel();
    let functions = HashMap::from([
        (
            "echo".to_owned(),
            Function::Builtin(Builtin(BuiltinName::Echo, Arc::from([]))),
        ),
        ("record".to_owned(), Function::Remote(Arc::new(Record(tx)))),
        ("slow".to_owned(), Function::Remote(Arc::new(Slow))),
    ]);
    let edge = Edge::new(
        &config,
        "node-a",
        &functions,
        None,
        Arc::new(switchboard_cluster::Local),
    )
    .expect("edge");
    Harness { edge, disconnects }
}

impl Harness {
    /// A plain WebSocket client over a pipe of 64 KiB each way.
    async fn connect(&self) -> Client {
        self.open("/", None, 64 * 1024).await
    }

    /// Upgrades over a fresh pipe of `pipe` bytes each way.
    async fn open(&self, target: &str, protocol: Option<&str>, pipe: usize) -> Client {
        let (mut io, server) = tokio::io::duplex(pipe);
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nHost: switchboard.test\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        if let Some(p) = protocol {
            request.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        request.push_str("\r\n");
        // Written whole before the server runs, so hyper's header read timeout never waits
        // on the paused clock (which jumps whenever every task is idle).
        io.write_all(request.as_bytes()).await.expect("request");
        let edge = self.edge.clone();
        let peer: SocketAddr = "192.0.2.7:40000".parse().expect("address");
        tokio::spawn(async move { edge.serve_io(server, peer).await });
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break buf.split_to(end + 4);
            }
            let n = io.read_buf(&mut buf).await.expect("response");
            assert!(n > 0, "the server hung up during the handshake: {buf:?}");
        };
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        if let Some(p) = protocol {
            let wanted = format!("sec-websocket-protocol: {p}\r\n");
            assert!(head.to_ascii_lowercase().contains(&wanted), "{head}");
        }
        Client {
            io,
            buf,
            decoder: Decoder::new(Role::Client, Limits::default(), None),
            encoder: Encoder::new(Role::Client, None),
        }
    }

    /// The handle of the only connection open.
    fn only_handle(&self) -> Arc<ConnHandle> {
        let all = self.edge.inner().held_handles();
        assert_eq!(all.len(), 1, "one connection open");
        all[0].clone()
    }

    /// Waits for the next `$disconnect`, asserts its close code and reason, and returns
    /// when it came.
    async fn disconnected(&mut self, code: u16, reason: &str) -> Instant {
        let d = self.disconnects.recv().await.expect("the edge lives");
        assert_eq!((d.code, d.reason.as_str()), (code, reason), "$disconnect");
        d.at
    }

    fn closes(&self, code: u16) -> u64 {
        let m = &self.edge.inner().metrics;
        m.closes.get_or_create(&CodeLabel { code }).get()
    }

    fn queue_drops(&self) -> u64 {
        self.edge.inner().metrics.outbound_queue_drops.get()
    }

    fn open_connections(&self) -> i64 {
        self.edge.inner().metrics.connections_open.get()
    }
}

/// The client side of one WebSocket: masks what it sends, decodes what it gets.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
}

impl Client {
    /// The next frame, or `None` once the server ended the stream.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.decoder.decode(&mut self.buf).expect("valid frames") {
                return Some(m);
            }
            if self.io.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                assert!(self.buf.is_empty(), "a partial frame: {:?}", self.buf);
                return None;
            }
        }
    }

    async fn text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(t)) => String::from_utf8(t.to_vec()).expect("UTF-8"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    async fn close_frame(&mut self) -> (u16, String) {
        match self.next().await {
            Some(Message::Close(Some((code, reason)))) => {
                (code, String::from_utf8_lossy(&reason).into_owned())
            }
            other => panic!("expected a close frame with a code, got {other:?}"),
        }
    }

    async fn eof(&mut self) {
        if let Some(m) = self.next().await {
            panic!("expected the end of the stream, got {m:?}");
        }
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    async fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut out = BytesMut::new();
        self.encoder.frame(opcode, true, false, payload, &mut out);
        self.raw(&out).await;
    }

    async fn send(&mut self, text: &str) {
        let mut out = BytesMut::new();
        self.encoder.message(true, text.as_bytes(), &mut out);
        self.raw(&out).await;
    }

    /// Answers the server's close frame and sees the stream end.
    async fn answer_close(&mut self, code: u16) {
        self.close(code, "").await;
        self.eof().await;
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let mut out = BytesMut::new();
        self.encoder.close(code, reason, &mut out);
        self.raw(&out).await;
    }
}

/// Asserts that `at` is `after` past `start`, to the timer wheel's millisecond.
#[track_caller]
fn assert_at(start: Instant, at: Instant, after: Duration) {
    let elapsed = at - start;
    assert!(
        elapsed >= after && elapsed < after + Duration::from_millis(5),
        "expected {after:?} after the start, was {elapsed:?}"
    );
}

fn close(code: u16, reason: &str) -> (u16, String) {
    (code, reason.to_owned())
}

#[tokio::test(start_paused = true)]
async fn echo_round_trip_text_and_binary() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    c.send("hello").await;
    assert_eq!(c.text().await, "hello");
    let mut out = BytesMut::new();
    c.encoder.message(false, &[0, 1, 2, 255], &mut out);
    c.raw(&out).await;
    assert_eq!(
        c.next().await,
        Some(Message::Binary(Bytes::from_static(&[0, 1, 2, 255])))
    );
    c.close(close_code::NORMAL, "bye").await;
    assert_eq!(c.close_frame().await, close(1000, ""));
    c.eof().await;
    h.disconnected(1000, "bye").await;
    let m = &h.edge.inner().metrics;
    assert_eq!((m.messages_in.get(), m.messages_out.get()), (2, 2));
    assert_eq!(h.open_connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_invocation_at_a_time_in_arrival_order() {
    let h = harness(|_| {});
    let mut c = h.connect().await;
    let start = Instant::now();
    c.send(r#"{"action":"slow","n":1}"#).await;
    c.send(r#"{"action":"slow","n":2}"#).await;
    assert_eq!(c.text().await, r#"done {"action":"slow","n":1}"#);
    assert_at(start, Instant::now(), SLOW);
    assert_eq!(c.text().await, r#"done {"action":"slow","n":2}"#);
    assert_at(start, Instant::now(), 2 * SLOW);
}

#[tokio::test(start_paused = true)]
async fn parallel_route_invocations_overlap() {
    let h = harness(|_| {});
    let mut c = h.connect().await;
    let start = Instant::now();
    c.send(r#"{"action":"slow_parallel","n":1}"#).await;
    c.send(r#"{"action":"slow_parallel","n":2}"#).await;
    let mut answers = vec![c.text().await, c.text().await];
    assert_at(start, Instant::now(), SLOW);
    answers.sort();
    assert_eq!(
        answers,
        [
            r#"done {"action":"slow_parallel","n":1}"#,
            r#"done {"action":"slow_parallel","n":2}"#
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn client_close_without_code_is_echoed_empty() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    c.frame(OpCode::Close, b"").await;
    assert_eq!(c.next().await, Some(Message::Close(None)));
    c.eof().await;
    h.disconnected(close_code::NO_STATUS, "").await;
}

#[tokio::test(start_paused = true)]
async fn request_close_sends_its_code_and_waits_for_the_answer() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    h.only_handle().request_close(CloseRequest::Deleted);
    assert_eq!(c.close_frame().await, close(1000, "closed by the server"));
    // Nothing else goes out once the close is sent; the client's answer ends it.
    assert_eq!(
        h.only_handle().send(Bytes::from_static(b"late"), false),
        Err(SendError::Gone)
    );
    c.answer_close(1000).await;
    h.disconnected(1000, "closed by the server").await;
    assert_eq!(h.closes(1000), 1);
    assert!(h.edge.inner().connections_held() == 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_the_close_is_cut_off() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    let start = Instant::now();
    h.only_handle().request_close(CloseRequest::Deleted);
    assert_eq!(c.close_frame().await, close(1000, "closed by the server"));
    c.eof().await;
    assert_at(start, Instant::now(), CLOSE_TIMEOUT);
    h.disconnected(1000, "closed by the server").await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    h.edge.shutdown(Duration::from_secs(10));
    assert_eq!(c.close_frame().await, close(1001, "server shutting down"));
    c.answer_close(1001).await;
    h.disconnected(1001, "server shutting down").await;
    assert!(h.edge.drained().await);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_1001() {
    let mut h = harness(|c| c.limits.idle_timeout_secs = 10);
    let mut c = h.connect().await;
    let start = Instant::now();
    assert_eq!(c.close_frame().await, close(1001, "idle timeout"));
    assert_at(start, Instant::now(), Duration::from_secs(10));
    c.answer_close(1001).await;
    h.disconnected(1001, "idle timeout").await;
}

#[tokio::test(start_paused = true)]
async fn a_message_postpones_the_idle_timeout() {
    let h = harness(|c| c.limits.idle_timeout_secs = 10);
    let mut c = h.connect().await;
    let start = Instant::now();
    sleep(Duration::from_secs(6)).await;
    c.send("still here").await;
    assert_eq!(c.text().await, "still here");
    assert_eq!(c.close_frame().await, close(1001, "idle timeout"));
    assert_at(start, Instant::now(), Duration::from_secs(16));
}

#[tokio::test(start_paused = true)]
async fn lifetime_limit_closes_an_active_connection() {
    let mut h = harness(|c| {
        c.limits.idle_timeout_secs = 10;
        c.limits.max_connection_secs = 20;
    });
    let mut c = h.connect().await;
    let start = Instant::now();
    // Pings every 5 s keep it from going idle; the lifetime ends it anyway.
    for _ in 0..3 {
        sleep(Duration::from_secs(5)).await;
        c.frame(OpCode::Ping, b"k").await;
        assert_eq!(
            c.next().await,
            Some(Message::Pong(Bytes::from_static(b"k")))
        );
    }
    assert_eq!(
        c.close_frame().await,
        close(1001, "connection duration limit")
    );
    assert_at(start, Instant::now(), Duration::from_secs(20));
    c.answer_close(1001).await;
    h.disconnected(1001, "connection duration limit").await;
}

#[tokio::test(start_paused = true)]
async fn pings_when_quiet_and_gives_up_without_a_pong() {
    let mut h = harness(|c| {
        c.keepalive.ping_interval_secs = 30;
        c.keepalive.pong_timeout_secs = 10;
    });
    let mut c = h.connect().await;
    let start = Instant::now();
    assert_eq!(c.next().await, Some(Message::Ping(Bytes::new())));
    assert_at(start, Instant::now(), Duration::from_secs(30));
    c.frame(OpCode::Pong, b"").await;
    // The pong counts as activity: the next ping comes an interval after it.
    assert_eq!(c.next().await, Some(Message::Ping(Bytes::new())));
    assert_at(start, Instant::now(), Duration::from_secs(60));
    // No answer this time.
    assert_eq!(c.close_frame().await, close(1001, "ping timeout"));
    assert_at(start, Instant::now(), Duration::from_secs(70));
    // An unresponsive peer gets half a second for its close frame, not five.
    c.eof().await;
    assert_at(start, Instant::now(), Duration::from_millis(70_500));
    h.disconnected(1001, "ping timeout").await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_write_drops_the_connection_1013() {
    let mut h = harness(|c| c.limits.write_timeout_secs = 5);
    // A small pipe that the client stops reading: the server's writes stall.
    let c = h.open("/", None, 4096).await;
    let handle = h.only_handle();
    let start = Instant::now();
    for _ in 0..32 {
        handle
            .send(Bytes::from(vec![b'x'; 1024]), false)
            .expect("queued");
    }
    let at = h.disconnected(1013, "slow consumer: write stalled").await;
    // The stall limit, then half a second of trying to push the rest out.
    assert_at(start, at, Duration::from_millis(5_500));
    assert_eq!(h.queue_drops(), 1);
    assert_eq!(h.closes(1013), 1);
    assert_eq!(h.open_connections(), 0);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn a_full_outbound_queue_closes_1013() {
    let mut h = harness(|c| c.limits.outbound_queue_messages = 4);
    let mut c = h.connect().await;
    let handle = h.only_handle();
    let start = Instant::now();
    for i in 0..4 {
        let m = Bytes::from(format!("m{i}"));
        handle.send(m, false).expect("room in the queue");
    }
    assert_eq!(
        handle.send(Bytes::from_static(b"one too many"), false),
        Err(SendError::QueueFull)
    );
    // The close goes out ahead of what was queued: the queue is the problem.
    assert_eq!(c.close_frame().await, close(1013, "slow consumer"));
    assert_eq!(h.queue_drops(), 1);
    // A consumer that slow is given one second, not five, for its close frame.
    c.eof().await;
    assert_at(start, Instant::now(), Duration::from_secs(1));
    h.disconnected(1013, "slow consumer").await;
    assert_eq!(h.closes(1013), 1);
}

/// Sends `frame` and expects the server to close with `code` and `reason` at once,
/// without waiting for the client's close frame.
async fn protocol_violation(tune: impl FnOnce(&mut Config), frame: &[u8], code: u16, reason: &str) {
    let mut h = harness(tune);
    let mut c = h.connect().await;
    let start = Instant::now();
    c.raw(frame).await;
    assert_eq!(c.close_frame().await, close(code, reason));
    c.eof().await;
    assert_eq!(
        Instant::now(),
        start,
        "no close handshake with a broken peer"
    );
    h.disconnected(code, reason).await;
}

/// A masked client frame with a zero mask (the payload goes as is).
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![b0, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

#[tokio::test(start_paused = true)]
async fn invalid_utf8_closes_1007() {
    let frame = masked(0x81, &[b'o', b'k', 0xff]);
    protocol_violation(|_| {}, &frame, 1007, "invalid UTF-8").await;
}

#[tokio::test(start_paused = true)]
async fn unmasked_frame_closes_1002() {
    protocol_violation(|_| {}, b"\x81\x02hi", 1002, "unmasked client frame").await;
}

#[tokio::test(start_paused = true)]
async fn reserved_opcode_closes_1002() {
    protocol_violation(|_| {}, &masked(0x83, b""), 1002, "reserved opcode").await;
}

#[tokio::test(start_paused = true)]
async fn close_with_a_code_not_for_the_wire_closes_1002() {
    let frame = masked(0x88, &1006u16.to_be_bytes());
    protocol_violation(|_| {}, &frame, 1002, "invalid close code").await;
}

#[tokio::test(start_paused = true)]
async fn frame_over_the_limit_closes_1009() {
    let tune = |c: &mut Config| c.limits.max_frame_bytes = 16;
    protocol_violation(tune, &masked(0x81, &[b'x'; 17]), 1009, "frame too big").await;
}

#[tokio::test(start_paused = true)]
async fn message_rate_limit_closes_1008() {
    let mut h = harness(|c| {
        c.limits.messages_per_sec = 1;
        c.limits.messages_burst = 2;
    });
    let mut c = h.connect().await;
    for m in ["one", "two"] {
        c.send(m).await;
        assert_eq!(c.text().await, m);
    }
    // A second later one token is back.
    sleep(Duration::from_secs(1)).await;
    c.send("three").await;
    assert_eq!(c.text().await, "three");
    c.send("four").await;
    assert_eq!(c.close_frame().await, close(1008, "rate limit exceeded"));
    c.answer_close(1008).await;
    h.disconnected(1008, "rate limit exceeded").await;
}

/// The hello of a `switchboard.v1` session, parsed.
async fn hello(c: &mut Client) -> serde_json::Value {
    let text = c.text().await;
    let json = text.strip_prefix('s').expect("a hello frame");
    serde_json::from_str(json).expect("hello JSON")
}

fn with_resume(c: &mut Config) {
    c.resume.enabled = true;
    c.resume.window_secs = 30;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_session_is_parked_and_resumed() {
    let mut h = harness(with_resume);
    let mut c = h.open("/", Some("switchboard.v1"), 64 * 1024).await;
    let first = hello(&mut c).await;
    assert_eq!(first["resumed"], false);
    assert_eq!(first["resumeWindowSecs"], 30);
    let token = first["session"].as_str().expect("token").to_owned();
    c.send("m1:hello").await;
    assert_eq!(c.text().await, "m1:hello");
    assert_eq!(c.text().await, "a1", "the client's message acknowledged");
    // The socket drops without a close handshake: the session waits for its client.
    drop(c);
    let handle = h.only_handle();
    handle
        .send(Bytes::from_static(b"while away"), false)
        .expect("queued for the parked session");
    sleep(Duration::from_secs(20)).await;
    assert!(h.disconnects.try_recv().is_err(), "no $disconnect yet");
    assert_eq!(h.open_connections(), 1);
    let target = format!("/?sb_session={token}&sb_last=0");
    let mut c = h.open(&target, Some("switchboard.v1"), 64 * 1024).await;
    let again = hello(&mut c).await;
    assert_eq!(again["resumed"], true);
    assert_eq!(again["lastClientSeq"], 1);
    assert_eq!(again["connectionId"], first["connectionId"]);
    // What the client missed is replayed in order, then what was sent while away.
    assert_eq!(c.text().await, "m1:hello");
    assert_eq!(c.text().await, "m2:while away");
    // The resumed connection runs as before, numbering on.
    c.send("m2:again").await;
    assert_eq!(c.text().await, "m3:again");
    c.close(1000, "").await;
    assert_eq!(c.close_frame().await, close(1000, ""));
    c.eof().await;
    h.disconnected(1000, "").await;
    assert!(h.disconnects.try_recv().is_err(), "one $disconnect");
}

#[tokio::test(start_paused = true)]
async fn a_parked_session_ends_when_its_window_does() {
    let mut h = harness(with_resume);
    let mut c = h.open("/", Some("switchboard.v1"), 64 * 1024).await;
    let token = hello(&mut c).await["session"]
        .as_str()
        .expect("token")
        .to_owned();
    drop(c);
    let start = Instant::now();
    let at = h.disconnected(1006, "resume window expired").await;
    assert_at(start, at, Duration::from_secs(30));
    assert_eq!(h.open_connections(), 0);
    assert!(h.edge.inner().connections_held() == 0);
    // Its token now opens a fresh session.
    let target = format!("/?sb_session={token}&sb_last=0");
    let mut c = h.open(&target, Some("switchboard.v1"), 64 * 1024).await;
    let fresh = hello(&mut c).await;
    assert_eq!(fresh["resumed"], false);
    assert_ne!(fresh["session"], token.as_str());
}

#[tokio::test(start_paused = true)]
async fn a_detach_close_parks_the_session() {
    let mut h = harness(with_resume);
    let mut c = h.open("/", Some("switchboard.v1"), 64 * 1024).await;
    let token = hello(&mut c).await["session"]
        .as_str()
        .expect("token")
        .to_owned();
    c.close(4000, "detach").await;
    assert_eq!(c.close_frame().await, close(4000, ""));
    c.eof().await;
    let target = format!("/?sb_session={token}&sb_last=0");
    let mut c = h.open(&target, Some("switchboard.v1"), 64 * 1024).await;
    assert_eq!(hello(&mut c).await["resumed"], true);
    assert!(h.disconnects.try_recv().is_err(), "the session lives on");
}

#[tokio::test(start_paused = true)]
async fn binary_is_refused_1003_when_configured() {
    let mut h = harness(|c| c.router.binary = switchboard_core::config::BinaryMode::Reject);
    let mut c = h.connect().await;
    c.frame(OpCode::Binary, &[1, 2, 3]).await;
    let reason = "binary messages are not accepted";
    assert_eq!(c.close_frame().await, close(1003, reason));
    c.answer_close(1003).await;
    h.disconnected(1003, reason).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_holds_the_socket_for_a_two_way_answer() {
    let mut h = harness(|_| {});
    let mut c = h.connect().await;
    let start = Instant::now();
    c.send(r#"{"action":"slow"}"#).await;
    // Let the invocation start before shutdown begins.
    tokio::task::yield_now().await;
    h.edge.shutdown(Duration::from_secs(10));
    assert_eq!(c.text().await, r#"done {"action":"slow"}"#);
    assert_at(start, Instant::now(), SLOW);
    assert_eq!(c.close_frame().await, close(1001, "server shutting down"));
    c.answer_close(1001).await;
    h.disconnected(1001, "server shutting down").await;
    assert_eq!(h.edge.abandoned(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_resent_session_message_is_acknowledged_not_invoked_again() {
    let h = harness(with_resume);
    let mut c = h.open("/", Some("switchboard.v1"), 64 * 1024).await;
    hello(&mut c).await;
    let start = Instant::now();
    let ack_delay = Duration::from_millis(200);
    c.send("m1:once").await;
    assert_eq!(c.text().await, "m1:once");
    assert_eq!(c.text().await, "a1");
    assert_at(start, Instant::now(), ack_delay);
    // A resend (the client missed the ack) is acknowledged at once, not invoked again.
    c.send("m1:once").await;
    assert_eq!(c.text().await, "a1");
    assert_at(start, Instant::now(), ack_delay);
    c.send("m2:twice").await;
    assert_eq!(c.text().await, "m2:twice");
    assert_eq!(c.text().await, "a2");
    assert_at(start, Instant::now(), 2 * ack_delay);
    assert_eq!(h.edge.inner().metrics.messages_in.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_sequence_gap_closes_1002() {
    let mut h = harness(with_resume);
    let mut c = h.open("/", Some("switchboard.v1"), 64 * 1024).await;
    hello(&mut c).await;
    c.send("m2:skipped one").await;
    let reason = "switchboard.v1 sequence gap";
    assert_eq!(c.close_frame().await, close(1002, reason));
    c.answer_close(1002).await;
    h.disconnected(1002, reason).await;
}

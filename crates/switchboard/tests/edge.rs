//! The WebSocket edge, end to end: the real binary, real sockets, real clients.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use switchboard_ws::{Message, OpCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

fn config(extra: &str) -> String {
    format!("{extra}\n{ECHO_ROUTES}")
}

#[tokio::test]
async fn echoes_text_and_binary_to_an_independent_client() {
    let gw = Gateway::start(&config(""));
    let (mut ws, resp) = tokio_tungstenite::connect_async(gw.url()).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(tungstenite::Message::text("hello")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        tungstenite::Message::text("hello")
    );
    let bin = vec![0u8, 1, 2, 255];
    ws.send(tungstenite::Message::binary(bin.clone()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        tungstenite::Message::binary(bin)
    );
    // A fragmented message is reassembled and echoed whole.
    let mut c = connect(gw.ws).await;
    c.send_frame(OpCode::Text, false, b"hel").await;
    c.send_frame(OpCode::Continuation, false, b"lo ").await;
    c.send_frame(OpCode::Continuation, true, "wörld".as_bytes())
        .await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "hello wörld");
    ws.close(None).await.unwrap();
    assert_eq!(gw.metric("switchboard_connections_total").await, 2.0);
    assert!(gw.metric("switchboard_messages_in_total").await >= 3.0);
}

#[tokio::test]
async fn deflate_is_negotiated_and_round_trips() {
    let gw = Gateway::start(&config(""));
    let hs = Handshake {
        headers: vec![(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )],
        ..Default::default()
    };
    let mut c = connect_with(gw.ws, hs).await.unwrap();
    let ext = header(&c.response, "sec-websocket-extensions").expect("deflate accepted");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    let msg = r#"{"action":"chat","text":"the same words again and again and again"}"#.repeat(20);
    for _ in 0..3 {
        c.send_text(&msg).await;
        assert_eq!(text(&c.recv_within(5).await.unwrap()), msg);
    }
    // Compressed on the wire: the server's frame is much smaller than the message.
    let out = gw.metric("switchboard_bytes_out_total").await;
    assert_eq!(out as usize, msg.len() * 3);

    // Configured off: the offer is declined and the connection runs uncompressed.
    let gw2 = Gateway::start(&config("[compression]\nenabled = false\n"));
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Extensions", "permessage-deflate")],
        ..Default::default()
    };
    let mut c = connect_with(gw2.ws, hs).await.unwrap();
    assert!(header(&c.response, "sec-websocket-extensions").is_none());
    c.send_text("plain").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "plain");
}

#[tokio::test]
async fn compressed_frames_are_really_compressed() {
    let gw = Gateway::start(&config(""));
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Extensions", "permessage-deflate")],
        ..Default::default()
    };
    let mut c = connect_with(gw.ws, hs).await.unwrap();
    let msg = "a".repeat(10_000);
    c.send_text(&msg).await;
    // Read the raw frame header: RSV1 set and a payload far below 10,000 bytes.
    let mut head = [0u8; 2];
    tokio::io::AsyncReadExt::read_exact(&mut c.io, &mut head)
        .await
        .unwrap();
    assert_eq!(head[0] & 0x40, 0x40, "RSV1 marks a compressed message");
    assert!(
        (head[1] & 0x7f) < 126,
        "10,000 'a's compress below 126 bytes"
    );
}

#[tokio::test]
async fn message_and_frame_limits_close_1009() {
    let gw = Gateway::start(&config(
        "[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 600\noutbound_queue_bytes = 100000\n",
    ));
    let mut c = connect(gw.ws).await;
    c.send_text(&"x".repeat(500)).await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()).len(), 500);
    c.send_text(&"x".repeat(700)).await;
    assert_eq!(c.expect_close(5).await, Some(1009));

    let mut c = connect(gw.ws).await;
    c.send_frame(OpCode::Text, false, &[b'x'; 500]).await;
    c.send_frame(OpCode::Continuation, true, &[b'x'; 501]).await;
    assert_eq!(c.expect_close(5).await, Some(1009));
    gw.wait_metric("switchboard_closes_total{code=\"1009\"}", 2.0)
        .await;
}

#[tokio::test]
async fn idle_timeout_closes_1001_and_activity_resets_it() {
    let gw = Gateway::start(&config(
        "[limits]\nidle_timeout_secs = 2\n[keepalive]\nping_interval_secs = 0\n",
    ));
    let mut busy = connect(gw.ws).await;
    let mut idle = connect(gw.ws).await;
    let idle = tokio::spawn(async move { idle.expect_close(5).await });
    while !idle.is_finished() {
        // The activity under test: a pong every 0.5 s, well inside the 2 s timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
        busy.send_frame(OpCode::Pong, true, b"").await;
    }
    // The idle one was closed (2 s after it connected, after `busy`), the one sending
    // pongs was not.
    assert_eq!(idle.await.unwrap(), Some(1001));
    busy.send_text("still here").await;
    assert_eq!(text(&busy.recv_within(2).await.unwrap()), "still here");
}

#[tokio::test]
async fn server_pings_and_closes_peers_that_never_answer() {
    let gw = Gateway::start(&config(
        "[keepalive]\nping_interval_secs = 1\npong_timeout_secs = 1\n",
    ));
    // Our raw client never answers pings by itself.
    let mut silent = connect(gw.ws).await;
    match silent.recv_within(3).await.unwrap() {
        Message::Ping(_) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    assert_eq!(silent.expect_close(3).await, Some(1001));
    // A client that answers (tungstenite does, as browsers do) stays connected.
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            assert!(m.is_ping(), "{m:?}");
        }
    }
    ws.send(tungstenite::Message::text("alive")).await.unwrap();
    loop {
        let m = ws.next().await.unwrap().unwrap();
        if m.is_text() {
            assert_eq!(m.into_text().unwrap().as_str(), "alive");
            break;
        }
    }
}

#[tokio::test]
async fn maximum_connection_duration_closes_1001() {
    let gw = Gateway::start(&config("[limits]\nmax_connection_secs = 1\n"));
    let mut c = connect(gw.ws).await;
    c.send_text("x").await;
    assert_eq!(text(&c.recv_within(1).await.unwrap()), "x");
    assert_eq!(c.expect_close(3).await, Some(1001));
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let gw = Gateway::start(&config("[limits]\nmax_connections = 2\n"));
    let _a = connect(gw.ws).await;
    let _b = connect(gw.ws).await;
    let err = connect_with(gw.ws, Handshake::default())
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("HTTP/1.1 503"), "{err}");
    drop(_a);
    // The slot comes back once the connection is gone; each try before that is refused
    // and counted.
    let refused = std::cell::Cell::new(1.0);
    eventually(Duration::from_secs(5), "a free slot", || async {
        let ok = connect_with(gw.ws, Handshake::default()).await.is_ok();
        if !ok {
            refused.set(refused.get() + 1.0);
        }
        ok
    })
    .await;
    assert_eq!(
        gw.metric("switchboard_handshakes_rejected_total{reason=\"max_connections\"}")
            .await,
        refused.get()
    );
}

#[tokio::test]
async fn per_ip_connection_rate_answers_429() {
    let gw = Gateway::start(&config(
        "[limits]\nconnections_per_ip_per_sec = 1\nconnections_per_ip_burst = 2\n",
    ));
    let _a = connect(gw.ws).await;
    let _b = connect(gw.ws).await;
    let err = connect_with(gw.ws, Handshake::default())
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("HTTP/1.1 429"), "{err}");
    // A refused attempt takes no token: the next one is let in as the bucket refills
    // (one a second), not before.
    let refused = tokio::time::Instant::now();
    eventually(Duration::from_secs(3), "a refilled token", || async {
        connect_with(gw.ws, Handshake::default()).await.is_ok()
    })
    .await;
    assert!(refused.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn per_connection_message_rate_closes_1008() {
    let gw = Gateway::start(&config(
        "[limits]\nmessages_per_sec = 5\nmessages_burst = 5\n",
    ));
    let mut c = connect(gw.ws).await;
    for i in 0..5 {
        c.send_text(&i.to_string()).await;
        assert_eq!(text(&c.recv_within(2).await.unwrap()), i.to_string());
    }
    c.send_text("one too many").await;
    assert_eq!(c.expect_close(2).await, Some(1008));
}

#[tokio::test]
async fn stalled_reader_is_closed_1013_and_others_are_unaffected() {
    let gw = Gateway::start(&config(
        "[limits]\nwrite_timeout_secs = 1\nmax_message_bytes = 65536\nmax_frame_bytes = 65536\n",
    ));
    let mut stalled = connect(gw.ws).await;
    let mut healthy = connect(gw.ws).await;
    // The stalled client writes echo requests but never reads its socket.
    let flood = tokio::spawn(async move {
        let chunk = vec![b'z'; 60_000];
        let mut sent = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < deadline {
            let mut out = bytes::BytesMut::new();
            stalled.enc.message(false, &chunk, &mut out);
            match tokio::time::timeout(Duration::from_millis(200), stalled.io.write_all(&out)).await
            {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) => return (sent, true),
                Err(_) => {}
            }
        }
        (sent, false)
    });
    // The healthy client is served promptly all along, until the stalled one is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut i = 0;
    while gw.metric("switchboard_closes_total{code=\"1013\"}").await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled reader was not closed: {}",
            gw.metrics().await
        );
        healthy.send_text(&format!("m{i}")).await;
        assert_eq!(
            text(&healthy.recv_within(2).await.unwrap()),
            format!("m{i}")
        );
        i += 1;
    }
    assert!(gw.metric("switchboard_outbound_queue_drops_total").await >= 1.0);
    let (sent, _) = flood.await.unwrap();
    assert!(
        sent >= 10,
        "the stalled client got at least a few messages in: {sent}"
    );
    healthy.send_text("after").await;
    assert_eq!(text(&healthy.recv_within(2).await.unwrap()), "after");
}

#[tokio::test]
async fn protocol_errors_close_with_the_right_code() {
    let gw = Gateway::start(&config(""));
    // Invalid UTF-8 in a text message: 1007.
    let mut c = connect(gw.ws).await;
    c.send_frame(OpCode::Text, true, &[0xff, 0xfe]).await;
    assert_eq!(c.expect_close(2).await, Some(1007));
    // Unmasked client frame: 1002.
    let mut c = connect(gw.ws).await;
    c.send_raw(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(c.expect_close(2).await, Some(1002));
    // Reserved bits: 1002.
    let mut c = connect(gw.ws).await;
    c.send_raw(&[0xF1, 0x80, 0, 0, 0, 0]).await;
    assert_eq!(c.expect_close(2).await, Some(1002));
    // Reserved opcode: 1002.
    let mut c = connect(gw.ws).await;
    c.send_raw(&[0x83, 0x80, 0, 0, 0, 0]).await;
    assert_eq!(c.expect_close(2).await, Some(1002));
    // A continuation with nothing to continue: 1002.
    let mut c = connect(gw.ws).await;
    c.send_frame(OpCode::Continuation, true, b"x").await;
    assert_eq!(c.expect_close(2).await, Some(1002));
    // Compressed frame without negotiated deflate: 1002.
    let mut c = connect(gw.ws).await;
    c.send_raw(&[0xC1, 0x80, 0, 0, 0, 0]).await;
    assert_eq!(c.expect_close(2).await, Some(1002));
    // The client's own close is echoed with its code.
    let mut c = connect(gw.ws).await;
    c.close(4000).await;
    assert_eq!(c.expect_close(2).await, Some(4000));
    assert!(
        c.recv_within(2).await.is_none(),
        "server closes TCP after the close handshake"
    );
}

/// One hostile client: what it offers, what it sends after the handshake, and the close
/// code the server must answer with.
struct Hostile {
    what: &'static str,
    /// Offer permessage-deflate.
    deflate: bool,
    /// Speak `switchboard.v1` (the hello is read before the bytes are sent).
    session: bool,
    bytes: Vec<u8>,
    code: u16,
}

/// A masked client frame (the test client's encoder, so the mask is random).
fn frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    switchboard_ws::Encoder::new(switchboard_ws::Role::Client, None)
        .frame(opcode, fin, rsv1, payload, &mut out);
    out.to_vec()
}

/// A compressed message as a permessage-deflate peer without context takeover sends it.
fn deflated(body: &[u8]) -> Vec<u8> {
    let params = switchboard_ws::deflate::DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        level: 6,
        threshold: 0,
    };
    let mut out = Vec::new();
    switchboard_ws::deflate::Deflater::new(params).compress(body, &mut out);
    out
}

/// Runs each case on its own connection: the exact close code, then a new client that is
/// served; at the end the close counters by code add up to the cases.
async fn assert_hostile_cases(gw: &Gateway, cases: Vec<Hostile>) {
    let mut per_code = std::collections::BTreeMap::<u16, usize>::new();
    for case in &cases {
        let mut headers = Vec::new();
        if case.deflate {
            headers.push(("Sec-WebSocket-Extensions", "permessage-deflate"));
        }
        if case.session {
            headers.push(("Sec-WebSocket-Protocol", "switchboard.v1"));
        }
        let hs = Handshake {
            headers,
            ..Default::default()
        };
        let mut c = connect_with(gw.ws, hs).await.unwrap();
        assert_eq!(
            header(&c.response, "sec-websocket-extensions").is_some(),
            case.deflate,
            "{}: deflate negotiated as asked",
            case.what
        );
        if case.session {
            let hello = c.recv_within(5).await.unwrap();
            assert!(text(&hello).starts_with('s'), "{}: hello first", case.what);
        }
        c.send_raw(&case.bytes).await;
        assert_eq!(c.expect_close(5).await, Some(case.code), "{}", case.what);
        *per_code.entry(case.code).or_default() += 1;
        // Nothing lost for anyone else: a new client is served at once.
        let mut next = connect(gw.ws).await;
        next.send_text(case.what).await;
        assert_eq!(text(&next.recv_within(5).await.unwrap()), case.what);
    }
    // Each refusal is counted under its code (the closes are recorded as their tasks end).
    for (code, n) in per_code {
        let name = format!("switchboard_closes_total{{code=\"{code}\"}}");
        gw.wait_metric(&name, n as f64).await;
    }
}

const HOSTILE_LIMITS: &str = "[limits]\nmax_frame_bytes = 4096\nmax_message_bytes = 8192\n";

#[tokio::test]
async fn hostile_frames_reach_the_decoder_and_get_the_exact_close_code() {
    let gw = Gateway::start(&config(HOSTILE_LIMITS));
    let plain = |what, bytes, code| Hostile {
        what,
        deflate: false,
        session: false,
        bytes,
        code,
    };
    let mut cases = vec![
        plain("RSV2 set", vec![0xA2, 0x80, 1, 2, 3, 4], 1002),
        plain("RSV3 set", vec![0x92, 0x80, 1, 2, 3, 4], 1002),
        plain("reserved data opcode 3", vec![0x83, 0x80, 1, 2, 3, 4], 1002),
        plain(
            "reserved control opcode 0xB",
            vec![0x8B, 0x80, 1, 2, 3, 4],
            1002,
        ),
        plain("unmasked client frame", vec![0x82, 0x02, 1, 2], 1002),
        plain(
            "fragmented ping",
            frame(OpCode::Ping, false, false, b"p"),
            1002,
        ),
        plain(
            "ping of 126 bytes",
            frame(OpCode::Ping, true, false, &[b'p'; 126]),
            1002,
        ),
        plain(
            "64-bit length with the high bit set",
            vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            1002,
        ),
        // Refused from the header alone: no payload byte is ever sent (or buffered).
        plain(
            "a frame announcing 1 GiB",
            vec![0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4],
            1009,
        ),
        plain(
            "a frame above max_frame_bytes",
            frame(OpCode::Binary, true, false, &[0; 4097]),
            1009,
        ),
        plain(
            "continuation without a message",
            frame(OpCode::Continuation, true, false, b"x"),
            1002,
        ),
        plain(
            "compressed frame without deflate",
            frame(OpCode::Text, true, true, b"x"),
            1002,
        ),
        plain(
            "close frame with a 1-byte payload",
            frame(OpCode::Close, true, false, &[3]),
            1002,
        ),
        plain(
            "close code 1005 on the wire",
            frame(OpCode::Close, true, false, &[0x03, 0xED]),
            1002,
        ),
        plain(
            "close code 999",
            frame(OpCode::Close, true, false, &[0x03, 0xE7]),
            1002,
        ),
        plain(
            "close code 5000",
            frame(OpCode::Close, true, false, &[0x13, 0x88]),
            1002,
        ),
        plain(
            "close reason that is not UTF-8",
            frame(OpCode::Close, true, false, &[0x03, 0xE8, 0xC3, 0x28]),
            1007,
        ),
        plain(
            "text that is not UTF-8",
            frame(OpCode::Text, true, false, b"ok \xF0\x28\x8C\x28"),
            1007,
        ),
    ];
    // A new message inside a fragmented one.
    let mut b = frame(OpCode::Text, false, false, b"one");
    b.extend(frame(OpCode::Binary, true, false, b"two"));
    cases.push(plain("a new message inside a fragmented one", b, 1002));
    // Fragments that add up past max_message_bytes (each within max_frame_bytes).
    let mut b = Vec::new();
    for i in 0..3 {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        b.extend(frame(op, i == 2, false, &[1; 3000]));
    }
    cases.push(plain("fragments past max_message_bytes", b, 1009));
    // Invalid UTF-8 completed by the next fragment: refused when that fragment arrives,
    // with a ping between them answered first.
    let mut b = frame(
        OpCode::Text,
        false,
        false,
        "caf\u{e9}".as_bytes().split_at(4).0,
    );
    b.extend(frame(OpCode::Ping, true, false, b"between"));
    b.extend(frame(OpCode::Continuation, false, false, &[0x28]));
    cases.push(plain(
        "a sequence cut across fragments and completed wrongly",
        b,
        1007,
    ));
    assert_hostile_cases(&gw, cases).await;
}

#[tokio::test]
async fn hostile_compressed_messages_reach_the_inflater_and_get_the_exact_close_code() {
    let gw = Gateway::start(&config(HOSTILE_LIMITS));
    // The compressed path works: a fragmented compressed message is echoed whole, and a
    // message ended with a BFINAL block (RFC 7692 §7.2.3.5; here an empty one) too.
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Extensions", "permessage-deflate")],
        ..Default::default()
    };
    let mut c = connect_with(gw.ws, hs).await.unwrap();
    let body = "the same words again and again, ".repeat(40);
    let z = deflated(body.as_bytes());
    let (a, rest) = z.split_at(z.len() / 2);
    c.send_raw(&frame(OpCode::Text, false, true, a)).await;
    c.send_raw(&frame(OpCode::Continuation, true, false, rest))
        .await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), body);
    c.send_raw(&frame(
        OpCode::Text,
        true,
        true,
        &[0x01, 0x00, 0x00, 0xFF, 0xFF],
    ))
    .await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "");

    let zipped = |what, bytes, code| Hostile {
        what,
        deflate: true,
        session: false,
        bytes,
        code,
    };
    // A DEFLATE block of the reserved type 3 at once, and garbage after a final block.
    let mut after_final = vec![0x01, 0x00, 0x00, 0xFF, 0xFF];
    after_final.extend_from_slice(b"smuggled");
    // Compressed bytes that are not UTF-8 once inflated.
    let not_utf8 = deflated(b"\xC3\x28 inflated but not text");
    // A bomb: 6 MiB of zeros in about 6 KiB, far beyond max_message_bytes (8 KiB), in two
    // fragments that each fit max_frame_bytes and together fit max_message_bytes, so it is
    // the inflater that has to stop it.
    let bomb = deflated(&vec![0u8; 6 << 20]);
    assert!(
        bomb.len() < 8000,
        "the bomb is small on the wire: {}",
        bomb.len()
    );
    let (a, rest) = bomb.split_at(bomb.len() / 2);
    let mut bomb_frames = frame(OpCode::Binary, false, true, a);
    bomb_frames.extend(frame(OpCode::Continuation, true, false, rest));
    // Just past the limit: 8193 bytes inflated.
    let just_over = deflated(&[b'a'; 8193]);
    let cases = vec![
        zipped(
            "corrupt DEFLATE data",
            frame(OpCode::Binary, true, true, &[0x06, 0xFF, 0xFF, 0x00]),
            1007,
        ),
        zipped(
            "bytes after the final DEFLATE block",
            frame(OpCode::Binary, true, true, &after_final),
            1007,
        ),
        zipped(
            "compressed text that inflates to invalid UTF-8",
            frame(OpCode::Text, true, true, &not_utf8),
            1007,
        ),
        zipped(
            "a decompression bomb past max_message_bytes",
            bomb_frames,
            1009,
        ),
        zipped(
            "one byte past max_message_bytes once inflated",
            frame(OpCode::Binary, true, true, &just_over),
            1009,
        ),
        zipped(
            "RSV1 on a continuation",
            {
                let mut b = frame(OpCode::Text, false, true, &deflated(b"x")[..1]);
                b.extend(frame(OpCode::Continuation, true, true, b"y"));
                b
            },
            1002,
        ),
        zipped(
            "a compressed ping",
            frame(OpCode::Ping, true, true, b"p"),
            1002,
        ),
    ];
    assert_hostile_cases(&gw, cases).await;
}

#[tokio::test]
async fn hostile_session_frames_get_the_exact_close_code() {
    let gw = Gateway::start(&config(&format!(
        "{HOSTILE_LIMITS}[resume]\nenabled = true\n"
    )));
    // A good session first: numbered both ways, heartbeats answered.
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Protocol", "switchboard.v1")],
        ..Default::default()
    };
    let mut c = connect_with(gw.ws, hs).await.unwrap();
    assert!(text(&c.recv_within(5).await.unwrap()).starts_with('s'));
    c.send_text("m1:hello").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "m1:hello");
    c.send_text("h").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "h");

    let session = |what, bytes, code| Hostile {
        what,
        deflate: false,
        session: true,
        bytes,
        code,
    };
    let text_frame = |s: &str| frame(OpCode::Text, true, false, s.as_bytes());
    let mut cases = vec![
        session("sequence number 0", text_frame("m0:x"), 1002),
        session("message without a colon", text_frame("m1"), 1002),
        session(
            "sequence number that is not a number",
            text_frame("mx:y"),
            1002,
        ),
        session(
            "sequence number past u64",
            text_frame("m18446744073709551616:x"),
            1002,
        ),
        session("a gap: message 2 first", text_frame("m2:x"), 1002),
        session("an ack without a number", text_frame("a"), 1002),
        session("an ack that is not a number", text_frame("a1x"), 1002),
        session("a heartbeat with a payload", text_frame("hh"), 1002),
        session("an unknown frame type", text_frame("zap"), 1002),
        session("an empty text frame", text_frame(""), 1002),
        session(
            "a binary frame shorter than its header",
            frame(OpCode::Binary, true, false, &[1, 0, 0]),
            1002,
        ),
        session(
            "a binary frame with a wrong tag",
            frame(OpCode::Binary, true, false, &[2, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
            1002,
        ),
        session(
            "a binary gap: sequence u64::MAX first",
            frame(
                OpCode::Binary,
                true,
                false,
                &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            1002,
        ),
        // The codec's verdicts still come first on a session.
        session(
            "a session frame that is not UTF-8",
            frame(OpCode::Text, true, false, b"m1:\xFF"),
            1007,
        ),
    ];
    // Through the inflater into the session parser: a compressed frame of the protocol
    // that the protocol refuses.
    cases.push(Hostile {
        what: "a compressed session frame with sequence 0",
        deflate: true,
        session: true,
        bytes: frame(OpCode::Text, true, true, &deflated(b"m0:zipped")),
        code: 1002,
    });
    assert_hostile_cases(&gw, cases).await;
}

#[tokio::test]
async fn subprotocols_are_negotiated_by_server_preference() {
    let gw = Gateway::start(&config(
        "[server]\nsubprotocols = [\"chat.v2\", \"chat.v1\"]\n",
    ));
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Protocol", "other, chat.v1, chat.v2")],
        ..Default::default()
    };
    let c = connect_with(gw.ws, hs).await.unwrap();
    assert_eq!(
        header(&c.response, "sec-websocket-protocol").as_deref(),
        Some("chat.v2")
    );
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Protocol", "unknown")],
        ..Default::default()
    };
    let c = connect_with(gw.ws, hs).await.unwrap();
    assert!(header(&c.response, "sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn bad_handshakes_get_the_right_status() {
    let gw = Gateway::start(&config("[limits]\nhandshake_timeout_secs = 1\n"));
    let cases: &[(&str, u16)] = &[
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            426,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
        // RFC 6455 §4.1: HTTP/1.1 at least (hyper would not hand the socket over).
        (
            "GET / HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
    ];
    for (req, want) in cases {
        let resp = raw_request(gw.ws, req.as_bytes()).await;
        assert_eq!(parse_status(&resp).0, *want, "{req:?} -> {resp:?}");
    }
    let resp = raw_request(gw.ws, cases[3].0.as_bytes()).await;
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{resp}"
    );
    // A handshake that never finishes is dropped after the handshake timeout.
    let mut slow = TcpStream::connect(gw.ws).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let t = tokio::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut buf),
    )
    .await;
    assert!(r.is_ok(), "slow handshake still open after 5 s");
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn thousands_of_half_open_connections_do_not_block_a_real_client() {
    let gw = Gateway::start(&config("[limits]\nhandshake_timeout_secs = 2\n"));
    let mut idle = Vec::new();
    for i in 0..5000 {
        // Spread over source addresses so the client side does not run out of ports.
        let src = std::net::SocketAddr::from(([127, 0, 0, 1 + (i % 8) as u8], 0));
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(src).unwrap();
        idle.push(sock.connect(gw.ws).await.unwrap());
    }
    let mut c = connect(gw.ws).await;
    c.send_text("served").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "served");
    // Once the handshake timeout (2 s) passes, the server drops them all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        idle.retain(|s| {
            let mut b = [0u8; 1];
            match s.try_read(&mut b) {
                Ok(0) => false,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                Ok(_) => panic!("a half-open connection got data"),
            }
        });
        if idle.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} half-open connections still open",
            idle.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.send_text("still served").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "still served");
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_0() {
    let gw = Gateway::start(&config(""));
    let mut a = connect(gw.ws).await;
    let mut b = connect(gw.ws).await;
    a.send_text("x").await;
    a.recv_within(2).await.unwrap();
    let waiter = tokio::spawn(async move {
        let ca = a.expect_close(5).await;
        // Answer the close like a polite client.
        a.close(1001).await;
        let cb = b.expect_close(5).await;
        (ca, cb)
    });
    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap(), (Some(1001), Some(1001)));
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("all connections closed"), "{log}");
}

#[tokio::test]
async fn static_files_are_served_on_the_websocket_port() {
    let dir = std::env::temp_dir().join(format!("sb-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    let gw = Gateway::start(&config(&format!(
        "[static]\ndir = {:?}\n",
        dir.display().to_string()
    )));
    let (s, body) = http_get(gw.ws, "/").await;
    assert_eq!((s, body.as_str()), (200, "<h1>hi</h1>"));
    let resp = raw_request(
        gw.ws,
        b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{resp}"
    );
    assert_eq!(http_get(gw.ws, "/missing.txt").await.0, 404);
    assert_eq!(http_get(gw.ws, "/../../etc/passwd").await.0, 404);
    // WebSocket upgrades still work on the same port.
    let mut c = connect(gw.ws).await;
    c.send_text("ws").await;
    assert_eq!(text(&c.recv_within(2).await.unwrap()), "ws");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = Gateway::start(&config(""));
    assert_eq!(http_get(gw.mgmt, "/healthz").await.0, 200);
    assert_eq!(http_get(gw.mgmt, "/readyz").await.0, 200);
    let m = gw.metrics().await;
    for name in [
        "switchboard_connections_open",
        "switchboard_connections_total",
        "switchboard_messages_in_total",
        "switchboard_bytes_out_total",
        "switchboard_outbound_queue_drops_total",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
}

#[tokio::test]
async fn env_overrides_apply() {
    let gw = Gateway::start_with_env(&config(""), &[("SWITCHBOARD_LIMITS__MAX_CONNECTIONS", "1")]);
    let _a = connect(gw.ws).await;
    let err = connect_with(gw.ws, Handshake::default())
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("HTTP/1.1 503"), "{err}");
}

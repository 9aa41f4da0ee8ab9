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
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gw.metric("switchboard_closes_total{code=\"1009\"}").await,
        2.0
    );
}

#[tokio::test]
async fn idle_timeout_closes_1001_and_activity_resets_it() {
    let gw = Gateway::start(&config(
        "[limits]\nidle_timeout_secs = 2\n[keepalive]\nping_interval_secs = 0\n",
    ));
    let mut busy = connect(gw.ws).await;
    let mut idle = connect(gw.ws).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        busy.send_frame(OpCode::Pong, true, b"").await;
    }
    // 3 s passed: the idle one was closed, the one sending pongs was not.
    assert_eq!(idle.expect_close(1).await, Some(1001));
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
    // The slot comes back once the connection is gone.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if connect_with(gw.ws, Handshake::default()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    assert_eq!(
        gw.metric("switchboard_handshakes_rejected_total{reason=\"max_connections\"}")
            .await,
        1.0
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
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(connect_with(gw.ws, Handshake::default()).await.is_ok());
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
    for i in 0..20 {
        healthy.send_text(&format!("m{i}")).await;
        assert_eq!(
            text(&healthy.recv_within(2).await.unwrap()),
            format!("m{i}")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed = false;
    for _ in 0..60 {
        if gw.metric("switchboard_closes_total{code=\"1013\"}").await == 1.0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        closed,
        "stalled reader was not closed: {}",
        gw.metrics().await
    );
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

#[tokio::test]
async fn random_garbage_never_hurts_the_server() {
    let gw = Gateway::start(&config(""));
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for round in 0..200 {
        let mut c = connect(gw.ws).await;
        let mut junk = vec![0u8; 1 + (round * 37) % 300];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        c.send_raw(&junk).await;
        drop(c);
    }
    let mut c = connect(gw.ws).await;
    c.send_text("survived").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "survived");
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
    // After the handshake timeout the server has dropped them all.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(
            Duration::from_millis(5),
            tokio::io::AsyncReadExt::read(s, &mut b),
        )
        .await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 5000);
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
    tokio::time::sleep(Duration::from_millis(100)).await;
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

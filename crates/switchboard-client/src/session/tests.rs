use super::*;

const MS: Duration = Duration::from_millis(1);

fn cfg() -> Config {
    Config {
        ack_every: 32,
        ack_delay: 100 * MS,
        heartbeat: Some(Heartbeat {
            interval: 1000 * MS,
            timeout: 500 * MS,
        }),
        send_queue: 8,
        resend_unconfirmed: false,
    }
}

fn hello(session: &str, id: &str, resumed: bool, last_client: u64) -> Bytes {
    Bytes::from(format!(
        r#"s{{"session":"{session}","connectionId":"{id}","resumed":{resumed},"lastClientSeq":{last_client},"resumeWindowSecs":120}}"#
    ))
}

fn msg(seq: u64, body: &str) -> Bytes {
    Bytes::from(format!("m{seq}:{body}"))
}

fn text(s: &str) -> Option<Event> {
    Some(Event::Message(Payload::Text(s.into())))
}

/// Everything the session wants to write now, as strings (binary shown as hex).
fn drain(s: &mut Session, now: Instant) -> Vec<String> {
    let mut frames = Vec::new();
    loop {
        let mut out = Vec::new();
        match s.poll_transmit(now, &mut out) {
            None => return frames,
            Some(Transmit::Ping) => frames.push("PING".into()),
            Some(Transmit::Text) => frames.push(String::from_utf8(out).unwrap()),
            Some(Transmit::Binary) => frames.push(out.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

fn open(s: &mut Session, now: Instant) {
    assert_eq!(s.link_up(now, true), None);
    assert_eq!(
        s.on_message(now, true, hello("tok1", "c1", false, 0)),
        Ok(Some(Event::Open {
            connection_id: Some("c1".into())
        }))
    );
}

#[test]
fn queued_while_down_then_sent_after_hello() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.enqueue(true, Bytes::from_static(b"one")).unwrap();
    s.enqueue(false, Bytes::from_static(b"\x07")).unwrap();
    assert_eq!(s.resume_offer(), None);
    assert!(drain(&mut s, t0).is_empty());
    s.link_up(t0, true);
    // Nothing before the hello: the server may have processed some already.
    assert!(drain(&mut s, t0).is_empty());
    assert_eq!(
        s.on_message(t0, true, msg(1, "x")),
        Err(FrameError("frame before the hello"))
    );
    s.on_message(t0, true, hello("tok1", "c1", false, 0))
        .unwrap();
    assert_eq!(drain(&mut s, t0), ["m1:one", "01000000000000000207"]);
    assert_eq!(s.connection_id(), Some("c1"));
    assert_eq!(s.resume_offer(), Some(("tok1", 0)));
    // Written but unacknowledged: still queued.
    assert_eq!(s.outbox_len(), 2);
    s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
    assert_eq!(s.outbox_len(), 1);
    s.on_message(t0, true, Bytes::from_static(b"a2")).unwrap();
    assert_eq!(s.outbox_len(), 0);
    assert_eq!(
        s.on_message(t0, true, Bytes::from_static(b"a3")),
        Err(FrameError("ack of a message never sent"))
    );
}

#[test]
fn server_messages_delivered_once_in_order_and_acked_in_batches() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    assert_eq!(s.on_message(t0, true, msg(1, "a")), Ok(text("a")));
    assert_eq!(s.on_message(t0, true, msg(1, "a")), Ok(None));
    // The ack waits for 100 ms of batching.
    assert!(drain(&mut s, t0).is_empty());
    assert_eq!(s.poll_timeout(), Some(t0 + 100 * MS));
    assert_eq!(s.on_message(t0 + 50 * MS, true, msg(2, "b")), Ok(text("b")));
    assert!(drain(&mut s, t0 + 99 * MS).is_empty());
    assert_eq!(drain(&mut s, t0 + 100 * MS), ["a2"]);
    // 32 unacknowledged messages: acked at once.
    let t1 = t0 + 200 * MS;
    for n in 3..=33 {
        s.on_message(t1, true, msg(n, "x")).unwrap();
        assert!(drain(&mut s, t1).is_empty(), "{n}");
    }
    s.on_message(t1, true, msg(34, "x")).unwrap();
    assert_eq!(drain(&mut s, t1), ["a34"]);
    // A gap means the server lost messages.
    assert_eq!(s.on_message(t1, true, msg(36, "x")), Err(GAP));
}

#[test]
fn binary_server_messages() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    let mut frame = vec![1u8];
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.push(0xfe);
    assert_eq!(
        s.on_message(t0, false, Bytes::from(frame)),
        Ok(Some(Event::Message(Payload::Binary(Bytes::from_static(
            b"\xfe"
        )))))
    );
}

#[test]
fn resume_resends_unprocessed_and_dedupes_replay() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    for i in 1..=4 {
        s.enqueue(true, Bytes::from(format!("c{i}"))).unwrap();
    }
    assert_eq!(drain(&mut s, t0), ["m1:c1", "m2:c2", "m3:c3", "m4:c4"]);
    s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
    s.on_message(t0, true, msg(1, "s1")).unwrap();
    s.on_message(t0, true, msg(2, "s2")).unwrap();
    // The socket drops before the ack of s1..s2 went out.
    s.link_down();
    s.enqueue(true, Bytes::from_static(b"c5")).unwrap();
    assert_eq!(s.resume_offer(), Some(("tok1", 2)));
    assert!(drain(&mut s, t0).is_empty());

    let t1 = t0 + 300 * MS;
    s.link_up(t1, true);
    // The server had processed up to 3.
    assert_eq!(
        s.on_message(t1, true, hello("tok1", "c1", true, 3)),
        Ok(Some(Event::Resumed {
            connection_id: "c1".into()
        }))
    );
    // The ack of what we have is due at once (the old socket's ack may be lost),
    // then the unprocessed messages, with their original numbers.
    assert_eq!(drain(&mut s, t1 + 100 * MS), ["a2", "m4:c4", "m5:c5"]);
    // The server replays from 3; an overlap would be dropped.
    assert_eq!(s.on_message(t1, true, msg(2, "s2")), Ok(None));
    assert_eq!(s.on_message(t1, true, msg(3, "s3")), Ok(text("s3")));
    assert_eq!(s.outbox_len(), 2);
    assert!(s.take_unconfirmed().is_empty());
}

#[test]
fn fresh_session_sets_aside_unconfirmed_and_renumbers() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    s.enqueue(true, Bytes::from_static(b"sent")).unwrap();
    assert_eq!(drain(&mut s, t0), ["m1:sent"]);
    s.on_message(t0, true, msg(1, "s1")).unwrap();
    s.link_down();
    s.enqueue(true, Bytes::from_static(b"later")).unwrap();
    s.link_up(t0, true);
    // The window expired: the server starts over.
    assert_eq!(
        s.on_message(t0, true, hello("tok2", "c2", false, 0)),
        Ok(Some(Event::Open {
            connection_id: Some("c2".into())
        }))
    );
    assert_eq!(drain(&mut s, t0 + 100 * MS), ["m1:later"]);
    assert_eq!(s.resume_offer(), Some(("tok2", 0)));
    assert_eq!(s.on_message(t0, true, msg(1, "new")), Ok(text("new")));
    assert_eq!(s.take_unconfirmed(), [Payload::Text("sent".into())]);
    // A resumed hello for a session never offered is a server bug.
    let mut s = Session::new(cfg());
    s.link_up(t0, true);
    assert!(s.on_message(t0, true, hello("x", "c", true, 0)).is_err());
    // So is an ack beyond what was written.
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    s.link_down();
    s.link_up(t0, true);
    assert_eq!(
        s.on_message(t0, true, hello("tok1", "c1", true, 1)),
        Err(FrameError("hello acknowledges messages never sent"))
    );
}

#[test]
fn fresh_session_resends_unconfirmed_by_default() {
    let t0 = Instant::now();
    let mut s = Session::new(Config {
        resend_unconfirmed: true,
        ..cfg()
    });
    open(&mut s, t0);
    s.enqueue(true, Bytes::from_static(b"a")).unwrap();
    s.enqueue(true, Bytes::from_static(b"b")).unwrap();
    assert_eq!(drain(&mut s, t0), ["m1:a", "m2:b"]);
    s.on_message(t0, true, Bytes::from_static(b"a1")).unwrap();
    s.link_down();
    s.enqueue(true, Bytes::from_static(b"c")).unwrap();
    s.link_up(t0, true);
    s.on_message(t0, true, hello("tok2", "c2", false, 0))
        .unwrap();
    // "a" was acknowledged: gone. "b" may or may not have been processed: resent,
    // first, renumbered with the never-written "c".
    assert_eq!(drain(&mut s, t0), ["m1:b", "m2:c"]);
    assert!(s.take_unconfirmed().is_empty());
}

#[test]
fn clean_close_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    s.end_session();
    assert_eq!(s.resume_offer(), None);
}

#[test]
fn send_queue_is_bounded_by_unacknowledged_messages() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    for _ in 0..8 {
        s.enqueue(true, Bytes::new()).unwrap();
    }
    assert_eq!(s.enqueue(true, Bytes::new()), Err(QueueFull));
    open(&mut s, t0);
    assert_eq!(drain(&mut s, t0).len(), 8);
    // Written is not enough: only an ack makes room.
    assert!(!s.has_room());
    s.on_message(t0, true, Bytes::from_static(b"a3")).unwrap();
    assert!(s.has_room());
    for _ in 0..3 {
        s.enqueue(true, Bytes::new()).unwrap();
    }
    assert_eq!(s.enqueue(true, Bytes::new()), Err(QueueFull));
}

#[test]
fn heartbeat_detects_a_dead_path() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    assert_eq!(s.poll_timeout(), Some(t0 + 1000 * MS));
    // Traffic postpones it.
    s.on_message(t0 + 500 * MS, true, Bytes::from_static(b"h"))
        .unwrap();
    assert!(drain(&mut s, t0 + 1000 * MS).is_empty());
    let t1 = t0 + 1500 * MS;
    assert_eq!(drain(&mut s, t1), ["h"]);
    assert_eq!(s.poll_timeout(), Some(t1 + 500 * MS));
    assert_eq!(s.on_timeout(t1 + 499 * MS), Ok(()));
    // The answer arrives: alive; the next heartbeat after another interval.
    s.on_message(t1 + 100 * MS, true, Bytes::from_static(b"h"))
        .unwrap();
    assert_eq!(s.on_timeout(t1 + 600 * MS), Ok(()));
    let t2 = t1 + 1100 * MS;
    assert_eq!(drain(&mut s, t2), ["h"]);
    assert_eq!(s.on_timeout(t2 + 500 * MS), Err(Dead));
    // Paused reads stop the heartbeat; resuming re-arms it.
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    s.pause_reads(t0, true);
    assert_eq!(s.poll_timeout(), None);
    s.pause_reads(t0 + 5000 * MS, false);
    assert_eq!(s.poll_timeout(), Some(t0 + 6000 * MS));
}

#[test]
fn plain_mode_is_raw_and_at_most_once() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.enqueue(true, Bytes::from_static(b"{\"a\":1}")).unwrap();
    assert_eq!(
        s.link_up(t0, false),
        Some(Event::Open {
            connection_id: None
        })
    );
    assert_eq!(
        s.on_message(t0, true, Bytes::from_static(b"m1:x")),
        Ok(text("m1:x"))
    );
    assert_eq!(drain(&mut s, t0), ["{\"a\":1}"]);
    assert_eq!(s.outbox_len(), 0);
    assert_eq!(drain(&mut s, t0 + 1000 * MS), ["PING"]);
    assert_eq!(s.resume_offer(), None);
}

#[test]
fn sequenced_then_plain_server_starts_fresh() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    open(&mut s, t0);
    s.enqueue(true, Bytes::from_static(b"x")).unwrap();
    drain(&mut s, t0);
    s.link_down();
    // The server no longer selects switchboard.v1.
    s.link_up(t0, false);
    assert_eq!(s.connection_id(), None);
    assert_eq!(s.resume_offer(), None);
    assert_eq!(s.take_unconfirmed(), [Payload::Text("x".into())]);
}

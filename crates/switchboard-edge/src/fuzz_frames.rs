//! Fuzz target: the `switchboard.v1` client-frame parser (`session::parse`).
//!
//! A model parser written from docs/protocol.md ("Frames") is the reference: every frame
//! type with arbitrary field values, oversized and signed numbers, wrong frame kinds
//! (text where binary is due and back), unknown types and arbitrary bytes must parse as
//! the model says, never panic, and never copy the payload (it is a slice of the frame).
//! What the parser refuses, the connection closes with 1002 `bad switchboard.v1 frame`
//! (`conn.rs`). Valid frames round-trip: the spec's encoding (and the server's own, which
//! is the same for messages) parses back to the same sequence number and payload.

use bytes::Bytes;
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;

use crate::session::{parse, ClientFrame, Session};

/// The frame the protocol defines for `data`, read straight from docs/protocol.md:
/// binary `0x01`, 8-byte big-endian sequence, payload; text `m<n>:<payload>`, `a<n>` or
/// `h`; `<n>` decimal digits of a u64, and a message's sequence starts at 1.
fn model(data: &[u8], binary: bool) -> ClientFrame {
    let decimal = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    if binary {
        return match data {
            [0x01, seq @ ..] if seq.len() >= 8 => {
                let n = u64::from_be_bytes(seq[..8].try_into().expect("8 bytes"));
                if n == 0 {
                    ClientFrame::Invalid
                } else {
                    ClientFrame::Message {
                        seq: n,
                        data: Bytes::copy_from_slice(&data[9..]),
                        binary: true,
                    }
                }
            }
            _ => ClientFrame::Invalid,
        };
    }
    match data {
        [b'h'] => ClientFrame::Heartbeat,
        [b'a', n @ ..] => decimal(n).map_or(ClientFrame::Invalid, ClientFrame::Ack),
        [b'm', rest @ ..] => {
            let Some(colon) = rest.iter().position(|&b| b == b':') else {
                return ClientFrame::Invalid;
            };
            match decimal(&rest[..colon]) {
                Some(seq) if seq > 0 => ClientFrame::Message {
                    seq,
                    data: Bytes::copy_from_slice(&rest[colon + 1..]),
                    binary: false,
                },
                _ => ClientFrame::Invalid,
            }
        }
        _ => ClientFrame::Invalid,
    }
}

/// A frame as a client would send it, valid or not.
#[derive(Debug, Clone)]
enum Frame {
    Message {
        seq: u64,
        payload: String,
    },
    Binary {
        seq: u64,
        payload: Vec<u8>,
    },
    Ack(u64),
    Heartbeat,
    /// A frame type letter (known or not) followed by a number spelled oddly and a tail.
    Odd {
        kind: u8,
        number: String,
        tail: String,
        binary: bool,
    },
    /// A binary frame with any first byte and length.
    OddBinary(Vec<u8>),
    /// Any bytes, as text or binary.
    Bytes(Vec<u8>, bool),
}

impl Frame {
    /// The wire bytes and whether they go as a binary frame.
    fn encode(&self) -> (Bytes, bool) {
        match self {
            Frame::Message { seq, payload } => (format!("m{seq}:{payload}").into(), false),
            Frame::Binary { seq, payload } => {
                let mut out = vec![0x01];
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
                (out.into(), true)
            }
            Frame::Ack(n) => (format!("a{n}").into(), false),
            Frame::Heartbeat => (Bytes::from_static(b"h"), false),
            Frame::Odd {
                kind,
                number,
                tail,
                binary,
            } => {
                let mut out = vec![*kind];
                out.extend_from_slice(number.as_bytes());
                out.extend_from_slice(tail.as_bytes());
                (out.into(), *binary)
            }
            Frame::OddBinary(b) => (b.clone().into(), true),
            Frame::Bytes(b, binary) => (b.clone().into(), *binary),
        }
    }
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..100, any::<u64>(), Just(0u64), Just(u64::MAX)]
}

/// Numbers as a careless or hostile client spells them.
fn odd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just(String::new()),
        Just("0".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
        "[0-9]{20,64}",
        "[+-][0-9]{1,5}",
        "0[0-9]{1,5}",
        "[0-9 _.xe,:]{1,8}",
        "[٠-٩]{1,3}",
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        3 => (seq(), any::<String>()).prop_map(|(seq, payload)| Frame::Message { seq, payload }),
        2 => (seq(), vec(any::<u8>(), 0..32)).prop_map(|(seq, payload)| Frame::Binary { seq, payload }),
        2 => any::<u64>().prop_map(Frame::Ack),
        1 => Just(Frame::Heartbeat),
        4 => (
            prop_oneof![Just(b'm'), Just(b'a'), Just(b'h'), Just(b's'), Just(b'M'), Just(0x01u8), any::<u8>()],
            odd_number(),
            prop_oneof![Just(String::new()), Just(":".to_owned()), ":.{0,8}", ".{0,8}"],
            any::<bool>(),
        )
            .prop_map(|(kind, number, tail, binary)| Frame::Odd { kind, number, tail, binary }),
        1 => vec(any::<u8>(), 0..12).prop_map(Frame::OddBinary),
        2 => (vec(any::<u8>(), 0..48), any::<bool>()).prop_map(|(b, binary)| Frame::Bytes(b, binary)),
    ]
}

#[test]
fn fuzz_edge_session_frames() {
    switchboard_fuzz::run("fuzz_edge_session_frames", 500_000, frame(), |frame| {
        let (wire, binary) = frame.encode();
        let parsed = parse(&wire, binary);
        prop_assert_eq!(&parsed, &model(&wire, binary), "{:?}", wire);
        match (&frame, &parsed) {
            // Round trip: what a client encodes is what the server reads.
            (Frame::Message { seq, payload }, _) if *seq > 0 => {
                prop_assert_eq!(
                    &parsed,
                    &ClientFrame::Message {
                        seq: *seq,
                        data: Bytes::copy_from_slice(payload.as_bytes()),
                        binary: false
                    }
                );
            }
            (Frame::Binary { seq, payload }, _) if *seq > 0 => {
                prop_assert_eq!(
                    &parsed,
                    &ClientFrame::Message {
                        seq: *seq,
                        data: Bytes::copy_from_slice(payload),
                        binary: true
                    }
                );
            }
            (Frame::Ack(n), _) => prop_assert_eq!(&parsed, &ClientFrame::Ack(*n)),
            (Frame::Heartbeat, _) => prop_assert_eq!(&parsed, &ClientFrame::Heartbeat),
            _ => {}
        }
        // The payload is a view into the frame, never a copy: parsing allocates nothing.
        if let ClientFrame::Message { data, .. } = &parsed {
            let frame = wire.as_ptr_range();
            let payload = data.as_ptr_range();
            prop_assert!(
                data.is_empty() || (frame.start <= payload.start && payload.end <= frame.end)
            );
        }
        Ok(())
    });
}

/// The server numbers its messages in the same format a client does: whatever it frames
/// reads back as that message.
#[test]
fn fuzz_edge_session_server_frames_round_trip() {
    let messages = vec((vec(any::<u8>(), 0..24), any::<bool>()), 1..8);
    switchboard_fuzz::run(
        "fuzz_edge_session_server_frames_round_trip",
        300_000,
        messages,
        |messages| {
            let mut session = Session::new("t".into(), 64, 1 << 20);
            for (i, (payload, binary)) in messages.iter().enumerate() {
                // A text frame carries UTF-8; make the payload so.
                let payload = if *binary {
                    payload.clone()
                } else {
                    String::from_utf8_lossy(payload).into_owned().into_bytes()
                };
                let (wire, is_binary) = session.frame(&payload, *binary);
                prop_assert_eq!(is_binary, *binary);
                prop_assert_eq!(
                    parse(&wire, is_binary),
                    ClientFrame::Message {
                        seq: i as u64 + 1,
                        data: Bytes::from(payload),
                        binary: *binary
                    }
                );
            }
            Ok(())
        },
    );
}

/// Minimal inputs the target found.
mod regressions {
    use super::*;

    /// A binary message numbered 0 was read as a message; the connection then took it for
    /// a resend of something already handed on, acknowledged it and dropped it without a
    /// word. Sequence numbers start at 1 (as for text `m0:`): it is a bad frame (1002).
    #[test]
    fn binary_message_with_sequence_zero_is_a_bad_frame() {
        let mut frame = vec![0x01];
        frame.extend_from_slice(&0u64.to_be_bytes());
        frame.extend_from_slice(b"payload");
        assert_eq!(parse(&Bytes::from(frame), true), ClientFrame::Invalid);
        assert_eq!(
            parse(&Bytes::from_static(b"m0:payload"), false),
            ClientFrame::Invalid
        );
    }

    /// `u64::from_str` takes a leading `+`, so `m+5:x` was message 5 and `a+5` an ack;
    /// the protocol's numbers are decimal digits only.
    #[test]
    fn signed_sequence_numbers_are_bad_frames() {
        for bad in [&b"m+5:x"[..], b"a+5", b"m-5:x", b"a-0", b"m +5:x", b"a 5"] {
            assert_eq!(
                parse(&Bytes::copy_from_slice(bad), false),
                ClientFrame::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Numbers past u64 and oversized digit runs are refused, not wrapped or truncated.
    #[test]
    fn oversized_numbers_are_bad_frames() {
        for bad in [
            &b"a18446744073709551616"[..],
            b"m18446744073709551616:x",
            b"m99999999999999999999999999999999999999:x",
        ] {
            assert_eq!(
                parse(&Bytes::copy_from_slice(bad), false),
                ClientFrame::Invalid
            );
        }
        assert_eq!(
            parse(&Bytes::from_static(b"a18446744073709551615"), false),
            ClientFrame::Ack(u64::MAX)
        );
    }
}

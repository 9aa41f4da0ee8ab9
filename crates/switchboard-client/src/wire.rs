//! The `switchboard.v1` frames (docs/protocol.md, "Frames"): parsing what the server
//! sends and building what the client sends. Pure functions over bytes.

use std::io::Write;

use bytes::Bytes;
use serde::Deserialize;

/// The subprotocol name.
pub const PROTOCOL: &str = "switchboard.v1";

/// First byte of a sequenced binary message.
const BINARY_TAG: u8 = 0x01;

/// The hello frame's JSON (`s{...}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hello {
    pub session: String,
    pub connection_id: String,
    pub resumed: bool,
    #[serde(default)]
    pub last_client_seq: u64,
    #[serde(default)]
    pub resume_window_secs: u64,
}

/// A frame from the server on a `switchboard.v1` connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerFrame {
    Hello(Hello),
    /// A message: its sequence number and payload (text payloads are valid UTF-8, the
    /// whole frame having been checked by the WebSocket decoder).
    Message {
        seq: u64,
        text: bool,
        payload: Bytes,
    },
    Ack(u64),
    Heartbeat,
}

/// Why a server frame is not one of the protocol's. Static, so the close reason costs
/// nothing to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FrameError(pub &'static str);

/// Parses a text frame.
pub(crate) fn parse_text(data: Bytes) -> Result<ServerFrame, FrameError> {
    match data.first() {
        Some(b'h') if data.len() == 1 => Ok(ServerFrame::Heartbeat),
        Some(b'a') => parse_seq(&data[1..])
            .map(ServerFrame::Ack)
            .ok_or(FrameError("malformed ack frame")),
        Some(b'm') => {
            let colon = data
                .iter()
                .position(|&b| b == b':')
                .ok_or(FrameError("message frame without ':'"))?;
            let seq = parse_seq(&data[1..colon])
                .filter(|&n| n > 0)
                .ok_or(FrameError("malformed message sequence number"))?;
            Ok(ServerFrame::Message {
                seq,
                text: true,
                payload: data.slice(colon + 1..),
            })
        }
        Some(b's') => serde_json::from_slice(&data[1..])
            .map(ServerFrame::Hello)
            .map_err(|_| FrameError("malformed hello frame")),
        _ => Err(FrameError("unknown switchboard.v1 frame")),
    }
}

/// Parses a binary frame.
pub(crate) fn parse_binary(data: Bytes) -> Result<ServerFrame, FrameError> {
    if data.len() < 9 || data[0] != BINARY_TAG {
        return Err(FrameError("malformed binary message frame"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&data[1..9]);
    let seq = u64::from_be_bytes(seq);
    if seq == 0 {
        return Err(FrameError("malformed message sequence number"));
    }
    Ok(ServerFrame::Message {
        seq,
        text: false,
        payload: data.slice(9..),
    })
}

/// A decimal sequence number: ASCII digits only (no sign, no spaces), fits a u64.
fn parse_seq(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Appends the body of a client message frame (`m<n>:<payload>` or the binary form) to
/// `out`.
pub(crate) fn message(seq: u64, text: bool, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 22);
    if text {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "m{seq}:");
    } else {
        out.push(BINARY_TAG);
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a cumulative ack frame (`a<n>`) to `out`.
pub(crate) fn ack(seq: u64, out: &mut Vec<u8>) {
    let _ = write!(out, "a{seq}");
}

/// The heartbeat frame.
pub(crate) const HEARTBEAT: &[u8] = b"h";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_frames() {
        assert_eq!(
            parse_text(Bytes::from_static(b"m7:hi:there")),
            Ok(ServerFrame::Message {
                seq: 7,
                text: true,
                payload: Bytes::from_static(b"hi:there")
            })
        );
        assert_eq!(
            parse_text(Bytes::from_static(b"m1:")),
            Ok(ServerFrame::Message {
                seq: 1,
                text: true,
                payload: Bytes::new()
            })
        );
        assert_eq!(
            parse_text(Bytes::from_static(b"a42")),
            Ok(ServerFrame::Ack(42))
        );
        assert_eq!(
            parse_text(Bytes::from_static(b"a0")),
            Ok(ServerFrame::Ack(0))
        );
        assert_eq!(
            parse_text(Bytes::from_static(b"h")),
            Ok(ServerFrame::Heartbeat)
        );
        let hello = parse_text(Bytes::from_static(
            br#"s{"session":"tok","connectionId":"c1","resumed":false,"lastClientSeq":3,"resumeWindowSecs":120,"future":1}"#,
        ))
        .unwrap();
        assert_eq!(
            hello,
            ServerFrame::Hello(Hello {
                session: "tok".into(),
                connection_id: "c1".into(),
                resumed: false,
                last_client_seq: 3,
                resume_window_secs: 120
            })
        );
        let mut bin = vec![1u8];
        bin.extend_from_slice(&9u64.to_be_bytes());
        bin.extend_from_slice(b"\x00\xff");
        assert_eq!(
            parse_binary(Bytes::from(bin)),
            Ok(ServerFrame::Message {
                seq: 9,
                text: false,
                payload: Bytes::from_static(b"\x00\xff")
            })
        );
    }

    #[test]
    fn rejects_malformed_frames() {
        for bad in [
            &b""[..],
            b"x",
            b"hh",
            b"a",
            b"a-1",
            b"a 1",
            b"a1x",
            b"m1",
            b"m:x",
            b"m0:x",
            b"m+1:x",
            b"m99999999999999999999999:x",
            b"s{",
            b"s{}",
        ] {
            assert!(parse_text(Bytes::from_static(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_binary(Bytes::from_static(b"\x01\0\0\0")).is_err());
        assert!(parse_binary(Bytes::from_static(b"\x02\0\0\0\0\0\0\0\x01")).is_err());
        assert!(parse_binary(Bytes::from_static(b"\x01\0\0\0\0\0\0\0\0")).is_err());
    }

    #[test]
    fn builds_client_frames() {
        let mut out = Vec::new();
        message(12, true, b"hello", &mut out);
        assert_eq!(out, b"m12:hello");
        out.clear();
        message(2, false, b"\x00", &mut out);
        assert_eq!(out, b"\x01\0\0\0\0\0\0\0\x02\x00");
        out.clear();
        ack(1000, &mut out);
        assert_eq!(out, b"a1000");
    }

    /// The server's frames on arbitrary bytes never panic; a message or ack the client's
    /// own builders write (the server writes the same shapes) parses back to its parts;
    /// a decimal that does not fit a u64, or is longer than 20 digits, is refused rather
    /// than wrapped.
    #[test]
    fn fuzz_client_server_frames() {
        use switchboard_fuzz::proptest::prelude::*;
        let input = prop_oneof![
            any::<Vec<u8>>().prop_map(|b| (0u8, 0u64, false, b)),
            (1u64.., any::<bool>(), any::<Vec<u8>>()).prop_map(|(s, t, b)| (1u8, s, t, b)),
            any::<u64>().prop_map(|s| (2u8, s, false, Vec::new())),
            "[0-9]{18,24}".prop_map(|d| (3u8, 0, false, d.into_bytes())),
        ];
        switchboard_fuzz::run(
            "fuzz_client_server_frames",
            65536,
            input,
            |(kind, seq, text, bytes)| {
                match kind {
                    0 => {
                        let data = Bytes::from(bytes);
                        let _ = parse_text(data.clone());
                        let _ = parse_binary(data);
                    }
                    1 => {
                        // A text payload is UTF-8 on the wire (the codec checks it).
                        let payload = if text {
                            String::from_utf8_lossy(&bytes).into_owned().into_bytes()
                        } else {
                            bytes
                        };
                        let mut out = Vec::new();
                        message(seq, text, &payload, &mut out);
                        let frame = if text {
                            parse_text(Bytes::from(out))
                        } else {
                            parse_binary(Bytes::from(out))
                        };
                        prop_assert_eq!(
                            frame,
                            Ok(ServerFrame::Message {
                                seq,
                                text,
                                payload: Bytes::from(payload)
                            })
                        );
                    }
                    2 => {
                        let mut out = Vec::new();
                        ack(seq, &mut out);
                        prop_assert_eq!(parse_text(Bytes::from(out)), Ok(ServerFrame::Ack(seq)));
                    }
                    _ => {
                        let digits = std::str::from_utf8(&bytes).unwrap();
                        let mut frame = b"a".to_vec();
                        frame.extend_from_slice(&bytes);
                        let parsed = parse_text(Bytes::from(frame));
                        // At most 20 digits (u64::MAX has 20), so zero-padding cannot
                        // make a frame arbitrarily long.
                        match digits.parse::<u64>() {
                            Ok(n) if digits.len() <= 20 => {
                                prop_assert_eq!(parsed, Ok(ServerFrame::Ack(n)))
                            }
                            _ => prop_assert!(parsed.is_err()),
                        }
                    }
                }
                Ok(())
            },
        );
    }
}

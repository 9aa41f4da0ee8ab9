//! The receiving half: frames in, whole messages out.

use bytes::{Buf, BytesMut};

use crate::deflate::{DeflateParams, Inflater};
use crate::frame::{apply_mask, parse_header, Header, OpCode, Role};
use crate::{close_code, Limits, Message, ProtocolError};

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    compressed: bool,
    buf: BytesMut,
    /// How much of `buf` is known to be valid UTF-8 (uncompressed text only), so an
    /// invalid sequence fails as soon as its fragment arrives.
    utf8_checked: usize,
}

/// Turns received bytes into messages. Holds no buffer between messages.
///
/// Memory: the decoder never reserves room in the caller's buffer. It used to reserve a
/// whole frame as soon as the header announced it, so a peer that announced 64 MiB and
/// then trickled bytes held 64 MiB of address space per connection. Now the buffer grows
/// only as the caller reads bytes into it (with the buffer's own geometric growth, at
/// most twice what arrived), so a half-sent frame costs what was sent. Measured with
/// glibc: reserving ahead of the data, even in bounded steps, costs its full size in RSS
/// once the heap has been churned, where the reads' own growth costs what arrived
/// (`bench/slowframe.sh`). Every verdict the header alone allows (bad RSV1, a
/// continuation without a message, a message above `max_message_bytes`) is given before
/// any of its payload is awaited.
pub struct Decoder {
    role: Role,
    limits: Limits,
    inflater: Option<Inflater>,
    partial: Option<Partial>,
}

impl Decoder {
    /// A decoder for one connection. `deflate`: the negotiated permessage-deflate, if any.
    pub fn new(role: Role, limits: Limits, deflate: Option<DeflateParams>) -> Self {
        Self {
            role,
            limits,
            inflater: deflate.map(Inflater::new),
            partial: None,
        }
    }

    /// Whether a fragmented message is half received.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of capacity the decoder itself holds for a half-received fragmented message
    /// (0 between messages). Bounded by `max_message_bytes` plus one growth step of its
    /// buffer; exposed so tests and fuzz targets can check that bound.
    pub fn held_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.capacity())
    }

    /// Takes the next complete message out of `buf`. `Ok(None)`: more bytes are needed
    /// (`buf` is left as it was: see the type's memory note). Control
    /// frames interleaved in a fragmented message are returned as they come. After an
    /// error the decoder holds nothing (the connection is to be closed).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        let result = self.next(buf);
        if result.is_err() {
            self.partial = None;
        }
        result
    }

    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            let Some(h) = parse_header(buf, self.role, self.limits.max_frame_bytes)? else {
                return Ok(None);
            };
            self.check_header(&h)?;
            if buf.len() < h.header_len + h.payload_len {
                return Ok(None);
            }
            buf.advance(h.header_len);
            let mut payload = buf.split_to(h.payload_len);
            if let Some(mask) = h.mask {
                apply_mask(&mut payload, mask);
            }
            if h.opcode.is_control() {
                return match h.opcode {
                    OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
                    OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
                    _ => parse_close(payload).map(Some),
                };
            }
            match h.opcode {
                OpCode::Text | OpCode::Binary => {
                    let text = h.opcode == OpCode::Text;
                    if h.fin {
                        return self.finish(text, h.rsv1, payload).map(Some);
                    }
                    let mut partial = Partial {
                        text,
                        compressed: h.rsv1,
                        buf: payload,
                        utf8_checked: 0,
                    };
                    self.check_partial(&mut partial)?;
                    self.partial = Some(partial);
                }
                _ => {
                    let Some(mut partial) = self.partial.take() else {
                        return Err(ProtocolError::protocol("continuation without a message"));
                    };
                    partial.buf.extend_from_slice(&payload);
                    self.check_partial(&mut partial)?;
                    if h.fin {
                        return self
                            .finish(partial.text, partial.compressed, partial.buf)
                            .map(Some);
                    }
                    self.partial = Some(partial);
                }
            }
        }
    }

    /// The verdicts a frame header allows before its payload is read: a peer learns of a
    /// violation at once, and no byte of a frame that will be refused is awaited.
    fn check_header(&self, h: &Header) -> Result<(), ProtocolError> {
        if h.opcode.is_control() {
            if h.rsv1 {
                return Err(ProtocolError::protocol("compressed control frame"));
            }
            return Ok(());
        }
        if h.rsv1 && (self.inflater.is_none() || h.opcode == OpCode::Continuation) {
            return Err(ProtocolError::protocol("unexpected RSV1"));
        }
        let max = self.limits.max_message_bytes;
        match (&self.partial, h.opcode) {
            (Some(_), OpCode::Text | OpCode::Binary) => Err(ProtocolError::protocol(
                "new message inside a fragmented one",
            )),
            (None, OpCode::Continuation) => {
                Err(ProtocolError::protocol("continuation without a message"))
            }
            (Some(p), _) if p.buf.len().saturating_add(h.payload_len) > max => {
                Err(ProtocolError::too_big("message too big"))
            }
            // A whole compressed message is bounded by what it inflates to, in `finish`.
            (None, _) if !(h.rsv1 && h.fin) && h.payload_len > max => {
                Err(ProtocolError::too_big("message too big"))
            }
            _ => Ok(()),
        }
    }

    fn check_partial(&self, p: &mut Partial) -> Result<(), ProtocolError> {
        if p.buf.len() > self.limits.max_message_bytes {
            return Err(ProtocolError::too_big("message too big"));
        }
        if p.text && !p.compressed {
            match std::str::from_utf8(&p.buf[p.utf8_checked..]) {
                Ok(_) => p.utf8_checked = p.buf.len(),
                // An incomplete sequence at the end may be finished by the next fragment.
                Err(e) if e.error_len().is_none() => p.utf8_checked += e.valid_up_to(),
                Err(_) => return Err(ProtocolError::invalid_utf8()),
            }
        }
        Ok(())
    }

    fn finish(
        &mut self,
        text: bool,
        compressed: bool,
        payload: BytesMut,
    ) -> Result<Message, ProtocolError> {
        let max = self.limits.max_message_bytes;
        let data = if compressed {
            let inflater = self
                .inflater
                .as_mut()
                .ok_or(ProtocolError::protocol("unexpected RSV1"))?;
            bytes::Bytes::from(inflater.decompress(&payload, max)?)
        } else {
            if payload.len() > max {
                return Err(ProtocolError::too_big("message too big"));
            }
            payload.freeze()
        };
        if text {
            if std::str::from_utf8(&data).is_err() {
                return Err(ProtocolError::invalid_utf8());
            }
            Ok(Message::Text(data))
        } else {
            Ok(Message::Binary(data))
        }
    }
}

fn parse_close(payload: BytesMut) -> Result<Message, ProtocolError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(ProtocolError::protocol("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_valid_on_wire(code) {
                return Err(ProtocolError::protocol("invalid close code"));
            }
            let reason = payload.freeze().slice(2..);
            if std::str::from_utf8(&reason).is_err() {
                return Err(ProtocolError::invalid_utf8());
            }
            Ok(Message::Close(Some((code, reason))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_header;

    const MIB: usize = 1 << 20;

    fn limits(bytes: usize) -> Limits {
        Limits {
            max_frame_bytes: bytes,
            max_message_bytes: bytes,
        }
    }

    /// A masked binary frame header announcing `len` bytes (mask 0, so payload bytes go
    /// on the wire as they are).
    fn header(len: usize) -> BytesMut {
        let mut out = BytesMut::new();
        write_header(&mut out, true, false, OpCode::Binary, len, Some([0; 4]));
        out
    }

    #[test]
    fn a_huge_announced_frame_reserves_nothing_beyond_the_bytes_that_arrived() {
        let mut dec = Decoder::new(Role::Server, limits(64 * MIB), None);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&header(64 * MIB));
        assert!(dec.decode(&mut buf).unwrap().is_none());
        // A slow peer trickles 3.5 KiB of the announced 64 MiB, 512 bytes at a time.
        for _ in 0..7 {
            buf.extend_from_slice(&[7u8; 512]);
            assert!(dec.decode(&mut buf).unwrap().is_none());
            // The buffer's own growth only: at most twice what arrived.
            assert!(
                buf.capacity() <= 2 * buf.len(),
                "{} bytes buffered hold {} bytes of capacity",
                buf.len(),
                buf.capacity()
            );
        }
    }

    #[test]
    fn header_verdicts_come_before_the_payload() {
        let small = Limits {
            max_frame_bytes: MIB,
            max_message_bytes: 1000,
        };
        // A message announced above max_message_bytes: 1009 with only its header here.
        let mut dec = Decoder::new(Role::Server, small, None);
        let mut buf = header(5000);
        assert_eq!(dec.decode(&mut buf).unwrap_err().code, 1009);
        // A continuation that would take the message past the limit: the same.
        let mut dec = Decoder::new(Role::Server, small, None);
        let mut buf = BytesMut::new();
        write_header(&mut buf, false, false, OpCode::Text, 600, Some([0; 4]));
        buf.extend_from_slice(&[b'x'; 600]);
        write_header(
            &mut buf,
            true,
            false,
            OpCode::Continuation,
            401,
            Some([0; 4]),
        );
        assert!(dec.decode(&mut buf).is_err_and(|e| e.code == 1009));
        assert_eq!(
            dec.held_bytes(),
            0,
            "the half message is dropped with the error"
        );
        // A continuation with nothing to continue, and a compressed control frame.
        for (b0, len) in [(0x80u8, 100usize), (0xC9, 5)] {
            let mut dec = Decoder::new(Role::Server, small, None);
            let mut buf = BytesMut::from(&[b0, 0x80 | len as u8, 0, 0, 0, 0][..]);
            assert_eq!(dec.decode(&mut buf).unwrap_err().code, 1002, "{b0:#x}");
        }
    }

    #[test]
    fn a_large_frame_still_grows_geometrically_and_arrives_whole() {
        let len = 3 * MIB + 5;
        let mut dec = Decoder::new(Role::Server, limits(64 * MIB), None);
        let mut wire = header(len);
        wire.extend((0..len).map(|i| (i % 251) as u8));
        let mut buf = BytesMut::new();
        let mut moves = 0;
        let mut last = buf.as_ptr();
        let mut got = None;
        for chunk in wire.chunks(4096) {
            // As a socket reader does: read into the spare room, or extend when it is full.
            buf.extend_from_slice(chunk);
            got = dec.decode(&mut buf).unwrap();
            if buf.as_ptr() != last {
                moves += 1;
                last = buf.as_ptr();
            }
            if got.is_none() {
                assert!(buf.capacity() <= 2 * buf.len() + 4096);
            }
        }
        let Some(Message::Binary(data)) = got else {
            panic!("no message: {got:?}")
        };
        assert_eq!(data.len(), len);
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        // Doubling, not a copy per step: a few dozen moves at most for 3 MiB.
        assert!(moves <= 24, "{moves} reallocations");
    }
}

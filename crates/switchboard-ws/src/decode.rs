//! The receiving half: frames in, whole messages out.

use bytes::{Buf, BytesMut};

use crate::deflate::{DeflateParams, Inflater};
use crate::frame::{apply_mask, parse_header, OpCode, Role};
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

    /// Takes the next complete message out of `buf`. `Ok(None)`: more bytes are needed
    /// (and `buf` has been reserved for the rest of the current frame). Control frames
    /// interleaved in a fragmented message are returned as they come.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            let Some(h) = parse_header(buf, self.role, self.limits.max_frame_bytes)? else {
                return Ok(None);
            };
            let total = h.header_len + h.payload_len;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            buf.advance(h.header_len);
            let mut payload = buf.split_to(h.payload_len);
            if let Some(mask) = h.mask {
                apply_mask(&mut payload, mask);
            }
            if h.opcode.is_control() {
                if h.rsv1 {
                    return Err(ProtocolError::protocol("compressed control frame"));
                }
                return match h.opcode {
                    OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
                    OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
                    _ => parse_close(payload).map(Some),
                };
            }
            if h.rsv1 && (self.inflater.is_none() || h.opcode == OpCode::Continuation) {
                return Err(ProtocolError::protocol("unexpected RSV1"));
            }
            match h.opcode {
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(ProtocolError::protocol(
                            "new message inside a fragmented one",
                        ));
                    }
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
                    if partial.buf.len() + payload.len() > self.limits.max_message_bytes {
                        return Err(ProtocolError::too_big("message too big"));
                    }
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

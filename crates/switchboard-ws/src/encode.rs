//! The sending half: messages in, frames out.

use bytes::BytesMut;

use crate::deflate::{DeflateParams, Deflater};
use crate::frame::{apply_mask, write_header, OpCode, Role};

/// Appends frames to an output buffer. A client masks every frame; a server never does.
pub struct Encoder {
    role: Role,
    deflater: Option<Deflater>,
}

impl Encoder {
    /// An encoder for one connection. `deflate`: the negotiated permessage-deflate, if any.
    pub fn new(role: Role, deflate: Option<DeflateParams>) -> Self {
        Self {
            role,
            deflater: deflate.map(Deflater::new),
        }
    }

    /// Whether messages may be compressed on this connection.
    pub fn compressing(&self) -> bool {
        self.deflater.is_some()
    }

    /// Appends one whole data message as a single frame, compressed when negotiated and
    /// worth it.
    pub fn message(&mut self, text: bool, payload: &[u8], out: &mut BytesMut) {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        if let Some(d) = self.deflater.as_mut().filter(|d| d.wants(payload.len())) {
            let mut compressed = Vec::with_capacity(payload.len() / 2 + 16);
            d.compress(payload, &mut compressed);
            self.frame(opcode, true, true, &compressed, out);
        } else {
            self.frame(opcode, true, false, payload, out);
        }
    }

    /// Appends a ping (`pong == false`) or pong with `payload` (truncated to 125 bytes).
    pub fn ping_pong(&mut self, pong: bool, payload: &[u8], out: &mut BytesMut) {
        let opcode = if pong { OpCode::Pong } else { OpCode::Ping };
        self.frame(opcode, true, false, &payload[..payload.len().min(125)], out);
    }

    /// Appends a close frame. `code` 1005 sends an empty close; the reason is cut to fit
    /// the 125-byte control frame limit on a character boundary.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut BytesMut) {
        if code == crate::close_code::NO_STATUS {
            self.frame(OpCode::Close, true, false, &[], out);
            return;
        }
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
        self.frame(OpCode::Close, true, false, &payload[..2 + end], out);
    }

    /// Appends a raw frame (used for fragmenting and by tests that send odd frames).
    pub fn frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
        out: &mut BytesMut,
    ) {
        match self.role {
            Role::Server => {
                write_header(out, fin, rsv1, opcode, payload.len(), None);
                out.extend_from_slice(payload);
            }
            Role::Client => {
                let mask: [u8; 4] = rand::random();
                write_header(out, fin, rsv1, opcode, payload.len(), Some(mask));
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], mask);
            }
        }
    }
}

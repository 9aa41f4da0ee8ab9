//! Frame headers: parsing and encoding (RFC 6455 §5.2).

use crate::ProtocolError;

/// Which side of the connection this endpoint is. Servers require masked frames from the
/// peer and send unmasked ones; clients the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The accepting side.
    Server,
    /// The connecting side.
    Client,
}

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// Text data.
    Text,
    /// Binary data.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry ≤ 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: usize,
    /// Bytes the header itself occupies.
    pub header_len: usize,
}

/// Parses a header from the start of `buf`. `Ok(None)` means more bytes are needed.
/// `max_payload` bounds the declared length before any buffering happens.
pub(crate) fn parse_header(
    buf: &[u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<Header>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x30 != 0 {
        return Err(ProtocolError::protocol("reserved bits set"));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(ProtocolError::protocol("reserved opcode"))?;
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let masked = b1 & 0x80 != 0;
    match role {
        Role::Server if !masked => return Err(ProtocolError::protocol("unmasked client frame")),
        Role::Client if masked => return Err(ProtocolError::protocol("masked server frame")),
        _ => {}
    }
    let len7 = (b1 & 0x7F) as usize;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::protocol("fragmented control frame"));
        }
        if len7 > 125 {
            return Err(ProtocolError::protocol("control frame too long"));
        }
    }
    let (payload_len, mut pos) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(ProtocolError::protocol(
                    "payload length has the high bit set",
                ));
            }
            (usize::try_from(len).unwrap_or(usize::MAX), 10)
        }
        n => (n, 2),
    };
    if payload_len > max_payload {
        return Err(ProtocolError::too_big("frame too big"));
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        rsv1,
        opcode,
        mask,
        payload_len,
        header_len: pos,
    }))
}

/// Appends a frame header. The caller appends `len` payload bytes after it (masked with
/// `mask` if one is given).
pub(crate) fn write_header(
    out: &mut bytes::BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    let b0 = (fin as u8) << 7 | (rsv1 as u8) << 6 | opcode.bits();
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(14 + len);
    out.extend_from_slice(&[b0]);
    if len < 126 {
        out.extend_from_slice(&[mbit | len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[mbit | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[mbit | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// XORs `data` with the 4-byte mask, starting at mask offset 0.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = parse_header(&frame, Role::Server, 1000).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        let mut payload = frame[h.header_len..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap());
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rejects_what_rfc_forbids() {
        let cases: &[(&[u8], u16)] = &[
            (&[0x81, 0x05], 1002),                            // unmasked from a client
            (&[0x83, 0x80, 0, 0, 0, 0], 1002),                // reserved opcode 3
            (&[0xA1, 0x80, 0, 0, 0, 0], 1002),                // rsv2
            (&[0x09, 0x80, 0, 0, 0, 0], 1002),                // fragmented ping
            (&[0x89, 0xFE, 0, 126], 1002),                    // ping > 125
            (&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002), // length high bit
            (&[0x82, 0xFE, 0x10, 0x00], 1009),                // 4096 > limit
        ];
        for (bytes, code) in cases {
            let err = parse_header(bytes, Role::Server, 1000).unwrap_err();
            assert_eq!(err.code, *code, "{bytes:?}");
        }
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        assert!(parse_header(&[0x81], Role::Server, 10).unwrap().is_none());
        assert!(parse_header(&[0x82, 0xFE, 0x00], Role::Server, 1000)
            .unwrap()
            .is_none());
        assert!(parse_header(&[0x82, 0x85, 1, 2], Role::Server, 1000)
            .unwrap()
            .is_none());
    }

    #[test]
    fn header_round_trip() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = bytes::BytesMut::new();
            write_header(
                &mut out,
                true,
                false,
                OpCode::Binary,
                len,
                Some([1, 2, 3, 4]),
            );
            let h = parse_header(&out, Role::Server, usize::MAX >> 1)
                .unwrap()
                .unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.header_len, out.len());
        }
    }
}

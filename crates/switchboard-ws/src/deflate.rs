//! permessage-deflate (RFC 7692): negotiation, and message compression with bounded memory.
//!
//! Without context takeover (the default), neither side keeps a compression window between
//! messages, so the zlib state is not owned by a connection at all: each worker thread keeps
//! one compressor and one decompressor and resets them after every message. A connection
//! then costs nothing for compression while idle. With context takeover, each connection
//! owns its own state (about 300 KiB at 15 window bits) for better ratios on small,
//! similar messages.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ProtocolError;

/// The server's compression preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib level 0–9.
    pub level: u32,
    /// Keep the compression window across messages (better ratio, ~300 KiB per connection).
    pub context_takeover: bool,
    /// Largest window the server compresses with, 9–15 (smaller saves memory).
    pub server_max_window_bits: u8,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 2,
            context_takeover: false,
            server_max_window_bits: 15,
            threshold: 32,
        }
    }
}

/// What both sides agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Window bits the server compresses with (8 means stored blocks only).
    pub server_max_window_bits: u8,
    /// zlib level.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

/// Picks the first acceptable `permessage-deflate` offer from the values of the
/// `Sec-WebSocket-Extensions` request headers and returns the agreed parameters and the
/// response header value. `None`: no acceptable offer (the connection runs uncompressed).
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    cfg: &DeflateConfig,
) -> Option<(DeflateParams, String)> {
    for value in header_values {
        for offer in value.split(',') {
            if let Some(agreed) = accept_offer(offer, cfg) {
                return Some(agreed);
            }
        }
    }
    None
}

fn accept_offer(offer: &str, cfg: &DeflateConfig) -> Option<(DeflateParams, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut server_nct = false;
    let mut client_nct = false;
    let mut server_bits: Option<u8> = None;
    let mut client_bits: Option<Option<u8>> = None;
    for param in parts {
        if param.is_empty() {
            return None;
        }
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = |v: Option<&str>| -> Option<u8> {
            let v = v?;
            // A decimal from 8 to 15 without leading zeroes (RFC 7692 §7.1.2).
            if v.is_empty()
                || v.len() > 2
                || v.starts_with('0')
                || !v.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            v.parse().ok().filter(|b| (8..=15).contains(b))
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() && !server_nct => server_nct = true,
            "client_no_context_takeover" if value.is_none() && !client_nct => client_nct = true,
            "server_max_window_bits" if server_bits.is_none() => server_bits = Some(bits(value)?),
            "client_max_window_bits" if client_bits.is_none() => {
                client_bits = Some(match value {
                    None => None,
                    v => Some(bits(v)?),
                })
            }
            _ => return None,
        }
    }
    let server_nct = server_nct || !cfg.context_takeover;
    let client_nct = client_nct || !cfg.context_takeover;
    let mut window = cfg.server_max_window_bits.clamp(9, 15);
    if let Some(offered) = server_bits {
        window = window.min(offered);
    }
    let mut response = String::from("permessage-deflate");
    if server_nct {
        response.push_str("; server_no_context_takeover");
    }
    if client_nct {
        response.push_str("; client_no_context_takeover");
    }
    if server_bits.is_some() || window < 15 {
        response.push_str("; server_max_window_bits=");
        response.push_str(&window.to_string());
    }
    // The client's window never matters to us: a 15-bit inflater reads any smaller window.
    let _ = client_bits;
    Some((
        DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: window,
            level: cfg.level.min(9),
            threshold: cfg.threshold,
        },
        response,
    ))
}

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fn new_compress(level: u32, bits: u8) -> Compress {
    // zlib cannot compress with an 8-bit window (it silently uses 9), so a peer that
    // asked for 8 gets stored blocks, which reference no window at all.
    if bits < 9 {
        Compress::new_with_window_bits(Compression::none(), false, 9)
    } else {
        Compress::new_with_window_bits(Compression::new(level), false, bits)
    }
}

thread_local! {
    static SHARED_COMPRESS: RefCell<Vec<((u32, u8), Compress)>> = const { RefCell::new(Vec::new()) };
    static SHARED_DECOMPRESS: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses outgoing messages for one connection.
pub struct Deflater {
    params: DeflateParams,
    own: Option<Box<Compress>>,
}

impl Deflater {
    /// A compressor for the agreed parameters.
    pub fn new(params: DeflateParams) -> Self {
        Self { params, own: None }
    }

    /// Whether a message of `len` bytes is worth compressing.
    pub fn wants(&self, len: usize) -> bool {
        len >= self.params.threshold
    }

    /// Appends the compressed form of `input` (without the final `00 00 ff ff`) to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let key = (self.params.level, self.params.server_max_window_bits);
        if self.params.server_no_context_takeover {
            SHARED_COMPRESS.with(|cell| {
                let mut cache = cell.borrow_mut();
                let idx = match cache.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        cache.push((key, new_compress(key.0, key.1)));
                        cache.len() - 1
                    }
                };
                let c = &mut cache[idx].1;
                deflate_message(c, input, out);
                c.reset();
            })
        } else {
            let c = self
                .own
                .get_or_insert_with(|| Box::new(new_compress(key.0, key.1)));
            deflate_message(c, input, out);
        }
    }
}

fn deflate_message(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let in_start = c.total_in();
    loop {
        out.reserve(input.len() / 2 + 64);
        let consumed = (c.total_in() - in_start) as usize;
        let status = c.compress_vec(&input[consumed..], out, FlushCompress::Sync);
        let consumed = (c.total_in() - in_start) as usize;
        // With a sync flush, output space left over means the flush completed.
        if status.is_err() || (consumed == input.len() && out.len() < out.capacity()) {
            break;
        }
    }
    if out.len() >= start + 4 && out[out.len() - 4..] == TAIL {
        out.truncate(out.len() - 4);
    }
    if out.len() == start {
        // zlib emits nothing for a flush right after another (an empty message with
        // context takeover), but the peer appends `00 00 ff ff` to every message: it needs
        // the byte that opens an empty stored block in front of that (RFC 7692 §7.2.3.6),
        // or it reads the tail as a block header and waits, inside that block, for bytes
        // the next message will wrongly supply.
        out.push(0x00);
    }
}

/// Decompresses incoming messages for one connection.
pub struct Inflater {
    shared: bool,
    own: Option<Box<Decompress>>,
}

impl Inflater {
    /// A decompressor for the agreed parameters.
    pub fn new(params: DeflateParams) -> Self {
        Self {
            shared: params.client_no_context_takeover,
            own: None,
        }
    }

    /// Inflates one whole message. More than `max` bytes of output: 1009.
    pub fn decompress(&mut self, input: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
        if input.is_empty() {
            // An empty message from a sender that wrote no block at all (as this crate's
            // deflater did under context takeover): the tail alone would leave the
            // inflater inside a half-read stored block header and garble the next message.
            return Ok(Vec::new());
        }
        if self.shared {
            SHARED_DECOMPRESS.with(|cell| {
                let mut slot = cell.borrow_mut();
                let d = slot.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
                let result = inflate_message(d, input, max).map(|(out, _)| out);
                d.reset(false);
                result
            })
        } else {
            let d = self
                .own
                .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
            match inflate_message(d, input, max) {
                Ok((out, false)) => Ok(out),
                Ok((out, true)) => {
                    // The message ended its DEFLATE stream with a BFINAL block (RFC 7692
                    // §7.2.3.5): the next one starts a new stream, which may still refer
                    // to the window, so the new stream starts with this message's last
                    // 32 KiB as its dictionary. (A reference further back, into earlier
                    // messages, fails as invalid data: 1007, never a wrong message.)
                    d.reset(false);
                    let window = &out[out.len().saturating_sub(WINDOW)..];
                    d.set_dictionary(window).map_err(|_| BAD)?;
                    Ok(out)
                }
                Err(e) => {
                    // The window is now unusable; the connection is about to close anyway.
                    d.reset(false);
                    Err(e)
                }
            }
        }
    }
}

/// The largest DEFLATE window (15 bits).
const WINDOW: usize = 1 << 15;

const BAD: ProtocolError = ProtocolError {
    code: crate::close_code::INVALID_PAYLOAD,
    reason: "invalid compressed data",
};

/// Inflates one message into a buffer of at most `max + 1` bytes of capacity. `true`
/// beside the output: the message ended its DEFLATE stream with a BFINAL block (then the
/// `00 00 ff ff` tail is not appended, and bytes after that block are invalid).
fn inflate_message(
    d: &mut Decompress,
    input: &[u8],
    max: usize,
) -> Result<(Vec<u8>, bool), ProtocolError> {
    let mut out = Vec::with_capacity((input.len() * 3).max(64).min(max.saturating_add(1)));
    for (tail, chunk) in [(false, input), (true, &TAIL[..])] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(ProtocolError::too_big("message too big"));
                }
                // Doubling, but exactly: `reserve` could round past the limit, and the
                // buffer becomes the message, so its capacity is what the message holds.
                let want = (out.capacity() * 2).min(max.saturating_add(1));
                out.reserve_exact(want.saturating_sub(out.len()).max(1));
            }
            let in_before = d.total_in();
            let out_before = out.len();
            let status = d
                .decompress_vec(&chunk[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|_| BAD)?;
            pos += (d.total_in() - in_before) as usize;
            if out.len() > max {
                return Err(ProtocolError::too_big("message too big"));
            }
            if status == Status::StreamEnd {
                if !tail && pos < chunk.len() {
                    return Err(ProtocolError {
                        code: crate::close_code::INVALID_PAYLOAD,
                        reason: "data after the final compressed block",
                    });
                }
                return Ok((out, true));
            }
            let progressed = pos > 0 && d.total_in() != in_before || out.len() != out_before;
            if (pos == chunk.len() && out.len() < out.capacity()) || !progressed {
                break;
            }
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    #[test]
    fn plain_offer_gets_no_context_takeover_by_default() {
        let (p, resp) = negotiate(["permessage-deflate; client_max_window_bits"], &cfg()).unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            resp,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn context_takeover_when_configured() {
        let c = DeflateConfig {
            context_takeover: true,
            ..cfg()
        };
        let (p, resp) = negotiate(["permessage-deflate"], &c).unwrap();
        assert!(!p.server_no_context_takeover);
        assert_eq!(resp, "permessage-deflate");
    }

    #[test]
    fn bad_offers_fall_through_to_the_next() {
        let (p, resp) = negotiate(
            ["permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10"],
            &cfg(),
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert!(resp.ends_with("server_max_window_bits=10"));
        assert!(negotiate(["permessage-deflate; foo"], &cfg()).is_none());
        assert!(negotiate(["permessage-deflate; server_no_context_takeover=1"], &cfg()).is_none());
        assert!(negotiate(["x-webkit-deflate-frame"], &cfg()).is_none());
        assert!(negotiate(["permessage-deflate; client_max_window_bits=7"], &cfg()).is_none());
        assert!(negotiate(["permessage-deflate; server_max_window_bits=010"], &cfg()).is_none());
        assert!(negotiate(["permessage-deflate; server_max_window_bits=09"], &cfg()).is_none());
    }

    #[test]
    fn round_trip_every_window() {
        let msg: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for bits in 8..=15u8 {
            for takeover in [false, true] {
                let params = DeflateParams {
                    server_no_context_takeover: !takeover,
                    client_no_context_takeover: !takeover,
                    server_max_window_bits: bits,
                    level: 6,
                    threshold: 0,
                };
                let mut d = Deflater::new(params);
                let mut i = Inflater::new(params);
                for _ in 0..3 {
                    let mut out = Vec::new();
                    d.compress(&msg, &mut out);
                    assert_eq!(i.decompress(&out, 1 << 20).unwrap(), msg);
                }
            }
        }
    }

    #[test]
    fn inflate_is_bounded() {
        let params = negotiate(["permessage-deflate"], &cfg()).unwrap().0;
        let mut d = Deflater::new(params);
        let mut out = Vec::new();
        d.compress(&vec![b'a'; 100_000], &mut out);
        assert!(out.len() < 1000);
        let err = Inflater::new(params).decompress(&out, 99_999).unwrap_err();
        assert_eq!(err.code, 1009);
        assert_eq!(
            Inflater::new(params)
                .decompress(&out, 100_000)
                .unwrap()
                .len(),
            100_000
        );
        assert_eq!(
            Inflater::new(params)
                .decompress(&[0xff, 0xff, 0xff], 10)
                .unwrap_err()
                .code,
            1007
        );
    }

    #[test]
    fn inflated_messages_hold_no_more_than_the_limit() {
        let params = negotiate(["permessage-deflate"], &cfg()).unwrap().0;
        let mut out = Vec::new();
        Deflater::new(params).compress(&vec![b'a'; 100_000], &mut out);
        let msg = Inflater::new(params).decompress(&out, 100_000).unwrap();
        assert_eq!(msg.len(), 100_000);
        assert!(msg.capacity() <= 100_001, "capacity {}", msg.capacity());
    }

    /// RFC 7692 §7.2.3.5 lets a sender end a message with a BFINAL block instead of a
    /// sync flush (then its next message is a new DEFLATE stream).
    fn finished_stream(input: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(input.len() + 64);
        c.compress_vec(input, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn a_message_ended_with_bfinal_leaves_the_inflater_usable() {
        for takeover in [false, true] {
            let params = DeflateParams {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                server_max_window_bits: 15,
                level: 6,
                threshold: 0,
            };
            let mut i = Inflater::new(params);
            for msg in [&b"first message"[..], b"second", b"third"] {
                assert_eq!(i.decompress(&finished_stream(msg), 1000).unwrap(), msg);
            }
            // Bytes after the final block are not DEFLATE data.
            let mut trailing = finished_stream(b"x");
            trailing.extend_from_slice(&[0x01, 0x02]);
            assert_eq!(i.decompress(&trailing, 1000).unwrap_err().code, 1007);
        }
        // With context takeover, a new stream may refer back into the last message.
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            level: 6,
            threshold: 0,
        };
        let mut i = Inflater::new(params);
        let first = b"a sentence long enough to be worth referring back to, twice".to_vec();
        assert_eq!(i.decompress(&finished_stream(&first), 1000).unwrap(), first);
        let mut c = Compress::new(Compression::new(6), false);
        c.set_dictionary(&first).unwrap();
        let mut second = Vec::with_capacity(256);
        c.compress_vec(&first, &mut second, FlushCompress::Finish)
            .unwrap();
        assert!(second.len() < 16, "the second refers back: {second:?}");
        assert_eq!(i.decompress(&second, 1000).unwrap(), first);
    }

    #[test]
    fn empty_messages_keep_the_context_intact() {
        for level in [0, 1, 6] {
            let params = DeflateParams {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                level,
                threshold: 0,
            };
            let (mut d, mut i) = (Deflater::new(params), Inflater::new(params));
            for msg in [&b"hello hello hello"[..], b"", b"", &[7u8; 3000], b"hello"] {
                let mut c = Vec::new();
                d.compress(msg, &mut c);
                assert!(
                    !c.is_empty(),
                    "level {level}: a message is at least one byte"
                );
                assert_eq!(i.decompress(&c, 1 << 20).unwrap(), msg, "level {level}");
            }
            // A peer that sends an empty payload for an empty message does no harm.
            assert!(i.decompress(&[], 10).unwrap().is_empty());
            let mut c = Vec::new();
            d.compress(b"after", &mut c);
            assert_eq!(i.decompress(&c, 10).unwrap(), b"after");
        }
    }

    #[test]
    fn empty_message() {
        let params = negotiate(["permessage-deflate"], &cfg()).unwrap().0;
        let mut out = Vec::new();
        Deflater::new(params).compress(b"", &mut out);
        assert!(Inflater::new(params)
            .decompress(&out, 10)
            .unwrap()
            .is_empty());
        assert!(Inflater::new(params)
            .decompress(&[0x00], 10)
            .unwrap()
            .is_empty());
    }
}

//! A chunked body (RFC 9112 §7.1), decoded from the bytes alone ([`Chunked`]).

use bytes::{Buf, BytesMut};

use super::{failed, too_large, Limits, FREE_CHUNK_LINE};
use crate::InvokeError;

/// A chunked body decoder (RFC 9112 §7.1), without I/O: it moves body bytes out of the
/// connection's buffer as they arrive, so the buffer holds back at most one partial size
/// line, the CRLF after a chunk, or one partial trailer line.
///
/// Grammar accepted: each chunk-size line is optional spaces or tabs, hex digits (a size
/// that fits a `u64`), optional spaces or tabs, and optionally `;` and extensions, which
/// are not interpreted but may hold no control character; lines end with CRLF. The last
/// chunk (size 0) is followed by trailer fields (`name: value`, the name a token, no
/// control characters), which are checked and dropped, and an empty line.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// Bytes at the front of the buffer already searched for the end of the current line.
    scanned: usize,
    /// Of [`Limits::chunk_extensions`], spent.
    extensions: usize,
    /// Bytes of the trailer section consumed so far (lines with their CRLF).
    trailer_bytes: usize,
    trailer_fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(usize),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// At a trailer line (or the empty line that ends the body).
    Trailer,
    Done,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Self {
            state: ChunkState::Size,
            scanned: 0,
            extensions: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Decodes what `buf` holds, appending body bytes to `body` (which must not pass
    /// `limits.body`). `Ok(true)`: the body and its trailers are complete, and what is
    /// left in `buf` followed them.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        body: &mut BytesMut,
        limits: &Limits,
    ) -> Result<bool, InvokeError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = self.line(buf, limits.chunk_line) else {
                        return if buf.len() >= limits.chunk_line + 2 {
                            Err(failed("chunk size line too long"))
                        } else {
                            Ok(false)
                        };
                    };
                    let line = &buf[..end];
                    if line.iter().copied().any(is_ctl) {
                        return Err(failed("invalid chunk size line"));
                    }
                    let size = switchboard_core::text::chunk_size(line)
                        .ok_or_else(|| failed("invalid chunk size line"))?;
                    self.extensions += end.saturating_sub(FREE_CHUNK_LINE);
                    if self.extensions > limits.chunk_extensions {
                        return Err(failed("chunk extensions too large"));
                    }
                    if size > (limits.body - body.len()) as u64 {
                        return Err(too_large());
                    }
                    buf.advance(end + 2);
                    self.state = match size {
                        0 => ChunkState::Trailer,
                        n => ChunkState::Data(n as usize),
                    };
                }
                ChunkState::Data(left) => {
                    // Copied as it arrives: the announced size is never reserved ahead.
                    let take = left.min(buf.len());
                    body.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok(false);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    match buf.first().zip(buf.get(1)) {
                        Some((b'\r', b'\n')) => {}
                        Some(_) => return Err(failed("invalid chunked body")),
                        None if buf.first().is_some_and(|&b| b != b'\r') => {
                            return Err(failed("invalid chunked body"))
                        }
                        None => return Ok(false),
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    // The line and its CRLF must fit what is left of the section's bound.
                    let left = limits.head - self.trailer_bytes;
                    let Some(max) = left.checked_sub(2) else {
                        return Err(failed("response trailers too large"));
                    };
                    let Some(end) = self.line(buf, max) else {
                        return if buf.len() >= left {
                            Err(failed("response trailers too large"))
                        } else {
                            Ok(false)
                        };
                    };
                    if end > 0 {
                        if !is_trailer_field(&buf[..end]) {
                            return Err(failed("invalid response trailer"));
                        }
                        self.trailer_fields += 1;
                        if self.trailer_fields > limits.headers {
                            return Err(failed("response has too many trailer fields"));
                        }
                    }
                    self.trailer_bytes += end + 2;
                    buf.advance(end + 2);
                    if end == 0 {
                        self.state = ChunkState::Done;
                        return Ok(true);
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }

    /// The most bytes the next read may add to a buffer holding `buffered`: within a
    /// trailer line, what keeps the section within its bound; otherwise unbounded (a
    /// size line's bound is checked on what arrived, and data is consumed as it comes).
    pub(crate) fn room(&self, buffered: usize, limits: &Limits) -> usize {
        match self.state {
            ChunkState::Trailer => (limits.head - self.trailer_bytes).saturating_sub(buffered),
            _ => usize::MAX,
        }
    }

    /// Where the line at the front of `buf` ends (the index of its CRLF), if it has
    /// ended within `max` bytes. Resumes the search where the last call stopped.
    fn line(&mut self, buf: &[u8], max: usize) -> Option<usize> {
        let window = &buf[..buf.len().min(max + 2)];
        // A CR at the end of the last search may be followed by its LF now.
        let from = self.scanned.saturating_sub(1).min(window.len());
        match window[from..].windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                self.scanned = 0;
                Some(from + i)
            }
            None => {
                self.scanned = window.len();
                None
            }
        }
    }
}

/// A trailer line: `name: value`, the name a token, no control characters.
fn is_trailer_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            colon > 0
                && line[..colon].iter().copied().all(is_tchar)
                && !line[colon + 1..].iter().copied().any(is_ctl)
        }
        None => false,
    }
}

/// A control character, which no line of an HTTP/1.1 message may hold (tab aside).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A `tchar` of RFC 9110 §5.6.2: what a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

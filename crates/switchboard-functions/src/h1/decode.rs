//! One answer's heads and the framing of its body, decided from the bytes alone
//! ([`AnswerDecoder`]); a chunked body is handed to [`Chunked`].

use bytes::{Buf, Bytes, BytesMut};

use super::{
    answered, body_error, failed, too_large, Chunked, MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE,
    MAX_HEAD, MAX_HEADERS,
};
use crate::InvokeError;

/// The bounds one answer is read within: the module's constants, and the invocation's
/// `max_response_bytes` for the body. Tests shrink them to reach every bound cheaply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of all the heads of the answer together; also of its trailer section.
    pub(super) head: usize,
    /// Fields in one head, or in the trailer section (at most [`MAX_HEADERS`]).
    pub(super) headers: usize,
    /// Bytes of one chunk-size line, without its CRLF.
    pub(super) chunk_line: usize,
    /// Bytes of chunk-size lines beyond their first [`FREE_CHUNK_LINE`], over the body.
    pub(super) chunk_extensions: usize,
    /// Bytes of body.
    pub(super) body: usize,
}

impl Limits {
    pub(crate) fn new(max_body: usize) -> Self {
        Self {
            head: MAX_HEAD,
            headers: MAX_HEADERS,
            chunk_line: MAX_CHUNK_LINE,
            chunk_extensions: MAX_CHUNK_EXTENSIONS,
            body: max_body,
        }
    }
}

/// A final answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// Whether the answer lets the connection serve another request (its framing ended
    /// it exactly, and it did not ask to close).
    pub keep_alive: bool,
}

impl Answer {
    /// The body of a `2xx` answer; any other status is `function answered HTTP
    /// <status>`, never quoting the body.
    pub(super) fn into_result(self) -> Result<Bytes, InvokeError> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(answered(self.status))
        }
    }
}

/// Reads one answer from the bytes a connection delivers, without doing I/O: the caller
/// appends what arrives to a buffer (at most [`room`](Self::room) bytes per read) and
/// calls [`decode`](Self::decode) until it yields the answer, or
/// [`finish`](Self::finish) at the end of the stream. It consumes what it has used from
/// the front of the buffer, so what is left after the answer is what followed it.
///
/// The verdict (the answer or the error, and where the answer ends) depends only on the
/// bytes, never on how the reads cut them: each decision is made at a point the bytes
/// fix (a line's end, a bound's last byte), which the fuzz targets below check.
#[derive(Debug)]
pub(crate) struct AnswerDecoder {
    limits: Limits,
    pub(super) state: State,
    /// Bytes of the interim heads already consumed.
    head_bytes: usize,
    status: u16,
    keep_alive: bool,
    /// A chunked body as it is decoded.
    pub(super) body: BytesMut,
    chunked: Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Head,
    /// No body (`204`, `304`).
    Empty,
    /// A body of this many bytes (within the bound).
    Length(usize),
    Chunked,
    /// A body up to the close.
    UntilClose,
    Done,
}

impl AnswerDecoder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                headers: limits.headers.min(MAX_HEADERS),
                ..limits
            },
            state: State::Head,
            head_bytes: 0,
            status: 0,
            keep_alive: false,
            body: BytesMut::new(),
            chunked: Chunked::new(),
        }
    }

    /// Decodes what `buf` holds. `Ok(None)`: more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Answer>, InvokeError> {
        if self.state == State::Head && !self.head(buf)? {
            return Ok(None);
        }
        let body = match self.state {
            State::Head | State::Done => return Err(failed("response already read")),
            State::Empty => Bytes::new(),
            State::Length(n) => {
                if buf.len() < n {
                    return Ok(None);
                }
                let body = Bytes::copy_from_slice(&buf[..n]);
                buf.advance(n);
                body
            }
            State::Chunked => {
                let done = self.chunked.decode(buf, &mut self.body, &self.limits);
                if !done.map_err(|e| self.body_failed(e))? {
                    return Ok(None);
                }
                self.body.split().freeze()
            }
            State::UntilClose => {
                if buf.len() > self.limits.body {
                    return Err(self.body_failed(too_large()));
                }
                return Ok(None);
            }
        };
        self.state = State::Done;
        Ok(Some(Answer {
            status: self.status,
            body,
            keep_alive: self.keep_alive,
        }))
    }

    /// The most bytes the next read may add to a buffer holding `buffered` (at least 1
    /// while the answer is incomplete): while a head or the trailers are read, what
    /// keeps them within their bound; otherwise unbounded, since the body's bound is
    /// enforced as it is decoded.
    pub(crate) fn room(&self, buffered: usize) -> usize {
        match self.state {
            State::Head => (self.limits.head - self.head_bytes).saturating_sub(buffered),
            State::Chunked => self.chunked.room(buffered, &self.limits),
            _ => usize::MAX,
        }
    }

    /// The stream ended before [`decode`](Self::decode) yielded the answer: a body up
    /// to the close is complete; anything else was cut short.
    pub(crate) fn finish(mut self, buf: &mut BytesMut) -> Result<Answer, InvokeError> {
        match self.state {
            State::Head if buf.is_empty() => Err(failed("connection closed before the response")),
            State::Head => Err(failed("response is not valid HTTP")),
            State::UntilClose if buf.len() > self.limits.body => Err(self.body_failed(too_large())),
            State::UntilClose => {
                self.state = State::Done;
                Ok(Answer {
                    status: self.status,
                    body: buf.split().freeze(),
                    keep_alive: false,
                })
            }
            State::Empty | State::Length(_) | State::Chunked => {
                Err(self.body_failed(failed("response body truncated")))
            }
            State::Done => Err(failed("response already read")),
        }
    }

    /// The error for a read that failed.
    pub(crate) fn io_failed(&self, e: &std::io::Error) -> InvokeError {
        match self.state {
            State::Head if e.kind() == std::io::ErrorKind::ConnectionReset => {
                failed("connection reset before the response")
            }
            State::Head => failed("request failed"),
            _ => self.body_failed(body_error(e)),
        }
    }

    /// An error status's body is read only so its connection can be reused: when that
    /// fails, the status is the error, not the body's fault.
    fn body_failed(&self, e: InvokeError) -> InvokeError {
        if (200..300).contains(&self.status) {
            e
        } else {
            answered(self.status)
        }
    }

    /// Parses the final head from the front of `buf` and consumes it, with any interim
    /// (`1xx`) heads before it. `Ok(false)`: more bytes are needed.
    fn head(&mut self, buf: &mut BytesMut) -> Result<bool, InvokeError> {
        loop {
            // Only the bytes within the bound are looked at, so an over-long head fails
            // the same way however it arrived.
            let limit = self.limits.head - self.head_bytes;
            let window = &buf[..buf.len().min(limit)];
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers[..self.limits.headers]);
            let len = match response.parse(window) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if window.len() == limit => {
                    return Err(failed("response head too large"))
                }
                Ok(httparse::Status::Partial) => return Ok(false),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(failed("response has too many headers"))
                }
                Err(_) => return Err(failed("response is not valid HTTP")),
            };
            let status = response.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                self.head_bytes += len;
                buf.advance(len);
                continue;
            }
            if status == 101 {
                // An upgrade nobody asked for: the connection speaks something else now.
                return Err(answered(status));
            }
            let http10 = response.version == Some(0);
            let (framing, keep_alive) = framing(http10, response.headers)?;
            self.status = status;
            self.keep_alive = keep_alive;
            self.state = match framing {
                _ if status == 204 || status == 304 => State::Empty,
                Framing::Chunked => State::Chunked,
                Framing::Length(n) if n > self.limits.body as u64 => {
                    return Err(self.body_failed(too_large()))
                }
                Framing::Length(n) => State::Length(n as usize),
                Framing::UntilClose => {
                    // Only the close ends it.
                    self.keep_alive = false;
                    State::UntilClose
                }
            };
            buf.advance(len);
            return Ok(true);
        }
    }
}

/// What frames the body of a final answer, from its headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How a final answer's body is framed and whether it lets the connection be kept, from
/// its version and header fields, by RFC 9112 §6.1 and §6.3. Every ambiguity is an
/// error (see the module docs).
fn framing(http10: bool, headers: &[httparse::Header<'_>]) -> Result<(Framing, bool), InvokeError> {
    // `close` wins wherever it stands; HTTP/1.0 keeps a connection only when asked to.
    let mut close = false;
    let mut keep_alive_asked = false;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut codings = 0usize;
    let mut last_chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            // `42, 42` (or the field repeated) is one length (RFC 9110 §8.6).
            for value in h.value.split(|&b| b == b',') {
                let n = decimal(trim_ows(value))
                    .ok_or_else(|| failed("response has an invalid content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(failed("response has conflicting content-length values"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Empty list elements are no codings (RFC 9110 §5.6.1).
            for coding in h.value.split(|&b| b == b',').map(trim_ows) {
                if !coding.is_empty() {
                    codings += 1;
                    last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim_ows(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = !close && (!http10 || keep_alive_asked);
    if transfer_encoding {
        if length.is_some() {
            return Err(failed(
                "response has both content-length and transfer-encoding",
            ));
        }
        if codings > 1 {
            return Err(failed("response has more than one transfer coding"));
        }
        if !last_chunked {
            return Err(failed("response transfer-encoding is not chunked"));
        }
        if http10 {
            return Err(failed("HTTP/1.0 response with transfer-encoding"));
        }
        return Ok((Framing::Chunked, keep_alive));
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, keep_alive),
    })
}

/// A `content-length` value: one or more ASCII digits that fit a `u64` (no sign, no
/// spaces inside).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// `value` without the spaces and tabs around it (HTTP's optional whitespace).
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

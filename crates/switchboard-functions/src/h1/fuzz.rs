//! Fuzz targets for the answer decoder and the chunked decoder (see switchboard-fuzz).
//!
//! - `fuzz_functions_h1_answer`: arbitrary bytes, and structure-aware answers (interim
//!   heads, header permutations with duplicates, every content-length/transfer-encoding
//!   combination, chunked bodies with extensions and trailers, mutations), delivered in
//!   arbitrary splits. The decoder never panics, never holds more than its bounds, gives
//!   the same verdict however the bytes are split, decodes a well-formed answer to the
//!   body it was built from, and refuses every framing conflict.
//! - `fuzz_functions_h1_chunked`: the chunked decoder cut at every split point, against
//!   a one-pass reference decoder written here from the grammar.

use bytes::BytesMut;
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;
use switchboard_fuzz::proptest::sample::select;
use switchboard_fuzz::split_at_points;

use super::*;

/// What reading an answer came to: comparable across deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Answer {
        status: u16,
        body: Vec<u8>,
        keep_alive: bool,
        /// Bytes of the input the answer took (what follows is the next answer's).
        consumed: usize,
    },
    Error(String),
}

/// The reason of a function error (every refusal is one), or the whole error otherwise.
fn reason(e: InvokeError) -> String {
    match e {
        InvokeError::Failed(reason) => reason,
        other => other.to_string(),
    }
}

/// The bytes a decoder may hold back between reads, beyond which it allocates past its
/// bounds: a head or trailer section, a size line and its CRLF, or a body.
fn held_bound(limits: &Limits) -> usize {
    limits
        .head
        .max(limits.chunk_line + 1)
        .max(limits.body)
        .max(1)
}

/// A body buffer's capacity after growing by doubling up to `limits.body` bytes.
fn body_capacity_bound(limits: &Limits) -> usize {
    2 * limits.body + 64
}

/// Feeds `pieces` to an [`AnswerDecoder`] the way [`Conn::read_answer`] does (decode,
/// then read at most [`AnswerDecoder::room`] bytes, again), then the end of the stream;
/// checks the bounds after every step.
fn deliver(pieces: &[&[u8]], limits: Limits) -> Result<Verdict, TestCaseError> {
    let mut decoder = AnswerDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut pieces = pieces.iter().copied().filter(|p| !p.is_empty());
    let mut piece: &[u8] = &[];
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(answer)) => return verdict(answer, fed - buf.len(), &limits),
            Ok(None) => {}
            Err(e) => return Ok(Verdict::Error(reason(e))),
        }
        prop_assert!(
            buf.len() <= held_bound(&limits),
            "holds {} bytes in {:?}",
            buf.len(),
            decoder.state
        );
        prop_assert!(decoder.body.capacity() <= body_capacity_bound(&limits));
        if piece.is_empty() {
            match pieces.next() {
                Some(next) => piece = next,
                None => break,
            }
        }
        let room = decoder.room(buf.len());
        prop_assert!(room > 0, "no room while the answer is incomplete");
        let take = room.min(piece.len());
        buf.extend_from_slice(&piece[..take]);
        piece = &piece[take..];
        fed += take;
    }
    match decoder.finish(&mut buf) {
        Ok(answer) => verdict(answer, fed - buf.len(), &limits),
        Err(e) => Ok(Verdict::Error(reason(e))),
    }
}

fn verdict(answer: Answer, consumed: usize, limits: &Limits) -> Result<Verdict, TestCaseError> {
    prop_assert!(answer.body.len() <= limits.body);
    Ok(Verdict::Answer {
        status: answer.status,
        body: answer.body.to_vec(),
        keep_alive: answer.keep_alive,
        consumed,
    })
}

/// Small bounds, so that every one of them is crossed often.
fn small_limits() -> impl Strategy<Value = Limits> {
    // Each bound mostly near what the generated answers need, sometimes tiny.
    (
        prop_oneof![1 => 0usize..8, 3 => 8usize..400],
        0usize..10,
        prop_oneof![1 => 0usize..4, 2 => 4usize..120, 2 => Just(MAX_CHUNK_LINE)],
        0usize..300,
        prop_oneof![1 => 0usize..8, 3 => 8usize..300],
    )
        .prop_map(
            |(head, headers, chunk_line, chunk_extensions, body)| Limits {
                head,
                headers,
                chunk_line,
                chunk_extensions,
                body,
            },
        )
}

/// The production bounds with a body bound around `len`.
fn roomy_limits(len: usize, slack: usize) -> Limits {
    Limits::new(len + slack)
}

/// How one chunk-size line is written.
#[derive(Debug, Clone)]
struct SizeStyle {
    upper: bool,
    zeros: usize,
    /// Spaces or tabs before the digits, after them, and an extension.
    before: &'static str,
    after: &'static str,
    extension: &'static str,
}

fn size_style() -> impl Strategy<Value = SizeStyle> {
    (
        any::<bool>(),
        prop_oneof![4 => Just(0usize), 1 => 1usize..4, 1 => Just(14usize)],
        select(vec!["", "", "", " ", "\t"]),
        select(vec!["", "", "", " ", "\t "]),
        select(vec![
            "",
            "",
            "",
            ";",
            ";a",
            ";name=value",
            ";n=\"quoted ; value\"",
            " ; a=1 ; b",
            ";\u{e9}t\u{e9}",
            ";very-long-extension-name-to-spend-the-budget=and-a-long-value-too",
        ]),
    )
        .prop_map(|(upper, zeros, before, after, extension)| SizeStyle {
            upper,
            zeros,
            before,
            after,
            extension,
        })
}

fn size_line(size: usize, style: &SizeStyle) -> Vec<u8> {
    let digits = if style.upper {
        format!("{size:X}")
    } else {
        format!("{size:x}")
    };
    format!(
        "{}{}{digits}{}{}\r\n",
        style.before,
        "0".repeat(style.zeros),
        style.after,
        style.extension
    )
    .into_bytes()
}

/// Trailer lines, valid ones mostly.
fn trailer_line() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => select(vec![
            "x-checksum: abc\r\n",
            "server-timing: total;dur=1\r\n",
            "x-empty:\r\n",
            "x-tab:\tv\t\r\n",
            "x-obs: caf\u{e9}\r\n",
            "x-long: a value long enough to reach a small bound on the trailer section\r\n",
        ]),
        1 => select(BAD_TRAILERS.to_vec()),
    ]
}

/// Trailer lines that are not fields.
const BAD_TRAILERS: &[&str] = &[
    "bad name: v\r\n",
    ": no name\r\n",
    "no colon\r\n",
    "x-ctl: a\u{1}b\r\n",
    " x-fold: v\r\n",
];

/// A chunked encoding of `body` cut into chunks of the given lengths (zero lengths are
/// skipped: a zero chunk ends the body), each size line in its style, then the last chunk
/// and the trailer lines.
fn encode_chunked(
    body: &[u8],
    cuts: &[usize],
    styles: &[SizeStyle],
    last: &SizeStyle,
    trailers: &[&str],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts
            .get(i)
            .map_or(rest.len(), |&c| c % rest.len() + 1)
            .min(rest.len());
        let style = &styles[i % styles.len()];
        out.extend_from_slice(&size_line(n, style));
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(&size_line(0, last));
    for t in trailers {
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// How a structure-aware answer frames its body.
#[derive(Debug, Clone)]
enum Frame {
    /// `content-length`, written once, twice, or as a list of the same value.
    Length(u8),
    /// `transfer-encoding: chunked` (written as given).
    Chunked(&'static str),
    UntilClose,
}

/// An injected header that makes the framing ambiguous, with the error it must cause.
#[derive(Debug, Clone, Copy)]
enum Conflict {
    None,
    /// A second, valid content-length on a chunked answer (or a transfer-encoding on a
    /// content-length one): both framings.
    Both,
    /// A second transfer coding on a chunked answer.
    SecondCoding,
    /// A content-length that differs from the real one.
    OtherLength,
    /// A content-length that is not a plain decimal number.
    BadLength,
    /// A transfer coding other than chunked, alone.
    NotChunked,
    /// Chunked on an HTTP/1.0 answer.
    Http10,
}

/// One structure-aware answer and what reading it must give.
#[derive(Debug, Clone)]
struct Crafted {
    bytes: Vec<u8>,
    limits: Limits,
    /// The verdict a well-formed answer must have; a conflict's error; or nothing known
    /// (mutated bytes, small bounds).
    expect: Option<Verdict>,
}

fn crafted() -> impl Strategy<Value = Crafted> {
    let interim = vec(
        select(vec![
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
        ]),
        0..3,
    );
    let status = prop_oneof![
        4 => Just(200u16),
        1 => select(vec![201u16, 204, 299, 304, 404, 500, 503]),
        1 => 200u16..600,
    ];
    let frame = prop_oneof![
        2 => (0u8..3).prop_map(Frame::Length),
        2 => select(vec![
            "chunked",
            "Chunked",
            "CHUNKED",
            " chunked ",
            ", chunked",
            "chunked,",
        ])
        .prop_map(Frame::Chunked),
        1 => Just(Frame::UntilClose),
    ];
    let extra = vec(
        select(vec![
            "content-type: application/json",
            "server: fn",
            "x-dup: 1",
            "x-dup: 2",
            "connection: keep-alive",
            "connection: close",
            "Connection: Keep-Alive, Upgrade",
            "date: Mon, 01 Jan 2024 00:00:00 GMT",
            "x-empty:",
        ]),
        0..5,
    );
    let conflict = prop_oneof![
        6 => Just(Conflict::None),
        1 => Just(Conflict::Both),
        1 => Just(Conflict::SecondCoding),
        1 => Just(Conflict::OtherLength),
        1 => Just(Conflict::BadLength),
        1 => Just(Conflict::NotChunked),
        1 => Just(Conflict::Http10),
    ];
    let chunking = (
        vec(any::<usize>(), 0..6),
        vec(size_style(), 1..4),
        size_style(),
        vec(trailer_line(), 0..3),
    );
    let mutation = prop_oneof![
        5 => Just(None),
        1 => (any::<usize>(), any::<u8>(), 0u8..3).prop_map(Some),
    ];
    (
        (interim, any::<bool>(), status, frame, extra, conflict),
        vec(any::<u8>(), 0..120),
        chunking,
        (vec(any::<u8>(), 0..8), any::<usize>(), mutation),
        prop_oneof![3 => Just(None), 1 => small_limits().prop_map(Some)],
        any::<u32>(),
    )
        .prop_map(
            |(
                (interim, http10, status, frame, extra, conflict),
                body,
                (cuts, styles, last, trailers),
                (trailing, slack, mutation),
                small,
                shuffle_seed,
            )| {
                build(Parts {
                    interim,
                    http10,
                    status,
                    frame,
                    extra,
                    conflict,
                    body,
                    cuts,
                    styles,
                    last,
                    trailers,
                    trailing,
                    slack,
                    mutation,
                    small,
                    shuffle_seed,
                })
            },
        )
}

/// The generated parts of a [`Crafted`] answer.
struct Parts {
    interim: Vec<&'static str>,
    http10: bool,
    status: u16,
    frame: Frame,
    extra: Vec<&'static str>,
    conflict: Conflict,
    body: Vec<u8>,
    cuts: Vec<usize>,
    styles: Vec<SizeStyle>,
    last: SizeStyle,
    trailers: Vec<&'static str>,
    trailing: Vec<u8>,
    slack: usize,
    mutation: Option<(usize, u8, u8)>,
    small: Option<Limits>,
    shuffle_seed: u32,
}

fn build(p: Parts) -> Crafted {
    let no_body = p.status == 204 || p.status == 304;
    // HTTP/1.0 cannot carry chunked: its answers are framed by length or by the close.
    let frame = match p.frame {
        Frame::Chunked(_) if p.http10 && !matches!(p.conflict, Conflict::Http10) => {
            Frame::Length(0)
        }
        other => other,
    };
    let len = p.body.len();
    let mut headers: Vec<String> = p.extra.iter().map(|h| h.to_string()).collect();
    let mut body_bytes = Vec::new();
    let chunks_ok = p.trailers.iter().all(|t| !BAD_TRAILERS.contains(t));
    match &frame {
        Frame::Length(form) => {
            match form {
                0 => headers.push(format!("content-length: {len}")),
                1 => {
                    headers.push(format!("Content-Length: {len}"));
                    headers.push(format!("content-length:{len}"));
                }
                _ => headers.push(format!("content-length: {len} , {len}")),
            }
            body_bytes.extend_from_slice(&p.body);
        }
        Frame::Chunked(value) => {
            headers.push(format!("transfer-encoding: {value}"));
            body_bytes = encode_chunked(&p.body, &p.cuts, &p.styles, &p.last, &p.trailers);
        }
        Frame::UntilClose => body_bytes.extend_from_slice(&p.body),
    }
    let expected_conflict = match (p.conflict, &frame) {
        (Conflict::Both, Frame::Chunked(_)) => {
            headers.push(format!("content-length: {}", body_bytes.len()));
            Some("response has both content-length and transfer-encoding")
        }
        (Conflict::Both, Frame::Length(_)) => {
            headers.push("transfer-encoding: chunked".into());
            Some("response has both content-length and transfer-encoding")
        }
        (Conflict::SecondCoding, Frame::Chunked(_)) => {
            headers.push("transfer-encoding: gzip".into());
            Some("response has more than one transfer coding")
        }
        (Conflict::OtherLength, Frame::Length(_)) => {
            headers.push(format!("content-length: {}", len + 1));
            Some("response has conflicting content-length values")
        }
        (Conflict::BadLength, Frame::Length(_)) => {
            let bad = ["+", "-", "0x", " 1 ", "1e", ",", "99999999999999999999"];
            headers.push(format!("content-length: {len}{}", bad[len % bad.len()]));
            Some("response has an invalid content-length")
        }
        (Conflict::NotChunked, Frame::Chunked(_)) => {
            headers.retain(|h| !h.starts_with("transfer-encoding"));
            headers.push("transfer-encoding: gzip".into());
            Some("response transfer-encoding is not chunked")
        }
        (Conflict::Http10, Frame::Chunked(_)) if p.http10 => {
            Some("HTTP/1.0 response with transfer-encoding")
        }
        _ => None,
    };
    // Header order is free: shuffle (a small LCG keeps the strategy simple).
    let mut seed = p.shuffle_seed;
    for i in (1..headers.len()).rev() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        headers.swap(i, (seed >> 8) as usize % (i + 1));
    }

    let mut bytes = Vec::new();
    for head in &p.interim {
        bytes.extend_from_slice(head.as_bytes());
    }
    let version = if p.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    bytes.extend_from_slice(format!("{version} {} Reason Phrase\r\n", p.status).as_bytes());
    for h in &headers {
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    let head_len = bytes.len();
    if !no_body {
        bytes.extend_from_slice(&body_bytes);
    }
    let answer_len = bytes.len();
    let until_close = matches!(frame, Frame::UntilClose) && !no_body;
    if !until_close {
        bytes.extend_from_slice(&p.trailing);
    }

    let lowered: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    let closes = lowered.iter().any(|h| h.starts_with("connection: close"));
    let keeps = lowered
        .iter()
        .any(|h| h.starts_with("connection: keep-alive"));
    let keep_alive = !until_close && !closes && (!p.http10 || keeps);
    let mut expect = match expected_conflict {
        Some(reason) => Some(Verdict::Error(reason.into())),
        None if chunks_ok || !matches!(frame, Frame::Chunked(_)) || no_body => {
            Some(Verdict::Answer {
                status: p.status,
                body: if no_body { Vec::new() } else { p.body.clone() },
                keep_alive,
                consumed: if no_body { head_len } else { answer_len },
            })
        }
        None => None,
    };
    let limits = match p.small {
        Some(small) => {
            expect = None;
            small
        }
        None => roomy_limits(len, p.slack % 3),
    };
    if let Some((at, byte, how)) = p.mutation {
        expect = None;
        let at = at % (bytes.len() + 1);
        match how {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => bytes.truncate(at),
        }
    }
    Crafted {
        bytes,
        limits,
        expect,
    }
}

fn answer_input() -> impl Strategy<Value = (Crafted, Vec<usize>)> {
    let raw = (
        select(vec![
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n",
        ]),
        vec(any::<u8>(), 0..300),
        prop_oneof![small_limits(), Just(Limits::new(64))],
    )
        .prop_map(|(prefix, tail, limits)| Crafted {
            bytes: [prefix, &tail[..]].concat(),
            limits,
            expect: None,
        });
    (
        prop_oneof![1 => raw, 3 => crafted()],
        vec(any::<usize>(), 0..10),
    )
}

#[test]
fn fuzz_functions_h1_answer() {
    switchboard_fuzz::run(
        "fuzz_functions_h1_answer",
        20_000,
        answer_input(),
        |(case, cuts)| {
            let whole = deliver(&[&case.bytes], case.limits)?;
            let split = deliver(&split_at_points(&case.bytes, &cuts), case.limits)?;
            prop_assert_eq!(&split, &whole, "split differently");
            // A byte at a time: every decision point is crossed alone.
            let bytes: Vec<&[u8]> = case.bytes.chunks(1).collect();
            prop_assert_eq!(&deliver(&bytes, case.limits)?, &whole, "byte by byte");
            if let Some(expect) = &case.expect {
                prop_assert_eq!(&whole, expect);
            }
            Ok(())
        },
    );
}

/// What the reference chunked decoder makes of a whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    /// The body, and the bytes the encoding took.
    Body(Vec<u8>, usize),
    /// Not over yet (a prefix of something the decoder could still accept).
    Incomplete,
    Error,
}

/// The chunked grammar of [`Chunked`], decoded in one pass over the whole input, the
/// obvious way: find each line, check it, take the data.
fn reference(input: &[u8], limits: &Limits) -> Reference {
    fn find_crlf(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len().saturating_sub(1)).find(|&i| bytes[i] == b'\r' && bytes[i + 1] == b'\n')
    }
    let ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let mut pos = 0;
    let mut body = Vec::new();
    let mut spent = 0;
    loop {
        // A size line.
        let rest = &input[pos..];
        let Some(end) = find_crlf(rest) else {
            return if rest.len() >= limits.chunk_line + 2 {
                Reference::Error
            } else {
                Reference::Incomplete
            };
        };
        if end > limits.chunk_line {
            return Reference::Error;
        }
        let line = &rest[..end];
        if line.iter().any(|&b| ctl(b)) {
            return Reference::Error;
        }
        let size_part = line.split(|&b| b == b';').next().unwrap();
        let digits: Vec<u8> = size_part
            .iter()
            .copied()
            .skip_while(|&b| b == b' ' || b == b'\t')
            .collect();
        let digits: Vec<u8> = {
            let mut d = digits;
            while d.last().is_some_and(|&b| b == b' ' || b == b'\t') {
                d.pop();
            }
            d
        };
        if digits.is_empty() {
            return Reference::Error;
        }
        let mut size: u64 = 0;
        for d in digits {
            let Some(v) = (d as char).to_digit(16) else {
                return Reference::Error;
            };
            match size.checked_mul(16) {
                Some(s) => size = s + u64::from(v),
                None => return Reference::Error,
            }
        }
        spent += end.saturating_sub(16);
        if spent > limits.chunk_extensions {
            return Reference::Error;
        }
        if size > (limits.body - body.len()) as u64 {
            return Reference::Error;
        }
        pos += end + 2;
        if size == 0 {
            break;
        }
        // The data and its CRLF.
        let size = size as usize;
        let rest = &input[pos..];
        if rest.len() <= size {
            return Reference::Incomplete;
        }
        body.extend_from_slice(&rest[..size]);
        match &rest[size..] {
            [b'\r'] => return Reference::Incomplete,
            [b'\r', b'\n', ..] => pos += size + 2,
            _ => return Reference::Error,
        }
    }
    // Trailer lines up to an empty one, the section within `limits.head`.
    let mut section = 0;
    let mut fields = 0;
    loop {
        let left = limits.head - section;
        if left < 2 {
            return Reference::Error;
        }
        let rest = &input[pos..];
        let Some(end) = find_crlf(rest) else {
            return if rest.len() >= left {
                Reference::Error
            } else {
                Reference::Incomplete
            };
        };
        if end + 2 > left {
            return Reference::Error;
        }
        if end == 0 {
            return Reference::Body(body, pos + 2);
        }
        let line = &rest[..end];
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Reference::Error;
        };
        let name_ok = colon > 0
            && line[..colon]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok || line[colon + 1..].iter().any(|&b| ctl(b)) {
            return Reference::Error;
        }
        fields += 1;
        if fields > limits.headers {
            return Reference::Error;
        }
        section += end + 2;
        pos += end + 2;
    }
}

/// What the real chunked decoder makes of `pieces`, fed as a connection would; the
/// exact error kept so splits can be compared with each other.
fn chunked(pieces: &[&[u8]], limits: &Limits) -> Result<Result<Reference, String>, TestCaseError> {
    let mut decoder = Chunked::new();
    let mut buf = BytesMut::new();
    let mut body = BytesMut::new();
    let mut fed = 0;
    let mut pieces = pieces.iter().copied().filter(|p| !p.is_empty());
    let mut piece: &[u8] = &[];
    loop {
        match decoder.decode(&mut buf, &mut body, limits) {
            Ok(true) => return Ok(Ok(Reference::Body(body.to_vec(), fed - buf.len()))),
            Ok(false) => {}
            Err(e) => return Ok(Err(reason(e))),
        }
        prop_assert!(buf.len() <= held_bound(limits), "holds {}", buf.len());
        prop_assert!(body.len() <= limits.body);
        prop_assert!(body.capacity() <= body_capacity_bound(limits));
        if piece.is_empty() {
            match pieces.next() {
                Some(next) => piece = next,
                None => return Ok(Ok(Reference::Incomplete)),
            }
        }
        let room = decoder.room(buf.len(), limits);
        prop_assert!(room > 0);
        let take = room.min(piece.len());
        buf.extend_from_slice(&piece[..take]);
        piece = &piece[take..];
        fed += take;
    }
}

/// A chunked encoding of a random body, chunk styles and trailers, and a few bytes after.
fn encoded_chunked() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(any::<u8>(), 0..80),
        vec(any::<usize>(), 0..6),
        vec(size_style(), 1..4),
        size_style(),
        vec(trailer_line(), 0..4),
        vec(any::<u8>(), 0..4),
    )
        .prop_map(|(body, cuts, styles, last, trailers, trailing)| {
            let mut out = encode_chunked(&body, &cuts, &styles, &last, &trailers);
            out.extend_from_slice(&trailing);
            out
        })
}

fn chunked_input() -> impl Strategy<Value = (Vec<u8>, Limits)> {
    let mutated = (
        encoded_chunked(),
        vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..4),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, insert) in edits {
                let at = at % (bytes.len() + 1);
                if insert || at == bytes.len() {
                    bytes.insert(at, byte);
                } else {
                    bytes[at] = byte;
                }
            }
            bytes
        });
    let raw = vec(
        prop_oneof![
            3 => select(b"0123456789abcdefABCDEF;= \t\r\n:xz".to_vec()),
            1 => any::<u8>()
        ],
        0..120,
    );
    let limits = prop_oneof![
        1 => Just(Limits::new(1 << 20)),
        2 => small_limits(),
    ];
    (
        prop_oneof![3 => encoded_chunked(), 3 => mutated, 1 => raw],
        limits,
    )
}

#[test]
fn fuzz_functions_h1_chunked() {
    switchboard_fuzz::run(
        "fuzz_functions_h1_chunked",
        4_500,
        chunked_input(),
        |(input, limits)| {
            let expect = reference(&input, &limits);
            let whole = chunked(&[&input], &limits)?;
            let class = |r: &Result<Reference, String>| match r {
                Ok(r) => r.clone(),
                Err(_) => Reference::Error,
            };
            prop_assert_eq!(class(&whole), expect.clone(), "against the reference");
            // Cut at every point: the same verdict, error message included.
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                prop_assert_eq!(&chunked(&[a, b], &limits)?, &whole, "cut at {}", at);
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(&chunked(&bytes, &limits)?, &whole, "byte by byte");
            Ok(())
        },
    );
}

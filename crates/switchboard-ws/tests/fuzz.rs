//! Fuzz targets for the WebSocket codec (issue 14), on the switchboard-fuzz driver:
//!
//! - `fuzz_ws_decode_any_bytes_any_split`: the decoder, with and without permessage-deflate,
//!   on arbitrary bytes and on frames with arbitrary header fields, cut at arbitrary
//!   points: it never panics, its buffers stay within a bound of the bytes it was given
//!   and of its limits (never of the lengths headers announce), and it gives the same
//!   messages and the same error however the bytes are split.
//! - `fuzz_ws_frames_against_a_model`: valid and slightly corrupted frame sequences
//!   (fragmentation, interleaved control frames, masks, RSV bits, compressed messages from
//!   the crate's own deflater, oversized and non-minimal lengths, bad UTF-8, bad close
//!   codes, corrupt DEFLATE data, decompression bombs): the decoder's messages and close
//!   code agree with a frame-level model of RFC 6455/7692, and messages written by the
//!   crate's `Encoder` come back as they were sent.
//! - `fuzz_ws_handshake_values`: `Sec-WebSocket-Key`, the permessage-deflate offer and the
//!   subprotocol list on arbitrary header values: no panic, a key verdict that agrees with
//!   a model of base64, and an extension answer that is a valid RFC 7692 response to the
//!   offer a model picks, usable for compression both ways.
//!
//! CI: `cargo test -p switchboard-ws fuzz_ -- --nocapture`; long runs:
//! `FUZZ_SECS=600 cargo test -p switchboard-ws --profile fuzz fuzz_<name> -- --nocapture`.

use bytes::{Bytes, BytesMut};
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;
use switchboard_fuzz::proptest::sample::select;
use switchboard_fuzz::split_at_points;
use switchboard_ws::deflate::{self, DeflateConfig, DeflateParams, Deflater, Inflater};
use switchboard_ws::{close_code, handshake, Decoder, Encoder, Limits, Message, OpCode, Role};

// ---------------------------------------------------------------------------------------
// Frames as fields, and their bytes

/// How a frame writes its payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LenForm {
    /// The shortest encoding (what RFC 6455 asks for).
    Minimal,
    /// 126 and 16 bits, even for a short payload (accepted: the decoder does not insist
    /// on the minimal form, except for control frames, whose 7-bit length must be ≤ 125).
    Wide16,
    /// 127 and 64 bits.
    Wide64,
}

/// One frame as its fields. `announce`: the header claims that many payload bytes (64-bit
/// form) and the stream ends after the header (an oversized or high-bit length).
#[derive(Clone, Debug)]
struct Frame {
    fin: bool,
    rsv1: bool,
    /// RSV2/RSV3 bits (0x20, 0x10) ORed into the first byte.
    rsv23: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len_form: LenForm,
    announce: Option<u64>,
    payload: Vec<u8>,
}

impl Frame {
    fn new(opcode: u8, fin: bool, payload: Vec<u8>, mask: Option<[u8; 4]>) -> Self {
        Self {
            fin,
            rsv1: false,
            rsv23: 0,
            opcode,
            mask,
            len_form: LenForm::Minimal,
            announce: None,
            payload,
        }
    }

    fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// The 7-bit length field and the extended length bytes.
    fn length_field(&self) -> (u8, Vec<u8>) {
        if let Some(n) = self.announce {
            return (127, n.to_be_bytes().to_vec());
        }
        let len = self.payload.len();
        let form = match self.len_form {
            LenForm::Minimal if len < 126 => return (len as u8, Vec::new()),
            LenForm::Minimal | LenForm::Wide16 if len <= 0xFFFF => LenForm::Wide16,
            _ => LenForm::Wide64,
        };
        match form {
            LenForm::Wide16 => (126, (len as u16).to_be_bytes().to_vec()),
            _ => (127, (len as u64).to_be_bytes().to_vec()),
        }
    }

    /// Appends the frame's bytes. `false`: the stream ends here (an announced length).
    fn write(&self, out: &mut Vec<u8>) -> bool {
        out.push(
            (self.fin as u8) << 7 | (self.rsv1 as u8) << 6 | self.rsv23 | (self.opcode & 0x0F),
        );
        let (len7, ext) = self.length_field();
        out.push(if self.mask.is_some() { 0x80 } else { 0 } | len7);
        out.extend_from_slice(&ext);
        if let Some(m) = self.mask {
            out.extend_from_slice(&m);
        }
        if self.announce.is_some() {
            return false;
        }
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(m) = self.mask {
            for (i, b) in out[start..].iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        true
    }
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        if !f.write(&mut out) {
            break;
        }
    }
    out
}

/// A short description of bytes for failure messages (inputs here reach megabytes).
fn brief(b: &[u8]) -> String {
    if b.len() <= 64 {
        format!("{b:?}")
    } else {
        format!("{} bytes starting {:?}", b.len(), &b[..32])
    }
}

/// Messages, briefly.
fn brief_messages(ms: &[Message]) -> Vec<String> {
    ms.iter()
        .map(|m| match m {
            Message::Text(b) => format!("Text({})", brief(b)),
            Message::Binary(b) => format!("Binary({})", brief(b)),
            other => format!("{other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Decoding, with the bounds checked after every call

#[derive(Debug, PartialEq)]
struct Decoded {
    messages: Vec<Message>,
    /// The error that ended decoding (code and reason), if any.
    error: Option<(u16, &'static str)>,
}

/// Slack the buffer may hold beyond four times the bytes given. The decoder reserves
/// nothing, so the buffer holds what the harness's reads made it: at most twice the
/// bytes buffered (doubling), or, when it reallocates after a split, the original
/// capacity a `BytesMut` remembers (at most 64 KiB). Four times plus 72 KiB leaves room;
/// what must never show up here is a reservation that follows an announced length.
const BUFFER_SLACK: usize = 72 * 1024;

fn decode_pieces(
    role: Role,
    limits: Limits,
    deflate: Option<DeflateParams>,
    pieces: &[&[u8]],
) -> Result<Decoded, TestCaseError> {
    let mut dec = Decoder::new(role, limits, deflate);
    let mut buf = BytesMut::new();
    let mut peak = 0;
    let mut out = Decoded {
        messages: Vec::new(),
        error: None,
    };
    'feed: for piece in pieces {
        buf.extend_from_slice(piece);
        peak = peak.max(buf.len());
        loop {
            let r = dec.decode(&mut buf);
            prop_assert!(
                buf.capacity() <= 4 * peak + BUFFER_SLACK,
                "{} bytes of capacity after at most {peak} buffered",
                buf.capacity()
            );
            prop_assert!(
                dec.held_bytes() <= 2 * limits.max_message_bytes + BUFFER_SLACK,
                "the decoder holds {} bytes",
                dec.held_bytes()
            );
            match r {
                Ok(Some(m)) => {
                    match &m {
                        Message::Text(b) | Message::Binary(b) => {
                            prop_assert!(b.len() <= limits.max_message_bytes);
                            if let Message::Text(b) = &m {
                                prop_assert!(std::str::from_utf8(b).is_ok());
                            }
                        }
                        Message::Ping(b) | Message::Pong(b) => prop_assert!(b.len() <= 125),
                        Message::Close(c) => {
                            if let Some((code, reason)) = c {
                                prop_assert!(close_code::is_valid_on_wire(*code));
                                prop_assert!(reason.len() <= 123);
                            }
                        }
                    }
                    out.messages.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(matches!(e.code, 1002 | 1007 | 1009), "code {}", e.code);
                    prop_assert_eq!(dec.held_bytes(), 0);
                    out.error = Some((e.code, e.reason));
                    break 'feed;
                }
            }
        }
    }
    Ok(out)
}

/// The same input decoded whole, in the given pieces and byte by byte: one verdict.
fn decode_every_way(
    role: Role,
    limits: Limits,
    deflate: Option<DeflateParams>,
    data: &[u8],
    cuts: &[usize],
) -> Result<Decoded, TestCaseError> {
    let whole = decode_pieces(role, limits, deflate, &[data])?;
    let split = decode_pieces(role, limits, deflate, &split_at_points(data, cuts))?;
    prop_assert!(
        whole == split,
        "split at {:?}: {:?} then {:?}, against {:?} then {:?} whole",
        cuts,
        brief_messages(&split.messages),
        split.error,
        brief_messages(&whole.messages),
        whole.error
    );
    if data.len() <= 4096 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let single = decode_pieces(role, limits, deflate, &bytes)?;
        prop_assert!(
            whole == single,
            "byte by byte: {:?} then {:?}, against {:?} then {:?} whole",
            brief_messages(&single.messages),
            single.error,
            brief_messages(&whole.messages),
            whole.error
        );
    }
    Ok(whole)
}

// ---------------------------------------------------------------------------------------
// Configurations

#[derive(Clone, Copy, Debug)]
struct Setup {
    /// The decoding side (Server: frames must be masked).
    role: Role,
    limits: Limits,
    /// permessage-deflate: None, or Some(no_context_takeover, compressor window bits).
    deflate: Option<(bool, u8)>,
}

impl Setup {
    fn params(&self) -> Option<DeflateParams> {
        self.deflate.map(|(nct, bits)| DeflateParams {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: bits,
            level: 6,
            threshold: 0,
        })
    }

    /// The mask a sender to this decoder puts on frame number `i`.
    fn mask(&self, seed: u32, i: usize) -> Option<[u8; 4]> {
        (self.role == Role::Server)
            .then(|| (seed ^ (i as u32).wrapping_mul(0x9E37_79B9)).to_be_bytes())
    }
}

fn limits_strategy() -> impl Strategy<Value = Limits> {
    const GIB: usize = 1 << 30;
    select(vec![
        // Small: fragments add up past a frame; bombs and oversize are cheap to build.
        (300, 1000),
        // The gateway's defaults.
        (128 * 1024, 128 * 1024),
        // The echo example's huge limits: nothing may be reserved from a header alone.
        (GIB, GIB),
        // Frames may be huge, messages may not: the message limit refuses at the header.
        (GIB, 200),
    ])
    .prop_map(|(f, m)| Limits {
        max_frame_bytes: f,
        max_message_bytes: m,
    })
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(Role::Server), Just(Role::Client)],
        limits_strategy(),
        prop_oneof![Just(None), (any::<bool>(), 8u8..=15).prop_map(Some)],
    )
        .prop_map(|(role, limits, deflate)| Setup {
            role,
            limits,
            deflate,
        })
}

// ---------------------------------------------------------------------------------------
// (a) arbitrary bytes, arbitrary splits

/// A frame with arbitrary header fields (biased toward the valid ones) and payload.
fn any_frame() -> impl Strategy<Value = Frame> {
    let opcode = prop_oneof![6 => select(vec![0u8, 1, 2, 8, 9, 10]), 1 => 0u8..16];
    let len_form = select(vec![LenForm::Minimal, LenForm::Wide16, LenForm::Wide64]);
    // Announced lengths (the stream ends after the header): any, within the huge
    // limits, and within the default ones.
    let announce = prop_oneof![
        10 => Just(None),
        1 => (0u64..u64::MAX).prop_map(Some),
        2 => (0u64..(1 << 31)).prop_map(Some),
        2 => (0u64..=(128 << 10)).prop_map(Some),
    ];
    (
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![8 => Just(0u8), 1 => select(vec![0x10u8, 0x20, 0x30])],
        ),
        opcode,
        any::<Option<[u8; 4]>>(),
        len_form,
        announce,
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |((fin, rsv1, rsv23), opcode, mask, len_form, announce, payload)| Frame {
                fin,
                rsv1,
                rsv23,
                opcode,
                mask,
                len_form,
                announce,
                payload,
            },
        )
}

/// An input for the decoder, made into bytes once the decoding side is known.
#[derive(Clone, Debug)]
enum Input {
    Bytes(Vec<u8>),
    /// Frames with arbitrary fields; `true`: masked as the decoding side requires, so most
    /// headers get past the mask check to what follows it.
    Frames(Vec<Frame>, bool),
    /// Compressed messages made by the deflater ((text, body, repetitions), context
    /// takeover), then bytes XORed at (position, value).
    Compressed(Vec<(bool, Vec<u8>, u8)>, bool, Vec<(usize, u8)>),
}

impl Input {
    fn bytes(&self, setup: &Setup) -> Vec<u8> {
        match self {
            Input::Bytes(b) => b.clone(),
            Input::Frames(frames, fix) => {
                let mut frames = frames.clone();
                if *fix {
                    for (i, f) in frames.iter_mut().enumerate() {
                        f.mask = setup.mask(f.mask.map_or(0, u32::from_be_bytes), i);
                    }
                }
                wire(&frames)
            }
            Input::Compressed(msgs, nct, flips) => {
                let params = DeflateParams {
                    server_no_context_takeover: *nct,
                    client_no_context_takeover: *nct,
                    server_max_window_bits: 15,
                    level: 6,
                    threshold: 0,
                };
                let mut d = Deflater::new(params);
                let mut frames = Vec::new();
                for (text, body, rep) in msgs {
                    // Repetitive bodies too: they inflate far beyond their size.
                    let body = if rep % 4 == 0 {
                        body.repeat(usize::from(*rep))
                    } else {
                        body.clone()
                    };
                    let mut c = Vec::new();
                    d.compress(&body, &mut c);
                    let mask = setup.mask(u32::from(*rep), frames.len());
                    let mut f = Frame::new(if *text { 1 } else { 2 }, true, c, mask);
                    f.rsv1 = true;
                    frames.push(f);
                }
                let mut bytes = wire(&frames);
                for &(at, x) in flips {
                    if !bytes.is_empty() {
                        let i = at % bytes.len();
                        bytes[i] ^= x;
                    }
                }
                bytes
            }
        }
    }
}

/// Arbitrary bytes, frames with arbitrary fields, and compressed messages made by the
/// deflater with their bytes flipped here and there.
fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..600).prop_map(Input::Bytes),
        4 => (vec(any_frame(), 0..8), prop_oneof![4 => Just(true), 1 => Just(false)])
            .prop_map(|(f, fix)| Input::Frames(f, fix)),
        2 => (
            vec((any::<bool>(), vec(any::<u8>(), 0..400), any::<u8>()), 1..4),
            any::<bool>(),
            vec((any::<usize>(), any::<u8>()), 0..4),
        )
            .prop_map(|(msgs, nct, flips)| Input::Compressed(msgs, nct, flips)),
    ]
}

#[test]
fn fuzz_ws_decode_any_bytes_any_split() {
    let strategy = (setup_strategy(), any_input(), vec(any::<usize>(), 0..12));
    switchboard_fuzz::run(
        "fuzz_ws_decode_any_bytes_any_split",
        64_000,
        strategy,
        |(setup, input, cuts)| {
            let data = input.bytes(&setup);
            decode_every_way(setup.role, setup.limits, setup.params(), &data, &cuts)?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// (b) structure-aware frames against a model

#[derive(Clone, Debug)]
enum Ctl {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: no payload, or a code and reason bytes (the payload is cut to 125).
    Close(Option<(u16, Vec<u8>)>),
}

#[derive(Clone, Debug)]
enum Item {
    Message {
        text: bool,
        body: Vec<u8>,
        compress: bool,
        /// Fragment boundaries in the (possibly compressed) payload.
        cuts: Vec<usize>,
        /// Control frames sent after fragment number `.0`.
        controls: Vec<(usize, Ctl)>,
    },
    Control(Ctl),
}

/// What is done to the frames after they are lowered: the slight corruptions.
#[derive(Clone, Debug)]
enum Corrupt {
    Rsv23(u8),
    Opcode(u8),
    FlipMask,
    FlipFin,
    SetRsv1,
    LongControl(usize),
    WideLength(LenForm),
    HighBitLength,
    Oversize(u64),
    /// A data frame whose header announces a length within the limits (a fraction of
    /// the smaller one, in 1/8ths), after which the stream ends: a slow or stalled peer.
    Stall(u64),
    StrayContinuation(bool),
    NestedStart,
    CloseOneByte,
    /// A 0x06 first byte: a DEFLATE block of the reserved type 3, invalid at once.
    BadDeflate,
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-z é€😀]{0,120}".prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..200),
        // Bodies that compress to almost nothing and inflate past the small limits.
        1 => (any::<u8>(), 0usize..6000).prop_map(|(b, n)| vec![b; n]),
        1 => "(ab|c€){0,600}".prop_map(String::into_bytes),
    ]
}

fn ctl_strategy() -> impl Strategy<Value = Ctl> {
    let code = prop_oneof![
        3 => select(vec![1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999]),
        1 => any::<u16>(),
        1 => select(vec![0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]),
    ];
    let reason = prop_oneof![
        3 => "[a-z é]{0,40}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..130),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..=125).prop_map(Ctl::Ping),
        vec(any::<u8>(), 0..=125).prop_map(Ctl::Pong),
        Just(Ctl::Close(None)),
        (code, reason).prop_map(|(c, r)| Ctl::Close(Some((c, r)))),
    ]
}

fn item_strategy() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (
            any::<bool>(),
            body_strategy(),
            any::<bool>(),
            vec(any::<usize>(), 0..4),
            vec((0usize..5, ctl_strategy()), 0..3),
        )
            .prop_map(|(text, body, compress, cuts, controls)| Item::Message {
                text,
                body,
                compress,
                cuts,
                controls,
            }),
        1 => ctl_strategy().prop_map(Item::Control),
    ]
}

fn corrupt_strategy() -> impl Strategy<Value = Option<(usize, Corrupt)>> {
    let c = prop_oneof![
        select(vec![0x10u8, 0x20, 0x30]).prop_map(Corrupt::Rsv23),
        select(vec![3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15]).prop_map(Corrupt::Opcode),
        Just(Corrupt::FlipMask),
        Just(Corrupt::FlipFin),
        Just(Corrupt::SetRsv1),
        (126usize..300).prop_map(Corrupt::LongControl),
        select(vec![LenForm::Wide16, LenForm::Wide64]).prop_map(Corrupt::WideLength),
        Just(Corrupt::HighBitLength),
        (1u64..1 << 40).prop_map(Corrupt::Oversize),
        (0u64..=8).prop_map(Corrupt::Stall),
        any::<bool>().prop_map(Corrupt::StrayContinuation),
        Just(Corrupt::NestedStart),
        Just(Corrupt::CloseOneByte),
        Just(Corrupt::BadDeflate),
    ];
    prop_oneof![1 => Just(None), 3 => (any::<usize>(), c).prop_map(Some)]
}

fn ctl_frame(c: &Ctl, mask: Option<[u8; 4]>) -> Frame {
    match c {
        Ctl::Ping(p) => Frame::new(0x9, true, p.clone(), mask),
        Ctl::Pong(p) => Frame::new(0xA, true, p.clone(), mask),
        Ctl::Close(None) => Frame::new(0x8, true, Vec::new(), mask),
        Ctl::Close(Some((code, reason))) => {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(&reason[..reason.len().min(123)]);
            Frame::new(0x8, true, p, mask)
        }
    }
}

/// The compressed payloads the sender produced, in order, with what they inflate to.
type Genuine = Vec<(Vec<u8>, Vec<u8>)>;

/// Items to frames as a sender with full control of framing writes them: compressed
/// messages may be fragmented.
fn lower(items: &[Item], setup: &Setup, seed: u32) -> (Vec<Frame>, Genuine) {
    let mut deflater = setup.params().map(Deflater::new);
    let mut frames = Vec::new();
    let mut genuine = Vec::new();
    for item in items {
        match item {
            Item::Control(c) => frames.push(ctl_frame(c, setup.mask(seed, frames.len()))),
            Item::Message {
                text,
                body,
                compress,
                cuts,
                controls,
            } => {
                let compressed = match deflater.as_mut().filter(|_| *compress) {
                    Some(d) => {
                        let mut c = Vec::new();
                        d.compress(body, &mut c);
                        genuine.push((c.clone(), body.clone()));
                        Some(c)
                    }
                    None => None,
                };
                let payload = compressed.as_deref().unwrap_or(body);
                let pieces = split_at_points(payload, cuts);
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    let mut f = Frame::new(
                        opcode,
                        i == last,
                        piece.to_vec(),
                        setup.mask(seed, frames.len()),
                    );
                    f.rsv1 = i == 0 && compressed.is_some();
                    frames.push(f);
                    for (after, c) in controls {
                        if *after == i || (i == last && *after > last) {
                            frames.push(ctl_frame(c, setup.mask(seed, frames.len())));
                        }
                    }
                }
            }
        }
    }
    (frames, genuine)
}

/// Items to bytes through the crate's `Encoder` (whole messages compressed by it, fragments
/// sent uncompressed, controls through its helpers), and the frames that say the same.
fn lower_with_encoder(items: &[Item], setup: &Setup) -> (Vec<u8>, Vec<Frame>, Genuine) {
    let sender = match setup.role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let params = setup.params();
    let mut enc = Encoder::new(sender, params);
    let mut twin = params.map(Deflater::new);
    let mut out = BytesMut::new();
    let mut frames = Vec::new();
    let mut genuine = Vec::new();
    let mask = setup.mask(0, 0);
    let ctl = |c: &Ctl, enc: &mut Encoder, out: &mut BytesMut, frames: &mut Vec<Frame>| match c {
        Ctl::Ping(p) => {
            enc.ping_pong(false, p, out);
            frames.push(ctl_frame(c, mask));
        }
        Ctl::Pong(p) => {
            enc.ping_pong(true, p, out);
            frames.push(ctl_frame(c, mask));
        }
        Ctl::Close(None) => {
            enc.close(close_code::NO_STATUS, "", out);
            frames.push(ctl_frame(c, mask));
        }
        Ctl::Close(Some((code, reason))) => match std::str::from_utf8(reason) {
            Ok(r) if *code != close_code::NO_STATUS => {
                enc.close(*code, r, out);
                // The encoder cuts the reason to 123 bytes on a character boundary.
                let mut end = r.len().min(123);
                while !r.is_char_boundary(end) {
                    end -= 1;
                }
                frames.push(ctl_frame(
                    &Ctl::Close(Some((*code, r.as_bytes()[..end].to_vec()))),
                    mask,
                ));
            }
            _ => {
                let f = ctl_frame(c, mask);
                enc.frame(OpCode::Close, true, false, &f.payload, out);
                frames.push(f);
            }
        },
    };
    for item in items {
        match item {
            Item::Control(c) => ctl(c, &mut enc, &mut out, &mut frames),
            Item::Message {
                text,
                body,
                compress,
                cuts,
                controls,
            } => {
                let opcode = if *text { OpCode::Text } else { OpCode::Binary };
                let pieces = split_at_points(body, cuts);
                if pieces.len() == 1 && controls.is_empty() {
                    if let (true, Some(d)) = (compress, twin.as_mut()) {
                        enc.message(*text, body, &mut out);
                        // The output room the encoder gives its deflater (the stored
                        // blocks of an 8-bit window are cut to the room there is).
                        let mut c = Vec::with_capacity(body.len() / 2 + 16);
                        d.compress(body, &mut c);
                        genuine.push((c.clone(), body.clone()));
                        let mut f = Frame::new(if *text { 1 } else { 2 }, true, c, mask);
                        f.rsv1 = true;
                        frames.push(f);
                    } else {
                        enc.frame(opcode, true, false, body, &mut out);
                        frames.push(Frame::new(
                            if *text { 1 } else { 2 },
                            true,
                            body.clone(),
                            mask,
                        ));
                    }
                    continue;
                }
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let op = if i == 0 { opcode } else { OpCode::Continuation };
                    enc.frame(op, i == last, false, piece, &mut out);
                    let bits = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    frames.push(Frame::new(bits, i == last, piece.to_vec(), mask));
                    for (after, c) in controls {
                        if *after == i || (i == last && *after > last) {
                            ctl(c, &mut enc, &mut out, &mut frames);
                        }
                    }
                }
            }
        }
    }
    (out.to_vec(), frames, genuine)
}

fn corrupt(frames: &mut Vec<Frame>, at: usize, c: &Corrupt, setup: &Setup) {
    let mask = setup.mask(7, at);
    let i = if frames.is_empty() {
        0
    } else {
        at % frames.len()
    };
    let insert = |frames: &mut Vec<Frame>, f: Frame| frames.insert(i.min(frames.len()), f);
    if frames.is_empty()
        && !matches!(
            c,
            Corrupt::LongControl(_)
                | Corrupt::Oversize(_)
                | Corrupt::Stall(_)
                | Corrupt::StrayContinuation(_)
                | Corrupt::NestedStart
                | Corrupt::CloseOneByte
        )
    {
        return;
    }
    match c {
        Corrupt::Rsv23(bits) => frames[i].rsv23 = *bits,
        Corrupt::Opcode(op) => frames[i].opcode = *op,
        Corrupt::FlipMask => {
            frames[i].mask = match frames[i].mask {
                Some(_) => None,
                None => Some([9, 8, 7, 6]),
            }
        }
        Corrupt::FlipFin => frames[i].fin = !frames[i].fin,
        Corrupt::SetRsv1 => frames[i].rsv1 = true,
        Corrupt::LongControl(n) => insert(frames, Frame::new(0x9, true, vec![b'p'; *n], mask)),
        Corrupt::WideLength(form) => frames[i].len_form = *form,
        Corrupt::HighBitLength => {
            frames[i].announce = Some(1 << 63 | frames[i].payload.len() as u64)
        }
        Corrupt::Oversize(extra) => {
            let mut f = Frame::new(0x2, true, Vec::new(), mask);
            f.announce = Some(setup.limits.max_frame_bytes as u64 + extra);
            insert(frames, f);
        }
        Corrupt::Stall(eighths) => {
            let limit = setup
                .limits
                .max_frame_bytes
                .min(setup.limits.max_message_bytes) as u64;
            let mut f = Frame::new(0x2, true, Vec::new(), mask);
            f.announce = Some(limit / 8 * eighths);
            insert(frames, f);
        }
        Corrupt::StrayContinuation(fin) => {
            insert(frames, Frame::new(0x0, *fin, b"x".to_vec(), mask))
        }
        Corrupt::NestedStart => insert(frames, Frame::new(0x1, false, b"y".to_vec(), mask)),
        Corrupt::CloseOneByte => insert(frames, Frame::new(0x8, true, vec![3], mask)),
        Corrupt::BadDeflate => {
            if frames[i].rsv1 {
                frames[i].payload.insert(0, 0x06);
            }
        }
    }
}

/// What the model expects: the messages, then an error code, the end of the input, or
/// "unknown" (a compressed payload the sender did not produce: its inflation is not
/// modelled, so only the messages before it are compared).
#[derive(Debug, PartialEq)]
enum End {
    Complete,
    Error(u16),
    Unknown,
}

/// A frame-level model of RFC 6455 §5 and RFC 7692 as this decoder applies them, written
/// from the rules rather than from the decoder's code.
fn model(frames: &[Frame], setup: &Setup, genuine: &Genuine) -> (Vec<Message>, End) {
    let limits = setup.limits;
    let deflate = setup.deflate.is_some();
    let mut out = Vec::new();
    let mut next_genuine = 0;
    // The message being reassembled: (text, compressed, bytes so far).
    let mut partial: Option<(bool, bool, Vec<u8>)> = None;
    let utf8_prefix_ok = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    for (n, f) in frames.iter().enumerate() {
        if n > 0 && frames[n - 1].announce.is_some() {
            break;
        }
        // The header, in the order a reader meets its fields.
        if f.rsv23 != 0 || !matches!(f.opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return (out, End::Error(1002));
        }
        if f.mask.is_some() != (setup.role == Role::Server) {
            return (out, End::Error(1002));
        }
        let (len7, _) = f.length_field();
        if f.is_control() && (!f.fin || len7 > 125) {
            return (out, End::Error(1002));
        }
        let len = match f.announce {
            Some(n) if n >> 63 != 0 => return (out, End::Error(1002)),
            Some(n) => n,
            None => f.payload.len() as u64,
        };
        if len > limits.max_frame_bytes as u64 {
            return (out, End::Error(1009));
        }
        // What the header alone decides.
        if f.is_control() {
            if f.rsv1 {
                return (out, End::Error(1002));
            }
        } else {
            if f.rsv1 && (!deflate || f.opcode == 0) {
                return (out, End::Error(1002));
            }
            let max = limits.max_message_bytes as u64;
            match (&partial, f.opcode) {
                (Some(_), 1 | 2) | (None, 0) => return (out, End::Error(1002)),
                (Some((_, _, so_far)), _) if so_far.len() as u64 + len > max => {
                    return (out, End::Error(1009))
                }
                (None, _) if !(f.rsv1 && f.fin) && len > max => return (out, End::Error(1009)),
                _ => {}
            }
        }
        if len > 0 && f.announce.is_some() {
            // The header was fine; its payload never comes.
            return (out, End::Complete);
        }
        // (An announced length of 0 is a whole frame, the last of the stream.)
        let p = if f.announce.is_some() {
            Vec::new()
        } else {
            f.payload.clone()
        };
        match f.opcode {
            9 => out.push(Message::Ping(p.into())),
            10 => out.push(Message::Pong(p.into())),
            8 => match p.len() {
                0 => out.push(Message::Close(None)),
                1 => return (out, End::Error(1002)),
                _ => {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                    if !valid {
                        return (out, End::Error(1002));
                    }
                    if std::str::from_utf8(&p[2..]).is_err() {
                        return (out, End::Error(1007));
                    }
                    out.push(Message::Close(Some((
                        code,
                        Bytes::copy_from_slice(&p[2..]),
                    ))));
                }
            },
            _ => {
                let (text, compressed, mut so_far) = match partial.take() {
                    Some(m) => m,
                    None => (f.opcode == 1, f.rsv1, Vec::new()),
                };
                so_far.extend_from_slice(&p);
                if text && !compressed && !utf8_prefix_ok(&so_far) {
                    return (out, End::Error(1007));
                }
                if !f.fin {
                    partial = Some((text, compressed, so_far));
                    continue;
                }
                let data = if compressed {
                    if so_far.first() == Some(&0x06) {
                        return (out, End::Error(1007));
                    }
                    match genuine.get(next_genuine) {
                        Some((c, plain)) if *c == so_far => {
                            next_genuine += 1;
                            plain.clone()
                        }
                        _ => return (out, End::Unknown),
                    }
                } else {
                    so_far
                };
                if data.len() > limits.max_message_bytes {
                    return (out, End::Error(1009));
                }
                if text && std::str::from_utf8(&data).is_err() {
                    return (out, End::Error(1007));
                }
                out.push(if text {
                    Message::Text(data.into())
                } else {
                    Message::Binary(data.into())
                });
            }
        }
    }
    (out, End::Complete)
}

fn check_against_model(
    setup: &Setup,
    frames: &[Frame],
    genuine: &Genuine,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let got = decode_every_way(setup.role, setup.limits, setup.params(), bytes, cuts)?;
    let (want, end) = model(frames, setup, genuine);
    let agrees = match end {
        End::Unknown => got.messages.get(..want.len()) == Some(&want[..]),
        End::Complete => got.messages == want && got.error.is_none(),
        End::Error(code) => got.messages == want && got.error.map(|e| e.0) == Some(code),
    };
    prop_assert!(
        agrees,
        "decoded {:?} then {:?}; the model: {:?} then {:?}",
        brief_messages(&got.messages),
        got.error,
        brief_messages(&want),
        end
    );
    Ok(())
}

#[test]
fn fuzz_ws_frames_against_a_model() {
    let strategy = (
        setup_strategy(),
        vec(item_strategy(), 0..6),
        corrupt_strategy(),
        any::<u32>(),
        vec(any::<usize>(), 0..8),
    );
    switchboard_fuzz::run(
        "fuzz_ws_frames_against_a_model",
        16_000,
        strategy,
        |(setup, items, corruption, seed, cuts)| {
            // A sender in full control of framing, then one slight corruption.
            let (mut frames, genuine) = lower(&items, &setup, seed);
            if let Some((at, c)) = &corruption {
                corrupt(&mut frames, *at, c, &setup);
            }
            check_against_model(&setup, &frames, &genuine, &wire(&frames), &cuts)?;
            // The crate's own encoder: what it writes decodes to what the model says, and
            // a valid message comes back exactly as it was sent.
            let (bytes, frames, genuine) = lower_with_encoder(&items, &setup);
            if setup.role == Role::Client {
                let modelled = wire(&frames);
                let at = bytes.iter().zip(&modelled).position(|(a, b)| a != b);
                prop_assert!(
                    bytes == modelled,
                    "the encoder wrote {} where the model writes {} (first difference at {:?})",
                    brief(&bytes),
                    brief(&modelled),
                    at
                );
            }
            check_against_model(&setup, &frames, &genuine, &bytes, &cuts)?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// (c) the handshake's header values

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A `Sec-WebSocket-Key` is valid when it is the canonical base64 of 16 bytes: 22
/// alphabet characters (the last one carrying 2 bits, so its low 4 bits are zero) and
/// `==`.
fn key_model(k: &[u8]) -> bool {
    let val = |c: u8| B64.iter().position(|&x| x == c);
    k.len() == 24
        && k[..22].iter().all(|&c| val(c).is_some())
        && val(k[21]).is_some_and(|v| v & 0x0F == 0)
        && &k[22..] == b"=="
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    let b64 = select(B64.to_vec());
    prop_oneof![
        vec(any::<u8>(), 0..40),
        vec(
            prop_oneof![8 => b64.clone(), 1 => Just(b'='), 1 => any::<u8>()],
            20..28
        ),
        (vec(b64, 22), any::<bool>()).prop_map(|(mut k, pad)| {
            if pad {
                k.extend_from_slice(b"==");
            } else {
                k.push(b'=');
            }
            k
        }),
        (any::<[u8; 16]>(), any::<usize>(), any::<u8>()).prop_map(|(raw, at, x)| {
            use base64::Engine;
            let mut k = base64::engine::general_purpose::STANDARD
                .encode(raw)
                .into_bytes();
            let i = at % k.len();
            k[i] ^= x;
            k
        }),
    ]
}

/// One permessage-deflate offer as fields, rendered with formatting noise.
#[derive(Clone, Debug)]
struct Offer {
    name: String,
    /// (parameter name, value): the value as written, quoted or not.
    params: Vec<(String, Option<String>)>,
    /// Whitespace around separators.
    pad: String,
    quote: bool,
}

impl Offer {
    fn render(&self) -> String {
        let mut s = self.name.clone();
        for (n, v) in &self.params {
            s.push_str(&self.pad);
            s.push(';');
            s.push_str(&self.pad);
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                if self.quote {
                    s.push('"');
                    s.push_str(v);
                    s.push('"');
                } else {
                    s.push_str(v);
                }
            }
        }
        s
    }

    /// The model's reading (RFC 7692 §7.1): `None` when the offer must be declined, else
    /// (server_no_context_takeover, client_no_context_takeover, server_max_window_bits).
    fn accepted(&self) -> Option<(bool, bool, Option<u8>)> {
        if !self.name.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let bits = |v: &Option<String>| -> Option<u8> {
            let v = v.as_deref()?;
            let n: u8 = v.parse().ok()?;
            ((8..=15).contains(&n) && v == n.to_string()).then_some(n)
        };
        let (mut snct, mut cnct, mut sbits, mut cbits) = (false, false, None, false);
        for (n, v) in &self.params {
            // RFC 7230's implied whitespace: `name = value` is the same parameter.
            match n.trim().to_ascii_lowercase().as_str() {
                "server_no_context_takeover" if v.is_none() && !snct => snct = true,
                "client_no_context_takeover" if v.is_none() && !cnct => cnct = true,
                "server_max_window_bits" if sbits.is_none() => sbits = Some(bits(v)?),
                "client_max_window_bits" if !cbits => {
                    cbits = true;
                    if v.is_some() {
                        bits(v)?;
                    }
                }
                _ => return None,
            }
        }
        Some((snct, cnct, sbits))
    }
}

fn offer_strategy() -> impl Strategy<Value = Offer> {
    let name = prop_oneof![
        6 => Just("permessage-deflate".to_string()),
        1 => Just("PerMessage-Deflate".to_string()),
        1 => select(vec!["x-webkit-deflate-frame", "permessage-deflate2", "", "deflate"]).prop_map(str::to_string),
    ];
    let pname = prop_oneof![
        8 => select(vec![
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]),
        1 => select(vec!["SERVER_MAX_WINDOW_BITS", "foo", "", "server_max_window_bits "]),
    ]
    .prop_map(str::to_string);
    let value = prop_oneof![
        3 => Just(None),
        4 => (8u8..=15).prop_map(|n| Some(n.to_string())),
        1 => select(vec!["0", "7", "16", "99", "100", "a", "", "1 5", "08"]).prop_map(|v| Some(v.to_string())),
    ];
    (
        name,
        vec((pname, value), 0..5),
        select(vec!["", " ", "  ", "\t"]),
        prop_oneof![4 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(name, params, pad, quote)| Offer {
            name,
            params,
            pad: pad.to_string(),
            quote,
        })
}

fn deflate_config_strategy() -> impl Strategy<Value = DeflateConfig> {
    (0u32..12, any::<bool>(), 0u8..20, 0usize..64).prop_map(|(level, takeover, bits, threshold)| {
        DeflateConfig {
            level,
            context_takeover: takeover,
            server_max_window_bits: bits,
            threshold,
        }
    })
}

/// The answer is one RFC 7692 extension with known parameters, each once.
fn parse_answer(answer: &str) -> Result<(bool, bool, Option<u8>), String> {
    if !answer.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(format!("not a header value: {answer:?}"));
    }
    let mut parts = answer.split("; ");
    if parts.next() != Some("permessage-deflate") {
        return Err(format!("not permessage-deflate: {answer:?}"));
    }
    let (mut snct, mut cnct, mut sbits) = (false, false, None);
    for p in parts {
        match p.split_once('=') {
            None if p == "server_no_context_takeover" && !snct => snct = true,
            None if p == "client_no_context_takeover" && !cnct => cnct = true,
            Some(("server_max_window_bits", v)) if sbits.is_none() => {
                let n: u8 = v.parse().map_err(|_| format!("bad bits in {answer:?}"))?;
                if !(8..=15).contains(&n) || v != n.to_string() {
                    return Err(format!("bad bits in {answer:?}"));
                }
                sbits = Some(n);
            }
            _ => return Err(format!("unexpected {p:?} in {answer:?}")),
        }
    }
    Ok((snct, cnct, sbits))
}

/// The client's side of what the server agreed: it compresses as `client_*` says and
/// inflates what the server compressed.
fn client_side(p: &DeflateParams) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: p.client_no_context_takeover,
        client_no_context_takeover: p.server_no_context_takeover,
        server_max_window_bits: 15,
        level: 6,
        threshold: 0,
    }
}

#[test]
fn fuzz_ws_handshake_values() {
    let headers = vec(
        prop_oneof![
            4 => vec(offer_strategy(), 1..4).prop_map(Some),
            1 => Just(None),
        ],
        0..3,
    );
    let junk = vec(".{0,60}", 0..3);
    let ours = vec(
        prop_oneof![
            4 => select(vec!["chat.v1", "chat.v2", "switchboard.v1", "mqtt", "a"]).prop_map(str::to_string),
            1 => select(vec!["bad one", "", "x,y", "é"]).prop_map(str::to_string),
        ],
        0..4,
    );
    let offered = vec(
        vec(
            prop_oneof![
                4 => select(vec!["chat.v1", "chat.v2", "switchboard.v1", "mqtt", "a", "CHAT.V1"]).prop_map(str::to_string),
                1 => ".{0,12}",
            ],
            0..4,
        )
        .prop_map(|v| v.join(", ")),
        0..3,
    );
    let strategy = (
        key_strategy(),
        (headers, junk, deflate_config_strategy()),
        (ours, offered),
    );
    switchboard_fuzz::run(
        "fuzz_ws_handshake_values",
        40_000,
        strategy,
        |(key, (headers, junk, cfg), (ours, offered))| {
            // The key.
            let valid = handshake::is_valid_key(&key);
            prop_assert_eq!(
                valid,
                key_model(&key),
                "key {:?}",
                String::from_utf8_lossy(&key)
            );
            let accept = handshake::accept_key(&key);
            prop_assert_eq!(accept.len(), 28);
            prop_assert!(accept.ends_with('=') && accept[..27].bytes().all(|b| B64.contains(&b)));

            // The extension offer: structured header values (offers joined by commas),
            // or arbitrary text.
            let structured = !headers.is_empty() && headers.iter().all(Option::is_some);
            let values: Vec<String> = if structured {
                headers
                    .iter()
                    .flatten()
                    .map(|offers| {
                        offers
                            .iter()
                            .map(Offer::render)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect()
            } else {
                junk.clone()
            };
            let agreed = deflate::negotiate(values.iter().map(String::as_str), &cfg);
            if let Some((p, answer)) = &agreed {
                let (snct, cnct, sbits) = parse_answer(answer).map_err(TestCaseError::fail)?;
                prop_assert_eq!(p.server_no_context_takeover, snct);
                prop_assert_eq!(p.client_no_context_takeover, cnct);
                prop_assert_eq!(p.server_max_window_bits, sbits.unwrap_or(15));
                prop_assert!(p.level <= 9);
                if !cfg.context_takeover {
                    prop_assert!(snct && cnct, "takeover off in the config: {answer}");
                }
                // Usable both ways, three messages each (context carried or not).
                let client = client_side(p);
                let (mut sd, mut ci) = (Deflater::new(*p), Inflater::new(client));
                let (mut cd, mut si) = (Deflater::new(client), Inflater::new(*p));
                for msg in [&b"hello hello hello"[..], b"", &[7u8; 3000]] {
                    let mut c = Vec::new();
                    sd.compress(msg, &mut c);
                    prop_assert_eq!(
                        ci.decompress(&c, 1 << 20)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?,
                        msg
                    );
                    let mut c = Vec::new();
                    cd.compress(msg, &mut c);
                    prop_assert_eq!(
                        si.decompress(&c, 1 << 20)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?,
                        msg
                    );
                }
            }
            if structured {
                // The first acceptable offer, in header order, is the one answered.
                let first = headers.iter().flatten().flatten().find_map(Offer::accepted);
                prop_assert_eq!(agreed.is_some(), first.is_some(), "values {:?}", values);
                if let (Some((p, answer)), Some((osnct, ocnct, obits))) = (&agreed, first) {
                    let (snct, cnct, sbits) = parse_answer(answer).map_err(TestCaseError::fail)?;
                    prop_assert!(
                        !osnct || snct,
                        "offered server_no_context_takeover: {answer}"
                    );
                    prop_assert!(
                        !ocnct || cnct,
                        "offered client_no_context_takeover: {answer}"
                    );
                    if let Some(ob) = obits {
                        prop_assert!(
                            sbits.is_some_and(|b| b <= ob),
                            "offered {ob} bits: {answer}"
                        );
                    }
                    let window = cfg
                        .server_max_window_bits
                        .clamp(9, 15)
                        .min(obits.unwrap_or(15));
                    prop_assert_eq!(p.server_max_window_bits, window);
                }
            }

            // The subprotocol: one of ours, offered by the client, a token, and the first
            // of ours that qualifies.
            let chosen = handshake::select_subprotocol(&ours, offered.iter().map(String::as_str));
            let offered_entries: Vec<&str> = offered
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            let qualifies = |p: &str| handshake::is_token(p) && offered_entries.contains(&p);
            prop_assert_eq!(
                chosen,
                ours.iter().map(String::as_str).find(|p| qualifies(p))
            );
            if let Some(c) = chosen {
                prop_assert!(c.bytes().all(|b| b.is_ascii_graphic() && b != b','));
            }
            Ok(())
        },
    );
}

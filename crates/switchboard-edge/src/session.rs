//! Resumable sessions (`switchboard.v1`, docs/protocol.md): the sans-IO part.
//!
//! A [`Session`] numbers the server's messages, keeps the unacknowledged ones for replay,
//! and remembers the highest client message it has handed to a function. It knows nothing
//! of sockets: the connection task frames through it, and when a socket drops without a
//! clean close the session is parked with the connection's queue until the client comes
//! back or the window ends.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use switchboard_core::ConnectionId;

/// The subprotocol name.
pub const PROTOCOL: &str = "switchboard.v1";

/// The close code a session client sends to detach: the session is parked, not ended.
pub const DETACH: u16 = 4000;

/// What a client frame on a session means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    /// A message with its sequence number (payload without the prefix).
    Message { seq: u64, data: Bytes, binary: bool },
    /// Cumulative acknowledgement of server messages.
    Ack(u64),
    /// Heartbeat.
    Heartbeat,
    /// Not a frame of the protocol.
    Invalid,
}

/// Parses a client frame.
pub(crate) fn parse(data: &Bytes, binary: bool) -> ClientFrame {
    if binary {
        if data.len() < 9 || data[0] != 0x01 {
            return ClientFrame::Invalid;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&data[1..9]);
        // Numbering starts at 1 (as `m0:` is refused): a 0 would pass for a resend of
        // something already handed on, and be acknowledged and dropped without a word.
        return match u64::from_be_bytes(seq) {
            0 => ClientFrame::Invalid,
            seq => ClientFrame::Message {
                seq,
                data: data.slice(9..),
                binary: true,
            },
        };
    }
    match data.first() {
        Some(b'h') if data.len() == 1 => ClientFrame::Heartbeat,
        Some(b'a') => decimal(&data[1..]).map_or(ClientFrame::Invalid, ClientFrame::Ack),
        Some(b'm') => {
            let Some(colon) = data.iter().position(|&b| b == b':') else {
                return ClientFrame::Invalid;
            };
            match decimal(&data[1..colon]) {
                Some(seq) if seq > 0 => ClientFrame::Message {
                    seq,
                    data: data.slice(colon + 1..),
                    binary: false,
                },
                _ => ClientFrame::Invalid,
            }
        }
        _ => ClientFrame::Invalid,
    }
}

/// A sequence number: decimal digits only (`str::parse` would also take a leading `+`),
/// within u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One resumable session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The token, as its client last presented it (for the hello). Empty in a session that
    /// arrived from another node until its client resumes it: only [`Self::proof`] travels.
    pub token: String,
    /// What a request must match to resume, move or take this session.
    pub proof: TokenProof,
    next_seq: u64,
    replay: VecDeque<(u64, Bytes, bool)>,
    replay_bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    /// The replay buffer overflowed: messages were lost for a future resume, so the
    /// session can no longer be resumed.
    pub overflowed: bool,
    /// Highest client message handed to a function.
    pub last_client_seq: u64,
    /// Client messages handed on since the last ack we sent.
    pub unacked_client: u32,
    /// Times the session changed nodes before it came to this one (what stamps its kept
    /// copy, [`switchboard_cluster::CopyStamp`]).
    pub hops: u32,
}

impl Session {
    pub fn new(token: String, max_messages: usize, max_bytes: usize) -> Self {
        Self::with_proof(TokenProof::of(&token), token, max_messages, max_bytes)
    }

    fn with_proof(proof: TokenProof, token: String, max_messages: usize, max_bytes: usize) -> Self {
        Self {
            token,
            proof,
            next_seq: 1,
            replay: VecDeque::new(),
            replay_bytes: 0,
            max_messages,
            max_bytes,
            overflowed: false,
            last_client_seq: 0,
            unacked_client: 0,
            hops: 0,
        }
    }

    /// Numbers a server message, keeps it for replay, and returns its wire payload.
    pub fn frame(&mut self, data: &[u8], binary: bool) -> (Bytes, bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let kept = Bytes::copy_from_slice(data);
        self.replay_bytes += kept.len();
        self.replay.push_back((seq, kept, binary));
        while self.replay.len() > self.max_messages || self.replay_bytes > self.max_bytes {
            if let Some((_, d, _)) = self.replay.pop_front() {
                self.replay_bytes -= d.len();
                self.overflowed = true;
            }
        }
        (encode(seq, data, binary), binary)
    }

    /// The client acknowledged everything up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        while self.replay.front().is_some_and(|(s, _, _)| *s <= seq) {
            if let Some((_, d, _)) = self.replay.pop_front() {
                self.replay_bytes -= d.len();
            }
        }
    }

    /// The wire frames of every kept message above `after`, in order.
    pub fn replay_after(&self, after: u64) -> Vec<(Bytes, bool)> {
        self.replay
            .iter()
            .filter(|(s, _, _)| *s > after)
            .map(|(s, d, b)| (encode(*s, d, *b), *b))
            .collect()
    }

    /// Whether a resume after `after` can be lossless: nothing above it was dropped.
    pub fn can_resume_after(&self, after: u64) -> bool {
        let oldest = self.replay.front().map_or(self.next_seq, |(s, _, _)| *s);
        !self.overflowed || after + 1 >= oldest
    }

    /// The hello frame.
    pub fn hello(&self, connection_id: &str, resumed: bool, window_secs: u64) -> String {
        let mut s = String::from("s");
        s.push_str(
            &serde_json::json!({
                "session": self.token,
                "connectionId": connection_id,
                "resumed": resumed,
                "lastClientSeq": self.last_client_seq,
                "resumeWindowSecs": window_secs,
            })
            .to_string(),
        );
        s
    }
}

fn encode(seq: u64, data: &[u8], binary: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 21);
    if binary {
        out.put_u8(0x01);
        out.put_u64(seq);
    } else {
        out.put_u8(b'm');
        out.extend_from_slice(seq.to_string().as_bytes());
        out.put_u8(b':');
    }
    out.extend_from_slice(data);
    out.freeze()
}

/// A fresh session token for connection `id`: the id (so any node can tell which node to
/// ask for the session), a dot, and 128 random bits, URL-safe.
pub(crate) fn new_token(id: &ConnectionId) -> String {
    use base64::Engine;
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    format!("{id}.{secret}")
}

/// The connection a session token belongs to, if it is shaped like one. The id is no
/// credential (functions and other users see connection ids): it only says where to look;
/// the token's [`TokenProof`] decides.
pub(crate) fn connection_of(token: &str) -> Option<ConnectionId> {
    let (id, secret) = token.split_once('.')?;
    (secret.len() == 22).then_some(())?;
    ConnectionId::parse(id)
}

/// What proves a session token: its SHA-256. A node keeps it beside each session, and
/// moves and backplane copies carry it instead of the token, so whoever reads a copy or a
/// move learns nothing that resumes the session. The token holds 128 random bits, so a
/// plain hash cannot be reversed by guessing. Compared only in constant time; never
/// logged (its `Debug` shows nothing).
#[derive(Clone, Copy)]
pub(crate) struct TokenProof([u8; 32]);

impl TokenProof {
    /// The proof of `token`.
    pub fn of(token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Whether `token` is the token this proves, in time independent of where they differ.
    pub fn proves(&self, token: &str) -> bool {
        constant_time_eq(&self.0, &Self::of(token).0)
    }
}

impl std::fmt::Debug for TokenProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProof(..)")
    }
}

/// Compares two digests in constant time. ring's own comparison is deprecated for outside
/// use, so this compares HMACs of both under a key drawn at start with `ring::hmac::verify`
/// (constant time, and even a leak would be about tags an attacker cannot predict).
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use ring::hmac;
    static KEY: std::sync::OnceLock<hmac::Key> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()));
    hmac::verify(key, a, hmac::sign(key, b).as_ref()).is_ok()
}

impl Serialize for TokenProof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for TokenProof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a token proof is 32 bytes"))?;
        Ok(Self(bytes))
    }
}

/// One message kept for a session, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// Its sequence number (0: not numbered yet, still queued).
    pub seq: u64,
    /// The payload, base64.
    #[serde(with = "switchboard_cluster::bytes_b64")]
    pub data: Bytes,
    /// Binary frame.
    pub binary: bool,
}

/// A parked session on its way to another node (docs/protocol.md, "Resuming on another
/// node"): everything the new node needs to go on as if the session had always been there.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Handover {
    /// The connection and its user, groups and state (`event::snapshot` JSON).
    pub connection: serde_json::Value,
    /// The proof of the session token (never the token: see [`TokenProof`]).
    pub token_proof: TokenProof,
    /// The next server sequence number.
    pub next_seq: u64,
    /// Unacknowledged server messages, oldest first.
    pub replay: Vec<Kept>,
    /// Whether the replay buffer ever dropped a message.
    pub overflowed: bool,
    /// The highest client message handed to a function.
    pub last_client_seq: u64,
    /// Messages queued for the connection and not yet numbered, in order.
    pub queued: Vec<Kept>,
    /// Milliseconds since the connection opened (for `max_duration`).
    pub age_ms: u64,
    /// When the client was last heard from, epoch ms.
    pub last_active_ms: u64,
    /// When the connection's credential expires, epoch ms.
    pub expires_at_ms: Option<u64>,
    /// Times the session changed nodes before this handover.
    #[serde(default)]
    pub hops: u32,
}

impl Session {
    /// A handover of this session for `connection` (snapshot JSON) with `queued` (not
    /// yet numbered); the connection's timings are left for the caller to fill in.
    pub fn handover(&self, connection: serde_json::Value, queued: Vec<Kept>) -> Handover {
        let replay = self
            .replay
            .iter()
            .map(|(seq, data, binary)| Kept {
                seq: *seq,
                data: data.clone(),
                binary: *binary,
            })
            .collect();
        Handover {
            connection,
            token_proof: self.proof,
            next_seq: self.next_seq,
            replay,
            overflowed: self.overflowed,
            last_client_seq: self.last_client_seq,
            queued,
            age_ms: 0,
            last_active_ms: 0,
            expires_at_ms: None,
            hops: self.hops,
        }
    }

    /// The session a handover describes, under this node's buffer bounds (its token is
    /// set when a client proves it).
    pub fn restore(h: &Handover, max_messages: usize, max_bytes: usize) -> Self {
        let mut s = Self::with_proof(h.token_proof, String::new(), max_messages, max_bytes);
        s.next_seq = h.next_seq;
        s.overflowed = h.overflowed;
        s.last_client_seq = h.last_client_seq;
        // It changes nodes to come here.
        s.hops = h.hops.saturating_add(1);
        for k in &h.replay {
            s.replay_bytes += k.data.len();
            s.replay.push_back((k.seq, k.data.clone(), k.binary));
        }
        s
    }
}

/// A session whose socket dropped, waiting for its client (docs/protocol.md).
pub(crate) struct Parked {
    pub session: Box<Session>,
    pub rx: tokio::sync::mpsc::Receiver<crate::outbound::Outbound>,
    pub slot: crate::slot::Slot,
    pub started: tokio::time::Instant,
    /// A copy is kept in the backplane (`[resume] keep_in_backplane`).
    pub kept: bool,
    /// Its groups, user or state changed since its copy was last written.
    pub changed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        assert_eq!(
            parse(&Bytes::from_static(b"h"), false),
            ClientFrame::Heartbeat
        );
        assert_eq!(
            parse(&Bytes::from_static(b"a42"), false),
            ClientFrame::Ack(42)
        );
        assert_eq!(
            parse(&Bytes::from_static(b"m7:hello:world"), false),
            ClientFrame::Message {
                seq: 7,
                data: Bytes::from_static(b"hello:world"),
                binary: false
            }
        );
        let mut bin = vec![1u8];
        bin.extend_from_slice(&9u64.to_be_bytes());
        bin.extend_from_slice(&[0xff, 0]);
        assert_eq!(
            parse(&Bytes::from(bin), true),
            ClientFrame::Message {
                seq: 9,
                data: Bytes::from_static(&[0xff, 0]),
                binary: true
            }
        );
        for bad in [&b"x"[..], b"m:x", b"m0:x", b"mx:y", b"a", b"ax", b"hh", b""] {
            assert_eq!(
                parse(&Bytes::copy_from_slice(bad), false),
                ClientFrame::Invalid,
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(&Bytes::from_static(&[2, 0, 0]), true),
            ClientFrame::Invalid
        );
    }

    #[test]
    fn tokens_name_their_connection() {
        let id = switchboard_core::id::IdGenerator::new("n").connection_id();
        let t = new_token(&id);
        assert_eq!(connection_of(&t), Some(id));
        assert_ne!(new_token(&id), t);
        for bad in [
            "",
            "x",
            "x.y",
            &format!("{id}."),
            &format!("{id}.short"),
            "a.bbbbbbbbbbbbbbbbbbbbbb",
        ] {
            assert_eq!(connection_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_token_proof_proves_its_token_only() {
        let id = switchboard_core::id::IdGenerator::new("n").connection_id();
        let token = new_token(&id);
        let proof = TokenProof::of(&token);
        assert!(proof.proves(&token));
        for other in [
            new_token(&id),
            format!("{id}.{}", "x".repeat(22)),
            token[..token.len() - 1].to_owned(),
            format!("{token}x"),
            String::new(),
        ] {
            assert!(!proof.proves(&other), "{other}");
        }
        // It travels as text, and comes back the same; anything else is refused.
        let text = serde_json::to_string(&proof).unwrap();
        let (_, secret) = token.split_once('.').unwrap();
        assert!(!text.contains(secret));
        let back: TokenProof = serde_json::from_str(&text).unwrap();
        assert!(back.proves(&token));
        for bad in [r#""""#, r#""AAAA""#, r#""not base64!""#, "7", "null"] {
            assert!(serde_json::from_str::<TokenProof>(bad).is_err(), "{bad}");
        }
        // Its Debug shows nothing of it.
        assert_eq!(format!("{proof:?}"), "TokenProof(..)");
    }

    #[test]
    fn a_session_survives_export_and_restore() {
        let mut s = Session::new("t".into(), 8, 1000);
        for i in 1..=4 {
            s.frame(format!("p{i}").as_bytes(), i == 4);
        }
        s.ack(2);
        s.last_client_seq = 7;
        let h = s.handover(serde_json::Value::Null, Vec::new());
        let h: Handover = serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        let mut back = Session::restore(&h, 8, 1000);
        assert!(back.proof.proves("t") && !back.proof.proves("u"));
        assert_eq!(back.replay_after(2), s.replay_after(2));
        assert_eq!(back.last_client_seq, 7);
        assert_eq!(back.frame(b"p5", false).0, "m5:p5");
    }

    #[test]
    fn replay_acks_and_overflow() {
        let mut s = Session::new("t".into(), 3, 1000);
        for i in 1..=3 {
            let (wire, _) = s.frame(format!("p{i}").as_bytes(), false);
            assert_eq!(wire, format!("m{i}:p{i}"));
        }
        s.ack(1);
        let r: Vec<_> = s.replay_after(0).into_iter().map(|(b, _)| b).collect();
        assert_eq!(r, ["m2:p2", "m3:p3"]);
        assert_eq!(s.replay_after(2).len(), 1);
        assert!(s.can_resume_after(1));
        // Two more without acks: the buffer (3) drops m2; resuming after 1 would lose it.
        s.frame(b"p4", false);
        s.frame(b"p5", false);
        assert!(s.overflowed);
        assert!(!s.can_resume_after(1));
        assert!(s.can_resume_after(2));
        assert!(s.hello("id", true, 120).starts_with("s{"));
    }
}

//! Connection and request ids.
//!
//! A connection id is 16 bytes shown as 22 URL-safe base64 characters: the owning node's
//! tag (4 bytes), this process's incarnation (4 random bytes drawn at start, so a restarted
//! node never reissues an id) and a counter (8 bytes). The node tag lets a cluster route a
//! send to the right node without a lookup; nothing else should read meaning into an id.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A connection id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId([u8; 16]);

impl ConnectionId {
    /// The tag of the node that owns this connection.
    pub fn node_tag(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 22-character form. Also accepts AWS-style trailing `=` padding.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim_end_matches('=');
        if s.len() != 22 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// Writes the 22-character form into a stack buffer (no allocation).
    pub fn encode(&self) -> EncodedId {
        let mut buf = [0u8; 22];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .expect("16 bytes encode to 22 characters");
        debug_assert_eq!(n, 22);
        EncodedId(buf)
    }
}

/// The text form of a [`ConnectionId`], held on the stack.
#[derive(Clone, Copy)]
pub struct EncodedId([u8; 22]);

impl EncodedId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode().as_str())
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.encode().as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ConnectionId::parse(&s).ok_or_else(|| serde::de::Error::custom("not a connection id"))
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// Issues connection and request ids for one node.
#[derive(Debug)]
pub struct IdGenerator {
    node_tag: u32,
    incarnation: u32,
    next: AtomicU64,
}

impl IdGenerator {
    /// A generator for the node with `node_id` (any string; hashed to a 4-byte tag).
    pub fn new(node_id: &str) -> Self {
        Self {
            node_tag: node_tag(node_id),
            incarnation: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    /// This node's tag.
    pub fn node_tag(&self) -> u32 {
        self.node_tag
    }

    /// This node process: its tag and its incarnation, which no other process of the
    /// cluster (this node's earlier or later runs included) shares.
    pub fn owner(&self) -> u64 {
        u64::from(self.node_tag) << 32 | u64::from(self.incarnation)
    }

    /// A connection id never issued before.
    pub fn connection_id(&self) -> ConnectionId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.node_tag.to_be_bytes());
        b[4..8].copy_from_slice(&self.incarnation.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        ConnectionId(b)
    }

    /// A request id (AWS-like: 16 base64 characters ending in `=`).
    pub fn request_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 11];
        b[..3].copy_from_slice(&self.incarnation.to_be_bytes()[1..]);
        b[3..].copy_from_slice(&n.to_be_bytes());
        let mut text = [b'='; 16];
        let n = URL_SAFE_NO_PAD
            .encode_slice(b, &mut text)
            .expect("11 bytes encode to 15 characters");
        debug_assert_eq!(n, 15);
        String::from_utf8(text.to_vec()).expect("base64 is ASCII")
    }
}

/// FNV-1a of the node id: stable across restarts and machines.
pub fn node_tag(node_id: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in node_id.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_url_safe_and_carry_the_node() {
        let g = IdGenerator::new("node-a");
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = g.connection_id();
            let s = id.to_string();
            assert_eq!(s.len(), 22);
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(ConnectionId::parse(&s), Some(id));
            assert_eq!(id.node_tag(), node_tag("node-a"));
            assert!(seen.insert(s));
        }
        // A restarted node (new incarnation) does not reissue ids.
        let g2 = IdGenerator::new("node-a");
        assert!(!seen.contains(&g2.connection_id().to_string()) || g2.incarnation == g.incarnation);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(ConnectionId::parse("").is_none());
        assert!(ConnectionId::parse("abc").is_none());
        assert!(ConnectionId::parse("!!!!!!!!!!!!!!!!!!!!!!").is_none());
        let id = IdGenerator::new("x").connection_id().to_string();
        assert!(ConnectionId::parse(&format!("{id}=")).is_some());
    }

    #[test]
    fn request_ids_look_like_aws() {
        let r = IdGenerator::new("x").request_id();
        assert_eq!(r.len(), 16);
        assert!(r.ends_with('='));
    }
}

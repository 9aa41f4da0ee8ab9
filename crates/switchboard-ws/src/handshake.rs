//! The opening handshake's pure parts (RFC 6455 §4.2): the key and its accept value, and
//! the choice of a subprotocol. The extension offer is parsed in [`crate::deflate`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a `Sec-WebSocket-Key` is well formed: base64 of exactly 16 bytes.
pub fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// The server's most preferred subprotocol among those the client offered: the first of
/// `ours` that appears in the comma-separated `Sec-WebSocket-Protocol` request header
/// values. Only a token (RFC 9110 §5.6.2) is ever chosen, so the answer is always a valid
/// header value the client itself sent; `None` when nothing matches (the response then
/// carries no `Sec-WebSocket-Protocol`).
pub fn select_subprotocol<'a, 'b, S: AsRef<str>>(
    ours: &'a [S],
    offered_values: impl IntoIterator<Item = &'b str>,
) -> Option<&'a str> {
    if ours.is_empty() {
        return None;
    }
    let offered: Vec<&str> = offered_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| is_token(p))
        .collect();
    ours.iter()
        .map(AsRef::as_ref)
        .find(|p| is_token(p) && offered.contains(p))
}

/// An RFC 9110 token: one or more of `!#$%&'*+-.^_`|~`, digits and letters.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A fresh random key for a client handshake.
pub fn client_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"short"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ!!"));
        assert!(is_valid_key(client_key().as_bytes()));
    }

    #[test]
    fn subprotocols_by_server_preference_tokens_only() {
        let ours = ["chat.v2", "chat.v1", "bad one"];
        assert_eq!(
            select_subprotocol(&ours, ["other, chat.v1", " chat.v2 "]),
            Some("chat.v2")
        );
        assert_eq!(select_subprotocol(&ours, ["chat.v1,"]), Some("chat.v1"));
        assert_eq!(select_subprotocol(&ours, ["bad one"]), None);
        assert_eq!(select_subprotocol(&ours, ["CHAT.V1", ""]), None);
        assert_eq!(select_subprotocol::<&str>(&[], ["chat.v1"]), None);
    }
}

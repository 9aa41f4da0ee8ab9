//! The opening handshake's key arithmetic (RFC 6455 §4.2.2).

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
}

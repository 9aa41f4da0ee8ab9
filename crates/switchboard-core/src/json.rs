//! JSON text written straight into a byte buffer, for the one document the gateway builds
//! per invocation (the AWS event, see [`crate::event`]).
//!
//! serde_json serializes every key through its string escaper and every number and
//! address through `fmt`; on a 600-byte MESSAGE event that was a third of the gateway's
//! own instructions per invocation. Here keys are static and written as they are,
//! strings are escaped eight bytes at a time, and numbers are written without `fmt`.
//! The output is byte for byte what serde_json writes for the same values (the tests
//! compare the two).

/// Writes the members of one JSON object in order: [`Object::begin`] writes `{`, each
/// member its key and value (with the comma between members), [`Object::end`] the `}`.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Starts an object at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Writes `"key":` (after a comma unless it is the first member) and returns the
    /// buffer for the value. `key` is written as it is: it must not need escaping.
    #[inline]
    pub fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(!key.bytes().any(needs_escape), "{key} needs escaping");
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// A string member.
    #[inline]
    pub fn str(&mut self, key: &'static str, value: &str) {
        push_str(self.key(key), value);
    }

    /// A number member.
    #[inline]
    pub fn u64(&mut self, key: &'static str, value: u64) {
        push_u64(self.key(key), value);
    }

    /// A boolean member.
    #[inline]
    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A member whose value serde_json writes (a map, say). Writing to memory cannot
    /// fail for values whose map keys are strings, which are the only ones passed here.
    pub fn serde(&mut self, key: &'static str, value: &impl serde::Serialize) {
        let _ = serde_json::to_writer(&mut *self.key(key), value);
    }

    /// A member that is itself an object, written by `members`.
    pub fn object(&mut self, key: &'static str, members: impl FnOnce(&mut Object<'_>)) {
        let mut inner = Object::begin(self.key(key));
        members(&mut inner);
        inner.end();
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// `s` as a JSON string, quotes included.
#[inline]
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    push_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// The contents of a JSON string (no quotes) for `bytes`, which the caller guarantees is
/// UTF-8 (an escape never splits a multi-byte character: every escaped byte is ASCII).
pub fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `w` is below `n` (n <= 0x80; exact for the word as a whole:
    // a borrow only follows a byte that is below).
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let clean = |w: u64| {
        !below(w, 0x20) && !below(w ^ (ONES * u64::from(b'"')), 1) && !below(w ^ (ONES * 0x5c), 1)
    };
    // Bytes before `run` are written; the run since then is copied in one piece at the
    // next escape (or the end).
    let mut run = 0;
    let mut at = 0;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        if !clean(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
            escape_from(out, bytes, &mut run, at, word);
        }
        at += 8;
    }
    escape_from(out, bytes, &mut run, at, words.remainder());
    out.extend_from_slice(&bytes[run..]);
}

/// Escapes the bytes of `part`, which starts at `at` in `bytes`, flushing the pending
/// run before each escape.
fn escape_from(out: &mut Vec<u8>, bytes: &[u8], run: &mut usize, at: usize, part: &[u8]) {
    for (i, &b) in part.iter().enumerate() {
        if needs_escape(b) {
            out.extend_from_slice(&bytes[*run..at + i]);
            push_escape(out, b);
            *run = at + i + 1;
        }
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The escape serde_json writes for `b`: the short forms where JSON has one, else `\u00XX`.
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
            return;
        }
    };
    out.push(b'\\');
    out.push(short);
}

/// `n` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(crate::text::decimal(n, &mut buf));
}

/// An IP address as a JSON string, as its `Display` writes it.
pub fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            out.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
            out.push(b'"');
        }
        // Rare enough for `fmt`; the text has nothing to escape.
        std::net::IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "\"{v6}\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).expect("escaped UTF-8 stays UTF-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "sixteen bytes ok".into(),
            "\"quoted\" and \\back\\slashed".into(),
            "tab\there\nnew line\r\u{8}\u{c}\u{0}\u{1f}\u{7f}".into(),
            "ünïcødé ✓ 🎉 \u{2028}\u{2029} /slash/".into(),
            "{\"action\":\"send\",\"data\":\"x\\\"y\"}".into(),
        ];
        // Every ASCII byte at every offset within a word, and runs across word borders.
        for b in 0u8..128 {
            for pad in 0..9 {
                let mut s = "a".repeat(pad);
                s.push(char::from(b));
                s.push_str("bcdefghijk");
                s.push(char::from(b));
                cases.push(s);
            }
        }
        for s in &cases {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn objects_match_serde_json() {
        let mut out = Vec::new();
        let mut o = Object::begin(&mut out);
        o.str("a", "x\"y");
        o.u64("n", u64::MAX);
        o.u64("zero", 0);
        o.bool("t", true);
        o.bool("f", false);
        o.object("inner", |i| {
            i.str("k", "v");
            i.object("empty", |_| {});
        });
        o.serde("map", &serde_json::json!({"b": [1, null]}));
        o.end();
        let want = serde_json::json!({
            "a": "x\"y", "n": u64::MAX, "zero": 0, "t": true, "f": false,
            "inner": {"k": "v", "empty": {}}, "map": {"b": [1, null]}
        });
        let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, want);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x\"y","n":18446744073709551615,"zero":0,"t":true,"f":false,"inner":{"k":"v","empty":{}},"map":{"b":[1,null]}}"#
        );
    }

    #[test]
    fn addresses_match_display() {
        for ip in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.7",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{ip}\""));
        }
    }
}

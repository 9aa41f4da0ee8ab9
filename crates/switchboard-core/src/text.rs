//! Small text helpers shared by the listeners.

/// Decodes `%XX` escapes in a URL path segment. `None` if an escape is malformed or the
/// result is not UTF-8. (`+` stays `+`: this is for paths, not form data.)
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub fn truncate_on_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `n` in decimal ASCII, written into the end of `buf` (no allocation, no `fmt`).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // Two digits per division: millisecond timestamps have 13.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    &buf[i..]
}

/// The size in an HTTP/1.1 chunk-size line (hex digits, then optional `;extensions`; the
/// CRLF already cut off), or `None` if it is not one (or does not fit a `u64`).
pub fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    // `from_str_radix` would also take a sign.
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| u64::from_str_radix(d, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"FF;name=value"), Some(255));
        assert_eq!(chunk_size(b" 10 ;x"), Some(16));
        for bad in [&b""[..], b";x", b"zz", b"-1", b"+1", b"10000000000000000"] {
            assert_eq!(chunk_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimal_writes_every_length() {
        let mut buf = [0u8; 20];
        let mut n = 1u64;
        for _ in 0..20 {
            for m in [n - 1, n, n.saturating_add(1), (n / 3).saturating_mul(7)] {
                assert_eq!(decimal(m, &mut buf), m.to_string().as_bytes());
            }
            n = n.saturating_mul(10);
        }
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn decodes_paths() {
        assert_eq!(percent_decode("a%2Fb%40c").as_deref(), Some("a/b@c"));
        assert_eq!(percent_decode("x+y").as_deref(), Some("x+y"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        for bad in ["%", "%4", "%zz", "%ff", "a%2"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        let mut s = "ab€cd".to_owned();
        truncate_on_char(&mut s, 3);
        assert_eq!(s, "ab");
        let mut s = "ab€cd".to_owned();
        truncate_on_char(&mut s, 5);
        assert_eq!(s, "ab€");
        truncate_on_char(&mut s, 99);
        assert_eq!(s, "ab€");
    }
}

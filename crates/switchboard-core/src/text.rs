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

#[cfg(test)]
mod tests {
    use super::*;

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

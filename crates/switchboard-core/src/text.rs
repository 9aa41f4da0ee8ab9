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
}

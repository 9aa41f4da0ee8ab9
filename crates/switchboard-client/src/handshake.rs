//! The opening handshake, sans-IO: the target URL, the upgrade request, and the checks
//! on the server's answer (RFC 6455 §4.1).

use std::fmt::Write as _;

use switchboard_ws::handshake::accept_key;

use crate::error::Kind;

/// Largest response head accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub secure: bool,
    /// Host name or IP address (IPv6 without brackets): what TCP and TLS use.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL: the `Host` header.
    pub authority: String,
    /// Path and query (never empty; the fragment removed).
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, Kind> {
        let (secure, rest) = if let Some(r) = strip_prefix_ignore_case(url, "ws://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ignore_case(url, "wss://") {
            (true, r)
        } else {
            return Err(Kind::Url("the scheme must be ws:// or wss://"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(Kind::Url("the URL needs a host (and no user info)"));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or(Kind::Url("unclosed IPv6 address"))?;
            let port = match &v6[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(Kind::Url("bad port"))?),
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p.parse().map_err(|_| Kind::Url("bad port"))?,
        };
        if host.is_empty() || !is_clean(authority) || !is_clean(path) || path.contains(' ') {
            return Err(Kind::Url("invalid characters in the URL"));
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        Ok(Self {
            secure,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// The request target with extra query parameters appended (URL-encoded).
    pub fn request_path(&self, extra: &[(&str, &str)]) -> String {
        if extra.is_empty() {
            return self.path_and_query.clone();
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in extra {
            query.append_pair(k, v);
        }
        let sep = match self.path_and_query.find('?') {
            None => "?",
            Some(i) if i + 1 == self.path_and_query.len() => "",
            Some(_) if self.path_and_query.ends_with('&') => "",
            Some(_) => "&",
        };
        let mut path = self.path_and_query.clone();
        path.push_str(sep);
        path.push_str(&query.finish());
        path
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// No control characters (a request line or header must not be split).
fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Whether `s` may be a `Sec-WebSocket-Protocol` entry (an RFC 7230 token).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` may be a header value.
pub(crate) fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The upgrade request's bytes.
pub(crate) fn request(
    target: &Target,
    path: &str,
    key: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut req = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        target.authority
    );
    if !protocols.is_empty() {
        let _ = write!(req, "Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "));
    }
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A successful upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upgraded {
    /// Bytes of `buf` taken by the response head; what follows is WebSocket frames.
    pub head_len: usize,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

/// Checks the server's answer in `buf`. `Ok(None)`: the head is not complete yet.
pub(crate) fn response(buf: &[u8], key: &str, offered: &[&str]) -> Result<Option<Upgraded>, Kind> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(Kind::Handshake("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Kind::Handshake("malformed HTTP response")),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(Kind::Status(status));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(Kind::Handshake("101 without Upgrade: websocket"));
    }
    if !header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Err(Kind::Handshake("101 without Connection: upgrade"));
    }
    if header("sec-websocket-accept") != Some(accept_key(key.as_bytes()).as_str()) {
        return Err(Kind::Handshake("wrong Sec-WebSocket-Accept"));
    }
    if header("sec-websocket-extensions").is_some_and(|v| !v.is_empty()) {
        return Err(Kind::Handshake(
            "the server chose an extension never offered",
        ));
    }
    let protocol = match header("sec-websocket-protocol").filter(|v| !v.is_empty()) {
        None => None,
        Some(p) if offered.contains(&p) => Some(p.to_owned()),
        Some(_) => {
            return Err(Kind::Handshake(
                "the server chose a subprotocol never offered",
            ))
        }
    };
    Ok(Some(Upgraded { head_len, protocol }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/chat?room=1#frag").unwrap();
        assert_eq!(
            t,
            Target {
                secure: false,
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path_and_query: "/chat?room=1".into()
            }
        );
        let t = Target::parse("WSS://example.com").unwrap();
        assert!(t.secure);
        assert_eq!((t.port, t.path_and_query.as_str()), (443, "/"));
        let t = Target::parse("ws://[::1]:9000?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.path_and_query, "/?x=1");
        assert_eq!(Target::parse("ws://[::1]/").unwrap().port, 80);
        for bad in [
            "http://x/",
            "ws://",
            "ws://:80/",
            "ws://h:99999/",
            "ws://u@h/",
            "ws://h/a\r\nX: y",
            "ws://h/a b",
            "ws://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn appends_query_parameters() {
        let t = Target::parse("ws://h/p").unwrap();
        assert_eq!(
            t.request_path(&[("sb_session", "a b&c"), ("sb_last", "7")]),
            "/p?sb_session=a+b%26c&sb_last=7"
        );
        let t = Target::parse("ws://h/p?x=1").unwrap();
        assert_eq!(t.request_path(&[("sb_last", "0")]), "/p?x=1&sb_last=0");
        assert_eq!(t.request_path(&[]), "/p?x=1");
        let t = Target::parse("ws://h/p?").unwrap();
        assert_eq!(t.request_path(&[("a", "1")]), "/p?a=1");
    }

    #[test]
    fn builds_the_request() {
        let t = Target::parse("ws://h:1/p").unwrap();
        let req = request(
            &t,
            "/p",
            "KEY",
            &["switchboard.v1", "chat"],
            &[("X-A", "b")],
        );
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET /p HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: KEY\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: switchboard.v1, chat\r\nX-A: b\r\n\r\n"
        );
    }

    #[test]
    fn checks_the_response() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: switchboard.v1\r\n\r\nXX";
        let up = response(ok.as_bytes(), key, &["switchboard.v1"])
            .unwrap()
            .unwrap();
        assert_eq!(up.head_len, ok.len() - 2);
        assert_eq!(up.protocol.as_deref(), Some("switchboard.v1"));
        assert_eq!(response(&ok.as_bytes()[..40], key, &[]).unwrap(), None);
        assert!(matches!(
            response(ok.as_bytes(), key, &["other"]),
            Err(Kind::Handshake(_))
        ));
        let plain = ok.replace("Sec-WebSocket-Protocol: switchboard.v1\r\n", "");
        let up = response(plain.as_bytes(), key, &["switchboard.v1"])
            .unwrap()
            .unwrap();
        assert_eq!(up.protocol, None);
        let bad_accept = ok.replace("s3pP", "AAAA");
        assert!(response(bad_accept.as_bytes(), key, &["switchboard.v1"]).is_err());
        assert!(matches!(
            response(b"HTTP/1.1 409 Conflict\r\n\r\n", key, &[]),
            Err(Kind::Status(409))
        ));
        assert!(response(&[b'x'; MAX_HEAD_BYTES], key, &[]).is_err());
    }
}

//! The bytes of a request: header lines, the `host` header, the URL's check, and the
//! `x-switchboard-signature` value.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use hyper::Uri;
use sha2::Sha256;

use crate::SetupError;

/// `name: value\r\n`, left out when the value holds bytes a header value cannot (CR,
/// LF and other control characters).
pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if is_header_value(value) {
        push_trusted(out, name, value);
    }
}

/// Whether `value` may be sent as a header value, by the rule of
/// [`HeaderValue::from_bytes`] (visible ASCII, space, tab and obs-text; no CR, LF or other
/// control characters), without building one: that copies the bytes.
pub(super) fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// `name: value\r\n` for a value known to be a valid header value.
pub(super) fn push_trusted(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `host` header for a URL: its host, and its port unless that is the scheme's
/// default (80, or 443 for `https`).
pub(super) fn host_header(uri: &Uri) -> Result<HeaderValue, SetupError> {
    let host = uri.host().unwrap_or_default();
    let value = match uri.port_u16() {
        Some(port) if port != default_port(uri) => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value)
        .map_err(|_| SetupError::invalid("url", "host is not a valid header value"))
}

/// Whether the URL is `https://`.
pub(super) fn is_https(uri: &Uri) -> bool {
    uri.scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
}

/// 443 for `https`, 80 for `http`.
pub(super) fn default_port(uri: &Uri) -> u16 {
    if is_https(uri) {
        443
    } else {
        80
    }
}

pub(super) fn parse_url(url: &str) -> Result<Uri, SetupError> {
    let bad = |problem: &str| SetupError::invalid("url", problem);
    let uri: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err(bad("must be an http:// or https:// URL")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported; use headers"));
    }
    Ok(uri)
}

pub(super) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `t=<t>,v1=<lowercase hex of HMAC-SHA256(secret, "<t>.<body>")>`.
pub(super) fn signature(mut mac: Hmac<Sha256>, t: u64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // "t=" + up to 20 digits + ",v1=" + 64 hex digits.
    let mut value = String::with_capacity(2 + 20 + 4 + 64);
    value.push_str("t=");
    let digits_at = value.len();
    // Writing to a String cannot fail.
    let _ = write!(value, "{t}");
    mac.update(&value.as_bytes()[digits_at..]);
    mac.update(b".");
    mac.update(body);
    value.push_str(",v1=");
    for byte in mac.finalize().into_bytes() {
        value.push(char::from(HEX[usize::from(byte >> 4)]));
        value.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    value
}

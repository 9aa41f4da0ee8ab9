//! The canonical request and the string to sign, rebuilt from the request as received
//! the way the AWS SDKs build them, and the signing key derived from the secret.

use ring::hmac;

use super::authorization::Authorization;
use super::hex::{hex_value, HEX_UPPER};
use super::{Error, Head, ALGORITHM, TERMINATOR};

/// Whether a path has a `.` or `..` segment, written plainly or percent-encoded (`%2e`,
/// `.%2E`, ...): the segments a client's URL library or signer may resolve, so that what
/// was signed and what is routed could differ.
pub fn has_dot_segment(raw_path: &str) -> bool {
    raw_path.split('/').any(|segment| {
        // The longest spelling of `..` is `%2e%2e`; longer segments need no decoding.
        segment.len() <= 6 && matches!(percent_decode(segment.as_bytes()).as_slice(), b"." | b"..")
    })
}

/// The canonical request for `head` with `path` (as received, or with empty segments
/// dropped) as its path, up to the payload hash that ends it.
pub(super) fn canonical_request_prefix(
    head: &Head<'_>,
    path: &str,
    signed_headers: &str,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256 + path.len() + head.raw_query.map_or(0, str::len));
    out.extend_from_slice(head.method.as_bytes());
    out.push(b'\n');
    // The path arrives encoded once; encoding it again is what the SDKs sign.
    uri_encode(&mut out, path.as_bytes(), true);
    out.push(b'\n');
    canonical_query(&mut out, head.raw_query.unwrap_or(""));
    out.push(b'\n');
    for name in signed_headers.split(';') {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = head.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Err(Error::SignedHeaderMissing);
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// The whole canonical request, ending with `payload_hash`.
#[cfg(test)]
pub(super) fn canonical_request(
    head: &Head<'_>,
    path: &str,
    signed_headers: &str,
    payload_hash: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut out = canonical_request_prefix(head, path, signed_headers)?;
    out.extend_from_slice(payload_hash);
    Ok(out)
}

/// Parameters sorted by encoded name then encoded value, each decoded from the received
/// query and encoded again the SigV4 way. A `+` is kept as a literal plus: the SDKs send a
/// space as `%20`.
fn canonical_query(out: &mut Vec<u8>, raw_query: &str) {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let mut n = Vec::with_capacity(name.len());
            uri_encode(&mut n, &percent_decode(name.as_bytes()), false);
            let mut v = Vec::with_capacity(value.len());
            uri_encode(&mut v, &percent_decode(value.as_bytes()), false);
            (n, v)
        })
        .collect();
    pairs.sort_unstable();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
    }
}

/// Appends `value` with leading and trailing blanks removed and inner runs of blanks
/// collapsed to one space.
fn trim_all(out: &mut Vec<u8>, value: &[u8]) {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut first = true;
    for word in value.split(blank).filter(|w| !w.is_empty()) {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// The path as botocore and the JS SDK v3 sign it once dot segments are ruled out: empty
/// segments dropped. `None` when that changes nothing.
pub(super) fn collapse_empty_segments(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut collapsed = String::with_capacity(path.len());
    if path.starts_with('/') {
        collapsed.push('/');
    }
    collapsed.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        collapsed.push('/');
    }
    (collapsed != path).then_some(collapsed)
}

/// SigV4 URI encoding: unreserved characters kept, `/` kept when `keep_slash`, every other
/// byte as `%XX` with uppercase hex.
fn uri_encode(out: &mut Vec<u8>, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 15)],
            ]);
        }
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex_value(b)),
                bytes.get(i + 2).and_then(|&b| hex_value(b)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub(super) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k_secret);
    for part in [date, region, service, TERMINATOR] {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    key
}

/// The string to sign up to the canonical request's hash, which ends it.
pub(super) fn string_to_sign_prefix(amz_date: &str, auth: &Authorization<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    for part in [
        ALGORITHM,
        "\n",
        amz_date,
        "\n",
        auth.date,
        "/",
        auth.region,
        "/",
        auth.service,
        "/",
        TERMINATOR,
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

//! AWS Signature Version 4 verification of incoming requests, sans-IO.
//!
//! The caller hands over the request head as it arrived (method, still-encoded path and
//! query, headers), a lookup from access key id to secret, and the current time;
//! [`verify_head`] refuses a missing, malformed, stale or unknown credential before any
//! of the body is read, and answers a [`PendingBody`] that the body is fed through as it
//! streams in. [`PendingBody::finish`] answers who signed the request or why it is
//! refused. [`verify`] does both for a request whose body is already at hand. Only
//! header-signed requests (`Authorization: AWS4-HMAC-SHA256 ...`) are accepted, not
//! presigned query strings.
//!
//! When the signer declared the payload hash (`x-amz-content-sha256`, as the JS SDK does),
//! the signature covers that header and is checked from the head alone; the body must
//! then hash to it. When it did not (botocore for `execute-api`), the canonical request
//! ends with the body's hash, so the signature is checked once the body is in.
//!
//! The canonical request is rebuilt the way the AWS SDKs build it for non-S3 services: the
//! path as received is URI-encoded once more, so a received `/prod/@connections/abc%3D` was
//! signed as `/prod/%40connections/abc%253D`. botocore and the JS SDK v3 drop empty path
//! segments before encoding, the Go SDK does not; when a path has empty segments both
//! forms are tried, so the caller must route on a path in which empty segments do not
//! matter. A path with a `.` or `..` segment (in any percent-encoding) is refused outright:
//! the SDKs would sign it with the segment resolved, which names another route than the
//! one the path reaches. HTTP/2 requests carry the host in `:authority`: the caller puts
//! it in a `host` header.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use ring::{digest, hmac};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The signing name of the API Gateway management API.
const SERVICE: &str = "execute-api";
const TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &[u8] = b"UNSIGNED-PAYLOAD";

/// The head of an incoming request, as received.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string exactly as received, without the `?`.
    pub raw_query: Option<&'a str>,
    /// Every header of the request; must hold `host`.
    pub headers: &'a HeaderMap,
}

/// An incoming request, as received, with its whole body.
pub struct Request<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string exactly as received, without the `?`.
    pub raw_query: Option<&'a str>,
    /// Every header of the request; must hold `host`.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Everything but the body.
    pub fn head(&self) -> Head<'a> {
        Head {
            method: self.method,
            raw_path: self.raw_path,
            raw_query: self.raw_query,
            headers: self.headers,
        }
    }
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id of the credential scope.
    pub access_key_id: String,
    /// The region of the credential scope (any region is accepted).
    pub region: String,
}

/// Why a request was refused. The messages are safe to send to the client: they name the
/// rule that failed and nothing secret or computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No `Authorization` header.
    #[error("Missing Authorization header")]
    MissingAuthorization,
    /// The `Authorization` header is not `ALGORITHM Credential=..., SignedHeaders=..., Signature=...`.
    #[error("Malformed Authorization header")]
    MalformedAuthorization,
    /// An algorithm other than AWS4-HMAC-SHA256.
    #[error("Unsupported signing algorithm, only AWS4-HMAC-SHA256 is accepted")]
    UnsupportedAlgorithm,
    /// The access key id is not configured.
    #[error("The security token included in the request is invalid")]
    UnknownAccessKey,
    /// The credential scope names a service other than `execute-api`.
    #[error("Credential should be scoped to correct service: 'execute-api'")]
    WrongService,
    /// No `x-amz-date` header.
    #[error("Missing x-amz-date header")]
    MissingDate,
    /// `x-amz-date` is not `YYYYMMDDTHHMMSSZ`.
    #[error("Malformed x-amz-date header")]
    MalformedDate,
    /// `x-amz-date` is further from now than the allowed clock skew.
    #[error("Signature expired or not yet valid: request time is outside the allowed clock skew")]
    RequestTimeSkewed,
    /// The date of the credential scope is not the day of `x-amz-date`.
    #[error("Credential date does not match x-amz-date")]
    CredentialDateMismatch,
    /// `host` is not among the signed headers.
    #[error("Signed headers must include host")]
    HostNotSigned,
    /// A header named in SignedHeaders is not in the request.
    #[error("A signed header is missing from the request")]
    SignedHeaderMissing,
    /// The path has a `.` or `..` segment.
    #[error("The request path must not contain '.' or '..' segments")]
    DotSegmentPath,
    /// `x-amz-content-sha256` is neither `UNSIGNED-PAYLOAD` nor a hex SHA-256.
    #[error("Malformed x-amz-content-sha256 header")]
    MalformedPayloadHash,
    /// `x-amz-content-sha256` is not the SHA-256 of the body.
    #[error("x-amz-content-sha256 does not match the request body")]
    PayloadHashMismatch,
    /// The signature is not the one the secret gives for this request.
    #[error("The request signature does not match")]
    SignatureMismatch,
}

/// Verifies the SigV4 signature of `req`, body included, for the service `execute-api`,
/// in any region. See [`verify_head`].
pub fn verify(
    req: &Request<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<Verified, Error> {
    let mut pending = verify_head(&req.head(), secret_for, now, max_skew)?;
    pending.update(req.body);
    pending.finish()
}

/// Verifies everything about a request that needs no body, for the service
/// `execute-api`, in any region; the body is then fed to the answer.
///
/// `secret_for` maps an access key id to its secret access key; `now` is the current time;
/// a request whose `x-amz-date` is more than `max_skew` away from `now` is refused (AWS
/// allows 5 minutes). The signature is compared in constant time.
pub fn verify_head(
    head: &Head<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<PendingBody, Error> {
    verify_head_for_service(head, SERVICE, secret_for, now, max_skew)
}

/// A request whose head verified: its body is fed through [`PendingBody::update`] as it
/// arrives, and [`PendingBody::finish`] gives the verdict. Holds no more than a few hash
/// states, whatever the body's size.
pub struct PendingBody {
    verified: Verified,
    body: digest::Context,
    check: BodyCheck,
}

enum BodyCheck {
    /// Signed over `UNSIGNED-PAYLOAD`: the body is not covered.
    Unsigned,
    /// Signed over this declared hash, which the body must have.
    Declared([u8; 32]),
    /// The canonical request ends with the body's hash, so the signature can only be
    /// checked at the end.
    Deferred(Box<Deferred>),
}

/// A signature to check once the body's hash is known.
struct Deferred {
    key: hmac::Key,
    /// `ALGORITHM \n date \n scope \n`: the string to sign before the request's hash.
    string_to_sign: Vec<u8>,
    /// One running hash of the canonical request per candidate path.
    canonical: Vec<digest::Context>,
    signature: [u8; 32],
}

impl PendingBody {
    /// Feeds the next piece of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        if !matches!(self.check, BodyCheck::Unsigned) {
            self.body.update(chunk);
        }
    }

    /// The verdict, once the whole body has been fed.
    pub fn finish(self) -> Result<Verified, Error> {
        let body = self.body.finish();
        match self.check {
            BodyCheck::Unsigned => Ok(self.verified),
            BodyCheck::Declared(declared) => {
                if body.as_ref() == declared {
                    Ok(self.verified)
                } else {
                    Err(Error::PayloadHashMismatch)
                }
            }
            BodyCheck::Deferred(deferred) => {
                let Deferred {
                    key,
                    mut string_to_sign,
                    canonical,
                    signature,
                } = *deferred;
                let body_hex = hex32(body.as_ref());
                let prefix = string_to_sign.len();
                for mut creq in canonical {
                    creq.update(&body_hex);
                    string_to_sign.truncate(prefix);
                    string_to_sign.extend_from_slice(&hex32(creq.finish().as_ref()));
                    if hmac::verify(&key, &string_to_sign, &signature).is_ok() {
                        return Ok(self.verified);
                    }
                }
                Err(Error::SignatureMismatch)
            }
        }
    }
}

/// What `x-amz-content-sha256` declares.
enum DeclaredPayload<'a> {
    /// No such header: the canonical request ends with the body's hash.
    Absent,
    /// `UNSIGNED-PAYLOAD`, or a hex hash: as sent, for the canonical request.
    Sent(&'a [u8], Option<[u8; 32]>),
}

fn declared_payload(headers: &HeaderMap) -> Result<DeclaredPayload<'_>, Error> {
    let Some(value) = headers.get("x-amz-content-sha256") else {
        return Ok(DeclaredPayload::Absent);
    };
    let value = value.as_bytes();
    if value == UNSIGNED_PAYLOAD {
        return Ok(DeclaredPayload::Sent(value, None));
    }
    let hash = std::str::from_utf8(value)
        .ok()
        .and_then(parse_hex32)
        .ok_or(Error::MalformedPayloadHash)?;
    Ok(DeclaredPayload::Sent(value, Some(hash)))
}

fn verify_head_for_service(
    head: &Head<'_>,
    service: &str,
    secret_for: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<PendingBody, Error> {
    let header = head
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Error::MissingAuthorization)?;
    let auth = Authorization::parse(header.as_bytes())?;
    if auth.service != service {
        return Err(Error::WrongService);
    }
    let amz_date = head
        .headers
        .get("x-amz-date")
        .ok_or(Error::MissingDate)?
        .to_str()
        .map_err(|_| Error::MalformedDate)?;
    let signed_at = parse_amz_date(amz_date).ok_or(Error::MalformedDate)?;
    if auth.date != &amz_date[..8] {
        return Err(Error::CredentialDateMismatch);
    }
    let skew = match now.duration_since(signed_at) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > max_skew {
        return Err(Error::RequestTimeSkewed);
    }
    if !auth.signed_headers.split(';').any(|h| h == "host") {
        return Err(Error::HostNotSigned);
    }
    let raw_path = if head.raw_path.is_empty() {
        "/"
    } else {
        head.raw_path
    };
    if has_dot_segment(raw_path) {
        return Err(Error::DotSegmentPath);
    }
    let declared = declared_payload(head.headers)?;
    // Looked up last, so that malformed or stale requests never reach the credential store.
    let secret = secret_for(auth.access_key_id).ok_or(Error::UnknownAccessKey)?;
    let key = signing_key(&secret, auth.date, auth.region, auth.service);
    let string_to_sign = string_to_sign_prefix(amz_date, &auth);
    let verified = Verified {
        access_key_id: auth.access_key_id.to_owned(),
        region: auth.region.to_owned(),
    };

    let collapsed = collapse_empty_segments(raw_path);
    let candidates = [Some(raw_path), collapsed.as_deref()];
    let body = digest::Context::new(&digest::SHA256);
    match declared {
        DeclaredPayload::Sent(sent, hash) => {
            let mut message = string_to_sign;
            let prefix = message.len();
            for path in candidates.into_iter().flatten() {
                let mut creq = canonical_request_prefix(head, path, auth.signed_headers)?;
                creq.extend_from_slice(sent);
                message.truncate(prefix);
                message.extend_from_slice(&hex32(digest::digest(&digest::SHA256, &creq).as_ref()));
                if hmac::verify(&key, &message, &auth.signature).is_ok() {
                    let check = match hash {
                        Some(h) => BodyCheck::Declared(h),
                        None => BodyCheck::Unsigned,
                    };
                    return Ok(PendingBody {
                        verified,
                        body,
                        check,
                    });
                }
            }
            Err(Error::SignatureMismatch)
        }
        DeclaredPayload::Absent => {
            let mut canonical = Vec::with_capacity(2);
            for path in candidates.into_iter().flatten() {
                let creq = canonical_request_prefix(head, path, auth.signed_headers)?;
                let mut running = digest::Context::new(&digest::SHA256);
                running.update(&creq);
                canonical.push(running);
            }
            Ok(PendingBody {
                verified,
                body,
                check: BodyCheck::Deferred(Box::new(Deferred {
                    key,
                    string_to_sign,
                    canonical,
                    signature: auth.signature,
                })),
            })
        }
    }
}

/// Whether a path has a `.` or `..` segment, written plainly or percent-encoded (`%2e`,
/// `.%2E`, ...): the segments a client's URL library or signer may resolve, so that what
/// was signed and what is routed could differ.
pub fn has_dot_segment(raw_path: &str) -> bool {
    raw_path.split('/').any(|segment| {
        // The longest spelling of `..` is `%2e%2e`; longer segments need no decoding.
        segment.len() <= 6 && matches!(percent_decode(segment.as_bytes()).as_slice(), b"." | b"..")
    })
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    fn parse(value: &'a [u8]) -> Result<Self, Error> {
        let value = std::str::from_utf8(value).map_err(|_| Error::MalformedAuthorization)?;
        let value = value.trim_matches([' ', '\t']);
        let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
        if algorithm != ALGORITHM {
            return Err(Error::UnsupportedAlgorithm);
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, v) = part
                .trim_matches([' ', '\t'])
                .split_once('=')
                .ok_or(Error::MalformedAuthorization)?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(Error::MalformedAuthorization),
            };
            if slot.replace(v).is_some() {
                return Err(Error::MalformedAuthorization);
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return Err(Error::MalformedAuthorization);
        };

        let mut scope = credential.split('/');
        let (Some(access_key_id), Some(date), Some(region), Some(service), Some(TERMINATOR), None) = (
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
        ) else {
            return Err(Error::MalformedAuthorization);
        };
        let well_formed = !access_key_id.is_empty()
            && date.len() == 8
            && date.bytes().all(|b| b.is_ascii_digit())
            && !region.is_empty()
            && !service.is_empty()
            && signed_headers.split(';').all(is_lowercase_token);
        if !well_formed {
            return Err(Error::MalformedAuthorization);
        }
        let signature = parse_hex32(signature).ok_or(Error::MalformedAuthorization)?;
        Ok(Authorization {
            access_key_id,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

/// A header name as a signer writes it in SignedHeaders: a non-empty lowercase token.
fn is_lowercase_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// The canonical request for `head` with `path` (as received, or with empty segments
/// dropped) as its path, up to the payload hash that ends it.
fn canonical_request_prefix(
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
fn canonical_request(
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
fn collapse_empty_segments(path: &str) -> Option<String> {
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
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
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
fn string_to_sign_prefix(amz_date: &str, auth: &Authorization<'_>) -> Vec<u8> {
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

/// Parses `YYYYMMDDTHHMMSSZ` (UTC).
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian, year >= 1970); Howard
/// Hinnant's `days_from_civil`.
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Lowercase hex of a SHA-256 (32 bytes; a shorter input leaves zeros).
fn hex32(bytes: &[u8]) -> [u8; 64] {
    let mut out = [b'0'; 64];
    for (i, b) in bytes.iter().take(32).enumerate() {
        out[2 * i] = HEX_LOWER[usize::from(b >> 4)];
        out[2 * i + 1] = HEX_LOWER[usize::from(b & 15)];
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;

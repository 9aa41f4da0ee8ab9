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
//!
//! The parts: `authorization.rs` parses the `Authorization` header, `canonical.rs`
//! rebuilds the canonical request and the string to sign, `date.rs` reads `x-amz-date`,
//! `hex.rs` holds the hex codecs.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use ring::{digest, hmac};

mod authorization;
mod canonical;
mod date;
mod hex;

use self::authorization::Authorization;
#[cfg(test)]
use self::canonical::canonical_request;
pub use self::canonical::has_dot_segment;
use self::canonical::{
    canonical_request_prefix, collapse_empty_segments, signing_key, string_to_sign_prefix,
};
use self::date::parse_amz_date;
use self::hex::{hex32, parse_hex32};

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

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;

//! The `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
//! header, taken apart and checked for shape (not yet for its signature).

use super::hex::parse_hex32;
use super::{Error, ALGORITHM, TERMINATOR};

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug)]
pub(super) struct Authorization<'a> {
    pub(super) access_key_id: &'a str,
    pub(super) date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
    pub(super) signed_headers: &'a str,
    pub(super) signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    pub(super) fn parse(value: &'a [u8]) -> Result<Self, Error> {
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

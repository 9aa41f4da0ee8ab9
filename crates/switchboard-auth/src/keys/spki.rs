//! Public keys from DER `SubjectPublicKeyInfo` (the body of a PEM `PUBLIC KEY`
//! section): a minimal DER reader for the two shapes switchboard takes, RSA and P-256.

use super::{p256_material, rsa_material, KeyError, Material};

pub(super) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(super) const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`
pub(crate) fn material_from_spki(der: &[u8]) -> Result<Material, KeyError> {
    const BAD: KeyError = KeyError::NotSpki;
    let spki = der_exact(der, TAG_SEQUENCE).ok_or(BAD)?;
    let (algorithm, rest) = der_next(spki, TAG_SEQUENCE).ok_or(BAD)?;
    let bits = der_exact(rest, TAG_BIT_STRING).ok_or(BAD)?;
    // The first content byte counts unused bits in the last byte; a key has none.
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(BAD),
    };
    let (oid, params) = der_next(algorithm, TAG_OID).ok_or(BAD)?;
    if oid == OID_RSA_ENCRYPTION {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let seq = der_exact(key, TAG_SEQUENCE).ok_or(BAD)?;
        let (n, rest) = der_next(seq, TAG_INTEGER).ok_or(BAD)?;
        let e = der_exact(rest, TAG_INTEGER).ok_or(BAD)?;
        // A DER INTEGER is two's complement: a high first bit is a negative number,
        // which no modulus or exponent is.
        if n.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(KeyError::RsaModulusNegative);
        }
        if e.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(KeyError::RsaExponentNegative);
        }
        rsa_material(n, e)
    } else if oid == OID_EC_PUBLIC_KEY {
        if der_exact(params, TAG_OID) != Some(OID_PRIME256V1) {
            return Err(KeyError::NotP256);
        }
        p256_material(key.to_vec())
    } else {
        Err(KeyError::UnsupportedType)
    }
}

/// The content of a single DER element of type `tag` that spans all of `input`.
pub(super) fn der_exact(input: &[u8], tag: u8) -> Option<&[u8]> {
    match der_next(input, tag)? {
        (content, []) => Some(content),
        _ => None,
    }
}

/// Splits one DER element of type `tag` off the front: `(content, rest)`. Definite
/// lengths only, as DER requires; up to 4 length bytes is far beyond any key.
pub(super) fn der_next(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, after) = rest.split_at(count);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

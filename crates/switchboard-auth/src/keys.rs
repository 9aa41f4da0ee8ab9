//! Verification keys: an HS256 secret, RSA and P-256 public keys, read from PEM
//! (SubjectPublicKeyInfo) or from a JWK set, and the signature check itself on `ring`.
//!
//! Everything here is sans-IO: callers hand in bytes (a PEM file's contents, a JWKS
//! document) and get keys back, so the parsers are tested without files or sockets.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::SubjectPublicKeyInfoDer;

/// JWKS entries looked at, at most; the rest of a larger set is ignored. Real sets hold
/// a handful of keys, and a token without `kid` is tried against every usable one.
pub const MAX_JWKS_KEYS: usize = 64;

/// RFC 7515 says unpadded base64url; some issuers pad anyway, and padding carries no
/// meaning, so both are accepted.
pub(crate) const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The signature algorithms switchboard verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256, the signature as fixed-width `r || s`.
    Es256,
}

impl Alg {
    /// The JOSE name, exactly (JOSE names are case-sensitive).
    pub(crate) fn from_jose(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// The key itself.
pub(crate) enum Material {
    /// An HS256 secret.
    Hmac(ring::hmac::Key),
    /// An RSA public key, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// A P-256 public key as the 65-byte uncompressed point `04 || x || y`.
    P256(Vec<u8>),
}

/// One key a token may be verified with.
pub(crate) struct VerifyKey {
    /// The JWK `kid`; `None` for the secret and PEM keys.
    pub(crate) kid: Option<String>,
    /// The JWK `alg`, when the set pins one.
    pub(crate) alg: Option<Alg>,
    pub(crate) material: Material,
}

impl fmt::Debug for VerifyKey {
    // Never print key bytes: a secret would end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.material {
            Material::Hmac(_) => "hmac",
            Material::Rsa { .. } => "rsa",
            Material::P256(_) => "p256",
        };
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &kind)
            .finish()
    }
}

impl VerifyKey {
    /// An HS256 secret, used as its UTF-8 bytes.
    pub(crate) fn hmac(secret: &[u8], kid: Option<String>) -> Self {
        Self {
            kid,
            alg: None,
            material: Material::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)),
        }
    }

    /// Whether this key can check a signature made with `alg`.
    pub(crate) fn supports(&self, alg: Alg) -> bool {
        let kind_fits = matches!(
            (&self.material, alg),
            (Material::Hmac(_), Alg::Hs256)
                | (Material::Rsa { .. }, Alg::Rs256)
                | (Material::P256(_), Alg::Es256)
        );
        kind_fits && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Checks `signature` over `message`. Callers check [`Self::supports`] first.
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            // Constant-time comparison inside ring.
            (Material::Hmac(key), Alg::Hs256) => {
                ring::hmac::verify(key, message, signature).is_ok()
            }
            (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Material::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// Every `PUBLIC KEY` section of a PEM document (RSA or P-256 SubjectPublicKeyInfo).
pub(crate) fn keys_from_pem(pem: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let mut keys = Vec::new();
    for (i, section) in SubjectPublicKeyInfoDer::pem_slice_iter(pem).enumerate() {
        let der = section.map_err(|e| format!("not valid PEM: {e}"))?;
        let material = material_from_spki(&der)
            .map_err(|reason| format!("public key #{}: {reason}", i + 1))?;
        keys.push(VerifyKey {
            kid: None,
            alg: None,
            material,
        });
    }
    if keys.is_empty() {
        return Err(
            "no \"PUBLIC KEY\" (SubjectPublicKeyInfo) section; convert with `openssl pkey -pubin -in KEY -out KEY.pub` or `openssl x509 -pubkey -noout -in CERT`"
                .into(),
        );
    }
    Ok(keys)
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`
fn material_from_spki(der: &[u8]) -> Result<Material, &'static str> {
    const BAD: &str = "not a valid SubjectPublicKeyInfo";
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
        rsa_material(n, e)
    } else if oid == OID_EC_PUBLIC_KEY {
        if der_exact(params, TAG_OID) != Some(OID_PRIME256V1) {
            return Err("EC key on a curve other than P-256 (ES256 needs P-256)");
        }
        p256_material(key.to_vec())
    } else {
        Err("unsupported key type (RSA and P-256 keys only)")
    }
}

fn rsa_material(n: &[u8], e: &[u8]) -> Result<Material, &'static str> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    // The bounds of RSA_PKCS1_2048_8192_SHA256, checked here so a bad key is a startup
    // error instead of every token failing.
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if !(2048..=8192).contains(&bits) {
        return Err("RSA modulus must be 2048 to 8192 bits");
    }
    if e.is_empty() || e.len() > 4 {
        return Err("RSA exponent out of range");
    }
    Ok(Material::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

fn p256_material(point: Vec<u8>) -> Result<Material, &'static str> {
    // Only the uncompressed form; ring checks the point is on the curve when verifying.
    if point.len() != 65 || point[0] != 0x04 {
        return Err("P-256 key is not an uncompressed point");
    }
    Ok(Material::P256(point))
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// The content of a single DER element of type `tag` that spans all of `input`.
fn der_exact(input: &[u8], tag: u8) -> Option<&[u8]> {
    match der_next(input, tag)? {
        (content, []) => Some(content),
        _ => None,
    }
}

/// Splits one DER element of type `tag` off the front: `(content, rest)`. Definite
/// lengths only, as DER requires; up to 4 length bytes is far beyond any key.
fn der_next(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
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

/// The usable signing keys of a JWKS document, and how many entries were skipped
/// (encryption keys, other algorithms or curves, malformed entries).
pub(crate) fn keys_from_jwks(doc: &[u8]) -> Result<(Vec<VerifyKey>, usize), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("not JSON: {e}"))?;
    let Some(entries) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Err("no \"keys\" array".into());
    };
    let mut keys = Vec::new();
    let mut skipped = entries.len().saturating_sub(MAX_JWKS_KEYS);
    for entry in entries.iter().take(MAX_JWKS_KEYS) {
        match key_from_jwk(entry) {
            Some(key) => keys.push(key),
            None => skipped += 1,
        }
    }
    Ok((keys, skipped))
}

/// One JWK, if it is a signing key switchboard can use. A set may mix in keys for other
/// purposes; those are skipped, not an error.
fn key_from_jwk(jwk: &serde_json::Value) -> Option<VerifyKey> {
    let field = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    let bytes = |name: &str| field(name).and_then(|s| BASE64URL.decode(s).ok());
    if field("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match field("alg") {
        Some(name) => Some(Alg::from_jose(name)?),
        None => None,
    };
    let kid = field("kid").map(str::to_owned);
    let material = match field("kty")? {
        "RSA" => rsa_material(&bytes("n")?, &bytes("e")?).ok()?,
        "EC" => {
            if field("crv")? != "P-256" {
                return None;
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            p256_material(point).ok()?
        }
        "oct" => {
            let k = bytes("k")?;
            if k.is_empty() {
                return None;
            }
            return Some(VerifyKey {
                alg,
                ..VerifyKey::hmac(&k, kid)
            });
        }
        _ => return None,
    };
    Some(VerifyKey { kid, alg, material })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(
            der_next(&[0x02, 0x01, 0x05, 0xff], 0x02),
            Some((&[5u8][..], &[0xffu8][..]))
        );
        // Long form, two length bytes.
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let (content, rest) = der_next(&long, 0x04).unwrap();
        assert_eq!((content.len(), rest.len()), (256, 0));
        // Wrong tag, indefinite length, truncated content.
        assert_eq!(der_next(&[0x02, 0x01, 0x05], 0x30), None);
        assert_eq!(der_next(&[0x30, 0x80, 0x00, 0x00], 0x30), None);
        assert_eq!(der_next(&[0x02, 0x05, 0x01], 0x02), None);
        assert_eq!(der_next(&[0x02, 0x82, 0x01], 0x02), None);
    }

    #[test]
    fn pem_without_public_key_is_an_error() {
        let err = keys_from_pem(b"nothing here").unwrap_err();
        assert!(err.starts_with("no \"PUBLIC KEY\""), "{err}");
        // A PUBLIC KEY section that holds garbage.
        let pem = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = keys_from_pem(pem).unwrap_err();
        assert!(err.contains("not a valid SubjectPublicKeyInfo"), "{err}");
    }

    #[test]
    fn jwks_skips_what_it_cannot_use() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "oct", "k": "c2VjcmV0", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "alg": "HS512"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
            "not an object"
        ]});
        let (keys, skipped) = keys_from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!((keys.len(), skipped), (1, 6));
        assert_eq!(keys[0].kid.as_deref(), Some("h"));
        assert!(keys[0].supports(Alg::Hs256));
        assert!(!keys[0].supports(Alg::Rs256));
        assert!(keys_from_jwks(b"{}").is_err());
        assert!(keys_from_jwks(b"[").is_err());
    }

    #[test]
    fn pinned_alg_limits_a_key() {
        let mut key = VerifyKey::hmac(b"k", None);
        key.alg = Some(Alg::Hs256);
        assert!(key.supports(Alg::Hs256));
        let key = VerifyKey {
            kid: None,
            alg: Some(Alg::Es256),
            material: Material::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k")),
        };
        assert!(!key.supports(Alg::Hs256));
    }

    #[test]
    fn leading_zeros() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0]), &[] as &[u8]);
    }
}

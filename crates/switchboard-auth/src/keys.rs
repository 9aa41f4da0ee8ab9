//! Verification keys: an HS256 secret, RSA and P-256 public keys, read from PEM
//! (SubjectPublicKeyInfo) or from a JWK set, and the signature check itself on `ring`.
//!
//! Everything here is sans-IO: callers hand in bytes (a PEM file's contents, a JWKS
//! document) and get keys back, so the parsers are tested without files or sockets.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use ring::agreement;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::SubjectPublicKeyInfoDer;

mod jwk;
mod spki;

pub(crate) use jwk::{keys_from_jwks, JwksOrigin, Refused};

/// JWKS entries looked at, at most; the rest of a larger set is ignored. Real sets hold
/// a handful of keys, and a token without `kid` is tried against every usable one.
pub const MAX_JWKS_KEYS: usize = 64;

/// A `kid` longer than this is refused, in a token (as malformed) and in a JWK set (the
/// key is not taken). Real ones are ids, hashes or thumbprints of a few dozen characters.
pub const MAX_KID_BYTES: usize = 256;

/// The modulus sizes ring verifies RS256 with (`RSA_PKCS1_2048_8192_SHA256`). A key
/// outside them is refused when it is loaded, rather than failing every token later.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
/// The public exponents ring verifies with: odd, 3 to 2^33 - 1 (the upper bound caps the
/// cost of one verification).
const RSA_MIN_EXPONENT: u64 = 3;
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

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
    ///
    /// A signature of the wrong length is refused before ring sees it: ring would refuse
    /// it too, but only after preparing the key, which for RSA costs about as much as a
    /// small verification, and a token without `kid` is tried against every key.
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (Material::Rsa { n, .. }, Alg::Rs256) if signature.len() != n.len() => false,
            (Material::P256(_), Alg::Es256) if signature.len() != 64 => false,
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
pub(crate) fn keys_from_pem(pem: &[u8]) -> Result<Vec<VerifyKey>, KeyFileError> {
    let mut keys = Vec::new();
    for (i, section) in SubjectPublicKeyInfoDer::pem_slice_iter(pem).enumerate() {
        let der = section.map_err(KeyFileError::Pem)?;
        let material = spki::material_from_spki(&der).map_err(|reason| KeyFileError::Key {
            number: i + 1,
            reason,
        })?;
        keys.push(VerifyKey {
            kid: None,
            alg: None,
            material,
        });
    }
    if keys.is_empty() {
        return Err(KeyFileError::NoPublicKey);
    }
    Ok(keys)
}

/// Why a PEM file or a JWKS document holds no keys to read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("not valid PEM: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The `number`th section (from 1) is not a key switchboard can use.
    #[error("public key #{number}: {reason}")]
    Key {
        number: usize,
        #[source]
        reason: KeyError,
    },
    #[error("no \"PUBLIC KEY\" (SubjectPublicKeyInfo) section; convert with `openssl pkey -pubin -in KEY -out KEY.pub` or `openssl x509 -pubkey -noout -in CERT`")]
    NoPublicKey,
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no \"keys\" array")]
    NoKeysArray,
}

/// Why key bytes are not a key switchboard can verify with. The reason is fixed text,
/// read by the operator in the start error or the JWKS warning; it never quotes key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    NotSpki,
    UnsupportedType,
    NotP256,
    RsaModulusNegative,
    RsaExponentNegative,
    RsaModulusZero,
    RsaModulusSize,
    RsaModulusEven,
    RsaExponent,
    P256NotUncompressed,
    P256NotOnCurve,
}

impl KeyError {
    /// The reason, as the operator reads it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NotSpki => "not a valid SubjectPublicKeyInfo",
            Self::UnsupportedType => "unsupported key type (RSA and P-256 keys only)",
            Self::NotP256 => "EC key on a curve other than P-256 (ES256 needs P-256)",
            Self::RsaModulusNegative => "RSA modulus is negative",
            Self::RsaExponentNegative => "RSA exponent is negative",
            Self::RsaModulusZero => "RSA modulus is empty or zero",
            Self::RsaModulusSize => "RSA modulus must be 2048 to 8192 bits",
            Self::RsaModulusEven => "RSA modulus is even",
            Self::RsaExponent => "RSA exponent must be odd, 3 to 2^33 - 1",
            Self::P256NotUncompressed => "P-256 key is not an uncompressed point",
            Self::P256NotOnCurve => "P-256 key is not on the curve",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for KeyError {}

/// An RSA key from its big-endian modulus and exponent, which may carry leading zero
/// octets (a DER sign octet, or an issuer's sloppy JWK); refused unless ring would verify
/// with it.
pub(crate) fn rsa_material(n: &[u8], e: &[u8]) -> Result<Material, KeyError> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    // Counted on the stripped bytes, so an empty or all-zero modulus is refused here
    // rather than underflowing the bit count.
    let Some(&first) = n.first() else {
        return Err(KeyError::RsaModulusZero);
    };
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyError::RsaModulusSize);
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err(KeyError::RsaModulusEven);
    }
    // At most 5 octets once stripped, so the fold cannot overflow.
    let exponent = match e.len() {
        1..=5 => e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        _ => u64::MAX,
    };
    if !(RSA_MIN_EXPONENT..=RSA_MAX_EXPONENT).contains(&exponent) || exponent & 1 == 0 {
        return Err(KeyError::RsaExponent);
    }
    Ok(Material::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

/// A P-256 key from its uncompressed point `04 || x || y`, refused unless it is on the
/// curve.
pub(crate) fn p256_material(point: Vec<u8>) -> Result<Material, KeyError> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(KeyError::P256NotUncompressed);
    }
    if !p256_point_is_valid(&point) {
        return Err(KeyError::P256NotOnCurve);
    }
    Ok(Material::P256(point))
}

/// ring has no public "validate this point" call, but an ECDH agreement with a throwaway
/// key validates the peer's point with the same parser ring's ECDSA verification uses
/// (coordinates below p, the curve equation), and fails exactly when it is invalid. It
/// runs once per key loaded, never per token.
fn p256_point_is_valid(point: &[u8]) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(mine) = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng) else {
        return false;
    };
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    agreement::agree_ephemeral(mine, &peer, |_| ()).is_ok()
}

pub(crate) fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;

//! Verification keys: an HS256 secret, RSA and P-256 public keys, read from PEM
//! (SubjectPublicKeyInfo) or from a JWK set, and the signature check itself on `ring`.
//!
//! Everything here is sans-IO: callers hand in bytes (a PEM file's contents, a JWKS
//! document) and get keys back, so the parsers are tested without files or sockets.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::agreement;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use serde_json::Value;

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
        let material = material_from_spki(&der).map_err(|reason| KeyFileError::Key {
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
    Key { number: usize, reason: &'static str },
    #[error("no \"PUBLIC KEY\" (SubjectPublicKeyInfo) section; convert with `openssl pkey -pubin -in KEY -out KEY.pub` or `openssl x509 -pubkey -noout -in CERT`")]
    NoPublicKey,
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no \"keys\" array")]
    NoKeysArray,
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
        // A DER INTEGER is two's complement: a high first bit is a negative number,
        // which no modulus or exponent is.
        if n.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("RSA modulus is negative");
        }
        if e.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("RSA exponent is negative");
        }
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

/// An RSA key from its big-endian modulus and exponent, which may carry leading zero
/// octets (a DER sign octet, or an issuer's sloppy JWK); refused unless ring would verify
/// with it.
fn rsa_material(n: &[u8], e: &[u8]) -> Result<Material, &'static str> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    // Counted on the stripped bytes, so an empty or all-zero modulus is refused here
    // rather than underflowing the bit count.
    let Some(&first) = n.first() else {
        return Err("RSA modulus is empty or zero");
    };
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err("RSA modulus must be 2048 to 8192 bits");
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err("RSA modulus is even");
    }
    // At most 5 octets once stripped, so the fold cannot overflow.
    let exponent = match e.len() {
        1..=5 => e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        _ => u64::MAX,
    };
    if !(RSA_MIN_EXPONENT..=RSA_MAX_EXPONENT).contains(&exponent) || exponent & 1 == 0 {
        return Err("RSA exponent must be odd, 3 to 2^33 - 1");
    }
    Ok(Material::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

/// A P-256 key from its uncompressed point `04 || x || y`, refused unless it is on the
/// curve.
fn p256_material(point: Vec<u8>) -> Result<Material, &'static str> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err("P-256 key is not an uncompressed point");
    }
    if !p256_point_is_valid(&point) {
        return Err("P-256 key is not on the curve");
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

/// Where a JWK set came from, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwksOrigin {
    /// A file the operator placed: it may hold HS256 secrets (`oct` keys).
    File,
    /// Fetched from a URL: public keys only. A secret served at a URL can be read by
    /// whoever can fetch it (and over `http://` by anyone on the path), and would let
    /// them sign tokens.
    Url,
}

/// The usable keys of a JWK set, and what was not taken.
pub(crate) struct JwkSet {
    pub(crate) keys: Vec<VerifyKey>,
    /// Each entry looked at and not taken, with the reason.
    pub(crate) refused: Vec<Refused>,
    /// Entries past [`MAX_JWKS_KEYS`], not looked at.
    pub(crate) ignored: usize,
}

impl JwkSet {
    /// Why the set gave no usable key, in one line: the first few refusals.
    pub(crate) fn why_none(&self) -> String {
        const SHOWN: usize = 3;
        let mut out = format!(
            "no usable signing key ({} refused",
            self.refused.len() + self.ignored
        );
        for (i, r) in self.refused.iter().take(SHOWN).enumerate() {
            out.push_str(if i == 0 { ": " } else { "; " });
            out.push_str(&r.to_string());
        }
        if self.refused.len() > SHOWN {
            out.push_str("; ...");
        }
        out.push_str("; HS256, RS256 and ES256 keys only)");
        out
    }

    /// Logs each refusal: keys that are broken or unsafe as warnings, keys meant for
    /// something else (encryption, other algorithms, normal in a shared set) at debug.
    /// `quiet`: everything at debug, for a set whose refusals were already warned about.
    pub(crate) fn log_refusals(&self, source: &str, quiet: bool) {
        for r in &self.refused {
            let (entry, kid, reason) = (r.index, r.kid.as_deref(), &r.reason);
            match (r.invalid, quiet) {
                (true, false) => {
                    tracing::warn!(source, entry, kid, %reason, "JWK refused");
                }
                (true, true) => tracing::debug!(source, entry, kid, %reason, "JWK refused"),
                (false, _) => tracing::debug!(source, entry, kid, %reason, "JWK not used"),
            }
        }
        if self.ignored > 0 && !quiet {
            tracing::warn!(
                source,
                ignored = self.ignored,
                "JWK set has more than {MAX_JWKS_KEYS} keys; the rest are ignored"
            );
        }
    }
}

/// One entry of a JWK set that was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Its position in `keys`.
    pub(crate) index: usize,
    /// Its `kid` if it has a string one, cut to 64 bytes for logs.
    pub(crate) kid: Option<String>,
    pub(crate) reason: Cow<'static, str>,
    /// Broken or unsafe, as opposed to meant for something else.
    pub(crate) invalid: bool,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys[{}]", self.index)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {kid:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The keys of a JWKS document. Only a document that is not a JSON object with a `keys`
/// array is an error; entries that cannot be used are reported in [`JwkSet::refused`].
pub(crate) fn keys_from_jwks(doc: &[u8], origin: JwksOrigin) -> Result<JwkSet, KeyFileError> {
    let doc: Value = serde_json::from_slice(doc).map_err(KeyFileError::Json)?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(KeyFileError::NoKeysArray);
    };
    let mut set = JwkSet {
        keys: Vec::new(),
        refused: Vec::new(),
        ignored: entries.len().saturating_sub(MAX_JWKS_KEYS),
    };
    for (index, entry) in entries.iter().take(MAX_JWKS_KEYS).enumerate() {
        match key_from_jwk(entry, origin) {
            Ok(key) => set.keys.push(key),
            Err(skip) => {
                let kid = entry.get("kid").and_then(Value::as_str).map(|k| {
                    let mut k = k.to_owned();
                    switchboard_core::text::truncate_on_char(&mut k, 64);
                    k
                });
                set.refused.push(Refused {
                    index,
                    kid,
                    invalid: matches!(skip, Skip::Invalid(_)),
                    reason: match skip {
                        Skip::Invalid(r) | Skip::Unused(r) => r,
                    },
                });
            }
        }
    }
    Ok(set)
}

/// Why one JWK was not taken.
enum Skip {
    /// Meant for something switchboard does not do: skipped quietly.
    Unused(Cow<'static, str>),
    /// Broken, or unsafe to trust: warned about.
    Invalid(Cow<'static, str>),
}

impl Skip {
    fn unused(reason: &'static str) -> Self {
        Self::Unused(Cow::Borrowed(reason))
    }

    fn invalid(reason: &'static str) -> Self {
        Self::Invalid(Cow::Borrowed(reason))
    }
}

/// One JWK, if it is a signing key switchboard can use. Members of the wrong type make
/// the key invalid rather than being read as absent: a `kid` of 7 must not turn the key
/// into a kid-less one (the fallback for every unknown `kid`), nor a `use` of 1 make an
/// encryption key a signing key.
fn key_from_jwk(jwk: &Value, origin: JwksOrigin) -> Result<VerifyKey, Skip> {
    let Some(jwk) = jwk.as_object() else {
        return Err(Skip::invalid("not a JSON object"));
    };
    let text = |name: &'static str| -> Result<Option<&str>, Skip> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Skip::Invalid(format!("\"{name}\" is not a string").into())),
        }
    };
    let bytes = |name: &'static str| -> Result<Vec<u8>, Skip> {
        let value = text(name)?.ok_or_else(|| Skip::Invalid(format!("no \"{name}\"").into()))?;
        BASE64URL
            .decode(value)
            .map_err(|_| Skip::Invalid(format!("\"{name}\" is not base64url").into()))
    };
    let kty = text("kty")?.ok_or(Skip::invalid("no \"kty\""))?;
    let kid = text("kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(Skip::Invalid(
            format!("\"kid\" is longer than {MAX_KID_BYTES} bytes").into(),
        ));
    }
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err(Skip::unused("\"use\" is not \"sig\""));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops
            .as_array()
            .ok_or(Skip::invalid("\"key_ops\" is not an array"))?;
        if !ops.iter().any(|op| op == "verify") {
            return Err(Skip::unused("\"key_ops\" does not include \"verify\""));
        }
    }
    let alg = match text("alg")? {
        None => None,
        Some(name) => {
            Some(Alg::from_jose(name).ok_or(Skip::unused("\"alg\" is not HS256, RS256 or ES256"))?)
        }
    };
    // A set that publishes a private key lets anyone who reads it sign tokens.
    let public_only = || {
        if jwk.contains_key("d") {
            Err(Skip::invalid(
                "carries a private key (\"d\"); publish the public key only",
            ))
        } else {
            Ok(())
        }
    };
    let material = match kty {
        "RSA" => {
            public_only()?;
            rsa_material(&bytes("n")?, &bytes("e")?).map_err(Skip::invalid)?
        }
        "EC" => {
            let crv = text("crv")?.ok_or(Skip::invalid("no \"crv\""))?;
            if crv != "P-256" {
                return Err(Skip::unused("curve other than P-256 (ES256 needs P-256)"));
            }
            public_only()?;
            // RFC 7518 §6.2.1.2: each coordinate is the full 32 bytes, leading zeros kept.
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(Skip::invalid("P-256 coordinates must be 32 bytes each"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            p256_material(point).map_err(Skip::invalid)?
        }
        "oct" => {
            if origin == JwksOrigin::Url {
                return Err(Skip::invalid(
                    "symmetric (oct) key from a URL; HS256 secrets belong in `secret` or a jwks_file",
                ));
            }
            let k = bytes("k")?;
            if k.is_empty() {
                return Err(Skip::invalid("\"k\" is empty"));
            }
            Material::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k))
        }
        _ => return Err(Skip::unused("key type other than RSA, EC (P-256) and oct")),
    };
    let key = VerifyKey {
        kid: kid.map(str::to_owned),
        alg,
        material,
    };
    if alg.is_some_and(|alg| !key.supports(alg)) {
        return Err(Skip::invalid("\"alg\" does not fit the key type"));
    }
    Ok(key)
}

#[cfg(test)]
mod fuzz;

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
        assert!(matches!(err, KeyFileError::NoPublicKey), "{err}");
        assert!(err.to_string().starts_with("no \"PUBLIC KEY\""), "{err}");
        // A PUBLIC KEY section that holds garbage.
        let pem = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = keys_from_pem(pem).unwrap_err();
        assert!(
            err.to_string()
                .contains("public key #1: not a valid SubjectPublicKeyInfo"),
            "{err}"
        );
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
        let set = keys_from_jwks(doc.to_string().as_bytes(), JwksOrigin::File).unwrap();
        assert_eq!((set.keys.len(), set.refused.len(), set.ignored), (1, 6, 0));
        assert_eq!(set.keys[0].kid.as_deref(), Some("h"));
        assert!(set.keys[0].supports(Alg::Hs256));
        assert!(!set.keys[0].supports(Alg::Rs256));
        let reasons: Vec<_> = set
            .refused
            .iter()
            .map(|r| (r.index, r.invalid, r.reason.as_ref()))
            .collect();
        assert_eq!(
            reasons,
            [
                (1, false, "\"use\" is not \"sig\""),
                (2, false, "\"alg\" is not HS256, RS256 or ES256"),
                (3, false, "curve other than P-256 (ES256 needs P-256)"),
                (4, true, "RSA modulus must be 2048 to 8192 bits"),
                (5, false, "key type other than RSA, EC (P-256) and oct"),
                (6, true, "not a JSON object"),
            ]
        );
        // The same set from a URL: the secret is refused too.
        let set = keys_from_jwks(doc.to_string().as_bytes(), JwksOrigin::Url).unwrap();
        assert!(set.keys.is_empty());
        assert!(set.refused[0].invalid);
        assert!(
            set.why_none()
                .starts_with("no usable signing key (7 refused: keys[0] (kid \"h\"): symmetric"),
            "{}",
            set.why_none()
        );
        for bad in [&b"{}"[..], b"[", b"{\"keys\": {}}", b"[{\"keys\": []}]"] {
            assert!(keys_from_jwks(bad, JwksOrigin::File).is_err());
        }
    }

    /// The bounds are ring's (`RSA_PKCS1_2048_8192_SHA256`): a key loaded is a key ring
    /// verifies with, counted after leading zero octets are stripped.
    #[test]
    fn rsa_bounds_match_what_ring_verifies_with() {
        // An odd modulus of `bytes` octets whose first is `top`.
        let n = |bytes: usize, top: u8| {
            let mut v = vec![0xff; bytes];
            v[0] = top;
            v
        };
        let f4 = [1, 0, 1];
        let rsa = |n: &[u8], e: &[u8]| rsa_material(n, e).map(|_| ());
        assert_eq!(rsa(&n(256, 0x80), &f4), Ok(()), "2048 bits");
        assert_eq!(rsa(&n(1024, 0xff), &f4), Ok(()), "8192 bits");
        let size = Err("RSA modulus must be 2048 to 8192 bits");
        assert_eq!(rsa(&n(256, 0x7f), &f4), size, "2047 bits");
        assert_eq!(rsa(&n(1025, 0x01), &f4), size, "8193 bits");
        assert_eq!(rsa(&n(128, 0xff), &f4), size, "1024 bits");
        assert_eq!(rsa(&[0x03], &f4), size);
        let zero = Err("RSA modulus is empty or zero");
        assert_eq!(rsa(&[], &f4), zero);
        assert_eq!(rsa(&[0; 300], &f4), zero);
        let mut even = n(256, 0x80);
        even[255] = 0xfe;
        assert_eq!(rsa(&even, &f4), Err("RSA modulus is even"));
        // Leading zeros are stripped, and the stored modulus has none (ring refuses them).
        let padded = [&[0, 0, 0][..], &n(256, 0x80)].concat();
        match rsa_material(&padded, &[0, 0, 1, 0, 1]).unwrap() {
            Material::Rsa { n, e } => assert_eq!((n.len(), e), (256, vec![1, 0, 1])),
            _ => unreachable!(),
        }
        let exponent = Err("RSA exponent must be odd, 3 to 2^33 - 1");
        for (e, ok) in [
            (&[3][..], true),
            (&[1, 0, 0, 0, 1], true),
            (&[1, 0xff, 0xff, 0xff, 0xff], true),
            (&[0, 0, 0, 0, 0, 0, 3], true),
            (&[], false),
            (&[0], false),
            (&[1], false),
            (&[2], false),
            (&[1, 0, 0], false),
            (&[2, 0, 0, 0, 1], false),
            (&[1, 0, 0, 0, 0, 1], false),
        ] {
            let want = if ok { Ok(()) } else { exponent };
            assert_eq!(rsa(&n(256, 0x80), e), want, "e = {e:?}");
        }
    }

    #[test]
    fn a_set_of_thousands_of_keys_is_cut_at_the_bound() {
        let entry = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "x"});
        let doc = serde_json::json!({ "keys": vec![entry; 20_000] }).to_string();
        assert!(doc.len() < crate::fetch::JWKS_MAX_BYTES);
        let set = keys_from_jwks(doc.as_bytes(), JwksOrigin::File).unwrap();
        let n = MAX_JWKS_KEYS;
        assert_eq!(
            (set.keys.len(), set.refused.len(), set.ignored),
            (n, 0, 20_000 - n)
        );
        // A document nested deeper than serde's recursion limit is an error, not a
        // stack overflow.
        let deep = format!(
            "{{\"keys\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = keys_from_jwks(deep.as_bytes(), JwksOrigin::File)
            .err()
            .unwrap();
        assert!(matches!(err, KeyFileError::Json(_)), "{err}");
        assert!(err.to_string().contains("recursion limit"), "{err}");
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

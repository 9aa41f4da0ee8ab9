//! JWK sets (RFC 7517): which entries are signing keys switchboard can use, and why
//! each other entry was not taken.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde_json::Value;

use super::{
    p256_material, rsa_material, Alg, KeyError, KeyFileError, Material, VerifyKey, BASE64URL,
    MAX_JWKS_KEYS, MAX_KID_BYTES,
};

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

    fn key(e: KeyError) -> Self {
        Self::invalid(e.as_str())
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
            rsa_material(&bytes("n")?, &bytes("e")?).map_err(Skip::key)?
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
            p256_material(point).map_err(Skip::key)?
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

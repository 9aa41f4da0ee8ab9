//! Fuzz targets for the key parsers, beside them since they are private:
//!
//! - `fuzz_auth_jwks_json`: JWK set documents as arbitrary bytes, arbitrary JSON and
//!   JWK-shaped objects of arbitrary members. Never a panic; the document is refused
//!   exactly when serde_json finds no `keys` array; every entry looked at is either a
//!   key or a refusal with a reason; every key taken is one ring verifies with; a set
//!   from a URL is the set from a file less its secrets.
//! - `fuzz_auth_jwk_real_keys`: JWKs of real keys (made with rcgen and ring) with their
//!   members mutated: harmless changes keep a key that verifies the key's own signature;
//!   refusable ones are refused with a reason; changed key bytes never verify it.
//! - `fuzz_auth_spki_bytes`: SubjectPublicKeyInfo as arbitrary bytes and as DER built
//!   from a small grammar (nested SEQUENCEs, INTEGERs, BIT STRINGs, OIDs, long and wrong
//!   lengths), raw and wrapped in PEM: never a panic, PEM agrees with DER, every key
//!   taken is one ring verifies with.
//! - `fuzz_auth_spki_mutated_keys`: real keys' DER and PEM with bytes flipped, set,
//!   inserted, deleted, truncated or appended: never a panic, and a key taken verifies
//!   the real signature exactly when its material is the real key's.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::PublicKeyData as _;
use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Map, Value};
use switchboard_fuzz::proptest::collection;
use switchboard_fuzz::proptest::prelude::*;
use switchboard_fuzz::proptest::test_runner::TestCaseError;

use super::spki::{material_from_spki, OID_EC_PUBLIC_KEY, OID_PRIME256V1, OID_RSA_ENCRYPTION};
use super::*;

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0";

/// Counts outcomes and prints them after a run, so a generator that stops reaching some
/// outcome (keys taken, signatures verified) shows in the output.
#[derive(Default)]
struct Tally(std::cell::RefCell<std::collections::BTreeMap<&'static str, u64>>);

impl Tally {
    fn add(&self, outcome: &'static str) {
        *self.0.borrow_mut().entry(outcome).or_default() += 1;
    }

    fn print(&self, target: &str) {
        println!("{target} outcomes: {:?}", self.0.borrow());
    }
}

/// A real key: its public forms and a signature over [`MESSAGE`] by its private half.
struct RealKey {
    name: &'static str,
    alg: Alg,
    spki: Vec<u8>,
    pem: String,
    jwk: Map<String, Value>,
    signature: Vec<u8>,
}

impl fmt::Debug for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Two RSA keys (the committed test keys, encoded by rcgen), two fresh P-256 keys (rcgen
/// and ring) and an HS256 secret.
fn real_keys() -> Vec<RealKey> {
    let rng = ring::rand::SystemRandom::new();
    let mut keys = Vec::new();
    let rsa_pems = [
        ("rsa2048", include_str!("../../tests/keys/rsa2048.pem")),
        ("rsa2048-b", include_str!("../../tests/keys/rsa2048-b.pem")),
    ];
    for (name, pem) in rsa_pems {
        let kp = rcgen::KeyPair::from_pem(pem).unwrap();
        let ring_kp = RsaKeyPair::from_pkcs8(&kp.serialize_der()).unwrap();
        let mut signature = vec![0; ring_kp.public().modulus_len()];
        ring_kp
            .sign(&signature::RSA_PKCS1_SHA256, &rng, MESSAGE, &mut signature)
            .unwrap();
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(ring_kp.public());
        let jwk = json!({"kty": "RSA", "kid": name, "n": b64u(&c.n), "e": b64u(&c.e)});
        keys.push(RealKey {
            name,
            alg: Alg::Rs256,
            spki: kp.subject_public_key_info(),
            pem: kp.public_key_pem(),
            jwk: jwk.as_object().unwrap().clone(),
            signature,
        });
    }
    for name in ["ec-a", "ec-b"] {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ring_kp = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &kp.serialize_der(),
            &rng,
        )
        .unwrap();
        let signature = ring_kp.sign(&rng, MESSAGE).unwrap().as_ref().to_vec();
        let point = ring_kp.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": name,
                         "x": b64u(&point[1..33]), "y": b64u(&point[33..])});
        keys.push(RealKey {
            name,
            alg: Alg::Es256,
            spki: kp.subject_public_key_info(),
            pem: kp.public_key_pem(),
            jwk: jwk.as_object().unwrap().clone(),
            signature,
        });
    }
    let secret = b"an-hs256-secret-of-32-bytes-long";
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    keys.push(RealKey {
        name: "oct",
        alg: Alg::Hs256,
        spki: Vec::new(),
        pem: String::new(),
        jwk: json!({"kty": "oct", "kid": "oct", "k": b64u(secret)})
            .as_object()
            .unwrap()
            .clone(),
        signature: ring::hmac::sign(&hmac, MESSAGE).as_ref().to_vec(),
    });
    keys
}

/// What every key taken must be: one ring verifies with (the rules restated here, not
/// called).
fn check_material(m: &Material) -> Result<(), TestCaseError> {
    match m {
        Material::Rsa { n, e } => {
            prop_assert!(!n.is_empty() && n[0] != 0, "modulus with a leading zero");
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            prop_assert!((2048..=8192).contains(&bits), "modulus of {} bits", bits);
            prop_assert_eq!(n[n.len() - 1] & 1, 1, "even modulus");
            prop_assert!(
                !e.is_empty() && e[0] != 0 && e.len() <= 5,
                "exponent {:?}",
                e
            );
            let value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            prop_assert!(
                (3..(1 << 33)).contains(&value) && value & 1 == 1,
                "e = {}",
                value
            );
        }
        Material::P256(point) => {
            prop_assert_eq!(point.len(), 65);
            prop_assert_eq!(point[0], 4);
        }
        Material::Hmac(_) => {}
    }
    Ok(())
}

fn same_material(a: &Material, b: &Material) -> bool {
    match (a, b) {
        (Material::Rsa { n, e }, Material::Rsa { n: n2, e: e2 }) => n == n2 && e == e2,
        (Material::P256(p), Material::P256(p2)) => p == p2,
        // Secrets cannot be compared from here; the signature check stands in.
        _ => false,
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[A-Za-z0-9_=+/-]{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            collection::vec(("[a-z]{1,4}|keys|kty|kid", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object with JWK member names and values that are sometimes what a JWK holds.
fn arb_jwk() -> impl Strategy<Value = Value> {
    let name = prop::sample::select(
        &[
            "kty", "kid", "use", "alg", "key_ops", "crv", "n", "e", "x", "y", "k", "d",
        ][..],
    );
    let value = prop_oneof![
        3 => prop::sample::select(&[
            "RSA", "EC", "oct", "OKP", "P-256", "P-384", "sig", "enc", "RS256", "ES256",
            "HS256", "none", "AQAB", "", "AA",
        ][..]).prop_map(Value::from),
        3 => collection::vec(any::<u8>(), 0..80).prop_map(|b| Value::from(b64u(&b))),
        1 => collection::vec(any::<u8>(), 250..300).prop_map(|b| Value::from(b64u(&b))),
        1 => Just(json!(["verify"])),
        1 => arb_json(),
    ];
    collection::vec((name, value), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

#[test]
fn fuzz_auth_jwks_json() {
    let real: Vec<Value> = real_keys()
        .into_iter()
        .map(|k| Value::Object(k.jwk))
        .collect();
    let doc = prop_oneof![
        1 => any::<Vec<u8>>(),
        1 => arb_json().prop_map(|v| v.to_string().into_bytes()),
        4 => collection::vec(
            prop_oneof![4 => arb_jwk(), 1 => arb_json(), 2 => prop::sample::select(real)],
            0..12
        )
        .prop_map(|keys| json!({ "keys": keys }).to_string().into_bytes()),
        // Beyond the bound of entries looked at.
        1 => (MAX_JWKS_KEYS - 2..MAX_JWKS_KEYS + 40, arb_jwk())
            .prop_map(|(n, k)| json!({ "keys": vec![k; n] }).to_string().into_bytes()),
    ];
    let tally = Tally::default();
    switchboard_fuzz::run("fuzz_auth_jwks_json", 20000, doc, |doc| {
        let reference = serde_json::from_slice::<Value>(&doc)
            .ok()
            .and_then(|v| v.get("keys").and_then(Value::as_array).map(Vec::len));
        let file = keys_from_jwks(&doc, JwksOrigin::File);
        let url = keys_from_jwks(&doc, JwksOrigin::Url);
        let (Some(entries), Ok(file), Ok(url)) = (reference, &file, &url) else {
            prop_assert!(reference.is_none() && file.is_err() && url.is_err());
            tally.add("document refused");
            return Ok(());
        };
        for key in &file.keys {
            tally.add(match key.material {
                Material::Rsa { .. } => "rsa key taken",
                Material::P256(_) => "p256 key taken",
                Material::Hmac(_) => "secret taken",
            });
        }
        for r in &file.refused {
            tally.add(if r.invalid { "invalid" } else { "unused" });
        }
        for set in [file, url] {
            prop_assert_eq!(set.keys.len() + set.refused.len() + set.ignored, entries);
            prop_assert_eq!(set.ignored, entries.saturating_sub(MAX_JWKS_KEYS));
            prop_assert!(set.refused.windows(2).all(|w| w[0].index < w[1].index));
            for r in &set.refused {
                prop_assert!(r.index < MAX_JWKS_KEYS && !r.reason.is_empty());
                prop_assert!(r.kid.as_ref().is_none_or(|k| k.len() <= 64));
            }
            for key in &set.keys {
                check_material(&key.material)?;
                prop_assert!(key.kid.as_ref().is_none_or(|k| k.len() <= MAX_KID_BYTES));
                if let Some(alg) = key.alg {
                    prop_assert!(key.supports(alg));
                }
            }
        }
        // From a URL: the same set less its secrets, each refused with the reason.
        let secrets = file
            .keys
            .iter()
            .filter(|k| matches!(k.material, Material::Hmac(_)))
            .count();
        prop_assert!(url
            .keys
            .iter()
            .all(|k| !matches!(k.material, Material::Hmac(_))));
        prop_assert_eq!(url.keys.len() + secrets, file.keys.len());
        Ok(())
    });
    tally.print("fuzz_auth_jwks_json");
}

/// One change to a real key's JWK.
#[derive(Debug, Clone)]
enum JwkChange {
    // Harmless: the key is still taken and still verifies.
    /// Canonical `=` padding on a base64url member.
    Pad(&'static str),
    /// Leading zero octets on an RSA integer (some issuers write a sign byte).
    LeadingZeros(&'static str, usize),
    UseSig,
    KeyOpsVerify,
    FittingAlg,
    Kid(String),
    Extra(String, Value),
    // Refused, with a reason.
    Drop(&'static str),
    WrongType(&'static str, Value),
    /// A nonzero bit past the end of the data (non-canonical base64url).
    TrailingBits(&'static str),
    /// Standard base64 (`+`, `/`) instead of base64url.
    StandardAlphabet(&'static str),
    UseEnc,
    KeyOpsEncrypt,
    OtherAlg,
    MismatchedAlg,
    PrivatePart,
    HugeKid,
    OtherKty,
    OtherCurve,
    /// A byte cut from an EC coordinate or the RSA modulus.
    Shorten(&'static str),
    // Unknown verdict; if taken, must not verify the real signature.
    FlipBit(&'static str, usize, u8),
}

/// What a change did to the member it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Nothing that decides the verdict by itself (a no-op, padding, leading zeros, an
    /// unknown member, changed key bytes: those are compared afterwards).
    Kept,
    /// Wrote the member with a good value, undoing any earlier refusable change to it.
    Healed(&'static str),
    /// Made the member refusable.
    Broke(&'static str),
}

/// The key bytes a JWK names (RSA `n` and `e` without leading zeros, EC `x` and `y`,
/// the secret `k`), if they decode: whether a change left the key itself as it was.
fn key_bytes(jwk: &Map<String, Value>) -> Option<Vec<Vec<u8>>> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "RSA" => &["n", "e"],
        "EC" => &["x", "y"],
        _ => &["k"],
    };
    members
        .iter()
        .map(|m| {
            let bytes = BASE64URL.decode(jwk.get(*m)?.as_str()?).ok()?;
            Some(strip_leading_zeros(&bytes).to_vec())
        })
        .collect()
}

/// The members the parser reads for a key of type `kty`: a bad value elsewhere is
/// ignored.
fn read_by(kty: Option<&str>, member: &str) -> bool {
    let specific: &[&str] = match kty {
        Some("RSA") => &["n", "e"],
        Some("EC") => &["crv", "x", "y"],
        Some("oct") => &["k"],
        _ => &[],
    };
    ["kty", "kid", "use", "alg", "key_ops"].contains(&member) || specific.contains(&member)
}

impl JwkChange {
    /// Applies the change. A change that does not apply to this key (no such member, or
    /// one not read for its type) keeps the verdict.
    fn apply(&self, jwk: &mut Map<String, Value>) -> Effect {
        let kty = jwk.get("kty").and_then(Value::as_str).map(str::to_owned);
        let effect = self.apply_(jwk).unwrap_or(Effect::Kept);
        match effect {
            Effect::Broke(m) if !read_by(kty.as_deref(), m) => Effect::Kept,
            other => other,
        }
    }

    fn apply_(&self, jwk: &mut Map<String, Value>) -> Option<Effect> {
        let b64_member = |jwk: &Map<String, Value>, m: &str| {
            jwk.get(m)
                .and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        };
        match self {
            Self::Pad(m) => {
                if let Some(Value::String(s)) = jwk.get_mut(*m) {
                    while s.len() % 4 != 0 {
                        s.push('=');
                    }
                }
                None
            }
            Self::LeadingZeros(m, count) => {
                let bytes = b64_member(jwk, m)?;
                let mut padded = vec![0; *count];
                padded.extend_from_slice(&bytes);
                jwk.insert((*m).into(), b64u(&padded).into());
                None
            }
            Self::UseSig => {
                jwk.insert("use".into(), "sig".into());
                Some(Effect::Healed("use"))
            }
            Self::KeyOpsVerify => {
                jwk.insert("key_ops".into(), json!(["sign", "verify"]));
                Some(Effect::Healed("key_ops"))
            }
            Self::FittingAlg => {
                let alg = match jwk.get("kty").and_then(Value::as_str) {
                    Some("RSA") => "RS256",
                    Some("EC") => "ES256",
                    _ => "HS256",
                };
                jwk.insert("alg".into(), alg.into());
                Some(Effect::Healed("alg"))
            }
            Self::Kid(kid) => {
                jwk.insert("kid".into(), kid.clone().into());
                Some(Effect::Healed("kid"))
            }
            Self::Extra(name, value) => {
                jwk.insert(format!("x-{name}"), value.clone());
                None
            }
            Self::Drop(m) => jwk.remove(*m).map(|_| Effect::Broke(m)),
            Self::WrongType(m, v) => {
                jwk.insert((*m).into(), v.clone());
                Some(Effect::Broke(m))
            }
            Self::TrailingBits(m) => {
                let Some(Value::String(s)) = jwk.get_mut(*m) else {
                    return None;
                };
                // Unpadded, a length of 2 or 3 mod 4 leaves unused low bits in the last
                // character; setting one makes the encoding non-canonical.
                let s2: String = s.trim_end_matches('=').to_owned();
                if s2.len() % 4 < 2 {
                    return None;
                }
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let last = s2.as_bytes()[s2.len() - 1];
                let value = ALPHABET.iter().position(|&c| c == last)?;
                *s = format!("{}{}", &s2[..s2.len() - 1], ALPHABET[value | 1] as char);
                Some(Effect::Broke(m))
            }
            Self::StandardAlphabet(m) => {
                let Some(Value::String(s)) = jwk.get_mut(*m) else {
                    return None;
                };
                if !s.contains(['-', '_']) {
                    return None;
                }
                *s = s.replace('-', "+").replace('_', "/");
                Some(Effect::Broke(m))
            }
            Self::UseEnc => {
                jwk.insert("use".into(), "enc".into());
                Some(Effect::Broke("use"))
            }
            Self::KeyOpsEncrypt => {
                jwk.insert("key_ops".into(), json!(["encrypt"]));
                Some(Effect::Broke("key_ops"))
            }
            Self::OtherAlg => {
                jwk.insert("alg".into(), "PS256".into());
                Some(Effect::Broke("alg"))
            }
            Self::MismatchedAlg => {
                let alg = match jwk.get("kty").and_then(Value::as_str) {
                    Some("RSA") => "ES256",
                    _ => "RS256",
                };
                jwk.insert("alg".into(), alg.into());
                Some(Effect::Broke("alg"))
            }
            Self::PrivatePart => {
                if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
                    return None; // `k` is the secret itself; `d` means nothing there.
                }
                jwk.insert("d".into(), b64u(&[7; 32]).into());
                // Read for RSA and EC keys, so it counts as the type's member.
                Some(Effect::Broke("kty"))
            }
            Self::HugeKid => {
                jwk.insert("kid".into(), "k".repeat(MAX_KID_BYTES + 1).into());
                Some(Effect::Broke("kid"))
            }
            Self::OtherKty => {
                jwk.insert("kty".into(), "OKP".into());
                Some(Effect::Broke("kty"))
            }
            Self::OtherCurve => {
                if jwk.get("kty").and_then(Value::as_str) != Some("EC") {
                    return None;
                }
                jwk.insert("crv".into(), "P-384".into());
                Some(Effect::Broke("crv"))
            }
            Self::Shorten(m) => {
                let mut bytes = b64_member(jwk, m)?;
                bytes.pop();
                jwk.insert((*m).into(), b64u(&bytes).into());
                // An RSA modulus a byte shorter may still be taken (and then fails to
                // verify); a coordinate must be exactly 32 bytes.
                Some(if *m == "n" {
                    Effect::Kept
                } else {
                    Effect::Broke(m)
                })
            }
            Self::FlipBit(m, at, bit) => {
                let mut bytes = b64_member(jwk, m)?;
                if bytes.is_empty() {
                    return None;
                }
                let at = at % bytes.len();
                bytes[at] ^= 1 << (bit % 8);
                jwk.insert((*m).into(), b64u(&bytes).into());
                Some(Effect::Kept)
            }
        }
    }
}

fn jwk_change() -> impl Strategy<Value = JwkChange> {
    let member = || prop::sample::select(&["n", "e", "x", "y", "k", "kty", "crv"][..]);
    let data = || prop::sample::select(&["n", "e", "x", "y", "k"][..]);
    prop_oneof![
        1 => data().prop_map(JwkChange::Pad),
        1 => (prop::sample::select(&["n", "e"][..]), 1..4usize)
            .prop_map(|(m, c)| JwkChange::LeadingZeros(m, c)),
        1 => Just(JwkChange::UseSig),
        1 => Just(JwkChange::KeyOpsVerify),
        1 => Just(JwkChange::FittingAlg),
        1 => "[ -~]{0,40}".prop_map(JwkChange::Kid),
        1 => ("[a-z]{1,5}", arb_json()).prop_map(|(n, v)| JwkChange::Extra(n, v)),
        1 => member().prop_map(JwkChange::Drop),
        1 => (
            prop::sample::select(&["n", "e", "x", "y", "k", "kty", "crv", "kid", "use", "alg"][..]),
            prop_oneof![Just(json!(7)), Just(json!(null)), Just(json!(["a"])), Just(json!({}))]
        )
            .prop_map(|(m, v)| JwkChange::WrongType(m, v)),
        1 => data().prop_map(JwkChange::TrailingBits),
        1 => data().prop_map(JwkChange::StandardAlphabet),
        1 => Just(JwkChange::UseEnc),
        1 => Just(JwkChange::KeyOpsEncrypt),
        1 => Just(JwkChange::OtherAlg),
        1 => Just(JwkChange::MismatchedAlg),
        1 => Just(JwkChange::PrivatePart),
        1 => Just(JwkChange::HugeKid),
        1 => Just(JwkChange::OtherKty),
        1 => Just(JwkChange::OtherCurve),
        1 => prop::sample::select(&["n", "x", "y"][..]).prop_map(JwkChange::Shorten),
        3 => (data(), any::<usize>(), any::<u8>()).prop_map(|(m, at, b)| JwkChange::FlipBit(m, at, b)),
    ]
}

#[test]
fn fuzz_auth_jwk_real_keys() {
    let keys = real_keys();
    let case = (0..keys.len(), collection::vec(jwk_change(), 0..4));
    let tally = Tally::default();
    switchboard_fuzz::run(
        "fuzz_auth_jwk_real_keys",
        80000,
        case,
        |(which, changes)| {
            let real = &keys[which];
            let mut jwk = real.jwk.clone();
            let mut broken = std::collections::BTreeSet::new();
            for change in &changes {
                match change.apply(&mut jwk) {
                    Effect::Kept => {}
                    Effect::Healed(m) => {
                        broken.remove(m);
                    }
                    Effect::Broke(m) => {
                        broken.insert(m);
                    }
                }
            }
            let refuse = !broken.is_empty();
            // Flipped bits or a shortened modulus leave the verdict open, but a key
            // taken is another key. (Two flips of one bit are no change at all.)
            let changed = key_bytes(&jwk) != key_bytes(&real.jwk);
            let doc = json!({ "keys": [jwk] }).to_string();
            let set = keys_from_jwks(doc.as_bytes(), JwksOrigin::File).unwrap();
            prop_assert_eq!(set.keys.len() + set.refused.len(), 1);
            if let Some(r) = set.refused.first() {
                prop_assert!(!r.reason.is_empty());
            }
            let taken = set.keys.first();
            if refuse {
                prop_assert!(taken.is_none(), "a refusable change was taken: {:?}", jwk);
            }
            let Some(key) = taken else {
                prop_assert!(refuse || changed, "refused {:?}: {:?}", jwk, set.refused);
                tally.add(if refuse {
                    "refused as expected"
                } else {
                    "changed, refused"
                });
                return Ok(());
            };
            tally.add(if changed { "changed, taken" } else { "taken" });
            check_material(&key.material)?;
            let verifies = key.verify(real.alg, MESSAGE, &real.signature);
            // A key whose bytes changed may still be valid, but is another key.
            prop_assert_eq!(verifies, !changed, "{:?}", jwk);
            Ok(())
        },
    );
    tally.print("fuzz_auth_jwk_real_keys");
}

/// DER built from a small grammar, so the parser's deeper paths are reached.
#[derive(Debug, Clone)]
enum Der {
    Node {
        tag: u8,
        children: Vec<Der>,
        length: Length,
    },
    Leaf {
        tag: u8,
        content: Vec<u8>,
        length: Length,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Length {
    /// Minimal DER length.
    Exact,
    /// The long form with this many length octets (non-minimal when short would do).
    Long(u8),
    /// The true length plus this (too long or too short).
    Off(i8),
}

impl Der {
    fn encode(&self, out: &mut Vec<u8>) {
        let (tag, content, length) = match self {
            Self::Raw(bytes) => return out.extend_from_slice(bytes),
            Self::Leaf {
                tag,
                content,
                length,
            } => (*tag, content.clone(), length),
            Self::Node {
                tag,
                children,
                length,
            } => {
                let mut content = Vec::new();
                for c in children {
                    c.encode(&mut content);
                }
                (*tag, content, length)
            }
        };
        out.push(tag);
        let len = match length {
            Length::Off(d) => content.len().saturating_add_signed(isize::from(*d)),
            _ => content.len(),
        };
        let octets: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        match length {
            Length::Long(n) => {
                let n = usize::from(*n).max(octets.len());
                out.push(0x80 | n as u8);
                out.extend(std::iter::repeat_n(0, n - octets.len()));
                out.extend_from_slice(&octets);
            }
            _ if len < 0x80 => out.push(len as u8),
            _ => {
                out.push(0x80 | octets.len() as u8);
                out.extend_from_slice(&octets);
            }
        }
        out.extend_from_slice(&content);
    }
}

fn arb_der() -> impl Strategy<Value = Der> {
    let length = prop_oneof![
        8 => Just(Length::Exact),
        1 => (1u8..6).prop_map(Length::Long),
        1 => any::<i8>().prop_map(Length::Off),
    ];
    let content = prop_oneof![
        // The OIDs and integers the parser looks for.
        Just(OID_RSA_ENCRYPTION.to_vec()),
        Just(OID_EC_PUBLIC_KEY.to_vec()),
        Just(OID_PRIME256V1.to_vec()),
        Just(vec![]),
        Just(vec![1, 0, 1]),
        collection::vec(any::<u8>(), 0..8),
        (any::<u8>(), 250usize..=260).prop_map(|(b, n)| {
            let mut v = vec![0xff; n];
            v[0] = b;
            v
        }),
        collection::vec(any::<u8>(), 60..70).prop_map(|mut v| {
            v[0] = 0;
            v[1] = 4;
            v
        }),
    ];
    let tag = prop_oneof![
        4 => prop::sample::select(&[0x02u8, 0x03, 0x05, 0x06][..]),
        1 => any::<u8>(),
    ];
    let leaf = prop_oneof![
        8 => (tag, content, length.clone()).prop_map(|(tag, content, length)| Der::Leaf {
            tag,
            content,
            length
        }),
        1 => collection::vec(any::<u8>(), 0..6).prop_map(Der::Raw),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        (
            prop_oneof![6 => Just(0x30u8), 1 => Just(0x03), 1 => any::<u8>()],
            collection::vec(inner, 0..4),
            length.clone(),
        )
            .prop_map(|(tag, children, length)| Der::Node {
                tag,
                children,
                length,
            })
    })
}

/// A SubjectPublicKeyInfo with a choice at every field: the key type's OID and
/// parameters, the BIT STRING's unused-bits octet, RSA integers of sizes around the
/// bounds with random sign, parity and leading zeros, EC points of any length and first
/// octet, and now and then a field's tag or length wrong (by the grammar's `Length`).
fn arb_spki(real_points: Vec<Vec<u8>>) -> impl Strategy<Value = Der> {
    let leaf = |tag: u8, content: Vec<u8>| Der::Leaf {
        tag,
        content,
        length: Length::Exact,
    };
    let node = |tag: u8, children: Vec<Der>| Der::Node {
        tag,
        children,
        length: Length::Exact,
    };
    let integer = (
        prop::sample::select(&[0usize, 1, 3, 5, 6, 127, 128, 255, 256, 257, 1024, 1025][..]),
        0usize..3,
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(len, zeros, top, bottom)| {
            let mut v = vec![0u8; zeros];
            v.extend(std::iter::repeat_n(0x5a, len));
            if len > 0 {
                v[zeros] = top;
                let last = v.len() - 1;
                v[last] = bottom;
            }
            v
        });
    let exponent = prop_oneof![
        Just(vec![1, 0, 1]),
        Just(vec![3]),
        Just(vec![0x80, 0, 1]),
        collection::vec(any::<u8>(), 0..7),
    ];
    let point = prop_oneof![
        prop::sample::select(real_points),
        collection::vec(any::<u8>(), 64..=66).prop_map(|mut p| {
            p[0] = 4;
            p
        }),
        collection::vec(any::<u8>(), 0..70),
    ];
    let rsa = (integer, exponent).prop_map(move |(n, e)| {
        let key = node(0x30, vec![leaf(0x02, n), leaf(0x02, e)]);
        let mut bits = vec![0u8];
        key.encode(&mut bits);
        (
            vec![leaf(0x06, OID_RSA_ENCRYPTION.to_vec()), leaf(0x05, vec![])],
            bits,
        )
    });
    let ec = (
        prop_oneof![
            4 => Just(OID_PRIME256V1.to_vec()),
            1 => Just(vec![0x2b, 0x81, 0x04, 0x00, 0x22]), // secp384r1
        ],
        point,
    )
        .prop_map(move |(curve, point)| {
            let mut bits = vec![0u8];
            bits.extend_from_slice(&point);
            (
                vec![leaf(0x06, OID_EC_PUBLIC_KEY.to_vec()), leaf(0x06, curve)],
                bits,
            )
        });
    let other = collection::vec(any::<u8>(), 0..12)
        .prop_map(move |oid| (vec![leaf(0x06, oid)], vec![0u8, 1, 2]));
    let length = prop_oneof![
        12 => Just(Length::Exact),
        1 => (1u8..4).prop_map(Length::Long),
        1 => (-2i8..=2).prop_map(Length::Off),
    ];
    (
        prop_oneof![4 => rsa, 4 => ec, 1 => other],
        prop_oneof![12 => Just(0u8), 1 => any::<u8>()],
        length.clone(),
        length,
    )
        .prop_map(
            move |((algorithm, mut bits), unused, bits_len, outer_len)| {
                bits[0] = unused;
                Der::Node {
                    tag: 0x30,
                    children: vec![
                        node(0x30, algorithm),
                        Der::Leaf {
                            tag: 0x03,
                            content: bits,
                            length: bits_len,
                        },
                    ],
                    length: outer_len,
                }
            },
        )
}

fn pem_of(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// `material_from_spki` on `der`, and `keys_from_pem` on it wrapped in PEM, agree.
fn spki_and_pem_agree(der: &[u8]) -> Result<Option<Material>, TestCaseError> {
    let direct = material_from_spki(der);
    let from_pem = keys_from_pem(pem_of(der).as_bytes());
    match (&direct, &from_pem) {
        (Ok(m), Ok(keys)) => {
            prop_assert_eq!(keys.len(), 1);
            prop_assert!(same_material(m, &keys[0].material));
            check_material(m)?;
        }
        (Err(why), Err(e)) => {
            prop_assert!(e.to_string().ends_with(why.as_str()), "{} / {}", e, why)
        }
        _ => prop_assert!(false, "DER and PEM disagree"),
    }
    Ok(direct.ok())
}

#[test]
fn fuzz_auth_spki_bytes() {
    // The real P-256 points: the last 65 bytes of their SubjectPublicKeyInfo.
    let real_points: Vec<Vec<u8>> = real_keys()
        .iter()
        .filter(|k| k.alg == Alg::Es256)
        .map(|k| k.spki[k.spki.len() - 65..].to_vec())
        .collect();
    let input = prop_oneof![
        1 => any::<Vec<u8>>().prop_map(|b| (b, false)),
        2 => arb_der().prop_map(|d| {
            let mut out = Vec::new();
            d.encode(&mut out);
            (out, false)
        }),
        4 => arb_spki(real_points).prop_map(|d| {
            let mut out = Vec::new();
            d.encode(&mut out);
            (out, false)
        }),
        // As PEM text: arbitrary bytes between or around the armour lines.
        1 => any::<Vec<u8>>().prop_map(|b| (b, true)),
    ];
    let tally = Tally::default();
    switchboard_fuzz::run("fuzz_auth_spki_bytes", 200000, input, |(bytes, as_text)| {
        if as_text {
            let mut text = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
            text.extend_from_slice(&bytes);
            text.extend_from_slice(b"\n-----END PUBLIC KEY-----\n");
            for doc in [&bytes[..], &text[..]] {
                if let Ok(keys) = keys_from_pem(doc) {
                    tally.add("pem text taken");
                    for key in &keys {
                        check_material(&key.material)?;
                    }
                }
            }
            return Ok(());
        }
        match spki_and_pem_agree(&bytes)? {
            Some(Material::Rsa { .. }) => tally.add("rsa taken"),
            Some(_) => tally.add("p256 taken"),
            None => tally.add(match material_from_spki(&bytes) {
                Err(why) => why.as_str(),
                Ok(_) => unreachable!(),
            }),
        }
        Ok(())
    });
    tally.print("fuzz_auth_spki_bytes");
}

/// One change to a real key's bytes.
#[derive(Debug, Clone)]
enum ByteChange {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Append(Vec<u8>),
}

impl ByteChange {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match self {
            Self::Flip(i, bit) if !bytes.is_empty() => {
                let i = at(*i, bytes.len());
                bytes[i] ^= 1 << (bit % 8);
            }
            Self::Set(i, b) if !bytes.is_empty() => {
                let i = at(*i, bytes.len());
                bytes[i] = *b;
            }
            Self::Insert(i, b) => bytes.insert(at(*i, bytes.len() + 1), *b),
            Self::Delete(i) if !bytes.is_empty() => {
                bytes.remove(at(*i, bytes.len()));
            }
            Self::Truncate(i) => bytes.truncate(at(*i, bytes.len() + 1)),
            Self::Append(tail) => bytes.extend_from_slice(tail),
            _ => {}
        }
    }
}

fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteChange::Flip(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteChange::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteChange::Insert(i, b)),
        1 => any::<usize>().prop_map(ByteChange::Delete),
        1 => any::<usize>().prop_map(ByteChange::Truncate),
        1 => collection::vec(any::<u8>(), 1..4).prop_map(ByteChange::Append),
    ]
}

#[test]
fn fuzz_auth_spki_mutated_keys() {
    let keys: Vec<RealKey> = real_keys()
        .into_iter()
        .filter(|k| !k.spki.is_empty())
        .collect();
    // The unchanged keys are taken, from DER and from rcgen's PEM, and verify.
    for key in &keys {
        let m = material_from_spki(&key.spki).unwrap();
        let pem = keys_from_pem(key.pem.as_bytes()).unwrap();
        assert!(same_material(&m, &pem[0].material), "{key:?}");
        let key_ = VerifyKey {
            kid: None,
            alg: None,
            material: m,
        };
        assert!(key_.verify(key.alg, MESSAGE, &key.signature), "{key:?}");
    }
    let case = (
        0..keys.len(),
        any::<bool>(),
        collection::vec(byte_change(), 1..4),
    );
    let tally = Tally::default();
    switchboard_fuzz::run(
        "fuzz_auth_spki_mutated_keys",
        400000,
        case,
        |(which, pem_text, changes)| {
            let real = &keys[which];
            if pem_text {
                // The PEM text itself mutated: never a panic, any key taken is sound.
                let mut text = real.pem.clone().into_bytes();
                for c in &changes {
                    c.apply(&mut text);
                }
                if let Ok(taken) = keys_from_pem(&text) {
                    tally.add("pem text taken");
                    for key in &taken {
                        check_material(&key.material)?;
                    }
                }
                return Ok(());
            }
            let mut der = real.spki.clone();
            for c in &changes {
                c.apply(&mut der);
            }
            let Some(material) = spki_and_pem_agree(&der)? else {
                tally.add("der refused");
                return Ok(());
            };
            let original = material_from_spki(&real.spki).unwrap();
            let key = VerifyKey {
                kid: None,
                alg: None,
                material,
            };
            // Verifies exactly when the mutation left the key itself as it was (it may
            // have changed, say, a non-minimal length or the RSA parameters' NULL).
            let same = same_material(&key.material, &original);
            tally.add(if same {
                "der taken, same key"
            } else {
                "der taken, another key"
            });
            prop_assert_eq!(key.verify(real.alg, MESSAGE, &real.signature), same);
            Ok(())
        },
    );
    tally.print("fuzz_auth_spki_mutated_keys");
}

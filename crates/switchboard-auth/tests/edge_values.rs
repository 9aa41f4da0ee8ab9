//! Issue 14, flaw 7 and its kin: key material and time claims at the edges of their
//! ranges. Each test names what used to go wrong (a panic, a clamped expiry, a key
//! taken that can never verify anything or that should not be trusted) and checks the
//! clean refusal that replaced it, through the public authorizer.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use switchboard_auth::{AuthError, Authorizer, Failure, Refusal};
use switchboard_core::config::ConfigError;

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

fn hs() -> Signer {
    Signer::Hs256(SECRET.as_bytes().to_vec())
}

async fn hs_authorizer() -> Authorizer {
    authorizer(json!({"kind": "jwt", "secret": SECRET})).await
}

/// An authorizer over a JWKS file holding `keys`; the error names why it cannot start.
async fn jwks_file_authorizer(keys: Vec<Value>) -> Result<Authorizer, ConfigError> {
    let file = TempFile::new("jwks.json", &json!({ "keys": keys }).to_string());
    try_authorizer(json!({"kind": "jwt", "jwks_file": file.path})).await
}

fn denied(r: Result<switchboard_auth::Identity, AuthError>) -> Refusal {
    match r {
        Err(AuthError::Denied(why)) => why,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// --- flaw 7: the empty modulus -------------------------------------------------------

/// `n.len() * 8 - 8` underflowed for an empty modulus (and for one of zero bytes only,
/// which is empty once its leading zeros are stripped): a panic while loading keys.
#[tokio::test]
async fn rsa_jwk_with_an_empty_or_all_zero_modulus_is_refused_not_a_panic() {
    let good = ec();
    for n in ["", "AA", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAA"] {
        let keys = vec![rsa_jwk_with("n", n), good.jwk("ok")];
        let a = jwks_file_authorizer(keys)
            .await
            .unwrap_or_else(|e| panic!("n = {n:?}: {e}"));
        // The valid key beside it still works.
        let t = good.token(Some("ok"), &json!({"sub": "u", "exp": now() + 60}));
        assert!(check(&a, &Hs::bearer(&t)).await.is_ok(), "n = {n:?}");
        // Alone, it leaves no usable key, and the error says why.
        let e = jwks_file_authorizer(vec![rsa_jwk_with("n", n)])
            .await
            .err()
            .unwrap_or_else(|| panic!("n = {n:?} was accepted"));
        assert!(e.problem.contains("no usable signing key"), "{e}");
        assert!(e.problem.contains("RSA modulus"), "{e}");
    }
}

#[tokio::test]
async fn rsa_jwk_with_an_empty_modulus_from_a_jwks_url_is_refused_not_a_panic() {
    let good = ec();
    let doc = json!({"keys": [rsa_jwk_with("n", ""), good.jwk("ok")]}).to_string();
    let server = Server::start(move |_| Reply::ok(doc.clone())).await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    let t = good.token(Some("ok"), &json!({"sub": "u", "exp": now() + 60}));
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
}

// --- flaw 7: exp beyond SystemTime, and the other time claims ------------------------

/// `exp` past `Duration`'s range became `Duration::default()`, so the identity expired
/// at the Unix epoch; past `SystemTime`'s range (about 2^63 s), adding it to the epoch
/// panicked.
#[tokio::test]
async fn exp_beyond_the_time_range_is_malformed_not_the_epoch_or_a_panic() {
    let a = hs_authorizer().await;
    for exp in [
        json!(1e19),
        json!(9.3e18),
        json!(u64::MAX),
        json!(i64::MAX),
        json!(1e300),
        json!(f64::MAX),
        json!(253_402_300_800u64),
    ] {
        let t = hs().token(None, &json!({"sub": "u", "exp": exp}));
        let r = check(&a, &Hs::bearer(&t)).await;
        assert_eq!(denied(r), Refusal::Malformed, "exp = {exp}");
    }
    // The last second of year 9999 is the latest `exp` taken, and it is kept exactly.
    let t = hs().token(None, &json!({"sub": "u", "exp": 253_402_300_799u64}));
    let id = check(&a, &Hs::bearer(&t)).await.unwrap();
    assert_eq!(
        id.expires_at,
        Some(UNIX_EPOCH + Duration::from_secs(253_402_300_799))
    );
}

/// A negative `exp` is not a time: with a large leeway it was accepted and reported as
/// expiring at the epoch.
#[tokio::test]
async fn negative_exp_is_malformed_even_with_a_large_leeway() {
    let a =
        authorizer(json!({"kind": "jwt", "secret": SECRET, "leeway_secs": 4_000_000_000u64})).await;
    for exp in [json!(-1), json!(-0.5), json!(i64::MIN), json!(-1e300)] {
        let t = hs().token(None, &json!({"sub": "u", "exp": exp}));
        assert_eq!(
            denied(check(&a, &Hs::bearer(&t)).await),
            Refusal::Malformed,
            "exp = {exp}"
        );
    }
}

/// `nbf` and `iat` out of range or of the wrong type were ignored (`iat`) or compared
/// as whatever they were (`nbf = -1e300` made any token valid from the dawn of time);
/// now they make the token malformed, like `exp`.
#[tokio::test]
async fn nbf_and_iat_out_of_range_are_malformed() {
    let a = hs_authorizer().await;
    let exp = now() + 600;
    for (name, value) in [
        ("nbf", json!(-1)),
        ("nbf", json!(-1e300)),
        ("nbf", json!(1e300)),
        ("nbf", json!(u64::MAX)),
        ("iat", json!(-1)),
        ("iat", json!(1e19)),
        ("iat", json!("yesterday")),
        ("iat", json!(null)),
        ("iat", json!([1])),
    ] {
        let mut claims = json!({"sub": "u", "exp": exp});
        claims[name] = value.clone();
        let t = hs().token(None, &claims);
        assert_eq!(
            denied(check(&a, &Hs::bearer(&t)).await),
            Refusal::Malformed,
            "{name} = {value}"
        );
    }
    // In range they are fine, fractional included.
    let n = now() as f64;
    let t = hs().token(
        None,
        &json!({"sub": "u", "exp": exp, "nbf": n - 0.5, "iat": n - 1.25}),
    );
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
}

// --- RSA keys ring cannot verify with: refused when loaded, with the reason ------------

/// A modulus ring would refuse at every verification (even, too short, too long) or an
/// exponent it would refuse (even, below 3, above 2^33 - 1) used to load as a usable
/// key: the gateway started and every token then failed as "bad signature".
#[tokio::test]
async fn rsa_keys_ring_would_refuse_are_refused_when_loaded() {
    let real = rsa("rsa2048").jwk("r");
    let n = b64url_decode(real["n"].as_str().unwrap());
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "even modulus",
            rsa_jwk_with("n", &b64url(&even)),
            "RSA modulus",
        ),
        (
            "1024-bit modulus",
            rsa_jwk_with("n", &b64url(&n[..128])),
            "RSA modulus",
        ),
        (
            "8200-bit modulus",
            rsa_jwk_with(
                "n",
                &b64url(&[&[0xff], &n[..], &n[..], &n[..], &n[..]].concat()),
            ),
            "RSA modulus",
        ),
        ("exponent 1", rsa_jwk_with("e", "AQ"), "RSA exponent"),
        ("even exponent", rsa_jwk_with("e", "AQAA"), "RSA exponent"),
        (
            "exponent 2^33 + 1",
            rsa_jwk_with("e", &b64url(&[2, 0, 0, 0, 1])),
            "RSA exponent",
        ),
        ("empty exponent", rsa_jwk_with("e", ""), "RSA exponent"),
    ];
    for (what, jwk, why) in cases {
        let e = jwks_file_authorizer(vec![jwk])
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(e.problem.contains(why), "{what}: {e}");
    }
    // Leading zero octets in `n` and `e` (some issuers write a sign byte) are harmless.
    let padded = rsa_jwk_with("n", &b64url(&[&[0, 0][..], &n].concat()));
    let padded = {
        let mut j = padded;
        j["e"] = json!(b64url(&[0, 1, 0, 1]));
        j
    };
    let a = jwks_file_authorizer(vec![padded]).await.unwrap();
    let t = rsa("rsa2048").token(Some("r"), &json!({"sub": "u", "exp": now() + 60}));
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
}

/// The largest exponent ring takes, 2^33 - 1, is taken (the old bound stopped at 4
/// bytes, so keys ring verifies with were refused).
#[tokio::test]
async fn rsa_exponent_up_to_ring_s_bound_is_taken() {
    let a = jwks_file_authorizer(vec![rsa_jwk_with(
        "e",
        &b64url(&[1, 0xff, 0xff, 0xff, 0xff]),
    )])
    .await;
    assert!(a.is_ok(), "{:?}", a.err());
}

/// A SubjectPublicKeyInfo whose modulus INTEGER is negative (no sign octet before a
/// high bit) is not a valid RSA key; it was read as if it were positive.
#[tokio::test]
async fn pem_rsa_key_with_a_negative_modulus_is_refused() {
    let pem = std::fs::read_to_string(keys_dir().join("rsa2048.pub.pem")).unwrap();
    let der = pem_body(&pem);
    // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { 00, SEQUENCE { INTEGER n,
    // INTEGER e } } }, every length in the two-byte long form. Drop the modulus's 0x00
    // sign octet and shorten the four enclosing lengths by one.
    let int_at = find(&der, &[0x02, 0x82, 0x01, 0x01, 0x00]).expect("a 2048-bit modulus");
    let bits_at = find(&der, &[0x03, 0x82]).unwrap();
    let mut bad = der.clone();
    for tag_at in [0, bits_at, bits_at + 5, int_at] {
        let len = u16::from_be_bytes([bad[tag_at + 2], bad[tag_at + 3]]) - 1;
        bad[tag_at + 2..tag_at + 4].copy_from_slice(&len.to_be_bytes());
    }
    bad.remove(int_at + 4);
    let file = TempFile::new("neg.pem", &to_pem(&bad));
    let e = try_authorizer(json!({"kind": "jwt", "public_keys": [file.path]}))
        .await
        .expect_err("a negative modulus was accepted");
    assert!(e.problem.contains("negative"), "{e}");
}

/// Base64url with a nonzero bit past the data is another spelling of the same bytes; a
/// token spelled that way is refused, so a token has one spelling (padding aside, which
/// carries no bits).
#[tokio::test]
async fn non_canonical_base64url_in_a_token_is_refused() {
    let a = hs_authorizer().await;
    let t = hs().token(None, &json!({"sub": "u", "exp": now() + 60}));
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
    // HS256: 32 bytes, 43 characters, the last carrying 2 unused bits.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *t.as_bytes().last().unwrap();
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(value & 0b11, 0, "canonical: unused bits are zero");
    for bit in [1, 2] {
        let bad = format!("{}{}", &t[..t.len() - 1], ALPHABET[value | bit] as char);
        assert_eq!(
            denied(check(&a, &Hs::bearer(&bad)).await),
            Refusal::Malformed
        );
    }
    assert!(check(&a, &Hs::bearer(&format!("{t}="))).await.is_ok());
}

// --- P-256 keys that are not points on the curve ------------------------------------

#[tokio::test]
async fn ec_jwk_off_the_curve_is_refused_when_loaded() {
    let key = ec();
    let mut jwk = key.jwk("e");
    let mut y = b64url_decode(jwk["y"].as_str().unwrap());
    y[31] ^= 1;
    jwk["y"] = json!(b64url(&y));
    let e = jwks_file_authorizer(vec![jwk])
        .await
        .expect_err("a point off the curve was accepted");
    assert!(e.problem.contains("not on the curve"), "{e}");
    // Coordinates of the wrong length, with or without leading zeros.
    for (x, y) in [(31, 32), (32, 33), (0, 32)] {
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64url(&vec![1; x]), "y": b64url(&vec![1; y])});
        let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
        assert!(e.problem.contains("32 bytes"), "{x}/{y}: {e}");
    }
}

#[tokio::test]
async fn pem_ec_key_off_the_curve_is_refused() {
    let key = ec();
    let pem = ec_public_pem(&key);
    let mut der = pem_body(&pem);
    let last = der.len() - 1;
    der[last] ^= 1;
    let file = TempFile::new("ec.pem", &to_pem(&der));
    let e = try_authorizer(json!({"kind": "jwt", "public_keys": [file.path]}))
        .await
        .expect_err("a point off the curve was accepted");
    assert!(e.problem.contains("not on the curve"), "{e}");
}

// --- JWK members of the wrong type, private keys, secrets over the network -------------

/// A `kid` that is not a string made the key kid-less, and kid-less keys are the
/// fallback for tokens naming any unknown `kid`.
#[tokio::test]
async fn jwk_with_a_non_string_kid_is_refused_not_made_kid_less() {
    let key = ec();
    let mut jwk = key.jwk("k");
    jwk["kid"] = json!(7);
    let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
    assert!(e.problem.contains("kid"), "{e}");
    for (member, value) in [
        ("use", json!(1)),
        ("alg", json!(["ES256"])),
        ("crv", json!(null)),
    ] {
        let mut jwk = key.jwk("k");
        jwk[member] = value;
        let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
        assert!(e.problem.contains(member), "{member}: {e}");
    }
}

#[tokio::test]
async fn jwk_whose_alg_does_not_fit_its_type_is_refused() {
    let mut jwk = ec().jwk("k");
    jwk["alg"] = json!("RS256");
    let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
    assert!(e.problem.contains("does not fit"), "{e}");
}

/// A set that publishes a private key (`d`) lets anyone who reads it sign tokens.
#[tokio::test]
async fn jwk_carrying_a_private_key_is_refused() {
    let mut jwk = ec().jwk("k");
    jwk["d"] = json!(b64url(&[7; 32]));
    let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
    assert!(e.problem.contains("private"), "{e}");
}

/// An HS256 secret served at a URL is readable by whoever can fetch the URL (or, over
/// http://, by anyone on the path), and would let them sign tokens.
#[tokio::test]
async fn symmetric_key_from_a_jwks_url_is_refused() {
    let doc = json!({"keys": [hs().jwk("h")]}).to_string();
    let server = Server::start(move |_| Reply::ok(doc.clone())).await;
    let a = authorizer(json!({"kind": "jwt", "jwks_url": server.url})).await;
    let t = hs().token(Some("h"), &json!({"sub": "u", "exp": now() + 60}));
    let err = check(&a, &Hs::bearer(&t)).await.unwrap_err();
    assert_eq!(err, AuthError::Failed(Failure::KeysNotLoaded));
    // From a file, which the operator placed, it is still a key.
    let a = jwks_file_authorizer(vec![hs().jwk("h")]).await.unwrap();
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
}

#[tokio::test]
async fn jwk_with_key_ops_excluding_verify_is_not_used() {
    let mut jwk = ec().jwk("k");
    jwk["key_ops"] = json!(["encrypt"]);
    let e = jwks_file_authorizer(vec![jwk]).await.err().unwrap();
    assert!(e.problem.contains("key_ops"), "{e}");
    let key = ec();
    let mut jwk = key.jwk("k");
    jwk["key_ops"] = json!(["verify"]);
    assert!(jwks_file_authorizer(vec![jwk]).await.is_ok());
}

// --- kid bounds -------------------------------------------------------------------

#[tokio::test]
async fn huge_kids_are_refused() {
    let key = ec();
    let huge = "k".repeat(switchboard_auth::MAX_KID_BYTES + 1);
    // In a set: refused with a reason (the other key still loads).
    let a = jwks_file_authorizer(vec![key.jwk(&huge), key.jwk("k")])
        .await
        .unwrap();
    let e = jwks_file_authorizer(vec![key.jwk(&huge)])
        .await
        .err()
        .unwrap();
    assert!(e.problem.contains("kid"), "{e}");
    // In a token: malformed, before any key lookup.
    let t = key.token(Some(&huge), &json!({"sub": "u", "exp": now() + 60}));
    assert_eq!(denied(check(&a, &Hs::bearer(&t)).await), Refusal::Malformed);
    let fits = "k".repeat(switchboard_auth::MAX_KID_BYTES);
    let a = jwks_file_authorizer(vec![key.jwk(&fits)]).await.unwrap();
    let t = key.token(Some(&fits), &json!({"sub": "u", "exp": now() + 60}));
    assert!(check(&a, &Hs::bearer(&t)).await.is_ok());
}

// --- alg confusion guards (these held before; kept so they keep holding) --------------

/// A token that carries its own key (`jwk`, `jku`, `x5u`, `x5c` headers) is verified
/// with the configured keys only.
#[tokio::test]
async fn keys_named_in_the_token_header_are_never_used() {
    let configured = ec();
    let a = jwks_file_authorizer(vec![configured.jwk("k")])
        .await
        .unwrap();
    let attacker = ec();
    let header = json!({"alg": "ES256", "kid": "k", "jwk": attacker.jwk("k"),
                        "jku": "http://127.0.0.1:9/jwks", "x5u": "http://127.0.0.1:9/c"});
    let t = sign_with_header(&attacker, &header, &json!({"sub": "u", "exp": now() + 60}));
    assert_eq!(
        denied(check(&a, &Hs::bearer(&t)).await),
        Refusal::BadSignature
    );
}

/// HS256 keyed with an RSA or EC public key's JWK members, against a set of public keys.
#[tokio::test]
async fn hs256_keyed_with_a_public_key_is_refused() {
    let (rs, es) = (rsa("rsa2048"), ec());
    let file = TempFile::new(
        "jwks.json",
        &json!({"keys": [rs.jwk("r"), es.jwk("e")]}).to_string(),
    );
    let a = authorizer(json!({"kind": "jwt", "jwks_file": file.path,
                             "algorithms": ["HS256", "RS256", "ES256"]}))
    .await;
    for (kid, jwk) in [("r", rs.jwk("r")), ("e", es.jwk("e"))] {
        for secret in [jwk.to_string(), jwk["n"].to_string(), jwk["x"].to_string()] {
            let t = Signer::Hs256(secret.into_bytes())
                .token(Some(kid), &json!({"sub": "u", "exp": now() + 60}));
            assert_eq!(
                denied(check(&a, &Hs::bearer(&t)).await),
                Refusal::UnknownKey
            );
        }
    }
}

// --- helpers ------------------------------------------------------------------------

fn b64url_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

//! Fuzz targets for JWT verification, through the public authorizer (token sources, key
//! selection, signature, claims, identity), driven by `switchboard_fuzz`.
//!
//! - `fuzz_auth_jwt_strings`: arbitrary strings, and strings shaped like tokens (three
//!   base64url parts of arbitrary bytes or JSON), as the query token and the bearer
//!   header: never a panic, never accepted, refused with a known reason.
//! - `fuzz_auth_jwt_signed_tokens`: tokens signed in the test with ring by configured and
//!   unconfigured keys, with arbitrary headers (alg, kid, crit, embedded keys) and claims
//!   (exp/nbf/iat at numeric edges, as integers, floats, negatives, huge and ill-typed
//!   values, in raw JSON spellings): the verdict and its reason agree with a simple model
//!   of the rules, and the same token with any one byte changed is refused.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Map, Value};
use switchboard_auth::{AuthError, Authorizer, Refusal, MAX_KID_BYTES, MAX_NUMERIC_DATE};
use switchboard_fuzz::proptest::prelude::*;
use switchboard_fuzz::proptest::{collection, option};

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";
const FILE_SECRET: &[u8] = b"the-jwks-file-secret-32-bytes-ok";
const ISSUER: &str = "https://idp.test/";
const LEEWAY: f64 = 60.0;

/// Every reason a JWT refusal may carry.
const REASONS: [Refusal; 11] = [
    Refusal::AlgNone,
    Refusal::Malformed,
    Refusal::UnsupportedAlg,
    Refusal::UnknownKey,
    Refusal::BadSignature,
    Refusal::Expired,
    Refusal::NotYetValid,
    Refusal::MissingExp,
    Refusal::WrongIssuer,
    Refusal::NoSubject,
    Refusal::WrongAudience,
];

/// The signers, and for the configured ones the `(alg, kid)` of their key.
struct Keys {
    signers: Vec<Signer>,
    configured: Vec<Option<(&'static str, Option<&'static str>)>>,
    /// Keeps the EC PEM file alive while the authorizer is built.
    _files: Vec<TempFile>,
}

fn keys() -> Keys {
    let ec_static = ec();
    let ec_kid = ec();
    let rsa_kid = rsa("rsa2048-b");
    let jwks = json!({"keys": [
        Signer::Hs256(FILE_SECRET.to_vec()).jwk("hk"),
        rsa_kid.jwk("rk"),
        ec_kid.jwk("ek"),
    ]});
    let files = vec![
        TempFile::new("ec.pub.pem", &ec_public_pem(&ec_static)),
        TempFile::new("jwks.json", &jwks.to_string()),
    ];
    Keys {
        signers: vec![
            Signer::Hs256(SECRET.as_bytes().to_vec()),
            Signer::Hs256(FILE_SECRET.to_vec()),
            rsa("rsa2048"),
            rsa_kid,
            ec_static,
            ec_kid,
            Signer::Hs256(b"nobody-configured-this-secret!!!".to_vec()),
            ec(),
        ],
        configured: vec![
            Some(("HS256", None)),
            Some(("HS256", Some("hk"))),
            // No PEM for this one: RS256 has no kid-less key, so an unknown kid finds
            // none.
            None,
            Some(("RS256", Some("rk"))),
            Some(("ES256", None)),
            Some(("ES256", Some("ek"))),
            None,
            None,
        ],
        _files: files,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn build_authorizer(rt: &tokio::runtime::Runtime, keys: &Keys) -> Authorizer {
    let cfg = json!({"kind": "jwt", "secret": SECRET, "issuer": ISSUER,
        "leeway_secs": LEEWAY as u64,
        "public_keys": [&keys._files[0].path],
        "jwks_file": &keys._files[1].path});
    rt.block_on(authorizer(cfg))
}

fn refusal(r: &Result<switchboard_auth::Identity, AuthError>) -> Option<&'static str> {
    match r {
        Ok(_) => None,
        Err(e) => Some(e.reason()),
    }
}

// --- arbitrary strings ----------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 ._-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            collection::vec(("alg|kid|exp|nbf|iat|sub|crit|[a-z]{1,4}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn b64(bytes: &[u8]) -> String {
    b64url(bytes)
}

#[test]
fn fuzz_auth_jwt_strings() {
    let rt = runtime();
    let keys = keys();
    let a = build_authorizer(&rt, &keys);
    let token = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.-]{0,300}",
        collection::vec(any::<Vec<u8>>(), 1..5)
            .prop_map(|parts| { parts.iter().map(|p| b64(p)).collect::<Vec<_>>().join(".") }),
        (arb_json(), arb_json(), any::<Vec<u8>>()).prop_map(|(h, c, s)| {
            format!(
                "{}.{}.{}",
                b64(h.to_string().as_bytes()),
                b64(c.to_string().as_bytes()),
                b64(&s)
            )
        }),
        // Headers that pass, so random signatures of the lengths HS256, ES256 and
        // RS256 produce reach the signature check.
        (
            header_text(),
            claims_text(),
            prop::sample::select(&[32usize, 64, 256][..])
                .prop_flat_map(|n| collection::vec(any::<u8>(), n)),
        )
            .prop_map(|(h, c, s)| format!(
                "{}.{}.{}",
                b64(h.as_bytes()),
                b64(c.as_bytes()),
                b64(&s)
            )),
    ];
    switchboard_fuzz::run("fuzz_auth_jwt_strings", 80000, token, |token| {
        // Absent means: an empty query value; a bearer header that is blank once
        // trimmed, or not visible ASCII (which `to_str` refuses).
        let mut results = vec![(
            rt.block_on(check(&a, &Hs::new().query("token", &token))),
            token.is_empty(),
        )];
        if http::HeaderValue::from_str(&format!("Bearer {token}")).is_ok() {
            let visible = token
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            results.push((
                rt.block_on(check(&a, &Hs::bearer(&token))),
                token.trim().is_empty() || !visible,
            ));
        }
        for (r, absent) in results {
            match r {
                Ok(id) => prop_assert!(false, "accepted an unsigned string: {:?}", id),
                Err(AuthError::MissingIdentity(_)) => prop_assert!(absent),
                Err(AuthError::Denied(why)) => {
                    prop_assert!(!absent);
                    prop_assert!(REASONS.contains(&why), "{}", why);
                }
                Err(e @ AuthError::Failed(_)) => prop_assert!(false, "{}", e),
            }
        }
        Ok(())
    });
}

// --- signed tokens against a model ----------------------------------------------------

/// A NumericDate as raw JSON text: relative to now, or an edge of some range.
fn time_text(relative: &'static [f64]) -> impl Strategy<Value = String> {
    prop_oneof![
        16 => (prop::sample::select(relative), any::<bool>()).prop_map(|(d, frac)| {
            let now = now() as f64;
            if frac {
                format!("{:.1}", now + d + 0.5)
            } else {
                format!("{}", (now + d) as i64)
            }
        }),
        1 => prop::sample::select(&[
            "0", "-0", "-0.0", "-1", "1", "1.5", "253402300799", "253402300799.0",
            "253402300800", "253402300799.5", "9.3e18", "1e19", "18446744073709551615",
            "18446744073709551616", "-9223372036854775808", "9223372036854775807", "1e300",
            "-1e300", "1e400", "1.7976931348623157e308", "2.5e-300", "4102444800E0", "true",
            "null", "\"1700000000\"", "[1]", "{}",
        ][..]).prop_map(str::to_owned),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    /// Most cases sign with a key that fits the header's `alg` (some configured, some
    /// not); the rest with any key.
    fitting: bool,
    signer: usize,
    header: String,
    claims: String,
    mutate_at: usize,
    mutate_to: u8,
}

fn header_text() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        24 => prop::sample::select(&["HS256", "RS256", "ES256"][..]).prop_map(Value::from),
        2 => prop::sample::select(&["none", "NONE", "HS512", "hs256", "PS256", ""][..])
            .prop_map(Value::from),
        1 => Just(json!(256)),
    ];
    let kid = prop_oneof![
        32 => prop::sample::select(&["hk", "rk", "ek", "zzz", ""][..]).prop_map(Value::from),
        1 => Just(json!("k".repeat(MAX_KID_BYTES))),
        1 => Just(json!("k".repeat(MAX_KID_BYTES + 1))),
        1 => Just(json!(7)),
        1 => Just(Value::Null),
    ];
    let object = (
        option::weighted(0.98, alg),
        option::of(kid),
        prop::bool::weighted(0.02),
        option::weighted(0.1, ("typ|jwk|jku|x5u|cty|[a-z]{1,3}", arb_json())),
    )
        .prop_map(|(alg, kid, crit, extra)| {
            let mut h = Map::new();
            if let Some((k, v)) = extra {
                h.insert(k, v);
            }
            if let Some(alg) = alg {
                h.insert("alg".into(), alg);
            }
            if let Some(kid) = kid {
                h.insert("kid".into(), kid);
            }
            if crit {
                h.insert("crit".into(), json!(["exp"]));
            }
            Value::Object(h).to_string()
        });
    prop_oneof![
        120 => object,
        1 => Just("[]".to_owned()),
        1 => Just("\"alg\"".to_owned()),
        1 => Just("{\"alg\":\"HS256\"".to_owned()),
    ]
}

fn claims_text() -> impl Strategy<Value = String> {
    const EXP: &[f64] = &[
        -1e6, -3600.0, -120.0, 120.0, 300.0, 600.0, 3600.0, 86400.0, 1e6, 1e7,
    ];
    const NBF: &[f64] = &[-3600.0, -30.0, 30.0, 120.0, 1e6];
    const IAT: &[f64] = &[-3600.0, 0.0, 3600.0];
    let sub = prop_oneof![
        12 => Just("\"user-1\""),
        1 => prop::sample::select(
            &["\"\"", "42", "-7", "18446744073709551615", "1.5", "true", "null", "[\"u\"]"][..]
        ),
    ];
    let iss = prop_oneof![
        12 => Just("\"https://idp.test/\""),
        1 => prop::sample::select(&["\"https://evil.test/\"", "5"][..]),
    ];
    let members = (
        option::weighted(0.9, sub),
        option::weighted(0.95, time_text(EXP)),
        option::weighted(0.3, time_text(NBF)),
        option::weighted(0.3, time_text(IAT)),
        option::weighted(0.95, iss),
        option::weighted(0.2, ("[a-z]{1,6}", arb_json())),
    )
        .prop_map(|(sub, exp, nbf, iat, iss, extra)| {
            let mut parts = Vec::new();
            let mut add = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    parts.push(format!("\"{k}\":{v}"));
                }
            };
            add("sub", sub.map(str::to_owned));
            add("exp", exp);
            add("nbf", nbf);
            add("iat", iat);
            add("iss", iss.map(str::to_owned));
            if let Some((k, v)) = extra {
                add(&k, Some(v.to_string()));
            }
            format!("{{{}}}", parts.join(","))
        });
    prop_oneof![
        120 => members,
        1 => Just("[]".to_owned()),
        1 => Just("42".to_owned()),
        1 => Just("{\"exp\":".to_owned()),
    ]
}

/// The model's key selection: the header's faults, or the configured keys a token with
/// this header is checked against (those carrying its kid, else the kid-less ones; with
/// no kid, all), for its `alg`.
fn candidates(keys: &Keys, header: &str) -> Result<(String, Vec<usize>), Refusal> {
    let header: Map<String, Value> =
        serde_json::from_str(header).map_err(|_| Refusal::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(Refusal::Malformed),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(Refusal::AlgNone);
    }
    if !["HS256", "RS256", "ES256"].contains(&alg) {
        return Err(Refusal::UnsupportedAlg);
    }
    if header.contains_key("crit") {
        return Err(Refusal::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= MAX_KID_BYTES => Some(k.as_str()),
        Some(_) => return Err(Refusal::Malformed),
    };
    let usable: Vec<usize> = (0..keys.configured.len())
        .filter(|&i| keys.configured[i].is_some_and(|(a, _)| a == alg))
        .collect();
    let kid_of = |i: usize| keys.configured[i].and_then(|(_, k)| k);
    let chosen = match kid {
        None => usable,
        Some(kid) => {
            let by_kid: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|&i| kid_of(i) == Some(kid))
                .collect();
            if by_kid.is_empty() {
                usable
                    .into_iter()
                    .filter(|&i| kid_of(i).is_none())
                    .collect()
            } else {
                by_kid
            }
        }
    };
    Ok((alg.to_owned(), chosen))
}

/// The model: what the authorizer must answer for `header` and `claims` signed by
/// `signer` with its own algorithm. `Ok` carries the principal and the expiry.
fn expected(
    keys: &Keys,
    signer: usize,
    header: &str,
    claims: &str,
) -> Result<(String, SystemTime), Refusal> {
    let (alg, candidates) = candidates(keys, header)?;
    if candidates.is_empty() {
        return Err(Refusal::UnknownKey);
    }
    if !(candidates.contains(&signer) && keys.signers[signer].alg() == alg) {
        return Err(Refusal::BadSignature);
    }
    let claims: Map<String, Value> =
        serde_json::from_str(claims).map_err(|_| Refusal::Malformed)?;
    let date = |name: &str| -> Result<Option<f64>, Refusal> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(t) if t >= 0.0 && t <= MAX_NUMERIC_DATE as f64 => Ok(Some(t)),
                _ => Err(Refusal::Malformed),
            },
        }
    };
    if !claims.contains_key("exp") {
        return Err(Refusal::MissingExp);
    }
    let exp = date("exp")?.unwrap_or_default();
    let nbf = date("nbf")?;
    date("iat")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    if now >= exp + LEEWAY {
        return Err(Refusal::Expired);
    }
    if nbf.is_some_and(|nbf| now + LEEWAY < nbf) {
        return Err(Refusal::NotYetValid);
    }
    if claims.get("iss") != Some(&json!(ISSUER)) {
        return Err(Refusal::WrongIssuer);
    }
    let principal = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(Refusal::NoSubject),
    };
    Ok((principal, UNIX_EPOCH + Duration::from_secs_f64(exp)))
}

#[test]
fn fuzz_auth_jwt_signed_tokens() {
    let rt = runtime();
    let keys = keys();
    let a = build_authorizer(&rt, &keys);
    let case = (
        prop::bool::weighted(0.85),
        any::<usize>(),
        header_text(),
        claims_text(),
        any::<usize>(),
        any::<u8>(),
    )
        .prop_map(
            |(fitting, signer, header, claims, mutate_at, mutate_to)| Case {
                fitting,
                signer,
                header,
                claims,
                mutate_at,
                mutate_to,
            },
        );
    // How often each verdict came up, printed so a generator that stops reaching
    // acceptance (or some refusal) shows in the output.
    let verdicts = std::cell::RefCell::new(std::collections::BTreeMap::new());
    switchboard_fuzz::run("fuzz_auth_jwt_signed_tokens", 16000, case, |case| {
        // Fitting: a key the token will be checked against, or (one in eight) another
        // key of the same algorithm, configured or not.
        let fits = match candidates(&keys, &case.header) {
            Ok((alg, chosen)) if case.signer % 8 == 0 || chosen.is_empty() => {
                (0..keys.signers.len())
                    .filter(|&i| keys.signers[i].alg() == alg)
                    .collect()
            }
            Ok((_, chosen)) => chosen,
            Err(_) => Vec::new(),
        };
        let signer = match (case.fitting, fits.len()) {
            (true, n) if n > 0 => fits[(case.signer / 8) % n],
            _ => case.signer % keys.signers.len(),
        };
        let signer_index = signer;
        let signer = &keys.signers[signer];
        let input = format!(
            "{}.{}",
            b64(case.header.as_bytes()),
            b64(case.claims.as_bytes())
        );
        let token = format!("{input}.{}", b64(&signer.sign(input.as_bytes())));

        let got = rt.block_on(check(&a, &Hs::bearer(&token)));
        let want = expected(&keys, signer_index, &case.header, &case.claims);
        *verdicts
            .borrow_mut()
            .entry(refusal(&got).unwrap_or("accepted").to_owned())
            .or_insert(0u64) += 1;
        match (&got, &want) {
            (Ok(id), Ok((principal, expires))) => {
                prop_assert_eq!(&id.principal_id, principal);
                prop_assert_eq!(id.expires_at, Some(*expires));
            }
            (Err(AuthError::Denied(got)), Err(want)) => prop_assert_eq!(got, want),
            _ => prop_assert!(false, "got {:?}, the model says {:?}", got, want),
        }

        // Any one byte changed: refused, whatever the original's verdict.
        let mut bytes = token.clone().into_bytes();
        let at = case.mutate_at % bytes.len();
        let to = if case.mutate_to == bytes[at] {
            case.mutate_to.wrapping_add(1)
        } else {
            case.mutate_to
        };
        bytes[at] = to;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let r = rt.block_on(check(&a, &Hs::new().query("token", &mutated)));
        prop_assert!(
            r.is_err(),
            "byte {} of {:?} changed to {:#04x}: accepted",
            at,
            token,
            to
        );
        prop_assert!(refusal(&r).is_some_and(|why| REASONS.iter().any(|r| r.reason() == why)));
        Ok(())
    });
    println!(
        "fuzz_auth_jwt_signed_tokens verdicts: {:?}",
        verdicts.borrow()
    );
}

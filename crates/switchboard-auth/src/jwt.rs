//! JSON Web Token verification, sans-IO: split and check the header, pick the keys,
//! check the signature, then the claims against a caller-given clock, and map the claims
//! to an [`Identity`].
//!
//! The order is deliberate: nothing from the payload is looked at before the signature
//! holds, so an unsigned token learns nothing but "bad signature" or the header faults.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::keys::{Alg, VerifyKey, BASE64URL, MAX_KID_BYTES};
use crate::{Identity, Refusal};

/// Tokens longer than this are refused unread. Identity-provider tokens are rarely over
/// 4 KiB; the bound keeps a hostile header from costing base64 and JSON work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Groups taken from the groups claim, at most; further entries are ignored.
pub const MAX_GROUPS: usize = 64;

/// The latest NumericDate (`exp`, `nbf`, `iat`) taken: 9999-12-31T23:59:59Z. A later or
/// negative one makes the token malformed. Clamping instead once turned an `exp` past
/// `Duration`'s range into the Unix epoch, and one past `SystemTime`'s range panicked;
/// the bound also keeps every expiry representable as epoch milliseconds downstream.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// What a token must satisfy beyond its signature, and how its claims map to an identity.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) algorithms: Vec<Alg>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Vec<String>,
    pub(crate) leeway_secs: u64,
    pub(crate) user_id_claim: String,
    pub(crate) groups_claim: Option<String>,
}

/// The protected header, as far as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
}

/// A token whose header passed; its signature is not checked yet.
#[derive(Debug)]
pub(crate) struct Unverified<'t> {
    pub(crate) header: Header,
    /// `<header>.<payload>`, the bytes the signature covers.
    signing_input: &'t str,
    payload: &'t str,
    signature: Vec<u8>,
}

/// Splits a compact JWS and checks its header against the allowed algorithms.
pub(crate) fn parse<'t>(token: &'t str, policy: &Policy) -> Result<Unverified<'t>, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let header_json = BASE64URL.decode(header).map_err(|_| Refusal::Malformed)?;
    let header_json: Map<String, Value> =
        serde_json::from_slice(&header_json).map_err(|_| Refusal::Malformed)?;
    let Some(Value::String(alg)) = header_json.get("alg") else {
        return Err(Refusal::Malformed);
    };
    // `none` is refused whatever the configuration says, in any spelling.
    if alg.eq_ignore_ascii_case("none") {
        return Err(Refusal::AlgNone);
    }
    let alg = Alg::from_jose(alg)
        .filter(|a| policy.algorithms.contains(a))
        .ok_or(Refusal::UnsupportedAlg)?;
    // RFC 7515 §4.1.11: a critical extension the verifier does not understand must
    // fail the token, and switchboard understands none.
    if header_json.contains_key("crit") {
        return Err(Refusal::Malformed);
    }
    let kid = match header_json.get("kid") {
        None => None,
        // A longer `kid` matches no key anyway; refusing it here keeps it out of the key
        // lookup and the unknown-`kid` refresh.
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid.clone()),
        Some(_) => return Err(Refusal::Malformed),
    };
    let signature = BASE64URL
        .decode(signature)
        .map_err(|_| Refusal::Malformed)?;
    Ok(Unverified {
        header: Header { alg, kid },
        signing_input: &token[..header.len() + 1 + payload.len()],
        payload,
        signature,
    })
}

/// The keys to try for a header, and whether a key carries the header's `kid`.
///
/// With a `kid`, the keys carrying it; if none does, the keys without any `kid` (a
/// configured secret or PEM key, for issuers that set `kid` anyway). Without a `kid`,
/// every key fit for the algorithm.
pub(crate) fn select<'k>(header: &Header, sets: &[&'k [VerifyKey]]) -> (Vec<&'k VerifyKey>, bool) {
    let usable = || {
        sets.iter()
            .flat_map(|set| set.iter())
            .filter(|k| k.supports(header.alg))
    };
    match &header.kid {
        Some(kid) => {
            let by_kid: Vec<_> = usable()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if by_kid.is_empty() {
                (usable().filter(|k| k.kid.is_none()).collect(), false)
            } else {
                (by_kid, true)
            }
        }
        None => (usable().collect(), true),
    }
}

impl Unverified<'_> {
    /// Checks the signature against each candidate key; any match will do.
    pub(crate) fn verify<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k VerifyKey>,
    ) -> Result<(), Refusal> {
        let message = self.signing_input.as_bytes();
        if keys
            .into_iter()
            .any(|k| k.verify(self.header.alg, message, &self.signature))
        {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        }
    }

    /// The claims. Call only after [`Self::verify`] succeeded.
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, Refusal> {
        let json = BASE64URL
            .decode(self.payload)
            .map_err(|_| Refusal::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)
    }
}

/// Checks `exp` (required), `nbf`, `iat`, `iss` and `aud` at `now`; returns when the
/// token expires.
///
/// A token is expired from `exp + leeway` on and not yet valid before `nbf - leeway`
/// (RFC 7519: the current time must be *before* `exp`, and *on or after* `nbf`). `iat`
/// is not compared with the clock, but like `exp` and `nbf` it must be a NumericDate in
/// range when present.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    policy: &Policy,
    now: SystemTime,
) -> Result<SystemTime, Refusal> {
    let exp = match claims.get("exp") {
        None => return Err(Refusal::MissingExp),
        Some(v) => numeric_date(v)?,
    };
    let nbf = claims.get("nbf").map(numeric_date).transpose()?;
    if let Some(iat) = claims.get("iat") {
        numeric_date(iat)?;
    }
    // Every operand is finite and below 2^64, so the sums cannot overflow or lose the
    // comparison's sense; a clock before 1970 counts as the epoch.
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let leeway = policy.leeway_secs as f64;
    if now >= exp + leeway {
        return Err(Refusal::Expired);
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Refusal::NotYetValid);
    }
    if let Some(issuer) = &policy.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(Refusal::WrongIssuer);
        }
    }
    if !policy.audience.is_empty() {
        let accepted = |v: &Value| {
            v.as_str()
                .is_some_and(|a| policy.audience.iter().any(|x| x == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !ok {
            return Err(Refusal::WrongAudience);
        }
    }
    // In range by `numeric_date`, so both steps succeed; checked all the same.
    Duration::try_from_secs_f64(exp)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
        .ok_or(Refusal::Malformed)
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds since the epoch, fractions
/// allowed, from 0 to [`MAX_NUMERIC_DATE`].
fn numeric_date(value: &Value) -> Result<f64, Refusal> {
    match value.as_f64() {
        Some(secs) if (0.0..=MAX_NUMERIC_DATE as f64).contains(&secs) => Ok(secs),
        _ => Err(Refusal::Malformed),
    }
}

/// Maps verified claims to an identity (without `integrationLatency`, which the caller
/// adds once it knows).
pub(crate) fn identity(
    claims: Map<String, Value>,
    policy: &Policy,
    expires_at: SystemTime,
    token_protocol: Option<&str>,
) -> Result<Identity, Refusal> {
    let user_id = claim_text(&claims, &policy.user_id_claim);
    let principal_id = user_id
        .clone()
        .or_else(|| claim_text(&claims, "sub"))
        .ok_or(Refusal::NoSubject)?;
    let groups = match policy.groups_claim.as_deref().and_then(|c| claims.get(c)) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) if !one.is_empty() => vec![one.clone()],
        _ => Vec::new(),
    };
    let mut context = crate::scalar_context(claims);
    context.insert("principalId".into(), Value::String(principal_id.clone()));
    Ok(Identity {
        principal_id,
        user_id,
        groups,
        context,
        expires_at: Some(expires_at),
        token_protocol: token_protocol.map(str::to_owned),
    })
}

/// A claim as text: a string as is, an integer in decimal (some issuers number users).
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy {
            algorithms: vec![Alg::Hs256],
            issuer: None,
            audience: Vec::new(),
            leeway_secs: 60,
            user_id_claim: "sub".into(),
            groups_claim: Some("groups".into()),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn b64(v: &Value) -> String {
        BASE64URL.encode(v.to_string())
    }

    #[test]
    fn leeway_edges_are_exact() {
        let p = policy();
        let check = |c: Value| check_claims(&claims(c), &p, at(NOW));
        assert!(check(json!({"exp": NOW - 59})).is_ok());
        assert_eq!(check(json!({"exp": NOW - 60})), Err(Refusal::Expired));
        assert!(check(json!({"exp": NOW + 10, "nbf": NOW + 60})).is_ok());
        assert_eq!(
            check(json!({"exp": NOW + 100, "nbf": NOW + 61})),
            Err(Refusal::NotYetValid)
        );
        // Fractional NumericDates are allowed by RFC 7519.
        assert!(check(json!({"exp": (NOW - 59) as f64 + 0.5})).is_ok());
        assert_eq!(check(json!({})), Err(Refusal::MissingExp));
        assert_eq!(check(json!({"exp": "soon"})), Err(Refusal::Malformed));
        let mut strict = policy();
        strict.leeway_secs = 0;
        let c = claims(json!({"exp": NOW}));
        assert_eq!(check_claims(&c, &strict, at(NOW)), Err(Refusal::Expired));
        assert_eq!(
            check_claims(&c, &strict, at(NOW - 1)),
            Ok(at(NOW)),
            "expires_at is exp"
        );
    }

    #[test]
    fn numeric_dates_at_the_edges_of_their_range() {
        let p = policy();
        let check = |c: Value| check_claims(&claims(c), &p, at(NOW));
        // The last second of year 9999 is taken and kept exactly, fractions included.
        let max = MAX_NUMERIC_DATE;
        assert_eq!(check(json!({"exp": max})), Ok(at(max)));
        assert_eq!(
            check(json!({"exp": max as f64 - 0.25})),
            Ok(at(max - 1) + Duration::from_millis(750))
        );
        for exp in [
            json!(max + 1),
            json!(max as f64 + 0.5),
            json!(1e19),
            json!(u64::MAX),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(-1e-300),
            json!(f64::MAX),
            json!(true),
            json!(null),
            json!("1700000000"),
            json!([NOW + 10]),
            json!({"t": NOW + 10}),
        ] {
            assert_eq!(check(json!({"exp": exp})), Err(Refusal::Malformed), "{exp}");
            // The same values as nbf or iat, beside a good exp.
            for name in ["nbf", "iat"] {
                let mut c = json!({"exp": NOW + 100});
                c[name] = exp.clone();
                assert_eq!(check(c), Err(Refusal::Malformed), "{name} = {exp}");
            }
        }
        // Zero (and negative zero) are times: long past.
        assert_eq!(check(json!({"exp": 0})), Err(Refusal::Expired));
        assert_eq!(check(json!({"exp": -0.0})), Err(Refusal::Expired));
        let early = check_claims(&claims(json!({"exp": -0.0})), &p, at(1));
        assert_eq!(early, Ok(UNIX_EPOCH));
        // Serde reads a number too large for f64 as an error, not as infinity.
        assert!(serde_json::from_str::<Value>(r#"{"exp": 1e400}"#).is_err());
    }

    #[test]
    fn extreme_leeways_and_clocks_do_not_overflow() {
        let mut p = policy();
        p.leeway_secs = u64::MAX;
        // The operator's leeway is theirs to choose; it must not wrap or panic.
        let c = claims(json!({"exp": 1, "nbf": MAX_NUMERIC_DATE}));
        assert_eq!(check_claims(&c, &p, at(NOW)), Ok(at(1)));
        // A clock before 1970 counts as the epoch.
        let before_1970 = UNIX_EPOCH - Duration::from_secs(86_400);
        let p = policy();
        let c = claims(json!({"exp": 10}));
        assert_eq!(check_claims(&c, &p, before_1970), Ok(at(10)));
        assert_eq!(
            check_claims(
                &c,
                &p,
                SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into())
            ),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn kid_length_is_bounded() {
        let p = policy();
        let tok = |kid: &str| {
            format!(
                "{}.{}.c2ln",
                b64(&json!({"alg": "HS256", "kid": kid})),
                b64(&json!({}))
            )
        };
        let fits = "k".repeat(MAX_KID_BYTES);
        assert_eq!(parse(&tok(&fits), &p).unwrap().header.kid, Some(fits));
        let long = "k".repeat(MAX_KID_BYTES + 1);
        assert_eq!(parse(&tok(&long), &p).unwrap_err(), Refusal::Malformed);
    }

    #[test]
    fn issuer_and_audience() {
        let mut p = policy();
        p.issuer = Some("https://issuer".into());
        p.audience = vec!["a".into(), "b".into()];
        let check = |c: Value| check_claims(&claims(c), &p, at(NOW));
        let exp = NOW + 100;
        assert!(check(json!({"exp": exp, "iss": "https://issuer", "aud": "b"})).is_ok());
        assert!(check(json!({"exp": exp, "iss": "https://issuer", "aud": ["x", "a"]})).is_ok());
        assert_eq!(
            check(json!({"exp": exp, "iss": "https://issuer", "aud": ["x"]})),
            Err(Refusal::WrongAudience)
        );
        assert_eq!(
            check(json!({"exp": exp, "iss": "https://issuer"})),
            Err(Refusal::WrongAudience)
        );
        assert_eq!(
            check(json!({"exp": exp, "iss": "https://other", "aud": "a"})),
            Err(Refusal::WrongIssuer)
        );
        assert_eq!(
            check(json!({"exp": exp, "aud": "a"})),
            Err(Refusal::WrongIssuer)
        );
    }

    #[test]
    fn header_checks() {
        let p = policy();
        let tok = |h: Value| format!("{}.{}.c2ln", b64(&h), b64(&json!({})));
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = tok(json!({"alg": alg}));
            assert_eq!(parse(&t, &p).unwrap_err(), Refusal::AlgNone, "{alg}");
        }
        // Known but not allowed, unknown, lowercase.
        for alg in ["RS256", "HS512", "hs256"] {
            let t = tok(json!({"alg": alg}));
            assert_eq!(parse(&t, &p).unwrap_err(), Refusal::UnsupportedAlg, "{alg}");
        }
        for bad in [
            tok(json!({"typ": "JWT"})),
            tok(json!({"alg": 256})),
            tok(json!({"alg": "HS256", "kid": 1})),
            tok(json!({"alg": "HS256", "crit": ["exp"]})),
            "a.b".into(),
            "a.b.c.d.e".into(),
            "!!.e30.sig".into(),
            format!("{}.e30.!!", b64(&json!({"alg": "HS256"}))),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                parse(&bad, &p).unwrap_err(),
                Refusal::Malformed,
                "{bad:.40}"
            );
        }
        let t = tok(json!({"alg": "HS256", "kid": "k1"}));
        let u = parse(&t, &p).unwrap();
        assert_eq!(
            u.header,
            Header {
                alg: Alg::Hs256,
                kid: Some("k1".into())
            }
        );
        assert_eq!(u.signature, b"sig");
    }

    #[test]
    fn selection_by_kid() {
        let set_a = [
            VerifyKey::hmac(b"1", Some("a".into())),
            VerifyKey::hmac(b"2", Some("b".into())),
        ];
        let statics = [VerifyKey::hmac(b"3", None)];
        let sets: [&[VerifyKey]; 2] = [&statics, &set_a];
        let h = |kid: Option<&str>| Header {
            alg: Alg::Hs256,
            kid: kid.map(str::to_owned),
        };
        let (keys, known) = select(&h(Some("b")), &sets);
        assert!(known);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("b"));
        let (keys, known) = select(&h(Some("zzz")), &sets);
        assert!(!known);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, None);
        let (keys, known) = select(&h(None), &sets);
        assert!(known);
        assert_eq!(keys.len(), 3);
        let rs = Header {
            alg: Alg::Rs256,
            kid: None,
        };
        assert!(select(&rs, &sets).0.is_empty());
    }

    #[test]
    fn identity_mapping() {
        let mut p = policy();
        let c = claims(json!({
            "sub": "user-1", "exp": NOW, "email": "a@b.c", "admin": true, "n": 3,
            "aud": ["x"], "nested": {"a": 1}, "nil": null,
            "groups": ["g1", 2, "", "g2"], "principalId": "forged"
        }));
        let id = identity(c.clone(), &p, at(NOW), Some("bearer.t")).unwrap();
        assert_eq!(id.principal_id, "user-1");
        assert_eq!(id.user_id.as_deref(), Some("user-1"));
        assert_eq!(id.groups, ["g1", "g2"]);
        assert_eq!(id.expires_at, Some(at(NOW)));
        assert_eq!(id.token_protocol.as_deref(), Some("bearer.t"));
        let mut keys: Vec<_> = id.context.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["admin", "email", "exp", "n", "principalId", "sub"]);
        assert_eq!(id.context["principalId"], "user-1");

        p.user_id_claim = "uid".into();
        let mut c2 = c.clone();
        c2.insert("uid".into(), json!(42));
        let id = identity(c2, &p, at(NOW), None).unwrap();
        assert_eq!(
            (id.principal_id.as_str(), id.user_id.as_deref()),
            ("42", Some("42"))
        );
        // The user claim is absent: the principal falls back to `sub`.
        let id = identity(c, &p, at(NOW), None).unwrap();
        assert_eq!((id.principal_id.as_str(), id.user_id), ("user-1", None));
        assert_eq!(
            identity(claims(json!({"exp": NOW})), &p, at(NOW), None).unwrap_err(),
            Refusal::NoSubject
        );

        // At most MAX_GROUPS groups.
        let many: Vec<String> = (0..100).map(|i| format!("g{i}")).collect();
        let c = claims(json!({"sub": "u", "groups": many}));
        let id = identity(c, &policy(), at(NOW), None).unwrap();
        assert_eq!(id.groups.len(), MAX_GROUPS);
        assert_eq!(id.groups[63], "g63");
    }
}

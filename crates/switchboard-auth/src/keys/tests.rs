use super::spki::der_next;
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
    let size = Err(KeyError::RsaModulusSize);
    assert_eq!(rsa(&n(256, 0x7f), &f4), size, "2047 bits");
    assert_eq!(rsa(&n(1025, 0x01), &f4), size, "8193 bits");
    assert_eq!(rsa(&n(128, 0xff), &f4), size, "1024 bits");
    assert_eq!(rsa(&[0x03], &f4), size);
    let zero = Err(KeyError::RsaModulusZero);
    assert_eq!(rsa(&[], &f4), zero);
    assert_eq!(rsa(&[0; 300], &f4), zero);
    let mut even = n(256, 0x80);
    even[255] = 0xfe;
    assert_eq!(rsa(&even, &f4), Err(KeyError::RsaModulusEven));
    // Leading zeros are stripped, and the stored modulus has none (ring refuses them).
    let padded = [&[0, 0, 0][..], &n(256, 0x80)].concat();
    match rsa_material(&padded, &[0, 0, 1, 0, 1]).unwrap() {
        Material::Rsa { n, e } => assert_eq!((n.len(), e), (256, vec![1, 0, 1])),
        _ => unreachable!(),
    }
    let exponent = Err(KeyError::RsaExponent);
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

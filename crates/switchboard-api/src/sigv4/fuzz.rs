//! Fuzz targets for the SigV4 verifier: the `Authorization` header parser, the canonical
//! request builder, and the whole verifier against an independent signer.
//!
//! The reference here is written from the AWS specification ("Create a canonical request
//! for Signature Version 4"), not from the code under test, and signs with the `hmac` and
//! `sha2` crates rather than ring: a client's path segments, query parameters and headers
//! are encoded the way an SDK sends them, and signed the way an SDK signs them (the path
//! as sent, encoded once more; the query decoded, re-encoded and sorted; header values
//! trimmed with inner blanks collapsed, repeated headers joined with commas).

use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;

use super::{
    canonical_request_prefix, verify_head, Authorization, Error, Head, Request, Verified, ALGORITHM,
};

// ---- The reference ------------------------------------------------------------------------

/// RFC 3986 unreserved characters stay; every other byte becomes `%XX`, uppercase.
fn ref_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` decoded; a `%` without two hex digits after it is an ordinary character.
fn ref_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn ref_canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = match p.find('=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, ""),
            };
            (
                ref_encode(&ref_decode(n), false),
                ref_encode(&ref_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value with leading and trailing blanks removed and inner runs of blanks made
/// one space.
fn ref_trim(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

/// The canonical request, or `None` when a signed header is absent.
fn ref_canonical_request(
    method: &str,
    wire_path: &str,
    wire_query: &str,
    headers: &HeaderMap,
    signed: &[String],
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut c = Vec::new();
    c.extend_from_slice(method.as_bytes());
    c.push(b'\n');
    c.extend_from_slice(ref_encode(wire_path.as_bytes(), true).as_bytes());
    c.push(b'\n');
    c.extend_from_slice(ref_canonical_query(wire_query).as_bytes());
    c.push(b'\n');
    for name in signed {
        let values: Vec<Vec<u8>> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| ref_trim(v.as_bytes()))
            .collect();
        if values.is_empty() {
            return None;
        }
        c.extend_from_slice(name.as_bytes());
        c.push(b':');
        c.extend_from_slice(&values.join(&b","[..]));
        c.push(b'\n');
    }
    c.push(b'\n');
    c.extend_from_slice(signed.join(";").as_bytes());
    c.push(b'\n');
    c.extend_from_slice(payload);
    Some(c)
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature of a canonical request, as an SDK computes it.
fn ref_signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical: &[u8],
) -> String {
    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical))
    );
    let mut key = mac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    hex(&mac(&key, to_sign.as_bytes()))
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (civil from days, Howard Hinnant's).
fn amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Whether a received path has a segment that is `.` or `..` once decoded.
fn ref_has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|s| matches!(ref_decode(s).as_slice(), b"." | b".."))
}

// ---- Generators ---------------------------------------------------------------------------

/// Characters of names, paths and values a signer must encode, made common.
fn url_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => prop::char::range('0', '9'),
        1 => prop::char::range('A', 'Z'),
        4 => prop::sample::select(vec![
            '-', '.', '_', '~', '@', '=', '/', '+', ' ', '%', '&', '?', '#', ':', '*', '\'',
            '"', ';', ',', '!', '$',
        ]),
        1 => Just('é'),
        1 => Just('\u{1234}'),
        1 => any::<char>(),
    ]
}

fn url_text(min: usize, max: usize) -> impl Strategy<Value = String> {
    vec(url_char(), min..=max).prop_map(|c| c.into_iter().collect())
}

/// A header value: visible ASCII and blanks in any arrangement, sometimes obs-text.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => 0x21u8..0x7f,
        3 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    vec(byte, 0..24)
}

/// A request as a client means it: logical path segments, query parameters and headers,
/// before any encoding.
#[derive(Debug, Clone)]
struct Logical {
    method: &'static str,
    segments: Vec<String>,
    trailing_slash: bool,
    params: Vec<(String, String)>,
    /// (name, values, signed): extra headers.
    headers: Vec<(String, Vec<Vec<u8>>, bool)>,
    body: Vec<u8>,
    payload: PayloadMode,
    region: String,
    secret: String,
    signed_at: u64,
    /// Where the network cuts the body.
    cuts: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
enum PayloadMode {
    /// No `x-amz-content-sha256`: the body's hash ends the canonical request.
    Absent,
    /// `x-amz-content-sha256` with the body's hash, signed.
    Declared,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`, signed.
    Unsigned,
}

fn logical() -> impl Strategy<Value = Logical> {
    let header_name = prop::sample::select(vec![
        "x-a",
        "x-b",
        "content-type",
        "x-amz-user-agent",
        "amz-sdk-request",
        "zz",
    ]);
    (
        prop::sample::select(vec!["GET", "POST", "DELETE", "PUT"]),
        vec(
            prop_oneof![8 => url_text(1, 12), 1 => Just(".".to_owned()), 1 => Just("..".to_owned())],
            0..5,
        ),
        any::<bool>(),
        vec((url_text(0, 8), url_text(0, 8)), 0..5),
        vec(
            (header_name, vec(header_value(), 1..3), any::<bool>()),
            0..4,
        ),
        vec(any::<u8>(), 0..200),
        prop_oneof![
            Just(PayloadMode::Absent),
            Just(PayloadMode::Declared),
            Just(PayloadMode::Unsigned)
        ],
        "[a-z0-9-]{1,14}",
        "[ -~]{1,40}",
        // 1970 to 2100.
        0u64..4_102_444_800,
        vec(any::<usize>(), 0..6),
    )
        .prop_map(
            |(
                method,
                segments,
                trailing_slash,
                params,
                headers,
                body,
                payload,
                region,
                secret,
                signed_at,
                cuts,
            )| {
                // One entry per name (values of a repeated header are in its list).
                let mut seen = Vec::new();
                let headers = headers
                    .into_iter()
                    .filter(|(n, _, _)| {
                        let fresh = !seen.contains(n);
                        seen.push(*n);
                        fresh
                    })
                    .map(|(n, v, s)| (n.to_owned(), v, s))
                    .collect();
                Logical {
                    method,
                    segments,
                    trailing_slash,
                    params,
                    headers,
                    body,
                    payload,
                    region,
                    secret,
                    signed_at,
                    cuts,
                }
            },
        )
}

const AKID: &str = "AKIDFUZZ";
const SERVICE: &str = "execute-api";

/// A request on the wire, signed by the reference signer.
#[derive(Debug, Clone)]
struct Wire {
    method: &'static str,
    path: String,
    query: String,
    headers: HeaderMap,
    signed: Vec<String>,
    body: Vec<u8>,
    /// The canonical request that was signed.
    canonical: Vec<u8>,
}

fn sign(l: &Logical) -> Wire {
    // What the SDK sends: each segment encoded once.
    let mut path = String::from("/");
    path.push_str(
        &l.segments
            .iter()
            .map(|s| ref_encode(s.as_bytes(), false))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if l.trailing_slash && !l.segments.is_empty() {
        path.push('/');
    }
    let query = l
        .params
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                ref_encode(n.as_bytes(), false),
                ref_encode(v.as_bytes(), false)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let date = amz_date(l.signed_at);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("gateway.example:9090"));
    headers.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
    let mut signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
    for (name, values, is_signed) in &l.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        for v in values {
            headers.append(name.clone(), HeaderValue::from_bytes(v).unwrap());
        }
        if *is_signed {
            signed.push(name.as_str().to_owned());
        }
    }
    let body_hash = hex(&Sha256::digest(&l.body));
    let payload = match l.payload {
        PayloadMode::Absent => body_hash,
        PayloadMode::Declared => body_hash,
        PayloadMode::Unsigned => "UNSIGNED-PAYLOAD".to_owned(),
    };
    if !matches!(l.payload, PayloadMode::Absent) {
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_str(&payload).unwrap(),
        );
        signed.push("x-amz-content-sha256".to_owned());
    }
    signed.sort();
    let canonical = ref_canonical_request(
        l.method,
        &path,
        &query,
        &headers,
        &signed,
        payload.as_bytes(),
    )
    .expect("every signed header is present");
    let signature = ref_signature(&l.secret, &date, &l.region, SERVICE, &canonical);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{}/{}/{SERVICE}/aws4_request, SignedHeaders={}, Signature={signature}",
        &date[..8],
        l.region,
        signed.join(";")
    );
    headers.insert(
        "authorization",
        HeaderValue::from_str(&authorization).unwrap(),
    );
    Wire {
        method: l.method,
        path,
        query,
        headers,
        signed,
        body: l.body.clone(),
        canonical,
    }
}

/// Verifies a wire request with the body fed in the pieces `cuts` make.
fn check(l: &Logical, w: &Wire, cuts: &[usize]) -> Result<Verified, Error> {
    let head = Head {
        method: w.method,
        raw_path: &w.path,
        raw_query: (!w.query.is_empty()).then_some(w.query.as_str()),
        headers: &w.headers,
    };
    let secret = |akid: &str| (akid == AKID).then(|| l.secret.clone());
    let now = UNIX_EPOCH + Duration::from_secs(l.signed_at);
    let mut pending = verify_head(&head, secret, now, Duration::from_secs(300))?;
    for piece in switchboard_fuzz::split_at_points(&w.body, cuts) {
        pending.update(piece);
    }
    pending.finish()
}

/// What the verifier must answer for `w` (possibly altered after signing), by the
/// reference: dot segments refused; otherwise accepted exactly when the canonical request
/// of what arrived, as received or with empty path segments dropped, is the one signed
/// and the body is the one its payload hash names.
fn expected(w: &Wire) -> Result<(), &'static str> {
    if ref_has_dot_segment(&w.path) {
        return Err("dot segment");
    }
    let payload = match w.headers.get("x-amz-content-sha256") {
        Some(v) => v.as_bytes().to_vec(),
        None => hex(&Sha256::digest(&w.body)).into_bytes(),
    };
    if let Some(declared) = w.headers.get("x-amz-content-sha256") {
        let declared = declared.as_bytes();
        if declared != b"UNSIGNED-PAYLOAD"
            && !declared.eq_ignore_ascii_case(hex(&Sha256::digest(&w.body)).as_bytes())
        {
            return Err("payload hash");
        }
    }
    let collapsed = {
        let segs: Vec<&str> = w.path.split('/').filter(|s| !s.is_empty()).collect();
        let lead = if w.path.starts_with('/') { "/" } else { "" };
        let mut p = format!("{lead}{}", segs.join("/"));
        if w.path.ends_with('/') && !segs.is_empty() {
            p.push('/');
        }
        p
    };
    let matches = [w.path.as_str(), collapsed.as_str()].iter().any(|path| {
        ref_canonical_request(w.method, path, &w.query, &w.headers, &w.signed, &payload)
            .is_some_and(|c| c == w.canonical)
    });
    if matches {
        Ok(())
    } else {
        Err("canonical request differs")
    }
}

// ---- Targets ------------------------------------------------------------------------------

/// Authorization headers: arbitrary bytes, and well-formed ones taken apart and put back
/// with arbitrary blanks, duplicated, dropped or reordered parts and bytes changed.
fn authorization_input() -> impl Strategy<Value = Vec<u8>> {
    let scope_part = prop_oneof![
        4 => "[A-Z0-9]{1,20}",
        1 => url_text(0, 10),
    ];
    let well_formed = (
        scope_part,
        prop_oneof![4 => "[0-9]{8}", 1 => url_text(0, 9)],
        prop_oneof![4 => "[a-z0-9-]{1,12}", 1 => url_text(0, 6)],
        prop_oneof![4 => Just("execute-api".to_owned()), 1 => url_text(0, 6)],
        prop_oneof![4 => Just("aws4_request".to_owned()), 1 => url_text(0, 6)],
        prop_oneof![4 => "[a-z0-9-]{1,10}(;[a-z0-9-]{1,10}){0,4}", 1 => url_text(0, 20)],
        prop_oneof![4 => "[0-9a-f]{64}", 1 => "[0-9a-fA-F]{60,66}", 1 => url_text(0, 8)],
        vec(prop::sample::select(vec!["", " ", "  ", "\t", " \t "]), 6),
        any::<u8>(),
    )
        .prop_map(
            |(akid, date, region, service, term, signed, sig, blanks, order)| {
                let mut parts = vec![
                    format!("Credential={akid}/{date}/{region}/{service}/{term}"),
                    format!("SignedHeaders={signed}"),
                    format!("Signature={sig}"),
                ];
                match order % 8 {
                    0 => parts.swap(0, 2),
                    1 => parts.push(parts[0].clone()),
                    2 => {
                        parts.pop();
                    }
                    3 => parts.push("Extra=1".to_owned()),
                    _ => {}
                }
                let joined = parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("{}{p}{}", blanks[i % 6], blanks[(i + 3) % 6]))
                    .collect::<Vec<_>>()
                    .join(",");
                format!("{}{ALGORITHM} {joined}{}", blanks[4], blanks[5]).into_bytes()
            },
        );
    prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        4 => well_formed.clone(),
        2 => (well_formed, any::<usize>(), any::<u8>()).prop_map(|(mut v, at, b)| {
            let i = at % v.len();
            v[i] = b;
            v
        }),
    ]
}

#[test]
fn fuzz_api_sigv4_authorization_header() {
    switchboard_fuzz::run(
        "fuzz_api_sigv4_authorization_header",
        120000,
        authorization_input(),
        |input| {
            let Ok(auth) = Authorization::parse(&input) else {
                return Ok(());
            };
            // What was accepted is well formed...
            prop_assert!(!auth.access_key_id.is_empty() && !auth.access_key_id.contains('/'));
            prop_assert!(auth.date.len() == 8 && auth.date.bytes().all(|b| b.is_ascii_digit()));
            prop_assert!(!auth.region.is_empty() && !auth.region.contains('/'));
            prop_assert!(!auth.service.is_empty() && !auth.service.contains('/'));
            prop_assert!(auth.signed_headers.split(';').all(|h| !h.is_empty()
                && h.bytes()
                    .all(|b| !b.is_ascii_uppercase() && b > b' ' && b != b',')));
            // ...and the canonical rendering of it parses to the same parts.
            let rendered = format!(
                "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
                auth.access_key_id,
                auth.date,
                auth.region,
                auth.service,
                auth.signed_headers,
                hex(&auth.signature)
            );
            let again = Authorization::parse(rendered.as_bytes());
            prop_assert!(again.is_ok(), "{rendered}");
            let again = again.unwrap();
            prop_assert_eq!(
                (again.access_key_id, again.date, again.region, again.service),
                (auth.access_key_id, auth.date, auth.region, auth.service)
            );
            prop_assert_eq!(again.signed_headers, auth.signed_headers);
            prop_assert_eq!(again.signature, auth.signature);
            Ok(())
        },
    );
}

/// Raw request targets and headers of any shape: the builder never panics, is
/// deterministic, and agrees byte for byte with the reference.
#[test]
fn fuzz_api_sigv4_canonical_request() {
    let input = (
        prop::sample::select(vec!["GET", "POST", "DELETE", "M-SEARCH"]),
        prop_oneof![3 => url_text(0, 30), 1 => any::<String>()],
        prop_oneof![3 => url_text(0, 30), 1 => any::<String>()],
        vec(
            (
                prop::sample::select(vec!["host", "x-a", "x-b", "x-amz-date", "c"]),
                header_value(),
            ),
            0..6,
        ),
        vec(
            prop::sample::select(vec!["host", "x-a", "x-b", "x-amz-date", "c", "absent"]),
            1..4,
        ),
        "[0-9a-f]{64}|UNSIGNED-PAYLOAD",
    );
    switchboard_fuzz::run(
        "fuzz_api_sigv4_canonical_request",
        80000,
        input,
        |(method, path, query, header_list, signed, payload)| {
            let mut headers = HeaderMap::new();
            for (name, value) in &header_list {
                headers.append(*name, HeaderValue::from_bytes(value).unwrap());
            }
            let signed: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
            let signed_line = signed.join(";");
            let head = Head {
                method,
                raw_path: &path,
                raw_query: Some(&query),
                headers: &headers,
            };
            let built = canonical_request_prefix(&head, &path, &signed_line).map(|mut c| {
                c.extend_from_slice(payload.as_bytes());
                c
            });
            let again = canonical_request_prefix(&head, &path, &signed_line).map(|mut c| {
                c.extend_from_slice(payload.as_bytes());
                c
            });
            prop_assert_eq!(&built, &again);
            let reference =
                ref_canonical_request(method, &path, &query, &headers, &signed, payload.as_bytes());
            match (built, reference) {
                (Ok(b), Some(r)) => {
                    prop_assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(&r))
                }
                (Err(Error::SignedHeaderMissing), None) => {}
                (b, r) => prop_assert!(false, "builder {b:?}, reference {r:?}"),
            }
            Ok(())
        },
    );
}

/// Which part of a signed request is changed after signing.
#[derive(Debug, Clone, Copy)]
enum Part {
    Path,
    Query,
    SignedHeader,
    Body,
}

/// Requests signed by the reference signer verify, whatever pieces the body arrives in;
/// after any single-byte change to the path, the query, a signed header's value or the
/// body, the verifier answers what the reference says: refused unless the change leaves
/// the canonical request (and the body's hash, when it is covered) as signed.
#[test]
fn fuzz_api_sigv4_independent_signer() {
    let mutation = (
        prop_oneof![
            Just(Part::Path),
            Just(Part::Query),
            Just(Part::SignedHeader),
            Just(Part::Body)
        ],
        any::<usize>(),
        any::<usize>(),
        prop_oneof![
            6 => 0x21u8..0x7f,
            1 => prop::sample::select(vec![b'/', b'.', b'%', b'&', b'=', b' ', b'\t']),
            1 => any::<u8>(),
        ],
    );
    switchboard_fuzz::run(
        "fuzz_api_sigv4_independent_signer",
        30000,
        (logical(), mutation),
        |(l, (part, which, at, byte))| {
            let w = sign(&l);
            let verdict = check(&l, &w, &l.cuts);
            if ref_has_dot_segment(&w.path) {
                prop_assert_eq!(verdict, Err(Error::DotSegmentPath));
                return Ok(());
            }
            prop_assert_eq!(
                verdict,
                Ok(Verified {
                    access_key_id: AKID.to_owned(),
                    region: l.region.clone(),
                })
            );
            let mut m = w.clone();
            match part {
                Part::Path => {
                    if !byte.is_ascii() {
                        return Ok(());
                    }
                    let mut p = m.path.into_bytes();
                    let i = at % p.len();
                    p[i] = byte;
                    m.path = String::from_utf8(p).unwrap();
                }
                Part::Query => {
                    if m.query.is_empty() || !byte.is_ascii() {
                        return Ok(());
                    }
                    let mut q = m.query.into_bytes();
                    let i = at % q.len();
                    q[i] = byte;
                    m.query = String::from_utf8(q).unwrap();
                }
                Part::SignedHeader => {
                    let name = &m.signed[which % m.signed.len()];
                    let values: Vec<HeaderValue> =
                        m.headers.get_all(name.as_str()).iter().cloned().collect();
                    let v = which / m.signed.len() % values.len();
                    let mut bytes = values[v].as_bytes().to_vec();
                    if bytes.is_empty() {
                        bytes.push(byte);
                    } else {
                        let i = at % bytes.len();
                        bytes[i] = byte;
                    }
                    let Ok(changed) = HeaderValue::from_bytes(&bytes) else {
                        return Ok(());
                    };
                    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                    m.headers.remove(&name);
                    for (j, value) in values.into_iter().enumerate() {
                        let value = if j == v { changed.clone() } else { value };
                        m.headers.append(name.clone(), value);
                    }
                }
                Part::Body => {
                    if m.body.is_empty() {
                        m.body.push(byte);
                    } else {
                        let i = at % m.body.len();
                        m.body[i] = byte;
                    }
                }
            }
            let verdict = check(&l, &m, &l.cuts);
            match expected(&m) {
                Ok(()) => prop_assert!(verdict.is_ok(), "{verdict:?} for {m:?}"),
                Err(why) => prop_assert!(verdict.is_err(), "accepted ({why}): {m:?}"),
            }
            // The whole-body entry point agrees with the streaming one.
            let req = Request {
                method: m.method,
                raw_path: &m.path,
                raw_query: (!m.query.is_empty()).then_some(m.query.as_str()),
                headers: &m.headers,
                body: &m.body,
            };
            let whole = super::verify(
                &req,
                |akid| (akid == AKID).then(|| l.secret.clone()),
                UNIX_EPOCH + Duration::from_secs(l.signed_at),
                Duration::from_secs(300),
            );
            prop_assert_eq!(whole, verdict);
            Ok(())
        },
    );
}

#[test]
fn reference_signer_reproduces_an_aws_suite_vector() {
    // get-vanilla from the AWS SigV4 test suite: the reference itself is right.
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    let signed = ["host".to_owned(), "x-amz-date".to_owned()];
    let empty = hex(&Sha256::digest(b""));
    let c = ref_canonical_request("GET", "/", "", &headers, &signed, empty.as_bytes()).unwrap();
    assert_eq!(
        ref_signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "us-east-1",
            "service",
            &c
        ),
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
    assert_eq!(amz_date(0), "19700101T000000Z");
}

/// `x-amz-date` (`sigv4/date.rs`): every instant from 1970 to 9999 renders and parses back
/// to itself, and an arbitrary or digit-shaped string either is refused or is exactly the
/// rendering of the instant it parses to (so no impossible date, like February 30, is
/// accepted and shifted).
#[test]
fn fuzz_api_sigv4_amz_date() {
    use std::time::{Duration, UNIX_EPOCH};
    let text = prop_oneof![".{0,20}", "[0-9]{8}T[0-9]{6}Z"];
    switchboard_fuzz::run(
        "fuzz_api_sigv4_amz_date",
        40_000,
        (0u64..253_402_300_800, text),
        |(secs, s)| {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            prop_assert_eq!(super::parse_amz_date(&amz_date(secs)), Some(t));
            if let Some(parsed) = super::parse_amz_date(&s) {
                let back = parsed.duration_since(UNIX_EPOCH).unwrap().as_secs();
                prop_assert_eq!(amz_date(back), s);
            }
            Ok(())
        },
    );
}

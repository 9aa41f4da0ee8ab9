//! The doors' bounds, end to end against the real binary: request heads on both listeners
//! (431 past the bound, hyper's own answer), management credentials judged from the head
//! before any of the body is sent (403 while the client still holds its body back), the
//! SigV4 payload hash checked as the body streams, and paths with dot segments refused
//! (400) so that a signature reaches only the route it names.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::function_server::{proxy, FunctionServer};
use common::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "limits-test-token-0123456789";
const AKID: &str = "AKIDLIMITSTEST";
const SECRET: &str = "limits/test/secret/0123456789";

/// The longest a refusal may take: the old code never answered these at all.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Sends `bytes` without waiting for the write to finish (the server may stop reading
/// and close first) and returns the answer's head, or `None` if none came in time.
async fn answer_to(addr: SocketAddr, bytes: Vec<u8>) -> Option<String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        // Held open: a client that stops here has not sent its body.
        wr
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut chunk = [0u8; 4096];
        loop {
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    if read.is_err() || got.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

async fn status_of(addr: SocketAddr, bytes: Vec<u8>) -> u16 {
    match answer_to(addr, bytes).await {
        Some(head) => parse_status(&head).0,
        None => 0,
    }
}

/// `start` (a request line and headers, each ending in CRLF) padded with an `X-Pad`
/// header to exactly `len` bytes of head, final CRLF included.
fn padded(start: &str, len: usize) -> Vec<u8> {
    let fixed = start.len() + "X-Pad: \r\n\r\n".len();
    assert!(len > fixed, "head of {len} bytes cannot hold {start:?}");
    format!("{start}X-Pad: {}\r\n\r\n", "a".repeat(len - fixed)).into_bytes()
}

/// `start` with `X-N` headers added up to `count` header lines in all.
fn with_headers(start: &str, count: usize) -> Vec<u8> {
    let have = start.matches("\r\n").count() - 1;
    let mut head = start.to_owned();
    for i in have..count {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

const HANDSHAKE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
const STATIC_GET: &str = "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";

fn static_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sb-limits-static-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
    dir
}

/// The three doors a request head can knock on: (name, address, request start, status
/// when admitted).
fn doors(gw: &Gateway) -> [(&'static str, SocketAddr, &'static str, u16); 3] {
    [
        ("handshake", gw.ws, HANDSHAKE, 101),
        ("static GET", gw.ws, STATIC_GET, 200),
        ("management", gw.mgmt, HEALTHZ, 200),
    ]
}

#[tokio::test]
async fn oversized_request_heads_get_431_on_both_listeners() {
    let dir = static_dir();
    let gw = Gateway::start(&format!(
        "{ECHO_ROUTES}\n[static]\ndir = {:?}\n",
        dir.to_str().unwrap()
    ));
    let mut refused = [0.0f64; 2];
    for (door, addr, start, admitted) in doors(&gw) {
        let listener = usize::from(addr == gw.mgmt);
        // Within the default bound of 16 KiB: served.
        for len in [15 * 1024, 16 * 1024] {
            assert_eq!(
                status_of(addr, padded(start, len)).await,
                admitted,
                "{door}: a head of {len} bytes"
            );
        }
        assert_eq!(
            status_of(addr, with_headers(start, 100)).await,
            admitted,
            "{door}: 100 header lines"
        );
        // Past it, by a byte, by a few KiB, and by a 100 KB header: 431.
        for len in [16 * 1024 + 1, 20 * 1024, 100 * 1024] {
            assert_eq!(
                status_of(addr, padded(start, len)).await,
                431,
                "{door}: a head of {len} bytes"
            );
            refused[listener] += 1.0;
        }
        for count in [101, 150] {
            assert_eq!(
                status_of(addr, with_headers(start, count)).await,
                431,
                "{door}: {count} header lines"
            );
            refused[listener] += 1.0;
        }
    }
    assert_eq!(
        gw.metric("switchboard_handshakes_rejected_total{reason=\"head_too_large\"}")
            .await,
        refused[0]
    );
    assert_eq!(
        gw.metric("switchboard_management_refused_total{reason=\"head_too_large\"}")
            .await,
        refused[1]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn request_head_bounds_follow_the_config() {
    let dir = static_dir();
    let gw = Gateway::start(&format!(
        "{ECHO_ROUTES}\n[static]\ndir = {:?}\n[limits]\nmax_request_head_bytes = 4096\nmax_request_headers = 20\n[management]\nmax_request_head_bytes = 2048\nmax_request_headers = 10\n",
        dir.to_str().unwrap()
    ));
    for (door, addr, start, admitted) in doors(&gw) {
        let (bytes, lines) = if addr == gw.mgmt {
            (2048, 10)
        } else {
            (4096, 20)
        };
        for (head, status) in [
            (padded(start, bytes), admitted),
            (padded(start, bytes + 1), 431),
            (with_headers(start, lines), admitted),
            (with_headers(start, lines + 1), 431),
        ] {
            assert_eq!(status_of(addr, head).await, status, "{door}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ---- Credentials before the body --------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn amz_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant).
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

/// SigV4 as botocore signs for `execute-api`: `signed_path` is the path as sent after the
/// SDK resolved it, encoded once more; `declared` adds a signed `x-amz-content-sha256`.
/// Returns the headers to send (each ending in CRLF).
fn sigv4_headers(
    method: &str,
    signed_path: &str,
    body_signed: &[u8],
    declared: bool,
    akid: &str,
    secret: &str,
    at: SystemTime,
) -> String {
    let date = amz_date(at);
    let day = &date[..8];
    let mut canonical_path = String::new();
    for b in signed_path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            canonical_path.push(char::from(b));
        } else {
            canonical_path.push_str(&format!("%{b:02X}"));
        }
    }
    let payload = hex(&Sha256::digest(body_signed));
    let (extra, signed) = if declared {
        (
            format!("x-amz-content-sha256:{payload}\n"),
            "host;x-amz-content-sha256;x-amz-date",
        )
    } else {
        (String::new(), "host;x-amz-date")
    };
    let canonical = format!(
        "{method}\n{canonical_path}\n\nhost:x\n{extra}x-amz-date:{date}\n\n{signed}\n{payload}"
    );
    let scope = format!("{day}/eu-west-3/execute-api/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = mac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in ["eu-west-3", "execute-api", "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    let signature = hex(&mac(&key, to_sign.as_bytes()));
    let mut out = format!(
        "X-Amz-Date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={signed}, Signature={signature}\r\n"
    );
    if declared {
        out.push_str(&format!("X-Amz-Content-Sha256: {payload}\r\n"));
    }
    out
}

fn management_gateway(extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[management]
bearer_tokens = ["{TOKEN}"]
[[management.credentials]]
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
{extra}
"#
    ))
}

/// A connection id of this shape that no node holds.
const NOBODY: &str = "AAAAAAAAAAAAAAAAAAAAAA";

#[tokio::test]
async fn credentials_are_refused_before_the_body_is_sent() {
    let gw = Gateway::start(&format!(
        r#"
{ECHO_ROUTES}
[management]
bearer_tokens = ["{TOKEN}"]
[[management.credentials]]
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
"#
    ));
    let now = SystemTime::now();
    let targets = [
        "/v1/broadcast".to_owned(),
        "/v1/batch".to_owned(),
        format!("/prod/@connections/{NOBODY}"),
    ];
    let mut refused = 0.0;
    for path in &targets {
        let credentials = [
            ("no credentials", String::new()),
            (
                "a wrong bearer token",
                "Authorization: Bearer not-the-token-0123456789\r\n".to_owned(),
            ),
            (
                "an unknown access key",
                sigv4_headers("POST", path, b"", false, "AKIDNOBODY", SECRET, now),
            ),
            (
                "a stale signature",
                sigv4_headers(
                    "POST",
                    path,
                    b"",
                    false,
                    AKID,
                    SECRET,
                    now - Duration::from_secs(3600),
                ),
            ),
            (
                "a malformed SigV4 header",
                format!(
                    "X-Amz-Date: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={AKID}/garbage\r\n",
                    amz_date(now)
                ),
            ),
            (
                "a declared payload hash under a wrong signature",
                sigv4_headers("POST", path, b"x", true, AKID, "not-the-secret", now),
            ),
        ];
        // Under every body limit (so a server must wait for it), and far over them all.
        for length in [100_000u64, 1 << 30] {
            for (what, headers) in &credentials {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
                );
                let answer = answer_to(gw.mgmt, head.into_bytes())
                    .await
                    .unwrap_or_else(|| {
                        panic!("{path} with {what}: no answer while the body was held back")
                    });
                assert_eq!(parse_status(&answer).0, 403, "{path} with {what}: {answer}");
                assert_eq!(
                    header(&answer, "x-amzn-errortype").as_deref(),
                    Some("ForbiddenException"),
                    "{path} with {what}"
                );
                refused += 1.0;
            }
        }
        // A caller that may call, announcing more than the route takes: 413 at once.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
            1u64 << 30
        );
        let answer = answer_to(gw.mgmt, head.into_bytes()).await;
        assert_eq!(answer.map(|a| parse_status(&a).0), Some(413), "{path}");
    }
    assert_eq!(
        gw.metric("switchboard_management_refused_total{reason=\"forbidden\"}")
            .await,
        refused
    );
    assert_eq!(
        gw.metric("switchboard_management_refused_total{reason=\"body_too_large\"}")
            .await,
        targets.len() as f64
    );
}

/// Sends a whole request and returns (status, x-amzn-errortype, body).
async fn call(addr: SocketAddr, head: String, body: &[u8]) -> (u16, Option<String>, String) {
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let answer = raw_request(addr, &bytes).await;
    let (status, text) = parse_status(&answer);
    (status, header(&answer, "x-amzn-errortype"), text)
}

#[tokio::test]
async fn a_body_that_is_not_what_was_signed_is_refused() {
    let gw = management_gateway("");
    let path = format!("/prod/@connections/{NOBODY}");
    let now = SystemTime::now();
    // A short body, and one of 120,000 bytes (under max_message_bytes) that arrives in
    // many pieces.
    let long: Vec<u8> = (0..120_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut refused = 0.0;
    for body in [b"hello".to_vec(), long] {
        let mut other = body.clone();
        *other.last_mut().unwrap() ^= 1;
        for declared in [true, false] {
            let signed = sigv4_headers("POST", &path, &body, declared, AKID, SECRET, now);
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{signed}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            // The body it was signed for passes the door (no such connection: 410).
            let (status, kind, text) = call(gw.mgmt, head.clone(), &body).await;
            assert_eq!(
                (status, kind.as_deref()),
                (410, Some("GoneException")),
                "{} bytes, declared: {declared}: {text}",
                body.len()
            );
            // Another body of the same length does not.
            let (status, kind, text) = call(gw.mgmt, head, &other).await;
            assert_eq!(
                (status, kind.as_deref()),
                (403, Some("ForbiddenException")),
                "{} bytes, declared: {declared}",
                body.len()
            );
            let why = if declared {
                "x-amz-content-sha256 does not match the request body"
            } else {
                "The request signature does not match"
            };
            assert!(text.contains(why), "{text}");
            refused += 1.0;
        }
    }
    assert_eq!(
        gw.metric("switchboard_management_refused_total{reason=\"body_not_signed\"}")
            .await,
        refused
    );
}

// ---- Dot segments ------------------------------------------------------------------------

#[tokio::test]
async fn a_signature_for_one_path_does_not_reach_a_dot_segment_path() {
    // $connect tells the test its connection id.
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = Gateway::start(&format!(
        r#"
[management]
[[management.credentials]]
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
[functions.f]
kind = "http"
url = "{}"
[routes."$connect"]
function = "f"
"#,
        fs.url()
    ));
    let _client = connect(gw.ws).await;
    let id = fs.wait_for("CONNECT", 1).await[0]["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_string();
    let now = SystemTime::now();
    let put = |sent: &str, signed_for: &str| {
        format!(
            "PUT {sent} HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\nConnection: close\r\n\r\n",
            sigv4_headers("PUT", signed_for, b"", false, AKID, SECRET, now)
        )
    };
    // A signature for `/v1/members/{id}` (no such route), sent to a path that resolves to
    // it but routes to "join the group `..`".
    let signed_for = format!("/v1/members/{id}");
    for sent in [
        format!("/v1/groups/../members/{id}"),
        format!("/v1/groups/%2e%2E/members/{id}"),
        format!("/v1/groups/x/./../../members/{id}"),
    ] {
        let (status, kind, text) = call(gw.mgmt, put(&sent, &signed_for), b"").await;
        assert_eq!(
            (status, kind.as_deref()),
            (400, Some("BadRequestException")),
            "{sent}: {text}"
        );
    }
    // Whatever the signature, and on every listener path.
    for sent in [
        format!("/prod/@connections/./{id}"),
        format!("/prod/x/../@connections/{id}"),
        "/./healthz".to_owned(),
        "/metrics/..".to_owned(),
    ] {
        let (status, kind, _) = call(
            gw.mgmt,
            format!("GET {sent} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            b"",
        )
        .await;
        assert_eq!(
            (status, kind.as_deref()),
            (400, Some("BadRequestException")),
            "{sent}"
        );
    }
    // Empty segments are dropped before routing, the way the signer dropped them: a
    // signature for `/v1/groups/members/{id}` (no such route) sent to
    // `/v1/groups//members/{id}` does not join the group "".
    let signed_for = format!("/v1/groups/members/{id}");
    let sent = format!("/v1/groups//members/{id}");
    let (status, kind, text) = call(gw.mgmt, put(&sent, &signed_for), b"").await;
    assert_eq!(
        (status, kind.as_deref()),
        (404, Some("NotFoundException")),
        "{sent}: {text}"
    );
    let get = |sent: &str, signed_for: &str| {
        format!(
            "GET {sent} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            sigv4_headers("GET", signed_for, b"", false, AKID, SECRET, now)
        )
    };
    // What the JS SDK sends for an endpoint with a trailing slash still works, signed as
    // the SDK signs it (empty segment dropped) or as sent.
    let collapsed = format!("/prod/@connections/{id}");
    let sent = format!("/prod//@connections/{id}");
    for signed_for in [&collapsed, &sent] {
        let (status, _, text) = call(gw.mgmt, get(&sent, signed_for), b"").await;
        assert_eq!(status, 200, "{sent} signed for {signed_for}: {text}");
    }
    // A request signed for its own path works; the connection is in that group only.
    let path = format!("/v1/groups/room/members/{id}");
    let (status, _, text) = call(gw.mgmt, put(&path, &path), b"").await;
    assert_eq!(status, 200, "{text}");
    let path = format!("/v1/connections/{id}");
    let (status, _, text) = call(gw.mgmt, get(&path, &path), b"").await;
    assert_eq!(status, 200, "{text}");
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["groups"], serde_json::json!(["room"]));
    assert_eq!(
        gw.metric("switchboard_management_refused_total{reason=\"dot_segment_path\"}")
            .await,
        7.0
    );
}

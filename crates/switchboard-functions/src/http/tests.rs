use switchboard_core::event::Payload;

use super::*;

fn parse(body: &str) -> Result<FunctionResponse, InvokeError> {
    parse_proxy_response(Bytes::copy_from_slice(body.as_bytes()))
}

fn text(body: &str) -> Option<Payload> {
    Some(Payload {
        data: Bytes::copy_from_slice(body.as_bytes()),
        binary: false,
    })
}

#[test]
fn empty_body_is_ok() {
    assert_eq!(parse("").unwrap(), FunctionResponse::ok());
}

#[test]
fn proxy_object() {
    let r = parse(
        r#"{"statusCode":403,"headers":{"X-A":"1","X-N":5,"X-Null":null},
            "multiValueHeaders":{"x-a":["2","3"],"X-M":["m"]},"body":"no","extra":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers,
        [
            ("X-A".to_owned(), "3".to_owned()),
            ("X-N".to_owned(), "5".to_owned()),
            ("X-M".to_owned(), "m".to_owned())
        ]
    );
    assert_eq!(r.body, text("no"));
}

#[test]
fn proxy_body_forms() {
    let r = parse(r#"{"statusCode":200,"body":"AJ+Slg==","isBase64Encoded":true}"#).unwrap();
    assert_eq!(
        r.body,
        Some(Payload {
            data: Bytes::from_static(&[0, 159, 146, 150]),
            binary: true
        })
    );
    // Unpadded base64 is accepted too.
    let r = parse(r#"{"statusCode":200,"body":"AJ+Slg","isBase64Encoded":true}"#).unwrap();
    assert_eq!(
        r.body.unwrap().data,
        Bytes::from_static(&[0, 159, 146, 150])
    );
    let r = parse(r#"{"statusCode":200,"body":{"a":[1,true]}}"#).unwrap();
    assert_eq!(r.body, text(r#"{"a":[1,true]}"#));
    let r = parse(r#"{"statusCode":204,"body":""}"#).unwrap();
    assert_eq!((r.status, r.body), (204, None));
    let r = parse(r#"{"statusCode":200,"body":null,"isBase64Encoded":false}"#).unwrap();
    assert_eq!(r.body, None);
    // A repeated key: the last one wins, as API Gateway reads it.
    let r = parse(r#"{"statusCode":500,"body":"x","statusCode":201,"body":"dup"}"#).unwrap();
    assert_eq!((r.status, r.body), (201, text("dup")));
    // switchboard's extension fields.
    let r =
        parse(r#"{"statusCode":200,"groups":["a"],"userId":"u","state":{"k":"v","n":1}}"#).unwrap();
    assert_eq!(r.extension.groups, ["a"]);
    assert_eq!(r.extension.user_id.as_deref(), Some("u"));
    assert_eq!(
        r.extension.state,
        [
            ("k".to_owned(), Some("v".to_owned())),
            ("n".to_owned(), Some("1".to_owned()))
        ]
    );
}

#[test]
fn malformed_proxy_objects_fail() {
    for bad in [
        r#"{"statusCode":99}"#,
        r#"{"statusCode":600}"#,
        r#"{"statusCode":-1}"#,
        r#"{"statusCode":200.5}"#,
        r#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#,
        r#"{"statusCode":200,"headers":{"a":{"b":1}}}"#,
        r#"{"statusCode":200,"headers":"x"}"#,
        r#"{"statusCode":200,"headers":{"bad name":"v"}}"#,
        r#"{"statusCode":200,"headers":{"x":"a\r\nb"}}"#,
        r#"{"statusCode":200,"multiValueHeaders":{"x":"v"}}"#,
        r#"{"statusCode":200,"isBase64Encoded":"yes"}"#,
    ] {
        let err = parse(bad).unwrap_err();
        assert!(matches!(err, InvokeError::Failed(_)), "{bad}: {err:?}");
    }
}

#[test]
fn other_bodies_pass_through() {
    for raw in [
        r#"{"hello":"world"}"#,
        r#"{"statusCode":"200","body":"x"}"#,
        r#"[1,2]"#,
        "plain text",
        "{not json",
        "  ",
    ] {
        let r = parse(raw).unwrap();
        assert_eq!((r.status, r.body), (200, text(raw)), "{raw}");
    }
    let r = parse_proxy_response(Bytes::from_static(&[0xff, 0x00])).unwrap();
    assert_eq!(
        r.body,
        Some(Payload {
            data: Bytes::from_static(&[0xff, 0x00]),
            binary: true
        })
    );
}

#[test]
fn header_values_follow_the_http_crate() {
    for b in 0u8..=255 {
        for v in [vec![b], vec![b'a', b, b'z']] {
            assert_eq!(
                is_header_value(&v),
                HeaderValue::from_bytes(&v).is_ok(),
                "{v:?}"
            );
        }
    }
}

#[test]
fn signature_is_hmac_of_timestamp_dot_body() {
    let mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
    let v = signature(mac, 1_700_000_000, b"{}");
    let mut expect = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
    expect.update(b"1700000000.{}");
    let hex: String = expect
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v, format!("t=1700000000,v1={hex}"));
}

fn cfg(url: &str) -> HttpFunctionConfig {
    HttpFunctionConfig {
        url: url.into(),
        timeout_ms: 1000,
        max_concurrency: 4,
        max_queue: 4,
        secret: None,
        headers: Default::default(),
        max_response_bytes: 1024,
        http_version: Default::default(),
        tls_ca_file: None,
        tls_client_cert: None,
        tls_client_key: None,
    }
}

fn api() -> ApiIdentity {
    ApiIdentity {
        stage: "s".into(),
        domain_name: "d".into(),
        api_id: "a".into(),
    }
}

#[test]
fn new_validates_the_config() {
    assert!(HttpInvoker::new("f", &cfg("http://127.0.0.1:9/x?y=1"), api()).is_ok());
    assert!(HttpInvoker::new("f", &cfg("HTTP://example.com"), api()).is_ok());
    for (url, want) in [
        (
            "ftp://example.com/",
            "url: must be an http:// or https:// URL",
        ),
        ("/relative", "url: must be an http:// or https:// URL"),
        ("http://", "url: not a valid URL"),
        ("not a url", "url: not a valid URL"),
        ("http://u:p@example.com/", "url: credentials"),
    ] {
        let err = HttpInvoker::new("f", &cfg(url), api())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{url}: {err}");
    }
    let mut c = cfg("http://h/");
    c.headers.insert("Content-Length".into(), "1".into());
    let err = HttpInvoker::new("f", &c, api()).unwrap_err();
    assert_eq!(err.key(), Some("headers.Content-Length"));
    assert_eq!(err.problem(), "reserved, cannot be configured");
    assert_eq!(
        err.to_string(),
        "headers.Content-Length: reserved, cannot be configured"
    );
    let mut c = cfg("http://h/");
    c.headers
        .insert("X-Switchboard-Signature".into(), "t=1".into());
    assert!(HttpInvoker::new("f", &c, api()).is_err());
    let mut c = cfg("http://h/");
    c.headers.insert("x-ok".into(), "a\nb".into());
    let err = HttpInvoker::new("f", &c, api()).unwrap_err();
    assert_eq!(err.to_string(), "headers.x-ok: not a valid header value");
    let mut c = cfg("http://h/");
    c.max_concurrency = 0;
    assert!(HttpInvoker::new("f", &c, api()).is_err());
    let mut c = cfg("http://h/");
    c.secret = Some(String::new());
    assert!(HttpInvoker::new("f", &c, api()).is_err());
}

#[test]
fn the_host_header_leaves_out_the_default_port_of_the_scheme() {
    let host = |url: &str| super::request::host_header(&url.parse().unwrap()).unwrap();
    assert_eq!(host("https://fn.example:443/"), "fn.example");
    assert_eq!(host("https://fn.example/"), "fn.example");
    assert_eq!(host("https://fn.example:80/"), "fn.example:80");
    assert_eq!(host("http://fn.example:80/"), "fn.example");
    assert_eq!(host("http://fn.example:443/"), "fn.example:443");
}

#[test]
fn per_invocation_http2_headers_are_never_indexed() {
    use std::sync::Arc;

    use switchboard_core::event::{ConnectionInfo, EventKind, Invocation};
    use switchboard_core::id::IdGenerator;

    let mut c = cfg("http://127.0.0.1:9/");
    c.secret = Some("s3cret".into());
    let invoker = HttpInvoker::new("f", &c, api()).unwrap();
    let ids = IdGenerator::new("test-node");
    let invocation = Invocation {
        kind: EventKind::Message,
        route_key: Arc::from("sendmessage"),
        connection: Arc::new(ConnectionInfo {
            id: ids.connection_id(),
            connected_at_ms: 1,
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: None,
            path: "/".into(),
            headers: vec![],
            query: vec![],
            subprotocol: None,
            tls: false,
            port: 80,
            authorizer: None,
        }),
        request_id: ids.request_id(),
        request_time_ms: 2,
        body: None,
        disconnect: None,
        extension: None,
    };
    let mut base = HeaderMap::new();
    base.insert("x-api-key", HeaderValue::from_static("k"));
    let headers = invoker.inner.h2_headers(&base, &invocation, b"{}");
    // HPACK (h2's encoder) sends sensitive values as never-indexed literals: what
    // changes every invocation neither fills the table nor, for the signature, sits in
    // it for later requests to be compressed against. What repeats stays indexable.
    let mut sensitive: Vec<&str> = headers
        .iter()
        .filter(|(_, v)| v.is_sensitive())
        .map(|(n, _)| n.as_str())
        .collect();
    sensitive.sort();
    assert_eq!(
        sensitive,
        [
            "content-length",
            "x-switchboard-connection-id",
            "x-switchboard-request-id",
            "x-switchboard-signature"
        ]
    );
    for name in [
        "x-api-key",
        "x-switchboard-route-key",
        "x-switchboard-event-type",
    ] {
        assert!(!headers[name].is_sensitive(), "{name}");
    }
}

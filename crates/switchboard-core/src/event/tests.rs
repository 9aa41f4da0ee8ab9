use super::*;
use crate::id::IdGenerator;

fn info(query: Vec<(String, String)>) -> Arc<ConnectionInfo> {
    Arc::new(ConnectionInfo {
        id: IdGenerator::new("n").connection_id(),
        connected_at_ms: 1_731_324_924_553,
        source_ip: "1.2.3.4".parse().unwrap(),
        user_agent: Some("test-agent".into()),
        path: "/".into(),
        headers: vec![
            ("host".into(), "abc.example".into()),
            ("sec-websocket-key".into(), "k".into()),
            ("sec-websocket-version".into(), "13".into()),
        ],
        query,
        subprotocol: None,
        tls: true,
        port: 443,
        authorizer: None,
    })
}

fn api() -> ApiIdentity {
    ApiIdentity {
        stage: "prod".into(),
        domain_name: "abc.execute-api.us-east-1.amazonaws.com".into(),
        api_id: "abc".into(),
    }
}

impl Invocation {
    /// The event as a JSON value, to check its fields.
    fn event(&self, api: &ApiIdentity) -> serde_json::Value {
        serde_json::from_slice(&self.to_aws_event(api)).expect("the event is JSON")
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn invocation(kind: EventKind, c: Arc<ConnectionInfo>) -> Invocation {
    Invocation {
        kind,
        route_key: Arc::from(match kind {
            EventKind::Connect | EventKind::Authorize => "$connect",
            EventKind::Message => "$default",
            EventKind::Disconnect => "$disconnect",
        }),
        connection: c,
        request_id: "BFHPhFe3IAMF95g=".into(),
        request_time_ms: 1_731_324_924_561,
        body: None,
        disconnect: None,
        extension: None,
    }
}

/// The CONNECT event of aws-compat.md §1, field for field.
#[test]
fn connect_event_matches_aws() {
    let c = info(vec![("room".into(), "lobby".into())]);
    let e = invocation(EventKind::Connect, c.clone()).event(&api());
    assert_eq!(
        keys(&e),
        [
            "headers",
            "isBase64Encoded",
            "multiValueHeaders",
            "multiValueQueryStringParameters",
            "queryStringParameters",
            "requestContext"
        ]
    );
    assert_eq!(
        keys(&e["requestContext"]),
        [
            "apiId",
            "connectedAt",
            "connectionId",
            "domainName",
            "eventType",
            "extendedRequestId",
            "identity",
            "messageDirection",
            "requestId",
            "requestTime",
            "requestTimeEpoch",
            "routeKey",
            "stage"
        ]
    );
    let rc = &e["requestContext"];
    assert_eq!(rc["eventType"], "CONNECT");
    assert_eq!(rc["routeKey"], "$connect");
    assert_eq!(rc["requestTime"], "11/Nov/2024:11:35:24 +0000");
    assert_eq!(rc["requestTimeEpoch"], 1_731_324_924_561u64);
    assert_eq!(rc["connectedAt"], 1_731_324_924_553u64);
    assert_eq!(rc["requestId"], rc["extendedRequestId"]);
    assert_eq!(rc["identity"]["sourceIp"], "1.2.3.4");
    assert_eq!(rc["identity"]["userAgent"], "test-agent");
    assert_eq!(rc["stage"], "prod");
    assert_eq!(rc["connectionId"], c.id.to_string());
    assert_eq!(e["headers"]["Host"], "abc.example");
    assert_eq!(e["headers"]["Sec-WebSocket-Key"], "k");
    assert_eq!(e["headers"]["Sec-WebSocket-Version"], "13");
    assert_eq!(e["headers"]["X-Forwarded-For"], "1.2.3.4");
    assert_eq!(e["headers"]["X-Forwarded-Port"], "443");
    assert_eq!(e["headers"]["X-Forwarded-Proto"], "https");
    assert_eq!(
        e["multiValueHeaders"]["Host"],
        serde_json::json!(["abc.example"])
    );
    assert_eq!(e["queryStringParameters"]["room"], "lobby");
    assert_eq!(
        e["multiValueQueryStringParameters"]["room"],
        serde_json::json!(["lobby"])
    );
    assert_eq!(e["isBase64Encoded"], false);
    // No query string: no query fields at all.
    let e = invocation(EventKind::Connect, info(vec![])).event(&api());
    assert!(e.get("queryStringParameters").is_none());
    assert!(e.get("multiValueQueryStringParameters").is_none());
}

#[test]
fn message_event_matches_aws() {
    let mut inv = invocation(EventKind::Message, info(vec![("a".into(), "b".into())]));
    inv.body = Some(Payload {
        data: Bytes::from_static(b"{\"action\":\"x\"}"),
        binary: false,
    });
    let e = inv.event(&api());
    assert_eq!(keys(&e), ["body", "isBase64Encoded", "requestContext"]);
    assert_eq!(e["body"], "{\"action\":\"x\"}");
    assert_eq!(e["isBase64Encoded"], false);
    assert_eq!(e["requestContext"]["eventType"], "MESSAGE");
    assert!(e["requestContext"]["messageId"].is_string());
    assert_ne!(
        e["requestContext"]["messageId"],
        e["requestContext"]["requestId"]
    );
    inv.body = Some(Payload {
        data: Bytes::from_static(&[0, 159, 146, 150]),
        binary: true,
    });
    let e = inv.event(&api());
    assert_eq!(e["body"], "AJ+Slg==");
    assert_eq!(e["isBase64Encoded"], true);
}

/// The whole text of a MESSAGE event, member order and escapes included, as
/// serde_json wrote it before the event was written by hand.
#[test]
fn message_event_text_is_exact() {
    let mut c = (*info(vec![])).clone();
    c.id = ConnectionId::parse("6ww0MeV2iAYAAAAAAAAAAQ").unwrap();
    c.user_agent = Some("ua \"quoted\" \\ \u{1}".into());
    let mut inv = invocation(EventKind::Message, Arc::new(c));
    inv.route_key = Arc::from("send");
    inv.body = Some(Payload {
        data: Bytes::from_static("{\"action\":\"send\",\"t\":\"\u{2028}é\\n\"}".as_bytes()),
        binary: false,
    });
    let text = String::from_utf8(inv.to_aws_event(&api())).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"requestContext":{"routeKey":"send","messageId":"g59FMAI3eFhPHFB=","#,
            r#""eventType":"MESSAGE","extendedRequestId":"BFHPhFe3IAMF95g=","#,
            r#""requestTime":"11/Nov/2024:11:35:24 +0000","messageDirection":"IN","#,
            r#""stage":"prod","connectedAt":1731324924553,"requestTimeEpoch":1731324924561,"#,
            r#""identity":{"sourceIp":"1.2.3.4","userAgent":"ua \"quoted\" \\ \u0001"},"#,
            r#""requestId":"BFHPhFe3IAMF95g=","#,
            r#""domainName":"abc.execute-api.us-east-1.amazonaws.com","#,
            r#""connectionId":"6ww0MeV2iAYAAAAAAAAAAQ","apiId":"abc"},"#,
            "\"body\":\"{\\\"action\\\":\\\"send\\\",\\\"t\\\":\\\"\u{2028}é\\\\n\\\"}\",",
            r#""isBase64Encoded":false}"#
        )
    );
}

#[test]
fn disconnect_event_matches_aws() {
    let mut inv = invocation(EventKind::Disconnect, info(vec![]));
    inv.disconnect = Some((1005, "Client-side close frame status not set".into()));
    let e = inv.event(&api());
    assert_eq!(keys(&e), ["isBase64Encoded", "requestContext"]);
    let rc = &e["requestContext"];
    assert_eq!(rc["eventType"], "DISCONNECT");
    assert_eq!(rc["disconnectStatusCode"], 1005);
    assert_eq!(
        rc["disconnectReason"],
        "Client-side close frame status not set"
    );
    assert!(rc.get("messageId").is_none());
}

#[test]
fn authorizer_context_appears_on_events() {
    let mut c = (*info(vec![])).clone();
    let mut auth = serde_json::Map::new();
    auth.insert("principalId".into(), "user-1".into());
    c.authorizer = Some(auth);
    let e = invocation(EventKind::Message, Arc::new(c)).event(&api());
    assert_eq!(e["requestContext"]["authorizer"]["principalId"], "user-1");
}

#[test]
fn request_authorizer_event_matches_aws() {
    let mut inv = invocation(
        EventKind::Authorize,
        info(vec![("token".into(), "t".into())]),
    );
    inv.route_key = Arc::from("$connect");
    let e = inv.event(&api());
    assert_eq!(
        keys(&e),
        [
            "headers",
            "methodArn",
            "multiValueHeaders",
            "multiValueQueryStringParameters",
            "queryStringParameters",
            "requestContext",
            "stageVariables",
            "type"
        ]
    );
    assert_eq!(e["type"], "REQUEST");
    assert!(e["methodArn"]
        .as_str()
        .unwrap()
        .ends_with(":abc/prod/$connect"));
    assert_eq!(e["requestContext"]["eventType"], "CONNECT");
    assert_eq!(e["requestContext"]["routeKey"], "$connect");
}

#[test]
fn header_case_and_times() {
    assert_eq!(
        aws_header_case("sec-websocket-extensions"),
        "Sec-WebSocket-Extensions"
    );
    assert_eq!(aws_header_case("x-forwarded-for"), "X-Forwarded-For");
    assert_eq!(aws_header_case("user-agent"), "User-Agent");
    assert_eq!(iso8601(1_731_324_924_553), "2024-11-11T11:35:24.553Z");
    assert_eq!(
        aws_request_time(1_704_067_199_999),
        "31/Dec/2023:23:59:59 +0000"
    );
    assert_eq!(
        aws_request_time(1_709_251_200_000),
        "01/Mar/2024:00:00:00 +0000"
    );
}

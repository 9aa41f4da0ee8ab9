//! HTTP functions and the `@connections` API, end to end: the real gateway, a real
//! function server, real WebSocket clients.

mod common;

use std::time::Duration;

use common::function_server::{proxy, FunctionServer, Reply};
use common::*;
use switchboard_test_tls::{TestCa, TlsFunction};
use switchboard_ws::Message;

const TOKEN: &str = "test-token-0123456789";

/// A gateway whose routes all go to the function server at `url`.
fn gateway(url: &str, extra: &str) -> Gateway {
    gateway_with(url, "", extra)
}

/// [`gateway`], with more keys (`function_keys`, TOML lines) in the function's table.
fn gateway_with(url: &str, function_keys: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[management]
bearer_tokens = ["{TOKEN}"]

[functions.f]
kind = "http"
url = "{url}"
timeout_ms = 1000
secret = "s3cret"
{function_keys}

[routes."$connect"]
function = "f"
[routes."$disconnect"]
function = "f"
[routes."$default"]
function = "f"
two_way = true
[routes.join]
function = "f"
two_way = true
{extra}
"#
    ))
}

/// The client's connection id, learned from the CONNECT event the function received.
fn last_connection_id(fs: &FunctionServer) -> String {
    fs.events_of("CONNECT").last().unwrap()["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn mgmt(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, String, String) {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_request(gw.mgmt, raw.as_bytes()).await;
    let (status, body) = parse_status(&resp);
    let kind = header(&resp, "x-amzn-errortype").unwrap_or_default();
    (status, body, kind)
}

fn bearer() -> Option<&'static str> {
    Some(Box::leak(format!("Bearer {TOKEN}").into_boxed_str()))
}

#[tokio::test]
async fn events_reach_the_function_and_two_way_routes_answer() {
    let fs = FunctionServer::start(|e| {
        let rc = &e["requestContext"];
        match rc["eventType"].as_str() {
            Some("MESSAGE") => proxy(
                200,
                &format!(
                    "{}:{}",
                    rc["routeKey"].as_str().unwrap(),
                    e["body"].as_str().unwrap()
                ),
            ),
            _ => proxy(200, ""),
        }
    })
    .await;
    let gw = gateway(&fs.url(), "");
    let hs = Handshake {
        path: "/chat?room=lobby",
        headers: vec![("User-Agent", "switchboard-test")],
    };
    let mut c = connect_with(gw.ws, hs).await.unwrap();
    let connect = fs.wait_for("CONNECT", 1).await.remove(0);
    assert_eq!(connect["queryStringParameters"]["room"], "lobby");
    assert_eq!(
        connect["requestContext"]["identity"]["userAgent"],
        "switchboard-test"
    );
    assert_eq!(connect["requestContext"]["stage"], "prod");
    assert!(connect.get("body").is_none());

    c.send_text(r#"{"action":"join","room":"a"}"#).await;
    assert_eq!(
        text(&c.recv_within(5).await.unwrap()),
        r#"join:{"action":"join","room":"a"}"#
    );
    c.send_text("not json").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "$default:not json");
    c.send_binary(&[1, 2, 3]).await;
    c.recv_within(5).await.unwrap();
    let msgs = fs.events_of("MESSAGE");
    assert_eq!(msgs[2]["body"], "AQID");
    assert_eq!(msgs[2]["isBase64Encoded"], true);
    assert_eq!(msgs[0]["requestContext"]["routeKey"], "join");
    assert!(
        msgs[0].get("headers").is_none(),
        "MESSAGE events carry no headers"
    );

    c.close(1000).await;
    let d = fs.wait_for("DISCONNECT", 1).await.remove(0);
    assert_eq!(d["requestContext"]["disconnectStatusCode"], 1000);
    assert_eq!(
        d["requestContext"]["connectionId"],
        connect["requestContext"]["connectionId"]
    );
    // Every request was signed.
    let sigs = fs.signatures.lock().clone();
    assert_eq!(sigs.len(), fs.events.lock().len());
    assert!(sigs
        .iter()
        .all(|s| s.starts_with("t=") && s.contains(",v1=")));
}

#[tokio::test]
async fn no_route_and_no_default_sends_the_aws_forbidden_frame() {
    let fs = FunctionServer::start(|_| proxy(200, "ok")).await;
    let gw = Gateway::start(&format!(
        "[functions.f]\nkind = \"http\"\nurl = \"{}\"\n[routes.join]\nfunction = \"f\"\ntwo_way = true\n",
        fs.url()
    ));
    let mut c = connect(gw.ws).await;
    c.send_text(r#"{"action":"other"}"#).await;
    let frame: serde_json::Value =
        serde_json::from_str(text(&c.recv_within(5).await.unwrap())).unwrap();
    assert_eq!(frame["message"], "Forbidden");
    assert!(frame["connectionId"].as_str().unwrap().len() >= 16);
    assert!(frame["requestId"].is_string());
}

#[tokio::test]
async fn connect_verdicts_decide_the_handshake() {
    let fs = FunctionServer::start(|e| match e["queryStringParameters"]["mode"].as_str() {
        Some("deny") => Reply::Body(r#"{"statusCode":401,"body":"who are you"}"#.into()),
        Some("slow") => Reply::Delay(Duration::from_secs(3), Box::new(proxy(200, ""))),
        Some("crash") => Reply::Status(500, "boom".into()),
        Some("proto") => Reply::Body(
            r#"{"statusCode":200,"headers":{"Sec-WebSocket-Protocol":"chosen"}}"#.into(),
        ),
        _ => proxy(200, ""),
    })
    .await;
    let gw = gateway(&fs.url(), "");
    let try_mode = |mode: &'static str| {
        let addr = gw.ws;
        async move {
            let path: &'static str = Box::leak(format!("/?mode={mode}").into_boxed_str());
            connect_with(
                addr,
                Handshake {
                    path,
                    headers: vec![("Sec-WebSocket-Protocol", "chosen")],
                },
            )
            .await
        }
    };
    let err = try_mode("deny").await.err().unwrap();
    assert!(err.starts_with("HTTP/1.1 401"), "{err}");
    let err = try_mode("slow").await.err().unwrap();
    assert!(err.starts_with("HTTP/1.1 504"), "{err}");
    let err = try_mode("crash").await.err().unwrap();
    assert!(err.starts_with("HTTP/1.1 502"), "{err}");
    let ok = try_mode("proto").await.unwrap();
    assert_eq!(
        header(&ok.response, "sec-websocket-protocol").as_deref(),
        Some("chosen")
    );
    // Refused handshakes never produce a $disconnect; the accepted one will.
    drop(ok);
    fs.wait_for("DISCONNECT", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fs.events_of("DISCONNECT").len(), 1);

    // Nothing listening at all: 502.
    let gw2 = gateway("http://127.0.0.1:9/unreachable", "");
    let err = connect_with(gw2.ws, Handshake::default())
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("HTTP/1.1 502"), "{err}");
    assert_eq!(
        gw2.metric("switchboard_invoke_errors_total{reason=\"unreachable\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn function_failures_give_the_client_an_error_frame_and_are_counted() {
    let fs = FunctionServer::start(|e| {
        if e["requestContext"]["eventType"] != "MESSAGE" {
            return proxy(200, "");
        }
        match e["body"].as_str().unwrap() {
            "500" => Reply::Status(500, "oops".into()),
            "slow" => Reply::Delay(Duration::from_secs(3), Box::new(proxy(200, "late"))),
            "reset" => Reply::ResetMidResponse,
            "huge" => Reply::Huge(7 * 1024 * 1024),
            "badproxy" => Reply::Body(r#"{"statusCode":700}"#.into()),
            "text" => Reply::Body("plain text answer".into()),
            _ => proxy(200, "fine"),
        }
    })
    .await;
    let gw = gateway(&fs.url(), "");
    let mut c = connect(gw.ws).await;
    for case in ["500", "slow", "reset", "huge", "badproxy"] {
        c.send_text(case).await;
        let frame: serde_json::Value =
            serde_json::from_str(text(&c.recv_within(5).await.unwrap())).unwrap();
        assert_eq!(frame["message"], "Internal server error", "{case}");
        assert!(frame["requestId"].as_str().unwrap().len() > 8, "{case}");
    }
    // A bare text body is a valid answer.
    c.send_text("text").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "plain text answer");
    c.send_text("ok").await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "fine");
    assert_eq!(
        gw.metric("switchboard_invoke_errors_total{reason=\"timeout\"}")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("switchboard_invoke_errors_total{reason=\"failed\"}")
            .await
            + gw.metric("switchboard_invoke_errors_total{reason=\"unreachable\"}")
                .await,
        4.0
    );
    assert_eq!(http_get(gw.mgmt, "/healthz").await.0, 200);
}

#[tokio::test]
async fn messages_of_a_connection_are_invoked_in_order_unless_the_route_is_parallel() {
    use std::sync::Arc;
    let log = Arc::new(parking_lot::Mutex::new(Vec::<(String, &'static str)>::new()));
    let l2 = log.clone();
    let fs = FunctionServer::start(move |e| {
        if e["requestContext"]["eventType"] != "MESSAGE" {
            return proxy(200, "");
        }
        let body = e["body"].as_str().unwrap().to_string();
        l2.lock().push((body.clone(), "start"));
        Reply::Delay(Duration::from_millis(100), Box::new(proxy(200, &body)))
    })
    .await;
    let gw = gateway(
        &fs.url(),
        "[routes.fast]\nfunction = \"f\"\ntwo_way = true\nparallel = true\n",
    );
    let mut c = connect(gw.ws).await;
    let t = tokio::time::Instant::now();
    for i in 0..4 {
        c.send_text(&format!("{{\"n\":{i}}}")).await;
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(text(&c.recv_within(5).await.unwrap()).to_string());
    }
    assert_eq!(got, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "ordered: one at a time"
    );
    let t = tokio::time::Instant::now();
    for i in 0..4 {
        c.send_text(&format!("{{\"action\":\"fast\",\"n\":{i}}}"))
            .await;
    }
    for _ in 0..4 {
        c.recv_within(5).await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(350),
        "parallel route overlaps: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn disconnect_is_invoked_exactly_once_however_a_connection_ends() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = gateway(
        &fs.url(),
        "[limits]\nidle_timeout_secs = 1\nmax_message_bytes = 100\nmax_frame_bytes = 100\noutbound_queue_bytes = 1000\n[keepalive]\nping_interval_secs = 0\n",
    );
    let mut expected = Vec::new();
    // 1. client close
    let mut c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 4001));
    c.close(4001).await;
    c.expect_close(5).await;
    // 2. TCP drop without a close frame
    let c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 1006));
    drop(c);
    // 3. a limit
    let mut c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 1009));
    c.send_text(&"x".repeat(200)).await;
    assert_eq!(c.expect_close(5).await, Some(1009));
    // 4. protocol error
    let mut c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 1007));
    c.send_frame(switchboard_ws::OpCode::Text, true, &[0xff])
        .await;
    assert_eq!(c.expect_close(5).await, Some(1007));
    // 5. DELETE through the management API
    let mut c = connect(gw.ws).await;
    let id = last_connection_id(&fs);
    expected.push((id.clone(), 1000));
    let (s, _, _) = mgmt(
        &gw,
        "DELETE",
        &format!("/prod/@connections/{id}"),
        "",
        bearer(),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(c.expect_close(5).await, Some(1000));
    // 6. idle timeout
    let mut c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 1001));
    assert_eq!(c.expect_close(5).await, Some(1001));
    // 7. server shutdown
    let mut c = connect(gw.ws).await;
    expected.push((last_connection_id(&fs), 1001));
    let waiter = tokio::spawn(async move { c.expect_close(5).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(waiter.await.unwrap(), Some(1001));

    let disconnects = fs.wait_for("DISCONNECT", expected.len()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let disconnects = fs
        .events_of("DISCONNECT")
        .into_iter()
        .chain(disconnects.into_iter().take(0))
        .collect::<Vec<_>>();
    assert_eq!(disconnects.len(), expected.len(), "{disconnects:#?}");
    for (id, code) in expected {
        let matching: Vec<_> = disconnects
            .iter()
            .filter(|d| d["requestContext"]["connectionId"] == id.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "exactly one $disconnect for {id}");
        assert_eq!(
            matching[0]["requestContext"]["disconnectStatusCode"], code,
            "{id}"
        );
        assert!(matching[0]["requestContext"]["disconnectReason"].is_string());
    }
}

#[tokio::test]
async fn management_api_posts_gets_and_deletes() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = gateway(
        &fs.url(),
        "[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 1000\n",
    );
    let mut c = connect(gw.ws).await;
    let id = last_connection_id(&fs);
    for path in [
        format!("/prod/@connections/{id}"),
        format!("/prod/%40connections/{id}"),
        format!("/@connections/{id}"),
    ] {
        let (s, _, _) = mgmt(&gw, "POST", &path, "hello", bearer()).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(text(&c.recv_within(5).await.unwrap()), "hello");
    }
    let (s, body, _) = mgmt(
        &gw,
        "GET",
        &format!("/prod/@connections/{id}"),
        "",
        bearer(),
    )
    .await;
    assert_eq!(s, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert!(info["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(info["lastActiveAt"].is_string());
    // Too large: 413.
    let (s, _, kind) = mgmt(
        &gw,
        "POST",
        &format!("/prod/@connections/{id}"),
        &"x".repeat(1001),
        bearer(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (413, "PayloadTooLargeException"));
    // Unknown ids: 410.
    let (s, _, kind) = mgmt(
        &gw,
        "POST",
        "/prod/@connections/AAAAAAAAAAAAAAAAAAAAAA",
        "x",
        bearer(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (410, "GoneException"));
    let (s, _, kind) = mgmt(&gw, "GET", "/prod/@connections/not-an-id", "", bearer()).await;
    assert_eq!((s, kind.as_str()), (410, "GoneException"));
    // Authentication: missing, wrong token, garbage signature.
    let (s, _, kind) = mgmt(&gw, "POST", &format!("/prod/@connections/{id}"), "x", None).await;
    assert_eq!((s, kind.as_str()), (403, "ForbiddenException"));
    let (s, _, _) = mgmt(
        &gw,
        "POST",
        &format!("/prod/@connections/{id}"),
        "x",
        Some("Bearer wrong-token-000000000"),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, _) = mgmt(
        &gw,
        "POST",
        &format!("/prod/@connections/{id}"),
        "x",
        Some("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00"),
    )
    .await;
    assert_eq!(s, 403);
    // Nothing of the refused calls reached the client.
    let (s, _, _) = mgmt(
        &gw,
        "POST",
        &format!("/prod/@connections/{id}"),
        "last",
        bearer(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "last");
    // DELETE, then the id is gone.
    let (s, _, _) = mgmt(
        &gw,
        "DELETE",
        &format!("/prod/@connections/{id}"),
        "",
        bearer(),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(c.expect_close(5).await, Some(1000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _, kind) = mgmt(
        &gw,
        "GET",
        &format!("/prod/@connections/{id}"),
        "",
        bearer(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (410, "GoneException"));
}

#[tokio::test]
async fn a_post_made_during_connect_is_delivered_after_the_upgrade() {
    // The function posts a welcome message to the connection from inside $connect
    // (AWS answers 410 there), then accepts.
    let mgmt_addr = std::sync::Arc::new(parking_lot::Mutex::new(None::<std::net::SocketAddr>));
    let m2 = mgmt_addr.clone();
    let fs = FunctionServer::start(move |e| {
        if e["requestContext"]["eventType"] == "CONNECT" {
            let id = e["requestContext"]["connectionId"].as_str().unwrap().to_string();
            let addr = m2.lock().unwrap();
            // The behaviour closure is synchronous: post from a plain thread.
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let req = format!("POST /prod/@connections/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 7\r\nConnection: close\r\n\r\nwelcome");
                s.write_all(req.as_bytes()).unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            })
            .join()
            .unwrap();
        }
        proxy(200, "")
    })
    .await;
    let gw = gateway(&fs.url(), "");
    *mgmt_addr.lock() = Some(gw.mgmt);
    let mut c = connect(gw.ws).await;
    assert_eq!(text(&c.recv_within(5).await.unwrap()), "welcome");
}

#[tokio::test]
async fn binary_frames_can_be_refused_as_aws_does() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = gateway(&fs.url(), "[router]\nbinary = \"reject\"\n");
    let mut c = connect(gw.ws).await;
    c.send_binary(&[1, 2]).await;
    assert_eq!(c.expect_close(5).await, Some(1003));
}

#[tokio::test]
async fn management_auth_none_is_refused_off_loopback() {
    let dir = std::env::temp_dir().join(format!("sb-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        "[server]\nmanagement_listen = \"0.0.0.0:9999\"\n[management]\nauth = \"none\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("management.auth"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn ping_pong_messages_do_not_reach_functions() {
    let fs = FunctionServer::start(|_| proxy(200, "")).await;
    let gw = gateway(&fs.url(), "");
    let mut c = connect(gw.ws).await;
    c.send_frame(switchboard_ws::OpCode::Ping, true, b"p").await;
    assert_eq!(
        c.recv_within(5).await.unwrap(),
        Message::Pong(bytes::Bytes::from_static(b"p"))
    );
    assert!(fs.events_of("MESSAGE").is_empty());
}

/// A free loopback port (bound and released; good enough for a test helper process).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_webhook_chat_example_works_with_its_python_functions() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let port = free_port();
    // The gateway first (its management port is needed by the functions), with the
    // function URL pointed at the port the Python server will use.
    let url = format!("http://127.0.0.1:{port}/events");
    let gw = Gateway::start_file(
        std::path::Path::new(&format!("{root}/examples/webhook/switchboard.toml")),
        &[("SWITCHBOARD_FUNCTIONS__CHAT__URL", &url)],
    );
    let mut py = std::process::Command::new("python3")
        .arg(format!("{root}/examples/webhook/functions.py"))
        .env("PORT", port.to_string())
        .env("SWITCHBOARD_MANAGEMENT", format!("http://{}/prod", gw.mgmt))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(py.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{line}");
    }
    let json = |m: Message| -> serde_json::Value { serde_json::from_str(text(&m)).unwrap() };
    let mut ada = connect_with(
        gw.ws,
        Handshake {
            path: "/?name=ada",
            headers: vec![],
        },
    )
    .await
    .unwrap();
    let mut bob = connect_with(
        gw.ws,
        Handshake {
            path: "/?name=bob",
            headers: vec![],
        },
    )
    .await
    .unwrap();
    ada.send_text(r#"{"action":"join","name":"ada"}"#).await;
    let welcome = json(ada.recv_within(5).await.unwrap());
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["online"], serde_json::json!(["ada", "bob"]));
    assert_eq!(json(bob.recv_within(5).await.unwrap())["type"], "joined");
    ada.send_text(r#"{"action":"send","text":"hi bob"}"#).await;
    for c in [&mut ada, &mut bob] {
        let m = json(c.recv_within(5).await.unwrap());
        assert_eq!(
            (m["type"].as_str(), m["from"].as_str(), m["text"].as_str()),
            (Some("message"), Some("ada"), Some("hi bob"))
        );
    }
    bob.close(1000).await;
    let left = json(ada.recv_within(5).await.unwrap());
    assert_eq!(
        (left["type"].as_str(), left["name"].as_str()),
        (Some("left"), Some("bob"))
    );
    let _ = py.kill();
    let _ = py.wait();
}

/// An `https://` function whose certificate comes from a private CA (`tls_ca_file`),
/// reached with the default `http_version = "auto"`: its server picks `h2` by ALPN, the
/// events are streams of one HTTP/2 connection, and a client's messages come back.
#[tokio::test]
async fn an_https_function_is_reached_over_h2_picked_by_alpn() {
    let ca = TestCa::new("gateway-https");
    let leaf = ca.server_leaf(&["localhost"]);
    let server = TlsFunction::builder(&leaf)
        .answer(
            |seen| match seen.event["requestContext"]["eventType"].as_str() {
                Some("MESSAGE") => format!("echo: {}", seen.event["body"].as_str().unwrap_or("")),
                _ => String::new(),
            },
        )
        .start()
        .await;
    let ca_file = format!("tls_ca_file = {:?}", ca.ca_file().display().to_string());
    let gw = gateway_with(&server.url(), &ca_file, "");
    let mut c = connect(gw.ws).await;
    for msg in ["over h2", "and again"] {
        c.send_text(msg).await;
        assert_eq!(
            text(&c.recv_within(5).await.unwrap()),
            format!("echo: {msg}")
        );
    }
    let counts = &server.counts;
    assert_eq!(counts.get(|c| &c.accepts), 1, "one TLS connection");
    assert_eq!(counts.get(|c| &c.h2_connections), 1);
    assert_eq!(
        counts.get(|c| &c.h2_requests),
        3,
        "$connect and two messages"
    );
    assert_eq!(counts.get(|c| &c.h1_requests), 0);
}

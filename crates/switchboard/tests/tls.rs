//! `wss://` with rustls (ring), end to end.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};

#[tokio::test]
async fn wss_echo_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("sb-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::start(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{ECHO_ROUTES}",
        cert_path.display().to_string(),
        key_path.display().to_string()
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(gw.ws).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let hs = Handshake {
        headers: vec![("Sec-WebSocket-Extensions", "permessage-deflate")],
        ..Default::default()
    };
    let mut c = connect_io(tls, hs).await.unwrap();
    for msg in ["secure", &"long ".repeat(1000)] {
        c.send_text(msg).await;
        assert_eq!(text(&c.recv_within(5).await.unwrap()), msg);
    }
    c.close(1000).await;
    assert_eq!(c.expect_close(5).await, Some(1000));

    // Plain TCP to the TLS port gets nowhere, and the server stays up.
    let resp = raw_request(gw.ws, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(!resp.starts_with("HTTP/1.1 101"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unreadable_tls_files_fail_at_start_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("sb-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

use super::*;
use crate::dial::{connect_tcp, Target};

/// Reads `bytes` delivered in `pieces` cut points, as `Conn::read_answer` does.
fn read(bytes: &[u8], cuts: &[usize], limits: Limits) -> Result<Answer, InvokeError> {
    let mut decoder = AnswerDecoder::new(limits);
    let mut buf = BytesMut::new();
    for piece in switchboard_fuzz::split_at_points(bytes, cuts) {
        buf.extend_from_slice(piece);
        if let Some(answer) = decoder.decode(&mut buf)? {
            return Ok(answer);
        }
    }
    decoder.finish(&mut buf)
}

#[tokio::test]
async fn a_large_answer_leaves_no_large_buffer_in_the_pool() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 256];
        let _ = stream.read(&mut request).await;
        let body = vec![b'x'; 1 << 20];
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        // Kept open, as a keep-alive server does.
        let _ = stream.read(&mut request).await;
    });
    let target = Target {
        host: "127.0.0.1".into(),
        port,
    };
    let pool = Pool::<TcpStream>::new(4, Duration::from_secs(4));
    let request = b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n";
    let body = pool
        .send(request, 2 << 20, || connect_tcp(&target))
        .await
        .unwrap();
    assert_eq!(body.len(), 1 << 20);
    let idle = pool.inner.idle.lock();
    assert_eq!(idle.conns.len(), 1, "the connection went back to the pool");
    assert!(idle.conns[0].0.buf.capacity() <= MAX_IDLE_BUFFER);
}

#[test]
fn close_wins_over_keep_alive_in_any_order() {
    for headers in [
        "connection: close\r\nconnection: keep-alive\r\n",
        "connection: keep-alive\r\nconnection: close\r\n",
        "connection: keep-alive, close\r\n",
    ] {
        for version in ["1.0", "1.1"] {
            let answer = format!("HTTP/{version} 200 OK\r\n{headers}content-length: 2\r\n\r\nhi");
            let read = read(answer.as_bytes(), &[], Limits::new(64)).unwrap();
            assert!(!read.keep_alive, "{answer}");
        }
    }
}

#[test]
fn a_crlf_split_between_reads_ends_the_size_line() {
    let body = b"1\r\na\r\n0\r\n\r\n";
    for cut in 0..body.len() {
        let mut chunked = Chunked::new();
        let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
        buf.extend_from_slice(&body[..cut]);
        assert!(!chunked
            .decode(&mut buf, &mut out, &Limits::new(64))
            .unwrap());
        buf.extend_from_slice(&body[cut..]);
        assert!(chunked
            .decode(&mut buf, &mut out, &Limits::new(64))
            .unwrap());
        assert_eq!(&out[..], b"a", "cut at {cut}");
    }
}

#[test]
fn heads_are_never_read_past_their_bound() {
    let limits = Limits {
        head: 100,
        ..Limits::new(64)
    };
    let mut decoder = AnswerDecoder::new(limits);
    let mut buf = BytesMut::new();
    assert_eq!(decoder.room(0), 100);
    // An interim head spends the same budget as the final one.
    buf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx: ");
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.len(), 20);
    assert_eq!(decoder.room(buf.len()), 100 - 25 - 20);
    buf.extend_from_slice(&[b'x'; 63][..decoder.room(buf.len())]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(failed("response head too large"))
    );
}

#[test]
fn an_error_status_hides_its_body_errors() {
    let answer = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(read(answer, &[], Limits::new(64)), Err(answered(500)));
    // Framing errors are the head's, and say so.
    let answer = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n";
    assert_eq!(
        read(answer, &[], Limits::new(64)),
        Err(failed(
            "response has both content-length and transfer-encoding"
        ))
    );
}

/// A TLS pair over loopback: the client end, and the server end once its handshake is
/// done. TLS 1.3, so the server sends session tickets after the handshake.
async fn tls_pair() -> (
    TlsStream<TcpStream>,
    tokio_rustls::server::TlsStream<TcpStream>,
) {
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = crate::tls::ClientTls::with_roots(roots).build().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let accept = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.unwrap()
    };
    let connect = async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap()
    };
    let (server, client) = tokio::join!(accept, connect);
    (client, server)
}

/// Waits until the client's socket has something to read (a record, or the close).
async fn readable(client: &TlsStream<TcpStream>) {
    client.get_ref().0.readable().await.unwrap();
}

#[tokio::test]
async fn an_idle_tls_connection_stays_quiet_through_session_tickets_and_not_after_a_close() {
    let (mut client, mut server) = tls_pair().await;
    // The server's TLS 1.3 session tickets follow its handshake; they are no answer.
    readable(&client).await;
    assert!(client.is_quiet(), "session tickets are not stray bytes");

    server.write_all(b"x").await.unwrap();
    readable(&client).await;
    assert!(!client.is_quiet(), "a stray byte ends the connection");

    let (mut client, mut server) = tls_pair().await;
    server.shutdown().await.unwrap();
    readable(&client).await;
    assert!(!client.is_quiet(), "close_notify ends the connection");
}

//! `ceiling-echo`: the smallest WebSocket echo server we can write on `switchboard-ws` and
//! tokio. No limits beyond a sanity bound on frame size, no metrics, no logging: it is the
//! throughput ceiling the gateway is compared against.
//!
//! Raw TCP accept, the HTTP upgrade parsed with `httparse`, a 101 with the accept key, then
//! a read loop that decodes every complete message in the buffer, queues the echoes (text
//! and binary back as they came, pong for ping, close answered with the same code) and
//! writes them out with one `write_all` per read.

use bytes::{Buf, BytesMut};
use clap::Parser;
use switchboard_ws::{close_code, handshake, Decoder, Encoder, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "Minimal WebSocket echo server: the ceiling for the gateway's echo benchmark")]
struct Args {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Only a bound against absurd allocations; not a policy.
const LIMITS: Limits = Limits {
    max_frame_bytes: 64 << 20,
    max_message_bytes: 64 << 20,
};
const READ_CHUNK: usize = 4096;
const MAX_REQUEST_HEAD: usize = 16 * 1024;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = switchboard_bench::raise_nofile_limit();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    rt.build()?.block_on(serve(&args.listen))
}

async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = connection(stream).await;
                });
            }
            // EMFILE and friends: back off briefly instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let key = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let key = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| h.value.to_vec())
                    .filter(|k| handshake::is_valid_key(k));
                buf.advance(n);
                match key {
                    Some(k) => break k,
                    None => return bad_request(&mut stream).await,
                }
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => {}
            _ => return bad_request(&mut stream).await,
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        handshake::accept_key(&key)
    );
    stream.write_all(response.as_bytes()).await?;

    let mut decoder = Decoder::new(Role::Server, LIMITS, None);
    let mut encoder = Encoder::new(Role::Server, None);
    // Grows on the first echo: an idle connection carries only its read buffer.
    let mut out = BytesMut::new();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Message::Text(m))) => encoder.message(true, &m, &mut out),
                Ok(Some(Message::Binary(m))) => encoder.message(false, &m, &mut out),
                Ok(Some(Message::Ping(p))) => encoder.ping_pong(true, &p, &mut out),
                Ok(Some(Message::Pong(_))) => {}
                Ok(Some(Message::Close(c))) => {
                    let code = c.map_or(close_code::NO_STATUS, |(code, _)| code);
                    encoder.close(code, "", &mut out);
                    return finish(&mut stream, &out).await;
                }
                Err(e) => {
                    encoder.close(e.code, e.reason, &mut out);
                    return finish(&mut stream, &out).await;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Sends the last frames and closes the TCP connection from our side first (RFC 6455
/// §7.1.1: the server closes the TCP connection, so TIME_WAIT stays on the server).
async fn finish(stream: &mut TcpStream, out: &[u8]) -> std::io::Result<()> {
    stream.write_all(out).await?;
    stream.shutdown().await
}

async fn bad_request(stream: &mut TcpStream) -> std::io::Result<()> {
    finish(
        stream,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
}

//! Shared helpers for the integration tests: real WebSocket echo backends, real clients,
//! and an in-process ringway on a port-0 listener.
#![allow(dead_code, unused_imports)]

use futures_util::{SinkExt, StreamExt};
pub use ringway::config::{AtLimit as Limit, Balance as Bal, Config, TunnelMode as Mode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the echo backend takes to answer a plain HTTP request for `/slow...`.
pub const SLOW: Duration = Duration::from_millis(500);

/// Start a WebSocket echo backend on 127.0.0.1:0. Right after the handshake it sends
/// `backend:<port>`, then echoes text and binary. Plain HTTP requests get `200 backend:<port>`
/// (after [`SLOW`] for a path starting with `/slow`).
pub async fn echo_backend() -> SocketAddr {
    counting_echo_backend().await.0
}

/// [`echo_backend`], with the number of its connections open now (accepted and not yet
/// ended: a tunnel's stays open until the proxy closes its side).
pub async fn counting_echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let count = count.clone();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = serve_one(s, addr.port()).await;
                count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

async fn serve_one(s: TcpStream, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    // Peek at the head to answer plain HTTP without a WebSocket library.
    let mut peek = [0u8; 2048];
    let n = s.peek(&mut peek).await?;
    let head = String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase();
    if !head.contains("upgrade: websocket") {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = s;
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        if head.starts_with("get /slow") {
            // A slow answer: a request still in flight some time after it was sent.
            tokio::time::sleep(SLOW).await;
        }
        let body = format!("backend:{port}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Seen-Head-Bytes: {}\r\n\r\n{body}",
            body.len(),
            got.len()
        );
        s.write_all(resp.as_bytes()).await?;
        s.shutdown().await?;
        return Ok(());
    }
    let mut ws = tokio_tungstenite::accept_async(s).await?;
    ws.send(Message::Text(format!("backend:{port}"))).await?;
    while let Some(m) = ws.next().await {
        // tungstenite queues the close reply itself; the next poll flushes it and ends.
        if let m @ (Message::Text(_) | Message::Binary(_)) = m? {
            ws.send(m).await?;
        }
    }
    Ok(())
}

/// A port that refuses connections (bound, then closed).
pub fn refusing_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A config for tests: 1 worker, port 0, no pinning.
pub fn config(upstreams: Vec<SocketAddr>) -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), upstreams);
    c.workers = 1;
    c.pin = false;
    c
}

/// Builders for variations.
pub fn with(mut c: Config, f: impl FnOnce(&mut Config)) -> Config {
    f(&mut c);
    c
}

/// Start ringway.
pub fn proxy(c: Config) -> ringway::Server {
    ringway::start(c).expect("ringway starts")
}

/// Connect a WebSocket client through `addr` and read the backend banner.
pub async fn ws(addr: SocketAddr) -> Result<(Ws, String), tokio_tungstenite::tungstenite::Error> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat")).await?;
    let banner = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no banner: {other:?}"),
    };
    Ok((ws, banner))
}

/// Send one message and expect it back (over ws:// or wss://).
pub async fn echo<S>(ws: &mut WebSocketStream<S>, m: Message) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if ws.send(m.clone()).await.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(Duration::from_secs(10), ws.next()).await, Ok(Some(Ok(r))) if r == m)
}

/// Poll `f` until it is true or `secs` pass.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// `total` bytes of random binary messages (1 B – 1 MiB, mostly small, seeded by `seed`)
/// sent through `ws` to an echo backend while the echoes are read back; the SHA-256 of
/// what went out must equal that of what came back. Returns the WebSocket's halves (for a
/// close) and the number of messages. `what` names the run in a failure.
pub async fn random_round_trip<S>(
    ws: WebSocketStream<S>,
    total: usize,
    seed: u64,
    what: &str,
) -> (
    futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    futures_util::stream::SplitStream<WebSocketStream<S>>,
    usize,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use rand::{Rng, SeedableRng};
    use sha2::{Digest, Sha256};
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Sha256::new();
        let (mut sent, mut n) = (0usize, 0usize);
        while sent < total {
            // Mixed sizes: mostly small, some large, up to 1 MiB.
            let size = match rng.gen_range(0..10) {
                0..=4 => rng.gen_range(1..=512),
                5..=7 => rng.gen_range(513..=64 * 1024),
                _ => rng.gen_range(64 * 1024..=1 << 20),
            }
            .min(total - sent);
            let mut buf = vec![0u8; size];
            rng.fill(&mut buf[..]);
            h.update(&buf);
            tx.send(Message::Binary(buf)).await.unwrap();
            sent += size;
            n += 1;
        }
        (h.finalize(), n, tx)
    });
    let mut h = Sha256::new();
    let mut got = 0usize;
    while got < total {
        match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                got += b.len();
                h.update(&b);
            }
            other => panic!("{what}: stream ended after {got} bytes: {other:?}"),
        }
    }
    let (sent_hash, n, tx) = sender.await.unwrap();
    assert_eq!(got, total);
    assert_eq!(
        h.finalize(),
        sent_hash,
        "{what}: {n} messages, hashes equal"
    );
    (tx, rx, n)
}

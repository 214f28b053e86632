//! Hostile and impatient clients: a client that leaves while its upgrade waits for a
//! silent backend, early WebSocket frames before the 101, headers with underscores.
mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Read until `\r\n\r\n`; returns (head, bytes after it). `None` on EOF first.
async fn read_head(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(p + 4);
            return Some((got, rest));
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&tmp[..n]);
    }
}

/// Read exactly `n` more bytes after `have`.
async fn read_n(s: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    let mut tmp = [0u8; 4096];
    while have.len() < n {
        let k = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .expect("bytes in time")
            .unwrap();
        assert!(k > 0, "EOF after {} of {n} bytes", have.len());
        have.extend_from_slice(&tmp[..k]);
    }
    have
}

/// Whether the peer closes (EOF or reset) within `secs`.
async fn closes(s: &mut TcpStream, secs: u64) -> bool {
    let mut tmp = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, s.read(&mut tmp)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A backend that accepts and never answers; counts connections still open (it reads
/// each until EOF).
async fn blackhole() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let l2 = live.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            l2.fetch_add(1, Ordering::SeqCst);
            let live = l2.clone();
            tokio::spawn(async move {
                let mut tmp = [0u8; 4096];
                while matches!(s.read(&mut tmp).await, Ok(n) if n > 0) {}
                live.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_give_up_on_a_silent_backend_free_its_connections_at_once() {
    let (b, live) = blackhole().await;
    let p = proxy(config(vec![b]));
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        // Upgrades and plain requests alike wait for the response head.
        let req: &[u8] = if i % 2 == 0 {
            UPGRADE
        } else {
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
        };
        c.write_all(req).await.unwrap();
        clients.push(c);
    }
    assert!(
        eventually(5, || live.load(Ordering::SeqCst) == 20).await,
        "every request reached the silent backend: {}",
        live.load(Ordering::SeqCst)
    );
    assert_eq!(p.stats().sessions(), 20);
    // The clients give up.
    drop(clients);
    let t0 = std::time::Instant::now();
    assert!(
        eventually(1, || live.load(Ordering::SeqCst) == 0).await,
        "upstream connections still open 1 s after their clients left: {}",
        live.load(Ordering::SeqCst)
    );
    assert!(t0.elapsed() < Duration::from_millis(1100));
    assert!(eventually(1, || p.stats().sessions() == 0).await);
    let w = &p.stats().workers[0];
    assert_eq!(w.slots_used, 2, "every slot is back: {w:?}");
    assert_eq!(w.client_gone, 20, "counted as nginx's 499: {w:?}");
    // A pipelining client is not taken for a leaving one.
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(5, || live.load(Ordering::SeqCst) == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "still waiting for its answer"
    );
    assert_eq!(p.stats().workers[0].client_gone, 20);
}

/// A WebSocket-ish backend: answers the upgrade with `status` and, after a 101, echoes
/// every byte it receives. Records what came after the request head.
async fn raw_upgrade_backend(status: &'static str) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let after = Arc::new(Mutex::new(Vec::new()));
    let a2 = after.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let after = a2.clone();
            tokio::spawn(async move {
                let Some((_, rest)) = read_head(&mut s).await else {
                    return;
                };
                after.lock().unwrap().extend_from_slice(&rest);
                if status == "101" {
                    let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await;
                    let _ = s.write_all(&rest).await;
                    let mut tmp = [0u8; 4096];
                    while let Ok(n) = s.read(&mut tmp).await {
                        if n == 0 || s.write_all(&tmp[..n]).await.is_err() {
                            break;
                        }
                        after.lock().unwrap().extend_from_slice(&tmp[..n]);
                    }
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    let mut tmp = [0u8; 4096];
                    while let Ok(n) = s.read(&mut tmp).await {
                        if n == 0 {
                            break;
                        }
                        after.lock().unwrap().extend_from_slice(&tmp[..n]);
                    }
                }
            });
        }
    });
    (addr, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_frames_reach_the_backend_byte_exact_after_the_101() {
    let (b, after) = raw_upgrade_backend("101").await;
    let p = proxy(config(vec![b]));
    // A masked text frame "hello" and a binary frame with every byte value, sent with the
    // upgrade request in one write.
    let mut early = vec![0x81, 0x85, 1, 2, 3, 4];
    early.extend(
        b"hello"
            .iter()
            .enumerate()
            .map(|(i, c)| c ^ [1, 2, 3, 4][i % 4]),
    );
    early.extend_from_slice(&[0x82, 0xfe, 0x01, 0x00, 0, 0, 0, 0]);
    early.extend((0..=255u8).collect::<Vec<_>>());
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    let mut req = UPGRADE.to_vec();
    req.extend_from_slice(&early);
    c.write_all(&req).await.unwrap();
    let (head, rest) = read_head(&mut c).await.expect("an answer");
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The backend echoes what it got after the head: the early frames, byte-exact.
    let echoed = read_n(&mut c, rest, early.len()).await;
    assert_eq!(echoed, early);
    assert_eq!(*after.lock().unwrap(), early);
    // And the tunnel goes on after them.
    c.write_all(b"later").await.unwrap();
    let more = read_n(&mut c, Vec::new(), 5).await;
    assert_eq!(&more, b"later");
    assert_eq!(p.stats().tunnels(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_bytes_of_a_refused_upgrade_are_never_read_as_a_request() {
    let (b, after) = raw_upgrade_backend("403").await;
    let p = proxy(config(vec![b]));
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    let mut req = UPGRADE.to_vec();
    req.extend_from_slice(b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n");
    c.write_all(&req).await.unwrap();
    let (head, _) = read_head(&mut c).await.expect("an answer");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut c, 5).await, "closed after the answer");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        after.lock().unwrap().is_empty(),
        "the held bytes never reached the backend"
    );
    // Only the idle pooled upstream connection is left.
    assert!(eventually(5, || p.stats().sessions() == p.stats().workers[0].pooled).await);
}

/// A plain HTTP backend that answers each request with the head it received.
async fn head_echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Some((head, _)) = read_head(&mut s).await else {
                    return;
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&head).await;
            });
        }
    });
    addr
}

async fn forwarded_head(p: &ringway::Server) -> String {
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(b"GET /u HTTP/1.1\r\nHost: a\r\nX_Real_IP: 6.6.6.6\r\nX-Forwarded_For: 7.7.7.7\r\nX-Ok: yes\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut all)).await;
    String::from_utf8_lossy(&all).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_with_underscores_are_dropped_unless_allowed() {
    let b = head_echo_backend().await;
    let p = proxy(config(vec![b]));
    let seen = forwarded_head(&p).await;
    assert!(seen.contains("X-Ok: yes"), "{seen}");
    assert!(
        !seen.contains("X_Real_IP") && !seen.contains("6.6.6.6"),
        "{seen}"
    );
    assert!(
        !seen.contains("X-Forwarded_For") && !seen.contains("7.7.7.7"),
        "{seen}"
    );
    let p = proxy(with(config(vec![b]), |c| c.underscores_in_headers = true));
    let seen = forwarded_head(&p).await;
    assert!(seen.contains("X_Real_IP: 6.6.6.6"), "{seen}");
    assert!(seen.contains("X-Forwarded_For: 7.7.7.7"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_early_bytes_than_one_buffer_is_a_400() {
    let (b, after) = raw_upgrade_backend("101").await;
    let p = proxy(with(config(vec![b]), |c| c.max_head = 65536));
    // A 33 KB head (the head buffer grows to 64 KiB for it) and 20 KB of early bytes.
    let mut req = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 33_000));
    req.extend_from_slice(b"\r\n\r\n");
    req.extend(std::iter::repeat_n(0x81u8, 20_000));
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(&req).await.unwrap();
    let (head, _) = read_head(&mut c).await.expect("an answer");
    assert!(
        head.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert!(after.lock().unwrap().is_empty());
}

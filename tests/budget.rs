//! The budget: exact ceilings (511 at 1 × 1024, 7 at 1 × 16) and each `--at-limit` answer.
mod common;
use common::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

async fn fill(addr: std::net::SocketAddr, n: usize) -> Vec<Ws> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let (ws, _) = ws(addr)
            .await
            .unwrap_or_else(|e| panic!("client {} of {n} failed: {e}", i + 1));
        held.push(ws);
    }
    held
}

async fn all_echo(held: &mut [Ws]) {
    for (i, w) in held.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text(format!("m{i}"))).await,
            "held tunnel {i} still echoes"
        );
    }
}

async fn release_all(p: &ringway::Server, held: Vec<Ws>) {
    drop(held);
    assert!(
        eventually(10, || p.stats().sessions() == 0).await,
        "{:?}",
        p.stats()
    );
    let w = &p.stats().workers[0];
    assert_eq!(w.slots_used, 2, "every slot is free again: {w:?}");
    assert_eq!(w.pipes_in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_511_answers_503() {
    let b = echo_backend().await;
    let p = proxy(config(vec![b]));
    let mut held = fill(p.local_addr(), 511).await;
    assert_eq!(p.stats().tunnels(), 511);
    assert_eq!(p.stats().workers[0].slots_used, 1024);
    for _ in 0..3 {
        match ws(p.local_addr()).await {
            Err(WsError::Http(r)) => {
                assert_eq!(r.status(), 503);
                assert_eq!(r.headers()["retry-after"], "1");
            }
            other => panic!("client 512 expected 503, got {:?}", other.map(|_| ())),
        }
    }
    all_echo(&mut held).await;
    release_all(&p, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_511_reset_like_nginx() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.at_limit = Limit::Reset));
    let mut held = fill(p.local_addr(), 511).await;
    for _ in 0..3 {
        match ws(p.local_addr()).await {
            Err(WsError::Io(_)) | Err(WsError::Protocol(_)) | Err(WsError::ConnectionClosed) => {}
            other => panic!(
                "client 512 expected a reset/EOF, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    assert!(p.stats().workers[0].refused >= 3);
    all_echo(&mut held).await;
    release_all(&p, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_511_pause_waits_in_backlog() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.at_limit = Limit::Pause));
    let addr = p.local_addr();
    let mut held = fill(addr, 511).await;
    let waiting = tokio::spawn(async move { ws(addr).await.map(|(w, _)| w) });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !waiting.is_finished(),
        "client 512 waits while the budget is full"
    );
    assert_eq!(p.stats().tunnels(), 511);
    all_echo(&mut held).await;
    // Free one slot pair: the waiting client gets in.
    drop(held.pop());
    let mut w = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("admitted after a slot frees")
        .unwrap()
        .expect("handshake");
    assert!(echo(&mut w, Message::Text("late".into())).await);
    held.push(w);
    release_all(&p, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_7_at_16_slots() {
    let b = echo_backend().await;
    for mode in [Limit::Reply503, Limit::Reset] {
        let p = proxy(with(config(vec![b]), |c| {
            c.worker_connections = 16;
            c.at_limit = mode;
        }));
        let mut held = fill(p.local_addr(), 7).await;
        assert!(
            ws(p.local_addr()).await.is_err(),
            "client 8 refused ({mode:?})"
        );
        all_echo(&mut held).await;
        release_all(&p, held).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_admit_exactly_1022() {
    // SO_REUSEPORT hashes clients to workers regardless of how full they are; a full
    // worker hands its client to the sibling with room, so the total is exact.
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.workers = 2));
    let mut held = fill(p.local_addr(), 1022).await;
    let s = p.stats();
    assert_eq!(s.tunnels(), 1022, "{s:?}");
    assert!(s.workers.iter().all(|w| w.slots_used == 1024), "{s:?}");
    match ws(p.local_addr()).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("client 1023 expected 503, got {:?}", other.map(|_| ())),
    }
    all_echo(&mut held).await;
    drop(held);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
    assert!(p.stats().workers.iter().all(|w| w.slots_used == 2));
}

/// One raw client: send an upgrade request, read the answer's status, keep the socket.
async fn raw_upgrade(addr: std::net::SocketAddr) -> (Option<u16>, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return (None, s);
    }
    let mut got = Vec::new();
    let mut tmp = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&tmp[..n]),
            _ => return (None, s),
        }
    }
    let status = std::str::from_utf8(&got[9..12])
        .ok()
        .and_then(|t| t.parse().ok());
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_ramp_past_the_limit_gets_503_every_time() {
    // 700 clients at 1,000/s against 1 × 1024: 511 admitted, and each of the 189 others
    // gets a 503 — also when they keep their sockets open after it (a 16-slot reserve
    // held until the client closes would be used up and reset the rest).
    let b = echo_backend().await;
    let p = proxy(config(vec![b]));
    let addr = p.local_addr();
    let mut tasks = Vec::new();
    for i in 0..700u64 {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i)).await;
            raw_upgrade(addr).await
        }));
    }
    let mut held = Vec::new();
    let (mut ok, mut unavailable, mut other) = (0, 0, Vec::new());
    for t in tasks {
        let (status, s) = t.await.unwrap();
        match status {
            Some(101) => ok += 1,
            Some(503) => unavailable += 1,
            x => other.push(x),
        }
        held.push(s);
    }
    assert_eq!((ok, unavailable), (511, 189), "others: {other:?}");
    assert!(other.is_empty());
    let w = &p.stats().workers[0];
    assert_eq!(w.tunnels, 511);
    assert_eq!(w.slots_used, 1024, "the 503s took no slot: {w:?}");
    assert_eq!(w.refused, 189);
    drop(held);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
}

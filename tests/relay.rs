//! Tunnel relay: data integrity in every mode (auto switching between copy and splice
//! mid-stream), half-close, idle tunnels hold no pipe and no buffer, idle-tunnel timeout.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// 64 MiB each way in messages of 1 B – 1 MiB; the hashes of what was sent and what came
/// back must be equal.
async fn integrity(mode: Mode) -> ringway::Server {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.tunnel = mode));
    let (ws, _) = ws(p.local_addr()).await.unwrap();
    let _halves = random_round_trip(ws, 64 << 20, 7, &format!("{mode:?}")).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_64mib_splice() {
    integrity(Mode::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_64mib_copy() {
    integrity(Mode::Copy).await;
}

/// auto under the same mixed stream: a busy stream fills buffers, so it moves to splice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_64mib_auto() {
    let p = integrity(Mode::Auto).await;
    assert!(p.stats().workers[0].relay_switches >= 2, "{:?}", p.stats());
}

/// auto: bulk phases (256 KiB – 1 MiB messages) and chatty phases (1 – 512 B, one round
/// trip at a time) alternate on one connection, so both directions move between copy and
/// splice again and again; every echo comes back whole and in order, hashes equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_switches_mid_stream_and_keeps_every_byte() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.tunnel = Mode::Auto));
    let (mut ws, _) = ws(p.local_addr()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (mut sent, mut got) = (Sha256::new(), Sha256::new());
    const PHASES: usize = 6;
    for phase in 0..PHASES {
        // Bulk: a few large messages in flight at once.
        let mut out = Vec::new();
        for _ in 0..4 {
            let mut buf = vec![0u8; rng.gen_range(256 * 1024..=1 << 20)];
            rng.fill(&mut buf[..]);
            sent.update(&buf);
            out.push(buf.len());
            ws.send(Message::Binary(buf)).await.unwrap();
        }
        for want in out {
            match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(Some(Ok(Message::Binary(m)))) if m.len() == want => got.update(&m),
                other => panic!("phase {phase}: bulk echo: {other:?}"),
            }
        }
        // Chatty: one small message at a time.
        for _ in 0..24 {
            let mut buf = vec![0u8; rng.gen_range(1..=512)];
            rng.fill(&mut buf[..]);
            sent.update(&buf);
            ws.send(Message::Binary(buf.clone())).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Binary(m)))) if m == buf => got.update(&m),
                other => panic!("phase {phase}: small echo: {other:?}"),
            }
        }
    }
    assert_eq!(got.finalize(), sent.finalize(), "hashes equal");
    let s = p.stats();
    // Each phase moves each direction to splice and back: 4 switches per phase.
    assert!(
        s.workers[0].relay_switches >= (4 * PHASES - 4) as u64,
        "auto should switch several times per direction: {s:?}"
    );
    // The last send's completion may still be on its way when the client has the bytes.
    assert!(
        eventually(5, || {
            let w = &p.stats().workers[0];
            w.bufs_held == 0 && w.pipes_in_use == 0
        })
        .await,
        "an idle tunnel holds no buffer and no pipe: {:?}",
        p.stats()
    );
}

/// A raw backend that answers 101, then runs `f` on the upgraded stream.
async fn raw_backend<F, Fut>(f: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let f = std::sync::Arc::new(f);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                read_head(&mut s).await;
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await
                    .unwrap();
                f(s).await;
            });
        }
    });
    a
}

async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    head
}

async fn upgrade(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_client_first() {
    // Backend: read to EOF, then answer with the count, then close.
    let b = raw_backend(|mut s| async move {
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        s.write_all(format!("got:{}", all.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    for mode in [Mode::Auto, Mode::Splice, Mode::Copy] {
        let p = proxy(with(config(vec![b]), |c| c.tunnel = mode));
        let mut s = upgrade(p.local_addr()).await;
        let data = vec![7u8; 300_000];
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap(); // our write half only
        let mut back = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut back))
            .await
            .expect("EOF arrives")
            .unwrap();
        assert_eq!(back, "got:300000", "{mode:?}");
        drop(s);
        assert!(
            eventually(5, || p.stats().sessions() == 0).await,
            "{mode:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_backend_first() {
    // Backend: send a greeting and shut its write half, then read what the client sends.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let b = raw_backend(move |mut s| {
        let tx = tx.clone();
        async move {
            s.write_all(&vec![1u8; 200_000]).await.unwrap();
            s.shutdown().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            tx.send(all.len()).unwrap();
        }
    })
    .await;
    let mut rx = rx;
    for mode in [Mode::Auto, Mode::Splice, Mode::Copy] {
        let p = proxy(with(config(vec![b]), |c| c.tunnel = mode));
        let mut s = upgrade(p.local_addr()).await;
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 200_000);
        // The other direction still works after the backend's half-close.
        s.write_all(&[9u8; 12345]).await.unwrap();
        s.shutdown().await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 12345, "{mode:?}");
        assert!(
            eventually(5, || p.stats().sessions() == 0).await,
            "{mode:?}"
        );
    }
}

/// auto under steady bulk whose every message starts with a small write of its own (a
/// WebSocket client writing the 14-byte frame header, then the 1 MiB payload, as the
/// bench's loadgen does): each direction moves to splice once and stays there. Counting a
/// lone header, or the last little run of a long burst, as "small traffic" sent both
/// directions back to copy about every third message (thrashing: ~1,700 switches in 5 s
/// of compare.sh's bulk workload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_steady_bulk_with_small_headers_does_not_thrash() {
    const MSGS: usize = 40;
    const PAYLOAD: usize = 1 << 20;
    // Backend: echo every byte as it comes, in the same pieces.
    let b = raw_backend(|s| async move {
        let (mut r, mut w) = s.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await;
    let p = proxy(with(config(vec![b]), |c| c.tunnel = Mode::Auto));
    let s = upgrade(p.local_addr()).await;
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut h = Sha256::new();
        let mut got = 0usize;
        while got < MSGS * (14 + PAYLOAD) {
            let n = tokio::time::timeout(Duration::from_secs(30), r.read(&mut buf))
                .await
                .expect("echo keeps coming")
                .unwrap();
            assert!(n > 0, "tunnel closed after {got} bytes");
            h.update(&buf[..n]);
            got += n;
        }
        h.finalize()
    });
    let mut h = Sha256::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut payload = vec![0u8; PAYLOAD];
    for k in 0..MSGS {
        let header = [0x82u8, 127, 0, 0, 0, 0, 0, 16, 0, 0, k as u8, 1, 2, 3];
        rng.fill(&mut payload[..]);
        h.update(header);
        h.update(&payload);
        w.write_all(&header).await.unwrap();
        // Let the header leave as a segment of its own.
        tokio::time::sleep(Duration::from_millis(1)).await;
        w.write_all(&payload).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), h.finalize(), "hashes equal");
    let switches = p.stats().workers[0].relay_switches;
    // To splice once each way; a few more are tolerated (a scheduling hiccup may end a
    // burst early), nowhere near one per message.
    assert!(
        (2..=6).contains(&switches),
        "steady bulk: {switches} switches for {MSGS} messages: {:?}",
        p.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_hold_no_pipe() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| {
        c.tunnel = Mode::Splice;
        c.worker_connections = 4096;
    }));
    let mut held = Vec::new();
    for i in 0..1000 {
        let (mut w, _) = ws(p.local_addr()).await.unwrap();
        assert!(echo(&mut w, Message::Text(format!("{i}"))).await);
        held.push(w);
    }
    let s = p.stats();
    assert_eq!(s.tunnels(), 1000);
    // No bytes are in flight, so no tunnel holds a pipe; the pool keeps a few idle.
    assert_eq!(s.workers[0].pipes_in_use, 0, "{s:?}");
    assert!(s.workers[0].pipes_idle <= 64, "{s:?}");
    drop(held);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
}

/// Message `k` of connection `conn`: 1 MiB whose every 8 bytes say (conn, k, offset), so a
/// byte out of place shows (and nothing needs keeping to check it).
fn bulk_message(conn: u64, k: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 << 20);
    for off in 0..(1u64 << 17) {
        m.extend_from_slice(&((conn << 48) ^ (k << 32) ^ off).to_le_bytes());
    }
    m
}

/// auto under compare.sh's bulk workload: 1 MiB messages, 2 in flight, on 10 connections
/// at once. Directions switch around every message while others' runs sit in the ready
/// queue; a run queued before a switch back to copy must not splice (two readers on one
/// socket interleave bytes: the bench saw corrupted WebSocket frames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_bulk_on_many_connections_keeps_every_byte() {
    const MSGS: u64 = 64;
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| c.tunnel = Mode::Auto));
    let addr = p.local_addr();
    let mut tasks = Vec::new();
    for conn in 0..10u64 {
        tasks.push(tokio::spawn(async move {
            let (ws, _) = ws(addr).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let (credit_tx, mut credit) = tokio::sync::mpsc::channel::<()>(2);
            let sender = tokio::spawn(async move {
                for k in 0..MSGS {
                    // At most 2 in flight: wait for an echo before the third.
                    if k >= 2 && credit.recv().await.is_none() {
                        break;
                    }
                    tx.send(Message::Binary(bulk_message(conn, k)))
                        .await
                        .unwrap();
                }
                tx
            });
            for k in 0..MSGS {
                match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
                    Ok(Some(Ok(Message::Binary(m)))) => {
                        assert!(
                            m == bulk_message(conn, k),
                            "connection {conn}, message {k}: bytes differ"
                        );
                    }
                    other => panic!("connection {conn}, message {k}: {other:?}"),
                }
                let _ = credit_tx.try_send(());
            }
            drop(sender.await.unwrap());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(p.stats().workers[0].relay_switches > 0, "{:?}", p.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_auto_tunnels_hold_no_pipe_and_no_buffer() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| {
        c.tunnel = Mode::Auto;
        c.worker_connections = 4096;
    }));
    let mut held = Vec::new();
    for i in 0..1000 {
        let (mut w, _) = ws(p.local_addr()).await.unwrap();
        // Some tunnels carry a bulk message first, so they go idle in splice mode.
        let msg = if i % 10 == 0 {
            Message::Binary(vec![i as u8; 256 * 1024])
        } else {
            Message::Text(format!("{i}"))
        };
        assert!(echo(&mut w, msg).await);
        held.push(w);
    }
    let s = p.stats();
    assert_eq!(s.tunnels(), 1000);
    assert!(s.workers[0].relay_switches > 0, "{s:?}");
    assert!(
        eventually(5, || {
            let w = &p.stats().workers[0];
            w.bufs_held == 0 && w.pipes_in_use == 0
        })
        .await,
        "{:?}",
        p.stats()
    );
    drop(held);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnel_timeout_closes_only_idle_ones() {
    let b = echo_backend().await;
    for mode in [Mode::Auto, Mode::Splice, Mode::Copy] {
        let p = proxy(with(config(vec![b]), |c| {
            c.tunnel = mode;
            c.tunnel_idle_timeout = Some(Duration::from_millis(1500));
        }));
        let (mut busy, _) = ws(p.local_addr()).await.unwrap();
        let (mut idle, _) = ws(p.local_addr()).await.unwrap();
        for _ in 0..12 {
            assert!(echo(&mut busy, Message::Text("ping".into())).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // 3 s have passed: the idle one is gone, the busy one is alive.
        assert!(
            !echo(&mut idle, Message::Text("late".into())).await,
            "{mode:?}"
        );
        assert!(
            echo(&mut busy, Message::Text("ping".into())).await,
            "{mode:?}"
        );
        assert_eq!(p.stats().tunnels(), 1);
    }
}

//! Upgrade, echo, close handshake, HTTP errors and retries, through a real ringway.
mod common;
use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_echo_and_close_in_both_modes() {
    let b = echo_backend().await;
    for mode in [Mode::Splice, Mode::Copy] {
        let p = proxy(with(config(vec![b]), |c| c.tunnel = mode));
        let (mut ws, banner) = ws(p.local_addr()).await.unwrap();
        assert_eq!(banner, format!("backend:{}", b.port()));
        assert!(echo(&mut ws, Message::Text("hello".into())).await);
        assert!(echo(&mut ws, Message::Binary(vec![0, 1, 2, 255])).await);
        ws.close(None).await.unwrap();
        // The backend's close frame comes back through the tunnel, then EOF.
        let mut closed = false;
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) => closed = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert!(closed, "close handshake completed ({mode:?})");
        drop(ws);
        let stats = p.stats();
        assert!(
            eventually(5, || p.stats().sessions() == 0).await,
            "{stats:?}"
        );
        let w = &p.stats().workers[0];
        assert_eq!(w.slots_used, 2, "only the listener and control fd remain");
        assert_eq!(p.stats().backends[0].tunnels_total, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_relayed_and_closed_when_the_client_asks() {
    let b = echo_backend().await;
    let p = proxy(config(vec![b]));
    let r = raw(
        p.local_addr(),
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Connection: close\r\n"), "{r}");
    assert!(r.ends_with(&format!("backend:{}\n", b.port())), "{r}");
    // A head larger than the first receive buffer (1 KiB) but under the limit is fine.
    let mut req = b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\nCookie: ".to_vec();
    req.extend(std::iter::repeat_n(b'c', 5000));
    req.extend_from_slice(b"\r\n\r\n");
    let r = raw(p.local_addr(), &req).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_heads() {
    let b = echo_backend().await;
    let p = proxy(config(vec![b]));
    let r = raw(p.local_addr(), b"NOT HTTP AT ALL\x01\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = raw(p.local_addr(), b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "missing Host: {r}");
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n\r\n");
    let r = raw(p.local_addr(), &big).await;
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    // Everyone else is unaffected.
    let (mut ws, _) = ws(p.local_addr()).await.unwrap();
    assert!(echo(&mut ws, Message::Text("still fine".into())).await);
    drop(ws);
    assert!(eventually(5, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_falls_over_then_502() {
    let good = echo_backend().await;
    let bad = refusing_addr();
    let p = proxy(config(vec![bad, good]));
    for _ in 0..4 {
        let (mut ws, banner) = ws(p.local_addr()).await.unwrap();
        assert_eq!(banner, format!("backend:{}", good.port()));
        assert!(echo(&mut ws, Message::Text("x".into())).await);
    }
    // Marked down by its first failure (max_fails 1): the next clients skip it.
    assert_eq!(p.stats().backends[0].failures_total, 1);

    let p = proxy(config(vec![refusing_addr(), refusing_addr()]));
    let r = raw(p.local_addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 502 "), "{r}");
    let Err(e) = ws(p.local_addr()).await else {
        panic!("upgrade must fail")
    };
    assert!(e.to_string().contains("502"), "{e}");
    assert!(eventually(5, || p.stats().sessions() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_gives_504() {
    // A backend that accepts and never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            keep.push(s);
        }
    });
    let p = proxy(with(config(vec![a]), |c| {
        c.read_timeout = Duration::from_millis(500)
    }));
    let r = raw(p.local_addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // Exactly one answer: the upstream receive made moot by the timeout adds nothing.
    assert_eq!(r.as_bytes(), ringway::http::reply::GATEWAY_TIMEOUT, "{r}");
    assert!(eventually(5, || p.stats().sessions() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_tries_next_then_504() {
    // A listener whose accept queue is full drops new SYNs: connects to it hang.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    stuck.listen(0).unwrap();
    let a = stuck.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&a.into());
        fillers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = proxy(with(config(vec![a, a]), |c| {
        c.connect_timeout = Duration::from_millis(300)
    }));
    let t0 = std::time::Instant::now();
    let r = raw(p.local_addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 504 "), "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(550),
        "two attempts of 300 ms each"
    );
    assert_eq!(
        p.stats()
            .backends
            .iter()
            .map(|b| b.failures_total)
            .sum::<u64>(),
        2
    );
    assert!(eventually(5, || p.stats().sessions() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_head_times_out_and_frees_its_slots() {
    let b = echo_backend().await;
    let p = proxy(with(config(vec![b]), |c| {
        c.head_timeout = Duration::from_millis(400)
    }));
    let mut slow = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    assert!(eventually(5, || p.stats().sessions() == 1).await);
    // Others are served meanwhile.
    let (mut w, _) = ws(p.local_addr()).await.unwrap();
    assert!(echo(&mut w, Message::Text("x".into())).await);
    drop(w);
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "the slow client is closed");
    assert!(eventually(5, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_response_body_is_cut_after_the_read_timeout() {
    // A backend that sends a head and part of the body, then stalls with the socket open.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            keep.push(s);
        }
    });
    let p = proxy(with(config(vec![a]), |c| {
        c.read_timeout = Duration::from_millis(500)
    }));
    let t0 = std::time::Instant::now();
    let r = raw(p.local_addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK") && r.ends_with("partial"),
        "{r}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "closed by the read timeout, not the test's"
    );
    assert!(eventually(5, || p.stats().sessions() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_response_to_a_large_upload_arrives_whole() {
    // A backend that answers 413 after the head, without reading the body, then closes its
    // write half and discards whatever still comes. The response must reach the client
    // whole while the client is still sending its body (ringway then lingers, draining the
    // client, rather than closing on unread bytes; on loopback a reset rarely wins the race,
    // so this guards the relay more than it proves the linger).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 5\r\n\r\nlarge")
                    .await;
                let _ = s.shutdown().await;
                let mut sink = vec![0u8; 65536];
                while s.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let p = proxy(config(vec![a]));
    for _ in 0..5 {
        let s = tokio::net::TcpStream::connect(p.local_addr())
            .await
            .unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let body = vec![b'x'; 4 << 20];
            let _ = wr
                .write_all(
                    format!(
                        "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = wr.write_all(&body).await;
            // Keep the write half open: dropping it would half-close the connection, and
            // a client that ends its stream while ringway waits for the response head is a
            // client that left (nginx's 499; the watch closes both) — when the 4 MiB fit in
            // the socket buffers before the 413 came, this test lost its answer that way.
            std::future::pending::<()>().await;
            drop(wr);
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
        let r = String::from_utf8_lossy(&out);
        assert!(
            r.starts_with("HTTP/1.1 413 ") && r.ends_with("large"),
            "{r}"
        );
        writer.abort();
    }
    assert!(eventually(5, || p.stats().sessions() == 0).await);
}

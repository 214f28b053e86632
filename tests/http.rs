//! HTTP/1.1 proxying through a real ringway, with raw sockets on both sides: keep-alive,
//! pipelining, request and response bodies, HEAD/204/304, `Expect`, hop-by-hop headers,
//! `proxy_set_header`, refused upgrades, the upstream keep-alive pool and its budget, the
//! HTTP timeouts, and every rejection rule — checked against a backend that records what
//! reaches it, so "rejected" means "never reached the backend".
//!
//! The framing code on both test sides (chunked decoding, response reading) is written
//! here independently of ringway's own `body.rs`.
mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

/// A TCP stream with a read buffer and just enough HTTP/1.1 framing for tests.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }
    async fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }
    /// Read more bytes; false at EOF, error or timeout.
    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16384];
        match tokio::time::timeout(T, self.s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            _ => false,
        }
    }
    async fn take_until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(pat.len()).position(|w| w == pat) {
                return Some(self.buf.drain(..p + pat.len()).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }
    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }
    async fn take_to_eof(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }
    /// A chunked body, decoded; trailers are dropped.
    async fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.take_until(b"\r\n").await?;
            let line = String::from_utf8_lossy(&line[..line.len() - 2]).to_string();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while self.take_until(b"\r\n").await?.len() > 2 {}
                return Some(body);
            }
            body.extend(self.take(size).await?);
            self.take(2).await?;
        }
    }
    /// The peer closed (EOF) within the timeout, with no bytes before it.
    async fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 64];
        self.buf.is_empty()
            && matches!(
                tokio::time::timeout(T, self.s.read(&mut tmp)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A response as the client saw it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Read one response (`head_req`: it answers a HEAD). None: the connection ended first.
async fn response(c: &mut Conn, head_req: bool) -> Option<Resp> {
    let head = String::from_utf8(c.take_until(b"\r\n\r\n").await?).unwrap();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let body = if head_req || status == 204 || status == 304 || status < 200 {
        Vec::new()
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        c.chunked().await?
    } else if let Some(n) = header(&head, "content-length") {
        c.take(n.parse().unwrap()).await?
    } else {
        c.take_to_eof().await
    };
    Some(Resp { status, head, body })
}

/// No session left but the pooled upstream connections (one snapshot).
fn only_pool_left(p: &ringway::Server) -> bool {
    let st = p.stats();
    st.sessions() == st.workers[0].pooled
}

/// One request as the backend received it.
#[derive(Clone, Debug)]
struct Seen {
    conn: usize,
    method: String,
    path: String,
    head: String,
    body: Vec<u8>,
}

/// A keep-alive HTTP/1.1 backend that records every request it receives.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<AtomicUsize>,
}

impl Backend {
    async fn start() -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Backend {
            addr: l.local_addr().unwrap(),
            seen: Arc::default(),
            conns: Arc::default(),
        };
        let bb = b.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let id = bb.conns.fetch_add(1, Ordering::SeqCst);
                let seen = bb.seen.clone();
                tokio::spawn(serve(Conn { s, buf: Vec::new() }, id, seen));
            }
        });
        b
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

async fn serve(mut c: Conn, conn: usize, seen: Arc<Mutex<Vec<Seen>>>) {
    // After `/drop-next`, the next request on the connection is met with a close: the
    // race of a backend closing an idle keep-alive connection just as a request comes.
    let mut drop_next = false;
    loop {
        let Some(head) = c.take_until(b"\r\n\r\n").await else {
            return;
        };
        if drop_next {
            return;
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let body = if header(&head, "transfer-encoding").is_some() {
            c.chunked().await.unwrap_or_default()
        } else if let Some(n) = header(&head, "content-length") {
            c.take(n.parse().unwrap()).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        seen.lock().unwrap().push(Seen {
            conn,
            method: method.clone(),
            path: path.clone(),
            head: head.clone(),
            body: body.clone(),
        });
        let reply = match path.as_str() {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            "/close" => {
                c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end").await;
                return;
            }
            "/drop-next" => {
                drop_next = true;
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
            "/bad101" => {
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nRAW".to_vec()
            }
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec(),
            "/silent" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "/big" => {
                let body = vec![b'z'; 300_000];
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                r.extend(body);
                r
            }
            _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n".to_vec(),
            _ => {
                let b = format!("{method} {path} {}", body.len());
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len()).into_bytes()
            }
        };
        c.send(&reply).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_both_connections() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    for i in 0..3 {
        c.send(format!("GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        let r = response(&mut c, false).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("GET /r{i} 0"));
        assert!(header(&r.head, "connection").is_none(), "{}", r.head);
    }
    assert_eq!(b.seen().len(), 3);
    assert_eq!(
        b.conns(),
        1,
        "one pooled upstream connection served all three"
    );
    assert!(b.seen().iter().all(|s| s.conn == 0));
    assert!(b
        .seen()
        .iter()
        .all(|s| header(&s.head, "connection").is_none()));
    assert!(eventually(5, || p.stats().workers[0].pooled == 1).await);
    // Connection: close is honoured after the response.
    c.send(b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(header(&r.head, "connection"), Some("close"));
    assert!(c.closed().await);
    // HTTP/1.0 closes unless it asks for keep-alive.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /ten HTTP/1.0\r\n\r\n").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "GET /ten 0");
    assert!(c.closed().await);
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(header(&r.head, "connection"), Some("keep-alive"));
    c.send(b"GET /again HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        response(&mut c, false).await.unwrap().text(),
        "GET /again 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_by_the_backend_is_retried_only_when_idempotent() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /drop-next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 200);
    c.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "GET /again 0", "sent again on a fresh connection");
    assert_eq!(b.conns(), 2);
    // A POST is not sent twice: the client gets 502.
    c.send(b"GET /drop-next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 200);
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        .await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 502);
    assert_eq!(b.conns(), 2);
    assert!(b.seen().iter().all(|s| s.method == "GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /3 HTTP/1.1\r\nHost: a\r\n\r\nPOST /4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /5 HTTP/1.1\r\nHost: a\r\n\r\nGET /6 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let want = [
        "GET /1 0",
        "POST /2 5",
        "GET /3 0",
        "POST /4 3",
        "",
        "GET /6 0",
    ];
    for (i, w) in want.iter().enumerate() {
        let r = response(&mut c, i == 4).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(&r.text(), w);
    }
    let seen = b.seen();
    assert_eq!(seen.len(), 6);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/1", "/2", "/3", "/4", "/5", "/6"]);
    assert_eq!(seen[1].body, b"hello");
    assert_eq!(seen[3].body, b"abc");
    assert_eq!(seen[4].method, "HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_stream_in_both_framings() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    // A 1 MB Content-Length body in pieces.
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    c.send(
        format!(
            "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    for piece in body.chunks(100_000) {
        c.send(piece).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "PUT /up 1000000");
    assert_eq!(b.seen()[0].body, body);
    // Chunked, with extensions and trailers, split across writes; forwarded chunked.
    c.send(
        b"POST /ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "POST /ch 14");
    let s = &b.seen()[1];
    assert_eq!(s.body, b"abcd0123456789");
    assert_eq!(header(&s.head, "transfer-encoding"), Some("chunked"));
    assert_eq!(b.conns(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_framings_and_bodiless_responses() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "hello world");
    c.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = response(&mut c, true).await.unwrap();
    assert_eq!(header(&r.head, "content-length"), Some("20"));
    c.send(b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 204);
    c.send(b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 304);
    c.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().body.len(), 300_000);
    // After a HEAD whose answer says Content-Length: 20, and bodiless 204/304, the next
    // response on the same connection is still read from the right byte.
    c.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        response(&mut c, false).await.unwrap().text(),
        "GET /after 0"
    );
    assert_eq!(b.conns(), 1, "all on one upstream connection");
    // A close-delimited response ends the client connection too.
    c.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(header(&r.head, "connection"), Some("close"));
    assert_eq!(r.text(), "until the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_ringway() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 100, "{r:?}");
    assert!(b.seen().is_empty(), "no body sent yet");
    c.send(b"data").await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.text(), "POST /e 4");
    assert!(header(&b.seen()[0].head, "expect").is_none());
    // Any other expectation: 417, and nothing reaches the backend.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx")
        .await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 417);
    assert_eq!(b.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_never_reach_the_backend() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let cases: &[(&str, &[u8], u16)] = &[
        ("CL with TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("differing CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        ("TE not chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx", 400),
        ("TE chunked not final", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
        ("TE twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
        ("overflowing chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000000\r\nabc\r\n", 400),
        ("chunk data overrun", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400),
        ("NUL in a field", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
        ("CR in a field", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
        ("HTTP/0.9", b"GET /\r\n\r\n", 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("Connection names CL", b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("upgrade with a body", b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\n", 400),
        ("bad Expect", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
    ];
    for (what, req, status) in cases {
        let mut c = Conn::connect(p.local_addr()).await;
        c.send(req).await;
        let r = response(&mut c, false)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(r.status, *status, "{what}: {}", r.head);
        assert_eq!(header(&r.head, "connection"), Some("close"), "{what}");
        assert!(c.closed().await, "{what}: closed after the answer");
    }
    // An oversized head: 431.
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n\r\n");
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(&big).await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 431);
    assert!(b.seen().is_empty(), "reached the backend: {:?}", b.seen());
    assert_eq!(b.conns(), 0, "not even a connection");
    // A good request on a fresh connection still works, and nothing leaked.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(response(&mut c, false).await.unwrap().text(), "GET /ok 0");
    assert!(eventually(5, || only_pool_left(&p)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_and_forwarded_headers_set() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /h HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Real-IP: 6.6.6.6\r\nX-Keep: yes\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 200, "h2c is not an upgrade: the request is plain");
    let h = &b.seen()[0].head;
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(header(h, gone).is_none(), "{gone} forwarded: {h}");
    }
    assert_eq!(header(h, "x-keep"), Some("yes"));
    assert_eq!(header(h, "host"), Some("example"));
    assert_eq!(
        header(h, "x-forwarded-for"),
        Some("1.1.1.1, 2.2.2.2, 127.0.0.1")
    );
    assert_eq!(header(h, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(header(h, "x-forwarded-proto"), Some("http"));

    // proxy_set_header, configured.
    let b2 = Backend::start().await;
    let p2 = proxy(with(config(vec![b2.addr]), |c| {
        c.set_headers = vec![
            ringway::http::SetHeader::parse("X-Forwarded-Proto", "https").unwrap(),
            ringway::http::SetHeader::parse("X-Client", "$remote_addr via $host").unwrap(),
            ringway::http::SetHeader::parse("X-Drop", "").unwrap(),
        ];
    }));
    let mut c = Conn::connect(p2.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nHost: ex\r\nX-Forwarded-Proto: ftp\r\nX-Real-IP: 6.6.6.6\r\nX-Drop: spoof\r\n\r\n")
        .await;
    response(&mut c, false).await.unwrap();
    let h = &b2.seen()[0].head;
    assert_eq!(header(h, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(h, "x-client"), Some("127.0.0.1 via ex"));
    assert_eq!(
        header(h, "x-real-ip"),
        Some("6.6.6.6"),
        "not set: passed through"
    );
    assert!(header(h, "x-forwarded-for").is_none());
    assert!(header(h, "x-drop").is_none(), "an empty value removes: {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_leaves_the_connection_speaking_http() {
    let b = Backend::start().await;
    let p = proxy(config(vec![b.addr]));
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 200, "the backend refused the upgrade");
    assert_eq!(header(&b.seen()[0].head, "upgrade"), Some("websocket"));
    // What follows is parsed as HTTP, not relayed as a raw stream: garbage gets a 400
    // from ringway and never reaches the backend.
    c.send(b"\x81\x05hello-not-http\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 400);
    assert_eq!(b.seen().len(), 1);
    // A 101 whose Upgrade does not match the request's: no tunnel, 502.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /bad101 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(!r.text().contains("RAW"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_timeouts() {
    let b = Backend::start().await;
    let p = proxy(with(config(vec![b.addr]), |c| {
        c.body_timeout = Duration::from_millis(400);
        c.keepalive_timeout = Duration::from_millis(400);
        c.read_timeout = Duration::from_millis(400);
    }));
    // Client body timeout: 408 when the body stops arriving.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    let r = response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 408);
    // An upload that takes longer than the read timeout is not a slow backend: the read
    // timeout starts once the whole request is with the backend.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
        .await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.send(b"x").await;
    }
    assert_eq!(
        response(&mut c, false).await.unwrap().text(),
        "POST /trickle 6"
    );
    // Keep-alive idle timeout: a quiet kept-alive connection is closed.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /k HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 200);
    let t0 = std::time::Instant::now();
    assert!(c.closed().await);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // Upstream read timeout: 504.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET /silent HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 504);
    assert!(eventually(5, || only_pool_left(&p)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_trimmed_to_keepalive_at_the_next_tick() {
    let b = Backend::start().await;
    let p = proxy(with(config(vec![b.addr]), |c| c.keepalive = 1));
    // Three requests in flight at once need three upstream connections.
    let mut cs = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::connect(p.local_addr()).await;
        c.send(b"POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nx")
            .await;
        cs.push(c);
    }
    assert!(eventually(5, || b.conns() == 3).await);
    for c in cs.iter_mut() {
        c.send(b"y").await;
        assert_eq!(response(c, false).await.unwrap().text(), "POST /hold 2");
    }
    // All three come back idle; one tick later only `keepalive` (1) is left.
    assert!(eventually(5, || p.stats().workers[0].pooled == 1).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.stats().workers[0].pooled, 1);
    assert_eq!(p.stats().workers[0].slots_used, 2 + 3 * 2 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_count_in_the_budget_and_go_first() {
    let b = Backend::start().await;
    // 10 slots: 2 reserved → 4 clients.
    let p = proxy(with(config(vec![b.addr]), |c| {
        c.worker_connections = 10;
        c.keepalive = 8;
    }));
    // Two clients each leave an idle upstream connection in the pool.
    let mut keep = Vec::new();
    for _ in 0..2 {
        let mut c = Conn::connect(p.local_addr()).await;
        c.send(b"GET /slow-ish HTTP/1.1\r\nHost: a\r\n\r\n").await;
        keep.push(c);
    }
    for c in keep.iter_mut() {
        assert_eq!(response(c, false).await.unwrap().status, 200);
    }
    // Both requests were in flight together or not: at least one pooled connection now.
    assert!(eventually(5, || p.stats().workers[0].pooled >= 1).await);
    drop(keep);
    assert!(eventually(5, || only_pool_left(&p)).await);
    let pooled = p.stats().workers[0].pooled;
    let w = &p.stats().workers[0];
    assert_eq!(
        w.slots_used,
        2 + pooled,
        "each pooled connection holds one slot"
    );
    // Four kept-alive clients need all 8 client slots: the pooled connections are
    // closed for them, and nobody is refused.
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = Conn::connect(p.local_addr()).await;
        c.send(format!("GET /c{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        assert_eq!(
            response(&mut c, false).await.unwrap().status,
            200,
            "client {i}"
        );
        clients.push(c);
    }
    let w = &p.stats().workers[0];
    assert_eq!(
        w.refused, 0,
        "no client refused while pooled connections could go"
    );
    assert_eq!(w.pooled, 0, "no slot left to pool in");
    assert_eq!(w.slots_used, 10);
    // A fifth is over the budget: 503.
    let mut c = Conn::connect(p.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response(&mut c, false).await.unwrap().status, 503);
}

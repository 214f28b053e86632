//! `GET /metrics` during a run with known numbers — N tunnels, M HTTP requests, K clients
//! refused at the limit — asserting the exact values, in thread mode and in process mode
//! (where the master reads the counters its worker processes write into shared memory).
//! Also exact: handoffs from a full worker (clients from source ports whose SO_REUSEPORT
//! hash was learned first), how tunnels end (`backend_close`, `client_close`), and the
//! counters across a reload (a retired generation's counters carried over, one reload,
//! the start time unchanged).
mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

struct Proxy {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the binary with `--metrics 127.0.0.1:0` and read both addresses it prints.
fn start(mode: &str, upstream: SocketAddr, extra: &[&str]) -> Proxy {
    start_list(mode, &upstream.to_string(), extra)
}

/// [`start`] with a comma-separated list of backends.
fn start_list(mode: &str, upstreams: &str, extra: &[&str]) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["--listen", "127.0.0.1:0", "--upstream", upstreams])
        .args([
            "--worker-mode",
            mode,
            "--worker-processes",
            "2",
            "--worker-connections",
            "12",
        ])
        .args(["--keepalive", "0", "--no-pin", "--metrics", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut metrics) = (None, None);
    for _ in 0..8 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.strip_prefix("ringway: listening on ") {
            addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
        if let Some(rest) = line.strip_prefix("ringway: metrics on http://") {
            metrics = Some(rest.trim().trim_end_matches("/metrics").parse().unwrap());
        }
        if addr.is_some() && metrics.is_some() {
            break;
        }
    }
    Proxy {
        child,
        addr: addr.expect("listening line"),
        metrics: metrics.expect("metrics line"),
    }
}

/// One plain HTTP/1.1 exchange on a fresh connection; the whole answer.
fn http_get(addr: SocketAddr, target: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Scrape: series (`name{labels}`) → value.
fn scrape(metrics: SocketAddr) -> BTreeMap<String, f64> {
    let text = http_get(metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.trim_end().ends_with("# EOF"));
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The sum of every series of metric `name` whose labels include all of `labels`.
fn sum(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let base = k.split('{').next().unwrap();
            base == name && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn until(
    metrics: SocketAddr,
    what: &str,
    f: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    for _ in 0..200 {
        let m = scrape(metrics);
        if f(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: {:#?}", scrape(metrics));
}

async fn known_numbers(mode: &str) {
    let b = echo_backend().await;
    let p = start(mode, b, &[]);
    let be = format!("backend=\"{b}\"");
    // N = 3 tunnels, each echoing one 1-byte message: up 7 bytes (a masked frame), down
    // 15 (the `backend:PORT` banner) + 3 (the echo).
    let mut held = Vec::new();
    for _ in 0..3 {
        let (mut w, banner) = ws(p.addr).await.unwrap();
        assert_eq!(banner.len(), 13);
        assert!(echo(&mut w, Message::Text("x".into())).await);
        held.push(w);
    }
    // M = 4 plain requests.
    for i in 0..4 {
        assert!(http_get(p.addr, &format!("/r{i}")).starts_with("HTTP/1.1 200"));
    }
    let m = until(p.metrics, "3 tunnels, 4 requests", |m| {
        sum(m, "ringway_http_responses_total", &["class=\"2xx\""]) == 4.0
            && sum(m, "ringway_tunnel_bytes_total", &["backend_to_client"]) == 54.0
            // The HTTP clients' lingering closes are over (their slots come back when
            // the close completes, which may be a turn after the session went).
            && sum(m, "ringway_sessions", &[]) == 3.0
            && sum(m, "ringway_worker_slots_used", &[]) == 4.0 + 6.0
    })
    .await;
    assert_eq!(sum(&m, "ringway_tunnels", &[]), 3.0);
    assert_eq!(sum(&m, "ringway_tunnels_opened_total", &[]), 3.0);
    assert_eq!(
        sum(&m, "ringway_tunnel_bytes_total", &["client_to_backend"]),
        21.0
    );
    assert_eq!(
        sum(&m, "ringway_http_responses_total", &["class=\"1xx\""]),
        3.0
    );
    assert_eq!(sum(&m, "ringway_http_requests_total", &[]), 7.0);
    assert_eq!(sum(&m, "ringway_accepted_total", &[]), 7.0);
    assert_eq!(sum(&m, "ringway_backend_tunnels", &[&be]), 3.0);
    assert_eq!(sum(&m, "ringway_backend_requests_total", &[&be]), 7.0);
    assert_eq!(
        sum(
            &m,
            "ringway_backend_responses_total",
            &[&be, "class=\"2xx\""]
        ),
        4.0
    );
    assert_eq!(
        sum(&m, "ringway_backend_connect_seconds_count", &[&be]),
        7.0
    );
    assert_eq!(
        sum(&m, "ringway_backend_response_head_seconds_count", &[&be]),
        7.0
    );
    assert_eq!(sum(&m, "ringway_worker_slots", &[]), 24.0);
    // Both workers' listener + control channel, 2 per tunnel.
    assert_eq!(sum(&m, "ringway_worker_slots_used", &[]), 4.0 + 6.0);
    assert_eq!(sum(&m, "ringway_worker_slots_free", &[]), 14.0);
    assert_eq!(sum(&m, "ringway_worker_refused_total", &[]), 0.0);
    let mode_flag = if mode == "process" {
        "process"
    } else {
        "thread"
    };
    assert_eq!(
        sum(&m, "ringway_workers", &[&format!("mode=\"{mode_flag}\"")]),
        2.0
    );
    assert_eq!(
        sum(
            &m,
            "ringway_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Fill both workers: 5 clients each, 10 in all; then K = 2 more get 503.
    for _ in 0..7 {
        held.push(ws(p.addr).await.unwrap().0);
    }
    for _ in 0..2 {
        match ws(p.addr).await {
            Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!("expected 503, got {:?}", other.map(|_| ())),
        }
    }
    // A client sees its 101 a moment before its worker counts the tunnel: wait for both.
    let m = until(p.metrics, "10 tunnels, 2 refused", |m| {
        sum(m, "ringway_worker_refused_total", &["reason=\"503\""]) == 2.0
            && sum(m, "ringway_tunnels", &[]) == 10.0
            && sum(m, "ringway_worker_slots_free", &[]) == 0.0
    })
    .await;
    assert_eq!(sum(&m, "ringway_tunnels", &[]), 10.0);
    assert_eq!(
        sum(&m, "ringway_worker_refused_total", &["reason=\"reset\""]),
        0.0
    );
    assert_eq!(sum(&m, "ringway_worker_slots_free", &[]), 0.0);
    assert_eq!(
        sum(&m, "ringway_http_responses_total", &["class=\"5xx\""]),
        2.0
    );
    assert_eq!(sum(&m, "ringway_own_answers_total", &[]), 2.0);
    assert_eq!(sum(&m, "ringway_accepted_total", &[]), 16.0);
    // Which worker the kernel hashed each of the 2 refused clients to is not ours to know
    // (tests below fix it); what is exact: a worker that refused had one episode (nothing
    // was released between the two refusals), a worker that refused none had none.
    let mut refusing = 0.0;
    for w in ["worker=\"0\"", "worker=\"1\""] {
        let refused = sum(&m, "ringway_worker_refused_total", &[w, "reason=\"503\""]);
        let episodes = sum(&m, "ringway_worker_not_enough_episodes_total", &[w]);
        assert_eq!(episodes, if refused > 0.0 { 1.0 } else { 0.0 }, "{w}");
        refusing += episodes;
    }
    assert_eq!(
        sum(&m, "ringway_worker_not_enough_episodes_total", &[]),
        refusing
    );

    // The clients close (TCP FIN, no close handshake): every tunnel ends by the client.
    drop(held);
    // Slots come back when the sockets' closes complete, just after the sessions end.
    let m = until(p.metrics, "all closed, every slot back", |m| {
        sum(m, "ringway_tunnels_closed_total", &[]) == 10.0
            && sum(m, "ringway_sessions", &[]) == 0.0
            && sum(m, "ringway_worker_slots_used", &[]) == 4.0
    })
    .await;
    assert_eq!(
        sum(
            &m,
            "ringway_tunnels_closed_total",
            &["end=\"client_close\""]
        ),
        10.0
    );
    assert_eq!(sum(&m, "ringway_tunnels", &[]), 0.0);
    assert_eq!(sum(&m, "ringway_backend_active", &[&be]), 0.0);
    assert_eq!(sum(&m, "ringway_worker_slots_used", &[]), 4.0);

    // A refused backend: 502, counted by kind.
    let dead = refusing_addr();
    let q = start(mode, dead, &[]);
    assert!(http_get(q.addr, "/").starts_with("HTTP/1.1 502"));
    let m = until(q.metrics, "one 502", |m| {
        sum(m, "ringway_http_responses_total", &["class=\"5xx\""]) == 1.0
    })
    .await;
    assert_eq!(
        sum(
            &m,
            "ringway_backend_connect_failures_total",
            &["kind=\"refused\""]
        ),
        1.0
    );
    assert_eq!(sum(&m, "ringway_backend_connect_failures_total", &[]), 1.0);
    // Anything but /metrics is a 404.
    assert!(http_get(q.metrics, "/").starts_with("HTTP/1.1 404"));

    // Health: in a group of two, the refusing one goes down at its first failure
    // (max_fails 1), for every worker; the live one stays up.
    let r = start_list(mode, &format!("{b},{dead}"), &[]);
    let (up, down) = (format!("backend=\"{b}\""), format!("backend=\"{dead}\""));
    let m = until(r.metrics, "the dead backend down", |m| {
        let _ = http_get(r.addr, "/");
        sum(m, "ringway_backend_up", &[&down]) == 0.0
    })
    .await;
    assert_eq!(sum(&m, "ringway_backend_up", &[&up]), 1.0);
    assert_eq!(sum(&m, "ringway_backend_downs_total", &[&down]), 1.0);
    assert_eq!(sum(&m, "ringway_backend_downs_total", &[&up]), 0.0);
    assert_eq!(sum(&m, "ringway_backend_fails", &[&down]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_numbers_in_thread_mode() {
    known_numbers("thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_numbers_in_process_mode() {
    known_numbers("process").await;
}

// ----- handoffs: a full worker hands its client to the sibling with room -------------------

/// The source address of the clients whose worker a test chooses: a loopback address of
/// their own, so that an explicit source port never meets one of ringway's upstream sockets.
const SRC: [u8; 4] = [127, 0, 0, 3];

/// A TCP connection to `addr` from `SRC:port` (port 0: the kernel picks one).
async fn connect_from(addr: SocketAddr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::from((SRC, port)))?;
    s.connect(addr).await
}

/// [`ws`] from `SRC:port`.
async fn ws_from(addr: SocketAddr, port: u16) -> Result<(Ws, String), WsError> {
    let s = connect_from(addr, port).await.map_err(WsError::Io)?;
    let url = format!("ws://{addr}/chat");
    let (mut w, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(s)).await?;
    use futures_util::StreamExt;
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => Ok((w, t.to_string())),
        other => panic!("no banner: {other:?}"),
    }
}

fn worker(w: usize) -> String {
    format!("worker=\"{w}\"")
}

/// Which worker SO_REUSEPORT's hash gives a client from `SRC:port`, for ports the kernel
/// picks, until one worker has `want` ports and the other `other`. Each probe connects
/// while no worker is full (so the worker that accepts it is the one the hash chose: its
/// `ringway_accepted_total` goes up), then leaves with a reset (SO_LINGER 0: no TIME_WAIT),
/// so the same 4-tuple connects again later and is hashed to the same worker. Returns the
/// ports per worker and how many probes each worker accepted.
async fn ports_by_worker(p: &Proxy, want: usize, other: usize) -> ([Vec<u16>; 2], [f64; 2]) {
    let mut by: [Vec<u16>; 2] = Default::default();
    let mut seen = [0.0, 0.0];
    for i in 1..=200 {
        let s = connect_from(p.addr, 0).await.unwrap();
        let port = s.local_addr().unwrap().port();
        let m = until(p.metrics, "a probe accepted", |m| {
            sum(m, "ringway_accepted_total", &[]) == i as f64
        })
        .await;
        let now = [0, 1].map(|w| sum(&m, "ringway_accepted_total", &[&worker(w)]));
        let w = (0..2).find(|&w| now[w] == seen[w] + 1.0).unwrap();
        assert_eq!(now[1 - w], seen[1 - w], "one worker took the probe");
        seen = now;
        // The kernel may hand a reset probe's port out again: a port listed twice would
        // later connect the same 4-tuple as a held tunnel (EADDRNOTAVAIL). Keep it once.
        if !by.iter().any(|v| v.contains(&port)) {
            by[w].push(port);
        }
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        until(p.metrics, "the probe gone", |m| {
            sum(m, "ringway_sessions", &[]) == 0.0
                && sum(m, "ringway_worker_slots_used", &[]) == 4.0
        })
        .await;
        if (0..2).any(|w| by[w].len() >= want && by[1 - w].len() >= other) {
            return (by, seen);
        }
    }
    panic!("200 probes, ports per worker: {by:?}");
}

/// 2 workers × 12 slots (5 clients each). Clients from source ports whose hash is known:
/// 5 fill worker F; then, alternately, one hashed to the other worker O (admitted there) and
/// one hashed to F (handed to O) until O is full too; the next one hashed to F gets a 503.
/// Every count is exact: 2 handoffs by F, none by O, one 503 and one episode at F.
async fn handoffs(mode: &str) {
    let b = echo_backend().await;
    let p = start(mode, b, &[]);
    let (by, probes) = ports_by_worker(&p, 8, 3).await;
    let f = if by[0].len() >= 8 && by[1].len() >= 3 {
        0
    } else {
        1
    };
    let o = 1 - f;
    let (fw, ow) = (worker(f), worker(o));
    let state = |m: &BTreeMap<String, f64>| {
        [
            sum(m, "ringway_tunnels", &[&fw]),
            sum(m, "ringway_tunnels", &[&ow]),
            sum(m, "ringway_worker_handoffs_total", &[&fw]),
            sum(m, "ringway_worker_handoffs_total", &[&ow]),
        ]
    };
    let mut held = Vec::new();
    for (i, &port) in by[f][..5].iter().enumerate() {
        let (mut w, _) = ws_from(p.addr, port).await.unwrap();
        assert!(echo(&mut w, Message::Text(format!("f{i}"))).await);
        held.push(w);
    }
    let want = [5.0, 0.0, 0.0, 0.0];
    until(p.metrics, "F full", |m| state(m) == want).await;
    // (source port, O's tunnels after it, F's handoffs after it)
    let steps = [
        (by[o][0], 1.0, 0.0),
        (by[f][5], 2.0, 1.0),
        (by[o][1], 3.0, 1.0),
        (by[f][6], 4.0, 2.0),
        (by[o][2], 5.0, 2.0),
    ];
    for (port, o_tunnels, handed) in steps {
        let (mut w, _) = ws_from(p.addr, port).await.unwrap();
        assert!(echo(&mut w, Message::Text(format!("from {port}"))).await);
        held.push(w);
        let want = [5.0, o_tunnels, handed, 0.0];
        until(p.metrics, &format!("{want:?}"), |m| state(m) == want).await;
    }
    // Both full: the client hashed to F is answered 503 by F, handed to nobody.
    match ws_from(p.addr, by[f][7]).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    let m = until(p.metrics, "F refused one", |m| {
        sum(m, "ringway_worker_refused_total", &[]) == 1.0
    })
    .await;
    assert_eq!(state(&m), [5.0, 5.0, 2.0, 0.0]);
    assert_eq!(
        sum(&m, "ringway_worker_refused_total", &[&fw, "reason=\"503\""]),
        1.0
    );
    assert_eq!(
        sum(&m, "ringway_worker_not_enough_episodes_total", &[&fw]),
        1.0
    );
    assert_eq!(
        sum(&m, "ringway_worker_not_enough_episodes_total", &[&ow]),
        0.0
    );
    // A worker counts the clients it admitted or refused: F its 5 and the 503, O its 3
    // and the 2 handed to it (the probes before them).
    assert_eq!(sum(&m, "ringway_accepted_total", &[&fw]), probes[f] + 6.0);
    assert_eq!(sum(&m, "ringway_accepted_total", &[&ow]), probes[o] + 5.0);
    // Every tunnel, the handed ones included, still echoes.
    for (i, w) in held.iter_mut().enumerate() {
        assert!(echo(w, Message::Text(format!("again {i}"))).await, "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_exact_in_thread_mode() {
    handoffs("thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_exact_in_process_mode() {
    handoffs("process").await;
}

// ----- how tunnels end ----------------------------------------------------------------------

/// A backend that answers an upgrade with a bare 101 and, after the first bytes it reads
/// through the tunnel, sends `bye` and closes its socket: the backend ends the tunnel.
async fn closing_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if s.write_all(head).await.is_err() {
                    return;
                }
                if let Ok(n) = s.read(&mut buf).await {
                    if n > 0 {
                        let _ = s.write_all(b"bye").await;
                    }
                }
            });
        }
    });
    addr
}

/// A raw client: the upgrade request, then the status of the answer.
async fn upgrade(addr: SocketAddr) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let (mut got, mut b) = (Vec::new(), [0u8; 1]);
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(n, 1, "answer cut: {:?}", String::from_utf8_lossy(&got));
        got.push(b[0]);
    }
    (
        std::str::from_utf8(&got[9..12]).unwrap().parse().unwrap(),
        s,
    )
}

/// Two tunnels ended by the backend (it closes after `bye`), one by the client (it closes
/// first): `ringway_tunnels_closed_total` counts 2 `backend_close` and 1 `client_close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_closed_by_the_backend_and_by_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = closing_backend().await;
    let p = start("thread", b, &[]);
    for i in 0..2 {
        let (status, mut s) = upgrade(p.addr).await;
        assert_eq!(status, 101);
        s.write_all(b"x").await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("the backend's close reaches the client")
            .unwrap();
        assert_eq!(got, b"bye");
        drop(s);
        let m = until(p.metrics, "a tunnel ended", |m| {
            sum(m, "ringway_tunnels_closed_total", &[]) == (i + 1) as f64
                && sum(m, "ringway_sessions", &[]) == 0.0
        })
        .await;
        assert_eq!(
            sum(
                &m,
                "ringway_tunnels_closed_total",
                &["end=\"backend_close\""]
            ),
            (i + 1) as f64
        );
    }
    let (status, s) = upgrade(p.addr).await;
    assert_eq!(status, 101);
    drop(s);
    let m = until(p.metrics, "the third tunnel ended", |m| {
        sum(m, "ringway_tunnels_closed_total", &[]) == 3.0 && sum(m, "ringway_sessions", &[]) == 0.0
    })
    .await;
    for (end, n) in [
        ("backend_close", 2.0),
        ("client_close", 1.0),
        ("timeout", 0.0),
        ("error", 0.0),
        ("shutdown", 0.0),
    ] {
        let label = format!("end=\"{end}\"");
        assert_eq!(
            sum(&m, "ringway_tunnels_closed_total", &[&label]),
            n,
            "{end}"
        );
    }
    assert_eq!(sum(&m, "ringway_tunnels_opened_total", &[]), 3.0);
    assert_eq!(sum(&m, "ringway_tunnels", &[]), 0.0);
}

// ----- reloads ------------------------------------------------------------------------------

/// Start from nginx.conf `conf` with `--metrics`; a thread keeps reading stdout (a reload
/// prints its own "listening on" line).
fn start_conf(conf: &std::path::Path, mode: &str) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("-c")
        .arg(conf)
        .args(["--listen", "127.0.0.1:0", "--no-pin", "--worker-mode", mode])
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut metrics) = (None, None);
    while addr.is_none() || metrics.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the listening and metrics lines");
        if let Some(rest) = line.strip_prefix("ringway: listening on ") {
            addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
        if let Some(rest) = line.strip_prefix("ringway: metrics on http://") {
            metrics = Some(rest.trim().trim_end_matches("/metrics").parse().unwrap());
        }
    }
    Proxy {
        child,
        addr: addr.unwrap(),
        metrics: metrics.unwrap(),
    }
}

/// N requests, a reload (SIGHUP), M more: once the first generation has ended, its
/// counters live on in the retired totals, so every counter is exactly N + M;
/// `ringway_reloads_total` is 1 and the start time does not move.
async fn counters_survive_a_reload(mode: &str) {
    let b = echo_backend().await;
    let dir = std::env::temp_dir().join(format!("ringway-metrics-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ringway.conf");
    let text = |workers: usize, wc: usize| {
        format!(
            "worker_processes {workers};\nevents {{ worker_connections {wc}; }}\nhttp {{\n upstream app {{ server {b}; }}\n server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://app; proxy_http_version 1.1; }} }}\n}}\n"
        )
    };
    std::fs::write(&conf, text(2, 16)).unwrap();
    let p = start_conf(&conf, mode);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let m = scrape(p.metrics);
    let started = sum(&m, "ringway_start_time_seconds", &[]);
    assert!((now - started).abs() < 5.0, "started {started}, now {now}");
    assert_eq!(sum(&m, "ringway_reloads_total", &[]), 0.0);
    assert_eq!(sum(&m, "ringway_worker_slots", &[]), 32.0);

    let (n, k) = (5.0, 3.0);
    let be = format!("backend=\"{b}\"");
    let counters = |m: &BTreeMap<String, f64>| {
        [
            sum(m, "ringway_http_requests_total", &[]),
            sum(m, "ringway_http_responses_total", &["class=\"2xx\""]),
            sum(m, "ringway_accepted_total", &[]),
            sum(m, "ringway_backend_requests_total", &[&be]),
            sum(
                m,
                "ringway_backend_responses_total",
                &[&be, "class=\"2xx\""],
            ),
            sum(m, "ringway_backend_connect_seconds_count", &[&be]),
        ]
    };
    for i in 0..n as usize {
        assert!(http_get(p.addr, &format!("/a{i}")).starts_with("HTTP/1.1 200"));
    }
    until(p.metrics, "N requests", |m| counters(m) == [n; 6]).await;

    // The new file has another budget (1 × 24 instead of 2 × 16), so the slots say which
    // generations are live: 32 + 24 while the old one drains, exactly 24 once it retired.
    std::fs::write(&conf, text(1, 24)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    until(p.metrics, "reloaded, the old generation retired", |m| {
        sum(m, "ringway_reloads_total", &[]) == 1.0 && sum(m, "ringway_worker_slots", &[]) == 24.0
    })
    .await;
    // The retired generation's counters are still there, and nothing counted twice.
    assert_eq!(counters(&scrape(p.metrics)), [n; 6]);

    for i in 0..k as usize {
        assert!(http_get(p.addr, &format!("/b{i}")).starts_with("HTTP/1.1 200"));
    }
    // A session's count drops when it ends; its two slots come back when its sockets'
    // closes complete, a moment later: wait for both (a leaked slot still fails here).
    let m = until(p.metrics, "N + M requests, every slot back", |m| {
        sum(m, "ringway_http_requests_total", &[]) == n + k
            && sum(m, "ringway_sessions", &[]) == 0.0
            && sum(m, "ringway_worker_slots_used", &[]) == 2.0
    })
    .await;
    assert_eq!(counters(&m), [n + k; 6]);
    assert_eq!(sum(&m, "ringway_reloads_total", &[]), 1.0);
    assert_eq!(sum(&m, "ringway_start_time_seconds", &[]), started);
    assert_eq!(sum(&m, "ringway_worker_slots", &[]), 24.0);
    assert_eq!(sum(&m, "ringway_worker_slots_used", &[]), 2.0);
    assert_eq!(sum(&m, "ringway_workers", &[]), 1.0);
    assert_eq!(sum(&m, "ringway_worker_refused_total", &[]), 0.0);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_reload_in_thread_mode() {
    counters_survive_a_reload("thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_reload_in_process_mode() {
    counters_survive_a_reload("process").await;
}

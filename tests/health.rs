//! Backend health, weights and backups on real sockets: a backend killed and restarted
//! under load, passive state shared by every worker (threads and processes), weights,
//! backups, active health checks (plain and WebSocket upgrade).
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use ringway::config::{HealthCheck, ServerParams};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo backend that can be killed (listener and every connection closed)
/// and started again on the same port. Plain requests get `200 backend:<port>`, or `503`
/// while `healthy` is false (for the active checks).
struct Backend {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    healthy: Arc<AtomicBool>,
    ws_only: bool,
}

impl Backend {
    async fn start() -> Backend {
        Self::start_on("127.0.0.1:0".parse().unwrap(), false).await
    }

    async fn start_on(addr: SocketAddr, ws_only: bool) -> Backend {
        let mut b = Backend {
            addr,
            task: None,
            healthy: Arc::new(AtomicBool::new(true)),
            ws_only,
        };
        b.run().await;
        b
    }

    async fn run(&mut self) {
        let l = TcpListener::bind(self.addr).await.unwrap();
        self.addr = l.local_addr().unwrap();
        let (port, healthy, ws_only) = (self.addr.port(), self.healthy.clone(), self.ws_only);
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((s, _)) = l.accept().await {
                conns.spawn(serve(s, port, healthy.clone(), ws_only));
            }
        }));
    }

    /// Kill it: the listener and every connection close (aborting drops them).
    async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        self.run().await;
    }
}

async fn serve(s: TcpStream, port: u16, healthy: Arc<AtomicBool>, ws_only: bool) {
    let mut peek = [0u8; 2048];
    let Ok(n) = s.peek(&mut peek).await else {
        return;
    };
    let head = String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase();
    if !head.contains("upgrade: websocket") {
        let mut s = s;
        if ws_only {
            return; // closes: this backend speaks only WebSocket
        }
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let resp = if healthy.load(Ordering::SeqCst) {
            let body = format!("backend:{port}");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string()
        };
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    if ws
        .send(Message::Text(format!("backend:{port}")))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(m)) = ws.next().await {
        if matches!(m, Message::Text(_) | Message::Binary(_)) && ws.send(m).await.is_err() {
            return;
        }
    }
}

/// One plain request through `addr`: the backend's port, or the status ringway answered.
async fn get(addr: SocketAddr) -> Result<u16, u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await;
    let text = String::from_utf8_lossy(&all);
    let status: u16 = text.get(9..12).and_then(|t| t.parse().ok()).unwrap_or(0);
    match text.split("backend:").nth(1) {
        Some(p) if status == 200 => Ok(p.trim().parse().unwrap()),
        _ => Err(status),
    }
}

fn params(list: &[(u32, bool)]) -> Vec<ServerParams> {
    list.iter()
        .map(|&(weight, backup)| ServerParams {
            weight,
            backup,
            fail_timeout: Duration::from_secs(2),
            ..ServerParams::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_3_to_1_give_75_25() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let p = proxy(with(config(vec![a.addr, b.addr]), |c| {
        c.workers = 2;
        c.servers = params(&[(3, false), (1, false)]);
    }));
    let mut on_a = 0;
    for _ in 0..400 {
        if get(p.local_addr()).await.expect("no error") == a.addr.port() {
            on_a += 1;
        }
    }
    // Smooth weighted round robin per worker: 300 ± 12 (3 %).
    assert!(
        (288..=312).contains(&on_a),
        "{on_a} of 400 on the weight-3 backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_only_when_every_primary_is_down() {
    let (mut a, mut b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let p = proxy(with(config(vec![a.addr, b.addr, c.addr]), |cfg| {
        cfg.servers = params(&[(1, false), (1, false), (1, true)]);
    }));
    for _ in 0..20 {
        let port = get(p.local_addr()).await.expect("no error");
        assert_ne!(
            port,
            c.addr.port(),
            "the backup is idle while a primary is up"
        );
    }
    a.kill().await;
    for _ in 0..20 {
        let port = get(p.local_addr())
            .await
            .expect("one primary left: no error");
        assert_eq!(port, b.addr.port());
    }
    b.kill().await;
    // The first request finds b dead (and no other primary): 502 once, then the backup.
    let _ = get(p.local_addr()).await;
    for _ in 0..20 {
        assert_eq!(
            get(p.local_addr()).await,
            Ok(c.addr.port()),
            "every primary is down"
        );
    }
    assert!(
        p.stats().backends[0].state.starts_with("down"),
        "{:?}",
        p.stats().backends
    );
    // The primaries come back: after fail_timeout (2 s) they are probed and used again.
    a.restart().await;
    b.restart().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut on_backup = 0;
    for _ in 0..20 {
        if get(p.local_addr()).await.expect("no error") == c.addr.port() {
            on_backup += 1;
        }
    }
    assert!(
        on_backup <= 2,
        "primaries are back: {on_backup} of 20 still on the backup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_and_restarted_under_load() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut backends = backends;
    let p = Arc::new(proxy(with(config(addrs.clone()), |c| {
        c.workers = 2;
        c.servers = params(&[(1, false), (1, false), (1, false)]);
    })));
    let dead = addrs[2];
    // Tunnels on every backend, echoing all along.
    let mut held = Vec::new();
    for _ in 0..12 {
        let (w, banner) = ws(p.local_addr()).await.unwrap();
        held.push((w, banner));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut echoers = Vec::new();
    for (mut w, banner) in held {
        if banner == format!("backend:{}", dead.port()) {
            continue; // these die with their backend
        }
        let (stop, errors) = (stop.clone(), errors.clone());
        echoers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if !echo(&mut w, Message::Text(format!("m{i}"))).await {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let failures = |p: &ringway::Server| p.stats().backends[2].failures_total;
    backends[2].kill().await;
    // New clients keep coming, spread over both workers: none sees an error, and only the
    // first one that is sent to the dead backend pays a failed connect — the other worker
    // knows at once.
    let mut on_dead = 0;
    for _ in 0..60 {
        let (_w, banner) = ws(p.local_addr())
            .await
            .expect("a new client sees no error");
        if banner == format!("backend:{}", dead.port()) {
            on_dead += 1;
        }
    }
    assert_eq!(on_dead, 0);
    assert_eq!(
        failures(&p),
        1,
        "one failed connect over both workers: {:?}",
        p.stats().backends
    );
    let accepted: Vec<u64> = p.stats().workers.iter().map(|w| w.accepted).collect();
    assert!(
        accepted.iter().all(|&n| n >= 10),
        "both workers took clients: {accepted:?}"
    );
    assert_eq!(p.stats().backends[2].state, "down (failures)");
    // Restarted, it gets clients again within fail_timeout (2 s) + 1 s.
    backends[2].restart().await;
    let t0 = Instant::now();
    let mut back = None;
    while t0.elapsed() < Duration::from_secs(6) {
        let (_w, banner) = ws(p.local_addr()).await.expect("no error");
        if banner == format!("backend:{}", dead.port()) {
            back = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = back.expect("the restarted backend gets clients again");
    assert!(back <= Duration::from_secs(3), "back after {back:?}");
    assert_eq!(p.stats().backends[2].state, "up");
    stop.store(true, Ordering::SeqCst);
    for e in echoers {
        e.await.unwrap();
    }
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "clients of the live backends saw no error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_backend_out_and_back_without_touching_its_tunnels() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let check = HealthCheck {
        interval: Duration::from_millis(100),
        fails: 2,
        passes: 2,
        ..HealthCheck::new("/health")
    };
    let p = proxy(with(config(vec![a.addr, b.addr]), |c| {
        c.health_check = Some(check);
    }));
    // A tunnel on b.
    let mut tunnel = loop {
        let (w, banner) = ws(p.local_addr()).await.unwrap();
        if banner == format!("backend:{}", b.addr.port()) {
            break w;
        }
    };
    b.healthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(3, || p.stats().backends[1].state == "down (health check)").await,
        "{:?}",
        p.stats().backends
    );
    for _ in 0..10 {
        assert_eq!(
            get(p.local_addr()).await,
            Ok(a.addr.port()),
            "no new client for b"
        );
    }
    assert!(
        echo(&mut tunnel, Message::Text("still here".into())).await,
        "its tunnel is untouched"
    );
    b.healthy.store(true, Ordering::SeqCst);
    assert!(eventually(3, || p.stats().backends[1].state == "up").await);
    let ports: Vec<_> = futures_util::future::join_all((0..6).map(|_| get(p.local_addr()))).await;
    assert!(ports.contains(&Ok(b.addr.port())), "b is back: {ports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_only_backend_passes_an_upgrade_check_and_fails_a_plain_one() {
    let b = Backend::start_on("127.0.0.1:0".parse().unwrap(), true).await;
    let plain = HealthCheck {
        interval: Duration::from_millis(100),
        fails: 1,
        ..HealthCheck::new("/socket")
    };
    let upgrade = HealthCheck {
        upgrade: true,
        ..plain.clone()
    };
    let p = proxy(with(config(vec![b.addr]), |c| {
        c.health_check = Some(upgrade)
    }));
    let q = proxy(with(config(vec![b.addr]), |c| c.health_check = Some(plain)));
    assert!(eventually(3, || q.stats().backends[0].state == "down (health check)").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.stats().backends[0].state, "up", "the handshake passes");
    assert!(ws(p.local_addr()).await.is_ok());
}

/// A backend that accepts and closes at once (a reset before the response head),
/// counting the connections it got.
async fn slamming() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n2.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_share_what_one_learned() {
    let good = Backend::start().await;
    let (bad, hits) = slamming().await;
    let (mut child, addr) = process_mode(&[good.addr, bad], &[]);
    let mut errors = 0;
    for _ in 0..40 {
        if get(addr).await.is_err() {
            errors += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // One worker process learned it the hard way; the other never tried it (nginx
    // without a `zone`: once per worker process).
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "connections to the failing backend"
    );
    assert_eq!(
        errors, 1,
        "only the client of that one attempt saw an error"
    );
}

/// ringway in process mode with 2 worker processes over `upstreams`, plus `extra` flags.
fn process_mode(upstreams: &[SocketAddr], extra: &[&str]) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let list: Vec<String> = upstreams.iter().map(|a| a.to_string()).collect();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--worker-mode",
            "process",
            "--no-pin",
        ])
        .args(["--worker-processes", "2", "--keepalive", "0"])
        .args(["--upstream", &list.join(",")])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr: Option<SocketAddr> = None;
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(rest) = line.strip_prefix("ringway: listening on ") {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            break;
        }
    }
    (child, addr.expect("ringway announces its address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_checks_for_every_worker_process() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    b.healthy.store(false, Ordering::SeqCst);
    let flags = [
        "--health-check",
        "/health",
        "--health-check-interval",
        "100ms",
        "--health-check-fails",
        "1",
    ];
    let (mut child, addr) = process_mode(&[a.addr, b.addr], &flags);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut on_b = 0;
    for _ in 0..30 {
        if get(addr).await == Ok(b.addr.port()) {
            on_b += 1;
        }
    }
    b.healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut back = 0;
    for _ in 0..30 {
        if get(addr).await == Ok(b.addr.port()) {
            back += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        on_b, 0,
        "no worker process sends clients to a backend the master found down"
    );
    assert!(back >= 5, "up again for every worker process: {back} of 30");
}

//! Lifecycle on real sockets: a graceful stop (SIGQUIT, SIGTERM; threads and processes)
//! refuses new clients at once, finishes a request in flight with `Connection: close` and
//! keeps tunnels until the shutdown timeout; reloads (SIGHUP, `-s reload`, the systemd
//! unit's `ExecReload`) of a -c file add and remove backends under continuous tunnel and
//! keep-alive HTTP traffic without a dropped tunnel or a failed request, and no request
//! reaches a removed backend once its reload is done (idle kept-alive connections of the
//! old generation are closed at once); an old generation that drained leaves no
//! descriptor behind; a broken file is refused with its file:line and the old
//! configuration keeps serving; a reload changing the worker count and budget keeps held
//! tunnels and applies the new ceiling, in thread and in process mode (with a worker
//! restart in between); what only a restart applies (metrics, error log, pid) is kept and
//! warned about; `-s quit|stop|reload` on a live process.
mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

struct Proxy {
    child: Child,
    addr: SocketAddr,
    out: Arc<Mutex<Vec<String>>>,
    /// When each "listening on" line (one per generation) was read.
    listening: Arc<Mutex<Vec<Instant>>>,
    err: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Proxy {
    fn conf(&self) -> PathBuf {
        self.dir.join("ringway.conf")
    }
    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), s).unwrap();
    }
    fn lines_with(&self, what: &str) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }
    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }
    /// Wait until `n` "listening on" lines were printed (one per generation).
    async fn generations(&self, n: usize) -> bool {
        eventually(15, || self.lines_with("listening on") >= n).await
    }
}

fn conf_text(backends: &[SocketAddr], workers: usize, wc: usize, extra: &str) -> String {
    let servers: String = backends.iter().map(|b| format!("server {b}; ")).collect();
    format!(
        "worker_processes {workers};\n{extra}events {{ worker_connections {wc}; }}\nhttp {{\n map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n upstream app {{ {servers}}}\n server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://app; proxy_http_version 1.1;\n proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }} }}\n}}\n"
    )
}

fn start(text: &str, extra: &[&str]) -> Proxy {
    start_opts(text, extra, true)
}

/// A fresh directory for one ringway's files.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringway-life-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start ringway on the file `text` in a fresh directory (`{dir}` in the text names it);
/// `pid_flag`: with `--pid-file DIR/ringway.pid` (which overrides the file's `pid`).
fn start_opts(text: &str, extra: &[&str], pid_flag: bool) -> Proxy {
    let dir = temp_dir();
    let conf = dir.join("ringway.conf");
    std::fs::write(&conf, text.replace("{dir}", &dir.display().to_string())).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringway"));
    cmd.arg("-c")
        .arg(&conf)
        .args(["--listen", "127.0.0.1:0", "--no-pin"]);
    if pid_flag {
        cmd.arg("--pid-file").arg(dir.join("ringway.pid"));
    }
    let mut child = cmd
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let listening = Arc::new(Mutex::new(Vec::new()));
    let (o, e, l) = (out.clone(), err.clone(), listening.clone());
    let mut so = BufReader::new(child.stdout.take().unwrap());
    let mut se = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut line = String::new();
        while so.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("listening on") {
                l.lock().unwrap().push(Instant::now());
            }
            o.lock().unwrap().push(std::mem::take(&mut line));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = se.read(&mut buf) {
            if n == 0 {
                break;
            }
            e.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let end = Instant::now() + Duration::from_secs(15);
    let addr = loop {
        let found = out.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("ringway: listening on ")
                .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < end,
            "no listening line: {}",
            err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Proxy {
        child,
        addr,
        out,
        listening,
        err,
        dir,
    }
}

fn port_of(banner: &str) -> u16 {
    banner.trim_start_matches("backend:").parse().unwrap()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// One keep-alive HTTP request on `conn` (reconnecting when there is none); returns the
/// backend port that answered. A kept-alive connection closed before any byte of the
/// answer came back is retried on a new one, as HTTP clients do; anything else fails.
async fn request(
    addr: SocketAddr,
    conn: &mut Option<tokio::net::TcpStream>,
) -> Result<u16, String> {
    for _ in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            *conn = Some(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?,
            );
        }
        let s = conn.as_mut().unwrap();
        if s.write_all(b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .is_err()
            && reused
        {
            *conn = None;
            continue;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let (head_end, len) = loop {
            let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) | Err(_) if got.is_empty() && reused => 0,
                other => return Err(format!("read: {other:?}")),
            };
            if n == 0 {
                break (0, None);
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                break (i + 4, len);
            }
        };
        let Some(len) = len else {
            if got.is_empty() && reused {
                *conn = None;
                continue;
            }
            return Err(format!("no answer: {:?}", String::from_utf8_lossy(&got)));
        };
        while got.len() < head_end + len {
            let n = s.read(&mut buf).await.map_err(|e| format!("body: {e}"))?;
            if n == 0 {
                return Err("short body".into());
            }
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(format!("status: {head}"));
        }
        if head.contains("connection: close") {
            *conn = None;
        }
        let body = String::from_utf8_lossy(&got[head_end..head_end + len]).to_string();
        return Ok(port_of(body.trim()));
    }
    Err("closed twice".into())
}

/// (a) 200 tunnels echoing and 50 keep-alive HTTP clients while the file is reloaded 10
/// times, alternately adding and removing a backend (half by SIGHUP, half by -s reload).
async fn reloads_under_traffic(extra: &[&str]) {
    let (b1, b2) = (echo_backend().await, echo_backend().await);
    let p = start(&conf_text(&[b1], 1, 1024, ""), extra);
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    // Every answered HTTP request: when it started (before its write, or its connect) and
    // the backend that answered it.
    let answers = Arc::new(Mutex::new(Vec::<(Instant, u16)>::new()));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (addr, stop, dropped) = (p.addr, stop.clone(), dropped.clone());
        let (mut w, _) = ws(addr).await.unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !echo(&mut w, Message::Text(format!("t{i}"))).await {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    for _ in 0..50 {
        let (addr, stop, failed, requests, answers) = (
            p.addr,
            stop.clone(),
            failed.clone(),
            requests.clone(),
            answers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match request(addr, &mut conn).await {
                    Ok(port) => {
                        answers.lock().unwrap().push((started, port));
                        requests.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        conn = None;
                        0
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let pid_file = p.dir.join("ringway.pid");
    // Per reload: when it was asked for, and when it had completed (its generation's
    // "listening on" line read: printed once the old generation had stopped accepting).
    let mut reloads: Vec<(Instant, Instant)> = Vec::new();
    for r in 1..=10 {
        let with_b2 = r % 2 == 1;
        let set: &[SocketAddr] = if with_b2 { &[b1, b2] } else { &[b1] };
        std::fs::write(p.conf(), conf_text(set, 1, 1024, "")).unwrap();
        let asked = Instant::now();
        if r % 2 == 0 {
            let st = Command::new(env!("CARGO_BIN_EXE_ringway"))
                .args(["-s", "reload", "--pid-file"])
                .arg(&pid_file)
                .status()
                .unwrap();
            assert_eq!(st.code(), Some(0), "-s reload");
        } else {
            p.signal(Signal::SIGHUP);
        }
        assert!(p.generations(r + 1).await, "reload {r}: {}", p.stderr());
        reloads.push((asked, p.listening.lock().unwrap()[r]));
        // Round robin is shared with the HTTP clients reconnecting to the new generation,
        // so consecutive tunnels can alternate in step with them and all land on b1: open
        // new tunnels until b2 answers (added), or 8 that must all avoid it (removed).
        let mut ports = Vec::new();
        for _ in 0..if with_b2 { 32 } else { 8 } {
            let (w, banner) = ws(p.addr).await.expect("a new tunnel after a reload");
            ports.push(port_of(&banner));
            drop(w);
            if with_b2 && ports.contains(&b2.port()) {
                break;
            }
        }
        if with_b2 {
            assert!(
                ports.contains(&b2.port()),
                "reload {r}: added backend reached: {ports:?}"
            );
        } else {
            assert!(
                !ports.contains(&b2.port()),
                "reload {r}: removed backend not reached: {ports:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(dropped.load(Ordering::Relaxed), 0, "tunnels dropped");
    assert_eq!(
        *failed.lock().unwrap(),
        Vec::<String>::new(),
        "failed requests"
    );
    assert!(
        requests.load(Ordering::Relaxed) > 100,
        "the HTTP clients ran"
    );
    // No HTTP request that started after a reload removing b2 had completed was answered
    // by b2 (until the next reload added it back): kept-alive connections of the old
    // generation are closed when idle, or after the exchange in flight.
    let answers = answers.lock().unwrap();
    assert!(
        answers.iter().any(|&(_, port)| port == b2.port()),
        "b2 answered HTTP requests while it was in the file"
    );
    let mut late = Vec::new();
    for (i, &(_, done)) in reloads.iter().enumerate() {
        if (i + 1) % 2 == 1 {
            continue; // this reload added b2
        }
        let until = reloads.get(i + 1).map(|&(asked, _)| asked);
        late.extend(
            answers
                .iter()
                .filter(|&&(t, port)| port == b2.port() && t >= done && until.is_none_or(|u| t < u))
                .map(|&(t, _)| (i + 1, t - done)),
        );
    }
    assert!(
        late.is_empty(),
        "{} requests reached the removed backend after their reload (reload, started after it): {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
    assert_eq!(
        p.lines_with("budget: 1 worker"),
        11,
        "the budget line after each reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_drop_nothing_and_route_new_clients_by_the_new_file() {
    reloads_under_traffic(&[]).await;
}

/// The same in process mode: each reload's worker process takes over the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_in_process_mode() {
    reloads_under_traffic(&["--worker-mode", "process"]).await;
}

/// One whole answer on `s`: its head (lower case) and body; an error if the connection
/// ends first or nothing comes within 5 s.
async fn answer(s: &mut tokio::net::TcpStream) -> Result<(String, String), String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or(format!("no content-length: {head}"))?;
            if got.len() >= i + 4 + len {
                let body = String::from_utf8_lossy(&got[i + 4..i + 4 + len]).to_string();
                return Ok((head, body));
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => {
                return Err(format!(
                    "{other:?} after {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
}

/// Whether the peer closed `s` within `within` (end of stream or a reset).
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A reload's old generation closes an idle kept-alive connection at once (its next
/// request would be served by the old file: it must reconnect to the new one), and
/// answers a request whose head was partly received before the reload — it is in
/// flight — by the old file, with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_closes_idle_kept_alive_clients_at_once_and_answers_a_partial_head() {
    let (b1, b2) = (echo_backend().await, echo_backend().await);
    let p = start(&conf_text(&[b1], 1, 1024, ""), &[]);
    const GET: &[u8] = b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut idle = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for s in [&mut idle, &mut partial] {
        s.write_all(GET).await.unwrap();
        let (head, body) = answer(s).await.unwrap();
        assert!(!head.contains("connection: close"), "{head}");
        assert_eq!(port_of(body.trim()), b1.port());
    }
    partial.write_all(&GET[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(p.conf(), conf_text(&[b2], 1, 1024, "")).unwrap();
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    // Closed at once: well before the 1 s a graceful stop would give it.
    assert!(
        closed_within(&mut idle, Duration::from_millis(400)).await,
        "the idle kept-alive connection was not closed at the reload"
    );
    partial.write_all(&GET[20..]).await.unwrap();
    let (head, body) = answer(&mut partial)
        .await
        .expect("the partial request's answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(port_of(body.trim()), b1.port(), "answered by the old file");
    assert!(closed_within(&mut partial, Duration::from_secs(3)).await);
    let mut fresh = None;
    assert_eq!(request(p.addr, &mut fresh).await, Ok(b2.port()), "new file");
}

/// (b) A broken file on reload: one error line with file:line, the old one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_refused_and_the_old_configuration_serves() {
    let b1 = echo_backend().await;
    let p = start(&conf_text(&[b1], 1, 1024, ""), &[]);
    let (mut held, _) = ws(p.addr).await.unwrap();
    std::fs::write(
        p.conf(),
        "worker_processes 1;\nevents { worker_connections 64; }\nhttp { bogus_directive on; }\n",
    )
    .unwrap();
    p.signal(Signal::SIGHUP);
    let conf = p.conf().display().to_string();
    assert!(
        eventually(10, || p.stderr().contains("reload failed")).await,
        "{}",
        p.stderr()
    );
    let err = p.stderr();
    let line = err.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(
        line.contains(&format!("{conf}:3")),
        "file:line named: {line}"
    );
    assert!(line.contains("[error]"), "{line}");
    assert!(echo(&mut held, Message::Text("still".into())).await);
    let (_, banner) = ws(p.addr).await.expect("a new client, old configuration");
    assert_eq!(port_of(&banner), b1.port());
    assert_eq!(p.lines_with("listening on"), 1, "no new generation");
}

/// Descriptors open in process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Descriptors open in ringway: the process and its worker processes, if any.
fn tree_fds(pid: u32) -> usize {
    fds(pid) + children(pid).into_iter().map(fds).sum::<usize>()
}

/// (c) A graceful stop by `sig` with held tunnels and a request in flight. First a reload
/// with tunnels held: once they end and the old generation is gone, ringway holds exactly
/// the descriptors it held before they were opened, and the backend none of their
/// connections. Then the stop: new connects refused at once; the request in flight to a
/// slow backend gets its 200 with `Connection: close`; tunnels echo until the deadline,
/// then are closed; exit 0; the pid file removed; the backend's connections all closed.
async fn graceful_stop(sig: Signal, extra: &[&str]) {
    let (b1, open) = counting_echo_backend().await;
    let mut p = start(
        &conf_text(&[b1], 2, 1024, "worker_shutdown_timeout 2s;\n"),
        extra,
    );
    let pid = p.child.id();
    let processes = !extra.is_empty();
    if processes {
        assert!(eventually(10, || children(pid).len() == 2).await);
    }
    let base = tree_fds(pid);
    let mut old = Vec::new();
    for _ in 0..20 {
        old.push(ws(p.addr).await.unwrap().0);
    }
    let with_tunnels = tree_fds(pid);
    assert!(
        with_tunnels >= base + 40,
        "2 sockets per tunnel: {base} then {with_tunnels}"
    );
    assert_eq!(open.load(Ordering::SeqCst), 20);
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    for (i, w) in old.iter_mut().enumerate() {
        assert!(echo(w, Message::Text("kept".into())).await, "tunnel {i}");
    }
    drop(old);
    assert!(
        eventually(10, || tree_fds(pid) == base && open.load(Ordering::SeqCst) == 0).await,
        "after the old generation drained: {} descriptors (before the tunnels: {base}), {} backend connections",
        tree_fds(pid),
        open.load(Ordering::SeqCst)
    );

    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(ws(p.addr).await.unwrap().0);
    }
    let mut slow = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(5, || open.load(Ordering::SeqCst) == 21).await,
        "the slow request reached the backend"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(p.dir.join("ringway.pid").exists(), "pid file written");
    let t0 = Instant::now();
    p.signal(sig);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(p.addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new client is refused by the kernel: {refused:?}"
    );
    let (head, body) = answer(&mut slow).await.expect("the request in flight");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(port_of(body.trim()), b1.port());
    assert!(t0.elapsed() >= SLOW / 2, "answered after the signal");
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await);
    while t0.elapsed() < Duration::from_millis(1500) {
        for (i, w) in held.iter_mut().enumerate() {
            assert!(
                echo(w, Message::Text("x".into())).await,
                "tunnel {i} before the deadline"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, p) = tokio::task::spawn_blocking(move || (p.child.wait().unwrap(), p))
        .await
        .unwrap();
    assert_eq!(st.code(), Some(0), "{}", p.stderr());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    for w in held.iter_mut() {
        assert!(
            !echo(w, Message::Text("after".into())).await,
            "closed at the deadline"
        );
    }
    assert!(!p.dir.join("ringway.pid").exists(), "pid file removed");
    assert!(p.stderr().contains("graceful stop"), "{}", p.stderr());
    assert!(
        eventually(5, || open.load(Ordering::SeqCst) == 0).await,
        "{} backend connections left open",
        open.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_refuses_new_clients_keeps_tunnels_until_the_deadline_then_exits_0() {
    graceful_stop(Signal::SIGQUIT, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_the_same_graceful_stop() {
    graceful_stop(Signal::SIGTERM, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_stops_gracefully_in_process_mode() {
    graceful_stop(Signal::SIGQUIT, &["--worker-mode", "process"]).await;
}

/// Fill the proxy up to its ceiling: `n` tunnels, then the next one is answered 503.
async fn ceiling(p: &Proxy, n: usize) -> Vec<Ws> {
    let addr = p.addr;
    let mut v = Vec::new();
    for i in 0..n {
        v.push(
            ws(addr)
                .await
                .unwrap_or_else(|e| panic!("client {}: {e}: {}", i + 1, p.stderr()))
                .0,
        );
    }
    match ws(addr).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("client {} expected 503, got {:?}", n + 1, other.map(|_| ())),
    }
    v
}

/// (d) and (e): a reload from 1 worker × 16 slots to 2 workers × 24 keeps held tunnels and
/// applies the new ceiling; in process mode a worker is killed and restarted first.
async fn reload_changes_the_budget(extra: &[&str], processes: bool) {
    let b1 = echo_backend().await;
    let p = start(&conf_text(&[b1], 2, 12, ""), extra);
    // 2 × (12 − 2) / 2 = 10 tunnels.
    let mut held = ceiling(&p, 10).await;
    if processes {
        let kids = children(p.child.id());
        assert_eq!(kids.len(), 2);
        kill(Pid::from_raw(kids[0] as i32), Signal::SIGKILL).unwrap();
        assert!(
            eventually(10, || {
                let k = children(p.child.id());
                k.len() == 2 && !k.contains(&kids[0])
            })
            .await,
            "restarted"
        );
        let mut alive = Vec::new();
        for mut w in held {
            if echo(&mut w, Message::Text("x".into())).await {
                alive.push(w);
            }
        }
        assert!(!alive.is_empty() && alive.len() < 10, "{}", alive.len());
        held = alive;
    }
    std::fs::write(p.conf(), conf_text(&[b1], 3, 16, "")).unwrap();
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    assert_eq!(
        p.lines_with("budget: 3 workers × (16 slots − 2 reserved = 14 → 7) = 21 proxied clients"),
        1,
        "{:?}",
        p.out.lock().unwrap()
    );
    for (i, w) in held.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text("kept".into())).await,
            "held tunnel {i} after the reload"
        );
    }
    // The new generation's own ceiling, beside the old one's tunnels.
    let more = ceiling(&p, 21).await;
    for (i, w) in held.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text("still".into())).await,
            "held tunnel {i}"
        );
    }
    if processes {
        assert!(
            eventually(5, || children(p.child.id()).len() == 1 + 3).await,
            "the old worker holding tunnels drains beside the new ones (the restarted one held none and is gone): {:?}",
            children(p.child.id())
        );
    }
    // Once the old tunnels end, the old workers exit.
    drop(held);
    if processes {
        assert!(
            eventually(10, || children(p.child.id()).len() == 3).await,
            "old workers gone: {:?}",
            children(p.child.id())
        );
    }
    drop(more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_worker_count_and_budget_in_thread_mode() {
    reload_changes_the_budget(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_worker_count_and_budget_in_process_mode_after_a_restart() {
    reload_changes_the_budget(&["--worker-mode", "process"], true).await;
}

/// (d) across kinds: reloads from threads to processes and back keep every held tunnel of
/// every generation and apply each new budget; the worker processes holding tunnels drain
/// beside the new threads and exit once their tunnels end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_between_threads_and_processes_keeping_tunnels() {
    let b1 = echo_backend().await;
    let p = start(&conf_text(&[b1], 1, 12, ""), &[]);
    let pid = p.child.id();
    // 1 × (12 − 2) / 2 = 5 tunnels, on threads.
    let mut first = ceiling(&p, 5).await;
    assert!(children(pid).is_empty(), "thread mode: {:?}", children(pid));
    std::fs::write(
        p.conf(),
        conf_text(&[b1], 2, 16, "ringway_worker_mode process;\n"),
    )
    .unwrap();
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    assert_eq!(p.lines_with("worker process(es) (master pid"), 1);
    assert_eq!(children(pid).len(), 2, "two worker processes");
    // 2 × (16 − 2) / 2 = 14 on the worker processes, beside the threads' 5.
    let mut second = ceiling(&p, 14).await;
    for (i, w) in first.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text("kept".into())).await,
            "thread tunnel {i}"
        );
    }
    std::fs::write(p.conf(), conf_text(&[b1], 1, 14, "")).unwrap();
    p.signal(Signal::SIGHUP);
    assert!(p.generations(3).await, "{}", p.stderr());
    // Back on threads: 1 × (14 − 2) / 2 = 6.
    let third = ceiling(&p, 6).await;
    for (i, w) in first.iter_mut().chain(second.iter_mut()).enumerate() {
        assert!(echo(w, Message::Text("still".into())).await, "tunnel {i}");
    }
    assert_eq!(
        children(pid).len(),
        2,
        "the processes drain beside the threads"
    );
    drop(second);
    assert!(
        eventually(10, || children(pid).is_empty()).await,
        "worker processes gone once their tunnels ended: {:?}",
        children(pid)
    );
    for (i, w) in first.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text("last".into())).await,
            "thread tunnel {i}"
        );
    }
    assert!(!p.stderr().contains("reload failed"), "{}", p.stderr());
    drop((first, third));
}

/// Process mode: a worker that dies after the file was edited (without a reload) is not
/// restarted on the edited file beside workers of the old one: one alert, its listener
/// leaves the SO_REUSEPORT group (every new client reaches the worker that runs), and a
/// reload then applies the file with every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_not_restarted_on_a_file_edited_since_the_last_reload() {
    let b1 = echo_backend().await;
    let b2 = echo_backend().await;
    let p = start(&conf_text(&[b1], 2, 64, ""), &["--worker-mode", "process"]);
    let pid = p.child.id();
    assert!(eventually(10, || children(pid).len() == 2).await);
    std::fs::write(p.conf(), conf_text(&[b1, b2], 2, 64, "")).unwrap();
    let kids = children(pid);
    kill(Pid::from_raw(kids[0] as i32), Signal::SIGKILL).unwrap();
    assert!(
        eventually(10, || p
            .stderr()
            .contains("could not restart: the configuration file changed"))
        .await,
        "{}",
        p.stderr()
    );
    assert_eq!(children(pid), vec![kids[1]], "not restarted");
    // Every new client is served by the remaining worker (none waits on the dead one's
    // listener).
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(3), ws(p.addr)).await;
        assert!(matches!(r, Ok(Ok(_))), "client {i}: {r:?}");
    }
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    assert!(
        eventually(10, || children(pid).len() == 2
            && !children(pid).contains(&kids[1]))
        .await,
        "a new generation of 2: {:?}",
        children(pid)
    );
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(3), ws(p.addr)).await;
        assert!(matches!(r, Ok(Ok(_))), "client {i} after the reload: {r:?}");
    }
}

/// `ringway -s CMD` with `args` (`--pid-file P` or `-c FILE`): its exit status and stderr.
fn send(cmd: &str, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["-s", cmd])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait (up to `within`) for ringway to exit.
async fn exited(p: &mut Proxy, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(st) = p.child.try_wait().unwrap() {
            return Some(st);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// `-s quit` (pid file) on a live ringway: a graceful stop — new clients refused, the held
/// tunnel kept — which ends, status 0, as soon as the tunnel does (before the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_quit_stops_gracefully() {
    let b1 = echo_backend().await;
    let mut p = start(
        &conf_text(&[b1], 1, 1024, "worker_shutdown_timeout 20s;\n"),
        &[],
    );
    let (mut held, _) = ws(p.addr).await.unwrap();
    let pid_file = p.dir.join("ringway.pid");
    let (code, err) = send("quit", &["--pid-file".as_ref(), pid_file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        eventually(5, || p.stderr().contains("SIGQUIT: graceful stop")).await,
        "{}",
        p.stderr()
    );
    let refused = tokio::net::TcpStream::connect(p.addr).await;
    assert!(refused.is_err(), "a new client is refused: {refused:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        echo(&mut held, Message::Text("kept".into())).await,
        "the tunnel is kept"
    );
    assert!(p.child.try_wait().unwrap().is_none(), "still running");
    drop(held);
    let st = exited(&mut p, Duration::from_secs(5)).await;
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", p.stderr());
    assert!(!pid_file.exists(), "pid file removed");
}

/// `-s stop` (pid file) on a live ringway: a fast stop — the held tunnel closed at once,
/// status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_stop_closes_everything_at_once() {
    let b1 = echo_backend().await;
    let mut p = start(&conf_text(&[b1], 1, 1024, ""), &[]);
    let (mut held, _) = ws(p.addr).await.unwrap();
    let pid_file = p.dir.join("ringway.pid");
    let t0 = Instant::now();
    let (code, err) = send("stop", &["--pid-file".as_ref(), pid_file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    let st = exited(&mut p, Duration::from_secs(5)).await;
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", p.stderr());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(!echo(&mut held, Message::Text("x".into())).await, "closed");
    // The stderr reader thread may still be taking the last lines of the exited process.
    assert!(
        eventually(5, || p.stderr().contains("SIGINT")).await,
        "{}",
        p.stderr()
    );
    assert!(!pid_file.exists(), "pid file removed");
}

/// `-s reload -c FILE` finds the process by the file's own `pid` directive (no
/// `--pid-file` anywhere) and the file is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_reload_finds_the_pid_in_the_file() {
    let (b1, b2) = (echo_backend().await, echo_backend().await);
    let pid_line = "pid {dir}/from-file.pid;\n";
    let p = start_opts(&conf_text(&[b1], 1, 1024, pid_line), &[], false);
    let pid_file = p.dir.join("from-file.pid");
    let written = std::fs::read_to_string(&pid_file).expect("the file's pid written");
    assert_eq!(written.trim(), p.child.id().to_string());
    let pid_line = pid_line.replace("{dir}", &p.dir.display().to_string());
    std::fs::write(p.conf(), conf_text(&[b2], 1, 1024, &pid_line)).unwrap();
    let (code, err) = send("reload", &["-c".as_ref(), p.conf().as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(p.generations(2).await, "{}", p.stderr());
    let (_, banner) = ws(p.addr).await.unwrap();
    assert_eq!(port_of(&banner), b2.port(), "the new file");
}

/// The unit's `ExecReload=` (systemd substitutes `$MAINPID`) reloads a live ringway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_units_exec_reload_reloads() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/ringway.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload="))
        .expect("an ExecReload= line");
    assert_eq!(exec, "/bin/kill -HUP $MAINPID");
    let (b1, b2) = (echo_backend().await, echo_backend().await);
    let p = start(&conf_text(&[b1], 1, 1024, ""), &[]);
    std::fs::write(p.conf(), conf_text(&[b2], 1, 1024, "")).unwrap();
    let st = Command::new("sh")
        .args(["-c", exec])
        .env("MAINPID", p.child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success(), "{exec}: {st:?}");
    assert!(p.generations(2).await, "{}", p.stderr());
    let (_, banner) = ws(p.addr).await.unwrap();
    assert_eq!(port_of(&banner), b2.port(), "the new file");
}

/// A reload cannot apply what belongs to the process (`ringway_metrics`, `error_log` and
/// its level, `pid`): it applies the rest, keeps those — in the master and in the new
/// worker processes alike — and says so in one `[warn]` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_metrics_error_log_and_pid_and_warns() {
    let b1 = echo_backend().await;
    let dead = refusing_addr();
    let first = "pid {dir}/a.pid;\nringway_metrics 127.0.0.1:0;\n";
    let p = start_opts(
        &conf_text(&[b1], 1, 1024, first),
        &["--worker-mode", "process"],
        false,
    );
    let metrics = p
        .out
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix("ringway: metrics on http://")?
                .split('/')
                .next()
        })
        .expect("the metrics line")
        .to_string();
    let dir = p.dir.display().to_string();
    let second =
        format!("pid {dir}/b.pid;\nringway_metrics 127.0.0.1:1;\nerror_log {dir}/err.log crit;\n");
    std::fs::write(p.conf(), conf_text(&[dead], 1, 1024, &second)).unwrap();
    p.signal(Signal::SIGHUP);
    assert!(p.generations(2).await, "{}", p.stderr());
    let err = p.stderr();
    let warn = err
        .lines()
        .find(|l| l.contains("[warn]") && l.contains("not applied"))
        .unwrap_or_else(|| panic!("no warn line: {err}"));
    assert!(
        warn.contains("ringway_metrics, error_log, error_log level, pid changed"),
        "{warn}"
    );
    // The rest of the file is applied: the new backend (refusing) answers 502, and the
    // new worker process logs it at [error] on the master's error log (stderr), not in
    // err.log at crit.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = answer(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 502"), "{head}");
    assert!(
        eventually(5, || p
            .stderr()
            .lines()
            .any(|l| l.contains("[error]") && l.contains(&dead.to_string())))
        .await,
        "{}",
        p.stderr()
    );
    assert!(!p.dir.join("err.log").exists(), "error_log not applied");
    assert!(p.dir.join("a.pid").exists(), "the first pid file stays");
    assert!(!p.dir.join("b.pid").exists(), "pid not applied");
    let mut m = tokio::net::TcpStream::connect(metrics.as_str())
        .await
        .expect("the first metrics address still listens");
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// `-s` with no pid file: one line, exit 1.
#[test]
fn signal_without_a_running_ringway_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["-s", "quit", "--pid-file", "/nonexistent/ringway.pid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read the pid file /nonexistent/ringway.pid"),
        "{err}"
    );
}

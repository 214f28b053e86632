//! The access log and the error log, written by the binary: one line for a request, for
//! a tunnel (and its 101), for a 502 and a 503, in the combined and json formats; the
//! error log's file and level; and `ringway -s reopen` after logrotate moved both files.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(upstream: SocketAddr, extra: &[&str]) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
        ])
        .args([
            "--worker-processes",
            "1",
            "--worker-connections",
            "4",
            "--no-pin",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..6 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.strip_prefix("ringway: listening on ") {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Proxy { child, addr };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no listening line");
}

fn get(addr: SocketAddr, target: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nUser-Agent: logtest/1\r\nReferer: http://r/\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("ringway-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Wait until file `p` has a line containing every one of `parts`; return that line.
async fn line_with(p: &Path, parts: &[&str]) -> String {
    for _ in 0..250 {
        if let Some(l) = read(p)
            .lines()
            .find(|l| parts.iter().all(|x| l.contains(x)))
        {
            return l.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{}: no line with {parts:?} in:\n{}", p.display(), read(p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_lines_error_log_and_reopen() {
    let t = Tmp::new("combined");
    let (alog, elog, pid) = (t.path("access.log"), t.path("error.log"), t.path("pid"));
    let b = echo_backend().await;
    let p = start(
        b,
        &[
            "--access-log",
            alog.to_str().unwrap(),
            "--error-log",
            elog.to_str().unwrap(),
            "--error-log-level",
            "info",
            "--pid-file",
            pid.to_str().unwrap(),
        ],
    );
    // A request.
    assert!(get(p.addr, "/hello?x=1").starts_with("HTTP/1.1 200"));
    let l = line_with(&alog, &["\"GET /hello?x=1 HTTP/1.1\" 200 "]).await;
    assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
    assert!(l.contains(" +0000] "), "{l}");
    assert!(l.contains("\"http://r/\" \"logtest/1\" rt="), "{l}");
    assert!(l.contains(&format!("upstream=\"{b}\" urt=")), "{l}");
    // A tunnel: the 101 line, then the budget (1 client) is full: a 503.
    let (mut w, _) = ws(p.addr).await.unwrap();
    assert!(echo(&mut w, Message::Text("x".into())).await);
    let l = line_with(&alog, &["\"GET /chat HTTP/1.1\" 101 "]).await;
    assert!(l.contains(&format!("upstream=\"{b}\"")), "{l}");
    match ws(p.addr).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    // Answered from the accept completion, before a byte of the request was read.
    let l = line_with(&alog, &["\"-\" 503 "]).await;
    assert!(l.contains("upstream=\"-\" urt=-"), "{l}");
    // The tunnel ends by the client: 7 bytes up (one masked 1-byte frame), 18 down (the
    // 15-byte banner and the echo).
    drop(w);
    let l = line_with(&alog, &["\"TUNNEL\" 101 "]).await;
    assert!(
        l.contains(&format!("upstream=\"{b}\" up=7 down=18 end=client_close")),
        "{l}"
    );
    // The error log has the budget's alert, at level info and above, in nginx's shape.
    let e = line_with(&elog, &["[alert]", "worker_connections are not enough"]).await;
    assert!(e.contains(" ringway[w0]: "), "{e}");

    // logrotate: move both files, then `-s reopen`.
    let (alog1, elog1) = (t.path("access.log.1"), t.path("error.log.1"));
    std::fs::rename(&alog, &alog1).unwrap();
    std::fs::rename(&elog, &elog1).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["-s", "reopen", "--pid-file", pid.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    line_with(&elog, &["[notice]", "SIGUSR1: reopen: reopened"]).await;
    assert!(get(p.addr, "/after").starts_with("HTTP/1.1 200"));
    line_with(&alog, &["\"GET /after HTTP/1.1\" 200 "]).await;
    assert!(!read(&alog1).contains("/after"));
    assert!(read(&alog1).contains("/hello"));
    assert!(!read(&alog).contains("/hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_and_a_502_in_process_mode() {
    let t = Tmp::new("json");
    let (alog, elog) = (t.path("access.json"), t.path("error.log"));
    let dead = refusing_addr();
    let p = start(
        dead,
        &[
            "--worker-mode",
            "process",
            "--access-log",
            alog.to_str().unwrap(),
            "--access-log-format",
            "json",
            "--error-log",
            elog.to_str().unwrap(),
        ],
    );
    assert!(get(p.addr, "/x").starts_with("HTTP/1.1 502"));
    let l = line_with(&alog, &["\"status\":502"]).await;
    assert!(l.starts_with("{\"type\":\"http\",\"time\":\""), "{l}");
    assert!(l.contains("\"request\":\"GET /x HTTP/1.1\""), "{l}");
    assert!(l.contains(&format!("\"upstream_addr\":\"{dead}\"")), "{l}");
    assert!(l.contains("\"user_agent\":\"logtest/1\""), "{l}");
    assert!(l.ends_with('}'), "{l}");
    // error_log's default level for a file is error (nginx's): the refused connect is
    // there, the start-up notices are not.
    line_with(&elog, &["[error]", "Connection refused", "answering 502"]).await;
    assert!(!read(&elog).contains("[notice]"), "{}", read(&elog));
}

#[test]
fn a_log_that_cannot_be_opened_stops_the_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"])
        .args(["--access-log", "/nonexistent-dir/a.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the access log /nonexistent-dir/a.log"),
        "{err}"
    );
}

//! SIGHUP to a ringway started with flags only (no -c: nothing to re-read) never stops it:
//! in thread mode, and in process mode sent to the master and to every worker process, the
//! proxy logs once that there is no file to re-read, keeps its pids (no worker restarted),
//! its held tunnels still echo, new clients are answered, and SIGTERM still ends it with
//! status 0. (Reloads of a -c file are tested in `tests/lifecycle.rs`.)
mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

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

fn start(backend: SocketAddr, extra: &[&str]) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &backend.to_string(),
            "--worker-processes",
            "2",
            "--no-pin",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(rest) = line.strip_prefix("ringway: listening on ") {
            addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            break;
        }
    }
    Proxy {
        child,
        addr: addr.expect("listening line"),
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether worker process `pid` has set up its signal handling: `main` blocks its signals
/// before it starts the worker thread, so a second thread means the mask is in place.
/// (Its SigBlk in /proc cannot tell: while the main thread sleeps in sigtimedwait, the
/// kernel shows the waited-for signals as unblocked.)
fn signals_ready(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| d.count() >= 2)
}

async fn sighup_is_ignored(extra: &[&str], workers_are_processes: bool) {
    let b = echo_backend().await;
    let mut p = start(b, extra);
    let master = p.child.id();
    let kids = if workers_are_processes {
        assert!(
            eventually(10, || {
                let k = children(master);
                k.len() == 2 && k.iter().all(|&c| signals_ready(c))
            })
            .await,
            "two worker processes waiting for signals"
        );
        children(master)
    } else {
        Vec::new()
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(ws(p.addr).await.expect("tunnel before SIGHUP").0);
    }
    for &pid in std::iter::once(&master).chain(&kids) {
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "ringway exited on SIGHUP"
    );
    assert_eq!(
        children(master),
        kids,
        "no worker process died or was restarted"
    );
    for (i, w) in held.iter_mut().enumerate() {
        assert!(
            echo(w, Message::Text("after SIGHUP".into())).await,
            "tunnel {i} after SIGHUP"
        );
    }
    let (mut fresh, _) = ws(p.addr).await.expect("a new client after SIGHUP");
    assert!(echo(&mut fresh, Message::Text("new".into())).await);
    drop(held);
    drop(fresh);
    kill(Pid::from_raw(master as i32), Signal::SIGTERM).unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        err.matches("[notice] ringway: SIGHUP: started without -c: there is no file to re-read")
            .count(),
        1,
        "logged once (by the master in process mode): {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_ignored_in_thread_mode() {
    sighup_is_ignored(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_ignored_by_master_and_workers_in_process_mode() {
    sighup_is_ignored(&["--worker-mode", "process"], true).await;
}

//! Process mode (`--worker-mode process`): exact ceilings across worker processes, a
//! killed worker is restarted while the others' tunnels stay up, SIGTERM ends everything.
mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

struct Master {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(backend: SocketAddr, workers: u32, wc: u32) -> Master {
    start_with(&backend.to_string(), workers, wc, &[])
}

fn start_with(upstreams: &str, workers: u32, wc: u32, extra: &[&str]) -> Master {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(extra)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstreams,
            "--worker-mode",
            "process",
            "--worker-processes",
            &workers.to_string(),
            "--worker-connections",
            &wc.to_string(),
            "--no-pin",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    Master {
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

async fn fill(addr: SocketAddr, n: usize) -> Vec<Ws> {
    let mut v = Vec::new();
    for i in 0..n {
        let (w, _) = ws(addr)
            .await
            .unwrap_or_else(|e| panic!("client {}: {e}", i + 1));
        v.push(w);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceilings_hold_exactly_across_processes() {
    let b = echo_backend().await;
    for (workers, expect) in [(1u32, 511usize), (2, 1022)] {
        let m = start(b, workers, 1024);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(children(m.child.id()).len(), workers as usize);
        let mut held = fill(m.addr, expect).await;
        match ws(m.addr).await {
            Err(WsError::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!(
                "client {} expected 503, got {:?}",
                expect + 1,
                other.map(|_| ())
            ),
        }
        for w in held.iter_mut() {
            assert!(echo(w, Message::Text("x".into())).await);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_is_restarted_others_stay_up_and_sigterm_ends_all() {
    let b = echo_backend().await;
    let mut m = start(b, 2, 1024);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kids = children(m.child.id());
    assert_eq!(kids.len(), 2);
    let mut held = fill(m.addr, 40).await;
    kill(Pid::from_raw(kids[0] as i32), Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut alive = 0;
    for w in held.iter_mut() {
        if echo(w, Message::Text("still here".into())).await {
            alive += 1;
        }
    }
    assert!(
        alive > 0 && alive < 40,
        "the survivor's tunnels stay up, the dead one's close: {alive} of 40"
    );
    // The master restarts the dead worker.
    assert!(
        eventually(5, || {
            let k = children(m.child.id());
            k.len() == 2 && !k.contains(&kids[0])
        })
        .await,
        "restarted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fresh = fill(m.addr, 40).await;
    for w in fresh.iter_mut() {
        assert!(echo(w, Message::Text("new".into())).await);
    }
    // A worker stopped with SIGINT (a fast stop) is restarted too, and the listening
    // socket it shared with the master and its siblings keeps working for everyone
    // (stopping one worker must not shut the shared listener down).
    let kids = children(m.child.id());
    kill(Pid::from_raw(kids[1] as i32), Signal::SIGINT).unwrap();
    assert!(
        eventually(5, || {
            let k = children(m.child.id());
            k.len() == 2 && !k.contains(&kids[1])
        })
        .await,
        "restarted after SIGINT"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut more = fill(m.addr, 40).await;
    for w in more.iter_mut() {
        assert!(echo(w, Message::Text("after".into())).await);
    }
    // SIGTERM to the master ends every worker and the master exits 0 (a graceful stop:
    // the tunnels close first, so it does not wait for them).
    drop((held, fresh, more));
    let now = children(m.child.id());
    kill(Pid::from_raw(m.child.id() as i32), Signal::SIGTERM).unwrap();
    let st = m.child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    for k in now {
        assert!(
            !std::path::Path::new(&format!("/proc/{k}")).exists()
                || std::fs::read_to_string(format!("/proc/{k}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "worker {k} ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_is_exact_across_processes() {
    // Clients land on either worker process (SO_REUSEPORT hash); least-conn reads the
    // shared counters, so the spread is even over all backends whichever process picks.
    let mut bs = Vec::new();
    for _ in 0..4 {
        bs.push(echo_backend().await.to_string());
    }
    let m = start_with(&bs.join(","), 4, 1024, &["--balance", "least-conn"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut count = std::collections::HashMap::new();
    let mut held = Vec::new();
    for _ in 0..40 {
        let (w, banner) = ws(m.addr).await.unwrap();
        *count.entry(banner).or_insert(0) += 1;
        held.push(w);
    }
    assert_eq!(count.len(), 4, "{count:?}");
    assert!(
        count.values().all(|&n| n == 10),
        "exact across processes: {count:?}"
    );
}

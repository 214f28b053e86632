//! `ringway top` renders: it runs in a real pseudo-terminal (tmux), against a running
//! ringway's `/metrics` with 2 tunnels held, and the screen shows the budget per worker,
//! the backend and its tunnels; `q` quits. Skipped (with the reason printed) when tmux is
//! not installed (scripts/test.sh installs it).
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_renders_the_budget_and_the_backends() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let b = echo_backend().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &b.to_string()])
        .args([
            "--worker-processes",
            "1",
            "--worker-connections",
            "16",
            "--no-pin",
        ])
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let proxy = Kill(child);
    let (mut addr, mut metrics): (Option<SocketAddr>, Option<String>) = (None, None);
    for line in BufReader::new(out).lines().take(6) {
        let line = line.unwrap();
        if let Some(r) = line.strip_prefix("ringway: listening on ") {
            addr = r.split_whitespace().next().unwrap().parse().ok();
        }
        if let Some(r) = line.strip_prefix("ringway: metrics on ") {
            metrics = Some(r.trim().to_string());
        }
        if addr.is_some() && metrics.is_some() {
            break;
        }
    }
    let (addr, metrics) = (addr.unwrap(), metrics.unwrap());
    let _held = [ws(addr).await.unwrap().0, ws(addr).await.unwrap().0];
    let session = format!("ringway-top-{}", std::process::id());
    let cmd = format!("{} top --metrics {metrics}", env!("CARGO_BIN_EXE_ringway"));
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "170",
        "-y",
        "40",
        &cmd,
    ]);
    let mut screen = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if screen.contains("budget per worker") && screen.contains("tunnels 2 live") {
            break;
        }
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !Command::new("tmux")
            .args(["has-session", "-t", &session])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            gone = true;
            break;
        }
    }
    if !gone {
        tmux(&["kill-session", "-t", &session]);
    }
    drop(proxy);
    if std::env::var_os("RINGWAY_SHOW_TOP").is_some() {
        eprintln!("{screen}");
    }
    assert!(screen.contains("ringway top (q quits)"), "{screen}");
    assert!(screen.contains("budget per worker"), "{screen}");
    assert!(screen.contains("tunnels 2 live"), "{screen}");
    assert!(screen.contains("slots 6 of 16 used"), "{screen}");
    assert!(screen.contains(&b.to_string()), "{screen}");
    // The worker row: worker 0, 6 used, 10 free, 16 slots, 2 tunnels, 2 sessions.
    let row = screen
        .lines()
        .find(|l| l.trim_start_matches('│').split_whitespace().next() == Some("0"))
        .unwrap_or_else(|| panic!("no worker row:\n{screen}"));
    let cells: Vec<&str> = row
        .trim_matches(|c| c == '│' || c == ' ')
        .split_whitespace()
        .collect();
    assert_eq!(&cells[..6], ["0", "6", "10", "16", "2", "2"], "{screen}");
    assert!(gone, "q did not quit ringway top");
}

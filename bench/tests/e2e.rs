//! End-to-end tests: real `wsecho` processes on port 0 driven by real `loadgen` runs (no proxy),
//! plus a cross-check of wsecho's framing with an independent client (tokio-tungstenite).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A wsecho process, killed (by pid) when dropped.
struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    fn start(extra: &[&str]) -> Echo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
            .args(["--port", "0", "--lifetime", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start wsecho");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Echo { child, port }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen")
}

/// Parses the last stdout line as JSON, after checking the exit status.
fn last_json(o: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "loadgen failed: {:?}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let line = stdout.lines().last().expect("some stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

#[test]
fn ceiling_50_direct() {
    let e = Echo::start(&[]);
    let o = loadgen(&[
        "ceiling",
        "--target",
        &e.target(),
        "--conns",
        "50",
        "--rate",
        "1000",
        "--hold",
        "1",
    ]);
    let j = last_json(&o);
    assert_eq!(j["subcommand"], "ceiling");
    assert_eq!(j["params"]["conns"], 50);
    assert_eq!(j["ok"], 50);
    assert_eq!(j["failed_total"], 0);
    assert_eq!(j["alive_after_hold"], 50);
    assert_eq!(j["dropped_during_hold"], 0);
    assert!(j["first_failure_index"].is_null());
    let dist = j["distribution"].as_object().unwrap();
    assert_eq!(dist.len(), 1);
    assert_eq!(dist[&format!("backend:{}", e.port)], 50);
    assert!(j["setup_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(!j["series"].as_array().unwrap().is_empty());
}

#[test]
fn ceiling_two_procs_each_side() {
    let e = Echo::start(&["--procs", "2"]);
    let o = loadgen(&[
        "ceiling",
        "--target",
        &e.target(),
        "--conns",
        "300",
        "--rate",
        "3000",
        "--hold",
        "0.5",
        "--procs",
        "2",
        "--src-ips",
        "127.0.0.2-127.0.0.4",
    ]);
    let j = last_json(&o);
    assert_eq!(j["ok"], 300);
    assert_eq!(j["alive_after_hold"], 300);
    assert_eq!(j["distribution"][format!("backend:{}", e.port)], 300);
}

#[test]
fn ceiling_counts_refusals_as_data() {
    // Bind and close a listener to find a port that (very likely) refuses.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = loadgen(&[
        "ceiling",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--conns",
        "5",
        "--hold",
        "0",
    ]);
    let j = last_json(&o);
    assert_eq!(j["ok"], 0);
    assert_eq!(j["failed"]["refused"], 5);
    assert_eq!(j["first_failure_index"], 0);
}

#[test]
fn echo_direct() {
    let e = Echo::start(&[]);
    let pid = e.child.id().to_string();
    let o = loadgen(&[
        "echo",
        "--target",
        &e.target(),
        "--conns",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--watch-pid",
        &pid,
    ]);
    let j = last_json(&o);
    assert_eq!(j["subcommand"], "echo");
    assert_eq!(j["connected"], 4);
    assert!(j["msgs"].as_u64().unwrap() > 0);
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(j["latency_us"][k].as_f64().unwrap() > 0.0, "latency {k}");
    }
    assert_eq!(j["distribution"][format!("backend:{}", e.port)], 4);
    assert_eq!(j["watched"][0]["pid"].as_u64().unwrap().to_string(), pid);
    assert!(j["watched"][0]["cpu_us_per_msg"].as_f64().is_some());
    assert!(j["loadgen_cpu_us_per_msg"].as_f64().unwrap() > 0.0);
}

#[test]
fn bulk_and_churn_direct() {
    let e = Echo::start(&[]);
    let j = last_json(&loadgen(&[
        "bulk",
        "--target",
        &e.target(),
        "--conns",
        "2",
        "--bytes",
        "300000",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]));
    assert_eq!(j["subcommand"], "bulk");
    assert!(j["bytes_received"].as_u64().unwrap() > 0);
    assert!(j["received_mb_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(j["errors"]["other"], 0);
    let j = last_json(&loadgen(&[
        "churn",
        "--target",
        &e.target(),
        "--conns",
        "4",
        "--cycles",
        "25",
    ]));
    assert_eq!(j["subcommand"], "churn");
    assert_eq!(j["ok"], 100);
    assert!(j["tunnels_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn refuses_non_loopback_target() {
    for args in [
        &["echo", "--target", "10.1.2.3:80"][..],
        &["ceiling", "--target", "192.168.0.1:80", "--conns", "1"][..],
        &[
            "churn",
            "--target",
            "127.0.0.1:80",
            "--src-ips",
            "127.0.0.2-10.0.0.1",
        ][..],
    ] {
        let o = loadgen(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("127.0.0.0/8"), "{err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn plain_http_gets_200_with_banner() {
    let e = Echo::start(&[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Connection: close"));
    assert!(
        resp.ends_with(&format!("\r\n\r\nbackend:{}\n", e.port)),
        "{resp}"
    );
}

#[tokio::test]
async fn wsecho_speaks_websocket_to_tungstenite() {
    let e = Echo::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", e.target()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text(format!("backend:{}", e.port))
    );
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("hello".into())
    );
    // Larger than wsecho's 64 KiB buffer, so it streams through in pieces.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 13) as u8).collect();
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Binary(big));
    ws.send(Message::Binary(Vec::new())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(Vec::new())
    );
    ws.send(Message::Ping(b"p".to_vec())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(b"p".to_vec())
    );
    ws.close(None).await.unwrap();
    while let Some(m) = ws.next().await {
        if m.is_err() {
            break;
        }
    }
}

#[test]
fn supervisor_takes_its_workers_down() {
    let mut e = Echo::start(&["--procs", "2"]);
    let pid = e.child.id();
    let kids = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let workers = kids(pid);
    assert_eq!(workers.len(), 2, "workers {workers:?}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = e.child.wait();
    let t0 = Instant::now();
    while workers
        .iter()
        .any(|w| std::path::Path::new(&format!("/proc/{w}")).exists())
    {
        // A worker is reaped by its parent; after the parent exits it may linger as a zombie of
        // init only briefly.
        let alive = workers.iter().any(|w| {
            std::fs::read_to_string(format!("/proc/{w}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        });
        if !alive {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "workers still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! End-to-end tests: real `wsecho` processes on port 0 driven by real `loadgen` runs (no proxy),
//! plus a cross-check of wsecho's framing with an independent client (tokio-tungstenite).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

mod common;
use common::{last_json, loadgen, Echo};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

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

/// More tunnels than the probe window (256 in flight per process): every one is probed and
/// answers, so the window hands its permits on.
#[test]
fn ceiling_probes_past_the_window() {
    let e = Echo::start(&[]);
    let o = loadgen(&[
        "ceiling",
        "--target",
        &e.target(),
        "--conns",
        "700",
        "--rate",
        "5000",
        "--hold",
        "0",
    ]);
    let j = last_json(&o);
    assert_eq!(j["ok"], 700);
    assert_eq!(j["alive_after_hold"], 700);
    assert_eq!(j["probe_failed"]["timeout"], 0, "{j}");
}

/// SIGUSR1 stops the ramp (ceiling.sh's memory guard): the parent passes it to its children,
/// which hold and probe what they started, and the result says so.
#[test]
fn ceiling_sigusr1_stops_the_ramp_and_probes_what_it_holds() {
    let e = Echo::start(&[]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "ceiling",
            "--target",
            &e.target(),
            "--conns",
            "20000",
            "--rate",
            "400",
            "--hold",
            "0.5",
            "--procs",
            "2",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run loadgen");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on the child we just started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let o = child.wait_with_output().expect("loadgen output");
    let j = last_json(&o);
    assert_eq!(j["ramp_stopped"], true, "{j}");
    let ok = j["ok"].as_u64().unwrap();
    assert!(ok > 50 && ok < 2000, "started {ok} in ~1.5 s at 400/s: {j}");
    assert_eq!(j["attempted"], ok, "{j}");
    assert_eq!(j["alive_after_hold"], ok, "{j}");
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
fn churn_timed_with_cpu_per_tunnel() {
    let e = Echo::start(&[]);
    let pid = e.child.id().to_string();
    let j = last_json(&loadgen(&[
        "churn",
        "--target",
        &e.target(),
        "--conns",
        "4",
        "--duration",
        "0.6",
        "--warmup",
        "0.2",
        "--src-ips",
        "127.0.0.2-127.0.0.3",
        "--watch-pid",
        &pid,
    ]));
    assert_eq!(j["subcommand"], "churn");
    assert_eq!(j["timed"], true);
    let ok = j["ok"].as_u64().unwrap();
    assert!(ok > 0, "{j}");
    // Only the measured window counts: fewer completed than attempted (warm-up, the tail).
    assert!(j["attempted"].as_u64().unwrap() > ok, "{j}");
    assert!((j["elapsed_s"].as_f64().unwrap() - 0.6).abs() < 0.2, "{j}");
    assert!(j["setup_us"]["p999"].as_f64().unwrap() > 0.0);
    assert_eq!(j["watched"][0]["pid"].as_u64().unwrap().to_string(), pid);
    assert!(j["watched"][0]["tree_cpu_us_per_tunnel"].as_f64().is_some());
    assert_eq!(j["failed"]["refused"], 0);
    // --cycles and --duration exclude each other.
    let o = loadgen(&[
        "churn",
        "--target",
        &e.target(),
        "--cycles",
        "3",
        "--duration",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
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

/// Sends `req` on a fresh connection and reads until wsecho closes it.
fn exchange(port: u16, req: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .expect("wsecho closes after the last answer");
    String::from_utf8(resp).unwrap()
}

/// wsecho's `200 OK` answer for `port`, with an optional Connection header line.
fn ok(port: u16, conn: &str, head_only: bool) -> String {
    let body = format!("backend:{port}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn}\r\n{}",
        body.len(),
        if head_only { "" } else { &body }
    )
}

#[test]
fn plain_http_gets_200_with_banner() {
    let e = Echo::start(&[]);
    let resp = exchange(
        e.port,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Connection: close"));
    assert!(
        resp.ends_with(&format!("\r\n\r\nbackend:{}\n", e.port)),
        "{resp}"
    );
    // HTTP/1.0 without keep-alive is closed too.
    let resp = exchange(
        e.port,
        b"GET / HTTP/1.0\r\n\r\nGET /unanswered HTTP/1.0\r\n\r\n",
    );
    assert_eq!(resp, ok(e.port, "Connection: close\r\n", false));
}

#[test]
fn plain_http_keeps_alive_and_answers_pipelined_requests_in_order() {
    let e = Echo::start(&[]);
    let req = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
        HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n\
        POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
        POST /4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n\
        GET /5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
        GET /6 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
        GET /7 HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = exchange(e.port, req);
    let p = e.port;
    let want = [
        ok(p, "", false),
        ok(p, "", true),
        ok(p, "", false),
        ok(p, "", false),
        ok(p, "Connection: keep-alive\r\n", false),
        ok(p, "Connection: close\r\n", false),
    ]
    .concat();
    assert_eq!(resp, want);

    // Requests in separate writes on one connection, a body split across them.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let one = ok(p, "", false);
    for part in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n01234",
    ] {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = vec![0u8; one.len() + "HTTP/1.1 100 Continue\r\n\r\n".len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("{one}HTTP/1.1 100 Continue\r\n\r\n")
    );
    s.write_all(b"56789").unwrap();
    let mut got = vec![0u8; one.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), one);
}

#[test]
fn bad_requests_get_an_error_and_the_close() {
    let e = Echo::start(&[]);
    let resp = exchange(e.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    let resp = exchange(
        e.port,
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    let resp = exchange(
        e.port,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 501 "), "{resp}");
    let mut big = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
    big.extend(std::iter::repeat_n(b'c', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    let resp = exchange(e.port, &big);
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
    // A good answer before the bad request is still sent first.
    let resp = exchange(
        e.port,
        b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(resp.starts_with(&ok(e.port, "", false)), "{resp}");
    assert!(
        resp.ends_with(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ),
        "{resp}"
    );
}

#[tokio::test]
async fn upgrade_after_plain_requests_on_one_connection() {
    let e = Echo::start(&[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let one = ok(e.port, "", false);
    let mut got = vec![0u8; one.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), one);
    s.set_nonblocking(true).unwrap();
    let s = tokio::net::TcpStream::from_std(s).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", e.target()), s)
        .await
        .expect("upgrade on a kept-alive connection");
    let banner = ws.next().await.unwrap().unwrap();
    assert_eq!(banner, Message::Text(format!("backend:{}", e.port)));
    ws.send(Message::Text("after keep-alive".into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("after keep-alive".into())
    );
}

#[test]
fn http_direct() {
    let e = Echo::start(&[]);
    let pid = e.child.id().to_string();
    let o = loadgen(&[
        "http",
        "--target",
        &e.target(),
        "--conns",
        "4",
        "--pipeline",
        "3",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--path",
        "/ping",
        "--watch-pid",
        &pid,
    ]);
    let j = last_json(&o);
    assert_eq!(j["subcommand"], "http");
    assert_eq!(j["connected"], 4);
    let n = j["requests"].as_u64().unwrap();
    assert!(n > 100, "{j}");
    assert!(j["requests_per_s"].as_f64().unwrap() > 100.0);
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(j["latency_us"][k].as_f64().unwrap() > 0.0, "latency {k}");
    }
    assert_eq!(j["distribution"][format!("backend:{}", e.port)], n, "{j}");
    assert_eq!(j["reconnects"], 0, "wsecho keeps connections alive: {j}");
    assert_eq!(j["connects_total"], 4, "{j}");
    assert_eq!(j["stalled"], 0);
    assert_eq!(j["errors"]["eof"], 0);
    assert_eq!(j["errors"]["other"], 0);
    assert_eq!(j["watched"][0]["pid"].as_u64().unwrap().to_string(), pid);
    assert!(
        j["watched"][0]["cpu_us_per_req"].as_f64().unwrap() > 0.0,
        "{j}"
    );
    assert!(j["loadgen_cpu_us_per_req"].as_f64().unwrap() > 0.0);
}

/// `--rate`: open loop. 10 connections offered 200 requests/s in all answer about that many,
/// where the closed loop above answers thousands; latency is still measured.
#[test]
fn http_open_loop_keeps_to_the_rate() {
    let e = Echo::start(&[]);
    let o = loadgen(&[
        "http",
        "--target",
        &e.target(),
        "--conns",
        "10",
        "--rate",
        "200",
        "--duration",
        "2",
        "--warmup",
        "0.2",
    ]);
    let j = last_json(&o);
    assert_eq!(j["open_loop"], true, "{j}");
    assert_eq!(j["connected"], 10);
    let rate = j["requests_per_s"].as_f64().unwrap();
    assert!(
        (150.0..=250.0).contains(&rate),
        "offered 200/s, answered {rate}/s: {j}"
    );
    assert!(j["latency_us"]["p99"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["late"].as_u64().is_some() && j["max_lag_us"].as_u64().is_some());
    assert_eq!(j["stalled"], 0);
    assert_eq!(j["errors"]["other"], 0);
}

#[test]
fn http_usage_errors() {
    for args in [
        &["http", "--target", "127.0.0.1:80", "--rate", "-1"][..],
        &[
            "http",
            "--target",
            "127.0.0.1:80",
            "--rate",
            "100",
            "--pipeline",
            "2",
        ][..],
        &["http", "--target", "127.0.0.1:80", "--pipeline", "0"][..],
        &["http", "--target", "127.0.0.1:80", "--conns", "0"][..],
        &["http", "--target", "127.0.0.1:80", "--path", "nope"][..],
    ] {
        let o = loadgen(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
    }
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

//! `GET /metrics` during a run with known numbers — N tunnels, M HTTP requests, K clients
//! refused at the limit — asserting the exact values, in thread mode and in process mode
//! (where the master reads the counters its worker processes write into shared memory).
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
    let m = until(p.metrics, "10 tunnels, 2 refused", |m| {
        sum(m, "ringway_worker_refused_total", &["reason=\"503\""]) == 2.0
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
    assert!(sum(&m, "ringway_worker_not_enough_episodes_total", &[]) >= 1.0);

    // The clients close (TCP FIN, no close handshake): every tunnel ends by the client.
    drop(held);
    let m = until(p.metrics, "all closed", |m| {
        sum(m, "ringway_tunnels_closed_total", &[]) == 10.0
            && sum(m, "ringway_sessions", &[]) == 0.0
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

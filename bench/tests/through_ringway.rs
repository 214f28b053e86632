//! loadgen through a real ringway (in-process, port 0) in front of real wsecho backends:
//! the ceiling at 1 × 64 is exactly 31 and round robin spreads it; `echo` and `http` report
//! every field the comparison script reads (`http` whether or not ringway keeps client
//! connections alive: a close is a reconnect, not an error); every `hostile` client gets its
//! answer from ringway, not from a lax server; `--strict` turns failures into exit 3.

mod common;

use common::Echo;
use serde_json::Value;

fn proxy(backends: &[Echo], wc: usize) -> ringway::Server {
    proxy_with(backends, wc, |_| {})
}

fn proxy_with(
    backends: &[Echo],
    wc: usize,
    f: impl FnOnce(&mut ringway::Config),
) -> ringway::Server {
    let ups = backends
        .iter()
        .map(|e| format!("127.0.0.1:{}", e.port).parse().unwrap())
        .collect();
    let mut c = ringway::Config::new("127.0.0.1:0".parse().unwrap(), ups);
    c.worker_connections = wc;
    f(&mut c);
    ringway::start(c).expect("ringway starts")
}

/// Runs loadgen; its JSON line whatever the exit status (Null without one).
fn run_loadgen(args: &[&str]) -> (std::process::Output, Value) {
    let o = common::loadgen(args);
    let j = common::json_line(&o).unwrap_or(Value::Null);
    (o, j)
}

/// The in-process ringway logs one line per bad client or refused connect: thousands in the
/// tests below. The level is the process's (no test here reads the log).
fn quiet() {
    ringway::log::set_level(ringway::log::Level::Crit);
}

/// Runs loadgen with `--strict` in front of `args`: it must exit 3. Returns its JSON (printed
/// all the same).
fn strict_exits_3(args: &[&str]) -> Value {
    let strict: Vec<&str> = std::iter::once("--strict")
        .chain(args.iter().copied())
        .collect();
    let (o, j) = run_loadgen(&strict);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    j
}

fn loadgen(args: &[&str]) -> Value {
    common::last_json(&common::loadgen(args))
}

#[test]
fn ceiling_at_1x64_is_31_and_balanced() {
    let backends: Vec<Echo> = (0..4).map(|_| Echo::start(&[])).collect();
    let p = proxy(&backends, 64);
    let target = p.local_addr().to_string();
    let j = loadgen(&[
        "ceiling", "--target", &target, "--conns", "40", "--rate", "400", "--hold", "1",
    ]);
    assert_eq!(j["ok"], 31, "{j}");
    assert_eq!(j["alive_after_hold"], 31);
    assert_eq!(j["first_failure_index"], 31);
    assert_eq!(
        j["failed"]["http_status"]["503"].as_u64().unwrap_or(0)
            + j["failed"]["reset"].as_u64().unwrap_or(0),
        9,
        "{j}"
    );
    let dist = j["distribution"].as_object().unwrap();
    assert_eq!(dist.len(), 4, "{j}");
    let counts: Vec<u64> = dist.values().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 31);
    assert!(
        counts.iter().all(|&c| c == 7 || c == 8),
        "round robin: {counts:?}"
    );
}

#[test]
fn echo_for_2s_reports_every_field() {
    let backends: Vec<Echo> = (0..2).map(|_| Echo::start(&[])).collect();
    let p = proxy(&backends, 1024);
    let target = p.local_addr().to_string();
    let pid = std::process::id().to_string();
    let j = loadgen(&[
        "echo",
        "--target",
        &target,
        "--conns",
        "8",
        "--duration",
        "2",
        "--size",
        "64",
        "--watch-pid",
        &pid,
    ]);
    assert_eq!(j["subcommand"], "echo");
    assert_eq!(j["connected"], 8, "{j}");
    assert!(j["msgs"].as_u64().unwrap() > 100, "{j}");
    assert!(j["msgs_per_s"].as_f64().unwrap() > 50.0);
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            j["latency_us"][k].as_f64().unwrap() > 0.0,
            "latency {k}: {j}"
        );
    }
    assert!(j["loadgen_cpu_us_per_msg"].as_f64().is_some());
    let w = &j["watched"][0];
    assert_eq!(w["pid"].as_u64().unwrap().to_string(), pid);
    assert!(
        w["cpu_us_per_msg"].as_f64().unwrap() > 0.0,
        "the proxy (this process) used CPU: {j}"
    );
    assert_eq!(j["errors"]["reset"], 0);
}

#[test]
fn http_through_ringway_counts_closes_as_reconnects() {
    let backends: Vec<Echo> = (0..2).map(|_| Echo::start(&[])).collect();
    let p = proxy(&backends, 1024);
    let target = p.local_addr().to_string();
    let pid = std::process::id().to_string();
    for pipeline in ["1", "3"] {
        let j = loadgen(&[
            "http",
            "--target",
            &target,
            "--conns",
            "8",
            "--pipeline",
            pipeline,
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--watch-pid",
            &pid,
        ]);
        assert_eq!(j["subcommand"], "http");
        assert_eq!(j["connected"], 8, "{j}");
        let n = j["requests"].as_u64().unwrap();
        assert!(n > 50, "{j}");
        assert!(j["reconnects"].as_u64().unwrap() <= n + 8, "{j}");
        let dist = j["distribution"].as_object().unwrap();
        assert_eq!(dist.len(), 2, "both backends answered: {j}");
        assert_eq!(dist.values().filter_map(|v| v.as_u64()).sum::<u64>(), n);
        assert!(j["latency_us"]["p99"].as_f64().unwrap() > 0.0);
        assert!(
            j["watched"][0]["cpu_us_per_req"].as_f64().unwrap() > 0.0,
            "{j}"
        );
        assert_eq!(j["stalled"], 0, "{j}");
        for k in ["eof", "reset", "timeout", "other"] {
            assert_eq!(j["errors"][k], 0, "{k}: {j}");
        }
    }
}

#[test]
fn hostile_clients_each_get_their_answer_from_ringway_and_others_keep_working() {
    quiet();
    let backends: Vec<Echo> = (0..2).map(|_| Echo::start(&[])).collect();
    let p = proxy_with(&backends, 1024, |c| {
        c.head_timeout = std::time::Duration::from_secs(1);
        c.body_timeout = std::time::Duration::from_secs(1);
    });
    let target = p.local_addr().to_string();
    let (o, j) = run_loadgen(&[
        "--strict",
        "hostile",
        "--target",
        &target,
        "--conns",
        "13",
        "--duration",
        "2",
        "--timeout",
        "5",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(j["unexpected"], 0, "{j}");
    // Worker i starts with kind i: with 13 workers every kind but the dead-upstream one (no
    // --down-path) ran, and was answered as it should be.
    let kinds = j["by_kind"].as_object().unwrap();
    assert_eq!(kinds.len(), 13, "{j}");
    for (k, v) in kinds {
        assert!(v["expected"].as_u64().unwrap() > 0, "{k}: {j}");
    }
    let e = loadgen(&[
        "--strict",
        "echo",
        "--target",
        &target,
        "--conns",
        "4",
        "--duration",
        "1",
    ]);
    assert!(e["msgs"].as_u64().unwrap() > 10, "{e}");
}

#[test]
fn hostile_catches_a_lax_server_and_strict_exits_3() {
    // wsecho is no strict HTTP server: no head timeout, no 431, no smuggling check.
    let e = Echo::start(&[]);
    let target = format!("127.0.0.1:{}", e.port);
    let args = [
        "hostile",
        "--target",
        &target,
        "--conns",
        "2",
        "--duration",
        "2",
        "--timeout",
        "1",
    ];
    let (o, j) = run_loadgen(&args);
    assert!(o.status.success(), "without --strict, failures are data");
    assert!(j["unexpected"].as_u64().unwrap() > 0, "{j}");
    assert!(!j["examples"].as_array().unwrap().is_empty(), "{j}");
    strict_exits_3(&args);
}

#[test]
fn strict_http_against_a_dead_backend_exits_3() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let ups = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    quiet();
    let p = ringway::start(ringway::Config::new("127.0.0.1:0".parse().unwrap(), ups)).unwrap();
    let target = p.local_addr().to_string();
    let args = [
        "http",
        "--target",
        &target,
        "--conns",
        "2",
        "--duration",
        "1",
    ];
    let (o, j) = run_loadgen(&args);
    assert!(o.status.success());
    assert!(
        j["errors"]["http_status"]["502"].as_u64().unwrap() > 0,
        "{j}"
    );
    let j = strict_exits_3(&args);
    assert!(
        j["errors"]["http_status"]["502"].as_u64().unwrap() > 0,
        "the JSON comes first: {j}"
    );
}

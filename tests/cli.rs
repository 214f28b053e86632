//! The `ringway` binary: clear errors and exit 2 for bad flags (one line and a pointer to
//! `--help`), what `--help` shows first, `-t` in flag values, `explain`'s exit status and
//! plan, the budget line, SIGUSR2 stats, SIGTERM → exit 0.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// ringway with one worker on a port-0 listener, its backend 127.0.0.1:1 (nothing there),
/// stdout and stderr piped.
fn one_worker_to_a_dead_backend() -> std::process::Child {
    bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--worker-processes",
            "1",
            "--no-pin",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
}

#[test]
fn bad_flags_exit_2_with_one_clear_line() {
    for args in [
        vec!["--upstream", "not-an-address"],
        vec!["--upstream", "127.0.0.1:1", "--worker-connections", "3"],
        vec!["--upstream", "127.0.0.1:1", "--balance", "random"],
        vec!["--upstream", "127.0.0.1:1", "--at-limit", "404"],
        vec!["--upstream", "127.0.0.1:1", "--tunnel", "zerocopy"],
        vec!["--upstream", "127.0.0.1:1", "--head-timeout", "soon"],
        vec![],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().next().unwrap_or("").starts_with("error:"),
            "{args:?}: {err}"
        );
        // One line, ending with where to read more; never clap's usage block.
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.trim_end().ends_with("see ringway --help"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("Usage:"), "{args:?}: {err}");
    }
}

#[test]
fn unknown_flag_names_the_flag_and_the_near_miss() {
    let out = bin().args(["--upstrem", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("'--upstrem'") && err.contains("--upstream"),
        "{err}"
    );
    let out = bin()
        .args(["--upstream", "127.0.0.1:1", "--balance", "random"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("least-conn"),
        "possible values on the line: {err}"
    );
}

#[test]
fn bare_ringway_says_how_to_start_in_one_line() {
    for args in [vec![], vec!["explain"], vec!["--worker-processes", "1"]] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("--upstream") && err.contains("-c FILE"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_shows_the_ways_in_and_explain() {
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    let usage: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Usage:"))
        .take(5)
        .collect();
    let usage = usage.join("\n");
    for want in [
        "--upstream HOST:PORT",
        "ringway -c FILE",
        "ringway -t",
        "ringway explain",
        "ringway -s reload|quit|stop|reopen",
    ] {
        assert!(usage.contains(want), "{want} in the usage lines:\n{help}");
    }
    for want in [
        "Commands:",
        "explain  Every limit",
        "1 when it does not",
        "SIGHUP re-reads the -c file",
        "-s reload|quit|",
    ] {
        assert!(help.contains(want), "{want}:\n{help}");
    }
    // --read-timeout says what the code does: the head after the whole request, then
    // between body reads.
    assert!(
        help.contains("once the whole request is with the"),
        "{help}"
    );
}

#[test]
fn test_config_prints_flag_values() {
    let out = bin()
        .args([
            "-t",
            "--upstream",
            "127.0.0.1:1",
            "--worker-processes",
            "1",
            "--balance",
            "least-conn",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "balance least-conn",
        "tunnel auto",
        "at-limit 503",
        "worker-mode thread",
        "proxy_read_timeout 60s",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    for rust in ["LeastConn", "Splice", "Reply503", "RoundRobin"] {
        assert!(!text.contains(rust), "{rust}: {text}");
    }
    assert!(
        text.contains("the configuration test is successful"),
        "{text}"
    );
}

#[test]
fn explain_exits_1_with_one_plan_when_the_target_does_not_fit() {
    let base = [
        "explain",
        "--upstream",
        "127.0.0.1:1",
        "--worker-processes",
        "1",
    ];
    // 100 fit 1 × 1024 on any machine this runs on (≈ 370 descriptors).
    let out = bin()
        .args(base)
        .args(["--tunnels", "100"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("100 tunnels fit"), "{text}");
    assert!(!text.contains("plan:"), "{text}");
    // 100,000 do not: exit 1, the verdict first, then exactly one plan.
    let out = bin()
        .args(base)
        .args(["--tunnels", "100000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let verdict = text
        .lines()
        .find(|l| l.trim_start().starts_with('→'))
        .unwrap_or("");
    assert!(verdict.contains("do not fit as configured"), "{text}");
    assert_eq!(text.matches("plan:").count(), 1, "{text}");
    assert!(
        !text.contains("fix:"),
        "no per-row fixes beside the plan: {text}"
    );
}

#[test]
fn listen_conflict_exits_1_with_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin()
        .args([
            "--listen",
            &addr,
            "--upstream",
            "127.0.0.1:1",
            "--worker-processes",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn budget_line_stats_and_sigterm() {
    let mut child = one_worker_to_a_dead_backend();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "budget: 1 worker × 1024 slots − 2 reserved = 1022 → 511 proxied clients"
    );
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    assert!(
        line.contains("tunnel auto, balance round-robin, at-limit 503"),
        "{line}"
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.matches("stats: worker 0: slots 2 used / 1022 free of 1024")
            .count()
            >= 2,
        "{err}"
    );
    assert!(
        err.contains("stats: backend 127.0.0.1:1: live tunnels 0"),
        "{err}"
    );
}

#[test]
fn log_lines_have_nginx_error_log_shape() {
    let mut child = one_worker_to_a_dead_backend();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    // A malformed request (the client's doing) and one for a backend that refuses (the
    // backend's): both are logged in nginx's error-log shape, with the client.
    let port: u16 = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("listen port");
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, req).unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // `YYYY/MM/DD HH:MM:SS [level] ringway[w0]: message, client: ADDR`
    let shaped = |level: &str, about: &str| {
        err.lines().any(|l| {
            let b = l.as_bytes();
            l.len() > 20
                && b[4] == b'/'
                && b[7] == b'/'
                && b[10] == b' '
                && b[13] == b':'
                && b[16] == b':'
                && b[..19].iter().filter(|c| c.is_ascii_digit()).count() == 14
                && l[19..].starts_with(&format!(" [{level}] ringway[w0]: "))
                && l.contains(about)
                && l.ends_with(", client: 127.0.0.1")
        })
    };
    assert!(shaped("info", "answering 400"), "{err}");
    assert!(shaped("error", "upstream 127.0.0.1:1: "), "{err}");
}

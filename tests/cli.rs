//! The `ringway` binary: clear errors and exit 2 for bad flags, the budget line, SIGUSR1
//! stats, SIGTERM → exit 0.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    }
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
    let mut child = bin()
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
        .unwrap();
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
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
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

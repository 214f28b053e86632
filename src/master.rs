//! Process mode: a master that runs each worker as its own process, as nginx's
//! `worker_processes` do.
//!
//! Why: one process's descriptor table is capped by RLIMIT_NOFILE (20,000 on some
//! machines, and not raisable without CAP_SYS_RESOURCE); separate processes each get
//! their own. The master binds every worker's SO_REUSEPORT listener, creates the shared
//! counters (a memfd: least-conn counts and stats stay exact across processes) and one
//! unix datagram socket per worker for budget handoffs (a full worker passes a client's
//! descriptor to a sibling with room, SCM_RIGHTS), then execs `ringway` once per worker
//! with the same arguments and `RINGWAY_WORKER` naming the inherited descriptors.
//!
//! The master forwards SIGTERM/SIGINT, prints aggregated stats on SIGUSR1 and at exit,
//! logs and ignores SIGHUP (there is no reload; the workers ignore it too), and restarts
//! a worker that dies (logging how it died) after zeroing that worker's counters: its
//! connections died with it, the others' tunnels are untouched.

use crate::config::{AsFlag, Config};
use crate::listener;
use crate::log::{self, Level, Who};
use crate::server::ChildSetup;
use crate::shm::Counters;
use crate::stats::Snapshot;
use crate::sys;
use crate::upstream::Upstreams;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable that makes `ringway` a worker process.
pub const WORKER_ENV: &str = "RINGWAY_WORKER";

/// What the master (and a thread-mode `ringway`) logs for SIGHUP, which it ignores.
pub const SIGHUP_IGNORED: &str = "SIGHUP: reload is not supported yet; ignored";

/// Parse the inherited descriptors of a worker process, if this is one.
/// Format: `index;listener;shm;inbox;tx0,tx1,...` (`-1` for the worker's own entry).
pub fn child_setup_from_env(cfg: &Config) -> Option<io::Result<ChildSetup>> {
    let v = std::env::var(WORKER_ENV).ok()?;
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad {WORKER_ENV}={v}"));
    let parse = || -> io::Result<ChildSetup> {
        let parts: Vec<&str> = v.split(';').collect();
        if parts.len() != 5 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let index = num(parts[0])? as usize;
        let listener = num(parts[1])? as RawFd;
        let shm = num(parts[2])? as RawFd;
        let inbox = num(parts[3])? as RawFd;
        let outboxes = parts[4]
            .split(',')
            .map(|x| num(x).map(|f| if f < 0 { None } else { Some(f as RawFd) }))
            .collect::<io::Result<Vec<_>>>()?;
        if index >= cfg.workers || outboxes.len() != cfg.workers {
            return Err(bad());
        }
        let counters = Counters::map(shm, cfg.workers, cfg.upstreams.len())?;
        Ok(ChildSetup {
            index,
            listener,
            counters,
            inbox,
            outboxes,
        })
    };
    Some(parse())
}

struct WorkerProc {
    child: Option<Child>,
    started: Instant,
    env: String,
}

/// Run the master until SIGINT/SIGTERM; returns the exit status. `set` holds the blocked
/// signals the caller waits on (SIGINT, SIGTERM, SIGUSR1, SIGHUP); SIGCHLD is added here.
pub fn run_master(cfg: &Config, args: &[OsString], mut set: SigSet) -> io::Result<i32> {
    let w = cfg.workers;
    let (counters, shm) = Counters::memfd(w, cfg.upstreams.len())?;
    let (listeners, addr) = listener::bind_reuseport(cfg.listen, w, cfg.backlog)?;
    let mut rx = Vec::with_capacity(w);
    let mut tx = Vec::with_capacity(w);
    for _ in 0..w {
        let (r, t) = sys::handoff_pair()?;
        rx.push(r);
        tx.push(t);
    }
    // Every worker inherits the shared counters and every sibling's handoff send end; its
    // own listener and handoff receive end are made inheritable just for its spawn (below),
    // so a worker that is not running leaves no copy of its listener in its siblings.
    for &fd in tx.iter().chain(std::iter::once(&shm)) {
        sys::set_cloexec(fd, false)?;
    }
    let ups = Upstreams::new(&cfg.upstreams, cfg.balance, counters);
    set.add(Signal::SIGCHLD);
    set.thread_block().map_err(io::Error::from)?;
    let exe = std::env::current_exe()?;
    // Spawns happen one at a time on this thread, so toggling close-on-exec around each
    // spawn hands worker `i` exactly its own listener and receive end.
    let spawn = |i: usize, env: &str| -> io::Result<Child> {
        for j in 0..w {
            sys::set_cloexec(listeners[j], j != i)?;
            sys::set_cloexec(rx[j], j != i)?;
        }
        Command::new(&exe)
            .args(&args[1..])
            .env(WORKER_ENV, env)
            .env("RINGWAY_MASTER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
    };
    let mut procs = Vec::with_capacity(w);
    for i in 0..w {
        let outs: Vec<String> = (0..w)
            .map(|j| {
                if j == i {
                    "-1".into()
                } else {
                    tx[j].to_string()
                }
            })
            .collect();
        let env = format!("{i};{};{shm};{};{}", listeners[i], rx[i], outs.join(","));
        let child = spawn(i, &env)?;
        procs.push(WorkerProc {
            child: Some(child),
            started: Instant::now(),
            env,
        });
    }
    if !cfg.upstream_bind.is_empty() {
        println!(
            "ringway: upstream connections bind {} source address(es) from {} (proxy_bind; IP_BIND_ADDRESS_NO_PORT)",
            cfg.upstream_bind.len(),
            cfg.upstream_bind[0]
        );
    }
    println!(
        "ringway: listening on {addr} with {w} worker process(es) (master pid {}), tunnel {}, balance {}, at-limit {}, {} upstream(s)",
        std::process::id(),
        cfg.tunnel.as_flag(),
        cfg.balance.as_flag(),
        cfg.at_limit.as_flag(),
        cfg.upstreams.len()
    );
    loop {
        let sig = set.wait().map_err(io::Error::from)?;
        match sig {
            Signal::SIGUSR1 => eprint!("{}", Snapshot::collect(&counters, &ups.addrs).render()),
            Signal::SIGHUP => log::write(
                Level::Notice,
                Who::Process,
                None,
                format_args!("{SIGHUP_IGNORED}"),
            ),
            Signal::SIGCHLD => {
                for (i, p) in procs.iter_mut().enumerate() {
                    let Some(child) = p.child.as_mut() else {
                        continue;
                    };
                    if let Ok(Some(status)) = child.try_wait() {
                        let how = match (status.code(), status.signal()) {
                            (Some(c), _) => format!("exited with status {c}"),
                            (None, Some(s)) => format!(
                                "was killed by signal {}",
                                Signal::try_from(s).map(|s| s.as_str()).unwrap_or("?")
                            ),
                            _ => "ended".into(),
                        };
                        eprintln!(
                            "ringway: worker {i} (pid {}) {how}; restarting it (the other workers' tunnels are untouched)",
                            child.id()
                        );
                        counters.reset_worker(i);
                        // Do not spin if a worker dies at once every time.
                        if p.started.elapsed() < Duration::from_secs(1) {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        match spawn(i, &p.env) {
                            Ok(c) => {
                                p.child = Some(c);
                                p.started = Instant::now();
                            }
                            Err(e) => {
                                log::write(
                                    Level::Error,
                                    Who::Process,
                                    None,
                                    format_args!("cannot restart worker {i}: {e}"),
                                );
                                p.child = None;
                            }
                        }
                    }
                }
            }
            other => {
                log::write(
                    Level::Notice,
                    Who::Process,
                    None,
                    format_args!("{other}: stopping {w} worker process(es)"),
                );
                break;
            }
        }
    }
    for p in &procs {
        if let Some(c) = &p.child {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
    }
    // Closing hundreds of thousands of sockets takes the kernel a while on a busy box.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut worst = 0;
    for (i, p) in procs.iter_mut().enumerate() {
        let Some(c) = p.child.as_mut() else { continue };
        let pid = c.id();
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    if st.code() != Some(0) {
                        log::write(
                            Level::Alert,
                            Who::Process,
                            None,
                            format_args!("worker {i} (pid {pid}) ended with {st}"),
                        );
                        worst = 1;
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    log::write(
                        Level::Alert,
                        Who::Process,
                        None,
                        format_args!("worker {i} (pid {pid}) did not stop within 30 s: killed"),
                    );
                    let _ = c.kill();
                    let _ = c.wait();
                    worst = 1;
                    break;
                }
            }
        }
    }
    eprint!("{}", Snapshot::collect(&counters, &ups.addrs).render());
    Ok(worst)
}

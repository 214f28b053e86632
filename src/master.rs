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
//! The master forwards stops (SIGQUIT/SIGTERM graceful, SIGINT fast) and log reopens
//! (SIGUSR1), prints aggregated stats on SIGUSR2 and at exit, serves the metrics endpoint
//! (`--metrics`, read straight from the shared counters), and restarts a worker that dies (logging how it died)
//! after zeroing that worker's counters: its connections died with it, the others'
//! tunnels are untouched.
//!
//! SIGHUP reloads by generations, as nginx does: the file is re-read (a bad one is logged
//! and the running generation keeps serving), a new generation of worker processes starts
//! with its own counters and handoff sockets — on the same listening sockets when the
//! listen address and worker count are unchanged, else on new SO_REUSEPORT listeners —
//! and once its workers run, the old ones are told to drain (SIGUSR2: the listener stays
//! with the successor; SIGQUIT: take the backlog, then close it). Old workers are never
//! restarted; their tunnels stay until they end (or `--shutdown-timeout`).

use crate::config::{AsFlag, Config};
use crate::lifecycle::reread;
use crate::listener;
use crate::log::{self, Level, Who};
use crate::server::ChildSetup;
use crate::shm::{Counters, WorkerStats};
use crate::stats::Snapshot;
use crate::sys;
use crate::upstream::Upstreams;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Environment variable that makes `ringway` a worker process.
pub const WORKER_ENV: &str = "RINGWAY_WORKER";

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

/// One generation of worker processes: its configuration, listeners, counters, handoff
/// sockets and processes.
struct Generation {
    cfg: Config,
    addr: SocketAddr,
    listeners: Vec<RawFd>,
    /// Whether closing the listeners is this generation's (not a successor's) job.
    owns_listeners: bool,
    counters: Counters,
    shm: RawFd,
    rx: Vec<RawFd>,
    tx: Vec<RawFd>,
    ups: Upstreams,
    procs: Vec<WorkerProc>,
    /// Its entry in the metrics source.
    metrics_id: Option<crate::metrics::GenId>,
}

impl Generation {
    /// Start `cfg.workers` worker processes on `listeners` (bound at `addr`).
    fn launch(
        cfg: &Config,
        listeners: Vec<RawFd>,
        addr: SocketAddr,
        args: &[OsString],
    ) -> io::Result<Generation> {
        let w = cfg.workers;
        let (counters, shm) = Counters::memfd(w, cfg.upstreams.len())?;
        let mut rx = Vec::with_capacity(w);
        let mut tx = Vec::with_capacity(w);
        for _ in 0..w {
            let (r, t) = sys::handoff_pair()?;
            rx.push(r);
            tx.push(t);
        }
        let mut g = Generation {
            cfg: cfg.clone(),
            addr,
            listeners,
            owns_listeners: true,
            ups: Upstreams::new(&cfg.upstreams, cfg.balance, counters),
            counters,
            shm,
            rx,
            tx,
            procs: Vec::with_capacity(w),
            metrics_id: None,
        };
        for i in 0..w {
            let outs: Vec<String> = (0..w)
                .map(|j| {
                    if j == i {
                        "-1".into()
                    } else {
                        g.tx[j].to_string()
                    }
                })
                .collect();
            let env = format!(
                "{i};{};{shm};{};{}",
                g.listeners[i],
                g.rx[i],
                outs.join(",")
            );
            let child = g.spawn(i, &env, args)?;
            g.procs.push(WorkerProc {
                child: Some(child),
                started: Instant::now(),
                env,
            });
        }
        Ok(g)
    }

    /// Spawn worker `i`. Spawns happen one at a time on the master's thread, and every
    /// descriptor is close-on-exec except while its own worker is spawned, so worker `i`
    /// inherits exactly its listener, its receive end, its generation's send ends and
    /// counters — no other generation's.
    fn spawn(&self, i: usize, env: &str, args: &[OsString]) -> io::Result<Child> {
        let mine = [self.listeners[i], self.rx[i], self.shm];
        for &fd in mine.iter().chain(&self.tx) {
            sys::set_cloexec(fd, false)?;
        }
        let child = Command::new(std::env::current_exe()?)
            .args(&args[1..])
            .env(WORKER_ENV, env)
            .env("RINGWAY_MASTER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        for &fd in mine.iter().chain(&self.tx) {
            sys::set_cloexec(fd, true)?;
        }
        child
    }

    /// Wait (up to 10 s) until every worker runs: its loop started, or it died trying.
    fn wait_running(&mut self) {
        self.wait_all(
            |w| &w.running,
            1,
            Duration::from_secs(10),
            Duration::from_millis(10),
        );
    }

    /// Wait (up to `limit`, checking every `step`) until every worker's counter `field` is
    /// `want`, or the worker is gone.
    fn wait_all(
        &mut self,
        field: fn(&WorkerStats) -> &AtomicU64,
        want: u64,
        limit: Duration,
        step: Duration,
    ) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let all = self.procs.iter_mut().enumerate().all(|(i, p)| {
                field(self.counters.worker(i)).load(std::sync::atomic::Ordering::Relaxed) == want
                    || p.child
                        .as_mut()
                        .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
            });
            if all {
                return;
            }
            std::thread::sleep(step);
        }
    }

    fn signal(&self, sig: Signal) {
        for p in &self.procs {
            if let Some(c) = &p.child {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            }
        }
    }

    /// Wait (up to 2 s) until no accept of any live worker can take a client (drained).
    fn wait_released(&mut self) {
        self.wait_all(
            |w| &w.accepting,
            0,
            Duration::from_secs(2),
            Duration::from_millis(2),
        );
    }

    fn alive(&self) -> bool {
        self.procs.iter().any(|p| p.child.is_some())
    }

    fn close_listeners(&mut self) {
        if std::mem::replace(&mut self.owns_listeners, false) {
            for &l in &self.listeners {
                sys::close(l);
            }
        }
    }

    /// Every process is gone: close what the master holds for this generation.
    fn close(mut self) {
        self.close_listeners();
        for &fd in self
            .rx
            .iter()
            .chain(&self.tx)
            .chain(std::iter::once(&self.shm))
        {
            sys::close(fd);
        }
    }

    fn announce(&self) {
        let cfg = &self.cfg;
        if !cfg.upstream_bind.is_empty() {
            println!(
                "ringway: upstream connections bind {} source address(es) from {} (proxy_bind; IP_BIND_ADDRESS_NO_PORT)",
                cfg.upstream_bind.len(),
                cfg.upstream_bind[0]
            );
        }
        println!(
            "ringway: listening on {} with {} worker process(es) (master pid {}), tunnel {}, balance {}, at-limit {}, {} upstream(s)",
            self.addr,
            cfg.workers,
            std::process::id(),
            cfg.tunnel.as_flag(),
            cfg.balance.as_flag(),
            cfg.at_limit.as_flag(),
            cfg.upstreams.len()
        );
    }
}

/// How a child ended, in words.
fn how(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!(
            "was killed by signal {}",
            Signal::try_from(s).map(|s| s.as_str()).unwrap_or("?")
        ),
        _ => "ended".into(),
    }
}

/// Reap the workers that ended: restart the current generation's (unless stopping), log
/// an old generation's that did not end well.
fn reap(gen: &mut Generation, current: bool, stopping: bool, args: &[OsString]) {
    for i in 0..gen.procs.len() {
        let Some(child) = gen.procs[i].child.as_mut() else {
            continue;
        };
        let Ok(Some(status)) = child.try_wait() else {
            continue;
        };
        let pid = child.id();
        gen.procs[i].child = None;
        if !current || stopping {
            if status.code() != Some(0) {
                log::write(
                    Level::Alert,
                    Who::Process,
                    None,
                    format_args!("worker {i} (pid {pid}) {}", how(status)),
                );
            }
            continue;
        }
        eprintln!(
            "ringway: worker {i} (pid {pid}) {}; restarting it (the other workers' tunnels are untouched)",
            how(status)
        );
        gen.counters.reset_worker(i);
        // Do not spin if a worker dies at once every time.
        if gen.procs[i].started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let env = gen.procs[i].env.clone();
        match gen.spawn(i, &env, args) {
            Ok(c) => {
                gen.procs[i].child = Some(c);
                gen.procs[i].started = Instant::now();
            }
            Err(e) => log::write(
                Level::Error,
                Who::Process,
                None,
                format_args!("cannot restart worker {i}: {e}"),
            ),
        }
    }
}

/// SIGHUP: a new generation for the re-read file, then the old one drains. Returns the
/// old generation, or `None` (logged) when nothing was reloaded.
fn reload(cur: &mut Generation, args: &[OsString]) -> Option<Generation> {
    let cfg = reread(args, &cur.cfg)?;
    let addr = if cfg.listen == cur.cfg.listen {
        cur.addr
    } else {
        cfg.listen
    };
    let reuse = addr == cur.addr && cfg.workers == cur.cfg.workers;
    let fail = |e: io::Error| {
        log::write(
            Level::Error,
            Who::Process,
            None,
            format_args!("reload failed: {e}; still serving the previous configuration"),
        )
    };
    let (listeners, addr) = if reuse {
        (cur.listeners.clone(), cur.addr)
    } else {
        match listener::bind_reuseport(addr, cfg.workers, cfg.backlog) {
            Ok(x) => x,
            Err(e) => {
                fail(e);
                return None;
            }
        }
    };
    let mut next = match Generation::launch(&cfg, listeners.clone(), addr, args) {
        Ok(g) => g,
        Err(e) => {
            if !reuse {
                listeners.iter().for_each(|&l| sys::close(l));
            }
            fail(e);
            return None;
        }
    };
    next.wait_running();
    let mut old = std::mem::replace(cur, next);
    if reuse {
        old.owns_listeners = false;
        old.signal(Signal::SIGUSR2);
    } else {
        old.signal(Signal::SIGQUIT);
        old.close_listeners();
    }
    old.wait_released();
    println!(
        "{}",
        crate::budget::describe(cur.cfg.workers, cur.cfg.worker_connections)
    );
    cur.announce();
    log::write(
        Level::Notice,
        Who::Process,
        None,
        format_args!(
            "reloaded: new clients get the new configuration; {} old worker process(es) drain",
            old.cfg.workers
        ),
    );
    Some(old)
}

/// Run the master until stopped; returns the exit status. `set` holds the blocked signals
/// the caller waits on; SIGCHLD is added here. `started` runs once the workers are up
/// (the pid file); what it returns is kept until the master exits.
pub fn run_master<P>(
    cfg: &Config,
    args: &[OsString],
    mut set: SigSet,
    started: impl FnOnce() -> P,
) -> io::Result<i32> {
    let (listeners, addr) = listener::bind_reuseport(cfg.listen, cfg.workers, cfg.backlog)?;
    set.add(Signal::SIGCHLD);
    set.thread_block().map_err(io::Error::from)?;
    let mut cur = Generation::launch(cfg, listeners, addr, args)?;
    let source = crate::metrics::Source::new(cfg.workers, true);
    let gen_of = |g: &Generation| crate::metrics::Gen::new(&g.cfg, g.counters, g.ups.addrs.clone());
    cur.metrics_id = Some(source.add(gen_of(&cur)));
    crate::lifecycle::start_metrics(cfg, &source)?;
    cur.announce();
    let _kept = started();
    let mut old: Vec<Generation> = Vec::new();
    let mut stopping: Option<Instant> = None;
    let mut worst = 0;
    loop {
        let sig = sys::wait_signal(set.as_ref(), Duration::from_millis(200))
            .and_then(|s| Signal::try_from(s).ok());
        match sig {
            Some(Signal::SIGUSR1) => {
                crate::lifecycle::reopen_logs(&cur.cfg);
                for g in std::iter::once(&cur).chain(&old) {
                    g.signal(Signal::SIGUSR1);
                }
            }
            Some(Signal::SIGUSR2) => eprint!(
                "{}",
                Snapshot::collect(&cur.counters, &cur.ups.addrs).render()
            ),
            Some(Signal::SIGHUP) if stopping.is_some() => {}
            Some(Signal::SIGHUP) => {
                if let Some(prev) = reload(&mut cur, args) {
                    cur.metrics_id = Some(source.add(gen_of(&cur)));
                    source.reloaded();
                    old.push(prev);
                }
            }
            Some(Signal::SIGCHLD) | None => {}
            Some(sig @ (Signal::SIGQUIT | Signal::SIGTERM)) if stopping.is_none() => {
                let bound = cur.cfg.stop_timeout();
                log::write(
                    Level::Notice,
                    Who::Process,
                    None,
                    format_args!(
                        "{sig}: graceful stop of {} worker process(es): no new clients; requests finish; tunnels kept for up to {}",
                        cur.cfg.workers,
                        crate::config::fmt_duration(bound)
                    ),
                );
                // The master's copies of the listeners go too, so that the kernel refuses
                // new clients at once instead of queueing them where nobody accepts.
                for g in std::iter::once(&mut cur).chain(old.iter_mut()) {
                    g.signal(Signal::SIGQUIT);
                    g.close_listeners();
                }
                // Closing hundreds of thousands of sockets takes the kernel a while.
                stopping = Some(Instant::now() + bound + Duration::from_secs(30));
            }
            Some(Signal::SIGQUIT | Signal::SIGTERM) => {}
            Some(other) => {
                log::write(
                    Level::Notice,
                    Who::Process,
                    None,
                    format_args!("{other}: stopping {} worker process(es)", cur.cfg.workers),
                );
                for g in std::iter::once(&cur).chain(&old) {
                    g.signal(Signal::SIGINT);
                }
                stopping = Some(Instant::now() + Duration::from_secs(30));
            }
        }
        let halt = stopping.is_some();
        reap(&mut cur, true, halt, args);
        for g in &mut old {
            reap(g, false, halt, args);
        }
        let (ended, live): (Vec<_>, Vec<_>) = old.drain(..).partition(|g| !g.alive());
        old = live;
        for g in ended {
            if let Some(id) = g.metrics_id {
                source.retire(id);
            }
            g.close();
        }
        let Some(deadline) = stopping else { continue };
        if !cur.alive() && old.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for g in std::iter::once(&mut cur).chain(old.iter_mut()) {
                for (i, p) in g.procs.iter_mut().enumerate() {
                    let Some(c) = p.child.as_mut() else { continue };
                    log::write(
                        Level::Alert,
                        Who::Process,
                        None,
                        format_args!("worker {i} (pid {}) did not stop in time: killed", c.id()),
                    );
                    let _ = c.kill();
                    let _ = c.wait();
                    p.child = None;
                    worst = 1;
                }
            }
            break;
        }
    }
    eprint!(
        "{}",
        Snapshot::collect(&cur.counters, &cur.ups.addrs).render()
    );
    Ok(worst)
}

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
//! with the successor; SIGUSR2 with a value: take the backlog, then close it). Old workers are never
//! restarted; their tunnels stay until they end (or `--shutdown-timeout`). The loop that
//! runs generations — of processes or of threads — is `supervise.rs`'s.

use crate::config::{AsFlag, Config};
use crate::listener;
use crate::log::{self, Level, Who};
use crate::server::ChildSetup;
use crate::shm::{Counters, WorkerStats};
use crate::stats::Snapshot;
use crate::sys;
use crate::upstream::Upstreams;
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// The value a SIGUSR2 carries (sigqueue) when the master retires a worker whose listener
/// no successor shares: take the clients in the backlog, then close it.
pub const RETIRE_TAKE_BACKLOG: i32 = 1;

/// Environment variable with the master's [`Config::fingerprint`], for a worker process to
/// check its own configuration against.
pub const FINGERPRINT_ENV: &str = "RINGWAY_CONFIG_FINGERPRINT";

/// The exit status of a worker process whose configuration is not its master's (the file
/// changed since it was loaded): the master does not restart it (EX_CONFIG).
pub const EXIT_CONFIG_CHANGED: i32 = 78;

/// Environment variable that makes `ringway` a worker process.
pub const WORKER_ENV: &str = "RINGWAY_WORKER";

/// Environment variables with the error log level and file the master runs with (the
/// file absent: stderr), which a worker process uses instead of its file's: they are set
/// once per process, so a reload that changes them applies to no worker either.
const ERROR_LEVEL_ENV: &str = "RINGWAY_ERROR_LEVEL";
const ERROR_LOG_ENV: &str = "RINGWAY_ERROR_LOG";

/// The error log the process started with: set by `supervise::run` before any worker
/// process is spawned.
static ERROR_LOG_IN_FORCE: std::sync::OnceLock<(Level, Option<std::path::PathBuf>)> =
    std::sync::OnceLock::new();

/// Record the error log level and file this process runs with, for the worker processes
/// it will spawn (of any generation).
pub fn keep_error_log(cfg: &Config) {
    let _ = ERROR_LOG_IN_FORCE.set((cfg.error_level, cfg.error_log.clone()));
}

/// The error log level and file this process is to use: its master's, in a worker
/// process spawned by one; else `cfg`'s.
pub fn error_log_in_force(cfg: &Config) -> (Level, Option<std::path::PathBuf>) {
    let level = std::env::var(ERROR_LEVEL_ENV)
        .ok()
        .and_then(|l| Level::parse(&l).ok());
    match level {
        Some(level) if std::env::var_os(WORKER_ENV).is_some() => (
            level,
            std::env::var_os(ERROR_LOG_ENV).map(std::path::PathBuf::from),
        ),
        _ => (cfg.error_level, cfg.error_log.clone()),
    }
}

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
pub(crate) struct Generation {
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
    /// Active health checks, run here (one place) for every worker process.
    _health: Option<crate::health::check::Checker>,
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
            ups: {
                let routing = cfg.routing();
                let groups: Vec<_> = routing
                    .groups
                    .iter()
                    .map(|g| (g.backends.clone(), g.balance))
                    .collect();
                Upstreams::with_params(&cfg.upstreams, &groups, &routing.servers(), counters)
            },
            _health: crate::health::check::Checker::start(
                crate::health::check::targets(&cfg.routing(), &cfg.upstreams),
                counters,
            ),
            counters,
            shm,
            rx,
            tx,
            procs: Vec::with_capacity(w),
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
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(&args[1..])
            .env(WORKER_ENV, env)
            .env(FINGERPRINT_ENV, self.cfg.fingerprint().to_string())
            .env("RINGWAY_MASTER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some((level, file)) = ERROR_LOG_IN_FORCE.get() {
            cmd.env(ERROR_LEVEL_ENV, level.name());
            match file {
                Some(f) => cmd.env(ERROR_LOG_ENV, f),
                None => cmd.env_remove(ERROR_LOG_ENV),
            };
        }
        let child = cmd.spawn();
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
            for &l in self.listeners.iter().filter(|&&l| l >= 0) {
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

    pub(crate) fn announce(&self) {
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
        if status.code() == Some(EXIT_CONFIG_CHANGED) {
            log::write(
                Level::Alert,
                Who::Process,
                None,
                format_args!(
                    "worker {i} (pid {pid}) could not restart: the configuration file changed since it was loaded; reload (ringway -s reload) to apply it, or restore it and reload; until then this worker's share of the listener is closed"
                ),
            );
            // Nobody accepts on it now: out of the SO_REUSEPORT group, so that the kernel
            // hashes new clients to the workers that run.
            if gen.owns_listeners && gen.listeners[i] >= 0 {
                sys::close(gen.listeners[i]);
                gen.listeners[i] = -1;
            }
            continue;
        }
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

impl Generation {
    /// The first generation: bind `cfg.listen` (at `at`, when a reload from thread mode
    /// resolved its port already) and start the workers.
    pub(crate) fn start(
        cfg: &Config,
        at: Option<SocketAddr>,
        args: &[OsString],
    ) -> io::Result<Generation> {
        let (listeners, addr) =
            listener::bind_reuseport(at.unwrap_or(cfg.listen), cfg.workers, cfg.backlog)?;
        match Generation::launch(cfg, listeners.clone(), addr, args) {
            Ok(mut g) => {
                g.wait_running();
                Ok(g)
            }
            Err(e) => {
                listeners.iter().for_each(|&l| sys::close(l));
                Err(e)
            }
        }
    }

    /// A reload's successor generation of worker processes, running once this returns: on
    /// this generation's listening sockets when the listen address and worker count are
    /// unchanged (then `true`: the listeners are shared), else on new SO_REUSEPORT
    /// listeners beside these.
    pub(crate) fn successor(
        &mut self,
        cfg: &Config,
        args: &[OsString],
    ) -> io::Result<(Generation, bool)> {
        let addr = if cfg.listen == self.cfg.listen {
            self.addr
        } else {
            cfg.listen
        };
        let whole = self.listeners.iter().all(|&l| l >= 0);
        if addr != self.addr || cfg.workers != self.cfg.workers || !whole {
            return Ok((Generation::start(cfg, Some(addr), args)?, false));
        }
        let mut next = Generation::launch(cfg, self.listeners.clone(), addr, args)?;
        next.wait_running();
        Ok((next, true))
    }

    /// After a reload: drain this old generation, its tunnels kept until they end (or
    /// `--shutdown-timeout`). `shared`: a successor accepts on these very listeners
    /// (SIGUSR2: leave the backlog to it); else take what is in the backlog, then close
    /// (SIGUSR2 with [`RETIRE_TAKE_BACKLOG`]; the master's copies go now).
    pub(crate) fn retire(&mut self, shared: bool) {
        if shared {
            self.owns_listeners = false;
            self.signal(Signal::SIGUSR2);
        } else {
            for p in &self.procs {
                if let Some(c) = &p.child {
                    let _ = sys::queue_signal(c.id() as i32, libc::SIGUSR2, RETIRE_TAKE_BACKLOG);
                }
            }
            self.close_listeners();
        }
        self.wait_released();
    }

    /// A graceful stop (SIGQUIT to every worker). The master's copies of the listeners go
    /// too, so that the kernel refuses new clients at once instead of queueing them where
    /// nobody accepts.
    pub(crate) fn graceful(&mut self) {
        self.signal(Signal::SIGQUIT);
        self.close_listeners();
    }

    /// A fast stop (SIGINT to every worker).
    pub(crate) fn fast(&self) {
        self.signal(Signal::SIGINT);
    }

    /// Whether every worker process has ended.
    pub(crate) fn finished(&self) -> bool {
        !self.alive()
    }

    /// Kill the workers still running (a stop past its deadline), each logged; whether
    /// any was.
    pub(crate) fn kill_left(&mut self) -> bool {
        let mut any = false;
        for (i, p) in self.procs.iter_mut().enumerate() {
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
            any = true;
        }
        any
    }

    /// The counters of every worker and backend of this generation.
    pub(crate) fn stats(&self) -> Snapshot {
        Snapshot::collect(&self.counters, &self.ups.addrs)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// This generation as the metrics endpoint sees it.
    pub(crate) fn metrics_gen(&self) -> crate::metrics::Gen {
        crate::metrics::Gen::new(&self.cfg, self.counters, self.ups.addrs.clone())
    }

    /// SIGUSR1, forwarded: every worker process reopens its log files.
    pub(crate) fn reopen_logs(&self) {
        self.signal(Signal::SIGUSR1);
    }

    /// The address the workers listen on (port 0 resolved).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reap the workers that ended; see [`reap`].
    pub(crate) fn reap(&mut self, current: bool, stopping: bool, args: &[OsString]) {
        reap(self, current, stopping, args)
    }

    /// Every process is gone: close what the master holds for this generation.
    pub(crate) fn end(self) {
        self.close()
    }
}

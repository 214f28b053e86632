//! The loop of the process `ringway` started as: it runs generations of workers — threads
//! in this process, or worker processes it is the master of (`master.rs`) — and turns
//! signals into stops and reloads.
//!
//! A reload (SIGHUP) re-reads the `-c` file (`lifecycle::reread`) and starts a successor
//! generation of the file's kind; once it runs, the old generation drains beside it. Same
//! kind, listen address and worker count: the successor accepts on the very same sockets.
//! Anything else — a new worker count or address, or threads ↔ processes — gets new
//! SO_REUSEPORT listeners beside the old, and the old workers take what is in their
//! backlogs before closing theirs. Either way nobody is refused and no tunnel is touched.
//!
//! What belongs to the process — the metrics listener, the error log and its level, the
//! pid file — is set from the first configuration only: a reload that changes it logs a
//! `[warn]` and keeps the running value (worker processes take the master's error log).
//!
//! SIGQUIT/SIGTERM drain every generation, bounded by the stop timeout; SIGINT stops at
//! once; SIGUSR1 reopens the logs (nginx's `reopen`, forwarded to worker processes);
//! SIGUSR2 prints the current generation's stats. The metrics endpoint (`--metrics`)
//! follows the generations: each one is added as it starts and retired as it ends.

use crate::config::{fmt_duration, Config};
use crate::lifecycle::{self, reread};
use crate::log::{self, Level, Who};
use crate::master::Generation;
use crate::metrics::{GenId, Source};
use crate::server::{self, Server};
use crate::stats::Snapshot;
use crate::sys;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the loop looks at its generations when no signal comes.
const POLL: Duration = Duration::from_millis(100);

/// One generation of workers, of either kind.
enum Gen {
    /// Worker threads in this process.
    Threads(Server),
    /// Worker processes of this master.
    Procs(Box<Generation>),
}

impl Gen {
    /// The first generation for `cfg`.
    fn first(cfg: Config, args: &[OsString]) -> io::Result<Gen> {
        if cfg.process_mode {
            Generation::start(&cfg, None, args).map(|g| Gen::Procs(Box::new(g)))
        } else {
            server::start(cfg).map(Gen::Threads)
        }
    }

    fn config(&self) -> &Config {
        match self {
            Gen::Threads(s) => s.config(),
            Gen::Procs(g) => g.config(),
        }
    }

    fn stats(&self) -> Snapshot {
        match self {
            Gen::Threads(s) => s.stats(),
            Gen::Procs(g) => g.stats(),
        }
    }

    /// This generation as the metrics endpoint sees it.
    fn metrics(&self) -> crate::metrics::Gen {
        match self {
            Gen::Threads(s) => s.metrics_gen(),
            Gen::Procs(g) => g.metrics_gen(),
        }
    }

    /// SIGUSR1: reopen the log files (this process's; worker processes are told).
    fn reopen_logs(&self, first: Option<&Config>) {
        if let Some(started) = first {
            lifecycle::reopen_logs(self.config(), started);
        }
        if let Gen::Procs(g) = self {
            g.reopen_logs();
        }
    }

    fn announce(&self) {
        match self {
            Gen::Threads(s) => lifecycle::announce(s),
            Gen::Procs(g) => g.announce(),
        }
    }

    /// The listen addresses `cfg` asks for, with those this generation was also given
    /// (port 0 included) kept at the address they got.
    fn resolve(&self, cfg: &Config) -> Vec<SocketAddr> {
        let (given, got): (Vec<SocketAddr>, Vec<SocketAddr>) = match self {
            Gen::Threads(s) => (
                s.config().routing().listens.clone(),
                s.local_addrs().to_vec(),
            ),
            Gen::Procs(g) => (vec![g.config().listen], vec![g.local_addr()]),
        };
        let wanted = if cfg.process_mode {
            vec![cfg.listen]
        } else {
            cfg.routing().listens.clone()
        };
        wanted
            .iter()
            .map(|l| match given.iter().position(|g| g == l) {
                Some(i) => got[i],
                None => *l,
            })
            .collect()
    }

    /// Start the successor generation for `cfg`; returns it, running, and whether it
    /// accepts on this generation's very listeners.
    fn successor(&mut self, cfg: Config, args: &[OsString]) -> io::Result<(Gen, bool)> {
        match (&mut *self, cfg.process_mode) {
            (Gen::Threads(s), false) => {
                let next = s.successor(cfg)?;
                let shared = next.local_addrs() == s.local_addrs()
                    && next.config().workers == s.config().workers;
                Ok((Gen::Threads(next), shared))
            }
            (Gen::Procs(g), true) => {
                let (next, shared) = g.successor(&cfg, args)?;
                Ok((Gen::Procs(Box::new(next)), shared))
            }
            (Gen::Threads(_), true) => {
                let at = self.resolve(&cfg)[0];
                let next = Generation::start(&cfg, Some(at), args)?;
                Ok((Gen::Procs(Box::new(next)), false))
            }
            (Gen::Procs(_), false) => {
                let at = self.resolve(&cfg);
                Ok((Gen::Threads(server::start_at(cfg, &at)?), false))
            }
        }
    }

    /// Drain this generation after a reload: its tunnels stay until they end (or
    /// `--shutdown-timeout`). Returns once it accepts no more.
    fn retire(&mut self, shared: bool) {
        match self {
            Gen::Threads(s) => {
                // A thread successor on the same sockets marked them handed over already.
                s.retire(s.config().shutdown_timeout, false);
                s.wait_released(Duration::from_secs(2));
            }
            Gen::Procs(g) => g.retire(shared),
        }
    }

    /// A graceful stop, bounded by `bound`.
    fn graceful(&mut self, bound: Duration) {
        match self {
            Gen::Threads(s) => s.drain(Some(bound)),
            Gen::Procs(g) => g.graceful(),
        }
    }

    /// A fast stop.
    fn fast(&mut self) {
        match self {
            Gen::Threads(s) => s.halt(),
            Gen::Procs(g) => g.fast(),
        }
    }

    /// Restart the current generation's dead worker processes (unless stopping).
    fn reap(&mut self, current: bool, stopping: bool, args: &[OsString]) {
        if let Gen::Procs(g) = self {
            g.reap(current, stopping, args);
        }
    }

    fn finished(&self) -> bool {
        match self {
            Gen::Threads(s) => s.finished(),
            Gen::Procs(g) => g.finished(),
        }
    }

    /// A stop past its deadline: end what still runs. Whether anything had to be killed.
    fn kill_left(&mut self) -> bool {
        match self {
            // A thread worker bounds its own drain; past the deadline it is told to stop.
            Gen::Threads(s) => {
                let left = !s.finished();
                s.halt();
                left
            }
            Gen::Procs(g) => g.kill_left(),
        }
    }

    /// Release what the generation holds (it has finished, or is being stopped); the first
    /// error of a worker thread, if any.
    fn end(self) -> io::Result<()> {
        match self {
            Gen::Threads(mut s) => s.stop(),
            Gen::Procs(g) => {
                g.end();
                Ok(())
            }
        }
    }
}

fn note(msg: std::fmt::Arguments<'_>) {
    log::write(Level::Notice, Who::Process, None, msg);
}

/// SIGHUP: a successor for the re-read file, then the old generation drains. Returns the
/// old generation, or `None` (logged) when nothing was reloaded.
fn reload(cur: &mut Gen, args: &[OsString], started: &Config) -> Option<Gen> {
    let cfg = reread(args)?;
    lifecycle::warn_restart_only(started, &cfg);
    if let Some(w) = server::raise_nofile(&cfg) {
        eprintln!("ringway: {w}");
    }
    let (next, shared) = match cur.successor(cfg, args) {
        Ok(x) => x,
        Err(e) => {
            log::write(
                Level::Error,
                Who::Process,
                None,
                format_args!("reload failed: {e}; still serving the previous configuration"),
            );
            return None;
        }
    };
    let mut prev = std::mem::replace(cur, next);
    prev.retire(shared);
    let c = cur.config();
    println!(
        "{}",
        crate::budget::describe(c.workers, c.worker_connections)
    );
    cur.announce();
    note(format_args!(
        "reloaded: new clients get the new configuration; {} old worker(s) drain, their tunnels kept {}",
        prev.config().workers,
        match prev.config().shutdown_timeout {
            Some(d) => format!("for up to {}", fmt_duration(d)),
            None => "until they end".into(),
        }
    ));
    Some(prev)
}

/// Run `cfg` until stopped; returns the exit status. `set` holds the blocked signals this
/// thread waits on (SIGCHLD among them); `on_start` runs once the first generation's
/// workers are up (the pid file), and what it returns is kept until the end.
pub fn run<P>(cfg: Config, args: &[OsString], set: &SigSet, on_start: impl FnOnce() -> P) -> i32 {
    // What belongs to the process (error log, metrics listener, pid file) is set once, from
    // the first configuration: reloads compare with it, worker processes inherit its error log.
    crate::master::keep_error_log(&cfg);
    let started = cfg.clone();
    let mut cur = match Gen::first(cfg, args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ringway: error: {e}");
            return 1;
        }
    };
    let source = Source::new(cur.config().workers, cur.config().process_mode);
    let mut cur_id = source.add(cur.metrics());
    if let Err(e) = lifecycle::start_metrics(cur.config(), &source) {
        eprintln!("ringway: error: {e}");
        cur.fast();
        while !cur.finished() {
            cur.reap(true, true, args);
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = cur.end();
        return 1;
    }
    cur.announce();
    let _kept = on_start();
    let mut old: Vec<(Gen, GenId)> = Vec::new();
    let mut stopping: Option<Instant> = None;
    let mut code = 0;
    loop {
        let sig = sys::wait_signal(set.as_ref(), POLL).and_then(|s| Signal::try_from(s).ok());
        match sig {
            Some(Signal::SIGUSR1) => {
                cur.reopen_logs(Some(&started));
                for (g, _) in &old {
                    g.reopen_logs(None);
                }
            }
            Some(Signal::SIGUSR2) => eprint!("{}", cur.stats().render()),
            Some(Signal::SIGHUP) if stopping.is_some() => {
                note(format_args!("SIGHUP: stopping; not reloading"))
            }
            Some(Signal::SIGHUP) => {
                if let Some(prev) = reload(&mut cur, args, &started) {
                    let prev_id = std::mem::replace(&mut cur_id, source.add(cur.metrics()));
                    source.reloaded();
                    old.push((prev, prev_id));
                }
            }
            Some(sig @ (Signal::SIGQUIT | Signal::SIGTERM)) if stopping.is_none() => {
                let bound = cur.config().stop_timeout();
                note(format_args!(
                    "{sig}: graceful stop of {} worker(s): no new clients; requests finish; tunnels kept for up to {}",
                    cur.config().workers,
                    fmt_duration(bound)
                ));
                for g in std::iter::once(&mut cur).chain(old.iter_mut().map(|(g, _)| g)) {
                    g.graceful(bound);
                }
                // Closing hundreds of thousands of sockets takes the kernel a while.
                stopping = Some(Instant::now() + bound + Duration::from_secs(30));
            }
            Some(Signal::SIGINT) => {
                eprintln!("ringway: SIGINT: stopping");
                for g in std::iter::once(&mut cur).chain(old.iter_mut().map(|(g, _)| g)) {
                    g.fast();
                }
                let soon = Instant::now() + Duration::from_secs(30);
                stopping = Some(stopping.map_or(soon, |d| d.min(soon)));
            }
            // SIGCHLD (a worker process ended: reaped below), a second SIGQUIT/SIGTERM,
            // or the poll's timeout.
            _ => {}
        }
        let halt = stopping.is_some();
        cur.reap(true, halt, args);
        for (g, _) in &mut old {
            g.reap(false, halt, args);
        }
        let (ended, live): (Vec<_>, Vec<_>) = old.drain(..).partition(|(g, _)| g.finished());
        old = live;
        for (g, id) in ended {
            source.retire(id);
            if let Err(e) = g.end() {
                log::write(
                    Level::Alert,
                    Who::Process,
                    None,
                    format_args!("an old generation's worker ended with an error: {e}"),
                );
            }
        }
        let Some(deadline) = stopping else { continue };
        if cur.finished() && old.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for g in std::iter::once(&mut cur).chain(old.iter_mut().map(|(g, _)| g)) {
                if g.kill_left() {
                    code = 1;
                }
            }
            break;
        }
    }
    let snap = cur.stats();
    for (g, _) in old {
        let _ = g.end();
    }
    if let Err(e) = cur.end() {
        eprintln!("ringway: error: {e}");
        code = 1;
    }
    eprint!("{}", snap.render());
    code
}

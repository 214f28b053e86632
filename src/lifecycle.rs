//! Thread mode's signal loop: graceful and fast stops, and live reloads by generations.
//!
//! A reload (SIGHUP) re-reads the `-c` file with the same flags over it. A file that does
//! not validate is logged (file and line) and the running generation keeps serving. A
//! good one starts a new generation of workers with their own backend table and counters
//! (so no backend index, least-conn count or pooled connection of one generation is ever
//! read by another) — on the very same listening sockets when the listen addresses and
//! the worker count are unchanged, else on new SO_REUSEPORT listeners beside the old —
//! then drains the old generation: it stops accepting, finishes its exchanges with
//! `Connection: close`, and keeps its tunnels until they end (or `--shutdown-timeout`).
//! New clients reach the new configuration at once, and nobody is refused meanwhile.
//!
//! SIGQUIT and SIGTERM drain every generation, bounded by the stop timeout; SIGINT stops
//! at once. SIGUSR1 reopens the access and error logs (nginx's `reopen`, for logrotate);
//! SIGUSR2 prints the stats (the metrics endpoint has them too). With `--metrics`, the
//! metrics listener follows the generations: each reload adds one, each drained one
//! hands its counters to the running totals.

use crate::config::{from_args, AsFlag, Config};
use crate::log::{self, Level, Who};
use crate::server::Server;
use crate::sys;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::io;
use std::time::Duration;

/// How often the loop looks for drained generations.
const POLL: Duration = Duration::from_millis(100);

/// SIGUSR1 (nginx's `reopen`): open the error log and the access logs again (after
/// logrotate moved them), logging what was done.
pub fn reopen_logs(cfg: &Config) {
    let mut errs = crate::access_log::reopen();
    if let Err(e) = log::reopen() {
        errs.push(e);
    }
    for e in &errs {
        log::write(Level::Error, Who::Process, None, format_args!("{e}"));
    }
    let what = match (&cfg.error_log, &cfg.access_log) {
        (None, None) => {
            "no log file to reopen (the error log is stderr, the access log off)".to_string()
        }
        (e, a) => {
            let names: Vec<String> = [e, a]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            format!("reopened {}", names.join(" and "))
        }
    };
    note(format_args!("SIGUSR1: reopen: {what}"));
}

/// Start the metrics listener `cfg` asks for, if any, and say where it is. The error is
/// one line for a person.
pub fn start_metrics(
    cfg: &Config,
    source: &std::sync::Arc<crate::metrics::Source>,
) -> io::Result<()> {
    if let Some(addr) = cfg.metrics {
        let bound = crate::metrics::serve(addr, source.clone())?;
        println!("ringway: metrics on http://{bound}/metrics");
    }
    Ok(())
}

/// The lines a (re)started thread-mode generation prints under the budget line.
pub fn announce(server: &Server) {
    let c = server.config();
    if !c.upstream_bind.is_empty() {
        println!(
            "ringway: upstream connections bind {} source address(es) from {} (proxy_bind; IP_BIND_ADDRESS_NO_PORT)",
            c.upstream_bind.len(),
            c.upstream_bind[0]
        );
    }
    println!(
        "ringway: listening on {} with {} worker(s), tunnel {}, balance {}, at-limit {}, {} upstream(s)",
        server.local_addr(),
        c.workers,
        c.tunnel.as_flag(),
        c.balance.as_flag(),
        c.at_limit.as_flag(),
        c.upstreams.len()
    );
}

fn note(msg: std::fmt::Arguments<'_>) {
    log::write(Level::Notice, Who::Process, None, msg);
}

/// Re-read the configuration `args` give, for a reload. `None` (with the reason logged)
/// when there is nothing to apply.
pub fn reread(args: &[OsString], running: &Config) -> Option<Config> {
    let file = args
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config")
        .map(|w| w[1].to_string_lossy().into_owned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.to_str()?.strip_prefix("--config=").map(String::from))
        });
    let Some(file) = file else {
        note(format_args!(
            "SIGHUP: started without -c: there is no file to re-read (flags cannot change); nothing reloaded"
        ));
        return None;
    };
    note(format_args!("SIGHUP: reloading {file}"));
    let refuse = |why: &str| {
        log::write(
            Level::Error,
            Who::Process,
            None,
            format_args!("reload failed: {why}; still serving the previous configuration"),
        )
    };
    match from_args(args) {
        Err(e) => {
            refuse(&e);
            None
        }
        Ok((cfg, _)) if cfg.process_mode != running.process_mode => {
            refuse(&format!(
                "{file}: ringway_worker_mode changed: a reload cannot switch between threads and processes (restart ringway for that)"
            ));
            None
        }
        Ok((cfg, warnings)) => {
            for w in warnings {
                log::write(Level::Warn, Who::Process, None, format_args!("{w}"));
            }
            Some(cfg)
        }
    }
}

/// Run until stopped; returns the first error of a worker of the last generation.
pub fn run(first: Server, args: &[OsString], set: &SigSet) -> io::Result<()> {
    let source = crate::metrics::Source::new(first.config().workers, false);
    let mut cur_id = source.add(first.metrics_gen());
    start_metrics(first.config(), &source)?;
    let mut current = first;
    let mut old: Vec<(Server, crate::metrics::GenId)> = Vec::new();
    let mut stopping = false;
    loop {
        let sig = sys::wait_signal(set.as_ref(), POLL).and_then(|s| Signal::try_from(s).ok());
        old.retain_mut(|(s, id)| {
            let done = s.finished();
            if done {
                let _ = s.stop();
                source.retire(*id);
            }
            !done
        });
        match sig {
            None if stopping && current.finished() && old.is_empty() => break,
            None => {}
            Some(Signal::SIGUSR1) => reopen_logs(current.config()),
            Some(Signal::SIGUSR2) => eprint!("{}", current.stats().render()),
            Some(Signal::SIGHUP) if stopping => {
                note(format_args!("SIGHUP: stopping; not reloading"))
            }
            Some(Signal::SIGHUP) => {
                let Some(cfg) = reread(args, current.config()) else {
                    continue;
                };
                if let Some(w) = crate::server::raise_nofile(&cfg) {
                    eprintln!("ringway: {w}");
                }
                match current.successor(cfg) {
                    Ok(next) => {
                        let prev_id =
                            std::mem::replace(&mut cur_id, source.add(next.metrics_gen()));
                        source.reloaded();
                        let prev = std::mem::replace(&mut current, next);
                        let bound = prev.config().shutdown_timeout;
                        prev.drain(bound);
                        prev.wait_released(Duration::from_secs(2));
                        println!("{}", current.budget_line());
                        announce(&current);
                        note(format_args!(
                            "reloaded: new clients get the new configuration; {} old worker(s) drain, their tunnels kept {}",
                            prev.config().workers,
                            match bound {
                                Some(d) => format!("for up to {}", crate::config::fmt_duration(d)),
                                None => "until they end".into(),
                            }
                        ));
                        old.push((prev, prev_id));
                    }
                    Err(e) => log::write(
                        Level::Error,
                        Who::Process,
                        None,
                        format_args!(
                            "reload failed: {e}; still serving the previous configuration"
                        ),
                    ),
                }
            }
            Some(sig @ (Signal::SIGQUIT | Signal::SIGTERM)) if !stopping => {
                let bound = current.config().stop_timeout();
                note(format_args!(
                    "{sig}: graceful stop: no new clients; requests finish; tunnels kept for up to {}",
                    crate::config::fmt_duration(bound)
                ));
                current.drain(Some(bound));
                for (s, _) in &old {
                    s.drain(Some(bound));
                }
                stopping = true;
            }
            Some(Signal::SIGQUIT | Signal::SIGTERM) => {}
            Some(sig) => {
                eprintln!("ringway: {sig}: stopping");
                break;
            }
        }
    }
    for (s, _) in &mut old {
        let _ = s.stop();
    }
    let snap = current.stats();
    let res = current.stop();
    eprint!("{}", snap.render());
    res
}

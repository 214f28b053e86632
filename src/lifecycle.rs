//! What a reload reads and what a generation says: re-reading the configuration for
//! SIGHUP, and the lines a started thread-mode generation prints. The loop that runs
//! generations and turns signals into stops and reloads is `supervise.rs`; the logs'
//! reopen and the metrics listener it starts are here.
//!
//! A reload (SIGHUP) re-reads the `-c` file with the same flags over it. A file that does
//! not validate is logged (file and line) and the running generation keeps serving. A
//! good one starts a new generation of workers with their own backend table and counters
//! (so no backend index, least-conn count or pooled connection of one generation is ever
//! read by another); the old generation drains: it stops accepting, finishes its exchanges
//! with `Connection: close`, and keeps its tunnels until they end (or
//! `--shutdown-timeout`). New clients reach the new configuration at once, and nobody is
//! refused meanwhile — also when the file switches between threads and processes.
//!
//! Some settings belong to the process and are set once at its start: the metrics
//! listener, the error log and its level, the pid file. A reload keeps them and logs a
//! `[warn]` naming those the file changed ([`restart_only`]).
//!
//! SIGUSR1 reopens the access and error logs (nginx's `reopen`, for logrotate); SIGUSR2
//! prints the stats (the metrics endpoint has them too). With `--metrics`, the metrics
//! listener follows the generations: each reload adds one, each drained one hands its
//! counters to the running totals.

use crate::config::{from_args, AsFlag, Config};
use crate::log::{self, Level, Who};
use crate::server::Server;
use std::ffi::OsString;
use std::io;

/// SIGUSR1 (nginx's `reopen`): open the error log and the access logs again (after
/// logrotate moved them), logging what was done. `cfg` is the running generation's; the
/// error log is the one the process `started` with (a reload does not change it).
pub fn reopen_logs(cfg: &Config, started: &Config) {
    let mut errs = crate::access_log::reopen();
    if let Err(e) = log::reopen() {
        errs.push(e);
    }
    for e in &errs {
        log::write(Level::Error, Who::Process, None, format_args!("{e}"));
    }
    let what = match (&started.error_log, &cfg.access_log) {
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

/// The settings of `new` that a reload cannot apply, changed from those the process
/// `started` with: the metrics listener, the error log (file and level) and the pid file
/// belong to the process and are set once, at its start. Their names as the file spells
/// them.
pub fn restart_only(started: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if started.metrics != new.metrics {
        changed.push("ringway_metrics");
    }
    if started.error_log != new.error_log {
        changed.push("error_log");
    }
    if started.error_level != new.error_level {
        changed.push("error_log level");
    }
    if started.pid_file != new.pid_file {
        changed.push("pid");
    }
    changed
}

/// Log a `[warn]` line naming what [`restart_only`] finds, if anything.
pub fn warn_restart_only(started: &Config, new: &Config) {
    let changed = restart_only(started, new);
    if !changed.is_empty() {
        log::write(
            Level::Warn,
            Who::Process,
            None,
            format_args!(
                "reload: {} changed but not applied: they need a restart; still using the values ringway started with",
                changed.join(", ")
            ),
        );
    }
}

/// Re-read the configuration `args` give, for a reload. `None` (with the reason logged)
/// when there is nothing to apply.
pub fn reread(args: &[OsString]) -> Option<Config> {
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
        Ok((cfg, warnings)) => {
            for w in warnings {
                log::write(Level::Warn, Who::Process, None, format_args!("{w}"));
            }
            Some(cfg)
        }
    }
}

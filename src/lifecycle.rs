//! What a reload reads and what a generation says: re-reading the configuration for
//! SIGHUP, and the lines a started thread-mode generation prints. The loop that runs
//! generations and turns signals into stops and reloads is `supervise.rs`.
//!
//! A reload (SIGHUP) re-reads the `-c` file with the same flags over it. A file that does
//! not validate is logged (file and line) and the running generation keeps serving. A
//! good one starts a new generation of workers with their own backend table and counters
//! (so no backend index, least-conn count or pooled connection of one generation is ever
//! read by another); the old generation drains: it stops accepting, finishes its exchanges
//! with `Connection: close`, and keeps its tunnels until they end (or
//! `--shutdown-timeout`). New clients reach the new configuration at once, and nobody is
//! refused meanwhile — also when the file switches between threads and processes.

use crate::config::{from_args, AsFlag, Config};
use crate::log::{self, Level, Who};
use crate::server::Server;
use std::ffi::OsString;

/// What SIGUSR1 (nginx's `reopen`) logs: there is no log file to reopen.
pub const REOPEN_NOTE: &str = "SIGUSR1: reopen: ringway logs to stderr, no file to reopen";

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

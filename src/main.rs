//! The `ringway` command: flags → config, budget line, workers, signals, exit codes.
//!
//! Exit status: 0 after SIGINT/SIGTERM, 1 when the proxy cannot start (message says why),
//! 2 for bad flags.

use clap::Parser;
use mimalloc::MiMalloc;
use nix::sys::signal::{SigSet, Signal};
use ringway::config::{Cli, Config};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let cli = Cli::parse();
    let cfg = match Config::try_from(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringway: error: {e}");
            std::process::exit(2);
        }
    };
    // Signals are taken synchronously by this thread; workers inherit the blocked mask.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR1);
    if let Err(e) = set.thread_block() {
        eprintln!("ringway: error: cannot block signals: {e}");
        std::process::exit(1);
    }
    if let Some(w) = ringway::server::raise_nofile(&cfg) {
        eprintln!("ringway: {w}");
    }
    if let Some(max) = ringway::listener::somaxconn() {
        if max < cfg.backlog {
            eprintln!(
                "ringway: note: listen backlog {} is capped by net.core.somaxconn = {max} (tuning/apply.sh raises it)",
                cfg.backlog
            );
        }
    }
    println!(
        "{}",
        ringway::budget::describe(cfg.workers, cfg.worker_connections)
    );
    let mut server = match ringway::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: error: {e}");
            std::process::exit(1);
        }
    };
    let c = server.config();
    println!(
        "ringway: listening on {} with {} worker(s), tunnel {:?}, balance {:?}, at-limit {:?}, {} upstream(s)",
        server.local_addr(),
        c.workers,
        c.tunnel,
        c.balance,
        c.at_limit,
        c.upstreams.len()
    );
    loop {
        match set.wait() {
            Ok(Signal::SIGUSR1) => eprint!("{}", server.stats().render()),
            Ok(sig) => {
                eprintln!("ringway: {sig}: stopping");
                break;
            }
            Err(e) => {
                eprintln!("ringway: sigwait: {e}");
                break;
            }
        }
    }
    let snap = server.stats();
    let res = server.stop();
    eprint!("{snap}", snap = snap.render());
    if let Err(e) = res {
        eprintln!("ringway: error: {e}");
        std::process::exit(1);
    }
}

//! The `ringway` command: flags → config, budget line, workers, signals, exit codes.
//!
//! Exit status: 0 after a stop (SIGQUIT/SIGTERM graceful, SIGINT fast), 1 when the proxy
//! cannot start (message says why), 2 for bad flags (one line and a pointer to `--help`).
//! `explain`: 0 when the tunnels fit as configured, 1 when they do not. SIGHUP reloads
//! (`lifecycle.rs`, `master.rs`); `-s SIGNAL` signals a running ringway (`pidfile.rs`).

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use mimalloc::MiMalloc;
use nix::sys::signal::{SigSet, Signal};
use ringway::config::{Cli, Config};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// What bare `ringway` (or one without a backend) says.
const NOTHING_TO_PROXY: &str = "error: nothing to proxy: give --upstream HOST:PORT (e.g. --upstream 127.0.0.1:9001) or -c FILE (an nginx.conf); see ringway --help";

/// A clap error as one line for a person (what is wrong, clap's tips and possible values
/// on the same line), then where to read more: never clap's usage block.
fn one_line(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::MissingRequiredArgument {
        return NOTHING_TO_PROXY.to_string();
    }
    let text = e.render().to_string();
    let mut line = String::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        // Tips about `--` concern positional arguments, which ringway has none of.
        if l.is_empty() || l.contains("to pass '") {
            continue;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        if l.starts_with("tip:") {
            line.push_str(&format!("({l})"));
        } else {
            line.push_str(l);
        }
    }
    format!("{line}; see ringway --help")
}

fn main() {
    // SIGHUP (a closed terminal, a `systemctl kill -s HUP`, a reload habit) must never stop
    // the proxy: block it before anything else so it can only be waited for, and logged.
    let mut hup = SigSet::empty();
    hup.add(Signal::SIGHUP);
    let _ = hup.thread_block();
    // `ringway explain [flags]`: the same flags as a run, plus --tunnels N.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `ringway top --metrics URL`: the live terminal view (src/top.rs).
    if args.get(1).is_some_and(|a| a == "top") {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(ringway::top::run(&rest));
    }
    let explain_only = args.get(1).is_some_and(|a| a == "explain");
    if explain_only {
        args.remove(1);
    }
    if args.len() <= 1 {
        eprintln!("{NOTHING_TO_PROXY}");
        std::process::exit(2);
    }
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        // --help and --version print and exit 0, as clap does.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line(&e));
            std::process::exit(2);
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| {
        eprintln!("{}", one_line(&e));
        std::process::exit(2);
    });
    if let Some(cmd) = cli.signal {
        signal_running(cmd, cli, &matches);
    }
    let test_only = cli.test_config;
    let tunnels = cli.tunnels;
    let instances = cli.instances.unwrap_or(1);
    let file = cli.config.clone();
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let cfg: Config = match ringway::config::from_cli(cli, &given) {
        Ok((c, warnings)) => {
            // Worker processes read the same file: only the master (or a thread-mode
            // process) says what is wrong with it.
            if std::env::var_os(ringway::master::WORKER_ENV).is_none() {
                for w in warnings {
                    eprintln!("ringway: warning: {w}");
                }
            }
            c
        }
        Err(e) => {
            eprintln!("ringway: error: {e}");
            std::process::exit(2);
        }
    };
    let target = tunnels.unwrap_or(
        instances
            * (cfg.workers * ringway::budget::clients_per_worker(cfg.worker_connections)) as u64,
    );
    if explain_only || test_only {
        println!(
            "{}",
            ringway::budget::describe(cfg.workers, cfg.worker_connections)
        );
        let report = ringway::explain::explain_cluster(
            &cfg,
            &ringway::explain::Env::read(),
            target,
            instances,
        );
        print!("{}", report.render());
        if explain_only {
            // 1: the tunnels do not fit as configured (the plan above says what would).
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::process::exit(if report.fits() { 0 } else { 1 });
        }
    }
    if test_only {
        for line in ringway::config::settings(&cfg) {
            println!("{line}");
        }
        match file {
            Some(f) => println!(
                "ringway: the configuration file {} test is successful",
                f.display()
            ),
            None => println!("ringway: the configuration test is successful"),
        }
        return;
    }
    // Signals are taken synchronously by this thread; workers inherit the blocked mask.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGQUIT);
    set.add(Signal::SIGUSR2);
    set.add(Signal::SIGCHLD);
    if let Err(e) = set.thread_block() {
        eprintln!("ringway: error: cannot block signals: {e}");
        std::process::exit(1);
    }
    open_logs(&cfg);
    if let Some(w) = ringway::server::raise_nofile(&cfg) {
        if std::env::var_os(ringway::master::WORKER_ENV).is_none() {
            eprintln!("ringway: {w}");
        }
    }
    // A worker process of a process-mode master: run one worker on inherited descriptors.
    if let Some(setup) = ringway::master::child_setup_from_env(&cfg) {
        run_worker_process(cfg, setup, set);
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
    for line in ringway::config::tls_lines(&cfg) {
        println!("{line}");
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let pid_path = cfg.pid_file.clone();
    let code = ringway::supervise::run(cfg, &args, &set, || write_pid(&pid_path));
    std::process::exit(code);
}

/// The error log (stderr moves to its file) and the access log (opened once, shared by
/// every worker of this process); a file that cannot be opened ends the start (exit 1).
fn open_logs(cfg: &Config) {
    // A worker process takes its master's error log (a reload does not change it).
    let (level, error_log) = ringway::master::error_log_in_force(cfg);
    ringway::log::set_level(level);
    let opened = cfg
        .access_log
        .as_ref()
        .map_or(Ok(()), |p| ringway::access_log::open(p).map(drop))
        .and_then(|()| error_log.map_or(Ok(()), |p| ringway::log::to_file(&p)));
    if let Err(e) = opened {
        eprintln!("ringway: error: {e}");
        std::process::exit(1);
    }
}

/// Write the pid file, if one is configured; a failure to write it ends the start (exit 1).
fn write_pid(path: &Option<std::path::PathBuf>) -> Option<ringway::pidfile::PidFile> {
    let path = path.as_ref()?;
    match ringway::pidfile::PidFile::write(path) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("ringway: error: {e}");
            std::process::exit(1);
        }
    }
}

/// `ringway -s SIGNAL`: the pid file is `--pid-file`, or the `pid` of the `-c` file.
fn signal_running(cmd: ringway::config::SignalCmd, cli: Cli, matches: &clap::ArgMatches) -> ! {
    let path = match (&cli.pid_file, &cli.config) {
        (Some(p), _) => p.clone(),
        (None, Some(_)) => {
            let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
            match ringway::config::from_cli(cli.clone(), &given) {
                Ok((c, _)) => match c.pid_file {
                    Some(p) => p,
                    None => {
                        eprintln!("ringway: error: -s needs the pid file: the configuration file has no `pid` directive; give --pid-file PATH");
                        std::process::exit(2);
                    }
                },
                Err(e) => {
                    eprintln!("ringway: error: {e}");
                    std::process::exit(2);
                }
            }
        }
        (None, None) => {
            eprintln!("ringway: error: -s needs the pid file: give --pid-file PATH (or -c FILE with a `pid` directive); see ringway --help");
            std::process::exit(2);
        }
    };
    match ringway::pidfile::send(cmd, &path) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("ringway: error: {e}");
            std::process::exit(1);
        }
    }
}

/// Process mode, worker side: exit with the master, stop on SIGTERM.
fn run_worker_process(
    cfg: Config,
    setup: std::io::Result<ringway::server::ChildSetup>,
    set: SigSet,
) -> ! {
    // An orphan stops at once, as before graceful stops existed.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGINT);
    let master_alive = std::env::var("RINGWAY_MASTER_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|p| nix::unistd::getppid().as_raw() == p);
    if !master_alive {
        eprintln!("ringway: worker: the master is gone; exiting");
        std::process::exit(1);
    }
    let master_fp = std::env::var(ringway::master::FINGERPRINT_ENV).ok();
    if master_fp.is_some_and(|fp| fp != cfg.fingerprint().to_string()) {
        eprintln!("ringway: worker: the configuration file changed since the master loaded it; not starting beside workers of the old one (reload to apply it)");
        std::process::exit(ringway::master::EXIT_CONFIG_CHANGED);
    }
    let setup = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: worker: error: {e}");
            std::process::exit(1);
        }
    };
    let index = setup.index;
    let mut server = match ringway::server::start_child(cfg, setup) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: worker {index}: error: {e}");
            std::process::exit(1);
        }
    };
    // SIGUSR1 (reopen the logs) comes from the master; SIGHUP is the master's to act on (a hangup reaches
    // every process of the group). SIGQUIT/SIGTERM drain (bounded by the stop timeout);
    // SIGUSR2 is the master retiring this worker after a reload, a drain bounded only by
    // --shutdown-timeout if given: plain when a successor keeps its listener, with the
    // value RETIRE_TAKE_BACKLOG when the worker must take its backlog first (new
    // listeners). SIGINT stops at once.
    let poll = std::time::Duration::from_millis(100);
    loop {
        let (sig, value) = match ringway::sys::wait_signal_value(set.as_ref(), poll) {
            Some((s, v)) => (Signal::try_from(s).ok(), v),
            None => (None, 0),
        };
        match sig {
            Some(Signal::SIGQUIT | Signal::SIGTERM) => {
                server.drain(Some(server.config().stop_timeout()))
            }
            Some(Signal::SIGUSR2) => server.retire(
                server.config().shutdown_timeout,
                value != ringway::master::RETIRE_TAKE_BACKLOG,
            ),
            // The master's reopen, forwarded: this process's descriptors of the logs.
            Some(Signal::SIGUSR1) => {
                let _ = ringway::log::reopen();
                for e in ringway::access_log::reopen() {
                    eprintln!("ringway: worker {index}: {e}");
                }
            }
            Some(Signal::SIGINT) => break,
            _ => {}
        }
        if server.finished() {
            break;
        }
    }
    match server.stop() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("ringway: worker {index}: error: {e}");
            std::process::exit(1);
        }
    }
}

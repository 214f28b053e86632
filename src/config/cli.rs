//! The clap [`Cli`] (every flag, its default and its checks) and flags → [`Config`]
//! ([`from_cli`]), with an optional nginx.conf underneath.

use super::{
    from_nginx, parse_addr, parse_duration, parse_hash_key, parse_ip_list, parse_set_header,
    AtLimit, Balance, Config, HashKey, SetHeader, SignalCmd, TunnelMode, WorkerMode,
};
use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// The usage lines `--help` starts with: the three ways in, and `explain`.
const USAGE: &str = "\
ringway --upstream HOST:PORT[,HOST:PORT...] [OPTIONS]   proxy to these backends
       ringway -c FILE [OPTIONS]                         read an nginx.conf; flags override it
       ringway -t [-c FILE] [OPTIONS]                    test the configuration and exit
       ringway explain [-c FILE] [OPTIONS] [--tunnels N] can it hold N tunnels? (below)
       ringway -s reload|quit|stop|reopen [-c FILE | --pid-file PATH]  signal a running ringway
       ringway top --metrics http://HOST:PORT/metrics    live view of one started with --metrics";

/// What `--help` says after the options: the `explain` command, exit statuses, signals.
const AFTER_HELP: &str = "\
Commands:
  explain  Every limit between this configuration and --tunnels N (default: what the budget
           admits): slots, RLIMIT_NOFILE, fs.nr_open, fs.file-max, upstream ports, listen
           backlog, memory; which binds first; and when N does not fit, one plan: the
           smallest set of changes that reaches N. Takes the same flags as a run.
           Exit status: 0 when N fits as configured, 1 when it does not, 2 for bad flags.
           --instances K: K copies of this configuration behind an L4 balancer, each on a
           machine like this one, share N; the limits are one instance's, for N / K.
  top      A live terminal view of a ringway started with --metrics H:P, refreshed each
           second: budget per worker, backends, rates, errors (q quits).

Examples:
  ringway --listen 127.0.0.1:8080 --upstream 127.0.0.1:9001,127.0.0.1:9002
  ringway -c /usr/local/etc/ringway/nginx.conf
  ringway -t -c scripts/nginx.conf
  ringway explain -c scripts/nginx.conf --tunnels 100000

Exit status: 0 after a stop; 1 when it cannot start (port taken, no io_uring);
2 for bad flags or a bad configuration (one line saying what is wrong).
Signals: SIGQUIT/SIGTERM stop gracefully (no new clients; requests finish; tunnels stay
until they end or --shutdown-timeout); SIGINT stops at once; SIGHUP re-reads the -c file
and applies it without dropping a client (a bad file is logged and the old one kept);
SIGUSR1 reopens the log files (nginx's reopen, for logrotate); SIGUSR2 prints per-worker
and per-backend stats (--metrics serves them as Prometheus metrics). `-s reload|quit|stop|
reopen` sends SIGHUP|SIGQUIT|SIGINT|SIGUSR1 to the pid in the pid file.";

/// ringway: a thread-per-core io_uring WebSocket/HTTP reverse proxy with an explicit,
/// nginx-identical connection budget.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringway",
    version,
    about,
    long_about = None,
    override_usage = USAGE,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Read this nginx.conf (the subset the WebSocket-behind-nginx setup uses); flags given
    /// on the command line override what it says. Without -c, --upstream is required.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Test the configuration, print the budget arithmetic, and exit (like `nginx -t`).
    #[arg(short = 't', long = "test-config")]
    pub test_config: bool,

    /// Address to listen on (one SO_REUSEPORT listener per worker).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Backend address; repeat the flag or give a comma-separated list.
    #[arg(long = "upstream", value_delimiter = ',', value_parser = parse_addr, required_unless_present_any = ["config", "signal"])]
    pub upstreams: Vec<SocketAddr>,

    /// Number of workers (threads), like nginx's worker_processes. Default: number of CPUs.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_processes: Option<u32>,

    /// Slots per worker, like nginx's worker_connections: every descriptor takes one.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(4..=10_000_000))]
    pub worker_connections: u32,

    /// Balancing policy.
    #[arg(long, value_enum, default_value = "round-robin")]
    pub balance: Balance,

    /// Tunnel relay for upgraded connections: auto (copy for small messages, splice for
    /// bulk, per direction), splice, or copy.
    #[arg(long, value_enum, default_value = "auto")]
    pub tunnel: TunnelMode,

    /// Answer when a worker's budget is full.
    #[arg(long, value_enum, default_value = "503")]
    pub at_limit: AtLimit,

    /// Descriptors kept free (outside the budget) for 503 answers in flight: each holds
    /// its accepted socket only until its linked close. No longer a cap: every client past
    /// the limit gets its 503.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub reserve_503: u32,

    /// Listen backlog per worker (capped by net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    pub backlog: u32,

    /// Pin each client to a backend with this cookie (set on the first response, honoured
    /// afterwards; re-set when its backend is down). Works with any --balance.
    #[arg(long, value_name = "NAME")]
    pub sticky_cookie: Option<String>,

    /// Key of `--balance hash`: remote_addr, request_uri, http_NAME (a header) or
    /// cookie_NAME, as nginx's variables (a leading `$` is accepted).
    #[arg(long, default_value = "remote_addr", value_parser = parse_hash_key)]
    pub hash_key: HashKey,

    /// Largest request head accepted, in bytes; larger gets 431.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
    pub max_head: u32,

    /// Seconds to receive a whole request head (nginx client_header_timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub head_timeout: Duration,

    /// Seconds to connect to a backend before trying the next one (nginx proxy_connect_timeout).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Backend read timeout (nginx proxy_read_timeout): once the whole request is with the
    /// backend, its response head must arrive within it (else 504); after the head, the
    /// longest wait for the next piece of the response body, or for the client to take the
    /// last one (then the connection is closed). With -c, the file's proxy_read_timeout also
    /// closes idle tunnels, as nginx does.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Seconds between two reads of a request body before 408 (nginx client_body_timeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Seconds a kept-alive client connection may idle between requests (nginx
    /// keepalive_timeout); 0 closes the client connection after every response.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// Idle upstream connections each worker keeps for reuse (nginx `keepalive N` in the
    /// upstream block); each takes one budget slot and is closed first when slots run out.
    /// 0 closes upstream connections after every response.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub keepalive: u32,

    /// Seconds an idle pooled upstream connection is kept (nginx keepalive_timeout in the
    /// upstream block).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_idle_timeout: Duration,

    /// Set a header on every forwarded request, as nginx's proxy_set_header:
    /// `--set-header 'X-Forwarded-Proto: https'`, with nginx variables ($remote_addr,
    /// $proxy_add_x_forwarded_for, $scheme, $host, $request_uri, $http_NAME). An empty
    /// value removes the header. Default: X-Forwarded-For, X-Real-IP and X-Forwarded-Proto.
    #[arg(long = "set-header", value_name = "NAME: VALUE", value_parser = parse_set_header)]
    pub set_headers: Vec<SetHeader>,

    /// Close a tunnel idle in both directions for this long (default: never).
    #[arg(long, value_parser = parse_duration)]
    pub tunnel_idle_timeout: Option<Duration>,

    /// Do not pin worker threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,

    /// Local source addresses for upstream connections (nginx proxy_bind), as a range
    /// `127.0.0.2-127.0.0.40` or a comma list; `auto` (default) adds loopback sources only
    /// when one address's ephemeral ports cannot carry the budget; `none` disables.
    #[arg(long, default_value = "auto")]
    pub upstream_bind: String,

    /// Run workers as threads of one process (default) or as processes under a master,
    /// like nginx's worker_processes: each process gets its own descriptor table, so the
    /// per-process fd limit no longer caps the whole proxy.
    #[arg(long, value_enum, default_value = "thread")]
    pub worker_mode: WorkerMode,

    /// Send a signal to the running ringway named by the pid file, as nginx's -s: reload
    /// (SIGHUP), quit (SIGQUIT, graceful), stop (SIGINT, fast), reopen (SIGUSR1: the logs).
    #[arg(short = 's', long = "signal", value_enum, value_name = "SIGNAL")]
    pub signal: Option<SignalCmd>,

    /// Write the master's pid here at start and remove it at exit (nginx's `pid`); `-s`
    /// reads it.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<std::path::PathBuf>,

    /// Bound of a graceful stop (SIGQUIT, SIGTERM): tunnels still open after it are closed
    /// (nginx's worker_shutdown_timeout). Also bounds an old generation's drain after a
    /// reload. Default: 30s for a stop; a reload never cuts a tunnel.
    #[arg(long, value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Forward request headers whose names contain `_` (nginx's `underscores_in_headers
    /// on`). By default they are dropped and logged at info: a CGI/WSGI backend reads
    /// `X_Real_IP` as `X-Real-IP`, which would let a client spoof what ringway sets.
    #[arg(long)]
    pub underscores_in_headers: bool,

    /// Active health checks: `GET PATH` to every backend every --health-check-interval,
    /// from one place (a thread; the master in process mode). A backend that fails
    /// --health-check-fails checks in a row gets no new clients (its tunnels are kept)
    /// until it passes --health-check-passes in a row. Off by default.
    #[arg(long, value_name = "PATH")]
    pub health_check: Option<String>,

    /// Time between two health checks of a backend.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub health_check_interval: Duration,

    /// Failed health checks in a row that mark a backend down.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub health_check_fails: u32,

    /// Passed health checks in a row that mark it up again.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub health_check_passes: u32,

    /// Health-check by a full WebSocket upgrade handshake (a 101 passes, then the
    /// WebSocket is closed), for backends that only speak WebSocket.
    #[arg(long)]
    pub health_check_upgrade: bool,
    /// Speak TLS on --listen with this certificate (PEM: the leaf, then its chain); give
    /// --tls-key with it. Repeat the pair for several names (SNI chooses by the names in
    /// each certificate; the first pair is the default). nginx.conf: `listen ... ssl;`
    /// with `ssl_certificate` / `ssl_certificate_key`.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Vec<std::path::PathBuf>,

    /// The private key (PEM) of the --tls-cert given in the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<std::path::PathBuf>,

    /// Serve `GET /metrics` (Prometheus text format) on this address, from a listener
    /// thread of its own (nginx.conf: `ringway_metrics ADDR;`). Default: off.
    #[arg(long, value_name = "H:P", value_parser = parse_addr)]
    pub metrics: Option<SocketAddr>,

    /// Write the access log here (nginx's `access_log PATH`): a line per HTTP request and
    /// per finished tunnel; `off` (the default) writes none.
    #[arg(long, value_name = "PATH|off")]
    pub access_log: Option<String>,

    /// Access log format: combined (nginx's, plus the upstream fields) or json.
    #[arg(long, value_name = "FORMAT", value_parser = crate::access_log::Format::parse)]
    pub access_log_format: Option<crate::access_log::Format>,

    /// Write the error log here instead of stderr (nginx's `error_log PATH`); `stderr`
    /// keeps stderr.
    #[arg(long, value_name = "PATH")]
    pub error_log: Option<String>,

    /// Lowest level written: debug, info, notice, warn, error, crit, alert, emerg
    /// (default: error with an error log file, as nginx; every line on stderr).
    #[arg(long, value_name = "LEVEL", value_parser = crate::log::Level::parse)]
    pub error_log_level: Option<crate::log::Level>,

    /// For `explain` and `-t`: the number of tunnels to check the limits against
    /// (default: what the budget admits). `explain` exits 1 when they do not fit as
    /// configured.
    #[arg(long)]
    pub tunnels: Option<u64>,

    /// For `explain`: instances of this configuration behind an L4 balancer, each on a
    /// machine like this one, sharing --tunnels (default 1; --tunnels then defaults to
    /// instances × what one budget admits).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub instances: Option<u64>,
}

impl TryFrom<Cli> for Config {
    type Error = String;
    /// Flags alone (no `-c`): every value comes from the flags or their defaults.
    fn try_from(cli: Cli) -> Result<Config, String> {
        from_cli(cli, &|_| true).map(|(c, _)| c)
    }
}

/// Build the configuration from parsed flags. `given(id)` says whether the flag `id` was
/// given on the command line (then it overrides the config file). Returns the config and
/// the warnings the config file produced.
pub fn from_cli(cli: Cli, given: &dyn Fn(&str) -> bool) -> Result<(Config, Vec<String>), String> {
    let mut warnings = Vec::new();
    let mut cfg = match &cli.config {
        Some(path) => {
            let conf = crate::nginx_conf::parse_file(path).map_err(|e| e.to_string())?;
            let (c, w) = from_nginx(&conf, &path.display().to_string())?;
            warnings = w;
            c
        }
        None => Config::new(cli.listen, cli.upstreams.clone()),
    };
    let from_file = cli.config.is_some();
    if cfg.routing.is_some() {
        // The file routes: these settings belong to its servers, locations and upstreams,
        // and a flag cannot say which one it means.
        let per_route = [
            "listen",
            "upstreams",
            "balance",
            "sticky_cookie",
            "hash_key",
            "connect_timeout",
            "read_timeout",
            "tunnel_idle_timeout",
            "body_timeout",
            "keepalive_timeout",
            "keepalive",
            "upstream_idle_timeout",
            "set_headers",
        ];
        if let Some(flag) = per_route.iter().find(|id| given(id)) {
            return Err(format!(
                "--{} cannot be combined with a configuration file that routes (several servers or locations): set it in the file, per server, location or upstream",
                flag.replace('_', "-").replace("upstreams", "upstream").replace("set-headers", "set-header")
            ));
        }
    }
    let take = |id: &str| !from_file || given(id);
    if take("listen") {
        cfg.listen = cli.listen;
    }
    if take("upstreams") && !cli.upstreams.is_empty() {
        cfg.upstreams = cli.upstreams;
        // The file's server parameters named other servers.
        cfg.servers.clear();
    }
    if let Some(n) = cli.worker_processes {
        cfg.workers = n as usize;
    } else if !from_file {
        cfg.workers = crate::sys::online_cpus();
    }
    if take("worker_connections") {
        cfg.worker_connections = cli.worker_connections as usize;
    }
    if take("balance") {
        cfg.balance = cli.balance;
    }
    if take("sticky_cookie") && cli.sticky_cookie.is_some() {
        cfg.sticky_cookie = cli.sticky_cookie;
    }
    if take("hash_key") {
        cfg.hash_key = cli.hash_key;
    }
    cfg.tunnel = cli.tunnel;
    cfg.at_limit = cli.at_limit;
    cfg.reserve_503 = cli.reserve_503 as usize;
    if take("backlog") {
        cfg.backlog = cli.backlog;
    }
    cfg.max_head = cli.max_head as usize;
    if take("head_timeout") {
        cfg.head_timeout = cli.head_timeout;
    }
    if take("connect_timeout") {
        cfg.connect_timeout = cli.connect_timeout;
    }
    if take("read_timeout") {
        cfg.read_timeout = cli.read_timeout;
    }
    if take("tunnel_idle_timeout") {
        cfg.tunnel_idle_timeout = cli.tunnel_idle_timeout;
    }
    if take("body_timeout") {
        cfg.body_timeout = cli.body_timeout;
    }
    if take("keepalive_timeout") {
        cfg.keepalive_timeout = cli.keepalive_timeout;
    }
    if take("keepalive") {
        cfg.keepalive = cli.keepalive as usize;
    }
    if take("upstream_idle_timeout") {
        cfg.upstream_idle_timeout = cli.upstream_idle_timeout;
    }
    // --set-header adds to (or, by name, replaces) what the defaults or the file set.
    // An empty value stays as a rule: it removes the client's header of that name.
    for h in cli.set_headers {
        cfg.set_headers
            .retain(|o| !o.name.eq_ignore_ascii_case(&h.name));
        cfg.set_headers.push(h);
    }
    cfg.pin = !cli.no_pin;
    if take("worker_mode") {
        cfg.process_mode = cli.worker_mode == WorkerMode::Process;
    }
    if cli.pid_file.is_some() {
        cfg.pid_file = cli.pid_file;
    }
    if cli.shutdown_timeout.is_some() {
        cfg.shutdown_timeout = cli.shutdown_timeout;
    }
    if let Some(path) = &cli.health_check {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(format!(
                "--health-check '{path}': give a request path starting with /, e.g. --health-check /health"
            ));
        }
        if cfg.routing.is_some() {
            return Err("--health-check cannot be combined with a configuration file that routes: write `health_check uri=PATH;` in its upstream blocks".into());
        }
        cfg.health_check = Some(super::HealthCheck {
            path: path.clone(),
            interval: cli.health_check_interval.max(Duration::from_millis(10)),
            fails: cli.health_check_fails,
            passes: cli.health_check_passes,
            upgrade: cli.health_check_upgrade,
            timeout: cli
                .health_check_interval
                .clamp(Duration::from_millis(10), Duration::from_secs(2)),
        });
    }
    if cli.underscores_in_headers {
        cfg.underscores_in_headers = true;
        if let Some(r) = cfg.routing.as_mut() {
            for route in &mut std::sync::Arc::make_mut(r).routes {
                route.underscores_in_headers = true;
            }
        }
    }
    if cli.metrics.is_some() {
        cfg.metrics = cli.metrics;
    }
    match cli.access_log.as_deref() {
        Some("off") => cfg.access_log = None,
        Some(p) => cfg.access_log = Some(p.into()),
        None => {}
    }
    if let Some(f) = cli.access_log_format {
        cfg.access_format = f;
    }
    match cli.error_log.as_deref() {
        Some("stderr") => {
            cfg.error_log = None;
            cfg.error_level = crate::log::Level::Debug;
        }
        Some(p) => {
            cfg.error_log = Some(p.into());
            cfg.error_level = crate::log::Level::Error;
        }
        None => {}
    }
    if let Some(l) = cli.error_log_level {
        cfg.error_level = l;
    }
    cfg.upstream_bind = match cli.upstream_bind.trim() {
        "none" => Vec::new(),
        "auto" => auto_upstream_bind(&cfg),
        list => parse_ip_list(list)?,
    };
    super::tls::from_flags(&mut cfg, &cli.tls_cert, &cli.tls_key)?;
    if take("listen") && cfg.routing.is_none() {
        // A simple file's TLS settings follow its one address to the flag's.
        let listen = cfg.listen;
        for t in cfg.tls.iter_mut() {
            t.addr = listen;
        }
    }
    cfg.validate()?;
    // Certificates are read and checked here, at start and at every reload.
    cfg.load_tls()?;
    Ok((cfg, warnings))
}

/// The configuration the command line `args` (program name first) gives, read again: a
/// reload re-reads the `-c` file and applies the same flags over it. The error is one line
/// (the file's errors name the file and line).
pub fn from_args(args: &[std::ffi::OsString]) -> Result<(Config, Vec<String>), String> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    from_cli(cli, &given)
}

/// `--upstream-bind auto`: when every backend is on loopback and one source address's
/// ephemeral ports cannot comfortably carry a backend's share of the budget, use enough
/// loopback source addresses (127.0.0.2 …) that each (source, backend) pair needs at most
/// half the range.
pub fn auto_upstream_bind(cfg: &Config) -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr};
    if cfg.upstreams.is_empty()
        || !cfg
            .upstreams
            .iter()
            .all(|a| a.ip().is_loopback() && a.is_ipv4())
    {
        return Vec::new();
    }
    let (lo, hi) = crate::sys::port_range();
    let (lo, hi) = (lo as u64, hi as u64);
    // Plan for half the range per (source, backend): as a range nears exhaustion every
    // connect() scans it for a free port, which starves the whole box long before the last
    // port is used (seen here: a run stalled at ~27,700 tunnels per source and backend).
    let ports = hi.saturating_sub(lo).div_ceil(2);
    let total = (cfg.workers * crate::budget::clients_per_worker(cfg.worker_connections)) as u64;
    let per_backend = total.div_ceil(cfg.upstreams.len() as u64);
    if per_backend <= ports {
        return Vec::new();
    }
    let n = per_backend.div_ceil(ports.max(1)).min(250) as u32;
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TEST_SEED as SEED;

    #[test]
    fn upstream_comma_list_and_repeat() {
        let cli = Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1,127.0.0.1:2",
            "--upstream",
            "127.0.0.1:3",
            "--worker-processes",
            "2",
        ])
        .unwrap();
        let cfg = Config::try_from(cli).unwrap();
        assert_eq!(cfg.upstreams.len(), 3);
        assert_eq!(cfg.workers, 2);
        assert_eq!(cfg.worker_connections, 1024);
        assert_eq!(cfg.at_limit, AtLimit::Reply503);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["ringway", "--upstream", "nope"]).is_err());
        assert!(
            Cli::try_parse_from(["ringway", "--upstream", "127.0.0.1:1", "--balance", "x"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--worker-connections",
            "2"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["ringway", "--upstream", "127.0.0.1:1", "--at-limit", "404"])
                .is_err()
        );
        let ok = Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--at-limit",
            "reset",
        ])
        .unwrap();
        assert_eq!(ok.at_limit, AtLimit::Reset);
    }

    #[test]
    fn health_check_and_underscore_flags() {
        let cli = Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--health-check",
            "/hc",
            "--health-check-interval",
            "1s",
            "--health-check-upgrade",
            "--underscores-in-headers",
        ])
        .unwrap();
        let cfg = Config::try_from(cli).unwrap();
        let h = cfg.health_check.clone().unwrap();
        assert_eq!(
            (h.path.as_str(), h.interval, h.fails, h.passes),
            ("/hc", Duration::from_secs(1), 2, 1)
        );
        assert!(h.upgrade && cfg.underscores_in_headers);
        assert!(cfg.routing().routes[0].underscores_in_headers);
        let bad = Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--health-check",
            "hc",
        ])
        .unwrap();
        assert!(Config::try_from(bad)
            .unwrap_err()
            .contains("starting with /"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("ringway-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("nginx.conf");
        std::fs::write(&f, SEED).unwrap();
        let cli = Cli::try_parse_from([
            "ringway",
            "-c",
            f.to_str().unwrap(),
            "--worker-connections",
            "64",
        ])
        .unwrap();
        let (c, _) = from_cli(cli, &|id| id == "worker_connections").unwrap();
        assert_eq!(c.worker_connections, 64);
        assert_eq!(
            c.balance,
            Balance::LeastConn,
            "not given on the command line: from the file"
        );
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

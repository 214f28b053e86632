//! The validated [`Config`] every worker shares, its enums and defaults, and the ways to
//! build one.
//!
//! Flags mirror nginx's vocabulary where one exists (`worker_processes`,
//! `worker_connections`, `proxy_read_timeout`). Bad values produce one line that says
//! what is wrong and how to fix it, and exit status 2 (clap's convention).
//!
//! | part | module |
//! |---|---|
//! | the clap [`Cli`], flags → [`Config`] | `cli` |
//! | nginx.conf → [`Config`] ([`from_nginx`]) | `nginx` |
//! | TLS per listen address, from the file or the flags | `tls` |
//! | value types and their parsers ([`SetHeader`], [`HashKey`], durations, addresses) | `types` |

use clap::ValueEnum;
use std::net::SocketAddr;
use std::time::Duration;

mod cli;
mod nginx;
pub mod routing;
mod summary;
mod tls;
mod types;

pub use cli::{auto_upstream_bind, from_args, from_cli, Cli};
pub use nginx::from_nginx;
pub use summary::{fmt_duration, settings, tls_lines, AsFlag, Flag};
pub use types::{
    default_set_headers, parse_addr, parse_duration, parse_hash_key, parse_ip_list,
    parse_set_header, HashKey, HealthCheck, Part, ServerParams, SetHeader, Var,
};

/// How a backend is chosen for a new client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Balance {
    /// Each worker walks the backends in turn (nginx's default).
    RoundRobin,
    /// The backend with the fewest active connections across all workers.
    LeastConn,
    /// A hash of the client's whole IP address (nginx hashes only 3 octets of IPv4).
    IpHash,
    /// A consistent hash (ketama ring) of `--hash-key`: adding or removing a backend moves
    /// only that backend's share of keys.
    Hash,
}

/// How an upgraded connection's bytes are relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TunnelMode {
    /// Each direction on its own: copy while its messages are small, splice while its reads
    /// keep filling whole buffers (bulk), back to copy when they turn small (the default).
    Auto,
    /// POLLIN readiness, then `splice(2)` socket → pipe → socket (zero copy).
    Splice,
    /// Multishot receive into a provided buffer ring, then send.
    Copy,
}

/// What `ringway -s SIGNAL` sends to a running ringway (nginx's `-s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignalCmd {
    /// SIGHUP: re-read the configuration file and apply it without dropping a client.
    Reload,
    /// SIGQUIT: graceful stop (tunnels kept until they end or `--shutdown-timeout`).
    Quit,
    /// SIGINT: fast stop (every connection closed at once), nginx's `stop`.
    Stop,
    /// SIGUSR1: reopen the access and error log files (logrotate), as nginx's `reopen`.
    Reopen,
}

/// A graceful stop's bound when neither `--shutdown-timeout` nor `worker_shutdown_timeout`
/// says: long enough for in-flight requests and for clients to see the close and
/// reconnect elsewhere, short enough that a deploy or `systemctl stop` (whose own
/// `TimeoutStopSec` is 90 s) is never held up by tunnels that would stay open for days.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How workers are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkerMode {
    /// Threads of one process (one descriptor table).
    Thread,
    /// Processes under a supervising master (one descriptor table each).
    Process,
}

/// What a worker does with a new client when its budget is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AtLimit {
    /// Answer `503 Service Unavailable` with `Retry-After` from a small reserve of slots.
    #[value(name = "503")]
    Reply503,
    /// Close the accepted socket at once, as nginx does.
    Reset,
    /// Stop accepting until a slot frees; clients wait in the listen backlog (HAProxy).
    Pause,
}

/// Validated configuration shared by every worker.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address (port 0 = pick one; all workers then share it).
    pub listen: SocketAddr,
    /// Backends in configuration order.
    pub upstreams: Vec<SocketAddr>,
    /// Number of workers.
    pub workers: usize,
    /// Slots per worker.
    pub worker_connections: usize,
    /// Balancing policy.
    pub balance: Balance,
    /// Tunnel relay mode.
    pub tunnel: TunnelMode,
    /// Behaviour at the limit.
    pub at_limit: AtLimit,
    /// Slots outside the budget for 503 answers.
    pub reserve_503: usize,
    /// Listen backlog.
    pub backlog: u32,
    /// Largest request head.
    pub max_head: usize,
    /// Request-head timeout.
    pub head_timeout: Duration,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream response-head timeout.
    pub read_timeout: Duration,
    /// Idle tunnel timeout.
    pub tunnel_idle_timeout: Option<Duration>,
    /// Request body timeout (between two reads).
    pub body_timeout: Duration,
    /// Client keep-alive idle timeout (zero: no client keep-alive).
    pub keepalive_timeout: Duration,
    /// Idle upstream connections kept per worker (0: none).
    pub keepalive: usize,
    /// Idle pooled upstream connection lifetime.
    pub upstream_idle_timeout: Duration,
    /// Headers set on forwarded requests (proxy_set_header).
    pub set_headers: Vec<SetHeader>,
    /// Pin workers to CPUs.
    pub pin: bool,
    /// `worker_rlimit_nofile` from nginx.conf: the soft RLIMIT_NOFILE to set.
    pub rlimit_nofile: Option<u64>,
    /// Source addresses for upstream sockets (empty: the kernel picks).
    pub upstream_bind: Vec<std::net::IpAddr>,
    /// Cookie pinning clients to backends.
    pub sticky_cookie: Option<String>,
    /// Key of the consistent hash.
    pub hash_key: HashKey,
    /// Workers run as separate processes under a master (nginx-style), each with its own
    /// descriptor table; otherwise as threads of one process.
    pub process_mode: bool,
    /// The routing table of an nginx.conf with several servers or locations; `None`:
    /// every request takes the one route the fields above describe (flags, or a file with
    /// one server and one `location /`).
    pub routing: Option<std::sync::Arc<routing::Routing>>,
    /// `--shutdown-timeout` / `worker_shutdown_timeout`: the bound of a graceful stop, and
    /// of an old generation's drain after a reload. `None`: a stop is bounded by
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`] and a reload's old tunnels are never cut.
    pub shutdown_timeout: Option<Duration>,
    /// `--pid-file` / `pid`: written at start, removed at exit, read by `-s`.
    pub pid_file: Option<std::path::PathBuf>,
    /// `--underscores-in-headers` / `underscores_in_headers on`: forward request headers
    /// whose names contain `_` (off: dropped, as nginx does).
    pub underscores_in_headers: bool,
    /// Per backend (index of `upstreams`): weight, failure accounting, backup, down.
    /// Shorter than `upstreams` (or empty): the rest have nginx's defaults.
    pub servers: Vec<ServerParams>,
    /// `--health-check PATH` and its settings: active checks of every backend (a file's
    /// upstreams have their own `health_check`).
    pub health_check: Option<HealthCheck>,
    /// `--metrics` / `ringway_metrics`: where `GET /metrics` is served (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
    /// `--access-log` / `access_log`: the access log (`None`: off).
    pub access_log: Option<std::path::PathBuf>,
    /// `--access-log-format` / `access_log PATH FORMAT`.
    pub access_format: crate::access_log::Format,
    /// `--error-log` / `error_log`: the error log file (`None`: stderr).
    pub error_log: Option<std::path::PathBuf>,
    /// `--error-log-level` / `error_log PATH LEVEL`: lines below it are not written.
    pub error_level: crate::log::Level,
    /// TLS listen addresses (`listen ... ssl`, `--tls-cert`): certificates and settings.
    pub tls: Vec<crate::tls::TlsSettings>,
    /// `tls` loaded ([`Config::load_tls`]): certificates read and checked once per
    /// configuration, shared by every worker of its generation.
    pub tls_table: Option<std::sync::Arc<crate::tls::Table>>,
}

impl Config {
    /// A configuration with nginx-like defaults, for tests and embedding.
    pub fn new(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> Config {
        Config {
            listen,
            upstreams,
            workers: 1,
            worker_connections: 1024,
            balance: Balance::RoundRobin,
            tunnel: TunnelMode::Auto,
            at_limit: AtLimit::Reply503,
            reserve_503: 16,
            backlog: 4096,
            max_head: 8192,
            head_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: None,
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive: 32,
            upstream_idle_timeout: Duration::from_secs(60),
            set_headers: default_set_headers(),
            pin: false,
            rlimit_nofile: None,
            upstream_bind: Vec::new(),
            process_mode: false,
            sticky_cookie: None,
            hash_key: HashKey::RemoteAddr,
            routing: None,
            shutdown_timeout: None,
            pid_file: None,
            underscores_in_headers: false,
            servers: Vec::new(),
            health_check: None,
            metrics: None,
            access_log: None,
            access_format: crate::access_log::Format::Combined,
            error_log: None,
            error_level: crate::log::Level::Debug,
            tls: Vec::new(),
            tls_table: None,
        }
    }

    /// Read and check the TLS certificates (once: a loaded table is kept). The error is
    /// one line naming the file.
    pub fn load_tls(&mut self) -> Result<(), String> {
        if !self.tls.is_empty() && self.tls_table.is_none() {
            self.tls_table = Some(std::sync::Arc::new(crate::tls::Table::load(&self.tls)?));
        }
        Ok(())
    }

    /// The TLS configuration of listen address `addr` (as configured), if it speaks TLS.
    pub fn tls_for(&self, addr: SocketAddr) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        self.tls_table.as_ref().and_then(|t| t.for_addr(addr))
    }

    /// Backend `i`'s parameters.
    pub fn server(&self, i: usize) -> ServerParams {
        self.servers.get(i).copied().unwrap_or_default()
    }

    /// How long a graceful stop (SIGQUIT, SIGTERM) keeps tunnels.
    pub fn stop_timeout(&self) -> Duration {
        self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// A fingerprint of what this configuration makes a worker do (FNV-1a of its parts,
    /// hash tables left out), equal in every process that read the same file with the
    /// same flags: a restarted worker process compares its own with its master's, so that
    /// a file edited since the last reload is never run by one worker beside its siblings.
    pub fn fingerprint(&self) -> u64 {
        let mut c = self.clone();
        let table = c
            .routing
            .take()
            .map(|r| format!("{:?}{:?}{:?}", r.listens, r.routes, r.groups));
        crate::hash::fnv1a(format!("{c:?}{table:?}").as_bytes())
    }

    /// The routing table in force: the file's, or the one route of the fields above.
    pub fn routing(&self) -> std::sync::Arc<routing::Routing> {
        match &self.routing {
            Some(r) => r.clone(),
            None => std::sync::Arc::new(routing::Routing::single(self)),
        }
    }

    /// Check what clap's types cannot; the error is one line for a person.
    pub fn validate(&self) -> Result<(), String> {
        if self.upstreams.is_empty() {
            return Err(
                "no --upstream given: name at least one backend, e.g. --upstream 127.0.0.1:9001"
                    .into(),
            );
        }
        if self.upstreams.len() > u16::MAX as usize - 1 {
            return Err("too many upstreams (at most 65534)".into());
        }
        if self.worker_connections < 4 {
            return Err(format!(
                "--worker-connections {} is too small: 2 slots are reserved and each proxied client needs 2; use 4 or more",
                self.worker_connections
            ));
        }
        if self.workers == 0 {
            return Err("--worker-processes must be at least 1".into());
        }
        if let Some(r) = &self.routing {
            if self.process_mode && r.listens.len() > 1 {
                return Err(format!(
                    "{} listen addresses: process mode (ringway_worker_mode process) serves one listen address for now; use thread mode or one address",
                    r.listens.len()
                ));
            }
            if r.listens.len() > u8::MAX as usize {
                return Err("too many listen addresses (at most 255)".into());
            }
        }
        Ok(())
    }
}

/// A small nginx.conf the tests of the submodules map onto a [`Config`].
#[cfg(test)]
pub(crate) const TEST_SEED: &str = "worker_processes 1;\nevents { worker_connections 1024; }\nhttp {\n map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n upstream nodes { least_conn; server 127.0.0.1:9001; server 127.0.0.1:9002; }\n server { listen 127.0.0.1:8080; location / { proxy_pass http://nodes; proxy_http_version 1.1;\n proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; proxy_read_timeout 90s; } }\n}\n";

//! Command-line flags → a validated [`Config`].
//!
//! Flags mirror nginx's vocabulary where one exists (`worker_processes`,
//! `worker_connections`, `proxy_read_timeout`). Bad values produce one line that says
//! what is wrong and how to fix it, and exit status 2 (clap's convention).

use clap::{Parser, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

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
    /// POLLIN readiness, then `splice(2)` socket → pipe → socket (zero copy).
    Splice,
    /// Multishot receive into a provided buffer ring, then send.
    Copy,
}

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

/// ringway: a thread-per-core io_uring WebSocket/HTTP reverse proxy with an explicit,
/// nginx-identical connection budget.
#[derive(Parser, Debug, Clone)]
#[command(name = "ringway", version, about, long_about = None)]
pub struct Cli {
    /// Read this nginx.conf (the subset the WebSocket-behind-nginx setup uses); flags given
    /// on the command line override what it says.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Test the configuration, print the budget arithmetic, and exit (like `nginx -t`).
    #[arg(short = 't', long = "test-config")]
    pub test_config: bool,

    /// Address to listen on (one SO_REUSEPORT listener per worker).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Backend address; repeat the flag or give a comma-separated list.
    #[arg(long = "upstream", value_delimiter = ',', value_parser = parse_addr, required_unless_present = "config")]
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

    /// Tunnel relay for upgraded connections.
    #[arg(long, value_enum, default_value = "splice")]
    pub tunnel: TunnelMode,

    /// Answer when a worker's budget is full.
    #[arg(long, value_enum, default_value = "503")]
    pub at_limit: AtLimit,

    /// Extra slots (outside the budget) used only to answer 503 at the limit.
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
    pub hash_key: crate::http::HashKey,

    /// Largest request head accepted, in bytes; larger gets 431.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
    pub max_head: u32,

    /// Seconds to receive a whole request head (nginx client_header_timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub head_timeout: Duration,

    /// Seconds to connect to a backend before trying the next one (nginx proxy_connect_timeout).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Seconds to wait for the backend's response head (nginx proxy_read_timeout); then 504.
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
    pub set_headers: Vec<crate::http::SetHeader>,

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

    /// For `explain` and `-t`: the number of tunnels to check the limits against
    /// (default: what the budget admits).
    #[arg(long)]
    pub tunnels: Option<u64>,
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
    pub set_headers: Vec<crate::http::SetHeader>,
    /// Pin workers to CPUs.
    pub pin: bool,
    /// `worker_rlimit_nofile` from nginx.conf: the soft RLIMIT_NOFILE to set.
    pub rlimit_nofile: Option<u64>,
    /// Source addresses for upstream sockets (empty: the kernel picks).
    pub upstream_bind: Vec<std::net::IpAddr>,
    /// Cookie pinning clients to backends.
    pub sticky_cookie: Option<String>,
    /// Key of the consistent hash.
    pub hash_key: crate::http::HashKey,
    /// Workers run as separate processes under a master (nginx-style), each with its own
    /// descriptor table; otherwise as threads of one process.
    pub process_mode: bool,
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
            tunnel: TunnelMode::Splice,
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
            set_headers: crate::http::default_set_headers(),
            pin: false,
            rlimit_nofile: None,
            upstream_bind: Vec::new(),
            process_mode: false,
            sticky_cookie: None,
            hash_key: crate::http::HashKey::RemoteAddr,
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
        Ok(())
    }
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
    let take = |id: &str| !from_file || given(id);
    if take("listen") {
        cfg.listen = cli.listen;
    }
    if take("upstreams") && !cli.upstreams.is_empty() {
        cfg.upstreams = cli.upstreams;
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
    cfg.upstream_bind = match cli.upstream_bind.trim() {
        "none" => Vec::new(),
        "auto" => auto_upstream_bind(&cfg),
        list => parse_ip_list(list)?,
    };
    cfg.validate()?;
    Ok((cfg, warnings))
}

/// Map an nginx.conf (the supported subset) onto a [`Config`]. The first `server` block
/// and its `location /` (or first location) with `proxy_pass` define the proxy.
pub fn from_nginx(
    conf: &crate::nginx_conf::NginxConf,
    file: &str,
) -> Result<(Config, Vec<String>), String> {
    use crate::nginx_conf::{Balance as NB, WorkerProcesses};
    let mut warnings = conf.warnings.clone();
    let server = conf
        .servers
        .first()
        .ok_or_else(|| format!("{file}: no `server {{ ... }}` block: ringway needs one with `listen` and `location / {{ proxy_pass ...; }}`"))?;
    if conf.servers.len() > 1 {
        warnings.push(format!(
            "{file}:{}: ringway serves only the first server block; later ones are ignored",
            conf.servers[1].line
        ));
    }
    let listen = server
        .listen
        .first()
        .ok_or_else(|| format!("{file}:{}: server block has no listen", server.line))?;
    let listen_addr =
        parse_addr(&listen.addr).map_err(|e| format!("{file}:{}: listen: {e}", server.line))?;
    let loc = server
        .locations
        .iter()
        .find(|l| l.path == "/" && l.proxy_pass.is_some())
        .or_else(|| server.locations.iter().find(|l| l.proxy_pass.is_some()))
        .ok_or_else(|| {
            format!(
                "{file}:{}: no location with proxy_pass in the server block",
                server.line
            )
        })?;
    let target = loc.proxy_pass.clone().unwrap_or_default();
    let mut upstreams = Vec::new();
    let mut balance = Balance::RoundRobin;
    let mut hash_key = None;
    let mut sticky = None;
    // nginx keeps no upstream connection alive unless the upstream block says `keepalive N;`.
    let mut keepalive = 0;
    let mut upstream_idle_ms = None;
    if let Some(up) = conf.upstreams.iter().find(|u| u.name == target) {
        for s in &up.servers {
            if s.down {
                continue;
            }
            if s.backup {
                warnings.push(format!("{file}:{}: `backup` servers are not supported yet; {} is used as a normal server", s.line, s.addr));
            }
            if s.weight != 1 {
                warnings.push(format!(
                    "{file}:{}: weight={} is not supported yet; {} gets an equal share",
                    s.line, s.weight, s.addr
                ));
            }
            upstreams
                .push(parse_addr(&s.addr).map_err(|e| format!("{file}:{}: server: {e}", s.line))?);
        }
        balance = match &up.balance {
            NB::RoundRobin => Balance::RoundRobin,
            NB::LeastConn => Balance::LeastConn,
            NB::IpHash => Balance::IpHash,
            NB::Hash { key, consistent } => {
                hash_key =
                    Some(parse_hash_key(key).map_err(|e| format!("{file}:{}: {e}", up.line))?);
                if !consistent {
                    warnings.push(format!("{file}:{}: `hash {key}` without `consistent`: ringway always uses a consistent (ketama) hash", up.line));
                }
                Balance::Hash
            }
            NB::StickyCookie { name } => {
                sticky = Some(name.clone());
                Balance::RoundRobin
            }
        };
        keepalive = up.keepalive.unwrap_or(0);
        upstream_idle_ms = up.keepalive_timeout_ms;
    } else {
        upstreams.push(
            parse_addr(&target).map_err(|e| format!("{file}:{}: proxy_pass: {e}", loc.line))?,
        );
    }
    if upstreams.is_empty() {
        return Err(format!("{file}: upstream '{target}' has no usable server"));
    }
    // Upgrade and Connection are hop-by-hop: ringway applies nginx's WebSocket rules for
    // them itself. Every other proxy_set_header is applied as nginx would (and, as in
    // nginx, nothing else is added: no X-Forwarded-For unless the file asks for it).
    let mut set_headers = Vec::new();
    for (name, value) in &loc.set_headers {
        if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection") {
            let standard = [
                "$http_upgrade",
                "$connection_upgrade",
                "upgrade",
                "close",
                "",
            ];
            if !standard.contains(&value.as_str()) {
                warnings.push(format!("{file}:{}: proxy_set_header {name} {value}: ringway sets Upgrade and Connection itself (WebSocket upgrade, keep-alive) and ignores this one", loc.line));
            }
            continue;
        }
        // An empty value removes the client's header, as in nginx.
        match crate::http::SetHeader::parse(name, value) {
            Ok(h) => set_headers.push(h),
            Err(e) => warnings.push(format!(
                "{file}:{}: proxy_set_header: {e}; ignored",
                loc.line
            )),
        }
    }
    if let Some(v) = &loc.proxy_http_version {
        if v != "1.1" {
            warnings.push(format!(
                "{file}:{}: proxy_http_version {v}: ringway always speaks HTTP/1.1 to backends",
                loc.line
            ));
        }
    }
    let mut cfg = Config::new(listen_addr, upstreams);
    cfg.balance = balance;
    cfg.keepalive = keepalive;
    cfg.set_headers = set_headers;
    cfg.sticky_cookie = sticky;
    if let Some(k) = hash_key {
        cfg.hash_key = k;
    }
    cfg.workers = match conf.worker_processes {
        Some(WorkerProcesses::N(n)) => n,
        // nginx's compiled default is 1 worker.
        None => 1,
        Some(WorkerProcesses::Auto) => crate::sys::online_cpus(),
    };
    // nginx's compiled default is 512; the shipped nginx.conf says 1024.
    cfg.worker_connections = conf.worker_connections.unwrap_or(512);
    if let Some(b) = listen.backlog {
        cfg.backlog = b;
    } else {
        cfg.backlog = 511; // nginx's default listen backlog on Linux
    }
    cfg.read_timeout = Duration::from_millis(loc.read_timeout_ms.unwrap_or(60_000));
    // nginx applies proxy_read_timeout to upgraded connections too: an idle tunnel closes.
    cfg.tunnel_idle_timeout = Some(cfg.read_timeout);
    cfg.connect_timeout = Duration::from_millis(loc.connect_timeout_ms.unwrap_or(60_000));
    // nginx's defaults: keepalive_timeout 75s, client_body_timeout and
    // client_header_timeout 60s, an upstream's keepalive_timeout 60s.
    cfg.keepalive_timeout = Duration::from_millis(loc.keepalive_timeout_ms.unwrap_or(75_000));
    cfg.body_timeout = Duration::from_millis(loc.client_body_timeout_ms.unwrap_or(60_000));
    cfg.head_timeout = Duration::from_millis(loc.client_header_timeout_ms.unwrap_or(60_000));
    cfg.upstream_idle_timeout = Duration::from_millis(upstream_idle_ms.unwrap_or(60_000));
    cfg.rlimit_nofile = conf.worker_rlimit_nofile;
    cfg.process_mode = conf.process_mode.unwrap_or(false);
    Ok((cfg, warnings))
}

/// Parse `NAME: VALUE` (or `NAME VALUE`) for `--set-header`.
pub fn parse_set_header(s: &str) -> Result<crate::http::SetHeader, String> {
    let (name, value) = s
        .split_once(':')
        .or_else(|| s.trim().split_once(' '))
        .unwrap_or((s, ""));
    crate::http::SetHeader::parse(name.trim(), value.trim())
}

/// Parse a hash key as nginx's variable names: `remote_addr`, `request_uri`,
/// `http_x_user_id` (header `X-User-Id`), `cookie_sid`; a leading `$` is accepted.
pub fn parse_hash_key(s: &str) -> Result<crate::http::HashKey, String> {
    use crate::http::HashKey;
    let v = s.trim().trim_start_matches('$');
    Ok(match v {
        "remote_addr" | "binary_remote_addr" => HashKey::RemoteAddr,
        "request_uri" | "uri" => HashKey::Uri,
        _ => {
            if let Some(h) = v.strip_prefix("http_").filter(|h| !h.is_empty()) {
                HashKey::Header(h.replace('_', "-"))
            } else if let Some(c) = v.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                HashKey::Cookie(c.to_string())
            } else {
                return Err(format!(
                    "hash key '{s}': use remote_addr, request_uri, http_NAME or cookie_NAME"
                ));
            }
        }
    })
}

/// Parse `127.0.0.2-127.0.0.40` (an IPv4 range), or a comma list of addresses.
pub fn parse_ip_list(s: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let bad = || {
        format!("--upstream-bind '{s}': write a range like 127.0.0.2-127.0.0.40, a comma list, auto or none")
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65535 {
                return Err(bad());
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
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

/// Parse `host:port` (IP literal or a resolvable name such as `localhost:9001`).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("'{s}' resolves to no address")),
        Err(_) => Err(format!(
            "'{s}' is not an address: write HOST:PORT, e.g. 127.0.0.1:9001"
        )),
    }
}

/// Parse an nginx-style duration: `500ms`, `10s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not a duration: write e.g. 500ms, 30s, 5m or 1h");
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: u64 = num.parse().map_err(|_| bad())?;
    Ok(Duration::from_millis(
        v.checked_mul(mult_ms).ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

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

    const SEED: &str = "worker_processes 1;\nevents { worker_connections 1024; }\nhttp {\n map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n upstream nodes { least_conn; server 127.0.0.1:9001; server 127.0.0.1:9002; }\n server { listen 127.0.0.1:8080; location / { proxy_pass http://nodes; proxy_http_version 1.1;\n proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; proxy_read_timeout 90s; } }\n}\n";

    #[test]
    fn seed_nginx_conf_maps_onto_config() {
        let conf = crate::nginx_conf::parse_str(SEED, "nginx.conf").unwrap();
        let (c, w) = from_nginx(&conf, "nginx.conf").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.workers, 1);
        assert_eq!(c.worker_connections, 1024);
        assert_eq!(c.balance, Balance::LeastConn);
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.read_timeout, Duration::from_secs(90));
        assert_eq!(
            c.tunnel_idle_timeout,
            Some(Duration::from_secs(90)),
            "nginx closes idle tunnels after proxy_read_timeout"
        );
    }

    #[test]
    fn keepalive_and_proxy_set_header_from_the_file_and_flags() {
        let (c, _) = from_nginx(&crate::nginx_conf::parse_str(SEED, "f").unwrap(), "f").unwrap();
        assert_eq!(
            c.keepalive, 0,
            "nginx keeps no upstream connection without `keepalive`"
        );
        assert!(
            c.set_headers.is_empty(),
            "and adds no X-Forwarded-For unless told"
        );
        let conf = SEED
            .replace("least_conn;", "least_conn; keepalive 16; keepalive_timeout 5s;")
            .replace("server { listen", "client_body_timeout 7s; server { client_header_timeout 3s; listen")
            .replace(
                "proxy_read_timeout 90s;",
                "proxy_read_timeout 90s; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Odd $upstream_addr;",
            );
        let (c, w) = from_nginx(&crate::nginx_conf::parse_str(&conf, "f").unwrap(), "f").unwrap();
        assert_eq!(c.keepalive, 16);
        assert_eq!(
            c.keepalive_timeout,
            Duration::from_secs(75),
            "nginx's default"
        );
        let names: Vec<&str> = c.set_headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["X-Forwarded-For", "X-Real-IP"]);
        assert!(w.iter().any(|w| w.contains("$upstream_addr")), "{w:?}");
        assert_eq!(c.upstream_idle_timeout, Duration::from_secs(5));
        assert_eq!(
            c.body_timeout,
            Duration::from_secs(7),
            "inherited from http"
        );
        assert_eq!(
            c.head_timeout,
            Duration::from_secs(3),
            "inherited from server"
        );
        let cli = Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--set-header",
            "X-Forwarded-Proto: https",
            "--set-header",
            "X-Real-IP:",
            "--keepalive",
            "0",
        ])
        .unwrap();
        let c = Config::try_from(cli).unwrap();
        let names: Vec<&str> = c.set_headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP"]);
        assert!(
            c.set_headers[2].value.is_empty(),
            "an empty rule removes the header"
        );
        assert_eq!(c.keepalive, 0);
        assert!(Cli::try_parse_from([
            "ringway",
            "--upstream",
            "127.0.0.1:1",
            "--set-header",
            "X-A: $bogus"
        ])
        .is_err());
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

    #[test]
    fn worker_mode_from_the_file_and_the_flag() {
        let conf = crate::nginx_conf::parse_str(
            &format!("ringway_worker_mode process;\n{SEED}"),
            "nginx.conf",
        )
        .unwrap();
        let (c, _) = from_nginx(&conf, "nginx.conf").unwrap();
        assert!(c.process_mode);
        assert!(
            crate::nginx_conf::parse_str(&format!("ringway_worker_mode fork;\n{SEED}"), "f")
                .is_err()
        );
    }

    #[test]
    fn hash_and_sticky_from_the_file() {
        let conf = crate::nginx_conf::parse_str(
            &SEED.replace("least_conn;", "hash $http_x_user consistent;"),
            "nginx.conf",
        )
        .unwrap();
        let (c, w) = from_nginx(&conf, "nginx.conf").unwrap();
        assert_eq!(c.balance, Balance::Hash);
        assert_eq!(c.hash_key, crate::http::HashKey::Header("x-user".into()));
        assert!(w.is_empty(), "{w:?}");
        let conf = crate::nginx_conf::parse_str(
            &SEED.replace("least_conn;", "sticky cookie srv_id;"),
            "nginx.conf",
        )
        .unwrap();
        let (c, _) = from_nginx(&conf, "nginx.conf").unwrap();
        assert_eq!(c.sticky_cookie.as_deref(), Some("srv_id"));
        let conf = crate::nginx_conf::parse_str(
            &SEED.replace("least_conn;", "hash $foo consistent;"),
            "nginx.conf",
        )
        .unwrap();
        let e = from_nginx(&conf, "nginx.conf").unwrap_err();
        assert!(
            e.starts_with("nginx.conf:5:") && e.contains("hash key"),
            "{e}"
        );
    }
}

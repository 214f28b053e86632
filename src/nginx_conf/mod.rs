//! Parser for the subset of `nginx.conf` that ringway understands (`ringway -c nginx.conf`).
//!
//! ringway is a drop-in replacement for the classic "socket.io behind nginx" setup, so it reads
//! the same configuration file, but only the part of the nginx language that such a setup uses:
//!
//! * top level: `worker_processes N|auto;`, `worker_rlimit_nofile N;`, `pid FILE;`,
//!   `worker_shutdown_timeout TIME;`, `events { }`, `http { }`
//! * `events`: `worker_connections N;`
//! * `http`: `map $src $var { key value; default value; }`, `upstream NAME { }`, `server { }`
//! * `upstream`: `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup] [down];`,
//!   one balancing method out of `least_conn;`, `ip_hash;`, `hash KEY [consistent];` and the
//!   ringway-specific `sticky cookie NAME;` (default: round robin), `keepalive N;` and
//!   `keepalive_timeout TIME;` (idle pooled connections)
//! * `server`: `listen [HOST:]PORT [ssl] [reuseport] [backlog=N] [default_server];`,
//!   `location PATH { }`; with `http`: `ssl_certificate`, `ssl_certificate_key`,
//!   `ssl_protocols`, `ssl_session_timeout`, `ssl_session_cache`, `ssl_session_tickets`
//! * `location` (and, inherited the way nginx does it, `server`/`http`): `proxy_pass`,
//!   `proxy_http_version`, `proxy_set_header`, `proxy_read_timeout`, `proxy_connect_timeout`,
//!   `proxy_send_timeout`, `keepalive_timeout` (the client side's), `client_body_timeout`,
//!   and (`http`/`server`) `client_header_timeout`
//!
//! `include FILE;` / `include GLOB;` work in any block, as in nginx. A relative path is the
//! main file's directory's (nginx's prefix with `-c FILE`), from included files too; a glob
//! (`*`, `?`, `[...]`; a leading `.` only literally) reads its matches in byte order and may
//! match nothing; an unreadable path, a cycle and nesting over 16 deep are errors.
//! [`parse_str`] has no directory and refuses `include`.
//!
//! Some directives are accepted but have no effect on ringway ("harmless"). Each one gives a
//! warning in [`NginxConf::warnings`] that names it and says why ignoring it is safe, and an
//! entry in [`NginxConf::ignored`]: `user` (ringway keeps the identity it was started with),
//! `daemon`, `master_process`, `error_log` (stderr), `access_log`, `log_format`,
//! `sendfile`, `tcp_nopush`, `tcp_nodelay` (always on), `types_hash_max_size`,
//! `default_type`, `gzip`, `server_tokens`, `client_max_body_size` (a limit ringway does not
//! enforce: the warning says "not enforced"), `multi_accept`, `use`, `proxy_buffering`,
//! `proxy_buffer_size`, `proxy_buffers`, `proxy_redirect off|default`, `proxy_cache_bypass`,
//! the `*_temp_path` directives, `server_name`; in a `map`, `hostnames` and `volatile`; after
//! `sticky cookie NAME`, its other parameters.
//!
//! Everything else is an error that names the file and line ([`ConfError`]): unknown
//! directives (whatever they would route, restrict or limit: `limit_req`, `allow`, `ssl_verify_client`,
//! `proxy_cache`, `rewrite`, ...), wrong argument counts, a missing `;`, unbalanced braces, a
//! directive in the wrong block, malformed numbers/sizes/durations, a `proxy_pass` that names
//! neither an upstream nor a `host:port`, two balancing methods in one upstream, an upstream
//! without servers, an upstream `server` parameter other than `weight=`, `max_fails=`,
//! `fail_timeout=`, `backup`, `down` (`max_conns=`, `slow_start=`, ...), `proxy_redirect` with
//! a rewrite rule (ringway does not rewrite `Location`), etc. The upstream `server`
//! parameters are all passed on in [`UpstreamServer`]; what the proxy makes of them is the
//! caller's (`crate::config`) to say.
//!
//! Every message names the file its line is in: an included file's path (as resolved) for a
//! line of an included file.
//!
//! The lexer follows nginx: bare words, `'single'` and `"double"` quoted strings with backslash
//! escapes (`\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other `\x` is kept as is), `#` comments to
//! the end of the line, and `;`, `{`, `}`. Numbers use nginx syntax: times are `500ms`, `10s`,
//! `5m`, `1h`, `1d`, ... (a plain number means seconds, parts combine as in `1m30s`), sizes
//! are `N`, `Nk`, `Nm`, `Ng`.
//!
//! Parsing happens in two steps: the lexeme stream becomes a generic directive tree (name,
//! arguments, optional block, file, line), with includes expanded, which is then checked and
//! turned into a typed [`NginxConf`]. No input makes the parser panic.
//!
//! | step | module |
//! |---|---|
//! | text → lexemes (words, `;`, `{`, `}`) | `lexer` |
//! | lexemes → directive tree | `tree` |
//! | `include` → the included files' directives | `include` |
//! | which directive is allowed where, with how many arguments | `directives` |
//! | nginx value syntax: numbers, sizes, times, `host:port` | `values` |
//! | directive tree → [`NginxConf`] | `builder` |

use std::fmt;
use std::path::Path;
use std::rc::Rc;

mod builder;
mod directives;
#[cfg(test)]
mod fixtures;
mod include;
mod lexer;
mod ssl;
mod tree;
mod values;

pub use ssl::{Ssl, SslFile};

use builder::Builder;
use include::Includes;
use tree::parse_tree;

/// The typed result of parsing an nginx.conf subset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NginxConf {
    /// `worker_processes N|auto;` (top level), `None` when absent.
    pub worker_processes: Option<WorkerProcesses>,
    /// `events { worker_connections N; }`, `None` when absent.
    pub worker_connections: Option<usize>,
    /// `worker_rlimit_nofile N;` (top level), `None` when absent.
    pub worker_rlimit_nofile: Option<u64>,
    /// ringway-specific `ringway_worker_mode thread|process;` (top level): `Some(true)` for
    /// process mode; nginx does not know this directive.
    pub process_mode: Option<bool>,
    /// `pid FILE;` (top level): where the pid file goes.
    pub pid: Option<String>,
    /// `worker_shutdown_timeout TIME;` (top level), in ms: the bound of a graceful stop.
    pub worker_shutdown_timeout_ms: Option<u64>,
    /// Observability directives (`ringway_metrics`, `access_log`, `error_log`).
    pub observe: Observe,
    /// `upstream NAME { ... }` blocks of the `http` block, in file order.
    pub upstreams: Vec<UpstreamBlock>,
    /// `server { ... }` blocks of the `http` block, in file order.
    pub servers: Vec<ServerBlock>,
    /// `map $source $variable { ... }` blocks of the `http` block, in file order.
    pub maps: Vec<Map>,
    /// Non-fatal remarks, each formatted as `FILE:LINE: text`, e.g.
    /// `nginx.conf:12: ignoring harmless directive 'access_log': ringway writes no access log`.
    /// Every entry of [`NginxConf::ignored`] is one of them.
    pub warnings: Vec<String>,
    /// What the file asks for that ringway accepts but does not do, in file order (each one
    /// also has its line in [`NginxConf::warnings`]).
    pub ignored: Vec<Ignored>,
}

/// What the file says about metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observe {
    /// ringway-specific `ringway_metrics ADDR;` (top level).
    pub metrics: Option<String>,
    /// `access_log PATH [FORMAT];` / `access_log off;` (the `http` block): path (`off`
    /// included) and format.
    pub access_log: Option<(String, Option<String>)>,
    /// `error_log PATH [LEVEL];` (top level).
    pub error_log: Option<(String, Option<String>)>,
}

/// A directive (or a parameter of one) that ringway accepts and ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The directive's name, e.g. `access_log` (for a parameter: the directive it is in,
    /// e.g. `sticky`, and the parameter is named in `reason`).
    pub directive: String,
    /// The file it is written in (an included file's path when it comes from an include).
    pub file: String,
    /// Its line in that file.
    pub line: usize,
    /// Why ignoring it is safe, e.g. `ringway writes no access log`.
    pub reason: String,
}

/// Value of `worker_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerProcesses {
    /// `worker_processes auto;`: one worker per CPU.
    Auto,
    /// `worker_processes N;` with `N >= 1`.
    N(usize),
}

/// An `upstream NAME { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBlock {
    /// The upstream's name, as referenced by `proxy_pass http://NAME`.
    pub name: String,
    /// Its `server` lines, in file order (never empty).
    pub servers: Vec<UpstreamServer>,
    /// The balancing method (round robin when none is given).
    pub balance: BalanceDirective,
    /// `keepalive N;`: idle upstream connections cached per worker.
    pub keepalive: Option<usize>,
    /// `keepalive_timeout TIME;` inside the upstream: how long a cached connection may idle,
    /// in milliseconds.
    pub keepalive_timeout_ms: Option<u64>,
    /// ringway's `health_check uri=PATH [interval=T] [fails=N] [passes=N] [timeout=T]
    /// [upgrade];`: active checks of the upstream's servers.
    pub health_check: Option<HealthCheckDirective>,
    /// Line of the `upstream` directive.
    pub line: usize,
    /// File of the `upstream` directive (an included file's path when it comes from one).
    pub file: String,
}

/// `health_check uri=PATH [interval=T] [fails=N] [passes=N] [timeout=T] [upgrade];`
/// (ringway's own directive, in an upstream block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckDirective {
    /// `uri=PATH` (required, starts with `/`).
    pub uri: String,
    /// `interval=T` in ms (default 5 s).
    pub interval_ms: Option<u64>,
    /// `fails=N`: consecutive failures that mark a server down (default 2).
    pub fails: Option<u32>,
    /// `passes=N`: consecutive successes that mark it up again (default 1).
    pub passes: Option<u32>,
    /// `timeout=T` in ms: one check's bound (default 2 s).
    pub timeout_ms: Option<u64>,
    /// `upgrade`: check by a WebSocket upgrade handshake (a 101 passes).
    pub upgrade: bool,
}

/// A `server ADDR [params];` line inside an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Normalized `host:port` (`[v6]:port` for IPv6; port 80 when omitted). The host may be a
    /// name that the caller still has to resolve.
    pub addr: String,
    /// `weight=N` (default 1, always `>= 1`).
    pub weight: u32,
    /// `max_fails=N` when given (nginx default: 1; 0 disables failure accounting).
    pub max_fails: Option<u32>,
    /// `fail_timeout=TIME` in milliseconds when given (nginx default: 10 s).
    pub fail_timeout_ms: Option<u64>,
    /// `backup`: only used when all non-backup servers are unavailable.
    pub backup: bool,
    /// `down`: permanently marked unavailable.
    pub down: bool,
    /// Line of the `server` directive.
    pub line: usize,
    /// File of the `server` directive (an included file's path when it comes from one).
    pub file: String,
}

/// Load-balancing method of an upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BalanceDirective {
    /// Weighted round robin (nginx's default).
    #[default]
    RoundRobin,
    /// `least_conn;`
    LeastConn,
    /// `ip_hash;`
    IpHash,
    /// `hash KEY [consistent];`, e.g. `hash $remote_addr consistent;`.
    Hash {
        /// The key expression as written, e.g. `$remote_addr`.
        key: String,
        /// Whether `consistent` (ketama) hashing was requested.
        consistent: bool,
    },
    /// ringway-specific `sticky cookie NAME;`.
    StickyCookie {
        /// The cookie name, e.g. `srv_id`.
        name: String,
    },
}

/// A `server { ... }` block of the `http` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    /// Its `listen` directives (a server without any listens on `0.0.0.0:80`, like nginx).
    pub listen: Vec<Listen>,
    /// Its `server_name` names, in file order (lower-cased; `*.example.com`,
    /// `www.example.*` and `""` kept as written; `_` is just a name that never matches).
    pub server_names: Vec<String>,
    /// Its `location` blocks, in file order.
    pub locations: Vec<Location>,
    /// Its TLS directives (`ssl_*`), the http block's where it sets none.
    pub ssl: Ssl,
    /// Line of the `server` directive.
    pub line: usize,
}

/// A `listen` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Normalized `host:port`: `8080` becomes `0.0.0.0:8080`, `*:8080` becomes `0.0.0.0:8080`,
    /// IPv6 stays bracketed (`[::1]:8080`), a missing port is 80. The host may be a name.
    pub addr: String,
    /// `backlog=N`.
    pub backlog: Option<u32>,
    /// `reuseport`.
    pub reuseport: bool,
    /// `default_server` (or `default`): the server for requests whose Host matches no
    /// `server_name` on this address.
    pub default_server: bool,
    /// `ssl`: connections on this address speak TLS.
    pub ssl: bool,
}

/// How a `location` matches (nginx's modifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationMatch {
    /// `location /p`: the longest matching prefix wins, unless a regex location matches.
    Prefix,
    /// `location ^~ /p`: a prefix that, when it is the longest match, stops the regex search.
    PrefixNoRegex,
    /// `location = /p`: this exact path only; checked first.
    Exact,
    /// `location ~ re` (`case_insensitive` false) or `location ~* re` (true): a regular
    /// expression, tried in file order after the prefixes.
    Regex {
        /// `~*`.
        case_insensitive: bool,
    },
}

/// A `location [MOD] PATH { ... }` block, with the proxy settings it inherits from its
/// `server` and `http` blocks already merged in (nginx semantics: each value inherits
/// separately, and `proxy_set_header` lines are inherited only when the location has none
/// of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The path (`/`, `/socket.io/`) or, for a regex location, the expression.
    pub path: String,
    /// The modifier.
    pub kind: LocationMatch,
    /// `proxy_pass` target: the name of an upstream when one by that name exists, otherwise a
    /// normalized `host:port`. The `http://` prefix is stripped.
    pub proxy_pass: Option<String>,
    /// The URI part of `proxy_pass` (`proxy_pass http://b/v1/;` → `/v1/`): it replaces the
    /// part of the request path that matched the location, as in nginx. `None` when
    /// `proxy_pass` has no URI part (the request path goes unchanged).
    pub pass_uri: Option<String>,
    /// `proxy_http_version`: `"1.0"` or `"1.1"`.
    pub proxy_http_version: Option<String>,
    /// `proxy_set_header NAME VALUE;` pairs in file order (values unexpanded, e.g.
    /// `$http_upgrade`).
    pub set_headers: Vec<(String, String)>,
    /// `proxy_read_timeout` in milliseconds.
    pub read_timeout_ms: Option<u64>,
    /// `proxy_connect_timeout` in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// `proxy_send_timeout` in milliseconds.
    pub send_timeout_ms: Option<u64>,
    /// `keepalive_timeout` (client connections) in milliseconds.
    pub keepalive_timeout_ms: Option<u64>,
    /// `client_body_timeout` in milliseconds.
    pub client_body_timeout_ms: Option<u64>,
    /// `client_header_timeout` in milliseconds (from `server` or `http`).
    pub client_header_timeout_ms: Option<u64>,
    /// `underscores_in_headers on|off;` (http or server level, inherited).
    pub underscores_in_headers: Option<bool>,
    /// Line of the `location` directive.
    pub line: usize,
}

/// A `map $source $variable { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// The source expression, e.g. `$http_upgrade`.
    pub source: String,
    /// The variable being defined, including its `$`, e.g. `$connection_upgrade`.
    pub variable: String,
    /// `key value` entries in file order, excluding `default` (a `''` key is the empty string).
    pub entries: Vec<(String, String)>,
    /// The `default` value, if given (nginx uses the empty string otherwise).
    pub default: Option<String>,
    /// Line of the `map` directive.
    pub line: usize,
    /// File of the `map` directive (an included file's path when it comes from one).
    pub file: String,
}

/// A configuration error, pointing at a file and line.
///
/// Displays as `FILE:LINE: MESSAGE`, e.g.
/// `nginx.conf:12: unknown directive "gzip_foo" (ringway reads a subset of nginx.conf; see README)`,
/// or `FILE: MESSAGE` when `line` is 0 (the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file the problem is in: the name given to [`parse_str`] / [`parse_file`], or an
    /// included file's path (as resolved) when the problem is in that file.
    pub file: String,
    /// 1-based line number; 0 when the error is not about a line (e.g. I/O errors).
    pub line: usize,
    /// Human-readable description.
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.msg)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.msg)
        }
    }
}

impl std::error::Error for ConfError {}

/// Parses nginx.conf text. `file_name` is only used in error and warning messages. Text has
/// no directory to resolve paths against, so `include` is refused here; [`parse_file`]
/// follows it.
pub fn parse_str(src: &str, file_name: &str) -> Result<NginxConf, ConfError> {
    build(src, file_name, &mut Includes::none())
}

/// Reads and parses an nginx.conf file, following its `include` directives. Messages name
/// the file as `path` displays (an included file as its resolved path displays).
pub fn parse_file(path: &Path) -> Result<NginxConf, ConfError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfError {
        file: name.clone(),
        line: 0,
        msg: format!("cannot read configuration file: {e}"),
    })?;
    let src = include::utf8(bytes, &name)?;
    build(&src, &name, &mut Includes::for_main(path, &name))
}

fn build(src: &str, file_name: &str, includes: &mut Includes) -> Result<NginxConf, ConfError> {
    let file: Rc<str> = Rc::from(file_name);
    let root = parse_tree(src, &file, 0, includes)?;
    let mut b = Builder::new(file_name);
    b.main_ctx(&root)?;
    Ok(b.conf)
}

#[cfg(test)]
mod tests;

//! Parser for the subset of `nginx.conf` that ringway understands (`ringway -c nginx.conf`).
//!
//! ringway is a drop-in replacement for the classic "socket.io behind nginx" setup, so it reads
//! the same configuration file, but only the part of the nginx language that such a setup uses:
//!
//! * top level: `worker_processes N|auto;`, `worker_rlimit_nofile N;`, `events { }`, `http { }`
//! * `events`: `worker_connections N;`
//! * `http`: `map $src $var { key value; default value; }`, `upstream NAME { }`, `server { }`
//! * `upstream`: `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup] [down];`,
//!   one balancing method out of `least_conn;`, `ip_hash;`, `hash KEY [consistent];` and the
//!   ringway-specific `sticky cookie NAME;` (default: round robin), `keepalive N;` and
//!   `keepalive_timeout TIME;` (idle pooled connections)
//! * `server`: `listen [HOST:]PORT [reuseport] [backlog=N] [default_server];`, `location PATH { }`
//! * `location` (and, inherited the way nginx does it, `server`/`http`): `proxy_pass`,
//!   `proxy_http_version`, `proxy_set_header`, `proxy_read_timeout`, `proxy_connect_timeout`,
//!   `proxy_send_timeout`, `keepalive_timeout` (the client side's), `client_body_timeout`,
//!   and (`http`/`server`) `client_header_timeout`
//!
//! Some directives are accepted but have no effect on ringway ("harmless"; each one produces a
//! warning in [`NginxConf::warnings`]): `user`, `pid`, `daemon`, `master_process`, `error_log`,
//! `access_log`, `log_format`, `server_name`, `sendfile`, `tcp_nopush`, `tcp_nodelay`,
//! `types_hash_max_size`, `default_type`, `gzip`, `server_tokens`,
//! `client_max_body_size`, `multi_accept`, `use`, `proxy_buffering`, `proxy_buffer_size`,
//! the `*_temp_path` directives,
//! `proxy_buffers`, `proxy_redirect` and `proxy_cache_bypass`.
//!
//! Everything else is an error that names the file and line ([`ConfError`]): unknown
//! directives, wrong argument counts, a missing `;`, unbalanced braces, a directive in the wrong
//! block, malformed numbers/sizes/durations, a `proxy_pass` that names neither an upstream nor a
//! `host:port`, two balancing methods in one upstream, an upstream without servers, etc.
//! `include` is always refused: ringway does not follow includes, so the content has to be
//! pasted into the file.
//!
//! The lexer follows nginx: bare words, `'single'` and `"double"` quoted strings with backslash
//! escapes (`\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other `\x` is kept as is), `#` comments to
//! the end of the line, and `;`, `{`, `}`. Numbers use nginx syntax: times are `500ms`, `10s`,
//! `5m`, `1h`, `1d`, ... (a plain number means seconds, parts combine as in `1m30s`), sizes
//! are `N`, `Nk`, `Nm`, `Ng`.
//!
//! Parsing happens in two steps: the token stream becomes a generic directive tree (name,
//! arguments, optional block, line), which is then checked and turned into a typed
//! [`NginxConf`]. No input makes the parser panic.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Appended to the "unknown directive" error so users know why a valid nginx directive fails.
const SUBSET_HINT: &str = "(ringway reads a subset of nginx.conf; see README)";

/// Blocks nested deeper than this are rejected (the subset never needs more than 4 levels).
const MAX_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

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
    /// `upstream NAME { ... }` blocks of the `http` block, in file order.
    pub upstreams: Vec<Upstream>,
    /// `server { ... }` blocks of the `http` block, in file order.
    pub servers: Vec<Server>,
    /// `map $source $variable { ... }` blocks of the `http` block, in file order.
    pub maps: Vec<Map>,
    /// Non-fatal remarks, each formatted as `FILE:LINE: text`, e.g.
    /// `nginx.conf:12: ignoring harmless directive 'server_name'`.
    pub warnings: Vec<String>,
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
pub struct Upstream {
    /// The upstream's name, as referenced by `proxy_pass http://NAME`.
    pub name: String,
    /// Its `server` lines, in file order (never empty).
    pub servers: Vec<UpstreamServer>,
    /// The balancing method (round robin when none is given).
    pub balance: Balance,
    /// `keepalive N;`: idle upstream connections cached per worker.
    pub keepalive: Option<usize>,
    /// `keepalive_timeout TIME;` inside the upstream: how long a cached connection may idle,
    /// in milliseconds.
    pub keepalive_timeout_ms: Option<u64>,
    /// Line of the `upstream` directive.
    pub line: usize,
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
}

/// Load-balancing method of an upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Balance {
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
pub struct Server {
    /// Its `listen` directives (a server without any listens on `0.0.0.0:80`, like nginx).
    pub listen: Vec<Listen>,
    /// Its `location` blocks, in file order.
    pub locations: Vec<Location>,
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
}

/// A `location PATH { ... }` block, with the proxy settings it inherits from its `server` and
/// `http` blocks already merged in (nginx semantics: each value inherits separately, and
/// `proxy_set_header` lines are inherited only when the location has none of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The prefix path, e.g. `/` or `/socket.io/` (`location ^~ /p` is read as `/p`).
    pub path: String,
    /// `proxy_pass` target: the name of an upstream when one by that name exists, otherwise a
    /// normalized `host:port`. The `http://` prefix is stripped.
    pub proxy_pass: Option<String>,
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
}

/// A configuration error, pointing at a file and line.
///
/// Displays as `FILE:LINE: MESSAGE`, e.g.
/// `nginx.conf:12: unknown directive "gzip_foo" (ringway reads a subset of nginx.conf; see README)`,
/// or `FILE: MESSAGE` when `line` is 0 (the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file name as given to [`parse_str`] / [`parse_file`].
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

/// Parses nginx.conf text. `file_name` is only used in error and warning messages.
pub fn parse_str(src: &str, file_name: &str) -> Result<NginxConf, ConfError> {
    let tokens = lex(src, file_name)?;
    let last_line = src.lines().count().max(1);
    let mut tree = TreeParser {
        toks: &tokens,
        pos: 0,
        file: file_name,
        last_line,
    };
    let root = tree.block(0, None)?;
    let mut b = Builder {
        file: file_name,
        conf: NginxConf::default(),
    };
    b.main_ctx(&root)?;
    Ok(b.conf)
}

/// Reads and parses an nginx.conf file. Messages name the file as `path` displays.
pub fn parse_file(path: &Path) -> Result<NginxConf, ConfError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfError {
        file: name.clone(),
        line: 0,
        msg: format!("cannot read configuration file: {e}"),
    })?;
    match String::from_utf8(bytes) {
        Ok(src) => parse_str(&src, &name),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = e
                .as_bytes()
                .get(..valid)
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
                + 1;
            Err(ConfError {
                file: name,
                line,
                msg: "the file is not valid UTF-8".to_string(),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Appends the unescaped form of `\c` (nginx rules: unknown escapes keep the backslash).
fn push_escape(out: &mut String, c: char) {
    match c {
        '"' | '\'' | '\\' => out.push(c),
        't' => out.push('\t'),
        'r' => out.push('\r'),
        'n' => out.push('\n'),
        _ => {
            out.push('\\');
            out.push(c);
        }
    }
}

fn lex(src: &str, file: &str) -> Result<Vec<Token>, ConfError> {
    let err = |line: usize, msg: String| ConfError {
        file: file.to_string(),
        line,
        msg,
    };
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    while let Some(&c) = chars.get(i) {
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                while chars.get(i).is_some_and(|&ch| ch != '\n') {
                    i += 1;
                }
            }
            ';' | '{' | '}' => {
                let tok = match c {
                    ';' => Tok::Semi,
                    '{' => Tok::Open,
                    _ => Tok::Close,
                };
                toks.push(Token { tok, line });
                i += 1;
            }
            '"' | '\'' => {
                let start = line;
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err(
                            start,
                            format!(
                                "unexpected end of file, expecting closing {c} \
                                 (quoted string opened on line {start})"
                            ),
                        ));
                    };
                    i += 1;
                    if ch == c {
                        break;
                    }
                    if ch == '\n' {
                        line += 1;
                    }
                    if ch == '\\' {
                        if let Some(&next) = chars.get(i) {
                            if next == '\n' {
                                line += 1;
                            }
                            push_escape(&mut text, next);
                            i += 1;
                            continue;
                        }
                    }
                    text.push(ch);
                }
                if let Some(&next) = chars.get(i) {
                    if !is_space(next) && !matches!(next, ';' | '{' | '}') {
                        return Err(err(
                            line,
                            format!("unexpected \"{next}\" after quoted string"),
                        ));
                    }
                }
                toks.push(Token {
                    tok: Tok::Word(text),
                    line: start,
                });
            }
            _ => {
                let start = line;
                let mut text = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch == '{' && text.ends_with('$') {
                        // `${name}` variable syntax: the braces belong to the word.
                        text.push(ch);
                        i += 1;
                        loop {
                            match chars.get(i) {
                                Some(&'}') => {
                                    text.push('}');
                                    i += 1;
                                    break;
                                }
                                Some(&v) if !is_space(v) && v != ';' && v != '{' => {
                                    text.push(v);
                                    i += 1;
                                }
                                _ => {
                                    return Err(err(
                                        line,
                                        format!(
                                            "the closing bracket in \"{text}\" variable is missing"
                                        ),
                                    ))
                                }
                            }
                        }
                        continue;
                    }
                    if is_space(ch) || matches!(ch, ';' | '{' | '}') {
                        break;
                    }
                    i += 1;
                    if ch == '\\' {
                        if let Some(&next) = chars.get(i) {
                            if next == '\n' {
                                line += 1;
                            }
                            push_escape(&mut text, next);
                            i += 1;
                            continue;
                        }
                    }
                    text.push(ch);
                }
                toks.push(Token {
                    tok: Tok::Word(text),
                    line: start,
                });
            }
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------------------------------------
// Generic directive tree
// ---------------------------------------------------------------------------------------------

/// One directive: `name args... ;` or `name args... { block }`.
#[derive(Debug, Clone)]
struct Directive {
    name: String,
    args: Vec<String>,
    /// Line of each argument (used to point at a missing `;`).
    arg_lines: Vec<usize>,
    block: Option<Vec<Directive>>,
    line: usize,
}

impl Directive {
    fn new(words: Vec<(String, usize)>, block: Option<Vec<Directive>>) -> Directive {
        let mut it = words.into_iter();
        let (name, line) = it.next().unwrap_or_default();
        let (args, arg_lines) = it.unzip();
        Directive {
            name,
            args,
            arg_lines,
            block,
            line,
        }
    }

    fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }

    fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// `" (missing \";\" at the end of line N?)"` when the arguments spill over onto a later
    /// line, else `""`.
    fn semicolon_hint(&self) -> String {
        match self.missing_semicolon_line() {
            Some(l) => format!(" (missing \";\" at the end of line {l}?)"),
            None => String::new(),
        }
    }

    /// If the arguments spill over onto a later line, the line where a `;` is probably missing.
    fn missing_semicolon_line(&self) -> Option<usize> {
        let mut prev = self.line;
        for &l in &self.arg_lines {
            if l > prev {
                return Some(prev);
            }
            prev = l;
        }
        None
    }
}

struct TreeParser<'a> {
    toks: &'a [Token],
    pos: usize,
    file: &'a str,
    last_line: usize,
}

impl TreeParser<'_> {
    fn err(&self, line: usize, msg: String) -> ConfError {
        ConfError {
            file: self.file.to_string(),
            line,
            msg,
        }
    }

    /// Parses directives until the matching `}` (or end of input at top level).
    /// `opener` is the name and line of the directive that opened this block.
    fn block(
        &mut self,
        depth: usize,
        opener: Option<(&str, usize)>,
    ) -> Result<Vec<Directive>, ConfError> {
        let mut out = Vec::new();
        let mut words: Vec<(String, usize)> = Vec::new();
        loop {
            let Some(tok) = self.toks.get(self.pos) else {
                if let (Some((name, _)), Some((_, last))) = (words.first(), words.last()) {
                    return Err(self.err(
                        *last,
                        format!(
                            "unexpected end of file, expecting \";\" or \"{{\" \
                             after directive \"{name}\""
                        ),
                    ));
                }
                if let Some((name, line)) = opener {
                    return Err(self.err(
                        self.last_line,
                        format!(
                            "unexpected end of file, expecting \"}}\" \
                             (block \"{name}\" opened on line {line} is not closed)"
                        ),
                    ));
                }
                return Ok(out);
            };
            self.pos += 1;
            match &tok.tok {
                Tok::Word(w) => words.push((w.clone(), tok.line)),
                Tok::Semi => {
                    if words.is_empty() {
                        return Err(self.err(tok.line, "unexpected \";\"".to_string()));
                    }
                    out.push(Directive::new(std::mem::take(&mut words), None));
                }
                Tok::Open => {
                    let Some((name, line)) = words.first().cloned() else {
                        return Err(self.err(tok.line, "unexpected \"{\"".to_string()));
                    };
                    if depth >= MAX_DEPTH {
                        return Err(self.err(tok.line, "blocks are nested too deeply".to_string()));
                    }
                    let inner = self.block(depth + 1, Some((&name, line)))?;
                    out.push(Directive::new(std::mem::take(&mut words), Some(inner)));
                }
                Tok::Close => {
                    if let (Some((name, _)), Some((_, last))) = (words.first(), words.last()) {
                        return Err(self.err(
                            *last,
                            format!("unexpected \"}}\": missing \";\" after directive \"{name}\"?"),
                        ));
                    }
                    if opener.is_none() {
                        return Err(self.err(
                            tok.line,
                            "unexpected \"}\" (no open block to close)".to_string(),
                        ));
                    }
                    return Ok(out);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Directive table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Main,
    Events,
    Http,
    Upstream,
    Server,
    Location,
}

impl Ctx {
    fn describe(self) -> &'static str {
        match self {
            Ctx::Main => "the top level",
            Ctx::Events => "events",
            Ctx::Http => "http",
            Ctx::Upstream => "upstream",
            Ctx::Server => "server",
            Ctx::Location => "location",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Args {
    Exact(usize),
    Range(usize, usize),
    AtLeast(usize),
    /// Exactly one argument, `on` or `off`.
    Flag,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    ctxs: &'static [Ctx],
    args: Args,
    block: bool,
    harmless: bool,
}

const MAIN: &[Ctx] = &[Ctx::Main];
const EVENTS: &[Ctx] = &[Ctx::Events];
const HTTP: &[Ctx] = &[Ctx::Http];
const UPSTREAM: &[Ctx] = &[Ctx::Upstream];
const SERVER: &[Ctx] = &[Ctx::Server];
const LOCATION: &[Ctx] = &[Ctx::Location];
const HSL: &[Ctx] = &[Ctx::Http, Ctx::Server, Ctx::Location];
const HSLU: &[Ctx] = &[Ctx::Http, Ctx::Server, Ctx::Location, Ctx::Upstream];
const MHSL: &[Ctx] = &[Ctx::Main, Ctx::Http, Ctx::Server, Ctx::Location];
const HTTP_UPSTREAM: &[Ctx] = &[Ctx::Http, Ctx::Upstream];
const HS: &[Ctx] = &[Ctx::Http, Ctx::Server];

fn spec_for(name: &str, ctx: Ctx) -> Option<Spec> {
    let known = |ctxs, args, block| Spec {
        ctxs,
        args,
        block,
        harmless: false,
    };
    let harmless = |ctxs, args| Spec {
        ctxs,
        args,
        block: false,
        harmless: true,
    };
    use Args::*;
    Some(match name {
        "worker_processes" | "worker_rlimit_nofile" | "ringway_worker_mode" => {
            known(MAIN, Exact(1), false)
        }
        "events" | "http" => known(MAIN, Exact(0), true),
        "worker_connections" => known(EVENTS, Exact(1), false),
        "map" => known(HTTP, Exact(2), true),
        "upstream" => known(HTTP, Exact(1), true),
        "server" if ctx == Ctx::Upstream => known(UPSTREAM, AtLeast(1), false),
        "server" => known(HTTP_UPSTREAM, Exact(0), true),
        "least_conn" | "ip_hash" => known(UPSTREAM, Exact(0), false),
        "hash" => known(UPSTREAM, Range(1, 2), false),
        "sticky" => known(UPSTREAM, AtLeast(2), false),
        "keepalive" => known(UPSTREAM, Exact(1), false),
        "listen" => known(SERVER, AtLeast(1), false),
        "location" => known(SERVER, Range(1, 2), true),
        "proxy_pass" => known(LOCATION, Exact(1), false),
        "proxy_http_version" => known(HSL, Exact(1), false),
        "proxy_set_header" => known(HSL, Exact(2), false),
        "proxy_read_timeout" | "proxy_connect_timeout" | "proxy_send_timeout" => {
            known(HSL, Exact(1), false)
        }
        "keepalive_timeout" => known(HSLU, Range(1, 2), false),
        "client_body_timeout" => known(HSL, Exact(1), false),
        "client_header_timeout" => known(HS, Exact(1), false),
        // Harmless: accepted, warned about, otherwise ignored.
        "user" => harmless(MAIN, Range(1, 2)),
        "pid" => harmless(MAIN, Exact(1)),
        "daemon" | "master_process" => harmless(MAIN, Flag),
        "error_log" => harmless(MHSL, AtLeast(1)),
        "access_log" => harmless(HSL, AtLeast(1)),
        "log_format" => harmless(HTTP, AtLeast(2)),
        "server_name" => harmless(SERVER, AtLeast(1)),
        "sendfile" | "tcp_nopush" | "tcp_nodelay" | "gzip" | "proxy_buffering" => {
            harmless(HSL, Flag)
        }
        "server_tokens"
        | "types_hash_max_size"
        | "default_type"
        | "client_max_body_size"
        | "proxy_buffer_size" => harmless(HSL, Exact(1)),
        "proxy_buffers" => harmless(HSL, Exact(2)),
        "proxy_redirect" => harmless(HSL, Range(1, 2)),
        "proxy_cache_bypass" => harmless(HSL, AtLeast(1)),
        // Where nginx keeps request bodies and buffered responses: ringway buffers neither.
        "client_body_temp_path"
        | "proxy_temp_path"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path" => harmless(HSL, Range(1, 4)),
        "multi_accept" => harmless(EVENTS, Flag),
        "use" => harmless(EVENTS, Exact(1)),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Value parsers (nginx syntax)
// ---------------------------------------------------------------------------------------------

/// Plain decimal digits only (no sign, no spaces), overflow-checked.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// nginx size syntax: `N`, `Nk`/`NK`, `Nm`/`NM`, `Ng`/`NG` (powers of 1024), in bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1u64 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    parse_u64(num)?.checked_mul(mult)
}

/// nginx time syntax in milliseconds: `500ms`, `10s`, `5m`, `1h`, `1d`, `1w`, `1M` (30 days),
/// `1y` (365 days), combinable in decreasing order (`1h 30m`, `1m30s`); a plain number (or a
/// trailing plain number) means seconds.
fn parse_time_ms(s: &str) -> Option<u64> {
    const SEC: u64 = 1000;
    let b = s.as_bytes();
    let mut i = 0;
    let mut total = 0u64;
    let mut last_rank = u8::MAX;
    let mut any = false;
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let value = parse_u64(s.get(start..i)?)?;
        let (mult, rank, len) = match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => (1, 1, 2),
            (Some(b'y'), _) => (365 * 86_400 * SEC, 9, 1),
            (Some(b'M'), _) => (30 * 86_400 * SEC, 8, 1),
            (Some(b'w'), _) => (7 * 86_400 * SEC, 7, 1),
            (Some(b'd'), _) => (86_400 * SEC, 6, 1),
            (Some(b'h'), _) => (3_600 * SEC, 5, 1),
            (Some(b'm'), _) => (60 * SEC, 4, 1),
            (Some(b's'), _) => (SEC, 3, 1),
            (None | Some(b' '), _) => (SEC, 2, 0),
            _ => return None,
        };
        if rank >= last_rank || (rank == 2 && last_rank <= 3) {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(value.checked_mul(mult)?)?;
        i += len;
        any = true;
    }
    any.then_some(total)
}

/// Parses `host:port`, `[v6]:port`, `host`, or (when `default_host` is given, i.e. for
/// `listen`) a bare `port`, returning the normalized `host:port`.
fn parse_host_port(
    s: &str,
    default_host: Option<&str>,
    default_port: Option<u16>,
) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty address".to_string());
    }
    if s.starts_with("unix:") {
        return Err(format!(
            "\"{s}\": unix domain sockets are not supported, use host:port"
        ));
    }
    let digits = s.bytes().all(|b| b.is_ascii_digit());
    let (host, port): (String, Option<&str>) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("\"{s}\": missing \"]\" in IPv6 address"));
        };
        let ip: Ipv6Addr = h
            .parse()
            .map_err(|_| format!("\"{s}\": invalid IPv6 address"))?;
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(format!("\"{s}\": unexpected text after \"]\""));
        };
        (format!("[{ip}]"), port)
    } else if digits {
        match default_host {
            Some(h) => (h.to_string(), Some(s)),
            None => return Err(format!("\"{s}\": missing host (write 127.0.0.1:{s})")),
        }
    } else if let Some((h, p)) = s.rsplit_once(':') {
        if h.contains(':') {
            return Err(format!(
                "\"{s}\": IPv6 addresses must be written in brackets, e.g. [::1]:8080"
            ));
        }
        (h.to_string(), Some(p))
    } else {
        (s.to_string(), None)
    };
    let host = if host == "*" {
        match default_host {
            Some(h) => h.to_string(),
            None => return Err(format!("\"{s}\": \"*\" is only allowed in listen")),
        }
    } else {
        host
    };
    if !host.starts_with('[') {
        if host.is_empty() {
            return Err(format!("\"{s}\": missing host"));
        }
        let ipv4_like = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if ipv4_like && host.parse::<Ipv4Addr>().is_err() {
            return Err(format!("\"{s}\": invalid IPv4 address"));
        }
        let name_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !name_ok {
            return Err(format!("\"{s}\": invalid host \"{host}\""));
        }
    }
    let port = match port {
        Some(p) => match parse_u64(p) {
            Some(n @ 1..=65535) => n,
            _ => return Err(format!("\"{s}\": invalid port \"{p}\"")),
        },
        None => match default_port {
            Some(p) => u64::from(p),
            None => return Err(format!("\"{s}\": missing port")),
        },
    };
    Ok(format!("{host}:{port}"))
}

// ---------------------------------------------------------------------------------------------
// Typed builder
// ---------------------------------------------------------------------------------------------

/// Proxy settings of one level (http, server or location) before inheritance.
#[derive(Debug, Clone, Default)]
struct Proxy {
    pass: Option<(String, usize)>,
    http_version: Option<String>,
    headers: Option<Vec<(String, String)>>,
    read: Option<u64>,
    connect: Option<u64>,
    send: Option<u64>,
    keepalive: Option<u64>,
    body: Option<u64>,
    header: Option<u64>,
}

impl Proxy {
    /// nginx merge rules: unset values come from the enclosing level; `proxy_set_header`
    /// lines are inherited as a whole only when this level has none.
    fn inherit(&mut self, parent: &Proxy) {
        if self.http_version.is_none() {
            self.http_version.clone_from(&parent.http_version);
        }
        if self.headers.is_none() {
            self.headers.clone_from(&parent.headers);
        }
        self.read = self.read.or(parent.read);
        self.connect = self.connect.or(parent.connect);
        self.send = self.send.or(parent.send);
        self.keepalive = self.keepalive.or(parent.keepalive);
        self.body = self.body.or(parent.body);
        self.header = self.header.or(parent.header);
    }
}

struct RawLocation {
    path: String,
    line: usize,
    proxy: Proxy,
}

struct RawServer {
    listen: Vec<Listen>,
    locations: Vec<RawLocation>,
    proxy: Proxy,
    line: usize,
}

struct Builder<'a> {
    file: &'a str,
    conf: NginxConf,
}

type Res<T> = Result<T, ConfError>;

impl Builder<'_> {
    fn err(&self, line: usize, msg: impl Into<String>) -> ConfError {
        ConfError {
            file: self.file.to_string(),
            line,
            msg: msg.into(),
        }
    }

    fn warn(&mut self, line: usize, msg: &str) {
        let w = format!("{}:{}: {}", self.file, line, msg);
        self.conf.warnings.push(w);
    }

    fn duplicate(&self, d: &Directive) -> ConfError {
        self.err(d.line, format!("\"{}\" directive is duplicate", d.name))
    }

    /// Checks that `d` is a known directive allowed in `ctx` with the right shape.
    fn check(&self, d: &Directive, ctx: Ctx) -> Res<Spec> {
        if d.name == "include" {
            return Err(self.err(
                d.line,
                format!(
                    "\"include {}\" is refused: ringway does not follow includes; \
                     inline the content of the included file here",
                    d.args.join(" ")
                ),
            ));
        }
        let Some(spec) = spec_for(&d.name, ctx) else {
            return Err(self.err(
                d.line,
                format!("unknown directive \"{}\" {SUBSET_HINT}", d.name),
            ));
        };
        if !spec.ctxs.contains(&ctx) {
            let allowed: Vec<&str> = spec.ctxs.iter().map(|c| c.describe()).collect();
            return Err(self.err(
                d.line,
                format!(
                    "\"{}\" directive is not allowed in {} (it belongs in {})",
                    d.name,
                    ctx.describe(),
                    allowed.join(" or ")
                ),
            ));
        }
        if spec.block && d.block.is_none() {
            return Err(self.err(
                d.line,
                format!("directive \"{}\" has no opening \"{{\"", d.name),
            ));
        }
        if !spec.block && d.block.is_some() {
            return Err(self.err(
                d.line,
                format!("directive \"{}\" is not terminated by \";\"", d.name),
            ));
        }
        let n = d.args.len();
        let ok = match spec.args {
            Args::Exact(k) => n == k,
            Args::Range(lo, hi) => (lo..=hi).contains(&n),
            Args::AtLeast(k) => n >= k,
            Args::Flag => n == 1,
        };
        if !ok {
            let hint = d.semicolon_hint();
            return Err(self.err(
                d.line,
                format!(
                    "invalid number of arguments in \"{}\" directive{hint}",
                    d.name
                ),
            ));
        }
        if matches!(spec.args, Args::Flag) && !matches!(d.arg(0), "on" | "off") {
            return Err(self.err(
                d.line,
                format!(
                    "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                    d.arg(0),
                    d.name
                ),
            ));
        }
        Ok(spec)
    }

    /// Validates what is cheap to validate in a harmless directive, then warns about it.
    fn harmless(&mut self, d: &Directive) -> Res<()> {
        match d.name.as_str() {
            "client_max_body_size" | "proxy_buffer_size" | "types_hash_max_size" => {
                self.size(d, d.arg(0))?;
            }
            "proxy_buffers" => {
                self.number(d, d.arg(0))?;
                self.size(d, d.arg(1))?;
            }
            _ => {}
        }
        self.warn(d.line, &format!("ignoring harmless directive '{}'", d.name));
        Ok(())
    }

    fn number(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_u64(s).ok_or_else(|| {
            self.err(
                d.line,
                format!("invalid number \"{s}\" in \"{}\" directive", d.name),
            )
        })
    }

    /// A number `>= 1` that fits in `T`.
    fn positive<T: TryFrom<u64>>(&self, d: &Directive, s: &str) -> Res<T> {
        match parse_u64(s) {
            Some(n) if n >= 1 => T::try_from(n).map_err(|_| {
                self.err(
                    d.line,
                    format!("number \"{s}\" is too large in \"{}\" directive", d.name),
                )
            }),
            Some(_) => Err(self.err(
                d.line,
                format!("\"{}\" must be at least 1, not \"{s}\"", d.name),
            )),
            None => Err(self.err(
                d.line,
                format!("invalid number \"{s}\" in \"{}\" directive", d.name),
            )),
        }
    }

    fn size(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_size(s).ok_or_else(|| {
            self.err(
                d.line,
                format!(
                    "invalid size \"{s}\" in \"{}\" directive (use nginx syntax: 512, 16k, 1m)",
                    d.name
                ),
            )
        })
    }

    fn time(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_time_ms(s).ok_or_else(|| {
            self.err(
                d.line,
                format!(
                    "invalid time \"{s}\" in \"{}\" directive \
                     (use nginx syntax: 500ms, 10s, 5m, 1h; a plain number means seconds)",
                    d.name
                ),
            )
        })
    }

    fn main_ctx(&mut self, dirs: &[Directive]) -> Res<()> {
        let mut seen_events = false;
        let mut seen_http = false;
        for d in dirs {
            if self.check(d, Ctx::Main)?.harmless {
                self.harmless(d)?;
                continue;
            }
            match d.name.as_str() {
                "worker_processes" => {
                    if self.conf.worker_processes.is_some() {
                        return Err(self.duplicate(d));
                    }
                    let v = match d.arg(0) {
                        "auto" => WorkerProcesses::Auto,
                        s => WorkerProcesses::N(self.positive(d, s)?),
                    };
                    self.conf.worker_processes = Some(v);
                }
                "ringway_worker_mode" => {
                    if self.conf.process_mode.is_some() {
                        return Err(self.duplicate(d));
                    }
                    self.conf.process_mode = Some(match d.arg(0) {
                        "process" => true,
                        "thread" => false,
                        other => {
                            return Err(ConfError {
                                file: self.file.to_string(),
                                line: d.line,
                                msg: format!(
                                    "ringway_worker_mode \"{other}\": write thread or process"
                                ),
                            })
                        }
                    });
                }
                "worker_rlimit_nofile" => {
                    if self.conf.worker_rlimit_nofile.is_some() {
                        return Err(self.duplicate(d));
                    }
                    self.conf.worker_rlimit_nofile = Some(self.positive(d, d.arg(0))?);
                }
                "events" => {
                    if std::mem::replace(&mut seen_events, true) {
                        return Err(self.duplicate(d));
                    }
                    self.events_ctx(d.children())?;
                }
                "http" => {
                    if std::mem::replace(&mut seen_http, true) {
                        return Err(self.duplicate(d));
                    }
                    self.http_ctx(d.children())?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn events_ctx(&mut self, dirs: &[Directive]) -> Res<()> {
        for d in dirs {
            if self.check(d, Ctx::Events)?.harmless {
                self.harmless(d)?;
                continue;
            }
            if d.name == "worker_connections" {
                if self.conf.worker_connections.is_some() {
                    return Err(self.duplicate(d));
                }
                self.conf.worker_connections = Some(self.positive(d, d.arg(0))?);
            }
        }
        Ok(())
    }

    fn http_ctx(&mut self, dirs: &[Directive]) -> Res<()> {
        let mut proxy = Proxy::default();
        let mut raw_servers = Vec::new();
        for d in dirs {
            if self.check(d, Ctx::Http)?.harmless {
                self.harmless(d)?;
                continue;
            }
            match d.name.as_str() {
                "map" => {
                    let m = self.map(d)?;
                    if let Some(prev) = self.conf.maps.iter().find(|p| p.variable == m.variable) {
                        return Err(self.err(
                            d.line,
                            format!(
                                "variable \"{}\" is already defined by the map on line {}",
                                m.variable, prev.line
                            ),
                        ));
                    }
                    self.conf.maps.push(m);
                }
                "upstream" => {
                    let u = self.upstream(d)?;
                    if let Some(prev) = self.conf.upstreams.iter().find(|p| p.name == u.name) {
                        return Err(self.err(
                            d.line,
                            format!(
                                "duplicate upstream \"{}\" (first defined on line {})",
                                u.name, prev.line
                            ),
                        ));
                    }
                    self.conf.upstreams.push(u);
                }
                "server" => raw_servers.push(self.server(d)?),
                _ => self.proxy_directive(d, &mut proxy)?,
            }
        }
        // Inherit and resolve now that every upstream (wherever it appears) is known.
        for rs in raw_servers {
            let mut locations = Vec::with_capacity(rs.locations.len());
            for mut rl in rs.locations {
                rl.proxy.inherit(&rs.proxy);
                rl.proxy.inherit(&proxy);
                let proxy_pass = match &rl.proxy.pass {
                    Some((raw, line)) => Some(self.resolve_pass(raw, *line, &rl.path)?),
                    None => None,
                };
                locations.push(Location {
                    path: rl.path,
                    proxy_pass,
                    proxy_http_version: rl.proxy.http_version,
                    set_headers: rl.proxy.headers.unwrap_or_default(),
                    read_timeout_ms: rl.proxy.read,
                    connect_timeout_ms: rl.proxy.connect,
                    send_timeout_ms: rl.proxy.send,
                    keepalive_timeout_ms: rl.proxy.keepalive,
                    client_body_timeout_ms: rl.proxy.body,
                    client_header_timeout_ms: rl.proxy.header,
                    line: rl.line,
                });
            }
            self.conf.servers.push(Server {
                listen: rs.listen,
                locations,
                line: rs.line,
            });
        }
        Ok(())
    }

    fn map(&mut self, d: &Directive) -> Res<Map> {
        let variable = d.arg(1).to_string();
        if variable.len() < 2 || !variable.starts_with('$') {
            return Err(self.err(
                d.line,
                format!("invalid map variable \"{variable}\" (it must look like $name)"),
            ));
        }
        let mut m = Map {
            source: d.arg(0).to_string(),
            variable,
            entries: Vec::new(),
            default: None,
            line: d.line,
        };
        for e in d.children() {
            if e.name == "include" {
                self.check(e, Ctx::Http)?;
            }
            if e.block.is_some() {
                return Err(self.err(e.line, "unexpected \"{\" in map".to_string()));
            }
            match (e.name.as_str(), e.args.len()) {
                ("hostnames" | "volatile", 0) => {
                    self.warn(e.line, &format!("ignoring map parameter '{}'", e.name));
                }
                ("default", 1) => {
                    if m.default.is_some() {
                        return Err(self.err(e.line, "duplicate \"default\" in map"));
                    }
                    m.default = Some(e.arg(0).to_string());
                }
                (key, 1) => {
                    if m.entries.iter().any(|(k, _)| k == key) {
                        return Err(self.err(e.line, format!("duplicate map key \"{key}\"")));
                    }
                    m.entries.push((key.to_string(), e.arg(0).to_string()));
                }
                (key, _) => {
                    return Err(self.err(
                        e.line,
                        format!("invalid map entry \"{key}\": expected \"KEY VALUE;\""),
                    ))
                }
            }
        }
        Ok(m)
    }

    fn upstream(&mut self, d: &Directive) -> Res<Upstream> {
        let mut u = Upstream {
            name: d.arg(0).to_string(),
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            keepalive: None,
            keepalive_timeout_ms: None,
            line: d.line,
        };
        let mut balance_line: Option<usize> = None;
        for c in d.children() {
            if self.check(c, Ctx::Upstream)?.harmless {
                self.harmless(c)?;
                continue;
            }
            let balance = match c.name.as_str() {
                "server" => {
                    let s = self.upstream_server(c)?;
                    u.servers.push(s);
                    continue;
                }
                "keepalive" => {
                    if u.keepalive.is_some() {
                        return Err(self.duplicate(c));
                    }
                    u.keepalive = Some(self.positive(c, c.arg(0))?);
                    continue;
                }
                "keepalive_timeout" => {
                    if u.keepalive_timeout_ms.is_some() {
                        return Err(self.duplicate(c));
                    }
                    u.keepalive_timeout_ms = Some(self.time(c, c.arg(0))?);
                    continue;
                }
                "least_conn" => Balance::LeastConn,
                "ip_hash" => Balance::IpHash,
                "hash" => {
                    let consistent = match c.args.get(1).map(String::as_str) {
                        None => false,
                        Some("consistent") => true,
                        Some(other) => {
                            return Err(self.err(
                                c.line,
                                format!("invalid parameter \"{other}\" in \"hash\" directive"),
                            ))
                        }
                    };
                    Balance::Hash {
                        key: c.arg(0).to_string(),
                        consistent,
                    }
                }
                "sticky" => self.sticky(c)?,
                _ => continue,
            };
            if let Some(prev) = balance_line {
                return Err(self.err(
                    c.line,
                    format!(
                        "\"{}\": upstream \"{}\" already has a load balancing method \
                         (line {prev}); use only one",
                        c.name, u.name
                    ),
                ));
            }
            balance_line = Some(c.line);
            u.balance = balance;
        }
        if u.servers.is_empty() {
            return Err(self.err(
                d.line,
                format!("no servers are inside upstream \"{}\"", u.name),
            ));
        }
        if matches!(u.balance, Balance::IpHash | Balance::Hash { .. }) {
            if let Some(s) = u.servers.iter().find(|s| s.backup) {
                return Err(self.err(
                    s.line,
                    "\"backup\" cannot be used with ip_hash or hash balancing".to_string(),
                ));
            }
        }
        Ok(u)
    }

    fn sticky(&mut self, c: &Directive) -> Res<Balance> {
        if c.arg(0) != "cookie" {
            return Err(self.err(
                c.line,
                format!(
                    "unsupported sticky method \"{}\": only \"sticky cookie NAME;\" is supported",
                    c.arg(0)
                ),
            ));
        }
        let name = c.arg(1);
        let token_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !token_ok {
            return Err(self.err(c.line, format!("invalid cookie name \"{name}\"")));
        }
        for extra in c.args.iter().skip(2) {
            self.warn(
                c.line,
                &format!("ignoring sticky cookie parameter '{extra}'"),
            );
        }
        Ok(Balance::StickyCookie {
            name: name.to_string(),
        })
    }

    fn upstream_server(&self, c: &Directive) -> Res<UpstreamServer> {
        let addr = parse_host_port(c.arg(0), None, Some(80))
            .map_err(|e| self.err(c.line, format!("invalid upstream server address {e}")))?;
        let mut s = UpstreamServer {
            addr,
            weight: 1,
            max_fails: None,
            fail_timeout_ms: None,
            backup: false,
            down: false,
            line: c.line,
        };
        for p in c.args.iter().skip(1) {
            if p == "backup" {
                s.backup = true;
            } else if p == "down" {
                s.down = true;
            } else if let Some(v) = p.strip_prefix("weight=") {
                s.weight = self.positive(c, v)?;
            } else if let Some(v) = p.strip_prefix("max_fails=") {
                let n = self.number(c, v)?;
                s.max_fails = Some(u32::try_from(n).map_err(|_| {
                    self.err(c.line, format!("max_fails value \"{v}\" is too large"))
                })?);
            } else if let Some(v) = p.strip_prefix("fail_timeout=") {
                s.fail_timeout_ms = Some(self.time(c, v)?);
            } else {
                return Err(self.err(
                    c.line,
                    format!(
                        "invalid parameter \"{p}\" in upstream \"server\" (supported: weight=, \
                         max_fails=, fail_timeout=, backup, down){}",
                        c.semicolon_hint()
                    ),
                ));
            }
        }
        Ok(s)
    }

    fn server(&mut self, d: &Directive) -> Res<RawServer> {
        let mut rs = RawServer {
            listen: Vec::new(),
            locations: Vec::new(),
            proxy: Proxy::default(),
            line: d.line,
        };
        for c in d.children() {
            if self.check(c, Ctx::Server)?.harmless {
                self.harmless(c)?;
                continue;
            }
            match c.name.as_str() {
                "listen" => {
                    let l = self.listen(c)?;
                    if rs.listen.iter().any(|p| p.addr == l.addr) {
                        return Err(self.err(
                            c.line,
                            format!("duplicate listen {} in the same server", l.addr),
                        ));
                    }
                    rs.listen.push(l);
                }
                "location" => {
                    let l = self.location(c)?;
                    if let Some(prev) = rs.locations.iter().find(|p| p.path == l.path) {
                        return Err(self.err(
                            c.line,
                            format!(
                                "duplicate location \"{}\" (first defined on line {})",
                                l.path, prev.line
                            ),
                        ));
                    }
                    rs.locations.push(l);
                }
                _ => self.proxy_directive(c, &mut rs.proxy)?,
            }
        }
        if rs.listen.is_empty() {
            self.warn(
                d.line,
                "server block has no \"listen\"; using 0.0.0.0:80 like nginx",
            );
            rs.listen.push(Listen {
                addr: "0.0.0.0:80".to_string(),
                backlog: None,
                reuseport: false,
            });
        }
        Ok(rs)
    }

    fn listen(&mut self, c: &Directive) -> Res<Listen> {
        let addr = parse_host_port(c.arg(0), Some("0.0.0.0"), Some(80))
            .map_err(|e| self.err(c.line, format!("invalid listen address {e}")))?;
        let mut l = Listen {
            addr,
            backlog: None,
            reuseport: false,
        };
        for p in c.args.iter().skip(1) {
            if p == "reuseport" {
                l.reuseport = true;
            } else if let Some(v) = p.strip_prefix("backlog=") {
                l.backlog = Some(self.positive(c, v)?);
            } else if p == "default_server" || p == "default" {
                self.warn(c.line, &format!("ignoring listen parameter '{p}'"));
            } else if matches!(p.as_str(), "ssl" | "http2" | "quic" | "proxy_protocol") {
                return Err(self.err(
                    c.line,
                    format!("listen parameter \"{p}\" is not supported by ringway"),
                ));
            } else {
                return Err(self.err(
                    c.line,
                    format!(
                        "invalid parameter \"{p}\" in \"listen\" directive (supported: \
                         reuseport, backlog=N, default_server){}",
                        c.semicolon_hint()
                    ),
                ));
            }
        }
        Ok(l)
    }

    fn location(&mut self, d: &Directive) -> Res<RawLocation> {
        let path = if d.args.len() == 2 {
            match d.arg(0) {
                "^~" => d.arg(1),
                m @ ("=" | "~" | "~*") => {
                    return Err(self.err(
                        d.line,
                        format!(
                            "location modifier \"{m}\" is not supported \
                             (ringway matches plain path prefixes only)"
                        ),
                    ))
                }
                m => return Err(self.err(d.line, format!("invalid location modifier \"{m}\""))),
            }
        } else {
            d.arg(0)
        };
        if !path.starts_with('/') {
            return Err(self.err(
                d.line,
                format!(
                    "unsupported location \"{path}\" (ringway supports prefix locations \
                     starting with \"/\")"
                ),
            ));
        }
        let mut rl = RawLocation {
            path: path.to_string(),
            line: d.line,
            proxy: Proxy::default(),
        };
        for c in d.children() {
            if self.check(c, Ctx::Location)?.harmless {
                self.harmless(c)?;
                continue;
            }
            self.proxy_directive(c, &mut rl.proxy)?;
        }
        Ok(rl)
    }

    /// Handles the `proxy_*` directives that the table allowed in the current context.
    fn proxy_directive(&self, d: &Directive, p: &mut Proxy) -> Res<()> {
        let dup = |set: bool| if set { Err(self.duplicate(d)) } else { Ok(()) };
        match d.name.as_str() {
            "proxy_pass" => {
                dup(p.pass.is_some())?;
                p.pass = Some((d.arg(0).to_string(), d.line));
            }
            "proxy_http_version" => {
                dup(p.http_version.is_some())?;
                let v = d.arg(0);
                if v != "1.0" && v != "1.1" {
                    return Err(self.err(
                        d.line,
                        format!("invalid proxy_http_version \"{v}\" (use 1.0 or 1.1)"),
                    ));
                }
                p.http_version = Some(v.to_string());
            }
            "proxy_set_header" => {
                let name = d.arg(0);
                let name_ok =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !name_ok {
                    return Err(self.err(d.line, format!("invalid header name \"{name}\"")));
                }
                p.headers
                    .get_or_insert_with(Vec::new)
                    .push((name.to_string(), d.arg(1).to_string()));
            }
            "proxy_read_timeout" => {
                dup(p.read.is_some())?;
                p.read = Some(self.time(d, d.arg(0))?);
            }
            "proxy_connect_timeout" => {
                dup(p.connect.is_some())?;
                p.connect = Some(self.time(d, d.arg(0))?);
            }
            "proxy_send_timeout" => {
                dup(p.send.is_some())?;
                p.send = Some(self.time(d, d.arg(0))?);
            }
            "keepalive_timeout" => {
                // The optional second argument (a Keep-Alive response header) is checked
                // and not sent.
                dup(p.keepalive.is_some())?;
                p.keepalive = Some(self.time(d, d.arg(0))?);
                if let Some(h) = d.args.get(1) {
                    self.time(d, h)?;
                }
            }
            "client_body_timeout" => {
                dup(p.body.is_some())?;
                p.body = Some(self.time(d, d.arg(0))?);
            }
            "client_header_timeout" => {
                dup(p.header.is_some())?;
                p.header = Some(self.time(d, d.arg(0))?);
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns a `proxy_pass` argument into an upstream name or a normalized `host:port`.
    fn resolve_pass(&self, raw: &str, line: usize, loc_path: &str) -> Res<String> {
        if raw.contains('$') {
            return Err(self.err(
                line,
                format!("proxy_pass \"{raw}\": variables in proxy_pass are not supported"),
            ));
        }
        let rest = if raw.len() >= 7
            && raw
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
        {
            raw.get(7..).unwrap_or("")
        } else if let Some((scheme, _)) = raw.split_once("://") {
            return Err(self.err(
                line,
                format!(
                    "proxy_pass \"{raw}\": scheme \"{scheme}://\" is not supported, use http://"
                ),
            ));
        } else {
            raw
        };
        let (auth, uri) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if auth.is_empty() {
            return Err(self.err(
                line,
                format!("proxy_pass \"{raw}\": missing upstream or host"),
            ));
        }
        let uri_ok = uri.is_empty() || (uri == "/" && loc_path == "/");
        if !uri_ok {
            return Err(self.err(
                line,
                format!(
                    "proxy_pass \"{raw}\": a URI part (\"{uri}\") is not supported; \
                     write \"proxy_pass http://{auth};\""
                ),
            ));
        }
        if self.conf.upstreams.iter().any(|u| u.name == auth) {
            return Ok(auth.to_string());
        }
        parse_host_port(auth, None, None).map_err(|_| {
            self.err(
                line,
                format!(
                    "proxy_pass \"{raw}\": there is no upstream \"{auth}\" and it is not a \
                     host:port address"
                ),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"worker_processes 1;            # or auto
worker_rlimit_nofile 20000;
events { worker_connections 1024; }
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream nodes {
        least_conn;
        server 127.0.0.1:9001;
        server 127.0.0.1:9002 max_fails=3 fail_timeout=10s weight=1;
        keepalive 32;
    }
    server {
        listen 8080;
        server_name _;
        location / {
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
        }
    }
}
"#;

    fn ok(src: &str) -> NginxConf {
        match parse_str(src, "nginx.conf") {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn err(src: &str) -> ConfError {
        match parse_str(src, "nginx.conf") {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts an error on `line` whose message contains `needle`.
    fn err_at(src: &str, line: usize, needle: &str) {
        let e = err(src);
        assert_eq!(e.line, line, "wrong line for: {e}");
        assert!(e.msg.contains(needle), "{e:?} does not contain {needle:?}");
    }

    /// Wraps location-level directives into a minimal valid config (location on line 4).
    fn in_location(body: &str) -> String {
        format!(
            "http {{\n upstream u {{ server 10.0.0.1:80; }}\n server {{ listen 80;\n  \
             location / {{\n{body}\n  }}\n }}\n}}\n"
        )
    }

    fn hdr(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn seed_config_exact() {
        let c = ok(SEED);
        let expected = NginxConf {
            worker_processes: Some(WorkerProcesses::N(1)),
            worker_connections: Some(1024),
            worker_rlimit_nofile: Some(20000),
            process_mode: None,
            upstreams: vec![Upstream {
                name: "nodes".into(),
                servers: vec![
                    UpstreamServer {
                        addr: "127.0.0.1:9001".into(),
                        weight: 1,
                        max_fails: None,
                        fail_timeout_ms: None,
                        backup: false,
                        down: false,
                        line: 8,
                    },
                    UpstreamServer {
                        addr: "127.0.0.1:9002".into(),
                        weight: 1,
                        max_fails: Some(3),
                        fail_timeout_ms: Some(10_000),
                        backup: false,
                        down: false,
                        line: 9,
                    },
                ],
                balance: Balance::LeastConn,
                keepalive: Some(32),
                keepalive_timeout_ms: None,
                line: 6,
            }],
            servers: vec![Server {
                listen: vec![Listen {
                    addr: "0.0.0.0:8080".into(),
                    backlog: None,
                    reuseport: false,
                }],
                locations: vec![Location {
                    path: "/".into(),
                    proxy_pass: Some("nodes".into()),
                    proxy_http_version: Some("1.1".into()),
                    set_headers: hdr(&[
                        ("Upgrade", "$http_upgrade"),
                        ("Connection", "$connection_upgrade"),
                        ("Host", "$host"),
                    ]),
                    read_timeout_ms: Some(60_000),
                    connect_timeout_ms: Some(5_000),
                    send_timeout_ms: Some(60_000),
                    keepalive_timeout_ms: None,
                    client_body_timeout_ms: None,
                    client_header_timeout_ms: None,
                    line: 15,
                }],
                line: 12,
            }],
            maps: vec![Map {
                source: "$http_upgrade".into(),
                variable: "$connection_upgrade".into(),
                entries: hdr(&[("", "close")]),
                default: Some("upgrade".into()),
                line: 5,
            }],
            warnings: vec!["nginx.conf:14: ignoring harmless directive 'server_name'".into()],
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn comments_are_ignored() {
        let c = ok("# leading comment\n\
                    worker_processes 2; # trailing ; { } comment\n\
                    #events { worker_connections 1; }\n\
                    events { # comment after brace\n  worker_connections 7;#no space\n}\n");
        assert_eq!(c.worker_processes, Some(WorkerProcesses::N(2)));
        assert_eq!(c.worker_connections, Some(7));
        // `#` inside a word or a quoted string is not a comment.
        let c = ok(&in_location(
            "proxy_set_header X-A a#b;\nproxy_set_header X-B \"c # d\";",
        ));
        assert_eq!(
            c.servers[0].locations[0].set_headers,
            hdr(&[("X-A", "a#b"), ("X-B", "c # d")])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let c = ok(&in_location(
            r#"proxy_set_header "X-Dq" "say \"hi\" \\ ok";
proxy_set_header 'X-Sq' 'it\'s; {fine}';
proxy_set_header X-Ctl "a\tb\nc";
proxy_set_header X-Other "\d\$";
proxy_set_header X-Empty '';
proxy_set_header X-Bare semi\;colon;"#,
        ));
        assert_eq!(
            c.servers[0].locations[0].set_headers,
            hdr(&[
                ("X-Dq", "say \"hi\" \\ ok"),
                ("X-Sq", "it's; {fine}"),
                ("X-Ctl", "a\tb\nc"),
                ("X-Other", "\\d\\$"),
                ("X-Empty", ""),
                ("X-Bare", "semi\\;colon"),
            ])
        );
        // A multi-line quoted string still counts lines.
        err_at(
            "pid \"a\nb\nc\";\nbogus;\n",
            4,
            "unknown directive \"bogus\"",
        );
        err_at("pid 'abc;\n", 1, "expecting closing '");
        err_at("pid \"a\"b;\n", 1, "after quoted string");
    }

    #[test]
    fn include_is_refused() {
        let e = err("http {\n    include mime.types;\n}\n");
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "nginx.conf:2: \"include mime.types\" is refused: ringway does not follow \
             includes; inline the content of the included file here"
        );
        err_at(
            "include /etc/nginx/conf.d/*.conf;",
            1,
            "does not follow includes",
        );
        err_at(
            "http {\n map $a $b {\n  include m.conf;\n }\n}",
            3,
            "does not follow includes",
        );
        err_at(
            &in_location("include proxy_params;"),
            5,
            "does not follow includes",
        );
    }

    #[test]
    fn every_directive_of_the_subset() {
        let c = ok(r#"
worker_processes auto;
worker_rlimit_nofile 65536;
events {
    worker_connections 4096;
}
http {
    proxy_read_timeout 2m;
    proxy_set_header X-Http 1;
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
        websocket upgrade;
    }
    upstream rr { server a.example:81 weight=3; server 10.0.0.2 backup; server [::1]:82 down; }
    upstream lc { least_conn; server 10.0.0.1:1; keepalive 8; }
    upstream ih { ip_hash; server 10.0.0.1:1; }
    upstream hc { hash $remote_addr consistent; server 10.0.0.1:1; }
    upstream h { hash $request_uri; server 10.0.0.1:1; }
    upstream st { sticky cookie srv_id; server 10.0.0.1:1; server 10.0.0.2:1; }
    server {
        listen 127.0.0.1:8080 reuseport backlog=4096;
        listen [::1]:8081;
        proxy_connect_timeout 750ms;
        location / {
            proxy_pass http://rr;
            proxy_send_timeout 1h;
        }
        location ^~ /direct/ {
            proxy_pass 10.1.2.3:9000;
            proxy_http_version 1.0;
            proxy_set_header X-Loc 2;
        }
    }
}
"#);
        assert_eq!(c.worker_processes, Some(WorkerProcesses::Auto));
        assert_eq!(c.worker_rlimit_nofile, Some(65536));
        assert_eq!(c.worker_connections, Some(4096));
        assert_eq!(c.maps.len(), 1);
        assert_eq!(
            c.maps[0].entries,
            hdr(&[("", "close"), ("websocket", "upgrade")])
        );
        let bal: Vec<(&str, &Balance)> = c
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), &u.balance))
            .collect();
        assert_eq!(
            bal,
            vec![
                ("rr", &Balance::RoundRobin),
                ("lc", &Balance::LeastConn),
                ("ih", &Balance::IpHash),
                (
                    "hc",
                    &Balance::Hash {
                        key: "$remote_addr".into(),
                        consistent: true
                    }
                ),
                (
                    "h",
                    &Balance::Hash {
                        key: "$request_uri".into(),
                        consistent: false
                    }
                ),
                (
                    "st",
                    &Balance::StickyCookie {
                        name: "srv_id".into()
                    }
                ),
            ]
        );
        let rr = &c.upstreams[0].servers;
        assert_eq!(rr[0].addr, "a.example:81");
        assert_eq!(rr[0].weight, 3);
        assert_eq!((rr[1].addr.as_str(), rr[1].backup), ("10.0.0.2:80", true));
        assert_eq!((rr[2].addr.as_str(), rr[2].down), ("[::1]:82", true));
        assert_eq!(c.upstreams[1].keepalive, Some(8));
        assert_eq!(c.upstreams[0].keepalive, None);

        let s = &c.servers[0];
        assert_eq!(
            s.listen,
            vec![
                Listen {
                    addr: "127.0.0.1:8080".into(),
                    backlog: Some(4096),
                    reuseport: true
                },
                Listen {
                    addr: "[::1]:8081".into(),
                    backlog: None,
                    reuseport: false
                },
            ]
        );
        // Inheritance: timeouts per value, headers only when the location has none.
        let root = &s.locations[0];
        assert_eq!(root.proxy_pass.as_deref(), Some("rr"));
        assert_eq!(root.read_timeout_ms, Some(120_000));
        assert_eq!(root.connect_timeout_ms, Some(750));
        assert_eq!(root.send_timeout_ms, Some(3_600_000));
        assert_eq!(root.proxy_http_version, None);
        assert_eq!(root.set_headers, hdr(&[("X-Http", "1")]));
        let direct = &s.locations[1];
        assert_eq!(direct.path, "/direct/");
        assert_eq!(direct.proxy_pass.as_deref(), Some("10.1.2.3:9000"));
        assert_eq!(direct.proxy_http_version.as_deref(), Some("1.0"));
        assert_eq!(direct.set_headers, hdr(&[("X-Loc", "2")]));
        assert_eq!(direct.send_timeout_ms, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn worker_processes_auto() {
        let c = ok("worker_processes auto;");
        assert_eq!(c.worker_processes, Some(WorkerProcesses::Auto));
        err_at("worker_processes 0;", 1, "at least 1");
        err_at("worker_processes many;", 1, "invalid number \"many\"");
    }

    #[test]
    fn listen_forms() {
        let listen = |arg: &str| {
            let c = ok(&format!("http {{ server {{ listen {arg}; }} }}"));
            c.servers[0].listen[0].clone()
        };
        assert_eq!(listen("8080").addr, "0.0.0.0:8080");
        assert_eq!(listen("*:8080").addr, "0.0.0.0:8080");
        assert_eq!(listen("127.0.0.1:8080").addr, "127.0.0.1:8080");
        assert_eq!(listen("127.0.0.1").addr, "127.0.0.1:80");
        assert_eq!(listen("[::1]:8080").addr, "[::1]:8080");
        assert_eq!(listen("[::]:8080").addr, "[::]:8080");
        assert_eq!(listen("localhost:3000").addr, "localhost:3000");
        assert_eq!(
            listen("8080 reuseport backlog=4096"),
            Listen {
                addr: "0.0.0.0:8080".into(),
                backlog: Some(4096),
                reuseport: true
            }
        );
        let c = ok("http {\n server {\n  listen 80 default_server;\n }\n}");
        assert_eq!(
            c.warnings,
            vec!["nginx.conf:3: ignoring listen parameter 'default_server'"]
        );
        let c = ok("http {\n server {\n }\n}");
        assert_eq!(c.servers[0].listen[0].addr, "0.0.0.0:80");
        assert_eq!(c.warnings.len(), 1);
        for (bad, needle) in [
            ("70000", "invalid port"),
            ("0", "invalid port"),
            ("1.2.3:80", "invalid IPv4"),
            ("::1:80", "brackets"),
            ("[::1", "missing \"]\""),
            ("[zz]:80", "invalid IPv6"),
            ("unix:/tmp/s", "unix domain sockets"),
            ("80 ssl", "not supported"),
            ("80 backlog=x", "invalid number"),
            ("80 fastopen=3", "invalid parameter"),
        ] {
            err_at(
                &format!("http {{\n server {{\n  listen {bad};\n }}\n}}"),
                3,
                needle,
            );
        }
        err_at(
            "http {\n server {\n  listen 80;\n  listen 0.0.0.0:80;\n }\n}",
            4,
            "duplicate listen",
        );
    }

    #[test]
    fn hash_consistent_and_sticky_cookie() {
        let c = ok("http { upstream u { hash $remote_addr consistent; server 1.2.3.4:5; } }");
        assert_eq!(
            c.upstreams[0].balance,
            Balance::Hash {
                key: "$remote_addr".into(),
                consistent: true
            }
        );
        let c = ok("http { upstream u { sticky cookie srv_id; server 1.2.3.4:5; } }");
        assert_eq!(
            c.upstreams[0].balance,
            Balance::StickyCookie {
                name: "srv_id".into()
            }
        );
        let c =
            ok("http {\nupstream u {\nsticky cookie srv_id expires=1h;\nserver 1.2.3.4:5;\n}\n}");
        assert_eq!(
            c.warnings,
            vec!["nginx.conf:3: ignoring sticky cookie parameter 'expires=1h'"]
        );
        err_at(
            "http {\nupstream u {\nhash $remote_addr ketama;\nserver 1.2.3.4:5;\n}\n}",
            3,
            "invalid parameter \"ketama\"",
        );
        err_at(
            "http {\nupstream u {\nsticky route $x;\nserver 1.2.3.4:5;\n}\n}",
            3,
            "sticky cookie NAME",
        );
        err_at(
            "http {\nupstream u {\nsticky cookie a=b;\nserver 1.2.3.4:5;\n}\n}",
            3,
            "invalid cookie name",
        );
        err_at(
            "http {\nupstream u {\nip_hash;\nserver 1.2.3.4:5;\nserver 1.2.3.4:6 backup;\n}\n}",
            5,
            "backup",
        );
    }

    #[test]
    fn harmless_directives_warn() {
        let c = ok("user www-data;\n\
                    pid /run/nginx.pid;\n\
                    daemon off;\n\
                    master_process on;\n\
                    error_log /var/log/nginx/error.log warn;\n\
                    events {\n\
                    multi_accept on;\n\
                    use epoll;\n\
                    }\n\
                    http {\n\
                    sendfile on;\n\
                    tcp_nopush on;\n\
                    tcp_nodelay on;\n\
                    keepalive_timeout 65;\n\
                    types_hash_max_size 2048;\n\
                    default_type application/octet-stream;\n\
                    gzip on;\n\
                    log_format main '$remote_addr - $request';\n\
                    access_log /var/log/nginx/access.log main;\n\
                    server_tokens off;\n\
                    client_max_body_size 10m;\n\
                    server {\n\
                    listen 80;\n\
                    server_name example.com www.example.com;\n\
                    location / { proxy_buffering off; proxy_redirect off; \
                    proxy_cache_bypass $http_upgrade; proxy_buffer_size 16k; \
                    proxy_buffers 8 16k; }\n\
                    }\n\
                    }\n");
        let names = [
            (1, "user"),
            (2, "pid"),
            (3, "daemon"),
            (4, "master_process"),
            (5, "error_log"),
            (7, "multi_accept"),
            (8, "use"),
            (11, "sendfile"),
            (12, "tcp_nopush"),
            (13, "tcp_nodelay"),
            (15, "types_hash_max_size"),
            (16, "default_type"),
            (17, "gzip"),
            (18, "log_format"),
            (19, "access_log"),
            (20, "server_tokens"),
            (21, "client_max_body_size"),
            (24, "server_name"),
            (25, "proxy_buffering"),
            (25, "proxy_redirect"),
            (25, "proxy_cache_bypass"),
            (25, "proxy_buffer_size"),
            (25, "proxy_buffers"),
        ];
        let expected: Vec<String> = names
            .iter()
            .map(|(l, n)| format!("nginx.conf:{l}: ignoring harmless directive '{n}'"))
            .collect();
        assert_eq!(c.warnings, expected);
        // Harmless directives are still checked for context and values.
        err_at("server_name x;", 1, "not allowed in the top level");
        err_at(
            "http {\n sendfile maybe;\n}",
            2,
            "must be \"on\" or \"off\"",
        );
        err_at("http {\n client_max_body_size 10q;\n}", 2, "invalid size");
        err_at("http {\n keepalive_timeout 5x;\n}", 2, "invalid time");
        err_at(
            "http {\n server {\n location / {\n client_header_timeout 5s;\n }\n }\n}",
            4,
            "not allowed",
        );
    }

    #[test]
    fn error_lines_and_messages() {
        let e = err("http {\n\n    gzip_foo on;\n}\n");
        assert_eq!(
            e.to_string(),
            "nginx.conf:3: unknown directive \"gzip_foo\" (ringway reads a subset of \
             nginx.conf; see README)"
        );
        // Wrong context.
        err_at(
            "worker_processes 1;\nworker_connections 1024;\n",
            2,
            "\"worker_connections\" directive is not allowed in the top level (it belongs in events)",
        );
        err_at(
            "events {\n}\nhttp {\n listen 80;\n}",
            4,
            "not allowed in http",
        );
        err_at(
            "http {\n server {\n  location / {\n   location /x { }\n  }\n }\n}",
            4,
            "not allowed in location",
        );
        err_at(
            "http {\n upstream u {\n  proxy_pass u;\n }\n}",
            3,
            "not allowed",
        );
        // Wrong argument count.
        err_at(
            "worker_processes;",
            1,
            "invalid number of arguments in \"worker_processes\"",
        );
        err_at(
            "\n\nworker_processes 1 2;",
            3,
            "invalid number of arguments",
        );
        // Missing `;`: directive swallows the next line.
        err_at(
            &in_location("proxy_http_version 1.1\nproxy_set_header Upgrade $http_upgrade;"),
            5,
            "missing \";\" at the end of line 5",
        );
        // Missing `;` before `}`.
        err_at(
            &in_location("proxy_pass http://u"),
            5,
            "missing \";\" after directive \"proxy_pass\"",
        );
        // Missing `;` at end of file.
        err_at("worker_processes 1\n", 1, "unexpected end of file");
        err_at(
            "http {\n server {\n  listen 8080\n  server_name _;\n }\n}",
            3,
            "missing \";\" at the end of line 3",
        );
        // Missing `;` before a block.
        err_at(
            "worker_processes 1\nevents { }\n",
            1,
            "is not terminated by \";\"",
        );
        // Block directive without block.
        err_at("events;", 1, "has no opening \"{\"");
        // Unbalanced braces.
        err_at(
            "events {\n worker_connections 1;\n\nhttp {\n}\n",
            5,
            "opened on line 1",
        );
        err_at("events {\n}\n}\n", 3, "unexpected \"}\"");
        err_at("\n;\n", 2, "unexpected \";\"");
        err_at("{ }", 1, "unexpected \"{\"");
        // Bad numbers and durations.
        err_at(
            "events {\n worker_connections -5;\n}",
            2,
            "invalid number \"-5\"",
        );
        err_at(
            "events {\n worker_connections 99999999999999999999999;\n}",
            2,
            "invalid number",
        );
        err_at("worker_rlimit_nofile 1k;", 1, "invalid number \"1k\"");
        err_at(
            &in_location("proxy_read_timeout 10x;"),
            5,
            "invalid time \"10x\"",
        );
        err_at(&in_location("proxy_read_timeout 5s1m;"), 5, "invalid time");
        err_at(
            &in_location("proxy_http_version 2;"),
            5,
            "proxy_http_version",
        );
        err_at(
            "http {\n upstream u {\n  server 1.2.3.4:5 weight=0;\n }\n}",
            3,
            "at least 1",
        );
        err_at(
            "http {\n upstream u {\n  server 1.2.3.4:5 fail_timeout=ten;\n }\n}",
            3,
            "invalid time",
        );
        err_at(
            "http {\n upstream u {\n  server 1.2.3.4:5 slow_start=1s;\n }\n}",
            3,
            "invalid parameter \"slow_start=1s\"",
        );
        err_at(
            "http {\n upstream u {\n  server 9001;\n }\n}",
            3,
            "missing host",
        );
        // proxy_pass to nothing.
        err_at(
            &in_location("proxy_pass http://nodes;"),
            5,
            "there is no upstream \"nodes\" and it is not a host:port",
        );
        err_at(&in_location("proxy_pass https://u;"), 5, "https");
        err_at(&in_location("proxy_pass http://u/api/;"), 5, "URI part");
        err_at(&in_location("proxy_pass http://$host;"), 5, "variables");
        err_at(
            &in_location("proxy_pass http://u;\nproxy_pass http://u;"),
            6,
            "duplicate",
        );
        // Two balancing methods, empty upstream, duplicates.
        err_at(
            "http {\n upstream u {\n  least_conn;\n  ip_hash;\n  server 1.2.3.4:5;\n }\n}",
            4,
            "already has a load balancing method (line 3)",
        );
        err_at(
            "http {\n\n upstream empty {\n }\n}",
            3,
            "no servers are inside upstream \"empty\"",
        );
        err_at(
            "http {\n upstream u { server 1.1.1.1:1; }\n upstream u { server 1.1.1.1:1; }\n}",
            3,
            "duplicate upstream",
        );
        err_at("worker_processes 1;\nworker_processes 2;", 2, "duplicate");
        err_at("http {\n}\nhttp {\n}", 3, "duplicate");
        err_at(
            "http {\n server {\n  location / { }\n  location / { }\n }\n}",
            4,
            "duplicate location",
        );
        err_at(
            "http {\n server {\n  location ~ \\.php$ { }\n }\n}",
            3,
            "not supported",
        );
        err_at(
            "http {\n server {\n  location @named { }\n }\n}",
            3,
            "prefix locations",
        );
        err_at("http {\n map $a b { }\n}", 2, "invalid map variable");
        err_at(
            "http {\n map $a $b {\n  x y z;\n }\n}",
            3,
            "invalid map entry",
        );
        err_at(
            "http {\n map $a $b {\n  x y;\n  x z;\n }\n}",
            4,
            "duplicate map key",
        );
    }

    #[test]
    fn proxy_pass_forms() {
        let pass = |arg: &str| {
            ok(&in_location(&format!("proxy_pass {arg};"))).servers[0].locations[0]
                .proxy_pass
                .clone()
        };
        assert_eq!(pass("http://u").as_deref(), Some("u"));
        assert_eq!(pass("u").as_deref(), Some("u"));
        assert_eq!(pass("http://u/").as_deref(), Some("u"));
        assert_eq!(
            pass("HTTP://127.0.0.1:9000").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(pass("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(
            pass("http://backend.local:9000").as_deref(),
            Some("backend.local:9000")
        );
        // An upstream defined after the server that uses it is fine.
        let c = ok(
            "http {\n server { listen 1; location / { proxy_pass http://late; } }\n \
                    upstream late { server 1.1.1.1:1; }\n}",
        );
        assert_eq!(
            c.servers[0].locations[0].proxy_pass.as_deref(),
            Some("late")
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_time_ms("500ms"), Some(500));
        assert_eq!(parse_time_ms("10s"), Some(10_000));
        assert_eq!(parse_time_ms("5m"), Some(300_000));
        assert_eq!(parse_time_ms("1h"), Some(3_600_000));
        assert_eq!(parse_time_ms("60"), Some(60_000));
        assert_eq!(parse_time_ms("1d"), Some(86_400_000));
        assert_eq!(parse_time_ms("1h 30m"), Some(5_400_000));
        assert_eq!(parse_time_ms("1m30s"), Some(90_000));
        assert_eq!(parse_time_ms("1m30"), Some(90_000));
        assert_eq!(parse_time_ms("0"), Some(0));
        for bad in [
            "",
            " ",
            "s",
            "10x",
            "-1s",
            "1s1s",
            "1s 1m",
            "5 5",
            "1.5s",
            "99999999999y",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("16k"), Some(16 << 10));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "1kb", "-1", "1 k"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
    }

    #[test]
    fn parse_file_works_and_reports_io_errors() {
        let dir = std::env::temp_dir().join(format!("ringway-ngxconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nginx.conf");
        std::fs::write(&path, SEED).unwrap();
        let c = parse_file(&path).unwrap();
        assert_eq!(c.upstreams[0].name, "nodes");
        assert!(c.warnings[0].starts_with(&format!("{}:14: ", path.display())));
        std::fs::write(&path, b"pid x;\n\xff;\n").unwrap();
        assert_eq!(parse_file(&path).unwrap_err().line, 2);
        std::fs::remove_file(&path).unwrap();
        let e = parse_file(&path).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot read", path.display())));
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn garbage_and_truncated_inputs_do_not_panic() {
        // Every prefix of the seed config.
        for (i, _) in SEED.char_indices() {
            let _ = parse_str(&SEED[..i], "t");
        }
        // Hand-picked nasties.
        let deep = "a {".repeat(10_000);
        let nasties = [
            "",
            "\\",
            "'",
            "\"\\",
            "${",
            "a ${b",
            "a ${b c}",
            "}}}}",
            ";;;",
            "{{{{",
            deep.as_str(),
            "http { server { listen [; } }",
            "http { server { listen :; } }",
            "http { server { listen [::]:; } }",
            "http { server { location / { proxy_pass http://; } } }",
            "http { server { location / { proxy_pass ://x; } } }",
            "http { server { location / { proxy_pass http://é:1; } } }",
            "http { upstream é { server é; } }",
            "http { map $é $é { é é; } }",
            "worker_processes \u{0};",
            "events { worker_connections 1ms; }",
            "http { server { location / { proxy_read_timeout 9999999999999999y; } } }",
        ];
        for n in nasties {
            let _ = parse_str(n, "t");
        }
        // Pseudo-random token soup.
        let alphabet: Vec<char> = "ab$:/[]{};#'\"\\ \n\t0189msé.=_-*".chars().collect();
        let words = [
            "http",
            "server",
            "upstream",
            "location",
            "listen",
            "map",
            "events",
            "proxy_pass",
            "hash",
            "sticky",
            "cookie",
            "least_conn",
            "keepalive",
            "worker_processes",
            "auto",
            "include",
            "default",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 80) as usize;
            let mut s = String::new();
            for _ in 0..len {
                let r = next();
                if r % 4 == 0 {
                    s.push_str(words[(r / 4) as usize % words.len()]);
                    s.push(' ');
                } else {
                    s.push(alphabet[(r / 4) as usize % alphabet.len()]);
                }
            }
            let _ = parse_str(&s, "t");
        }
    }
}

//! The typed builder: directive tree → [`NginxConf`], checking each directive against the
//! table and merging proxy settings down http → server → location the way nginx does.
//! The `upstream`, `server` and `map` blocks are built in the submodules of those names;
//! `ssl` the TLS directives; `report` holds the error, warning and value helpers (every
//! message names its file).

use std::cell::RefCell;
use std::rc::Rc;

use super::directives::{harmless_reason, spec_for, Args, Ctx, Spec, SUBSET_HINT};
use super::tree::Directive;
use super::{
    ConfError, Listen, Location, LocationMatch, NginxConf, ServerBlock, Ssl, WorkerProcesses,
};

mod map;
mod report;
mod server;
mod ssl;
mod upstream;

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
    underscores: Option<bool>,
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
        self.underscores = self.underscores.or(parent.underscores);
    }
}

struct RawLocation {
    path: String,
    kind: LocationMatch,
    line: usize,
    proxy: Proxy,
}

struct RawServer {
    listen: Vec<Listen>,
    server_names: Vec<String>,
    locations: Vec<RawLocation>,
    proxy: Proxy,
    ssl: Ssl,
    line: usize,
}

/// Builds the [`NginxConf`] of one configuration (its main file and what it includes).
pub(super) struct Builder<'a> {
    /// The main file's name, for messages about no directive in particular.
    main_file: &'a str,
    /// Line and file of the directive checked last and of the blocks around it, outermost
    /// first (index = nesting level): where `err` and `warn` look a line up.
    scope: RefCell<Vec<(usize, Rc<str>)>>,
    pub(super) conf: NginxConf,
}

type Res<T> = Result<T, ConfError>;

impl<'a> Builder<'a> {
    pub(super) fn new(main_file: &'a str) -> Builder<'a> {
        Builder {
            main_file,
            scope: RefCell::new(Vec::new()),
            conf: NginxConf::default(),
        }
    }
}

impl Builder<'_> {
    /// Checks that `d` is a known directive allowed in `ctx` with the right shape.
    fn check(&self, d: &Directive, ctx: Ctx) -> Res<Spec> {
        self.enter(d);
        let Some(spec) = spec_for(&d.name, ctx) else {
            return Err(self.err_in(d, format!("unknown directive \"{}\" {SUBSET_HINT}", d.name)));
        };
        if !spec.ctxs.contains(&ctx) {
            let allowed: Vec<&str> = spec.ctxs.iter().map(|c| c.describe()).collect();
            return Err(self.err_in(
                d,
                format!(
                    "\"{}\" directive is not allowed in {} (it belongs in {})",
                    d.name,
                    ctx.describe(),
                    allowed.join(" or ")
                ),
            ));
        }
        if spec.block && d.block.is_none() {
            return Err(self.err_in(d, format!("directive \"{}\" has no opening \"{{\"", d.name)));
        }
        if !spec.block && d.block.is_some() {
            return Err(self.err_in(
                d,
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
            return Err(self.err_in(
                d,
                format!(
                    "invalid number of arguments in \"{}\" directive{hint}",
                    d.name
                ),
            ));
        }
        if matches!(spec.args, Args::Flag) && !matches!(d.arg(0), "on" | "off") {
            return Err(self.err_in(
                d,
                format!(
                    "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                    d.arg(0),
                    d.name
                ),
            ));
        }
        Ok(spec)
    }

    /// Validates what is cheap to validate in a harmless directive, refuses the forms that
    /// are not harmless, then warns about it (and records it in [`NginxConf::ignored`]).
    fn harmless(&mut self, d: &Directive) -> Res<()> {
        match d.name.as_str() {
            "client_max_body_size" | "proxy_buffer_size" | "types_hash_max_size" => {
                self.size(d, d.arg(0))?;
            }
            "proxy_buffers" => {
                self.number(d, d.arg(0))?;
                self.size(d, d.arg(1))?;
            }
            "proxy_redirect" if d.args.len() == 2 => {
                return Err(self.err_in(
                    d,
                    format!(
                        "\"proxy_redirect {} {}\" is refused: ringway does not rewrite \
                         Location or Refresh headers; have the backend send the public URL, \
                         or remove the line",
                        d.arg(0),
                        d.arg(1)
                    ),
                ));
            }
            "proxy_redirect" if !matches!(d.arg(0), "off" | "default") => {
                return Err(self.err_in(
                    d,
                    format!(
                        "invalid value \"{}\" in \"proxy_redirect\" directive \
                         (off, default, or a REDIRECT REPLACEMENT pair)",
                        d.arg(0)
                    ),
                ));
            }
            _ => {}
        }
        let what = format!("harmless directive '{}'", d.name);
        self.ignore(d, &what, harmless_reason(&d.name));
        Ok(())
    }

    /// Builds from the top-level directives.
    pub(super) fn main_ctx(&mut self, dirs: &[Directive]) -> Res<()> {
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
                            return Err(self.err_in(
                                d,
                                format!("ringway_worker_mode \"{other}\": write thread or process"),
                            ))
                        }
                    });
                }
                "ringway_metrics" => {
                    if self.conf.observe.metrics.is_some() {
                        return Err(self.duplicate(d));
                    }
                    self.conf.observe.metrics = Some(d.arg(0).to_string());
                }
                "error_log" => {
                    if self.conf.observe.error_log.is_some() {
                        return Err(self.duplicate(d));
                    }
                    let level = d.args.get(1).cloned();
                    self.conf.observe.error_log = Some((d.arg(0).to_string(), level));
                }
                "pid" => {
                    if self.conf.pid.is_some() {
                        return Err(self.duplicate(d));
                    }
                    self.conf.pid = Some(d.arg(0).to_string());
                }
                "worker_shutdown_timeout" => {
                    if self.conf.worker_shutdown_timeout_ms.is_some() {
                        return Err(self.duplicate(d));
                    }
                    self.conf.worker_shutdown_timeout_ms = Some(self.time(d, d.arg(0))?);
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
        let mut ssl = Ssl::default();
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
                        return Err(self.err_in(
                            d,
                            format!(
                                "variable \"{}\" is already defined by the map on {}",
                                m.variable,
                                Self::at(d, &prev.file, prev.line)
                            ),
                        ));
                    }
                    self.conf.maps.push(m);
                }
                "upstream" => {
                    let u = self.upstream(d)?;
                    if let Some(prev) = self.conf.upstreams.iter().find(|p| p.name == u.name) {
                        return Err(self.err_in(
                            d,
                            format!(
                                "duplicate upstream \"{}\" (first defined on {})",
                                u.name,
                                Self::at(d, &prev.file, prev.line)
                            ),
                        ));
                    }
                    self.conf.upstreams.push(u);
                }
                "server" => raw_servers.push((self.server(d)?, d)),
                "access_log" => {
                    if self.conf.observe.access_log.is_some() {
                        return Err(self.duplicate(d));
                    }
                    let format = d.args.get(1).cloned();
                    self.conf.observe.access_log = Some((d.arg(0).to_string(), format));
                }
                n if n.starts_with("ssl") => self.ssl_directive(d, &mut ssl)?,
                _ => self.proxy_directive(d, &mut proxy)?,
            }
        }
        // Inherit and resolve now that every upstream (wherever it appears) is known.
        for (mut rs, sd) in raw_servers {
            rs.ssl.inherit(&ssl);
            let mut locations = Vec::with_capacity(rs.locations.len());
            for mut rl in rs.locations {
                rl.proxy.inherit(&rs.proxy);
                rl.proxy.inherit(&proxy);
                let (proxy_pass, pass_uri) = match &rl.proxy.pass {
                    Some((raw, line)) => {
                        // Messages about it name the proxy_pass line's file.
                        if let Some(pd) = find(sd, "proxy_pass", *line, raw) {
                            self.enter(pd);
                        }
                        let (target, uri) = self.resolve_pass(raw, *line, &rl.path, rl.kind)?;
                        (Some(target), uri)
                    }
                    None => (None, None),
                };
                locations.push(Location {
                    path: rl.path,
                    kind: rl.kind,
                    proxy_pass,
                    pass_uri,
                    proxy_http_version: rl.proxy.http_version,
                    set_headers: rl.proxy.headers.unwrap_or_default(),
                    read_timeout_ms: rl.proxy.read,
                    connect_timeout_ms: rl.proxy.connect,
                    send_timeout_ms: rl.proxy.send,
                    keepalive_timeout_ms: rl.proxy.keepalive,
                    client_body_timeout_ms: rl.proxy.body,
                    client_header_timeout_ms: rl.proxy.header,
                    underscores_in_headers: rl.proxy.underscores,
                    line: rl.line,
                });
            }
            self.conf.servers.push(ServerBlock {
                listen: rs.listen,
                server_names: rs.server_names,
                locations,
                ssl: rs.ssl,
                line: rs.line,
            });
        }
        Ok(())
    }
}

/// The directive `name` on `line` with first argument `arg` in `d`'s block (at any depth).
fn find<'d>(d: &'d Directive, name: &str, line: usize, arg: &str) -> Option<&'d Directive> {
    d.children().iter().find_map(|c| {
        if c.name == name && c.line == line && c.arg(0) == arg {
            Some(c)
        } else {
            find(c, name, line, arg)
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::nginx_conf::fixtures::*;
    use crate::nginx_conf::*;

    #[test]
    fn seed_config_exact() {
        let c = ok(SEED);
        let expected = NginxConf {
            worker_processes: Some(WorkerProcesses::N(1)),
            worker_connections: Some(1024),
            worker_rlimit_nofile: Some(20000),
            process_mode: None,
            pid: None,
            worker_shutdown_timeout_ms: None,
            observe: Default::default(),
            upstreams: vec![UpstreamBlock {
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
                        file: "nginx.conf".into(),
                    },
                    UpstreamServer {
                        addr: "127.0.0.1:9002".into(),
                        weight: 1,
                        max_fails: Some(3),
                        fail_timeout_ms: Some(10_000),
                        backup: false,
                        down: false,
                        line: 9,
                        file: "nginx.conf".into(),
                    },
                ],
                balance: BalanceDirective::LeastConn,
                keepalive: Some(32),
                keepalive_timeout_ms: None,
                health_check: None,
                line: 6,
                file: "nginx.conf".into(),
            }],
            servers: vec![ServerBlock {
                listen: vec![Listen {
                    addr: "0.0.0.0:8080".into(),
                    backlog: None,
                    reuseport: false,
                    default_server: false,
                    ssl: false,
                }],
                server_names: vec!["_".into()],
                locations: vec![Location {
                    path: "/".into(),
                    kind: LocationMatch::Prefix,
                    proxy_pass: Some("nodes".into()),
                    pass_uri: None,
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
                    underscores_in_headers: None,
                    line: 15,
                }],
                ssl: Default::default(),
                line: 12,
            }],
            maps: vec![Map {
                source: "$http_upgrade".into(),
                variable: "$connection_upgrade".into(),
                entries: hdr(&[("", "close")]),
                default: Some("upgrade".into()),
                line: 5,
                file: "nginx.conf".into(),
            }],
            ignored: vec![],
            warnings: vec![],
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn worker_processes_auto() {
        let c = ok("worker_processes auto;");
        assert_eq!(c.worker_processes, Some(WorkerProcesses::Auto));
        err_at("worker_processes 0;", 1, "at least 1");
        err_at("worker_processes many;", 1, "invalid number \"many\"");
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
        let bal: Vec<(&str, &BalanceDirective)> = c
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), &u.balance))
            .collect();
        assert_eq!(
            bal,
            vec![
                ("rr", &BalanceDirective::RoundRobin),
                ("lc", &BalanceDirective::LeastConn),
                ("ih", &BalanceDirective::IpHash),
                (
                    "hc",
                    &BalanceDirective::Hash {
                        key: "$remote_addr".into(),
                        consistent: true
                    }
                ),
                (
                    "h",
                    &BalanceDirective::Hash {
                        key: "$request_uri".into(),
                        consistent: false
                    }
                ),
                (
                    "st",
                    &BalanceDirective::StickyCookie {
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
                    reuseport: true,
                    default_server: false,
                    ssl: false,
                },
                Listen {
                    addr: "[::1]:8081".into(),
                    backlog: None,
                    reuseport: false,
                    default_server: false,
                    ssl: false,
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
}

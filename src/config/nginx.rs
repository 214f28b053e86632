//! nginx.conf (the parsed subset, [`NginxConf`]) → [`Config`]: the servers, their
//! locations and upstreams as a routing table, and nginx's defaults for what the file
//! leaves out.
//!
//! The first `server` block's `location /` (or its first location) is the primary route:
//! it fills the top-level [`Config`] fields (listen address, backends, balancing,
//! timeouts). A file with one server and that one location needs nothing more; any other
//! shape (several locations or servers, `=`/`^~`/regex locations, a `proxy_pass` URI,
//! several listen addresses) also gets a [`Routing`] table, which every request is
//! matched against.

use super::routing::{Group, HostTable, Locations, Matcher, Route, Routing, VirtualServer};
use super::{
    parse_addr, parse_hash_key, Balance, Config, HashKey, HealthCheck, ServerParams, SetHeader,
};
use crate::nginx_conf::{Location, LocationMatch, NginxConf};
use std::net::SocketAddr;
use std::time::Duration;

/// nginx's default for the proxy and client timeouts the file leaves out.
const NGINX_DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// Map an nginx.conf (the supported subset) onto a [`Config`].
pub fn from_nginx(conf: &NginxConf, file: &str) -> Result<(Config, Vec<String>), String> {
    use crate::nginx_conf::WorkerProcesses;
    let mut warnings = conf.warnings.clone();
    let server = conf
        .servers
        .first()
        .ok_or_else(|| format!("{file}: no `server {{ ... }}` block: ringway needs one with `listen` and `location / {{ proxy_pass ...; }}`"))?;
    for sv in &conf.servers {
        if sv.listen.is_empty() {
            return Err(format!("{file}:{}: server block has no listen", sv.line));
        }
        for loc in &sv.locations {
            if loc.proxy_pass.is_none() {
                return Err(format!(
                    "{file}:{}: location {} has no proxy_pass: ringway only proxies (it serves no files); add `proxy_pass http://UPSTREAM;` or remove the location",
                    loc.line, loc.path
                ));
            }
        }
        if sv.locations.is_empty() {
            warnings.push(format!(
                "{file}:{}: server block has no location: its requests are answered 404",
                sv.line
            ));
        }
    }
    let primary = server
        .locations
        .iter()
        .find(|l| l.path == "/" && l.kind == LocationMatch::Prefix)
        .or_else(|| server.locations.first())
        .ok_or_else(|| {
            format!(
                "{file}:{}: no location with proxy_pass in the server block",
                server.line
            )
        })?;
    let simple = conf.servers.len() == 1
        && server.locations.len() == 1
        && server.listen.len() == 1
        && primary.kind == LocationMatch::Prefix
        && primary.path == "/"
        && primary.pass_uri.is_none();

    // Upstream groups, in order of first use (the primary route's first).
    let mut upstreams: Vec<SocketAddr> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let group_index = |groups: &mut Vec<Group>,
                       target: &str,
                       upstreams: &mut Vec<SocketAddr>,
                       warnings: &mut Vec<String>,
                       line: usize|
     -> Result<usize, String> {
        if let Some(g) = groups.iter().position(|g| g.name == target) {
            return Ok(g);
        }
        let g = group(conf, file, target, line, upstreams, warnings)?;
        groups.push(g);
        Ok(groups.len() - 1)
    };
    let primary_group = group_index(
        &mut groups,
        primary.proxy_pass.as_deref().unwrap_or_default(),
        &mut upstreams,
        &mut warnings,
        primary.line,
    )?;
    let primary_route = route(primary, file, primary_group, &mut warnings);

    let mut cfg = Config::new(
        parse_addr(&server.listen[0].addr)
            .map_err(|e| format!("{file}:{}: listen: {e}", server.line))?,
        Vec::new(),
    );
    let g0 = &groups[primary_group];
    cfg.balance = g0.balance;
    cfg.keepalive = g0.keepalive;
    cfg.sticky_cookie = g0.sticky_cookie.clone();
    cfg.hash_key = g0.hash_key.clone();
    cfg.upstream_idle_timeout = g0.idle_timeout;
    cfg.set_headers = primary_route.set_headers.clone();
    cfg.read_timeout = primary_route.read_timeout;
    cfg.tunnel_idle_timeout = primary_route.tunnel_idle_timeout;
    cfg.connect_timeout = primary_route.connect_timeout;
    cfg.keepalive_timeout = primary_route.keepalive_timeout;
    cfg.body_timeout = primary_route.body_timeout;
    cfg.underscores_in_headers = primary_route.underscores_in_headers;
    cfg.head_timeout = Duration::from_millis(
        primary
            .client_header_timeout_ms
            .unwrap_or(NGINX_DEFAULT_TIMEOUT_MS),
    );

    cfg.servers = groups
        .iter()
        .flat_map(|g| g.servers.iter().copied())
        .collect();
    cfg.health_check = groups[primary_group].health_check.clone();
    if !simple {
        let mut routes = Vec::new();
        let mut servers = Vec::new();
        let mut listens: Vec<SocketAddr> = Vec::new();
        // Per listen address: its servers in file order, and its default_server.
        let mut on_listen: Vec<(Vec<usize>, Option<usize>)> = Vec::new();
        for (si, sv) in conf.servers.iter().enumerate() {
            let mut locations = Locations::default();
            for loc in &sv.locations {
                let target = loc.proxy_pass.as_deref().unwrap_or_default();
                let g = group_index(&mut groups, target, &mut upstreams, &mut warnings, loc.line)?;
                routes.push(route(loc, file, g, &mut warnings));
                locations.add(matcher(loc, file)?, routes.len() - 1);
            }
            for l in &sv.listen {
                let addr =
                    parse_addr(&l.addr).map_err(|e| format!("{file}:{}: listen: {e}", sv.line))?;
                let li = match listens.iter().position(|a| *a == addr) {
                    Some(i) => i,
                    None => {
                        listens.push(addr);
                        on_listen.push((Vec::new(), None));
                        listens.len() - 1
                    }
                };
                on_listen[li].0.push(si);
                if l.default_server {
                    if let Some(prev) = on_listen[li].1 {
                        return Err(format!(
                            "{file}:{}: a duplicate default server for {addr} (the first is the server on line {})",
                            sv.line, conf.servers[prev].line
                        ));
                    }
                    on_listen[li].1 = Some(si);
                }
            }
            servers.push(VirtualServer {
                name: format!("{file}:{}", sv.line),
                names: sv.server_names.clone(),
                locations,
            });
        }
        let hosts = on_listen
            .iter()
            .map(|(list, default)| HostTable::new(&servers, list, *default))
            .collect();
        cfg.routing = Some(std::sync::Arc::new(Routing {
            listens,
            hosts,
            servers,
            routes,
            groups: std::mem::take(&mut groups),
        }));
    }
    cfg.upstreams = upstreams;
    if let Some(r) = &cfg.routing {
        // Every group's servers, the ones the other locations added too.
        cfg.servers = r.servers();
    }
    cfg.workers = match conf.worker_processes {
        Some(WorkerProcesses::N(n)) => n,
        // nginx's compiled default is 1 worker.
        None => 1,
        Some(WorkerProcesses::Auto) => crate::sys::online_cpus(),
    };
    // nginx's compiled default is 512; the shipped nginx.conf says 1024.
    cfg.worker_connections = conf.worker_connections.unwrap_or(512);
    // nginx's default listen backlog on Linux is 511.
    cfg.backlog = server.listen[0].backlog.unwrap_or(511);
    cfg.rlimit_nofile = conf.worker_rlimit_nofile;
    cfg.process_mode = conf.process_mode.unwrap_or(false);
    cfg.pid_file = conf.pid.as_ref().map(std::path::PathBuf::from);
    cfg.shutdown_timeout = conf.worker_shutdown_timeout_ms.map(Duration::from_millis);
    observe(conf, file, &mut cfg, &mut warnings)?;
    cfg.tls = super::tls::from_nginx(conf, file)?;
    Ok((cfg, warnings))
}

/// `ringway_metrics`, `access_log`, `error_log` → the config.
fn observe(
    conf: &NginxConf,
    file: &str,
    cfg: &mut Config,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let o = &conf.observe;
    if let Some(m) = &o.metrics {
        cfg.metrics = Some(
            crate::config::parse_addr(m)
                .map_err(|e| format!("{file}: ringway_metrics {m}: {e}"))?,
        );
    }
    if let Some((path, format)) = &o.access_log {
        cfg.access_log = (path != "off").then(|| path.into());
        match format.as_deref().map(crate::access_log::Format::parse) {
            None => {}
            Some(Ok(f)) => cfg.access_format = f,
            Some(Err(_)) => warnings.push(format!(
                "{file}: access_log {path} {}: log_format is not supported; writing ringway's combined format (or write json)",
                format.as_deref().unwrap_or("")
            )),
        }
    }
    if let Some((path, level)) = &o.error_log {
        if path == "stderr" {
            cfg.error_log = None;
        } else {
            cfg.error_log = Some(path.into());
            cfg.error_level = crate::log::Level::Error;
        }
        if let Some(l) = level {
            cfg.error_level = crate::log::Level::parse(l).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    Ok(())
}

/// The group a `proxy_pass` target names: an upstream block, or one `host:port`. Its
/// backends are appended to `upstreams`.
fn group(
    conf: &NginxConf,
    file: &str,
    target: &str,
    line: usize,
    upstreams: &mut Vec<SocketAddr>,
    warnings: &mut Vec<String>,
) -> Result<Group, String> {
    use crate::nginx_conf::BalanceDirective as NB;
    let start = upstreams.len();
    let mut g = Group {
        name: target.to_string(),
        backends: start..start,
        balance: Balance::RoundRobin,
        hash_key: HashKey::RemoteAddr,
        sticky_cookie: None,
        // nginx keeps no upstream connection alive unless the upstream says `keepalive N;`.
        keepalive: 0,
        idle_timeout: Duration::from_millis(NGINX_DEFAULT_TIMEOUT_MS),
        servers: Vec::new(),
        health_check: None,
    };
    let Some(up) = conf.upstreams.iter().find(|u| u.name == target) else {
        upstreams.push(parse_addr(target).map_err(|e| format!("{file}:{line}: proxy_pass: {e}"))?);
        g.backends = start..upstreams.len();
        g.servers.push(ServerParams::default());
        return Ok(g);
    };
    for s in &up.servers {
        // `down` servers stay in the table (never used): the hashes of the others keep
        // their keys, as nginx's `down` promises.
        upstreams.push(parse_addr(&s.addr).map_err(|e| format!("{file}:{}: server: {e}", s.line))?);
        let d = ServerParams::default();
        g.servers.push(ServerParams {
            weight: s.weight.max(1),
            max_fails: s.max_fails.unwrap_or(d.max_fails),
            fail_timeout: s
                .fail_timeout_ms
                .map_or(d.fail_timeout, Duration::from_millis),
            backup: s.backup,
            down: s.down,
        });
    }
    if g.servers.iter().all(|s| s.down) {
        return Err(format!(
            "{}:{}: every server of upstream '{target}' is marked down",
            up.file, up.line
        ));
    }
    if let Some(h) = &up.health_check {
        let d = HealthCheck::new(&h.uri);
        g.health_check = Some(HealthCheck {
            path: h.uri.clone(),
            interval: h.interval_ms.map_or(d.interval, Duration::from_millis),
            fails: h.fails.unwrap_or(d.fails),
            passes: h.passes.unwrap_or(d.passes),
            upgrade: h.upgrade,
            timeout: h.timeout_ms.map_or(d.timeout, Duration::from_millis),
        });
    }
    g.balance = match &up.balance {
        NB::RoundRobin => Balance::RoundRobin,
        NB::LeastConn => Balance::LeastConn,
        NB::IpHash => Balance::IpHash,
        NB::Hash { key, consistent } => {
            g.hash_key =
                parse_hash_key(key).map_err(|e| format!("{}:{}: {e}", up.file, up.line))?;
            if !consistent {
                warnings.push(format!("{}:{}: `hash {key}` without `consistent`: ringway always uses a consistent (ketama) hash", up.file, up.line));
            }
            Balance::Hash
        }
        NB::StickyCookie { name } => {
            g.sticky_cookie = Some(name.clone());
            Balance::RoundRobin
        }
    };
    g.keepalive = up.keepalive.unwrap_or(0);
    if let Some(ms) = up.keepalive_timeout_ms {
        g.idle_timeout = Duration::from_millis(ms);
    }
    g.backends = start..upstreams.len();
    if g.backends.is_empty() {
        return Err(format!("{file}: upstream '{target}' has no usable server"));
    }
    Ok(g)
}

/// The route of location `loc`, served by group `group`: its headers and timeouts with
/// nginx's defaults.
fn route(loc: &Location, file: &str, group: usize, warnings: &mut Vec<String>) -> Route {
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
        match SetHeader::parse(name, value) {
            Ok(h) => set_headers.push(h),
            Err(e) => warnings.push(format!(
                "{file}:{}: proxy_set_header: {e}; ignored",
                loc.line
            )),
        }
    }
    if loc.send_timeout_ms.is_some() {
        warnings.push(format!(
            "{file}:{}: proxy_send_timeout is not enforced: a request body the backend stops reading is bounded by client_body_timeout, a tunnel by proxy_read_timeout",
            loc.line
        ));
    }
    if let Some(v) = &loc.proxy_http_version {
        if v != "1.1" {
            warnings.push(format!(
                "{file}:{}: proxy_http_version {v}: ringway always speaks HTTP/1.1 to backends",
                loc.line
            ));
        }
    }
    let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
    let read_timeout = ms(loc.read_timeout_ms, NGINX_DEFAULT_TIMEOUT_MS);
    let modifier = match loc.kind {
        LocationMatch::Prefix => "",
        LocationMatch::PrefixNoRegex => "^~ ",
        LocationMatch::Exact => "= ",
        LocationMatch::Regex {
            case_insensitive: false,
        } => "~ ",
        LocationMatch::Regex {
            case_insensitive: true,
        } => "~* ",
    };
    Route {
        name: format!("{file}:{}: location {modifier}{}", loc.line, loc.path),
        group,
        set_headers,
        connect_timeout: ms(loc.connect_timeout_ms, NGINX_DEFAULT_TIMEOUT_MS),
        read_timeout,
        // nginx applies proxy_read_timeout to upgraded connections too: an idle tunnel closes.
        tunnel_idle_timeout: Some(read_timeout),
        body_timeout: ms(loc.client_body_timeout_ms, NGINX_DEFAULT_TIMEOUT_MS),
        // nginx's default keepalive_timeout is 75 s.
        keepalive_timeout: ms(loc.keepalive_timeout_ms, 75_000),
        pass_uri: loc.pass_uri.as_ref().map(|u| (loc.path.clone(), u.clone())),
        underscores_in_headers: loc.underscores_in_headers.unwrap_or(false),
    }
}

/// How location `loc` matches.
fn matcher(loc: &Location, file: &str) -> Result<Matcher, String> {
    Ok(match loc.kind {
        LocationMatch::Exact => Matcher::Exact(loc.path.clone()),
        LocationMatch::Prefix => Matcher::Prefix {
            path: loc.path.clone(),
            stop: false,
        },
        LocationMatch::PrefixNoRegex => Matcher::Prefix {
            path: loc.path.clone(),
            stop: true,
        },
        LocationMatch::Regex { case_insensitive } => Matcher::Regex(
            regex::RegexBuilder::new(&loc.path)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| format!("{file}:{}: location {}: {e}", loc.line, loc.path))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, HashKey, TEST_SEED as SEED};
    use clap::Parser;

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
    fn metrics_and_log_directives() {
        let text = SEED
            .replace(
                "worker_processes 1;",
                "worker_processes 1;\nringway_metrics 127.0.0.1:9145;\nerror_log /tmp/e.log warn;",
            )
            .replace("http {", "http {\n access_log /tmp/a.log json;");
        let (c, w) = from_nginx(&crate::nginx_conf::parse_str(&text, "f").unwrap(), "f").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.metrics, Some("127.0.0.1:9145".parse().unwrap()));
        assert_eq!(c.access_log, Some("/tmp/a.log".into()));
        assert_eq!(c.access_format, crate::access_log::Format::Json);
        assert_eq!(c.error_log, Some("/tmp/e.log".into()));
        assert_eq!(c.error_level, crate::log::Level::Warn);
        // A log_format name: warned about, combined written; `off` is off.
        let text = SEED.replace("http {", "http {\n access_log off main;");
        let (c, w) = from_nginx(&crate::nginx_conf::parse_str(&text, "f").unwrap(), "f").unwrap();
        assert_eq!(c.access_log, None);
        assert!(w[0].contains("log_format is not supported"), "{w:?}");
        let bad = SEED.replace(
            "worker_processes 1;",
            "worker_processes 1;\nerror_log x loud;",
        );
        let e = from_nginx(&crate::nginx_conf::parse_str(&bad, "f").unwrap(), "f").unwrap_err();
        assert!(e.contains("unknown error log level \"loud\""), "{e}");
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
    fn server_parameters_and_health_check_from_the_file() {
        let conf = crate::nginx_conf::parse_str(
            &SEED.replace(
                "server 127.0.0.1:9001; server 127.0.0.1:9002;",
                "server 127.0.0.1:9001 weight=3 max_fails=2 fail_timeout=5s; server 127.0.0.1:9002 backup; server 127.0.0.1:9003 down; health_check uri=/hc interval=1s upgrade;",
            )
            .replace(" listen 127.0.0.1:8080;", " listen 127.0.0.1:8080; underscores_in_headers on;"),
            "nginx.conf",
        )
        .unwrap();
        let (c, w) = from_nginx(&conf, "nginx.conf").unwrap();
        assert!(w.is_empty(), "nothing is ignored any more: {w:?}");
        assert_eq!(c.upstreams.len(), 3, "a down server stays in the table");
        let s = c.server(0);
        assert_eq!(
            (s.weight, s.max_fails, s.fail_timeout),
            (3, 2, Duration::from_secs(5))
        );
        assert!(c.server(1).backup && c.server(2).down);
        let h = c.health_check.clone().unwrap();
        assert_eq!(
            (h.path.as_str(), h.interval, h.upgrade),
            ("/hc", Duration::from_secs(1), true)
        );
        assert!(c.underscores_in_headers);
        assert_eq!(c.routing().groups[0].servers, c.servers);
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
        assert_eq!(c.hash_key, HashKey::Header("x-user".into()));
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

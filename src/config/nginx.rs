//! nginx.conf (the parsed subset, [`NginxConf`]) → [`Config`]: which server and
//! location define the proxy, and nginx's defaults for what the file leaves out.

use super::{parse_addr, parse_hash_key, Balance, Config, SetHeader};
use crate::nginx_conf::NginxConf;
use std::time::Duration;

/// Map an nginx.conf (the supported subset) onto a [`Config`]. The first `server` block
/// and its `location /` (or first location) with `proxy_pass` define the proxy.
pub fn from_nginx(conf: &NginxConf, file: &str) -> Result<(Config, Vec<String>), String> {
    use crate::nginx_conf::{BalanceDirective as NB, WorkerProcesses};
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
        match SetHeader::parse(name, value) {
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

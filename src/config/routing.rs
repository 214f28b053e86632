//! Routing, as nginx routes: the listen address a client came in on, then the `server`
//! block by the request's Host (`server_name`: exact names, then the longest `*.suffix`,
//! then the longest `prefix.*`, else the address's `default_server`, else its first
//! server), then the `location` by the request path (`=` exact first, then the longest
//! prefix — `^~` stops the search there — then the regular expressions in file order,
//! else the longest prefix). The chosen location is a [`Route`]: its upstream [`Group`],
//! its `proxy_set_header`s, timeouts and `proxy_pass` URI.
//!
//! A [`Config`](super::Config) built from flags, or from an nginx.conf with one server and
//! one proxied `location /`, has no routing table at all (`Config::routing` is `None`):
//! every request takes the one route, and no matching is done.

use super::{Balance, HashKey, HealthCheck, ServerParams, SetHeader};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

/// A set of backends and how to balance over them (an nginx `upstream` block, or one
/// `proxy_pass host:port`).
#[derive(Clone, Debug)]
pub struct Group {
    /// The upstream's name (or the `host:port` of a direct `proxy_pass`).
    pub name: String,
    /// Its backends: a range of `Config::upstreams`.
    pub backends: Range<usize>,
    /// Balancing policy.
    pub balance: Balance,
    /// Key of `hash`.
    pub hash_key: HashKey,
    /// `sticky cookie NAME`.
    pub sticky_cookie: Option<String>,
    /// `keepalive N` (idle connections per worker; 0: none).
    pub keepalive: usize,
    /// The upstream's `keepalive_timeout`.
    pub idle_timeout: Duration,
    /// Per backend of `backends`, in order: weight, failure accounting, backup, down.
    pub servers: Vec<ServerParams>,
    /// Active health checks (`health_check`, `--health-check`), if any.
    pub health_check: Option<HealthCheck>,
}

/// What serves the requests of one `location`.
#[derive(Clone, Debug)]
pub struct Route {
    /// Where the location is, for people: `nginx.conf:14: location /api`.
    pub name: String,
    /// The upstream group.
    pub group: usize,
    /// `proxy_set_header` lines (Upgrade/Connection are ringway's own).
    pub set_headers: Vec<SetHeader>,
    /// `proxy_connect_timeout`.
    pub connect_timeout: Duration,
    /// `proxy_read_timeout`.
    pub read_timeout: Duration,
    /// `proxy_read_timeout` applied to tunnels, as nginx does.
    pub tunnel_idle_timeout: Option<Duration>,
    /// `client_body_timeout`.
    pub body_timeout: Duration,
    /// `keepalive_timeout` (clients).
    pub keepalive_timeout: Duration,
    /// `proxy_pass` with a URI part: (the matched prefix, what replaces it).
    pub pass_uri: Option<(String, String)>,
    /// `underscores_in_headers on`: forward headers with `_` in their names.
    pub underscores_in_headers: bool,
}

/// How one location matches.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// `location = /p`.
    Exact(String),
    /// `location /p` (`stop` false) or `location ^~ /p` (`stop` true).
    Prefix {
        /// The prefix.
        path: String,
        /// `^~`: when this is the longest prefix, regexes are not tried.
        stop: bool,
    },
    /// `location ~ re` / `~* re`.
    Regex(regex::Regex),
}

/// The locations of one server, ready to match.
#[derive(Clone, Debug, Default)]
pub struct Locations {
    exact: Vec<(String, usize)>,
    /// Longest first.
    prefix: Vec<(String, bool, usize)>,
    /// File order.
    regex: Vec<(regex::Regex, usize)>,
}

impl Locations {
    /// Add location `m` serving route `route` (file order matters for regexes).
    pub fn add(&mut self, m: Matcher, route: usize) {
        match m {
            Matcher::Exact(p) => self.exact.push((p, route)),
            Matcher::Prefix { path, stop } => {
                self.prefix.push((path, stop, route));
                // Stable: equal lengths keep file order (they differ, duplicates refused).
                self.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
            }
            Matcher::Regex(re) => self.regex.push((re, route)),
        }
    }

    /// The route for request path `path` (without its query), as nginx chooses it.
    pub fn find(&self, path: &str) -> Option<usize> {
        if let Some((_, r)) = self.exact.iter().find(|(p, _)| p == path) {
            return Some(*r);
        }
        let longest = self
            .prefix
            .iter()
            .find(|(p, _, _)| path.starts_with(p.as_str()));
        if let Some((_, true, r)) = longest {
            return Some(*r);
        }
        if let Some((_, r)) = self.regex.iter().find(|(re, _)| re.is_match(path)) {
            return Some(*r);
        }
        longest.map(|(_, _, r)| *r)
    }
}

/// One `server` block.
#[derive(Clone, Debug)]
pub struct VirtualServer {
    /// Where it is, for people: `nginx.conf:12`.
    pub name: String,
    /// Its `server_name`s, lower case.
    pub names: Vec<String>,
    /// Its locations.
    pub locations: Locations,
}

/// Which server of one listen address serves a Host.
#[derive(Clone, Debug, Default)]
pub struct HostTable {
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com` (and `.example.com` itself), longest first.
    suffix: Vec<(String, usize)>,
    /// `www.example.*` stored as `www.example.`, longest first.
    prefix: Vec<(String, usize)>,
    /// The `default_server` (or the first server on the address).
    default: usize,
}

impl HostTable {
    /// The table of servers `servers` (indices, in file order) on one address, with
    /// `default` the `default_server` if one is marked.
    pub fn new(all: &[VirtualServer], servers: &[usize], default: Option<usize>) -> HostTable {
        let mut t = HostTable {
            default: default.or(servers.first().copied()).unwrap_or(0),
            ..HostTable::default()
        };
        for &s in servers {
            for n in &all[s].names {
                if let Some(rest) = n.strip_prefix("*.") {
                    t.suffix.push((format!(".{rest}"), s));
                } else if let Some(rest) = n.strip_prefix('.') {
                    // nginx: `.example.com` is `example.com` and `*.example.com`.
                    t.exact.entry(rest.to_string()).or_insert(s);
                    t.suffix.push((n.clone(), s));
                } else if let Some(rest) = n.strip_suffix(".*") {
                    t.prefix.push((format!("{rest}."), s));
                } else {
                    // The first server to name a host keeps it (nginx warns, "conflicting
                    // server name", and ignores the later one).
                    t.exact.entry(n.clone()).or_insert(s);
                }
            }
        }
        t.suffix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        t.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        t
    }

    /// The server for `host` (a Host header value: its port is ignored; `None` for a
    /// request without one).
    pub fn find(&self, host: Option<&[u8]>) -> usize {
        let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
            return self.exact.get("").copied().unwrap_or(self.default);
        };
        let host = host.trim();
        let name = if let Some(rest) = host.strip_prefix('[') {
            // `[v6]:port` or `[v6]`: keep the brackets, drop the port.
            rest.find(']').map_or(host, |i| &host[..i + 2])
        } else {
            match host.rsplit_once(':') {
                Some((n, _)) if !n.contains(':') => n,
                _ => host,
            }
        };
        let name = name.trim_end_matches('.');
        // Lower-cased on the stack: no allocation per request. A host name has at most
        // 253 characters; a longer Host matches no name.
        let mut low = [0u8; 253];
        let Some(low) = low.get_mut(..name.len()) else {
            return self.default;
        };
        low.copy_from_slice(name.as_bytes());
        low.make_ascii_lowercase();
        let Ok(name) = std::str::from_utf8(low) else {
            return self.default;
        };
        if let Some(&s) = self.exact.get(name) {
            return s;
        }
        if let Some((_, s)) = self
            .suffix
            .iter()
            .find(|(suf, _)| name.ends_with(suf.as_str()))
        {
            return *s;
        }
        if let Some((_, s)) = self
            .prefix
            .iter()
            .find(|(pre, _)| name.starts_with(pre.as_str()))
        {
            return *s;
        }
        self.default
    }
}

/// A request path that cannot be normalised: a bad `%` escape, a NUL, or `..` above the
/// root (answered 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPath;

/// An absolute-form target (`http://host:port/path?q`) → (its host, its origin form);
/// anything else → (`host`, the target).
pub fn split_absolute<'a>(target: &'a str, host: Option<&'a [u8]>) -> (Option<&'a [u8]>, &'a str) {
    let scheme = target
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if !scheme {
        return (host, target);
    }
    let rest = &target[7..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let origin = &rest[end..];
    let origin = if origin.is_empty() { "/" } else { origin };
    (Some(&rest.as_bytes()[..end]), origin)
}

/// The path of origin-form target `target` as nginx matches locations against it, into
/// `out`: the query dropped, `%XX` decoded, `//` merged, `.` and `..` segments resolved
/// (a trailing `/` kept).
pub fn normalize_path(target: &str, out: &mut Vec<u8>) -> Result<(), BadPath> {
    let path = target.split(['?', '#']).next().unwrap_or(target).as_bytes();
    // Decode into `out`, then resolve segments in place.
    out.clear();
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                path.get(i + 1).and_then(|&c| hex(c)),
                path.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(BadPath);
            };
            let v = (h * 16 + l) as u8;
            if v == 0 {
                return Err(BadPath);
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.first() != Some(&b'/') {
        // `*` (OPTIONS) or garbage: matched as is, it reaches only a regex or nothing.
        return Ok(());
    }
    let decoded_len = out.len();
    let trailing = out.ends_with(b"/") || out.ends_with(b"/.") || out.ends_with(b"/..");
    // Segments are read from the decoded bytes and written back at `w` (never ahead of
    // the read position), keeping segment starts for `..`.
    let mut w = 0usize;
    let mut starts: [usize; 64] = [0; 64];
    let mut depth = 0usize;
    let mut r = 0usize;
    while r < decoded_len {
        // Skip slashes (merging them).
        while r < decoded_len && out[r] == b'/' {
            r += 1;
        }
        let seg_start = r;
        while r < decoded_len && out[r] != b'/' {
            r += 1;
        }
        let seg = seg_start..r;
        match &out[seg.clone()] {
            b"" | b"." => {}
            b".." => {
                if depth == 0 {
                    return Err(BadPath);
                }
                depth -= 1;
                w = starts[depth];
            }
            _ => {
                if depth == starts.len() {
                    return Err(BadPath);
                }
                starts[depth] = w;
                depth += 1;
                out[w] = b'/';
                out.copy_within(seg.clone(), w + 1);
                w += 1 + seg.len();
            }
        }
    }
    if w == 0 || trailing {
        out[w] = b'/';
        w += 1;
    }
    out.truncate(w);
    Ok(())
}

/// Append `path` (a normalised path) to `out` %-escaped where a request target cannot
/// carry the byte as is (nginx's escaping of a rewritten URI).
pub fn escape_path(path: &[u8], out: &mut Vec<u8>) {
    for &b in path {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if plain {
            out.push(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// The whole routing table of a configuration with several servers or locations.
#[derive(Clone, Debug)]
pub struct Routing {
    /// Listen addresses, in first-use order (a worker has one listener per address).
    pub listens: Vec<SocketAddr>,
    /// Per listen address: which server serves which Host.
    pub hosts: Vec<HostTable>,
    /// The servers.
    pub servers: Vec<VirtualServer>,
    /// The routes (one per proxied location).
    pub routes: Vec<Route>,
    /// The upstream groups.
    pub groups: Vec<Group>,
}

impl Routing {
    /// The table of a configuration without one: one listen address, one server, one
    /// route to one group of every backend, all from the top-level fields.
    pub fn single(cfg: &super::Config) -> Routing {
        Routing {
            listens: vec![cfg.listen],
            hosts: vec![HostTable::default()],
            servers: vec![VirtualServer {
                name: "the server".into(),
                names: Vec::new(),
                locations: Locations::default(),
            }],
            routes: vec![Route {
                name: "every request".into(),
                group: 0,
                set_headers: cfg.set_headers.clone(),
                connect_timeout: cfg.connect_timeout,
                read_timeout: cfg.read_timeout,
                tunnel_idle_timeout: cfg.tunnel_idle_timeout,
                body_timeout: cfg.body_timeout,
                keepalive_timeout: cfg.keepalive_timeout,
                pass_uri: None,
                underscores_in_headers: cfg.underscores_in_headers,
            }],
            groups: vec![Group {
                name: "the upstreams".into(),
                backends: 0..cfg.upstreams.len(),
                balance: cfg.balance,
                hash_key: cfg.hash_key.clone(),
                sticky_cookie: cfg.sticky_cookie.clone(),
                keepalive: cfg.keepalive,
                idle_timeout: cfg.upstream_idle_timeout,
                servers: (0..cfg.upstreams.len()).map(|i| cfg.server(i)).collect(),
                health_check: cfg.health_check.clone(),
            }],
        }
    }

    /// Every backend's parameters, by backend index (the groups' in order).
    pub fn servers(&self) -> Vec<ServerParams> {
        let mut v = Vec::new();
        for g in &self.groups {
            v.resize(g.backends.start.max(v.len()), ServerParams::default());
            v.extend_from_slice(&g.servers);
        }
        v
    }

    /// The route for a request that came in on listen address `listen` with Host `host`
    /// and request target `target`, as nginx chooses it: an absolute-form target
    /// (`http://host/path`) names its own host; the path is normalised first
    /// ([`normalize_path`] into `scratch`, which then holds it). `Ok(None)`: no location of
    /// the chosen server matches (nginx would look for a file; ringway answers 404).
    pub fn route_with(
        &self,
        listen: usize,
        host: Option<&[u8]>,
        target: &str,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<usize>, BadPath> {
        let (host, origin) = split_absolute(target, host);
        normalize_path(origin, scratch)?;
        let Some(table) = self.hosts.get(listen) else {
            return Ok(None);
        };
        let server = table.find(host);
        let path = String::from_utf8_lossy(scratch);
        Ok(self
            .servers
            .get(server)
            .and_then(|s| s.locations.find(&path)))
    }

    /// [`Routing::route_with`] with a scratch buffer of its own (tests, tools).
    pub fn route(&self, listen: usize, host: Option<&[u8]>, target: &str) -> Option<usize> {
        self.route_with(listen, host, target, &mut Vec::new())
            .ok()
            .flatten()
    }

    /// Lines for `ringway -t`: every listen address and its servers, every route and
    /// where it goes. (The top-level settings line shows the primary route's.)
    pub fn describe(&self, upstreams: &[SocketAddr]) -> String {
        use super::AsFlag as _;
        use std::fmt::Write as _;
        let mut s = String::new();
        for (li, (addr, t)) in self.listens.iter().zip(&self.hosts).enumerate() {
            let _ = writeln!(
                s,
                "ringway: listen {addr} (#{li}): default server {}",
                self.servers[t.default].name
            );
        }
        for sv in &self.servers {
            let names = if sv.names.is_empty() {
                "no server_name".to_string()
            } else {
                format!("server_name {}", sv.names.join(" "))
            };
            let _ = writeln!(s, "ringway: server {}: {names}", sv.name);
        }
        for (i, r) in self.routes.iter().enumerate() {
            let g = &self.groups[r.group];
            let backends: Vec<String> = upstreams[g.backends.clone()]
                .iter()
                .map(|a| a.to_string())
                .collect();
            let _ = writeln!(
                s,
                "ringway: route {i}: {} → {} ({}, {}){}",
                r.name,
                g.name,
                g.balance.as_flag(),
                backends.join(", "),
                r.pass_uri
                    .as_ref()
                    .map(|(p, u)| format!(", path {p}… sent as {u}…"))
                    .unwrap_or_default()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, BadPath> {
        let mut v = Vec::new();
        normalize_path(p, &mut v).map(|()| String::from_utf8(v).unwrap())
    }

    #[test]
    fn paths_normalise_as_nginx_matches_them() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%61pi/x", "/api/x"),
            ("/a%2Fb", "/a/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a?x=/../..", "/a"),
            ("*", "*"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in ["/..", "/a/../..", "/%zz", "/%4", "/%00", "/%2e%2e/x"] {
            assert_eq!(norm(bad), Err(BadPath), "{bad}");
        }
        let mut out = Vec::new();
        escape_path(b"/a b/\xc3\xa9?#%", &mut out);
        assert_eq!(out, b"/a%20b/%C3%A9%3F%23%25");
        assert_eq!(
            split_absolute("http://h.example:81/p?q", None),
            (Some(&b"h.example:81"[..]), "/p?q")
        );
        assert_eq!(split_absolute("HTTP://h", None), (Some(&b"h"[..]), "/"));
        assert_eq!(split_absolute("/p", Some(b"x")), (Some(&b"x"[..]), "/p"));
    }
}

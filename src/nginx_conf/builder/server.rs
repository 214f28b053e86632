//! `server { ... }` blocks: `listen`, `server_name`, `location` blocks with nginx's
//! modifiers (`=`, `^~`, `~`, `~*`), the `proxy_*` directives and `proxy_pass` resolution
//! (an upstream or `host:port`, and its URI part).

use super::{Builder, Proxy, RawLocation, RawServer, Res};
use crate::nginx_conf::directives::Ctx;
use crate::nginx_conf::tree::Directive;
use crate::nginx_conf::values::parse_host_port;
use crate::nginx_conf::{Listen, LocationMatch, Ssl};

impl Builder<'_> {
    pub(super) fn server(&mut self, d: &Directive) -> Res<RawServer> {
        let mut rs = RawServer {
            listen: Vec::new(),
            server_names: Vec::new(),
            locations: Vec::new(),
            proxy: Proxy::default(),
            ssl: Ssl::default(),
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
                "server_name" => {
                    for name in &c.args {
                        rs.server_names.push(self.server_name(c, name)?);
                    }
                }
                "location" => {
                    let l = self.location(c)?;
                    if let Some(prev) = rs
                        .locations
                        .iter()
                        .find(|p| p.path == l.path && same_kind(p.kind, l.kind))
                    {
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
                n if n.starts_with("ssl") => self.ssl_directive(c, &mut rs.ssl)?,
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
                default_server: false,
                ssl: false,
            });
        }
        Ok(rs)
    }

    /// One `server_name` argument: an exact name, `*.suffix`, `prefix.*`, or `""`.
    /// Regex names (`~...`) are refused: ringway does not match them.
    fn server_name(&self, c: &Directive, name: &str) -> Res<String> {
        if name.starts_with('~') {
            return Err(self.err(
                c.line,
                format!(
                    "server_name \"{name}\": regular-expression server names are not \
                     supported (use exact names, *.suffix or prefix.*)"
                ),
            ));
        }
        let inner_star = name
            .trim_start_matches("*.")
            .trim_end_matches(".*")
            .contains('*');
        if inner_star || name == "*" {
            return Err(self.err(
                c.line,
                format!(
                    "server_name \"{name}\": a wildcard may only be \"*.\" at the start \
                     or \".*\" at the end"
                ),
            ));
        }
        Ok(name.to_ascii_lowercase())
    }

    fn listen(&mut self, c: &Directive) -> Res<Listen> {
        let addr = parse_host_port(c.arg(0), Some("0.0.0.0"), Some(80))
            .map_err(|e| self.err(c.line, format!("invalid listen address {e}")))?;
        let mut l = Listen {
            addr,
            backlog: None,
            reuseport: false,
            default_server: false,
            ssl: false,
        };
        for p in c.args.iter().skip(1) {
            if p == "reuseport" {
                l.reuseport = true;
            } else if let Some(v) = p.strip_prefix("backlog=") {
                l.backlog = Some(self.positive(c, v)?);
            } else if p == "default_server" || p == "default" {
                l.default_server = true;
            } else if p == "ssl" {
                l.ssl = true;
            } else if matches!(p.as_str(), "http2" | "quic" | "proxy_protocol") {
                return Err(self.err(
                    c.line,
                    format!("listen parameter \"{p}\" is not supported by ringway"),
                ));
            } else {
                return Err(self.err(
                    c.line,
                    format!(
                        "invalid parameter \"{p}\" in \"listen\" directive (supported: \
                         ssl, reuseport, backlog=N, default_server){}",
                        c.semicolon_hint()
                    ),
                ));
            }
        }
        Ok(l)
    }

    fn location(&mut self, d: &Directive) -> Res<RawLocation> {
        let (kind, path) = if d.args.len() == 2 {
            let kind = match d.arg(0) {
                "^~" => LocationMatch::PrefixNoRegex,
                "=" => LocationMatch::Exact,
                "~" => LocationMatch::Regex {
                    case_insensitive: false,
                },
                "~*" => LocationMatch::Regex {
                    case_insensitive: true,
                },
                m => return Err(self.err(d.line, format!("invalid location modifier \"{m}\""))),
            };
            (kind, d.arg(1))
        } else {
            match d.arg(0) {
                // `location =/p` and friends: nginx accepts the modifier glued on.
                a if a.starts_with("^~") => (LocationMatch::PrefixNoRegex, &a[2..]),
                a if a.starts_with("~*") => (
                    LocationMatch::Regex {
                        case_insensitive: true,
                    },
                    &a[2..],
                ),
                a if a.starts_with('=') => (LocationMatch::Exact, &a[1..]),
                a if a.starts_with('~') => (
                    LocationMatch::Regex {
                        case_insensitive: false,
                    },
                    &a[1..],
                ),
                a if a.starts_with('@') => {
                    return Err(self.err(
                        d.line,
                        format!(
                            "named location \"{a}\" is not supported (ringway has no \
                             error_page or try_files to reach it)"
                        ),
                    ))
                }
                a => (LocationMatch::Prefix, a),
            }
        };
        if let LocationMatch::Regex { case_insensitive } = kind {
            if let Err(e) = regex::RegexBuilder::new(path)
                .case_insensitive(case_insensitive)
                .build()
            {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or("").trim();
                return Err(self.err(
                    d.line,
                    format!("location \"{path}\": invalid regular expression ({first})"),
                ));
            }
        } else if !path.starts_with('/') {
            return Err(self.err(
                d.line,
                format!(
                    "unsupported location \"{path}\" (a prefix or exact location starts \
                     with \"/\")"
                ),
            ));
        }
        let mut rl = RawLocation {
            path: path.to_string(),
            kind,
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
    pub(super) fn proxy_directive(&self, d: &Directive, p: &mut Proxy) -> Res<()> {
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
            "underscores_in_headers" => {
                dup(p.underscores.is_some())?;
                p.underscores = Some(d.arg(0) == "on");
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns a `proxy_pass` argument into an upstream name or a normalized `host:port`, and
    /// its URI part (`None` when it has none).
    pub(super) fn resolve_pass(
        &self,
        raw: &str,
        line: usize,
        loc_path: &str,
        kind: LocationMatch,
    ) -> Res<(String, Option<String>)> {
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
        // `location / { proxy_pass http://b/; }` replaces "/" with "/": no rewrite.
        let pass_uri = if uri.is_empty() || (uri == "/" && loc_path == "/") {
            None
        } else {
            if matches!(kind, LocationMatch::Regex { .. }) {
                // nginx refuses this too: a regex match has no prefix to replace.
                return Err(self.err(
                    line,
                    format!(
                        "proxy_pass \"{raw}\": a URI part (\"{uri}\") cannot be used in a \
                         regular-expression location; write \"proxy_pass http://{auth};\""
                    ),
                ));
            }
            if uri.contains('?') || uri.contains('#') {
                return Err(self.err(
                    line,
                    format!(
                        "proxy_pass \"{raw}\": a query or fragment in the URI part is not \
                         supported"
                    ),
                ));
            }
            Some(uri.to_string())
        };
        if self.conf.upstreams.iter().any(|u| u.name == auth) {
            return Ok((auth.to_string(), pass_uri));
        }
        let target = parse_host_port(auth, None, None).map_err(|_| {
            self.err(
                line,
                format!(
                    "proxy_pass \"{raw}\": there is no upstream \"{auth}\" and it is not a \
                     host:port address"
                ),
            )
        })?;
        Ok((target, pass_uri))
    }
}

/// Two locations clash when they have the same path and the same kind of match (a
/// prefix and an exact location on the same path may coexist, as in nginx).
fn same_kind(a: LocationMatch, b: LocationMatch) -> bool {
    let prefix = |k| matches!(k, LocationMatch::Prefix | LocationMatch::PrefixNoRegex);
    a == b || (prefix(a) && prefix(b))
}

#[cfg(test)]
mod tests {
    use crate::nginx_conf::fixtures::*;
    use crate::nginx_conf::Listen;

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
        assert!(listen("443 ssl").ssl);
        assert!(!listen("443").ssl);
        assert_eq!(
            listen("8080 reuseport backlog=4096"),
            Listen {
                addr: "0.0.0.0:8080".into(),
                backlog: Some(4096),
                reuseport: true,
                default_server: false,
                ssl: false,
            }
        );
        let c = ok("http {\n server {\n  listen 80 default_server;\n }\n}");
        assert!(c.warnings.is_empty());
        assert!(c.servers[0].listen[0].default_server);
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
            ("80 http2", "not supported"),
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
}

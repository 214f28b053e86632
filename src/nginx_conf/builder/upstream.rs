//! `upstream NAME { ... }` blocks: their `server` lines, balancing method and keep-alive.

use super::{Builder, Res};
use crate::nginx_conf::directives::{Ctx, STICKY_PARAM_REASON};
use crate::nginx_conf::tree::Directive;
use crate::nginx_conf::values::parse_host_port;
use crate::nginx_conf::{
    BalanceDirective, ConfError, HealthCheckDirective, UpstreamBlock, UpstreamServer,
};

impl Builder<'_> {
    pub(super) fn upstream(&mut self, d: &Directive) -> Res<UpstreamBlock> {
        let mut u = UpstreamBlock {
            name: d.arg(0).to_string(),
            servers: Vec::new(),
            balance: BalanceDirective::RoundRobin,
            keepalive: None,
            keepalive_timeout_ms: None,
            health_check: None,
            line: d.line,
            file: d.file.to_string(),
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
                "health_check" => {
                    if u.health_check.is_some() {
                        return Err(self.duplicate(c));
                    }
                    u.health_check = Some(self.health_check(c)?);
                    continue;
                }
                "least_conn" => BalanceDirective::LeastConn,
                "ip_hash" => BalanceDirective::IpHash,
                "hash" => {
                    let consistent = match c.args.get(1).map(String::as_str) {
                        None => false,
                        Some("consistent") => true,
                        Some(other) => {
                            return Err(self.err_in(
                                c,
                                format!("invalid parameter \"{other}\" in \"hash\" directive"),
                            ))
                        }
                    };
                    BalanceDirective::Hash {
                        key: c.arg(0).to_string(),
                        consistent,
                    }
                }
                "sticky" => self.sticky(c)?,
                _ => continue,
            };
            if let Some(prev) = balance_line {
                return Err(self.err_in(
                    c,
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
            return Err(self.err_in(d, format!("no servers are inside upstream \"{}\"", u.name)));
        }
        if matches!(
            u.balance,
            BalanceDirective::IpHash | BalanceDirective::Hash { .. }
        ) {
            if let Some(s) = u.servers.iter().find(|s| s.backup) {
                return Err(ConfError {
                    file: s.file.clone(),
                    line: s.line,
                    msg: "\"backup\" cannot be used with ip_hash or hash balancing".to_string(),
                });
            }
        }
        Ok(u)
    }

    fn sticky(&mut self, c: &Directive) -> Res<BalanceDirective> {
        if c.arg(0) != "cookie" {
            return Err(self.err_in(
                c,
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
            return Err(self.err_in(c, format!("invalid cookie name \"{name}\"")));
        }
        for extra in c.args.iter().skip(2) {
            let what = format!("sticky cookie parameter '{extra}'");
            self.ignore(c, &what, STICKY_PARAM_REASON);
        }
        Ok(BalanceDirective::StickyCookie {
            name: name.to_string(),
        })
    }

    fn health_check(&self, c: &Directive) -> Res<HealthCheckDirective> {
        let mut h = HealthCheckDirective {
            uri: String::new(),
            interval_ms: None,
            fails: None,
            passes: None,
            timeout_ms: None,
            upgrade: false,
        };
        for p in &c.args {
            if p == "upgrade" {
                h.upgrade = true;
            } else if let Some(v) = p.strip_prefix("uri=") {
                if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b >= 0x7f) {
                    return Err(self.err_in(
                        c,
                        format!("health_check uri \"{v}\" must be a path starting with /"),
                    ));
                }
                h.uri = v.to_string();
            } else if let Some(v) = p.strip_prefix("interval=") {
                h.interval_ms = Some(self.time(c, v)?.max(1));
            } else if let Some(v) = p.strip_prefix("timeout=") {
                h.timeout_ms = Some(self.time(c, v)?.max(1));
            } else if let Some(v) = p.strip_prefix("fails=") {
                h.fails = Some(self.positive(c, v)?);
            } else if let Some(v) = p.strip_prefix("passes=") {
                h.passes = Some(self.positive(c, v)?);
            } else {
                return Err(self.err_in(
                    c,
                    format!("invalid parameter \"{p}\" in \"health_check\" (supported: uri=PATH, interval=, fails=, passes=, timeout=, upgrade)"),
                ));
            }
        }
        if h.uri.is_empty() {
            return Err(self.err_in(
                c,
                "health_check needs uri=PATH, e.g. health_check uri=/health;".to_string(),
            ));
        }
        Ok(h)
    }

    fn upstream_server(&self, c: &Directive) -> Res<UpstreamServer> {
        let addr = parse_host_port(c.arg(0), None, Some(80))
            .map_err(|e| self.err_in(c, format!("invalid upstream server address {e}")))?;
        let mut s = UpstreamServer {
            addr,
            weight: 1,
            max_fails: None,
            fail_timeout_ms: None,
            backup: false,
            down: false,
            line: c.line,
            file: c.file.to_string(),
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
                    self.err_in(c, format!("max_fails value \"{v}\" is too large"))
                })?);
            } else if let Some(v) = p.strip_prefix("fail_timeout=") {
                s.fail_timeout_ms = Some(self.time(c, v)?);
            } else {
                return Err(self.err_in(
                    c,
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
}

#[cfg(test)]
mod tests {
    use crate::nginx_conf::fixtures::*;
    use crate::nginx_conf::*;

    #[test]
    fn hash_consistent_and_sticky_cookie() {
        let c = ok("http { upstream u { hash $remote_addr consistent; server 1.2.3.4:5; } }");
        assert_eq!(
            c.upstreams[0].balance,
            BalanceDirective::Hash {
                key: "$remote_addr".into(),
                consistent: true
            }
        );
        let c = ok("http { upstream u { sticky cookie srv_id; server 1.2.3.4:5; } }");
        assert_eq!(
            c.upstreams[0].balance,
            BalanceDirective::StickyCookie {
                name: "srv_id".into()
            }
        );
        let c =
            ok("http {\nupstream u {\nsticky cookie srv_id expires=1h;\nserver 1.2.3.4:5;\n}\n}");
        assert_eq!(
            c.warnings,
            vec![format!(
                "nginx.conf:3: ignoring sticky cookie parameter 'expires=1h': {}",
                crate::nginx_conf::directives::STICKY_PARAM_REASON
            )]
        );
        assert_eq!(
            (c.ignored.len(), c.ignored[0].directive.as_str()),
            (1, "sticky")
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
    fn health_check_directive() {
        let c = ok("http { upstream u { health_check uri=/health interval=1s fails=3 passes=2 upgrade; server 1.2.3.4:5; } }");
        let h = c.upstreams[0].health_check.clone().unwrap();
        assert_eq!(
            (h.uri.as_str(), h.interval_ms, h.fails, h.passes, h.upgrade),
            ("/health", Some(1000), Some(3), Some(2), true)
        );
        err_at(
            "http {\nupstream u {\nhealth_check interval=1s;\nserver 1.2.3.4:5;\n}\n}",
            3,
            "needs uri=PATH",
        );
        err_at(
            "http {\nupstream u {\nhealth_check uri=/h rise=2;\nserver 1.2.3.4:5;\n}\n}",
            3,
            "invalid parameter \"rise=2\"",
        );
    }
}

//! The configuration in words a person can type back: enums as their flag values
//! ([`AsFlag`]: `round-robin`, `splice`, `503`, never `RoundRobin` or `Reply503`),
//! durations as nginx writes them ([`fmt_duration`]: `60s`, `500ms`), and the settings
//! lines `ringway -t` prints ([`settings`]).

use super::Config;
use clap::ValueEnum;
use std::fmt;
use std::time::Duration;

/// A config enum shown as its command-line value (clap's possible value name).
pub struct Flag<'a, E>(&'a E);

impl<E: ValueEnum> fmt::Display for Flag<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => f.write_str("?"),
        }
    }
}

/// `cfg.balance.as_flag()` displays as `least-conn`, the value `--balance` takes.
pub trait AsFlag: ValueEnum + Sized {
    /// This value as the flag spells it.
    fn as_flag(&self) -> Flag<'_, Self> {
        Flag(self)
    }
}

impl<E: ValueEnum> AsFlag for E {}

/// A duration as ringway's flags write their defaults (and nginx accepts): `60s`, `500ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The settings `ringway -t` prints after the budget and the limits: one line each for
/// where it listens and proxies to, how it balances and relays, and its timeouts, every
/// value spelled as its flag takes it.
pub fn settings(cfg: &Config) -> Vec<String> {
    let ups: Vec<String> = cfg.upstreams.iter().map(|a| a.to_string()).collect();
    let mut policy = format!(
        "balance {}, tunnel {}, at-limit {}",
        cfg.balance.as_flag(),
        cfg.tunnel.as_flag(),
        cfg.at_limit.as_flag()
    );
    if cfg.at_limit == super::AtLimit::Reply503 {
        policy.push_str(&format!(" (reserve-503 {})", cfg.reserve_503));
    }
    let mode = if cfg.process_mode {
        super::WorkerMode::Process
    } else {
        super::WorkerMode::Thread
    };
    policy.push_str(&format!(
        ", worker-mode {}, {} worker(s) × {} worker_connections",
        mode.as_flag(),
        cfg.workers,
        cfg.worker_connections
    ));
    if let Some(name) = &cfg.sticky_cookie {
        policy.push_str(&format!(", sticky-cookie {name}"));
    }
    if let Some(h) = &cfg.health_check {
        policy.push_str(&format!(
            ", health-check {}{} every {} (down after {}, up after {})",
            h.path,
            if h.upgrade { " (upgrade)" } else { "" },
            fmt_duration(h.interval),
            h.fails,
            h.passes
        ));
    }
    if cfg.underscores_in_headers {
        policy.push_str(", underscores-in-headers");
    }
    let weighted = cfg
        .servers
        .iter()
        .any(|s| *s != super::ServerParams::default());
    if weighted {
        let list: Vec<String> = (0..cfg.upstreams.len())
            .map(|i| {
                let s = cfg.server(i);
                let mut t = format!(
                    "{} weight={} max_fails={} fail_timeout={}",
                    cfg.upstreams[i],
                    s.weight,
                    s.max_fails,
                    fmt_duration(s.fail_timeout)
                );
                if s.backup {
                    t.push_str(" backup");
                }
                if s.down {
                    t.push_str(" down");
                }
                t
            })
            .collect();
        policy.push_str(&format!("; servers: {}", list.join(", ")));
    }
    let tunnel_idle = cfg
        .tunnel_idle_timeout
        .map_or_else(|| "off".to_string(), fmt_duration);
    vec![
        format!(
            "ringway: listen {}, {} upstream(s) {}",
            cfg.listen,
            ups.len(),
            ups.join(", ")
        ),
        format!("ringway: {policy}"),
        format!(
            "ringway: proxy_read_timeout {}, head-timeout {}, connect-timeout {}, body-timeout {}, keepalive-timeout {}, tunnel-idle-timeout {}, keepalive {} (upstream-idle-timeout {})",
            fmt_duration(cfg.read_timeout),
            fmt_duration(cfg.head_timeout),
            fmt_duration(cfg.connect_timeout),
            fmt_duration(cfg.body_timeout),
            fmt_duration(cfg.keepalive_timeout),
            tunnel_idle,
            cfg.keepalive,
            fmt_duration(cfg.upstream_idle_timeout)
        ),
    ]
    .into_iter()
    .chain(
        cfg.routing
            .iter()
            .flat_map(|r| r.describe(&cfg.upstreams).lines().map(String::from).collect::<Vec<_>>()),
    )
    .chain(tls_lines(cfg))
    .collect()
}

/// One line per TLS listen address (certificates, names, protocols, resumption) and one
/// for the record layer (kTLS or rustls in user space); none without TLS.
pub fn tls_lines(cfg: &Config) -> Vec<String> {
    cfg.tls_table
        .iter()
        .flat_map(|t| t.describe())
        .map(|l| format!("ringway: {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AtLimit, Balance, TunnelMode, WorkerMode};

    #[test]
    fn enums_read_as_their_flag_values() {
        assert_eq!(Balance::RoundRobin.as_flag().to_string(), "round-robin");
        assert_eq!(Balance::LeastConn.as_flag().to_string(), "least-conn");
        assert_eq!(Balance::IpHash.as_flag().to_string(), "ip-hash");
        assert_eq!(TunnelMode::Splice.as_flag().to_string(), "splice");
        assert_eq!(AtLimit::Reply503.as_flag().to_string(), "503");
        assert_eq!(WorkerMode::Process.as_flag().to_string(), "process");
        // Every value parses back to itself: what is printed can be typed.
        for b in Balance::value_variants() {
            let s = b.as_flag().to_string();
            assert_eq!(&Balance::from_str(&s, false).unwrap(), b, "{s}");
        }
        for a in AtLimit::value_variants() {
            let s = a.as_flag().to_string();
            assert_eq!(&AtLimit::from_str(&s, false).unwrap(), a, "{s}");
        }
    }

    #[test]
    fn durations_as_nginx_writes_them() {
        assert_eq!(fmt_duration(Duration::from_secs(60)), "60s");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "3600s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        // What is printed parses back (the flags' own parser).
        for d in ["60s", "1500ms", "0s"] {
            assert_eq!(fmt_duration(crate::config::parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn settings_lines_use_flag_values() {
        let mut c = Config::new(
            "127.0.0.1:8080".parse().unwrap(),
            vec!["127.0.0.1:9001".parse().unwrap()],
        );
        c.balance = Balance::LeastConn;
        let text = settings(&c).join("\n");
        for want in [
            "balance least-conn",
            "tunnel auto",
            "at-limit 503",
            "worker-mode thread",
            "proxy_read_timeout 60s",
            "127.0.0.1:9001",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        for rust in ["LeastConn", "Splice", "Reply503", "Thread", "[", "Some("] {
            assert!(!text.contains(rust), "{rust}: {text}");
        }
    }
}

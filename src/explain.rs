//! `ringway explain`: every limit between a configuration and N tunnels, which one binds
//! first, and how to lift each.
//!
//! The arithmetic is pure ([`explain`] takes an [`Env`] read from the machine or crafted by
//! a test); [`Env::read`] reads the machine. Figures per tunnel: two proxy sockets (two
//! slots, two descriptors, ≈ 5 KB of kernel memory each, measured — FACTS.md), one upstream
//! ephemeral port, and ringway's own per-tunnel state.

use crate::budget;
use crate::config::Config;
use std::fmt::Write as _;

/// Kernel memory per TCP socket, everything counted (measured here: ≈ 5 KB).
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5 * 1024;
/// ringway user-space memory per idle tunnel (measured; see README "Numbers").
pub const RINGWAY_BYTES_PER_TUNNEL: u64 = 512;
/// Descriptors a worker keeps besides its slots: idle pipe pool (64 × 2) and slack.
const FD_OVERHEAD_PER_WORKER: u64 = 2 * 64 + 8;

/// The machine facts the arithmetic needs.
#[derive(Clone, Debug)]
pub struct Env {
    /// RLIMIT_NOFILE soft.
    pub nofile_soft: u64,
    /// RLIMIT_NOFILE hard.
    pub nofile_hard: u64,
    /// Whether this process may raise its hard limit (CAP_SYS_RESOURCE).
    pub can_raise_hard: bool,
    /// fs.nr_open.
    pub nr_open: u64,
    /// fs.file-max.
    pub file_max: u64,
    /// net.ipv4.ip_local_port_range.
    pub port_range: (u32, u32),
    /// net.core.somaxconn.
    pub somaxconn: u64,
    /// MemFree in bytes (not MemAvailable: socket memory is not reclaimable).
    pub mem_free: u64,
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Env {
    /// Read this machine.
    pub fn read() -> Env {
        let (soft, hard) = crate::sys::nofile_limit();
        let range = crate::sys::port_range();
        let mem_free = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemFree:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        Env {
            nofile_soft: soft,
            nofile_hard: hard,
            can_raise_hard: crate::sys::nofile_hard_raisable(),
            nr_open: read_u64("/proc/sys/fs/nr_open").unwrap_or(1 << 20),
            file_max: read_u64("/proc/sys/fs/file-max").unwrap_or(u64::MAX),
            port_range: range,
            somaxconn: read_u64("/proc/sys/net/core/somaxconn").unwrap_or(4096),
            mem_free,
        }
    }
}

/// One limit.
#[derive(Clone, Debug)]
pub struct Row {
    /// Short name.
    pub name: &'static str,
    /// Tunnels this limit allows (u64::MAX: no limit on tunnels).
    pub allows: u64,
    /// What there is vs what N tunnels need, in plain words.
    pub detail: String,
    /// How to lift it.
    pub fix: String,
}

/// The whole answer.
#[derive(Clone, Debug)]
pub struct Report {
    /// Target tunnels.
    pub tunnels: u64,
    /// Configuration summary.
    pub header: String,
    /// Every limit.
    pub rows: Vec<Row>,
}

impl Report {
    /// The limit that binds first (smallest allowance).
    pub fn binding(&self) -> &Row {
        self.rows.iter().min_by_key(|r| r.allows).expect("rows")
    }

    /// Whether `tunnels` fit under every limit.
    pub fn fits(&self) -> bool {
        self.binding().allows >= self.tunnels
    }

    /// One screen of plain text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ringway explain: can this configuration hold {} tunnels?",
            group(self.tunnels)
        );
        let _ = writeln!(s, "  {}", self.header);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<22} {:>14}  what there is, and what it needs",
            "limit", "allows"
        );
        for r in &self.rows {
            let allows = if r.allows == u64::MAX {
                "no limit".to_string()
            } else {
                group(r.allows)
            };
            let mark = if r.allows < self.tunnels {
                "SHORT"
            } else {
                "ok"
            };
            let _ = writeln!(s, "  {:<22} {:>14}  [{mark}] {}", r.name, allows, r.detail);
            if r.allows < self.tunnels {
                let _ = writeln!(s, "  {:<22} {:>14}  fix: {}", "", "", r.fix);
            }
        }
        let b = self.binding();
        let _ = writeln!(s);
        if self.fits() {
            let _ = writeln!(
                s,
                "  → {} tunnels fit. The first limit to bind beyond that: {} ({} tunnels).",
                group(self.tunnels),
                b.name,
                group(b.allows)
            );
        } else {
            let _ = writeln!(
                s,
                "  → binds first: {} at {} tunnels. {}",
                b.name,
                group(b.allows),
                b.fix
            );
        }
        s
    }
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Work out every limit for `tunnels` tunnels under `cfg` on `env`.
pub fn explain(cfg: &Config, env: &Env, tunnels: u64) -> Report {
    let w = cfg.workers as u64;
    let wc = cfg.worker_connections as u64;
    let per = budget::clients_per_worker(cfg.worker_connections) as u64;
    let backends = cfg.upstreams.len().max(1) as u64;
    let srcs = cfg.upstream_bind.len().max(1) as u64;
    let mut rows = Vec::new();

    // 1. Slots.
    let need_wc = ceil_div(tunnels, w) * 2 + budget::RESERVED as u64;
    rows.push(Row {
        name: "slots",
        allows: w * per,
        detail: format!(
            "{w} worker(s) × ({wc} worker_connections − 2 reserved) / 2 per tunnel = {}",
            group(w * per)
        ),
        fix: format!(
            "set worker_connections to {} (or more workers)",
            group(need_wc)
        ),
    });

    // 2. Descriptors per process: threads share one table; in process mode each worker
    //    process has its own.
    let procs = if cfg.process_mode { w } else { 1 };
    let per_proc_overhead = (w / procs) * (FD_OVERHEAD_PER_WORKER + cfg.reserve_503 as u64) + 16;
    let fd_cap = if env.can_raise_hard {
        env.nr_open
    } else {
        env.nofile_hard
    };
    let need_fds = ceil_div(tunnels, procs) * 2 + per_proc_overhead;
    let fd_allows = procs * (fd_cap.saturating_sub(per_proc_overhead) / 2);
    let per_worker_proc =
        fd_cap.saturating_sub(FD_OVERHEAD_PER_WORKER + cfg.reserve_503 as u64 + 16) / 2;
    let procs_needed = ceil_div(tunnels, per_worker_proc.max(1));
    rows.push(Row {
        name: "RLIMIT_NOFILE",
        allows: fd_allows,
        detail: format!(
            "soft {} / hard {}{} (ringway raises soft to hard); {} tunnels need {} fds in each of {procs} process(es)",
            group(env.nofile_soft),
            group(env.nofile_hard),
            if env.can_raise_hard { ", raisable" } else { ", not raisable here (no CAP_SYS_RESOURCE)" },
            group(tunnels),
            group(need_fds)
        ),
        fix: if env.can_raise_hard {
            format!(
                "raise the hard limit to {} (systemd LimitNOFILE=, limits.conf, as root)",
                group(need_fds)
            )
        } else {
            format!(
                "the hard limit cannot be raised here: run --worker-mode process with at least {procs_needed} worker processes (each gets its own {}-fd table), or raise the limit as root (LimitNOFILE=)",
                group(fd_cap)
            )
        },
    });

    // 3. fs.nr_open caps any hard limit.
    rows.push(Row {
        name: "fs.nr_open",
        allows: procs * (env.nr_open.saturating_sub(per_proc_overhead) / 2),
        detail: format!("{} fds per process at most", group(env.nr_open)),
        fix: format!(
            "sysctl fs.nr_open={} (tuning/apply.sh)",
            group(need_fds).replace(',', "")
        ),
    });

    // 4. fs.file-max: the whole machine (proxy sockets only).
    rows.push(Row {
        name: "fs.file-max",
        allows: env.file_max / 2,
        detail: format!(
            "{} open files machine-wide; the proxy alone needs 2 per tunnel (clients and backends on this box need 2 more)",
            group(env.file_max)
        ),
        fix: format!("sysctl fs.file-max={}", tunnels * 4 + 65536),
    });

    // 5. Ephemeral ports toward each backend.
    let ports = (env.port_range.1.saturating_sub(env.port_range.0) + 1) as u64;
    let per_backend = ceil_div(tunnels, backends);
    rows.push(Row {
        name: "upstream ports",
        allows: ports * srcs * backends,
        detail: format!(
            "{} ephemeral ports × {srcs} source address(es) × {backends} backend(s); {} tunnels per backend",
            group(ports),
            group(per_backend)
        ),
        fix: format!(
            "--upstream-bind with {} source addresses (e.g. 127.0.0.2-127.0.0.{}), or widen net.ipv4.ip_local_port_range",
            ceil_div(per_backend, ports),
            1 + ceil_div(per_backend, ports).min(254)
        ),
    });

    // 6. Listen backlog (bursts, not tunnels).
    let backlog = (cfg.backlog as u64).min(env.somaxconn);
    rows.push(Row {
        name: "listen backlog",
        allows: u64::MAX,
        detail: format!(
            "backlog {} per worker, capped by net.core.somaxconn = {}: {} connections may wait per worker during a burst{}",
            cfg.backlog,
            env.somaxconn,
            group(backlog),
            if env.somaxconn < cfg.backlog as u64 { " (raise somaxconn: tuning/apply.sh)" } else { "" }
        ),
        fix: String::new(),
    });

    // 7. Memory.
    let per_tunnel = 2 * KERNEL_BYTES_PER_SOCKET + RINGWAY_BYTES_PER_TUNNEL;
    rows.push(Row {
        name: "memory (MemFree)",
        allows: env.mem_free / per_tunnel,
        detail: format!(
            "{} MiB free; a tunnel costs ≈ {} KB here (2 kernel sockets ≈ 10 KB + ringway ≈ 0.5 KB); clients and backends on the same box cost more",
            env.mem_free >> 20,
            per_tunnel / 1024
        ),
        fix: format!(
            "{} MiB of free memory are needed (more if clients or backends share the box)",
            (tunnels * per_tunnel) >> 20
        ),
    });

    Report {
        tunnels,
        header: format!(
            "config: {w} worker {} × {wc} worker_connections, {backends} backend(s), {srcs} upstream source address(es)",
            if cfg.process_mode { "process(es), each with its own fd table" } else { "thread(s) in one process" }
        ),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            nofile_soft: 1 << 20,
            nofile_hard: 1 << 20,
            can_raise_hard: false,
            nr_open: 1 << 20,
            file_max: 1 << 40,
            port_range: (32768, 60999),
            somaxconn: 4096,
            mem_free: 64 << 30,
        }
    }

    fn cfg(workers: usize, wc: usize, backends: usize) -> Config {
        let ups = (0..backends)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect();
        let mut c = Config::new("127.0.0.1:8080".parse().unwrap(), ups);
        c.workers = workers;
        c.worker_connections = wc;
        c
    }

    #[test]
    fn small_budget_binds() {
        let r = explain(&cfg(1, 1024, 4), &env(), 10_000);
        assert_eq!(r.binding().name, "slots");
        assert_eq!(r.binding().allows, 511);
        assert!(r.render().contains("set worker_connections to 20,002"));
    }

    #[test]
    fn low_nofile_binds() {
        let mut e = env();
        e.nofile_soft = 20_000;
        e.nofile_hard = 20_000;
        let r = explain(&cfg(2, 100_000, 4), &e, 50_000);
        assert_eq!(r.binding().name, "RLIMIT_NOFILE");
        assert!(r.binding().allows < 10_000);
        assert!(!r.fits());
    }

    #[test]
    fn process_mode_lifts_the_per_process_fd_limit() {
        let mut e = env();
        e.nofile_soft = 20_000;
        e.nofile_hard = 20_000;
        let mut c = cfg(12, 18_000, 4);
        let r = explain(&c, &e, 100_000);
        assert_eq!(r.binding().name, "RLIMIT_NOFILE");
        assert!(
            r.render()
                .contains("--worker-mode process with at least 11 worker processes"),
            "{}",
            r.render()
        );
        c.process_mode = true;
        let r = explain(&c, &e, 100_000);
        assert!(r.fits(), "{}", r.render());
    }

    #[test]
    fn few_ports_bind_and_sources_lift_them() {
        let mut e = env();
        e.port_range = (40000, 40999);
        let mut c = cfg(2, 200_000, 1);
        let r = explain(&c, &e, 100_000);
        assert_eq!(r.binding().name, "upstream ports");
        assert_eq!(r.binding().allows, 1000);
        c.upstream_bind = (2..=120)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect();
        let r = explain(&c, &e, 100_000);
        assert!(r.fits(), "{}", r.render());
    }

    #[test]
    fn memory_binds_last_on_a_big_box_and_fits() {
        let mut c = cfg(2, 600_000, 4);
        c.upstream_bind = (2..=6)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect();
        let r = explain(&c, &env(), 500_000);
        assert!(r.fits(), "{}", r.render());
        assert!(r.render().contains("500,000 tunnels fit"));
    }
}

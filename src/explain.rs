//! `ringway explain`: every limit between a configuration and N tunnels, which one binds
//! first, and — when N does not fit — one plan: the smallest set of changes that reaches
//! N (`explain/plan.rs`), checked by the same arithmetic on the changed configuration.
//!
//! With `--instances N` ([`explain_cluster`]) the configuration is one of N instances behind
//! an L4 balancer, each on a machine like this one: the limits are one instance's, checked
//! against its share of the tunnels, and the verdict says what the N hold together.
//!
//! The arithmetic is pure ([`explain`] takes an [`Env`] read from the machine or crafted by
//! a test); [`Env::read`] reads the machine. Figures per tunnel: two proxy sockets (two
//! slots, two descriptors, ≈ 5 KB of kernel memory each, measured — FACTS.md), one upstream
//! ephemeral port, and ringway's own per-tunnel state.

use crate::budget;
use crate::config::{AsFlag, Config, WorkerMode};
use std::fmt::Write as _;

mod plan;

pub use plan::{Plan, Step};

/// Kernel memory per TCP socket, everything counted (measured here: ≈ 5 KB).
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5 * 1024;
/// ringway user-space memory per idle tunnel (measured; see README "Numbers").
pub const RINGWAY_BYTES_PER_TUNNEL: u64 = 512;
/// ringway user-space memory per idle TLS tunnel, the rustls connection included
/// (measured: 10.2 KiB at 10,000; README "Numbers", TLS).
pub const RINGWAY_BYTES_PER_TLS_TUNNEL: u64 = 10 * 1024 + 256;
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
    /// Buckets of the established-TCP hash this namespace uses (net.ipv4.tcp_ehash_entries;
    /// negative there means the initial namespace's table, of that size). 0: unknown.
    pub ehash_buckets: u64,
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
            ehash_buckets: std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries")
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map_or(0, i64::unsigned_abs),
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
}

/// The whole answer.
#[derive(Clone, Debug)]
pub struct Report {
    /// Target tunnels (of one instance: its share when `instances` > 1).
    pub tunnels: u64,
    /// Instances of this configuration behind an L4 balancer (1: just this one).
    pub instances: u64,
    /// Target tunnels of the whole cluster (`tunnels` when `instances` is 1).
    pub cluster_tunnels: u64,
    /// Configuration summary.
    pub header: String,
    /// Every limit, as configured.
    pub rows: Vec<Row>,
    /// When the target does not fit: the changes that reach it (or what stops it).
    pub plan: Option<Plan>,
}

impl Report {
    /// The limit that binds first (smallest allowance).
    pub fn binding(&self) -> &Row {
        self.rows.iter().min_by_key(|r| r.allows).expect("rows")
    }

    /// Whether `tunnels` fit under every limit as configured.
    pub fn fits(&self) -> bool {
        self.binding().allows >= self.tunnels
    }

    /// Tunnels the cluster holds as configured: instances × the binding limit of one.
    pub fn cluster_holds(&self) -> u64 {
        self.binding().allows.saturating_mul(self.instances)
    }

    /// One screen of plain text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let n = self.instances;
        if n > 1 {
            let _ = writeln!(
                s,
                "ringway explain: can {n} instances of this configuration hold {} tunnels?",
                group(self.cluster_tunnels)
            );
        } else {
            let _ = writeln!(
                s,
                "ringway explain: can this configuration hold {} tunnels?",
                group(self.tunnels)
            );
        }
        let _ = writeln!(s, "  {}", self.header);
        if n > 1 {
            let _ = writeln!(
                s,
                "  cluster: {n} instances behind an L4 balancer, each on its own machine like this one (the limits below are one instance's): {} tunnels each ({} / {n}, rounded up)",
                group(self.tunnels),
                group(self.cluster_tunnels)
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<22} {:>14}  what there is, and what it needs",
            "limit", "allows"
        );
        for r in &self.rows {
            let mark = if r.allows < self.tunnels {
                "SHORT"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "  {:<22} {:>14}  [{mark}] {}",
                r.name,
                allows(r.allows),
                r.detail
            );
        }
        let b = self.binding();
        let _ = writeln!(s);
        match &self.plan {
            None if n > 1 => {
                let _ = writeln!(
                    s,
                    "  → {} tunnels per instance fit. The cluster holds {n} × {} = {} (first to bind in each instance: {}), as long as the balancer gives every instance its share: a hash spreads clients unevenly, and an instance at its limit refuses (--at-limit) while others have room, so size for the busiest one.",
                    group(self.tunnels),
                    group(b.allows.min(u64::MAX / n)),
                    allows(self.cluster_holds()),
                    b.name,
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  → {} tunnels fit. The first limit to bind beyond that: {} ({} tunnels).",
                    group(self.tunnels),
                    b.name,
                    group(b.allows)
                );
            }
            Some(p) => {
                if n > 1 {
                    let _ = writeln!(
                        s,
                        "  As configured the cluster holds {n} × {} = {}; the plan below is for each instance's {}.",
                        allows(b.allows),
                        allows(self.cluster_holds()),
                        group(self.tunnels)
                    );
                }
                p.render(self, &mut s)
            }
        }
        s
    }
}

/// The established-hash row: sockets per bucket (the proxy's 2 per tunnel; 4 with clients and
/// backends on the box) and, past 4, the fix (at 10 per bucket here connects' port search took
/// 13 % of the CPU and new tunnels came at half the ramp rate).
fn ehash_detail(buckets: u64, tunnels: u64) -> String {
    if buckets == 0 {
        return "net.ipv4.tcp_ehash_entries unreadable (Linux < 6.1): unknown".into();
    }
    let per = |sockets: u64| sockets as f64 / buckets as f64;
    let (own, shared) = (per(2 * tunnels), per(4 * tunnels));
    let advice = if own > 4.0 {
        "; past ~4 per bucket connects and lookups slow down: boot with thash_entries= set to the sockets expected"
    } else if shared > 4.0 {
        "; with clients or backends on this box past ~4 per bucket connects and lookups slow down (thash_entries= at boot)"
    } else {
        ""
    };
    format!(
        "{} buckets (net.ipv4.tcp_ehash_entries, fixed at boot); {} tunnels put {:.1} proxy sockets in each ({:.1} with clients and backends on this box){advice}",
        group(buckets),
        group(tunnels),
        own,
        shared
    )
}

fn allows(n: u64) -> String {
    if n == u64::MAX {
        "no limit".to_string()
    } else {
        group(n)
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

/// Descriptors one process keeps besides its tunnels' sockets, for `workers` workers in it.
fn fd_overhead(workers_in_process: u64, reserve_503: u64) -> u64 {
    workers_in_process * (FD_OVERHEAD_PER_WORKER + reserve_503) + 16
}

/// Ephemeral ports in the local range.
fn port_count(env: &Env) -> u64 {
    (env.port_range.1.saturating_sub(env.port_range.0) + 1) as u64
}

/// Memory one tunnel costs the proxy's box (its two sockets and ringway's state); a TLS
/// tunnel's state is the rustls connection's too (every address of `cfg` taken as TLS when
/// one is: the conservative count).
fn bytes_per_tunnel(cfg: &Config) -> u64 {
    let state = if cfg.tls.is_empty() {
        RINGWAY_BYTES_PER_TUNNEL
    } else {
        RINGWAY_BYTES_PER_TLS_TUNNEL
    };
    2 * KERNEL_BYTES_PER_SOCKET + state
}

/// Work out every limit for `tunnels` tunnels under `cfg` on `env`, and when they do not
/// all fit, the plan that reaches `tunnels`.
pub fn explain(cfg: &Config, env: &Env, tunnels: u64) -> Report {
    let mut r = limits(cfg, env, tunnels);
    if !r.fits() {
        r.plan = Some(plan::plan(cfg, env, tunnels));
    }
    r
}

/// [`explain`] for `instances` copies of `cfg` behind an L4 balancer, each on a machine like
/// `env` (its own descriptors, ports and memory), sharing `tunnels` evenly: each instance is
/// checked (and planned) for `tunnels / instances`, rounded up.
pub fn explain_cluster(cfg: &Config, env: &Env, tunnels: u64, instances: u64) -> Report {
    let n = instances.max(1);
    let mut r = explain(cfg, env, ceil_div(tunnels, n));
    r.instances = n;
    r.cluster_tunnels = tunnels;
    r
}

/// Every limit for `tunnels` under `cfg` on `env`, as configured (no plan).
fn limits(cfg: &Config, env: &Env, tunnels: u64) -> Report {
    let w = cfg.workers as u64;
    let wc = cfg.worker_connections as u64;
    let per = budget::clients_per_worker(cfg.worker_connections) as u64;
    let backends = cfg.upstreams.len().max(1) as u64;
    let srcs = cfg.upstream_bind.len().max(1) as u64;
    let mut rows = Vec::new();

    // 1. Slots.
    rows.push(Row {
        name: "slots",
        allows: w * per,
        detail: format!(
            "{w} worker(s) × ({wc} worker_connections − 2 reserved) / 2 per tunnel = {}",
            group(w * per)
        ),
    });

    // 2. Descriptors per process: threads share one table; in process mode each worker
    //    process has its own. ringway raises its soft limit to the hard one; the hard one
    //    is what it gets.
    let procs = if cfg.process_mode { w } else { 1 };
    let overhead = fd_overhead(w / procs, cfg.reserve_503 as u64);
    let need_fds = ceil_div(tunnels, procs) * 2 + overhead;
    rows.push(Row {
        name: "RLIMIT_NOFILE",
        allows: procs * (env.nofile_hard.saturating_sub(overhead) / 2),
        detail: format!(
            "soft {} / hard {}{} (ringway raises soft to hard); {} tunnels need {} fds in each of {procs} process(es)",
            group(env.nofile_soft),
            group(env.nofile_hard),
            if env.can_raise_hard { ", raisable (CAP_SYS_RESOURCE)" } else { ", not raisable here (no CAP_SYS_RESOURCE)" },
            group(tunnels),
            group(need_fds)
        ),
    });

    // 3. fs.nr_open caps any hard limit.
    rows.push(Row {
        name: "fs.nr_open",
        allows: procs * (env.nr_open.saturating_sub(overhead) / 2),
        detail: format!("{} fds per process at most", group(env.nr_open)),
    });

    // 4. fs.file-max: the whole machine (proxy sockets only).
    rows.push(Row {
        name: "fs.file-max",
        allows: env.file_max / 2,
        detail: format!(
            "{} open files machine-wide; the proxy alone needs 2 per tunnel (clients and backends on this box need 2 more)",
            group(env.file_max)
        ),
    });

    // 5. Ephemeral ports toward each backend.
    let ports = port_count(env);
    rows.push(Row {
        name: "upstream ports",
        allows: ports * srcs * backends,
        detail: format!(
            "{} ephemeral ports × {srcs} source address(es) × {backends} backend(s); {} tunnels per backend",
            group(ports),
            group(ceil_div(tunnels, backends))
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
    });

    // 7. The established-connection hash: not a hard limit, a slope. Every connect's port
    //    search and every arriving segment walk one chain; its bucket count is fixed at boot.
    rows.push(Row {
        name: "TCP hash chains",
        allows: u64::MAX,
        detail: ehash_detail(env.ehash_buckets, tunnels),
    });

    let mode = if cfg.process_mode {
        WorkerMode::Process
    } else {
        WorkerMode::Thread
    };
    // 8. Memory.
    let per = bytes_per_tunnel(cfg);
    rows.push(Row {
        name: "memory (MemFree)",
        allows: env.mem_free / per,
        detail: format!(
            "{} MiB free; a tunnel costs ≈ {} KB here (2 kernel sockets ≈ 10 KB + ringway ≈ {}); clients and backends on the same box cost more",
            env.mem_free >> 20,
            per / 1024,
            if cfg.tls.is_empty() { "0.5 KB" } else { "10 KB with its TLS state" }
        ),
    });

    Report {
        tunnels,
        instances: 1,
        cluster_tunnels: tunnels,
        header: format!(
            "config: {w} worker(s) × {wc} worker_connections, worker-mode {} ({}), tunnel {}, {backends} backend(s), {srcs} upstream source address(es){}",
            mode.as_flag(),
            if cfg.process_mode { "a process per worker, each with its own fd table" } else { "threads of one process, one fd table" },
            cfg.tunnel.as_flag(),
            match &cfg.tls_table {
                // A TLS tunnel's memory and relay differ: say which record layer runs.
                Some(t) => format!("; TLS on {} address(es), record layer: {}", t.listeners.len(), t.kernel.describe()),
                None => String::new(),
            }
        ),
        rows,
        plan: None,
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
            ehash_buckets: 262_144,
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
    fn a_tls_tunnel_costs_its_rustls_state_too() {
        let plain = explain(&cfg(1, 1024, 4), &env(), 10_000);
        let mut c = cfg(1, 1024, 4);
        c.tls = vec![crate::tls::TlsSettings::new(c.listen)];
        let tls = explain(&c, &env(), 10_000);
        let mem = |r: &Report| {
            r.rows
                .iter()
                .find(|r| r.name == "memory (MemFree)")
                .unwrap()
                .allows
        };
        assert_eq!(mem(&plain), (64 << 30) / (10 * 1024 + 512));
        assert_eq!(mem(&tls), (64 << 30) / (20 * 1024 + 256));
    }

    #[test]
    fn long_hash_chains_are_named_not_counted() {
        let r = explain(&cfg(85, 18_000, 4), &env(), 700_000);
        let row = r.rows.iter().find(|r| r.name == "TCP hash chains").unwrap();
        assert_eq!(row.allows, u64::MAX);
        assert!(row.detail.contains("5.3 proxy sockets"), "{}", row.detail);
        assert!(row.detail.contains("thash_entries="), "{}", row.detail);
        let small = explain(&cfg(1, 1024, 4), &env(), 511);
        let row = small
            .rows
            .iter()
            .find(|r| r.name == "TCP hash chains")
            .unwrap();
        assert!(!row.detail.contains("thash_entries="), "{}", row.detail);
    }

    #[test]
    fn small_budget_binds() {
        let r = explain(&cfg(1, 1024, 4), &env(), 10_000);
        assert_eq!(r.binding().name, "slots");
        assert_eq!(r.binding().allows, 511);
        assert!(r.render().contains("set worker_connections to 20,002"));
        // The smallest plan: only the slots were short, so only they change.
        let p = r.plan.as_ref().expect("a plan");
        assert_eq!(p.steps.len(), 1, "{}", r.render());
        assert!(p.reaches());
    }

    /// The seed's 1 × 1024 on a box like this project's (20,000 fds, not raisable):
    /// one plan whose steps size each other, and which the same arithmetic then passes.
    #[test]
    fn a_million_gets_one_consistent_plan() {
        let mut e = env();
        e.nofile_soft = 20_000;
        e.nofile_hard = 20_000;
        e.port_range = (32768, 60999);
        let r = explain(&cfg(1, 1024, 4), &e, 1_000_000);
        let text = r.render();
        assert!(!r.fits());
        let p = r.plan.as_ref().expect("a plan");
        assert!(p.reaches(), "{text}");
        assert!(p.after.fits(), "{text}");
        let steps: Vec<&str> = p.steps.iter().map(|s| s.change.as_str()).collect();
        assert_eq!(steps.len(), 3, "{text}");
        assert!(
            steps[0].contains("--worker-mode process with at least 101 worker processes")
                && steps[0].contains("--worker-processes 101"),
            "{text}"
        );
        // 1,000,000 / 101 workers = 9,901 tunnels each: 2 × 9,901 + 2 slots.
        assert!(steps[1].contains("--worker-connections 19804"), "{text}");
        assert!(
            steps[2].contains("--upstream-bind 127.0.0.2-127.0.0.10"),
            "{text}"
        );
        // Not the old contradiction: one worker with 2,000,002 slots and 101 processes.
        assert!(!text.contains("2,000,002"), "{text}");
        assert_eq!(text.matches("plan:").count(), 1, "{text}");
        assert!(text.contains("every limit fits 1,000,000 tunnels with these changes"));
        let verdicts: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with('→'))
            .collect();
        assert!(
            verdicts[0].contains("do not fit as configured: slots binds first, at 511"),
            "{text}"
        );
    }

    /// Process mode must not leave a worker more slots than its own fd table backs.
    #[test]
    fn process_mode_caps_worker_connections_at_the_fd_table() {
        let mut e = env();
        e.nofile_soft = 20_000;
        e.nofile_hard = 20_000;
        let r = explain(&cfg(2, 19_990, 1), &e, 19_988);
        let text = r.render();
        let p = r.plan.as_ref().expect("a plan");
        assert!(p.reaches(), "{text}");
        let steps: Vec<&str> = p.steps.iter().map(|s| s.change.as_str()).collect();
        assert_eq!(steps.len(), 2, "{text}");
        assert!(steps[0].contains("at least 3 worker processes"), "{text}");
        // (20,000 − 168) / 2 = 9,916 tunnels per process: 2 × 9,916 + 2 slots.
        assert!(steps[1].contains("--worker-connections 19834"), "{text}");
    }

    #[test]
    fn memory_makes_a_target_unreachable() {
        let mut e = env();
        e.mem_free = 4 << 30;
        let r = explain(&cfg(1, 1024, 4), &e, 1_000_000);
        let p = r.plan.as_ref().expect("a plan");
        assert!(!p.reaches());
        assert!(
            p.blocked.iter().any(|b| b.starts_with("memory")),
            "{:?}",
            p.blocked
        );
        assert!(r.render().contains("not reachable on this machine"));
    }

    #[test]
    fn a_raisable_hard_limit_keeps_one_process() {
        let mut e = env();
        e.nofile_soft = 20_000;
        e.nofile_hard = 20_000;
        e.can_raise_hard = true;
        let r = explain(&cfg(1, 1024, 4), &e, 1_000_000);
        let text = r.render();
        let p = r.plan.as_ref().expect("a plan");
        assert!(p.reaches(), "{text}");
        assert!(!text.contains("--worker-mode process"), "{text}");
        assert!(text.contains("sysctl fs.nr_open=2000168"), "{text}");
        assert!(text.contains("LimitNOFILE=2000168"), "{text}");
        assert!(text.contains("--worker-connections 2000002"), "{text}");
    }

    /// The seed's budget, three instances: 3 × 511 = 1,533 fit, and one more does not
    /// (1,534 / 3 rounds up to 512 per instance), with the plan sized per instance.
    #[test]
    fn a_cluster_holds_instances_times_one() {
        let c = cfg(1, 1024, 4);
        let r = explain_cluster(&c, &env(), 1_533, 3);
        let text = r.render();
        assert!(r.fits(), "{text}");
        assert_eq!(r.tunnels, 511);
        assert_eq!(r.cluster_holds(), 1_533);
        assert!(
            text.contains("can 3 instances of this configuration hold 1,533 tunnels?"),
            "{text}"
        );
        assert!(text.contains("The cluster holds 3 × 511 = 1,533"), "{text}");
        let r = explain_cluster(&c, &env(), 1_534, 3);
        let text = r.render();
        assert!(!r.fits(), "{text}");
        assert_eq!(r.tunnels, 512);
        assert!(
            text.contains("As configured the cluster holds 3 × 511 = 1,533"),
            "{text}"
        );
        assert!(text.contains("set worker_connections to 1,026"), "{text}");
        // One instance is explain itself.
        let one = explain_cluster(&c, &env(), 511, 1).render();
        assert_eq!(one, explain(&c, &env(), 511).render());
    }

    #[test]
    fn what_fits_has_no_plan() {
        let r = explain(&cfg(1, 1024, 4), &env(), 511);
        assert!(r.fits());
        assert!(r.plan.is_none());
        assert!(!r.render().contains("plan:"));
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

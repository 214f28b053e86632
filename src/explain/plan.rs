//! The plan `ringway explain` prints when N tunnels do not fit: one consistent set of
//! changes, each sized from the ones before it (the worker count decides each worker's
//! `worker_connections`), then checked by running the same limits again on the changed
//! configuration and machine. What no change of ringway or the kernel's limits lifts
//! (memory) is said, and the target is then not reachable.
//!
//! Order and choices, smallest first: descriptors per process (raise the hard limit where
//! this process may, else one process per worker: the fewest that hold N), then slots
//! (`worker_connections` for each worker's share, the worker count kept; in process mode
//! no more than one process's descriptors back), then the machine-wide file limit, then
//! upstream source addresses, then memory.

use super::{bytes_per_tunnel, ceil_div, fd_overhead, group, limits, port_count, Env, Report};
use crate::budget;
use crate::config::Config;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// The largest `fs.nr_open` a 64-bit kernel takes (INT_MAX rounded down to 64).
const NR_OPEN_MAX: u64 = 2_147_483_584;
/// `--worker-processes` takes at most this.
const MAX_WORKERS: u64 = 1024;
/// `--worker-connections` takes at most this.
const MAX_WORKER_CONNECTIONS: u64 = 10_000_000;

/// One change of the plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// What to change: a flag (with its nginx.conf directive) or a kernel setting.
    pub change: String,
    /// Why, with the arithmetic.
    pub why: String,
}

/// The changes that reach the target, and the limits once they are made.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The changes, in the order they were sized.
    pub steps: Vec<Step>,
    /// Every limit again, with the changes made.
    pub after: Box<Report>,
    /// What the changes do not lift (memory, or a flag's range); empty when they reach
    /// the target.
    pub blocked: Vec<String>,
}

impl Plan {
    /// Whether the changes reach the target.
    pub fn reaches(&self) -> bool {
        self.blocked.is_empty() && self.after.fits()
    }

    /// The verdict, the steps, and the limits that were short, after the changes.
    pub(super) fn render(&self, before: &Report, s: &mut String) {
        let n = group(before.tunnels);
        let b = before.binding();
        let _ = writeln!(
            s,
            "  → {n} tunnels do not fit as configured: {} binds first, at {} tunnels. {}",
            b.name,
            group(b.allows),
            if self.reaches() {
                format!("The plan below reaches {n}.")
            } else {
                format!("{n} is not reachable on this machine (below).")
            }
        );
        let _ = writeln!(s);
        if self.steps.is_empty() {
            let _ = writeln!(s, "  plan: no change of ringway's configuration or of the kernel's limits lifts what is short.");
        } else {
            let _ = writeln!(
                s,
                "  plan: the smallest set of changes that reaches {n} tunnels"
            );
        }
        for (i, st) in self.steps.iter().enumerate() {
            let _ = writeln!(s, "    {}. {}", i + 1, st.change);
            let _ = writeln!(s, "       {}", st.why);
        }
        let short: Vec<String> = before
            .rows
            .iter()
            .zip(&self.after.rows)
            .filter(|(r, _)| r.allows < before.tunnels)
            .map(|(_, a)| {
                let mark = if a.allows >= before.tunnels {
                    "ok"
                } else {
                    "SHORT"
                };
                format!("{} {} [{mark}]", a.name, super::allows(a.allows))
            })
            .collect();
        if !self.steps.is_empty() {
            let _ = writeln!(s, "  with these changes: {}", short.join(" · "));
        }
        if self.blocked.is_empty() {
            let _ = writeln!(s, "  → every limit fits {n} tunnels with these changes.");
        } else {
            let _ = writeln!(s, "  still short:");
            for why in &self.blocked {
                let _ = writeln!(s, "    - {why}");
            }
        }
    }
}

/// The plan for `n` tunnels under `cfg` on `env` (called when they do not fit).
pub(super) fn plan(cfg: &Config, env: &Env, n: u64) -> Plan {
    let mut c = cfg.clone();
    let mut e = env.clone();
    let mut steps = Vec::new();
    let mut blocked = Vec::new();
    let reserve = cfg.reserve_503 as u64;
    // In process mode, the most slots one worker's descriptor table can back: more, and a
    // full table fails accepts (EMFILE) before the slots are full and siblings take over.
    let mut wc_cap = None;

    // 1. Descriptors per process.
    let procs = if c.process_mode { c.workers as u64 } else { 1 };
    let need = ceil_div(n, procs) * 2 + fd_overhead(c.workers as u64 / procs, reserve);
    if need > e.nofile_hard {
        if e.can_raise_hard && need <= NR_OPEN_MAX {
            if need > e.nr_open {
                steps.push(Step {
                    change: format!("sysctl fs.nr_open={need} (as root; tuning/apply.sh)"),
                    why: format!("no hard limit can exceed fs.nr_open ({})", group(e.nr_open)),
                });
                e.nr_open = need;
            }
            steps.push(Step {
                change: format!(
                    "raise the hard RLIMIT_NOFILE to {} (LimitNOFILE={need} in ringway.service, or ulimit -Hn {need})",
                    group(need)
                ),
                why: format!(
                    "{} tunnels need {} descriptors in each of {procs} process(es); this process may raise it (CAP_SYS_RESOURCE)",
                    group(n),
                    group(need)
                ),
            });
            e.nofile_hard = need;
            e.nofile_soft = need;
        } else {
            let per_proc = e.nofile_hard.saturating_sub(fd_overhead(1, reserve)) / 2;
            let p = ceil_div(n, per_proc);
            if per_proc == 0 || p > MAX_WORKERS {
                blocked.push(format!(
                    "RLIMIT_NOFILE: a hard limit of {} fds holds {} tunnels per process, so {} tunnels would need more than {MAX_WORKERS} worker processes; raise the hard limit as root (LimitNOFILE=)",
                    group(e.nofile_hard),
                    group(per_proc),
                    group(n)
                ));
            } else {
                let w = (c.workers as u64).max(p);
                let run = if c.process_mode {
                    format!("run at least {p} worker processes")
                } else {
                    format!("run --worker-mode process with at least {p} worker processes")
                };
                let flag = if w > c.workers as u64 {
                    format!("--worker-processes {w}")
                } else {
                    format!("--worker-processes {w} already is")
                };
                let conf = if c.process_mode {
                    format!("worker_processes {w};")
                } else {
                    format!("ringway_worker_mode process; worker_processes {w};")
                };
                steps.push(Step {
                    change: format!("{run} ({flag}; nginx.conf: {conf})"),
                    why: format!(
                        "the hard RLIMIT_NOFILE ({}) cannot be raised here (no CAP_SYS_RESOURCE); each worker process gets its own table: ≈ {} tunnels per process",
                        group(e.nofile_hard),
                        group(per_proc)
                    ),
                });
                c.process_mode = true;
                c.workers = w as usize;
                wc_cap = Some(per_proc * budget::PER_CLIENT as u64 + budget::RESERVED as u64);
            }
        }
    }

    // 2. Slots: each worker's share, the worker count as it now is.
    let per_worker = ceil_div(n, c.workers as u64);
    let need_wc = per_worker * budget::PER_CLIENT as u64 + budget::RESERVED as u64;
    if need_wc > MAX_WORKER_CONNECTIONS {
        blocked.push(format!(
            "slots: {} tunnels per worker need {} worker_connections, more than --worker-connections takes ({}); use more workers",
            group(per_worker),
            group(need_wc),
            group(MAX_WORKER_CONNECTIONS)
        ));
    } else if (c.worker_connections as u64) < need_wc {
        steps.push(Step {
            change: format!(
                "set worker_connections to {} (--worker-connections {need_wc})",
                group(need_wc)
            ),
            why: format!(
                "2 slots × {} tunnels per worker + 2 reserved, over {} worker(s)",
                group(per_worker),
                c.workers
            ),
        });
        c.worker_connections = need_wc as usize;
    } else if let Some(cap) = wc_cap.filter(|&cap| c.worker_connections as u64 > cap) {
        steps.push(Step {
            change: format!(
                "set worker_connections to {} (--worker-connections {cap})",
                group(cap)
            ),
            why: format!(
                "what one process's {} descriptors back: a full worker then hands clients to a sibling instead of failing accepts (EMFILE) with slots still free",
                group(e.nofile_hard)
            ),
        });
        c.worker_connections = cap as usize;
    }

    // 3. The machine's open files.
    if e.file_max / 2 < n {
        let want = n * 4 + 65536;
        steps.push(Step {
            change: format!("sysctl fs.file-max={want} (as root; tuning/apply.sh)"),
            why: format!(
                "the proxy holds 2 files per tunnel, and clients and backends on this box 2 more (now {})",
                group(e.file_max)
            ),
        });
        e.file_max = want;
    }

    // 4. Ephemeral ports toward each backend: more source addresses.
    let backends = c.upstreams.len().max(1) as u64;
    let ports = port_count(&e);
    let per_backend = ceil_div(n, backends);
    if ports * (c.upstream_bind.len().max(1) as u64) < per_backend {
        let k = ceil_div(per_backend, ports);
        let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
        let loopback = c
            .upstreams
            .iter()
            .all(|a| a.ip().is_loopback() && a.is_ipv4());
        if k > 65_535 {
            blocked.push(format!(
                "upstream ports: {} tunnels per backend would need {} source addresses of {} ports each; add backends or widen net.ipv4.ip_local_port_range",
                group(per_backend),
                group(k),
                group(ports)
            ));
        } else {
            let change = if loopback {
                let last = Ipv4Addr::from(first + k as u32 - 1);
                format!("--upstream-bind 127.0.0.2-{last} ({k} loopback source addresses; nginx: proxy_bind)")
            } else {
                format!("--upstream-bind with {k} local source addresses (nginx: proxy_bind), or a wider net.ipv4.ip_local_port_range")
            };
            steps.push(Step {
                change,
                why: format!(
                    "{k} source addresses × {} ephemeral ports ≥ {} tunnels per backend",
                    group(ports),
                    group(per_backend)
                ),
            });
            c.upstream_bind = (0..k as u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
                .collect();
        }
    }

    // 5. Memory: nothing in the configuration lifts it.
    let per = bytes_per_tunnel(&c);
    if e.mem_free / per < n {
        blocked.push(format!(
            "memory: {} tunnels need ≈ {} MiB free and there are {} MiB; not reachable on this machine (run clients and backends elsewhere, or add memory)",
            group(n),
            group((n * per) >> 20),
            group(e.mem_free >> 20)
        ));
    }

    // The same arithmetic on the changed configuration: whatever is still short and not
    // explained above is said, never passed over.
    let after = Box::new(limits(&c, &e, n));
    for r in &after.rows {
        let named = blocked.iter().any(|b| {
            b.split(':')
                .next()
                .is_some_and(|h| r.name.starts_with(h.trim()))
        });
        if r.allows < n && !named {
            blocked.push(format!(
                "{}: still allows only {} tunnels with these changes",
                r.name,
                group(r.allows)
            ));
        }
    }
    Plan {
        steps,
        after,
        blocked,
    }
}

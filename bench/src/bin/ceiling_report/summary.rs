//! summary.md of a ceiling.sh run: provenance, the per-proxy table (held, failures, memory per
//! tunnel), what bounds the next step up (with the kernel's TCP counters over the run), `ringway explain`,
//! problems seen.

use ringway_bench::fmt::{failure_kinds, fmt_grouped, fmt_num, fmt_num_opt};
use ringway_bench::json::{num, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::proxy::{Mem, Proxy, KIB, MIB};

pub fn summary(dir: &Path, meta: Option<&Value>, proxies: &[Proxy]) -> (String, Vec<String>) {
    let mut o = String::new();
    let mut problems = Vec::new();
    let n = num(meta, "params.tunnels").unwrap_or(0.0);
    let _ = writeln!(o, "# Idle WebSocket tunnels held: {} tunnels", fmt_num(n));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Commit `{}`{}, {}, {} × {}, {} MiB RAM, {}, `{}`. Tuning (`--tune`): {}.",
        text(meta, "short_sha"),
        if meta
            .and_then(|m| m.get("source_dirty"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            " (source modified)"
        } else {
            ""
        },
        text(meta, "kernel"),
        fmt_grouped(num(meta, "cpu_count")),
        text(meta, "cpu_model"),
        fmt_num_opt(num(meta, "mem_total_kb").map(|k| k / 1024.0)),
        text(meta, "nginx").trim_start_matches("nginx version: "),
        text(meta, "command_line"),
        if meta.and_then(|m| m.get("tune")).and_then(Value::as_bool) == Some(true) {
            "yes"
        } else {
            "no"
        },
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Both proxies: {} worker processes × {} worker_connections (budget {} tunnels), 4 backends ({} wsecho processes each), \
         loadgen {} processes ramping at {}/s, hold {} s, then one probe echo per tunnel. Clients, proxy and backends share this box, \
         so box-wide figures (Slab, MemFree, TCP sockets) count 4 sockets per tunnel. {}.",
        fmt_grouped(num(meta, "params.workers")),
        fmt_grouped(num(meta, "params.worker_connections")),
        fmt_grouped(num(meta, "params.budget")),
        fmt_grouped(num(meta, "params.backend_procs_each")),
        fmt_grouped(num(meta, "params.loadgen_procs")),
        fmt_grouped(num(meta, "params.rate")),
        fmt_grouped(num(meta, "params.hold_s")),
        text(meta, "nginx_conf_note"),
    );
    let _ = writeln!(o);

    let stats: Vec<Option<Mem>> = proxies.iter().map(Proxy::mem_stats).collect();
    // The table: one column per proxy.
    let _ = write!(
        o,
        "| | {} |\n|---|",
        proxies
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for _ in proxies {
        o.push_str("---:|");
    }
    o.push('\n');
    let mut row = |label: &str, cell: &dyn Fn(&Proxy, Option<&Mem>) -> String| {
        let _ = write!(o, "| {label} |");
        for (p, m) in proxies.iter().zip(&stats) {
            let _ = write!(o, " {} |", cell(p, m.as_ref()));
        }
        o.push('\n');
    };
    let r = |p: &Proxy, k: &str| num(p.result.as_ref(), k);
    let per = |p: &Proxy, d: f64| p.ok().filter(|&ok| ok > 0.0).map(|ok| d / ok);
    row("attempted", &|p, _| {
        let att = fmt_num_opt(r(p, "attempted"));
        match ramp_stopped(p) {
            Some(planned) => format!(
                "{att} (ramp stopped at the memory floor; {} planned)",
                fmt_num(planned)
            ),
            None => att,
        }
    });
    row("**held (set up: 101 + banner)**", &|p, _| {
        format!("**{}**", fmt_num_opt(p.ok()))
    });
    row("failed (kinds)", &|p, _| {
        format!(
            "{} ({})",
            fmt_num_opt(r(p, "failed_total")),
            failure_kinds(p.result.as_ref().and_then(|v| v.get("failed")))
        )
    });
    row("first failure at ramp index", &|p, _| {
        let i = r(p, "first_failure_index");
        match i {
            Some(i) => format!(
                "{} ({})",
                fmt_num(i),
                text(p.result.as_ref(), "first_failure_kind")
            ),
            None => "–".into(),
        }
    });
    row("ramp time (s)", &|p, _| fmt_num_opt(r(p, "ramp_s")));
    row("dropped during ramp / hold", &|p, _| {
        format!(
            "{} / {}",
            fmt_num_opt(r(p, "dropped_during_ramp")),
            fmt_num_opt(r(p, "dropped_during_hold"))
        )
    });
    row("alive after hold (answered the probe)", &|p, _| {
        let alive = fmt_num_opt(r(p, "alive_after_hold"));
        match r(p, "probe_unsent").filter(|&u| u > 0.0) {
            Some(u) => format!(
                "{alive} ({} not probed: the probe phase ended first)",
                fmt_num(u)
            ),
            None => alive,
        }
    });
    row("proxy processes (tree)", &|_, m| {
        fmt_grouped(m.map(|m| m.held.procs))
    });
    row("proxy RSS before → held (MiB)", &|_, m| match m {
        Some(m) => format!(
            "{} → {}",
            fmt_num(m.before.rss_kb / MIB),
            fmt_num(m.held.rss_kb / MIB)
        ),
        None => "–".into(),
    });
    row("proxy RSS peak (MiB)", &|_, m| {
        fmt_num_opt(m.map(|m| m.max_rss_kb / MIB))
    });
    row("**proxy RSS per tunnel (KiB)**", &|p, m| {
        format!(
            "**{}**",
            fmt_num_opt(m.and_then(|m| per(p, m.held.rss_kb - m.before.rss_kb)))
        )
    });
    row("proxy RssAnon per tunnel (KiB)", &|p, m| {
        fmt_num_opt(m.and_then(|m| per(p, m.held.anon_kb - m.before.anon_kb)))
    });
    row("kernel Slab per tunnel, whole box (KiB)", &|p, m| {
        fmt_num_opt(m.and_then(|m| per(p, m.held.slab_kb - m.before.slab_kb)))
    });
    row("kernel SUnreclaim per tunnel, whole box (KiB)", &|p, m| {
        fmt_num_opt(m.and_then(|m| per(p, m.held.sunreclaim_kb - m.before.sunreclaim_kb)))
    });
    row("TCP sockets in use per tunnel, whole box", &|p, m| {
        fmt_num_opt(m.and_then(|m| per(p, m.held.tcp_inuse - m.before.tcp_inuse)))
    });
    row("**MemFree drop per tunnel, whole box (KiB)**", &|p, m| {
        format!(
            "**{}**",
            fmt_num_opt(m.and_then(|m| per(p, m.before.free_kb - m.held.free_kb)))
        )
    });
    row("MemFree before → lowest (MiB)", &|_, m| match m {
        Some(m) => format!(
            "{} → {}",
            fmt_num(m.before.free_kb / MIB),
            fmt_num(m.min_free_kb / MIB)
        ),
        None => "–".into(),
    });
    row("held figures from", &|_, m| match m {
        Some(m) if m.held_from_window => "median over the hold".into(),
        Some(_) => "peak sample (no hold window)".into(),
        None => "–".into(),
    });
    row("proxy's own count while held", &|p, _| match p.name {
        "ringway" => match p.ringway_tunnel_counts().first() {
            Some(c) if p.usr1_in_hold() => {
                format!("{} tunnels (SIGUSR1 during the hold)", fmt_num(*c as f64))
            }
            Some(_) => "– (SIGUSR1 fell outside the hold)".into(),
            None => "–".into(),
        },
        _ => {
            let ne = p.log.matches("worker_connections are not enough").count();
            format!("– ({ne} “not enough” lines)")
        }
    });
    row(
        "s until the box's TCP sockets were closed (after loadgen exit)",
        &|p, _| match (
            num(p.session.as_ref(), "drain_s"),
            num(p.session.as_ref(), "tcp_inuse_at_stop"),
        ) {
            (Some(d), Some(u)) => {
                format!(
                    "{} ({} sockets left at SIGTERM)",
                    fmt_grouped(Some(d)),
                    fmt_grouped(Some(u))
                )
            }
            _ => "–".into(),
        },
    );
    row("exit status on SIGTERM", &|p, _| {
        let alive = p
            .session
            .as_ref()
            .and_then(|s| s.get("alive_at_stop"))
            .and_then(Value::as_bool);
        let rc = num(p.session.as_ref(), "exit_status");
        match (alive, rc) {
            (Some(false), rc) => format!("DIED before the stop ({})", fmt_num_opt(rc)),
            (_, rc) => fmt_grouped(rc),
        }
    });
    row("run cut short", &|p, _| {
        let a = text(p.session.as_ref(), "abort").trim();
        if a.is_empty() {
            "no".into()
        } else {
            a.replace('\n', "; ")
        }
    });
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Per tunnel = (held − before) / tunnels held. \"Before\" is the mean of the samples before loadgen started, \"held\" the median of the \
         1-second samples from 2 s after the ramp settled to the end of the hold. Proxy RSS is VmRSS summed over the proxy's process tree \
         (master + workers); RssAnon leaves out file pages (the binary's text counted once per worker). Slab, SUnreclaim, MemFree and TCP \
         sockets are the whole box's: the clients' and backends' sockets and user memory are in them too."
    );
    let _ = writeln!(o);

    // Ramp-order and counting checks.
    for (p, m) in proxies.iter().zip(&stats) {
        let Some(res) = p.result.as_ref() else {
            problems.push(format!(
                "{}: no loadgen result (exit {}); see logs/{}.loadgen.stderr",
                p.name,
                fmt_num_opt(num(p.session.as_ref(), "loadgen_exit")),
                p.name
            ));
            continue;
        };
        let ok = num(Some(res), "ok").unwrap_or(0.0);
        let att = num(Some(res), "attempted").unwrap_or(0.0);
        let alive = num(Some(res), "alive_after_hold").unwrap_or(0.0);
        let dh = num(Some(res), "dropped_during_hold").unwrap_or(0.0);
        let dr = num(Some(res), "dropped_during_ramp").unwrap_or(0.0);
        if ok < att {
            problems.push(format!(
                "{}: {} of {} tunnels failed to set up ({})",
                p.name,
                fmt_num(att - ok),
                fmt_num(att),
                failure_kinds(res.get("failed"))
            ));
        }
        if dr + dh > 0.0 {
            problems.push(format!(
                "{}: {} tunnels dropped ({} in the ramp, {} in the hold; kinds: {})",
                p.name,
                fmt_num(dr + dh),
                fmt_num(dr),
                fmt_num(dh),
                failure_kinds(res.get("dropped_kinds"))
            ));
        }
        let unsent = num(Some(res), "probe_unsent").unwrap_or(0.0);
        if alive + dh + dr + unsent < ok {
            problems.push(format!(
                "{}: only {} of {} held tunnels answered the probe after the hold ({})",
                p.name,
                fmt_num(alive),
                fmt_num(ok - unsent),
                failure_kinds(res.get("probe_failed"))
            ));
        }
        if unsent > 0.0 {
            problems.push(format!(
                "{}: {} held tunnels were not probed: the probe phase ended before their turn",
                p.name,
                fmt_num(unsent)
            ));
        }
        if p.name == "ringway" && p.usr1_in_hold() {
            if let Some(c) = p.ringway_tunnel_counts().first() {
                let expect = ok - dr - dh;
                if (*c as f64 - expect).abs() > (expect * 0.002).max(5.0) {
                    problems.push(format!("ringway: its stats (SIGUSR1 while held) count {} tunnels, loadgen holds {}", fmt_num(*c as f64), fmt_num(expect)));
                }
            }
        }
        if p.session
            .as_ref()
            .and_then(|s| s.get("alive_at_stop"))
            .and_then(Value::as_bool)
            == Some(false)
        {
            problems.push(format!(
                "{}: the proxy died before the stop (exit {})",
                p.name,
                fmt_grouped(num(p.session.as_ref(), "exit_status"))
            ));
        } else if num(p.session.as_ref(), "exit_status").is_some_and(|rc| rc != 0.0) {
            problems.push(format!(
                "{}: exit status {} on SIGTERM",
                p.name,
                fmt_grouped(num(p.session.as_ref(), "exit_status"))
            ));
        }
        let a = text(p.session.as_ref(), "abort").trim();
        if !a.is_empty() {
            problems.push(format!("{}: run cut short: {a}", p.name));
        }
        let panics: Vec<&str> = p
            .log
            .lines()
            .filter(|l| {
                l.contains("panicked")
                    || l.contains("ringway: error")
                    || l.contains("[crit]")
                    || l.contains("[emerg]")
            })
            .take(3)
            .collect();
        for l in panics {
            problems.push(format!("{}: log: {l}", p.name));
        }
        if m.is_none() {
            problems.push(format!("{}: no memory samples", p.name));
        }
    }

    // What bounds the next step up, from the measurement.
    let _ = writeln!(o, "## What bounds it");
    let _ = writeln!(o);
    for (p, m) in proxies.iter().zip(&stats) {
        let (Some(m), Some(ok)) = (m, p.ok()) else {
            continue;
        };
        if ok <= 0.0 {
            continue;
        }
        let box_per = (m.before.free_kb - m.held.free_kb) / ok; // KiB per tunnel, whole box
        let floor3 = 3.0 * MIB * KIB; // 3 GiB in KiB
        let more = if box_per > 1.0 {
            (m.held.free_kb - floor3) / box_per
        } else {
            f64::NAN
        };
        let att = num(p.result.as_ref(), "attempted").unwrap_or(0.0);
        let held_all = ok >= att;
        if let Some(planned) = ramp_stopped(p) {
            let _ = writeln!(
                o,
                "- **{}**: memory binds: the box's usable memory (MemAvailable less SReclaimable) reached the floor with {} tunnels held of {} planned, so the ramp stopped there \
                 (the held tunnels were then held and probed as planned).",
                p.name,
                fmt_num(ok),
                fmt_num(planned),
            );
        }
        let _ = writeln!(
            o,
            "- **{}**: {} of {} held{}. Lowest MemFree {} MiB. At {} KiB of MemFree per tunnel (whole box: clients, proxy, backends), {}.",
            p.name,
            fmt_num(ok),
            fmt_num(att),
            if held_all && ramp_stopped(p).is_none() { " (nothing bound at this size)" } else { "" },
            fmt_num(m.min_free_kb / MIB),
            fmt_num(box_per),
            if !more.is_finite() {
                "the drop is too small to project".to_string()
            } else if more < 0.0 {
                "MemFree was already under 3 GiB while these were held".to_string()
            } else {
                format!("the box reaches 3 GiB free at about {} tunnels in this layout", fmt_num(ok + more))
            },
        );
    }
    let _ = writeln!(o);
    kernel_counters(&mut o, dir, proxies);
    let _ = writeln!(o, "`ringway explain` for this run (explain/):");
    let _ = writeln!(o);
    if let Ok(rd) = std::fs::read_dir(dir.join("explain")) {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for fpath in files {
            let t = std::fs::read_to_string(&fpath).unwrap_or_default();
            let name = fpath
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let _ = writeln!(o, "```\n# {name}\n{}\n```\n", t.trim_end());
        }
    }
    let _ = writeln!(o, "## Problems seen");
    let _ = writeln!(o);
    if problems.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        for p in &problems {
            let _ = writeln!(o, "- {p}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Plot: `plots/ceiling-memory.svg`. Raw: `raw/` (loadgen JSON, session JSON, `*.mem.tsv`), logs: `logs/`.");
    (o, problems)
}

/// The kernel counters that say why connections were slow or lost during a ramp, in the
/// order a reader looks for them; the meaning is `nstat`'s (`/proc/net/netstat`, `snmp`).
const COUNTERS: &[(&str, &str)] = &[
    (
        "TcpExtListenOverflows",
        "a full accept queue (backlog): SYN or final ACK dropped",
    ),
    (
        "TcpExtListenDrops",
        "connections dropped at a listener (overflows included)",
    ),
    (
        "TcpExtTCPReqQFullDrop",
        "SYN dropped: SYN queue full, no syncookies",
    ),
    (
        "TcpExtSyncookiesSent",
        "SYN answered with a syncookie (SYN queue full)",
    ),
    (
        "TcpExtTCPSynRetrans",
        "SYN and SYN-ACK retransmits (each adds 1, 2, 4, 8… s)",
    ),
    ("TcpRetransSegs", "segments retransmitted"),
    ("TcpExtTCPTimeouts", "retransmit timer expiries"),
    (
        "TcpExtTCPBacklogDrop",
        "segments dropped: socket backlog full",
    ),
    (
        "TcpExtTCPMemoryPressures",
        "entries into TCP memory pressure (tcp_mem)",
    ),
    ("TcpExtTCPAbortOnMemory", "connections aborted for memory"),
    ("TcpAttemptFails", "connects failed"),
    ("TcpEstabResets", "established connections reset"),
];

/// `nstat -asz` output as name → value.
fn read_nstat(path: &Path) -> Option<BTreeMap<String, f64>> {
    let t = std::fs::read_to_string(path).ok()?;
    let m: BTreeMap<String, f64> = t
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect();
    (!m.is_empty()).then_some(m)
}

/// A table of the counters' changes over each proxy's loadgen run (raw/<proxy>.nstat.*),
/// when the run recorded them.
fn kernel_counters(o: &mut String, dir: &Path, proxies: &[Proxy]) {
    // Per proxy: each counter's change over its run.
    let deltas: Vec<(&str, Vec<f64>)> = proxies
        .iter()
        .filter_map(|p| {
            let b = read_nstat(&dir.join(format!("raw/{}.nstat.before", p.name)))?;
            let a = read_nstat(&dir.join(format!("raw/{}.nstat.after", p.name)))?;
            let d = COUNTERS
                .iter()
                .map(|(c, _)| a.get(*c).copied().unwrap_or(0.0) - b.get(*c).copied().unwrap_or(0.0))
                .collect();
            Some((p.name, d))
        })
        .collect();
    if deltas.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "Kernel TCP counters over the loadgen run (ramp, hold, probe; whole box, `nstat`; raw/*.nstat.*):"
    );
    let _ = writeln!(o);
    let _ = write!(o, "| counter | meaning |");
    for (n, _) in &deltas {
        let _ = write!(o, " {n} |");
    }
    let _ = writeln!(o);
    let _ = write!(o, "|---|---|");
    for _ in &deltas {
        let _ = write!(o, "---:|");
    }
    let _ = writeln!(o);
    for (i, (name, meaning)) in COUNTERS.iter().enumerate() {
        let _ = write!(o, "| {name} | {meaning} |");
        for (_, d) in &deltas {
            let _ = write!(o, " {} |", fmt_num(d[i]));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o);
}

/// The planned `--conns` when loadgen's ramp was stopped at the memory floor (SIGUSR1).
fn ramp_stopped(p: &Proxy) -> Option<f64> {
    let res = p.result.as_ref()?;
    if res.get("ramp_stopped").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    res.get("params").and_then(|v| num(Some(v), "conns"))
}

//! ceiling_report: summary.md and an SVG plot for a results folder written by
//! `scripts/ceiling.sh`.
//!
//! `ceiling_report RUN_DIR` reads `meta.json`, `raw/{ringway,nginx}.{session,loadgen}.json`,
//! `raw/{ringway,nginx}.mem.tsv` (1-second samples of the proxy tree's RSS and the box's
//! MemFree, Slab, SUnreclaim and TCP sockets), `logs/ringway.err` (ringway's own stats lines)
//! and `logs/nginx.error.log`, `explain/*.txt`, and writes `summary.md` and
//! `plots/ceiling-memory.svg` (proxy RSS and MemFree drop against tunnels connected, and
//! against time). It only reads files, so it can be re-run on an old folder.
//!
//! Figures: "before" = mean of the samples before loadgen started; "held" = median of the
//! samples from 2 s after the ramp settled to the end of the hold (or the extreme sample when
//! the run was cut short). Per tunnel = (held − before) / tunnels held (loadgen `ok`).

use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PROXIES: [&str; 2] = ["ringway", "nginx"];

/// One 1-second sample (see sample_box in scripts/lib/ceiling.sh).
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    t_ms: f64,
    rss_kb: f64,
    anon_kb: f64,
    procs: f64,
    free_kb: f64,
    slab_kb: f64,
    sunreclaim_kb: f64,
    tcp_inuse: f64,
}

struct Proxy {
    name: &'static str,
    session: Option<Value>,
    result: Option<Value>,
    mem: Vec<Sample>,
    log: String,
}

fn read_json(p: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(p).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn read_mem(p: &Path) -> Vec<Sample> {
    let Ok(text) = std::fs::read_to_string(p) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split('\t')
                .map(|x| x.trim().parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 8).then(|| Sample {
                t_ms: v[0],
                rss_kb: v[1],
                anon_kb: v[2],
                procs: v[3],
                free_kb: v[4],
                slab_kb: v[5],
                sunreclaim_kb: v[6],
                tcp_inuse: v[7],
            })
        })
        .collect()
}

fn num(v: Option<&Value>, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(v?, |v, k| v.get(k))
        .and_then(Value::as_f64)
}
fn text<'a>(v: Option<&'a Value>, path: &str) -> &'a str {
    path.split('.')
        .try_fold(
            match v {
                Some(v) => v,
                None => return "",
            },
            |v, k| v.get(k),
        )
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Numbers for humans (see `ringway_bench::fmt`).
fn f(x: f64) -> String {
    ringway_bench::fmt::fmt_num(x)
}
/// Counts and parameters: thousands separators, no forced decimals (1, 0.5, 100,000).
fn fi(x: Option<f64>) -> String {
    match x {
        Some(x) if x.abs() >= 1000.0 => f(x),
        Some(x) => format!("{x}"),
        None => "–".into(),
    }
}
fn fo(x: Option<f64>) -> String {
    x.map(f).unwrap_or_else(|| "–".into())
}

fn kinds(v: Option<&Value>) -> String {
    ringway_bench::fmt::failure_kinds(v)
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    Some(xs[xs.len() / 2])
}
fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Before/held figures of one proxy's run.
#[derive(Default)]
struct Mem {
    before: Sample,
    held: Sample,
    min_free_kb: f64,
    max_rss_kb: f64,
    held_from_window: bool,
}

impl Proxy {
    fn t0(&self) -> Option<f64> {
        num(self.session.as_ref(), "loadgen_t0_ms")
    }
    fn ok(&self) -> Option<f64> {
        num(self.result.as_ref(), "ok")
    }

    fn mem_stats(&self) -> Option<Mem> {
        let t0 = self.t0()?;
        let pick = |sel: &dyn Fn(&Sample) -> bool| -> Vec<Sample> {
            self.mem.iter().filter(|s| sel(s)).copied().collect()
        };
        let before = pick(&|s| s.t_ms < t0);
        if before.is_empty() {
            return None;
        }
        let avg = |v: &[Sample], g: fn(&Sample) -> f64| {
            mean(&v.iter().map(g).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let b = Sample {
            t_ms: t0,
            rss_kb: avg(&before, |s| s.rss_kb),
            anon_kb: avg(&before, |s| s.anon_kb),
            procs: avg(&before, |s| s.procs),
            free_kb: avg(&before, |s| s.free_kb),
            slab_kb: avg(&before, |s| s.slab_kb),
            sunreclaim_kb: avg(&before, |s| s.sunreclaim_kb),
            tcp_inuse: avg(&before, |s| s.tcp_inuse),
        };
        let during = pick(&|s| s.t_ms >= t0);
        let min_free_kb = during
            .iter()
            .map(|s| s.free_kb)
            .fold(f64::INFINITY, f64::min);
        let max_rss_kb = during.iter().map(|s| s.rss_kb).fold(0.0, f64::max);
        // The hold window: from 2 s after the ramp settled to the end of the hold.
        let ramp = num(self.result.as_ref(), "ramp_s");
        let hold = num(self.result.as_ref(), "params.hold")
            .or_else(|| num(self.result.as_ref(), "params.hold_s"));
        let window: Vec<Sample> = match (ramp, hold) {
            (Some(r), Some(h)) if h >= 3.0 => {
                let lo = t0 + (r + 2.0) * 1000.0;
                let hi = t0 + (r + h) * 1000.0;
                pick(&|s| s.t_ms >= lo && s.t_ms <= hi)
            }
            _ => Vec::new(),
        };
        let (held, from_window) = if window.len() >= 2 {
            let m = |g: fn(&Sample) -> f64| median(window.iter().map(g).collect()).unwrap_or(0.0);
            (
                Sample {
                    t_ms: 0.0,
                    rss_kb: m(|s| s.rss_kb),
                    anon_kb: m(|s| s.anon_kb),
                    procs: m(|s| s.procs),
                    free_kb: m(|s| s.free_kb),
                    slab_kb: m(|s| s.slab_kb),
                    sunreclaim_kb: m(|s| s.sunreclaim_kb),
                    tcp_inuse: m(|s| s.tcp_inuse),
                },
                true,
            )
        } else {
            // Cut short: the sample with the most TCP sockets.
            let s = during
                .iter()
                .copied()
                .max_by(|a, b| a.tcp_inuse.total_cmp(&b.tcp_inuse))?;
            (s, false)
        };
        Some(Mem {
            before: b,
            held,
            min_free_kb,
            max_rss_kb,
            held_from_window: from_window,
        })
    }

    /// Tunnels connected (loadgen's series) at epoch ms `t`, linear between samples.
    fn connected_at(&self, t: f64) -> Option<f64> {
        let t0 = self.t0()?;
        let series = self.result.as_ref()?.get("series")?.as_array()?;
        let pts: Vec<(f64, f64)> = series
            .iter()
            .filter_map(|p| Some((t0 + p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
            .collect();
        if pts.is_empty() {
            return None;
        }
        if t <= pts[0].0 {
            return Some(if t < t0 { 0.0 } else { pts[0].1 });
        }
        for w in pts.windows(2) {
            if t >= w[0].0 && t <= w[1].0 {
                let span = (w[1].0 - w[0].0).max(1.0);
                return Some(w[0].1 + (w[1].1 - w[0].1) * (t - w[0].0) / span);
            }
        }
        None // after the last sample: the clients are closing
    }

    /// ringway's own stats blocks: sum of `tunnels N` per block of `stats: worker` lines.
    /// Whether the SIGUSR1 stats were taken inside the hold (after the ramp, before the probe).
    fn usr1_in_hold(&self) -> bool {
        let (Some(t0), Some(u)) = (self.t0(), num(self.session.as_ref(), "usr1_ms")) else {
            return false;
        };
        let r = &self.result;
        match (num(r.as_ref(), "ramp_s"), num(r.as_ref(), "params.hold")) {
            (Some(ramp), Some(hold)) => u >= t0 + ramp * 1000.0 && u <= t0 + (ramp + hold) * 1000.0,
            _ => false,
        }
    }

    fn ringway_tunnel_counts(&self) -> Vec<u64> {
        let mut blocks = Vec::new();
        let mut cur: Option<u64> = None;
        for l in self.log.lines() {
            if let Some(rest) = l.strip_prefix("stats: worker ") {
                let n = rest
                    .split(", ")
                    .find_map(|p| p.strip_prefix("tunnels ")?.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                *cur.get_or_insert(0) += n;
            } else if let Some(c) = cur.take() {
                blocks.push(c);
            }
        }
        if let Some(c) = cur {
            blocks.push(c);
        }
        blocks
    }
}

fn load(dir: &Path) -> Vec<Proxy> {
    PROXIES
        .iter()
        .map(|&name| {
            let log = match name {
                "ringway" => {
                    std::fs::read_to_string(dir.join("logs/ringway.err")).unwrap_or_default()
                }
                _ => std::fs::read_to_string(dir.join("logs/nginx.error.log")).unwrap_or_default(),
            };
            Proxy {
                name,
                session: read_json(&dir.join(format!("raw/{name}.session.json"))),
                result: read_json(&dir.join(format!("raw/{name}.loadgen.json"))),
                mem: read_mem(&dir.join(format!("raw/{name}.mem.tsv"))),
                log,
            }
        })
        .filter(|p| p.session.is_some() || p.result.is_some())
        .collect()
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0;

fn summary(dir: &Path, meta: Option<&Value>, proxies: &[Proxy]) -> (String, Vec<String>) {
    let mut o = String::new();
    let mut problems = Vec::new();
    let n = num(meta, "params.tunnels").unwrap_or(0.0);
    let _ = writeln!(o, "# Idle WebSocket tunnels held: {} tunnels", f(n));
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
        fi(num(meta, "cpu_count")),
        text(meta, "cpu_model"),
        fo(num(meta, "mem_total_kb").map(|k| k / 1024.0)),
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
        fi(num(meta, "params.workers")),
        fi(num(meta, "params.worker_connections")),
        fi(num(meta, "params.budget")),
        fi(num(meta, "params.backend_procs_each")),
        fi(num(meta, "params.loadgen_procs")),
        fi(num(meta, "params.rate")),
        fi(num(meta, "params.hold_s")),
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
    row("attempted", &|p, _| fo(r(p, "attempted")));
    row("**held (set up: 101 + banner)**", &|p, _| {
        format!("**{}**", fo(p.ok()))
    });
    row("failed (kinds)", &|p, _| {
        format!(
            "{} ({})",
            fo(r(p, "failed_total")),
            kinds(p.result.as_ref().and_then(|v| v.get("failed")))
        )
    });
    row("first failure at ramp index", &|p, _| {
        let i = r(p, "first_failure_index");
        match i {
            Some(i) => format!(
                "{} ({})",
                f(i),
                text(p.result.as_ref(), "first_failure_kind")
            ),
            None => "–".into(),
        }
    });
    row("ramp time (s)", &|p, _| fo(r(p, "ramp_s")));
    row("dropped during ramp / hold", &|p, _| {
        format!(
            "{} / {}",
            fo(r(p, "dropped_during_ramp")),
            fo(r(p, "dropped_during_hold"))
        )
    });
    row("alive after hold (answered the probe)", &|p, _| {
        fo(r(p, "alive_after_hold"))
    });
    row(
        "proxy processes (tree)",
        &|_, m| fi(m.map(|m| m.held.procs)),
    );
    row("proxy RSS before → held (MiB)", &|_, m| match m {
        Some(m) => format!("{} → {}", f(m.before.rss_kb / MIB), f(m.held.rss_kb / MIB)),
        None => "–".into(),
    });
    row("proxy RSS peak (MiB)", &|_, m| {
        fo(m.map(|m| m.max_rss_kb / MIB))
    });
    row("**proxy RSS per tunnel (KiB)**", &|p, m| {
        format!(
            "**{}**",
            fo(m.and_then(|m| per(p, m.held.rss_kb - m.before.rss_kb)))
        )
    });
    row("proxy RssAnon per tunnel (KiB)", &|p, m| {
        fo(m.and_then(|m| per(p, m.held.anon_kb - m.before.anon_kb)))
    });
    row("kernel Slab per tunnel, whole box (KiB)", &|p, m| {
        fo(m.and_then(|m| per(p, m.held.slab_kb - m.before.slab_kb)))
    });
    row("kernel SUnreclaim per tunnel, whole box (KiB)", &|p, m| {
        fo(m.and_then(|m| per(p, m.held.sunreclaim_kb - m.before.sunreclaim_kb)))
    });
    row("TCP sockets in use per tunnel, whole box", &|p, m| {
        fo(m.and_then(|m| per(p, m.held.tcp_inuse - m.before.tcp_inuse)))
    });
    row("**MemFree drop per tunnel, whole box (KiB)**", &|p, m| {
        format!(
            "**{}**",
            fo(m.and_then(|m| per(p, m.before.free_kb - m.held.free_kb)))
        )
    });
    row("MemFree before → lowest (MiB)", &|_, m| match m {
        Some(m) => format!("{} → {}", f(m.before.free_kb / MIB), f(m.min_free_kb / MIB)),
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
                format!("{} tunnels (SIGUSR1 during the hold)", f(*c as f64))
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
                format!("{} ({} sockets left at SIGTERM)", fi(Some(d)), fi(Some(u)))
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
            (Some(false), rc) => format!("DIED before the stop ({})", fo(rc)),
            (_, rc) => fi(rc),
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
                fo(num(p.session.as_ref(), "loadgen_exit")),
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
                f(att - ok),
                f(att),
                kinds(res.get("failed"))
            ));
        }
        if dr + dh > 0.0 {
            problems.push(format!(
                "{}: {} tunnels dropped ({} in the ramp, {} in the hold; kinds: {})",
                p.name,
                f(dr + dh),
                f(dr),
                f(dh),
                kinds(res.get("dropped_kinds"))
            ));
        }
        if alive + dh + dr < ok {
            problems.push(format!(
                "{}: only {} of {} held tunnels answered the probe after the hold",
                p.name,
                f(alive),
                f(ok)
            ));
        }
        if p.name == "ringway" && p.usr1_in_hold() {
            if let Some(c) = p.ringway_tunnel_counts().first() {
                let expect = ok - dr - dh;
                if (*c as f64 - expect).abs() > (expect * 0.002).max(5.0) {
                    problems.push(format!("ringway: its stats (SIGUSR1 while held) count {} tunnels, loadgen holds {}", f(*c as f64), f(expect)));
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
                fi(num(p.session.as_ref(), "exit_status"))
            ));
        } else if num(p.session.as_ref(), "exit_status").is_some_and(|rc| rc != 0.0) {
            problems.push(format!(
                "{}: exit status {} on SIGTERM",
                p.name,
                fi(num(p.session.as_ref(), "exit_status"))
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
        let _ = writeln!(
            o,
            "- **{}**: {} of {} held{}. Lowest MemFree {} MiB. At {} KiB of MemFree per tunnel (whole box: clients, proxy, backends), \
             the box reaches 3 GiB free at about {} tunnels in this layout.",
            p.name,
            f(ok),
            f(att),
            if held_all { " (nothing bound at this size)" } else { "" },
            f(m.min_free_kb / MIB),
            f(box_per),
            if more.is_finite() { f(ok + more.max(0.0)) } else { "– (too small a drop to project)".into() },
        );
    }
    let _ = writeln!(o);
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

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn color(p: &str) -> RGBColor {
    match p {
        "ringway" => RGBColor(31, 119, 180),
        _ => RGBColor(44, 160, 44),
    }
}

fn plot(proxies: &[Proxy], path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (960, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(410);
    // Top: against tunnels connected (ramp and hold, while loadgen's series covers it).
    struct Line {
        label: String,
        col: RGBColor,
        dashed: bool,
        pts: Vec<(f64, f64)>,
    }
    let mut by_tunnels: Vec<Line> = Vec::new();
    let mut by_time: Vec<Line> = Vec::new();
    for p in proxies {
        let (Some(m), Some(t0)) = (p.mem_stats(), p.t0()) else {
            continue;
        };
        let col = color(p.name);
        let mut rss = Vec::new();
        let mut drop = Vec::new();
        for s in &p.mem {
            if let Some(c) = p.connected_at(s.t_ms).filter(|_| s.t_ms >= t0) {
                rss.push((c, (s.rss_kb - m.before.rss_kb) / MIB));
                drop.push((c, (m.before.free_kb - s.free_kb) / MIB));
            }
        }
        by_tunnels.push(Line {
            label: format!("{}: proxy RSS growth", p.name),
            col,
            dashed: false,
            pts: rss,
        });
        by_tunnels.push(Line {
            label: format!("{}: MemFree drop (box)", p.name),
            col,
            dashed: true,
            pts: drop,
        });
        let tt = |s: &Sample| (s.t_ms - t0) / 1000.0;
        by_time.push(Line {
            label: format!("{}: proxy RSS growth", p.name),
            col,
            dashed: false,
            pts: p
                .mem
                .iter()
                .map(|s| (tt(s), (s.rss_kb - m.before.rss_kb) / MIB))
                .collect(),
        });
        by_time.push(Line {
            label: format!("{}: MemFree drop (box)", p.name),
            col,
            dashed: true,
            pts: p
                .mem
                .iter()
                .map(|s| (tt(s), (m.before.free_kb - s.free_kb) / MIB))
                .collect(),
        });
    }
    let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                lines: &[Line],
                caption: &str,
                xdesc: &str,
                tunnels: bool|
     -> PlotResult {
        let xs = lines.iter().flat_map(|l| l.pts.iter().map(|p| p.0));
        let xmin = xs.clone().fold(0.0, f64::min);
        let xmax = xs.fold(1.0, f64::max);
        let ys = lines.iter().flat_map(|l| l.pts.iter().map(|p| p.1));
        let ymin = ys.clone().fold(0.0, f64::min);
        let ymax = ys.fold(1.0, f64::max);
        let mut c = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax * 1.02, ymin.min(0.0)..ymax * 1.08)?;
        c.configure_mesh()
            .x_desc(xdesc)
            .y_desc("MiB")
            .x_label_formatter(&|x| {
                if tunnels {
                    f(x.round())
                } else {
                    format!("{x:.0}")
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for l in lines {
            let col = l.col;
            let style = col.stroke_width(2);
            if l.dashed {
                c.draw_series(DashedLineSeries::new(l.pts.clone(), 6, 4, style))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 8, y)], col.stroke_width(2))
                    });
            } else {
                c.draw_series(LineSeries::new(l.pts.clone(), style))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                    });
            }
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    };
    draw(
        &top,
        &by_tunnels,
        "Memory against tunnels connected (ramp and hold)",
        "tunnels connected (loadgen)",
        true,
    )?;
    draw(
        &bottom,
        &by_time,
        "Memory over the run (dashed: box MemFree drop; solid: proxy tree RSS growth)",
        "time since loadgen start (s)",
        false,
    )?;
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: ceiling_report RUN_DIR   (a folder written by scripts/ceiling.sh)");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let meta = read_json(&dir.join("meta.json"));
    let proxies = load(&dir);
    if proxies.is_empty() {
        eprintln!(
            "ceiling_report: no raw/{{ringway,nginx}}.session.json in {}",
            dir.display()
        );
        std::process::exit(1);
    }
    let (md, problems) = summary(&dir, meta.as_ref(), &proxies);
    let path = dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("ceiling_report: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let plots = dir.join("plots");
    let _ = std::fs::create_dir_all(&plots);
    if let Err(e) = plot(&proxies, &plots.join("ceiling-memory.svg")) {
        eprintln!("ceiling_report: plot: {e}");
    }
    for p in &problems {
        eprintln!("ceiling_report: problem: {p}");
    }
    eprintln!(
        "ceiling_report: wrote {} and {}/ceiling-memory.svg",
        path.display(),
        plots.display()
    );
}

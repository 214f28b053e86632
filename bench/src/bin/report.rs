//! report: summary.md and SVG plots for a results folder written by `scripts/compare.sh`.
//!
//! `report RUN_DIR` reads `RUN_DIR/meta.json`, `RUN_DIR/raw/*.json` (loadgen results named
//! `SESSION__WORKLOAD.json`, proxy facts named `SESSION.session.json`), `RUN_DIR/raw/*.mem.tsv`
//! (proxy RSS and MemFree samples) and `RUN_DIR/conf/*.conf` (the budgets), and writes
//! `RUN_DIR/summary.md` and `RUN_DIR/plots/{ramp,latency,cpu}.svg`. It only reads the raw files,
//! so it can be re-run on an old folder (e.g. after changing this report).
//!
//! Session labels: `ceiling__{ringway,nginx}` (1 worker, seed budget), `raised__{ringway,nginx}`
//! (same raised budget for both), `nginxmax__nginx` (nginx's own largest here) and
//! `perf__rN__{ringway-splice,ringway-copy,nginx,direct}` (repetition N of echo, bulk and
//! HTTP; the `http-cN` workloads skip ringway-copy, since plain HTTP never reaches the relay).

use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PERF_TARGETS: [&str; 4] = ["ringway-splice", "ringway-copy", "nginx", "direct"];
const ECHO_WL: [&str; 2] = ["echo64-c100", "echo64-c1000"];
const BULK_WL: [&str; 2] = ["bulk1m-c1", "bulk1m-c10"];
/// Targets of the HTTP workloads (`http-c<conns>`).
const HTTP_TARGETS: [&str; 3] = ["ringway-splice", "nginx", "direct"];

struct Run {
    dir: PathBuf,
    meta: Value,
    sessions: BTreeMap<String, Value>,
    results: BTreeMap<(String, String), Value>,
    mem: BTreeMap<String, Vec<(f64, f64, f64)>>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: report RUN_DIR   (a folder written by scripts/compare.sh)");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let run = match load(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("report: {e}");
            std::process::exit(1);
        }
    };
    let md = summary(&run);
    let path = dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, md) {
        eprintln!("report: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let plots = dir.join("plots");
    let _ = std::fs::create_dir_all(&plots);
    for (name, res) in [
        ("ramp.svg", plot_ramp(&run, &plots.join("ramp.svg"))),
        (
            "latency.svg",
            plot_latency(&run, &plots.join("latency.svg")),
        ),
        ("cpu.svg", plot_cpu(&run, &plots.join("cpu.svg"))),
    ] {
        if let Err(e) = res {
            eprintln!("report: plot {name}: {e}");
        }
    }
    eprintln!(
        "report: wrote {} and {}/*.svg",
        path.display(),
        plots.display()
    );
}

// -------------------------------------------------------------------------------------------
// Loading
// -------------------------------------------------------------------------------------------

fn read_json(p: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(text.trim()).map_err(|e| format!("{}: {e}", p.display()))
}

fn load(dir: &Path) -> Result<Run, String> {
    let meta = read_json(&dir.join("meta.json"))?;
    let mut run = Run {
        dir: dir.to_path_buf(),
        meta,
        sessions: BTreeMap::new(),
        results: BTreeMap::new(),
        mem: BTreeMap::new(),
    };
    let raw = dir.join("raw");
    let entries = std::fs::read_dir(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let p = raw.join(&name);
        if let Some(s) = name.strip_suffix(".session.json") {
            run.sessions.insert(s.to_string(), read_json(&p)?);
        } else if let Some(s) = name.strip_suffix(".mem.tsv") {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let rows = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<f64> = l
                        .split('\t')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect();
                    (f.len() == 3).then(|| (f[0], f[1], f[2]))
                })
                .collect();
            run.mem.insert(s.to_string(), rows);
        } else if let Some(s) = name.strip_suffix(".json") {
            if let Some((session, wl)) = s.rsplit_once("__") {
                match read_json(&p) {
                    Ok(v) => {
                        run.results.insert((session.to_string(), wl.to_string()), v);
                    }
                    Err(e) => eprintln!("report: skipping {e}"),
                }
            }
        }
    }
    Ok(run)
}

// -------------------------------------------------------------------------------------------
// Small helpers
// -------------------------------------------------------------------------------------------

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}
fn num(v: &Value, path: &str) -> Option<f64> {
    at(v, path).and_then(Value::as_f64)
}
fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// Numbers for humans (see `ringway_bench::fmt`).
fn f(x: f64) -> String {
    ringway_bench::fmt::human(x)
}
/// Counts: thousands separators, no decimals.
fn fi(x: Option<f64>) -> String {
    match x {
        Some(x) if x.abs() >= 1000.0 => f(x),
        Some(x) => format!("{x:.0}"),
        None => "–".into(),
    }
}
/// Parameters as given (1, 0.5, 30).
fn fp(x: Option<f64>) -> String {
    x.map(|x| format!("{x}")).unwrap_or_else(|| "–".into())
}
fn fo(x: Option<f64>) -> String {
    x.map(f).unwrap_or_else(|| "–".into())
}
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}
fn fr(x: Option<f64>) -> String {
    x.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

#[derive(Clone, Copy)]
struct Spread {
    min: f64,
    med: f64,
    max: f64,
    n: usize,
}
fn spread(mut xs: Vec<f64>) -> Option<Spread> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    let med = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Some(Spread {
        min: xs[0],
        med,
        max: xs[n - 1],
        n,
    })
}
fn fs(s: Option<Spread>, unit: &str) -> String {
    let sep = if unit.is_empty() { "" } else { " " };
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{}{sep}{unit}", f(s.med)),
        Some(s) => format!("{}{sep}{unit} ({}–{})", f(s.med), f(s.min), f(s.max)),
    }
}
fn med(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.med)
}

/// "HTTP 503 ×77, reset ×12" from a loadgen failure object.
fn kinds(v: Option<&Value>) -> String {
    ringway_bench::fmt::failure_kinds(v)
}

fn failures_total(v: Option<&Value>) -> u64 {
    let Some(v) = v else { return 0 };
    let mut n: u64 = ["reset", "eof", "refused", "timeout", "other"]
        .iter()
        .map(|k| v.get(*k).and_then(Value::as_u64).unwrap_or(0))
        .sum();
    for key in ["http_status", "other_errors"] {
        if let Some(h) = v.get(key).and_then(Value::as_object) {
            n += h.values().filter_map(Value::as_u64).sum::<u64>();
        }
    }
    n
}

impl Run {
    fn result(&self, session: &str, wl: &str) -> Option<&Value> {
        self.results.get(&(session.to_string(), wl.to_string()))
    }

    /// (workers, worker_connections, expected clients) from the session's generated conf.
    fn budget(&self, session: &str) -> Option<(u64, u64, u64)> {
        let conf = text(self.sessions.get(session)?, "conf");
        let body = std::fs::read_to_string(self.dir.join(conf)).ok()?;
        let grab = |key: &str| -> Option<u64> {
            body.lines().map(str::trim).find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches(';')
                    .trim()
                    .parse()
                    .ok()
            })
        };
        let w = grab("worker_processes")?;
        let wc = grab("worker_connections")?;
        Some((w, wc, w * ((wc.saturating_sub(2)) / 2)))
    }

    fn reps(&self, target: &str, wl: &str) -> Vec<&Value> {
        self.results
            .iter()
            .filter(|((s, w), _)| {
                w == wl
                    && s.starts_with("perf__r")
                    && s.rsplit_once("__").map(|x| x.1) == Some(target)
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// Spread over repetitions of metric `get` for (target, workload).
    fn metric(
        &self,
        target: &str,
        wl: &str,
        get: impl Fn(&Value) -> Option<f64>,
    ) -> Option<Spread> {
        spread(self.reps(target, wl).into_iter().filter_map(get).collect())
    }
}

/// CPU of the proxy (first watched pid, with its descendants) per unit, or None for direct.
fn proxy_cpu(v: &Value, target: &str, field: &str) -> Option<f64> {
    if target == "direct" {
        return None;
    }
    v.get("watched")?
        .as_array()?
        .first()
        .and_then(|w| num(w, field))
}
/// CPU of the backends per unit: watched[1..] through a proxy, watched[0] for direct.
fn backend_cpu(v: &Value, target: &str, field: &str) -> Option<f64> {
    let w = v.get("watched")?.as_array()?;
    let skip = usize::from(target != "direct");
    let xs: Vec<f64> = w.iter().skip(skip).filter_map(|w| num(w, field)).collect();
    (!xs.is_empty()).then(|| xs.iter().sum())
}

fn target_label(t: &str) -> &str {
    match t {
        "ringway-splice" => "ringway (splice)",
        "ringway-copy" => "ringway (copy)",
        "nginx" => "nginx",
        "direct" => "direct (no proxy)",
        other => other,
    }
}

// -------------------------------------------------------------------------------------------
// summary.md
// -------------------------------------------------------------------------------------------

fn summary(run: &Run) -> String {
    let m = &run.meta;
    let mut o = String::new();
    let mut problems: Vec<String> = Vec::new();
    let mut nginx_wins: Vec<String> = Vec::new();

    let _ = writeln!(
        o,
        "# ringway vs nginx: {} run of {}\n",
        text(m, "mode"),
        text(m, "date_utc")
    );
    let _ = writeln!(
        o,
        "- commit `{}`{} · kernel {} · {} × {} · {} · {} · {}",
        text(m, "short_sha"),
        if m.get("dirty").and_then(Value::as_bool) == Some(true) {
            " (dirty tree)"
        } else {
            ""
        },
        text(m, "kernel"),
        num(m, "cpu_count")
            .map(|c| c.to_string())
            .unwrap_or_default(),
        text(m, "cpu_model"),
        text(m, "rustc"),
        text(m, "nginx"),
        text(m, "ringway")
    );
    let _ = writeln!(
        o,
        "- command: `{}` · duration {} s · tuning {} · ulimit -n {} · somaxconn {} · port range {} · tcp_tw_reuse {}",
        text(m, "command_line"),
        fo(num(m, "duration_s")),
        if m.get("tune").and_then(Value::as_bool) == Some(true) { "applied (tuning/apply.sh)" } else { "none" },
        text(m, "ulimit_n_soft"),
        at(m, "sysctls").and_then(|s| s.get("net.core.somaxconn")).and_then(Value::as_str).unwrap_or(""),
        at(m, "sysctls").and_then(|s| s.get("net.ipv4.ip_local_port_range")).and_then(Value::as_str).unwrap_or(""),
        at(m, "sysctls").and_then(|s| s.get("net.ipv4.tcp_tw_reuse")).and_then(Value::as_str).unwrap_or(""),
    );
    let _ = writeln!(
        o,
        "- clients (loadgen), backends (4 × wsecho), and the proxy all share these {} CPUs on loopback: \
         read ratios and orders of magnitude, not absolute figures. Both proxies read the same generated \
         nginx.conf per test (`conf/`); nginx: {}.\n",
        num(m, "cpu_count").map(|c| c.to_string()).unwrap_or_default(),
        text(m, "nginx_isolation")
    );

    // 1. Ceiling
    let _ = writeln!(o, "## 1. Ceiling at the seed budget\n");
    let _ = writeln!(
        o,
        "| proxy | budget | expected | held (ok) | attempted | what the excess clients saw | first failure (ramp index) | dropped in hold | alive after hold | \"worker_connections are not enough\" log lines |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for p in ["ringway", "nginx"] {
        let s = format!("ceiling__{p}");
        ceiling_row(run, &s, p, &mut o, &mut problems);
    }
    for p in ["ringway", "nginx"] {
        let s = format!("ceiling__{p}");
        if let Some(sess) = run.sessions.get(&s) {
            let first = text(sess, "not_enough_first");
            if !first.is_empty() {
                let _ = writeln!(o, "\n- {p} log: `{}`", first.trim());
            }
            let b = text(sess, "budget_line");
            if !b.is_empty() {
                let _ = writeln!(o, "- {p} startup: `{}`", b.trim());
            }
        }
    }

    // 2. Distribution
    let _ = writeln!(o, "\n## 2. Distribution over the 4 backends (round robin, held tunnels of the ceiling runs)\n");
    let _ = writeln!(o, "| proxy | tunnels per backend | max − min |");
    let _ = writeln!(o, "|---|---|---|");
    for p in ["ringway", "nginx"] {
        let Some(r) = run.result(&format!("ceiling__{p}"), "ceiling") else {
            continue;
        };
        if let Some(d) = r.get("distribution").and_then(Value::as_object) {
            let counts: Vec<u64> = d.values().filter_map(Value::as_u64).collect();
            let cells: Vec<String> = d
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{} {}",
                        k.trim_start_matches("backend:"),
                        v.as_u64().unwrap_or(0)
                    )
                })
                .collect();
            let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
            let _ = writeln!(
                o,
                "| {p} | port → tunnels: {} | {spread} |",
                cells.join(", ")
            );
        }
    }

    // 3. Raised ceiling
    let _ = writeln!(o, "\n## 3. Raised ceiling (ramp, hold, memory)\n");
    let _ = writeln!(
        o,
        "Here ringway runs its workers as threads of one process (its default), so this machine's 20,000-fd limit \
         per process caps it near 2 × 9,700 slots; nginx runs worker processes with 20,000 fds each. The first two \
         rows use the same budget; the third is nginx's own largest here. ringway's `--worker-mode process` lifts \
         the per-process cap: `scripts/ceiling.sh` compares both at 100,000 tunnels (13 worker processes each) and \
         takes ringway to 500,000. RSS: the proxy's resident memory (nginx: master + workers) before the ramp and \
         while held; MemFree: the whole box (clients and backends included).\n"
    );
    let _ = writeln!(
        o,
        "| proxy | budget | expected | held (ok) | attempted | excess clients saw | ramp | dropped (ramp / hold) | alive after hold | RSS before → held | RSS per held tunnel | MemFree drop per tunnel (box) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rss_per: BTreeMap<&str, f64> = BTreeMap::new();
    for (s, label) in [
        ("raised__ringway", "ringway"),
        ("raised__nginx", "nginx"),
        ("nginxmax__nginx", "nginx (its largest here)"),
    ] {
        let Some(r) = run.result(s, "ceiling") else {
            let _ = writeln!(o, "| {label} | – | – | no result | | | | | | | | |");
            problems.push(format!("{s}: no loadgen result"));
            continue;
        };
        let (bud, exp) = match run.budget(s) {
            Some((w, wc, e)) => (format!("{w} × {}", f(wc as f64)), Some(e)),
            None => ("?".into(), None),
        };
        let ok = num(r, "ok").unwrap_or(0.0);
        if let Some(e) = exp {
            if ok as u64 != e {
                problems.push(format!(
                    "{s}: held {} tunnels, the budget says {}",
                    f(ok),
                    f(e as f64)
                ));
            }
        }
        let mem = mem_stats(run, s, r);
        // Below ~1,000 tunnels the RSS step is a few allocator pages: not a per-tunnel figure.
        let tiny = ok < 1000.0;
        if let Some((_, _, per, _)) = mem {
            if !tiny {
                rss_per.insert(s, per);
            }
        }
        let _ = writeln!(
            o,
            "| {label} | {bud} | {} | {} | {} | {} | {} s | {} / {} | {} | {} | {} | {} |",
            exp.map(|e| f(e as f64)).unwrap_or_else(|| "?".into()),
            fi(Some(ok)),
            fi(num(r, "attempted")),
            kinds(r.get("failed")),
            fo(num(r, "ramp_s")),
            fi(num(r, "dropped_during_ramp")),
            fi(num(r, "dropped_during_hold")),
            fi(num(r, "alive_after_hold")),
            mem.map(|(b, h, _, _)| format!("{} → {} MiB", f(b / 1024.0), f(h / 1024.0)))
                .unwrap_or_else(|| "–".into()),
            mem.map(|(_, _, p, _)| format!(
                "{} KiB{}",
                f(p),
                if tiny { " (too few tunnels)" } else { "" }
            ))
            .unwrap_or_else(|| "–".into()),
            mem.map(|(_, _, _, d)| format!("{} KiB", f(d)))
                .unwrap_or_else(|| "–".into()),
        );
        check_ceiling_health(s, r, &mut problems);
    }
    let nginx_short = ["raised__nginx", "nginxmax__nginx"].iter().any(|s| {
        let ok = run.result(s, "ceiling").and_then(|r| num(r, "ok"));
        matches!((ok, run.budget(s)), (Some(ok), Some((_, _, e))) if (ok as u64) < e)
    });
    if nginx_short {
        let _ = writeln!(
            o,
            "\nnginx held fewer than its budget: when its free list runs out it closes accepted connections whose \
             request has not arrived yet (\"worker_connections are not enough, reusing connections\"), and with two \
             workers a full worker drops clients the other could still take. loadgen tries each client once."
        );
    }
    if let (Some(r), Some(n)) = (rss_per.get("raised__ringway"), rss_per.get("raised__nginx")) {
        let _ = writeln!(
            o,
            "\nRSS per idle tunnel, ringway / nginx at the same budget: **{:.2}×**.",
            r / n
        );
        if r > n {
            nginx_wins.push(format!(
                "RSS per idle tunnel: ringway {} KiB vs nginx {} KiB",
                f(*r),
                f(*n)
            ));
        }
    }
    if let (Some(rr), Some(nr)) = (
        run.result("raised__ringway", "ceiling"),
        run.result("raised__nginx", "ceiling"),
    ) {
        let (a, b) = (num(rr, "ok").unwrap_or(0.0), num(nr, "ok").unwrap_or(0.0));
        if b > a {
            nginx_wins.push(format!(
                "raised ceiling at the same budget: nginx held {} vs ringway {}",
                f(b),
                f(a)
            ));
        }
    }
    let _ = writeln!(
        o,
        "\nPlot: [plots/ramp.svg](plots/ramp.svg) (tunnels held and proxy RSS over time)."
    );

    // 4. Echo
    let _ = writeln!(
        o,
        "\n## 4. Echo, 64 B messages, closed loop (1 worker × {} slots)\n",
        fo(at(m, "params.perf_budget")
            .and_then(|b| b.get(1))
            .and_then(Value::as_f64))
    );
    let _ = writeln!(
        o,
        "Median over {} interleaved repetition(s) of {} s each, (min–max) in brackets. Proxy CPU: the proxy's process \
         tree from /proc (user + system) per echoed message; backends: the four wsecho processes (direct: the one \
         used). Ratios compare medians.\n",
        fp(num(m, "params.reps")),
        fp(num(m, "params.duration_s"))
    );
    for wl in ECHO_WL {
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let _ = writeln!(o, "### {conns} connections\n");
        let _ = writeln!(
            o,
            "| target | msgs/s | latency p50 | p90 | p99 | p99.9 | proxy CPU per msg | backends CPU per msg | msgs/s vs nginx | proxy CPU/msg vs nginx | p99 vs nginx | msgs/s vs direct | p50 vs direct | proxy CPU/msg vs direct backend |"
        );
        let _ = writeln!(
            o,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let get = |t: &str, path: &'static str| run.metric(t, wl, move |v| num(v, path));
        let cpu = |t: &str| run.metric(t, wl, |v| proxy_cpu(v, t, "tree_cpu_us_per_msg"));
        let ng_rate = med(get("nginx", "msgs_per_s"));
        let ng_cpu = med(cpu("nginx"));
        let ng_p99 = med(get("nginx", "latency_us.p99"));
        let d_rate = med(get("direct", "msgs_per_s"));
        let d_p50 = med(get("direct", "latency_us.p50"));
        let d_cpu = med(run.metric("direct", wl, |v| {
            backend_cpu(v, "direct", "tree_cpu_us_per_msg")
        }));
        for t in PERF_TARGETS {
            let rate = get(t, "msgs_per_s");
            if rate.is_none() {
                let _ = writeln!(
                    o,
                    "| {} | no result | | | | | | | | | | | | |",
                    target_label(t)
                );
                problems.push(format!("{wl} {t}: no result"));
                continue;
            }
            let p50 = get(t, "latency_us.p50");
            let p99 = get(t, "latency_us.p99");
            let c = cpu(t);
            let be = run.metric(t, wl, |v| backend_cpu(v, t, "tree_cpu_us_per_msg"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                target_label(t),
                fs(rate, "msgs/s"),
                fs(p50, "µs"),
                fs(get(t, "latency_us.p90"), "µs"),
                fs(p99, "µs"),
                fs(get(t, "latency_us.p999"), "µs"),
                fs(c, "µs"),
                fs(be, "µs"),
                if t == "direct" {
                    "–".into()
                } else {
                    fr(ratio(med(rate), ng_rate))
                },
                if t == "direct" {
                    "–".into()
                } else {
                    fr(ratio(med(c), ng_cpu))
                },
                if t == "direct" {
                    "–".into()
                } else {
                    fr(ratio(med(p99), ng_p99))
                },
                fr(ratio(med(rate), d_rate)),
                fr(ratio(med(p50), d_p50)),
                fr(ratio(med(c), d_cpu)),
            );
            if t.starts_with("ringway") {
                compare_to_nginx(
                    &mut nginx_wins,
                    wl,
                    t,
                    "msgs/s",
                    rate,
                    get("nginx", "msgs_per_s"),
                    true,
                );
                compare_to_nginx(
                    &mut nginx_wins,
                    wl,
                    t,
                    "proxy CPU µs/msg",
                    c,
                    cpu("nginx"),
                    false,
                );
                compare_to_nginx(
                    &mut nginx_wins,
                    wl,
                    t,
                    "p99 latency µs",
                    p99,
                    get("nginx", "latency_us.p99"),
                    false,
                );
            }
            for v in run.reps(t, wl) {
                perf_health(wl, t, v, &mut problems);
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "Plots: [plots/latency.svg](plots/latency.svg), [plots/cpu.svg](plots/cpu.svg)."
    );

    // 5. Bulk
    let _ = writeln!(
        o,
        "\n## 5. Bulk, 1 MiB messages, 2 in flight per connection\n"
    );
    let _ = writeln!(o, "MB = 10^6 bytes echoed back; CPU per MB as above.\n");
    for wl in BULK_WL {
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let _ = writeln!(o, "### {conns} connection(s)\n");
        let _ = writeln!(
            o,
            "| target | received MB/s | proxy CPU per MB | backends CPU per MB | MB/s vs nginx | proxy CPU/MB vs nginx | MB/s vs direct | proxy CPU/MB vs direct backend |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
        let rate = |t: &str| run.metric(t, wl, |v| num(v, "received_mb_per_s"));
        let cpu = |t: &str| run.metric(t, wl, |v| proxy_cpu(v, t, "tree_cpu_ms_per_mb"));
        let ng_rate = med(rate("nginx"));
        let ng_cpu = med(cpu("nginx"));
        let d_rate = med(rate("direct"));
        let d_cpu = med(run.metric("direct", wl, |v| {
            backend_cpu(v, "direct", "tree_cpu_ms_per_mb")
        }));
        for t in PERF_TARGETS {
            let r = rate(t);
            if r.is_none() {
                let _ = writeln!(o, "| {} | no result | | | | | | |", target_label(t));
                problems.push(format!("{wl} {t}: no result"));
                continue;
            }
            let c = cpu(t);
            let be = run.metric(t, wl, |v| backend_cpu(v, t, "tree_cpu_ms_per_mb"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                target_label(t),
                fs(r, "MB/s"),
                fs(c, "ms"),
                fs(be, "ms"),
                if t == "direct" {
                    "–".into()
                } else {
                    fr(ratio(med(r), ng_rate))
                },
                if t == "direct" {
                    "–".into()
                } else {
                    fr(ratio(med(c), ng_cpu))
                },
                fr(ratio(med(r), d_rate)),
                fr(ratio(med(c), d_cpu)),
            );
            if t.starts_with("ringway") {
                compare_to_nginx(&mut nginx_wins, wl, t, "MB/s", r, rate("nginx"), true);
                compare_to_nginx(
                    &mut nginx_wins,
                    wl,
                    t,
                    "proxy CPU ms/MB",
                    c,
                    cpu("nginx"),
                    false,
                );
            }
            for v in run.reps(t, wl) {
                perf_health(wl, t, v, &mut problems);
            }
        }
        let _ = writeln!(o);
    }

    // 6. HTTP
    http_section(run, &mut o, &mut problems, &mut nginx_wins);

    // Sessions: exits, notes
    for (s, v) in &run.sessions {
        if v.get("alive_at_stop").and_then(Value::as_bool) == Some(false) {
            problems.push(format!(
                "{s}: the proxy was dead before the stop (exit status {})",
                v["exit_status"]
            ));
        } else if let Some(rc) = v.get("exit_status").and_then(Value::as_i64) {
            if rc != 0 {
                problems.push(format!("{s}: the proxy exited with status {rc} on SIGTERM"));
            }
        }
        if let Some(notes) = v.get("notes").and_then(Value::as_array) {
            for n in notes.iter().filter_map(Value::as_str) {
                problems.push(format!("{s}: {n}"));
            }
        }
        let errs = text(v, "log_errors");
        if !errs.is_empty() {
            problems.push(format!(
                "{s}: log: {}",
                errs.lines().next().unwrap_or("").trim()
            ));
        }
    }

    let _ = writeln!(o, "## Where nginx wins (or ringway does not beat it)\n");
    if nginx_wins.is_empty() {
        let _ = writeln!(o, "- nowhere in this run's medians.");
    }
    for w in &nginx_wins {
        let _ = writeln!(o, "- {w}");
    }
    problems.dedup();
    let (mine, others): (Vec<&String>, Vec<&String>) =
        problems.iter().partition(|p| p.contains("ringway"));
    let _ = writeln!(o, "\n## Problems seen in ringway\n");
    if mine.is_empty() {
        let _ = writeln!(o, "- none: every ringway ceiling matched its budget, ringway exited 0 every time, no errors or stalls.");
    }
    for p in &mine {
        let _ = writeln!(o, "- {p}");
    }
    let _ = writeln!(o, "\n## Other observations (nginx, direct, harness)\n");
    if others.is_empty() {
        let _ = writeln!(o, "- none.");
    }
    for p in &others {
        let _ = writeln!(o, "- {p}");
    }
    let _ = writeln!(
        o,
        "\nRaw data: `raw/` (one loadgen JSON per run, `*.session.json` per proxy start, `*.mem.tsv` memory samples), \
         logs in `logs/`, configurations in `conf/`. Regenerate this file with `target/release/report {}`.",
        run.dir.display()
    );
    o
}

/// The HTTP workloads present in the results (`http-c<conns>`), by connection count.
fn http_workloads(run: &Run) -> Vec<String> {
    let mut wls: Vec<String> = run
        .results
        .keys()
        .filter(|(s, w)| s.starts_with("perf__r") && w.starts_with("http-"))
        .map(|(_, w)| w.clone())
        .collect();
    wls.sort_by_key(|w| {
        let conns = w.rsplit_once("-c").and_then(|x| x.1.parse::<u64>().ok());
        (conns.unwrap_or(u64::MAX), w.clone())
    });
    wls.dedup();
    wls
}

fn http_label(t: &str) -> &str {
    if t == "ringway-splice" {
        "ringway"
    } else {
        target_label(t)
    }
}

/// Section 6: small keep-alive GETs, requests/s and proxy CPU per request.
fn http_section(
    run: &Run,
    o: &mut String,
    problems: &mut Vec<String>,
    nginx_wins: &mut Vec<String>,
) {
    let m = &run.meta;
    let wls = http_workloads(run);
    let listed = at(m, "params.workloads")
        .and_then(Value::as_array)
        .is_some_and(|w| {
            w.iter()
                .any(|x| x.as_str().is_some_and(|x| x.starts_with("http-")))
        });
    if wls.is_empty() && !listed {
        return; // a run from before the HTTP workloads
    }
    let _ = writeln!(
        o,
        "\n## 6. HTTP, small keep-alive GETs, closed loop (1 worker × {} slots, upstream `keepalive {}`)\n",
        fo(at(m, "params.perf_budget")
            .and_then(|b| b.get(1))
            .and_then(Value::as_f64)),
        fi(num(m, "params.http_upstream_keepalive"))
    );
    let _ = writeln!(
        o,
        "`loadgen http`: each connection sends `GET /` and waits for the whole response before the next; wsecho \
         answers `200` with a 14-byte body and keeps the connection open. Requests/s counts 2xx responses; latency \
         runs from a request's first send to its response (including a reconnect it waited for). Proxy CPU: the \
         proxy's process tree per request. \"Client connections closed\": by the proxy (direct: the backend) after \
         a response, per 1,000 requests; loadgen reconnects and goes on. Same sessions as echo and bulk (median over \
         {} repetition(s) of {} s); ringway is the `--tunnel splice` session (plain HTTP never reaches the relay).\n",
        fp(num(m, "params.reps")),
        fp(num(m, "params.duration_s"))
    );
    for wl in &wls {
        let wl = wl.as_str();
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let pipeline = run
            .reps("nginx", wl)
            .first()
            .or(run.reps("direct", wl).first())
            .and_then(|v| num(v, "params.pipeline"))
            .unwrap_or(1.0);
        let _ = writeln!(
            o,
            "### {conns} connections{}\n",
            if pipeline > 1.0 {
                format!(", {pipeline} pipelined")
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            o,
            "| target | requests/s | latency p50 | p90 | p99 | p99.9 | proxy CPU per req | backends CPU per req | client connections closed per 1,000 req | req/s vs nginx | proxy CPU/req vs nginx | p99 vs nginx | req/s vs direct |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let get = |t: &str, path: &'static str| run.metric(t, wl, move |v| num(v, path));
        let cpu = |t: &str| run.metric(t, wl, |v| proxy_cpu(v, t, "tree_cpu_us_per_req"));
        let closes = |t: &str| {
            run.metric(t, wl, |v| {
                let n = num(v, "requests")?;
                (n > 0.0).then(|| num(v, "reconnects").unwrap_or(0.0) * 1000.0 / n)
            })
        };
        let ng_rate = med(get("nginx", "requests_per_s"));
        let ng_cpu = med(cpu("nginx"));
        let ng_p99 = med(get("nginx", "latency_us.p99"));
        let d_rate = med(get("direct", "requests_per_s"));
        for t in HTTP_TARGETS {
            let rate = get(t, "requests_per_s");
            if rate.is_none() {
                let _ = writeln!(o, "| {} | no result | | | | | | | | | | | |", http_label(t));
                problems.push(format!("{wl} {t}: no result"));
                continue;
            }
            let p99 = get(t, "latency_us.p99");
            let c = cpu(t);
            let be = run.metric(t, wl, |v| backend_cpu(v, t, "tree_cpu_us_per_req"));
            let cl = closes(t);
            let vs = |x: Option<f64>| if t == "direct" { "–".into() } else { fr(x) };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                http_label(t),
                fs(rate, "req/s"),
                fs(get(t, "latency_us.p50"), "µs"),
                fs(get(t, "latency_us.p90"), "µs"),
                fs(p99, "µs"),
                fs(get(t, "latency_us.p999"), "µs"),
                fs(c, "µs"),
                fs(be, "µs"),
                fs(cl, ""),
                vs(ratio(med(rate), ng_rate)),
                vs(ratio(med(c), ng_cpu)),
                vs(ratio(med(p99), ng_p99)),
                fr(ratio(med(rate), d_rate)),
            );
            // More than 1 % of responses followed by a close: the proxy does not keep client
            // connections alive (nginx closes after keepalive_requests, 1,000 by default).
            if let Some(cl) = med(cl).filter(|&x| x > 10.0) {
                problems.push(format!(
                    "{wl} {}: closed the client connection after {} of every 1,000 responses (no keep-alive to clients: each request paid a reconnect)",
                    http_label(t),
                    f(cl)
                ));
            }
            if t.starts_with("ringway") {
                let label = format!("{wl} (HTTP)");
                compare_to_nginx(
                    nginx_wins,
                    &label,
                    t,
                    "req/s",
                    rate,
                    get("nginx", "requests_per_s"),
                    true,
                );
                compare_to_nginx(
                    nginx_wins,
                    &label,
                    t,
                    "proxy CPU µs/req",
                    c,
                    cpu("nginx"),
                    false,
                );
                compare_to_nginx(
                    nginx_wins,
                    &label,
                    t,
                    "p99 latency µs",
                    p99,
                    get("nginx", "latency_us.p99"),
                    false,
                );
            }
            for v in run.reps(t, wl) {
                perf_health(wl, t, v, problems);
            }
        }
        let _ = writeln!(o);
    }
}

fn ceiling_row(run: &Run, s: &str, p: &str, o: &mut String, problems: &mut Vec<String>) {
    let Some(r) = run.result(s, "ceiling") else {
        let _ = writeln!(o, "| {p} | | | no result | | | | | | |");
        problems.push(format!("{s}: no loadgen result"));
        return;
    };
    let (bud, exp) = match run.budget(s) {
        Some((w, wc, e)) => (format!("{w} × {wc}"), Some(e)),
        None => ("?".into(), None),
    };
    let ok = num(r, "ok").unwrap_or(0.0);
    if let Some(e) = exp {
        if ok as u64 != e {
            problems.push(format!("{s}: held {} tunnels, the budget says {e}", f(ok)));
        }
    }
    let ne = run.sessions.get(s).and_then(|v| num(v, "not_enough_lines"));
    let first_idx = num(r, "first_failure_index")
        .map(f)
        .unwrap_or_else(|| "none".into());
    let _ = writeln!(
        o,
        "| {p} | {bud} | {} | **{}** | {} | {} | {} ({}) | {} | {} | {} |",
        exp.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
        fi(Some(ok)),
        fi(num(r, "attempted")),
        kinds(r.get("failed")),
        text(r, "first_failure_kind"),
        first_idx,
        fi(num(r, "dropped_during_hold")),
        fi(num(r, "alive_after_hold")),
        fi(ne),
    );
    check_ceiling_health(s, r, problems);
}

fn check_ceiling_health(s: &str, r: &Value, problems: &mut Vec<String>) {
    for k in ["dropped_during_ramp", "dropped_during_hold"] {
        if num(r, k).unwrap_or(0.0) > 0.0 {
            problems.push(format!(
                "{s}: {k} = {} ({})",
                fo(num(r, k)),
                kinds(r.get("dropped_kinds"))
            ));
        }
    }
    let ok = num(r, "ok").unwrap_or(0.0);
    let alive = num(r, "alive_after_hold").unwrap_or(0.0);
    if alive < ok {
        problems.push(format!(
            "{s}: {} of {} held tunnels answered the probe ({})",
            f(alive),
            f(ok),
            kinds(r.get("probe_failed"))
        ));
    }
}

fn perf_health(wl: &str, t: &str, v: &Value, problems: &mut Vec<String>) {
    let conns = num(v, "params.conns").unwrap_or(0.0);
    let connected = num(v, "connected").unwrap_or(0.0);
    if connected < conns {
        problems.push(format!(
            "{wl} {t}: {} of {} connected ({})",
            f(connected),
            f(conns),
            kinds(v.get("failed"))
        ));
    }
    let e = failures_total(v.get("errors"));
    if e > 0 {
        problems.push(format!("{wl} {t}: errors {}", kinds(v.get("errors"))));
    }
    if num(v, "stalled").unwrap_or(0.0) > 0.0 {
        problems.push(format!(
            "{wl} {t}: {} stalled connection(s)",
            fo(num(v, "stalled"))
        ));
    }
}

/// Notes where nginx's median beats ringway's; "(ranges overlap)" when the spreads overlap.
fn compare_to_nginx(
    wins: &mut Vec<String>,
    wl: &str,
    t: &str,
    what: &str,
    r: Option<Spread>,
    n: Option<Spread>,
    higher_better: bool,
) {
    let (Some(r), Some(n)) = (r, n) else { return };
    let nginx_better = if higher_better {
        n.med > r.med
    } else {
        n.med < r.med
    };
    if nginx_better {
        let overlap = r.min <= n.max && n.min <= r.max;
        wins.push(format!(
            "{wl}, {}: {what} nginx {} vs ringway {} ({:.2}×){}",
            target_label(t),
            f(n.med),
            f(r.med),
            r.med / n.med,
            if overlap && (r.n > 1 || n.n > 1) {
                " — ranges overlap, within noise"
            } else {
                ""
            }
        ));
    }
}

/// (rss_before_kb, rss_held_kb, rss_kib_per_tunnel, memfree_drop_kib_per_tunnel).
fn mem_stats(run: &Run, s: &str, r: &Value) -> Option<(f64, f64, f64, f64)> {
    let samples = run.mem.get(s)?;
    let t0 = num(run.sessions.get(s)?, "loadgen_t0_ms")?;
    let ok = num(r, "ok")?;
    let series = r.get("series")?.as_array()?;
    let pts: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
        .collect();
    let max_c = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let t_full = pts.iter().find(|p| p.1 >= max_c)?.0;
    let t_end = pts.last()?.0;
    let before: Vec<&(f64, f64, f64)> = samples.iter().filter(|x| x.0 < t0).collect();
    let mut held: Vec<&(f64, f64, f64)> = samples
        .iter()
        .filter(|x| x.0 >= t0 + t_full + 500.0 && x.0 <= t0 + t_end)
        .collect();
    if held.is_empty() {
        // Short holds: the sample with the largest RSS.
        held = samples
            .iter()
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
            .into_iter()
            .collect();
    }
    let rb = spread(before.iter().map(|x| x.1).collect())?.med;
    let fb = spread(before.iter().map(|x| x.2).collect())?.med;
    let rh = spread(held.iter().map(|x| x.1).collect())?.med;
    let fh = spread(held.iter().map(|x| x.2).collect())?.med;
    if ok <= 0.0 {
        return None;
    }
    Some((rb, rh, (rh - rb) / ok, (fb - fh) / ok))
}

// -------------------------------------------------------------------------------------------
// Plots
// -------------------------------------------------------------------------------------------

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn color(t: &str) -> RGBColor {
    match t {
        "ringway-splice" | "raised__ringway" => RGBColor(31, 119, 180),
        "ringway-copy" => RGBColor(23, 190, 207),
        "nginx" | "raised__nginx" => RGBColor(44, 160, 44),
        "nginxmax__nginx" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

fn plot_ramp(run: &Run, path: &Path) -> PlotResult {
    let sets: Vec<(&str, String)> = [
        ("raised__ringway", "ringway"),
        ("raised__nginx", "nginx, same budget"),
        ("nginxmax__nginx", "nginx, its largest"),
    ]
    .iter()
    .filter_map(|(s, l)| {
        let b = run
            .budget(s)
            .map(|(w, wc, e)| format!(" ({w} × {wc} → {})", f(e as f64)))
            .unwrap_or_default();
        run.result(s, "ceiling").map(|_| (*s, format!("{l}{b}")))
    })
    .collect();
    let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let series = |s: &str| -> Vec<(f64, f64)> {
        run.result(s, "ceiling")
            .and_then(|r| r.get("series")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_f64()? / 1000.0, p.get(1)?.as_f64()?)))
            .collect()
    };
    let tmax = sets
        .iter()
        .flat_map(|(s, _)| series(s))
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let cmax = sets
        .iter()
        .flat_map(|(s, _)| series(s))
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(&top)
        .caption(
            "Tunnels held during the ramp and hold (loadgen ceiling)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax * 1.02, 0f64..cmax * 1.08)?;
    c.configure_mesh()
        .x_desc("time since loadgen start (s)")
        .y_desc("tunnels connected")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| f(y.round()))
        .draw()?;
    for (s, label) in &sets {
        let col = color(s);
        c.draw_series(LineSeries::new(series(s), col.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // RSS over the same time axis.
    let mem = |s: &str| -> Vec<(f64, f64)> {
        let t0 = run
            .sessions
            .get(s)
            .and_then(|v| num(v, "loadgen_t0_ms"))
            .unwrap_or(0.0);
        run.mem
            .get(s)
            .map(|v| {
                v.iter()
                    .map(|x| ((x.0 - t0) / 1000.0, x.1 / 1024.0))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tmin = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.0)
        .fold(0.0, f64::min);
    let tmax2 = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.0)
        .fold(tmax, f64::max);
    let rmax = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(&bottom)
        .caption("Proxy RSS (nginx: master + workers)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(tmin..tmax2 * 1.02, 0f64..rmax * 1.1)?;
    c.configure_mesh()
        .x_desc("time since loadgen start (s)")
        .y_desc("RSS (MiB)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (s, label) in &sets {
        let col = color(s);
        c.draw_series(LineSeries::new(mem(s), col.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_latency(run: &Run, path: &Path) -> PlotResult {
    const PCT: [(&str, &str); 4] = [
        ("p50", "p50"),
        ("p90", "p90"),
        ("p99", "p99"),
        ("p999", "p99.9"),
    ];
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (panel, wl) in panels.iter().zip(ECHO_WL) {
        let lines: Vec<(&str, Vec<(f64, f64)>)> = PERF_TARGETS
            .iter()
            .map(|t| {
                let pts = PCT
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (k, _))| {
                        let path = format!("latency_us.{k}");
                        med(run.metric(t, wl, |v| num(v, &path))).map(|y| (i as f64, y))
                    })
                    .collect();
                (*t, pts)
            })
            .collect();
        let ys = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
        let ymax = ys.clone().fold(1.0, f64::max) * 1.5;
        let ymin = ys.fold(f64::INFINITY, f64::min).clamp(1.0, ymax / 10.0) / 1.5;
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!("Echo 64 B latency, {conns} connections (median of reps)"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.2f64..3.2f64, (ymin..ymax).log_scale())?;
        c.configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 0.05 && i < PCT.len() {
                    PCT[i].1.to_string()
                } else {
                    String::new()
                }
            })
            .y_desc("latency (µs, log)")
            .y_label_formatter(&|y| f(*y))
            .draw()?;
        for (t, pts) in lines {
            let col = color(t);
            c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
                .label(target_label(t))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn plot_cpu(run: &Run, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let specs: [(&str, [&str; 2], &str, &str); 2] = [
        (
            "Proxy CPU per echoed 64 B message",
            ECHO_WL,
            "tree_cpu_us_per_msg",
            "µs per message",
        ),
        (
            "Proxy CPU per MB, bulk 1 MiB messages",
            BULK_WL,
            "tree_cpu_ms_per_mb",
            "ms per MB",
        ),
    ];
    let proxies = ["ringway-splice", "ringway-copy", "nginx"];
    for (panel, (title, wls, field, unit)) in panels.iter().zip(specs) {
        let mut bars = Vec::new();
        for (g, wl) in wls.iter().enumerate() {
            for (j, t) in proxies.iter().enumerate() {
                if let Some(s) = run.metric(t, wl, |v| proxy_cpu(v, t, field)) {
                    bars.push((g, j, *t, s));
                }
            }
        }
        let ymax = bars.iter().map(|b| b.3.max).fold(0.001, f64::max) * 1.15;
        let mut c = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..1.5f64, 0f64..ymax)?;
        let names: Vec<String> = wls
            .iter()
            .map(|w| {
                let c = w.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
                format!("{c} conn{}", if c == "1" { "" } else { "s" })
            })
            .collect();
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(2)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 0.05 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(unit)
            .y_label_formatter(&|y| f(*y))
            .draw()?;
        let w = 0.25;
        for (j, t) in proxies.iter().enumerate() {
            let col = color(t);
            let mine: Vec<_> = bars.iter().filter(|b| b.1 == j).collect();
            let x0 = |g: usize| g as f64 - 1.5 * w + j as f64 * w;
            c.draw_series(mine.iter().map(|b| {
                Rectangle::new(
                    [(x0(b.0) + 0.02, 0.0), (x0(b.0) + w - 0.02, b.3.med)],
                    col.filled(),
                )
            }))?
            .label(target_label(t))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled()));
            // min–max whisker
            c.draw_series(mine.iter().filter(|b| b.3.n > 1).map(|b| {
                let xm = x0(b.0) + w / 2.0;
                PathElement::new(vec![(xm, b.3.min), (xm, b.3.max)], BLACK.stroke_width(1))
            }))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

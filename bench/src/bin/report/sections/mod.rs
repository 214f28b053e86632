//! summary.md of a compare.sh run: the section order, the findings the sections collect
//! ("where nginx wins", problems), and the closing lists. One file per section group.

mod accept;
mod baseline;
mod ceiling;
mod echo_bulk;
mod http;
mod pinning;
mod provenance;
mod raised;
mod targets;
mod tls;

use ringway_bench::fmt::{failure_kinds, failures_total, fmt_num, fmt_num_opt};
use ringway_bench::json::{num, text};
use ringway_bench::stats::Spread;
use serde_json::Value;
use std::fmt::Write as _;

use crate::run::{target_label, Run};

/// What the sections find along the way, listed at the end of the summary.
#[derive(Default)]
pub struct Findings {
    /// Problems seen (ringway's and the others', split at the end).
    pub problems: Vec<String>,
    /// Where nginx's median beats ringway's.
    pub nginx_wins: Vec<String>,
}

/// The whole summary.md.
pub fn summary(run: &Run) -> String {
    let mut o = String::new();
    let mut fd = Findings::default();
    provenance::provenance(run, &mut o);
    // `compare.sh --only tls` runs step 4 alone: its section only.
    if ringway_bench::json::text(&run.meta, "params.only") != "tls" {
        ceiling::ceiling(run, &mut o, &mut fd);
        ceiling::distribution(run, &mut o);
        raised::raised(run, &mut o, &mut fd);
        echo_bulk::echo(run, &mut o, &mut fd);
        echo_bulk::bulk(run, &mut o, &mut fd);
        http::http_section(run, &mut o, &mut fd);
        baseline::before_after(run, &mut o);
        accept::accept(run, &mut o, &mut fd);
        pinning::pinning(run, &mut o, &mut fd);
        targets::targets(run, &mut o);
    }
    tls::tls(run, &mut o, &mut fd);
    session_problems(run, &mut fd);
    closing(run, &mut o, fd);
    o
}

/// Proxy exits, session notes and log errors, as problems.
fn session_problems(run: &Run, fd: &mut Findings) {
    let problems = &mut fd.problems;
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
}

/// Where nginx wins, the problems (ringway's, then the others'), and where the raw data is.
fn closing(run: &Run, o: &mut String, fd: Findings) {
    let Findings {
        mut problems,
        nginx_wins,
    } = fd;

    let _ = writeln!(o, "## Where nginx wins (or ringway does not beat it)\n");
    if nginx_wins.is_empty() {
        let _ = writeln!(o, "- nowhere in this run's medians.");
    }
    for w in &nginx_wins {
        let _ = writeln!(o, "- {w}");
    }
    problems.dedup();
    let (mine, others): (Vec<&String>, Vec<&String>) = problems
        .iter()
        .partition(|p| p.contains("ringway") || p.contains("baseline-"));
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
        crate::paths::run_name(&run.dir)
    );
}

/// A ratio against nginx for target `t`'s row; direct (no proxy) has none: "–".
pub fn fmt_vs_nginx(t: &str, x: Option<f64>) -> String {
    if t == "direct" {
        "–".into()
    } else {
        ringway_bench::fmt::fmt_ratio(x)
    }
}

pub fn perf_health(wl: &str, t: &str, v: &Value, problems: &mut Vec<String>) {
    let conns = num(v, "params.conns").unwrap_or(0.0);
    let connected = num(v, "connected").unwrap_or(0.0);
    if connected < conns {
        problems.push(format!(
            "{wl} {t}: {} of {} connected ({})",
            fmt_num(connected),
            fmt_num(conns),
            failure_kinds(v.get("failed"))
        ));
    }
    let e = failures_total(v.get("errors"));
    if e > 0 {
        problems.push(format!(
            "{wl} {t}: errors {}",
            failure_kinds(v.get("errors"))
        ));
    }
    if num(v, "stalled").unwrap_or(0.0) > 0.0 {
        problems.push(format!(
            "{wl} {t}: {} stalled connection(s)",
            fmt_num_opt(num(v, "stalled"))
        ));
    }
}

/// Notes where nginx's median beats ringway's; "(ranges overlap)" when the spreads overlap.
pub fn compare_to_nginx(
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
        let overlap = r.overlaps(&n);
        wins.push(format!(
            "{wl}, {}: {what} nginx {} vs ringway {} ({:.2}×){}",
            target_label(t),
            fmt_num(n.med),
            fmt_num(r.med),
            r.med / n.med,
            if overlap && (r.n > 1 || n.n > 1) {
                " — ranges overlap, within noise"
            } else {
                ""
            }
        ));
    }
}

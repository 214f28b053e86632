//! Sections 1 and 2 of summary.md: the ceiling at the seed budget (held, what the excess
//! clients saw, "not enough" log lines) and the distribution over the four backends.

use ringway_bench::fmt::{failure_kinds, fmt_count, fmt_num, fmt_num_opt};
use ringway_bench::json::{num, text};
use serde_json::Value;
use std::fmt::Write as _;

use super::Findings;
use crate::run::Run;

/// Section 1.
pub fn ceiling(run: &Run, o: &mut String, fd: &mut Findings) {
    // 1. Ceiling
    let _ = writeln!(o, "## 1. Ceiling at the seed budget\n");
    let _ = writeln!(
        o,
        "| proxy | budget | expected | held (ok) | attempted | what the excess clients saw | first failure (ramp index) | dropped in hold | alive after hold | \"worker_connections are not enough\" log lines |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for p in ["ringway", "nginx"] {
        let s = format!("ceiling__{p}");
        ceiling_row(run, &s, p, o, &mut fd.problems);
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
}

/// Section 2.
pub fn distribution(run: &Run, o: &mut String) {
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
}

pub fn ceiling_row(run: &Run, s: &str, p: &str, o: &mut String, problems: &mut Vec<String>) {
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
            problems.push(format!(
                "{s}: held {} tunnels, the budget says {e}",
                fmt_num(ok)
            ));
        }
    }
    let ne = run.sessions.get(s).and_then(|v| num(v, "not_enough_lines"));
    let first_idx = num(r, "first_failure_index")
        .map(fmt_num)
        .unwrap_or_else(|| "none".into());
    let _ = writeln!(
        o,
        "| {p} | {bud} | {} | **{}** | {} | {} | {} ({}) | {} | {} | {} |",
        exp.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
        fmt_count(Some(ok)),
        fmt_count(num(r, "attempted")),
        failure_kinds(r.get("failed")),
        text(r, "first_failure_kind"),
        first_idx,
        fmt_count(num(r, "dropped_during_hold")),
        fmt_count(num(r, "alive_after_hold")),
        fmt_count(ne),
    );
    check_ceiling_health(s, r, problems);
}

pub fn check_ceiling_health(s: &str, r: &Value, problems: &mut Vec<String>) {
    for k in ["dropped_during_ramp", "dropped_during_hold"] {
        if num(r, k).unwrap_or(0.0) > 0.0 {
            problems.push(format!(
                "{s}: {k} = {} ({})",
                fmt_num_opt(num(r, k)),
                failure_kinds(r.get("dropped_kinds"))
            ));
        }
    }
    let ok = num(r, "ok").unwrap_or(0.0);
    let alive = num(r, "alive_after_hold").unwrap_or(0.0);
    if alive < ok {
        problems.push(format!(
            "{s}: {} of {} held tunnels answered the probe ({})",
            fmt_num(alive),
            fmt_num(ok),
            failure_kinds(r.get("probe_failed"))
        ));
    }
}

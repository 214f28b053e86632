//! Section 7 of summary.md, only for `compare.sh --baseline DIR`: proxy CPU per unit of the
//! current build against the baseline binary's, per workload and relay mode (auto, when the
//! baseline ran it too, then splice and copy), with the ratio.

use ringway_bench::fmt::{fmt_ratio, fmt_spread, MISSING};
use ringway_bench::stats::{median_of, ratio};
use std::fmt::Write as _;

use super::http::http_workloads;
use crate::run::{
    proxy_cpu, Run, BASELINE_AUTO, BASELINE_COPY, BASELINE_SPLICE, BULK_WL, ECHO_WL, RINGWAY_AUTO,
};

/// Section 7: before/after.
pub fn before_after(run: &Run, o: &mut String) {
    if !run.has_baseline() {
        return;
    }
    let base = run.baseline_name();
    let _ = writeln!(o, "## 7. Before/after: this build vs {base}, proxy CPU\n");
    // The relay modes compared, auto first when the baseline ran it too; the HTTP rows sit in
    // the first pair (plain HTTP never reaches the relay, so each build has one HTTP session).
    let mut modes = Vec::new();
    if run.has_baseline_auto() {
        modes.push(("auto", RINGWAY_AUTO, BASELINE_AUTO));
    }
    modes.push(("splice", "ringway-splice", BASELINE_SPLICE));
    modes.push(("copy", "ringway-copy", BASELINE_COPY));
    let http_note = if run.has_baseline_auto() {
        "HTTP sits in the auto columns: each build's default session, the one that ran the HTTP workloads \
         (plain HTTP never reaches the relay, so the splice and copy sessions skip it)."
            .to_string()
    } else if run.has_auto() {
        format!(
            "{base} has no `--tunnel auto`, so this build's auto session has no column here. The HTTP rows, in \
             the splice columns, compare this build's default (auto) session with the baseline's splice \
             session (plain HTTP never reaches the relay)."
        )
    } else {
        "HTTP has no copy session (plain HTTP never reaches the relay).".to_string()
    };
    let _ = writeln!(
        o,
        "The same sessions as sections 4 to 6: the current build (`ringway`) and the baseline binary (`{base}`) \
         with the same conf and workloads, interleaved in the same repetitions. Proxy CPU per echoed message, per \
         MB, per request: median (min–max). now / before below 1.00× means the current build spends less CPU. \
         {http_note}\n"
    );
    let mut head = String::from("| workload |");
    let mut rule = String::from("|---|");
    for (m, _, _) in &modes {
        let _ = write!(head, " {m}: now | {m}: {base} | {m} now / before |");
        rule.push_str("---|---|---|");
    }
    let _ = writeln!(o, "{head}");
    let _ = writeln!(o, "{rule}");
    let mut rows: Vec<(String, &str, &str, bool)> = Vec::new();
    for wl in ECHO_WL {
        rows.push((wl.to_string(), "tree_cpu_us_per_msg", "µs/msg", false));
    }
    for wl in BULK_WL {
        rows.push((wl.to_string(), "tree_cpu_ms_per_mb", "ms/MB", false));
    }
    for wl in http_workloads(run) {
        rows.push((wl, "tree_cpu_us_per_req", "µs/req", true));
    }
    for ((wl, field, unit, http), w) in rows
        .iter()
        .flat_map(|r| run.workers().into_iter().map(move |w| (r, w)))
    {
        let cpu = |t: &str| run.metric(t, wl, w, |v| proxy_cpu(v, t, field));
        let mut cells = Vec::new();
        for (i, &(_, now, before)) in modes.iter().enumerate() {
            let (now, before) = if *http && i == 0 {
                (run.http_ringway(), run.http_baseline())
            } else {
                (now, before)
            };
            let (n, b) = (cpu(now), cpu(before));
            if n.is_none() && b.is_none() {
                cells.extend([
                    MISSING.to_string(),
                    MISSING.to_string(),
                    MISSING.to_string(),
                ]);
                continue;
            }
            cells.push(fmt_spread(n, unit));
            cells.push(fmt_spread(b, unit));
            cells.push(fmt_ratio(ratio(median_of(n), median_of(b))));
        }
        let _ = writeln!(o, "| {} | {} |", run.wl_at(wl, w), cells.join(" | "));
    }
    let _ = writeln!(o);
}

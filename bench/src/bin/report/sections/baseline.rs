//! Section 7 of summary.md, only for `compare.sh --baseline DIR`: proxy CPU per unit of the
//! current build against the baseline binary's, per workload and relay mode, with the ratio.

use ringway_bench::fmt::{fmt_ratio, fmt_spread, MISSING};
use ringway_bench::stats::{median_of, ratio};
use std::fmt::Write as _;

use super::http::http_workloads;
use crate::run::{proxy_cpu, Run, BASELINE_COPY, BASELINE_SPLICE, BULK_WL, ECHO_WL};

/// Section 7: before/after.
pub fn before_after(run: &Run, o: &mut String) {
    if !run.has_baseline() {
        return;
    }
    let base = run.baseline_name();
    let _ = writeln!(o, "## 7. Before/after: this build vs {base}, proxy CPU\n");
    let _ = writeln!(
        o,
        "The same sessions as sections 4 to 6: the current build (`ringway`) and the baseline binary (`{base}`) \
         with the same conf and workloads, interleaved in the same repetitions. Proxy CPU per echoed message, per \
         MB, per request: median (min–max). now / before below 1.00× means the current build spends less CPU. \
         HTTP has no copy session (plain HTTP never reaches the relay).\n"
    );
    let _ = writeln!(
        o,
        "| workload | splice: now | splice: {base} | splice now / before | copy: now | copy: {base} | copy now / before |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    let mut rows: Vec<(String, &str, &str)> = Vec::new();
    for wl in ECHO_WL {
        rows.push((wl.to_string(), "tree_cpu_us_per_msg", "µs/msg"));
    }
    for wl in BULK_WL {
        rows.push((wl.to_string(), "tree_cpu_ms_per_mb", "ms/MB"));
    }
    for wl in http_workloads(run) {
        rows.push((wl, "tree_cpu_us_per_req", "µs/req"));
    }
    for (wl, field, unit) in &rows {
        let cpu = |t: &str| run.metric(t, wl, |v| proxy_cpu(v, t, field));
        let mut cells = Vec::new();
        for (now, before) in [
            ("ringway-splice", BASELINE_SPLICE),
            ("ringway-copy", BASELINE_COPY),
        ] {
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
        let _ = writeln!(o, "| {wl} | {} |", cells.join(" | "));
    }
    let _ = writeln!(o);
}

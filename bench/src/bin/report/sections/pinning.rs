//! Section 9 of summary.md: worker threads pinned to CPUs (ringway's default) against unpinned
//! (`--no-pin`, the `ringway-auto-nopin` sessions of `compare.sh --pin-compare`): proxy CPU per
//! message, p99 and msgs/s of the echo workloads, per worker count, in the same repetitions.

use ringway_bench::fmt::{fmt_ratio, fmt_spread};
use ringway_bench::json::num;
use ringway_bench::stats::{median_of, ratio};
use std::fmt::Write as _;

use super::{perf_health, Findings};
use crate::run::{proxy_cpu, workers_word, Run, ECHO_WL, RINGWAY_AUTO, RINGWAY_AUTO_NOPIN};

/// Section 9.
pub fn pinning(run: &Run, o: &mut String, fd: &mut Findings) {
    let _ = writeln!(
        o,
        "\n## 9. CPU pinning: pinned (default) vs `--no-pin`, echo 64 B\n"
    );
    if !run.ran(RINGWAY_AUTO_NOPIN) {
        let _ = writeln!(
            o,
            "Not measured in this run (no `{RINGWAY_AUTO_NOPIN}` sessions: `compare.sh --pin-compare`, on by default \
             in `--full`, runs them).\n"
        );
        return;
    }
    let _ = writeln!(
        o,
        "ringway (auto) as in section 4 (worker threads pinned to CPUs, the default) and the same build with \
         `--no-pin` right after it in every repetition, same conf. Median (min–max); unpinned / pinned below \
         1.00× means unpinned spends less CPU, or has the lower p99. The clients and the four backends share \
         the same two CPUs.\n"
    );
    let _ = writeln!(
        o,
        "| workers | workload | proxy CPU/msg pinned | unpinned | unpinned / pinned | p99 pinned | unpinned | unpinned / pinned | msgs/s pinned | unpinned | unpinned / pinned |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for w in run.workers() {
        for wl in ECHO_WL {
            let get = |t: &str, path: &'static str| run.metric(t, wl, w, move |v| num(v, path));
            let cpu = |t: &str| run.metric(t, wl, w, |v| proxy_cpu(v, t, "tree_cpu_us_per_msg"));
            let (cp, cu) = (cpu(RINGWAY_AUTO), cpu(RINGWAY_AUTO_NOPIN));
            let (pp, pu) = (
                get(RINGWAY_AUTO, "latency_us.p99"),
                get(RINGWAY_AUTO_NOPIN, "latency_us.p99"),
            );
            let (rp, ru) = (
                get(RINGWAY_AUTO, "msgs_per_s"),
                get(RINGWAY_AUTO_NOPIN, "msgs_per_s"),
            );
            let r = |u: Option<_>, p: Option<_>| fmt_ratio(ratio(median_of(u), median_of(p)));
            let _ = writeln!(
                o,
                "| {} | {wl} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                workers_word(w),
                fmt_spread(cp, "µs"),
                fmt_spread(cu, "µs"),
                r(cu, cp),
                fmt_spread(pp, "µs"),
                fmt_spread(pu, "µs"),
                r(pu, pp),
                fmt_spread(rp, "msgs/s"),
                fmt_spread(ru, "msgs/s"),
                r(ru, rp),
            );
            let wl_at = run.wl_at(wl, w);
            if ru.is_none() {
                fd.problems
                    .push(format!("{wl_at} {RINGWAY_AUTO_NOPIN}: no result"));
            }
            for v in run.reps(RINGWAY_AUTO_NOPIN, wl, w) {
                perf_health(&wl_at, RINGWAY_AUTO_NOPIN, v, &mut fd.problems);
            }
        }
    }
    let _ = writeln!(o);
}

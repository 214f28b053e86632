//! Section 8 of summary.md: the accept rate (`churn-c50`): new tunnels per second through each
//! proxy and direct, the handshake latency distribution, proxy CPU per new tunnel and failures,
//! per worker count, with the ratios to nginx at the same count.

use ringway_bench::fmt::{
    failure_kinds, failures_total, fmt_count, fmt_num, fmt_param, fmt_spread,
};
use ringway_bench::json::num;
use ringway_bench::stats::{median_of, ratio};
use serde_json::Value;
use std::fmt::Write as _;

use super::{compare_to_nginx, fmt_vs_nginx, Findings};
use crate::run::{proxy_cpu, workers_word, Run, CHURN_WL};

/// The targets of the accept-rate table: ringway's default session (the one that runs HTTP),
/// the baseline's, nginx, direct.
pub fn churn_targets(run: &Run) -> Vec<&'static str> {
    let mut v = vec![run.http_ringway()];
    if run.has_baseline() {
        v.push(run.http_baseline());
    }
    v.extend(["nginx", "direct"]);
    v
}

/// Whether the run has any accept-rate result.
pub fn has_churn(run: &Run) -> bool {
    run.results.keys().any(|(_, w)| w == CHURN_WL)
}

/// Section 8.
pub fn accept(run: &Run, o: &mut String, fd: &mut Findings) {
    let _ = writeln!(o, "\n## 8. Accept rate: new tunnels per second\n");
    if !has_churn(run) {
        let _ = writeln!(
            o,
            "Not measured in this run (no `{CHURN_WL}` results: compare.sh measures the accept rate since issue 11).\n"
        );
        return;
    }
    let m = &run.meta;
    let conns = run
        .reps("nginx", CHURN_WL, run.workers()[0])
        .first()
        .and_then(|v| num(*v, "params.conns"));
    let _ = writeln!(
        o,
        "`loadgen churn --conns {}`: {} workers, each in a closed loop of connect, upgrade request, 101 (the proxy \
         accepted, connected upstream and relayed the answer), the backend's banner, one 64 B echo and a close. \
         Clients bind round-robin to 127.0.0.2–9 so TIME_WAIT spreads over eight source addresses. Only the \
         measured window counts (after a {} s warm-up, {} s per repetition, median over {} repetition(s), \
         (min–max) in brackets): tunnels completed in it, handshakes (connect + upgrade + 101 + banner, from the \
         client) completed in it, failures in it. Proxy CPU: the proxy's process tree per new tunnel; loadgen \
         CPU: the one client process per new tunnel (it shares the two CPUs: when it is the bottleneck every \
         target's rate is capped alike). ringway runs its default session; direct connects straight to one \
         backend (one wsecho process), so its rate is that backend's.\n",
        fmt_count(conns),
        fmt_count(conns),
        fmt_param(num(m, "params.warmup_s")),
        fmt_param(num(m, "params.duration_s")),
        fmt_param(num(m, "params.reps")),
    );
    for w in run.workers() {
        let wl_at = run.wl_at(CHURN_WL, w);
        if run.multi_workers() {
            let _ = writeln!(o, "### {}\n", workers_word(w));
        }
        let _ = writeln!(
            o,
            "| target | new tunnels/s | handshake p50 | p99 | p99.9 | proxy CPU per tunnel | loadgen CPU per tunnel | failed (in window) | tunnels/s vs nginx | proxy CPU/tunnel vs nginx | handshake p99 vs nginx |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
        let get = |t: &str, path: &'static str| run.metric(t, CHURN_WL, w, move |v| num(v, path));
        let cpu = |t: &str| {
            run.metric(t, CHURN_WL, w, |v| {
                proxy_cpu(v, t, "tree_cpu_us_per_tunnel")
            })
        };
        let ng_rate = median_of(get("nginx", "tunnels_per_s"));
        let ng_cpu = median_of(cpu("nginx"));
        let ng_p99 = median_of(get("nginx", "setup_us.p99"));
        for t in churn_targets(run) {
            let label = run.label(t);
            let rate = get(t, "tunnels_per_s");
            if rate.is_none() {
                let _ = writeln!(o, "| {label} | no result | | | | | | | | | |");
                fd.problems.push(format!("{wl_at} {t}: no result"));
                continue;
            }
            let reps = run.reps(t, CHURN_WL, w);
            let failed: u64 = reps.iter().map(|v| failures_total(v.get("failed"))).sum();
            let kinds = reps
                .iter()
                .find(|v| failures_total(v.get("failed")) > 0)
                .map(|v| format!(" ({})", failure_kinds(v.get("failed"))))
                .unwrap_or_default();
            let p99 = get(t, "setup_us.p99");
            let c = cpu(t);
            let vs = |x: Option<f64>| fmt_vs_nginx(t, x);
            let _ = writeln!(
                o,
                "| {label} | {} | {} | {} | {} | {} | {} | {}{kinds} | {} | {} | {} |",
                fmt_spread(rate, "/s"),
                fmt_spread(get(t, "setup_us.p50"), "µs"),
                fmt_spread(p99, "µs"),
                fmt_spread(get(t, "setup_us.p999"), "µs"),
                fmt_spread(c, "µs"),
                fmt_spread(get(t, "loadgen_cpu_us_per_tunnel"), "µs"),
                fmt_num(failed as f64),
                vs(ratio(median_of(rate), ng_rate)),
                vs(ratio(median_of(c), ng_cpu)),
                vs(ratio(median_of(p99), ng_p99)),
            );
            if t.starts_with("ringway") {
                let ng = |path: &'static str| get("nginx", path);
                let wins = &mut fd.nginx_wins;
                let l = format!("{wl_at} (accept rate)");
                compare_to_nginx(
                    wins,
                    &l,
                    t,
                    "new tunnels/s",
                    rate,
                    ng("tunnels_per_s"),
                    true,
                );
                compare_to_nginx(wins, &l, t, "proxy CPU µs/tunnel", c, cpu("nginx"), false);
                compare_to_nginx(
                    wins,
                    &l,
                    t,
                    "handshake p99 µs",
                    p99,
                    ng("setup_us.p99"),
                    false,
                );
            }
            for v in reps {
                churn_health(&wl_at, t, v, &mut fd.problems);
            }
        }
        let _ = writeln!(o);
    }
}

/// Failures, stalls and empty runs of one churn result, as problems.
fn churn_health(wl: &str, t: &str, v: &Value, problems: &mut Vec<String>) {
    let f = failures_total(v.get("failed"));
    if f > 0 {
        problems.push(format!(
            "{wl} {t}: {f} new tunnel(s) failed ({})",
            failure_kinds(v.get("failed"))
        ));
    }
    if num(v, "ok").unwrap_or(0.0) == 0.0 {
        problems.push(format!("{wl} {t}: no tunnel completed"));
    }
    if num(v, "stalled").unwrap_or(0.0) > 0.0 {
        problems.push(format!(
            "{wl} {t}: {} cycle(s) still running a reply timeout after the window",
            fmt_num(num(v, "stalled").unwrap_or(0.0))
        ));
    }
}

//! Sections 4 and 5 of summary.md: echo (64 B messages) and bulk (1 MiB messages) per target,
//! with throughput, latency, proxy and backend CPU, and the ratios to nginx and to direct; one
//! table per workload and worker count (ratios against nginx at the same count).

use ringway_bench::fmt::{fmt_num_opt, fmt_param, fmt_ratio, fmt_spread};
use ringway_bench::json::{at, num};
use ringway_bench::stats::{median_of, ratio};
use serde_json::Value;
use std::fmt::Write as _;

use super::{compare_to_nginx, fmt_vs_nginx, perf_health, Findings};
use crate::run::{backend_cpu, proxy_cpu, workers_word, Run, BULK_WL, ECHO_WL};

/// A table's heading: `### 100 connections`, with `, 2 workers` when the run has several counts.
fn heading(run: &Run, what: &str, w: u64) -> String {
    if run.multi_workers() {
        format!("### {what}, {}\n", workers_word(w))
    } else {
        format!("### {what}\n")
    }
}

/// The note on direct's rows when the tables name worker counts.
pub fn direct_note(run: &Run) -> &'static str {
    if run.multi_workers() {
        " direct (no proxy) has no workers: it ran once per repetition, and every worker count's table shows \
         the same direct rows. Ratios to nginx compare nginx at the same worker count."
    } else {
        ""
    }
}

/// Section 4.
pub fn echo(run: &Run, o: &mut String, fd: &mut Findings) {
    let m = &run.meta;
    // 4. Echo
    let _ = writeln!(
        o,
        "\n## 4. Echo, 64 B messages, closed loop ({} × {} slots)\n",
        run.workers_text(),
        fmt_num_opt(
            at(m, "params.perf_budget")
                .and_then(|b| b.get(1))
                .and_then(Value::as_f64)
        )
    );
    let _ = writeln!(
        o,
        "Median over {} interleaved repetition(s) of {} s each, (min–max) in brackets. Proxy CPU: the proxy's process \
         tree from /proc (user + system) per echoed message; backends: the four wsecho processes (direct: the one \
         used). Ratios compare medians.{}\n",
        fmt_param(num(m, "params.reps")),
        fmt_param(num(m, "params.duration_s")),
        direct_note(run)
    );
    for (wl, w) in ECHO_WL
        .into_iter()
        .flat_map(|wl| run.workers().into_iter().map(move |w| (wl, w)))
    {
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let wl_at = run.wl_at(wl, w);
        let _ = writeln!(o, "{}", heading(run, &format!("{conns} connections"), w));
        let _ = writeln!(
            o,
            "| target | msgs/s | latency p50 | p90 | p99 | p99.9 | proxy CPU per msg | backends CPU per msg | msgs/s vs nginx | proxy CPU/msg vs nginx | p99 vs nginx | msgs/s vs direct | p50 vs direct | proxy CPU/msg vs direct backend |"
        );
        let _ = writeln!(
            o,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let get = |t: &str, path: &'static str| run.metric(t, wl, w, move |v| num(v, path));
        let cpu = |t: &str| run.metric(t, wl, w, |v| proxy_cpu(v, t, "tree_cpu_us_per_msg"));
        let ng_rate = median_of(get("nginx", "msgs_per_s"));
        let ng_cpu = median_of(cpu("nginx"));
        let ng_p99 = median_of(get("nginx", "latency_us.p99"));
        let d_rate = median_of(get("direct", "msgs_per_s"));
        let d_p50 = median_of(get("direct", "latency_us.p50"));
        let d_cpu = median_of(run.metric("direct", wl, w, |v| {
            backend_cpu(v, "direct", "tree_cpu_us_per_msg")
        }));
        for t in run.perf_targets() {
            let rate = get(t, "msgs_per_s");
            if rate.is_none() {
                let _ = writeln!(
                    o,
                    "| {} | no result | | | | | | | | | | | | |",
                    run.label(t)
                );
                fd.problems.push(format!("{wl_at} {t}: no result"));
                continue;
            }
            let p50 = get(t, "latency_us.p50");
            let p99 = get(t, "latency_us.p99");
            let c = cpu(t);
            let be = run.metric(t, wl, w, |v| backend_cpu(v, t, "tree_cpu_us_per_msg"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.label(t),
                fmt_spread(rate, "msgs/s"),
                fmt_spread(p50, "µs"),
                fmt_spread(get(t, "latency_us.p90"), "µs"),
                fmt_spread(p99, "µs"),
                fmt_spread(get(t, "latency_us.p999"), "µs"),
                fmt_spread(c, "µs"),
                fmt_spread(be, "µs"),
                fmt_vs_nginx(t, ratio(median_of(rate), ng_rate)),
                fmt_vs_nginx(t, ratio(median_of(c), ng_cpu)),
                fmt_vs_nginx(t, ratio(median_of(p99), ng_p99)),
                fmt_ratio(ratio(median_of(rate), d_rate)),
                fmt_ratio(ratio(median_of(p50), d_p50)),
                fmt_ratio(ratio(median_of(c), d_cpu)),
            );
            if t.starts_with("ringway") {
                compare_to_nginx(
                    &mut fd.nginx_wins,
                    &wl_at,
                    t,
                    "msgs/s",
                    rate,
                    get("nginx", "msgs_per_s"),
                    true,
                );
                compare_to_nginx(
                    &mut fd.nginx_wins,
                    &wl_at,
                    t,
                    "proxy CPU µs/msg",
                    c,
                    cpu("nginx"),
                    false,
                );
                compare_to_nginx(
                    &mut fd.nginx_wins,
                    &wl_at,
                    t,
                    "p99 latency µs",
                    p99,
                    get("nginx", "latency_us.p99"),
                    false,
                );
            }
            for v in run.reps(t, wl, w) {
                perf_health(&wl_at, t, v, &mut fd.problems);
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "Plots: [plots/latency.svg](plots/latency.svg), [plots/cpu.svg](plots/cpu.svg)."
    );
}

/// Section 5.
pub fn bulk(run: &Run, o: &mut String, fd: &mut Findings) {
    // 5. Bulk
    let _ = writeln!(
        o,
        "\n## 5. Bulk, 1 MiB messages, 2 in flight per connection\n"
    );
    let _ = writeln!(o, "MB = 10^6 bytes echoed back; CPU per MB as above.\n");
    for (wl, w) in BULK_WL
        .into_iter()
        .flat_map(|wl| run.workers().into_iter().map(move |w| (wl, w)))
    {
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let wl_at = run.wl_at(wl, w);
        let _ = writeln!(o, "{}", heading(run, &format!("{conns} connection(s)"), w));
        let _ = writeln!(
            o,
            "| target | received MB/s | proxy CPU per MB | backends CPU per MB | MB/s vs nginx | proxy CPU/MB vs nginx | MB/s vs direct | proxy CPU/MB vs direct backend |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
        let rate = |t: &str| run.metric(t, wl, w, |v| num(v, "received_mb_per_s"));
        let cpu = |t: &str| run.metric(t, wl, w, |v| proxy_cpu(v, t, "tree_cpu_ms_per_mb"));
        let ng_rate = median_of(rate("nginx"));
        let ng_cpu = median_of(cpu("nginx"));
        let d_rate = median_of(rate("direct"));
        let d_cpu = median_of(run.metric("direct", wl, w, |v| {
            backend_cpu(v, "direct", "tree_cpu_ms_per_mb")
        }));
        for t in run.perf_targets() {
            let r = rate(t);
            if r.is_none() {
                let _ = writeln!(o, "| {} | no result | | | | | | |", run.label(t));
                fd.problems.push(format!("{wl_at} {t}: no result"));
                continue;
            }
            let c = cpu(t);
            let be = run.metric(t, wl, w, |v| backend_cpu(v, t, "tree_cpu_ms_per_mb"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                run.label(t),
                fmt_spread(r, "MB/s"),
                fmt_spread(c, "ms"),
                fmt_spread(be, "ms"),
                fmt_vs_nginx(t, ratio(median_of(r), ng_rate)),
                fmt_vs_nginx(t, ratio(median_of(c), ng_cpu)),
                fmt_ratio(ratio(median_of(r), d_rate)),
                fmt_ratio(ratio(median_of(c), d_cpu)),
            );
            if t.starts_with("ringway") {
                compare_to_nginx(
                    &mut fd.nginx_wins,
                    &wl_at,
                    t,
                    "MB/s",
                    r,
                    rate("nginx"),
                    true,
                );
                compare_to_nginx(
                    &mut fd.nginx_wins,
                    &wl_at,
                    t,
                    "proxy CPU ms/MB",
                    c,
                    cpu("nginx"),
                    false,
                );
            }
            for v in run.reps(t, wl, w) {
                perf_health(&wl_at, t, v, &mut fd.problems);
            }
        }
        let _ = writeln!(o);
    }
}

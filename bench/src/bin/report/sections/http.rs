//! Section 6 of summary.md: small keep-alive HTTP GETs per target (requests/s, latency, proxy
//! CPU per request, client connections the proxy closed), with the ratios to nginx and direct;
//! one table per workload and worker count.

use ringway_bench::fmt::{fmt_count, fmt_num, fmt_num_opt, fmt_param, fmt_ratio, fmt_spread};
use ringway_bench::json::{at, num};
use ringway_bench::stats::{median_of, ratio};
use serde_json::Value;
use std::fmt::Write as _;

use super::{compare_to_nginx, fmt_vs_nginx, perf_health, Findings};
use crate::run::{
    backend_cpu, perf_session, proxy_cpu, target_label, workers_word, Run, BASELINE_AUTO,
    BASELINE_SPLICE, RINGWAY_AUTO,
};

/// The HTTP workloads present in the results (`http-c<conns>`), by connection count.
pub fn http_workloads(run: &Run) -> Vec<String> {
    let mut wls: Vec<String> = run
        .results
        .keys()
        .filter(|(s, w)| perf_session(s).is_some() && w.starts_with("http-"))
        .map(|(_, w)| w.clone())
        .collect();
    wls.sort_by_key(|w| {
        let conns = w.rsplit_once("-c").and_then(|x| x.1.parse::<u64>().ok());
        (conns.unwrap_or(u64::MAX), w.clone())
    });
    wls.dedup();
    wls
}

/// Row label: plain HTTP has no relay mode, so ringway's HTTP session (the default `auto`, or
/// `splice` in runs without it) is just "ringway", and the baseline's is the baseline's name.
fn http_label(run: &Run, t: &str) -> String {
    match t {
        RINGWAY_AUTO | "ringway-splice" => "ringway".into(),
        BASELINE_AUTO | BASELINE_SPLICE => run.baseline_name(),
        t => target_label(t).into(),
    }
}

/// Section 6: small keep-alive GETs, requests/s and proxy CPU per request.
pub fn http_section(run: &Run, o: &mut String, fd: &mut Findings) {
    let (problems, nginx_wins) = (&mut fd.problems, &mut fd.nginx_wins);
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
        "\n## 6. HTTP, small keep-alive GETs ({} × {} slots, upstream `keepalive {}`)\n",
        run.workers_text(),
        fmt_num_opt(
            at(m, "params.perf_budget")
                .and_then(|b| b.get(1))
                .and_then(Value::as_f64)
        ),
        fmt_count(num(m, "params.http_upstream_keepalive"))
    );
    let _ = writeln!(
        o,
        "`loadgen http`: each connection sends `GET /` and waits for the whole response before the next; wsecho \
         answers `200` with a 14-byte body and keeps the connection open. Closed loop unless the heading says \
         \"open loop\": there each target is offered the same requests/s (`--rate`), a request waits for its \
         scheduled time or its connection's previous answer, and its latency runs from its scheduled time when the \
         previous answer came later (no coordinated omission). Requests/s counts 2xx responses; latency runs from a \
         request's first send to its response (including a reconnect it waited for). Proxy CPU: the \
         proxy's process tree per request. \"Client connections closed\": by the proxy (direct: the backend) after \
         a response, per 1,000 requests; loadgen reconnects and goes on. Same sessions as echo and bulk (median over \
         {} repetition(s) of {} s); ringway is the {} session (plain HTTP never reaches the relay).{}{}\n",
        fmt_param(num(m, "params.reps")),
        fmt_param(num(m, "params.duration_s")),
        if run.http_ringway() == RINGWAY_AUTO {
            "default `--tunnel auto`"
        } else {
            "`--tunnel splice`"
        },
        if run.has_baseline() && run.http_baseline() != BASELINE_AUTO && run.has_auto() {
            " The baseline binary has no `--tunnel auto`: its row is its `--tunnel splice` session."
        } else {
            ""
        },
        super::echo_bulk::direct_note(run)
    );
    for (wl, w) in wls
        .iter()
        .flat_map(|wl| run.workers().into_iter().map(move |w| (wl.as_str(), w)))
    {
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let wl_at = run.wl_at(wl, w);
        let param = |path: &str| {
            run.reps("nginx", wl, w)
                .first()
                .or(run.reps("direct", wl, w).first())
                .and_then(|v| num(*v, path))
        };
        let pipeline = param("params.pipeline").unwrap_or(1.0);
        let open_rate = param("params.rate").unwrap_or(0.0);
        let _ = writeln!(
            o,
            "### {conns} connections{}{}{}\n",
            if pipeline > 1.0 {
                format!(", {pipeline} pipelined")
            } else {
                String::new()
            },
            if open_rate > 0.0 {
                format!(", open loop at {} requests/s", fmt_num(open_rate))
            } else {
                String::new()
            },
            if run.multi_workers() {
                format!(", {}", workers_word(w))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            o,
            "| target | requests/s | latency p50 | p90 | p99 | p99.9 | proxy CPU per req | backends CPU per req | client connections closed per 1,000 req | req/s vs nginx | proxy CPU/req vs nginx | p99 vs nginx | req/s vs direct |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let get = |t: &str, path: &'static str| run.metric(t, wl, w, move |v| num(v, path));
        let cpu = |t: &str| run.metric(t, wl, w, |v| proxy_cpu(v, t, "tree_cpu_us_per_req"));
        let closes = |t: &str| {
            run.metric(t, wl, w, |v| {
                let n = num(v, "requests")?;
                (n > 0.0).then(|| num(v, "reconnects").unwrap_or(0.0) * 1000.0 / n)
            })
        };
        let ng_rate = median_of(get("nginx", "requests_per_s"));
        let ng_cpu = median_of(cpu("nginx"));
        let ng_p99 = median_of(get("nginx", "latency_us.p99"));
        let d_rate = median_of(get("direct", "requests_per_s"));
        for t in run.http_targets() {
            let rate = get(t, "requests_per_s");
            if rate.is_none() {
                let _ = writeln!(
                    o,
                    "| {} | no result | | | | | | | | | | | |",
                    http_label(run, t)
                );
                problems.push(format!("{wl_at} {t}: no result"));
                continue;
            }
            let p99 = get(t, "latency_us.p99");
            let c = cpu(t);
            let be = run.metric(t, wl, w, |v| backend_cpu(v, t, "tree_cpu_us_per_req"));
            let cl = closes(t);
            let vs = |x: Option<f64>| fmt_vs_nginx(t, x);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                http_label(run, t),
                fmt_spread(rate, "req/s"),
                fmt_spread(get(t, "latency_us.p50"), "µs"),
                fmt_spread(get(t, "latency_us.p90"), "µs"),
                fmt_spread(p99, "µs"),
                fmt_spread(get(t, "latency_us.p999"), "µs"),
                fmt_spread(c, "µs"),
                fmt_spread(be, "µs"),
                fmt_spread(cl, ""),
                vs(ratio(median_of(rate), ng_rate)),
                vs(ratio(median_of(c), ng_cpu)),
                vs(ratio(median_of(p99), ng_p99)),
                fmt_ratio(ratio(median_of(rate), d_rate)),
            );
            // More than 1 % of responses followed by a close: the proxy does not keep client
            // connections alive (nginx closes after keepalive_requests, 1,000 by default).
            if let Some(cl) = median_of(cl).filter(|&x| x > 10.0) {
                problems.push(format!(
                    "{wl_at} {}: closed the client connection after {} of every 1,000 responses (no keep-alive to clients: each request paid a reconnect)",
                    http_label(run, t),
                    fmt_num(cl)
                ));
            }
            if t.starts_with("ringway") {
                let label = format!("{wl_at} (HTTP)");
                // Open loop: every target is offered the same rate, so req/s says nothing.
                if open_rate == 0.0 {
                    compare_to_nginx(
                        nginx_wins,
                        &label,
                        t,
                        "req/s",
                        rate,
                        get("nginx", "requests_per_s"),
                        true,
                    );
                }
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
            for v in run.reps(t, wl, w) {
                perf_health(&wl_at, t, v, problems);
            }
        }
        let _ = writeln!(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn http(rate: f64, per_s: f64, p99: f64) -> Value {
        json!({"params": {"pipeline": 1, "rate": rate}, "requests": 1000, "requests_per_s": per_s,
               "latency_us": {"p50": 100.0, "p90": 200.0, "p99": p99, "p999": 400.0},
               "watched": [{"tree_cpu_us_per_req": 10.0}]})
    }

    /// An open-loop table is named so, and its requests/s (the offered rate for everyone) is
    /// never listed as a place where nginx wins; the closed-loop one with the same figures is.
    #[test]
    fn open_loop_tables_are_named_and_skip_the_rate_comparison() {
        let mut results = BTreeMap::new();
        for (wl, rate) in [("http-c500", 0.0), ("http-r10k-c500", 10_000.0)] {
            for (t, per_s, p99) in [
                ("ringway-auto", 9_990.0, 900.0),
                ("nginx", 10_000.0, 1_000.0),
            ] {
                results.insert(
                    (format!("perf__w1__r1__{t}"), wl.to_string()),
                    http(rate, per_s, p99),
                );
            }
            results.insert(
                ("perf__w1__r1__direct".into(), wl.to_string()),
                http(rate, 10_000.0, 500.0),
            );
        }
        let run = crate::run::run_of_results(json!({}), results);
        let (mut o, mut fd) = (String::new(), Findings::default());
        http_section(&run, &mut o, &mut fd);
        assert!(o.contains("### 500 connections\n"), "{o}");
        assert!(
            o.contains("### 500 connections, open loop at 10,000 requests/s\n"),
            "{o}"
        );
        let rate_wins: Vec<_> = fd
            .nginx_wins
            .iter()
            .filter(|w| w.contains("req/s"))
            .collect();
        assert_eq!(rate_wins.len(), 1, "{:?}", fd.nginx_wins);
        assert!(rate_wins[0].starts_with("http-c500"), "{rate_wins:?}");
    }
}

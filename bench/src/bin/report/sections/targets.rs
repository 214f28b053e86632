//! Section 10 of summary.md: issue 11's "Done means" lines that compare.sh measures, each
//! evaluated from this run's data for ringway's default mode at 1 and 2 workers (and any other
//! count the run has): the medians, their ratio to nginx's, the goal, how many repetitions
//! (paired by number: they ran interleaved) meet it, and met / not met / not measured.

use ringway_bench::fmt::{fmt_num, MISSING};
use ringway_bench::json::num;
use ringway_bench::stats::median_of;
use ringway_bench::stats::Spread;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::run::{proxy_cpu, workers_word, Run, CHURN_WL, RINGWAY_AUTO};

/// What a goal reads from one loadgen result.
#[derive(Clone, Copy)]
enum Metric {
    /// The proxy's CPU per unit (a `watched[0]` field).
    Cpu(&'static str),
    /// A field of the result.
    Field(&'static str),
}

/// One "Done means" line.
struct Goal {
    what: &'static str,
    wl: &'static str,
    metric: Metric,
    unit: &'static str,
    /// ringway / nginx must be at most (true) or at least (false) `limit`.
    at_most: bool,
    limit: f64,
    /// The figure is the latency added to direct's (proxy − direct), not the proxy's own.
    over_direct: bool,
}

const GOALS: [Goal; 8] = [
    Goal {
        what: "proxy CPU per 64 B message, 100 connections",
        wl: "echo64-c100",
        metric: Metric::Cpu("tree_cpu_us_per_msg"),
        unit: "µs",
        at_most: true,
        limit: 0.6,
        over_direct: false,
    },
    Goal {
        what: "proxy CPU per 64 B message, 1,000 connections",
        wl: "echo64-c1000",
        metric: Metric::Cpu("tree_cpu_us_per_msg"),
        unit: "µs",
        at_most: true,
        limit: 0.65,
        over_direct: false,
    },
    Goal {
        what: "bulk 1 MiB, 1 connection: proxy CPU per MB",
        wl: "bulk1m-c1",
        metric: Metric::Cpu("tree_cpu_ms_per_mb"),
        unit: "ms",
        at_most: true,
        limit: 0.2,
        over_direct: false,
    },
    Goal {
        what: "bulk 1 MiB, 1 connection: MB/s",
        wl: "bulk1m-c1",
        metric: Metric::Field("received_mb_per_s"),
        unit: "MB/s",
        at_most: false,
        limit: 3.5,
        over_direct: false,
    },
    Goal {
        what: "added p99 latency (proxy − direct), echo 64 B, 100 connections",
        wl: "echo64-c100",
        metric: Metric::Field("latency_us.p99"),
        unit: "µs",
        at_most: true,
        limit: 0.5,
        over_direct: true,
    },
    Goal {
        what: "accept rate: new tunnels/s",
        wl: CHURN_WL,
        metric: Metric::Field("tunnels_per_s"),
        unit: "/s",
        at_most: false,
        limit: 1.5,
        over_direct: false,
    },
    Goal {
        what: "HTTP keep-alive p99, 500 connections, closed loop",
        wl: "http-c500",
        metric: Metric::Field("latency_us.p99"),
        unit: "µs",
        at_most: true,
        limit: 1.0,
        over_direct: false,
    },
    Goal {
        what: "HTTP keep-alive p99, 500 connections, open loop at 10,000 req/s (same load)",
        wl: "http-r10k-c500",
        metric: Metric::Field("latency_us.p99"),
        unit: "µs",
        at_most: true,
        limit: 1.0,
        over_direct: false,
    },
];

/// The worker counts the goals are evaluated at: 1 and 2 (the issue's), and the run's own.
fn counts(run: &Run) -> Vec<u64> {
    let mut v = vec![1, 2];
    v.extend(run.workers());
    v.sort_unstable();
    v.dedup();
    v
}

/// Repetition number → the metric, for (target, workload) at `w`.
fn by_rep(run: &Run, t: &str, g: &Goal, w: u64) -> BTreeMap<u64, f64> {
    let get = |v: &Value| match g.metric {
        Metric::Cpu(f) => proxy_cpu(v, t, f),
        Metric::Field(f) => num(v, f),
    };
    run.reps_numbered(t, g.wl, w)
        .into_iter()
        .filter_map(|(k, v)| Some((k, get(v)?)))
        .filter(|x| x.1.is_finite())
        .collect()
}

fn med(m: &BTreeMap<u64, f64>) -> Option<f64> {
    median_of(Spread::of(m.values().copied().collect()))
}

/// One row's figures: ringway's and nginx's (added over direct where the goal says so), their
/// ratio, and (reps meeting the goal, reps paired).
struct Row {
    ringway: Option<f64>,
    nginx: Option<f64>,
    ratio: Option<f64>,
    reps: (usize, usize),
}

fn evaluate(run: &Run, g: &Goal, w: u64) -> Row {
    let t = run.http_ringway();
    let (r, n) = (by_rep(run, t, g, w), by_rep(run, "nginx", g, w));
    let d = if g.over_direct {
        Some(by_rep(run, "direct", g, w))
    } else {
        None
    };
    let dm = d.as_ref().map(med);
    let over = |x: Option<f64>| match dm {
        Some(dm) => Some(x? - dm?),
        None => x,
    };
    let (rm, nm) = (over(med(&r)), over(med(&n)));
    let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let ratio = rm.zip(nm).and_then(|(a, b)| div(a, b));
    let meets = |x: f64| {
        if g.at_most {
            x <= g.limit
        } else {
            x >= g.limit
        }
    };
    let mut reps = (0, 0);
    for (k, rv) in &r {
        let Some(nv) = n.get(k) else { continue };
        let x = match &d {
            Some(d) => match d.get(k) {
                Some(dv) => div(rv - dv, nv - dv),
                None => continue,
            },
            None => div(*rv, *nv),
        };
        reps.1 += 1;
        if x.is_some_and(meets) {
            reps.0 += 1;
        }
    }
    Row {
        ringway: rm,
        nginx: nm,
        ratio,
        reps,
    }
}

/// Section 10.
pub fn targets(run: &Run, o: &mut String) {
    let t = run.http_ringway();
    let _ = writeln!(o, "\n## 10. Issue 11's targets, from this run\n");
    let _ = writeln!(
        o,
        "ringway's default mode ({}) against nginx at the same worker count, from the medians of sections 4 to \
         8; \"reps meeting\": the repetitions (paired by number, they ran interleaved) whose own ratio meets the \
         goal. Added p99: the target's p99 minus direct's (same repetition for the pairs). Not evaluated here: \
         the integration tests (random-size traffic, half-close, idle `auto` tunnels holding no pipe or buffer: \
         `cargo test`) and 700,000 tunnels held (`scripts/ceiling.sh`).\n",
        if t == RINGWAY_AUTO {
            "`--tunnel auto`"
        } else {
            "`--tunnel splice`: the run is from before `auto`"
        }
    );
    let _ = writeln!(
        o,
        "| goal | workers | {} | nginx | ringway / nginx | target | reps meeting | verdict |",
        run.label(t)
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for g in &GOALS {
        for w in counts(run) {
            let row = evaluate(run, g, w);
            let show = |x: Option<f64>| match x {
                Some(x) if g.over_direct && x < 0.0 => format!("−{} {}", fmt_num(-x), g.unit),
                Some(x) if g.over_direct => format!("+{} {}", fmt_num(x), g.unit),
                Some(x) => format!("{} {}", fmt_num(x), g.unit),
                None => MISSING.into(),
            };
            let goal = format!("{} {:.2}×", if g.at_most { "≤" } else { "≥" }, g.limit);
            let verdict = match row.ratio {
                None if row.ringway.is_none() || row.nginx.is_none() => "not measured",
                None => "no ratio (nginx adds nothing)",
                Some(x) if (g.at_most && x <= g.limit) || (!g.at_most && x >= g.limit) => "**met**",
                Some(_) => "not met",
            };
            let reps = if row.reps.1 > 0 {
                format!("{}/{}", row.reps.0, row.reps.1)
            } else {
                MISSING.into()
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {goal} | {reps} | {verdict} |",
                g.what,
                workers_word(w),
                show(row.ringway),
                show(row.nginx),
                row.ratio
                    .map(|x| format!("{x:.2}×"))
                    .unwrap_or_else(|| MISSING.into()),
            );
        }
    }
    let _ = writeln!(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo(cpu: f64, p99: f64) -> Value {
        json!({"watched": [{"tree_cpu_us_per_msg": cpu}], "latency_us": {"p99": p99}})
    }

    #[test]
    fn ratios_added_latency_and_paired_reps() {
        let mut results = BTreeMap::new();
        let mut put = |s: &str, v: Value| {
            results.insert((s.to_string(), "echo64-c100".to_string()), v);
        };
        put("perf__w1__r1__ringway-auto", echo(5.0, 300.0));
        put("perf__w1__r2__ringway-auto", echo(7.0, 500.0));
        put("perf__w1__r1__nginx", echo(10.0, 400.0));
        put("perf__w1__r2__nginx", echo(10.0, 600.0));
        put("perf__w1__r1__direct", echo(1.0, 200.0));
        put("perf__w1__r2__direct", echo(1.0, 200.0));
        let run = crate::run::run_of_results(json!({}), results);
        let cpu = evaluate(&run, &GOALS[0], 1);
        assert_eq!(cpu.ringway, Some(6.0));
        assert_eq!(cpu.ratio, Some(0.6));
        assert_eq!(cpu.reps, (1, 2)); // 0.5 meets ≤ 0.6, 0.7 does not
        let added = evaluate(&run, &GOALS[4], 1);
        // medians 400 and 500, direct 200: +200 vs +300.
        assert_eq!(added.ringway, Some(200.0));
        assert_eq!(added.nginx, Some(300.0));
        assert_eq!(added.reps, (1, 2)); // 100/200 meets, 300/400 does not
        let none = evaluate(&run, &GOALS[0], 2);
        assert!(none.ratio.is_none() && none.reps == (0, 0));
        let mut o = String::new();
        targets(&run, &mut o);
        assert!(o.contains("| proxy CPU per 64 B message, 100 connections | 1 worker | 6.00 µs | 10.0 µs | 0.60× | ≤ 0.60× | 1/2 | **met** |"), "{o}");
        assert!(
            o.contains("| 2 workers | – | – | – | ≤ 0.60× | – | not measured |"),
            "{o}"
        );
    }
}

//! Section 3 of summary.md: the raised ceiling (ramp, hold, proxy RSS and box MemFree per held
//! tunnel) for ringway and nginx at the same budget, and nginx at its own largest.

use ringway_bench::fmt::{failure_kinds, fmt_count, fmt_num, fmt_num_opt};
use ringway_bench::json::num;
use ringway_bench::stats::Spread;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ceiling::check_ceiling_health;
use super::Findings;
use crate::run::Run;

/// Section 3.
pub fn raised(run: &Run, o: &mut String, fd: &mut Findings) {
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
            fd.problems.push(format!("{s}: no loadgen result"));
            continue;
        };
        let (bud, exp) = match run.budget(s) {
            Some((w, wc, e)) => (format!("{w} × {}", fmt_num(wc as f64)), Some(e)),
            None => ("?".into(), None),
        };
        let ok = num(r, "ok").unwrap_or(0.0);
        if let Some(e) = exp {
            if ok as u64 != e {
                fd.problems.push(format!(
                    "{s}: held {} tunnels, the budget says {}",
                    fmt_num(ok),
                    fmt_num(e as f64)
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
            exp.map(|e| fmt_num(e as f64)).unwrap_or_else(|| "?".into()),
            fmt_count(Some(ok)),
            fmt_count(num(r, "attempted")),
            failure_kinds(r.get("failed")),
            fmt_num_opt(num(r, "ramp_s")),
            fmt_count(num(r, "dropped_during_ramp")),
            fmt_count(num(r, "dropped_during_hold")),
            fmt_count(num(r, "alive_after_hold")),
            mem.map(|(b, h, _, _)| format!(
                "{} → {} MiB",
                fmt_num(b / 1024.0),
                fmt_num(h / 1024.0)
            ))
            .unwrap_or_else(|| "–".into()),
            mem.map(|(_, _, p, _)| format!(
                "{} KiB{}",
                fmt_num(p),
                if tiny { " (too few tunnels)" } else { "" }
            ))
            .unwrap_or_else(|| "–".into()),
            mem.map(|(_, _, _, d)| format!("{} KiB", fmt_num(d)))
                .unwrap_or_else(|| "–".into()),
        );
        check_ceiling_health(s, r, &mut fd.problems);
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
            fd.nginx_wins.push(format!(
                "RSS per idle tunnel: ringway {} KiB vs nginx {} KiB",
                fmt_num(*r),
                fmt_num(*n)
            ));
        }
    }
    if let (Some(rr), Some(nr)) = (
        run.result("raised__ringway", "ceiling"),
        run.result("raised__nginx", "ceiling"),
    ) {
        let (a, b) = (num(rr, "ok").unwrap_or(0.0), num(nr, "ok").unwrap_or(0.0));
        if b > a {
            fd.nginx_wins.push(format!(
                "raised ceiling at the same budget: nginx held {} vs ringway {}",
                fmt_num(b),
                fmt_num(a)
            ));
        }
    }
    let _ = writeln!(
        o,
        "\nPlot: [plots/ramp.svg](plots/ramp.svg) (tunnels held and proxy RSS over time)."
    );
}

/// (rss_before_kb, rss_held_kb, rss_kib_per_tunnel, memfree_drop_kib_per_tunnel).
pub fn mem_stats(run: &Run, s: &str, r: &Value) -> Option<(f64, f64, f64, f64)> {
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
    let rb = Spread::of(before.iter().map(|x| x.1).collect())?.med;
    let fb = Spread::of(before.iter().map(|x| x.2).collect())?.med;
    let rh = Spread::of(held.iter().map(|x| x.1).collect())?.med;
    let fh = Spread::of(held.iter().map(|x| x.2).collect())?.med;
    if ok <= 0.0 {
        return None;
    }
    Some((rb, rh, (rh - rb) / ok, (fb - fh) / ok))
}

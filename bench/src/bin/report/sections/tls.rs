//! Section 11 of summary.md: TLS termination (issue 15), ringway vs nginx from the same
//! `listen ... ssl` conf, and direct (a TLS wsecho, rustls): what was negotiated, handshakes per
//! second full and resumed with CPU per handshake, 64 B echo over wss (CPU per message), bulk
//! 1 MiB over wss (MB/s, CPU per MB), and proxy RSS per idle TLS tunnel while 10,000 are held.
//! Sessions `tls__rN__TARGET` (repetition N) and `tlsheld__PROXY`; meta.json's `tls` object
//! says whether ringway took part (it joins once `ringway -t` accepts the TLS conf).

use ringway_bench::fmt::{
    failure_kinds, failures_total, fmt_count, fmt_num, fmt_param, fmt_spread,
};
use ringway_bench::json::{at, num, text};
use ringway_bench::stats::{median_of, ratio, Spread};
use serde_json::Value;
use std::fmt::Write as _;

use super::raised::mem_stats;
use super::{compare_to_nginx, fmt_vs_nginx, perf_health, Findings};
use crate::run::Run;

/// The TLS workloads (compare.sh's names).
pub const HS_FULL: &str = "tls-hs-full";
pub const HS_RESUMED: &str = "tls-hs-resumed";
pub const ECHO: &str = "tls-echo64";
pub const BULK: &str = "tls-bulk1m";
/// The TLS targets in table order.
const TARGETS: [&str; 3] = ["ringway", "nginx", "direct"];

/// (repetition, target) of a `tls__rN__TARGET` session.
pub fn tls_session(s: &str) -> Option<(u64, &str)> {
    let (rep, t) = s.strip_prefix("tls__r")?.split_once("__")?;
    Some((rep.parse().ok()?, t))
}

/// The results of (target, workload) over the repetitions.
fn reps<'a>(run: &'a Run, target: &str, wl: &str) -> Vec<&'a Value> {
    run.results
        .iter()
        .filter(|((s, w), _)| w == wl && tls_session(s).is_some_and(|x| x.1 == target))
        .map(|(_, v)| v)
        .collect()
}

fn metric(run: &Run, t: &str, wl: &str, get: impl Fn(&Value) -> Option<f64>) -> Option<Spread> {
    Spread::of(reps(run, t, wl).into_iter().filter_map(get).collect())
}

/// CPU of the TLS server per unit: the proxy's tree, or for direct the TLS wsecho (which also
/// does the echo work).
fn server_cpu(v: &Value, field: &str) -> Option<f64> {
    v.get("watched")?
        .as_array()?
        .first()
        .and_then(|w| num(w, field))
}

/// Whether the run has any TLS result or said why it has none.
fn has_tls(run: &Run) -> bool {
    run.results
        .keys()
        .any(|(s, _)| tls_session(s).is_some() || s.starts_with("tlsheld__"))
}

/// The targets that ran.
fn targets(run: &Run) -> Vec<&'static str> {
    TARGETS
        .into_iter()
        .filter(|t| {
            run.results
                .keys()
                .any(|(s, _)| tls_session(s).is_some_and(|x| x.1 == *t))
        })
        .collect()
}

/// Section 11.
pub fn tls(run: &Run, o: &mut String, fd: &mut Findings) {
    let _ = writeln!(o, "\n## 11. TLS termination (wss://, https://)\n");
    let m = &run.meta;
    if !has_tls(run) {
        let _ = writeln!(
            o,
            "Not measured in this run (no `tls__*` results: compare.sh measures TLS since issue 15).\n"
        );
        return;
    }
    let accepted = at(m, "tls.ringway_accepts_tls_conf").and_then(Value::as_bool);
    let _ = writeln!(
        o,
        "Both proxies read the same conf (`conf/tls-w1.conf`: the seed with `listen 127.0.0.1:PORT ssl;`, \
         `ssl_certificate`/`ssl_certificate_key` (an ECDSA P-256 leaf for `localhost` signed by a test CA made \
         for this run by `loadgen gen-cert`), `ssl_protocols TLSv1.2 TLSv1.3; ssl_session_timeout 5m; \
         ssl_session_cache shared:SSL:10m; ssl_session_tickets on;`), 1 worker. loadgen (rustls, aws-lc-rs) \
         offers one suite and one group, so every target negotiates the same (below). direct: loadgen straight \
         at a TLS wsecho (rustls, one process), i.e. TLS and the echo in one process with no proxy hop. Median \
         over {} interleaved repetition(s) of {} s, (min–max) in brackets. CPU: the TLS server's process tree \
         from /proc (the proxy; for direct the TLS wsecho, echo work included).\n",
        fmt_param(num(m, "params.reps")),
        fmt_param(num(m, "params.duration_s")),
    );
    if accepted == Some(false) {
        let why = text(m, "tls.ringway_refusal");
        let _ = writeln!(
            o,
            "**ringway did not take part**: `ringway -t` refused the TLS conf ({}). The rows below are nginx and \
             direct only; they fill in by themselves once ringway accepts the file.\n",
            if why.is_empty() { "no reason recorded" } else { why.trim() }
        );
        fd.problems.push(format!(
            "tls: ringway refused the TLS conf ({}), so it has no TLS rows",
            why.trim()
        ));
    }
    negotiated(run, o, fd);
    handshakes(run, o, fd);
    echo_bulk(run, o, fd);
    held(run, o, fd);
}

/// What each target negotiated (from loadgen's `tls` objects).
fn negotiated(run: &Run, o: &mut String, fd: &mut Findings) {
    let _ = writeln!(o, "### Negotiated\n");
    let _ = writeln!(
        o,
        "| target | version | cipher suite | group | ALPN | handshakes (all runs) | resumed |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    let mut seen: Vec<(String, String)> = Vec::new();
    for t in targets(run) {
        let all: Vec<&Value> = run
            .results
            .iter()
            .filter(|((s, _), _)| tls_session(s).is_some_and(|x| x.1 == t))
            .filter_map(|(_, v)| v.get("tls"))
            .collect();
        let Some(&first) = all.iter().find(|v| !text(**v, "suite").is_empty()) else {
            continue;
        };
        let hs: f64 = all.iter().filter_map(|v| num(*v, "handshakes")).sum();
        let res: f64 = all.iter().filter_map(|v| num(*v, "resumed")).sum();
        let (ver, suite) = (text(first, "version"), text(first, "suite"));
        seen.push((ver.to_string(), suite.to_string()));
        let _ = writeln!(
            o,
            "| {} | {ver} | {suite} | {} | {} | {} | {} |",
            label(t),
            text(first, "group"),
            text(first, "alpn"),
            fmt_count(Some(hs)),
            fmt_count(Some(res)),
        );
    }
    seen.dedup();
    if seen.len() > 1 {
        fd.problems.push(format!(
            "tls: the targets negotiated different parameters ({seen:?}): the rows do not compare like with like"
        ));
    }
    let _ = writeln!(o);
}

fn label(t: &str) -> &str {
    match t {
        "direct" => "direct (TLS wsecho, no proxy)",
        t => t,
    }
}

/// Handshakes per second, full and resumed, with CPU per handshake.
fn handshakes(run: &Run, o: &mut String, fd: &mut Findings) {
    if reps(run, "nginx", HS_FULL).is_empty() && reps(run, "direct", HS_FULL).is_empty() {
        return;
    }
    let conns = reps(run, "nginx", HS_FULL)
        .first()
        .or(reps(run, "direct", HS_FULL).first())
        .and_then(|v| num(*v, "params.conns"));
    let _ = writeln!(
        o,
        "### Handshakes per second\n\n`loadgen handshake --conns {}`: each worker loops TCP connect (from 127.0.0.2–9) + \
         TLS handshake + close_notify, read to the end. Full: no session store. Resumed: each worker keeps its own \
         tickets (TLS 1.3 PSK), and the resumed share is rustls's own verdict per handshake. Latency: connect + \
         handshake as the client sees it. loadgen shares the CPUs and does its half of every handshake.\n",
        fmt_count(conns)
    );
    let _ = writeln!(
        o,
        "| target | full /s | CPU per full handshake | full p99 | resumed /s | resumed share | CPU per resumed | resumed p99 | failed | full /s vs nginx | CPU/full vs nginx | CPU/resumed vs nginx |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    let rate = |t: &str, wl: &str| metric(run, t, wl, |v| num(v, "handshakes_per_s"));
    let cpu =
        |t: &str, wl: &str| metric(run, t, wl, |v| server_cpu(v, "tree_cpu_us_per_handshake"));
    let p99 = |t: &str, wl: &str| metric(run, t, wl, |v| num(v, "handshake_us.p99"));
    let (ng_rate, ng_cf, ng_cr) = (
        median_of(rate("nginx", HS_FULL)),
        median_of(cpu("nginx", HS_FULL)),
        median_of(cpu("nginx", HS_RESUMED)),
    );
    for t in targets(run) {
        let (rf, cf, rr, cr) = (
            rate(t, HS_FULL),
            cpu(t, HS_FULL),
            rate(t, HS_RESUMED),
            cpu(t, HS_RESUMED),
        );
        let share = metric(run, t, HS_RESUMED, |v| num(v, "resumed_fraction"));
        let mut failed = 0;
        for wl in [HS_FULL, HS_RESUMED] {
            for v in reps(run, t, wl) {
                let f = failures_total(v.get("failed"))
                    + failures_total(v.get("failed_after_handshake"));
                failed += f;
                if f > 0 {
                    fd.problems.push(format!(
                        "{wl} {t}: {f} failure(s) ({}; after the handshake: {})",
                        failure_kinds(v.get("failed")),
                        failure_kinds(v.get("failed_after_handshake"))
                    ));
                }
                if num(v, "handshakes").unwrap_or(0.0) == 0.0 {
                    fd.problems
                        .push(format!("{wl} {t}: no handshake completed"));
                }
            }
        }
        if let Some(s) = share {
            if s.med < 0.9 {
                fd.problems.push(format!(
                    "{HS_RESUMED} {t}: only {:.0} % of the handshakes resumed",
                    s.med * 100.0
                ));
            }
        }
        let vs = |x| fmt_vs_nginx(t, x);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            label(t),
            fmt_spread(rf, "/s"),
            fmt_spread(cf, "µs"),
            fmt_spread(p99(t, HS_FULL), "µs"),
            fmt_spread(rr, "/s"),
            share
                .map(|s| format!("{:.1} %", s.med * 100.0))
                .unwrap_or_else(|| "–".into()),
            fmt_spread(cr, "µs"),
            fmt_spread(p99(t, HS_RESUMED), "µs"),
            fmt_num(failed as f64),
            vs(ratio(median_of(rf), ng_rate)),
            vs(ratio(median_of(cf), ng_cf)),
            vs(ratio(median_of(cr), ng_cr)),
        );
        if t == "ringway" {
            let w = &mut fd.nginx_wins;
            let l = "TLS handshakes";
            compare_to_nginx(
                w,
                l,
                t,
                "full handshakes/s",
                rf,
                rate("nginx", HS_FULL),
                true,
            );
            compare_to_nginx(
                w,
                l,
                t,
                "CPU µs per full handshake",
                cf,
                cpu("nginx", HS_FULL),
                false,
            );
            compare_to_nginx(
                w,
                l,
                t,
                "CPU µs per resumed handshake",
                cr,
                cpu("nginx", HS_RESUMED),
                false,
            );
        }
    }
    let _ = writeln!(o);
}

/// 64 B echo over wss and 1 MiB bulk over wss.
fn echo_bulk(run: &Run, o: &mut String, fd: &mut Findings) {
    for (wl, title, rate_path, rate_unit, cpu_field, cpu_unit) in [
        (
            ECHO,
            "64 B echo over wss",
            "msgs_per_s",
            "msg/s",
            "tree_cpu_us_per_msg",
            "µs/msg",
        ),
        (
            BULK,
            "1 MiB bulk over wss",
            "received_mb_per_s",
            "MB/s",
            "tree_cpu_ms_per_mb",
            "ms/MB",
        ),
    ] {
        let ts: Vec<&str> = targets(run)
            .into_iter()
            .filter(|t| !reps(run, t, wl).is_empty())
            .collect();
        if ts.is_empty() {
            continue;
        }
        let conns = reps(run, ts[0], wl)
            .first()
            .and_then(|v| num(*v, "params.conns"));
        let _ = writeln!(o, "### {title}, {} connection(s)\n", fmt_count(conns));
        let _ = writeln!(
            o,
            "| target | {rate_unit} | latency p99 | CPU per unit | {rate_unit} vs nginx | CPU vs nginx | {rate_unit} vs direct |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        let rate = |t: &str| metric(run, t, wl, |v| num(v, rate_path));
        let cpu = |t: &str| metric(run, t, wl, |v| server_cpu(v, cpu_field));
        let (ng_r, ng_c, d_r) = (
            median_of(rate("nginx")),
            median_of(cpu("nginx")),
            median_of(rate("direct")),
        );
        for t in ts {
            let (r, c) = (rate(t), cpu(t));
            let lat = metric(run, t, wl, |v| num(v, "latency_us.p99"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                label(t),
                fmt_spread(r, ""),
                if lat.is_some() {
                    fmt_spread(lat, "µs")
                } else {
                    "–".into()
                },
                fmt_spread(c, cpu_unit),
                fmt_vs_nginx(t, ratio(median_of(r), ng_r)),
                fmt_vs_nginx(t, ratio(median_of(c), ng_c)),
                if t == "direct" {
                    "–".into()
                } else {
                    ringway_bench::fmt::fmt_ratio(ratio(median_of(r), d_r))
                },
            );
            if t == "ringway" {
                let w = &mut fd.nginx_wins;
                compare_to_nginx(w, title, t, rate_unit, r, rate("nginx"), true);
                compare_to_nginx(w, title, t, cpu_unit, c, cpu("nginx"), false);
            }
            for v in reps(run, t, wl) {
                perf_health(wl, t, v, &mut fd.problems);
            }
        }
        let _ = writeln!(o);
    }
}

/// RSS per idle TLS tunnel while `tls.held_tunnels` are held.
fn held(run: &Run, o: &mut String, fd: &mut Findings) {
    let rows: Vec<(&str, &Value)> = ["ringway", "nginx"]
        .into_iter()
        .filter_map(|p| Some((p, run.result(&format!("tlsheld__{p}"), "ceiling")?)))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(
            o,
            "### Idle TLS tunnels\n\nNot measured in this run (smoke runs skip it).\n"
        );
        return;
    }
    let m = &run.meta;
    let budget = at(m, "tls.held_budget").and_then(Value::as_array);
    let _ = writeln!(
        o,
        "### Idle TLS tunnels: RSS per tunnel\n\n{} wss tunnels ramped at {}/s and held {} s (`conf/tls-held.conf`: \
         {} workers × {} slots; ringway with `--worker-mode process`, so each worker is a process under this \
         machine's 20,000-fd limit; loadgen `ceiling --procs 2`). RSS: the proxy's processes summed, the median \
         while held minus the median before the ramp, per held tunnel.\n",
        fmt_count(num(m, "tls.held_tunnels")),
        fmt_count(num(m, "tls.held_rate")),
        fmt_param(num(m, "tls.held_hold_s")),
        budget.and_then(|b| b.first()).and_then(Value::as_f64).map(|x| x.to_string()).unwrap_or_default(),
        fmt_count(budget.and_then(|b| b.get(1)).and_then(Value::as_f64)),
    );
    let _ = writeln!(
        o,
        "| proxy | held (ok) | attempted | failed | dropped during hold | alive after hold | RSS before → held | RSS per idle TLS tunnel | vs nginx |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    let per = |s: &str, r: &Value| mem_stats(run, s, r).map(|x| x.2);
    let ng = rows
        .iter()
        .find(|x| x.0 == "nginx")
        .and_then(|(p, r)| per(&format!("tlsheld__{p}"), r));
    for &(p, r) in &rows {
        let s = format!("tlsheld__{p}");
        let mem = mem_stats(run, &s, r);
        let ok = num(r, "ok").unwrap_or(0.0);
        let attempted = num(r, "attempted").unwrap_or(0.0);
        if ok < attempted {
            fd.problems.push(format!(
                "{s}: held {} of {} TLS tunnels ({})",
                fmt_num(ok),
                fmt_num(attempted),
                failure_kinds(r.get("failed"))
            ));
        }
        let _ = writeln!(
            o,
            "| {p} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_count(Some(ok)),
            fmt_count(Some(attempted)),
            failure_kinds(r.get("failed")),
            fmt_count(num(r, "dropped_during_hold")),
            fmt_count(num(r, "alive_after_hold")),
            mem.map(|(b, h, _, _)| format!(
                "{} → {} MiB",
                fmt_num(b / 1024.0),
                fmt_num(h / 1024.0)
            ))
            .unwrap_or_else(|| "–".into()),
            mem.map(|x| format!("{} KiB", fmt_num(x.2)))
                .unwrap_or_else(|| "–".into()),
            fmt_vs_nginx(p, ratio(mem.map(|x| x.2), ng)),
        );
    }
    let _ = writeln!(o);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_labels() {
        assert_eq!(tls_session("tls__r2__nginx"), Some((2, "nginx")));
        assert_eq!(tls_session("tls__rx__nginx"), None);
        assert_eq!(tls_session("perf__r1__nginx"), None);
    }
}

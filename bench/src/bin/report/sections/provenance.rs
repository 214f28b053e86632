//! The head of summary.md: what was run, where, from which commit, with which settings.

use ringway_bench::fmt::fmt_num_opt;
use ringway_bench::json::{at, num, text};
use serde_json::Value;
use std::fmt::Write as _;

use crate::run::Run;

/// The title and the provenance lines.
pub fn provenance(run: &Run, o: &mut String) {
    let m = &run.meta;
    let _ = writeln!(
        o,
        "# ringway vs nginx: {} run of {}\n",
        text(m, "mode"),
        text(m, "date_utc")
    );
    let _ = writeln!(
        o,
        "- commit `{}`{} · kernel {} · {} × {} · {} · {} · {}",
        text(m, "short_sha"),
        if m.get("dirty").and_then(Value::as_bool) == Some(true) {
            " (dirty tree)"
        } else {
            ""
        },
        text(m, "kernel"),
        num(m, "cpu_count")
            .map(|c| c.to_string())
            .unwrap_or_default(),
        text(m, "cpu_model"),
        text(m, "rustc"),
        text(m, "nginx"),
        text(m, "ringway")
    );
    let _ = writeln!(
        o,
        "- command: `{}` · duration {} s · tuning {} · ulimit -n {} · somaxconn {} · port range {} · tcp_tw_reuse {}",
        text(m, "command_line"),
        fmt_num_opt(num(m, "duration_s")),
        if m.get("tune").and_then(Value::as_bool) == Some(true) { "applied (tuning/apply.sh)" } else { "none" },
        text(m, "ulimit_n_soft"),
        at(m, "sysctls").and_then(|s| s.get("net.core.somaxconn")).and_then(Value::as_str).unwrap_or(""),
        at(m, "sysctls").and_then(|s| s.get("net.ipv4.ip_local_port_range")).and_then(Value::as_str).unwrap_or(""),
        at(m, "sysctls").and_then(|s| s.get("net.ipv4.tcp_tw_reuse")).and_then(Value::as_str).unwrap_or(""),
    );
    baseline(run, o);
    let _ = writeln!(
        o,
        "- clients (loadgen), backends (4 × wsecho), and the proxy all share these {} CPUs on loopback: \
         read ratios and orders of magnitude, not absolute figures. Both proxies read the same generated \
         nginx.conf per test (`conf/`); nginx: {}.\n",
        num(m, "cpu_count").map(|c| c.to_string()).unwrap_or_default(),
        text(m, "nginx_isolation")
    );
}

/// With `--baseline`: which binary the baseline rows measured.
fn baseline(run: &Run, o: &mut String) {
    let Some(b) = run.meta.get("baseline").filter(|b| !b.is_null()) else {
        return;
    };
    let commit = text(b, "commit").trim();
    // compare.sh records the relay modes it ran the baseline in (runs before `--tunnel auto`
    // have no such list: splice and copy).
    let modes = b
        .get("modes")
        .and_then(Value::as_array)
        .map(|ms| {
            let ms: Vec<&str> = ms.iter().filter_map(Value::as_str).collect();
            let no_auto = if ms.contains(&"auto") {
                ""
            } else {
                " (its `--help` lists no `--tunnel auto`)"
            };
            format!(" · modes run: {}{no_auto}", ms.join(", "))
        })
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "- baseline (`--baseline`, rows \"{}\"): `{}` · {} · commit {}{modes}",
        run.baseline_name(),
        text(b, "binary"),
        text(b, "version"),
        if commit.is_empty() {
            "not recorded (no COMMIT file)".to_string()
        } else {
            format!("`{commit}`")
        }
    );
}

//! A compare.sh results folder in memory: meta.json, the proxy sessions, the loadgen results by
//! (session, workload), the memory samples; and the lookups the sections and plots share
//! (budgets from the generated confs, worker counts, repetitions of a target at a worker count,
//! CPU per unit, target labels).
//!
//! Step 3's sessions are `perf__wW__rN__TARGET` (W workers, repetition N); runs from before the
//! worker counts named them `perf__rN__TARGET`, read as 1 worker. `direct` does not depend on
//! the proxy's workers: its repetitions count at every worker count.

use ringway_bench::json::{self, at, num, text};
use ringway_bench::stats::Spread;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The echo and bulk targets of a run without `ringway-auto` (every run before `--tunnel auto`).
pub const PERF_TARGETS: [&str; 4] = ["ringway-splice", "ringway-copy", "nginx", "direct"];
/// ringway's default relay mode (`--tunnel auto`): the headline row, first among ringway's,
/// and (when present) the session that runs the HTTP workloads.
pub const RINGWAY_AUTO: &str = "ringway-auto";
/// ringway-auto with `--no-pin` (compare.sh --pin-compare): the echo workloads only.
pub const RINGWAY_AUTO_NOPIN: &str = "ringway-auto-nopin";
pub const ECHO_WL: [&str; 2] = ["echo64-c100", "echo64-c1000"];
/// The accept-rate workload (`loadgen churn`), in the sessions that run HTTP.
pub const CHURN_WL: &str = "churn-c50";
pub const BULK_WL: [&str; 2] = ["bulk1m-c1", "bulk1m-c10"];
/// The baseline binary's sessions (`compare.sh --baseline DIR`), each next to its current twin;
/// `baseline-auto` only when the baseline binary has `--tunnel auto`.
pub const BASELINE_AUTO: &str = "baseline-auto";
pub const BASELINE_SPLICE: &str = "baseline-splice";
pub const BASELINE_COPY: &str = "baseline-copy";

pub struct Run {
    pub dir: PathBuf,
    pub meta: Value,
    pub sessions: BTreeMap<String, Value>,
    pub results: BTreeMap<(String, String), Value>,
    /// Session → (epoch ms, RSS KiB, MemFree KiB) samples.
    pub mem: BTreeMap<String, Vec<(f64, f64, f64)>>,
}

/// Read `dir`'s meta.json and raw/ (unreadable loadgen results are skipped with a note).
pub fn load(dir: &Path) -> Result<Run, String> {
    let meta = json::read(&dir.join("meta.json"))?;
    let mut run = Run {
        dir: dir.to_path_buf(),
        meta,
        sessions: BTreeMap::new(),
        results: BTreeMap::new(),
        mem: BTreeMap::new(),
    };
    let raw = dir.join("raw");
    let entries = std::fs::read_dir(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let p = raw.join(&name);
        if let Some(s) = name.strip_suffix(".session.json") {
            run.sessions.insert(s.to_string(), json::read(&p)?);
        } else if let Some(s) = name.strip_suffix(".mem.tsv") {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let rows = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<f64> = l
                        .split('\t')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect();
                    (f.len() == 3).then(|| (f[0], f[1], f[2]))
                })
                .collect();
            run.mem.insert(s.to_string(), rows);
        } else if let Some(s) = name.strip_suffix(".json") {
            if let Some((session, wl)) = s.rsplit_once("__") {
                match json::read(&p) {
                    Ok(v) => {
                        run.results.insert((session.to_string(), wl.to_string()), v);
                    }
                    Err(e) => eprintln!("report: skipping {e}"),
                }
            }
        }
    }
    Ok(run)
}

impl Run {
    pub fn result(&self, session: &str, wl: &str) -> Option<&Value> {
        self.results.get(&(session.to_string(), wl.to_string()))
    }

    /// (workers, worker_connections, expected clients) from the session's generated conf.
    pub fn budget(&self, session: &str) -> Option<(u64, u64, u64)> {
        let conf = text(self.sessions.get(session)?, "conf");
        let body = std::fs::read_to_string(self.dir.join(conf)).ok()?;
        let grab = |key: &str| -> Option<u64> {
            body.lines().map(str::trim).find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches(';')
                    .trim()
                    .parse()
                    .ok()
            })
        };
        let w = grab("worker_processes")?;
        let wc = grab("worker_connections")?;
        Some((w, wc, w * ((wc.saturating_sub(2)) / 2)))
    }

    /// The results of (target, workload) at `workers`, with their repetition numbers, in
    /// session order (direct's at any worker count).
    pub fn reps_numbered(&self, target: &str, wl: &str, workers: u64) -> Vec<(u64, &Value)> {
        self.results
            .iter()
            .filter(|((_, w), _)| w == wl)
            .filter_map(|((s, _), v)| {
                let (sw, rep, t) = perf_session(s)?;
                (t == target && (t == "direct" || sw == workers)).then_some((rep, v))
            })
            .collect()
    }

    /// The results of (target, workload) at `workers` (direct's at any worker count).
    pub fn reps(&self, target: &str, wl: &str, workers: u64) -> Vec<&Value> {
        self.reps_numbered(target, wl, workers)
            .into_iter()
            .map(|x| x.1)
            .collect()
    }

    /// Step 3's worker counts, ascending: those of the sessions (direct's aside) and of
    /// meta.json's `params.perf_workers`; `[1]` for runs from before the worker counts.
    pub fn workers(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .sessions
            .keys()
            .chain(self.results.keys().map(|(s, _)| s))
            .filter_map(|s| perf_session(s))
            .filter(|x| x.2 != "direct")
            .map(|x| x.0)
            .collect();
        if let Some(ws) = at(&self.meta, "params.perf_workers").and_then(Value::as_array) {
            v.extend(ws.iter().filter_map(Value::as_u64));
        }
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            v.push(1);
        }
        v
    }

    /// Whether the tables name a worker count: every run but those at 1 worker only.
    pub fn multi_workers(&self) -> bool {
        self.workers() != [1]
    }

    /// "1 worker", "2 workers", "1 and 2 workers".
    pub fn workers_text(&self) -> String {
        let ws: Vec<String> = self.workers().iter().map(u64::to_string).collect();
        let n = ws.len();
        let list = if n > 1 {
            format!("{} and {}", ws[..n - 1].join(", "), ws[n - 1])
        } else {
            ws.concat()
        };
        let plural = n > 1 || ws.first().is_some_and(|w| w != "1");
        format!("{list} worker{}", if plural { "s" } else { "" })
    }

    /// A workload's name in findings and problems: with the worker count when the run has
    /// several (or another than 1).
    pub fn wl_at(&self, wl: &str, workers: u64) -> String {
        if self.multi_workers() {
            format!("{wl} ({})", workers_word(workers))
        } else {
            wl.to_string()
        }
    }

    /// Whether the run measured a baseline binary (meta.json's `baseline`, or its sessions).
    pub fn has_baseline(&self) -> bool {
        self.meta.get("baseline").is_some_and(|b| !b.is_null())
            || self.results.keys().any(|(s, _)| {
                matches!(
                    perf_session(s),
                    Some((_, _, BASELINE_AUTO | BASELINE_SPLICE | BASELINE_COPY))
                )
            })
    }

    /// Whether step 3 ran perf target `t`: a `perf__rN__t` session or result, or meta.json's
    /// `params.perf_targets` naming it.
    pub fn ran(&self, t: &str) -> bool {
        let is_t = |s: &str| perf_session(s).is_some_and(|x| x.2 == t);
        self.sessions.keys().any(|s| is_t(s))
            || self.results.keys().any(|(s, _)| is_t(s))
            || at(&self.meta, "params.perf_targets")
                .and_then(Value::as_array)
                .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t)))
    }

    /// Whether the run has the `--tunnel auto` session (`ringway-auto`).
    pub fn has_auto(&self) -> bool {
        self.ran(RINGWAY_AUTO)
    }

    /// Whether the baseline ran `--tunnel auto` too (`baseline-auto`).
    pub fn has_baseline_auto(&self) -> bool {
        self.ran(BASELINE_AUTO)
    }

    /// ringway's targets in table order: auto (when the run has it) first, each baseline mode
    /// right after the current build's.
    fn ringway_targets(&self) -> Vec<&'static str> {
        let base = self.has_baseline();
        let mut v = Vec::new();
        if self.has_auto() {
            v.push(RINGWAY_AUTO);
        }
        if base && self.has_baseline_auto() {
            v.push(BASELINE_AUTO);
        }
        v.push("ringway-splice");
        if base {
            v.push(BASELINE_SPLICE);
        }
        v.push("ringway-copy");
        if base {
            v.push(BASELINE_COPY);
        }
        v
    }

    /// The echo and bulk targets in table order: ringway's (auto first, each baseline mode
    /// after the current build's), then nginx and direct.
    pub fn perf_targets(&self) -> Vec<&'static str> {
        let mut v = self.ringway_targets();
        v.extend(["nginx", "direct"]);
        v
    }

    /// The targets of the latency plot: ringway's current build (auto first), nginx, direct.
    pub fn plot_targets(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.has_auto() {
            v.push(RINGWAY_AUTO);
        }
        v.extend(PERF_TARGETS);
        v
    }

    /// The session that ran ringway's HTTP workloads: the default (`ringway-auto`) when the
    /// run has it, else `ringway-splice` (plain HTTP never reaches the relay).
    pub fn http_ringway(&self) -> &'static str {
        if self.has_auto() {
            RINGWAY_AUTO
        } else {
            "ringway-splice"
        }
    }

    /// The baseline's HTTP session: `baseline-auto` when it ran, else `baseline-splice`.
    pub fn http_baseline(&self) -> &'static str {
        if self.has_baseline_auto() {
            BASELINE_AUTO
        } else {
            BASELINE_SPLICE
        }
    }

    /// The HTTP targets in table order (the baseline's HTTP session after ringway's).
    pub fn http_targets(&self) -> Vec<&'static str> {
        let mut v = vec![self.http_ringway()];
        if self.has_baseline() {
            v.push(self.http_baseline());
        }
        v.extend(["nginx", "direct"]);
        v
    }

    /// "ringway @1a2b3c4" from the baseline's COMMIT (short form of a full sha), or
    /// "ringway baseline" without one.
    pub fn baseline_name(&self) -> String {
        let commit = text(&self.meta, "baseline.commit").trim();
        if commit.is_empty() {
            return "ringway baseline".into();
        }
        let hex = commit.len() >= 12 && commit.chars().all(|c| c.is_ascii_hexdigit());
        let short: String = if hex {
            commit.chars().take(7).collect()
        } else {
            commit.to_string()
        };
        format!("ringway @{short}")
    }

    /// A target's row label in the echo and bulk tables.
    pub fn label(&self, t: &str) -> String {
        match t {
            BASELINE_AUTO => format!("{} (auto)", self.baseline_name()),
            BASELINE_SPLICE => format!("{} (splice)", self.baseline_name()),
            BASELINE_COPY => format!("{} (copy)", self.baseline_name()),
            t => target_label(t).to_string(),
        }
    }

    /// Spread over repetitions of metric `get` for (target, workload) at `workers`.
    pub fn metric(
        &self,
        target: &str,
        wl: &str,
        workers: u64,
        get: impl Fn(&Value) -> Option<f64>,
    ) -> Option<Spread> {
        Spread::of(
            self.reps(target, wl, workers)
                .into_iter()
                .filter_map(get)
                .collect(),
        )
    }
}

/// (workers, repetition, target) of a step-3 session label: `perf__wW__rN__TARGET`, or
/// `perf__rN__TARGET` (a run from before the worker counts: 1 worker).
pub fn perf_session(s: &str) -> Option<(u64, u64, &str)> {
    let rest = s.strip_prefix("perf__")?;
    let (w, rest) = match rest.strip_prefix('w') {
        Some(r) => {
            let (w, r) = r.split_once("__")?;
            (w.parse().ok()?, r)
        }
        None => (1, rest),
    };
    let (rep, t) = rest.strip_prefix('r')?.split_once("__")?;
    Some((w, rep.parse().ok()?, t))
}

/// "1 worker", "2 workers".
pub fn workers_word(w: u64) -> String {
    format!("{w} worker{}", if w == 1 { "" } else { "s" })
}

/// CPU of the proxy (first watched pid, with its descendants) per unit, or None for direct.
pub fn proxy_cpu(v: &Value, target: &str, field: &str) -> Option<f64> {
    if target == "direct" {
        return None;
    }
    v.get("watched")?
        .as_array()?
        .first()
        .and_then(|w| num(w, field))
}
/// CPU of the backends per unit: watched[1..] through a proxy, watched[0] for direct.
pub fn backend_cpu(v: &Value, target: &str, field: &str) -> Option<f64> {
    let w = v.get("watched")?.as_array()?;
    let skip = usize::from(target != "direct");
    let xs: Vec<f64> = w.iter().skip(skip).filter_map(|w| num(w, field)).collect();
    (!xs.is_empty()).then(|| xs.iter().sum())
}

/// The label of a fixed target (a baseline's depends on the run: [`Run::label`]).
pub fn target_label(t: &str) -> &str {
    match t {
        RINGWAY_AUTO => "ringway (auto)",
        RINGWAY_AUTO_NOPIN => "ringway (auto, --no-pin)",
        "ringway-splice" => "ringway (splice)",
        "ringway-copy" => "ringway (copy)",
        "nginx" => "nginx",
        "direct" => "direct (no proxy)",
        other => other,
    }
}

/// A run made of loadgen results alone (no folder, sessions or memory samples), for tests.
#[cfg(test)]
pub fn run_of_results(meta: Value, results: BTreeMap<(String, String), Value>) -> Run {
    Run {
        dir: PathBuf::from("/nonexistent"),
        meta,
        sessions: BTreeMap::new(),
        results,
        mem: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run with one repetition of `targets` (each with an echo result, HTTP where it ran).
    fn run_of(targets: &[&str], http: &[&str], baseline: bool) -> Run {
        let mut results = BTreeMap::new();
        for t in targets {
            results.insert((format!("perf__r1__{t}"), "echo64-c100".into()), json!({}));
        }
        for t in http {
            results.insert((format!("perf__r1__{t}"), "http-c50".into()), json!({}));
        }
        let meta = if baseline {
            json!({"baseline": {"commit": "abcdef0"}})
        } else {
            json!({})
        };
        run_of_results(meta, results)
    }

    #[test]
    fn session_labels_with_and_without_workers() {
        assert_eq!(
            perf_session("perf__r3__ringway-auto"),
            Some((1, 3, "ringway-auto"))
        );
        assert_eq!(
            perf_session("perf__w2__r1__ringway-auto-nopin"),
            Some((2, 1, RINGWAY_AUTO_NOPIN))
        );
        assert_eq!(perf_session("raised__nginx"), None);
        assert_eq!(perf_session("perf__wx__r1__nginx"), None);
        let mut r = run_of(&["nginx"], &[], false);
        assert_eq!(r.workers(), vec![1]);
        assert!(!r.multi_workers());
        assert_eq!(r.workers_text(), "1 worker");
        r.results.insert(
            ("perf__w2__r1__nginx".into(), "echo64-c100".into()),
            json!({"x": 2}),
        );
        r.results.insert(
            ("perf__w1__r2__direct".into(), "echo64-c100".into()),
            json!({"x": 3}),
        );
        assert_eq!(r.workers(), vec![1, 2]);
        assert_eq!(r.workers_text(), "1 and 2 workers");
        assert_eq!(r.wl_at("echo64-c100", 2), "echo64-c100 (2 workers)");
        assert_eq!(r.reps("nginx", "echo64-c100", 2), vec![&json!({"x": 2})]);
        assert_eq!(r.reps("nginx", "echo64-c100", 1).len(), 1);
        // direct does not depend on the proxy's workers.
        assert_eq!(r.reps("direct", "echo64-c100", 2), vec![&json!({"x": 3})]);
    }

    #[test]
    fn runs_without_auto_keep_their_targets() {
        let r = run_of(&PERF_TARGETS, &["ringway-splice", "nginx", "direct"], false);
        assert_eq!(r.perf_targets(), PERF_TARGETS.to_vec());
        assert_eq!(r.plot_targets(), PERF_TARGETS.to_vec());
        assert_eq!(r.http_targets(), vec!["ringway-splice", "nginx", "direct"]);
        let all = [
            "ringway-splice",
            BASELINE_SPLICE,
            "ringway-copy",
            BASELINE_COPY,
            "nginx",
            "direct",
        ];
        let r = run_of(&all, &["ringway-splice", BASELINE_SPLICE], true);
        assert_eq!(r.perf_targets(), all.to_vec());
        assert_eq!(
            r.http_targets(),
            vec!["ringway-splice", BASELINE_SPLICE, "nginx", "direct"]
        );
    }

    #[test]
    fn auto_comes_first_and_runs_http() {
        let t = [
            RINGWAY_AUTO,
            "ringway-splice",
            "ringway-copy",
            "nginx",
            "direct",
        ];
        let r = run_of(&t, &[RINGWAY_AUTO, "nginx", "direct"], false);
        assert_eq!(r.perf_targets(), t.to_vec());
        assert_eq!(r.plot_targets(), t.to_vec());
        assert_eq!(r.http_targets(), vec![RINGWAY_AUTO, "nginx", "direct"]);
        assert_eq!(r.label(RINGWAY_AUTO), "ringway (auto)");
    }

    #[test]
    fn baseline_auto_follows_ringway_auto_only_when_it_ran() {
        let with = [
            RINGWAY_AUTO,
            BASELINE_AUTO,
            "ringway-splice",
            BASELINE_SPLICE,
            "ringway-copy",
            BASELINE_COPY,
            "nginx",
            "direct",
        ];
        let r = run_of(&with, &[RINGWAY_AUTO, BASELINE_AUTO], true);
        assert_eq!(r.perf_targets(), with.to_vec());
        assert_eq!(
            r.http_targets(),
            vec![RINGWAY_AUTO, BASELINE_AUTO, "nginx", "direct"]
        );
        assert_eq!(r.label(BASELINE_AUTO), "ringway @abcdef0 (auto)");
        let without: Vec<&str> = with.into_iter().filter(|t| *t != BASELINE_AUTO).collect();
        let r = run_of(&without, &[RINGWAY_AUTO, BASELINE_SPLICE], true);
        assert_eq!(r.perf_targets(), without);
        assert_eq!(
            r.http_targets(),
            vec![RINGWAY_AUTO, BASELINE_SPLICE, "nginx", "direct"]
        );
    }
}

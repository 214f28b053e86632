//! A compare.sh results folder in memory: meta.json, the proxy sessions, the loadgen results by
//! (session, workload), the memory samples; and the lookups the sections and plots share
//! (budgets from the generated confs, repetitions of a target, CPU per unit, target labels).

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
pub const ECHO_WL: [&str; 2] = ["echo64-c100", "echo64-c1000"];
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

    pub fn reps(&self, target: &str, wl: &str) -> Vec<&Value> {
        self.results
            .iter()
            .filter(|((s, w), _)| {
                w == wl
                    && s.starts_with("perf__r")
                    && s.rsplit_once("__").map(|x| x.1) == Some(target)
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// Whether the run measured a baseline binary (meta.json's `baseline`, or its sessions).
    pub fn has_baseline(&self) -> bool {
        self.meta.get("baseline").is_some_and(|b| !b.is_null())
            || self.results.keys().any(|(s, _)| {
                s.starts_with("perf__r")
                    && matches!(
                        s.rsplit_once("__"),
                        Some((_, BASELINE_AUTO | BASELINE_SPLICE | BASELINE_COPY))
                    )
            })
    }

    /// Whether step 3 ran perf target `t`: a `perf__rN__t` session or result, or meta.json's
    /// `params.perf_targets` naming it.
    pub fn ran(&self, t: &str) -> bool {
        let is_t =
            |s: &str| s.starts_with("perf__r") && s.rsplit_once("__").map(|x| x.1) == Some(t);
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

    /// Spread over repetitions of metric `get` for (target, workload).
    pub fn metric(
        &self,
        target: &str,
        wl: &str,
        get: impl Fn(&Value) -> Option<f64>,
    ) -> Option<Spread> {
        Spread::of(self.reps(target, wl).into_iter().filter_map(get).collect())
    }
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
        "ringway-splice" => "ringway (splice)",
        "ringway-copy" => "ringway (copy)",
        "nginx" => "nginx",
        "direct" => "direct (no proxy)",
        other => other,
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
        Run {
            dir: PathBuf::from("/nonexistent"),
            meta: if baseline {
                json!({"baseline": {"commit": "abcdef0"}})
            } else {
                json!({})
            },
            sessions: BTreeMap::new(),
            results,
            mem: BTreeMap::new(),
        }
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

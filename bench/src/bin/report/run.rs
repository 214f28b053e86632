//! A compare.sh results folder in memory: meta.json, the proxy sessions, the loadgen results by
//! (session, workload), the memory samples; and the lookups the sections and plots share
//! (budgets from the generated confs, repetitions of a target, CPU per unit, target labels).

use ringway_bench::json::{self, num, text};
use ringway_bench::stats::Spread;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const PERF_TARGETS: [&str; 4] = ["ringway-splice", "ringway-copy", "nginx", "direct"];
pub const ECHO_WL: [&str; 2] = ["echo64-c100", "echo64-c1000"];
pub const BULK_WL: [&str; 2] = ["bulk1m-c1", "bulk1m-c10"];
/// Targets of the HTTP workloads (`http-c<conns>`).
pub const HTTP_TARGETS: [&str; 3] = ["ringway-splice", "nginx", "direct"];
/// The baseline binary's sessions (`compare.sh --baseline DIR`), each next to its current twin.
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
                        Some((_, BASELINE_SPLICE | BASELINE_COPY))
                    )
            })
    }

    /// The echo and bulk targets in table order: with a baseline, each baseline mode follows
    /// the current build's.
    pub fn perf_targets(&self) -> Vec<&'static str> {
        if self.has_baseline() {
            vec![
                "ringway-splice",
                BASELINE_SPLICE,
                "ringway-copy",
                BASELINE_COPY,
                "nginx",
                "direct",
            ]
        } else {
            PERF_TARGETS.to_vec()
        }
    }

    /// The HTTP targets in table order (the baseline's splice session after ringway's).
    pub fn http_targets(&self) -> Vec<&'static str> {
        if self.has_baseline() {
            vec!["ringway-splice", BASELINE_SPLICE, "nginx", "direct"]
        } else {
            HTTP_TARGETS.to_vec()
        }
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
        "ringway-splice" => "ringway (splice)",
        "ringway-copy" => "ringway (copy)",
        "nginx" => "nginx",
        "direct" => "direct (no proxy)",
        other => other,
    }
}

//! One proxy's ceiling run in memory (session facts, loadgen result, 1-second memory samples,
//! its log) and the figures drawn from it: before/held memory, tunnels connected at a time,
//! ringway's own tunnel counts.

use ringway_bench::json::{self, num};
use serde_json::Value;
use std::path::Path;

const PROXIES: [&str; 2] = ["ringway", "nginx"];

/// One 1-second sample (see sample_box in scripts/lib/ceiling.sh).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub t_ms: f64,
    pub rss_kb: f64,
    pub anon_kb: f64,
    pub procs: f64,
    pub free_kb: f64,
    pub slab_kb: f64,
    pub sunreclaim_kb: f64,
    pub tcp_inuse: f64,
}

pub struct Proxy {
    pub name: &'static str,
    pub session: Option<Value>,
    pub result: Option<Value>,
    pub mem: Vec<Sample>,
    pub log: String,
}

fn read_mem(p: &Path) -> Vec<Sample> {
    let Ok(text) = std::fs::read_to_string(p) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split('\t')
                .map(|x| x.trim().parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 8).then(|| Sample {
                t_ms: v[0],
                rss_kb: v[1],
                anon_kb: v[2],
                procs: v[3],
                free_kb: v[4],
                slab_kb: v[5],
                sunreclaim_kb: v[6],
                tcp_inuse: v[7],
            })
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    Some(xs[xs.len() / 2])
}
fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Before/held figures of one proxy's run.
#[derive(Default)]
pub struct Mem {
    pub before: Sample,
    pub held: Sample,
    pub min_free_kb: f64,
    pub max_rss_kb: f64,
    pub held_from_window: bool,
}

impl Proxy {
    pub fn t0(&self) -> Option<f64> {
        num(self.session.as_ref(), "loadgen_t0_ms")
    }
    pub fn ok(&self) -> Option<f64> {
        num(self.result.as_ref(), "ok")
    }

    pub fn mem_stats(&self) -> Option<Mem> {
        let t0 = self.t0()?;
        let pick = |sel: &dyn Fn(&Sample) -> bool| -> Vec<Sample> {
            self.mem.iter().filter(|s| sel(s)).copied().collect()
        };
        let before = pick(&|s| s.t_ms < t0);
        if before.is_empty() {
            return None;
        }
        let avg = |v: &[Sample], g: fn(&Sample) -> f64| {
            mean(&v.iter().map(g).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let b = Sample {
            t_ms: t0,
            rss_kb: avg(&before, |s| s.rss_kb),
            anon_kb: avg(&before, |s| s.anon_kb),
            procs: avg(&before, |s| s.procs),
            free_kb: avg(&before, |s| s.free_kb),
            slab_kb: avg(&before, |s| s.slab_kb),
            sunreclaim_kb: avg(&before, |s| s.sunreclaim_kb),
            tcp_inuse: avg(&before, |s| s.tcp_inuse),
        };
        let during = pick(&|s| s.t_ms >= t0);
        let min_free_kb = during
            .iter()
            .map(|s| s.free_kb)
            .fold(f64::INFINITY, f64::min);
        let max_rss_kb = during.iter().map(|s| s.rss_kb).fold(0.0, f64::max);
        // The hold window: from 2 s after the ramp settled to the end of the hold.
        let ramp = num(self.result.as_ref(), "ramp_s");
        let hold = num(self.result.as_ref(), "params.hold")
            .or_else(|| num(self.result.as_ref(), "params.hold_s"));
        let window: Vec<Sample> = match (ramp, hold) {
            (Some(r), Some(h)) if h >= 3.0 => {
                let lo = t0 + (r + 2.0) * 1000.0;
                let hi = t0 + (r + h) * 1000.0;
                pick(&|s| s.t_ms >= lo && s.t_ms <= hi)
            }
            _ => Vec::new(),
        };
        let (held, from_window) = if window.len() >= 2 {
            let m = |g: fn(&Sample) -> f64| median(window.iter().map(g).collect()).unwrap_or(0.0);
            (
                Sample {
                    t_ms: 0.0,
                    rss_kb: m(|s| s.rss_kb),
                    anon_kb: m(|s| s.anon_kb),
                    procs: m(|s| s.procs),
                    free_kb: m(|s| s.free_kb),
                    slab_kb: m(|s| s.slab_kb),
                    sunreclaim_kb: m(|s| s.sunreclaim_kb),
                    tcp_inuse: m(|s| s.tcp_inuse),
                },
                true,
            )
        } else {
            // Cut short: the sample with the most TCP sockets.
            let s = during
                .iter()
                .copied()
                .max_by(|a, b| a.tcp_inuse.total_cmp(&b.tcp_inuse))?;
            (s, false)
        };
        Some(Mem {
            before: b,
            held,
            min_free_kb,
            max_rss_kb,
            held_from_window: from_window,
        })
    }

    /// Tunnels connected (loadgen's series) at epoch ms `t`, linear between samples.
    pub fn connected_at(&self, t: f64) -> Option<f64> {
        let t0 = self.t0()?;
        let series = self.result.as_ref()?.get("series")?.as_array()?;
        let pts: Vec<(f64, f64)> = series
            .iter()
            .filter_map(|p| Some((t0 + p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
            .collect();
        if pts.is_empty() {
            return None;
        }
        if t <= pts[0].0 {
            return Some(if t < t0 { 0.0 } else { pts[0].1 });
        }
        for w in pts.windows(2) {
            if t >= w[0].0 && t <= w[1].0 {
                let span = (w[1].0 - w[0].0).max(1.0);
                return Some(w[0].1 + (w[1].1 - w[0].1) * (t - w[0].0) / span);
            }
        }
        None // after the last sample: the clients are closing
    }

    /// Whether the SIGUSR1 stats were taken inside the hold (after the ramp, before the probe).
    pub fn usr1_in_hold(&self) -> bool {
        let (Some(t0), Some(u)) = (self.t0(), num(self.session.as_ref(), "usr1_ms")) else {
            return false;
        };
        let r = &self.result;
        match (num(r.as_ref(), "ramp_s"), num(r.as_ref(), "params.hold")) {
            (Some(ramp), Some(hold)) => u >= t0 + ramp * 1000.0 && u <= t0 + (ramp + hold) * 1000.0,
            _ => false,
        }
    }

    /// ringway's own stats blocks: sum of `tunnels N` per block of `stats: worker` lines.
    pub fn ringway_tunnel_counts(&self) -> Vec<u64> {
        let mut blocks = Vec::new();
        let mut cur: Option<u64> = None;
        for l in self.log.lines() {
            if let Some(rest) = l.strip_prefix("stats: worker ") {
                let n = rest
                    .split(", ")
                    .find_map(|p| p.strip_prefix("tunnels ")?.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                *cur.get_or_insert(0) += n;
            } else if let Some(c) = cur.take() {
                blocks.push(c);
            }
        }
        if let Some(c) = cur {
            blocks.push(c);
        }
        blocks
    }
}

pub fn load(dir: &Path) -> Vec<Proxy> {
    PROXIES
        .iter()
        .map(|&name| {
            let log = match name {
                "ringway" => {
                    std::fs::read_to_string(dir.join("logs/ringway.err")).unwrap_or_default()
                }
                _ => std::fs::read_to_string(dir.join("logs/nginx.error.log")).unwrap_or_default(),
            };
            Proxy {
                name,
                session: json::read(&dir.join(format!("raw/{name}.session.json"))).ok(),
                result: json::read(&dir.join(format!("raw/{name}.loadgen.json"))).ok(),
                mem: read_mem(&dir.join(format!("raw/{name}.mem.tsv"))),
                log,
            }
        })
        .filter(|p| p.session.is_some() || p.result.is_some())
        .collect()
}

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = 1024.0;

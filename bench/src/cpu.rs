//! CPU time of watched processes (utime + stime from /proc/PID/stat, all threads, plus their
//! descendants) and of this process (getrusage), sampled at the start and end of a measurement.

use std::fs;

use serde::Serialize;

/// Clock ticks per second for /proc times.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `(comm, utime + stime in ticks)` of a process (all its threads), or None if it is gone.
pub fn proc_ticks(pid: u32) -> Option<(String, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    // Fields after ")" start at field 3 (state); utime and stime are fields 14 and 15.
    let mut f = s[close + 1..].split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// `pid` and all its descendants (via /proc/PID/task/TID/children).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let path = t.path().join("children");
                if let Ok(c) = fs::read_to_string(path) {
                    for k in c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()) {
                        if !out.contains(&k) {
                            out.push(k);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// This process's user + system CPU seconds (all threads).
pub fn own_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into `r`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// A watched process at the start: pid, comm, its ticks, and (pid, ticks) of its whole tree.
type Watched = (u32, String, u64, Vec<(u32, u64)>);

/// Start-of-measurement snapshot of the watched processes and of this process.
#[derive(Debug)]
pub struct CpuWatch {
    start: Vec<Watched>,
    own_start: f64,
}

/// One watched process's CPU over the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct WatchedCpu {
    /// The watched pid.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// CPU seconds of the process itself (all threads).
    pub cpu_s: f64,
    /// CPU seconds of the process and its descendants (e.g. an nginx master and its workers).
    pub tree_cpu_s: f64,
    /// How many processes the tree held at the start.
    pub tree_procs: usize,
}

impl CpuWatch {
    /// Snapshots `pids` (each with its descendants) and this process. Missing pids are an error.
    pub fn start(pids: &[u32]) -> Result<Self, String> {
        let mut start = Vec::new();
        for &pid in pids {
            let (comm, t) =
                proc_ticks(pid).ok_or_else(|| format!("--watch-pid {pid}: no such process"))?;
            let tree = process_tree(pid)
                .into_iter()
                .filter_map(|p| proc_ticks(p).map(|(_, t)| (p, t)))
                .collect();
            start.push((pid, comm, t, tree));
        }
        Ok(CpuWatch {
            start,
            own_start: own_cpu_s(),
        })
    }

    /// CPU used since [`CpuWatch::start`]: per watched process, and this process's own seconds.
    pub fn finish(&self) -> (Vec<WatchedCpu>, f64) {
        let tck = clk_tck();
        let own = own_cpu_s() - self.own_start;
        let watched = self
            .start
            .iter()
            .map(|(pid, comm, t0, tree)| {
                let t1 = proc_ticks(*pid).map(|x| x.1).unwrap_or(*t0);
                let tree_ticks: u64 = tree
                    .iter()
                    .map(|(p, s)| proc_ticks(*p).map(|x| x.1).unwrap_or(*s).saturating_sub(*s))
                    .sum();
                WatchedCpu {
                    pid: *pid,
                    comm: comm.clone(),
                    cpu_s: t1.saturating_sub(*t0) as f64 / tck,
                    tree_cpu_s: tree_ticks as f64 / tck,
                    tree_procs: tree.len(),
                }
            })
            .collect();
        (watched, own)
    }
}

impl WatchedCpu {
    /// The JSON object loadgen reports for a watched process, with its CPU per unit of
    /// work under `{unit}` and `tree_{unit}` (e.g. `cpu_us_per_msg`), `per` turning CPU
    /// seconds into that unit.
    pub fn to_json(&self, unit: &str, per: impl Fn(f64) -> f64) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid, "comm": self.comm, "cpu_s": r3(self.cpu_s), "tree_cpu_s": r3(self.tree_cpu_s),
            "tree_procs": self.tree_procs,
            format!("cpu_{unit}"): per(self.cpu_s),
            format!("tree_cpu_{unit}"): per(self.tree_cpu_s),
        })
    }
}

/// Rounds to 3 decimals for readable JSON.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat() {
        let (comm, _) = proc_ticks(std::process::id()).unwrap();
        assert!(!comm.is_empty());
        assert!(process_tree(std::process::id()).contains(&std::process::id()));
        let w = CpuWatch::start(&[std::process::id()]).unwrap();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (v, own) = w.finish();
        assert_eq!(v.len(), 1);
        assert!(own > 0.0);
    }
}

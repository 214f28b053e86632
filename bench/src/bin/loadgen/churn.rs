//! `loadgen churn`: `--conns` workers each run cycles of connect, upgrade, read the banner, echo
//! one message, close. Reports new tunnels per second, failures by kind, and setup (connect +
//! upgrade + banner: the handshake) and whole-cycle latency percentiles.
//!
//! Two ways to bound a run: `--cycles K` per worker (stopped early by `--max-duration`), or
//! `--duration D` (with `--warmup W`): the workers cycle until W + D seconds have passed and only
//! the measured window counts (tunnels completed in it, handshakes completed in it, failures in
//! it), with the CPU of the `--watch-pid` processes over that window per new tunnel.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::Failure;
use ringway_bench::cpu::CpuWatch;
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use ringway_bench::ws;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{self, r3, RunError, TargetArgs};

/// Cycles per worker when neither `--cycles` nor `--duration` is given.
const DEFAULT_CYCLES: u64 = 100;

/// `loadgen churn` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent workers.
    #[arg(long, default_value_t = 10)]
    pub conns: u64,
    /// Cycles per worker (default 100; not with --duration).
    #[arg(long, conflicts_with = "duration")]
    pub cycles: Option<u64>,
    /// Payload bytes of the one echoed message.
    #[arg(long, default_value_t = 64)]
    pub size: u64,
    /// Stop starting new cycles after this many seconds (with --cycles).
    #[arg(long, default_value_t = 300.0)]
    pub max_duration: f64,
    /// Seconds measured: cycle without a cycle limit for --warmup + --duration seconds and
    /// count only the measured window.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of churn before the measured window (with --duration).
    #[arg(long, default_value_t = 0.0, requires = "duration")]
    pub warmup: f64,
    /// Processes whose CPU time (with their descendants) over the measured window is reported
    /// per new tunnel (with --duration).
    #[arg(long = "watch-pid", num_args = 1.., requires = "duration")]
    pub watch_pid: Vec<u32>,
}

/// What counts: events inside [start, end) (timed runs), or everything (`--cycles` runs).
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    timed: bool,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        !self.timed || (t >= self.start && t < self.end)
    }
}

#[derive(Default)]
struct Shared {
    ok: Cell<u64>,
    next_index: Cell<u64>,
    failed: RefCell<FailureCounts>,
    failed_in_setup: Cell<u64>,
    /// Failures before or after the measured window (timed runs).
    failed_outside: Cell<u64>,
    distribution: RefCell<BTreeMap<String, u64>>,
}

impl Shared {
    fn fail(&self, f: &Failure, w: &Window, in_setup: bool) {
        if !w.contains(Instant::now()) {
            self.failed_outside.set(self.failed_outside.get() + 1);
            return;
        }
        self.failed.borrow_mut().add(f);
        if in_setup {
            self.failed_in_setup.set(self.failed_in_setup.get() + 1);
        }
    }
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    let max_duration = common::secs("--max-duration", a.max_duration, false)?;
    let timed = match a.duration {
        Some(d) => Some((
            common::secs("--warmup", a.warmup, true)?,
            common::secs("--duration", d, false)?,
        )),
        None => None,
    };
    if a.conns == 0 || a.conns > 10_000 {
        return Err(RunError::Usage("--conns must be 1..=10000".into()));
    }
    let cycles = match (timed, a.cycles) {
        (Some(_), _) => u64::MAX,
        (None, Some(c)) if c == 0 || c > 10_000_000 => {
            return Err(RunError::Usage("--cycles must be 1..=10000000".into()));
        }
        (None, c) => c.unwrap_or(DEFAULT_CYCLES),
    };
    if a.size > 1 << 20 {
        return Err(RunError::Usage("--size is at most 1 MiB".into()));
    }
    CpuWatch::start(&a.watch_pid).map_err(RunError::Usage)?;
    let show = common::show_progress(false);

    common::block_on(async move {
        let payload: Vec<u8> = (0..a.size).map(|i| i as u8).collect();
        let mask = common::mask();
        let frame = Rc::new(ws::build_frame(ws::OP_BINARY, &payload, Some(mask)));
        let sh = Rc::new(Shared::default());
        let setup_h = Rc::new(RefCell::new(stats::new_histogram()));
        let cycle_h = Rc::new(RefCell::new(stats::new_histogram()));
        let t_start = Instant::now();
        let win = match timed {
            Some((warmup, duration)) => Window {
                start: t_start + warmup,
                end: t_start + warmup + duration,
                timed: true,
            },
            None => Window {
                start: t_start,
                end: t_start + max_duration,
                timed: false,
            },
        };
        let buf_cap = (a.size as usize + ws::MAX_HEADER).clamp(1024, 64 * 1024);
        let mut handles = Vec::new();
        for _ in 0..a.conns {
            let (sh, setup_h, cycle_h, frame, t) = (
                sh.clone(),
                setup_h.clone(),
                cycle_h.clone(),
                frame.clone(),
                t.clone(),
            );
            let size = a.size;
            handles.push(tokio::task::spawn_local(async move {
                for _ in 0..cycles {
                    if Instant::now() >= win.end {
                        return;
                    }
                    let i = sh.next_index.get();
                    sh.next_index.set(i + 1);
                    let t0 = Instant::now();
                    let (mut c, banner) = match t.open(i, buf_cap).await {
                        Ok(x) => x,
                        Err(f) => {
                            sh.fail(&f, &win, true);
                            continue;
                        }
                    };
                    let t1 = Instant::now();
                    if win.contains(t1) {
                        let _ = setup_h
                            .borrow_mut()
                            .record((t1 - t0).as_micros().max(1) as u64);
                        *sh.distribution
                            .borrow_mut()
                            .entry(stats::banner_key(&banner))
                            .or_default() += 1;
                    }
                    let f = match tokio::time::timeout(t.timeout, c.echo(&frame, size)).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(Failure::from(e)),
                        Err(_) => Some(Failure::Timeout),
                    };
                    if let Some(f) = f {
                        sh.fail(&f, &win, false);
                        continue;
                    }
                    let _ = tokio::time::timeout(t.timeout, c.close(mask)).await;
                    let t2 = Instant::now();
                    if win.contains(t2) {
                        let _ = cycle_h
                            .borrow_mut()
                            .record((t2 - t0).as_micros().max(1) as u64);
                        sh.ok.set(sh.ok.get() + 1);
                    }
                }
            }));
        }
        if show {
            let sh2 = sh.clone();
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let el = t_start.elapsed().as_secs_f64();
                    common::progress(&format!(
                        "[churn] {el:.1}s ok={} failed={} ({:.0}/s)",
                        sh2.ok.get(),
                        sh2.failed.borrow().total(),
                        sh2.ok.get() as f64 / el
                    ));
                }
            });
        }
        // Timed runs: the CPU of the watched processes over the measured window, which ends
        // when the window does (cycles still in flight then finish uncounted).
        let mut watched = None;
        let mut elapsed = None;
        if timed.is_some() {
            tokio::time::sleep_until(win.start.into()).await;
            let watch = CpuWatch::start(&a.watch_pid)
                .unwrap_or_else(|_| CpuWatch::start(&[]).expect("no pids"));
            let w0 = Instant::now();
            tokio::time::sleep_until(win.end.into()).await;
            elapsed = Some(w0.elapsed().as_secs_f64());
            watched = Some(watch.finish());
        }
        // Cycles in flight at the end of a timed window get a reply timeout to finish; a
        // `--cycles` run waits for every worker's last cycle.
        let mut stalled = 0;
        if timed.is_some() {
            stalled = common::join_all_within(handles, t.timeout + Duration::from_secs(1)).await;
        } else {
            for h in handles {
                let _ = h.await;
            }
        }
        if show {
            common::progress_done();
        }
        let elapsed = elapsed.unwrap_or_else(|| t_start.elapsed().as_secs_f64());
        let ok = sh.ok.get();
        let failed = sh.failed.take();
        let setup = Percentiles::of(&setup_h.borrow(), 1.0);
        let cycle = Percentiles::of(&cycle_h.borrow(), 1.0);
        let per_tunnel = |cpu: f64| {
            if ok > 0 {
                r3(cpu * 1e6 / ok as f64)
            } else {
                0.0
            }
        };
        eprintln!(
            "churn: {ok} ok, {} failed ({} outside the window) of {} attempted in {elapsed:.2}s = {:.0} tunnels/s; setup µs p50 {} p99 {} p99.9 {} max {}",
            failed.total(),
            sh.failed_outside.get(),
            sh.next_index.get(),
            ok as f64 / elapsed,
            setup.p50,
            setup.p99,
            setup.p999,
            setup.max
        );
        let mut out = json!({
            "subcommand": "churn",
            "params": a,
            "attempted": sh.next_index.get(),
            "ok": ok,
            "failed": failed,
            "failed_in_setup": sh.failed_in_setup.get(),
            "stopped_by_max_duration": !win.timed && sh.next_index.get() < a.conns * cycles,
            "elapsed_s": r3(elapsed),
            "tunnels_per_s": r3(ok as f64 / elapsed),
            "setup_us": setup,
            "cycle_us": cycle,
            "distribution": sh.distribution.take(),
        });
        if let Some((w, own)) = watched {
            for x in &w {
                eprintln!(
                    "  pid {} ({}): {:.2} µs per tunnel ({:.2} with descendants)",
                    x.pid,
                    x.comm,
                    per_tunnel(x.cpu_s),
                    per_tunnel(x.tree_cpu_s)
                );
            }
            let w: Vec<Value> = w
                .iter()
                .map(|x| x.to_json("us_per_tunnel", per_tunnel))
                .collect();
            out["timed"] = json!(true);
            out["failed_outside_window"] = json!(sh.failed_outside.get());
            out["stalled"] = json!(stalled);
            out["watched"] = json!(w);
            out["loadgen_cpu_s"] = json!(r3(own));
            out["loadgen_cpu_us_per_tunnel"] = json!(per_tunnel(own));
        }
        out
    })
}

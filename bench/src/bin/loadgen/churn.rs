//! `loadgen churn`: `--conns` workers each run `--cycles` cycles of connect, upgrade, read the
//! banner, echo one message, close. Reports new tunnels per second, failures by kind, and setup
//! (connect + upgrade + banner) and whole-cycle latency percentiles.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::Failure;
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use ringway_bench::ws;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{self, r3, RunError, TargetArgs};

/// `loadgen churn` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent workers.
    #[arg(long, default_value_t = 10)]
    pub conns: u64,
    /// Cycles per worker.
    #[arg(long, default_value_t = 100)]
    pub cycles: u64,
    /// Payload bytes of the one echoed message.
    #[arg(long, default_value_t = 64)]
    pub size: u64,
    /// Stop starting new cycles after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub max_duration: f64,
}

#[derive(Default)]
struct Shared {
    ok: Cell<u64>,
    next_index: Cell<u64>,
    failed: RefCell<FailureCounts>,
    failed_in_setup: Cell<u64>,
    distribution: RefCell<BTreeMap<String, u64>>,
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    let max_duration = common::secs("--max-duration", a.max_duration, false)?;
    if a.conns == 0 || a.conns > 10_000 {
        return Err(RunError::Usage("--conns must be 1..=10000".into()));
    }
    if a.cycles == 0 || a.cycles > 10_000_000 {
        return Err(RunError::Usage("--cycles must be 1..=10000000".into()));
    }
    if a.size > 1 << 20 {
        return Err(RunError::Usage("--size is at most 1 MiB".into()));
    }
    let show = common::show_progress(false);

    common::block_on(async move {
        let payload: Vec<u8> = (0..a.size).map(|i| i as u8).collect();
        let mask = common::mask();
        let frame = Rc::new(ws::build_frame(ws::OP_BINARY, &payload, Some(mask)));
        let sh = Rc::new(Shared::default());
        let setup_h = Rc::new(RefCell::new(stats::new_histogram()));
        let cycle_h = Rc::new(RefCell::new(stats::new_histogram()));
        let t_start = Instant::now();
        let deadline = t_start + max_duration;
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
            let (cycles, size) = (a.cycles, a.size);
            handles.push(tokio::task::spawn_local(async move {
                for _ in 0..cycles {
                    if Instant::now() >= deadline {
                        return;
                    }
                    let i = sh.next_index.get();
                    sh.next_index.set(i + 1);
                    let t0 = Instant::now();
                    let (mut c, banner) = match t.open(i, buf_cap).await {
                        Ok(x) => x,
                        Err(f) => {
                            sh.failed.borrow_mut().add(&f);
                            sh.failed_in_setup.set(sh.failed_in_setup.get() + 1);
                            continue;
                        }
                    };
                    let _ = setup_h
                        .borrow_mut()
                        .record(t0.elapsed().as_micros().max(1) as u64);
                    *sh.distribution
                        .borrow_mut()
                        .entry(stats::banner_key(&banner))
                        .or_default() += 1;
                    match tokio::time::timeout(t.timeout, c.echo(&frame, size)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            sh.failed.borrow_mut().add(&Failure::from(e));
                            continue;
                        }
                        Err(_) => {
                            sh.failed.borrow_mut().add(&Failure::Timeout);
                            continue;
                        }
                    }
                    let _ = tokio::time::timeout(t.timeout, c.close(mask)).await;
                    let _ = cycle_h
                        .borrow_mut()
                        .record(t0.elapsed().as_micros().max(1) as u64);
                    sh.ok.set(sh.ok.get() + 1);
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
        for h in handles {
            let _ = h.await;
        }
        if show {
            common::progress_done();
        }
        let elapsed = t_start.elapsed().as_secs_f64();
        let ok = sh.ok.get();
        let failed = sh.failed.take();
        let setup = Percentiles::of(&setup_h.borrow(), 1.0);
        let cycle = Percentiles::of(&cycle_h.borrow(), 1.0);
        eprintln!(
            "churn: {ok} ok, {} failed of {} attempted in {elapsed:.2}s = {:.0} tunnels/s; setup µs p50 {} p99 {} max {}",
            failed.total(),
            sh.next_index.get(),
            ok as f64 / elapsed,
            setup.p50,
            setup.p99,
            setup.max
        );
        json!({
            "subcommand": "churn",
            "params": a,
            "attempted": sh.next_index.get(),
            "ok": ok,
            "failed": failed,
            "failed_in_setup": sh.failed_in_setup.get(),
            "stopped_by_max_duration": sh.next_index.get() < a.conns * a.cycles,
            "elapsed_s": r3(elapsed),
            "tunnels_per_s": r3(ok as f64 / elapsed),
            "setup_us": setup,
            "cycle_us": cycle,
            "distribution": sh.distribution.take(),
        })
    })
}

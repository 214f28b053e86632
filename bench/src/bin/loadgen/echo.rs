//! `loadgen echo`: closed-loop echo. Each connection sends one binary message of `--size` bytes,
//! waits for its echo and repeats. Reports msgs/s, latency percentiles (µs) and CPU per message of
//! the watched processes and of loadgen itself.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use ringway_bench::client::Failure;
use ringway_bench::cpu::CpuWatch;
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use ringway_bench::ws;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{self, r3, RunError, TargetArgs};

/// `loadgen echo` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100)]
    pub conns: u64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub size: u64,
    /// Processes whose CPU time (with their descendants) is reported per message.
    #[arg(long = "watch-pid", num_args = 1..)]
    pub watch_pid: Vec<u32>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    let duration = common::secs("--duration", a.duration, false)?;
    let warmup = common::secs("--warmup", a.warmup, true)?;
    if a.conns == 0 || a.conns > 1_000_000 {
        return Err(RunError::Usage("--conns must be 1..=1000000".into()));
    }
    if a.size > 64 << 20 {
        return Err(RunError::Usage("--size is at most 64 MiB".into()));
    }
    CpuWatch::start(&a.watch_pid).map_err(RunError::Usage)?;
    let show = common::show_progress(false);

    common::block_on(async move {
        let buf_cap = (a.size as usize + ws::MAX_HEADER).clamp(4096, 64 * 1024);
        let opened = common::open_many(&t, a.conns, buf_cap).await;
        let payload: Vec<u8> = (0..a.size).map(|i| i as u8).collect();
        let frame = Rc::new(ws::build_frame(
            ws::OP_BINARY,
            &payload,
            Some(common::mask()),
        ));
        let recording = Rc::new(Cell::new(false));
        let stop = Rc::new(Cell::new(false));
        let msgs = Rc::new(Cell::new(0u64));
        let total = Rc::new(Cell::new(0u64));
        let hist = Rc::new(RefCell::new(stats::new_histogram()));
        let errors = Rc::new(RefCell::new(FailureCounts::default()));
        let connected = opened.clients.len() as u64;
        let size = a.size;
        let mut handles = Vec::new();
        for mut c in opened.clients {
            let (frame, recording, stop, msgs, total, hist, errors) = (
                frame.clone(),
                recording.clone(),
                stop.clone(),
                msgs.clone(),
                total.clone(),
                hist.clone(),
                errors.clone(),
            );
            handles.push(tokio::task::spawn_local(async move {
                while !stop.get() {
                    let t0 = Instant::now();
                    if let Err(e) = c.echo(&frame, size).await {
                        errors.borrow_mut().add(&Failure::from(e));
                        return;
                    }
                    total.set(total.get() + 1);
                    if recording.get() {
                        let _ = hist
                            .borrow_mut()
                            .record(t0.elapsed().as_nanos().max(1) as u64);
                        msgs.set(msgs.get() + 1);
                    }
                }
            }));
        }
        tokio::time::sleep(warmup).await;
        let watch = CpuWatch::start(&a.watch_pid)
            .unwrap_or_else(|_| CpuWatch::start(&[]).expect("no pids"));
        recording.set(true);
        let t_start = Instant::now();
        common::measure_window(duration, show, |el| {
            format!(
                "[echo] {el:.1}s msgs={} ({:.0}/s)",
                msgs.get(),
                msgs.get() as f64 / el.max(1e-9)
            )
        })
        .await;
        recording.set(false);
        let elapsed = t_start.elapsed().as_secs_f64();
        let (watched, own) = watch.finish();
        stop.set(true);
        let stalled = common::join_all_within(handles, t.timeout).await;

        let n = msgs.get();
        let per_msg = |cpu: f64| if n > 0 { r3(cpu * 1e6 / n as f64) } else { 0.0 };
        let watched_json: Vec<Value> = watched
            .iter()
            .map(|w| w.to_json("us_per_msg", per_msg))
            .collect();
        let lat = Percentiles::of(&hist.borrow(), 1000.0);
        let errors = errors.take();
        eprintln!(
            "echo: {connected}/{} connected, {n} msgs in {elapsed:.2}s = {:.0} msgs/s; latency µs p50 {} p99 {} p99.9 {} max {}; errors {}; loadgen CPU {:.2} µs/msg",
            a.conns,
            n as f64 / elapsed,
            lat.p50,
            lat.p99,
            lat.p999,
            lat.max,
            errors.total(),
            per_msg(own)
        );
        for w in &watched {
            eprintln!(
                "  pid {} ({}): {:.2} µs/msg ({:.2} with descendants)",
                w.pid,
                w.comm,
                per_msg(w.cpu_s),
                per_msg(w.tree_cpu_s)
            );
        }
        json!({
            "subcommand": "echo",
            "params": a,
            "connected": connected,
            "failed": opened.failed,
            "distribution": opened.distribution,
            "setup_ms": opened.setup_ms,
            "msgs": n,
            "msgs_total_incl_warmup": total.get(),
            "elapsed_s": r3(elapsed),
            "msgs_per_s": r3(n as f64 / elapsed),
            "latency_us": lat,
            "errors": errors,
            "stalled": stalled,
            "watched": watched_json,
            "loadgen_cpu_s": r3(own),
            "loadgen_cpu_us_per_msg": per_msg(own),
        })
    })
}

//! `loadgen ceiling`: how many WebSocket connections a target holds. Ramps `--conns` connections
//! at `--rate` per second, holds them `--hold` seconds, then probes each with one echo, 256 in
//! flight per process at a time, each probe's timeout starting when it is sent.
//!
//! With `--procs P` the parent re-executes itself P times (one process holds at most ~20,000 fds
//! here). Child `c` takes the connections whose ramp index `i` has `i % P == c` at `rate / P`, so
//! the union keeps the global ramp order and source-address rotation. Children report `progress`
//! lines, then `ramped`, wait for `probe` on stdin (so every child probes after the same global
//! hold), and end with their partial result as one JSON line, which the parent merges.
//!
//! SIGUSR1 stops the ramp where it is (the parent passes it on to its children): the
//! connections started so far settle, are held and probed as usual, and the result says
//! `ramp_stopped`. ceiling.sh sends it when the box runs low on memory, so a run that
//! cannot reach `--conns` still measures the highest count it reached.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringway_bench::client::Failure;
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use ringway_bench::tls::Tally;
use ringway_bench::ws;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{self, r3, RunError, Target, TargetArgs};

/// Payload of the probe message.
const PROBE: &[u8] = b"probe";
/// Probes in flight at once per process. All of them at once (616,000 at the 700,000 run)
/// queued behind each other on the box's CPUs until a quarter timed out while the tunnels
/// were fine; with a bounded window each probe's timeout starts when it is sent, so a
/// timeout means that tunnel did not answer, not that the box was busy with the others.
const PROBES_IN_FLIGHT: usize = 256;
/// The longest the probe phase runs.
const PROBE_PHASE_MAX: Duration = Duration::from_secs(900);
/// At most this many time-series samples are kept per process.
const MAX_SAMPLES: usize = 100_000;

/// `loadgen ceiling` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Connections to open.
    #[arg(long)]
    pub conns: u64,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to hold all connections after the ramp settles, before probing.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Processes to spread the connections over (each has its own fd limit).
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Interval of the (t_ms, connected, failed) time series.
    #[arg(long, default_value_t = 100)]
    pub sample_ms: u64,
    /// Internal: this process's share when started by a parent loadgen.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub child_index: Option<u32>,
}

/// One process's results, merged by the parent.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Partial {
    attempted: u64,
    ok: u64,
    failed: FailureCounts,
    first_failure: Option<u64>,
    first_failure_kind: Option<String>,
    distribution: BTreeMap<String, u64>,
    dropped_during_ramp: u64,
    dropped_during_hold: u64,
    dropped_kinds: FailureCounts,
    alive: u64,
    probe_failed: FailureCounts,
    /// Held connections whose probe was never sent: the probe phase ended first.
    #[serde(default)]
    probe_unsent: u64,
    setup_us: Vec<(u64, u64)>,
    series: Vec<(u64, u64, u64)>,
    ramp_s: f64,
    /// SIGUSR1 stopped the ramp before `--conns` were started.
    #[serde(default)]
    ramp_stopped: bool,
    /// What this process's TLS handshakes negotiated (`--tls`).
    #[serde(default)]
    tls: Tally,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Hold,
    Probe,
}

#[derive(Default)]
struct State {
    connected: Cell<u64>,
    settled: Cell<u64>,
    failed_n: Cell<u64>,
    done: Cell<u64>,
    failed: RefCell<FailureCounts>,
    first_failure: Cell<Option<u64>>,
    first_failure_kind: RefCell<Option<String>>,
    distribution: RefCell<BTreeMap<String, u64>>,
    dropped_ramp: Cell<u64>,
    dropped_hold: Cell<u64>,
    dropped_kinds: RefCell<FailureCounts>,
    alive: Cell<u64>,
    probe_failed: RefCell<FailureCounts>,
    hold_started: Cell<bool>,
    /// The window of probes in flight ([`PROBES_IN_FLIGHT`]).
    probe_window: ProbeWindow,
    /// Probes sent (a permit taken).
    probes_sent: Cell<u64>,
}

/// A semaphore of [`PROBES_IN_FLIGHT`] permits (Default for [`State`]).
struct ProbeWindow(tokio::sync::Semaphore);

impl Default for ProbeWindow {
    fn default() -> Self {
        ProbeWindow(tokio::sync::Semaphore::new(PROBES_IN_FLIGHT))
    }
}

fn kind_name(f: &Failure) -> String {
    match f {
        Failure::Refused => "refused".into(),
        Failure::Reset => "reset".into(),
        Failure::Eof => "eof".into(),
        Failure::Timeout => "timeout".into(),
        Failure::Http(s) => format!("http_{s}"),
        Failure::Other(m) => format!("other: {m}"),
    }
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    common::secs("--hold", a.hold, true)?;
    if a.conns == 0 || a.conns > 10_000_000 {
        return Err(RunError::Usage("--conns must be 1..=10000000".into()));
    }
    if !(a.rate.is_finite() && a.rate > 0.0) {
        return Err(RunError::Usage("--rate must be positive".into()));
    }
    if a.procs == 0 || a.procs > 256 {
        return Err(RunError::Usage("--procs must be 1..=256".into()));
    }
    if a.sample_ms == 0 {
        return Err(RunError::Usage("--sample-ms must be positive".into()));
    }
    if let Some(c) = a.child_index {
        ringway_bench::net::die_with_parent(None);
        let p = run_share(&a, &t, c, true)?;
        return serde_json::to_value(p).map_err(|e| RunError::Internal(e.to_string()));
    }
    let per_proc = a.conns.div_ceil(u64::from(a.procs));
    let nofile = ringway_bench::net::raise_nofile();
    if per_proc + 32 > nofile {
        eprintln!(
            "loadgen: warning: {per_proc} connections per process but RLIMIT_NOFILE is {nofile}; raise --procs"
        );
    }
    let partial = if a.procs == 1 {
        run_share(&a, &t, 0, false)?
    } else {
        run_parent(&a)?
    };
    Ok(report(&a, partial))
}

/// Runs this process's share: connections with ramp index `i % procs == index`.
fn run_share(a: &Args, t: &Target, index: u32, child: bool) -> Result<Partial, RunError> {
    let procs = u64::from(a.procs);
    let index = u64::from(index);
    let planned = (a.conns + procs - 1 - index) / procs;
    let rate = a.rate / procs as f64;
    let hold = Duration::from_secs_f64(a.hold);
    let sample = Duration::from_millis(a.sample_ms);
    let show = common::show_progress(child);

    common::block_on(async move {
        // Registered first, so a SIGUSR1 from here on stops the ramp instead of the process
        // (if it cannot be registered, the ramp runs to the end).
        let mut stop =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
        let mut n = planned;
        let mut ramp_stopped = false;
        let st = Rc::new(State::default());
        let phase = Rc::new(Cell::new(Phase::Ramp));
        let setup_h = Rc::new(RefCell::new(stats::new_histogram()));
        let series = Rc::new(RefCell::new(Vec::new()));
        let (probe_tx, probe_rx) = tokio::sync::watch::channel(false);
        let probe_frame = Rc::new(ws::build_frame(ws::OP_BINARY, PROBE, Some(common::mask())));
        let start = Instant::now();

        // Sampler: (t_ms, connected, failed) until the probe starts; progress for a parent.
        {
            let (st, phase, series) = (st.clone(), phase.clone(), series.clone());
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(sample);
                let mut last_report = Instant::now();
                while phase.get() != Phase::Probe {
                    tick.tick().await;
                    let mut s = series.borrow_mut();
                    if s.len() < MAX_SAMPLES {
                        s.push((
                            start.elapsed().as_millis() as u64,
                            st.connected.get(),
                            st.failed_n.get(),
                        ));
                    }
                    if child && last_report.elapsed() >= Duration::from_millis(500) {
                        last_report = Instant::now();
                        println!("progress {} {}", st.connected.get(), st.failed_n.get());
                    }
                }
            });
        }

        // Ramp: start connection k at k / rate seconds.
        let mut next = 0u64;
        let mut last_progress = Instant::now();
        while next < n {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(n);
            while next < due {
                let global = next * procs + index;
                let (st, phase, setup_h, t, mut rx, pf) = (
                    st.clone(),
                    phase.clone(),
                    setup_h.clone(),
                    t.clone(),
                    probe_rx.clone(),
                    probe_frame.clone(),
                );
                tokio::task::spawn_local(async move {
                    one_conn(global, &st, &phase, &setup_h, &t, &mut rx, &pf).await;
                    st.done.set(st.done.get() + 1);
                });
                next += 1;
            }
            if show && last_progress.elapsed() >= Duration::from_millis(250) {
                last_progress = Instant::now();
                common::progress(&format!(
                    "[ceiling] ramp {next}/{n} started, {} connected, {} failed",
                    st.connected.get(),
                    st.failed_n.get()
                ));
            }
            if next < n {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    _ = stopped(&mut stop) => {
                        n = next;
                        ramp_stopped = true;
                        if show {
                            common::progress(&format!("[ceiling] SIGUSR1: ramp stopped at {n} of {planned}"));
                        }
                    }
                }
            }
        }
        while st.settled.get() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if show && last_progress.elapsed() >= Duration::from_millis(250) {
                last_progress = Instant::now();
                common::progress(&format!(
                    "[ceiling] settling: {} connected, {} failed, {} pending",
                    st.connected.get(),
                    st.failed_n.get(),
                    n - st.settled.get()
                ));
            }
        }
        let ramp_s = start.elapsed().as_secs_f64();
        phase.set(Phase::Hold);
        st.hold_started.set(true);
        if child {
            println!("ramped");
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            let _ = lines.next_line().await;
        } else {
            if show {
                common::progress(&format!(
                    "[ceiling] holding {} connections for {:.1}s",
                    st.connected.get(),
                    hold.as_secs_f64()
                ));
            }
            tokio::time::sleep(hold).await;
        }
        phase.set(Phase::Probe);
        let _ = probe_tx.send(true);
        // Probes go out PROBES_IN_FLIGHT at a time, each with its own timeout, so they keep
        // finishing however slowly the box answers: wait while they do (a box short of
        // memory answered 616,000 probes at ~8,000/s), and stop when none has finished
        // for the timeout plus 5 s, or after PROBE_PHASE_MAX. A probe sent and unanswered
        // then counts as a timeout; one never sent is `probe_unsent`, not a failure.
        let probe_start = Instant::now();
        let (mut last_done, mut last_change) = (st.done.get(), Instant::now());
        while st.done.get() < n
            && last_change.elapsed() < t.timeout + Duration::from_secs(5)
            && probe_start.elapsed() < PROBE_PHASE_MAX
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if st.done.get() != last_done {
                (last_done, last_change) = (st.done.get(), Instant::now());
            }
        }
        let unfinished = n.saturating_sub(st.done.get());
        let answered = st.alive.get() + st.probe_failed.borrow().total();
        let in_flight = st.probes_sent.get().saturating_sub(answered);
        let unsent = unfinished.saturating_sub(in_flight);
        for _ in 0..unfinished - unsent {
            st.probe_failed.borrow_mut().add(&Failure::Timeout);
        }
        if show {
            common::progress_done();
        }
        let setup_us = stats::histogram_pairs(&setup_h.borrow());
        Partial {
            attempted: n,
            ok: n - st.failed_n.get(),
            failed: st.failed.take(),
            first_failure: st.first_failure.get(),
            first_failure_kind: st.first_failure_kind.take(),
            distribution: st.distribution.take(),
            dropped_during_ramp: st.dropped_ramp.get(),
            dropped_during_hold: st.dropped_hold.get(),
            dropped_kinds: st.dropped_kinds.take(),
            alive: st.alive.get(),
            probe_failed: st.probe_failed.take(),
            probe_unsent: unsent,
            setup_us,
            series: series.take(),
            ramp_s,
            ramp_stopped,
            tls: Tally::current(),
        }
    })
}

/// Resolves at the next SIGUSR1; never without a handler.
async fn stopped(stop: &mut Option<tokio::signal::unix::Signal>) {
    match stop {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// One connection: set up, hold until the probe (or a drop), probe.
async fn one_conn(
    global: u64,
    st: &State,
    phase: &Cell<Phase>,
    setup_h: &RefCell<Histogram<u64>>,
    t: &Target,
    probe_rx: &mut tokio::sync::watch::Receiver<bool>,
    probe_frame: &[u8],
) {
    let t0 = Instant::now();
    // Boxed (freed once set up): a task's memory is its future's size, and the setup's
    // state (connect, TLS, head parsing) would otherwise stay in every held connection's.
    let r = Box::pin(t.open(global, 512)).await;
    st.settled.set(st.settled.get() + 1);
    let (mut c, banner) = match r {
        Ok(x) => x,
        Err(f) => {
            st.failed.borrow_mut().add(&f);
            st.failed_n.set(st.failed_n.get() + 1);
            if st.first_failure.get().is_none_or(|x| global < x) {
                st.first_failure.set(Some(global));
                *st.first_failure_kind.borrow_mut() = Some(kind_name(&f));
            }
            return;
        }
    };
    let _ = setup_h
        .borrow_mut()
        .record(t0.elapsed().as_micros().max(1) as u64);
    *st.distribution
        .borrow_mut()
        .entry(stats::banner_key(&banner))
        .or_default() += 1;
    st.connected.set(st.connected.get() + 1);
    let dropped = tokio::select! {
        f = c.wait_closed() => Some(f),
        _ = probe_rx.wait_for(|v| *v) => None,
    };
    if let Some(f) = dropped {
        st.connected.set(st.connected.get() - 1);
        if phase.get() == Phase::Ramp {
            st.dropped_ramp.set(st.dropped_ramp.get() + 1);
        } else {
            st.dropped_hold.set(st.dropped_hold.get() + 1);
        }
        st.dropped_kinds.borrow_mut().add(&f);
        return;
    }
    // The semaphore is never closed, so acquire cannot fail; a failure would only mean
    // probing without the window.
    let _permit = st.probe_window.0.acquire().await.ok();
    st.probes_sent.set(st.probes_sent.get() + 1);
    match tokio::time::timeout(t.timeout, c.echo(probe_frame, PROBE.len() as u64)).await {
        Ok(Ok(())) => st.alive.set(st.alive.get() + 1),
        Ok(Err(e)) => st.probe_failed.borrow_mut().add(&Failure::from(e)),
        Err(_) => st.probe_failed.borrow_mut().add(&Failure::Timeout),
    }
}

/// Starts `procs` children, relays the hold, merges their partial results.
fn run_parent(a: &Args) -> Result<Partial, RunError> {
    let exe = std::env::current_exe().map_err(|e| RunError::Internal(format!("own path: {e}")))?;
    let show = common::show_progress(false);
    let hold = Duration::from_secs_f64(a.hold);
    common::block_on(async move {
        let mut stop =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .map_err(|e| RunError::Internal(format!("SIGUSR1 handler: {e}")))?;
        let mut children = Vec::new();
        for c in 0..a.procs {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("ceiling")
                .args(["--target", &a.target.target, "--path", &a.target.path])
                .args(["--timeout", &a.target.timeout.to_string()])
                .args([
                    "--conns",
                    &a.conns.to_string(),
                    "--rate",
                    &a.rate.to_string(),
                ])
                .args([
                    "--hold",
                    &a.hold.to_string(),
                    "--procs",
                    &a.procs.to_string(),
                ])
                .args([
                    "--sample-ms",
                    &a.sample_ms.to_string(),
                    "--child-index",
                    &c.to_string(),
                ]);
            if let Some(s) = &a.target.src_ips {
                cmd.args(["--src-ips", s]);
            }
            cmd.args(a.target.tls.to_args());
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd
                .spawn()
                .map_err(|e| RunError::Internal(format!("spawn child: {e}")))?;
            let out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
            let inp = child.stdin.take().expect("piped stdin");
            children.push((child, out, inp));
        }
        // Wait until every child has ramped; show their summed progress meanwhile, and pass a
        // SIGUSR1 (stop the ramp) on to every child.
        let pids: Vec<i32> = children
            .iter()
            .filter_map(|c| c.0.id())
            .map(|p| p as i32)
            .collect();
        let mut progress = vec![(0u64, 0u64); children.len()];
        for i in 0..children.len() {
            loop {
                let next = tokio::select! {
                    l = children[i].1.next_line() => l,
                    _ = stop.recv() => {
                        for &pid in &pids {
                            // SAFETY: kill(2) with our own children's pids and a valid signal.
                            unsafe { libc::kill(pid, libc::SIGUSR1) };
                        }
                        continue;
                    }
                };
                let line = next
                    .map_err(|e| RunError::Internal(format!("child output: {e}")))?
                    .ok_or_else(|| {
                        RunError::Internal(format!("child {i} exited before ramping"))
                    })?;
                if line == "ramped" {
                    break;
                }
                if let Some(rest) = line.strip_prefix("progress ") {
                    let mut it = rest.split(' ').filter_map(|x| x.parse().ok());
                    progress[i] = (it.next().unwrap_or(0), it.next().unwrap_or(0));
                    if show {
                        let (c, f) = progress
                            .iter()
                            .fold((0, 0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
                        common::progress(&format!("[ceiling] {c} connected, {f} failed"));
                    }
                }
            }
        }
        if show {
            common::progress(&format!(
                "[ceiling] all {} processes ramped; holding {:.1}s",
                a.procs, a.hold
            ));
        }
        tokio::time::sleep(hold).await;
        for (_, _, inp) in children.iter_mut() {
            let _ = inp.write_all(b"probe\n").await;
            let _ = inp.flush().await;
        }
        let mut merged = Partial::default();
        let mut setup = stats::new_histogram();
        let mut series: Vec<Vec<(u64, u64, u64)>> = Vec::new();
        for (i, (child, out, _)) in children.iter_mut().enumerate() {
            let mut last = None;
            while let Some(line) = out
                .next_line()
                .await
                .map_err(|e| RunError::Internal(format!("child output: {e}")))?
            {
                last = Some(line);
            }
            let _ = child.wait().await;
            let line =
                last.ok_or_else(|| RunError::Internal(format!("child {i} printed no result")))?;
            let p: Partial = serde_json::from_str(&line)
                .map_err(|e| RunError::Internal(format!("child {i} result: {e}")))?;
            merged.attempted += p.attempted;
            merged.ok += p.ok;
            merged.failed.merge(&p.failed);
            if let Some(f) = p.first_failure {
                if merged.first_failure.is_none_or(|m| f < m) {
                    merged.first_failure = Some(f);
                    merged.first_failure_kind = p.first_failure_kind.clone();
                }
            }
            stats::merge_counts(&mut merged.distribution, &p.distribution);
            merged.dropped_during_ramp += p.dropped_during_ramp;
            merged.dropped_during_hold += p.dropped_during_hold;
            merged.dropped_kinds.merge(&p.dropped_kinds);
            merged.alive += p.alive;
            merged.probe_failed.merge(&p.probe_failed);
            merged.probe_unsent += p.probe_unsent;
            stats::add_pairs(&mut setup, &p.setup_us);
            merged.ramp_s = merged.ramp_s.max(p.ramp_s);
            merged.ramp_stopped |= p.ramp_stopped;
            Tally::absorb(&p.tls);
            series.push(p.series);
        }
        if show {
            common::progress_done();
        }
        merged.setup_us = stats::histogram_pairs(&setup);
        merged.series = merge_series(&series, a.sample_ms);
        Ok(merged)
    })?
}

/// Sums per-process series sample by sample (a process whose series ended counts its last value).
fn merge_series(all: &[Vec<(u64, u64, u64)>], interval_ms: u64) -> Vec<(u64, u64, u64)> {
    let len = all.iter().map(Vec::len).max().unwrap_or(0);
    (0..len)
        .map(|k| {
            let (mut c, mut f) = (0, 0);
            for s in all {
                if let Some(x) = s.get(k).or(s.last()) {
                    c += x.1;
                    f += x.2;
                }
            }
            (k as u64 * interval_ms, c, f)
        })
        .collect()
}

/// The final JSON (and the human summary on stderr).
fn report(a: &Args, p: Partial) -> Value {
    let mut h = stats::new_histogram();
    stats::add_pairs(&mut h, &p.setup_us);
    let setup = Percentiles::of(&h, 1000.0);
    let failed_total = p.failed.total();
    eprintln!(
        "ceiling: {} of {} connected ({} failed{}); ramp settled in {:.2}s; dropped {} during ramp, {} during hold; {} alive after hold",
        p.ok,
        p.attempted,
        failed_total,
        match (&p.first_failure, &p.first_failure_kind) {
            (Some(i), Some(k)) => format!(", first at #{i}: {k}"),
            _ => String::new(),
        },
        p.ramp_s,
        p.dropped_during_ramp,
        p.dropped_during_hold,
        p.alive
    );
    eprintln!(
        "  setup ms p50 {} p90 {} p99 {} max {}; distribution {:?}",
        setup.p50, setup.p90, setup.p99, setup.max, p.distribution
    );
    json!({
        "subcommand": "ceiling",
        "params": a,
        "attempted": p.attempted,
        "ok": p.ok,
        "failed": p.failed,
        "failed_total": failed_total,
        "first_failure_index": p.first_failure,
        "first_failure_kind": p.first_failure_kind,
        "distribution": p.distribution,
        "dropped_during_ramp": p.dropped_during_ramp,
        "dropped_during_hold": p.dropped_during_hold,
        "dropped_kinds": p.dropped_kinds,
        "alive_after_hold": p.alive,
        "probe_failed": p.probe_failed,
        "probe_unsent": p.probe_unsent,
        "setup_ms": setup,
        "ramp_s": r3(p.ramp_s),
        "ramp_stopped": p.ramp_stopped,
        "series_fields": ["t_ms", "connected", "failed"],
        "series": p.series,
    })
}

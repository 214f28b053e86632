//! `loadgen handshake`: TLS handshakes per second. `--conns` workers each loop: connect (from
//! `--src-ips` round-robin, so TIME_WAIT spreads), full TLS handshake or a resumed one, then
//! `--then close` (close_notify, read to the end: the session tickets sent after the handshake
//! are read too) or `--then get` (one small `GET --path` with `Connection: close`, response read
//! whole). Only the measured window counts (after `--warmup`): handshakes completed in it, their
//! latency (TCP connect + TLS handshake, as the client sees it), failures by kind, and the CPU of
//! the `--watch-pid` processes over the window per handshake.
//!
//! `--resume on`: each worker has its own session store (so no worker takes another's ticket);
//! its first handshake is full, then each resumes with the ticket the previous connection got.
//! Whether a handshake really resumed comes from rustls (`handshake_kind() == Resumed`), and
//! the JSON reports the resumed fraction. TLS is implied; `--tls-ca` is needed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::Failure;
use ringway_bench::cpu::CpuWatch;
use ringway_bench::http_client::{HttpClient, RespError};
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use ringway_bench::stream::Stream;
use ringway_bench::tls::{Negotiated, Tally};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, r3, RunError, Target, TargetArgs};

/// Sessions each worker keeps with `--resume on` (TLS 1.3 servers send one or two tickets per
/// connection; each resumption uses one up).
const SESSIONS_PER_WORKER: usize = 4;

/// Resumption.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resume {
    /// Every handshake is full (no session store).
    Off,
    /// Resume with the previous connection's session (TLS 1.3 PSK ticket, TLS 1.2 ticket/id).
    On,
}

/// What follows the handshake.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Then {
    /// close_notify and a write shutdown, then read to the end.
    Close,
    /// One `GET --path` with `Connection: close`; the response is read whole.
    Get,
}

/// `loadgen handshake` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent workers, each opening one connection at a time.
    #[arg(long, default_value_t = 50)]
    pub conns: u64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of handshakes before the measured window.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Full handshakes only (off) or resumed ones (on).
    #[arg(long, value_enum, default_value_t = Resume::Off)]
    pub resume: Resume,
    /// After the handshake: close, or one small GET.
    #[arg(long, value_enum, default_value_t = Then::Close)]
    pub then: Then,
    /// Processes whose CPU time (with their descendants) over the window is reported per
    /// handshake.
    #[arg(long = "watch-pid", num_args = 1..)]
    pub watch_pid: Vec<u32>,
}

struct Shared {
    next_index: Cell<u64>,
    /// Handshakes completed in the window, and how many of them resumed.
    handshakes: Cell<u64>,
    resumed: Cell<u64>,
    /// Whole cycles (handshake + close or GET) completed in the window.
    cycles: Cell<u64>,
    /// Handshake failures in the window (connect included).
    failed: RefCell<FailureCounts>,
    /// Failures after a completed handshake (the close or the GET), in the window.
    failed_after: RefCell<FailureCounts>,
    failed_outside: Cell<u64>,
    hs_hist: RefCell<hdrhistogram::Histogram<u64>>,
    cycle_hist: RefCell<hdrhistogram::Histogram<u64>>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve_with(true)?;
    let duration = common::secs("--duration", a.duration, false)?;
    let warmup = common::secs("--warmup", a.warmup, true)?;
    if a.conns == 0 || a.conns > 10_000 {
        return Err(RunError::Usage("--conns must be 1..=10000".into()));
    }
    if a.target.tls.tls_resume {
        return Err(RunError::Usage(
            "handshake: use --resume on|off, not --tls-resume".into(),
        ));
    }
    CpuWatch::start(&a.watch_pid).map_err(RunError::Usage)?;
    let show = common::show_progress(false);

    common::block_on(async move {
        let sh = Rc::new(Shared {
            next_index: Cell::new(0),
            handshakes: Cell::new(0),
            resumed: Cell::new(0),
            cycles: Cell::new(0),
            failed: RefCell::default(),
            failed_after: RefCell::default(),
            failed_outside: Cell::new(0),
            hs_hist: RefCell::new(stats::new_histogram()),
            cycle_hist: RefCell::new(stats::new_histogram()),
        });
        let t_start = Instant::now();
        let (w_start, w_end) = (t_start + warmup, t_start + warmup + duration);
        let get = Rc::new(
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                t.path, a.target.tls.sni
            )
            .into_bytes(),
        );
        let mut handles = Vec::new();
        for _ in 0..a.conns {
            let (sh, get) = (sh.clone(), get.clone());
            let mut t = t.clone();
            let sessions = match a.resume {
                Resume::On => SESSIONS_PER_WORKER,
                Resume::Off => 0,
            };
            t.tls = t.tls.map(|c| c.with_own_sessions(sessions));
            let then = a.then;
            handles.push(tokio::task::spawn_local(async move {
                worker(&t, &sh, then, &get, w_start, w_end).await;
            }));
        }
        if show {
            let sh2 = sh.clone();
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    common::progress(&format!(
                        "[handshake] {:.1}s {} in the window ({} resumed), {} failed",
                        t_start.elapsed().as_secs_f64(),
                        sh2.handshakes.get(),
                        sh2.resumed.get(),
                        sh2.failed.borrow().total()
                    ));
                }
            });
        }
        tokio::time::sleep_until(w_start.into()).await;
        let watch = CpuWatch::start(&a.watch_pid)
            .unwrap_or_else(|_| CpuWatch::start(&[]).expect("no pids"));
        let w0 = Instant::now();
        tokio::time::sleep_until(w_end.into()).await;
        let elapsed = w0.elapsed().as_secs_f64();
        let (watched, own) = watch.finish();
        let stalled = common::join_all_within(handles, t.timeout + Duration::from_secs(1)).await;
        if show {
            common::progress_done();
        }

        let n = sh.handshakes.get();
        let resumed = sh.resumed.get();
        let per_hs = |cpu: f64| if n > 0 { r3(cpu * 1e6 / n as f64) } else { 0.0 };
        let hs = Percentiles::of(&sh.hs_hist.borrow(), 1.0);
        let cycle = Percentiles::of(&sh.cycle_hist.borrow(), 1.0);
        let failed = sh.failed.take();
        let failed_after = sh.failed_after.take();
        let frac = if n > 0 {
            resumed as f64 / n as f64
        } else {
            0.0
        };
        eprintln!(
            "handshake: {n} in {elapsed:.2}s = {:.0}/s ({resumed} resumed, {:.1} %); failed {} (+{} after the handshake, {} outside the window); latency µs p50 {} p99 {} p99.9 {}",
            n as f64 / elapsed,
            frac * 100.0,
            failed.total(),
            failed_after.total(),
            sh.failed_outside.get(),
            hs.p50,
            hs.p99,
            hs.p999
        );
        for w in &watched {
            eprintln!(
                "  pid {} ({}): {:.1} µs per handshake ({:.1} with descendants)",
                w.pid,
                w.comm,
                per_hs(w.cpu_s),
                per_hs(w.tree_cpu_s)
            );
        }
        let watched_json: Vec<Value> = watched
            .iter()
            .map(|w| w.to_json("us_per_handshake", per_hs))
            .collect();
        json!({
            "subcommand": "handshake",
            "params": a,
            "attempted": sh.next_index.get(),
            "handshakes": n,
            "resumed": resumed,
            "full": n - resumed,
            "resumed_fraction": r3(frac),
            "handshakes_per_s": r3(n as f64 / elapsed),
            "cycles": sh.cycles.get(),
            "elapsed_s": r3(elapsed),
            "handshake_us": hs,
            "cycle_us": cycle,
            "failed": failed,
            "failed_after_handshake": failed_after,
            "failed_outside_window": sh.failed_outside.get(),
            "stalled": stalled,
            "watched": watched_json,
            "loadgen_cpu_s": r3(own),
            "loadgen_cpu_us_per_handshake": per_hs(own),
        })
    })
}

/// One worker's loop until the window ends.
async fn worker(t: &Target, sh: &Shared, then: Then, get: &[u8], w_start: Instant, w_end: Instant) {
    let in_window = |x: Instant| x >= w_start && x < w_end;
    let tls = t.tls.as_ref().expect("handshake speaks TLS");
    loop {
        let t0 = Instant::now();
        if t0 >= w_end {
            return;
        }
        let i = sh.next_index.get();
        bump(&sh.next_index);
        let r = tokio::time::timeout(t.timeout, async {
            let tcp = ringway_bench::net::connect(t.addr, t.src_for(i)).await?;
            tls.handshake(tcp).await
        })
        .await;
        let t1 = Instant::now();
        let s = match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                fail(sh, &sh.failed, &Failure::from(e), in_window(t1));
                continue;
            }
            Err(_) => {
                fail(sh, &sh.failed, &Failure::Timeout, in_window(t1));
                continue;
            }
        };
        let neg = Negotiated::of(s.get_ref().1);
        Tally::record(&neg);
        if in_window(t1) {
            bump(&sh.handshakes);
            if neg.resumed {
                bump(&sh.resumed);
            }
            let _ = sh
                .hs_hist
                .borrow_mut()
                .record((t1 - t0).as_micros().max(1) as u64);
        }
        let stream = Stream::Tls(Box::new(s));
        let r = match tokio::time::timeout(t.timeout, finish(stream, then, get)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        let t2 = Instant::now();
        match r {
            Ok(()) if in_window(t2) => {
                bump(&sh.cycles);
                let _ = sh
                    .cycle_hist
                    .borrow_mut()
                    .record((t2 - t0).as_micros().max(1) as u64);
            }
            Ok(()) => {}
            Err(f) => fail(sh, &sh.failed_after, &f, in_window(t2)),
        }
    }
}

fn fail(sh: &Shared, to: &RefCell<FailureCounts>, f: &Failure, in_window: bool) {
    if in_window {
        to.borrow_mut().add(f);
    } else {
        bump(&sh.failed_outside);
    }
}

/// After the handshake: close (close_notify + write shutdown, then read to the end, which also
/// takes in the tickets), or one GET read whole (the server closes after it).
async fn finish(mut s: Stream, then: Then, get: &[u8]) -> Result<(), Failure> {
    match then {
        Then::Close => {
            s.shutdown().await?;
            let mut b = [0u8; 512];
            loop {
                match s.read(&mut b).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // The server closed without close_notify, or reset after ours: done.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        return Ok(())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Then::Get => {
            let mut c = HttpClient::new(1024);
            c.attach(s);
            c.send(get).await?;
            let r = c.read_response().await.map_err(|e| match e {
                RespError::Closed(f) | RespError::Failed(f) => f,
            })?;
            if !(200..300).contains(&r.status) {
                return Err(Failure::Http(r.status));
            }
            c.disconnect();
            Ok(())
        }
    }
}

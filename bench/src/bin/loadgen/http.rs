//! `loadgen http`: keep-alive HTTP. Each connection sends a small `GET --path`
//! (`--pipeline K` of them in flight), waits for each complete response and sends the next
//! (closed loop). With `--rate R` the load is open loop instead: the R requests per second are
//! scheduled evenly over the connections (connection i every `conns / R` s, staggered by
//! `i / R`), a request is sent at its scheduled time or, when its connection is still waiting
//! for the previous answer, as soon as that arrives; then its latency runs from the scheduled
//! time (wrk2's correction for coordinated omission: a stall delays every request behind it,
//! and all of them count it), otherwise from the send (the timer's millisecond wake-up is
//! loadgen's, not the server's). Proxies are then compared at the same offered load, not at
//! whatever rate each one's closed loop reaches.
//! When the server closes a connection (`Connection: close`, or an EOF/reset between responses)
//! the connection is reopened and the unanswered requests are sent again, counted as a
//! reconnect; failures are counted by kind and the connection reopened after a short backoff.
//! Reports requests/s (2xx responses), latency percentiles (µs, from a request's first send to
//! its response, so a reconnect it waited for is included), reconnects, the distribution of
//! responses over the backends (wsecho's `backend:<port>` bodies) and CPU per request of the
//! watched processes and of loadgen itself.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringway_bench::client::Failure;
use ringway_bench::cpu::CpuWatch;
use ringway_bench::http;
use ringway_bench::http_client::{HttpClient, RespError};
use ringway_bench::stats::{self, FailureCounts, Percentiles};
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{self, r3, RunError, Target, TargetArgs};

/// At most this many connections set up at once (the listen backlog is finite).
const SETUP_PARALLEL: usize = 256;
/// Backoff after a failure before reconnecting: first and largest.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// `loadgen http` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    pub conns: u64,
    /// Requests in flight per connection (1 = wait for each response before the next request).
    #[arg(long, default_value_t = 1)]
    pub pipeline: u32,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Processes whose CPU time (with their descendants) is reported per request.
    #[arg(long = "watch-pid", num_args = 1..)]
    pub watch_pid: Vec<u32>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Open loop: requests per second offered over all connections (needs `--pipeline 1`);
    /// 0 = closed loop. Latency then runs from each request's scheduled time.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

/// Counters shared by all connections (one thread: plain cells).
struct Shared {
    recording: Cell<bool>,
    stop: Cell<bool>,
    /// 2xx responses while recording.
    requests: Cell<u64>,
    /// Responses of any status, warm-up included.
    responses_total: Cell<u64>,
    /// Connections reopened because the server closed them, while recording / in all.
    reconnects: Cell<u64>,
    reconnects_total: Cell<u64>,
    /// Of `reconnects`: closes the server did not announce with `Connection: close`.
    unannounced: Cell<u64>,
    /// Requests written but unanswered when the server closed (sent again), while recording.
    resent: Cell<u64>,
    /// Connection setups (first and re-) that succeeded, in all.
    connects: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    setup_hist: RefCell<Histogram<u64>>,
    errors: RefCell<FailureCounts>,
    failed: RefCell<FailureCounts>,
    connected: Cell<u64>,
    /// Responses per backend port while recording.
    backends: RefCell<BTreeMap<u16, u64>>,
    other_bodies: Cell<u64>,
    /// Open loop, while recording: requests whose connection was still waiting for the
    /// previous answer at their scheduled time, and the largest such wait past it, µs.
    late: Cell<u64>,
    max_lag_us: Cell<u64>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            recording: Cell::new(false),
            stop: Cell::new(false),
            requests: Cell::new(0),
            responses_total: Cell::new(0),
            reconnects: Cell::new(0),
            reconnects_total: Cell::new(0),
            unannounced: Cell::new(0),
            resent: Cell::new(0),
            connects: Cell::new(0),
            hist: RefCell::new(stats::new_histogram()),
            setup_hist: RefCell::new(stats::new_histogram()),
            errors: RefCell::new(FailureCounts::default()),
            failed: RefCell::new(FailureCounts::default()),
            connected: Cell::new(0),
            backends: RefCell::new(BTreeMap::new()),
            other_bodies: Cell::new(0),
            late: Cell::new(0),
            max_lag_us: Cell::new(0),
        }
    }

    fn bump(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    let duration = common::secs("--duration", a.duration, false)?;
    let warmup = common::secs("--warmup", a.warmup, true)?;
    if a.conns == 0 || a.conns > 100_000 {
        return Err(RunError::Usage("--conns must be 1..=100000".into()));
    }
    if a.pipeline == 0 || a.pipeline > 256 {
        return Err(RunError::Usage("--pipeline must be 1..=256".into()));
    }
    // Each connection's interval between scheduled requests (open loop).
    let interval = if a.rate == 0.0 {
        None
    } else if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000_000.0) {
        return Err(RunError::Usage(
            "--rate must be a number of requests per second, 0 (closed loop) to 10000000".into(),
        ));
    } else if a.pipeline != 1 {
        return Err(RunError::Usage(
            "--rate (open loop) needs --pipeline 1".into(),
        ));
    } else {
        Some(Duration::from_secs_f64(a.conns as f64 / a.rate))
    };
    CpuWatch::start(&a.watch_pid).map_err(RunError::Usage)?;
    let show = common::show_progress(false);

    common::block_on(async move {
        let req = http::get_request(&t.addr.to_string(), &t.path);
        // K requests back to back: a connection writes a prefix of this in one call.
        let batch: Rc<[u8]> = req.repeat(a.pipeline as usize).into();
        let sh = Rc::new(Shared::new());
        let sem = Rc::new(tokio::sync::Semaphore::new(SETUP_PARALLEL));
        let mut handles = Vec::new();
        for i in 0..a.conns {
            let (t, sh, sem, batch) = (t.clone(), sh.clone(), sem.clone(), batch.clone());
            let k = a.pipeline as usize;
            // Connection i's first request comes i / R after its setup: the connections'
            // schedules interleave evenly.
            let pace = interval.map(|iv| Pace {
                interval: iv,
                phase: iv.mul_f64(i as f64 / a.conns as f64),
            });
            handles.push(tokio::task::spawn_local(async move {
                connection(i, &t, &sh, &sem, &batch, k, pace).await;
            }));
        }
        // The warm-up starts once every connection has tried its first setup.
        while sh.connected.get() + sh.failed.borrow().total() < a.conns {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(warmup).await;
        let watch = CpuWatch::start(&a.watch_pid)
            .unwrap_or_else(|_| CpuWatch::start(&[]).expect("no pids"));
        sh.recording.set(true);
        let t_start = Instant::now();
        common::measure_window(duration, show, |el| {
            format!(
                "[http] {el:.1}s requests={} ({:.0}/s) reconnects={}",
                sh.requests.get(),
                sh.requests.get() as f64 / el.max(1e-9),
                sh.reconnects.get()
            )
        })
        .await;
        sh.recording.set(false);
        let elapsed = t_start.elapsed().as_secs_f64();
        let (watched, own) = watch.finish();
        sh.stop.set(true);
        let stalled = common::join_all_within(handles, t.timeout).await;

        let n = sh.requests.get();
        let per_req = |cpu: f64| if n > 0 { r3(cpu * 1e6 / n as f64) } else { 0.0 };
        let watched_json: Vec<Value> = watched
            .iter()
            .map(|w| w.to_json("us_per_req", per_req))
            .collect();
        let lat = Percentiles::of(&sh.hist.borrow(), 1000.0);
        let setup_ms = Percentiles::of(&sh.setup_hist.borrow(), 1000.0);
        let errors = sh.errors.take();
        let connected = sh.connected.get();
        let mut distribution: BTreeMap<String, u64> = sh
            .backends
            .borrow()
            .iter()
            .map(|(p, c)| (format!("backend:{p}"), *c))
            .collect();
        if sh.other_bodies.get() > 0 {
            distribution.insert("(no backend banner)".into(), sh.other_bodies.get());
        }
        let reconnects = sh.reconnects.get();
        eprintln!(
            "http: {connected}/{} connected, pipeline {}{}, {n} requests in {elapsed:.2}s = {:.0} req/s; latency µs p50 {} p99 {} p99.9 {} max {}; reconnects {reconnects} ({} unannounced); errors {}; loadgen CPU {:.2} µs/req",
            a.conns,
            a.pipeline,
            if interval.is_some() {
                format!(
                    ", open loop at {} req/s ({} late, largest lag {} µs)",
                    a.rate,
                    sh.late.get(),
                    sh.max_lag_us.get()
                )
            } else {
                String::new()
            },
            n as f64 / elapsed,
            lat.p50,
            lat.p99,
            lat.p999,
            lat.max,
            sh.unannounced.get(),
            errors.total(),
            per_req(own)
        );
        for w in &watched {
            eprintln!(
                "  pid {} ({}): {:.2} µs/req ({:.2} with descendants)",
                w.pid,
                w.comm,
                per_req(w.cpu_s),
                per_req(w.tree_cpu_s)
            );
        }
        json!({
            "subcommand": "http",
            "params": a,
            "connected": connected,
            "failed": sh.failed.take(),
            "distribution": distribution,
            "setup_ms": setup_ms,
            "requests": n,
            "responses_total_incl_warmup": sh.responses_total.get(),
            "elapsed_s": r3(elapsed),
            "requests_per_s": r3(n as f64 / elapsed),
            "open_loop": interval.is_some(),
            "late": sh.late.get(),
            "max_lag_us": sh.max_lag_us.get(),
            "latency_us": lat,
            "reconnects": reconnects,
            "reconnects_unannounced": sh.unannounced.get(),
            "reconnects_total_incl_warmup": sh.reconnects_total.get(),
            "resent_after_close": sh.resent.get(),
            "connects_total": sh.connects.get(),
            "errors": errors,
            "stalled": stalled,
            "watched": watched_json,
            "loadgen_cpu_s": r3(own),
            "loadgen_cpu_us_per_req": per_req(own),
        })
    })
}

/// Why the current connection is being replaced.
enum Reopen {
    /// The server closed it (counted as a reconnect).
    ServerClosed { announced: bool },
    /// A failure (counted in `errors`); reconnect after a backoff.
    Failed(Failure),
}

/// Connects within the timeout.
async fn open(t: &Target, i: u64, c: &mut HttpClient) -> Result<(), Failure> {
    match tokio::time::timeout(t.timeout, c.connect(t.addr, t.src_for(i), t.tls.as_ref())).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

/// One connection's open-loop schedule: a request every `interval`, the first `phase` after
/// the connection is set up.
#[derive(Clone, Copy)]
struct Pace {
    interval: Duration,
    phase: Duration,
}

/// The longest one sleep towards a scheduled request lasts before `stop` is looked at again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Waits until `at` (or `stop`); returns false when stopped.
async fn wait_until(at: Instant, sh: &Shared) -> bool {
    loop {
        if sh.stop.get() {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        tokio::time::sleep((at - now).min(STOP_POLL)).await;
    }
}

/// One connection's loop (closed, or paced by `pace`), until `stop`.
async fn connection(
    i: u64,
    t: &Target,
    sh: &Shared,
    sem: &tokio::sync::Semaphore,
    batch: &[u8],
    k: usize,
    pace: Option<Pace>,
) {
    let req_len = batch.len() / k;
    let mut c = HttpClient::new(4096);
    {
        let _permit = sem.acquire().await.expect("semaphore open");
        let t0 = Instant::now();
        if let Err(f) = open(t, i, &mut c).await {
            sh.failed.borrow_mut().add(&f);
            return;
        }
        let _ = sh
            .setup_hist
            .borrow_mut()
            .record(t0.elapsed().as_micros().max(1) as u64);
    }
    Shared::bump(&sh.connected, 1);
    Shared::bump(&sh.connects, 1);
    // Issue times of the requests not answered yet, oldest first; the first `written` of them
    // were written on the current connection.
    let mut inflight: VecDeque<Instant> = VecDeque::with_capacity(k);
    let mut written = 0usize;
    // When the connection was lost: requests issued while reconnecting count from then.
    let mut lost_at: Option<Instant> = None;
    // Open loop: the next request's scheduled time.
    let mut next = pace.map(|p| Instant::now() + p.phase);
    // Open loop: when the connection last became free (an answer arrived, or a reconnect
    // completed).
    let mut free_at = Instant::now();
    let mut backoff = BACKOFF_MIN;
    'conn: while !sh.stop.get() {
        // Fill the pipeline and write what this connection has not sent yet.
        if let (Some(p), Some(at)) = (pace, next.as_mut()) {
            // Open loop (pipeline 1): the next request once its time has come. Its latency
            // runs from its scheduled time when the previous answer came after it (the server
            // made it wait), else from the send (our timer's wake-up is not the server's).
            // A request resent after a close keeps its issue time.
            if inflight.is_empty() {
                if !wait_until(*at, sh).await {
                    break 'conn;
                }
                let issued = if free_at > *at {
                    if sh.recording.get() {
                        Shared::bump(&sh.late, 1);
                        let lag_us = (free_at - *at).as_micros() as u64;
                        sh.max_lag_us.set(sh.max_lag_us.get().max(lag_us));
                    }
                    *at
                } else {
                    Instant::now()
                };
                inflight.push_back(issued);
                *at += p.interval;
            }
        } else {
            let now = lost_at.take().unwrap_or_else(Instant::now);
            while inflight.len() < k {
                inflight.push_back(now);
            }
        }
        let reopen = 'exchange: {
            if written < inflight.len() {
                let n = inflight.len() - written;
                if let Err(e) = c.send(&batch[..n * req_len]).await {
                    let f = Failure::from(e);
                    break 'exchange if c.served > 0 && matches!(f, Failure::Reset) {
                        Reopen::ServerClosed { announced: false }
                    } else {
                        Reopen::Failed(f)
                    };
                }
                written = inflight.len();
            }
            let r = match tokio::time::timeout(t.timeout, c.read_response()).await {
                Ok(r) => r,
                Err(_) => break 'exchange Reopen::Failed(Failure::Timeout),
            };
            match r {
                Ok(resp) => {
                    let issued = inflight.pop_front().expect("a request in flight");
                    written -= 1;
                    free_at = Instant::now();
                    Shared::bump(&sh.responses_total, 1);
                    backoff = BACKOFF_MIN;
                    if sh.recording.get() {
                        if (200..300).contains(&resp.status) {
                            Shared::bump(&sh.requests, 1);
                            let _ = sh
                                .hist
                                .borrow_mut()
                                .record(issued.elapsed().as_nanos().max(1) as u64);
                            match resp.backend {
                                Some(p) => *sh.backends.borrow_mut().entry(p).or_default() += 1,
                                None => Shared::bump(&sh.other_bodies, 1),
                            }
                        } else {
                            sh.errors.borrow_mut().add(&Failure::Http(resp.status));
                        }
                    }
                    if !resp.close {
                        continue 'conn;
                    }
                    Reopen::ServerClosed { announced: true }
                }
                Err(RespError::Closed(_)) if c.served > 0 => {
                    Reopen::ServerClosed { announced: false }
                }
                Err(RespError::Closed(f) | RespError::Failed(f)) => Reopen::Failed(f),
            }
        };
        // The connection is gone: whatever it had not answered is sent again on the next one.
        lost_at = Some(Instant::now());
        if sh.recording.get() {
            Shared::bump(&sh.resent, inflight.len() as u64);
        }
        written = 0;
        c.disconnect();
        match reopen {
            Reopen::ServerClosed { announced } => {
                Shared::bump(&sh.reconnects_total, 1);
                if sh.recording.get() {
                    Shared::bump(&sh.reconnects, 1);
                    if !announced {
                        Shared::bump(&sh.unannounced, 1);
                    }
                }
            }
            Reopen::Failed(f) => {
                sh.errors.borrow_mut().add(&f);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        // Reconnect (failures count as errors and back off) until connected or stopped.
        while !sh.stop.get() {
            match open(t, i, &mut c).await {
                Ok(()) => {
                    Shared::bump(&sh.connects, 1);
                    // Open loop: a request due during the reconnect was made late by the
                    // server's close, so it counts from its scheduled time.
                    free_at = Instant::now();
                    break;
                }
                Err(f) => {
                    sh.errors.borrow_mut().add(&f);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

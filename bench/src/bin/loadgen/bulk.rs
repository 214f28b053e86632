//! `loadgen bulk`: each connection sends binary messages of `--bytes` bytes with up to
//! `--inflight` unanswered and reads the echoes as they stream back. Reports MB/s each way
//! (MB = 10^6 bytes) and CPU per MB echoed for the watched processes and loadgen itself.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::{Failure, FrameReader, WsClient};
use ringway_bench::cpu::CpuWatch;
use ringway_bench::stats::FailureCounts;
use ringway_bench::stream::Stream;
use ringway_bench::ws;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::common::{self, r3, RunError, TargetArgs};

/// `loadgen bulk` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    pub conns: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1 << 20)]
    pub bytes: u64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 2)]
    pub inflight: u32,
    /// Processes whose CPU time (with their descendants) is reported per MB.
    #[arg(long = "watch-pid", num_args = 1..)]
    pub watch_pid: Vec<u32>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
}

/// Totals shared by all connections.
#[derive(Default)]
struct Totals {
    recording: Cell<bool>,
    stop: Cell<bool>,
    sent: Cell<u64>,
    received: Cell<u64>,
    msgs: Cell<u64>,
    errors: RefCell<FailureCounts>,
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    let duration = common::secs("--duration", a.duration, false)?;
    let warmup = common::secs("--warmup", a.warmup, true)?;
    if a.conns == 0 || a.conns > 10_000 {
        return Err(RunError::Usage("--conns must be 1..=10000".into()));
    }
    if a.bytes == 0 || a.bytes > 256 << 20 {
        return Err(RunError::Usage("--bytes must be 1..=256 MiB".into()));
    }
    if a.inflight == 0 || a.inflight > 64 {
        return Err(RunError::Usage("--inflight must be 1..=64".into()));
    }
    CpuWatch::start(&a.watch_pid).map_err(RunError::Usage)?;

    common::block_on(async move {
        let opened = common::open_many(&t, a.conns, 256 * 1024).await;
        let payload: Vec<u8> = (0..a.bytes).map(|i| (i * 7) as u8).collect();
        let frame = Rc::new(ws::build_frame(
            ws::OP_BINARY,
            &payload,
            Some(common::mask()),
        ));
        drop(payload);
        let tot = Rc::new(Totals::default());
        let connected = opened.clients.len() as u64;
        let mut handles = Vec::new();
        for c in opened.clients {
            let (frame, tot) = (frame.clone(), tot.clone());
            let (bytes, max_inflight) = (a.bytes, a.inflight);
            handles.push(tokio::task::spawn_local(async move {
                if let Err(e) = pump(c, &frame, bytes, max_inflight, &tot).await {
                    tot.errors.borrow_mut().add(&e);
                }
            }));
        }
        tokio::time::sleep(warmup).await;
        let watch = CpuWatch::start(&a.watch_pid)
            .unwrap_or_else(|_| CpuWatch::start(&[]).expect("no pids"));
        tot.recording.set(true);
        let t_start = Instant::now();
        common::measure_window(duration, common::show_progress(false), |el| {
            format!(
                "[bulk] {el:.1}s received {:.0} MB/s",
                tot.received.get() as f64 / 1e6 / el.max(1e-9)
            )
        })
        .await;
        tot.recording.set(false);
        let elapsed = t_start.elapsed().as_secs_f64();
        let (watched, own) = watch.finish();
        tot.stop.set(true);
        let stalled = common::join_all_within(handles, t.timeout).await;

        let mb = tot.received.get() as f64 / 1e6;
        let per_mb = |cpu: f64| if mb > 0.0 { r3(cpu * 1e3 / mb) } else { 0.0 };
        let watched_json: Vec<Value> = watched
            .iter()
            .map(|w| w.to_json("ms_per_mb", per_mb))
            .collect();
        let errors = tot.errors.take();
        let sent_rate = tot.sent.get() as f64 / 1e6 / elapsed;
        let recv_rate = mb / elapsed;
        eprintln!(
            "bulk: {connected}/{} connected, sent {sent_rate:.0} MB/s, received {recv_rate:.0} MB/s over {elapsed:.2}s; errors {}; loadgen CPU {:.3} ms/MB",
            a.conns,
            errors.total(),
            per_mb(own)
        );
        for w in &watched {
            eprintln!(
                "  pid {} ({}): {:.3} ms/MB ({:.3} with descendants)",
                w.pid,
                w.comm,
                per_mb(w.cpu_s),
                per_mb(w.tree_cpu_s)
            );
        }
        json!({
            "subcommand": "bulk",
            "params": a,
            "connected": connected,
            "failed": opened.failed,
            "distribution": opened.distribution,
            "setup_ms": opened.setup_ms,
            "elapsed_s": r3(elapsed),
            "bytes_sent": tot.sent.get(),
            "bytes_received": tot.received.get(),
            "msgs_echoed": tot.msgs.get(),
            "sent_mb_per_s": r3(sent_rate),
            "received_mb_per_s": r3(recv_rate),
            "errors": errors,
            "stalled": stalled,
            "watched": watched_json,
            "loadgen_cpu_s": r3(own),
            "loadgen_cpu_ms_per_mb": per_mb(own),
        })
    })
}

/// Drives one connection: a writer keeping up to `max_inflight` messages unanswered and a reader
/// counting echoed bytes as they arrive. Returns when stopped and drained, or on the first error.
async fn pump(
    c: WsClient,
    frame: &[u8],
    bytes: u64,
    max_inflight: u32,
    tot: &Totals,
) -> Result<(), Failure> {
    let WsClient { stream, rd } = c;
    match stream {
        Stream::Plain(mut s) => {
            let (r, w) = s.split();
            pump_halves(r, w, rd, frame, bytes, max_inflight, tot).await
        }
        Stream::Tls(s) => {
            let (r, w) = tokio::io::split(*s);
            pump_halves(r, w, rd, frame, bytes, max_inflight, tot).await
        }
    }
}

/// [`pump`] on the two halves of a connection.
async fn pump_halves<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut r: R,
    mut w: W,
    mut rd: FrameReader,
    frame: &[u8],
    bytes: u64,
    max_inflight: u32,
    tot: &Totals,
) -> Result<(), Failure> {
    let inflight = Cell::new(0u32);
    let room = Notify::new();
    let writer = async {
        loop {
            while inflight.get() >= max_inflight && !tot.stop.get() {
                room.notified().await;
            }
            if tot.stop.get() {
                return Ok::<(), Failure>(());
            }
            inflight.set(inflight.get() + 1);
            w.write_all(frame).await?;
            // TLS: rustls may still hold ciphertext (a no-op on TCP).
            w.flush().await?;
            if tot.recording.get() {
                tot.sent.set(tot.sent.get() + bytes);
            }
        }
    };
    let reader = async {
        let mut got = 0u64;
        loop {
            let h = rd.next_data_header(&mut r).await?;
            rd.skip(&mut r, h.len, |n| {
                if tot.recording.get() {
                    tot.received.set(tot.received.get() + n);
                }
            })
            .await?;
            got += h.len;
            if h.fin {
                if got != bytes {
                    return Err::<(), _>(Failure::Other(format!(
                        "echo of {got} bytes, expected {bytes}"
                    )));
                }
                got = 0;
                inflight.set(inflight.get() - 1);
                tot.msgs.set(tot.msgs.get() + 1);
                room.notify_one();
            }
        }
    };
    // Stop once asked to and every sent message has come back (the reader may be parked on an
    // idle socket at that point, so this cannot be its own check).
    let drained = async {
        while !(tot.stop.get() && inflight.get() == 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(writer, reader) } => r.map(|_| ()),
        _ = drained => Ok(()),
    }
}

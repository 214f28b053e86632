//! The metrics endpoint: `GET /metrics` in the Prometheus (OpenMetrics) text format, served
//! by a small listener thread of its own (`--metrics ADDR`, nginx.conf `ringway_metrics
//! ADDR;`).
//!
//! Workers never know it exists: they keep writing their own rows of relaxed atomics
//! (`shm.rs`), and a scrape reads those rows on the metrics thread, so a scrape never
//! blocks, locks or slows a data-path worker. In process mode the rows live in the memfd
//! the master shares with its workers, and the listener runs in the master: the numbers
//! are exact across processes.
//!
//! Reloads start new generations with counters of their own. The [`Source`] lists the
//! live ones (their gauges and counters add up per worker index and per backend address);
//! a generation that retires hands its counters to a running total, so counters never go
//! back. The parts: [`collect`] (rows → metric families), [`text`] (families → the
//! exposition format, the HTTP listener).

pub mod collect;
pub mod text;

use crate::config::{AtLimit, Config, TunnelMode};
use crate::shm::Counters;
use collect::Families;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use text::serve;

/// Microseconds since the process's first call, plus one (so that 0 can mean "not
/// yet"): a monotonic clock for latencies, read by the vDSO without a system call.
pub fn now_us() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

/// One generation of workers as the metrics see it.
#[derive(Clone, Debug)]
pub struct Gen {
    /// The generation's counters.
    pub counters: Counters,
    /// Its backends, in counter-column order.
    pub backends: Vec<SocketAddr>,
    /// Its relay mode (the `mode` label of live tunnels).
    pub tunnel: TunnelMode,
    /// Its answer at the limit.
    pub at_limit: AtLimit,
    /// Worker processes (else threads).
    pub process_mode: bool,
}

impl Gen {
    /// The view of a generation running `cfg` on `counters`.
    pub fn new(cfg: &Config, counters: Counters, backends: Vec<SocketAddr>) -> Gen {
        Gen {
            counters,
            backends,
            tunnel: cfg.tunnel,
            at_limit: cfg.at_limit,
            process_mode: cfg.process_mode,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Live generations, oldest first; the last is the current one.
    gens: Vec<(u64, Gen)>,
    /// Counters of retired generations.
    retired: Families,
    next_id: u64,
    workers: usize,
    process_mode: bool,
}

/// What the metrics endpoint reads: the live generations, the retired counters, and the
/// process's own facts. Shared by the signal loop (which adds and retires generations)
/// and the metrics thread; never touched by a worker.
#[derive(Debug)]
pub struct Source {
    inner: Mutex<Inner>,
    started: SystemTime,
    reloads: AtomicU64,
}

/// A handle on a generation added to a [`Source`], to retire it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenId(u64);

impl Source {
    /// A source for a ringway started now with `workers` workers.
    pub fn new(workers: usize, process_mode: bool) -> Arc<Source> {
        Arc::new(Source {
            inner: Mutex::new(Inner {
                workers,
                process_mode,
                ..Inner::default()
            }),
            started: SystemTime::now(),
            reloads: AtomicU64::new(0),
        })
    }

    /// Add the generation that now takes new clients.
    pub fn add(&self, gen: Gen) -> GenId {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        g.workers = gen.counters.workers();
        g.process_mode = gen.process_mode;
        g.gens.push((id, gen));
        GenId(id)
    }

    /// A reload happened (a new generation was added for it).
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Generation `id` has ended: its counters join the retired totals.
    pub fn retire(&self, id: GenId) {
        let mut g = self.lock();
        if let Some(i) = g.gens.iter().position(|(x, _)| *x == id.0) {
            let (_, gen) = g.gens.remove(i);
            let fam = collect::generation(&gen);
            g.retired.add_counters(&fam);
        }
    }

    /// Every metric now.
    pub fn families(&self) -> Families {
        let g = self.lock();
        let mut all = Families::default();
        for (_, gen) in &g.gens {
            all.add_all(&collect::generation(gen));
        }
        if let Some((_, cur)) = g.gens.last() {
            collect::health(&mut all, cur);
        }
        all.add_counters(&g.retired);
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        collect::process(
            &mut all,
            started,
            self.reloads.load(Ordering::Relaxed),
            g.workers,
            g.process_mode,
        );
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

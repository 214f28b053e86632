//! Counters every worker writes and anyone reads: per-worker stats and per-(worker,
//! backend) counters, in one region of memory.
//!
//! Each worker writes only its own rows (no contention, no locks); readers sum the rows
//! (least-conn, stats). In thread mode the region is ordinary heap memory; in process mode
//! it is a `memfd` mapped `MAP_SHARED` by the master and by every worker process, so the
//! counts stay exact across processes and the master can aggregate stats and zero a dead
//! worker's rows before restarting it. Zeroed memory is a valid value for every counter.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counters (repr(C): it may live in memory shared between processes).
#[repr(C)]
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// worker_connections.
    pub slots_capacity: AtomicU64,
    /// Slots in use (listener and control fd included).
    pub slots_used: AtomicU64,
    /// Sessions alive (any state).
    pub sessions: AtomicU64,
    /// Upgraded tunnels alive.
    pub tunnels: AtomicU64,
    /// Pipes lent to tunnels with bytes in flight.
    pub pipes_in_use: AtomicU64,
    /// Pipes idle in the pool.
    pub pipes_idle: AtomicU64,
    /// Provided buffers held by tunnels (received, not yet sent).
    pub bufs_held: AtomicU64,
    /// auto: tunnel directions moved between copy and splice.
    pub relay_switches: AtomicU64,
    /// Idle upstream connections in the keep-alive pool.
    pub pooled: AtomicU64,
    /// Clients accepted (admitted or not).
    pub accepted: AtomicU64,
    /// Clients refused at the limit (503, reset, or closed).
    pub refused: AtomicU64,
    /// Requests answered with a 4xx/5xx by ringway itself.
    pub errors: AtomicU64,
    /// Clients accepted here while full and handed to a sibling with room.
    pub handed_off: AtomicU64,
    /// Set once the worker's loop has started.
    pub running: AtomicU64,
    /// Set while an accept of the worker's may still take a client: from its loop's start
    /// until a drain's accept cancels have completed (a reload waits for this, so no client
    /// reaches the old generation once the new one is announced).
    pub accepting: AtomicU64,
    /// Clients that left while their exchange waited for the backend (nginx's 499).
    pub client_gone: AtomicU64,
    /// Counters the metrics endpoint reads (issue 14).
    pub more: WorkerMore,
}

impl WorkerStats {
    /// Store a value (worker side).
    pub fn set(field: &AtomicU64, v: u64) {
        field.store(v, Ordering::Relaxed);
    }
    /// Zero the gauges of a worker that died (its connections died with it).
    pub fn reset(&self) {
        for f in [
            &self.slots_used,
            &self.sessions,
            &self.tunnels,
            &self.pipes_in_use,
            &self.pipes_idle,
            &self.bufs_held,
            &self.pooled,
            &self.running,
            &self.accepting,
        ] {
            f.store(0, Ordering::Relaxed);
        }
    }
}

/// One worker's counters for one backend.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Connections in progress or established (least-conn reads the sum over workers).
    pub active: AtomicU64,
    /// Upgraded tunnels now.
    pub tunnels: AtomicU64,
    /// Tunnels ever.
    pub tunnels_total: AtomicU64,
    /// Requests forwarded.
    pub requests_total: AtomicU64,
    /// Connect failures.
    pub failures_total: AtomicU64,
    /// Counters the metrics endpoint reads (issue 14).
    pub more: BackendMore,
}

/// One backend's health, one per backend for the whole server (not per worker): every
/// worker — and, in process mode, every worker process and the master — reads and writes
/// the same atomics, so one worker's discovery that a backend is dead protects the others.
/// Written by `health` (passive failure accounting, the active checker's verdict) and
/// read by balancing, the stats and the metrics. Kept apart from the per-worker counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BackendHealth {
    /// Failures counted since the backend was last seen well (nginx's `fails`).
    pub fails: AtomicU64,
    /// When the last failure was (health clock, ms; nginx's `accessed`).
    pub accessed_ms: AtomicU64,
    /// When it was last checked: a failure, or a client let through as a probe once
    /// `fail_timeout` had passed (nginx's `checked`).
    pub checked_ms: AtomicU64,
    /// 1 while passive accounting has it down (`max_fails` reached).
    pub down: AtomicU64,
    /// 1 while the active health check has it down.
    pub check_down: AtomicU64,
    /// Times it went down (either way).
    pub downs_total: AtomicU64,
    /// Its static flags: [`BackendHealth::BACKUP`], [`BackendHealth::CONFIG_DOWN`].
    pub flags: AtomicU64,
}

impl BackendHealth {
    /// `flags`: a `backup` server.
    pub const BACKUP: u64 = 1;
    /// `flags`: a server marked `down` in the configuration.
    pub const CONFIG_DOWN: u64 = 2;
}

/// Words of the ticket secret at the region's end.
const SECRET_WORDS: usize = 4;

/// `getrandom(2)` into `buf`, whole.
fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid writable memory of the length given.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr() as *mut libc::c_void, rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// A handle on the region (cheap to copy; the region lives as long as the process).
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    base: *mut u8,
    workers: usize,
    backends: usize,
}

// SAFETY: the region holds only atomics and is never freed while the process runs
// (leaked heap or a mapping that is never unmapped), so sharing the pointer is sound.
unsafe impl Send for Counters {}
// SAFETY: as above; all access goes through atomic types.
unsafe impl Sync for Counters {}

impl Counters {
    /// Bytes needed for `workers` × `backends` (and the generation's ticket secret).
    pub fn size(workers: usize, backends: usize) -> usize {
        Self::secret_at(workers, backends) + SECRET_WORDS * 8
    }

    fn secret_at(workers: usize, backends: usize) -> usize {
        workers * std::mem::size_of::<WorkerStats>()
            + workers * backends * std::mem::size_of::<BackendCounters>()
            + backends * std::mem::size_of::<BackendHealth>()
    }

    /// The generation's TLS session-ticket secret (`tls::tickets`): made once when the
    /// region is made, read by every worker, thread or process.
    pub fn ticket_secret(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.secret_word(i).load(Ordering::Relaxed).to_ne_bytes());
        }
        out
    }

    fn secret_word(&self, i: usize) -> &'static AtomicU64 {
        assert!(i < SECRET_WORDS);
        let off = Self::secret_at(self.workers, self.backends) + i * 8;
        // SAFETY: in bounds (`size` counts the secret's words), 8-aligned (every row before
        // it is made of AtomicU64s), zero-initialised, lives for the process.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// Fill the ticket secret with random bytes (the region's maker).
    fn make_secret(&self) -> io::Result<()> {
        let mut bytes = [0u8; SECRET_WORDS * 8];
        getrandom(&mut bytes)?;
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.secret_word(i)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        Ok(())
    }

    /// A region on the heap (thread mode). Leaked: it lives as long as the process.
    pub fn heap(workers: usize, backends: usize) -> Counters {
        let words = Self::size(workers, backends).div_ceil(8).max(1);
        let mem: &'static mut [AtomicU64] =
            Box::leak((0..words).map(|_| AtomicU64::new(0)).collect());
        let c = Counters {
            base: mem.as_mut_ptr() as *mut u8,
            workers,
            backends,
        };
        // Without randomness the secret stays zero: tickets still work, only guessable;
        // getrandom(2) failing on Linux ≥ 3.17 does not happen in practice.
        let _ = c.make_secret();
        c
    }

    /// A new shared region in a memfd (process mode, master side); returns it and the fd
    /// that worker processes inherit and map with [`Counters::map`].
    pub fn memfd(workers: usize, backends: usize) -> io::Result<(Counters, RawFd)> {
        let name = std::ffi::CString::new("ringway-counters").expect("no NUL");
        // SAFETY: a valid C string; flags are plain constants.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = Self::size(workers, backends).max(8);
        // SAFETY: fd is the memfd we just created.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let c = Self::map(fd, workers, backends)?;
        c.make_secret()?;
        Ok((c, fd))
    }

    /// Map an inherited region (worker side).
    pub fn map(fd: RawFd, workers: usize, backends: usize) -> io::Result<Counters> {
        let len = Self::size(workers, backends).max(8);
        // SAFETY: mapping a memfd of at least `len` bytes, shared, read-write; the mapping
        // is never unmapped, so the pointer stays valid for the process's life.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Counters {
            base: p as *mut u8,
            workers,
            backends,
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Number of backends.
    pub fn backends(&self) -> usize {
        self.backends
    }

    /// Worker `w`'s stats.
    pub fn worker(&self, w: usize) -> &'static WorkerStats {
        assert!(w < self.workers);
        // SAFETY: in bounds (asserted); the region is zero-initialised atomics (a valid
        // WorkerStats, which is repr(C) of AtomicU64s) and lives for the process.
        unsafe { &*(self.base.add(w * std::mem::size_of::<WorkerStats>()) as *const WorkerStats) }
    }

    /// Worker `w`'s counters for backend `b`.
    pub fn backend(&self, w: usize, b: usize) -> &'static BackendCounters {
        assert!(w < self.workers && b < self.backends);
        let off = self.workers * std::mem::size_of::<WorkerStats>()
            + (w * self.backends + b) * std::mem::size_of::<BackendCounters>();
        // SAFETY: in bounds (asserted), zero-initialised atomics, lives for the process.
        unsafe { &*(self.base.add(off) as *const BackendCounters) }
    }

    /// Backend `b`'s health (one for all workers).
    pub fn health(&self, b: usize) -> &'static BackendHealth {
        assert!(b < self.backends);
        let off = self.workers * std::mem::size_of::<WorkerStats>()
            + self.workers * self.backends * std::mem::size_of::<BackendCounters>()
            + b * std::mem::size_of::<BackendHealth>();
        // SAFETY: in bounds (asserted; `size` counts the health rows), zero-initialised
        // atomics (a valid BackendHealth, repr(C) of AtomicU64s), lives for the process.
        unsafe { &*(self.base.add(off) as *const BackendHealth) }
    }

    /// A counter of backend `b` summed over all workers.
    pub fn sum(&self, b: usize, f: impl Fn(&BackendCounters) -> &AtomicU64) -> u64 {
        (0..self.workers)
            .map(|w| f(self.backend(w, b)).load(Ordering::Relaxed))
            .sum()
    }

    /// Zero worker `w`'s rows (the master does this before restarting a dead worker:
    /// its connections died with it).
    pub fn reset_worker(&self, w: usize) {
        let st = self.worker(w);
        st.reset();
        st.more.reset();
        for b in 0..self.backends {
            let c = self.backend(w, b);
            c.active.store(0, Ordering::Relaxed);
            c.tunnels.store(0, Ordering::Relaxed);
        }
    }
}

/// Buckets of the latency histograms: upper bounds in microseconds (the last bucket,
/// `+Inf`, is implicit).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// One latency histogram: per-bucket counts (not cumulative; the last is `+Inf`) and the
/// sum in microseconds. Written by one worker only.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket of [`LATENCY_BOUNDS_US`], then `+Inf`.
    pub buckets: [AtomicU64; 15],
    /// Sum of the observations, microseconds.
    pub sum_us: AtomicU64,
}

impl Histogram {
    /// Record `us` microseconds (the owning worker only: a load and a store, no lock).
    pub fn observe(&self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, us);
    }
}

/// Add `n` to a counter only its owner writes (a relaxed load and store: no locked
/// instruction on the data path).
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// More of one worker's counters (the metrics endpoint's; zero is valid).
#[repr(C)]
#[derive(Debug, Default)]
pub struct WorkerMore {
    /// `worker_connections are not enough` episodes.
    pub not_enough_episodes: AtomicU64,
    /// Clients answered 503 at the limit (the rest of `refused` were closed at once).
    pub refused_503: AtomicU64,
    /// 1 while a pause-mode worker is full and not accepting.
    pub accept_paused: AtomicU64,
    /// Bytes relayed client → backend by tunnels.
    pub bytes_up: AtomicU64,
    /// Bytes relayed backend → client by tunnels.
    pub bytes_down: AtomicU64,
    /// HTTP responses by status class (1xx … 5xx), the backend's and ringway's own.
    pub status: [AtomicU64; 5],
    /// Upgrade requests the backend answered without a 101.
    pub upgrades_refused_backend: AtomicU64,
    /// Upgrade requests ringway answered itself with an error (no tunnel).
    pub upgrades_refused_error: AtomicU64,
    /// Tunnels that ended, by how: client closed, backend closed, idle timeout, error,
    /// shutdown.
    pub tunnel_ends: [AtomicU64; 5],
    /// HTTP requests that reached an end (answered, or closed mid-way).
    pub requests: AtomicU64,
    /// Access-log bytes written, and writes that failed.
    pub access_log_bytes: AtomicU64,
    /// Access-log writes that failed (the lines are dropped).
    pub access_log_errors: AtomicU64,
    /// TLS handshakes completed: full, resumed.
    pub tls_handshakes: [AtomicU64; 2],
    /// TLS connections that failed (a bad handshake or record).
    pub tls_failures: AtomicU64,
    /// TLS tunnels whose record layer went to the kernel (kTLS).
    pub tls_kernel: AtomicU64,
}

impl WorkerMore {
    /// Zero the gauges (a dead worker's).
    pub fn reset(&self) {
        self.accept_paused.store(0, Ordering::Relaxed);
    }
}

/// More of one worker's counters for one backend (the metrics endpoint's).
#[repr(C)]
#[derive(Debug, Default)]
pub struct BackendMore {
    /// Connect failures: refused.
    pub fail_refused: AtomicU64,
    /// Connect failures: timed out.
    pub fail_timeout: AtomicU64,
    /// Connect failures: no free local port (EADDRNOTAVAIL, not the backend's fault).
    pub fail_no_port: AtomicU64,
    /// Timeouts waiting for the response head (504).
    pub timeouts_head: AtomicU64,
    /// Response bodies that stalled past the read timeout.
    pub timeouts_body: AtomicU64,
    /// Responses by status class (1xx … 5xx).
    pub status: [AtomicU64; 5],
    /// Connect latency.
    pub connect: Histogram,
    /// From the request on an open connection to the complete response head.
    pub head: Histogram,
}

//! Per-worker counters, written by their worker only and read by anyone (relaxed atomics),
//! merged into a [`Snapshot`] on demand (SIGUSR2, exit, tests).

use crate::shm::Counters;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of one worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Worker index.
    pub worker: usize,
    /// worker_connections.
    pub slots_capacity: u64,
    /// Slots in use.
    pub slots_used: u64,
    /// Sessions alive.
    pub sessions: u64,
    /// Tunnels alive.
    pub tunnels: u64,
    /// Pipes lent out.
    pub pipes_in_use: u64,
    /// Pipes idle in the pool.
    pub pipes_idle: u64,
    /// Provided buffers held by tunnels.
    pub bufs_held: u64,
    /// auto: directions moved between copy and splice.
    pub relay_switches: u64,
    /// Idle upstream connections pooled.
    pub pooled: u64,
    /// Clients accepted.
    pub accepted: u64,
    /// Clients refused at the limit.
    pub refused: u64,
    /// Error answers.
    pub errors: u64,
    /// Clients handed to a sibling with room.
    pub handed_off: u64,
    /// Clients that left while waiting for the backend (499).
    pub client_gone: u64,
    /// TLS handshakes completed: full, resumed.
    pub tls_handshakes: [u64; 2],
    /// TLS connections that failed.
    pub tls_failures: u64,
    /// TLS tunnels whose record layer went to the kernel.
    pub tls_kernel: u64,
}

/// Per-backend counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// Address.
    pub addr: String,
    /// Active connections.
    pub active: u64,
    /// Live tunnels.
    pub tunnels: u64,
    /// Tunnels ever.
    pub tunnels_total: u64,
    /// Requests ever.
    pub requests_total: u64,
    /// Connect failures.
    pub failures_total: u64,
    /// Health, in words: `up`, `up (backup)`, `down (failures)`, `down (health check)`,
    /// `down (config)`.
    pub state: &'static str,
    /// Failures counted toward `max_fails` now.
    pub fails: u64,
    /// Times it went down.
    pub downs_total: u64,
}

/// Everything, merged.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per worker.
    pub workers: Vec<WorkerSnapshot>,
    /// Per backend.
    pub backends: Vec<BackendSnapshot>,
}

impl Snapshot {
    /// Collect from the live counters; `backends` names the counters' backend columns.
    pub fn collect(ctr: &Counters, backends: &[SocketAddr]) -> Snapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            workers: (0..ctr.workers())
                .map(|i| (i, ctr.worker(i)))
                .map(|(i, w)| WorkerSnapshot {
                    worker: i,
                    slots_capacity: g(&w.slots_capacity),
                    slots_used: g(&w.slots_used),
                    sessions: g(&w.sessions),
                    tunnels: g(&w.tunnels),
                    pipes_in_use: g(&w.pipes_in_use),
                    pipes_idle: g(&w.pipes_idle),
                    bufs_held: g(&w.bufs_held),
                    relay_switches: g(&w.relay_switches),
                    pooled: g(&w.pooled),
                    accepted: g(&w.accepted),
                    refused: g(&w.refused),
                    errors: g(&w.errors),
                    handed_off: g(&w.handed_off),
                    client_gone: g(&w.client_gone),
                    tls_handshakes: [g(&w.more.tls_handshakes[0]), g(&w.more.tls_handshakes[1])],
                    tls_failures: g(&w.more.tls_failures),
                    tls_kernel: g(&w.more.tls_kernel),
                })
                .collect(),
            backends: backends
                .iter()
                .enumerate()
                .map(|(b, addr)| BackendSnapshot {
                    addr: addr.to_string(),
                    active: ctr.sum(b, |c| &c.active),
                    tunnels: ctr.sum(b, |c| &c.tunnels),
                    tunnels_total: ctr.sum(b, |c| &c.tunnels_total),
                    requests_total: ctr.sum(b, |c| &c.requests_total),
                    failures_total: ctr.sum(b, |c| &c.failures_total),
                    state: crate::health::describe(ctr.health(b)),
                    fails: g(&ctr.health(b).fails),
                    downs_total: g(&ctr.health(b).downs_total),
                })
                .collect(),
        }
    }

    /// Tunnels alive over all workers.
    pub fn tunnels(&self) -> u64 {
        self.workers.iter().map(|w| w.tunnels).sum()
    }

    /// Sessions alive over all workers.
    pub fn sessions(&self) -> u64 {
        self.workers.iter().map(|w| w.sessions).sum()
    }

    /// The log lines for SIGUSR2 and exit.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for w in &self.workers {
            let _ = writeln!(
                s,
                "stats: worker {}: slots {} used / {} free of {} (2 reserved), sessions {}, tunnels {}, pipes {} in use / {} idle, buffers held {}, relay switches {}, pooled upstream {}, accepted {}, handed to siblings {}, refused at limit {}, error answers {}, clients gone while waiting (499) {}, TLS handshakes {} full / {} resumed, TLS failures {}, kTLS tunnels {}",
                w.worker,
                w.slots_used,
                w.slots_capacity.saturating_sub(w.slots_used),
                w.slots_capacity,
                w.sessions,
                w.tunnels,
                w.pipes_in_use,
                w.pipes_idle,
                w.bufs_held,
                w.relay_switches,
                w.pooled,
                w.accepted,
                w.handed_off,
                w.refused,
                w.errors,
                w.client_gone,
                w.tls_handshakes[0],
                w.tls_handshakes[1],
                w.tls_failures,
                w.tls_kernel
            );
        }
        for b in &self.backends {
            let _ = writeln!(
                s,
                "stats: backend {}: live tunnels {}, active {}, tunnels total {}, requests total {}, connect failures {}, health {}, failures counted {}, went down {} time(s)",
                b.addr, b.tunnels, b.active, b.tunnels_total, b.requests_total, b.failures_total, b.state, b.fails, b.downs_total
            );
        }
        s
    }
}

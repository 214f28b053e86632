//! Rows of counters → metric families: every metric's name, help and type in one table
//! ([`METRICS`]), and the values read from one generation's counters.
//!
//! Counter names are written without `_total` (the exposition adds it, as OpenMetrics
//! says). Per-worker metrics carry `worker="N"`, per-backend ones `backend="ADDR"`.

use super::Gen;
use crate::config::{AsFlag, AtLimit};
use crate::shm::{Counters, Histogram, LATENCY_BOUNDS_US};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts count as resets).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A latency histogram in seconds.
    Histogram,
}

/// Every metric: name, type, help. Rendered in this order.
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("ringway_build_info", Kind::Gauge, "Version and commit of the running binary (always 1)."),
    ("ringway_start_time_seconds", Kind::Gauge, "When ringway started, seconds since the Unix epoch."),
    ("ringway_reloads", Kind::Counter, "Reloads applied (a new generation of workers each)."),
    ("ringway_workers", Kind::Gauge, "Workers of the current generation, by worker mode."),
    ("ringway_worker_slots", Kind::Gauge, "worker_connections of the worker (its budget of slots)."),
    ("ringway_worker_slots_used", Kind::Gauge, "Slots in use (listener and control channel included)."),
    ("ringway_worker_slots_free", Kind::Gauge, "Slots free."),
    ("ringway_worker_not_enough_episodes", Kind::Counter, "'worker_connections are not enough' episodes (logged once each)."),
    ("ringway_worker_refused", Kind::Counter, "Clients refused at the limit, by reason (503 answered, reset: closed at once)."),
    ("ringway_worker_accept_paused", Kind::Gauge, "1 while a full worker (--at-limit pause) does not accept."),
    ("ringway_worker_handoffs", Kind::Counter, "Clients accepted while full and handed to a sibling worker with room."),
    ("ringway_accepted", Kind::Counter, "Client connections accepted (admitted or not)."),
    ("ringway_sessions", Kind::Gauge, "Sessions alive (any state)."),
    ("ringway_tunnels", Kind::Gauge, "Upgraded tunnels alive, by relay mode."),
    ("ringway_tunnels_opened", Kind::Counter, "Tunnels opened (101 relayed)."),
    ("ringway_tunnels_closed", Kind::Counter, "Tunnels ended, by how: client_close, backend_close, timeout, error, shutdown."),
    ("ringway_tunnel_bytes", Kind::Counter, "Bytes relayed by tunnels, by direction."),
    ("ringway_http_requests", Kind::Counter, "HTTP requests that reached an end (answered or closed)."),
    ("ringway_http_responses", Kind::Counter, "HTTP responses by status class (the backend's and ringway's own)."),
    ("ringway_own_answers", Kind::Counter, "Answers ringway gave itself (400, 408, 417, 431, 502, 503, 504)."),
    ("ringway_upgrades_refused", Kind::Counter, "Upgrade requests that did not become a tunnel, by reason (backend_status: the backend did not answer 101; error: ringway answered an error)."),
    ("ringway_pipes", Kind::Gauge, "Splice pipes, in use (bytes in flight) or idle in the pool."),
    ("ringway_relay_buffers_held", Kind::Gauge, "Provided buffers held by copy-mode tunnel directions."),
    ("ringway_relay_switches", Kind::Counter, "auto relay: tunnel directions moved between copy and splice."),
    ("ringway_upstream_pooled", Kind::Gauge, "Idle upstream connections in the keep-alive pool."),
    ("ringway_access_log_write_errors", Kind::Counter, "Access-log writes that failed (their lines are lost)."),
    ("ringway_tls_handshakes", Kind::Counter, "TLS handshakes completed, by kind: full, resumed."),
    ("ringway_tls_failures", Kind::Counter, "TLS connections that failed (a bad handshake or record; each logged at info)."),
    ("ringway_tls_kernel_tunnels", Kind::Counter, "TLS tunnels whose record layer went to the kernel (kTLS)."),
    ("ringway_backend_tunnels", Kind::Gauge, "Tunnels alive to the backend."),
    ("ringway_backend_active", Kind::Gauge, "Connections to the backend in progress or established (least-conn's count)."),
    ("ringway_backend_tunnels_opened", Kind::Counter, "Tunnels opened to the backend."),
    ("ringway_backend_requests", Kind::Counter, "Requests forwarded to the backend."),
    ("ringway_backend_connect_failures", Kind::Counter, "Failed connects to the backend, by kind: refused, timeout, no_local_port, other."),
    ("ringway_backend_timeouts", Kind::Counter, "Read timeouts of the backend, by phase: response_head (504), response_body (closed)."),
    ("ringway_backend_responses", Kind::Counter, "Responses from the backend by status class."),
    ("ringway_backend_connect_seconds", Kind::Histogram, "Time to connect to the backend."),
    ("ringway_backend_response_head_seconds", Kind::Histogram, "From sending the request on an open connection to the complete response head."),
    ("ringway_backend_up", Kind::Gauge, "1 while the backend takes new clients; 0 while it is down (by failures, the health check, or `down` in the configuration)."),
    ("ringway_backend_fails", Kind::Gauge, "Failures counted against max_fails since the backend was last seen well."),
    ("ringway_backend_downs", Kind::Counter, "Times the backend went down (by failures or by the health check)."),
];

/// The backends' health as the current generation (`gen`) sees it: gauges of one
/// generation, not summed over those still draining.
pub fn health(f: &mut Families, gen: &Gen) {
    let c = &gen.counters;
    for (b, addr) in gen.backends.iter().enumerate().take(c.backends()) {
        let h = c.health(b);
        let up = !crate::health::describe(h).starts_with("down");
        let bl = || vec![("backend", addr.to_string())];
        f.n("ringway_backend_up", bl(), u64::from(up));
        f.n("ringway_backend_fails", bl(), g(&h.fails));
    }
}

/// Labels of one series, in order.
pub type Labels = Vec<(&'static str, String)>;

/// One series' value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter or gauge.
    N(f64),
    /// A histogram: per-bucket counts (the last `+Inf`), sum in microseconds.
    H([u64; 15], u64),
}

/// Every series, by metric name, then labels.
#[derive(Clone, Debug, Default)]
pub struct Families {
    /// name → labels → value.
    pub rows: BTreeMap<&'static str, BTreeMap<Labels, Value>>,
}

/// The type of metric `name` (from [`METRICS`]).
pub fn kind_of(name: &str) -> Kind {
    METRICS
        .iter()
        .find(|m| m.0 == name)
        .map_or(Kind::Gauge, |m| m.1)
}

impl Families {
    /// Add `v` to series `name{labels}`.
    pub fn put(&mut self, name: &'static str, labels: Labels, v: Value) {
        let slot = self.rows.entry(name).or_default().entry(labels);
        match slot {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => match (e.get_mut(), v) {
                (Value::N(a), Value::N(b)) => *a += b,
                (Value::H(a, s), Value::H(b, t)) => {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    *s += t;
                }
                (slot, v) => *slot = v,
            },
        }
    }

    fn n(&mut self, name: &'static str, labels: Labels, v: u64) {
        self.put(name, labels, Value::N(v as f64));
    }

    /// Add every series of `other`.
    pub fn add_all(&mut self, other: &Families) {
        for (name, rows) in &other.rows {
            for (l, v) in rows {
                self.put(name, l.clone(), v.clone());
            }
        }
    }

    /// Add the counters and histograms of `other` (a retired generation's: its gauges
    /// are gone with it).
    pub fn add_counters(&mut self, other: &Families) {
        for (name, rows) in &other.rows {
            if kind_of(name) == Kind::Gauge {
                continue;
            }
            for (l, v) in rows {
                self.put(name, l.clone(), v.clone());
            }
        }
    }

    /// The value of `name{labels}` (tests, `top`), 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.rows
            .get(name)
            .and_then(|r| {
                r.iter().find(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                })
            })
            .map_or(0.0, |(_, v)| match v {
                Value::N(n) => *n,
                Value::H(b, _) => b.iter().sum::<u64>() as f64,
            })
    }
}

fn g(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn hist(h: &Histogram) -> Value {
    let mut b = [0u64; 15];
    for (x, a) in b.iter_mut().zip(&h.buckets) {
        *x = g(a);
    }
    Value::H(b, g(&h.sum_us))
}

/// Upper bounds of the histogram buckets in seconds (without `+Inf`).
pub fn bounds_seconds() -> Vec<f64> {
    LATENCY_BOUNDS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .collect()
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// How a tunnel ended, in the order of `WorkerMore::tunnel_ends`.
pub const ENDS: [&str; 5] = [
    "client_close",
    "backend_close",
    "timeout",
    "error",
    "shutdown",
];

/// Every per-worker and per-backend series of one generation.
pub fn generation(gen: &Gen) -> Families {
    let mut f = Families::default();
    let c: &Counters = &gen.counters;
    let mode = gen.tunnel.as_flag().to_string();
    for w in 0..c.workers() {
        let s = c.worker(w);
        let m = &s.more;
        let wl = || vec![("worker", w.to_string())];
        let with = |k: &'static str, v: &str| vec![("worker", w.to_string()), (k, v.to_string())];
        let cap = g(&s.slots_capacity);
        let used = g(&s.slots_used);
        f.n("ringway_worker_slots", wl(), cap);
        f.n("ringway_worker_slots_used", wl(), used);
        f.n("ringway_worker_slots_free", wl(), cap.saturating_sub(used));
        f.n(
            "ringway_worker_not_enough_episodes",
            wl(),
            g(&m.not_enough_episodes),
        );
        let refused = g(&s.refused);
        let r503 = g(&m.refused_503);
        if gen.at_limit == AtLimit::Reply503 {
            f.n("ringway_worker_refused", with("reason", "503"), r503);
        }
        f.n(
            "ringway_worker_refused",
            with("reason", "reset"),
            refused.saturating_sub(r503),
        );
        f.n("ringway_worker_accept_paused", wl(), g(&m.accept_paused));
        f.n("ringway_worker_handoffs", wl(), g(&s.handed_off));
        f.n("ringway_accepted", wl(), g(&s.accepted));
        f.n("ringway_sessions", wl(), g(&s.sessions));
        f.n("ringway_tunnels", with("mode", &mode), g(&s.tunnels));
        let opened: u64 = (0..c.backends())
            .map(|b| g(&c.backend(w, b).tunnels_total))
            .sum();
        f.n("ringway_tunnels_opened", wl(), opened);
        for (i, end) in ENDS.iter().enumerate() {
            f.n(
                "ringway_tunnels_closed",
                with("end", end),
                g(&m.tunnel_ends[i]),
            );
        }
        f.n(
            "ringway_tunnel_bytes",
            with("direction", "client_to_backend"),
            g(&m.bytes_up),
        );
        f.n(
            "ringway_tunnel_bytes",
            with("direction", "backend_to_client"),
            g(&m.bytes_down),
        );
        f.n("ringway_http_requests", wl(), g(&m.requests));
        for (i, class) in CLASSES.iter().enumerate() {
            f.n(
                "ringway_http_responses",
                with("class", class),
                g(&m.status[i]),
            );
        }
        f.n("ringway_own_answers", wl(), g(&s.errors));
        f.n(
            "ringway_upgrades_refused",
            with("reason", "backend_status"),
            g(&m.upgrades_refused_backend),
        );
        f.n(
            "ringway_upgrades_refused",
            with("reason", "error"),
            g(&m.upgrades_refused_error),
        );
        f.n("ringway_pipes", with("state", "in_use"), g(&s.pipes_in_use));
        f.n("ringway_pipes", with("state", "idle"), g(&s.pipes_idle));
        f.n("ringway_relay_buffers_held", wl(), g(&s.bufs_held));
        f.n("ringway_relay_switches", wl(), g(&s.relay_switches));
        f.n("ringway_upstream_pooled", wl(), g(&s.pooled));
        f.n(
            "ringway_access_log_write_errors",
            wl(),
            g(&m.access_log_errors),
        );
        f.n(
            "ringway_tls_handshakes",
            with("kind", "full"),
            g(&m.tls_handshakes[0]),
        );
        f.n(
            "ringway_tls_handshakes",
            with("kind", "resumed"),
            g(&m.tls_handshakes[1]),
        );
        f.n("ringway_tls_failures", wl(), g(&m.tls_failures));
        f.n("ringway_tls_kernel_tunnels", wl(), g(&m.tls_kernel));
    }
    for (b, addr) in gen.backends.iter().enumerate().take(c.backends()) {
        let bl = || vec![("backend", addr.to_string())];
        let with =
            |k: &'static str, v: &str| vec![("backend", addr.to_string()), (k, v.to_string())];
        let sum = |f: fn(&crate::shm::BackendCounters) -> &AtomicU64| c.sum(b, f);
        f.n("ringway_backend_tunnels", bl(), sum(|x| &x.tunnels));
        f.n("ringway_backend_active", bl(), sum(|x| &x.active));
        f.n(
            "ringway_backend_tunnels_opened",
            bl(),
            sum(|x| &x.tunnels_total),
        );
        f.n("ringway_backend_requests", bl(), sum(|x| &x.requests_total));
        f.n("ringway_backend_downs", bl(), g(&c.health(b).downs_total));
        let total = sum(|x| &x.failures_total);
        let refused = sum(|x| &x.more.fail_refused);
        let timeout = sum(|x| &x.more.fail_timeout);
        let no_port = sum(|x| &x.more.fail_no_port);
        f.n(
            "ringway_backend_connect_failures",
            with("kind", "refused"),
            refused,
        );
        f.n(
            "ringway_backend_connect_failures",
            with("kind", "timeout"),
            timeout,
        );
        f.n(
            "ringway_backend_connect_failures",
            with("kind", "no_local_port"),
            no_port,
        );
        f.n(
            "ringway_backend_connect_failures",
            with("kind", "other"),
            total.saturating_sub(refused + timeout + no_port),
        );
        f.n(
            "ringway_backend_timeouts",
            with("phase", "response_head"),
            sum(|x| &x.more.timeouts_head),
        );
        f.n(
            "ringway_backend_timeouts",
            with("phase", "response_body"),
            sum(|x| &x.more.timeouts_body),
        );
        for w in 0..c.workers() {
            let bc = c.backend(w, b);
            for (i, class) in CLASSES.iter().enumerate() {
                f.n(
                    "ringway_backend_responses",
                    with("class", class),
                    g(&bc.more.status[i]),
                );
            }
            f.put(
                "ringway_backend_connect_seconds",
                bl(),
                hist(&bc.more.connect),
            );
            f.put(
                "ringway_backend_response_head_seconds",
                bl(),
                hist(&bc.more.head),
            );
        }
    }
    f
}

/// The process's own series.
pub fn process(f: &mut Families, started: f64, reloads: u64, workers: usize, process_mode: bool) {
    f.put(
        "ringway_build_info",
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "commit",
                option_env!("RINGWAY_COMMIT")
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ],
        Value::N(1.0),
    );
    f.put(
        "ringway_start_time_seconds",
        vec![],
        Value::N(started.floor()),
    );
    f.put("ringway_reloads", vec![], Value::N(reloads as f64));
    let mode = if process_mode { "process" } else { "thread" };
    f.put(
        "ringway_workers",
        vec![("mode", mode.to_string())],
        Value::N(workers as f64),
    );
}

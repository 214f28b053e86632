//! Backend health: passive failure accounting with nginx's `max_fails` / `fail_timeout`
//! semantics — but one state for the whole server, in the shared region
//! ([`BackendHealth`]), so one worker's discovery protects every worker and process
//! (nginx keeps it per worker unless a `zone` is configured) — and the verdicts of the
//! optional active checks ([`check`]).
//!
//! Passive, as nginx: a failed connect, a connect timeout, a reset or close before the
//! response head, a response-head timeout or a `502`/`504` from the backend is a failure:
//! `fails += 1`, and the failure time is both `accessed` and `checked`. A backend with
//! `fails >= max_fails` is skipped until `fail_timeout` has passed since `checked`; then
//! the first client that picks it takes the probe (a compare-and-swap of `checked`, so
//! exactly one client across all workers) and the others keep skipping it for another
//! `fail_timeout`. A good response head on a connection picked after the last check
//! (`accessed < checked`) clears `fails`. A group of one server is never marked down
//! (nginx's `single`). Each transition (down, up again) is logged once, by the worker
//! whose swap made it.

pub mod check;

use crate::config::ServerParams;
use crate::shm::BackendHealth;
use std::sync::atomic::Ordering::Relaxed;

/// Milliseconds of CLOCK_MONOTONIC: one clock for every thread and process of the box.
pub fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Whether a backend may take a new client now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// Yes.
    Up,
    /// Down by failures, but `fail_timeout` has passed: one client may probe it (the one
    /// that wins [`claim`]); `checked` as seen.
    Probe(u64),
    /// No: `down` in the configuration, down by the active check, or by failures within
    /// `fail_timeout`.
    Out,
}

/// Backend state for picking; `passive` false for a group of one (never marked down).
pub fn live(h: &BackendHealth, p: &ServerParams, passive: bool, now: u64) -> Live {
    if p.down || h.check_down.load(Relaxed) != 0 {
        return Live::Out;
    }
    if !passive || p.max_fails == 0 || h.fails.load(Relaxed) < p.max_fails as u64 {
        return Live::Up;
    }
    let checked = h.checked_ms.load(Relaxed);
    if now.saturating_sub(checked) > p.fail_timeout.as_millis() as u64 {
        Live::Probe(checked)
    } else {
        Live::Out
    }
}

/// A backend was picked: take the probe when one is due (`checked` moves to now). For a
/// [`Live::Probe`] pick, false means another client took it first (pick again); an
/// [`Live::Up`] pick only refreshes `checked` once `fail_timeout` has passed, so a
/// success clears old failures, as nginx does.
pub fn claim(h: &BackendHealth, p: &ServerParams, state: Live, now: u64) -> bool {
    match state {
        Live::Out => false,
        Live::Probe(seen) => h
            .checked_ms
            .compare_exchange(seen, now, Relaxed, Relaxed)
            .is_ok(),
        Live::Up => {
            let c = h.checked_ms.load(Relaxed);
            if h.fails.load(Relaxed) > 0
                && now.saturating_sub(c) > p.fail_timeout.as_millis() as u64
            {
                let _ = h.checked_ms.compare_exchange(c, now, Relaxed, Relaxed);
            }
            true
        }
    }
}

/// A failure of the backend. Returns true when it made the backend go down (log it).
pub fn failed(h: &BackendHealth, p: &ServerParams, passive: bool, now: u64) -> bool {
    if !passive || p.max_fails == 0 {
        return false;
    }
    let fails = h.fails.fetch_add(1, Relaxed) + 1;
    h.accessed_ms.store(now, Relaxed);
    h.checked_ms.store(now, Relaxed);
    if fails >= p.max_fails as u64 && h.down.swap(1, Relaxed) == 0 {
        h.downs_total.fetch_add(1, Relaxed);
        return true;
    }
    false
}

/// A good response head from the backend. Returns true when it brought the backend back
/// up (log it).
pub fn succeeded(h: &BackendHealth) -> bool {
    if h.fails.load(Relaxed) == 0 {
        return false;
    }
    if h.accessed_ms.load(Relaxed) >= h.checked_ms.load(Relaxed) {
        // Picked before the last failure: it says nothing about the backend now.
        return false;
    }
    h.fails.store(0, Relaxed);
    h.down.swap(0, Relaxed) == 1
}

/// The state in words, for the stats.
pub fn describe(h: &BackendHealth) -> &'static str {
    let flags = h.flags.load(Relaxed);
    if flags & BackendHealth::CONFIG_DOWN != 0 {
        "down (config)"
    } else if h.check_down.load(Relaxed) != 0 {
        "down (health check)"
    } else if h.down.load(Relaxed) != 0 {
        "down (failures)"
    } else if flags & BackendHealth::BACKUP != 0 {
        "up (backup)"
    } else {
        "up"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nginx_semantics_with_one_probe() {
        let h = BackendHealth::default();
        let p = ServerParams {
            max_fails: 2,
            fail_timeout: Duration::from_secs(10),
            ..ServerParams::default()
        };
        let t = 1_000_000;
        assert_eq!(live(&h, &p, true, t), Live::Up);
        assert!(!failed(&h, &p, true, t));
        assert_eq!(live(&h, &p, true, t), Live::Up, "1 of 2 failures");
        assert!(failed(&h, &p, true, t + 1), "the second one takes it down");
        assert_eq!(live(&h, &p, true, t + 5_000), Live::Out);
        let s = live(&h, &p, true, t + 10_002);
        assert_eq!(s, Live::Probe(t + 1));
        assert!(claim(&h, &p, s, t + 10_002), "one probe");
        assert!(!claim(&h, &p, s, t + 10_003), "and only one");
        assert_eq!(live(&h, &p, true, t + 10_003), Live::Out);
        assert!(succeeded(&h), "the probe's success brings it back");
        assert_eq!(live(&h, &p, true, t + 10_004), Live::Up);
        assert_eq!(h.downs_total.load(Relaxed), 1);
        // A group of one is never marked down; `down` is always out.
        assert!(!failed(&h, &p, false, t));
        let d = ServerParams { down: true, ..p };
        assert_eq!(live(&h, &d, true, t), Live::Out);
    }
}

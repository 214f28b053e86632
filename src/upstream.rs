//! Backends and balancing policies.
//!
//! The backend table is shared read-only by all workers. What balancing must see across
//! workers — least-conn's active counts — is one atomic per (worker, backend) in
//! [`Counters`], written by its worker only and summed by readers (relaxed: a balancing
//! decision tolerates a momentarily stale count; no lock is taken
//! on the data path). Round robin is per worker, as in nginx where each worker process
//! keeps its own position.

use crate::config::Balance;
use crate::shm::Counters;
use std::net::{IpAddr, SocketAddr};

/// The backend table and the counters balancing reads.
#[derive(Debug)]
pub struct Upstreams {
    /// Backend addresses in configuration order.
    pub addrs: Vec<SocketAddr>,
    /// The policy.
    pub balance: Balance,
    /// Per-(worker, backend) counters; least-conn sums a backend's column.
    pub counters: Counters,
}

impl Upstreams {
    /// Build the table over `counters` (which must have a column per address).
    pub fn new(addrs: &[SocketAddr], balance: Balance, counters: Counters) -> Upstreams {
        assert_eq!(counters.backends(), addrs.len());
        Upstreams {
            addrs: addrs.to_vec(),
            balance,
            counters,
        }
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Pick the first backend to try for a client. `rr` is the worker's round-robin cursor.
    pub fn pick(&self, rr: &mut usize, client: IpAddr) -> usize {
        let n = self.addrs.len();
        match self.balance {
            Balance::RoundRobin => {
                let i = *rr % n;
                *rr = rr.wrapping_add(1);
                i
            }
            Balance::LeastConn => {
                // Fewest active over all workers; ties broken round robin so equal
                // backends share evenly.
                let start = *rr % n;
                *rr = rr.wrapping_add(1);
                let mut best = start;
                let mut best_n = u64::MAX;
                for k in 0..n {
                    let i = (start + k) % n;
                    let a = self.counters.sum(i, |c| &c.active);
                    if a < best_n {
                        best = i;
                        best_n = a;
                    }
                }
                best
            }
            Balance::IpHash => (hash_ip(client) % n as u64) as usize,
        }
    }

    /// The backend to try after `i` failed: the next one in order.
    pub fn next_after(&self, i: usize) -> usize {
        (i + 1) % self.addrs.len()
    }
}

/// FNV-1a over the whole address (all 4 or 16 octets), then a final mix so nearby
/// addresses spread. Stable across runs and processes.
pub fn hash_ip(ip: IpAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match ip {
        IpAddr::V4(v4) => v4.octets().iter().for_each(|&b| eat(b)),
        IpAddr::V6(v6) => v6.octets().iter().for_each(|&b| eat(b)),
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn ups(n: usize, b: Balance) -> Upstreams {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect();
        Upstreams::new(&addrs, b, Counters::heap(2, n))
    }

    #[test]
    fn round_robin_is_exact() {
        let u = ups(4, Balance::RoundRobin);
        let mut rr = 0;
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[u.pick(&mut rr, "127.0.0.1".parse().unwrap())] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn least_conn_prefers_idle() {
        let u = ups(3, Balance::LeastConn);
        u.counters.backend(0, 0).active.store(3, Ordering::Relaxed);
        u.counters.backend(1, 0).active.store(2, Ordering::Relaxed);
        u.counters.backend(1, 1).active.store(1, Ordering::Relaxed);
        u.counters.backend(0, 2).active.store(3, Ordering::Relaxed);
        let mut rr = 0;
        assert_eq!(u.pick(&mut rr, "127.0.0.1".parse().unwrap()), 1);
    }

    #[test]
    fn ip_hash_uses_whole_address() {
        let u = ups(4, Balance::IpHash);
        let mut rr = 0;
        let mut seen = std::collections::HashSet::new();
        for last in 1..=64u8 {
            let ip: IpAddr = format!("127.0.0.{last}").parse().unwrap();
            let a = u.pick(&mut rr, ip);
            assert_eq!(a, u.pick(&mut rr, ip), "stable per address");
            seen.insert(a);
        }
        assert_eq!(seen.len(), 4, "one /24 spreads over all backends");
    }
}

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
use std::ops::Range;

/// One upstream group's share of the backend table: a range of it and its policy.
#[derive(Debug)]
pub struct Group {
    /// Its backends (indices into [`Upstreams::addrs`]).
    pub range: Range<usize>,
    /// The policy.
    pub balance: Balance,
    /// Ketama ring over the group's backends: (point, backend), sorted by point.
    ring: Vec<(u64, u16)>,
}

/// The backend table of every upstream group and the counters balancing reads.
#[derive(Debug)]
pub struct Upstreams {
    /// Backend addresses: every group's, one after the other.
    pub addrs: Vec<SocketAddr>,
    /// The policy of the first group (the only one of a configuration without routing).
    pub balance: Balance,
    /// Per-(worker, backend) counters; least-conn sums a backend's column.
    pub counters: Counters,
    /// Stable id per backend (a hash of its address): the sticky cookie's value, so adding
    /// or removing a backend does not re-pin anyone else's clients.
    pub ids: Vec<u32>,
    /// The groups (one without routing).
    pub groups: Vec<Group>,
    /// Per backend: its group.
    group_of: Vec<u16>,
}

/// Points per backend on the consistent-hash ring (ketama uses 160).
const POINTS: usize = 160;

/// The stable id of a backend address.
pub fn backend_id(addr: &SocketAddr) -> u32 {
    let h = crate::hash::fnv1a(addr.to_string().as_bytes());
    (h ^ (h >> 32)) as u32
}

impl Upstreams {
    /// One group over all of `addrs`, balanced by `balance`, over `counters` (which must
    /// have a column per address).
    pub fn new(addrs: &[SocketAddr], balance: Balance, counters: Counters) -> Upstreams {
        Upstreams::with_groups(addrs, &[(0..addrs.len(), balance)], counters)
    }

    /// Groups `groups` (ranges of `addrs`, each with its policy).
    pub fn with_groups(
        addrs: &[SocketAddr],
        groups: &[(Range<usize>, Balance)],
        counters: Counters,
    ) -> Upstreams {
        assert_eq!(counters.backends(), addrs.len());
        let mut group_of = vec![0u16; addrs.len()];
        let groups: Vec<Group> = groups
            .iter()
            .enumerate()
            .map(|(gi, (range, balance))| {
                let mut ring = Vec::with_capacity(range.len() * POINTS);
                for i in range.clone() {
                    group_of[i] = gi as u16;
                    let a = addrs[i];
                    for p in 0..POINTS {
                        ring.push((
                            mix(crate::hash::fnv1a(format!("{a}#{p}").as_bytes())),
                            i as u16,
                        ));
                    }
                }
                ring.sort_unstable();
                Group {
                    range: range.clone(),
                    balance: *balance,
                    ring,
                }
            })
            .collect();
        Upstreams {
            addrs: addrs.to_vec(),
            balance: groups.first().map_or(Balance::RoundRobin, |g| g.balance),
            counters,
            ids: addrs.iter().map(backend_id).collect(),
            groups,
            group_of,
        }
    }

    /// The group of backend `b`.
    pub fn group_of(&self, b: usize) -> usize {
        self.group_of.get(b).copied().unwrap_or(0) as usize
    }

    /// The backend of group `g` whose sticky id is `id`, if any.
    pub fn by_id_in(&self, g: usize, id: u32) -> Option<usize> {
        let r = self.groups[g].range.clone();
        self.ids[r.clone()]
            .iter()
            .position(|&x| x == id)
            .map(|i| r.start + i)
    }

    /// The backend whose sticky id is `id` in the first group, if any.
    pub fn by_id(&self, id: u32) -> Option<usize> {
        self.by_id_in(0, id)
    }

    /// Group `g`'s first ring point at or after `key` (wrapping): the consistent-hash choice.
    pub fn ring_pick_in(&self, g: usize, key: u64) -> usize {
        let ring = &self.groups[g].ring;
        let k = mix(key);
        let i = ring.partition_point(|&(p, _)| p < k);
        ring[i % ring.len()].1 as usize
    }

    /// [`Upstreams::ring_pick_in`] for the first group.
    pub fn ring_pick(&self, key: u64) -> usize {
        self.ring_pick_in(0, key)
    }

    /// Number of backends (every group's).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Pick the first backend of group `g` to try for a client. `rr` is the worker's
    /// round-robin cursor for that group.
    pub fn pick_in(&self, g: usize, rr: &mut usize, client: IpAddr) -> usize {
        let group = &self.groups[g];
        let (base, n) = (group.range.start, group.range.len());
        match group.balance {
            Balance::RoundRobin => {
                let i = *rr % n;
                *rr = rr.wrapping_add(1);
                base + i
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
                    let a = self.counters.sum(base + i, |c| &c.active);
                    if a < best_n {
                        best = i;
                        best_n = a;
                    }
                }
                base + best
            }
            Balance::IpHash => base + (hash_ip(client) % n as u64) as usize,
            // The key `--hash-key remote_addr` yields when no request was parsed.
            Balance::Hash => self.ring_pick_in(g, crate::hash::fnv1a_ip(client)),
        }
    }

    /// [`Upstreams::pick_in`] for the first group.
    pub fn pick(&self, rr: &mut usize, client: IpAddr) -> usize {
        self.pick_in(0, rr, client)
    }

    /// Pick in group `g` for a parsed request: its sticky cookie's backend if it names
    /// one of the group's, else the consistent hash of its key (policy `hash`), else the
    /// policy.
    pub fn pick_for(
        &self,
        g: usize,
        rr: &mut usize,
        client: IpAddr,
        info: &crate::http::RequestInfo,
    ) -> usize {
        if let Some(b) = info.sticky.and_then(|id| self.by_id_in(g, id)) {
            return b;
        }
        match (self.groups[g].balance, info.hash) {
            (Balance::Hash, Some(h)) => self.ring_pick_in(g, h),
            _ => self.pick_in(g, rr, client),
        }
    }

    /// The backend to try after `i` failed: the next one of its group, in order.
    pub fn next_after(&self, i: usize) -> usize {
        let r = &self.groups[self.group_of(i)].range;
        r.start + (i - r.start + 1) % r.len()
    }

    /// How many backends the group of backend `i` has.
    pub fn group_len(&self, i: usize) -> usize {
        self.groups[self.group_of(i)].range.len()
    }
}

/// splitmix64 finaliser: spreads FNV's low-entropy high bits over the ring.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// FNV-1a over the whole address (all 4 or 16 octets), then a final mix so nearby
/// addresses spread. Stable across runs and processes.
pub fn hash_ip(ip: IpAddr) -> u64 {
    mix(crate::hash::fnv1a_ip(ip))
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
    fn consistent_hash_moves_only_the_new_backends_share() {
        let a = ups(4, Balance::Hash);
        let addrs: Vec<SocketAddr> = (0..5)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect();
        let b = Upstreams::new(&addrs, Balance::Hash, Counters::heap(1, 5));
        let mut moved = 0;
        let mut counts = [0usize; 5];
        for k in 0..10_000u64 {
            let key = crate::hash::fnv1a(&k.to_le_bytes());
            let (x, y) = (a.ring_pick(key), b.ring_pick(key));
            counts[y] += 1;
            if x != y {
                moved += 1;
                assert_eq!(y, 4, "a key only ever moves to the added backend");
            }
        }
        // About a fifth of the keys move; every backend gets a fair share.
        assert!((1_200..2_800).contains(&moved), "{moved}");
        assert!(
            counts.iter().all(|&c| (1_200..2_800).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn sticky_ids_are_stable_and_distinct() {
        let u = ups(4, Balance::RoundRobin);
        let set: std::collections::HashSet<_> = u.ids.iter().collect();
        assert_eq!(set.len(), 4);
        assert_eq!(u.by_id(u.ids[2]), Some(2));
        assert_eq!(backend_id(&u.addrs[2]), u.ids[2]);
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

//! Backends and balancing policies, with nginx's server parameters: `weight=` (smooth
//! weighted round robin as nginx's, least-conn by active/weight, ip-hash over the
//! weights, ketama points in proportion to weight), `backup` (used only when every
//! primary of its group is down) and `down` (never used, kept in the table so hashes do
//! not move).
//!
//! The backend table is shared read-only by all workers. What balancing must see across
//! workers — least-conn's active counts, each backend's health — lives in [`Counters`]'
//! shared region (relaxed atomics: a balancing decision tolerates a momentarily stale
//! value; no lock is taken on the data path). Round robin is per worker ([`Cursors`]), as
//! in nginx where each worker process keeps its own position. A pick skips backends that
//! [`crate::health`] says are out, and lets exactly one client probe a backend whose
//! `fail_timeout` has passed.

use crate::config::{Balance, ServerParams};
use crate::health::{self, Live};
use crate::shm::{BackendHealth, Counters};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;

/// One upstream group's share of the backend table: a range of it and its policy.
#[derive(Debug)]
pub struct Group {
    /// Its backends (indices into [`Upstreams::addrs`]).
    pub range: Range<usize>,
    /// The policy.
    pub balance: Balance,
    /// Ketama ring over the group's backends: (point, backend), sorted by point.
    ring: Vec<(u64, u16)>,
    /// One server: never marked down by failures (nginx's `single`).
    single: bool,
}

/// A worker's balancing state: per group the round-robin position (least-conn's tie
/// breaker), per backend the smooth weighted round robin's current weight.
#[derive(Clone, Debug, Default)]
pub struct Cursors {
    rr: Vec<usize>,
    cw: Vec<i64>,
}

impl Cursors {
    /// Worker `offset`'s cursors: each worker starts `offset` picks along, so that
    /// workers do not all send their first clients to the same backend.
    pub fn new(ups: &Upstreams, offset: usize) -> Cursors {
        let mut c = Cursors {
            rr: vec![offset; ups.groups.len()],
            cw: vec![0; ups.len()],
        };
        for g in 0..ups.groups.len() {
            for _ in 0..offset % ups.groups[g].range.len().max(1) {
                ups.smooth(g, &mut c, usize::MAX, None, 0);
            }
        }
        c
    }
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
    /// Per backend: weight, failure accounting, backup, down.
    params: Vec<ServerParams>,
}

/// Points per backend (per unit of weight) on the consistent-hash ring (ketama uses 160).
const POINTS: usize = 160;
/// Weights above this get no more ring points (the ring stays a few MiB at most).
const MAX_RING_WEIGHT: u32 = 100;
/// No backend excluded.
const NONE: usize = usize::MAX;

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

    /// Groups `groups` (ranges of `addrs`, each with its policy), every server with
    /// nginx's default parameters.
    pub fn with_groups(
        addrs: &[SocketAddr],
        groups: &[(Range<usize>, Balance)],
        counters: Counters,
    ) -> Upstreams {
        Upstreams::with_params(addrs, groups, &[], counters)
    }

    /// [`Upstreams::with_groups`] with per-backend parameters (`params[i]` for backend
    /// `i`; missing ones have the defaults). Publishes each backend's static flags in
    /// its shared health row.
    pub fn with_params(
        addrs: &[SocketAddr],
        groups: &[(Range<usize>, Balance)],
        params: &[ServerParams],
        counters: Counters,
    ) -> Upstreams {
        assert_eq!(counters.backends(), addrs.len());
        let params: Vec<ServerParams> = (0..addrs.len())
            .map(|i| params.get(i).copied().unwrap_or_default())
            .collect();
        let mut group_of = vec![0u16; addrs.len()];
        let groups: Vec<Group> = groups
            .iter()
            .enumerate()
            .map(|(gi, (range, balance))| {
                let mut ring = Vec::with_capacity(range.len() * POINTS);
                for i in range.clone() {
                    group_of[i] = gi as u16;
                    let a = addrs[i];
                    // nginx's ketama: 160 points per unit of weight.
                    for p in 0..POINTS * params[i].weight.min(MAX_RING_WEIGHT) as usize {
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
                    single: range.len() == 1,
                }
            })
            .collect();
        for (i, p) in params.iter().enumerate() {
            let flags = if p.backup { BackendHealth::BACKUP } else { 0 }
                | if p.down {
                    BackendHealth::CONFIG_DOWN
                } else {
                    0
                };
            counters.health(i).flags.store(flags, Relaxed);
        }
        Upstreams {
            addrs: addrs.to_vec(),
            balance: groups.first().map_or(Balance::RoundRobin, |g| g.balance),
            counters,
            ids: addrs.iter().map(backend_id).collect(),
            groups,
            group_of,
            params,
        }
    }

    /// Backend `b`'s parameters.
    pub fn params(&self, b: usize) -> ServerParams {
        self.params[b]
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

    /// Group `g`'s first ring point at or after `key` (wrapping): the consistent-hash
    /// choice, health aside.
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

    /// Backend `b`'s state for picking, now.
    fn live(&self, b: usize, now: u64) -> Live {
        let passive = !self.groups[self.group_of(b)].single;
        health::live(self.counters.health(b), &self.params[b], passive, now)
    }

    /// Whether `b` may be picked now from `tier` (backups or primaries), `except` aside.
    fn candidate(&self, b: usize, backups: bool, except: usize, now: u64) -> bool {
        b != except && self.params[b].backup == backups && self.live(b, now) != Live::Out
    }

    /// The tier of group `g` to pick from: primaries while one is live, else backups;
    /// `None` when no server of the group can take a client.
    fn tier(&self, g: usize, except: usize, now: u64) -> Option<bool> {
        let r = self.groups[g].range.clone();
        if r.clone().any(|b| self.candidate(b, false, except, now)) {
            Some(false)
        } else if r.clone().any(|b| self.candidate(b, true, except, now)) {
            Some(true)
        } else {
            None
        }
    }

    /// Smooth weighted round robin (nginx's) over group `g`'s candidates of `tier`
    /// (`None`: every server, health aside — only for [`Cursors::new`]).
    fn smooth(
        &self,
        g: usize,
        cur: &mut Cursors,
        except: usize,
        tier: Option<bool>,
        now: u64,
    ) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for b in self.groups[g].range.clone() {
            if let Some(backups) = tier {
                if !self.candidate(b, backups, except, now) {
                    continue;
                }
            }
            let w = self.params[b].weight as i64;
            cur.cw[b] += w;
            total += w;
            if best.is_none_or(|x| cur.cw[b] > cur.cw[x]) {
                best = Some(b);
            }
        }
        let b = best?;
        cur.cw[b] -= total;
        Some(b)
    }

    /// One choice by group `g`'s policy among its live servers, before the probe claim.
    fn choose(
        &self,
        g: usize,
        cur: &mut Cursors,
        client: IpAddr,
        key: Option<u64>,
        except: usize,
        now: u64,
    ) -> Option<usize> {
        let group = &self.groups[g];
        let tier = self.tier(g, except, now)?;
        let ok = |b: usize| self.candidate(b, tier, except, now);
        match group.balance {
            Balance::RoundRobin => self.smooth(g, cur, except, Some(tier), now),
            Balance::LeastConn => {
                // Fewest active per unit of weight over all workers; ties broken round
                // robin so equal backends share evenly.
                let (base, n) = (group.range.start, group.range.len());
                let start = cur.rr[g] % n;
                cur.rr[g] = cur.rr[g].wrapping_add(1);
                let mut best: Option<(usize, u64, u64)> = None;
                for k in 0..n {
                    let b = base + (start + k) % n;
                    if !ok(b) {
                        continue;
                    }
                    let a = self.counters.sum(b, |c| &c.active);
                    let w = self.params[b].weight as u64;
                    if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
                        best = Some((b, a, w));
                    }
                }
                best.map(|(b, _, _)| b)
            }
            Balance::IpHash => {
                // Over the weights of every server (down ones too: the others keep their
                // clients), rehashing past one that is out, as nginx does (20 tries).
                let total: u64 = group
                    .range
                    .clone()
                    .map(|b| self.params[b].weight as u64)
                    .sum();
                let mut h = hash_ip(client);
                for _ in 0..20 {
                    let mut x = h % total.max(1);
                    for b in group.range.clone() {
                        let w = self.params[b].weight as u64;
                        if x < w {
                            if ok(b) {
                                return Some(b);
                            }
                            break;
                        }
                        x -= w;
                    }
                    h = mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15));
                }
                self.smooth(g, cur, except, Some(tier), now)
            }
            Balance::Hash => {
                // The key's point, then the next points until a live server.
                let key = key.unwrap_or_else(|| crate::hash::fnv1a_ip(client));
                let ring = &group.ring;
                let k = mix(key);
                let i = ring.partition_point(|&(p, _)| p < k);
                (0..ring.len())
                    .map(|j| ring[(i + j) % ring.len()].1 as usize)
                    .find(|&b| ok(b))
            }
        }
    }

    /// Pick in group `g`: `prefer` (a sticky cookie's backend) when it is live, else by
    /// the policy (`key`: the hash key), skipping `except`. Takes the probe when one is
    /// due; a probe another worker took first means picking again. `None`: no live
    /// server (nginx's "no live upstreams").
    fn pick_live(
        &self,
        g: usize,
        cur: &mut Cursors,
        client: IpAddr,
        key: Option<u64>,
        prefer: Option<usize>,
        except: usize,
    ) -> Option<usize> {
        let now = health::now_ms();
        if let Some(b) = prefer.filter(|&b| b != except) {
            let st = self.live(b, now);
            if health::claim(self.counters.health(b), &self.params[b], st, now) {
                return Some(b);
            }
        }
        for _ in 0..=self.groups[g].range.len() {
            let b = self.choose(g, cur, client, key, except, now)?;
            let st = self.live(b, now);
            if health::claim(self.counters.health(b), &self.params[b], st, now) {
                return Some(b);
            }
        }
        None
    }

    /// Pick the first backend of group `g` to try for a client (no request parsed).
    pub fn pick_in(&self, g: usize, cur: &mut Cursors, client: IpAddr) -> Option<usize> {
        self.pick_live(g, cur, client, None, None, NONE)
    }

    /// [`Upstreams::pick_in`] for the first group.
    pub fn pick(&self, cur: &mut Cursors, client: IpAddr) -> Option<usize> {
        self.pick_in(0, cur, client)
    }

    /// Pick in group `g` for a parsed request: its sticky cookie's backend if it names
    /// one of the group's that is live, else the consistent hash of its key (policy
    /// `hash`), else the policy.
    pub fn pick_for(
        &self,
        g: usize,
        cur: &mut Cursors,
        client: IpAddr,
        info: &crate::http::RequestInfo,
    ) -> Option<usize> {
        let prefer = info.sticky.and_then(|id| self.by_id_in(g, id));
        let key = match self.groups[g].balance {
            Balance::Hash => info.hash,
            _ => None,
        };
        self.pick_live(g, cur, client, key, prefer, NONE)
    }

    /// The backend to try after `failed` failed (its failure already reported): another
    /// live one of its group, by the policy.
    pub fn next_after(&self, failed: usize, cur: &mut Cursors, client: IpAddr) -> Option<usize> {
        self.pick_live(self.group_of(failed), cur, client, None, None, failed)
    }

    /// A failure of backend `b` (connect, reset or timeout before the response head, a
    /// 502/504 from it), seen by worker `worker`: counted in the shared health; the
    /// transition to down is logged once.
    pub fn failed(&self, b: usize, worker: usize, why: &str) {
        let passive = !self.groups[self.group_of(b)].single;
        let p = &self.params[b];
        if health::failed(self.counters.health(b), p, passive, health::now_ms()) {
            crate::log::write(
                crate::log::Level::Error,
                crate::log::Who::Worker(worker),
                None,
                format_args!(
                    "upstream server temporarily disabled: {} ({} failure(s), the last: {why}); no new clients for {} s, then one probe",
                    self.addrs[b],
                    self.counters.health(b).fails.load(Relaxed),
                    p.fail_timeout.as_secs_f64()
                ),
            );
        }
    }

    /// A good response head from backend `b`: clears its failures (when it was picked
    /// after the last one); coming back up is logged once.
    pub fn succeeded(&self, b: usize, worker: usize) {
        if health::succeeded(self.counters.health(b)) {
            crate::log::write(
                crate::log::Level::Notice,
                crate::log::Who::Worker(worker),
                None,
                format_args!("upstream server {} is up again", self.addrs[b]),
            );
        }
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
    use std::time::Duration;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect()
    }

    fn ups(n: usize, b: Balance) -> Upstreams {
        Upstreams::new(&addrs(n), b, Counters::heap(2, n))
    }

    fn with(n: usize, b: Balance, params: &[ServerParams]) -> Upstreams {
        Upstreams::with_params(&addrs(n), &[(0..n, b)], params, Counters::heap(2, n))
    }

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn w(weight: u32) -> ServerParams {
        ServerParams {
            weight,
            ..ServerParams::default()
        }
    }

    #[test]
    fn round_robin_is_exact() {
        let u = ups(4, Balance::RoundRobin);
        let mut cur = Cursors::new(&u, 0);
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[u.pick(&mut cur, ip()).unwrap()] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn smooth_weighted_round_robin_as_nginx() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a (no bursts of five).
        let u = with(3, Balance::RoundRobin, &[w(5), w(1), w(1)]);
        let mut cur = Cursors::new(&u, 0);
        let seq: Vec<usize> = (0..7).map(|_| u.pick(&mut cur, ip()).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        let u = with(2, Balance::RoundRobin, &[w(3), w(1)]);
        let mut cur = Cursors::new(&u, 1);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[u.pick(&mut cur, ip()).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn backups_only_when_every_primary_is_out_and_down_never() {
        let backup = ServerParams {
            backup: true,
            ..ServerParams::default()
        };
        let down = ServerParams {
            down: true,
            ..ServerParams::default()
        };
        let u = with(4, Balance::RoundRobin, &[w(1), w(1), backup, down]);
        let mut cur = Cursors::new(&u, 0);
        for _ in 0..20 {
            assert!(u.pick(&mut cur, ip()).unwrap() < 2);
        }
        u.failed(0, 0, "test");
        u.failed(1, 0, "test");
        for _ in 0..5 {
            assert_eq!(u.pick(&mut cur, ip()), Some(2), "the backup, only now");
        }
        u.counters.health(2).check_down.store(1, Ordering::Relaxed);
        assert_eq!(
            u.pick(&mut cur, ip()),
            None,
            "no live upstreams (3 is down)"
        );
    }

    #[test]
    fn a_failed_backend_is_skipped_then_probed_once() {
        let quick = ServerParams {
            fail_timeout: Duration::from_millis(50),
            ..ServerParams::default()
        };
        let u = with(2, Balance::RoundRobin, &[quick, quick]);
        let mut a = Cursors::new(&u, 0);
        let mut b = Cursors::new(&u, 1);
        u.failed(1, 0, "refused");
        for _ in 0..10 {
            assert_eq!(u.pick(&mut a, ip()), Some(0), "worker 0 skips it");
            assert_eq!(u.pick(&mut b, ip()), Some(0), "so does worker 1");
        }
        std::thread::sleep(Duration::from_millis(60));
        let picks: Vec<usize> = (0..6)
            .flat_map(|_| [u.pick(&mut a, ip()).unwrap(), u.pick(&mut b, ip()).unwrap()])
            .collect();
        assert_eq!(
            picks.iter().filter(|&&x| x == 1).count(),
            1,
            "one probe: {picks:?}"
        );
        u.succeeded(1, 0);
        let picks: Vec<usize> = (0..4).map(|_| u.pick(&mut a, ip()).unwrap()).collect();
        assert!(picks.contains(&1), "back in rotation: {picks:?}");
        // With a group of one, failures never take the server out.
        let one = with(1, Balance::RoundRobin, &[ServerParams::default()]);
        one.failed(0, 0, "refused");
        assert_eq!(one.pick(&mut Cursors::new(&one, 0), ip()), Some(0));
    }

    #[test]
    fn least_conn_prefers_idle_per_weight() {
        let u = ups(3, Balance::LeastConn);
        u.counters.backend(0, 0).active.store(3, Ordering::Relaxed);
        u.counters.backend(1, 0).active.store(2, Ordering::Relaxed);
        u.counters.backend(1, 1).active.store(1, Ordering::Relaxed);
        u.counters.backend(0, 2).active.store(3, Ordering::Relaxed);
        let mut cur = Cursors::new(&u, 0);
        assert_eq!(u.pick(&mut cur, ip()), Some(1));
        // 3 active at weight 4 beats 2 at weight 1.
        let u = with(2, Balance::LeastConn, &[w(4), w(1)]);
        u.counters.backend(0, 0).active.store(3, Ordering::Relaxed);
        u.counters.backend(0, 1).active.store(2, Ordering::Relaxed);
        assert_eq!(u.pick(&mut Cursors::new(&u, 0), ip()), Some(0));
    }

    #[test]
    fn hashes_follow_weights_and_skip_what_is_out() {
        let u = with(2, Balance::Hash, &[w(3), w(1)]);
        let mut counts = [0usize; 2];
        for k in 0..20_000u64 {
            counts[u.ring_pick(crate::hash::fnv1a(&k.to_le_bytes()))] += 1;
        }
        assert!((14_000..16_000).contains(&counts[0]), "{counts:?}");
        let u = with(2, Balance::IpHash, &[w(3), w(1)]);
        let mut cur = Cursors::new(&u, 0);
        let mut counts = [0usize; 2];
        for k in 0..4_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + k));
            counts[u.pick(&mut cur, ip).unwrap()] += 1;
        }
        assert!((2_800..3_200).contains(&counts[0]), "{counts:?}");
        u.failed(0, 0, "refused");
        for k in 0..100u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + k));
            assert_eq!(u.pick(&mut cur, ip), Some(1));
        }
    }

    #[test]
    fn consistent_hash_moves_only_the_new_backends_share() {
        let a = ups(4, Balance::Hash);
        let b = Upstreams::new(&addrs(5), Balance::Hash, Counters::heap(1, 5));
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
        let mut cur = Cursors::new(&u, 0);
        let mut seen = std::collections::HashSet::new();
        for last in 1..=64u8 {
            let ip: IpAddr = format!("127.0.0.{last}").parse().unwrap();
            let a = u.pick(&mut cur, ip);
            assert_eq!(a, u.pick(&mut cur, ip), "stable per address");
            seen.insert(a);
        }
        assert_eq!(seen.len(), 4, "one /24 spreads over all backends");
    }
}

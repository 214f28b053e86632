//! The worker's upstream keep-alive pool (nginx's `keepalive N`): which idle upstream
//! connections it holds, per backend, in pooling order.
//!
//! An idle upstream connection is a session of its own in state `Pooled` (holding one
//! budget slot and one single-shot POLLIN: if it fires, the backend closed the connection
//! or sent bytes nobody asked for); this pool only lists them. Reuse takes the most
//! recently pooled connection (warmest); eviction — when the pool is over `keepalive`,
//! or a new client needs slots — takes the oldest. Idle expiry is a sweep of the deques'
//! fronts at each tick, not a timer per connection. The worker carries out what the
//! answers mean (moving the socket out of the pooled session, returning its slot).

use std::collections::VecDeque;

/// Pooled sessions (slot, generation, pooled at), per backend, oldest first.
#[derive(Debug)]
pub struct UpstreamPool {
    per_backend: Vec<VecDeque<(u32, u32, u64)>>,
    count: usize,
}

impl UpstreamPool {
    /// An empty pool over `backends` backends.
    pub fn new(backends: usize) -> UpstreamPool {
        UpstreamPool {
            per_backend: vec![VecDeque::new(); backends],
            count: 0,
        }
    }

    /// Idle connections listed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none is listed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// List pooled session (`idx`, `gen`) of backend `b`, pooled at `now`.
    pub fn push(&mut self, b: usize, idx: u32, gen: u32, now: u64) {
        self.per_backend[b].push_back((idx, gen, now));
        self.count += 1;
    }

    /// The most recently pooled connection to backend `b`, unlisted.
    pub fn take_newest(&mut self, b: usize) -> Option<u32> {
        let (idx, _, _) = self.per_backend[b].pop_back()?;
        self.count -= 1;
        Some(idx)
    }

    /// The oldest connection of the backend with the most, unlisted.
    pub fn take_oldest(&mut self) -> Option<u32> {
        let b = (0..self.per_backend.len()).max_by_key(|&b| self.per_backend[b].len())?;
        let (idx, _, _) = self.per_backend[b].pop_front()?;
        self.count -= 1;
        Some(idx)
    }

    /// The oldest connection to a backend in `backends`, unlisted.
    pub fn take_oldest_in(&mut self, backends: std::ops::Range<usize>) -> Option<u32> {
        let b = backends.max_by_key(|&b| self.per_backend[b].len())?;
        let (idx, _, _) = self.per_backend[b].pop_front()?;
        self.count -= 1;
        Some(idx)
    }

    /// Connections listed for backends in `backends`.
    pub fn count_in(&self, backends: std::ops::Range<usize>) -> usize {
        self.per_backend[backends].iter().map(|q| q.len()).sum()
    }

    /// A connection idle since before `now - idle(backend)`, unlisted (one per call).
    pub fn take_expired(&mut self, now: u64, idle: impl Fn(usize) -> u64) -> Option<u32> {
        for (b, q) in self.per_backend.iter_mut().enumerate() {
            if let Some(&(idx, _, since)) = q.front() {
                if since + idle(b) <= now {
                    q.pop_front();
                    self.count -= 1;
                    return Some(idx);
                }
            }
        }
        None
    }

    /// Unlist pooled session (`idx`, `gen`) of backend `b` (its backend closed it).
    pub fn remove(&mut self, b: usize, idx: u32, gen: u32) {
        let q = &mut self.per_backend[b];
        if let Some(pos) = q.iter().position(|&(i, g, _)| (i, g) == (idx, gen)) {
            q.remove(pos);
            self.count -= 1;
        }
    }

    /// Forget every entry (shutdown: the sessions close with everything else).
    pub fn clear(&mut self) {
        for q in &mut self.per_backend {
            q.clear();
        }
        self.count = 0;
    }
}

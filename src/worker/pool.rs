//! The worker's upstream keep-alive pool (nginx's `keepalive N`).
//!
//! An idle upstream connection is a session of its own in state `Pooled`, holding one
//! budget slot, with one single-shot POLLIN: if it fires, the backend closed the
//! connection (or sent bytes nobody asked for) and the connection is dropped. Per backend
//! the pool is a deque: reuse takes the most recently returned connection (warmest), and
//! eviction — when the pool is full, or a new client needs slots — closes the oldest.
//! Handing a connection out or evicting it moves the socket out of the pooled session and
//! returns its slot at once; the session itself ends when its POLLIN is cancelled. Idle
//! expiry is a sweep of the deques' fronts at each tick, not a timer per connection.

use super::*;

impl Worker {
    /// Keep `fd`, an idle connection to backend `b`, for reuse — or close it when the pool
    /// is off or no slot is free.
    pub(super) fn pool_put(&mut self, b: usize, fd: RawFd) -> io::Result<()> {
        if self.cfg.keepalive == 0 || self.shutting {
            sys::close(fd);
            return Ok(());
        }
        // More than `keepalive` may be idle for a moment: the surplus is trimmed at the
        // next tick. io_uring hands a worker its completions in batches, so a batch of
        // finished exchanges returns many connections at once just before the next batch
        // of requests takes them again; closing the surplus at once made ~1 request in 5
        // open a new upstream connection at 50 busy clients with `keepalive 32`.
        if !self.budget.take_one() {
            sys::close(fd);
            return Ok(());
        }
        let idx = self.alloc(Session {
            client: -1,
            upstream: fd,
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backend: NO_BACKEND,
            inflight: 0,
            admission: Admission::Pooled,
            closing: false,
            deadline: 0,
            timer_at: 0,
            state: State::Pooled { backend: b as u16 },
        });
        let tok = self.tok(Op::PollIn, Side::Upstream, idx);
        self.ring
            .poll(fd, (libc::POLLIN | libc::POLLRDHUP) as u32, false, tok)?;
        self.sess(idx).inflight += 1;
        let gen = self.gen(idx);
        let now = self.now;
        self.pool[b].push_back((idx, gen, now));
        self.pooled += 1;
        Ok(())
    }

    /// Take the most recently pooled connection to backend `b`, if any.
    pub(super) fn pool_take(&mut self, b: usize) -> Option<RawFd> {
        let (idx, _, _) = self.pool[b].pop_back()?;
        Some(self.unpool(idx))
    }

    /// Close the oldest pooled connection (of the backend with the most), returning its
    /// slot now.
    pub(super) fn evict_oldest(&mut self) -> io::Result<()> {
        let Some(b) = (0..self.pool.len()).max_by_key(|&b| self.pool[b].len()) else {
            return Ok(());
        };
        let Some((idx, _, _)) = self.pool[b].pop_front() else {
            return Ok(());
        };
        let fd = self.unpool(idx);
        sys::close(fd);
        Ok(())
    }

    /// Move the socket out of pooled session `idx` (already removed from its deque), give
    /// its slot back, and end the session (its POLLIN is cancelled).
    fn unpool(&mut self, idx: u32) -> RawFd {
        self.pooled -= 1;
        self.budget.release_one();
        let s = self.sess(idx);
        let fd = s.upstream;
        s.upstream = -1;
        s.admission = Admission::Released;
        // Cancelling is queued before anything the new owner submits on the socket.
        if let Err(e) = self.close_session(idx) {
            self.log(format_args!("cancelling a pooled connection's poll: {e}"));
        }
        fd
    }

    /// At each tick: close pooled connections idle longer than `--upstream-idle-timeout`,
    /// then the oldest until at most `keepalive` are left. Each deque is in pooling order,
    /// so the expired ones are at its front; pooled connections need no timer-heap entry
    /// (thousands are pooled and taken per second).
    pub(super) fn pool_expire(&mut self) -> io::Result<()> {
        let idle = ms(self.cfg.upstream_idle_timeout);
        for b in 0..self.pool.len() {
            while let Some(&(idx, _, since)) = self.pool[b].front() {
                if since + idle > self.now {
                    break;
                }
                self.pool[b].pop_front();
                let fd = self.unpool(idx);
                sys::close(fd);
            }
        }
        while self.pooled > self.cfg.keepalive {
            let before = self.pooled;
            self.evict_oldest()?;
            if self.pooled == before {
                break;
            }
        }
        Ok(())
    }

    /// A pooled connection's POLLIN fired: the backend closed it (or sent bytes nobody
    /// asked for). Drop it.
    pub(super) fn pool_drop(&mut self, idx: u32) -> io::Result<()> {
        let State::Pooled { backend } = self.sess(idx).state else {
            return Ok(());
        };
        let gen = self.gen(idx);
        let q = &mut self.pool[backend as usize];
        if let Some(pos) = q.iter().position(|&(i, g, _)| (i, g) == (idx, gen)) {
            q.remove(pos);
            self.pooled -= 1;
        }
        // Its slot comes back when the session is freed (Admission::Pooled).
        self.close_session(idx)
    }
}

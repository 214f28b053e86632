//! The worker's connection budget: nginx's `worker_connections`, made explicit.
//!
//! Every descriptor a worker handles takes one slot: its listener, its control eventfd
//! (nginx's master↔worker channel), every accepted client and every upstream socket. So a
//! worker admits `⌊(worker_connections − 2) / 2⌋` proxied clients — 511 at nginx's shipped
//! 1024, exactly as nginx does.
//!
//! ringway reserves both of a client's slots (client + upstream) when it accepts the
//! client, so a client is either fully admitted or gets the `--at-limit` answer; nginx
//! instead may accept the client and fail at the upstream with a 500 when the budget is
//! odd. Slots come back only when the kernel has finished every operation on the
//! session's descriptors (the worker calls [`Budget::release`] at slot free time).
//!
//! Idle upstream connections in the keep-alive pool (`keepalive N`) take one slot each,
//! only while a slot is free, and are closed first when a new client needs slots: an idle
//! cache never refuses a client.
//!
//! `503` mode keeps a small reserve *outside* the budget (`--reserve-503`) that holds a
//! refused client just long enough to read its request and answer 503; when the reserve
//! is used up too, the client is closed as in `reset` mode.

/// Slots a worker reserves for itself: the listener and the control eventfd.
pub const RESERVED: usize = 2;
/// Slots a proxied client takes: the client socket and the upstream socket.
pub const PER_CLIENT: usize = 2;

/// Proxied clients one worker admits with `worker_connections` slots.
pub fn clients_per_worker(worker_connections: usize) -> usize {
    worker_connections.saturating_sub(RESERVED) / PER_CLIENT
}

/// The startup line: `budget: 1 worker × 1024 slots − 2 reserved = 1022 → 511 proxied clients`.
pub fn describe(workers: usize, worker_connections: usize) -> String {
    let per = clients_per_worker(worker_connections);
    let usable = worker_connections.saturating_sub(RESERVED);
    if workers == 1 {
        format!(
            "budget: 1 worker × {worker_connections} slots − {RESERVED} reserved = {usable} → {per} proxied clients"
        )
    } else {
        format!(
            "budget: {workers} workers × ({worker_connections} slots − {RESERVED} reserved = {usable} → {per}) = {} proxied clients",
            workers * per
        )
    }
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Both slots reserved; proceed.
    Admitted,
    /// Budget full: the worker answers 503 (outside the budget), closes, or pauses.
    Refused,
}

/// One worker's slot accounting. Owned by the worker thread alone (no sharing).
#[derive(Debug)]
pub struct Budget {
    capacity: usize,
    used: usize,
    /// An "not enough" episode is running: logged once, ends with hysteresis.
    episode: bool,
}

impl Budget {
    /// A budget of `worker_connections` slots with the worker's own 2 already taken.
    pub fn new(worker_connections: usize) -> Budget {
        Budget {
            capacity: worker_connections,
            used: RESERVED.min(worker_connections),
            episode: false,
        }
    }

    /// Take `n` more slots for the worker's own descriptors (a listener per extra listen
    /// address: nginx counts every listening socket against worker_connections).
    pub fn reserve_own(&mut self, n: usize) {
        self.used = (self.used + n).min(self.capacity);
    }

    /// Total slots (worker_connections).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Slots in use, including the 2 reserved.
    pub fn used(&self) -> usize {
        self.used
    }
    /// Free slots.
    pub fn free(&self) -> usize {
        self.capacity - self.used
    }
    /// Whether a new client would be admitted.
    pub fn has_room(&self) -> bool {
        self.free() >= PER_CLIENT
    }

    /// Try to admit a client. Returns the decision and whether this starts a new "not
    /// enough" episode (log it).
    pub fn admit(&mut self) -> (Admit, bool) {
        if self.has_room() {
            self.used += PER_CLIENT;
            return (Admit::Admitted, false);
        }
        let new_episode = !self.episode;
        self.episode = true;
        (Admit::Refused, new_episode)
    }

    /// Return an admitted client's slots. Ends the episode once at least an eighth of the
    /// slots (and at least one client's worth) are free again — nginx's own 1/8 rule.
    pub fn release(&mut self) {
        debug_assert!(self.used >= RESERVED + PER_CLIENT);
        self.used -= PER_CLIENT;
        let hysteresis = (self.capacity / 8).max(PER_CLIENT);
        if self.episode && self.free() >= hysteresis {
            self.episode = false;
        }
    }

    /// Take one slot for an idle upstream connection kept in the keep-alive pool; false
    /// when none is free (the connection is closed instead).
    pub fn take_one(&mut self) -> bool {
        if self.free() == 0 {
            return false;
        }
        self.used += 1;
        true
    }

    /// Return a pooled connection's slot.
    pub fn release_one(&mut self) {
        debug_assert!(self.used > RESERVED);
        self.used -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_arithmetic() {
        assert_eq!(clients_per_worker(1024), 511);
        assert_eq!(clients_per_worker(512), 255);
        assert_eq!(clients_per_worker(1025), 511);
        assert_eq!(clients_per_worker(16), 7);
        assert_eq!(clients_per_worker(64), 31);
        assert_eq!(
            describe(1, 1024),
            "budget: 1 worker × 1024 slots − 2 reserved = 1022 → 511 proxied clients"
        );
        assert!(describe(2, 1024).ends_with("= 1022 proxied clients"));
    }

    #[test]
    fn admits_exactly_and_logs_once_per_episode() {
        let mut b = Budget::new(16);
        for _ in 0..7 {
            assert_eq!(b.admit(), (Admit::Admitted, false));
        }
        assert_eq!(b.free(), 0);
        assert_eq!(b.admit(), (Admit::Refused, true));
        assert_eq!(b.admit(), (Admit::Refused, false));
        b.release();
        // 2 free >= max(16/8, 2) = 2: the episode ends.
        assert_eq!(b.admit(), (Admit::Admitted, false));
        assert_eq!(b.admit(), (Admit::Refused, true));
    }

    #[test]
    fn pooled_connections_take_single_free_slots() {
        let mut b = Budget::new(8);
        assert_eq!(b.admit().0, Admit::Admitted);
        assert_eq!(b.admit().0, Admit::Admitted);
        assert_eq!(b.free(), 2);
        assert!(b.take_one());
        assert!(!b.has_room(), "one free slot is not a client's two");
        assert!(b.take_one());
        assert!(!b.take_one());
        b.release_one();
        b.release_one();
        assert!(b.has_room());
    }

    #[test]
    fn odd_budget_leaves_one_slot_unused() {
        let mut b = Budget::new(1025);
        let mut n = 0;
        while b.admit().0 == Admit::Admitted {
            n += 1;
        }
        assert_eq!(n, 511);
        assert_eq!(b.free(), 1);
    }
}
